//! Replica placement: a pure, deterministic choice of the nodes that hold a volume's replicas.
//!
//! Apply runs these functions, so every node computes the same placement from the same state
//! and command. The rules, in priority order:
//!
//! 1. **Hard constraints.** Replicas are on distinct registered nodes, never on an excluded node
//!    (down, or being vacated), and only on nodes whose free space (`capacity_bytes` minus the
//!    bytes already placed there) is at least the volume's size. So placement never exceeds a
//!    node's capacity.
//! 2. **Requested nodes** (`replica_set.nodes`) are used first, all of them or the placement
//!    fails; the rest is chosen as below.
//! 3. **Spread**: each new replica goes to the zone holding the fewest replicas of the volume so
//!    far, then to the rack (within a zone) holding the fewest, so a volume spans as many zones
//!    as exist, then as many racks. Nodes without a zone label share one unnamed zone; racks
//!    are named within their zone (rack `r1` of zone `a` is not rack `r1` of zone `b`).
//! 4. **Least filled**: among equally spread candidates, the node whose fill ratio after taking
//!    the replica, `(placed + size) / capacity`, is lowest (compared exactly, without floats).
//!    With equal capacities this is the least bytes placed; with mixed capacities larger nodes
//!    take proportionally more.
//! 5. **Ties** go to the lowest node id.
//!
//! Cordoning is about attachments only: a cordoned node still takes replicas.
//!
//! "Bytes placed" on a node is the sum of the sizes of the volumes with a replica there;
//! snapshots share their volume's replicas and add nothing ([`crate::State::node_load`]).

use crate::ids::{NodeId, VolumeId};
use crate::node::StorageNodeRecord;
use crate::rejection::Rejection;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One replica moved by `ReplaceReplicas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMove {
    pub volume: VolumeId,
    pub from: NodeId,
    pub to: NodeId,
}

/// A replica `ReplaceReplicas` could not move; its volume was left exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckReplica {
    pub volume: VolumeId,
    pub node: NodeId,
    /// Why placement found no node for it (ResourceExhausted or FailedPrecondition).
    pub reason: Rejection,
}

/// The spread domains of a node: its zone, and its rack named within that zone. `None` for a
/// node that is not registered (it shares no domain with anything).
fn domains(node: Option<&StorageNodeRecord>) -> Option<(&str, &str)> {
    node.map(|n| (n.zone().unwrap_or(""), n.rack().unwrap_or("")))
}

/// Compares `used_a / capacity_a` with `used_b / capacity_b` exactly. A zero capacity is full.
fn cmp_fill(used_a: u64, capacity_a: u64, used_b: u64, capacity_b: u64) -> Ordering {
    match (capacity_a, capacity_b) {
        (0, 0) => used_a.cmp(&used_b),
        (0, _) => Ordering::Greater,
        (_, 0) => Ordering::Less,
        _ => (u128::from(used_a) * u128::from(capacity_b))
            .cmp(&(u128::from(used_b) * u128::from(capacity_a))),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `1 byte`, `300 bytes`.
pub(crate) fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_string()
    } else {
        format!("{n} bytes")
    }
}

fn id_list(ids: impl IntoIterator<Item = NodeId>) -> String {
    ids.into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The view of the nodes placement works on: by id (so the caller's slice order never
/// matters), with the bytes placed on each.
struct Cluster<'a> {
    nodes: BTreeMap<NodeId, &'a StorageNodeRecord>,
    load: &'a BTreeMap<NodeId, u64>,
}

impl<'a> Cluster<'a> {
    fn new(nodes: &[&'a StorageNodeRecord], load: &'a BTreeMap<NodeId, u64>) -> Cluster<'a> {
        Cluster {
            nodes: nodes.iter().map(|n| (n.id, *n)).collect(),
            load,
        }
    }

    fn load(&self, id: NodeId) -> u64 {
        self.load.get(&id).copied().unwrap_or(0)
    }

    fn free(&self, node: &StorageNodeRecord) -> u64 {
        node.capacity_bytes.saturating_sub(self.load(node.id))
    }

    fn domains(&self, id: NodeId) -> Option<(&'a str, &'a str)> {
        domains(self.nodes.get(&id).copied())
    }

    /// How many of `replicas` share `id`'s zone, and how many its rack.
    fn crowding(&self, id: NodeId, replicas: &[NodeId]) -> (usize, usize) {
        let Some((zone, rack)) = self.domains(id) else {
            return (0, 0);
        };
        replicas
            .iter()
            .filter_map(|r| self.domains(*r))
            .filter(|(z, _)| *z == zone)
            .fold((0, 0), |(zones, racks), (_, r)| {
                (zones + 1, racks + usize::from(r == rack))
            })
    }

    /// A `replica_set.nodes` entry: a decimal node id first, else the one node whose hostname,
    /// management IP or data IP it is.
    fn resolve(&self, name: &str) -> Result<&'a StorageNodeRecord, Rejection> {
        if let Some(n) = name
            .parse::<u64>()
            .ok()
            .and_then(|id| self.nodes.get(&NodeId(id)))
        {
            return Ok(n);
        }
        let matches: Vec<&StorageNodeRecord> = self
            .nodes
            .values()
            .copied()
            .filter(|n| n.answers_to(name))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one),
            [] => Err(Rejection::invalid(format!(
                "replica_set node {name:?} is not a registered node"
            ))),
            many => Err(Rejection::invalid(format!(
                "replica_set node {name:?} is ambiguous: it names nodes {}",
                id_list(many.iter().map(|n| n.id))
            ))),
        }
    }
}

/// Chooses the nodes of a volume's replicas. Returns the complete replica list: `keep` (the
/// replicas the volume keeps, in their order), then the requested nodes not among them, then
/// the nodes placement chose, until there are `replicas_wanted`. When `keep` already has that
/// many, it is returned as is (removing replicas is [`shed`]).
///
/// - `nodes`: every registered node (ids unique; their order does not matter).
/// - `load`: bytes placed per node (absent = 0).
/// - `size`: the bytes each new replica needs free on its node.
/// - `requested`: `replica_set.nodes`: decimal node ids, or hostnames, management or data IPs
///   of registered nodes.
/// - `exclude`: nodes that must not take a new replica (down, or being vacated). Kept
///   replicas on them stay.
///
/// Refusals, checked in this order:
/// - FailedPrecondition `ha_level 3 needs 3 nodes; the cluster has 2` when there are fewer
///   registered nodes than replicas wanted;
/// - InvalidArgument when a requested node is unknown or ambiguous, named twice, or when more
///   nodes are named than replicas wanted;
/// - FailedPrecondition when a requested node is excluded; ResourceExhausted when it lacks the
///   free space;
/// - FailedPrecondition when too many nodes are excluded to find distinct nodes;
/// - ResourceExhausted when too few eligible nodes have `size` bytes free, naming the size
///   and the largest free space among the other eligible nodes.
pub fn place(
    nodes: &[&StorageNodeRecord],
    load: &BTreeMap<NodeId, u64>,
    replicas_wanted: usize,
    size: u64,
    keep: &[NodeId],
    requested: &[String],
    exclude: &BTreeSet<NodeId>,
) -> Result<Vec<NodeId>, Rejection> {
    let cluster = Cluster::new(nodes, load);
    let total = cluster.nodes.len();
    if replicas_wanted > total {
        return Err(Rejection::precondition(format!(
            "ha_level {replicas_wanted} needs {}; the cluster has {total}",
            plural(replicas_wanted, "node"),
        )));
    }
    let mut chosen: Vec<NodeId> = Vec::with_capacity(replicas_wanted);
    for id in keep {
        if !chosen.contains(id) {
            chosen.push(*id);
        }
    }

    let mut asked: Vec<&StorageNodeRecord> = Vec::new();
    for name in requested {
        let node = cluster.resolve(name)?;
        if asked.iter().any(|a| a.id == node.id) {
            return Err(Rejection::invalid(format!(
                "replica_set names node {} twice",
                node.id
            )));
        }
        asked.push(node);
    }
    let named = asked.iter().filter(|a| !chosen.contains(&a.id)).count() + chosen.len();
    if !asked.is_empty() && named > replicas_wanted {
        return Err(Rejection::invalid(format!(
            "replica_set names {} but ha_level is {replicas_wanted}",
            plural(named, "node")
        )));
    }
    for node in asked {
        if chosen.contains(&node.id) {
            continue;
        }
        if exclude.contains(&node.id) {
            return Err(Rejection::precondition(format!(
                "replica_set node {} is down or being vacated",
                node.id
            )));
        }
        let free = cluster.free(node);
        if free < size {
            return Err(Rejection::exhausted(format!(
                "replica_set node {} has {} free; a replica of this volume needs {}",
                node.id,
                bytes(free),
                bytes(size)
            )));
        }
        chosen.push(node.id);
    }

    let need = replicas_wanted.saturating_sub(chosen.len());
    if need == 0 {
        return Ok(chosen);
    }
    let eligible: Vec<&StorageNodeRecord> = cluster
        .nodes
        .values()
        .copied()
        .filter(|n| !exclude.contains(&n.id) && !chosen.contains(&n.id))
        .collect();
    if eligible.len() < need {
        let out: Vec<NodeId> = cluster
            .nodes
            .keys()
            .copied()
            .filter(|id| exclude.contains(id) && !chosen.contains(id))
            .collect();
        return Err(Rejection::precondition(format!(
            "ha_level {replicas_wanted} needs {}; the cluster has {total}, and {} down or \
             being vacated ({})",
            plural(replicas_wanted, "node"),
            if out.len() == 1 {
                "1 is".to_string()
            } else {
                format!("{} are", out.len())
            },
            id_list(out)
        )));
    }
    let (mut fits, short): (Vec<&StorageNodeRecord>, Vec<&StorageNodeRecord>) =
        eligible.into_iter().partition(|n| cluster.free(n) >= size);
    if fits.len() < need {
        let roomiest = short
            .iter()
            .max_by(|a, b| cluster.free(a).cmp(&cluster.free(b)).then(b.id.cmp(&a.id)))
            .map(|n| {
                let other = if fits.is_empty() { "" } else { " other" };
                format!(
                    " (the most free space on any{other} eligible node is {}, on node {})",
                    bytes(cluster.free(n)),
                    n.id
                )
            })
            .unwrap_or_default();
        let wanted = if need == 1 {
            format!(
                "a replica of {} needs a node with {} free",
                bytes(size),
                bytes(size)
            )
        } else {
            format!(
                "{need} replicas of {} need {need} distinct nodes with {} free",
                bytes(size),
                bytes(size)
            )
        };
        let have = match fits.as_slice() {
            [] => "no eligible node has".to_string(),
            [one] => format!("only node {} has", one.id),
            many => format!("only nodes {} have", id_list(many.iter().map(|n| n.id))),
        };
        return Err(Rejection::exhausted(format!(
            "not enough free capacity: {wanted}; {have} that much{roomiest}"
        )));
    }
    for _ in 0..need {
        let best = fits
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                let (za, ra) = cluster.crowding(a.id, &chosen);
                let (zb, rb) = cluster.crowding(b.id, &chosen);
                za.cmp(&zb)
                    .then(ra.cmp(&rb))
                    .then_with(|| {
                        cmp_fill(
                            cluster.load(a.id).saturating_add(size),
                            a.capacity_bytes,
                            cluster.load(b.id).saturating_add(size),
                            b.capacity_bytes,
                        )
                    })
                    .then(a.id.cmp(&b.id))
            })
            .map(|(i, _)| i)
            .expect("fits holds at least `need` nodes");
        chosen.push(fits.remove(best).id);
    }
    Ok(chosen)
}

/// The replicas a volume keeps when its replica count drops to `wanted`: `replicas` in their
/// order, without those removed. Removed first: a replica on an unregistered node, then the
/// one sharing its zone (then its rack) with the most other replicas, so the spread survives,
/// then the one on the fullest node (bytes placed / capacity), then the highest node id.
pub fn shed(
    nodes: &[&StorageNodeRecord],
    load: &BTreeMap<NodeId, u64>,
    replicas: &[NodeId],
    wanted: usize,
) -> Vec<NodeId> {
    let cluster = Cluster::new(nodes, load);
    let mut kept = replicas.to_vec();
    while kept.len() > wanted {
        let drop = (0..kept.len())
            .max_by(|&i, &j| {
                let (a, b) = (kept[i], kept[j]);
                let (na, nb) = (cluster.nodes.get(&a), cluster.nodes.get(&b));
                let (za, ra) = cluster.crowding(a, &kept);
                let (zb, rb) = cluster.crowding(b, &kept);
                na.is_none()
                    .cmp(&nb.is_none())
                    .then(za.cmp(&zb))
                    .then(ra.cmp(&rb))
                    .then_with(|| match (na, nb) {
                        (Some(na), Some(nb)) => cmp_fill(
                            cluster.load(a),
                            na.capacity_bytes,
                            cluster.load(b),
                            nb.capacity_bytes,
                        ),
                        _ => Ordering::Equal,
                    })
                    .then(a.cmp(&b))
            })
            .expect("kept is longer than wanted, so not empty");
        kept.remove(drop);
    }
    kept
}
