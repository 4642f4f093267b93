//! `custos audit list|follow|verify|export|verify-file`: the replicated audit trail from the
//! command line.

use crate::audit_file::{self, RecordLine};
use crate::output::{table, Context, Format};
use anyhow::{bail, Context as _};
use custos_client::model::audit::{AuditQuery, AuditRecord};
use custos_client::Client;
use futures::StreamExt;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct Filter {
    /// Only records of this username.
    #[arg(long)]
    user: Option<String>,
    /// Only this method (`volume.create`, `Authentication`, ...).
    #[arg(long)]
    method: Option<String>,
    /// Only this outcome code (`OK`, `PermissionDenied`, ...).
    #[arg(long)]
    code: Option<String>,
    /// Only records naming this id (volume, snapshot, role, node).
    #[arg(long)]
    object: Option<String>,
    /// Only records of the last DURATION (`90s`, `10m`, `2h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Only records from this sequence number on.
    #[arg(long)]
    from_seq: Option<u64>,
    /// Only records up to this sequence number.
    #[arg(long)]
    to_seq: Option<u64>,
    /// Only allowed calls (`allowed`) or only refusals (`refused`), whatever their code.
    #[arg(long, value_enum)]
    outcome: Option<Outcome>,
}

/// What `--outcome` selects (the record's `authorized`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Refused,
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// List records (oldest first; --newest-first to reverse), one page or --all.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Records per page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Every page, not just the first.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        newest_first: bool,
    },
    /// Print records as they are applied (from --from-seq, else from now) until interrupted.
    Follow {
        #[command(flatten)]
        filter: Filter,
    },
    /// Check every member's hash chain and that all members agree; exits 1 if not. Each
    /// member checks what was appended since its last clean check (its verified checkpoint).
    Verify {
        /// Skip members that cannot be reached instead of failing.
        #[arg(long)]
        reachable_only: bool,
        /// Re-hash every kept record on every member, not only those after its checkpoint.
        #[arg(long)]
        full: bool,
    },
    /// Write records to FILE as JSON lines with their hashes (all kept records by default),
    /// page by page; `verify-file` checks the file offline. Never overwrites FILE.
    Export {
        file: std::path::PathBuf,
        /// The first record to export (default: the first one kept).
        #[arg(long)]
        from_seq: Option<u64>,
        /// The last record to export (default: the last one when the export starts).
        #[arg(long)]
        to_seq: Option<u64>,
        /// Records per `Audit.List` call (at most 1000).
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// Check the hash chain of exported files, offline (several files: in sequence order,
    /// each continuing the previous); exits 1 if it does not verify.
    VerifyFile {
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

impl Filter {
    fn query(&self) -> anyhow::Result<AuditQuery> {
        let from_time_ms = match &self.since {
            None => None,
            Some(d) => {
                let secs = custos_server::auth::parse_duration(d)
                    .with_context(|| format!("--since {d:?}"))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_millis() as u64;
                Some(now.saturating_sub(secs.saturating_mul(1000)))
            }
        };
        Ok(AuditQuery {
            username: self.user.clone(),
            method: self.method.clone(),
            code: self.code.clone(),
            object: self.object.clone(),
            from_time_ms,
            to_time_ms: None,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            authorized: self.outcome.map(|o| o == Outcome::Allowed),
        })
    }
}

/// A record as JSON, hashes in hex (the line format of `export`).
fn record_json(r: &AuditRecord) -> serde_json::Value {
    serde_json::to_value(RecordLine::from(r)).unwrap_or(serde_json::Value::Null)
}

fn row(r: &AuditRecord) -> Vec<String> {
    let user = if r.actor.username.is_empty() {
        "-".to_string()
    } else {
        r.actor.username.clone()
    };
    let count = if r.count == 1 {
        String::new()
    } else {
        format!(" (x{})", r.count)
    };
    vec![
        r.seq.to_string(),
        custos_server::audit::rfc3339(r.time_ms),
        user,
        r.method.clone(),
        r.code.clone(),
        format!("{}{count}", r.message),
    ]
}

const HEADERS: [&str; 6] = ["SEQ", "TIME", "USER", "METHOD", "CODE", "MESSAGE"];

pub async fn run(cmd: AuditCommand, ctx: &Context) -> anyhow::Result<()> {
    if let AuditCommand::VerifyFile { files } = &cmd {
        return verify_file(files, ctx);
    }
    let client = ctx.client()?;
    match cmd {
        AuditCommand::List {
            filter,
            limit,
            all,
            newest_first,
        } => {
            let query = filter.query()?;
            let mut records = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .audit_list(&query, token.as_deref(), limit, newest_first)
                    .await?;
                records.extend(page.records);
                token = page.next_page_token;
                if !all || token.is_none() {
                    break;
                }
            }
            let list: Vec<_> = records.iter().map(record_json).collect();
            ctx.emit(&list, || {
                table(&HEADERS, &records.iter().map(row).collect::<Vec<_>>());
                if let Some(t) = &token {
                    eprintln!("more records: continue with --from-seq {t} (or use --all)");
                }
            })?;
        }
        AuditCommand::Follow { filter } => {
            let query = filter.query()?;
            let mut stream = client.audit_follow(&query).await?;
            while let Some(r) = stream.next().await {
                let r = r?;
                match ctx.format {
                    Format::Json => println!("{}", record_json(&r)),
                    // One YAML document per record, so a reader can stream them.
                    Format::Yaml => print!("---\n{}", serde_yaml::to_string(&record_json(&r))?),
                    Format::Table => println!("{}", row(&r).join("  ")),
                }
            }
        }
        AuditCommand::Verify {
            reachable_only,
            full,
        } => verify(&client, ctx, reachable_only, full).await?,
        AuditCommand::Export {
            file,
            from_seq,
            to_seq,
            page_size,
        } => {
            let done =
                audit_file::export(&client, &file, from_seq, to_seq, page_size.clamp(1, 1000))
                    .await?;
            ctx.emit(&done, || {
                println!(
                    "exported records {} to {} ({} records) to {}; last hash {}\n\
                     next export: --from-seq {}",
                    done.first_seq,
                    done.last_seq,
                    done.records,
                    done.file,
                    done.last_hash,
                    done.next_from_seq
                )
            })?;
        }
        AuditCommand::VerifyFile { .. } => unreachable!("handled before connecting"),
    }
    Ok(())
}

/// The problem, if the members' hashes at record `common` are not all the same.
fn disagreement(common: u64, hashes: &[(u64, String)]) -> Option<String> {
    let (_, first) = hashes.first()?;
    if hashes.iter().all(|(_, h)| h == first) {
        return None;
    }
    let list: Vec<String> = hashes
        .iter()
        .map(|(id, h)| format!("node {id}: {h}"))
        .collect();
    Some(format!(
        "members disagree at record {common}: {}",
        list.join(", ")
    ))
}

/// Verifies the chain on every member, then compares their hashes at the newest record all
/// of them hold.
async fn verify(
    client: &Client,
    ctx: &Context,
    reachable_only: bool,
    full: bool,
) -> anyhow::Result<()> {
    let status = client.status().await?;
    let mut members = Vec::new();
    let mut problems = Vec::new();
    for m in &status.members {
        let one = ctx.client_to(std::slice::from_ref(&m.sdk_addr))?;
        match one.audit_verify_with(0, full).await {
            Ok(v) => {
                if !v.ok {
                    problems.push(format!("node {}: {}", m.id, v.error));
                }
                members.push((m.id, one, v));
            }
            Err(e) if reachable_only => eprintln!("node {} skipped: {e}", m.id),
            Err(e) => problems.push(format!("node {} unreachable: {e}", m.id)),
        }
    }
    // Members may be a few records apart: compare at the newest record every one has.
    let common = members
        .iter()
        .map(|(_, _, v)| v.last_seq)
        .min()
        .unwrap_or(0);
    let mut at_common = Vec::new();
    for (id, one, v) in &members {
        let hash = if v.last_seq == common {
            v.last_hash.clone()
        } else {
            one.audit_verify(common).await?.through_hash
        };
        at_common.push((*id, hash));
    }
    problems.extend(disagreement(common, &at_common));
    let nodes: Vec<_> = members
        .iter()
        .map(|(id, _, v)| {
            serde_json::json!({"node_id": id, "ok": v.ok, "error": v.error, "first_seq": v.first_seq,
                "last_seq": v.last_seq, "last_hash": v.last_hash, "checked": v.checked,
                "checkpoint_seq": v.checkpoint_seq, "full": v.full})
        })
        .collect();
    let summary = serde_json::json!({
        "ok": problems.is_empty(), "common_seq": common, "nodes": nodes, "problems": problems,
    });
    ctx.emit(&summary, || {
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|(id, _, v)| {
                vec![
                    id.to_string(),
                    if v.ok { "ok".into() } else { "BROKEN".into() },
                    format!("{}..{}", v.first_seq, v.last_seq),
                    v.checked.to_string(),
                    v.last_hash.chars().take(16).collect(),
                ]
            })
            .collect();
        table(&["NODE", "CHAIN", "RECORDS", "CHECKED", "HEAD HASH"], &rows);
        if problems.is_empty() {
            println!("all {} members agree at record {common}", members.len());
        }
    })?;
    if !problems.is_empty() {
        bail!("audit verification failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// `verify-file`: the chain of exported files, checked here without a cluster.
fn verify_file(files: &[std::path::PathBuf], ctx: &Context) -> anyhow::Result<()> {
    let check = audit_file::verify_files(files)?;
    ctx.emit(&check, || {
        if check.ok {
            println!(
                "records {} to {} ({}) verify; first prev_hash {}, last hash {}",
                check.first_seq, check.last_seq, check.records, check.anchor_hash, check.last_hash
            );
        }
    })?;
    if let Some(e) = &check.error {
        bail!("audit file verification failed: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn members_that_differ_at_the_common_record_are_a_problem() {
        let same = [(1, "aa".to_string()), (2, "aa".to_string())];
        assert_eq!(super::disagreement(5, &same), None);
        assert_eq!(super::disagreement(0, &[]), None);
        let differ = [(1, "aa".to_string()), (2, "ab".to_string())];
        assert_eq!(
            super::disagreement(5, &differ).unwrap(),
            "members disagree at record 5: node 1: aa, node 2: ab"
        );
    }
}
