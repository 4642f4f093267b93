//! `custos volume ...`, `custos cluster ...` and `custos version`: SDK calls through the client.
//! Wherever a volume is an argument it may be named by id or by name.

use crate::output::{invalid, table, Context};
use anyhow::Context as _;
use custos_client::model::{AccessType, Acls, Ownership, Volume, VolumeUpdate};
use custos_client::{Client, CreateVolume};
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
    /// Show a volume (or snapshot) by id or name.
    Inspect { volume: String },
    /// List the volumes the caller can read.
    List,
    /// Delete a volume by id or name.
    Delete { volume: String },
    /// Change a volume: grow it, change its replication, set or remove labels (`--label k=`).
    Update {
        volume: String,
        /// New size (may only grow): 512Mi, 10Gi, 1Ti, or bytes.
        #[arg(long)]
        size: Option<String>,
        /// New replication factor (ha_level).
        #[arg(long)]
        repl: Option<i64>,
        /// Labels, key=value (an empty value removes the key); repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Clone a volume into a new one owned by the caller.
    Clone {
        volume: String,
        name: String,
        /// Labels of the clone, key=value; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Snapshots: create, list, restore.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Attach a volume on the node of the answering endpoint; prints the device path.
    Attach { volume: String },
    /// Detach a volume (it must not be mounted).
    Detach { volume: String },
    /// Record a mount of an attached volume at a path.
    Mount {
        volume: String,
        #[arg(long)]
        path: String,
    },
    /// Record the unmount of a volume from a path.
    Unmount {
        volume: String,
        #[arg(long)]
        path: String,
    },
    /// Who may use a volume: show, add, remove, update (like `pxctl volume access`).
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Take a read-only snapshot of a volume; prints its id.
    Create {
        volume: String,
        #[arg(long)]
        name: String,
        /// Labels, key=value; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List the snapshots of a volume, or every snapshot the caller can read.
    List { volume: Option<String> },
    /// Restore a volume's content from one of its snapshots (by id or name).
    Restore {
        volume: String,
        #[arg(long)]
        snapshot: String,
    },
}

#[derive(clap::Subcommand)]
pub enum AccessCommand {
    /// Show the owner and the access list.
    Show { volume: String },
    /// Grant access: `--collaborator user:r|w|a`, `--group g:r|w|a`, `--public r|w|a`.
    Add {
        volume: String,
        /// USER:r|w|a (user id = the token's subject); repeatable or comma-separated.
        #[arg(long = "collaborator", value_delimiter = ',', value_parser = parse_grant)]
        collaborators: Vec<(String, AccessType)>,
        /// GROUP:r|w|a; repeatable or comma-separated.
        #[arg(long = "group", value_delimiter = ',', value_parser = parse_grant)]
        groups: Vec<(String, AccessType)>,
        /// Public access: r, w or a.
        #[arg(long, value_parser = parse_level)]
        public: Option<AccessType>,
    },
    /// Revoke access: `--collaborator user`, `--group g`, `--public`.
    Remove {
        volume: String,
        /// A user id; repeatable or comma-separated.
        #[arg(long = "collaborator", value_delimiter = ',')]
        collaborators: Vec<String>,
        /// A group; repeatable or comma-separated.
        #[arg(long = "group", value_delimiter = ',')]
        groups: Vec<String>,
        /// Take away public access.
        #[arg(long)]
        public: bool,
    },
    /// Replace lists wholesale (`--collaborators u1:a,u2:r`, `--groups g:w`, `--public r|w|a|none`)
    /// or change the owner (`--owner USER`: ownership administrators only).
    Update {
        volume: String,
        /// The whole collaborator list (`--collaborators` with no value clears it).
        #[arg(long, alias = "collaborator", value_delimiter = ',', value_parser = parse_grant, num_args = 0..)]
        collaborators: Option<Vec<(String, AccessType)>>,
        /// The whole group list (`--groups` with no value clears it).
        #[arg(long, alias = "group", value_delimiter = ',', value_parser = parse_grant, num_args = 0..)]
        groups: Option<Vec<(String, AccessType)>>,
        /// Public access: r, w, a, or none.
        #[arg(long)]
        public: Option<String>,
        /// The new owner's user id (ownership administrators only; the server enforces it).
        #[arg(long)]
        owner: Option<String>,
    },
}

/// `r`, `w`, `a` (or `read`, `write`, `admin`).
pub fn parse_level(s: &str) -> Result<AccessType, String> {
    match s {
        "r" | "read" => Ok(AccessType::Read),
        "w" | "write" => Ok(AccessType::Write),
        "a" | "admin" => Ok(AccessType::Admin),
        _ => Err(format!(
            "access {s:?}: use r (read), w (write) or a (admin)"
        )),
    }
}

/// `name:r|w|a`.
pub fn parse_grant(s: &str) -> Result<(String, AccessType), String> {
    let (name, level) = s
        .rsplit_once(':')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME:r|w|a"))?;
    Ok((name.to_string(), parse_level(level)?))
}

fn level_name(a: AccessType) -> &'static str {
    match a {
        AccessType::Read => "read",
        AccessType::Write => "write",
        AccessType::Admin => "admin",
    }
}

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Raft status of the endpoint's node and the members it knows.
    Status,
    /// Cluster id, name and status (SDK Cluster.InspectCurrent).
    Inspect,
    /// Add a node as a non-voting learner; returns once it has caught up (by snapshot when the
    /// log was purged). Usually a node joins by itself with `custos server --join`.
    AddLearner {
        /// The new node's id (unused by any member, past or present).
        id: u64,
        /// The node's peer (Raft) address, `host:port`.
        #[arg(long)]
        raft_addr: String,
        /// The node's SDK address, `host:port`.
        #[arg(long)]
        sdk_addr: String,
    },
    /// Make a learner a voter.
    Promote { id: u64 },
    /// Remove a member (voter or learner, alive or dead). A node whose data was lost must be
    /// removed, then join under a new id.
    Remove { id: u64 },
    /// Hand leadership to voter ID (without ID the endpoint, which must lead, picks the voter
    /// furthest along).
    TransferLeader { id: Option<u64> },
    /// Write a consistent backup of the replicated state (roles, volumes, ownership, nodes,
    /// audit trail) to a file; `custos server --restore FILE` starts a new cluster from it.
    Backup {
        #[arg(long)]
        output: std::path::PathBuf,
    },
}

/// The members as a table: id, role (leader, voter, learner), addresses.
fn members_table(leader: u64, members: &[custos_client::Member]) {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let role = if m.id == leader {
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

/// Prints a membership after a change.
fn print_members(
    ctx: &Context,
    what: &str,
    reply: &custos_client::MembershipReply,
) -> anyhow::Result<()> {
    let members: Vec<_> = reply
        .members
        .iter()
        .map(|m| serde_json::json!({"id": m.id, "raft_addr": m.raft_addr, "sdk_addr": m.sdk_addr, "voter": m.voter}))
        .collect();
    ctx.emit(
        &serde_json::json!({"leader_id": reply.leader_id, "members": members}),
        || {
            eprintln!("{what}");
            members_table(reply.leader_id, &reply.members);
        },
    )
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not key=value"))
}

/// Parses `10Gi`, `512Mi`, `1G`, `4096` (`bytesize`: binary units `Ki`..`Ei` with or without
/// `B`, decimal `K`..`E`, any case, an optional space, a fraction such as `1.5Gi`).
///
/// The adapter around it: only a number first (the crate reads no sign, so `-1Gi` is no
/// number), the unit error named as before, and a size past `u64` refused (the crate saturates
/// to `u64::MAX`, which is therefore never a size here).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let unit = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let number = &s[..s.len() - unit.len()];
    if !s.starts_with(|c: char| c.is_ascii_digit()) || number.parse::<f64>().is_err() {
        return Err(invalid(format!(
            "size {s:?} must start with a number, e.g. 10Gi"
        )));
    }
    let too_large = || invalid(format!("size {s:?} is too large"));
    let size: bytesize::ByteSize = s.parse().map_err(|_| {
        if unit.is_empty() && number.contains('.') {
            invalid(format!(
                "size {s:?}: bytes are whole; give a unit, e.g. 1.5Gi"
            ))
        } else if unit.is_empty() {
            too_large()
        } else {
            invalid(format!(
                "unknown size unit {:?} in {s:?}: use Ki, Mi, Gi, Ti (or K, M, G, T)",
                unit.trim()
            ))
        }
    })?;
    if size.as_u64() == u64::MAX {
        return Err(too_large());
    }
    Ok(size.as_u64())
}

/// `1073741824` → `1Gi`; sizes that are no whole binary unit stay in bytes. (Not `bytesize`'s
/// display, which rounds to one decimal and writes `1.0 GiB`: a table shows the exact size, in a
/// spelling `--size` accepts back.)
pub fn human_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// What a volume record is: a snapshot, a clone, or a plain volume.
fn kind(v: &Volume) -> &'static str {
    match (v.snapshot, &v.parent) {
        (true, _) => "snapshot",
        (false, Some(_)) => "clone",
        (false, None) => "volume",
    }
}

fn owner_of(v: &Volume) -> String {
    v.ownership
        .as_ref()
        .map_or("(public)".to_string(), |o| o.owner.clone())
}

fn print_volume(v: &Volume, ctx: &Context) -> anyhow::Result<()> {
    ctx.emit(v, || {
        let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let state = match &v.attached_on {
            Some(node) if v.mount_paths.is_empty() => format!("attached on {node}"),
            Some(node) => format!(
                "attached on {node}, mounted at {}",
                v.mount_paths.iter().cloned().collect::<Vec<_>>().join(",")
            ),
            None => "detached".to_string(),
        };
        table(
            &["ID", "NAME", "SIZE", "HA", "OWNER", "STATE", "LABELS"],
            &[vec![
                v.id.0.clone(),
                v.name.clone(),
                human_size(v.spec.size),
                v.spec.ha_level.to_string(),
                owner_of(v),
                state,
                labels.join(","),
            ]],
        );
    })
}

/// Prints the id a command made, as a bare line or an object.
fn print_id(ctx: &Context, key: &str, id: &str, name: &str) -> anyhow::Result<()> {
    ctx.emit(&serde_json::json!({ key: id, "name": name }), || {
        println!("{id}")
    })
}

/// Prints an acknowledgement object for scripts (`-o json|yaml`); nothing for people.
fn ack(ctx: &Context, value: serde_json::Value) -> anyhow::Result<()> {
    ctx.emit(&value, || ())
}

fn print_access(v: &Volume, ctx: &Context) -> anyhow::Result<()> {
    let ownership = v.ownership.clone().unwrap_or_default();
    ctx.emit(&ownership, || {
        match &v.ownership {
            Some(o) if !o.owner.is_empty() => println!("volume {} is owned by {}", v.name, o.owner),
            Some(_) => println!("volume {} has no owner", v.name),
            None => println!("volume {} has no owner: everybody may use it", v.name),
        }
        let acls = &ownership.acls;
        let mut rows: Vec<Vec<String>> = Vec::new();
        for (u, a) in &acls.collaborators {
            rows.push(vec![
                "collaborator".into(),
                u.clone(),
                level_name(*a).into(),
            ]);
        }
        for (g, a) in &acls.groups {
            rows.push(vec!["group".into(), g.clone(), level_name(*a).into()]);
        }
        if let Some(a) = acls.public {
            rows.push(vec!["public".into(), "*".into(), level_name(a).into()]);
        }
        if !rows.is_empty() {
            table(&["TYPE", "NAME", "ACCESS"], &rows);
        }
    })
}

/// Sends an ACL edit: the whole new access list, and an owner only when one is given (an
/// empty owner keeps the current one; only ownership administrators may set another).
async fn set_access(
    client: &Client,
    v: &Volume,
    acls: Acls,
    owner: Option<String>,
    ctx: &Context,
) -> anyhow::Result<()> {
    let update = VolumeUpdate {
        ownership: Some(Ownership {
            owner: owner.unwrap_or_default(),
            acls,
        }),
        ..Default::default()
    };
    client
        .update_volume(&v.id.0, &BTreeMap::new(), &update)
        .await?;
    show_after_edit(client, v, ctx).await
}

async fn run_access(cmd: AccessCommand, client: &Client, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        AccessCommand::Show { volume } => {
            let v = client.find_volume(&volume).await?;
            print_access(&v, ctx)?;
        }
        AccessCommand::Add {
            volume,
            collaborators,
            groups,
            public,
        } => {
            if collaborators.is_empty() && groups.is_empty() && public.is_none() {
                return Err(invalid(
                    "nothing to add: pass --collaborator USER:r|w|a, --group GROUP:r|w|a or --public r|w|a",
                ));
            }
            let v = client.find_volume(&volume).await?;
            let mut acls = v.ownership.clone().unwrap_or_default().acls;
            acls.collaborators.extend(collaborators);
            acls.groups.extend(groups);
            if public.is_some() {
                acls.public = public;
            }
            set_access(client, &v, acls, None, ctx).await?;
        }
        AccessCommand::Remove {
            volume,
            collaborators,
            groups,
            public,
        } => {
            if collaborators.is_empty() && groups.is_empty() && !public {
                return Err(invalid(
                    "nothing to remove: pass --collaborator USER, --group GROUP or --public",
                ));
            }
            let v = client.find_volume(&volume).await?;
            let mut acls = v.ownership.clone().unwrap_or_default().acls;
            for c in &collaborators {
                if acls.collaborators.remove(c).is_none() {
                    eprintln!("note: {c} was not a collaborator");
                }
            }
            for g in &groups {
                if acls.groups.remove(g).is_none() {
                    eprintln!("note: group {g} had no access");
                }
            }
            if public {
                acls.public = None;
            }
            set_access(client, &v, acls, None, ctx).await?;
        }
        AccessCommand::Update {
            volume,
            collaborators,
            groups,
            public,
            owner,
        } => {
            if collaborators.is_none() && groups.is_none() && public.is_none() && owner.is_none() {
                return Err(invalid(
                    "nothing to update: pass --collaborators, --groups, --public or --owner",
                ));
            }
            let public = match public.as_deref() {
                None => None,
                Some("none" | "") => Some(None),
                Some(p) => Some(Some(parse_level(p).map_err(invalid)?)),
            };
            if owner.as_deref() == Some("") {
                return Err(invalid("--owner needs a user id"));
            }
            let v = client.find_volume(&volume).await?;
            let mut acls = v.ownership.clone().unwrap_or_default().acls;
            if let Some(c) = collaborators {
                acls.collaborators = c.into_iter().collect();
            }
            if let Some(g) = groups {
                acls.groups = g.into_iter().collect();
            }
            if let Some(p) = public {
                acls.public = p;
            }
            set_access(client, &v, acls, owner, ctx).await?;
        }
    }
    Ok(())
}

/// Prints the access list after an edit, read back from the cluster (unless the edit took
/// away the caller's own read access).
async fn show_after_edit(client: &Client, v: &Volume, ctx: &Context) -> anyhow::Result<()> {
    eprintln!("access of volume {} updated", v.name);
    match client.inspect_volume(&v.id.0).await {
        Ok(v) => print_access(&v, ctx),
        Err(e) => {
            eprintln!("note: cannot read the volume back ({e})");
            Ok(())
        }
    }
}

async fn run_snapshot(cmd: SnapshotCommand, client: &Client, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create {
            volume,
            name,
            labels,
        } => {
            let v = client.find_volume(&volume).await?;
            let id = client
                .create_snapshot(&v.id.0, &name, &labels.into_iter().collect())
                .await?;
            print_id(ctx, "snapshot_id", &id, &name)?;
            eprintln!("snapshot {name} of volume {} created", v.name);
        }
        SnapshotCommand::List { volume } => {
            let parent = match volume {
                Some(v) => Some(client.find_volume(&v).await?),
                None => None,
            };
            let ids = client
                .enumerate_snapshots(parent.as_ref().map_or("", |v| v.id.0.as_str()))
                .await?;
            let mut snaps = Vec::with_capacity(ids.len());
            for id in &ids {
                snaps.push(client.inspect_volume(id).await?);
            }
            ctx.emit(&snaps, || {
                let rows: Vec<Vec<String>> = snaps
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.0.clone(),
                            s.name.clone(),
                            s.parent.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
                            human_size(s.spec.size),
                            s.created_ms.to_string(),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "VOLUME", "SIZE", "CREATED_MS"], &rows);
            })?;
        }
        SnapshotCommand::Restore { volume, snapshot } => {
            let v = client.find_volume(&volume).await?;
            let s = client.find_volume(&snapshot).await?;
            client.restore_snapshot(&v.id.0, &s.id.0).await?;
            ack(
                ctx,
                serde_json::json!({ "restored": v.id.0, "snapshot": s.id.0 }),
            )?;
            eprintln!("volume {} restored from snapshot {}", v.name, s.name);
        }
    }
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
            print_id(ctx, "volume_id", &id, &name)?;
            eprintln!("volume {name} created");
        }
        VolumeCommand::Inspect { volume } => {
            let v = client.find_volume(&volume).await?;
            print_volume(&v, ctx)?;
        }
        VolumeCommand::List => {
            let ids = client.enumerate_volumes().await?;
            let mut volumes = Vec::with_capacity(ids.len());
            for id in &ids {
                volumes.push(client.inspect_volume(id).await?);
            }
            ctx.emit(&volumes, || {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| {
                        vec![
                            v.id.0.clone(),
                            v.name.clone(),
                            kind(v).to_string(),
                            human_size(v.spec.size),
                            v.spec.ha_level.to_string(),
                            owner_of(v),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "KIND", "SIZE", "HA", "OWNER"], &rows);
            })?;
        }
        VolumeCommand::Delete { volume } => {
            let v = client.find_volume(&volume).await?;
            client.delete_volume(&v.id.0).await?;
            ack(ctx, serde_json::json!({ "deleted": v.id.0 }))?;
            eprintln!("volume {} ({}) deleted", v.name, v.id);
        }
        VolumeCommand::Update {
            volume,
            size,
            repl,
            labels,
        } => {
            if size.is_none() && repl.is_none() && labels.is_empty() {
                return Err(invalid(
                    "nothing to update: pass --size, --repl or --label key=value",
                ));
            }
            let update = VolumeUpdate {
                size: size.as_deref().map(parse_size).transpose()?,
                ha_level: repl,
                ..Default::default()
            };
            let v = client.find_volume(&volume).await?;
            client
                .update_volume(&v.id.0, &labels.into_iter().collect(), &update)
                .await?;
            let after = client.inspect_volume(&v.id.0).await?;
            eprintln!("volume {} updated", v.name);
            print_volume(&after, ctx)?;
        }
        VolumeCommand::Clone {
            volume,
            name,
            labels,
        } => {
            let v = client.find_volume(&volume).await?;
            let id = client
                .clone_volume(&v.id.0, &name, &labels.into_iter().collect())
                .await?;
            print_id(ctx, "volume_id", &id, &name)?;
            eprintln!("volume {} cloned as {name}", v.name);
        }
        VolumeCommand::Snapshot { command } => run_snapshot(command, &client, ctx).await?,
        VolumeCommand::Attach { volume } => {
            let v = client.find_volume(&volume).await?;
            let device = client.attach_volume(&v.id.0).await?;
            ctx.emit(
                &serde_json::json!({ "volume_id": v.id.0, "device_path": device }),
                || println!("{device}"),
            )?;
            eprintln!("volume {} attached", v.name);
        }
        VolumeCommand::Detach { volume } => {
            let v = client.find_volume(&volume).await?;
            client.detach_volume(&v.id.0).await?;
            ack(ctx, serde_json::json!({ "detached": v.id.0 }))?;
            eprintln!("volume {} detached", v.name);
        }
        VolumeCommand::Mount { volume, path } => {
            let v = client.find_volume(&volume).await?;
            client.mount_volume(&v.id.0, &path).await?;
            ack(ctx, serde_json::json!({ "mounted": v.id.0, "path": path }))?;
            eprintln!("volume {} mounted at {path}", v.name);
        }
        VolumeCommand::Unmount { volume, path } => {
            let v = client.find_volume(&volume).await?;
            client.unmount_volume(&v.id.0, &path).await?;
            ack(
                ctx,
                serde_json::json!({ "unmounted": v.id.0, "path": path }),
            )?;
            eprintln!("volume {} unmounted from {path}", v.name);
        }
        VolumeCommand::Access { command } => run_access(command, &client, ctx).await?,
    }
    Ok(())
}

pub async fn run_cluster(cmd: ClusterCommand, ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        ClusterCommand::Status => {
            let s = client.status().await?;
            let members: Vec<_> = s
                .members
                .iter()
                .map(|m| serde_json::json!({"id": m.id, "raft_addr": m.raft_addr, "sdk_addr": m.sdk_addr, "voter": m.voter}))
                .collect();
            let value = serde_json::json!({
                "node_id": s.node_id, "leader_id": s.leader_id, "term": s.term, "state": s.state,
                "last_log_index": s.last_log_index, "applied_index": s.applied_index,
                "cluster_id": s.cluster_id, "cluster_name": s.cluster_name, "serving": s.serving,
                "members": members,
            });
            ctx.emit(&value, || {
                println!(
                    "node {} is {} (term {}, leader {}, applied {})",
                    s.node_id, s.state, s.term, s.leader_id, s.applied_index
                );
                members_table(s.leader_id, &s.members);
            })?;
        }
        ClusterCommand::AddLearner {
            id,
            raft_addr,
            sdk_addr,
        } => {
            eprintln!("adding node {id} as a learner; waiting for it to catch up...");
            let reply = client
                .with_timeout(std::time::Duration::from_secs(600))
                .add_learner(id, &raft_addr, &sdk_addr)
                .await?;
            print_members(
                ctx,
                &format!("node {id} is a learner and has caught up"),
                &reply,
            )?;
        }
        ClusterCommand::Promote { id } => {
            let reply = client.promote(id).await?;
            print_members(ctx, &format!("node {id} is a voter"), &reply)?;
        }
        ClusterCommand::Remove { id } => {
            let reply = client.remove_member(id).await?;
            print_members(ctx, &format!("node {id} removed"), &reply)?;
        }
        ClusterCommand::TransferLeader { id } => {
            eprintln!("handing leadership over...");
            let reply = client.transfer_leader(id.unwrap_or(0)).await?;
            print_members(ctx, &format!("node {} leads", reply.leader_id), &reply)?;
        }
        ClusterCommand::Backup { output } => {
            eprintln!("taking a backup...");
            let tmp = output.with_extension("partial");
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .with_context(|| format!("writing {}", tmp.display()))?;
            let written = client
                .with_timeout(std::time::Duration::from_secs(600))
                .backup_into(&mut file)
                .await;
            let bytes = match written {
                Ok(n) => n,
                Err(e) => {
                    drop(file);
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            };
            file.sync_all()
                .await
                .with_context(|| format!("writing {}", tmp.display()))?;
            drop(file);
            std::fs::rename(&tmp, &output)
                .with_context(|| format!("writing {}", output.display()))?;
            ctx.emit(&serde_json::json!({"file": output, "bytes": bytes}), || {
                println!("backup written to {} ({bytes} bytes)", output.display())
            })?;
        }
        ClusterCommand::Inspect => {
            let c = client.cluster().await?;
            ctx.emit(
                &serde_json::json!({"id": c.id, "name": c.name, "status": c.status}),
                || {
                    table(
                        &["ID", "NAME", "STATUS"],
                        &[vec![c.id.clone(), c.name.clone(), c.status.to_string()]],
                    )
                },
            )?;
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
    ctx.emit(
        &serde_json::json!({"sdk_version": sdk, "server": server, "client": env!("CARGO_PKG_VERSION")}),
        || {
            println!(
                "client {}\nserver {server}\nsdk {sdk}",
                env!("CARGO_PKG_VERSION")
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{parse_grant, parse_level, parse_size};
    use custos_client::model::AccessType;

    #[test]
    fn human_sizes() {
        assert_eq!(super::human_size(1 << 30), "1Gi");
        assert_eq!(super::human_size(3 << 20), "3Mi");
        assert_eq!(super::human_size(1500), "1500");
        assert_eq!(super::human_size(0), "0");
    }

    #[test]
    fn grants() {
        assert_eq!(
            parse_grant("alice:a").unwrap(),
            ("alice".into(), AccessType::Admin)
        );
        assert_eq!(
            parse_grant("g:x:r").unwrap(),
            ("g:x".into(), AccessType::Read)
        );
        assert_eq!(parse_level("write").unwrap(), AccessType::Write);
        assert!(parse_grant("alice").is_err());
        assert!(parse_grant(":r").is_err());
        assert!(parse_grant("bob:q").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_size("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1Ti").unwrap(), 1 << 40);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("3T").unwrap(), 3_000_000_000_000);
        assert_eq!(parse_size("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_size(" 10 GiB ").unwrap(), 10 << 30);
        for bad in [
            "Gi", "", "-1Gi", ".5Gi", "1.2.3Gi", "1.5", "1Qi", "10 Gi x", "1é",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        let unit = parse_size("12Qi").unwrap_err().to_string();
        assert!(unit.contains("unknown size unit \"Qi\""), "{unit}");
        for huge in [
            "99999999999Ti",
            "18446744073709551615",
            "99999999999999999999",
            "1e30",
        ] {
            assert!(parse_size(huge).is_err(), "{huge:?} should be refused");
        }
        // What a table shows, --size reads back.
        for size in [1 << 30, 3 << 20, 1500, 5 << 40] {
            assert_eq!(parse_size(&super::human_size(size)).unwrap(), size);
        }
    }
}
