//! Volume records: the spec a client asked for, the labels, ownership and lineage custos keeps.

use crate::ids::VolumeId;
use crate::ownership::Ownership;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The parts of an OpenStorage `VolumeSpec` that custos stores and returns. Enum-valued fields
/// keep the SDK's wire numbers. A passphrase is deliberately absent: it is never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub size: u64,
    pub ha_level: i64,
    pub format: i32,
    pub block_size: i64,
    pub cos: i32,
    pub io_profile: i32,
    pub shared: bool,
    pub sharedv4: bool,
    pub encrypted: bool,
    pub sticky: bool,
    pub journal: bool,
    pub snapshot_schedule: String,
    pub volume_labels: BTreeMap<String, String>,
    /// Nodes the caller asked the replicas to be placed on (`replica_set.nodes`).
    pub replica_nodes: Vec<String>,
}

impl VolumeSpec {
    /// Whether a create with `other` may return a volume created with `self` (idempotent
    /// create): the fields that define the volume's shape must agree.
    pub fn same_shape(&self, other: &VolumeSpec) -> bool {
        self.size == other.size
            && self.ha_level == other.ha_level
            && self.shared == other.shared
            && self.sharedv4 == other.sharedv4
            && self.encrypted == other.encrypted
            && self.format == other.format
    }
}

/// A volume as replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: VolumeId,
    pub name: String,
    pub spec: VolumeSpec,
    /// Locator labels (the request's `labels`).
    pub labels: BTreeMap<String, String>,
    /// `None`: no ownership, public to everybody (guest-created volumes).
    pub ownership: Option<Ownership>,
    /// Leader-stamped creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The volume this one was cloned or snapshotted from.
    pub parent: Option<VolumeId>,
}
