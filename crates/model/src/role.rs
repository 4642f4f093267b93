//! Roles: named rule sets over SDK services and APIs, with `*` globs and `!` denies, as OpenStorage has them.

use crate::identity::{Identity, GUEST_ROLE};
use crate::rejection::Rejection;
use serde::{Deserialize, Serialize};

/// The prefix removed from gRPC service names to form rule service names.
pub const SDK_ROOT: &str = "openstorage.api.openstorage";

/// Prefix of custos's own admin services (`custos.admin.v1.Audit` → service `audit`), so a
/// custom role names them as it names SDK services.
pub const ADMIN_ROOT: &str = "custos.admin.v1.";

/// One rule: the listed APIs of the listed services. Patterns are matched case-sensitively.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub services: Vec<String>,
    pub apis: Vec<String>,
}

/// A named set of rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// A gRPC method as roles see it: lower-cased service without the SDK root prefix, and api.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MethodName {
    /// The full gRPC path, e.g. `/openstorage.api.OpenStorageVolume/Create`.
    pub full: String,
    /// `volume`, `mountattach`, `role`, ...
    pub service: String,
    /// `create`, `inspect`, ...
    pub api: String,
}

impl MethodName {
    /// Derives the rule names from a full gRPC method path.
    pub fn from_full(full: &str) -> MethodName {
        let mut parts = full.split('/').filter(|p| !p.is_empty());
        let service = parts.next().unwrap_or("").to_lowercase();
        let api = parts.next().unwrap_or("").to_lowercase();
        let service = match service
            .strip_prefix(SDK_ROOT)
            .or_else(|| service.strip_prefix(ADMIN_ROOT))
        {
            Some(rest) => rest.to_string(),
            None => service,
        };
        MethodName {
            full: full.to_string(),
            service,
            api,
        }
    }

    /// `volume.create` style, as audit records spell it.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.service, self.api)
    }
}

/// Does `pattern` (no `!`) match `name`? Upstream semantics: a pattern starting or ending
/// with `*` loses every `*` (inner ones too) and matches by prefix, suffix or containment;
/// otherwise it must be equal. An empty pattern matches nothing.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let leading = pattern.starts_with('*');
    let trailing = pattern.ends_with('*');
    if !leading && !trailing {
        return pattern == name;
    }
    // Every request runs this for many patterns: borrow the core when the stars are only at the
    // ends (all built-in rules), and build it only for the rare pattern with inner stars.
    let outer = pattern.trim_matches('*');
    let owned;
    let core = if outer.contains('*') {
        owned = pattern.chars().filter(|c| *c != '*').collect::<String>();
        owned.trim()
    } else {
        outer.trim()
    };
    if core.is_empty() {
        return true;
    }
    match (leading, trailing) {
        (true, true) => name.contains(core),
        (true, false) => name.ends_with(core),
        _ => name.starts_with(core),
    }
}

/// A pattern that begins with `!` denies; every `!` is removed before matching.
fn deny_matches(pattern: &str, name: &str) -> bool {
    if !pattern.starts_with('!') {
        return false;
    }
    let rest = pattern.trim_start_matches('!');
    if rest.contains('!') {
        let stripped: String = pattern.chars().filter(|c| *c != '!').collect();
        return pattern_matches(stripped.trim(), name);
    }
    pattern_matches(rest.trim(), name)
}

fn allow_matches(pattern: &str, name: &str) -> bool {
    !pattern.starts_with('!') && pattern_matches(pattern, name)
}

/// How one rule of a role matched a method: the first pattern of each kind that matched. The
/// api side is looked at only under a service allow, as the role check does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMatch {
    /// A `!` service pattern matching the service: the whole role denies.
    pub service_deny: Option<String>,
    /// A service pattern (no `!`) matching the service.
    pub service_allow: Option<String>,
    /// Under a service allow: a `!` api pattern matching the api (the role denies).
    pub api_deny: Option<String>,
    /// Under a service allow: an api pattern (no `!`) matching the api.
    pub api_allow: Option<String>,
}

impl RuleMatch {
    /// What this rule alone says about the method.
    pub fn effect(&self) -> RuleEffect {
        if self.service_deny.is_some() {
            RuleEffect::DeniesService
        } else if self.service_allow.is_some() && self.api_deny.is_some() {
            RuleEffect::DeniesApi
        } else if self.service_allow.is_some() && self.api_allow.is_some() {
            RuleEffect::Allows
        } else {
            RuleEffect::NoMatch
        }
    }
}

/// What one rule says about a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleEffect {
    /// A `!` service pattern matched: the role denies, whatever its other rules say.
    DeniesService,
    /// The service matched and a `!` api pattern matched: the role denies.
    DeniesApi,
    /// The service and the api matched.
    Allows,
    /// Nothing of this rule applies.
    NoMatch,
}

/// A role's verdict on a method, with the (0-based) rule that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleVerdict {
    /// A deny of this rule matched: `!` denies win inside a role, service denies first.
    Denied { rule: usize },
    /// This rule (the first that does) allows, and no deny matched.
    Allowed { rule: usize },
    /// No rule allows the method.
    NoMatch,
}

impl RoleVerdict {
    pub fn allows(self) -> bool {
        matches!(self, RoleVerdict::Allowed { .. })
    }
}

/// The first pattern of `patterns` for which `hit` holds, cloned only when `keep` (the role
/// check passes `false`: it needs the fact, not the text).
fn first_hit(patterns: &[String], keep: bool, hit: impl Fn(&str) -> bool) -> Option<String> {
    patterns
        .iter()
        .find(|p| hit(p))
        .map(|p| if keep { p.clone() } else { String::new() })
}

impl Rule {
    /// How this rule matches `method`. `keep` chooses whether the matching patterns' texts are
    /// kept (for an explanation) or left empty (for the role check, which only needs the fact).
    fn matching(&self, method: &MethodName, keep: bool) -> RuleMatch {
        let service_deny = first_hit(&self.services, keep, |s| deny_matches(s, &method.service));
        let service_allow = first_hit(&self.services, keep, |s| allow_matches(s, &method.service));
        let (api_deny, api_allow) = if service_allow.is_some() {
            (
                first_hit(&self.apis, keep, |a| deny_matches(a, &method.api)),
                first_hit(&self.apis, keep, |a| allow_matches(a, &method.api)),
            )
        } else {
            (None, None)
        };
        RuleMatch {
            service_deny,
            service_allow,
            api_deny,
            api_allow,
        }
    }

    /// How this rule matches `method`, with the matching patterns.
    pub fn matches(&self, method: &MethodName) -> RuleMatch {
        self.matching(method, true)
    }
}

impl Role {
    /// The one implementation of a role's decision: every rule is matched and handed to
    /// `each` (an explanation keeps them, the role check drops them), and the verdict follows.
    /// Inside one role a deny always beats an allow: a service deny of any rule first, then an
    /// api deny under a matching service, then the first rule that allows.
    pub fn decide(
        &self,
        method: &MethodName,
        keep: bool,
        mut each: impl FnMut(usize, RuleMatch),
    ) -> RoleVerdict {
        let mut service_denied = None;
        let mut api_denied = None;
        let mut allowed = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let m = rule.matching(method, keep);
            match m.effect() {
                RuleEffect::DeniesService => {
                    service_denied.get_or_insert(i);
                }
                RuleEffect::DeniesApi => {
                    api_denied.get_or_insert(i);
                }
                RuleEffect::Allows => {
                    allowed.get_or_insert(i);
                }
                RuleEffect::NoMatch => {}
            }
            each(i, m);
        }
        match (service_denied.or(api_denied), allowed) {
            (Some(rule), _) => RoleVerdict::Denied { rule },
            (None, Some(rule)) => RoleVerdict::Allowed { rule },
            (None, None) => RoleVerdict::NoMatch,
        }
    }

    /// Whether this role allows the method ([`Role::decide`] without the details).
    pub fn allows(&self, method: &MethodName) -> bool {
        self.decide(method, false, |_, _| {}).allows()
    }

    /// Validates a role a client wants to create or update (upstream messages).
    pub fn validate(&self) -> Result<(), Rejection> {
        if self.name.is_empty() {
            return Err(Rejection::invalid("Must supply a name for the role"));
        }
        // Upstream (`validateRole`) looks for rules before it looks at the name's characters.
        if self.rules.is_empty() {
            return Err(Rejection::invalid("Must supply rules for role"));
        }
        if self.name.contains('/') || self.name.contains(' ') {
            return Err(Rejection::invalid(
                "Name cannot contain any of the following invalid characters: / ",
            ));
        }
        for rule in &self.rules {
            if rule.services.is_empty() {
                return Err(Rejection::invalid(
                    "Must supply a service in rules for the role",
                ));
            }
            if rule.apis.is_empty() {
                return Err(Rejection::invalid("Must supply apis in rules for the role"));
            }
        }
        Ok(())
    }
}

fn rule(services: &[&str], apis: &[&str]) -> Rule {
    Rule {
        services: services.iter().map(|s| s.to_string()).collect(),
        apis: apis.iter().map(|s| s.to_string()).collect(),
    }
}

pub const ADMIN_ROLE: &str = "system.admin";
pub const USER_ROLE: &str = "system.user";
pub const VIEW_ROLE: &str = "system.view";

/// The built-in roles with their default rules. Only `system.guest` may be changed.
pub fn builtin_roles() -> Vec<Role> {
    vec![
        Role {
            name: ADMIN_ROLE.into(),
            rules: vec![rule(&["*"], &["*"])],
        },
        Role {
            name: VIEW_ROLE.into(),
            rules: vec![
                rule(
                    &["*"],
                    &[
                        "*enumerate*",
                        "inspect*",
                        "stats",
                        "status",
                        "validate",
                        "capacityusage",
                    ],
                ),
                rule(&["identity"], &["*"]),
            ],
        },
        Role {
            name: USER_ROLE.into(),
            rules: vec![
                rule(
                    &[
                        "volume",
                        "cloudbackup",
                        "credentials",
                        "objectstore",
                        "schedulepolicy",
                        "mountattach",
                        "migrate",
                    ],
                    &["*"],
                ),
                rule(&["cluster", "node"], &["inspect*", "enumerate*"]),
                rule(&["identity"], &["*"]),
                rule(&["policy"], &["*enumerate*", "*inspect*"]),
            ],
        },
        Role {
            name: GUEST_ROLE.into(),
            rules: vec![
                rule(&["mountattach", "volume", "cloudbackup", "migrate"], &["*"]),
                rule(&["identity"], &["version"]),
                rule(&["cluster", "node"], &["inspect*", "enumerate*"]),
            ],
        },
    ]
}

/// Is this the name of a built-in role?
pub fn is_builtin(name: &str) -> bool {
    matches!(name, ADMIN_ROLE | USER_ROLE | VIEW_ROLE | GUEST_ROLE)
}

/// Is this a built-in role that cannot be changed?
pub fn is_immutable(name: &str) -> bool {
    is_builtin(name) && name != GUEST_ROLE
}

/// One role of a caller as the role check saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleTrace {
    pub name: String,
    /// `None` for a role name the registry does not know (skipped by the check).
    pub role: Option<RoleDecision>,
}

/// A known role's rules, how each matched, and its verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDecision {
    pub rules: Vec<(Rule, RuleMatch)>,
    pub verdict: RoleVerdict,
}

/// The one implementation of the role check across a caller's roles: each role named by the
/// caller is looked up with `lookup` and decided ([`Role::decide`]); `each` receives every
/// role's trace when `keep` (an explanation), nothing otherwise (the role check). Any role that
/// allows grants access; unknown roles are skipped. The refusal carries the upstream text.
pub fn decide<'a>(
    who: &Identity,
    method: &MethodName,
    lookup: impl Fn(&str) -> Option<&'a Role>,
    keep: bool,
    mut each: impl FnMut(RoleTrace),
) -> Result<(), Rejection> {
    let mut allowed = false;
    for name in &who.roles {
        let role = lookup(name);
        if !keep {
            // The role check needs only the first allow.
            if role.is_some_and(|r| r.allows(method)) {
                allowed = true;
                break;
            }
            continue;
        }
        let decision = role.map(|role| {
            let mut rules = Vec::with_capacity(role.rules.len());
            let verdict = role.decide(method, true, |i, m| rules.push((role.rules[i].clone(), m)));
            RoleDecision { rules, verdict }
        });
        allowed |= decision.as_ref().is_some_and(|d| d.verdict.allows());
        each(RoleTrace {
            name: name.clone(),
            role: decision,
        });
    }
    if allowed {
        return Ok(());
    }
    if who.guest {
        return Err(Rejection::denied(
            "Access denied without authentication token",
        ));
    }
    Err(Rejection::denied(format!(
        "Access to {} denied: rpc error: code = PermissionDenied desc = Access denied to roles: [{}]",
        method.full,
        who.roles.join(" ")
    )))
}

/// Decides whether `who` may call `method`, looking roles up with `lookup`: [`decide`]
/// without the details. Returns the upstream denial text.
pub fn authorize<'a>(
    who: &Identity,
    method: &MethodName,
    lookup: impl Fn(&str) -> Option<&'a Role>,
) -> Result<(), Rejection> {
    decide(who, method, lookup, false, |_| {})
}

/// The role check of `method` for `who` with every role's rules and verdicts (the same
/// [`decide`] the role check runs).
pub fn explain<'a>(
    who: &Identity,
    method: &MethodName,
    lookup: impl Fn(&str) -> Option<&'a Role>,
) -> (Vec<RoleTrace>, Result<(), Rejection>) {
    let mut roles = Vec::new();
    let verdict = decide(who, method, lookup, true, |t| roles.push(t));
    (roles, verdict)
}
