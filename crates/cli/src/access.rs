//! `custos access explain`: who may do what, and why a call is refused (`Access.Explain`).

use crate::output::{invalid, Context};
use anyhow::Context as _;
use custos_client::ExplainRequest;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum AccessCommand {
    /// Explain the authorization decision a call would get: each role's rules, the volume's
    /// access checks, and the verdict with the exact message. Needs system.admin (or a role
    /// naming the service `access`).
    ///
    /// The identity is --user/--groups/--roles, --anonymous (no token: system.guest), or the
    /// token in --explain-token FILE (verified by the server; the global --token stays the
    /// caller's own token).
    Explain {
        /// The username to explain.
        #[arg(long, conflicts_with_all = ["anonymous", "explain_token"])]
        user: Option<String>,
        /// Its groups, comma-separated (`*` makes it an ownership administrator).
        #[arg(long, value_delimiter = ',', requires = "user")]
        groups: Vec<String>,
        /// Its roles, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "user")]
        roles: Vec<String>,
        /// Explain the anonymous caller (no token: system.guest).
        #[arg(long, conflicts_with = "explain_token")]
        anonymous: bool,
        /// A file holding a JWT whose identity to explain (verified by the server; never
        /// logged, only its fingerprint).
        #[arg(long, value_name = "FILE")]
        explain_token: Option<PathBuf>,
        /// The method: dotted (`volume.create`) or full (`/openstorage.api.OpenStorageVolume/Create`).
        #[arg(long)]
        method: String,
        /// The volume (id or name) the call names; for `volume.create`, the new name.
        #[arg(long)]
        volume: Option<String>,
    },
}

pub async fn run(cmd: AccessCommand, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        AccessCommand::Explain {
            user,
            groups,
            roles,
            anonymous,
            explain_token,
            method,
            volume,
        } => {
            let token = match &explain_token {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading --explain-token {}", path.display()))?
                    .trim()
                    .to_string(),
                None => String::new(),
            };
            if user.is_none() && !anonymous && token.is_empty() {
                return Err(invalid(
                    "name the identity to explain: --user U [--groups ..] [--roles ..], \
                     --anonymous, or --explain-token FILE",
                ));
            }
            if user.as_deref() == Some("") {
                return Err(invalid(
                    "--user needs a name (use --anonymous for no token)",
                ));
            }
            let request = ExplainRequest {
                user: user.unwrap_or_default(),
                groups,
                roles,
                method,
                volume: volume.unwrap_or_default(),
                token,
            };
            let reply = ctx.client()?.explain(&request).await?;
            ctx.emit(&reply, || {
                for line in &reply.lines {
                    println!("{line}");
                }
            })?;
        }
    }
    Ok(())
}
