//! Volume usage as storage nodes report it: bytes used and I/O counters per volume and node.

use serde::{Deserialize, Serialize};

/// What one node reports about one volume (`Op::ReportUsage`), or the aggregate over the nodes
/// that report it ([`crate::State::volume_usage`]).
///
/// Counters are cumulative as the node counts them. `reported_ms` is the leader-stamped time of
/// the report's command: apply sets it, whatever the report carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUsage {
    pub bytes_used: u64,
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reported_ms: u64,
}

impl VolumeUsage {
    /// Folds another node's usage of the same volume into this aggregate: `bytes_used` and
    /// `reported_ms` take the maximum (replicas hold the same data), counters add up
    /// (saturating).
    pub(crate) fn merge(&mut self, other: &VolumeUsage) {
        self.bytes_used = self.bytes_used.max(other.bytes_used);
        self.reads = self.reads.saturating_add(other.reads);
        self.writes = self.writes.saturating_add(other.writes);
        self.read_bytes = self.read_bytes.saturating_add(other.read_bytes);
        self.write_bytes = self.write_bytes.saturating_add(other.write_bytes);
        self.reported_ms = self.reported_ms.max(other.reported_ms);
    }
}
