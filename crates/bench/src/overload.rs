//! `custos bench overload` (issue #20): a bounded load generator offering several times the
//! cluster's write capacity for minutes, while each member's memory, proposal queue and health
//! answers are sampled; at the end every acknowledged write is checked to be present.
//!
//! W writers each own one volume and update its `seq` label with 1, 2, 3, ... one call at a
//! time, on connections spread over every member. A call refused with RESOURCE_EXHAUSTED (a
//! member's bound) or UNAVAILABLE is sent again with the same value after a short pause, as
//! docs/operations.md tells clients to; every call has a deadline and the run ends at its
//! duration, so every loop is bounded. With W well above what the members admit at once
//! (`[limits] max_writes_in_flight`), the cluster runs at its capacity with the rest of the
//! offered load refused at the edge.
//!
//! Every `sample_every` the generator records each member's resident memory (`/proc`), its
//! `custos_proposal_queue_depth` and `custos_writes_in_flight` (from `/metrics`, when the
//! metrics addresses are given) and whether its gRPC health service answers within two seconds.
//! At the end, each volume's `seq` must be at least the last value its writer had acknowledged.

use crate::custos::setup;
use crate::proc;
use crate::BenchError;
use custos_client::model::Code;
use custos_client::model::VolumeUpdate;
use custos_client::{Client, CreateVolume};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One overload run.
#[derive(Clone, Debug)]
pub struct OverloadOptions {
    /// Concurrent writers, each with its own volume.
    pub writers: usize,
    /// Connections (HTTP/2 channels), spread over the members round-robin.
    pub connections: usize,
    pub duration: Duration,
    pub sample_every: Duration,
    /// Deadline of each call.
    pub op_timeout: Duration,
    /// Pause before sending a refused call again.
    pub retry_pause: Duration,
    /// Member processes (for resident memory), in the order of `metrics`.
    pub server_pids: Vec<u32>,
    /// The members' `/metrics` addresses (host:port, plain HTTP), optional.
    pub metrics: Vec<String>,
    pub label: String,
}

impl OverloadOptions {
    fn check(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_string()));
        if self.writers == 0 || self.connections == 0 {
            return bad("--writers and --connections must be at least 1");
        }
        if self.duration.is_zero() || self.sample_every.is_zero() {
            return bad("--duration-secs and --sample-secs must be positive");
        }
        Ok(())
    }
}

/// One sample of one member.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemberSample {
    pub rss_kib: Option<u64>,
    pub queue_depth: Option<u64>,
    pub writes_in_flight: Option<u64>,
    /// The member's Raft term (`custos_raft_term`): how often leadership changed.
    #[serde(default)]
    pub term: Option<u64>,
    /// The gRPC health service answered (SERVING or not) within two seconds.
    pub health_answered: bool,
    pub serving: bool,
}

/// Every member at one time.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub at_s: f64,
    /// Acknowledged writes so far.
    pub acked: u64,
    pub members: Vec<MemberSample>,
}

/// The outcome of one overload run, printed as JSON by `custos bench overload -o json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverloadReport {
    pub label: String,
    pub writers: usize,
    pub connections: usize,
    pub duration_s: f64,
    /// Acknowledged writes, and their rate.
    pub acked: u64,
    pub acked_per_s: f64,
    /// Calls answered RESOURCE_EXHAUSTED, UNAVAILABLE (or no answer), or otherwise.
    pub exhausted: u64,
    pub unavailable: u64,
    pub other_errors: u64,
    pub first_other_error: Option<String>,
    pub samples: Vec<Sample>,
    /// Per member: largest ÷ smallest resident memory after the first minute (1.2 = 20 %).
    pub rss_spread_after_first_minute: Vec<Option<f64>>,
    /// Per member: the largest proposal queue depth seen.
    pub max_queue_depth: Vec<Option<u64>>,
    /// The longest time between two samples with no write acknowledged in between, in
    /// seconds (a stall shows here).
    #[serde(default)]
    pub longest_stall_s: f64,
    /// Health checks that got an answer, of all made.
    pub health_answered: u64,
    pub health_checks: u64,
    /// Volumes whose `seq` was below their writer's last acknowledged value (lost writes).
    pub lost: u64,
    pub checked_volumes: u64,
}

/// One writer's volume and where its writes stand.
struct Writer {
    id: String,
    acked: AtomicU64,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    exhausted: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
    first_other: std::sync::Mutex<Option<String>>,
    stop: AtomicBool,
}

async fn write_loop(
    conn: Client,
    writer: Arc<Writer>,
    counters: Arc<Counters>,
    retry_pause: Duration,
) {
    let mut seq = writer.acked.load(Ordering::SeqCst) + 1;
    while !counters.stop.load(Ordering::SeqCst) {
        let labels = BTreeMap::from([("seq".to_string(), seq.to_string())]);
        match conn
            .update_volume(&writer.id, &labels, &VolumeUpdate::default())
            .await
        {
            Ok(()) => {
                writer.acked.store(seq, Ordering::SeqCst);
                counters.acked.fetch_add(1, Ordering::Relaxed);
                seq += 1;
            }
            Err(e) => {
                match e.code() {
                    Some(Code::ResourceExhausted) => &counters.exhausted,
                    Some(Code::Unavailable) | None => &counters.unavailable,
                    Some(_) => {
                        counters
                            .first_other
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| e.to_string());
                        &counters.other
                    }
                }
                .fetch_add(1, Ordering::Relaxed);
                // The same value again: a write that was applied after all is applied again
                // as the same label.
                tokio::time::sleep(retry_pause).await;
            }
        }
    }
}

/// The longest run of samples over which the acknowledged count did not move, in seconds.
fn longest_stall(samples: &[Sample]) -> f64 {
    let (mut longest, mut since): (f64, Option<&Sample>) = (0.0, None);
    for pair in samples.windows(2) {
        if pair[1].acked == pair[0].acked {
            let start = *since.get_or_insert(&pair[0]);
            longest = longest.max(pair[1].at_s - start.at_s);
        } else {
            since = None;
        }
    }
    longest
}

/// `GET /metrics` over plain HTTP/1.0 from `addr`, bounded by `timeout`.
async fn scrape(addr: &str, timeout: Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        s.take(8 << 20).read_to_end(&mut body).await.ok()?;
        String::from_utf8(body).ok()
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}

fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Whether member `addr`'s gRPC health service answers, and says SERVING.
async fn health(addr: &str) -> (bool, bool) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let check = async {
        let hostport = addr.strip_prefix("http://").unwrap_or(addr);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{hostport}"))
            .ok()?
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .ok()?;
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(reply.into_inner().status == ServingStatus::Serving as i32)
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Some(serving)) => (true, serving),
        _ => (false, false),
    }
}

/// Runs the overload against `endpoints` (every member's SDK address, in the order of
/// `opts.server_pids` and `opts.metrics` when given).
pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    opts: &OverloadOptions,
) -> Result<OverloadReport, BenchError> {
    opts.check()?;
    let mut conns = Vec::with_capacity(opts.connections);
    for j in 0..opts.connections {
        let c = Client::new(&[endpoints[j % endpoints.len()].clone()], token)
            .map_err(setup)?
            .with_timeout(opts.op_timeout);
        conns.push(c);
    }
    // The writers' volumes, created before the clock starts (idempotent by name).
    let tag = std::process::id();
    let mut writers = Vec::with_capacity(opts.writers);
    for w in 0..opts.writers {
        let create = CreateVolume {
            name: format!("overload-{tag}-{w}"),
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        };
        let mut attempt = 0;
        let id = loop {
            match conns[w % conns.len()].create_volume(&create).await {
                Ok(id) => break id,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(setup(e)),
            }
        };
        writers.push(Arc::new(Writer {
            id,
            acked: AtomicU64::new(0),
        }));
    }

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, writer) in writers.iter().enumerate() {
        tasks.spawn(write_loop(
            conns[w % conns.len()].clone(),
            writer.clone(),
            counters.clone(),
            opts.retry_pause,
        ));
    }

    let mut samples = Vec::new();
    let (mut health_checks, mut health_answered) = (0u64, 0u64);
    while started.elapsed() < opts.duration {
        tokio::time::sleep(
            opts.sample_every
                .min(opts.duration.saturating_sub(started.elapsed())),
        )
        .await;
        let mut members = Vec::with_capacity(endpoints.len());
        for (i, addr) in endpoints.iter().enumerate() {
            let mut m = MemberSample {
                rss_kib: opts.server_pids.get(i).and_then(|pid| proc::rss_kib(*pid)),
                ..MemberSample::default()
            };
            if let Some(metrics) = opts.metrics.get(i) {
                if let Some(text) = scrape(metrics, Duration::from_secs(2)).await {
                    m.queue_depth = metric_value(&text, "custos_proposal_queue_depth");
                    m.writes_in_flight = metric_value(&text, "custos_writes_in_flight");
                    m.term = metric_value(&text, "custos_raft_term");
                }
            }
            let (answered, serving) = health(addr).await;
            health_checks += 1;
            health_answered += u64::from(answered);
            m.health_answered = answered;
            m.serving = serving;
            members.push(m);
        }
        samples.push(Sample {
            at_s: started.elapsed().as_secs_f64(),
            acked: counters.acked.load(Ordering::Relaxed),
            members,
        });
    }
    counters.stop.store(true, Ordering::SeqCst);
    let drain = Instant::now() + opts.op_timeout + Duration::from_secs(5);
    while !tasks.is_empty() && Instant::now() < drain {
        let _ = tokio::time::timeout(Duration::from_millis(200), tasks.join_next()).await;
    }
    tasks.abort_all();
    let duration_s = started.elapsed().as_secs_f64();

    // Every acknowledged write is there: each volume's seq is at least its last ack (a later,
    // unacknowledged attempt may have been applied too).
    let reader = conns[0].clone().with_timeout(Duration::from_secs(20));
    let (mut lost, mut checked) = (0u64, 0u64);
    for writer in &writers {
        let want = writer.acked.load(Ordering::SeqCst);
        let mut attempt = 0;
        let got = loop {
            match reader.inspect_volume(&writer.id).await {
                Ok(v) => {
                    break v
                        .labels
                        .get("seq")
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0)
                }
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(setup(format!("reading {} back: {e}", writer.id))),
            }
        };
        checked += 1;
        if got < want {
            lost += 1;
        }
    }

    let after_minute: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= 60.0).collect();
    let rss_spread = (0..endpoints.len())
        .map(|i| {
            let v: Vec<u64> = after_minute
                .iter()
                .filter_map(|s| s.members.get(i)?.rss_kib)
                .collect();
            let (min, max) = (v.iter().min()?, v.iter().max()?);
            (*min > 0).then(|| *max as f64 / *min as f64)
        })
        .collect();
    let max_queue_depth = (0..endpoints.len())
        .map(|i| {
            samples
                .iter()
                .filter_map(|s| s.members.get(i)?.queue_depth)
                .max()
        })
        .collect();
    let longest_stall_s = longest_stall(&samples);
    let acked = counters.acked.load(Ordering::Relaxed);
    let first_other_error = counters
        .first_other
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(OverloadReport {
        label: opts.label.clone(),
        writers: opts.writers,
        connections: opts.connections,
        duration_s,
        acked,
        acked_per_s: acked as f64 / duration_s.max(f64::EPSILON),
        exhausted: counters.exhausted.load(Ordering::Relaxed),
        unavailable: counters.unavailable.load(Ordering::Relaxed),
        other_errors: counters.other.load(Ordering::Relaxed),
        first_other_error,
        samples,
        rss_spread_after_first_minute: rss_spread,
        max_queue_depth,
        longest_stall_s,
        health_answered,
        health_checks,
        lost,
        checked_volumes: checked,
    })
}

#[cfg(test)]
mod tests {
    use super::{longest_stall, metric_value, Sample};

    #[test]
    fn a_stall_is_the_longest_stretch_without_an_acknowledged_write() {
        let at = |at_s: f64, acked: u64| Sample {
            at_s,
            acked,
            members: vec![],
        };
        let samples = [
            at(0.0, 0),
            at(5.0, 10),
            at(10.0, 10),
            at(15.0, 10),
            at(20.0, 30),
            at(25.0, 30),
        ];
        assert_eq!(longest_stall(&samples), 10.0);
        assert_eq!(longest_stall(&samples[..2]), 0.0);
    }

    #[test]
    fn reads_an_unlabelled_series() {
        let text = "# TYPE custos_proposal_queue_depth gauge\ncustos_proposal_queue_depth 12\n\
                    custos_writes_in_flight 3.0\n";
        assert_eq!(metric_value(text, "custos_proposal_queue_depth"), Some(12));
        assert_eq!(metric_value(text, "custos_writes_in_flight"), Some(3));
        assert_eq!(metric_value(text, "custos_missing"), None);
    }
}
