//! The sequential specification the chaos harness checks custos's histories against: one
//! tenant's custom role and volumes (existence, owner, ACLs, a label, attachment, lineage),
//! written here from the documented semantics (docs/compatibility.md, the model crate's doc
//! comments), not by calling `custos_model::State`, so that the check is independent of the
//! code under test.
//!
//! A tenant is one partition of the history: a role `<prefix>-writers`, the only role of its
//! users `u1` and `u2` (so it decides every call they make, reads included), the users `u3` (`system.user`), the guest (no token), the
//! viewer (`system.view`) and the administrator, and four volume slots: two base volumes
//! `a` and `b`, the clone of `a` and the snapshot of `a`. Nothing of one tenant depends on
//! another's objects, so tenants are checked separately.
//!
//! Permissions are part of the state: the role's rules decide, at an operation's
//! linearization point, whether `u1` and `u2` may read and write volumes. A call the role
//! check refused is legal only if the role denies it there (and it has no effect); a call
//! it let through is legal only if the role allows it there. So a read or write allowed
//! after an acknowledged revocation, or refused by the role check after an acknowledged
//! grant, makes the history non-linearizable. Nothing here is permissive about roles.
//!
//! Volume ids are chosen by custos. A volume created by an operation whose answer was lost
//! has an unknown id until an answer names it (a read, or an idempotent create); a client only
//! ever addresses ids it has seen in an answer, so an operation naming an id can only mean the
//! slot's current volume when that volume's id is known and equal.

use crate::linearizability::Model;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Who makes a call, within one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// `system.admin` with group `*`: an ownership administrator.
    Admin,
    /// Role `<prefix>-writers` only (it decides their reads too), group `<prefix>-g`.
    U1,
    /// Like `U1`.
    U2,
    /// `system.user`, group `<prefix>-h`.
    U3,
    /// No token.
    Guest,
    /// `system.view`, no group.
    View,
}

impl Principal {
    pub const ALL: [Principal; 6] = [
        Principal::Admin,
        Principal::U1,
        Principal::U2,
        Principal::U3,
        Principal::Guest,
        Principal::View,
    ];
}

/// A volume slot of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    A,
    B,
    /// The clone of `A`.
    Clone,
    /// The snapshot of `A`.
    Snap,
}

impl Slot {
    pub const ALL: [Slot; 4] = [Slot::A, Slot::B, Slot::Clone, Slot::Snap];

    fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
            Slot::Clone => 2,
            Slot::Snap => 3,
        }
    }

    /// The volume name of this slot in the tenant `prefix`.
    pub fn name(self, prefix: &str) -> String {
        match self {
            Slot::A => format!("{prefix}-a"),
            Slot::B => format!("{prefix}-b"),
            Slot::Clone => format!("{prefix}-a-clone"),
            Slot::Snap => format!("{prefix}-a-snap"),
        }
    }
}

/// An access level (ordered as custos orders them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Read,
    Write,
    Admin,
}

/// The ACLs the workload sets: the tenant group (`U1`, `U2`), `U3` as collaborator, public.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct AclSpec {
    pub group: Option<Level>,
    pub collab: Option<Level>,
    pub public: Option<Level>,
}

/// The rule sets the workload gives the tenant role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rules {
    /// `volume` and `mountattach`, every api: reads and writes.
    Grant,
    /// `volume`, `inspect*` and `enumerate*` only: revokes every write, keeps reads.
    ReadOnly,
    /// `volume` and `mountattach` with every api denied (`!*`), `identity` allowed: revokes
    /// every volume call, reads included.
    Revoked,
}

impl Rules {
    pub const ALL: [Rules; 3] = [Rules::Grant, Rules::ReadOnly, Rules::Revoked];

    /// The role's rules as (services, apis) lists.
    pub fn rules(self) -> Vec<(Vec<String>, Vec<String>)> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Rules::Grant => vec![(s(&["volume", "mountattach"]), s(&["*"]))],
            Rules::ReadOnly => vec![(s(&["volume"]), s(&["inspect*", "enumerate*"]))],
            Rules::Revoked => vec![
                (s(&["volume", "mountattach"]), s(&["!*"])),
                (s(&["identity"]), s(&["*"])),
            ],
        }
    }

    /// Which of the rule sets these are, if any.
    pub fn recognise(rules: &[(Vec<String>, Vec<String>)]) -> Option<Rules> {
        Rules::ALL.into_iter().find(|r| r.rules() == rules)
    }
}

/// One operation as the workload issues it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Input {
    /// `Volume.Create` of a base slot with label `k=<label>`.
    Create {
        by: Principal,
        slot: Slot,
        label: String,
    },
    Delete {
        by: Principal,
        slot: Slot,
        id: String,
    },
    /// `Volume.Update` setting label `k`.
    SetLabel {
        by: Principal,
        slot: Slot,
        id: String,
        label: String,
    },
    /// `Volume.Update` replacing the ACLs (owner left empty).
    SetAcl {
        by: Principal,
        slot: Slot,
        id: String,
        acl: AclSpec,
    },
    Attach {
        by: Principal,
        slot: Slot,
        id: String,
    },
    Detach {
        by: Principal,
        slot: Slot,
        id: String,
    },
    /// `Volume.Clone` of `A` (whose id is `parent`) into the clone slot.
    Clone {
        by: Principal,
        parent: String,
    },
    /// `Volume.SnapshotCreate` of `A` (whose id is `parent`) into the snapshot slot.
    Snapshot {
        by: Principal,
        parent: String,
    },
    CreateRole {
        rules: Rules,
    },
    UpdateRole {
        by: Principal,
        rules: Rules,
    },
    DeleteRole,
    /// `Volume.InspectWithFilters` by the slot's name.
    ReadVolume {
        by: Principal,
        slot: Slot,
    },
    /// `Role.Inspect` of the tenant role, as the administrator.
    ReadRole,
}

impl Input {
    /// Whether the operation changes state (reads never do).
    pub fn is_mutation(&self) -> bool {
        !matches!(self, Input::ReadVolume { .. } | Input::ReadRole)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Input::Create { .. } => "create",
            Input::Delete { .. } => "delete",
            Input::SetLabel { .. } => "set_label",
            Input::SetAcl { .. } => "set_acl",
            Input::Attach { .. } => "attach",
            Input::Detach { .. } => "detach",
            Input::Clone { .. } => "clone",
            Input::Snapshot { .. } => "snapshot",
            Input::CreateRole { .. } => "create_role",
            Input::UpdateRole { .. } => "update_role",
            Input::DeleteRole => "delete_role",
            Input::ReadVolume { .. } => "read_volume",
            Input::ReadRole => "read_role",
        }
    }

    pub fn principal(&self) -> Principal {
        match self {
            Input::Create { by, .. }
            | Input::Delete { by, .. }
            | Input::SetLabel { by, .. }
            | Input::SetAcl { by, .. }
            | Input::Attach { by, .. }
            | Input::Detach { by, .. }
            | Input::Clone { by, .. }
            | Input::Snapshot { by, .. }
            | Input::UpdateRole { by, .. }
            | Input::ReadVolume { by, .. } => *by,
            Input::CreateRole { .. } | Input::DeleteRole | Input::ReadRole => Principal::Admin,
        }
    }
}

/// A volume as a read returned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeView {
    pub id: String,
    pub name: String,
    /// `None`: the volume has no ownership at all (public).
    pub owner: Option<String>,
    pub groups: BTreeMap<String, Level>,
    pub collaborators: BTreeMap<String, Level>,
    pub public: Option<Level>,
    /// The value of label `k`.
    pub label: Option<String>,
    pub attached: bool,
    pub parent: Option<String>,
    pub snapshot: bool,
}

/// What a successful call returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    Done,
    /// The id a create, clone or snapshot answered with.
    Id {
        id: String,
    },
    Volumes {
        volumes: Vec<VolumeView>,
    },
    /// The role's rules (`None`: rules the workload never sets).
    Role {
        rules: Option<Rules>,
    },
}

/// The names of one tenant's principals and objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_string(),
        }
    }
    pub fn role(&self) -> String {
        format!("{}-writers", self.prefix)
    }
    /// The group of `U1` and `U2`.
    pub fn group(&self) -> String {
        format!("{}-g", self.prefix)
    }
    /// The group of `U3` (never in an ACL).
    pub fn other_group(&self) -> String {
        format!("{}-h", self.prefix)
    }
    /// The username of a principal (empty for the guest).
    pub fn username(&self, p: Principal) -> String {
        match p {
            Principal::Admin => "chaos-admin".into(),
            Principal::View => "chaos-view".into(),
            Principal::Guest => String::new(),
            Principal::U1 => format!("{}-u1", self.prefix),
            Principal::U2 => format!("{}-u2", self.prefix),
            Principal::U3 => format!("{}-u3", self.prefix),
        }
    }
    fn principal(&self, username: &str) -> Option<Principal> {
        Principal::ALL
            .into_iter()
            .find(|p| *p != Principal::Guest && self.username(*p) == username)
    }
}

// ---- the compiled form the checker runs on ----

/// A refusal code the model can predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    NotFound,
    PermissionDenied,
    FailedPrecondition,
    AlreadyExists,
    /// A code the model never gives (the operation cannot have been refused with it).
    Other,
}

impl Code {
    pub fn from_name(name: &str) -> Code {
        match name {
            "NotFound" => Code::NotFound,
            "PermissionDenied" => Code::PermissionDenied,
            "FailedPrecondition" => Code::FailedPrecondition,
            "AlreadyExists" => Code::AlreadyExists,
            _ => Code::Other,
        }
    }
}

/// A volume id: interned per tenant, or not known yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vid {
    Unknown,
    Known(u16),
}

/// A volume's ownership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Own {
    /// No ownership (a guest's volume): everyone may do everything.
    Public,
    /// Ownership with an empty owner: still public, with ACLs attached.
    Ownerless(AclSpec),
    Owned(Principal, AclSpec),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vol {
    pub id: Vid,
    pub own: Own,
    /// Interned value of label `k`.
    pub label: Option<u32>,
    pub attached: bool,
    pub parent: Option<u16>,
}

/// The state of one tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantState {
    pub role: Option<Rules>,
    pub slots: [Option<Vol>; 4],
}

/// [`Input`] with ids and labels interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TIn {
    Create {
        by: Principal,
        slot: Slot,
        label: u32,
    },
    Delete {
        by: Principal,
        slot: Slot,
        id: u16,
    },
    SetLabel {
        by: Principal,
        slot: Slot,
        id: u16,
        label: u32,
    },
    SetAcl {
        by: Principal,
        slot: Slot,
        id: u16,
        acl: AclSpec,
    },
    Attach {
        by: Principal,
        slot: Slot,
        id: u16,
    },
    Detach {
        by: Principal,
        slot: Slot,
        id: u16,
    },
    Clone {
        by: Principal,
        parent: u16,
    },
    Snapshot {
        by: Principal,
        parent: u16,
    },
    CreateRole {
        rules: Rules,
    },
    UpdateRole {
        by: Principal,
        rules: Rules,
    },
    DeleteRole,
    ReadVolume {
        by: Principal,
        slot: Slot,
    },
    ReadRole,
}

/// A read volume in interned form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TView {
    pub id: u16,
    pub own: Own,
    pub label: Option<u32>,
    pub attached: bool,
    pub parent: Option<u16>,
    pub snapshot: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TObs {
    Done,
    Id(u16),
    /// `InspectWithFilters` by name: nothing, or one volume.
    Volume(Option<TView>),
    Role(Option<Rules>),
    /// An answer the model can never give (several volumes of one name, a stranger's name in
    /// an ACL, a name that is not the slot's ...).
    Impossible,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TOut {
    Ok(TObs),
    /// Refused by the operation (at the log index): must match the model.
    Refused(Code),
    /// Refused by the role check: legal only where the role state denies it; no effect.
    RoleRefused,
    /// No answer: may or may not have happened.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TOp {
    pub input: TIn,
    pub out: TOut,
}

/// A recorded outcome, as [`compile`] reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok {
        observed: Observed,
    },
    /// A definite refusal. `role`: the role check refused it (the message says so).
    Refused {
        code: String,
        message: String,
        role: bool,
    },
    /// No definite answer (timeouts, unavailable members).
    Unknown {
        reason: String,
    },
}

/// Interns ids and labels of one tenant's operations.
#[derive(Default)]
pub struct Interner {
    ids: HashMap<String, u16>,
    labels: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u16 {
        let n = self.ids.len() as u16;
        *self.ids.entry(s.to_string()).or_insert(n)
    }
    fn label(&mut self, s: &str) -> u32 {
        let n = self.labels.len() as u32;
        *self.labels.entry(s.to_string()).or_insert(n)
    }
}

/// Compiles one recorded operation of the tenant `names`; `None` for reads without a
/// definite answer (they constrain nothing).
pub fn compile(
    names: &Names,
    interner: &mut Interner,
    input: &Input,
    outcome: &Outcome,
) -> Option<TOp> {
    let tin = match input {
        Input::Create { by, slot, label } => TIn::Create {
            by: *by,
            slot: *slot,
            label: interner.label(label),
        },
        Input::Delete { by, slot, id } => TIn::Delete {
            by: *by,
            slot: *slot,
            id: interner.id(id),
        },
        Input::SetLabel {
            by,
            slot,
            id,
            label,
        } => TIn::SetLabel {
            by: *by,
            slot: *slot,
            id: interner.id(id),
            label: interner.label(label),
        },
        Input::SetAcl { by, slot, id, acl } => TIn::SetAcl {
            by: *by,
            slot: *slot,
            id: interner.id(id),
            acl: *acl,
        },
        Input::Attach { by, slot, id } => TIn::Attach {
            by: *by,
            slot: *slot,
            id: interner.id(id),
        },
        Input::Detach { by, slot, id } => TIn::Detach {
            by: *by,
            slot: *slot,
            id: interner.id(id),
        },
        Input::Clone { by, parent } => TIn::Clone {
            by: *by,
            parent: interner.id(parent),
        },
        Input::Snapshot { by, parent } => TIn::Snapshot {
            by: *by,
            parent: interner.id(parent),
        },
        Input::CreateRole { rules } => TIn::CreateRole { rules: *rules },
        Input::UpdateRole { by, rules } => TIn::UpdateRole {
            by: *by,
            rules: *rules,
        },
        Input::DeleteRole => TIn::DeleteRole,
        Input::ReadVolume { by, slot } => TIn::ReadVolume {
            by: *by,
            slot: *slot,
        },
        Input::ReadRole => TIn::ReadRole,
    };
    let out = match outcome {
        Outcome::Unknown { .. } if !input.is_mutation() => return None,
        Outcome::Unknown { .. } => TOut::Unknown,
        Outcome::Refused {
            role: true, code, ..
        } if code == "PermissionDenied" => TOut::RoleRefused,
        // The role check refuses with PermissionDenied only.
        Outcome::Refused { role: true, .. } => TOut::Refused(Code::Other),
        Outcome::Refused { code, .. } => TOut::Refused(Code::from_name(code)),
        Outcome::Ok { observed } => TOut::Ok(compile_observed(names, interner, input, observed)),
    };
    Some(TOp { input: tin, out })
}

fn compile_observed(
    names: &Names,
    interner: &mut Interner,
    input: &Input,
    observed: &Observed,
) -> TObs {
    match observed {
        Observed::Done => TObs::Done,
        Observed::Id { id } => TObs::Id(interner.id(id)),
        Observed::Role { rules } => TObs::Role(*rules),
        Observed::Volumes { volumes } => {
            let Input::ReadVolume { slot, .. } = input else {
                return TObs::Impossible;
            };
            match volumes.as_slice() {
                [] => TObs::Volume(None),
                [v] => {
                    if v.name != slot.name(&names.prefix) {
                        return TObs::Impossible;
                    }
                    let Some(own) = compile_ownership(names, v) else {
                        return TObs::Impossible;
                    };
                    TObs::Volume(Some(TView {
                        id: interner.id(&v.id),
                        own,
                        label: v.label.as_deref().map(|l| interner.label(l)),
                        attached: v.attached,
                        parent: v.parent.as_deref().map(|p| interner.id(p)),
                        snapshot: v.snapshot,
                    }))
                }
                _ => TObs::Impossible,
            }
        }
    }
}

fn compile_ownership(names: &Names, v: &VolumeView) -> Option<Own> {
    let Some(owner) = &v.owner else {
        let no_acls = v.groups.is_empty() && v.collaborators.is_empty() && v.public.is_none();
        return no_acls.then_some(Own::Public);
    };
    let group = names.group();
    let collaborator = names.username(Principal::U3);
    if v.groups.keys().any(|g| *g != group) || v.collaborators.keys().any(|c| *c != collaborator) {
        return None;
    }
    let acl = AclSpec {
        group: v.groups.get(&group).copied(),
        collab: v.collaborators.get(&collaborator).copied(),
        public: v.public,
    };
    if owner.is_empty() {
        return Some(Own::Ownerless(acl));
    }
    Some(Own::Owned(names.principal(owner)?, acl))
}

// ---- the specification ----

/// What a successful operation hands back, for comparison with what was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    Done,
    /// A new volume in this slot, its id not known yet.
    NewId(Slot),
    /// The existing volume in this slot (idempotent create, clone or snapshot).
    Existing(Slot),
    /// A read of this slot: `None` when nothing readable is there.
    Volume(Slot, bool),
    Role(Rules),
}

/// A refusal: its code, and whether the role check gave it.
type Refusal = (Code, bool);

/// May `by` access a volume of ownership `own` at level `want`? (custos's `permitted`, for
/// the workload's principals.)
pub fn can(by: Principal, own: &Own, want: Level) -> bool {
    match own {
        Own::Public | Own::Ownerless(_) => true,
        Own::Owned(owner, acl) => {
            if acl.public.is_some_and(|p| p >= want) {
                return true;
            }
            if by == Principal::Guest {
                return false;
            }
            if by == *owner || by == Principal::Admin {
                return true;
            }
            let grant = match by {
                Principal::U1 | Principal::U2 => acl.group,
                Principal::U3 => acl.collab,
                _ => None,
            };
            grant.is_some_and(|g| g >= want)
        }
    }
}

/// Does the role check let `by` call a volume or mount/attach write? `role`: the tenant
/// role's rules (`None`: it does not exist, so it allows nothing).
pub fn may_write_volumes(by: Principal, role: Option<Rules>) -> bool {
    match by {
        // system.admin, system.user and system.guest allow every volume and mountattach api.
        Principal::Admin | Principal::U3 | Principal::Guest => true,
        Principal::U1 | Principal::U2 => role == Some(Rules::Grant),
        // system.view allows only enumerate*, inspect* and a few others.
        Principal::View => false,
    }
}

/// Does the role check let `by` call `volume.inspectwithfilters`?
pub fn may_read_volumes(by: Principal, role: Option<Rules>) -> bool {
    match by {
        Principal::Admin | Principal::U3 | Principal::Guest | Principal::View => true,
        Principal::U1 | Principal::U2 => matches!(role, Some(Rules::Grant | Rules::ReadOnly)),
    }
}

/// The ownership of a clone made by `by` of a volume owned as `parent`.
fn clone_ownership(by: Principal, parent: &Own) -> Own {
    match (by, parent) {
        (Principal::Guest, p) => *p,
        (by, Own::Owned(o, acl)) if *o == by => Own::Owned(by, *acl),
        (by, _) => Own::Owned(by, AclSpec::default()),
    }
}

/// One tenant's specification.
#[derive(Clone, Debug, Default)]
pub struct TenantSpec;

impl TenantSpec {
    /// The slot's volume if its id is known to be `id`.
    fn by_id(s: &TenantState, slot: Slot, id: u16) -> Option<Vol> {
        s.slots[slot.index()].filter(|v| v.id == Vid::Known(id))
    }

    /// The access checks of a volume write (`checkAccessForVolumeId`): read, then `want`.
    fn check(by: Principal, v: &Vol, want: Level) -> Result<(), Refusal> {
        if !can(by, &v.own, Level::Read) || !can(by, &v.own, want) {
            return Err((Code::PermissionDenied, false));
        }
        Ok(())
    }

    /// What `input` does in `s`: the next state and what it returns, or a refusal.
    fn decide(s: &TenantState, input: &TIn) -> Result<(TenantState, Ret), Refusal> {
        const ROLE: Refusal = (Code::PermissionDenied, true);
        let write_allowed = |by| {
            if may_write_volumes(by, s.role) {
                Ok(())
            } else {
                Err(ROLE)
            }
        };
        let mut next = s.clone();
        let ret = match *input {
            TIn::Create { by, slot, label } => {
                write_allowed(by)?;
                match &s.slots[slot.index()] {
                    Some(v) if !can(by, &v.own, Level::Admin) => {
                        return Err((Code::PermissionDenied, false))
                    }
                    Some(_) => Ret::Existing(slot),
                    None => {
                        next.slots[slot.index()] = Some(Vol {
                            id: Vid::Unknown,
                            own: if by == Principal::Guest {
                                Own::Public
                            } else {
                                Own::Owned(by, AclSpec::default())
                            },
                            label: Some(label),
                            attached: false,
                            parent: None,
                        });
                        Ret::NewId(slot)
                    }
                }
            }
            TIn::Delete { by, slot, id } => {
                write_allowed(by)?;
                let Some(v) = Self::by_id(s, slot, id) else {
                    return Ok((next, Ret::Done));
                };
                Self::check(by, &v, Level::Admin)?;
                let child = s.slots.iter().flatten().any(|c| c.parent == Some(id));
                if v.attached || child {
                    return Err((Code::FailedPrecondition, false));
                }
                next.slots[slot.index()] = None;
                Ret::Done
            }
            TIn::SetLabel {
                by,
                slot,
                id,
                label,
            } => {
                write_allowed(by)?;
                let v = Self::by_id(s, slot, id).ok_or((Code::NotFound, false))?;
                Self::check(by, &v, Level::Write)?;
                next.slots[slot.index()] = Some(Vol {
                    label: Some(label),
                    ..v
                });
                Ret::Done
            }
            TIn::SetAcl { by, slot, id, acl } => {
                write_allowed(by)?;
                let v = Self::by_id(s, slot, id).ok_or((Code::NotFound, false))?;
                Self::check(by, &v, Level::Write)?;
                let own = match v.own {
                    Own::Public | Own::Ownerless(_) => Own::Ownerless(acl),
                    Own::Owned(owner, _) if can(by, &v.own, Level::Admin) => Own::Owned(owner, acl),
                    Own::Owned(..) => return Err((Code::PermissionDenied, false)),
                };
                next.slots[slot.index()] = Some(Vol { own, ..v });
                Ret::Done
            }
            TIn::Attach { by, slot, id } => {
                write_allowed(by)?;
                let v = Self::by_id(s, slot, id).ok_or((Code::NotFound, false))?;
                Self::check(by, &v, Level::Write)?;
                if slot == Slot::Snap {
                    return Err((Code::FailedPrecondition, false));
                }
                // Every workload volume is shared: attaching again, from any node, is OK.
                next.slots[slot.index()] = Some(Vol {
                    attached: true,
                    ..v
                });
                Ret::Done
            }
            TIn::Detach { by, slot, id } => {
                write_allowed(by)?;
                let Some(v) = Self::by_id(s, slot, id) else {
                    return Ok((next, Ret::Done));
                };
                Self::check(by, &v, Level::Write)?;
                next.slots[slot.index()] = Some(Vol {
                    attached: false,
                    ..v
                });
                Ret::Done
            }
            TIn::Clone { by, parent } | TIn::Snapshot { by, parent } => {
                let snapshot = matches!(input, TIn::Snapshot { .. });
                write_allowed(by)?;
                let source = Self::by_id(s, Slot::A, parent).ok_or((Code::NotFound, false))?;
                if !can(by, &source.own, Level::Read) {
                    return Err((Code::PermissionDenied, false));
                }
                let slot = if snapshot { Slot::Snap } else { Slot::Clone };
                match &s.slots[slot.index()] {
                    Some(c) if !can(by, &c.own, Level::Admin) => {
                        return Err((Code::PermissionDenied, false))
                    }
                    Some(c) if c.parent == Some(parent) => Ret::Existing(slot),
                    Some(_) => return Err((Code::AlreadyExists, false)),
                    None => {
                        next.slots[slot.index()] = Some(Vol {
                            id: Vid::Unknown,
                            own: if snapshot {
                                source.own
                            } else {
                                clone_ownership(by, &source.own)
                            },
                            label: if snapshot { None } else { source.label },
                            attached: false,
                            parent: Some(parent),
                        });
                        Ret::NewId(slot)
                    }
                }
            }
            TIn::CreateRole { rules } => match s.role {
                None => {
                    next.role = Some(rules);
                    Ret::Role(rules)
                }
                Some(r) if r == rules => Ret::Role(rules),
                Some(_) => return Err((Code::AlreadyExists, false)),
            },
            TIn::UpdateRole { by, rules } => {
                if by != Principal::Admin {
                    return Err(ROLE);
                }
                if s.role.is_none() {
                    return Err((Code::NotFound, false));
                }
                next.role = Some(rules);
                Ret::Role(rules)
            }
            TIn::DeleteRole => {
                next.role = None;
                Ret::Done
            }
            TIn::ReadVolume { by, slot } => {
                if !may_read_volumes(by, s.role) {
                    return Err(ROLE);
                }
                let readable = s.slots[slot.index()].is_some_and(|v| can(by, &v.own, Level::Read));
                Ret::Volume(slot, readable)
            }
            TIn::ReadRole => Ret::Role(s.role.ok_or((Code::NotFound, false))?),
        };
        Ok((next, ret))
    }

    /// Whether `id` may be a new volume's id in `s` (no volume there has it).
    fn fresh(s: &TenantState, id: u16) -> bool {
        !s.slots
            .iter()
            .flatten()
            .any(|v| v.id == Vid::Known(id) || v.parent == Some(id))
    }

    /// Gives the slot's volume the id `id`, if that fits what the state knows of it.
    fn pin(mut s: TenantState, slot: Slot, id: u16) -> Option<TenantState> {
        let v = s.slots[slot.index()]?;
        match v.id {
            Vid::Known(k) => (k == id).then_some(s),
            Vid::Unknown => {
                if !Self::fresh(&s, id) {
                    return None;
                }
                s.slots[slot.index()] = Some(Vol {
                    id: Vid::Known(id),
                    ..v
                });
                Some(s)
            }
        }
    }

    /// Whether the answer `obs` fits the decision; the state after it (ids pinned).
    fn matches(next: TenantState, ret: Ret, obs: &TObs) -> Option<TenantState> {
        match (ret, obs) {
            (Ret::Done, TObs::Done) | (Ret::Role(_), TObs::Done) => Some(next),
            (Ret::Role(r), TObs::Role(o)) => (Some(r) == *o).then_some(next),
            (Ret::NewId(slot), TObs::Id(id)) | (Ret::Existing(slot), TObs::Id(id)) => {
                Self::pin(next, slot, *id)
            }
            (Ret::Volume(_, false), TObs::Volume(None)) => Some(next),
            (Ret::Volume(slot, true), TObs::Volume(Some(view))) => {
                let v = next.slots[slot.index()]?;
                let same = v.own == view.own
                    && v.label == view.label
                    && v.attached == view.attached
                    && v.parent == view.parent
                    && (slot == Slot::Snap) == view.snapshot;
                if !same {
                    return None;
                }
                Self::pin(next, slot, view.id)
            }
            _ => None,
        }
    }

    /// The state `input` leads to when it succeeds, with its answer: for the workload
    /// generator of tests, which needs to produce consistent answers. `new_id` names a new
    /// volume.
    pub fn run(
        s: &TenantState,
        input: &TIn,
        new_id: u16,
    ) -> (TenantState, Result<TObs, (Code, bool)>) {
        match Self::decide(s, input) {
            Err(r) => (s.clone(), Err(r)),
            Ok((mut next, ret)) => {
                let obs = match ret {
                    Ret::Done => TObs::Done,
                    Ret::Role(r) => match input {
                        TIn::ReadRole => TObs::Role(Some(r)),
                        _ => TObs::Done,
                    },
                    Ret::NewId(slot) => {
                        next = Self::pin(next, slot, new_id).expect("fresh id");
                        TObs::Id(new_id)
                    }
                    Ret::Existing(slot) => match next.slots[slot.index()].map(|v| v.id) {
                        Some(Vid::Known(k)) => TObs::Id(k),
                        _ => {
                            next = Self::pin(next, slot, new_id).expect("fresh id");
                            TObs::Id(new_id)
                        }
                    },
                    Ret::Volume(_, false) => TObs::Volume(None),
                    Ret::Volume(slot, true) => {
                        let v = next.slots[slot.index()].expect("readable volume");
                        let id = match v.id {
                            Vid::Known(k) => k,
                            Vid::Unknown => {
                                next = Self::pin(next, slot, new_id).expect("fresh id");
                                new_id
                            }
                        };
                        TObs::Volume(Some(TView {
                            id,
                            own: v.own,
                            label: v.label,
                            attached: v.attached,
                            parent: v.parent,
                            snapshot: slot == Slot::Snap,
                        }))
                    }
                };
                (next, Ok(obs))
            }
        }
    }
}

impl Model for TenantSpec {
    type State = TenantState;
    type Op = TOp;

    fn init(&self) -> TenantState {
        TenantState::default()
    }

    fn step(&self, s: &TenantState, op: &TOp) -> Vec<TenantState> {
        let decided = Self::decide(s, &op.input);
        match (op.out, decided) {
            (TOut::Unknown, Ok((next, _))) => vec![s.clone(), next],
            (TOut::Unknown, Err(_)) => vec![s.clone()],
            // A role refusal only where the role state denies it (and its code is
            // PermissionDenied, which `compile` does not keep: every role refusal has it).
            (TOut::RoleRefused, Err((_, true))) => vec![s.clone()],
            (TOut::RoleRefused, _) => vec![],
            (TOut::Refused(code), Err((c, false))) if c == code => vec![s.clone()],
            (TOut::Refused(_), _) => vec![],
            (TOut::Ok(obs), Ok((next, ret))) => {
                Self::matches(next, ret, &obs).into_iter().collect()
            }
            (TOut::Ok(_), Err(_)) => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::{check, check_brute_force, Event, Verdict};
    use std::time::Duration;
    use Principal::*;

    const BUDGET: Duration = Duration::from_secs(10);

    fn op(input: TIn, out: TOut) -> TOp {
        TOp { input, out }
    }

    fn seq(ops: &[TOp]) -> Vec<Event<TOp>> {
        ops.iter()
            .enumerate()
            .map(|(i, o)| Event {
                op: *o,
                call: 10 * i as u64,
                ret: Some(10 * i as u64 + 5),
            })
            .collect()
    }

    fn ok(input: TIn, obs: TObs) -> TOp {
        op(input, TOut::Ok(obs))
    }

    const GRANT: TIn = TIn::CreateRole {
        rules: Rules::Grant,
    };

    fn view(id: u16, owner: Principal, label: u32) -> TObs {
        TObs::Volume(Some(TView {
            id,
            own: Own::Owned(owner, AclSpec::default()),
            label: Some(label),
            attached: false,
            parent: None,
            snapshot: false,
        }))
    }

    #[test]
    fn a_sequential_tenant_life_is_linearizable() {
        let h = seq(&[
            ok(GRANT, TObs::Done),
            ok(
                TIn::Create {
                    by: U1,
                    slot: Slot::A,
                    label: 0,
                },
                TObs::Id(0),
            ),
            ok(
                TIn::SetLabel {
                    by: U1,
                    slot: Slot::A,
                    id: 0,
                    label: 1,
                },
                TObs::Done,
            ),
            ok(
                TIn::ReadVolume {
                    by: Admin,
                    slot: Slot::A,
                },
                view(0, U1, 1),
            ),
            // U2 is not in an ACL: its update is refused by ownership, not by the role.
            op(
                TIn::SetLabel {
                    by: U2,
                    slot: Slot::A,
                    id: 0,
                    label: 2,
                },
                TOut::Refused(Code::PermissionDenied),
            ),
            ok(
                TIn::SetAcl {
                    by: U1,
                    slot: Slot::A,
                    id: 0,
                    acl: AclSpec {
                        group: Some(Level::Write),
                        ..Default::default()
                    },
                },
                TObs::Done,
            ),
            ok(
                TIn::SetLabel {
                    by: U2,
                    slot: Slot::A,
                    id: 0,
                    label: 3,
                },
                TObs::Done,
            ),
            ok(TIn::Clone { by: U2, parent: 0 }, TObs::Id(1)),
            op(
                TIn::Delete {
                    by: U1,
                    slot: Slot::A,
                    id: 0,
                },
                TOut::Refused(Code::FailedPrecondition),
            ),
            ok(
                TIn::ReadVolume {
                    by: U2,
                    slot: Slot::Clone,
                },
                TObs::Volume(Some(TView {
                    id: 1,
                    own: Own::Owned(U2, AclSpec::default()),
                    label: Some(3),
                    attached: false,
                    parent: Some(0),
                    snapshot: false,
                })),
            ),
        ]);
        assert_eq!(check(&TenantSpec, &h, BUDGET), Verdict::Linearizable);
        assert!(check_brute_force(&TenantSpec, &h));
    }

    #[test]
    fn a_write_acknowledged_after_the_revocation_returned_is_caught() {
        let create = ok(
            TIn::Create {
                by: U1,
                slot: Slot::A,
                label: 0,
            },
            TObs::Id(0),
        );
        let revoke = ok(
            TIn::UpdateRole {
                by: Admin,
                rules: Rules::ReadOnly,
            },
            TObs::Done,
        );
        let write = ok(
            TIn::SetLabel {
                by: U1,
                slot: Slot::A,
                id: 0,
                label: 5,
            },
            TObs::Done,
        );
        let h = seq(&[ok(GRANT, TObs::Done), create, revoke, write]);
        assert!(matches!(
            check(&TenantSpec, &h, BUDGET),
            Verdict::NotLinearizable(_)
        ));
        assert!(!check_brute_force(&TenantSpec, &h));
        // Concurrent with the revocation, the write may have come first.
        let mut h = seq(&[ok(GRANT, TObs::Done), create, revoke, write]);
        h[3].call = h[2].call + 1;
        assert_eq!(check(&TenantSpec, &h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn a_refused_write_that_becomes_visible_is_caught() {
        let h = seq(&[
            ok(GRANT, TObs::Done),
            ok(
                TIn::Create {
                    by: U1,
                    slot: Slot::A,
                    label: 0,
                },
                TObs::Id(0),
            ),
            op(
                TIn::SetLabel {
                    by: View,
                    slot: Slot::A,
                    id: 0,
                    label: 9,
                },
                TOut::RoleRefused,
            ),
            ok(
                TIn::ReadVolume {
                    by: Admin,
                    slot: Slot::A,
                },
                view(0, U1, 9),
            ),
        ]);
        assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
        assert!(!check_brute_force(&TenantSpec, &h));
    }

    #[test]
    fn a_lost_acknowledged_create_is_caught_and_an_unknown_one_may_be_absent() {
        let create = |out| {
            op(
                TIn::Create {
                    by: U3,
                    slot: Slot::B,
                    label: 0,
                },
                out,
            )
        };
        let read = ok(
            TIn::ReadVolume {
                by: Admin,
                slot: Slot::B,
            },
            TObs::Volume(None),
        );
        let h = seq(&[create(TOut::Ok(TObs::Id(4))), read]);
        assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
        let h = seq(&[create(TOut::Unknown), read]);
        assert!(check(&TenantSpec, &h, BUDGET).is_ok());
        // An unknown create that did happen: its id is learnt from the read.
        let seen = ok(
            TIn::ReadVolume {
                by: Admin,
                slot: Slot::B,
            },
            view(7, U3, 0),
        );
        let h = seq(&[create(TOut::Unknown), seen, seen]);
        assert!(check(&TenantSpec, &h, BUDGET).is_ok());
        // Then the id cannot change without a delete.
        let other = ok(
            TIn::ReadVolume {
                by: Admin,
                slot: Slot::B,
            },
            view(8, U3, 0),
        );
        let h = seq(&[create(TOut::Unknown), seen, other]);
        assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
    }

    #[test]
    fn a_role_refusal_is_checked_against_the_role_state_like_an_ownership_refusal() {
        let create = ok(
            TIn::Create {
                by: U1,
                slot: Slot::A,
                label: 0,
            },
            TObs::Id(0),
        );
        let set_label = |out| {
            op(
                TIn::SetLabel {
                    by: U1,
                    slot: Slot::A,
                    id: 0,
                    label: 1,
                },
                out,
            )
        };
        // The role grants: a role refusal of U1 is a stale denial.
        let h = seq(&[ok(GRANT, TObs::Done), create, set_label(TOut::RoleRefused)]);
        assert!(matches!(
            check(&TenantSpec, &h, BUDGET),
            Verdict::NotLinearizable(_)
        ));
        assert!(!check_brute_force(&TenantSpec, &h));
        // The owner refused by ownership is wrong too.
        let h = seq(&[
            ok(GRANT, TObs::Done),
            create,
            set_label(TOut::Refused(Code::PermissionDenied)),
        ]);
        assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
        // After an acknowledged revocation, the role refusal is right and an OK is not.
        for rules in [Rules::ReadOnly, Rules::Revoked] {
            let revoke = ok(TIn::UpdateRole { by: Admin, rules }, TObs::Done);
            let h = seq(&[
                ok(GRANT, TObs::Done),
                create,
                revoke,
                set_label(TOut::RoleRefused),
            ]);
            assert_eq!(check(&TenantSpec, &h, BUDGET), Verdict::Linearizable);
            assert!(check_brute_force(&TenantSpec, &h));
            let h = seq(&[
                ok(GRANT, TObs::Done),
                create,
                revoke,
                set_label(TOut::Ok(TObs::Done)),
            ]);
            assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
            assert!(!check_brute_force(&TenantSpec, &h));
        }
        // Concurrent with a grant, a role refusal may have come first.
        let mut h = seq(&[
            ok(
                TIn::CreateRole {
                    rules: Rules::ReadOnly,
                },
                TObs::Done,
            ),
            ok(
                TIn::Create {
                    by: U3,
                    slot: Slot::B,
                    label: 0,
                },
                TObs::Id(0),
            ),
            ok(
                TIn::UpdateRole {
                    by: Admin,
                    rules: Rules::Grant,
                },
                TObs::Done,
            ),
            op(
                TIn::Create {
                    by: U2,
                    slot: Slot::A,
                    label: 1,
                },
                TOut::RoleRefused,
            ),
        ]);
        h[3].call = h[2].call + 1;
        assert_eq!(check(&TenantSpec, &h, BUDGET), Verdict::Linearizable);
        // A role refusal never has an effect.
        let h = seq(&[
            ok(GRANT, TObs::Done),
            ok(
                TIn::UpdateRole {
                    by: Admin,
                    rules: Rules::ReadOnly,
                },
                TObs::Done,
            ),
            op(
                TIn::Create {
                    by: U2,
                    slot: Slot::A,
                    label: 1,
                },
                TOut::RoleRefused,
            ),
            ok(
                TIn::ReadVolume {
                    by: Admin,
                    slot: Slot::A,
                },
                view(0, U2, 1),
            ),
        ]);
        assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
        // Outside the tenant role, the role check never refuses these volume writes.
        let h = seq(&[op(
            TIn::Create {
                by: U3,
                slot: Slot::B,
                label: 0,
            },
            TOut::RoleRefused,
        )]);
        assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
    }

    #[test]
    fn a_read_is_allowed_exactly_while_the_role_allows_reading() {
        let read = |by, out| op(TIn::ReadVolume { by, slot: Slot::A }, out);
        let nothing = TOut::Ok(TObs::Volume(None));
        let update = |rules| ok(TIn::UpdateRole { by: Admin, rules }, TObs::Done);
        // Grant and read-only allow U1's read; a role refusal there is a stale denial.
        for rules in [Rules::Grant, Rules::ReadOnly] {
            let h = seq(&[ok(GRANT, TObs::Done), update(rules), read(U1, nothing)]);
            assert!(check(&TenantSpec, &h, BUDGET).is_ok());
            let h = seq(&[
                ok(GRANT, TObs::Done),
                update(rules),
                read(U1, TOut::RoleRefused),
            ]);
            assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
            assert!(!check_brute_force(&TenantSpec, &h));
        }
        // Revoked rules, or no role at all, deny it: an answer there is a stale allow.
        let revoked = [
            vec![ok(GRANT, TObs::Done), update(Rules::Revoked)],
            vec![ok(GRANT, TObs::Done), ok(TIn::DeleteRole, TObs::Done)],
            vec![],
        ];
        for before in revoked {
            let mut ops = before.clone();
            ops.push(read(U2, nothing));
            let h = seq(&ops);
            assert!(!check(&TenantSpec, &h, BUDGET).is_ok(), "{ops:?}");
            assert!(!check_brute_force(&TenantSpec, &h));
            let mut ops = before;
            ops.push(read(U2, TOut::RoleRefused));
            assert!(check(&TenantSpec, &seq(&ops), BUDGET).is_ok(), "{ops:?}");
        }
        // The viewer, the guest and U3 read whatever the tenant role says.
        for by in [View, Guest, U3, Admin] {
            let h = seq(&[read(by, nothing)]);
            assert!(check(&TenantSpec, &h, BUDGET).is_ok());
            let h = seq(&[read(by, TOut::RoleRefused)]);
            assert!(!check(&TenantSpec, &h, BUDGET).is_ok());
        }
        // A read concurrent with the revocation may see either side of it.
        let mut h = seq(&[
            ok(GRANT, TObs::Done),
            update(Rules::Revoked),
            read(U1, nothing),
        ]);
        h[2].call = h[1].call + 1;
        assert!(check(&TenantSpec, &h, BUDGET).is_ok());
        let mut h = seq(&[
            ok(
                TIn::CreateRole {
                    rules: Rules::Revoked,
                },
                TObs::Done,
            ),
            update(Rules::ReadOnly),
            read(U1, TOut::RoleRefused),
        ]);
        h[2].call = h[1].call + 1;
        assert!(check(&TenantSpec, &h, BUDGET).is_ok());
    }

    #[test]
    fn compile_keeps_role_refusals_strict() {
        let names = Names::new("t0");
        let mut i = Interner::default();
        let input = Input::ReadVolume {
            by: Principal::U1,
            slot: Slot::A,
        };
        let refused = |code: &str| Outcome::Refused {
            code: code.into(),
            message: "Access to ... denied: ... Access denied to roles: [t0-writers]".into(),
            role: true,
        };
        let t = compile(&names, &mut i, &input, &refused("PermissionDenied")).unwrap();
        assert_eq!(t.out, TOut::RoleRefused);
        let t = compile(&names, &mut i, &input, &refused("Unavailable")).unwrap();
        assert_eq!(t.out, TOut::Refused(Code::Other));
        for rules in Rules::ALL {
            assert_eq!(Rules::recognise(&rules.rules()), Some(rules));
        }
    }

    #[test]
    fn compile_reads_ownership_and_refuses_strangers() {
        let names = Names::new("t0");
        let mut i = Interner::default();
        let mut v = VolumeView {
            id: "x".into(),
            name: Slot::A.name("t0"),
            owner: Some("t0-u1".into()),
            groups: [("t0-g".to_string(), Level::Write)].into(),
            collaborators: BTreeMap::new(),
            public: None,
            label: Some("l".into()),
            attached: true,
            parent: None,
            snapshot: false,
        };
        let input = Input::ReadVolume {
            by: Principal::Admin,
            slot: Slot::A,
        };
        let outcome = |v: &VolumeView| Outcome::Ok {
            observed: Observed::Volumes {
                volumes: vec![v.clone()],
            },
        };
        let t = compile(&names, &mut i, &input, &outcome(&v)).unwrap();
        let TOut::Ok(TObs::Volume(Some(view))) = t.out else {
            panic!("{t:?}");
        };
        assert_eq!(
            view.own,
            Own::Owned(
                U1,
                AclSpec {
                    group: Some(Level::Write),
                    ..Default::default()
                }
            )
        );
        v.collaborators.insert("mallory".into(), Level::Admin);
        let t = compile(&names, &mut i, &input, &outcome(&v)).unwrap();
        assert_eq!(t.out, TOut::Ok(TObs::Impossible));
        // A read without an answer is dropped.
        let unknown = Outcome::Unknown {
            reason: "timeout".into(),
        };
        assert!(compile(&names, &mut i, &input, &unknown).is_none());
    }

    // ---- cross-check against the brute-force checker on random small histories ----

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            // xorshift64*: independent of the harness's generator.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[self.below(xs.len() as u64) as usize]
        }
    }

    fn random_input(r: &mut Rng, ids: u16) -> TIn {
        let by = r.pick(&Principal::ALL);
        let slot = r.pick(&Slot::ALL);
        let id = r.below(ids as u64) as u16;
        let label = r.below(3) as u32;
        match r.below(14) {
            0 => TIn::Create {
                by,
                slot: r.pick(&[Slot::A, Slot::B]),
                label,
            },
            1 => TIn::Delete { by, slot, id },
            2 => TIn::SetLabel {
                by,
                slot,
                id,
                label,
            },
            3 => TIn::SetAcl {
                by,
                slot,
                id,
                acl: AclSpec {
                    group: r.pick(&[None, Some(Level::Read), Some(Level::Write)]),
                    collab: r.pick(&[None, Some(Level::Admin)]),
                    public: r.pick(&[None, None, Some(Level::Read)]),
                },
            },
            4 => TIn::Attach { by, slot, id },
            5 => TIn::Detach { by, slot, id },
            6 => TIn::Clone { by, parent: id },
            7 => TIn::Snapshot { by, parent: id },
            8 => TIn::CreateRole {
                rules: r.pick(&Rules::ALL),
            },
            9 => TIn::UpdateRole {
                by: r.pick(&[Admin, Admin, U3]),
                rules: r.pick(&Rules::ALL),
            },
            10 => TIn::DeleteRole,
            11 => TIn::ReadRole,
            // Reads by the users whose reads the tenant role decides, often.
            12 => TIn::ReadVolume {
                by: r.pick(&[U1, U2]),
                slot,
            },
            _ => TIn::ReadVolume { by, slot },
        }
    }

    /// A history produced by running random operations in some real-time-consistent order
    /// against the specification (so mostly linearizable), with some answers then corrupted,
    /// lost, replaced by role refusals, or role refusals replaced by answers (a stale allow).
    fn random_history(r: &mut Rng) -> (TenantState, Vec<Event<TOp>>) {
        let n = 2 + r.below(6) as usize;
        let mut intervals: Vec<(u64, u64)> = (0..n)
            .map(|_| {
                let call = r.below(30);
                (call, call + 1 + r.below(12))
            })
            .collect();
        intervals.sort();
        // Execute in order of a random point inside each interval: a legal linearization.
        let mut points: Vec<(u64, usize)> = intervals
            .iter()
            .enumerate()
            .map(|(i, (c, e))| (c + r.below(e - c + 1), i))
            .collect();
        points.sort();
        let initial = TenantState {
            role: r.pick(&[
                None,
                Some(Rules::Grant),
                Some(Rules::Grant),
                Some(Rules::ReadOnly),
                Some(Rules::Revoked),
            ]),
            slots: Default::default(),
        };
        let mut state = initial.clone();
        let mut ops: Vec<Option<TOp>> = vec![None; n];
        for (next_id, (_, i)) in points.into_iter().enumerate() {
            // Each operation may name a fresh id; inputs pick among those made so far.
            let next_id = next_id as u16;
            let input = random_input(r, next_id.max(1) + 1);
            let (s2, res) = TenantSpec::run(&state, &input, next_id);
            state = s2;
            let out = match res {
                Ok(obs) => TOut::Ok(obs),
                Err((_, true)) => TOut::RoleRefused,
                Err((c, false)) => TOut::Refused(c),
            };
            ops[i] = Some(TOp { input, out });
        }
        let mut events: Vec<Event<TOp>> = ops
            .into_iter()
            .zip(intervals)
            .map(|(o, (c, e))| Event {
                op: o.expect("every operation ran"),
                call: c,
                ret: Some(e),
            })
            .collect();
        for e in events.iter_mut() {
            match r.below(10) {
                0 if e.op.input_is_mutation() => {
                    e.op.out = TOut::Unknown;
                    e.ret = None;
                }
                1 => {
                    e.op.out = match e.op.out {
                        TOut::Ok(TObs::Volume(Some(_))) => TOut::Ok(TObs::Volume(None)),
                        TOut::Ok(TObs::Id(k)) => TOut::Ok(TObs::Id(k + 1)),
                        TOut::Ok(_) => TOut::Refused(Code::PermissionDenied),
                        TOut::Refused(_) => TOut::Ok(TObs::Done),
                        o => o,
                    }
                }
                2 => e.op.out = TOut::RoleRefused,
                // A role refusal turned into what the call would have answered had the role
                // allowed it (a stale allow), where that is easy to make up.
                3 if e.op.out == TOut::RoleRefused => {
                    e.op.out = match e.op.input {
                        TIn::ReadVolume { .. } => TOut::Ok(TObs::Volume(None)),
                        TIn::Create { .. } | TIn::Clone { .. } | TIn::Snapshot { .. } => {
                            TOut::Ok(TObs::Id(20))
                        }
                        _ => TOut::Ok(TObs::Done),
                    }
                }
                _ => {}
            }
        }
        (initial, events)
    }

    impl TOp {
        fn input_is_mutation(&self) -> bool {
            !matches!(self.input, TIn::ReadVolume { .. } | TIn::ReadRole)
        }
    }

    /// The same specification with a chosen initial role (random histories start from one).
    struct From(TenantState);
    impl Model for From {
        type State = TenantState;
        type Op = TOp;
        fn init(&self) -> TenantState {
            self.0.clone()
        }
        fn step(&self, s: &TenantState, op: &TOp) -> Vec<TenantState> {
            TenantSpec.step(s, op)
        }
    }

    #[test]
    fn wgl_agrees_with_brute_force_on_random_tenant_histories() {
        let mut r = Rng(0x00C0_FFEE_1234_5678);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..4000 {
            let (initial, h) = random_history(&mut r);
            // The generator ran from this initial state: the checkers start there too.
            let model = From(initial);
            let fast = check(&model, &h, BUDGET);
            assert_ne!(fast, Verdict::Unknown);
            let slow = check_brute_force(&model, &h);
            assert_eq!(fast.is_ok(), slow, "checkers disagree on {h:#?}");
            if slow {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(yes > 800 && no > 800, "linearizable {yes}, not {no}");
    }
}
