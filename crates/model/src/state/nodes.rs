//! The storage node operations of `State::apply`: registration, cordon, drain and re-placement.
//!
//! These are cluster operations: the role check (`Op::method`) is their only authorization;
//! volume ownership is not consulted, as the operator acts on the cluster, not on volumes.
//! Like the volume operations, they only decide and push changes.

use super::volumes::put_if_changed;
use super::{Change, Record, State};
use crate::command::{Command, Reply};
use crate::ids::NodeId;
use crate::node::StorageNodeRecord;
use crate::placement::{self, ReplicaMove, StuckReplica};
use crate::rejection::Rejection;
use std::collections::BTreeSet;

pub(super) fn node_not_found(id: NodeId) -> Rejection {
    Rejection::not_found(format!("Node {id} not found"))
}

impl State {
    fn registered(&self, id: NodeId) -> Result<&StorageNodeRecord, Rejection> {
        self.nodes.get(&id).ok_or_else(|| node_not_found(id))
    }

    /// `RegisterNode`: records what the node reports. Re-registering changes only what the
    /// node reports; `cordoned` and `registered_ms` stay apply's (see `Op::RegisterNode`).
    pub(super) fn retire_node(
        &self,
        cmd: &Command,
        id: NodeId,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if !self.retired.contains_key(&id) {
            changes.push(Change::Put(Record::Retired {
                id,
                retired_ms: cmd.time_ms,
            }));
        }
        Ok(Reply::Empty)
    }

    pub(super) fn register_node(
        &self,
        cmd: &Command,
        node: &StorageNodeRecord,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if self.retired.contains_key(&node.id) {
            return Err(Rejection::precondition(format!(
                "Node {} was removed from the cluster: a removed id never comes back. Let the \
                 node join under a new id",
                node.id
            )));
        }
        let mut record = node.clone();
        match self.nodes.get(&node.id) {
            Some(old) => {
                if old.incarnation != 0 && record.incarnation != old.incarnation {
                    return Err(Rejection::precondition(format!(
                        "Node {} is registered with another data directory (incarnation {}, \
                         this one {}): its data was lost or replaced. Remove the member and \
                         let the node join under a new id",
                        node.id, old.incarnation, record.incarnation
                    )));
                }
                if record.incarnation == 0 {
                    record.incarnation = old.incarnation;
                }
                record.cordoned = old.cordoned;
                record.registered_ms = old.registered_ms;
                if &record == old {
                    return Ok(Reply::Empty);
                }
            }
            None => {
                record.cordoned = false;
                record.registered_ms = cmd.time_ms;
            }
        }
        changes.push(Change::Put(Record::Node(record)));
        Ok(Reply::Empty)
    }

    /// `CordonNode` / `UncordonNode`. Idempotent.
    pub(super) fn set_cordoned(
        &self,
        id: NodeId,
        cordoned: bool,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let node = self.registered(id)?;
        if node.cordoned != cordoned {
            let mut record = node.clone();
            record.cordoned = cordoned;
            changes.push(Change::Put(Record::Node(record)));
        }
        Ok(Reply::Empty)
    }

    /// `DrainNode`: every volume attached on the node (its decimal id, as attachments are
    /// recorded) is unmounted and detached. Mounted volumes too: a drain that left them
    /// would not drain.
    pub(super) fn drain_node(
        &self,
        cmd: &Command,
        id: NodeId,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        self.registered(id)?;
        let name = id.to_string();
        let mut detached = Vec::new();
        for v in self
            .volumes
            .values()
            .filter(|v| v.attached_on.as_deref() == Some(name.as_str()))
        {
            let mut new = v.clone();
            new.attached_on = None;
            new.device_path.clear();
            new.mount_paths.clear();
            put_if_changed(cmd, v, new, changes);
            detached.push(v.id.clone());
        }
        Ok(Reply::Drained { detached })
    }

    /// `ReplaceReplicas`: moves every replica on `node` (of volumes, in id order; snapshots
    /// follow their volume) onto a node placement picks, never `node` nor one of `down`. The
    /// volume keeps its other replicas and its replica count; the new node takes the old one's
    /// position. Each move sees the loads left by the moves before it. A volume placement
    /// cannot serve stays as it was and is reported as stuck.
    pub(super) fn replace_replicas(
        &self,
        cmd: &Command,
        node: NodeId,
        down: &BTreeSet<NodeId>,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        self.registered(node)?;
        let nodes: Vec<&StorageNodeRecord> = self.nodes.values().collect();
        let mut exclude = down.clone();
        exclude.insert(node);
        let mut load = self.loads.clone();
        let mut moved = Vec::new();
        let mut stuck = Vec::new();
        for v in self
            .volumes
            .values()
            .filter(|v| !v.snapshot && v.replicas.contains(&node))
        {
            let keep: Vec<NodeId> = v.replicas.iter().copied().filter(|r| *r != node).collect();
            let size = v.spec.size;
            let placed =
                placement::place(&nodes, &load, v.replicas.len(), size, &keep, &[], &exclude);
            let to = match placed {
                Ok(placed) => *placed
                    .last()
                    .expect("placement returns as many replicas as the volume has"),
                Err(reason) => {
                    stuck.push(StuckReplica {
                        volume: v.id.clone(),
                        node,
                        reason,
                    });
                    continue;
                }
            };
            for (n, add) in [(node, false), (to, true)] {
                let l = load.entry(n).or_insert(0);
                *l = if add {
                    l.saturating_add(size)
                } else {
                    l.saturating_sub(size)
                };
            }
            let mut new = v.clone();
            for r in new.replicas.iter_mut().filter(|r| **r == node) {
                *r = to;
            }
            self.put_with_snapshots(cmd, v, new, changes);
            moved.push(ReplicaMove {
                volume: v.id.clone(),
                from: node,
                to,
            });
        }
        if moved.is_empty() {
            if let Some(first) = stuck.first() {
                return Err(Rejection::new(
                    first.reason.code,
                    format!(
                        "Cannot move the replica of volume {} off node {node}: {}",
                        first.volume, first.reason.message
                    ),
                ));
            }
        }
        Ok(Reply::ReplicasReplaced { moved, stuck })
    }
}
