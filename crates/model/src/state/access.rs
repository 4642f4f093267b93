//! The volume access checks of every method, in one place: apply, the reads and `explain` run them.
//!
//! A method checks its volume in a fixed order (`openstorage-sdk.md` section 4): whether the
//! volume must exist, then one or more access levels, each refused with its own upstream text.
//! [`VolumeCheck`] names those plans; [`State::check_volume`] is their one implementation,
//! optionally traced, so an explanation is the real check with its details kept.

use super::State;
use crate::identity::Identity;
use crate::ids::VolumeId;
use crate::ownership::{check_access, AccessStep, AccessType};
use crate::rejection::Rejection;
use crate::role::MethodName;
use crate::volume::Volume;
use serde::{Deserialize, Serialize};

/// The volume check a method runs before it acts (argument validation comes before it, the
/// method's own preconditions after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeCheck {
    /// `Inspect`, `Stats`, `CapacityUsage`, `VolumeCatalog`, `SnapshotEnumerate` with a volume,
    /// the source of `Clone` and `SnapshotCreate`: the volume must exist (NotFound "Volume id X
    /// not found"), Read ("Access denied to volume X").
    Read,
    /// `Attach`, `Mount`, `SnapshotRestore` (its volume): must exist, Read, then Write (both
    /// "Access denied to volume X"), as upstream's `checkAccessForVolumeId`.
    Write,
    /// `Detach`, `Unmount`: a missing volume is fine (idempotent); else Read, then Write.
    ExistingWrite,
    /// `Update`: must exist, Read, then Write ("Cannot update volume").
    Update,
    /// `SnapshotScheduleUpdate`: must exist, Read, then Write ("Cannot change the snapshot
    /// schedule for volume X").
    Schedule,
    /// `Delete`: a missing volume is fine (idempotent); else Read ("Access denied to volume
    /// X"), then Admin ("Cannot delete volume X").
    Delete,
    /// `Create` (and the new name of `Clone`/`SnapshotCreate`) by name: an existing volume of
    /// that name needs Admin ("Volume N already exists and is owned by another user").
    Name,
}

/// How each level of a check is refused.
#[derive(Clone, Copy)]
enum Refusal {
    AccessDenied,
    CannotUpdate,
    CannotSchedule,
    CannotDelete,
    OwnedByAnother,
}

impl Refusal {
    fn rejection(self, target: &str) -> Rejection {
        Rejection::denied(match self {
            Refusal::AccessDenied => format!("Access denied to volume {target}"),
            Refusal::CannotUpdate => "Cannot update volume".to_string(),
            Refusal::CannotSchedule => {
                format!("Cannot change the snapshot schedule for volume {target}")
            }
            Refusal::CannotDelete => format!("Cannot delete volume {target}"),
            Refusal::OwnedByAnother => {
                format!("Volume {target} already exists and is owned by another user")
            }
        })
    }
}

impl VolumeCheck {
    /// Whether a missing volume passes (`true`) or is NotFound.
    fn missing_ok(self) -> bool {
        matches!(
            self,
            VolumeCheck::ExistingWrite | VolumeCheck::Delete | VolumeCheck::Name
        )
    }

    /// The levels checked in order, each with its refusal.
    fn levels(self) -> &'static [(AccessType, Refusal)] {
        use AccessType::*;
        match self {
            VolumeCheck::Read => &[(Read, Refusal::AccessDenied)],
            VolumeCheck::Write | VolumeCheck::ExistingWrite => &[
                (Read, Refusal::AccessDenied),
                (Write, Refusal::AccessDenied),
            ],
            VolumeCheck::Update => &[
                (Read, Refusal::AccessDenied),
                (Write, Refusal::CannotUpdate),
            ],
            VolumeCheck::Schedule => &[
                (Read, Refusal::AccessDenied),
                (Write, Refusal::CannotSchedule),
            ],
            VolumeCheck::Delete => &[
                (Read, Refusal::AccessDenied),
                (Admin, Refusal::CannotDelete),
            ],
            VolumeCheck::Name => &[(Admin, Refusal::OwnedByAnother)],
        }
    }

    /// Whether the volume is named by its name (`Create`) rather than by its id.
    pub fn by_name(self) -> bool {
        self == VolumeCheck::Name
    }

    /// The check a method runs on the volume its request names (for `Clone` the parent, for
    /// `SnapshotCreate` the source, for `SnapshotRestore` the volume restored, for `Create` the
    /// name); `None` for methods that check no single volume (listings filter silently).
    pub fn of(method: &MethodName) -> Option<VolumeCheck> {
        Some(match (method.service.as_str(), method.api.as_str()) {
            (
                "volume",
                "inspect"
                | "stats"
                | "capacityusage"
                | "volumecatalog"
                | "snapshotenumerate"
                | "snapshotenumeratewithfilters"
                | "clone"
                | "snapshotcreate",
            ) => VolumeCheck::Read,
            ("volume", "snapshotrestore") | ("mountattach", "attach" | "mount") => {
                VolumeCheck::Write
            }
            ("mountattach", "detach" | "unmount") => VolumeCheck::ExistingWrite,
            ("volume", "update") => VolumeCheck::Update,
            ("volume", "snapshotscheduleupdate") => VolumeCheck::Schedule,
            ("volume", "delete") => VolumeCheck::Delete,
            ("volume", "create") => VolumeCheck::Name,
            _ => return None,
        })
    }
}

/// One level of a volume check as it was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelTrace {
    pub want: AccessType,
    pub steps: Vec<AccessStep>,
    pub granted: bool,
}

/// A volume check with every step kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCheckTrace {
    pub check: VolumeCheck,
    /// The id or name as the request named it.
    pub target: String,
    /// The volume's id when it exists.
    pub found: Option<VolumeId>,
    /// The levels checked, in order, up to the first refused.
    pub levels: Vec<LevelTrace>,
    pub verdict: Result<(), Rejection>,
}

impl State {
    /// The one implementation of the volume checks: the volume named `target` (an id, or a
    /// name for [`VolumeCheck::Name`]) checked for `who` as `check` says. `Ok(None)` when the
    /// volume does not exist and `check` tolerates that. `trace`, when given, receives each
    /// level as it starts and each access step.
    pub fn check_volume(
        &self,
        who: &Identity,
        check: VolumeCheck,
        target: &str,
        mut trace: Option<&mut dyn FnMut(Traced)>,
    ) -> Result<Option<&Volume>, Rejection> {
        let found = if check.by_name() {
            self.volume_by_name(target)
        } else {
            self.volumes.get(&VolumeId(target.to_string()))
        };
        let Some(v) = found else {
            if check.missing_ok() {
                return Ok(None);
            }
            return Err(Rejection::not_found(format!(
                "Volume id {target} not found"
            )));
        };
        if let Some(t) = trace.as_mut() {
            t(Traced::Found(v.id.clone()));
        }
        for (want, refusal) in check.levels() {
            let granted = match trace.as_mut() {
                None => check_access(who, v.ownership.as_ref(), *want, None),
                Some(t) => {
                    t(Traced::Level(*want));
                    check_access(
                        who,
                        v.ownership.as_ref(),
                        *want,
                        Some(&mut |s| t(Traced::Step(s))),
                    )
                }
            };
            if let Some(t) = trace.as_mut() {
                t(Traced::Granted(granted));
            }
            if !granted {
                return Err(refusal.rejection(target));
            }
        }
        Ok(Some(v))
    }

    /// [`State::check_volume`] with its steps kept.
    pub fn explain_volume(
        &self,
        who: &Identity,
        check: VolumeCheck,
        target: &str,
    ) -> VolumeCheckTrace {
        let mut found = None;
        let mut levels: Vec<LevelTrace> = Vec::new();
        let verdict = self
            .check_volume(
                who,
                check,
                target,
                Some(&mut |t| match t {
                    Traced::Found(id) => found = Some(id),
                    Traced::Level(want) => levels.push(LevelTrace {
                        want,
                        steps: Vec::new(),
                        granted: false,
                    }),
                    Traced::Step(s) => {
                        if let Some(l) = levels.last_mut() {
                            l.steps.push(s);
                        }
                    }
                    Traced::Granted(g) => {
                        if let Some(l) = levels.last_mut() {
                            l.granted = g;
                        }
                    }
                }),
            )
            .map(drop);
        VolumeCheckTrace {
            check,
            target: target.to_string(),
            found,
            levels,
            verdict,
        }
    }
}

/// What [`State::check_volume`] reports to a trace.
#[derive(Clone, Debug)]
pub enum Traced {
    /// The volume exists, with this id.
    Found(VolumeId),
    /// A level's check starts.
    Level(AccessType),
    /// A step of the current level's access check.
    Step(AccessStep),
    /// The current level's result.
    Granted(bool),
}
