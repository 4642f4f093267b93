//! The [`Authenticator`]: turns an `authorization` value into an [`Identity`], in upstream order.
//!
//! Order of checks (OpenStorage `server_interceptors.go` `auth`, plus custos hardening):
//! 1. no or empty value → guest (or `UNAUTHENTICATED` when guest access is disabled);
//! 2. `<scheme> <token>` with scheme `bearer` in any case, else `UNAUTHENTICATED`;
//! 3. token ≤ [`MAX_TOKEN_BYTES`], exactly three segments, the payload decodes into the claims
//!    shape and has a non-empty `iss`, else `UNAUTHENTICATED`;
//! 4. `iss` is a configured issuer, else `UNAUTHENTICATED` "`<iss>` is not a trusted issuer";
//! 5. from here on every failure is `PERMISSION_DENIED` "Unable to authenticate token": the JOSE
//!    header is parsed by us (`alg` chooses the key family, `none` and `crit` are refused, `jku`,
//!    `x5u`, `jwk`, `x5c` are ignored and never fetched), the signature is checked with the keys
//!    of that family (only the key named by `kid`, when present), then the claims; for an
//!    OpenID provider issuer, `aud` must name its audience.
//!
//! An OpenID provider issuer's keys are the set its fetcher last installed ([`OidcKeys`]); a
//! token naming a `kid` outside that set is refused (`kid_not_found`, or `keys_not_loaded`
//! before any set arrived) and tells the fetcher, which may fetch again, rate-limited.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custos_model::Identity;
use jsonwebtoken::Algorithm;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, GuestAccess, OidcConfig, UsernameClaim, MAX_LEEWAY_SECS};
use crate::error::{AuthError, ConfigError, MSG_GUEST_DISABLED, MSG_INVALID_HEADER};
use crate::fingerprint_of;
use crate::keys::{self, VerifyKey};
use crate::oidc::OidcKeys;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A verified token's `exp`, `iat` and `nbf` (Unix seconds), kept to judge it again on reuse.
type TimeClaims = (u64, u64, Option<u64>);

/// Claims that must be present in every token (upstream `requiredClaims`).
pub const REQUIRED_CLAIMS: [&str; 6] = ["iss", "sub", "exp", "iat", "name", "email"];

/// Verifies bearer tokens against the configured issuers. Immutable after construction, so it
/// can be shared in an `Arc`; key files and variables are read once, in [`Authenticator::from_config`].
#[derive(Debug)]
pub struct Authenticator {
    issuers: BTreeMap<String, Issuer>,
    username_claim: UsernameClaim,
    guest_access: GuestAccess,
    leeway_secs: u64,
    max_token_lifetime_secs: Option<u64>,
    /// Tokens verified so far, by the SHA-256 of the token (never the token itself).
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

/// Verified tokens kept at most; the cache starts over when full.
pub const MAX_VERIFIED_TOKENS: usize = 10_000;

/// A token that passed verification: its identity and the time claims to check again on every
/// use. Everything else a verification decides depends only on the token's bytes and this
/// authenticator's keys and settings. Configured keys never change (a key reload builds a new
/// authenticator, with an empty cache); an OpenID provider's keys do, so the entry remembers the
/// generation of the key set it was verified with, and a token verified with another generation
/// is verified again.
#[derive(Clone, Debug)]
struct Verified {
    identity: Identity,
    exp: u64,
    iat: u64,
    nbf: Option<u64>,
    oidc: Option<(Arc<OidcKeys>, u64)>,
}

#[derive(Debug)]
struct Issuer {
    namespace: Option<String>,
    /// The configured keys (none for an OpenID provider).
    keys: Vec<VerifyKey>,
    oidc: Option<OidcIssuer>,
}

#[derive(Debug)]
struct OidcIssuer {
    audience: String,
    keys: Arc<OidcKeys>,
}

/// What a full verification found: the identity, the time claims, and for an OpenID provider's
/// token the key set generation it was checked with.
type Outcome = (Identity, TimeClaims, Option<(Arc<OidcKeys>, u64)>);

impl Authenticator {
    /// Builds the authenticator, reading every key file and environment variable now.
    pub fn from_config(cfg: &AuthConfig) -> Result<Authenticator, ConfigError> {
        Authenticator::from_config_with_env(cfg, &|var| std::env::var_os(var))
    }

    /// As [`Authenticator::from_config`], with environment lookups answered by `env` (for tests).
    pub fn from_config_with_env(
        cfg: &AuthConfig,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Authenticator, ConfigError> {
        Authenticator::from_config_with(cfg, env, &mut |name, _| OidcKeys::new(name, || {}))
    }

    /// The full constructor: `env` answers environment lookups, and `oidc` gives the shared key
    /// set of each OpenID provider issuer (its name and settings), which the caller fetches and
    /// installs. [`Authenticator::from_config`] gives each an empty set of its own.
    pub fn from_config_with(
        cfg: &AuthConfig,
        env: &dyn Fn(&str) -> Option<OsString>,
        oidc: &mut dyn FnMut(&str, &OidcConfig) -> Arc<OidcKeys>,
    ) -> Result<Authenticator, ConfigError> {
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::LeewayTooLarge {
                value: cfg.leeway_secs,
                max: MAX_LEEWAY_SECS,
            });
        }
        if cfg.max_token_lifetime_secs == Some(0) {
            return Err(ConfigError::ZeroMaxLifetime);
        }
        if cfg.issuers.is_empty() && cfg.guest_access == GuestAccess::Disabled {
            return Err(ConfigError::GuestDisabledWithoutIssuers);
        }
        let mut issuers = BTreeMap::new();
        for (index, ic) in cfg.issuers.iter().enumerate() {
            if ic.name.is_empty() {
                return Err(ConfigError::EmptyIssuerName { index });
            }
            if issuers.contains_key(&ic.name) {
                return Err(ConfigError::DuplicateIssuer {
                    issuer: ic.name.clone(),
                });
            }
            if ic.keys.is_empty() && ic.oidc.is_none() {
                return Err(ConfigError::NoKeys {
                    issuer: ic.name.clone(),
                });
            }
            if !ic.keys.is_empty() && ic.oidc.is_some() {
                return Err(ConfigError::KeysAndOidc {
                    issuer: ic.name.clone(),
                });
            }
            if let Some(oc) = &ic.oidc {
                check_oidc(&ic.name, oc)?;
            }
            if ic.custom_claim_namespace.as_deref() == Some("") {
                return Err(ConfigError::EmptyNamespace {
                    issuer: ic.name.clone(),
                });
            }
            let mut keys = Vec::with_capacity(ic.keys.len());
            for (i, src) in ic.keys.iter().enumerate() {
                let key = keys::load(src, cfg.min_shared_secret_bytes, env).map_err(|error| {
                    ConfigError::Key {
                        issuer: ic.name.clone(),
                        key: describe_key(i, src),
                        error,
                    }
                })?;
                if let Some(kid) = &key.kid {
                    if keys.iter().any(|k: &VerifyKey| k.kid.as_ref() == Some(kid)) {
                        return Err(ConfigError::DuplicateKid {
                            issuer: ic.name.clone(),
                            kid: kid.clone(),
                        });
                    }
                }
                keys.push(key);
            }
            issuers.insert(
                ic.name.clone(),
                Issuer {
                    namespace: ic.custom_claim_namespace.clone(),
                    keys,
                    oidc: ic.oidc.as_ref().map(|oc| OidcIssuer {
                        audience: oc.audience.clone(),
                        keys: oidc(&ic.name, oc),
                    }),
                },
            );
        }
        Ok(Authenticator {
            issuers,
            username_claim: cfg.username_claim,
            guest_access: cfg.guest_access,
            leeway_secs: cfg.leeway_secs,
            max_token_lifetime_secs: cfg.max_token_lifetime_secs,
            verified: Default::default(),
        })
    }

    /// True when at least one issuer is configured. When false, upstream installs no auth at all:
    /// every caller is unauthenticated-but-allowed and every ownership check passes.
    pub fn auth_enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// The trusted issuer names, sorted.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.keys().map(String::as_str)
    }

    /// The key sets of the OpenID provider issuers, by issuer name.
    pub fn oidc_keys(&self) -> impl Iterator<Item = (&str, &Arc<OidcKeys>)> {
        self.issuers
            .iter()
            .filter_map(|(name, i)| Some((name.as_str(), &i.oidc.as_ref()?.keys)))
    }

    pub fn guest_access(&self) -> GuestAccess {
        self.guest_access
    }

    /// Authenticates the value of the `authorization` metadata key. `now_unix` is the only
    /// source of time.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now_unix: u64,
    ) -> Result<Identity, AuthError> {
        let value = match authorization {
            None | Some("") => return self.guest(),
            Some(value) => value,
        };
        // Split at the first space, as grpc_auth.AuthFromMD does; the rest is the token, verbatim.
        let Some((scheme, token)) = value.split_once(' ') else {
            return Err(AuthError::unauthenticated(
                MSG_INVALID_HEADER,
                "malformed_header",
            ));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::unauthenticated(
                MSG_INVALID_HEADER,
                "malformed_header",
            ));
        }
        self.authenticate_token(token, now_unix)
    }

    /// Authenticates a bare token (no `Bearer ` prefix).
    /// The identity carries the token's [`crate::token_fingerprint`] for the audit trail.
    ///
    /// A token verified before is answered from a cache (keyed by its SHA-256) after its time
    /// claims pass again at `now_unix`; a token whose time claims fail is verified afresh, so
    /// the refusal is the same as without the cache.
    pub fn authenticate_token(&self, token: &str, now_unix: u64) -> Result<Identity, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned();
        if let Some(v) = cached {
            let same_keys = match &v.oidc {
                None => true,
                Some((keys, generation)) => keys.generation() == *generation,
            };
            if same_keys
                && self
                    .time_claims_refusal(v.exp, v.iat, v.nbf, now_unix)
                    .is_none()
            {
                return Ok(v.identity);
            }
        }
        let (mut identity, times, oidc) = self.verify_token(token, now_unix)?;
        identity.fingerprint = fingerprint_of(&digest);
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(
            digest,
            Verified {
                identity: identity.clone(),
                exp: times.0,
                iat: times.1,
                nbf: times.2,
                oidc,
            },
        );
        Ok(identity)
    }

    /// Empties the verified-token cache: the next use of every token is a full verification.
    /// (The authorization benchmark measures verification itself this way.)
    pub fn forget_verified(&self) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The latest `exp` of the tokens this authenticator has verified (and still caches) whose
    /// identity `matches`: when a revocation names a token this member has seen, the entry
    /// can go when that token expires.
    pub fn seen_expiry(&self, matches: impl Fn(&Identity) -> bool) -> Option<u64> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|v| matches(&v.identity))
            .map(|v| v.exp)
            .max()
    }

    /// `[auth] max_token_lifetime_secs`: no accepted token lives longer.
    pub fn max_token_lifetime_secs(&self) -> Option<u64> {
        self.max_token_lifetime_secs
    }

    /// How many verified tokens the cache holds.
    pub fn cached_tokens(&self) -> usize {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Why `exp`, `iat` and `nbf` refuse the token at `now`, if they do: the one place the
    /// time claims are judged, for a full verification and for a cached token alike.
    fn time_claims_refusal(
        &self,
        exp: u64,
        iat: u64,
        nbf: Option<u64>,
        now: u64,
    ) -> Option<&'static str> {
        let leeway = self.leeway_secs;
        if exp == 0 {
            // Upstream treats `exp: 0` as "never expires"; custos requires a real expiry.
            return Some("no_expiry");
        }
        // Valid while now < exp (strict, as golang-jwt), widened by the leeway.
        if now >= exp.saturating_add(leeway) {
            return Some("expired");
        }
        if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Some("not_yet_valid");
        }
        if iat > now.saturating_add(leeway) {
            return Some("issued_in_future");
        }
        None
    }

    /// Verifies `token` fully: its identity, and its `exp`, `iat` and `nbf`.
    fn verify_token(&self, token: &str, now_unix: u64) -> Result<Outcome, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::no_issuer("token_too_large"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::no_issuer("malformed_token"));
        };

        // Upstream reads the issuer from the unverified payload to pick the authenticator.
        let payload =
            decode_object(payload_b64).map_err(|()| AuthError::no_issuer("malformed_token"))?;
        check_claims_shape(&payload).map_err(|()| AuthError::no_issuer("invalid_claim"))?;
        let iss = match payload.get("iss") {
            Some(Value::String(iss)) if !iss.is_empty() => iss.as_str(),
            _ => return Err(AuthError::no_issuer("missing_issuer")),
        };
        let Some(issuer) = self.issuers.get(iss) else {
            return Err(AuthError::unauthenticated(
                format!("{iss} is not a trusted issuer"),
                "untrusted_issuer",
            ));
        };

        let header =
            decode_object(header_b64).map_err(|()| AuthError::denied("bad_token_header"))?;
        let (alg, kid) = parse_header(&header)?;
        // An OpenID provider's set as it is now: the keys and their generation stay together.
        let published = issuer.oidc.as_ref().map(|o| (o, o.keys.snapshot()));
        let keys = match &published {
            None => &issuer.keys,
            Some((oidc, set)) => {
                if set.generation == 0 {
                    oidc.keys.unknown_kid();
                    return Err(AuthError::denied("keys_not_loaded"));
                }
                if kid.is_some_and(|kid| !set.keys.iter().any(|k| k.kid.as_deref() == Some(kid))) {
                    oidc.keys.unknown_kid();
                    return Err(AuthError::denied("kid_not_found"));
                }
                &set.keys
            }
        };
        let family: Vec<&VerifyKey> = keys.iter().filter(|k| k.algs.contains(&alg)).collect();
        if family.is_empty() {
            return Err(AuthError::denied("no_key_for_alg"));
        }
        let candidates: Vec<&VerifyKey> = match kid {
            Some(kid) => family
                .into_iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => family,
        };
        if candidates.is_empty() {
            return Err(AuthError::denied("kid_not_found"));
        }
        let message = &token[..header_b64.len() + 1 + payload_b64.len()];
        let verified = candidates.iter().any(|k| {
            jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), &k.key, alg)
                .unwrap_or(false)
        });
        if !verified {
            return Err(AuthError::denied("bad_signature"));
        }

        let (identity, times) = self.check_claims(iss, issuer, &payload, now_unix)?;
        Ok((
            identity,
            times,
            published.map(|(oidc, set)| (oidc.keys.clone(), set.generation)),
        ))
    }

    fn guest(&self) -> Result<Identity, AuthError> {
        match self.guest_access {
            GuestAccess::Enabled => Ok(Identity::guest()),
            GuestAccess::Disabled => Err(AuthError::unauthenticated(
                MSG_GUEST_DISABLED,
                "guest_disabled",
            )),
        }
    }

    /// Claim checks after the signature is known to be good.
    fn check_claims(
        &self,
        iss: &str,
        issuer: &Issuer,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<(Identity, TimeClaims), AuthError> {
        if REQUIRED_CLAIMS.iter().any(|c| !claims.contains_key(*c)) {
            return Err(AuthError::denied("missing_claim"));
        }
        let exp = numeric_date(&claims["exp"])?;
        let iat = numeric_date(&claims["iat"])?;
        let nbf = claims.get("nbf").map(numeric_date).transpose()?;
        if let Some(reason) = self.time_claims_refusal(exp, iat, nbf, now) {
            return Err(AuthError::denied(reason));
        }
        if let Some(max) = self.max_token_lifetime_secs {
            if exp.saturating_sub(iat) > max {
                return Err(AuthError::denied("lifetime_too_long"));
            }
        }
        if let Some(oidc) = &issuer.oidc {
            // RFC 7519 §4.1.3: one audience as a string, or several in an array.
            let names_us = match claims.get("aud") {
                Some(Value::String(aud)) => *aud == oidc.audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&oidc.audience)),
                _ => false,
            };
            if !names_us {
                return Err(AuthError::denied("wrong_audience"));
            }
        }

        let custom = |name: &str| -> Result<Vec<String>, AuthError> {
            let lifted = issuer
                .namespace
                .as_ref()
                .and_then(|ns| claims.get(&format!("{ns}{name}")));
            match lifted.or_else(|| claims.get(name)) {
                None => Ok(Vec::new()),
                Some(v) => string_array(v).map_err(|()| AuthError::denied("invalid_claim")),
            }
        };
        let roles = custom("roles")?;
        let groups = custom("groups")?;

        let text = |name: &str| match claims.get(name) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(), // null; other types were refused by check_claims_shape
        };
        let subject = text("sub");
        let name = text("name");
        let email = text("email");
        let username = match self.username_claim {
            UsernameClaim::Sub => subject.clone(),
            UsernameClaim::Email => email.clone(),
            UsernameClaim::Name => name.clone(),
        };
        if username.is_empty() {
            return Err(AuthError::denied("empty_username"));
        }
        // `jti` (RFC 7519 §4.1.7) is a string; a revocation may name it.
        let token_id = match claims.get("jti") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(jti)) => jti.clone(),
            Some(_) => return Err(AuthError::denied("invalid_claim")),
        };
        Ok((
            Identity {
                username,
                subject,
                name,
                email,
                issuer: iss.to_string(),
                roles,
                groups,
                guest: false,
                fingerprint: String::new(),
                token_id,
                issued_at: iat,
            },
            (exp, iat, nbf),
        ))
    }
}

/// The settings of an OpenID provider issuer that can be judged without the network.
fn check_oidc(name: &str, oc: &OidcConfig) -> Result<(), ConfigError> {
    let issuer = || name.to_string();
    // Plain http is never fetched: the key set decides who is trusted.
    if !name.starts_with("https://") || name.len() == "https://".len() {
        return Err(ConfigError::OidcNotHttps { issuer: issuer() });
    }
    if oc.audience.is_empty() {
        return Err(ConfigError::OidcEmptyAudience { issuer: issuer() });
    }
    for (field, value) in [
        ("refresh_secs", oc.refresh_secs),
        ("min_refetch_interval_secs", oc.min_refetch_interval_secs),
    ] {
        if value == 0 {
            return Err(ConfigError::OidcZeroInterval {
                issuer: issuer(),
                field,
            });
        }
    }
    Ok(())
}

fn describe_key(index: usize, src: &crate::config::KeySource) -> String {
    let mut out = format!("key #{index} (kind {}", src.kind.as_str());
    if let Some(kid) = &src.kid {
        out.push_str(&format!(", kid {kid:?}"));
    }
    if let Some(file) = &src.file {
        out.push_str(&format!(", file {}", file.display()));
    }
    if let Some(env) = &src.env {
        out.push_str(&format!(", env {env}"));
    }
    out.push(')');
    out
}

/// The algorithm and `kid` of a JOSE header.
fn parse_header(header: &Map<String, Value>) -> Result<(Algorithm, Option<&str>), AuthError> {
    // RFC 7515 §4.1.11: a recipient must reject extensions it does not understand; we
    // understand none, so any `crit` is refused.
    if header.contains_key("crit") {
        return Err(AuthError::denied("crit_header"));
    }
    // `jku`, `x5u`, `jwk`, `x5c`, `x5t` are ignored: keys come only from the configuration.
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(AuthError::denied("bad_token_header")),
    };
    let alg = match alg {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        none if none.eq_ignore_ascii_case("none") => {
            return Err(AuthError::denied("alg_none"));
        }
        _ => return Err(AuthError::denied("unsupported_alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(AuthError::denied("bad_token_header")),
    };
    Ok((alg, kid))
}

/// Upstream decodes the payload into its `Claims` struct before anything else: string claims
/// must be strings (or null) and `roles`/`groups` string arrays (or null).
fn check_claims_shape(claims: &Map<String, Value>) -> Result<(), ()> {
    for name in ["iss", "sub", "name", "email"] {
        match claims.get(name) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(()),
        }
    }
    for name in ["roles", "groups"] {
        if let Some(v) = claims.get(name) {
            string_array(v)?;
        }
    }
    Ok(())
}

/// A string array; null reads as empty (as Go's `json.Unmarshal` into a nil slice).
fn string_array(v: &Value) -> Result<Vec<String>, ()> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or(()))
            .collect(),
        _ => Err(()),
    }
}

/// A NumericDate: a non-negative integer number of seconds. Floats, strings, null and negative
/// numbers are refused rather than coerced.
fn numeric_date(v: &Value) -> Result<u64, AuthError> {
    v.as_u64().ok_or_else(|| AuthError::denied("invalid_claim"))
}

/// Decodes one base64url (unpadded) segment holding a JSON object with unique keys.
fn decode_object(segment: &str) -> Result<Map<String, Value>, ()> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| ())?;
    let StrictObject(map) = serde_json::from_slice(&bytes).map_err(|_| ())?;
    Ok(map)
}

/// A top-level JSON object that refuses duplicate keys (`{"exp":1,"exp":9999999999}`), where
/// `serde_json::Map` would silently keep the last one.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some((key, value)) = access.next_entry::<String, Value>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn objects_must_be_objects_with_unique_keys() {
        assert!(decode_object(&b64(r#"{"a":1,"b":{"c":2}}"#)).is_ok());
        assert!(decode_object(&b64(r#"{"a":1,"a":2}"#)).is_err());
        assert!(decode_object(&b64(r#"[1,2]"#)).is_err());
        assert!(decode_object(&b64(r#""x""#)).is_err());
        assert!(decode_object(&b64(r#"{"a":1} trailing"#)).is_err());
        assert!(decode_object("e30=").is_err(), "padding is not base64url");
        assert!(decode_object("e30").is_ok());
        assert!(decode_object("e3+").is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000));
        assert!(decode_object(&b64(&deep)).is_err());
    }

    #[test]
    fn numeric_dates_are_non_negative_integers() {
        assert_eq!(numeric_date(&serde_json::json!(5)).unwrap(), 5);
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("5"),
            serde_json::json!(null),
        ] {
            assert_eq!(numeric_date(&bad).unwrap_err().reason, "invalid_claim");
        }
    }
}
