//! The volume, snapshot and mount/attach operations of `State::apply`, with their access rules.
//!
//! Access per method follows `openstorage-sdk.md` section 4, with two deliberate fixes:
//! `VolumeCatalog` needs Read (see `State::volume_catalog`) and `SnapshotRestore` also needs
//! Read on the snapshot. Every check that upstream runs through `Inspect` first refuses a
//! missing volume with NotFound and an unreadable one with "Access denied to volume X".
//!
//! Every function here only decides and pushes changes; `State::apply` applies them once the
//! whole operation succeeded. An operation that would change nothing pushes nothing.

use super::{Change, Record, RecordKey, State, VolumeCheck, MUST_SUPPLY_VOLUME_ID};
use crate::command::{Command, Reply};
use crate::identity::Identity;
use crate::ids::{NodeId, VolumeId};
use crate::ownership::{permitted, AccessType, Acls, Ownership};
use crate::placement;
use crate::rejection::{Code, Rejection};
use crate::volume::{device_path_for, Volume, VolumeSpec, VolumeUpdate};
use std::collections::{BTreeMap, BTreeSet};

/// The prefix of the policy segment in a schedule string (upstream `pkg/sched`).
const POLICY_TAG: &str = "policy";
/// Separates the segments of a schedule string (upstream `pkg/sched`).
const SCHEDULE_SEPARATOR: char = ';';

fn require_id(id: &VolumeId) -> Result<(), Rejection> {
    if id.as_str().is_empty() {
        return Err(Rejection::invalid(MUST_SUPPLY_VOLUME_ID));
    }
    Ok(())
}

fn require_mount_path(path: &str) -> Result<(), Rejection> {
    if path.is_empty() {
        return Err(Rejection::invalid("Invalid Mount Path"));
    }
    Ok(())
}

/// The schedule string with its policy segment replaced by `names` (removed when empty). The
/// policy segment comes first, then the other segments in their order, as upstream's
/// `ScheduleSummary` writes them.
fn schedule_with_policies(schedule: &str, names: &[String]) -> String {
    let mut segments: Vec<String> = Vec::new();
    if !names.is_empty() {
        segments.push(format!("{POLICY_TAG}={}", names.join(",")));
    }
    segments.extend(
        schedule
            .split(SCHEDULE_SEPARATOR)
            .filter(|s| !s.is_empty() && !s.starts_with(POLICY_TAG))
            .map(str::to_string),
    );
    segments.join(&SCHEDULE_SEPARATOR.to_string())
}

/// `labels` merged into `into`; an empty value removes its key (upstream driver `Set`).
fn merge_labels(into: &mut BTreeMap<String, String>, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if v.is_empty() {
            into.remove(k);
        } else {
            into.insert(k.clone(), v.clone());
        }
    }
}

fn put(changes: &mut Vec<Change>, volume: Volume) {
    changes.push(Change::Put(Record::Volume(volume)));
}

/// `new` stamped with the command's time, if it differs from `old`; nothing otherwise.
pub(super) fn put_if_changed(
    cmd: &Command,
    old: &Volume,
    mut new: Volume,
    changes: &mut Vec<Change>,
) {
    if &new != old {
        new.updated_ms = cmd.time_ms;
        put(changes, new);
    }
}

/// A spec's `ha_level` as a replica count (validated positive before).
fn replica_count(ha_level: i64) -> usize {
    usize::try_from(ha_level.max(0)).unwrap_or(usize::MAX)
}

impl State {
    /// The replicas of a new volume of `spec`, from placement. Bootstrap rule: while no node is
    /// registered, none (a cluster whose members have not registered yet still serves
    /// volumes; an Update sending `ha_level` places them later).
    fn place_new(&self, spec: &VolumeSpec) -> Result<Vec<NodeId>, Rejection> {
        if self.nodes.is_empty() {
            return Ok(Vec::new());
        }
        let nodes: Vec<_> = self.nodes.values().collect();
        placement::place(
            &nodes,
            &self.loads,
            replica_count(spec.ha_level),
            spec.size,
            &[],
            &spec.replica_nodes,
            &BTreeSet::new(),
        )
    }

    /// The replicas of a volume whose `ha_level` becomes `ha_level` (and size `size`):
    /// placement adds the missing ones, keeping the current ones; [`placement::shed`] removes
    /// the extra ones. `replica_set.nodes` are not consulted again: they were honoured at
    /// create.
    fn replicas_for_level(
        &self,
        current: &[NodeId],
        ha_level: i64,
        size: u64,
    ) -> Result<Vec<NodeId>, Rejection> {
        let wanted = replica_count(ha_level);
        let nodes: Vec<_> = self.nodes.values().collect();
        if wanted > current.len() {
            placement::place(
                &nodes,
                &self.loads,
                wanted,
                size,
                current,
                &[],
                &BTreeSet::new(),
            )
        } else {
            Ok(placement::shed(&nodes, &self.loads, current, wanted))
        }
    }

    /// A volume growing from `old` to `new` needs the growth free on every replica it keeps
    /// (new replicas were placed with the new size already).
    fn check_growth(&self, old: &Volume, new: &Volume) -> Result<(), Rejection> {
        let Some(growth) = new.spec.size.checked_sub(old.spec.size).filter(|g| *g > 0) else {
            return Ok(());
        };
        for id in new.replicas.iter().filter(|r| old.replicas.contains(r)) {
            let Some(node) = self.nodes.get(id) else {
                continue;
            };
            let free = node.capacity_bytes.saturating_sub(self.node_load(*id));
            if free < growth {
                return Err(Rejection::exhausted(format!(
                    "Volume {} cannot grow by {}: its replica node {id} has {} free",
                    old.id,
                    placement::bytes(growth),
                    placement::bytes(free)
                )));
            }
        }
        Ok(())
    }

    /// Puts `new` (if it differs from `old`) and makes the snapshots of the volume follow its
    /// replicas: a snapshot shares its volume's replicas.
    pub(super) fn put_with_snapshots(
        &self,
        cmd: &Command,
        old: &Volume,
        new: Volume,
        changes: &mut Vec<Change>,
    ) {
        let replicas = new.replicas.clone();
        let id = new.id.clone();
        put_if_changed(cmd, old, new, changes);
        if replicas == old.replicas {
            return;
        }
        for snap in self
            .volumes
            .values()
            .filter(|s| s.snapshot && s.parent.as_ref() == Some(&id))
        {
            let mut moved = snap.clone();
            moved.replicas = replicas.clone();
            put_if_changed(cmd, snap, moved, changes);
        }
    }

    /// A volume the caller needs Write on (upstream `checkAccessForVolumeId`):
    /// [`VolumeCheck::Write`].
    fn volume_for(&self, who: &Identity, id: &VolumeId) -> Result<&Volume, Rejection> {
        require_id(id)?;
        self.check_volume(who, VolumeCheck::Write, id.as_str(), None)?
            .ok_or_else(|| Rejection::not_found(format!("Volume id {id} not found")))
    }

    /// Like [`State::volume_for`], but a missing volume is `Ok(None)`: Detach and Unmount
    /// tolerate it (idempotent), as upstream does ([`VolumeCheck::ExistingWrite`]).
    fn existing_volume_for(
        &self,
        who: &Identity,
        id: &VolumeId,
    ) -> Result<Option<&Volume>, Rejection> {
        require_id(id)?;
        self.check_volume(who, VolumeCheck::ExistingWrite, id.as_str(), None)
    }

    /// The name check shared by create, clone and snapshot (upstream `create`; issue #849: a
    /// create must never hand out another user's volume). An existing volume of that name
    /// needs Admin; then `same` decides between returning its id (idempotent retry) and
    /// `conflict`.
    fn existing_by_name(
        &self,
        who: &Identity,
        name: &str,
        same: impl FnOnce(&Volume) -> bool,
        conflict: impl FnOnce() -> String,
    ) -> Result<Option<VolumeId>, Rejection> {
        let Some(existing) = self.check_volume(who, VolumeCheck::Name, name, None)? else {
            return Ok(None);
        };
        if same(existing) {
            return Ok(Some(existing.id.clone()));
        }
        Err(Rejection::exists(conflict()))
    }

    fn require_free_id(&self, id: &VolumeId) -> Result<(), Rejection> {
        require_id(id)?;
        if self.volumes.contains_key(id) {
            return Err(Rejection::exists(format!("Volume id {id} already exists")));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        name: &str,
        spec: &VolumeSpec,
        labels: &BTreeMap<String, String>,
        acls: &Acls,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        if name.is_empty() {
            return Err(Rejection::invalid("Must supply a unique name"));
        }
        if spec.ha_level < 0 {
            return Err(Rejection::invalid("HA level cannot be negative"));
        }
        // An unset ha_level means one copy. Normalise before the idempotency check too, so a
        // retry that leaves it unset matches the volume it created.
        let mut spec = spec.clone();
        if spec.ha_level == 0 {
            spec.ha_level = 1;
        }
        // The storage policy the spec names, or the default one, shapes the spec (upstream
        // `GetDefaultVolSpecs`), before any other check sees it.
        let spec = self.shape_by_policy(who, &spec)?;
        if spec.size == 0 {
            return Err(Rejection::invalid(
                "Must supply a volume size greater than zero",
            ));
        }
        if let Some(existing) = self.existing_by_name(
            who,
            name,
            |v| v.spec.same_shape(&spec) && v.parent.is_none(),
            || format!("Volume {name} already exists with a different specification"),
        )? {
            return Ok(Reply::VolumeCreated { id: existing });
        }
        self.require_free_id(id)?;
        self.check_new_volume(who, spec.size)?;
        // Section 3.3: the owner is the caller, the request's ACLs are kept; a guest-created
        // volume has no ownership at all (ACLs dropped too), so it is public.
        let ownership = (!who.guest).then(|| Ownership {
            owner: who.username.clone(),
            acls: acls.clone(),
        });
        let replicas = self.place_new(&spec)?;
        let mut volume = Volume::new(
            id.clone(),
            name,
            spec,
            labels.clone(),
            ownership,
            cmd.time_ms,
        );
        volume.replicas = replicas;
        volume.charged_to = Some(Self::charge_of(who));
        put(changes, volume);
        Ok(Reply::VolumeCreated { id: id.clone() })
    }

    /// `Volume.Delete`: Admin. Missing → OK (idempotent). Refused while attached, and while
    /// a snapshot or clone names the volume as parent (no dangling lineage). Every node's usage
    /// record of the volume goes with it.
    pub(super) fn delete_volume(
        &self,
        who: &Identity,
        id: &VolumeId,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        require_id(id)?;
        let Some(v) = self.check_volume(who, VolumeCheck::Delete, id.as_str(), None)? else {
            return Ok(Reply::Empty);
        };
        if let Some(node) = &v.attached_on {
            return Err(Rejection::precondition(format!(
                "Volume {id} is attached on node {node}: detach it before deleting it"
            )));
        }
        if let Some(child) = self
            .volumes
            .values()
            .find(|c| c.parent.as_ref() == Some(id))
        {
            let what = if child.snapshot {
                "snapshot"
            } else {
                "dependent volume"
            };
            return Err(Rejection::precondition(format!(
                "Volume {id} has {what} {}: delete it first",
                child.id
            )));
        }
        changes.push(Change::Delete(RecordKey::Volume(id.clone())));
        self.delete_usage_of(id, changes);
        Ok(Reply::Empty)
    }

    /// `Volume.Update`: Read (the initial inspect), then Write ("Cannot update volume"), then
    /// the ownership rules of section 3.5 when `update.ownership` is sent, then the values.
    pub(super) fn update_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        labels: &BTreeMap<String, String>,
        update: &VolumeUpdate,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        require_id(id)?;
        let old = self
            .check_volume(who, VolumeCheck::Update, id.as_str(), None)?
            .ok_or_else(|| Rejection::not_found(format!("Volume id {id} not found")))?;
        let mut new = old.clone();
        if let Some(requested) = &update.ownership {
            new.ownership = Some(updated_ownership(who, old.ownership.as_ref(), requested)?);
        }
        let spec = &mut new.spec;
        if let Some(size) = update.size {
            if size < old.spec.size {
                return Err(Rejection::invalid(format!(
                    "Volume size can only grow: volume {id} has size {}, cannot set {size}",
                    old.spec.size
                )));
            }
            spec.size = size;
        }
        if let Some(ha_level) = update.ha_level {
            // Replicas follow below, once the whole spec is known.
            if ha_level < 1 {
                return Err(Rejection::invalid(format!(
                    "HA level must be at least 1, not {ha_level}"
                )));
            }
            spec.ha_level = ha_level;
        }
        if let Some(shared) = update.shared {
            spec.shared = shared;
        }
        if let Some(sharedv4) = update.sharedv4 {
            spec.sharedv4 = sharedv4;
        }
        if let Some(schedule) = &update.snapshot_schedule {
            spec.snapshot_schedule = schedule.clone();
        }
        if let Some(io_profile) = update.io_profile {
            spec.io_profile = io_profile;
        }
        if let Some(cos) = update.cos {
            spec.cos = cos;
        }
        if old.snapshot && new.spec != old.spec {
            return Err(snapshot_spec_is_fixed(id));
        }
        if !old.snapshot {
            // Bootstrap rule: with no node registered, ha_level is stored as is.
            if let Some(ha_level) = update.ha_level.filter(|_| !self.nodes.is_empty()) {
                new.replicas = self.replicas_for_level(&old.replicas, ha_level, new.spec.size)?;
            }
            self.check_growth(old, &new)?;
            self.check_growth_quota(who, old, &new)?;
        }
        merge_labels(&mut new.labels, labels);
        self.put_with_snapshots(cmd, old, new, changes);
        Ok(Reply::Empty)
    }

    /// `Volume.Clone`: Read on the parent (a snapshot may be cloned too). The clone copies the
    /// parent's spec; `labels` are merged over the parent's labels.
    pub(super) fn clone_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        name: &str,
        parent: &VolumeId,
        labels: &BTreeMap<String, String>,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        if name.is_empty() {
            // Upstream spells it "Must supply a uniqe name"; custos uses Create's text.
            return Err(Rejection::invalid("Must supply a unique name"));
        }
        if parent.as_str().is_empty() {
            // Upstream's text is "Must parent volume id".
            return Err(Rejection::invalid("Must supply a parent volume id"));
        }
        let source = self.inspect_volume(who, parent)?;
        if let Some(existing) = self.existing_by_name(
            who,
            name,
            |v| !v.snapshot && v.parent.as_ref() == Some(parent),
            || format!("Volume {name} already exists and is not a clone of {parent}"),
        )? {
            return Ok(Reply::VolumeCloned { id: existing });
        }
        self.require_free_id(id)?;
        self.check_new_volume(who, source.spec.size)?;
        let mut all_labels = source.labels.clone();
        all_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        let replicas = self.place_new(&source.spec)?;
        let mut clone = Volume::new(
            id.clone(),
            name,
            source.spec.clone(),
            all_labels,
            clone_ownership(who, source.ownership.as_ref()),
            cmd.time_ms,
        );
        clone.parent = Some(parent.clone());
        clone.replicas = replicas;
        clone.charged_to = Some(Self::charge_of(who));
        put(changes, clone);
        Ok(Reply::VolumeCloned { id: id.clone() })
    }

    /// `Volume.SnapshotCreate`: Read on the source. The snapshot keeps the source's spec and
    /// ownership (section 3.4) and carries the request's labels. Its name need not be unique.
    ///
    /// Decision: a snapshot of a snapshot is refused (FailedPrecondition). A snapshot can only
    /// be restored onto its parent, and a snapshot (read-only) is never restored onto, so such
    /// a snapshot could never be used; clone the snapshot and snapshot the clone instead.
    pub(super) fn create_snapshot(
        &self,
        cmd: &Command,
        id: &VolumeId,
        volume: &VolumeId,
        name: &str,
        labels: &BTreeMap<String, String>,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        require_id(volume)?;
        if name.is_empty() {
            return Err(Rejection::invalid("Must supply a name"));
        }
        let source = self.inspect_volume(who, volume)?;
        if source.snapshot {
            return Err(Rejection::precondition(format!(
                "Volume {volume} is a snapshot: a snapshot cannot be snapshotted (clone it first)"
            )));
        }
        // Every call makes a new snapshot, names repeating, as upstream's driver does (its
        // sanity suite takes three snapshots under one name and enumerates three); a retried
        // call is answered once by its request id.
        self.require_free_id(id)?;
        self.check_new_volume(who, source.spec.size)?;
        let mut snapshot = Volume::new(
            id.clone(),
            name,
            source.spec.clone(),
            labels.clone(),
            source.ownership.clone(),
            cmd.time_ms,
        );
        snapshot.parent = Some(volume.clone());
        snapshot.snapshot = true;
        snapshot.replicas = source.replicas.clone();
        snapshot.charged_to = Some(Self::charge_of(who));
        put(changes, snapshot);
        Ok(Reply::SnapshotCreated { id: id.clone() })
    }

    /// `Volume.SnapshotRestore`: Write on the volume and, a DELIBERATE FIX (upstream checks
    /// nothing on the snapshot), Read on the snapshot. The snapshot must be one of the
    /// volume's own snapshots, and the volume must be detached (restoring under a mounted
    /// file system would corrupt it). Every restore is recorded, even onto the same snapshot.
    pub(super) fn restore_snapshot(
        &self,
        cmd: &Command,
        volume: &VolumeId,
        snapshot: &VolumeId,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        require_id(volume)?;
        if snapshot.as_str().is_empty() {
            return Err(Rejection::invalid("Must supply a snapshot id"));
        }
        let target = self.volume_for(who, volume)?;
        let snap = self
            .volumes
            .get(snapshot)
            .ok_or_else(|| Rejection::not_found(format!("Snapshot id {snapshot} not found")))?;
        if !permitted(who, snap.ownership.as_ref(), AccessType::Read) {
            return Err(Rejection::denied(format!(
                "Access denied to snapshot {snapshot}"
            )));
        }
        if !snap.snapshot {
            return Err(Rejection::precondition(format!(
                "Volume {snapshot} is not a snapshot"
            )));
        }
        if snap.parent.as_ref() != Some(volume) {
            return Err(Rejection::precondition(format!(
                "Snapshot {snapshot} is not a snapshot of volume {volume}"
            )));
        }
        if let Some(node) = &target.attached_on {
            return Err(Rejection::precondition(format!(
                "Volume {volume} is attached on node {node}: detach it before restoring it"
            )));
        }
        let mut new = target.clone();
        new.restored_from = Some(snapshot.clone());
        new.updated_ms = cmd.time_ms;
        put(changes, new);
        Ok(Reply::Empty)
    }

    /// `Volume.SnapshotScheduleUpdate`: Write. Every name must be a schedule policy (upstream:
    /// Aborted "Error accessing schedule policy X: ..."; a policy's name was checked when it
    /// was created, so it cannot corrupt the schedule string). The names replace the `policy=`
    /// segment of `spec.snapshot_schedule` (as upstream stores them); an empty list removes it.
    pub(super) fn update_snapshot_schedule(
        &self,
        cmd: &Command,
        id: &VolumeId,
        names: &[String],
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        require_id(id)?;
        let old = self
            .check_volume(who, VolumeCheck::Schedule, id.as_str(), None)?
            .ok_or_else(|| Rejection::not_found(format!("Volume id {id} not found")))?;
        if let Some(missing) = names
            .iter()
            .find(|n| !self.schedule_policies.contains_key(*n))
        {
            return Err(Rejection::new(
                Code::Aborted,
                format!("Error accessing schedule policy {missing}: Key not found"),
            ));
        }
        let mut new = old.clone();
        new.spec.snapshot_schedule = schedule_with_policies(&old.spec.snapshot_schedule, names);
        if old.snapshot && new.spec != old.spec {
            return Err(snapshot_spec_is_fixed(id));
        }
        put_if_changed(cmd, old, new, changes);
        Ok(Reply::Empty)
    }

    /// `MountAttach.Attach` on `node`: Write. Attaching again on the same node is idempotent.
    ///
    /// custos records one attachment per volume. A shared (`shared` or `sharedv4`) volume
    /// attached on one node may be attached from others too: they use that attachment (as a
    /// sharedv4 volume is exported from the node it is attached on), so nothing changes and
    /// the same device path is returned. A non-shared volume attached elsewhere is refused.
    ///
    /// A cordoned node takes no new attachments (FailedPrecondition); attaching again where
    /// the volume already is stays idempotent. `node` is matched to a registered node by its
    /// decimal id (the server attaches on its own id); a node not registered (yet) is not
    /// cordoned.
    pub(super) fn attach_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        node: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let who = &cmd.identity;
        require_id(id)?;
        if node.is_empty() {
            return Err(Rejection::invalid("Must supply a node id"));
        }
        let old = self.volume_for(who, id)?;
        if old.snapshot {
            return Err(Rejection::precondition(format!(
                "Volume {id} is a snapshot: snapshots cannot be attached (clone it first)"
            )));
        }
        let cordoned = node
            .parse::<u64>()
            .ok()
            .and_then(|n| self.nodes.get(&NodeId(n)))
            .is_some_and(|n| n.cordoned);
        if cordoned && old.attached_on.as_deref() != Some(node) {
            return Err(Rejection::precondition(format!(
                "Node {node} is cordoned: it takes no new attachments"
            )));
        }
        match &old.attached_on {
            Some(on) if on == node || old.spec.is_shared() => {
                return Ok(Reply::Attached {
                    device_path: old.device_path.clone(),
                })
            }
            Some(on) => {
                return Err(Rejection::precondition(format!(
                    "Volume {id} is attached on another node ({on}): detach it first, or make \
                     the volume shared"
                )))
            }
            None => {}
        }
        let mut new = old.clone();
        new.attached_on = Some(node.to_string());
        new.device_path = device_path_for(id);
        let device_path = new.device_path.clone();
        put_if_changed(cmd, old, new, changes);
        Ok(Reply::Attached { device_path })
    }

    /// `MountAttach.Detach`: Write. A missing or detached volume is OK (idempotent).
    ///
    /// Decision: a mounted volume is refused (FailedPrecondition) rather than unmounted
    /// implicitly (upstream's `unmount_before_detach` option); Unmount needs no node, so the
    /// mounts can always be removed first.
    pub(super) fn detach_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let Some(old) = self.existing_volume_for(&cmd.identity, id)? else {
            return Ok(Reply::Empty);
        };
        if !old.is_attached() {
            return Ok(Reply::Empty);
        }
        if let Some(path) = old.mount_paths.first() {
            return Err(Rejection::precondition(format!(
                "Volume {id} is mounted at {path}: unmount it before detaching it"
            )));
        }
        let mut new = old.clone();
        new.attached_on = None;
        new.device_path.clear();
        put_if_changed(cmd, old, new, changes);
        Ok(Reply::Empty)
    }

    /// `MountAttach.Mount` at `path`: Write; the volume must be attached. Mounting at a path
    /// it is already mounted at is idempotent.
    pub(super) fn mount_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        path: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        require_id(id)?;
        require_mount_path(path)?;
        let old = self.volume_for(&cmd.identity, id)?;
        if !old.is_attached() {
            return Err(Rejection::precondition(format!(
                "Volume {id} is not attached: attach it before mounting it"
            )));
        }
        let mut new = old.clone();
        new.mount_paths.insert(path.to_string());
        put_if_changed(cmd, old, new, changes);
        Ok(Reply::Empty)
    }

    /// `MountAttach.Unmount` of `path`: Write. A missing volume or a path it is not mounted
    /// at is OK (idempotent).
    pub(super) fn unmount_volume(
        &self,
        cmd: &Command,
        id: &VolumeId,
        path: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        require_id(id)?;
        require_mount_path(path)?;
        let Some(old) = self.existing_volume_for(&cmd.identity, id)? else {
            return Ok(Reply::Empty);
        };
        let mut new = old.clone();
        new.mount_paths.remove(path);
        put_if_changed(cmd, old, new, changes);
        Ok(Reply::Empty)
    }
}

fn snapshot_spec_is_fixed(id: &VolumeId) -> Rejection {
    Rejection::precondition(format!(
        "Volume {id} is a snapshot: only its labels and ownership can be updated"
    ))
}

/// The ownership an Update with `requested` leaves (upstream `Ownership.Update` with auth on,
/// `openstorage-sdk.md` 3.5). Starts from the stored ownership, or an empty one.
///
/// - The caller must be the owner, an ownership administrator, or pass an Admin check (Admin
///   collaborator or group, public Admin, or an owner-less volume), else "Only owner or those
///   with admin access type can update volume acls". So a Write collaborator cannot raise
///   their own level (issue #862).
/// - A non-empty `owner` is applied only for an ownership administrator; everyone else gets
///   "Only the administrator can change the owner of the resource", the owner too, even
///   re-sending their own name. Clients leave `owner` empty to edit ACLs.
/// - The ACLs are replaced wholesale by the request's.
///
/// On an owner-less volume any caller with Write passes the Admin check, so they may attach
/// ACLs but not claim it: the owner stays empty and the volume stays public.
pub(super) fn updated_ownership(
    who: &Identity,
    current: Option<&Ownership>,
    requested: &Ownership,
) -> Result<Ownership, Rejection> {
    let mut own = current.cloned().unwrap_or_default();
    if !permitted(who, Some(&own), AccessType::Admin) {
        return Err(Rejection::denied(
            "Only owner or those with admin access type can update volume acls",
        ));
    }
    if !requested.owner.is_empty() {
        if !who.is_ownership_admin() {
            return Err(Rejection::denied(
                "Only the administrator can change the owner of the resource",
            ));
        }
        own.owner = requested.owner.clone();
    }
    own.acls = requested.acls.clone();
    Ok(own)
}

/// The ownership of a clone (upstream `GetCloneCreatorOwnership`, section 3.4; issue #843):
///
/// - the parent's owner cloning keeps the parent's ownership, ACLs included;
/// - any other authenticated caller owns the clone, with no ACLs (also for a public or
///   owner-less parent);
/// - a guest's clone keeps the parent's ownership. Upstream computes a nil replacement for a
///   guest and its follow-up update treats nil as "no change"; custos keeps that behaviour:
///   giving a guest-made clone no ownership would make a private volume's data public, and a
///   guest cannot own anything.
fn clone_ownership(who: &Identity, parent: Option<&Ownership>) -> Option<Ownership> {
    if who.guest || who.username.is_empty() {
        return parent.cloned();
    }
    if parent.is_some_and(|o| o.owner == who.username) {
        return parent.cloned();
    }
    Some(Ownership {
        owner: who.username.clone(),
        acls: Acls::default(),
    })
}
