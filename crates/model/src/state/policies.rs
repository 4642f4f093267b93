//! The schedule policy and storage policy operations of `State::apply`, and their reads.
//!
//! Schedule policies have no ownership: the role check (service `schedulepolicy`) decides.
//! Storage policies are ownership-checked like volumes (`ownership::permitted`), with upstream's
//! texts (`pkg/storagepolicy/sdkstoragepolicy.go`): Read to inspect or use one, Write to
//! update it, Admin to delete it, and an ownership administrator (group `*`) to set or release
//! the default.

use super::volumes::updated_ownership;
use super::{Change, Record, RecordKey, State};
use crate::command::Reply;
use crate::identity::Identity;
use crate::ownership::{permitted, AccessType, Ownership};
use crate::policy::{SchedulePolicy, StoragePolicy, MAX_SCHEDULE_POLICIES, MAX_STORAGE_POLICIES};
use crate::rejection::Rejection;
use crate::volume::VolumeSpec;

/// The refusal of an empty storage policy name.
pub const MUST_SUPPLY_STORAGE_POLICY_NAME: &str = "Must supply a Storage Policy Name";

fn require_policy_name(name: &str) -> Result<(), Rejection> {
    if name.is_empty() {
        return Err(Rejection::invalid(MUST_SUPPLY_STORAGE_POLICY_NAME));
    }
    Ok(())
}

impl State {
    // ---- schedule policies ----

    pub(super) fn create_schedule_policy(
        &self,
        policy: &SchedulePolicy,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        policy.validate(false)?;
        if self.schedule_policies.contains_key(&policy.name) {
            // Upstream answers Internal "failed to create schedule policy: Key already exists"
            // (its kvdb's error); custos names the conflict with its proper code.
            return Err(Rejection::exists(format!(
                "Schedule policy {} already exists",
                policy.name
            )));
        }
        if self.schedule_policies.len() >= MAX_SCHEDULE_POLICIES {
            return Err(Rejection::exhausted(format!(
                "{MAX_SCHEDULE_POLICIES} schedule policies are stored, the most custos keeps"
            )));
        }
        changes.push(Change::Put(Record::SchedulePolicy(policy.clone())));
        Ok(Reply::Empty)
    }

    pub(super) fn update_schedule_policy(
        &self,
        policy: &SchedulePolicy,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        policy.validate(true)?;
        match self.schedule_policies.get(&policy.name) {
            None => Err(Rejection::not_found(format!(
                "Schedule policy {} not found",
                policy.name
            ))),
            Some(old) if old == policy => Ok(Reply::Empty),
            Some(_) => {
                changes.push(Change::Put(Record::SchedulePolicy(policy.clone())));
                Ok(Reply::Empty)
            }
        }
    }

    /// Idempotent, as upstream. Volumes naming the policy keep the name in their schedule (as
    /// upstream's do).
    pub(super) fn delete_schedule_policy(
        &self,
        name: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if name.is_empty() {
            return Err(Rejection::invalid("Must supply Schedule name"));
        }
        if self.schedule_policies.contains_key(name) {
            changes.push(Change::Delete(RecordKey::SchedulePolicy(name.to_string())));
        }
        Ok(Reply::Empty)
    }

    /// `SchedulePolicy.Inspect`.
    pub fn schedule_policy(&self, name: &str) -> Result<&SchedulePolicy, Rejection> {
        if name.is_empty() {
            return Err(Rejection::invalid("Must supply Schedule name"));
        }
        self.schedule_policies
            .get(name)
            .ok_or_else(|| Rejection::not_found(format!("Schedule policy {name} not found")))
    }

    /// `SchedulePolicy.Enumerate`: every schedule policy, in name order.
    pub fn schedule_policies(&self) -> impl Iterator<Item = &SchedulePolicy> {
        self.schedule_policies.values()
    }

    // ---- storage policies ----

    /// `OpenStoragePolicy.Inspect`: Read. NotFound "Policy X not found"; PermissionDenied
    /// "Access denied to storage policy X" (existence is revealed, as for volumes).
    pub fn storage_policy(&self, who: &Identity, name: &str) -> Result<&StoragePolicy, Rejection> {
        require_policy_name(name)?;
        let policy = self
            .storage_policies
            .get(name)
            .ok_or_else(|| Rejection::not_found(format!("Policy {name} not found")))?;
        if !permitted(who, policy.ownership.as_ref(), AccessType::Read) {
            return Err(Rejection::denied(format!(
                "Access denied to storage policy {name}"
            )));
        }
        Ok(policy)
    }

    /// `OpenStoragePolicy.Enumerate`: the policies `who` may read, in name order.
    pub fn readable_storage_policies<'a>(
        &'a self,
        who: &'a Identity,
    ) -> impl Iterator<Item = &'a StoragePolicy> + 'a {
        self.storage_policies
            .values()
            .filter(move |p| permitted(who, p.ownership.as_ref(), AccessType::Read))
    }

    /// `OpenStoragePolicy.DefaultInspect`: the default policy, if one is set. Not checked
    /// against the caller (upstream inspects it without the caller's identity): the default
    /// binds every create, so every caller may know it.
    pub fn default_storage_policy(&self) -> Option<&StoragePolicy> {
        self.default_storage_policy
            .as_ref()
            .and_then(|n| self.storage_policies.get(n))
    }

    /// Every storage policy, in name order (for operators and tests).
    pub fn storage_policies(&self) -> impl Iterator<Item = &StoragePolicy> {
        self.storage_policies.values()
    }

    /// The spec a `Volume.Create` makes: shaped by the storage policy the spec names (the
    /// caller needs Read on it), else by the default policy, else as sent.
    pub(super) fn shape_by_policy(
        &self,
        who: &Identity,
        spec: &VolumeSpec,
    ) -> Result<VolumeSpec, Rejection> {
        let policy = if spec.storage_policy.is_empty() {
            match self.default_storage_policy() {
                Some(p) => p,
                None => return Ok(spec.clone()),
            }
        } else {
            self.storage_policy(who, &spec.storage_policy)?
        };
        policy.shape(spec)
    }

    /// Section 3.3, as for volumes: the owner is the caller and the request's ACLs are kept;
    /// a guest's policy has no ownership (public).
    pub(super) fn create_storage_policy(
        &self,
        who: &Identity,
        policy: &StoragePolicy,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        require_policy_name(&policy.name)?;
        if self.storage_policies.contains_key(&policy.name) {
            return Err(Rejection::exists(format!(
                "Storage Policy already exist : {}",
                policy.name
            )));
        }
        if self.storage_policies.len() >= MAX_STORAGE_POLICIES {
            return Err(Rejection::exhausted(format!(
                "{MAX_STORAGE_POLICIES} storage policies are stored, the most custos keeps"
            )));
        }
        let mut stored = policy.clone();
        stored.ownership = (!who.guest).then(|| Ownership {
            owner: who.username.clone(),
            acls: policy
                .ownership
                .as_ref()
                .map(|o| o.acls.clone())
                .unwrap_or_default(),
        });
        changes.push(Change::Put(Record::StoragePolicy(stored)));
        Ok(Reply::Empty)
    }

    /// Read (the inspect), Write ("Cannot update storage policy"), then, when the request
    /// carries an ownership, the volume rules of section 3.5. DELIBERATE FIX: upstream stores
    /// the request's ownership as sent (an update without one made the policy public); custos
    /// keeps the stored ownership unless the request edits it, and then stores the edit it
    /// checked.
    pub(super) fn update_storage_policy(
        &self,
        who: &Identity,
        policy: &StoragePolicy,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        let old = self.storage_policy(who, &policy.name)?;
        if !permitted(who, old.ownership.as_ref(), AccessType::Write) {
            return Err(Rejection::denied("Cannot update storage policy"));
        }
        let mut new = policy.clone();
        new.ownership = match &policy.ownership {
            None => old.ownership.clone(),
            Some(requested) => Some(updated_ownership(who, old.ownership.as_ref(), requested)?),
        };
        if &new != old {
            changes.push(Change::Put(Record::StoragePolicy(new)));
        }
        Ok(Reply::Empty)
    }

    /// Admin ("Cannot delete storage policy X"); a missing policy is OK (idempotent). The
    /// default policy is released with it. DELIBERATE FIX: upstream answers OK, deleting
    /// nothing, when the caller cannot read the policy; custos refuses ("Access denied to
    /// storage policy X"), so a caller is never told a delete happened that did not.
    pub(super) fn delete_storage_policy(
        &self,
        who: &Identity,
        name: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        require_policy_name(name)?;
        if !self.storage_policies.contains_key(name) {
            return Ok(Reply::Empty);
        }
        let policy = self.storage_policy(who, name)?;
        if !permitted(who, policy.ownership.as_ref(), AccessType::Admin) {
            return Err(Rejection::denied(format!(
                "Cannot delete storage policy {name}"
            )));
        }
        if self.default_storage_policy.as_deref() == Some(name) {
            changes.push(Change::Delete(RecordKey::DefaultStoragePolicy));
        }
        changes.push(Change::Delete(RecordKey::StoragePolicy(name.to_string())));
        Ok(Reply::Empty)
    }

    /// The policy must exist and be readable (its inspect), and the caller must be an ownership
    /// administrator.
    pub(super) fn set_default_storage_policy(
        &self,
        who: &Identity,
        name: &str,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        self.storage_policy(who, name)?;
        if !who.is_ownership_admin() {
            return Err(Rejection::denied(format!(
                "Only the storage system admin can set storage policy as default {name}"
            )));
        }
        if self.default_storage_policy.as_deref() != Some(name) {
            changes.push(Change::Put(Record::DefaultStoragePolicy {
                name: name.to_string(),
            }));
        }
        Ok(Reply::Empty)
    }

    /// Only an ownership administrator, whether or not a default is set (as upstream).
    pub(super) fn release_storage_policy(
        &self,
        who: &Identity,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        if !who.is_ownership_admin() {
            return Err(Rejection::denied(
                "Only the storage system admin can remove storage policy restriction",
            ));
        }
        if self.default_storage_policy.is_some() {
            changes.push(Change::Delete(RecordKey::DefaultStoragePolicy));
        }
        Ok(Reply::Empty)
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Op, Outcome};
    use crate::identity::Identity;
    use crate::ids::{NodeId, RequestId};
    use crate::policy::{
        ScheduleInterval, SchedulePeriod, SchedulePolicy, StoragePolicy, MAX_SCHEDULES,
        MAX_SCHEDULE_POLICIES, MAX_STORAGE_POLICIES,
    };
    use crate::rejection::Code;
    use crate::state::{Record, State};

    fn schedule_policy(name: String, schedules: usize) -> SchedulePolicy {
        SchedulePolicy {
            name,
            schedules: vec![
                ScheduleInterval {
                    retain: 1,
                    period: Some(SchedulePeriod::Periodic { seconds: 3600 }),
                };
                schedules
            ],
        }
    }

    fn apply(state: &mut State, op: Op) -> Outcome {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        state
            .apply(&Command {
                request_id: RequestId(format!("r-{n}")),
                identity: Identity::internal_admin("test"),
                time_ms: 1000,
                origin: NodeId(1),
                op,
            })
            .outcome
    }

    fn refused_with(outcome: Outcome) -> Code {
        match outcome {
            Outcome::Refused(r) => r.code,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn policies_are_bounded_in_number_and_size() {
        let records = (0..MAX_SCHEDULE_POLICIES)
            .map(|i| Record::SchedulePolicy(schedule_policy(format!("s{i}"), 1)))
            .chain((0..MAX_STORAGE_POLICIES).map(|i| {
                Record::StoragePolicy(StoragePolicy {
                    name: format!("p{i}"),
                    spec: Default::default(),
                    force: false,
                    allow_update: false,
                    ownership: None,
                })
            }));
        let mut state = State::from_records(records.collect::<Vec<_>>());
        let policy = schedule_policy("one-more".into(), 1);
        assert_eq!(
            refused_with(apply(&mut state, Op::CreateSchedulePolicy { policy })),
            Code::ResourceExhausted
        );
        let policy = StoragePolicy {
            name: "one-more".into(),
            spec: Default::default(),
            force: false,
            allow_update: false,
            ownership: None,
        };
        assert_eq!(
            refused_with(apply(&mut state, Op::CreateStoragePolicy { policy })),
            Code::ResourceExhausted
        );
        // A deletion makes room again.
        assert!(matches!(
            apply(&mut state, Op::DeleteSchedulePolicy { name: "s0".into() }),
            Outcome::Applied(_)
        ));
        let policy = schedule_policy("one-more".into(), MAX_SCHEDULES + 1);
        assert_eq!(
            refused_with(apply(&mut state, Op::CreateSchedulePolicy { policy })),
            Code::InvalidArgument
        );
        let policy = schedule_policy("one-more".into(), MAX_SCHEDULES);
        assert!(matches!(
            apply(&mut state, Op::CreateSchedulePolicy { policy }),
            Outcome::Applied(_)
        ));
    }
}
