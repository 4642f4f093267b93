//! Volume records: the spec a client asked for, the labels, ownership, lineage and attachment custos keeps.

use crate::ids::{NodeId, VolumeId};
use crate::ownership::Ownership;
use crate::quota::QuotaSubject;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where an attached volume's block device appears: this prefix followed by the volume id.
/// custos runs no I/O, so the path is a deterministic name, not a probed device.
pub const DEVICE_PATH_PREFIX: &str = "/dev/custos/";

/// The device path custos reports for `id` while it is attached.
pub fn device_path_for(id: &VolumeId) -> String {
    format!("{DEVICE_PATH_PREFIX}{id}")
}

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
    /// Upstream's schedule string. `SnapshotScheduleUpdate` keeps its policy names here as a
    /// `policy=a,b` segment, as upstream does (segments are separated by `;`).
    pub snapshot_schedule: String,
    pub volume_labels: BTreeMap<String, String>,
    /// Nodes the caller asked the replicas to be placed on (`replica_set.nodes`).
    pub replica_nodes: Vec<String>,
    /// The storage policy a create names, or, once created, the one that shaped the volume
    /// (`crate::policy::StoragePolicy::shape`); empty for none.
    #[serde(default)]
    pub storage_policy: String,
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

    /// Shared (`shared` or `sharedv4`) volumes may be used from several nodes at once.
    pub fn is_shared(&self) -> bool {
        self.shared || self.sharedv4
    }
}

/// A volume (or snapshot) as replicated state.
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
    /// Leader-stamped time of the last change to this record; `created_ms` until then.
    pub updated_ms: u64,
    /// The volume this one was cloned or snapshotted from (`Volume.source.parent`).
    pub parent: Option<VolumeId>,
    /// This record is a read-only snapshot of `parent` (a clone has a parent but is no snapshot).
    pub snapshot: bool,
    /// The snapshot this volume was last restored from.
    pub restored_from: Option<VolumeId>,
    /// The node (id as a string) the volume is attached on; `None` when detached.
    pub attached_on: Option<String>,
    /// The device path while attached ([`device_path_for`]); empty when detached.
    pub device_path: String,
    /// Where the volume is mounted (`Volume.attach_path`); only while attached.
    pub mount_paths: BTreeSet<String>,
    /// The nodes holding the volume's replicas, as placement chose them (`crate::placement`):
    /// `spec.ha_level` distinct registered nodes. A snapshot shares its volume's replicas (this
    /// list follows the volume's). Bootstrap rule: a volume created while no node was
    /// registered has none; the first Update that sends `ha_level` places them.
    /// `spec.replica_nodes` stays what the caller asked for; this is what it got.
    #[serde(default)]
    pub replicas: Vec<NodeId>,
    /// Whom the volume counts against for quotas (`crate::quota`): the user who created,
    /// cloned or snapshotted it, or the guests; fixed at creation (an ownership change does
    /// not move it). `None` for a record made outside apply.
    #[serde(default)]
    pub charged_to: Option<QuotaSubject>,
}

impl Volume {
    /// A new, detached volume without lineage: `updated_ms` is `created_ms`, every other
    /// field is empty. Set `parent`, `snapshot` and the attachment fields afterwards.
    pub fn new(
        id: VolumeId,
        name: impl Into<String>,
        spec: VolumeSpec,
        labels: BTreeMap<String, String>,
        ownership: Option<Ownership>,
        created_ms: u64,
    ) -> Volume {
        Volume {
            id,
            name: name.into(),
            spec,
            labels,
            ownership,
            created_ms,
            updated_ms: created_ms,
            parent: None,
            snapshot: false,
            restored_from: None,
            attached_on: None,
            device_path: String::new(),
            mount_paths: BTreeSet::new(),
            replicas: Vec::new(),
            charged_to: None,
        }
    }

    pub fn is_attached(&self) -> bool {
        self.attached_on.is_some()
    }

    /// Whether a replica is on one of the `down` nodes (the caller's view of liveness): the
    /// volume is degraded until `ReplaceReplicas` moves that replica.
    pub fn degraded(&self, down: &BTreeSet<NodeId>) -> bool {
        self.replicas.iter().any(|r| down.contains(r))
    }
}

/// The fields of an `SdkVolumeUpdateRequest.spec` (`VolumeSpecUpdate`) that custos applies.
/// `None` means "not sent, leave as is" (upstream's `*_opt` oneofs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUpdate {
    /// May only grow.
    pub size: Option<u64>,
    /// At least 1.
    pub ha_level: Option<i64>,
    pub shared: Option<bool>,
    pub sharedv4: Option<bool>,
    /// Replaces the whole schedule string.
    pub snapshot_schedule: Option<String>,
    pub io_profile: Option<i32>,
    pub cos: Option<i32>,
    /// The ACL edit (and, for ownership administrators only, a new owner): see
    /// `openstorage-sdk.md` 3.5. An empty `owner` means "keep the owner".
    pub ownership: Option<Ownership>,
}
