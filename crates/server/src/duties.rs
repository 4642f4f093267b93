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
    let (raft_addr, sdk_addr) = cfg.advertised();
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
        incarnation: node.incarnation,
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

/// Proposes the edge denials seen since the last batch, every `[audit] batch_ms`. A batch that
/// is not acknowledged is retried with the same request id, so it is recorded exactly once.
pub async fn record_denials(node: Arc<Node>) {
    let period = Duration::from_millis(node.audit.settings().batch_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tick.tick().await;
        flush_denials(&node, Duration::from_secs(2), &mut failures).await;
    }
}

/// One attempt to record the pending (or in-flight) batch of denials.
pub async fn flush_denials(node: &Node, wait: Duration, failures: &mut u32) {
    let Some((request_id, denials)) = node.audit.next_batch() else {
        return;
    };
    let deadline = Instant::now() + wait;
    let op = Op::RecordDenials { denials };
    match node
        .write(node_identity(node.id), request_id.clone(), op, deadline)
        .await
    {
        Ok(_) => {
            node.audit.batch_recorded(&request_id);
            *failures = 0;
        }
        Err(e) => {
            *failures += 1;
            // Once, then every 50th attempt: a leaderless cluster must not flood the log.
            if *failures == 1 || failures.is_multiple_of(50) {
                tracing::warn!(
                    node = node.id,
                    backlog = node.audit.backlog(),
                    "denials not recorded yet: {}",
                    e.message()
                );
            }
        }
    }
}

/// Writes the local audit lines of replicated records this node took, as they apply.
pub async fn write_local_records(node: Arc<Node>) {
    let log = node.audit.log.clone();
    let mut appended = log.subscribe();
    // Records applied before this start were written by the previous run (or by no one, if
    // it crashed first: the replicated trail has them either way).
    let mut next = log.head().next_seq;
    loop {
        let last = *appended.borrow_and_update();
        while next <= last {
            let query = custos_model::AuditQuery {
                from_seq: Some(next),
                to_seq: Some(last),
                ..Default::default()
            };
            let log2 = log.clone();
            let page = tokio::task::spawn_blocking(move || log2.list(&query, None, 1000, false))
                .await
                .ok()
                .and_then(Result::ok);
            let Some(page) = page else {
                tracing::error!(
                    node = node.id,
                    "cannot read the audit trail for local lines"
                );
                break;
            };
            for r in &page.records {
                if r.origin.0 == node.id && !r.edge {
                    node.audit.write_record(r);
                }
            }
            next = match page.next {
                Some(n) => n,
                None => last + 1,
            };
        }
        if appended.changed().await.is_err() {
            return;
        }
    }
}

/// Truncations one retention check proposes at most (each of at most `AUDIT_TRUNCATE_MAX`
/// records): 640,000 records per 5 s check.
const RETENTION_COMMANDS_PER_CHECK: usize = 64;

/// On the leader: applies the retention of `[audit]` by proposing truncations of the oldest
/// records (at most `AUDIT_TRUNCATE_MAX` per command, commands in a row until caught up),
/// checked every 5 s.
pub async fn audit_retention(node: Arc<Node>) {
    let settings = node.audit.settings().clone();
    let max_age_ms = settings
        .max_age_secs()
        .ok()
        .flatten()
        .map(|s| s.saturating_mul(1000));
    if settings.max_records == 0 && max_age_ms.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if node.current_leader() != Some(node.id) {
            continue;
        }
        // One command removes at most AUDIT_TRUNCATE_MAX records: keep proposing until caught
        // up (bounded per check), so a flood appending faster than that per period is still
        // held to the bound.
        for _ in 0..RETENTION_COMMANDS_PER_CHECK {
            let Some(through) = retention_target(&node, settings.max_records, max_age_ms).await
            else {
                break;
            };
            let request_id = RequestId(format!("retention/{}/{}", node.id, uuid::Uuid::new_v4()));
            let deadline = Instant::now() + Duration::from_secs(10);
            let op = Op::TruncateAudit { through };
            match node
                .write(node_identity(node.id), request_id, op, deadline)
                .await
            {
                Ok(Reply::AuditTruncated { first, through }) if through >= first => {
                    tracing::info!(
                        node = node.id,
                        first,
                        through,
                        "audit retention truncated records"
                    )
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(node = node.id, "audit retention refused: {}", e.message());
                    break;
                }
            }
        }
    }
}

/// The last record retention wants gone, if any.
async fn retention_target(node: &Node, max_records: u64, max_age_ms: Option<u64>) -> Option<u64> {
    let head = node.audit.log.head();
    let mut through = custos_model::audit::retention_through(&head, max_records);
    if let Some(age) = max_age_ms {
        let cutoff = crate::node::now_ms().saturating_sub(age);
        let log = node.audit.log.clone();
        let first = head.first_seq;
        let last = head
            .last_seq()
            .min(first + custos_model::state::AUDIT_TRUNCATE_MAX - 1);
        // The newest record in the first chunk older than the cutoff (times grow with seq,
        // give or take clock steps between leaders).
        let old = tokio::task::spawn_blocking(move || {
            // The oldest kept record is young enough: nothing to scan for (the common case,
            // checked every 5 s).
            if log.get(first)?.is_none_or(|r| r.time_ms >= cutoff) {
                return Ok(custos_store::AuditPage::default());
            }
            let query = custos_model::AuditQuery {
                from_seq: Some(first),
                to_seq: Some(last),
                to_time_ms: Some(cutoff.saturating_sub(1)),
                ..Default::default()
            };
            log.list(&query, None, 1, true)
        })
        .await
        .ok()?
        .ok()?;
        if let Some(r) = old.records.first() {
            through = Some(through.map_or(r.seq, |t: u64| t.max(r.seq)));
        }
    }
    through.filter(|t| *t >= head.first_seq)
}
