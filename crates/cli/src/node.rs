//! `custos node list|inspect`: the storage nodes registered with the cluster.

use crate::output::{not_found, table, Context};
use custos_client::NodeInfo;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(clap::Subcommand)]
pub enum NodeCommand {
    /// Every registered node with its liveness and capacity.
    List,
    /// One node by id.
    Inspect { id: String },
}

/// A node as `-o json|yaml` prints it.
#[derive(Serialize)]
struct NodeView<'a> {
    id: &'a str,
    up: bool,
    hostname: &'a str,
    labels: &'a BTreeMap<String, String>,
    capacity_bytes: u64,
    placed_bytes: u64,
}

fn view(n: &NodeInfo) -> NodeView<'_> {
    NodeView {
        id: &n.id,
        up: n.up,
        hostname: &n.hostname,
        labels: &n.labels,
        capacity_bytes: n.capacity_bytes,
        placed_bytes: n.placed_bytes,
    }
}

fn rows(nodes: &[&NodeInfo]) {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                n.id.clone(),
                if n.up { "up" } else { "DOWN" }.to_string(),
                n.hostname.clone(),
                crate::volume::human_size(n.capacity_bytes),
                crate::volume::human_size(n.placed_bytes),
                labels.join(","),
            ]
        })
        .collect();
    table(
        &["ID", "STATUS", "HOSTNAME", "CAPACITY", "PLACED", "LABELS"],
        &rows,
    );
}

pub async fn run(cmd: NodeCommand, ctx: &Context) -> anyhow::Result<()> {
    let nodes = ctx.client()?.nodes().await?;
    match cmd {
        NodeCommand::List => {
            let views: Vec<_> = nodes.iter().map(view).collect();
            ctx.emit(&views, || rows(&nodes.iter().collect::<Vec<_>>()))?;
        }
        NodeCommand::Inspect { id } => {
            let n = nodes
                .iter()
                .find(|n| n.id == id)
                .ok_or_else(|| not_found(format!("no node {id:?}: see `custos node list`")))?;
            ctx.emit(&view(n), || rows(&[n]))?;
        }
    }
    Ok(())
}
