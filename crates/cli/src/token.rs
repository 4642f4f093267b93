//! `custos auth token generate`: signs OpenStorage-style tokens, flags as pxctl has them.

use crate::output::Context;
use anyhow::{bail, Context as _};
use custos_server::auth::{generate_token, parse_duration, SigningKey, TokenClaims};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum AuthCommand {
    /// Tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Sign a token.
    Generate(GenerateArgs),
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// YAML with name, email, sub, roles, groups.
    #[arg(long)]
    auth_config: PathBuf,
    /// Issuer (`iss`); must be a name, not a URL.
    #[arg(long, default_value = "openstorage.io")]
    issuer: String,
    /// Shared secret (HS256).
    #[arg(long, env = "CUSTOS_SHARED_SECRET", hide_env_values = true)]
    shared_secret: Option<String>,
    /// File holding the shared secret (HS256).
    #[arg(long)]
    shared_secret_file: Option<PathBuf>,
    /// RSA private key PEM (RS256).
    #[arg(long)]
    rsa_private_keyfile: Option<PathBuf>,
    /// ECDSA private key PEM (ES256).
    #[arg(long)]
    ecdsa_private_keyfile: Option<PathBuf>,
    /// Ed25519 private key PEM (EdDSA).
    #[arg(long)]
    ed25519_private_keyfile: Option<PathBuf>,
    /// Lifetime: s, m, h, d or y suffix.
    #[arg(long, default_value = "1d")]
    token_duration: String,
    /// Write the token to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn run(cmd: AuthCommand, ctx: &Context) -> anyhow::Result<()> {
    let AuthCommand::Token {
        command: TokenCommand::Generate(args),
    } = cmd;
    let claims: TokenClaims = serde_yaml::from_slice(&read(&args.auth_config)?)
        .with_context(|| format!("parsing {}", args.auth_config.display()))?;
    let mut keys = Vec::new();
    if let Some(s) = &args.shared_secret {
        keys.push(SigningKey::SharedSecret(s.as_bytes().to_vec()));
    }
    if let Some(f) = &args.shared_secret_file {
        let mut secret = read(f)?;
        while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
            secret.pop();
        }
        keys.push(SigningKey::SharedSecret(secret));
    }
    if let Some(f) = &args.rsa_private_keyfile {
        keys.push(SigningKey::RsaPem(read(f)?));
    }
    if let Some(f) = &args.ecdsa_private_keyfile {
        keys.push(SigningKey::EcdsaPem(read(f)?));
    }
    if let Some(f) = &args.ed25519_private_keyfile {
        keys.push(SigningKey::Ed25519Pem(read(f)?));
    }
    let key = match keys.len() {
        1 => keys.remove(0),
        0 => bail!("no signing key: pass one of --shared-secret(-file), --rsa-private-keyfile, --ecdsa-private-keyfile, --ed25519-private-keyfile"),
        _ => bail!("more than one signing key given: pass exactly one"),
    };
    let duration = parse_duration(&args.token_duration)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = generate_token(&claims, &args.issuer, &key, duration, now)?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, format!("{token}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("token written to {}", path.display());
        }
        None => ctx.emit(&serde_json::json!({ "token": token }), || {
            println!("{token}")
        })?,
    }
    Ok(())
}
