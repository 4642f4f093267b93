//! The `custos` binary: runs a node (`server`), a local cluster (`dev`), and operator commands.

mod audit;
mod certs;
mod dev;
mod output;
mod server;
mod token;
mod volume;

use clap::{Parser, Subcommand};
use output::Format;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "custos",
    version,
    about = "Raft-replicated security control plane for storage clusters"
)]
struct Cli {
    /// SDK endpoints (host:port), comma-separated; the client fails over among them.
    #[arg(
        long,
        global = true,
        env = "CUSTOS_ENDPOINT",
        value_delimiter = ',',
        default_value = "127.0.0.1:9100"
    )]
    endpoint: Vec<String>,
    /// Bearer token (JWT). Without one, calls are made as guest.
    #[arg(long, global = true, env = "CUSTOS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) that signed the servers' certificates: connect over TLS.
    /// `custos dev --sdk-tls` writes its path to `cluster.json` (`ca_file`).
    #[arg(long, global = true, env = "CUSTOS_CA")]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for servers that verify clients (`[tls] client_ca_file`);
    /// needs `--ca` and `--key`.
    #[arg(long, global = true, env = "CUSTOS_CERT", requires_all = ["ca", "key"])]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "CUSTOS_KEY", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Output format (`-o json` for scripts). The long name is `--format` because
    /// `auth token generate --output FILE` keeps pxctl's meaning.
    #[arg(short = 'o', long = "format", global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a custos node.
    Server(server::ServerArgs),
    /// Run a local cluster of N nodes as child processes (for people and tests).
    Dev(dev::DevArgs),
    /// Tokens.
    Auth {
        #[command(subcommand)]
        command: token::AuthCommand,
    },
    /// Volumes.
    Volume {
        #[command(subcommand)]
        command: volume::VolumeCommand,
    },
    /// Cluster information.
    Cluster {
        #[command(subcommand)]
        command: volume::ClusterCommand,
    },
    /// The replicated audit trail: list, follow, verify.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// SDK and server version of the endpoint.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let ctx = output::Context {
        endpoints: cli.endpoint,
        token: cli.token,
        format: cli.format,
        ca: cli.ca,
        identity: cli.cert.zip(cli.key),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Auth { command } => token::run(command, &ctx),
            Command::Volume { command } => volume::run(command, &ctx).await,
            Command::Cluster { command } => volume::run_cluster(command, &ctx).await,
            Command::Audit { command } => audit::run(command, &ctx).await,
            Command::Version => volume::version(&ctx).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(output::exit_code(&e))
        }
    }
}
