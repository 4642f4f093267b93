//! Quotas: how many volumes, and how many provisioned bytes, a user, a group's members or the guests may have.
//!
//! A volume counts against whoever created it ([`crate::Volume::charged_to`]): the user who
//! made the request, or the guests as one subject. Snapshots and clones count like volumes
//! (one volume and their `spec.size` each) against the caller who made them, whoever owns them:
//! a snapshot of alice's volume that bob takes is alice's (upstream's ownership rule) but bob's
//! use, so nobody can fill another's quota. The charge is fixed at creation; an ownership
//! change does not move it. Deleting a volume frees its room.
//!
//! Which quota applies to a caller ([`effective`]):
//!
//! - `system.admin` callers have none (their volumes are counted, never refused);
//! - a guest: the guest quota, [`DEFAULT_GUEST_QUOTA`] until an administrator sets another;
//! - a user: their own quota when one is set, whole; else, when any of their token's groups
//!   has one, each limit is the most generous among those groups (an unset limit being no
//!   limit); else none.

use crate::identity::Identity;
use crate::role::ADMIN_ROLE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Whom a quota is set for, and whom a volume counts against (never a group: a volume is
/// created by one caller).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum QuotaSubject {
    /// A user, by username (the configured username claim).
    User(String),
    /// The members of a group (the token's groups claim): each member on their own.
    Group(String),
    /// Every caller without a token, together.
    Guest,
}

impl QuotaSubject {
    /// The storage key: `u:<name>`, `g:<name>` or `guest`.
    pub fn key(&self) -> String {
        match self {
            QuotaSubject::User(n) => format!("u:{n}"),
            QuotaSubject::Group(n) => format!("g:{n}"),
            QuotaSubject::Guest => "guest".to_string(),
        }
    }

    /// `user`, `group` or `guest`.
    pub fn kind(&self) -> &'static str {
        match self {
            QuotaSubject::User(_) => "user",
            QuotaSubject::Group(_) => "group",
            QuotaSubject::Guest => "guest",
        }
    }

    /// The user or group name; empty for the guests.
    pub fn name(&self) -> &str {
        match self {
            QuotaSubject::User(n) | QuotaSubject::Group(n) => n,
            QuotaSubject::Guest => "",
        }
    }

    /// The subject `kind` and `name` spell (as the admin API sends them).
    pub fn parse(kind: &str, name: &str) -> Option<QuotaSubject> {
        match kind {
            "user" => Some(QuotaSubject::User(name.to_string())),
            "group" => Some(QuotaSubject::Group(name.to_string())),
            "guest" if name.is_empty() => Some(QuotaSubject::Guest),
            _ => None,
        }
    }
}

impl fmt::Display for QuotaSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaSubject::User(n) => write!(f, "user {n}"),
            QuotaSubject::Group(n) => write!(f, "group {n}"),
            QuotaSubject::Guest => f.write_str("guests"),
        }
    }
}

/// The limits of a quota; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaLimits {
    /// The most volumes (snapshots and clones included).
    pub volumes: Option<u64>,
    /// The most provisioned bytes: the sum of the volumes' `spec.size`.
    pub bytes: Option<u64>,
}

impl fmt::Display for QuotaLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let volumes = match self.volumes {
            Some(n) => count(n, "volume"),
            None => "unlimited volumes".to_string(),
        };
        let bytes = match self.bytes {
            Some(n) => size(n),
            None => "unlimited bytes".to_string(),
        };
        write!(f, "{volumes}, {bytes}")
    }
}

/// The guests' quota until an administrator sets one: guest access is on by default and any
/// caller without a token may create volumes, so their growth of every member's replicated
/// state is bounded from the first call.
pub const DEFAULT_GUEST_QUOTA: QuotaLimits = QuotaLimits {
    volumes: Some(10),
    bytes: Some(10 << 30),
};

/// A quota an administrator set (`Op::SetQuota`): replicated state, one record per subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub subject: QuotaSubject,
    pub limits: QuotaLimits,
    /// Leader-stamped time it was set, milliseconds since the Unix epoch.
    pub set_ms: u64,
    /// The administrator who set it.
    pub set_by: String,
}

/// What a subject's volumes add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    pub volumes: u64,
    pub bytes: u64,
}

/// One limit in force for a caller, and the quota it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub from: QuotaSubject,
}

/// The limits in force for a caller ([`effective`]); `None`: no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectiveQuota {
    pub volumes: Option<Limit>,
    pub bytes: Option<Limit>,
}

/// The quotas set, by subject.
pub type QuotaBook = BTreeMap<QuotaSubject, Quota>;

/// The limits of `subject` as set in `book`, or the default for the guests; `None` when nothing
/// is set for a user or group.
pub fn limits_of(book: &QuotaBook, subject: &QuotaSubject) -> Option<QuotaLimits> {
    match (book.get(subject), subject) {
        (Some(q), _) => Some(q.limits),
        (None, QuotaSubject::Guest) => Some(DEFAULT_GUEST_QUOTA),
        (None, _) => None,
    }
}

/// The limits in force for `who` (see the module documentation).
pub fn effective(book: &QuotaBook, who: &Identity) -> EffectiveQuota {
    if !who.guest && who.roles.iter().any(|r| r == ADMIN_ROLE) {
        return EffectiveQuota::default();
    }
    let whole = |subject: QuotaSubject, limits: QuotaLimits| EffectiveQuota {
        volumes: limits.volumes.map(|max| Limit {
            max,
            from: subject.clone(),
        }),
        bytes: limits.bytes.map(|max| Limit { max, from: subject }),
    };
    let own = if who.guest {
        QuotaSubject::Guest
    } else {
        QuotaSubject::User(who.username.clone())
    };
    if let Some(limits) = limits_of(book, &own) {
        return whole(own, limits);
    }
    let groups: Vec<(QuotaSubject, QuotaLimits)> = who
        .groups
        .iter()
        .map(|g| QuotaSubject::Group(g.clone()))
        .filter_map(|g| book.get(&g).map(|q| (g, q.limits)))
        .collect();
    if groups.is_empty() {
        return EffectiveQuota::default();
    }
    let most_generous = |pick: fn(&QuotaLimits) -> Option<u64>| -> Option<Limit> {
        let mut best: Option<Limit> = None;
        for (g, limits) in &groups {
            let max = pick(limits)?;
            if best.as_ref().is_none_or(|b| max > b.max) {
                best = Some(Limit {
                    max,
                    from: g.clone(),
                });
            }
        }
        best
    };
    EffectiveQuota {
        volumes: most_generous(|l| l.volumes),
        bytes: most_generous(|l| l.bytes),
    }
}

/// `1 volume`, `10 volumes`.
fn count(n: u64, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// A byte count as people read it: whole GiB, MiB or KiB when exact, else bytes (`10 GiB`,
/// `1536 MiB`, `1000 bytes`).
pub fn size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    count(n, "byte")
}

/// The refusal message of a create or growth that would take `who` past `limit`: they have
/// `has` (volumes when `volumes`, else bytes) and ask for `more`.
pub(crate) fn exceeded(
    who: &Identity,
    limit: &Limit,
    volumes: bool,
    has: u64,
    more: u64,
) -> String {
    let (max, has) = if volumes {
        (count(limit.max, "volume"), count(has, "volume"))
    } else {
        (size(limit.max), size(has))
    };
    let need = |verb: &str| {
        if volumes || more == 0 {
            String::new()
        } else {
            format!(", {verb} {} more", size(more))
        }
    };
    match &limit.from {
        QuotaSubject::Guest => format!(
            "Quota exceeded: guests may have at most {max} (have {has}{})",
            need("need")
        ),
        QuotaSubject::User(name) => format!(
            "Quota exceeded: user {name} may have at most {max} (has {has}{})",
            need("needs")
        ),
        QuotaSubject::Group(group) => format!(
            "Quota exceeded: members of group {group} may have at most {max} (user {} has \
             {has}{})",
            who.username,
            need("needs")
        ),
    }
}
