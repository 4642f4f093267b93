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

/// May `who` access a resource with this ownership at level `want`?
///
/// Upstream semantics, with one deliberate difference: among the caller's groups, and between
/// a specific entry and a `*` entry, the highest grant wins (upstream takes the first match).
pub fn permitted(who: &Identity, ownership: Option<&Ownership>, want: AccessType) -> bool {
    let Some(own) = ownership else { return true };
    if own.owner.is_empty() || own.acls.public.is_some_and(|p| p >= want) {
        return true;
    }
    if who.guest || who.username.is_empty() {
        return false;
    }
    if who.username == own.owner || who.is_ownership_admin() {
        return true;
    }
    let group_grant = who
        .groups
        .iter()
        .map(String::as_str)
        .chain(std::iter::once("*"))
        .filter_map(|g| own.acls.groups.get(g))
        .max();
    let collaborator_grant = [who.username.as_str(), "*"]
        .iter()
        .filter_map(|c| own.acls.collaborators.get(*c))
        .max();
    group_grant
        .max(collaborator_grant)
        .is_some_and(|g| *g >= want)
}
