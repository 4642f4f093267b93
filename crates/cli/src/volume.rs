//! `custos volume ...`, `custos cluster ...` and `custos version`: SDK calls through the client.

use crate::output::{table, Context, Format};
use anyhow::{bail, Context as _};
use custos_client::CreateVolume;
use std::collections::BTreeMap;

#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (idempotent by name).
    Create {
        name: String,
        /// Size with an optional unit: 512Mi, 10Gi, 1Ti, or bytes.
        #[arg(long, default_value = "1Gi")]
        size: String,
        /// Replication factor (ha_level).
        #[arg(long, default_value_t = 1)]
        repl: i64,
        /// Labels, key=value; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long)]
        shared: bool,
        #[arg(long)]
        encrypted: bool,
    },
    /// Show a volume by id or name.
    Inspect { volume: String },
    /// List the volumes the caller can read.
    List,
    /// Delete a volume by id or name.
    Delete { volume: String },
}

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Raft status of the endpoint's node and the members it knows.
    Status,
    /// Cluster id, name and status (SDK Cluster.InspectCurrent).
    Inspect,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not key=value"))
}

/// Parses `10Gi`, `512Mi`, `1G`, `4096`.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("size {s:?} must start with a number"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "KB" => 1000,
        "Ki" | "KiB" => 1 << 10,
        "M" | "MB" => 1000 * 1000,
        "Mi" | "MiB" => 1 << 20,
        "G" | "GB" => 1000 * 1000 * 1000,
        "Gi" | "GiB" => 1 << 30,
        "T" | "TB" => 1000u64.pow(4),
        "Ti" | "TiB" => 1 << 40,
        _ => bail!("unknown size unit {unit:?}: use Ki, Mi, Gi, Ti (or K, M, G, T)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))
}

fn print_volume(v: &custos_client::model::Volume, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let owner = v
        .ownership
        .as_ref()
        .map_or("(public)".to_string(), |o| o.owner.clone());
    let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    table(
        &["ID", "NAME", "SIZE", "HA", "OWNER", "LABELS"],
        &[vec![
            v.id.0.clone(),
            v.name.clone(),
            v.spec.size.to_string(),
            v.spec.ha_level.to_string(),
            owner,
            labels.join(","),
        ]],
    );
    Ok(())
}

pub async fn run(cmd: VolumeCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            repl,
            labels,
            shared,
            encrypted,
        } => {
            let opts = CreateVolume {
                name: name.clone(),
                size: parse_size(&size)?,
                ha_level: repl,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                shared,
                encrypted,
            };
            let id = client.create_volume(&opts).await?;
            match ctx.format {
                Format::Json => {
                    println!("{}", serde_json::json!({ "volume_id": id, "name": name }))
                }
                Format::Table => println!("{id}"),
            }
            eprintln!("volume {name} created");
        }
        VolumeCommand::Inspect { volume } => {
            let v = client.find_volume(&volume).await?;
            print_volume(&v, ctx.format)?;
        }
        VolumeCommand::List => {
            let ids = client.enumerate_volumes().await?;
            let mut volumes = Vec::with_capacity(ids.len());
            for id in &ids {
                volumes.push(client.inspect_volume(id).await?);
            }
            if ctx.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&volumes)?);
            } else {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| {
                        let owner = v
                            .ownership
                            .as_ref()
                            .map_or("(public)".to_string(), |o| o.owner.clone());
                        vec![
                            v.id.0.clone(),
                            v.name.clone(),
                            v.spec.size.to_string(),
                            v.spec.ha_level.to_string(),
                            owner,
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "SIZE", "HA", "OWNER"], &rows);
            }
        }
        VolumeCommand::Delete { volume } => {
            let v = client.find_volume(&volume).await?;
            client.delete_volume(&v.id.0).await?;
            if ctx.format == Format::Json {
                println!("{}", serde_json::json!({ "deleted": v.id.0 }));
            }
            eprintln!("volume {} ({}) deleted", v.name, v.id);
        }
    }
    Ok(())
}

pub async fn run_cluster(cmd: ClusterCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        ClusterCommand::Status => {
            let s = client.status().await?;
            if ctx.format == Format::Json {
                let members: Vec<_> = s
                    .members
                    .iter()
                    .map(|m| serde_json::json!({"id": m.id, "raft_addr": m.raft_addr, "sdk_addr": m.sdk_addr, "voter": m.voter}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "node_id": s.node_id, "leader_id": s.leader_id, "term": s.term, "state": s.state,
                        "last_log_index": s.last_log_index, "applied_index": s.applied_index,
                        "cluster_id": s.cluster_id, "cluster_name": s.cluster_name, "serving": s.serving,
                        "members": members,
                    }))?
                );
            } else {
                println!(
                    "node {} is {} (term {}, leader {}, applied {})",
                    s.node_id, s.state, s.term, s.leader_id, s.applied_index
                );
                let rows: Vec<Vec<String>> = s
                    .members
                    .iter()
                    .map(|m| {
                        let role = if m.id == s.leader_id {
                            "leader"
                        } else if m.voter {
                            "voter"
                        } else {
                            "learner"
                        };
                        vec![
                            m.id.to_string(),
                            role.to_string(),
                            m.sdk_addr.clone(),
                            m.raft_addr.clone(),
                        ]
                    })
                    .collect();
                table(&["ID", "ROLE", "SDK", "RAFT"], &rows);
            }
        }
        ClusterCommand::Inspect => {
            let c = client.cluster().await?;
            if ctx.format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"id": c.id, "name": c.name, "status": c.status})
                );
            } else {
                table(
                    &["ID", "NAME", "STATUS"],
                    &[vec![c.id, c.name, c.status.to_string()]],
                );
            }
        }
    }
    Ok(())
}

pub async fn version(ctx: &Context) -> anyhow::Result<()> {
    let v = ctx.client()?.version().await?;
    let sdk = v.sdk_version.map(|s| s.version).unwrap_or_default();
    let server = v
        .version
        .map(|s| format!("{} {}", s.driver, s.version))
        .unwrap_or_default();
    match ctx.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"sdk_version": sdk, "server": server, "client": env!("CARGO_PKG_VERSION")})
        ),
        Format::Table => println!(
            "client {}\nserver {server}\nsdk {sdk}",
            env!("CARGO_PKG_VERSION")
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_size("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert!(parse_size("Gi").is_err());
        assert!(parse_size("1Qi").is_err());
        assert!(parse_size("99999999999Ti").is_err());
    }
}
