//! Volume ownership: owner, group and collaborator ACLs, public access, and the access check.

use crate::identity::Identity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An access level. Ordered: Read ⊂ Write ⊂ Admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AccessType {
    Read,
    Write,
    Admin,
}

/// Who may do what with a resource besides its owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acls {
    pub groups: BTreeMap<String, AccessType>,
    pub collaborators: BTreeMap<String, AccessType>,
    /// `Some(level)` when public access is granted at that level.
    pub public: Option<AccessType>,
}

/// The ownership of a volume. A volume without an `Ownership` is public.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub owner: String,
    pub acls: Acls,
}

impl Ownership {
    /// Does this ownership match a filter: the same owner, or any shared group or collaborator
    /// key (access levels ignored), as upstream's enumerate filters do.
    pub fn matches_filter(&self, filter: &Ownership) -> bool {
        (!filter.owner.is_empty() && self.owner == filter.owner)
            || filter
                .acls
                .groups
                .keys()
                .any(|g| self.acls.groups.contains_key(g))
            || filter
                .acls
                .collaborators
                .keys()
                .any(|c| self.acls.collaborators.contains_key(c))
    }
}

/// One step of the access check, in the order the check takes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessStep {
    /// The resource has no ownership: public at every level (grants).
    NoOwnership,
    /// The ownership names no owner: public at every level (grants).
    NoOwner,
    /// Public access: its level (`None` when not granted); grants when at least `want`.
    Public { level: Option<AccessType> },
    /// The caller is anonymous (or has no username): only public access applies (refuses).
    Anonymous,
    /// Is the caller the owner?
    Owner { owner: String, is_caller: bool },
    /// Is the caller an ownership administrator (a non-guest with the group `*`)?
    OwnershipAdmin { is_admin: bool },
    /// A group ACL entry that applies to the caller (one of its groups, or `*`).
    Group { group: String, level: AccessType },
    /// A collaborator ACL entry that applies to the caller (its username, or `*`).
    Collaborator {
        collaborator: String,
        level: AccessType,
    },
    /// No group or collaborator entry applies to the caller.
    NoAclEntry,
}

/// The access check with every step it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTrace {
    pub want: AccessType,
    pub steps: Vec<AccessStep>,
    pub granted: bool,
}

/// The one implementation of the access check: `trace`, when given, receives each step as it
/// is taken (an explanation keeps them); [`permitted`] passes `None`, so no step is built. See
/// [`permitted`].
pub fn check_access(
    who: &Identity,
    ownership: Option<&Ownership>,
    want: AccessType,
    mut trace: Option<&mut dyn FnMut(AccessStep)>,
) -> bool {
    // Builds a step only for a caller that keeps them: the check runs for every volume a
    // listing looks at.
    let mut step = |make: &dyn Fn() -> AccessStep| {
        if let Some(t) = trace.as_mut() {
            t(make());
        }
    };
    let Some(own) = ownership else {
        step(&|| AccessStep::NoOwnership);
        return true;
    };
    if own.owner.is_empty() {
        step(&|| AccessStep::NoOwner);
        return true;
    }
    step(&|| AccessStep::Public {
        level: own.acls.public,
    });
    if own.acls.public.is_some_and(|p| p >= want) {
        return true;
    }
    if who.guest || who.username.is_empty() {
        step(&|| AccessStep::Anonymous);
        return false;
    }
    let is_caller = who.username == own.owner;
    step(&|| AccessStep::Owner {
        owner: own.owner.clone(),
        is_caller,
    });
    if is_caller {
        return true;
    }
    let is_admin = who.is_ownership_admin();
    step(&|| AccessStep::OwnershipAdmin { is_admin });
    if is_admin {
        return true;
    }
    // Among the caller's groups (and `*`), and among its username and `*`, the highest grant
    // wins: every applicable entry is a step, and the best of them decides.
    let mut best: Option<AccessType> = None;
    for g in who
        .groups
        .iter()
        .map(String::as_str)
        .chain(std::iter::once("*"))
    {
        if let Some(level) = own.acls.groups.get(g) {
            best = best.max(Some(*level));
            step(&|| AccessStep::Group {
                group: g.to_string(),
                level: *level,
            });
        }
    }
    for c in [who.username.as_str(), "*"] {
        if let Some(level) = own.acls.collaborators.get(c) {
            best = best.max(Some(*level));
            step(&|| AccessStep::Collaborator {
                collaborator: c.to_string(),
                level: *level,
            });
        }
    }
    if best.is_none() {
        step(&|| AccessStep::NoAclEntry);
    }
    best.is_some_and(|g| g >= want)
}

/// [`check_access`] with its steps kept.
pub fn explain_access(
    who: &Identity,
    ownership: Option<&Ownership>,
    want: AccessType,
) -> AccessTrace {
    let mut steps = Vec::new();
    let granted = check_access(who, ownership, want, Some(&mut |s| steps.push(s)));
    AccessTrace {
        want,
        steps,
        granted,
    }
}

/// May `who` access a resource with this ownership at level `want`?
///
/// Upstream semantics, with one deliberate difference: among the caller's groups, and between
/// a specific entry and a `*` entry, the highest grant wins (upstream takes the first match).
pub fn permitted(who: &Identity, ownership: Option<&Ownership>, want: AccessType) -> bool {
    check_access(who, ownership, want, None)
}
