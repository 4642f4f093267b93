//! The `custos` binary: runs a node (`server`), a local cluster (`dev`), operator commands, and
//! the benchmark load generator (`bench`).

mod access;
mod audit;
mod audit_file;
mod bench;
mod certs;
mod context;
mod credentials;
mod dev;
mod node;
mod output;
mod policy;
mod quota;
mod role;
mod server;
mod token;
mod volume;

use clap::{CommandFactory as _, Parser, Subcommand};
use output::Format;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: on the request path glibc's allocator took about a quarter
/// of a member's CPU (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "custos",
    version,
    about = "Raft-replicated security control plane for storage clusters"
)]
struct Cli {
    /// SDK endpoints (host:port), comma-separated; the client fails over among them.
    /// Precedence: this flag, then $CUSTOS_ENDPOINT, then the context, then 127.0.0.1:9100.
    #[arg(long, global = true, value_delimiter = ',')]
    endpoint: Vec<String>,
    /// Bearer token (JWT); else $CUSTOS_TOKEN, else the context's token file. Without one,
    /// calls are made as guest.
    #[arg(long, global = true, env = "CUSTOS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The context to use instead of the current one (`custos context list`).
    #[arg(long, global = true, env = "CUSTOS_CONTEXT")]
    context: Option<String>,
    /// CA certificate (PEM) that signed the servers' certificates: connect over TLS.
    /// Precedence: this flag, then $CUSTOS_CA, then the context's CA file; none is plaintext.
    /// `custos dev --sdk-tls` writes its path to `cluster.json` (`ca_file`).
    #[arg(long, global = true)]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for servers that verify clients (`[tls] client_ca_file`);
    /// needs `--key` and a CA (`--ca`, $CUSTOS_CA or the context's).
    #[arg(long, global = true, env = "CUSTOS_CERT", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "CUSTOS_KEY", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Output format (`-o json` or `-o yaml` for scripts). The long name is `--format` because
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
    /// Named connection settings (endpoints and token file), like `pxctl context`.
    Context {
        #[command(subcommand)]
        command: context::ContextCommand,
    },
    /// A cluster CA and node certificates for peers' mutual TLS (and SDK TLS).
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Roles (the upstream JSON format), like `pxctl role`.
    Role {
        #[command(subcommand)]
        command: role::RoleCommand,
    },
    /// Snapshot schedule policies (`Volume.SnapshotScheduleUpdate` names them).
    SchedulePolicy {
        #[command(subcommand)]
        command: policy::SchedulePolicyCommand,
    },
    /// Storage policies: volume spec templates, and the default every create is shaped by.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Cloud credentials (OpenStorageCredentials); secrets are read from files.
    Credentials {
        #[command(subcommand)]
        command: credentials::CredentialsCommand,
    },
    /// Alerts custos raised about itself (OpenStorageAlerts).
    Alerts {
        #[command(subcommand)]
        command: credentials::AlertsCommand,
    },
    /// Storage nodes registered with the cluster.
    Node {
        #[command(subcommand)]
        command: node::NodeCommand,
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
    /// Quotas on volumes and provisioned bytes per user, group and the guests.
    Quota {
        #[command(subcommand)]
        command: quota::QuotaCommand,
    },
    /// Who may do what, and why a call is refused: `access explain`.
    Access {
        #[command(subcommand)]
        command: access::AccessCommand,
    },
    /// The replicated audit trail: list, follow, verify, export, verify-file.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// SDK and server version of the endpoint.
    Version,
    /// Load generator: custos or etcd, N clients over P connections, one JSON report.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Prints a shell completion script: `source <(custos completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        use std::io::Write as _;
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "custos", &mut script);
        // A closed pipe (`custos completion bash | head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(&script);
        return ExitCode::SUCCESS;
    }
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
        endpoint_flag: cli.endpoint,
        token: cli.token,
        context: cli.context.filter(|c| !c.is_empty()),
        format: cli.format,
        ca: cli.ca,
        identity: cli.cert.zip(cli.key),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Dev(args) => dev::run(args).await,
            Command::Auth { command } => token::run(command, &ctx).await,
            Command::Volume { command } => volume::run(command, &ctx).await,
            Command::Cluster { command } => volume::run_cluster(command, &ctx).await,
            Command::Audit { command } => audit::run(command, &ctx).await,
            Command::Access { command } => access::run(command, &ctx).await,
            Command::Quota { command } => quota::run(command, &ctx).await,
            Command::Version => volume::version(&ctx).await,
            Command::Bench { command } => bench::run(command, &ctx).await,
            Command::Context { command } => context::run(command, &ctx),
            Command::Certs { command } => certs::run(command),
            Command::Role { command } => role::run(command, &ctx).await,
            Command::SchedulePolicy { command } => policy::run_schedule(command, &ctx).await,
            Command::Policy { command } => policy::run(command, &ctx).await,
            Command::Node { command } => node::run(command, &ctx).await,
            Command::Credentials { command } => credentials::run(command, &ctx).await,
            Command::Alerts { command } => credentials::run_alerts(command, &ctx).await,
            Command::Completion { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = output::exit_code(&e);
            // Hints follow the server's answers; the CLI's own messages say what to do already.
            let from_server = e.downcast_ref::<custos_client::ClientError>().is_some();
            if let Some(hint) = output::hint(code).filter(|_| from_server) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}
