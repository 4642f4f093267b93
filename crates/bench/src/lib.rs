//! `custos bench`: one load generator for custos (OpenStorage SDK over gRPC) and etcd v3, so the
//! two are measured with the same client and concurrency model in the same run.
//!
//! N clients (tokio tasks) share P connections (HTTP/2 channels) spread round-robin over the
//! target members; client `i` uses connection `i % P`. Clients take operation numbers from one
//! counter until the requested count is issued or the deadline passes, so every loop is bounded
//! in count and time. Latency is measured per successful operation on the client; throughput is
//! successful operations over the time from the start to the last client's end. The CPU seconds
//! (user + system) of the given server processes are read from `/proc` before and after.
//!
//! `flood` is a different shape (issue #5): one sequential writer whose latency is compared
//! between quiet phases and phases in which another member is flooded with bad tokens.
//! `contention` (issue #20) is another: linearizable readers whose latency is compared between
//! quiet phases and phases with 100 concurrent writers.

pub mod contention;
pub mod custos;
pub mod etcd;
pub mod failover;
pub mod flood;
pub mod overload;
pub mod proc;

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a benchmark could not run (errors of single operations are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid benchmark options: {0}")]
    Options(String),
    #[error("cannot set up the run against {system}: {message}")]
    Setup {
        system: &'static str,
        message: String,
    },
    #[error("server process {0} is not running (no /proc/{0}/stat)")]
    NoProcess(u32),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What each operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// A new object per operation: `Volume.Create` with a unique name / `Put` of a unique key.
    Write,
    /// Creates the read key space (objects `0..ops`); idempotent, so it may be run again.
    Preload,
    /// `Volume.Inspect` / `Range` of one object picked uniformly from the key space, through
    /// the leader's read barrier (linearizable).
    ReadLinearizable,
    /// The same from the contacted member's local state (serializable).
    ReadSerializable,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Preload => "preload",
            Workload::ReadLinearizable => "read-linearizable",
            Workload::ReadSerializable => "read-serializable",
        }
    }
}

/// Which members the connections go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The current leader only (how the etcd baseline sends writes).
    Leader,
    /// Every member, connections spread round-robin.
    All,
}

/// One benchmark run.
#[derive(Clone, Debug)]
pub struct Options {
    pub workload: Workload,
    pub target: Target,
    /// Concurrent clients (each with at most one operation in flight).
    pub clients: usize,
    /// Connections the clients share.
    pub connections: usize,
    /// Operations to issue in total.
    pub ops: u64,
    /// The run stops issuing operations after this long.
    pub deadline: Duration,
    /// Per-operation deadline (sent as `grpc-timeout`).
    pub op_timeout: Duration,
    /// Size of the read key space (objects written by `preload`).
    pub keys: u64,
    /// Server processes whose CPU time is measured (all members).
    pub server_pids: Vec<u32>,
    /// Wait (bounded) for the machine to be below this busy share before starting.
    pub idle_below_pct: Option<f64>,
    pub idle_max_wait: Duration,
    /// Free-form tag copied into the report (e.g. `auth` / `no-auth`).
    pub label: String,
    /// Write every successful latency (µs, one per line) here.
    pub latencies_file: Option<PathBuf>,
}

impl Options {
    fn check(&self) -> Result<(), BenchError> {
        let bad = |m: &str| Err(BenchError::Options(m.to_string()));
        if self.clients == 0 || self.connections == 0 {
            return bad("--clients and --connections must be at least 1");
        }
        if self.connections > self.clients {
            return bad("--connections must not exceed --clients");
        }
        if self.ops == 0 {
            return bad("--ops must be at least 1");
        }
        if self.keys == 0 {
            return bad("--keys must be at least 1");
        }
        Ok(())
    }
}

/// Latency figures of the successful operations, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// The outcome of one run, printed as JSON by `custos bench -o json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub system: String,
    pub label: String,
    pub workload: Workload,
    pub target: Target,
    pub clients: usize,
    pub connections: usize,
    /// Members the connections went to.
    pub endpoints: Vec<String>,
    pub ops_requested: u64,
    /// Operations issued before the count or the deadline ran out.
    pub ops_issued: u64,
    pub ops_ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Whether the deadline stopped the run before every operation was issued.
    pub deadline_hit: bool,
    pub elapsed_s: f64,
    pub ops_per_s: f64,
    pub latency_ms: Latency,
    /// CPU seconds of all measured server processes during the run.
    pub server_cpu_s: f64,
    pub server_cpu_ms_per_op: f64,
    /// CPU seconds of this load generator during the run.
    pub client_cpu_s: f64,
    pub client_cpu_ms_per_op: f64,
    /// Busy CPU seconds of the whole machine during the run, and the part neither the servers
    /// nor the load generator used (other tenants: a large share makes the run suspect).
    pub machine_busy_s: f64,
    pub foreign_cpu_s: f64,
    pub idle_gate: Option<proc::IdleGate>,
}

/// What the clients measured.
struct LoadResult {
    latencies_us: Vec<u64>,
    issued: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    deadline_hit: bool,
}

/// Runs `op(client, n)` for n in `0..ops` from `clients` concurrent tasks, bounded by `ops` and
/// `deadline`; each call is also bounded by `op_timeout` (plus a second of grace, for a call that
/// ignores its own gRPC deadline).
async fn run_load<F, Fut>(
    clients: usize,
    ops: u64,
    deadline: Duration,
    op_timeout: Duration,
    op: F,
) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop_at = start + deadline;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let op = op.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                if Instant::now() >= stop_at {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= ops {
                    break;
                }
                let t0 = Instant::now();
                let r = tokio::time::timeout(op_timeout + Duration::from_secs(1), op(client, n))
                    .await
                    .unwrap_or_else(|_| Err("timed out".to_string()));
                match r {
                    Ok(()) => lat.push(t0.elapsed().as_micros().max(1) as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, errors, first_error, start.elapsed())
        });
    }
    let mut out = LoadResult {
        latencies_us: Vec::new(),
        issued: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        deadline_hit: false,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((lat, errors, first, ended)) => {
                out.latencies_us.extend(lat);
                out.errors += errors;
                if out.first_error.is_none() {
                    out.first_error = first;
                }
                out.elapsed = out.elapsed.max(ended);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert(format!("client task failed: {e}"));
            }
        }
    }
    out.issued = next.load(Ordering::Relaxed).min(ops);
    out.deadline_hit = out.issued < ops;
    out
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn latency(sorted_us: &[u64]) -> Latency {
    let ms = |us: u64| us as f64 / 1000.0;
    let mean = if sorted_us.is_empty() {
        0.0
    } else {
        sorted_us.iter().sum::<u64>() as f64 / sorted_us.len() as f64 / 1000.0
    };
    Latency {
        p50: ms(percentile(sorted_us, 50.0)),
        p90: ms(percentile(sorted_us, 90.0)),
        p99: ms(percentile(sorted_us, 99.0)),
        max: ms(sorted_us.last().copied().unwrap_or(0)),
        mean,
    }
}

/// CPU counters taken at one instant.
struct CpuSnapshot {
    servers: f64,
    own: f64,
    machine_busy: f64,
}

fn cpu_snapshot(pids: &[u32]) -> Result<CpuSnapshot, BenchError> {
    let mut servers = 0.0;
    for &pid in pids {
        servers += proc::process_cpu_seconds(pid).ok_or(BenchError::NoProcess(pid))?;
    }
    Ok(CpuSnapshot {
        servers,
        own: proc::own_cpu_seconds().unwrap_or(0.0),
        machine_busy: proc::machine_cpu_seconds().map_or(0.0, |(b, _)| b),
    })
}

/// Measures one run: the idle gate, CPU counters around the load, and the report.
async fn measure<F, Fut>(
    system: &'static str,
    opts: &Options,
    endpoints: Vec<String>,
    op: F,
) -> Result<Report, BenchError>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let idle_gate = match opts.idle_below_pct {
        Some(pct) => Some(proc::wait_for_idle(pct, opts.idle_max_wait).await),
        None => None,
    };
    let before = cpu_snapshot(&opts.server_pids)?;
    let load = run_load(opts.clients, opts.ops, opts.deadline, opts.op_timeout, op).await;
    let after = cpu_snapshot(&opts.server_pids)?;
    let mut lat = load.latencies_us;
    if let Some(path) = &opts.latencies_file {
        let text: String = lat.iter().map(|us| format!("{us}\n")).collect();
        std::fs::write(path, text).map_err(|source| BenchError::Write {
            path: path.clone(),
            source,
        })?;
    }
    lat.sort_unstable();
    let ok = lat.len() as u64;
    let elapsed_s = load.elapsed.as_secs_f64();
    let per_op = |s: f64| if ok > 0 { 1000.0 * s / ok as f64 } else { 0.0 };
    let server_cpu_s = after.servers - before.servers;
    let client_cpu_s = after.own - before.own;
    let machine_busy_s = after.machine_busy - before.machine_busy;
    Ok(Report {
        system: system.to_string(),
        label: opts.label.clone(),
        workload: opts.workload,
        target: opts.target,
        clients: opts.clients,
        connections: opts.connections,
        endpoints,
        ops_requested: opts.ops,
        ops_issued: load.issued,
        ops_ok: ok,
        errors: load.errors,
        first_error: load.first_error,
        deadline_hit: load.deadline_hit,
        elapsed_s,
        ops_per_s: if elapsed_s > 0.0 {
            ok as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms: latency(&lat),
        server_cpu_s,
        server_cpu_ms_per_op: per_op(server_cpu_s),
        client_cpu_s,
        client_cpu_ms_per_op: per_op(client_cpu_s),
        machine_busy_s,
        foreign_cpu_s: (machine_busy_s - server_cpu_s - client_cpu_s).max(0.0),
        idle_gate,
    })
}

/// A per-run tag that keeps the names of written objects unique across runs.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % (1 << 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[tokio::test]
    async fn the_load_issues_exactly_the_requested_operations() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let r = run_load(
            7,
            100,
            Duration::from_secs(10),
            Duration::from_secs(1),
            move |_, n| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push(n);
                    if n % 10 == 0 {
                        Err(format!("op {n} failed"))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert_eq!(r.issued, 100);
        assert_eq!(r.errors, 10);
        assert_eq!(r.latencies_us.len(), 90);
        assert!(!r.deadline_hit);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn the_deadline_stops_the_load() {
        let r = run_load(
            2,
            1_000_000,
            Duration::from_millis(200),
            Duration::from_secs(1),
            |_, _| async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(())
            },
        )
        .await;
        assert!(r.deadline_hit);
        assert!(r.issued < 100, "{}", r.issued);
        assert!(r.elapsed < Duration::from_secs(2));
    }
}
