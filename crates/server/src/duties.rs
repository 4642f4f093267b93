//! Background duties of a member: registering itself through consensus, and, on the leader,
//! re-placing the replicas of members that stay down past the grace period.

use crate::liveness::DOWN_AFTER;
use crate::node::Node;
use custos_model::{Identity, NodeId, Op, Reply, RequestId, StorageNodeRecord};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The identity a node proposes its own cluster-internal commands with. It never comes from a
/// token: only server code builds it, and apply still checks it like any other caller.
pub fn node_identity(id: u64) -> Identity {
    Identity::internal_admin(&format!("custos-node-{id}"))
}

fn host(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_default()
}

/// This node's record as it registers it.
pub fn own_record(node: &Node) -> StorageNodeRecord {
    let cfg = &node.config;
    let me = cfg.initial_members.iter().find(|m| m.id == node.id);
    let sdk_addr = me
        .map(|m| m.sdk_addr.clone())
        .unwrap_or_else(|| cfg.sdk_listen.to_string());
    let raft_addr = me
        .map(|m| m.raft_addr.clone())
        .unwrap_or_else(|| cfg.raft_listen.to_string());
    StorageNodeRecord {
        id: NodeId(node.id),
        mgmt_ip: host(&sdk_addr),
        data_ip: host(&raft_addr),
        hostname: cfg.node.hostname.clone().unwrap_or_else(|| host(&sdk_addr)),
        sdk_addr,
        raft_addr,
        labels: cfg.node.labels.clone(),
        capacity_bytes: cfg.node.capacity_bytes,
        cordoned: false,
        registered_ms: 0,
    }
}

/// Registers this node (once per start, retrying until the cluster accepts it).
pub async fn register_self(node: Arc<Node>) {
    let record = own_record(&node);
    let request_id = RequestId(format!("register/{}/{}", node.id, uuid::Uuid::new_v4()));
    let mut pause = Duration::from_millis(200);
    loop {
        let deadline = Instant::now() + Duration::from_secs(10);
        let op = Op::RegisterNode {
            node: record.clone(),
        };
        match node
            .write(node_identity(node.id), request_id.clone(), op, deadline)
            .await
        {
            Ok(_) => {
                tracing::info!(node = node.id, "registered with the cluster");
                return;
            }
            Err(e) => tracing::warn!(
                node = node.id,
                "registration not accepted yet: {}",
                e.message()
            ),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// On the leader: re-places the replicas of registered members silent for longer than the
/// grace period. A member whose replicas could not all move is retried later, not in a loop.
pub async fn replace_replicas(node: Arc<Node>) {
    let grace = Duration::from_secs(node.config.replica_replace_after_secs);
    let mut last_try: HashMap<u64, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if node.current_leader() != Some(node.id) {
            last_try.clear();
            continue;
        }
        let (candidates, down): (Vec<u64>, BTreeSet<NodeId>) = {
            let state = node.state.read().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<u64> = state
                .nodes()
                .map(|n| n.id.0)
                .filter(|id| *id != node.id)
                .collect();
            let down = ids
                .iter()
                .copied()
                .filter(|id| node.liveness.silent_for(*id) >= DOWN_AFTER)
                .map(NodeId)
                .collect();
            let candidates = ids
                .into_iter()
                .filter(|id| {
                    node.liveness.silent_for(*id) >= grace
                        && !state.volumes_on(NodeId(*id)).is_empty()
                })
                .collect();
            (candidates, down)
        };
        for id in candidates {
            if last_try.get(&id).is_some_and(|t| t.elapsed() < grace) {
                continue;
            }
            last_try.insert(id, Instant::now());
            let op = Op::ReplaceReplicas {
                node: NodeId(id),
                down: down.clone(),
            };
            let request_id = RequestId(format!("replace/{id}/{}", uuid::Uuid::new_v4()));
            let deadline = Instant::now() + Duration::from_secs(10);
            match node
                .write(node_identity(node.id), request_id, op, deadline)
                .await
            {
                Ok(Reply::ReplicasReplaced { moved, stuck }) => {
                    tracing::warn!(
                        down = id,
                        moved = moved.len(),
                        stuck = stuck.len(),
                        "re-placed replicas of a down member"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(down = id, "re-placement refused: {}", e.message()),
            }
        }
    }
}
