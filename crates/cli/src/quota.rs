//! `custos quota set|remove|show|usage`: quotas on volumes and provisioned bytes (`custos.admin.v1.Quotas`).

use crate::output::{table, Context};
use crate::volume::{human_size, parse_size};
use custos_client::{Quota, QuotaSubject, QuotaUse, SetQuotaRequest};

#[derive(clap::Subcommand)]
pub enum QuotaCommand {
    /// Set the quota of a user, of each member of a group, or of the guests together: at most
    /// --volumes volumes (snapshots and clones included) and --bytes provisioned bytes (the
    /// sum of their sizes). A limit left out is no limit; the new quota replaces the old one
    /// whole. Needs system.admin. docs/security.md "Quotas".
    Set {
        #[command(flatten)]
        subject: SubjectArgs,
        /// The most volumes.
        #[arg(long)]
        volumes: Option<u64>,
        /// The most provisioned bytes: `10Gi`, `512Mi`, `1T`, `4096`.
        #[arg(long, value_parser = size_arg)]
        bytes: Option<u64>,
    },
    /// Remove a quota: the user or group has none any more; the guests' returns to the
    /// default (10 volumes, 10 GiB).
    Remove {
        #[command(flatten)]
        subject: SubjectArgs,
    },
    /// The quotas in force (one, with --user, --group or --guest).
    Show {
        #[command(flatten)]
        subject: OptionalSubjectArgs,
    },
    /// Each user's and the guests' use against their own quota.
    Usage,
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct SubjectArgs {
    /// A user (the token's username claim).
    #[arg(long)]
    user: Option<String>,
    /// A group (the token's groups claim): each member on their own.
    #[arg(long)]
    group: Option<String>,
    /// Every caller without a token, together.
    #[arg(long)]
    guest: bool,
}

#[derive(clap::Args)]
#[group(required = false, multiple = false)]
pub struct OptionalSubjectArgs {
    /// Only this user's quota.
    #[arg(long)]
    user: Option<String>,
    /// Only this group's quota.
    #[arg(long)]
    group: Option<String>,
    /// Only the guests' quota.
    #[arg(long)]
    guest: bool,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn subject(user: Option<String>, group: Option<String>, guest: bool) -> QuotaSubject {
    QuotaSubject {
        user: user.unwrap_or_default(),
        group: group.unwrap_or_default(),
        guest,
    }
}

pub async fn run(cmd: QuotaCommand, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::Set {
            subject: s,
            volumes,
            bytes,
        } => {
            let request = SetQuotaRequest {
                subject: Some(subject(s.user, s.group, s.guest)),
                max_volumes: volumes,
                max_bytes: bytes,
            };
            let quota = ctx.client()?.set_quota(&request).await?;
            ctx.emit(&quota, || {
                println!(
                    "Quota of {} set: {}",
                    subject_text(quota.subject.as_ref()),
                    limits_text(&quota)
                )
            })
        }
        QuotaCommand::Remove { subject: s } => {
            let who = subject(s.user, s.group, s.guest);
            ctx.client()?.remove_quota(&who).await?;
            ctx.emit(&who, || {
                println!("Quota of {} removed", subject_text(Some(&who)))
            })
        }
        QuotaCommand::Show { subject: s } => {
            let wanted = (s.user.is_some() || s.group.is_some() || s.guest)
                .then(|| subject(s.user, s.group, s.guest));
            let list: Vec<Quota> = ctx
                .client()?
                .list_quotas()
                .await?
                .into_iter()
                .filter(|q| wanted.is_none() || q.subject == wanted)
                .collect();
            ctx.emit(&list, || print_quotas(&list))
        }
        QuotaCommand::Usage => {
            let uses = ctx.client()?.quota_usage().await?;
            ctx.emit(&uses, || print_uses(&uses))
        }
    }
}

/// `user alice`, `group ops`, `guests`.
fn subject_text(s: Option<&QuotaSubject>) -> String {
    match s {
        Some(s) if s.guest => "guests".to_string(),
        Some(s) if !s.group.is_empty() => format!("group {}", s.group),
        Some(s) => format!("user {}", s.user),
        None => "?".to_string(),
    }
}

fn max_volumes(q: Option<&Quota>) -> String {
    q.and_then(|q| q.max_volumes)
        .map_or("-".to_string(), |n| n.to_string())
}

fn max_bytes(q: Option<&Quota>) -> String {
    q.and_then(|q| q.max_bytes)
        .map_or("-".to_string(), human_size)
}

fn limits_text(q: &Quota) -> String {
    let volumes = q.max_volumes.map_or("unlimited volumes".to_string(), |n| {
        format!("at most {n} volumes")
    });
    let bytes = q.max_bytes.map_or("unlimited bytes".to_string(), |n| {
        format!("at most {}", human_size(n))
    });
    format!("{volumes}, {bytes}")
}

fn print_quotas(list: &[Quota]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|q| {
            vec![
                subject_text(q.subject.as_ref()),
                max_volumes(Some(q)),
                max_bytes(Some(q)),
                if q.default {
                    "(default)".to_string()
                } else {
                    q.set_by.clone()
                },
            ]
        })
        .collect();
    table(&["SUBJECT", "MAX VOLUMES", "MAX BYTES", "SET BY"], &rows);
}

fn print_uses(uses: &[QuotaUse]) {
    let rows: Vec<Vec<String>> = uses
        .iter()
        .map(|u| {
            vec![
                subject_text(u.subject.as_ref()),
                u.volumes.to_string(),
                max_volumes(u.quota.as_ref()),
                human_size(u.bytes),
                max_bytes(u.quota.as_ref()),
            ]
        })
        .collect();
    table(
        &["SUBJECT", "VOLUMES", "MAX VOLUMES", "BYTES", "MAX BYTES"],
        &rows,
    );
}
