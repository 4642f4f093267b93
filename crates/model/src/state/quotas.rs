//! The quota operations of `State::apply`, and the quota check of creates, clones, snapshots and growth.
//!
//! The role check (`Op::method`: service `quotas`) is the only authorization of `SetQuota` and
//! `RemoveQuota`. The check of a new volume or a growth runs after every other check of its
//! operation and before placement, so an idempotent retry of a create that applied is never
//! refused for the room its own volume takes.

use super::{Change, Record, RecordKey, State};
use crate::command::{Command, Reply};
use crate::identity::Identity;
use crate::quota::{self, EffectiveQuota, Limit, Quota, QuotaLimits, QuotaSubject};
use crate::rejection::Rejection;
use crate::volume::Volume;

/// The longest user or group name a quota takes (as long as a role name may be).
const MAX_SUBJECT_NAME: usize = 256;

impl State {
    /// `SetQuota`: replaces the quota of `subject` whole.
    pub(super) fn set_quota(
        &self,
        cmd: &Command,
        subject: &QuotaSubject,
        limits: &QuotaLimits,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        validate(subject)?;
        let quota = Quota {
            subject: subject.clone(),
            limits: *limits,
            set_ms: cmd.time_ms,
            set_by: cmd.identity.username.clone(),
        };
        changes.push(Change::Put(Record::Quota(quota.clone())));
        Ok(Reply::QuotaSet { quota })
    }

    /// `RemoveQuota`: idempotent; removing the guests' quota brings the default back.
    pub(super) fn remove_quota(
        &self,
        subject: &QuotaSubject,
        changes: &mut Vec<Change>,
    ) -> Result<Reply, Rejection> {
        validate(subject)?;
        if self.quotas.contains_key(subject) {
            changes.push(Change::Delete(RecordKey::Quota(subject.clone())));
        }
        Ok(Reply::Empty)
    }

    /// Whom a volume `who` creates counts against.
    pub(super) fn charge_of(who: &Identity) -> QuotaSubject {
        if who.guest {
            QuotaSubject::Guest
        } else {
            QuotaSubject::User(who.username.clone())
        }
    }

    /// Refuses a new volume of `size` bytes that would take `who` past a limit in force for
    /// them (ResourceExhausted, naming the quota).
    pub(super) fn check_new_volume(&self, who: &Identity, size: u64) -> Result<(), Rejection> {
        let limits = self.effective_quota(who);
        self.check_room(who, &Self::charge_of(who), &limits, 1, size)
    }

    /// Refuses growing `old` to `new` past the bytes limit of whom `old` counts against.
    /// A `system.admin` caller is never refused. The caller's own volume is checked against
    /// the caller's limits (their groups included); another's against the limits set for its
    /// creator (their own quota, or the guests'): the creator's groups are known only from
    /// the creator's token.
    pub(super) fn check_growth_quota(
        &self,
        who: &Identity,
        old: &Volume,
        new: &Volume,
    ) -> Result<(), Rejection> {
        let Some(growth) = new.spec.size.checked_sub(old.spec.size).filter(|g| *g > 0) else {
            return Ok(());
        };
        let Some(charged) = &old.charged_to else {
            return Ok(());
        };
        if !who.guest && is_admin(who) {
            return Ok(());
        }
        let limits = if *charged == Self::charge_of(who) {
            self.effective_quota(who)
        } else {
            match self.quota_limits(charged) {
                Some(l) => EffectiveQuota {
                    volumes: None,
                    bytes: l.bytes.map(|max| Limit {
                        max,
                        from: charged.clone(),
                    }),
                },
                None => return Ok(()),
            }
        };
        self.check_room(who, charged, &limits, 0, growth)
    }

    fn check_room(
        &self,
        who: &Identity,
        charged: &QuotaSubject,
        limits: &EffectiveQuota,
        volumes: u64,
        bytes: u64,
    ) -> Result<(), Rejection> {
        let has = self.quota_usage(charged);
        if let Some(limit) = &limits.volumes {
            if volumes > 0 && has.volumes.saturating_add(volumes) > limit.max {
                return Err(Rejection::exhausted(quota::exceeded(
                    who,
                    limit,
                    true,
                    has.volumes,
                    volumes,
                )));
            }
        }
        if let Some(limit) = &limits.bytes {
            if has.bytes.saturating_add(bytes) > limit.max {
                return Err(Rejection::exhausted(quota::exceeded(
                    who, limit, false, has.bytes, bytes,
                )));
            }
        }
        Ok(())
    }
}

fn is_admin(who: &Identity) -> bool {
    who.roles.iter().any(|r| r == crate::role::ADMIN_ROLE)
}

fn validate(subject: &QuotaSubject) -> Result<(), Rejection> {
    match subject {
        QuotaSubject::User(name) | QuotaSubject::Group(name) if name.is_empty() => Err(
            Rejection::invalid(format!("Must supply a {} name", subject.kind())),
        ),
        QuotaSubject::User(name) | QuotaSubject::Group(name) if name.len() > MAX_SUBJECT_NAME => {
            Err(Rejection::invalid(format!(
                "A {} name is at most {MAX_SUBJECT_NAME} bytes",
                subject.kind()
            )))
        }
        _ => Ok(()),
    }
}
