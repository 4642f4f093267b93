//! `custos bench flood` (issue #5): a legitimate writer's latency while another member is flooded
//! with requests carrying bad tokens, against its own latency without the flood, in one run.
//!
//! One writer does sequential `Volume.Create`s through the leader with a valid token. The run
//! alternates a quiet phase and a flood phase, `bursts` times; in flood phases K loops (each with
//! its own connection, as flooding clients have) send `Volume.Enumerate` to another member as
//! fast as it answers, with garbage tokens (`not-a-jwt-<loop>`, identical refusals the server
//! coalesces) on even loops and tokens from an untrusted issuer (a distinct issuer per request,
//! so every refusal is a new kind) on odd ones. Interleaving the phases makes load from
//! elsewhere on the machine, which comes and goes, weigh on both samples alike: the p99 and p50
//! ratios (flood ÷ quiet) show what the flood costs the writer. Before a quiet phase starts,
//! the flood requests in flight are waited for (bounded), so no flood request overlaps it; what
//! the server still does for the flood afterwards (proposing coalesced denial batches) does.

use crate::custos::{leader_and_followers, setup};
use crate::{latency, proc, BenchError, Latency};
use custos_client::model::Code;
use custos_client::{Client, CreateVolume};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One flood benchmark run.
#[derive(Clone, Debug)]
pub struct FloodOptions {
    /// Concurrent flood loops (K), each on its own connection.
    pub flood_loops: usize,
    /// Quiet + flood phase pairs.
    pub bursts: usize,
    pub quiet: Duration,
    pub flood: Duration,
    /// The member to flood (SDK address); by default one that does not lead.
    pub flood_target: Option<String>,
    /// Deadline of each call (the writer's and the flood's).
    pub op_timeout: Duration,
    /// Server processes (all members) whose CPU time is measured; the flooded member's memory
    /// is read from the one among them that listens on its address.
    pub server_pids: Vec<u32>,
    pub idle_below_pct: Option<f64>,
    pub idle_max_wait: Duration,
    pub label: String,
}

impl FloodOptions {
    fn check(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_string()));
        if self.flood_loops == 0 {
            return bad("--flood-loops must be at least 1");
        }
        if self.bursts == 0 {
            return bad("--bursts must be at least 1");
        }
        if self.quiet.is_zero() || self.flood.is_zero() {
            return bad("--quiet-ms and --flood-ms must be positive");
        }
        Ok(())
    }
}

/// The legitimate writer's figures in one kind of phase (all bursts together).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    /// Successful writes, and failed ones (a legitimate write must not fail).
    pub writes: u64,
    pub write_errors: u64,
    /// Wall time of these phases, summed over the bursts.
    pub elapsed_s: f64,
    pub writes_per_s: f64,
    pub latency_ms: Latency,
    /// CPU seconds in these phases: all measured servers, the flooded member, the whole
    /// machine (busy).
    pub servers_cpu_s: f64,
    pub flooded_cpu_s: f64,
    pub machine_busy_s: f64,
}

/// The outcome of one flood run, printed as JSON by `custos bench flood -o json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodReport {
    pub system: String,
    pub label: String,
    pub workload: String,
    /// Where the writer writes and where the flood goes (SDK addresses).
    pub leader: String,
    pub flooded: String,
    pub flood_loops: usize,
    pub bursts: usize,
    pub quiet_ms_per_burst: u64,
    pub flood_ms_per_burst: u64,
    pub quiet: Phase,
    pub flood: Phase,
    pub first_write_error: Option<String>,
    /// Refusals (`UNAUTHENTICATED`) the flood received, by token kind.
    pub refusals: u64,
    pub refusals_garbage: u64,
    pub refusals_untrusted: u64,
    /// Refusals per second of flood phase.
    pub refusals_per_s: f64,
    /// Flood calls that ended otherwise (accepted, another code, timed out): should be none.
    pub flood_errors: u64,
    pub first_flood_error: Option<String>,
    /// Flood ÷ quiet latency of the legitimate writer (issue #5's target: p99 ratio ≤ 2).
    pub p99_ratio: f64,
    pub p50_ratio: f64,
    /// The flooded member's process and resident memory before and after (KiB), when found.
    pub flooded_pid: Option<u32>,
    pub flooded_rss_kib_before: Option<u64>,
    pub flooded_rss_kib_after: Option<u64>,
    /// CPU seconds of this load generator over the whole run (writer and flood).
    pub client_cpu_s: f64,
    pub idle_gate: Option<proc::IdleGate>,
}

/// A syntactically valid JWT (HS256 header, claims, a signature) from issuer `evil-<n>`, which
/// nobody trusts: each `n` is a distinct refusal.
pub fn untrusted_token(n: u64) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(&format!(r#"{{"iss":"evil-{n}","sub":"x"}}"#))
    )
}

/// The token flood loop `f` sends in its `n`th call.
fn flood_token(f: usize, n: u64) -> String {
    if f % 2 == 1 {
        untrusted_token(n)
    } else {
        format!("not-a-jwt-{f}")
    }
}

/// What the flood loops share.
#[derive(Default)]
struct FloodState {
    /// Whether loops send (a flood phase) or wait.
    active: AtomicBool,
    stop: AtomicBool,
    /// Calls in flight: a quiet phase starts when they are done.
    in_flight: AtomicU64,
    garbage: AtomicU64,
    untrusted: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl FloodState {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }
}

async fn flood_loop(conn: Client, f: usize, state: Arc<FloodState>, op_timeout: Duration) {
    let mut n = 0u64;
    while !state.stop.load(Ordering::SeqCst) {
        // Counted in flight before looking at the phase, so a quiet phase that waited for no
        // call in flight cannot overlap one that is about to start.
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        if !state.active.load(Ordering::SeqCst) {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let token = flood_token(f, n);
        n += 1;
        let result = match conn.with_token(Some(&token)) {
            Ok(client) => {
                tokio::time::timeout(op_timeout + Duration::from_secs(1), async move {
                    client.enumerate_volumes().await
                })
                .await
            }
            Err(e) => {
                state.error(format!("token not sendable: {e}"));
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
        };
        match result {
            Ok(Err(e)) if e.code() == Some(Code::Unauthenticated) => {
                let counter = if f % 2 == 1 {
                    &state.untrusted
                } else {
                    &state.garbage
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(e)) => state.error(format!("flood call refused otherwise: {e}")),
            Ok(Ok(_)) => state.error("a flood call with a bad token was accepted".to_string()),
            Err(_) => state.error("flood call timed out".to_string()),
        }
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// CPU counters at one instant: all servers, the flooded member, the machine.
#[derive(Clone, Copy)]
struct Cpu {
    servers: f64,
    flooded: f64,
    machine_busy: f64,
}

fn cpu(pids: &[u32], flooded: Option<u32>) -> Result<Cpu, BenchError> {
    let mut servers = 0.0;
    for &pid in pids {
        servers += proc::process_cpu_seconds(pid).ok_or(BenchError::NoProcess(pid))?;
    }
    Ok(Cpu {
        servers,
        flooded: flooded.and_then(proc::process_cpu_seconds).unwrap_or(0.0),
        machine_busy: proc::machine_cpu_seconds().map_or(0.0, |(b, _)| b),
    })
}

/// The writer's samples of one kind of phase, accumulated over the bursts.
#[derive(Default)]
struct Samples {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    servers_cpu_s: f64,
    flooded_cpu_s: f64,
    machine_busy_s: f64,
}

impl Samples {
    fn add_cpu(&mut self, before: Cpu, after: Cpu) {
        self.servers_cpu_s += after.servers - before.servers;
        self.flooded_cpu_s += after.flooded - before.flooded;
        self.machine_busy_s += after.machine_busy - before.machine_busy;
    }

    fn phase(mut self) -> Phase {
        self.latencies_us.sort_unstable();
        let elapsed_s = self.elapsed.as_secs_f64();
        let writes = self.latencies_us.len() as u64;
        Phase {
            writes,
            write_errors: self.errors,
            elapsed_s,
            writes_per_s: if elapsed_s > 0.0 {
                writes as f64 / elapsed_s
            } else {
                0.0
            },
            latency_ms: latency(&self.latencies_us),
            servers_cpu_s: self.servers_cpu_s,
            flooded_cpu_s: self.flooded_cpu_s,
            machine_busy_s: self.machine_busy_s,
        }
    }
}

/// Sequential creates through `writer` for `how_long`, into `samples`.
async fn write_for(
    writer: &Client,
    tag: &str,
    seq: &mut u64,
    how_long: Duration,
    samples: &mut Samples,
    first_error: &mut Option<String>,
) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        let opts = CreateVolume {
            name: format!("flood-{tag}-{seq}"),
            size: 1 << 20,
            ha_level: 1,
            ..Default::default()
        };
        *seq += 1;
        let t0 = Instant::now();
        match writer.create_volume(&opts).await {
            Ok(_) => samples
                .latencies_us
                .push(t0.elapsed().as_micros().max(1) as u64),
            Err(e) => {
                samples.errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The port of a `host:port` address.
fn port_of(addr: &str) -> Option<u16> {
    let hostport = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// Runs the flood benchmark against the custos cluster at `endpoints`; the writer calls as
/// `token`.
pub async fn run(
    endpoints: &[String],
    token: Option<&str>,
    opts: &FloodOptions,
) -> Result<FloodReport, BenchError> {
    opts.check()?;
    let (leader, followers) = leader_and_followers(endpoints, token).await?;
    let flooded = match &opts.flood_target {
        Some(t) => t.clone(),
        None => followers
            .first()
            .cloned()
            .ok_or_else(|| setup("no member besides the leader to flood"))?,
    };
    let writer = Client::new(std::slice::from_ref(&leader), token)
        .map_err(setup)?
        .with_timeout(opts.op_timeout);
    // Connect before the clock starts.
    writer.status().await.map_err(setup)?;
    let flooded_pid = port_of(&flooded).and_then(|p| proc::listening_pid(&opts.server_pids, p));

    let state = Arc::new(FloodState::default());
    let mut loops = Vec::with_capacity(opts.flood_loops);
    for f in 0..opts.flood_loops {
        let conn = Client::new(std::slice::from_ref(&flooded), None)
            .map_err(setup)?
            .with_timeout(opts.op_timeout);
        conn.status().await.map_err(setup)?;
        loops.push(tokio::spawn(flood_loop(
            conn,
            f,
            state.clone(),
            opts.op_timeout,
        )));
    }

    let idle_gate = match opts.idle_below_pct {
        Some(pct) => Some(proc::wait_for_idle(pct, opts.idle_max_wait).await),
        None => None,
    };
    let rss_before = flooded_pid.and_then(proc::rss_kib);
    let client_cpu_before = proc::own_cpu_seconds().unwrap_or(0.0);
    let tag = format!("{:x}", rand::random::<u64>());
    let (mut quiet, mut flood) = (Samples::default(), Samples::default());
    let mut first_write_error = None;
    let mut seq = 0u64;
    let mut failure = None;
    for _ in 0..opts.bursts {
        state.active.store(false, Ordering::SeqCst);
        let drain_until = Instant::now() + opts.op_timeout + Duration::from_secs(2);
        while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (t0, c0) = (Instant::now(), cpu(&opts.server_pids, flooded_pid));
        write_for(
            &writer,
            &tag,
            &mut seq,
            opts.quiet,
            &mut quiet,
            &mut first_write_error,
        )
        .await;
        let (t1, c1) = (Instant::now(), cpu(&opts.server_pids, flooded_pid));
        state.active.store(true, Ordering::SeqCst);
        write_for(
            &writer,
            &tag,
            &mut seq,
            opts.flood,
            &mut flood,
            &mut first_write_error,
        )
        .await;
        let (t2, c2) = (Instant::now(), cpu(&opts.server_pids, flooded_pid));
        quiet.elapsed += t1 - t0;
        flood.elapsed += t2 - t1;
        match (c0, c1, c2) {
            (Ok(c0), Ok(c1), Ok(c2)) => {
                quiet.add_cpu(c0, c1);
                flood.add_cpu(c1, c2);
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                failure = Some(e);
                break;
            }
        }
    }
    state.active.store(false, Ordering::SeqCst);
    state.stop.store(true, Ordering::SeqCst);
    for l in loops {
        if let Err(e) = l.await {
            state.error(format!("flood loop failed: {e}"));
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let client_cpu_s = proc::own_cpu_seconds().unwrap_or(0.0) - client_cpu_before;
    let rss_after = flooded_pid.and_then(proc::rss_kib);

    let flood_s = flood.elapsed.as_secs_f64();
    let (quiet, flood) = (quiet.phase(), flood.phase());
    let garbage = state.garbage.load(Ordering::SeqCst);
    let untrusted = state.untrusted.load(Ordering::SeqCst);
    let refusals = garbage + untrusted;
    let first_flood_error = state
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(FloodReport {
        system: "custos".to_string(),
        label: opts.label.clone(),
        workload: "flood".to_string(),
        leader,
        flooded,
        flood_loops: opts.flood_loops,
        bursts: opts.bursts,
        quiet_ms_per_burst: opts.quiet.as_millis() as u64,
        flood_ms_per_burst: opts.flood.as_millis() as u64,
        p99_ratio: ratio(flood.latency_ms.p99, quiet.latency_ms.p99),
        p50_ratio: ratio(flood.latency_ms.p50, quiet.latency_ms.p50),
        quiet,
        flood,
        first_write_error,
        refusals,
        refusals_garbage: garbage,
        refusals_untrusted: untrusted,
        refusals_per_s: ratio(refusals as f64, flood_s),
        flood_errors: state.errors.load(Ordering::SeqCst),
        first_flood_error,
        flooded_pid,
        flooded_rss_kib_before: rss_before,
        flooded_rss_kib_after: rss_after,
        client_cpu_s,
        idle_gate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_loops_send_one_garbage_token_and_odd_loops_distinct_untrusted_ones() {
        assert_eq!(flood_token(0, 1), "not-a-jwt-0");
        assert_eq!(flood_token(0, 2), flood_token(0, 1));
        assert_eq!(flood_token(2, 7), "not-a-jwt-2");
        assert_ne!(flood_token(1, 1), flood_token(1, 2));
        use base64::Engine;
        let token = flood_token(3, 42);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        assert_eq!(claims["iss"], "evil-42");
    }

    #[test]
    fn ports_are_read_from_addresses() {
        assert_eq!(port_of("127.0.0.1:9101"), Some(9101));
        assert_eq!(port_of("https://127.0.0.1:9102"), Some(9102));
        assert_eq!(port_of("localhost"), None);
    }

    #[test]
    fn phases_summarise_their_samples() {
        let s = Samples {
            latencies_us: vec![3000, 1000, 2000, 4000],
            errors: 1,
            elapsed: Duration::from_secs(2),
            ..Samples::default()
        };
        let p = s.phase();
        assert_eq!((p.writes, p.write_errors), (4, 1));
        assert_eq!(p.writes_per_s, 2.0);
        assert_eq!((p.latency_ms.p50, p.latency_ms.max), (2.0, 4.0));
        assert_eq!(ratio(4.0, 2.0), 2.0);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }

    #[test]
    fn options_without_loops_bursts_or_phases_are_refused() {
        let ok = FloodOptions {
            flood_loops: 2,
            bursts: 5,
            quiet: Duration::from_secs(1),
            flood: Duration::from_secs(2),
            flood_target: None,
            op_timeout: Duration::from_secs(5),
            server_pids: vec![],
            idle_below_pct: None,
            idle_max_wait: Duration::ZERO,
            label: String::new(),
        };
        assert!(ok.check().is_ok());
        for bad in [
            FloodOptions {
                flood_loops: 0,
                ..ok.clone()
            },
            FloodOptions {
                bursts: 0,
                ..ok.clone()
            },
            FloodOptions {
                quiet: Duration::ZERO,
                ..ok.clone()
            },
        ] {
            assert!(matches!(bad.check(), Err(BenchError::Options(_))));
        }
    }
}
