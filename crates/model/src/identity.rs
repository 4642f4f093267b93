//! The verified caller of a request: what the edge learned from a token, carried inside commands.

use serde::{Deserialize, Serialize};

/// Name of the role every caller without a token gets.
pub const GUEST_ROLE: &str = "system.guest";

/// The caller of a request after authentication. Commands carry this, never the token.
///
/// A guest has no username and the single role `system.guest`; guests are never ownership
/// administrators, whatever groups they claim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// The value of the configured username claim (`sub`, `email` or `name`); empty for guests.
    pub username: String,
    pub subject: String,
    pub name: String,
    pub email: String,
    /// Issuer the token was verified against; empty for guests.
    pub issuer: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub guest: bool,
    /// A short hash prefix of the token this identity was verified from (for the audit
    /// trail); never the token. Empty for guests and for custos's own identities.
    pub fingerprint: String,
    /// The token's `jti` claim (empty when it has none), which a revocation may name.
    pub token_id: String,
    /// The token's `iat` (Unix seconds; 0 for guests and custos's own identities), which a
    /// revocation of every token of a subject issued up to a time compares.
    pub issued_at: u64,
}

impl Identity {
    /// The anonymous caller: no username, role `system.guest`.
    pub fn guest() -> Identity {
        Identity {
            username: String::new(),
            subject: String::new(),
            name: String::new(),
            email: String::new(),
            issuer: String::new(),
            roles: vec![GUEST_ROLE.to_string()],
            groups: Vec::new(),
            guest: true,
            fingerprint: String::new(),
            token_id: String::new(),
            issued_at: 0,
        }
    }

    /// An administrator that custos itself acts as, never one taken from a token: a node's own
    /// cluster-internal commands (`name` = the node), and every caller when auth is disabled
    /// (`name` empty, as upstream has no user then).
    pub fn internal_admin(name: &str) -> Identity {
        Identity {
            username: name.to_string(),
            subject: name.to_string(),
            name: name.to_string(),
            email: String::new(),
            issuer: String::new(),
            roles: vec!["system.admin".to_string()],
            groups: vec!["*".to_string()],
            guest: false,
            fingerprint: String::new(),
            token_id: String::new(),
            issued_at: 0,
        }
    }

    /// An ownership administrator: a non-guest whose token lists the group `*`.
    pub fn is_ownership_admin(&self) -> bool {
        !self.guest && self.groups.iter().any(|g| g == "*")
    }
}
