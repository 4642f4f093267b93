//! `custos server`: loads the config, applies flag overrides, and runs a node until SIGINT/SIGTERM.

use anyhow::Context;
use custos_server::{MemberConfig, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every setting comes from, in order of precedence: a flag, its environment variable, the
/// config file, the built-in default. Secrets are never settings: the config names the files
/// or environment variables that hold them.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// TOML configuration file (optional: flags and environment variables can say it all).
    #[arg(long, env = "CUSTOS_CONFIG")]
    config: Option<PathBuf>,
    /// Node id.
    #[arg(long, env = "CUSTOS_NODE_ID")]
    id: Option<u64>,
    /// Cluster id (the Raft cluster name; members must agree).
    #[arg(long, env = "CUSTOS_CLUSTER_ID")]
    cluster_id: Option<String>,
    /// SDK (and admin) listen address.
    #[arg(long, env = "CUSTOS_SDK_LISTEN")]
    sdk_listen: Option<SocketAddr>,
    /// Peer listen address.
    #[arg(long, env = "CUSTOS_RAFT_LISTEN")]
    raft_listen: Option<SocketAddr>,
    /// REST gateway listen address.
    #[arg(long, env = "CUSTOS_REST_LISTEN")]
    rest_listen: Option<SocketAddr>,
    /// Prometheus metrics listen address.
    #[arg(long, env = "CUSTOS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "CUSTOS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Initial member `ID=RAFT_ADDR,SDK_ADDR`; repeatable (`;`-separated in CUSTOS_PEERS);
    /// replaces the file's list.
    #[arg(long = "peer", env = "CUSTOS_PEERS", value_delimiter = ';', value_parser = parse_peer)]
    peers: Vec<MemberConfig>,
    /// Join a running cluster through the member whose peer address this is (when this node
    /// holds no Raft state yet): added as a learner, caught up, then promoted to voter.
    #[arg(long, env = "CUSTOS_JOIN")]
    join: Option<String>,
    /// The peer address other members reach this node at, when not `--raft-listen` (a proxy,
    /// NAT, a Kubernetes Service) and the node is not an initial member.
    #[arg(long, env = "CUSTOS_ADVERTISE_RAFT_ADDR")]
    advertise_raft_addr: Option<String>,
    /// The SDK address clients are sent to, when not `--sdk-listen`.
    #[arg(long, env = "CUSTOS_ADVERTISE_SDK_ADDR")]
    advertise_sdk_addr: Option<String>,
    /// With --join: stay a learner (promote later with `custos cluster promote`).
    #[arg(long, requires = "join")]
    learner: bool,
    /// Seed the empty data dir from a backup file (`custos cluster backup`): this node becomes
    /// the only voter of a new cluster holding the backed-up state; the others join it.
    #[arg(long, conflicts_with = "join")]
    restore: Option<PathBuf>,
    /// Plaintext, unauthenticated peer and SDK traffic (`insecure = true`): tests only. The
    /// config must then have no `[tls]` section.
    #[arg(long)]
    insecure: bool,
    /// Log format.
    #[arg(long, env = "CUSTOS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Print the effective configuration (TOML, after flags, environment and file) and exit.
    /// It holds no secret: keys are named by file or environment variable, never inline.
    #[arg(long)]
    print_config: bool,
}

/// Sets `key` in `table` when the flag or its variable gave a value.
fn overlay<T: Into<toml::Value>>(table: &mut toml::Table, key: &str, value: Option<T>) {
    if let Some(v) = value {
        table.insert(key.to_string(), v.into());
    }
}

fn path_value(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// The configuration in force: flags over environment over file over defaults, validated.
pub fn effective_config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let mut table: toml::Table = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => toml::Table::new(),
    };
    overlay(&mut table, "node_id", args.id.map(|v| v as i64));
    overlay(&mut table, "cluster_id", args.cluster_id.clone());
    overlay(
        &mut table,
        "sdk_listen",
        args.sdk_listen.map(|a| a.to_string()),
    );
    overlay(
        &mut table,
        "raft_listen",
        args.raft_listen.map(|a| a.to_string()),
    );
    overlay(
        &mut table,
        "rest_listen",
        args.rest_listen.map(|a| a.to_string()),
    );
    overlay(
        &mut table,
        "metrics_listen",
        args.metrics_listen.map(|a| a.to_string()),
    );
    overlay(
        &mut table,
        "data_dir",
        args.data_dir.as_deref().map(path_value),
    );
    overlay(&mut table, "join", args.join.clone());
    overlay(
        &mut table,
        "advertise_raft_addr",
        args.advertise_raft_addr.clone(),
    );
    overlay(
        &mut table,
        "advertise_sdk_addr",
        args.advertise_sdk_addr.clone(),
    );
    if args.learner {
        table.insert("join_as_learner".into(), true.into());
    }
    if args.insecure {
        table.insert("insecure".into(), true.into());
    }
    if !args.peers.is_empty() {
        let members = toml::Value::try_from(&args.peers).context("encoding --peer")?;
        table.insert("initial_members".into(), members);
    }
    let mut config: ServerConfig = toml::Value::Table(table).try_into().map_err(|e| {
        let hint = match e.to_string() {
            m if m.contains("`node_id`") => " (set node_id in the file, --id or CUSTOS_NODE_ID)",
            m if m.contains("`data_dir`") => " (set data_dir, --data-dir or CUSTOS_DATA_DIR)",
            m if m.contains("`sdk_listen`") => {
                " (set sdk_listen, --sdk-listen or CUSTOS_SDK_LISTEN)"
            }
            m if m.contains("`raft_listen`") => {
                " (set raft_listen, --raft-listen or CUSTOS_RAFT_LISTEN)"
            }
            _ => "",
        };
        let source = match &args.config {
            Some(p) => format!("config {} with flags and environment", p.display()),
            None => "configuration from flags and environment".to_string(),
        };
        anyhow::anyhow!("invalid {source}: {}{hint}", e.to_string().trim())
    })?;
    config.restore = args.restore.clone();
    config.validate()?;
    Ok(config)
}

fn parse_peer(s: &str) -> Result<MemberConfig, String> {
    let err = || format!("peer {s:?} is not ID=RAFT_ADDR,SDK_ADDR");
    let (id, addrs) = s.split_once('=').ok_or_else(err)?;
    let (raft_addr, sdk_addr) = addrs.split_once(',').ok_or_else(err)?;
    Ok(MemberConfig {
        id: id.parse().map_err(|_| err())?,
        raft_addr: raft_addr.into(),
        sdk_addr: sdk_addr.into(),
    })
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTOS_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,h2=warn,tower=warn")
    });
    // Colours only on a terminal: a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = effective_config(&args)?;
    if args.print_config {
        print!("{}", custos_server::config::render(&config)?);
        return Ok(());
    }
    init_logging(&args.log_format);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(reload_on_sighup(args.clone(), reload_tx));
    custos_server::run(config, reload_rx, shutdown_signal())
        .await
        .context("custos server")
}

/// On SIGHUP, re-reads the configuration (file, then the same flags and environment) and hands
/// it to the node, which reloads its keys and certificates.
async fn reload_on_sighup(args: ServerArgs, tx: tokio::sync::mpsc::Sender<ServerConfig>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match effective_config(&args) {
            Ok(fresh) => {
                if tx.send(fresh).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!("SIGHUP: keeping the old keys: {e:#}"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested");
}
