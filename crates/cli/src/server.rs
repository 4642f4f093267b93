//! `custos server`: loads the config, applies flag overrides, and runs a node until SIGINT/SIGTERM.

use anyhow::Context;
use custos_server::{MemberConfig, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Node id (overrides the file).
    #[arg(long)]
    id: Option<u64>,
    /// SDK listen address (overrides the file).
    #[arg(long)]
    sdk_listen: Option<SocketAddr>,
    /// Peer listen address (overrides the file).
    #[arg(long)]
    raft_listen: Option<SocketAddr>,
    /// REST gateway listen address (overrides the file's `rest_listen`).
    #[arg(long)]
    rest_listen: Option<SocketAddr>,
    /// Data directory (overrides the file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Initial member `ID=RAFT_ADDR,SDK_ADDR`; repeatable; replaces the file's list.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<MemberConfig>,
    /// Plaintext, unauthenticated peer and SDK traffic (`insecure = true`): tests only. The
    /// config must then have no `[tls]` section.
    #[arg(long)]
    insecure: bool,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let mut config = ServerConfig::from_file(&args.config)?;
    if let Some(id) = args.id {
        config.node_id = id;
    }
    if let Some(a) = args.sdk_listen {
        config.sdk_listen = a;
    }
    if let Some(a) = args.raft_listen {
        config.raft_listen = a;
    }
    if let Some(a) = args.rest_listen {
        config.rest_listen = Some(a);
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if args.insecure {
        config.insecure = true;
    }
    if !args.peers.is_empty() {
        config.initial_members = args.peers;
    }
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(reload_on_sighup(args.config.clone(), reload_tx));
    custos_server::run(config, reload_rx, shutdown_signal())
        .await
        .context("custos server")
}

/// On SIGHUP, re-reads the config file and hands it to the node (which reloads its keys).
async fn reload_on_sighup(path: PathBuf, tx: tokio::sync::mpsc::Sender<ServerConfig>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match ServerConfig::from_file(&path) {
            Ok(fresh) => {
                if tx.send(fresh).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!("SIGHUP: keeping the old keys: {e}"),
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
