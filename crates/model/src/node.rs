//! Storage node records: what every member registers about itself through consensus when it joins.
//!
//! Liveness (Up/Down) is deliberately not here: it is the leader's view of heartbeats, which
//! changes without a log entry, so it never enters the replicated state. The leader hands it to
//! apply explicitly where it matters (`Op::ReplaceReplicas { down, .. }`).

use crate::ids::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The label naming a node's failure zone (the Kubernetes well-known label).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The label naming a node's rack. Kubernetes defines no rack label; `rack` is what operators
/// (and Portworx) use.
pub const RACK_LABEL: &str = "rack";

/// Accepted in place of [`RACK_LABEL`] when a node does not carry `rack`, for clusters that
/// spell every topology label under `topology.kubernetes.io/`. `rack` wins when both are set.
pub const RACK_LABEL_ALT: &str = "topology.kubernetes.io/rack";

/// One registered storage node. Nodes are never deregistered (a removed member stays known, so
/// the volumes that still name it keep resolving); re-registration updates the record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageNodeRecord {
    /// The node's Raft member id.
    pub id: NodeId,
    /// Where the node serves the OpenStorage SDK (`host:port`).
    pub sdk_addr: String,
    /// Where the node serves Raft peers (`host:port`).
    pub raft_addr: String,
    /// Management IP (`StorageNode.mgmt_ip`).
    pub mgmt_ip: String,
    /// Data IP (`StorageNode.data_ip`).
    pub data_ip: String,
    pub hostname: String,
    /// Node labels, topology among them ([`ZONE_LABEL`], [`RACK_LABEL`]).
    pub labels: BTreeMap<String, String>,
    /// Bytes the node offers for replicas. Placement never puts more than this on the node.
    pub capacity_bytes: u64,
    /// A cordoned node takes no new attachments. Set only by `CordonNode`/`UncordonNode`:
    /// the value inside `RegisterNode` is ignored.
    pub cordoned: bool,
    /// Leader-stamped time of the first registration (milliseconds since the Unix epoch). Set
    /// by apply: the value inside `RegisterNode` is ignored.
    pub registered_ms: u64,
    /// The node's data-directory incarnation: a random number drawn when its store was
    /// created. Once registered it never changes, so a node whose data was wiped (a new
    /// incarnation) cannot re-register, and peers refuse its Raft traffic: its log would
    /// have gone back. 0 = not known (never matches against anything).
    pub incarnation: u64,
}

impl StorageNodeRecord {
    /// The node's zone ([`ZONE_LABEL`]); `None` when unlabelled.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }

    /// The node's rack ([`RACK_LABEL`], else [`RACK_LABEL_ALT`]); `None` when unlabelled.
    pub fn rack(&self) -> Option<&str> {
        self.labels
            .get(RACK_LABEL)
            .or_else(|| self.labels.get(RACK_LABEL_ALT))
            .map(String::as_str)
    }

    /// Whether `name` designates this node: its decimal id, hostname, management or data IP.
    /// Empty names designate nothing.
    pub fn answers_to(&self, name: &str) -> bool {
        !name.is_empty()
            && (self.id.0.to_string() == name
                || self.hostname == name
                || self.mgmt_ip == name
                || self.data_ip == name)
    }
}
