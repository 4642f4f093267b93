//! Token revocation: what an administrator revoked (a token id, a token fingerprint, or every
//! token of a subject issued up to a time), and how an identity is matched against it.
//!
//! Revocations are replicated state like roles: `Op::RevokeToken` adds one in apply, and the
//! role check ([`crate::State::authorize`]) refuses a revoked identity first, at the log index
//! for writes and on post-barrier state for reads. An entry is kept until `expires_at`, when
//! every token it can match has expired on its own; apply then drops it.

use crate::identity::Identity;
use crate::rejection::Rejection;
use serde::{Deserialize, Serialize};

/// The refusal a revoked token gets (the words upstream uses for a token that does not
/// verify, with the reason after them).
pub const MSG_TOKEN_REVOKED: &str = "Unable to authenticate token: the token has been revoked";

/// The length of a token fingerprint (`custos_auth::token_fingerprint`): 12 lowercase hex
/// characters, as the audit trail shows them.
pub const FINGERPRINT_LEN: usize = 12;

/// Longest token id, issuer or subject a revocation names.
pub const MAX_REVOCATION_FIELD: usize = 1024;

/// Most revocations kept at once; a revocation beyond it is refused (RESOURCE_EXHAUSTED).
pub const MAX_REVOCATIONS: usize = 100_000;

/// Expired entries one command drops at most (the rest go with the next commands).
pub const PRUNE_PER_COMMAND: usize = 1_000;

/// What a revocation matches. An empty `issuer` matches tokens of every issuer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RevocationTarget {
    /// The token whose `jti` claim is `jti`.
    TokenId { issuer: String, jti: String },
    /// The token whose fingerprint (first 12 hex characters of its SHA-256) is this.
    Fingerprint { fingerprint: String },
    /// Every token whose `sub` claim is `subject` and whose `iat` is at or before the
    /// revocation's `issued_before`.
    Subject { issuer: String, subject: String },
}

impl RevocationTarget {
    /// The key the revocation is stored under: one entry per target. Issuer lengths are
    /// written out, so no two targets share a key whatever their characters.
    pub fn key(&self) -> String {
        match self {
            RevocationTarget::TokenId { issuer, jti } => {
                format!("j:{}:{issuer}{jti}", issuer.len())
            }
            RevocationTarget::Fingerprint { fingerprint } => format!("f:{fingerprint}"),
            RevocationTarget::Subject { issuer, subject } => {
                format!("s:{}:{issuer}{subject}", issuer.len())
            }
        }
    }

    /// The kind as the CLI and the API spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            RevocationTarget::TokenId { .. } => "jti",
            RevocationTarget::Fingerprint { .. } => "fingerprint",
            RevocationTarget::Subject { .. } => "subject",
        }
    }

    /// The revoked token id, fingerprint or subject.
    pub fn value(&self) -> &str {
        match self {
            RevocationTarget::TokenId { jti, .. } => jti,
            RevocationTarget::Fingerprint { fingerprint } => fingerprint,
            RevocationTarget::Subject { subject, .. } => subject,
        }
    }

    /// The issuer the target is limited to (empty: every issuer).
    pub fn issuer(&self) -> &str {
        match self {
            RevocationTarget::TokenId { issuer, .. } | RevocationTarget::Subject { issuer, .. } => {
                issuer
            }
            RevocationTarget::Fingerprint { .. } => "",
        }
    }

    /// Refuses empty, oversized or malformed targets (InvalidArgument).
    pub fn validate(&self) -> Result<(), Rejection> {
        let long = |what: &str, s: &str| {
            (s.len() > MAX_REVOCATION_FIELD).then(|| {
                Rejection::invalid(format!(
                    "The {what} to revoke is {} bytes; at most {MAX_REVOCATION_FIELD} are accepted",
                    s.len()
                ))
            })
        };
        if let Some(e) = long("issuer", self.issuer()) {
            return Err(e);
        }
        match self {
            RevocationTarget::TokenId { jti, .. } => {
                if jti.is_empty() {
                    return Err(Rejection::invalid("Must supply a token id (jti) to revoke"));
                }
                long("token id", jti).map_or(Ok(()), Err)
            }
            RevocationTarget::Subject { subject, .. } => {
                if subject.is_empty() {
                    return Err(Rejection::invalid("Must supply a subject to revoke"));
                }
                long("subject", subject).map_or(Ok(()), Err)
            }
            RevocationTarget::Fingerprint { fingerprint } => {
                let ok = fingerprint.len() == FINGERPRINT_LEN
                    && fingerprint
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if ok {
                    Ok(())
                } else {
                    Err(Rejection::invalid(format!(
                        "A token fingerprint is {FINGERPRINT_LEN} lowercase hex characters \
                         (as the audit trail shows it), not {fingerprint:?}"
                    )))
                }
            }
        }
    }
}

/// One revocation in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub target: RevocationTarget,
    /// For [`RevocationTarget::Subject`]: tokens whose `iat` is at or before this (Unix
    /// seconds) are revoked. 0 for the other kinds.
    pub issued_before: u64,
    /// Unix seconds after which no token this entry matches can still be valid: apply drops
    /// the entry then.
    pub expires_at: u64,
    /// When the revocation was applied (the command's leader-stamped time), milliseconds.
    pub revoked_ms: u64,
    /// The username of the administrator who revoked.
    pub revoked_by: String,
}

impl Revocation {
    /// Whether this entry revokes the token `who` was verified from.
    pub fn matches(&self, who: &Identity) -> bool {
        if who.guest {
            return false;
        }
        let issuer_ok = |issuer: &str| issuer.is_empty() || issuer == who.issuer;
        match &self.target {
            RevocationTarget::TokenId { issuer, jti } => {
                !who.token_id.is_empty() && &who.token_id == jti && issuer_ok(issuer)
            }
            RevocationTarget::Fingerprint { fingerprint } => {
                !who.fingerprint.is_empty() && &who.fingerprint == fingerprint
            }
            RevocationTarget::Subject { issuer, subject } => {
                &who.subject == subject && issuer_ok(issuer) && who.issued_at <= self.issued_before
            }
        }
    }

    /// The keys under which an entry matching `who` could be stored (each target kind, with
    /// and without the issuer): the lookups a role check makes.
    pub fn candidate_keys(who: &Identity) -> Vec<String> {
        let mut keys = Vec::with_capacity(5);
        if !who.fingerprint.is_empty() {
            keys.push(
                RevocationTarget::Fingerprint {
                    fingerprint: who.fingerprint.clone(),
                }
                .key(),
            );
        }
        for issuer in [who.issuer.as_str(), ""] {
            if !who.token_id.is_empty() {
                keys.push(
                    RevocationTarget::TokenId {
                        issuer: issuer.to_string(),
                        jti: who.token_id.clone(),
                    }
                    .key(),
                );
            }
            if !who.subject.is_empty() {
                keys.push(
                    RevocationTarget::Subject {
                        issuer: issuer.to_string(),
                        subject: who.subject.clone(),
                    }
                    .key(),
                );
            }
            if who.issuer.is_empty() {
                break;
            }
        }
        keys
    }

    /// The refusal a token this entry matches gets.
    pub fn refusal() -> Rejection {
        Rejection::denied(MSG_TOKEN_REVOKED)
    }
}

/// Unix seconds as an RFC 3339 UTC time (`2026-12-06T16:00:00Z`), for audit messages. Pure
/// arithmetic (days to civil date, proleptic Gregorian), no clock.
pub fn utc_text(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days, shifted so the era starts on 0000-03-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_text_is_rfc3339() {
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_text(1_796_572_800), "2026-12-06T16:00:00Z");
        assert_eq!(utc_text(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            subject: "alice-sub".into(),
            name: "Alice".into(),
            email: "alice@example.com".into(),
            issuer: "idp".into(),
            roles: vec!["system.user".into()],
            groups: vec![],
            guest: false,
            fingerprint: "0123456789ab".into(),
            token_id: "t-1".into(),
            issued_at: 1_000,
        }
    }

    fn entry(target: RevocationTarget, issued_before: u64) -> Revocation {
        Revocation {
            target,
            issued_before,
            expires_at: 10_000,
            revoked_ms: 2_000_000,
            revoked_by: "admin".into(),
        }
    }

    #[test]
    fn keys_do_not_collide_across_issuer_boundaries() {
        let a = RevocationTarget::TokenId {
            issuer: "ab".into(),
            jti: "c".into(),
        };
        let b = RevocationTarget::TokenId {
            issuer: "a".into(),
            jti: "bc".into(),
        };
        assert_ne!(a.key(), b.key());
        let s = RevocationTarget::Subject {
            issuer: "ab".into(),
            subject: "c".into(),
        };
        assert_ne!(a.key(), s.key());
    }

    #[test]
    fn each_kind_matches_only_its_tokens() {
        let who = alice();
        let by_jti = |issuer: &str, jti: &str| {
            entry(
                RevocationTarget::TokenId {
                    issuer: issuer.into(),
                    jti: jti.into(),
                },
                0,
            )
        };
        assert!(by_jti("", "t-1").matches(&who));
        assert!(by_jti("idp", "t-1").matches(&who));
        assert!(!by_jti("other", "t-1").matches(&who));
        assert!(!by_jti("", "t-2").matches(&who));
        let fp = |f: &str| {
            entry(
                RevocationTarget::Fingerprint {
                    fingerprint: f.into(),
                },
                0,
            )
        };
        assert!(fp("0123456789ab").matches(&who));
        assert!(!fp("0123456789ac").matches(&who));
        let sub = |issued_before| {
            entry(
                RevocationTarget::Subject {
                    issuer: String::new(),
                    subject: "alice-sub".into(),
                },
                issued_before,
            )
        };
        assert!(sub(1_000).matches(&who), "iat at the bound is revoked");
        assert!(sub(5_000).matches(&who));
        assert!(!sub(999).matches(&who), "a token issued after is not");
        // A token without jti is not matched by an empty jti, and guests never match.
        let mut no_jti = alice();
        no_jti.token_id.clear();
        assert!(!by_jti("", "").matches(&no_jti));
        assert!(!sub(u64::MAX).matches(&Identity::guest()));
        assert!(!fp("").matches(&Identity::guest()));
    }

    #[test]
    fn candidate_keys_cover_every_stored_form() {
        let who = alice();
        let keys = Revocation::candidate_keys(&who);
        for target in [
            RevocationTarget::TokenId {
                issuer: "idp".into(),
                jti: "t-1".into(),
            },
            RevocationTarget::TokenId {
                issuer: String::new(),
                jti: "t-1".into(),
            },
            RevocationTarget::Fingerprint {
                fingerprint: "0123456789ab".into(),
            },
            RevocationTarget::Subject {
                issuer: "idp".into(),
                subject: "alice-sub".into(),
            },
            RevocationTarget::Subject {
                issuer: String::new(),
                subject: "alice-sub".into(),
            },
        ] {
            assert!(keys.contains(&target.key()), "{target:?}");
        }
        assert!(Revocation::candidate_keys(&Identity::guest()).is_empty());
    }

    #[test]
    fn malformed_targets_are_refused() {
        let fp = |f: &str| RevocationTarget::Fingerprint {
            fingerprint: f.into(),
        };
        assert!(fp("0123456789ab").validate().is_ok());
        assert!(fp("0123456789AB").validate().is_err());
        assert!(fp("0123").validate().is_err());
        assert!(RevocationTarget::TokenId {
            issuer: String::new(),
            jti: String::new()
        }
        .validate()
        .is_err());
        assert!(RevocationTarget::Subject {
            issuer: String::new(),
            subject: "x".repeat(MAX_REVOCATION_FIELD + 1)
        }
        .validate()
        .is_err());
    }
}
