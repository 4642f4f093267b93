//! `custos bench`: the load generator (crate `custos-bench`) against a custos cluster (the global
//! `--endpoint` and `--token`) or an etcd v3 cluster, and the denial-flood benchmark, printing
//! one report (`-o json` for scripts).

use crate::output::{self, Format};
use anyhow::Context as _;
use custos_bench::contention::{ContentionOptions, ContentionReport, ReadAt};
use custos_bench::flood::{FloodOptions, FloodReport};
use custos_bench::{etcd::Credentials, Options, Report, Target, Workload};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Drive custos through the SDK (`Volume.Create` / `Volume.Inspect`) at the global
    /// `--endpoint` list, calling as the global `--token` (none with auth off).
    Custos(LoadArgs),
    /// Drive etcd v3 (`KV.Put` / `KV.Range`).
    Etcd {
        /// etcd client addresses (host:port), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        etcd_endpoint: Vec<String>,
        /// etcd user (auth on); without one, calls carry no token.
        #[arg(long)]
        user: Option<String>,
        /// The user's password.
        #[arg(long, env = "CUSTOS_BENCH_ETCD_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Issue #5: a legitimate writer's latency (sequential `Volume.Create` through the leader,
    /// as the global `--token`) in quiet phases and in phases in which K loops flood another
    /// member with `Volume.Enumerate` calls carrying garbage and untrusted-issuer tokens.
    Flood(FloodArgs),
    /// Issue #20: linearizable `Volume.Inspect` latency on one member (as the global `--token`)
    /// in quiet phases and in phases in which 100 writers create volumes through the leader
    /// (run `custos bench custos --workload preload` first).
    Contention(ContentionArgs),
    /// One sequential writer for leader-failover trials: each attempt has a short deadline and
    /// is retried on the next member until acknowledged; reports when every write was
    /// acknowledged, the longest gap, and whether every acknowledged write reads back
    /// (`scripts/bench.sh failover` kills the leader meanwhile).
    Timeline(TimelineArgs),
    /// Issue #20: W writers (each updating its own volume, calls refused with
    /// RESOURCE_EXHAUSTED or UNAVAILABLE sent again after a pause) offer several times the
    /// cluster's write capacity for `--duration-secs`, while each member's memory, proposal
    /// queue and health answers are sampled; at the end every acknowledged write must be there.
    Overload(OverloadArgs),
}

#[derive(clap::Args)]
pub struct OverloadArgs {
    /// Concurrent writers, each with its own volume.
    #[arg(long, default_value_t = 3000)]
    writers: usize,
    /// Connections, spread over the members.
    #[arg(long, default_value_t = 30)]
    connections: usize,
    /// How long to offer the load, in seconds.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// How often to sample memory, queue and health, in seconds.
    #[arg(long, default_value_t = 5)]
    sample_secs: u64,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    op_timeout_ms: u64,
    /// Pause before sending a refused call again, in milliseconds.
    #[arg(long, default_value_t = 20)]
    retry_pause_ms: u64,
    /// Member pids, in the order of the global --endpoint list (resident memory).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// The members' /metrics addresses (host:port, plain HTTP), in the same order.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    #[arg(long, default_value = "overload")]
    label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SystemArg {
    /// custos at the global `--endpoint` list, as the global `--token`.
    Custos,
    /// etcd at `--etcd-endpoint`.
    Etcd,
}

/// Where the etcd peer is, with `--system etcd`.
#[derive(clap::Args)]
pub struct EtcdArgs {
    /// etcd client addresses (host:port), comma-separated (with `--system etcd`).
    #[arg(long, value_delimiter = ',')]
    etcd_endpoint: Vec<String>,
    /// etcd user (auth on).
    #[arg(long)]
    user: Option<String>,
    /// The etcd user's password.
    #[arg(long, env = "CUSTOS_BENCH_ETCD_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

impl EtcdArgs {
    /// The endpoints (required) and credentials (none without a user).
    fn target(self) -> anyhow::Result<(Vec<String>, Option<Credentials>)> {
        anyhow::ensure!(
            !self.etcd_endpoint.is_empty(),
            "--system etcd needs --etcd-endpoint"
        );
        let creds = etcd_credentials(self.user, self.password)?;
        Ok((self.etcd_endpoint, creds))
    }
}

#[derive(clap::Args)]
pub struct TimelineArgs {
    #[arg(long, value_enum)]
    system: SystemArg,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// How long to write, in seconds.
    #[arg(long, default_value_t = 8)]
    duration_secs: u64,
    /// Deadline of each attempt, in milliseconds.
    #[arg(long, default_value_t = 200)]
    attempt_timeout_ms: u64,
    /// How long reading back may take, in seconds.
    #[arg(long, default_value_t = 60)]
    verify_secs: u64,
}

#[derive(clap::Args)]
pub struct FloodArgs {
    /// Concurrent flood loops, each on its own connection: even ones send a garbage token,
    /// odd ones a token from a new untrusted issuer per call.
    #[arg(long, default_value_t = 2)]
    flood_loops: usize,
    /// Quiet + flood phase pairs (the phases interleave).
    #[arg(long, default_value_t = 5)]
    bursts: usize,
    /// Length of each quiet phase, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    quiet_ms: u64,
    /// Length of each flood phase, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    flood_ms: u64,
    /// The member to flood (SDK address). Default: a member that does not lead.
    #[arg(long)]
    flood_target: Option<String>,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    op_timeout_ms: u64,
    #[command(flatten)]
    run: RunArgs,
}

impl FloodArgs {
    fn options(&self) -> FloodOptions {
        FloodOptions {
            flood_loops: self.flood_loops,
            bursts: self.bursts,
            quiet: Duration::from_millis(self.quiet_ms),
            flood: Duration::from_millis(self.flood_ms),
            flood_target: self.flood_target.clone(),
            op_timeout: Duration::from_millis(self.op_timeout_ms),
            server_pids: self.run.pids.clone(),
            idle_below_pct: self.run.idle_below_pct,
            idle_max_wait: Duration::from_secs(self.run.idle_max_wait_secs),
            label: self.run.label.clone(),
        }
    }
}

#[derive(clap::Args)]
pub struct ContentionArgs {
    /// The system measured: custos at the global `--endpoint` list, or etcd at
    /// `--etcd-endpoint` (its keys preloaded by `custos bench etcd --workload preload`).
    #[arg(long, value_enum, default_value_t = SystemArg::Custos)]
    system: SystemArg,
    #[command(flatten)]
    etcd: EtcdArgs,
    /// Concurrent writers in busy phases.
    #[arg(long, default_value_t = 100)]
    writers: usize,
    /// Connections the writers share (to the leader).
    #[arg(long, default_value_t = 10)]
    writer_connections: usize,
    /// Sequential readers, each on its own connection.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// The member the readers call.
    #[arg(long, value_enum, default_value_t = ReadAtArg::Leader)]
    read_at: ReadAtArg,
    /// Quiet + busy phase pairs (the phases interleave).
    #[arg(long, default_value_t = 5)]
    bursts: usize,
    /// Length of each quiet phase, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    quiet_ms: u64,
    /// Length of each busy phase, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    busy_ms: u64,
    /// Size of the read key space (the first KEYS volumes by id).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Deadline of each call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    op_timeout_ms: u64,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ReadAtArg {
    Leader,
    Follower,
}

impl ContentionArgs {
    fn options(&self) -> ContentionOptions {
        ContentionOptions {
            writers: self.writers,
            writer_connections: self.writer_connections,
            readers: self.readers,
            read_at: match self.read_at {
                ReadAtArg::Leader => ReadAt::Leader,
                ReadAtArg::Follower => ReadAt::Follower,
            },
            bursts: self.bursts,
            quiet: Duration::from_millis(self.quiet_ms),
            busy: Duration::from_millis(self.busy_ms),
            keys: self.keys,
            op_timeout: Duration::from_millis(self.op_timeout_ms),
            server_pids: self.run.pids.clone(),
            idle_below_pct: self.run.idle_below_pct,
            idle_max_wait: Duration::from_secs(self.run.idle_max_wait_secs),
            label: self.run.label.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WorkloadArg {
    /// A new object per operation (Volume.Create of a unique name / Put of a unique key).
    Write,
    /// Create the read key space: objects 0..OPS (idempotent).
    Preload,
    /// Read one preloaded object per operation, linearizably.
    ReadLinearizable,
    /// Read one preloaded object per operation from the contacted member's state.
    ReadSerializable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TargetArg {
    Leader,
    All,
}

/// What every measured run takes: whose CPU to count, the idle gate, a label.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Server pids (all members) whose CPU time to measure, comma-separated (`flood`: the
    /// flooded member's memory is read from the one listening on its address).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Before starting, wait until the machine is less busy than this (percent, 1 s samples).
    #[arg(long)]
    idle_below_pct: Option<f64>,
    /// Wait at most this long for the idle gate (the run starts anyway and says so).
    #[arg(long, default_value_t = 60)]
    idle_max_wait_secs: u64,
    /// A tag copied into the report.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(clap::Args)]
pub struct LoadArgs {
    #[arg(long, value_enum)]
    workload: WorkloadArg,
    /// Members to connect to. Default: the leader for writes, all members for reads.
    #[arg(long, value_enum)]
    target: Option<TargetArg>,
    /// Concurrent clients, each with one operation in flight.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Connections the clients share (client i uses connection i mod P). Default: min(clients, 10).
    #[arg(long)]
    connections: Option<usize>,
    /// Operations in total.
    #[arg(long, default_value_t = 1000)]
    ops: u64,
    /// Stop issuing operations after this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline_secs: u64,
    /// Deadline of each operation, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    op_timeout_ms: u64,
    /// Size of the read key space (custos: the first KEYS volumes by id).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    #[command(flatten)]
    run: RunArgs,
    /// Write every successful latency (µs, one per line) to this file.
    #[arg(long)]
    latencies: Option<PathBuf>,
}

impl LoadArgs {
    fn options(&self) -> Options {
        let workload = match self.workload {
            WorkloadArg::Write => Workload::Write,
            WorkloadArg::Preload => Workload::Preload,
            WorkloadArg::ReadLinearizable => Workload::ReadLinearizable,
            WorkloadArg::ReadSerializable => Workload::ReadSerializable,
        };
        let target = match (self.target, workload) {
            (Some(TargetArg::Leader), _) => Target::Leader,
            (Some(TargetArg::All), _) => Target::All,
            (None, Workload::Write | Workload::Preload) => Target::Leader,
            (None, _) => Target::All,
        };
        Options {
            workload,
            target,
            clients: self.clients,
            connections: self.connections.unwrap_or(self.clients.min(10)),
            ops: self.ops,
            deadline: Duration::from_secs(self.deadline_secs),
            op_timeout: Duration::from_millis(self.op_timeout_ms),
            keys: self.keys,
            server_pids: self.run.pids.clone(),
            idle_below_pct: self.run.idle_below_pct,
            idle_max_wait: Duration::from_secs(self.run.idle_max_wait_secs),
            label: self.run.label.clone(),
            latencies_file: self.latencies.clone(),
        }
    }
}

pub async fn run(command: BenchCommand, ctx: &output::Context) -> anyhow::Result<()> {
    let report = match command {
        BenchCommand::Timeline(args) => return timeline(args, ctx).await,
        BenchCommand::Custos(load) => {
            let target = ctx.target()?;
            custos_bench::custos::run(&target.endpoints, target.token.as_deref(), &load.options())
                .await?
        }
        BenchCommand::Etcd {
            etcd_endpoint,
            user,
            password,
            load,
        } => {
            let creds = etcd_credentials(user, password)?;
            custos_bench::etcd::run(&etcd_endpoint, creds.as_ref(), &load.options()).await?
        }
        BenchCommand::Overload(a) => {
            let target = ctx.target()?;
            let opts = custos_bench::overload::OverloadOptions {
                writers: a.writers,
                connections: a.connections,
                duration: Duration::from_secs(a.duration_secs),
                sample_every: Duration::from_secs(a.sample_secs),
                op_timeout: Duration::from_millis(a.op_timeout_ms),
                retry_pause: Duration::from_millis(a.retry_pause_ms),
                server_pids: a.pids,
                metrics: a.metrics,
                label: a.label,
            };
            let report =
                custos_bench::overload::run(&target.endpoints, target.token.as_deref(), &opts)
                    .await?;
            if ctx.format == Format::Json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} acknowledged writes in {:.0} s ({:.0}/s); {} RESOURCE_EXHAUSTED, {} UNAVAILABLE, {} other; \
                     health answered {}/{}; RSS spread after the first minute {:?}; max queue {:?}; lost {} of {}",
                    report.acked,
                    report.duration_s,
                    report.acked_per_s,
                    report.exhausted,
                    report.unavailable,
                    report.other_errors,
                    report.health_answered,
                    report.health_checks,
                    report.rss_spread_after_first_minute,
                    report.max_queue_depth,
                    report.lost,
                    report.checked_volumes
                );
            }
            return Ok(());
        }
        BenchCommand::Flood(flood) => {
            let target = ctx.target()?;
            let report = custos_bench::flood::run(
                &target.endpoints,
                target.token.as_deref(),
                &flood.options(),
            )
            .await?;
            return print_flood(&report, ctx.format);
        }
        BenchCommand::Contention(args) => {
            let opts = args.options();
            let report = match args.system {
                SystemArg::Custos => {
                    let target = ctx.target()?;
                    custos_bench::contention::run(&target.endpoints, target.token.as_deref(), &opts)
                        .await?
                }
                SystemArg::Etcd => {
                    let (endpoints, creds) = args.etcd.target()?;
                    custos_bench::contention::run_etcd(&endpoints, creds.as_ref(), &opts).await?
                }
            };
            return print_contention(&report, ctx.format);
        }
    };
    print(&report, ctx.format)
}

/// etcd credentials from `--user` and `--password` (none without a user).
fn etcd_credentials(
    user: Option<String>,
    password: Option<String>,
) -> anyhow::Result<Option<Credentials>> {
    user.map(|user| {
        Ok(Credentials {
            user,
            password: password.context("--user needs --password")?,
        })
    })
    .transpose()
}

async fn timeline(args: TimelineArgs, ctx: &output::Context) -> anyhow::Result<()> {
    let opts = custos_bench::failover::TimelineOptions {
        duration: Duration::from_secs(args.duration_secs),
        attempt_timeout: Duration::from_millis(args.attempt_timeout_ms),
        verify_timeout: Duration::from_secs(args.verify_secs),
    };
    let t = match args.system {
        SystemArg::Custos => {
            let target = ctx.target()?;
            custos_bench::failover::custos(&target.endpoints, target.token.as_deref(), &opts)
                .await?
        }
        SystemArg::Etcd => {
            let (endpoints, creds) = args.etcd.target()?;
            custos_bench::failover::etcd(&endpoints, creds.as_ref(), &opts).await?
        }
    };
    if ctx.format == Format::Json {
        println!("{}", serde_json::to_string(&t)?);
    } else {
        println!(
            "{}: {} writes acknowledged ({} failed attempts), longest gap {:.0} ms at {:.0} ms; \
             {} read back, {} missing{}",
            t.system,
            t.acked,
            t.failed_attempts,
            t.longest_gap_ms,
            t.longest_gap_at_ms,
            t.verified,
            t.missing,
            t.verify_error
                .as_deref()
                .map(|e| format!(" (reading back failed: {e})"))
                .unwrap_or_default()
        );
    }
    anyhow::ensure!(
        t.missing == 0 && t.verify_error.is_none(),
        "acknowledged writes are missing or could not be read back"
    );
    Ok(())
}

fn print(r: &Report, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let l = &r.latency_ms;
    output::table(
        &[
            "system",
            "workload",
            "clients",
            "ok",
            "errors",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server CPU ms/op",
        ],
        &[vec![
            r.system.clone(),
            r.workload.name().to_string(),
            format!("{}/{}", r.clients, r.connections),
            r.ops_ok.to_string(),
            r.errors.to_string(),
            format!("{:.0}", r.ops_per_s),
            format!("{:.2}", l.p50),
            format!("{:.2}", l.p99),
            format!("{:.2}", l.max),
            format!("{:.3}", r.server_cpu_ms_per_op),
        ]],
    );
    if let Some(e) = &r.first_error {
        eprintln!("first error: {e}");
    }
    if r.deadline_hit {
        eprintln!(
            "the deadline stopped the run after {} of {} operations",
            r.ops_issued, r.ops_requested
        );
    }
    Ok(())
}

/// The p50, p90, p99 and max columns (milliseconds) of a phase's latency.
fn latency_cells(l: &custos_bench::Latency) -> [String; 4] {
    [l.p50, l.p90, l.p99, l.max].map(|v| format!("{v:.2}"))
}

fn print_contention(r: &ContentionReport, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let row = |name: &str, p: &custos_bench::contention::ReadPhase| {
        let mut cells = vec![
            name.to_string(),
            p.reads.to_string(),
            p.read_errors.to_string(),
            format!("{:.0}", p.reads_per_s),
            format!("{:.0}", p.writes_per_s),
        ];
        cells.extend(latency_cells(&p.latency_ms));
        cells
    };
    output::table(
        &[
            "phase", "reads", "errors", "reads/s", "writes/s", "p50 ms", "p90 ms", "p99 ms",
            "max ms",
        ],
        &[row("quiet", &r.quiet), row("busy", &r.busy)],
    );
    println!(
        "{} readers on {} while {} writers write through {}: p99 busy/quiet {:.2}x, p50 {:.2}x",
        r.readers, r.read_member, r.writers, r.leader, r.p99_ratio, r.p50_ratio
    );
    if let Some(e) = &r.first_read_error {
        eprintln!("first read error: {e}");
    }
    if let Some(e) = &r.first_write_error {
        eprintln!("{} write errors; first: {e}", r.write_errors);
    }
    Ok(())
}

fn print_flood(r: &FloodReport, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let row = |name: &str, p: &custos_bench::flood::Phase| {
        let mut cells = vec![
            name.to_string(),
            p.writes.to_string(),
            p.write_errors.to_string(),
            format!("{:.0}", p.writes_per_s),
        ];
        cells.extend(latency_cells(&p.latency_ms));
        cells
    };
    output::table(
        &[
            "phase", "writes", "errors", "writes/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
        ],
        &[row("quiet", &r.quiet), row("flood", &r.flood)],
    );
    println!(
        "flood of {} on {}: {} refusals ({:.0}/s); writer on {}: p99 flood/quiet {:.2}x, p50 {:.2}x",
        r.flood_loops,
        r.flooded,
        r.refusals,
        r.refusals_per_s,
        r.leader,
        r.p99_ratio,
        r.p50_ratio
    );
    if let (Some(before), Some(after)) = (r.flooded_rss_kib_before, r.flooded_rss_kib_after) {
        println!("flooded member RSS: {before} -> {after} KiB");
    }
    if let Some(e) = &r.first_write_error {
        eprintln!("first write error: {e}");
    }
    if let Some(e) = &r.first_flood_error {
        eprintln!("{} unexpected flood answers; first: {e}", r.flood_errors);
    }
    Ok(())
}
