//! `custos bench contention` (issue #20): linearizable `Volume.Inspect` latency on one member
//! while 100 writers create volumes through the leader, against its own latency without them,
//! in one run. The target: the p99 under writers stays within 2x of the quiet p99.
//!
//! R readers (sequential loops, each on its own connection to the read member) inspect volumes
//! of the preloaded key space, picked at random, through the leader's read barrier. The run
//! alternates a quiet phase and a busy phase, `bursts` times; in busy phases W writers
//! (sharing P connections to the leader, as `custos bench custos --workload write` does) send
//! `Volume.Create`s back to back. Before a quiet phase starts, the writes in flight are waited
//! for (bounded). A read counts in the phase it started and ended in; reads that straddle a
//! switch are dropped. Interleaving makes load from elsewhere on the machine weigh on both
//! samples alike.
//!
//! The same shape runs against etcd (`run_etcd`), the peer the target is judged against on
//! the same machine: linearizable `KV.Range` of one preloaded key as the read, `KV.Put` of a
//! new 256-byte key as the write (the shapes of `custos bench etcd`).

use crate::custos::{leader_and_followers, setup};
use crate::etcd::Credentials;
use crate::{latency, proc, BenchError, Latency};
use custos_client::{Client, CreateVolume};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// Which member the readers call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadAt {
    /// The leader, which also takes every write.
    Leader,
    /// A member that does not lead (its read barrier asks the leader).
    Follower,
}

/// One contention benchmark run.
#[derive(Clone, Debug)]
pub struct ContentionOptions {
    /// Concurrent writers in busy phases, and the connections they share.
    pub writers: usize,
    pub writer_connections: usize,
    /// Sequential readers, each on its own connection.
    pub readers: usize,
    pub read_at: ReadAt,
    /// Quiet + busy phase pairs.
    pub bursts: usize,
    pub quiet: Duration,
    pub busy: Duration,
    /// Size of the preloaded key space the readers pick from.
    pub keys: u64,
    pub op_timeout: Duration,
    /// Server processes (all members) whose CPU time is measured.
    pub server_pids: Vec<u32>,
    pub idle_below_pct: Option<f64>,
    pub idle_max_wait: Duration,
    pub label: String,
}

impl ContentionOptions {
    fn check(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_string()));
        if self.writers == 0 || self.writer_connections == 0 || self.readers == 0 {
            return bad("--writers, --writer-connections and --readers must be at least 1");
        }
        if self.writer_connections > self.writers {
            return bad("--writer-connections must not exceed --writers");
        }
        if self.bursts == 0 || self.quiet.is_zero() || self.busy.is_zero() {
            return bad("--bursts, --quiet-ms and --busy-ms must be positive");
        }
        if self.keys == 0 {
            return bad("--keys must be at least 1");
        }
        Ok(())
    }
}

/// The readers' figures in one kind of phase (all bursts together).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReadPhase {
    pub reads: u64,
    pub read_errors: u64,
    pub elapsed_s: f64,
    pub reads_per_s: f64,
    pub latency_ms: Latency,
    /// Writes acknowledged in these phases (none in quiet ones), and their rate.
    pub writes: u64,
    pub writes_per_s: f64,
    /// CPU seconds of all measured servers in these phases.
    pub servers_cpu_s: f64,
}

/// The outcome of one run, printed as JSON by `custos bench contention -o json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContentionReport {
    pub system: String,
    pub label: String,
    pub workload: String,
    pub leader: String,
    /// Where the readers read (SDK address).
    pub read_member: String,
    pub writers: usize,
    pub readers: usize,
    pub bursts: usize,
    pub quiet_ms_per_burst: u64,
    pub busy_ms_per_burst: u64,
    pub quiet: ReadPhase,
    pub busy: ReadPhase,
    pub write_errors: u64,
    pub first_read_error: Option<String>,
    pub first_write_error: Option<String>,
    /// Busy ÷ quiet read latency (issue #20's target: p99 ratio ≤ 2).
    pub p99_ratio: f64,
    pub p50_ratio: f64,
    pub client_cpu_s: f64,
    pub idle_gate: Option<proc::IdleGate>,
}

/// What the loops share.
#[derive(Default)]
struct Shared {
    /// The current phase: a counter whose remainder by 3 says what it is: 0 before the run
    /// and while writes drain (reads not counted), 1 quiet, 2 busy (writers write).
    phase: AtomicU64,
    stop: AtomicBool,
    writes_in_flight: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    read_errors: [AtomicU64; 2],
    /// Read latencies (µs) of quiet (0) and busy (1) phases.
    samples: Mutex<[Vec<u64>; 2]>,
    first_read_error: Mutex<Option<String>>,
    first_write_error: Mutex<Option<String>>,
}

fn keep_first(slot: &Mutex<Option<String>>, e: String) {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert(e);
}

/// One connection of the loops, to either system.
#[derive(Clone)]
enum Conn {
    /// Reads `Volume.Inspect` of one of these ids; writes `Volume.Create`.
    Custos {
        client: Client,
        ids: Arc<Vec<String>>,
    },
    /// Reads a linearizable `KV.Range` of one of the first `keys` preloaded keys; writes a
    /// `KV.Put` of a new key.
    Etcd {
        channel: Channel,
        token: Option<MetadataValue<Ascii>>,
        keys: u64,
        timeout: Duration,
    },
}

impl Conn {
    async fn read(&self) -> Result<(), String> {
        match self {
            Conn::Custos { client, ids } => {
                let id = &ids[rand::random_range(0..ids.len())];
                client
                    .inspect_volume(id)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Conn::Etcd {
                channel,
                token,
                keys,
                timeout,
            } => {
                let key = crate::etcd::key_name(rand::random_range(0..*keys));
                crate::etcd::get(channel, token, key, false, *timeout).await
            }
        }
    }

    /// Writes the new object `name`.
    async fn write(&self, name: String) -> Result<(), String> {
        match self {
            Conn::Custos { client, .. } => {
                let opts = CreateVolume {
                    name,
                    size: 1 << 20,
                    ha_level: 1,
                    ..Default::default()
                };
                client
                    .create_volume(&opts)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Conn::Etcd {
                channel,
                token,
                timeout,
                ..
            } => {
                let value = vec![b'v'; crate::etcd::VALUE_SIZE];
                crate::etcd::put(channel, token, format!("/bench/{name}"), value, *timeout).await
            }
        }
    }
}

async fn read_loop(conn: Conn, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let phase = shared.phase.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let result = conn.read().await;
        let us = t0.elapsed().as_micros().max(1) as u64;
        if shared.phase.load(Ordering::SeqCst) != phase || phase.is_multiple_of(3) {
            continue; // straddled a switch, or not measured
        }
        let busy = (phase % 3 - 1) as usize;
        match result {
            Ok(_) => shared.samples.lock().unwrap_or_else(|p| p.into_inner())[busy].push(us),
            Err(e) => {
                shared.read_errors[busy].fetch_add(1, Ordering::SeqCst);
                keep_first(&shared.first_read_error, e);
            }
        }
    }
}

async fn write_loop(conn: Conn, w: usize, tag: String, shared: Arc<Shared>) {
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        // Counted in flight before looking at the phase, so a quiet phase that waited for no
        // write in flight cannot overlap one that is about to start.
        shared.writes_in_flight.fetch_add(1, Ordering::SeqCst);
        if shared.phase.load(Ordering::SeqCst) % 3 != 2 {
            shared.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let name = format!("contend-{tag}-{w}-{n}");
        n += 1;
        match conn.write(name).await {
            Ok(_) => {
                shared.writes.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                shared.write_errors.fetch_add(1, Ordering::SeqCst);
                keep_first(&shared.first_write_error, e);
            }
        }
        shared.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn servers_cpu(pids: &[u32]) -> Result<f64, BenchError> {
    let mut total = 0.0;
    for &pid in pids {
        total += proc::process_cpu_seconds(pid).ok_or(BenchError::NoProcess(pid))?;
    }
    Ok(total)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Summarises one kind of phase.
fn read_phase(
    mut us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    writes: u64,
    cpu: f64,
) -> ReadPhase {
    us.sort_unstable();
    let s = elapsed.as_secs_f64();
    ReadPhase {
        reads: us.len() as u64,
        read_errors: errors,
        elapsed_s: s,
        reads_per_s: ratio(us.len() as f64, s),
        latency_ms: latency(&us),
        writes,
        writes_per_s: ratio(writes as f64, s),
        servers_cpu_s: cpu,
    }
}

/// Runs the contention benchmark against the custos cluster at `endpoints`, as `token`.
pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    opts: &ContentionOptions,
) -> Result<ContentionReport, BenchError> {
    opts.check()?;
    let (leader, followers) = leader_and_followers(endpoints, token).await?;
    let read_member = match opts.read_at {
        ReadAt::Leader => leader.clone(),
        ReadAt::Follower => followers
            .first()
            .cloned()
            .ok_or_else(|| setup("no member besides the leader to read from"))?,
    };
    let connect = |addr: &str| -> Result<Client, BenchError> {
        Ok(Client::new(&[addr.to_string()], token)
            .map_err(setup)?
            .with_timeout(opts.op_timeout))
    };
    let probe = connect(&read_member)?;
    let mut ids = probe.enumerate_volumes().await.map_err(setup)?;
    ids.sort();
    ids.truncate(opts.keys as usize);
    if ids.is_empty() {
        return Err(setup("no volumes to read: run the preload workload first"));
    }
    let ids = Arc::new(ids);
    let mut readers = Vec::with_capacity(opts.readers);
    for _ in 0..opts.readers {
        let client = connect(&read_member)?;
        client.status().await.map_err(setup)?;
        readers.push(Conn::Custos {
            client,
            ids: ids.clone(),
        });
    }
    let mut writers = Vec::with_capacity(opts.writer_connections);
    for _ in 0..opts.writer_connections {
        let client = connect(&leader)?;
        client.status().await.map_err(setup)?;
        writers.push(Conn::Custos {
            client,
            ids: ids.clone(),
        });
    }
    drive("custos", leader, read_member, readers, writers, opts).await
}

/// Runs the same contention benchmark against the etcd cluster at `endpoints` (client
/// `host:port`s, keys preloaded by `custos bench etcd --workload preload`).
pub async fn run_etcd(
    endpoints: &[String],
    creds: Option<&Credentials>,
    opts: &ContentionOptions,
) -> Result<ContentionReport, BenchError> {
    opts.check()?;
    let (leader, followers) = crate::etcd::leader_and_followers(endpoints, creds).await?;
    let read_member = match opts.read_at {
        ReadAt::Leader => leader.clone(),
        ReadAt::Follower => followers
            .first()
            .cloned()
            .ok_or_else(|| BenchError::Setup {
                system: "etcd",
                message: "no member besides the leader to read from".into(),
            })?,
    };
    let connect = |addr: String| async move {
        let channel = crate::etcd::connect(&addr).await?;
        let token = crate::etcd::authenticate(&channel, creds).await?;
        Ok::<Conn, BenchError>(Conn::Etcd {
            channel,
            token,
            keys: opts.keys,
            timeout: opts.op_timeout,
        })
    };
    let mut readers = Vec::with_capacity(opts.readers);
    for _ in 0..opts.readers {
        let conn = connect(read_member.clone()).await?;
        // The key space must be there: one read before the run.
        conn.read().await.map_err(|e| BenchError::Setup {
            system: "etcd",
            message: e,
        })?;
        readers.push(conn);
    }
    let mut writers = Vec::with_capacity(opts.writer_connections);
    for _ in 0..opts.writer_connections {
        writers.push(connect(leader.clone()).await?);
    }
    drive("etcd", leader, read_member, readers, writers, opts).await
}

/// The phases of one run over connections already open: `readers` (one loop each) and
/// `writers` (shared by the writer loops, round-robin).
async fn drive(
    system: &str,
    leader: String,
    read_member: String,
    readers: Vec<Conn>,
    write_conns: Vec<Conn>,
    opts: &ContentionOptions,
) -> Result<ContentionReport, BenchError> {
    let shared = Arc::new(Shared::default());
    let mut tasks = Vec::new();
    for conn in readers {
        tasks.push(tokio::spawn(read_loop(conn, shared.clone())));
    }
    let tag = format!("{:x}", rand::random::<u64>());
    for w in 0..opts.writers {
        let conn = write_conns[w % opts.writer_connections].clone();
        tasks.push(tokio::spawn(write_loop(
            conn,
            w,
            tag.clone(),
            shared.clone(),
        )));
    }

    let idle_gate = match opts.idle_below_pct {
        Some(pct) => Some(proc::wait_for_idle(pct, opts.idle_max_wait).await),
        None => None,
    };
    let client_cpu_before = proc::own_cpu_seconds().unwrap_or(0.0);
    let mut elapsed = [Duration::ZERO; 2];
    let mut cpu = [0.0f64; 2];
    let mut writes = [0u64; 2];
    let mut failure = None;
    'bursts: for burst in 0..opts.bursts as u64 {
        // Drain (writers stopped, reads not counted), then quiet, then busy.
        shared.phase.store(3 * burst + 3, Ordering::SeqCst);
        let drain_until = Instant::now() + opts.op_timeout + Duration::from_secs(2);
        while shared.writes_in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for (i, how_long) in [(0, opts.quiet), (1, opts.busy)] {
            let (t0, w0) = (Instant::now(), shared.writes.load(Ordering::SeqCst));
            let c0 = servers_cpu(&opts.server_pids);
            shared
                .phase
                .store(3 * burst + 4 + i as u64, Ordering::SeqCst);
            tokio::time::sleep(how_long).await;
            let c1 = servers_cpu(&opts.server_pids);
            elapsed[i] += t0.elapsed();
            writes[i] += shared.writes.load(Ordering::SeqCst) - w0;
            match (c0, c1) {
                (Ok(c0), Ok(c1)) => cpu[i] += c1 - c0,
                (Err(e), _) | (_, Err(e)) => {
                    failure = Some(e);
                    break 'bursts;
                }
            }
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    shared.phase.store(0, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let client_cpu_s = proc::own_cpu_seconds().unwrap_or(0.0) - client_cpu_before;
    let [quiet_us, busy_us] =
        std::mem::take(&mut *shared.samples.lock().unwrap_or_else(|p| p.into_inner()));
    let errors = |i: usize| shared.read_errors[i].load(Ordering::SeqCst);
    let quiet = read_phase(quiet_us, errors(0), elapsed[0], writes[0], cpu[0]);
    let busy = read_phase(busy_us, errors(1), elapsed[1], writes[1], cpu[1]);
    let take =
        |slot: &Mutex<Option<String>>| slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(ContentionReport {
        system: system.to_string(),
        label: opts.label.clone(),
        workload: "contention".to_string(),
        leader,
        read_member,
        writers: opts.writers,
        readers: opts.readers,
        bursts: opts.bursts,
        quiet_ms_per_burst: opts.quiet.as_millis() as u64,
        busy_ms_per_burst: opts.busy.as_millis() as u64,
        p99_ratio: ratio(busy.latency_ms.p99, quiet.latency_ms.p99),
        p50_ratio: ratio(busy.latency_ms.p50, quiet.latency_ms.p50),
        quiet,
        busy,
        write_errors: shared.write_errors.load(Ordering::SeqCst),
        first_read_error: take(&shared.first_read_error),
        first_write_error: take(&shared.first_write_error),
        client_cpu_s,
        idle_gate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> ContentionOptions {
        ContentionOptions {
            writers: 100,
            writer_connections: 10,
            readers: 4,
            read_at: ReadAt::Leader,
            bursts: 5,
            quiet: Duration::from_secs(1),
            busy: Duration::from_secs(1),
            keys: 100,
            op_timeout: Duration::from_secs(5),
            server_pids: vec![],
            idle_below_pct: None,
            idle_max_wait: Duration::ZERO,
            label: String::new(),
        }
    }

    #[test]
    fn options_without_loops_or_phases_are_refused() {
        assert!(ok().check().is_ok());
        for bad in [
            ContentionOptions { writers: 0, ..ok() },
            ContentionOptions { readers: 0, ..ok() },
            ContentionOptions {
                writer_connections: 101,
                ..ok()
            },
            ContentionOptions { bursts: 0, ..ok() },
            ContentionOptions {
                busy: Duration::ZERO,
                ..ok()
            },
            ContentionOptions { keys: 0, ..ok() },
        ] {
            assert!(matches!(bad.check(), Err(BenchError::Options(_))));
        }
    }

    #[test]
    fn phases_summarise_their_samples() {
        let p = read_phase(
            vec![3000, 1000, 2000, 4000],
            1,
            Duration::from_secs(2),
            10,
            0.5,
        );
        assert_eq!((p.reads, p.read_errors, p.writes), (4, 1, 10));
        assert_eq!((p.reads_per_s, p.writes_per_s), (2.0, 5.0));
        assert_eq!((p.latency_ms.p50, p.latency_ms.max), (2.0, 4.0));
    }
}
