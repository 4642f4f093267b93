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

impl Role {
    /// Whether this role allows the method. Inside one role a deny always beats an allow;
    /// an api deny only applies under rules whose services match.
    pub fn allows(&self, method: &MethodName) -> bool {
        for rule in &self.rules {
            if rule
                .services
                .iter()
                .any(|s| deny_matches(s, &method.service))
            {
                return false;
            }
        }
        for rule in &self.rules {
            let service_hit = rule
                .services
                .iter()
                .any(|s| allow_matches(s, &method.service));
            if service_hit && rule.apis.iter().any(|a| deny_matches(a, &method.api)) {
                return false;
            }
        }
        self.rules.iter().any(|rule| {
            rule.services
                .iter()
                .any(|s| allow_matches(s, &method.service))
                && rule.apis.iter().any(|a| allow_matches(a, &method.api))
        })
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

/// Decides whether `who` may call `method`, looking roles up with `lookup`. Any role that
/// allows grants access; unknown roles are skipped. Returns the upstream denial text.
pub fn authorize<'a>(
    who: &Identity,
    method: &MethodName,
    lookup: impl Fn(&str) -> Option<&'a Role>,
) -> Result<(), Rejection> {
    let allowed = who
        .roles
        .iter()
        .filter_map(|r| lookup(r))
        .any(|role| role.allows(method));
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
