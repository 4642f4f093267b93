//! `custos auth token generate` (signs OpenStorage-style tokens, flags as pxctl has them) and
//! `custos auth revoke` / `custos auth revocations` (replicated token revocation).

use crate::output::{invalid, table, Context};
use anyhow::{bail, Context as _};
use custos_client::{Revocation, RevokeRequest};
use custos_server::auth::{generate_token, parse_duration, SigningKey, TokenClaims};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum AuthCommand {
    /// Tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Revoke a token (by --jti or --fingerprint), or every token of a --subject issued at or
    /// before a time, on every member at once. Needs system.admin. The entry is kept until
    /// the revoked tokens have expired on their own (--expires-at/--expires-in, else what the
    /// member knows of their expiry: docs/security.md, "Revoking a token").
    Revoke(RevokeArgs),
    /// List the token revocations in force.
    Revocations,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The token's `jti` claim.
    #[arg(long, conflicts_with_all = ["fingerprint", "subject"], required_unless_present_any = ["fingerprint", "subject"])]
    jti: Option<String>,
    /// The token's fingerprint: 12 hex characters, as audit records show it
    /// (`token_fingerprint`).
    #[arg(long, conflicts_with_all = ["subject", "issuer"])]
    fingerprint: Option<String>,
    /// Every token whose `sub` claim is this.
    #[arg(long)]
    subject: Option<String>,
    /// With --subject: revoke the tokens issued at or before this time (RFC 3339, e.g.
    /// 2026-12-06T16:00:00Z; default: now).
    #[arg(long, requires = "subject", value_name = "TIME")]
    issued_before: Option<String>,
    /// Only tokens of this issuer (default: every issuer).
    #[arg(long)]
    issuer: Option<String>,
    /// When the revoked tokens expire (RFC 3339): the entry is kept until then.
    #[arg(long, value_name = "TIME", conflicts_with = "expires_in")]
    expires_at: Option<String>,
    /// As --expires-at, from now: s, m, h, d or y suffix (`30d`).
    #[arg(long, value_name = "DURATION")]
    expires_in: Option<String>,
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

pub async fn run(cmd: AuthCommand, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::Token {
            command: TokenCommand::Generate(args),
        } => generate(args, ctx),
        AuthCommand::Revoke(args) => revoke(args, ctx).await,
        AuthCommand::Revocations => {
            let list = ctx.client()?.list_revocations().await?;
            ctx.emit(&list, || print_revocations(&list))
        }
    }
}

fn now_secs() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

/// An RFC 3339 time (`now` for the present) as Unix seconds.
fn parse_time(flag: &str, text: &str) -> anyhow::Result<u64> {
    if text == "now" {
        return now_secs();
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
        invalid(format!(
            "{flag} {text:?}: {e}; give an RFC 3339 time such as 2026-12-06T16:00:00Z"
        ))
    })?;
    Ok(at.duration_since(std::time::UNIX_EPOCH)?.as_secs())
}

async fn revoke(args: RevokeArgs, ctx: &Context) -> anyhow::Result<()> {
    let expires_at = match (&args.expires_at, &args.expires_in) {
        (Some(t), _) => parse_time("--expires-at", t)?,
        (None, Some(d)) => now_secs()?.saturating_add(
            parse_duration(d).map_err(|e| invalid(format!("--expires-in {d:?}: {e}")))?,
        ),
        (None, None) => 0,
    };
    let issued_before = match &args.issued_before {
        Some(t) => parse_time("--issued-before", t)?,
        None => 0,
    };
    let request = RevokeRequest {
        jti: args.jti.unwrap_or_default(),
        fingerprint: args.fingerprint.unwrap_or_default(),
        subject: args.subject.unwrap_or_default(),
        issuer: args.issuer.unwrap_or_default(),
        issued_before,
        expires_at,
    };
    let reply = ctx.client()?.revoke(&request).await?;
    let revocation = reply.revocation.unwrap_or_default();
    ctx.emit(&revocation, || {
        let r = &revocation;
        let issuer = match r.issuer.as_str() {
            "" => String::new(),
            i => format!(" of issuer {i}"),
        };
        match r.kind.as_str() {
            "subject" => println!(
                "Revoked every token of subject {}{issuer} issued at or before {}, until {}",
                r.value,
                rfc3339(r.issued_before),
                rfc3339(r.expires_at)
            ),
            kind => println!(
                "Revoked the token with {kind} {}{issuer}, until {}",
                r.value,
                rfc3339(r.expires_at)
            ),
        }
    })
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

fn print_revocations(list: &[Revocation]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.kind.clone(),
                r.value.clone(),
                if r.issuer.is_empty() {
                    "*".to_string()
                } else {
                    r.issuer.clone()
                },
                if r.kind == "subject" {
                    rfc3339(r.issued_before)
                } else {
                    String::new()
                },
                rfc3339(r.expires_at),
                r.revoked_by.clone(),
            ]
        })
        .collect();
    table(
        &["KIND", "VALUE", "ISSUER", "ISSUED BEFORE", "EXPIRES", "BY"],
        &rows,
    );
}

fn generate(args: GenerateArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut claims: TokenClaims = serde_yaml::from_slice(&read(&args.auth_config)?)
        .with_context(|| format!("parsing {}", args.auth_config.display()))?;
    // A token id, so that this one token can be revoked (`custos auth revoke --jti`).
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        claims.jti = Some(uuid::Uuid::new_v4().to_string());
    }
    let jti = claims.jti.clone().unwrap_or_default();
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
            eprintln!("token written to {} (jti {jti})", path.display());
        }
        None => ctx.emit(&serde_json::json!({ "token": token, "jti": jti }), || {
            println!("{token}")
        })?,
    }
    Ok(())
}
