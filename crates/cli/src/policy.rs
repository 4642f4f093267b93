//! `custos schedule-policy ...` (snapshot schedule policies) and `custos policy ...` (storage policies, the default one included).

use crate::output::{invalid, table, Context};
use crate::volume::parse_size;
use custos_client::model::{
    AccessType, Acls, Ownership, PolicyOp, ScheduleInterval, SchedulePeriod, SchedulePolicy,
    SpecPolicy, StoragePolicy,
};

#[derive(clap::Subcommand)]
pub enum SchedulePolicyCommand {
    /// List the schedule policies.
    List,
    /// Show one schedule policy.
    Inspect { name: String },
    /// Create a schedule policy: `--schedule daily@12:30 --retain 2`, repeatable; periods are
    /// `daily@H:M`, `weekly@DAY@H:M` (DAY 0 = Sunday .. 6), `monthly@DAY@H:M` (1..28),
    /// `periodic@SECONDS`.
    Create {
        name: String,
        #[arg(long = "schedule", required = true)]
        schedules: Vec<String>,
        /// Snapshots each schedule keeps.
        #[arg(long, default_value_t = 1)]
        retain: i64,
    },
    /// Replace a schedule policy's schedules (same flags as create).
    Update {
        name: String,
        #[arg(long = "schedule", required = true)]
        schedules: Vec<String>,
        #[arg(long, default_value_t = 1)]
        retain: i64,
    },
    /// Delete a schedule policy (no error if it does not exist).
    Delete { name: String },
}

fn parse_period(s: &str) -> anyhow::Result<SchedulePeriod> {
    let bad = || {
        invalid(format!(
            "schedule {s:?}: want daily@H:M, weekly@DAY@H:M, monthly@DAY@H:M or periodic@SECONDS"
        ))
    };
    let hm = |t: &str| -> anyhow::Result<(i32, i32)> {
        let (h, m) = t.split_once(':').ok_or_else(bad)?;
        Ok((h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?))
    };
    let (kind, rest) = s.split_once('@').ok_or_else(bad)?;
    Ok(match kind {
        "daily" => {
            let (hour, minute) = hm(rest)?;
            SchedulePeriod::Daily { hour, minute }
        }
        "weekly" | "monthly" => {
            let (day, t) = rest.split_once('@').ok_or_else(bad)?;
            let day: i32 = day.parse().map_err(|_| bad())?;
            let (hour, minute) = hm(t)?;
            if kind == "weekly" {
                SchedulePeriod::Weekly { day, hour, minute }
            } else {
                SchedulePeriod::Monthly { day, hour, minute }
            }
        }
        "periodic" => SchedulePeriod::Periodic {
            seconds: rest.parse().map_err(|_| bad())?,
        },
        _ => return Err(bad()),
    })
}

fn schedule_policy(
    name: String,
    schedules: &[String],
    retain: i64,
) -> anyhow::Result<SchedulePolicy> {
    Ok(SchedulePolicy {
        name,
        schedules: schedules
            .iter()
            .map(|s| {
                Ok(ScheduleInterval {
                    retain,
                    period: Some(parse_period(s)?),
                })
            })
            .collect::<anyhow::Result<_>>()?,
    })
}

fn print_schedule_policies(policies: &[SchedulePolicy]) {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let s: Vec<String> = p.schedules.iter().map(|i| i.to_string()).collect();
            vec![p.name.clone(), s.join(" ")]
        })
        .collect();
    table(&["NAME", "SCHEDULES"], &rows);
}

pub async fn run_schedule(cmd: SchedulePolicyCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        SchedulePolicyCommand::List => {
            let policies = client.schedule_policies().await?;
            ctx.emit(&policies, || print_schedule_policies(&policies))?;
        }
        SchedulePolicyCommand::Inspect { name } => {
            let p = client.inspect_schedule_policy(&name).await?;
            ctx.emit(&p, || print_schedule_policies(std::slice::from_ref(&p)))?;
        }
        SchedulePolicyCommand::Create {
            name,
            schedules,
            retain,
        } => {
            let p = schedule_policy(name, &schedules, retain)?;
            client.create_schedule_policy(&p).await?;
            println!("Schedule policy {} created", p.name);
        }
        SchedulePolicyCommand::Update {
            name,
            schedules,
            retain,
        } => {
            let p = schedule_policy(name, &schedules, retain)?;
            client.update_schedule_policy(&p).await?;
            println!("Schedule policy {} updated", p.name);
        }
        SchedulePolicyCommand::Delete { name } => {
            client.delete_schedule_policy(&name).await?;
            println!("Schedule policy {name} deleted");
        }
    }
    Ok(())
}

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// List the storage policies you may read.
    List,
    /// Show one storage policy.
    Inspect { name: String },
    /// Create a storage policy (you own it).
    Create {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Replace a storage policy's spec (its ownership is kept).
    Update {
        name: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Delete a storage policy (the default is released with it).
    Delete { name: String },
    /// Make a storage policy the default every volume create is shaped by (administrators).
    SetDefault { name: String },
    /// Show the default storage policy.
    Default,
    /// Remove the default storage policy (administrators).
    Release,
}

/// The values a storage policy sets on the volumes it shapes.
#[derive(clap::Args)]
pub struct SpecArgs {
    /// Size (`10Gi`); with `--size-op` `min` or `max` a bound instead of a value.
    #[arg(long)]
    size: Option<String>,
    #[arg(long, value_parser = ["eq", "min", "max"], default_value = "eq")]
    size_op: String,
    /// HA level; with `--ha-op` `min` or `max` a bound.
    #[arg(long)]
    ha: Option<i64>,
    #[arg(long, value_parser = ["eq", "min", "max"], default_value = "eq")]
    ha_op: String,
    /// Class of service (the SDK's `CosType` number).
    #[arg(long)]
    cos: Option<i32>,
    #[arg(long)]
    shared: Option<bool>,
    #[arg(long)]
    encrypted: Option<bool>,
    /// The volume must already carry the policy's values (refused otherwise) rather than get them.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    allow_update: bool,
    /// Everybody may read (and so use) the policy.
    #[arg(long)]
    public: bool,
}

fn op(s: &str) -> PolicyOp {
    match s {
        "min" => PolicyOp::Minimum,
        "max" => PolicyOp::Maximum,
        _ => PolicyOp::Equal,
    }
}

fn storage_policy(name: String, a: SpecArgs) -> anyhow::Result<StoragePolicy> {
    Ok(StoragePolicy {
        name,
        spec: SpecPolicy {
            size: a.size.as_deref().map(parse_size).transpose()?,
            size_op: op(&a.size_op),
            ha_level: a.ha,
            ha_level_op: op(&a.ha_op),
            cos: a.cos,
            shared: a.shared,
            encrypted: a.encrypted,
            ..SpecPolicy::default()
        },
        force: a.force,
        allow_update: a.allow_update,
        ownership: a.public.then(|| Ownership {
            owner: String::new(),
            acls: Acls {
                public: Some(AccessType::Read),
                ..Acls::default()
            },
        }),
    })
}

fn print_storage_policies(policies: &[StoragePolicy]) {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let owner = p
                .ownership
                .as_ref()
                .map(|o| o.owner.clone())
                .unwrap_or_default();
            vec![
                p.name.clone(),
                p.spec.to_string(),
                p.force.to_string(),
                owner,
            ]
        })
        .collect();
    table(&["NAME", "SPEC", "FORCE", "OWNER"], &rows);
}

pub async fn run(cmd: PolicyCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        PolicyCommand::List => {
            let policies = client.storage_policies().await?;
            ctx.emit(&policies, || print_storage_policies(&policies))?;
        }
        PolicyCommand::Inspect { name } => {
            let p = client.inspect_storage_policy(&name).await?;
            ctx.emit(&p, || print_storage_policies(std::slice::from_ref(&p)))?;
        }
        PolicyCommand::Create { name, spec } => {
            let p = storage_policy(name, spec)?;
            client.create_storage_policy(&p).await?;
            println!("Storage policy {} created", p.name);
        }
        PolicyCommand::Update { name, spec } => {
            // Without --public the ownership is not sent, so it is kept; with it, the ACLs
            // become public Read.
            let p = storage_policy(name, spec)?;
            client.update_storage_policy(&p).await?;
            println!("Storage policy {} updated", p.name);
        }
        PolicyCommand::Delete { name } => {
            client.delete_storage_policy(&name).await?;
            println!("Storage policy {name} deleted");
        }
        PolicyCommand::SetDefault { name } => {
            client.set_default_storage_policy(&name).await?;
            println!("Storage policy {name} is the default");
        }
        PolicyCommand::Default => {
            let p = client.default_storage_policy().await?;
            ctx.emit(&p, || match &p {
                Some(p) => print_storage_policies(std::slice::from_ref(p)),
                None => println!("No default storage policy"),
            })?;
        }
        PolicyCommand::Release => {
            client.release_storage_policy().await?;
            println!("Default storage policy released");
        }
    }
    Ok(())
}
