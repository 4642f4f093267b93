//! Explain: who can do what, and why a call is refused — the real decision with its details kept.
//!
//! [`State::explain`] runs the same code as a real call: the role check is [`role::decide`]
//! (which `role::authorize` runs without details), and the volume check is
//! [`State::check_volume`] (which apply and the reads run without a trace). So an explanation
//! cannot disagree with the decision it explains; `tests/golden.rs` holds them equal over every
//! golden scenario.
//!
//! What an explanation covers: the role check, then, for a method that checks one volume (see
//! [`VolumeCheck::of`]), the access check of the volume the request names. It does not see the
//! rest of a request: argument validation (InvalidArgument, decided before the volume check),
//! the preconditions after it, the second object of `SnapshotRestore` (its snapshot needs Read),
//! and the owner and ACL rules of an `Update` that sends an ownership.

use crate::identity::Identity;
use crate::ownership::{AccessStep, AccessType};
use crate::rejection::Rejection;
use crate::role::{self, MethodName, RoleTrace, RoleVerdict, RuleEffect};
use crate::state::{State, VolumeCheck, VolumeCheckTrace};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The explanation of one call: the caller, every role's rules and verdicts, the volume check
/// when the call reaches it, and the verdict a real call gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub identity: Identity,
    /// The full gRPC method.
    pub method: String,
    /// `volume.create` style.
    pub dotted: String,
    pub roles: Vec<RoleTrace>,
    /// The revocation that refuses the caller's token, if one does: the role check refuses
    /// it before any role is asked.
    pub revoked: Option<crate::revocation::Revocation>,
    /// The role check's result (the same `Rejection` a real call gets when it refuses).
    pub role_verdict: Result<(), Rejection>,
    /// The volume check the method runs, if it checks one.
    pub volume_check: Option<VolumeCheck>,
    /// That check, when the request named a volume and the role check passed (a refused role
    /// check ends the call before it).
    pub volume: Option<VolumeCheckTrace>,
    /// What a real call gets from authorization: `Ok` (it goes on to its own validation and
    /// preconditions) or the refusal.
    pub verdict: Result<(), Rejection>,
}

impl State {
    /// Explains `method` called by `who` on `volume`, exactly as a request names it (an id, or
    /// a name for `Create`: [`State::volume_target`] turns an operator's either into that).
    pub fn explain(
        &self,
        who: &Identity,
        method: &MethodName,
        volume: Option<&str>,
    ) -> Explanation {
        let (roles, mut role_verdict) = role::explain(who, method, |name| self.role(name));
        let revoked = self.revoked(who).cloned();
        if revoked.is_some() {
            role_verdict = Err(crate::revocation::Revocation::refusal());
        }
        let volume_check = VolumeCheck::of(method);
        let trace = match (&role_verdict, volume_check, volume) {
            (Ok(()), Some(check), Some(target)) => Some(self.explain_volume(who, check, target)),
            _ => None,
        };
        let verdict = match &trace {
            Some(t) => role_verdict.clone().and(t.verdict.clone()),
            None => role_verdict.clone(),
        };
        Explanation {
            identity: who.clone(),
            method: method.full.clone(),
            dotted: method.dotted(),
            roles,
            revoked,
            role_verdict,
            volume_check,
            volume: trace,
            verdict,
        }
    }

    /// The volume a request for `method` would name, from an operator's id or name: an id for
    /// checks by id, a name for [`VolumeCheck::Name`] (`Create`). An unknown one stays as given.
    pub fn volume_target(&self, method: &MethodName, given: &str) -> String {
        let Some(check) = VolumeCheck::of(method) else {
            return given.to_string();
        };
        let id = crate::ids::VolumeId(given.to_string());
        if check.by_name() {
            match (self.volume_by_name(given), self.volume(&id)) {
                (None, Some(v)) => v.name.clone(),
                _ => given.to_string(),
            }
        } else {
            match (self.volume(&id), self.volume_by_name(given)) {
                (None, Some(v)) => v.id.to_string(),
                _ => given.to_string(),
            }
        }
    }
}

impl MethodName {
    /// A method as an operator names it: a full gRPC path (`/openstorage.api.
    /// OpenStorageVolume/Create`), or a dotted name (`volume.create`, any case) looked up among
    /// `known` full paths. `None` for a dotted name no known method has.
    pub fn resolve<'a>(
        input: &str,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Option<MethodName> {
        let input = input.trim();
        if input.starts_with('/') {
            return Some(MethodName::from_full(input));
        }
        let wanted = input.to_lowercase();
        known
            .into_iter()
            .map(MethodName::from_full)
            .find(|m| m.dotted() == wanted)
    }
}

fn access_name(a: AccessType) -> &'static str {
    match a {
        AccessType::Read => "Read",
        AccessType::Write => "Write",
        AccessType::Admin => "Admin",
    }
}

fn patterns(p: &[String]) -> String {
    format!("[{}]", p.join(","))
}

/// A verdict as people read it: `allowed` or `refused: Code: message`.
pub fn verdict_text(v: &Result<(), Rejection>) -> String {
    match v {
        Ok(()) => "allowed".into(),
        Err(r) => format!("refused: {}: {}", r.code.name(), r.message),
    }
}

impl Explanation {
    /// The explanation as text lines (the CLI's and the golden tests' rendering).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let who = &self.identity;
        if who.guest {
            out.push("caller: anonymous (no token) roles=[system.guest]".to_string());
        } else {
            let mut s = format!("caller: user={:?}", who.username);
            if !who.issuer.is_empty() {
                let _ = write!(s, " issuer={}", who.issuer);
            }
            let _ = write!(
                s,
                " roles=[{}] groups=[{}]",
                who.roles.join(","),
                who.groups.join(",")
            );
            out.push(s);
        }
        out.push(format!("method: {} ({})", self.method, self.dotted));
        if let Some(r) = &self.revoked {
            let issuer = match r.target.issuer() {
                "" => String::new(),
                issuer => format!(" of issuer {issuer}"),
            };
            out.push(format!(
                "token: REVOKED by {} {}{issuer} (until {}): refused before any role is asked",
                r.target.kind(),
                r.target.value(),
                crate::revocation::utc_text(r.expires_at)
            ));
        }
        if self.roles.is_empty() {
            out.push("roles: none".to_string());
        }
        for r in &self.roles {
            let Some(d) = &r.role else {
                out.push(format!("role {}: unknown role, skipped", r.name));
                continue;
            };
            let verdict = match d.verdict {
                RoleVerdict::Denied { rule } => format!("denies (rule {})", rule + 1),
                RoleVerdict::Allowed { rule } => format!("allows (rule {})", rule + 1),
                RoleVerdict::NoMatch => "no rule matches".to_string(),
            };
            out.push(format!("role {}: {verdict}", r.name));
            for (i, (rule, m)) in d.rules.iter().enumerate() {
                let effect = match m.effect() {
                    RuleEffect::DeniesService => format!(
                        "DENY: service deny {} matches",
                        m.service_deny.as_deref().unwrap_or_default()
                    ),
                    RuleEffect::DeniesApi => format!(
                        "DENY: service {} matches, api deny {} matches",
                        m.service_allow.as_deref().unwrap_or_default(),
                        m.api_deny.as_deref().unwrap_or_default()
                    ),
                    RuleEffect::Allows => format!(
                        "allow: service {} and api {} match",
                        m.service_allow.as_deref().unwrap_or_default(),
                        m.api_allow.as_deref().unwrap_or_default()
                    ),
                    RuleEffect::NoMatch if m.service_allow.is_some() => format!(
                        "no match: service {} matches, no api does",
                        m.service_allow.as_deref().unwrap_or_default()
                    ),
                    RuleEffect::NoMatch => "no match: no service matches".to_string(),
                };
                out.push(format!(
                    "  rule {} services={} apis={}: {effect}",
                    i + 1,
                    patterns(&rule.services),
                    patterns(&rule.apis)
                ));
            }
        }
        out.push(format!("role check: {}", verdict_text(&self.role_verdict)));
        match (self.volume_check, &self.volume) {
            (None, _) => out.push("volume check: none for this method".to_string()),
            (Some(_), None) if self.role_verdict.is_err() => {
                out.push("volume check: not reached".to_string())
            }
            (Some(check), None) => out.push(format!(
                "volume check: {check:?} (no volume given: name one to see its access check)"
            )),
            (Some(_), Some(t)) => {
                let found = match &t.found {
                    Some(id) if id.as_str() == t.target => "exists".to_string(),
                    Some(id) => format!("exists as {id}"),
                    None => "does not exist".to_string(),
                };
                out.push(format!(
                    "volume check: {:?} on {} ({found})",
                    t.check, t.target
                ));
                for level in &t.levels {
                    let result = if level.granted { "granted" } else { "refused" };
                    out.push(format!("  needs {}: {result}", access_name(level.want)));
                    for step in &level.steps {
                        out.push(format!("    {}", step_text(step, level.want)));
                    }
                }
                out.push(format!("  result: {}", verdict_text(&t.verdict)));
            }
        }
        out.push(format!("verdict: {}", verdict_text(&self.verdict)));
        out
    }
}

/// One access step as text, for the level `want`.
pub fn step_text(step: &AccessStep, want: AccessType) -> String {
    let enough = |l: AccessType| if l >= want { "enough" } else { "not enough" };
    match step {
        AccessStep::NoOwnership => "no ownership: public at every level".into(),
        AccessStep::NoOwner => "no owner: public at every level".into(),
        AccessStep::Public { level: None } => "public: not granted".into(),
        AccessStep::Public { level: Some(l) } => {
            format!("public: {} ({})", access_name(*l), enough(*l))
        }
        AccessStep::Anonymous => "anonymous caller: only public access applies".into(),
        AccessStep::Owner { owner, is_caller } => {
            format!(
                "owner {owner:?}: {}",
                if *is_caller {
                    "is the caller"
                } else {
                    "not the caller"
                }
            )
        }
        AccessStep::OwnershipAdmin { is_admin } => format!(
            "ownership administrator (group *): {}",
            if *is_admin { "yes" } else { "no" }
        ),
        AccessStep::Group { group, level } => format!(
            "group {group}: {} ({})",
            access_name(*level),
            enough(*level)
        ),
        AccessStep::Collaborator {
            collaborator,
            level,
        } => format!(
            "collaborator {collaborator}: {} ({})",
            access_name(*level),
            enough(*level)
        ),
        AccessStep::NoAclEntry => "no group or collaborator entry for the caller".into(),
    }
}
