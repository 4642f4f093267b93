//! Error types: request-time authentication failures, configuration errors and signing errors.

use std::path::PathBuf;

/// Client-visible text for a malformed `authorization` value (upstream row 2).
pub const MSG_INVALID_HEADER: &str = "Invalid or missing authentication token";
/// Client-visible text when the payload cannot be decoded or has no `iss` (upstream row 3).
pub const MSG_NO_ISSUER: &str = "Unable to obtain token issuer from authorization token";
/// Client-visible text for every failure after the issuer is known (upstream row 5).
pub const MSG_UNABLE_TO_AUTHENTICATE: &str = "Unable to authenticate token";
/// Client-visible text when no token is sent and guest access is disabled (custos only).
pub const MSG_GUEST_DISABLED: &str =
    "Authentication token required: guest access is disabled on this cluster";

/// The gRPC status a failed authentication maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthErrorKind {
    /// `UNAUTHENTICATED`: no usable token, or a token from an issuer we do not trust.
    Unauthenticated,
    /// `PERMISSION_DENIED`: a token from a trusted issuer that failed verification.
    PermissionDenied,
}

/// Why a request could not be authenticated.
///
/// `message` is the exact client-visible text (upstream wording); `reason` is a short stable label
/// for metrics and the audit log (never shown to the client, never containing token data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub kind: AuthErrorKind,
    pub message: String,
    pub reason: &'static str,
}

impl AuthError {
    pub(crate) fn unauthenticated(message: impl Into<String>, reason: &'static str) -> AuthError {
        AuthError {
            kind: AuthErrorKind::Unauthenticated,
            message: message.into(),
            reason,
        }
    }

    /// Row 3 of the upstream table: the issuer could not be read from the token.
    pub(crate) fn no_issuer(reason: &'static str) -> AuthError {
        AuthError::unauthenticated(MSG_NO_ISSUER, reason)
    }

    /// Row 5 of the upstream table: trusted issuer, but the token does not verify.
    pub(crate) fn denied(reason: &'static str) -> AuthError {
        AuthError {
            kind: AuthErrorKind::PermissionDenied,
            message: MSG_UNABLE_TO_AUTHENTICATE.to_string(),
            reason,
        }
    }
}

/// The configuration cannot be turned into an [`crate::Authenticator`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("auth issuer #{index} has an empty name")]
    EmptyIssuerName { index: usize },
    #[error("auth issuer {issuer:?} is configured twice")]
    DuplicateIssuer { issuer: String },
    #[error("auth issuer {issuer:?} has no keys: configure at least one key, or `oidc`")]
    NoKeys { issuer: String },
    #[error("auth issuer {issuer:?}: set `keys` or `oidc`, not both")]
    KeysAndOidc { issuer: String },
    #[error("auth issuer {issuer:?}: an OpenID provider is named by its https:// issuer URL")]
    OidcNotHttps { issuer: String },
    #[error("auth issuer {issuer:?}: oidc.audience must not be empty")]
    OidcEmptyAudience { issuer: String },
    #[error("auth issuer {issuer:?}: oidc.{field} must be greater than zero")]
    OidcZeroInterval { issuer: String, field: &'static str },
    #[error("auth issuer {issuer:?}: custom_claim_namespace must not be empty (omit it instead)")]
    EmptyNamespace { issuer: String },
    #[error("auth issuer {issuer:?}: kid {kid:?} is used by two keys")]
    DuplicateKid { issuer: String, kid: String },
    #[error("auth issuer {issuer:?}, {key}: {error}")]
    Key {
        issuer: String,
        /// Which key: position, kid and source (never the key material).
        key: String,
        #[source]
        error: KeyError,
    },
    #[error("guest_access is disabled but no issuer is configured: no request could ever be authenticated")]
    GuestDisabledWithoutIssuers,
    #[error("leeway_secs is {value}; at most {max} seconds of clock skew may be tolerated")]
    LeewayTooLarge { value: u64, max: u64 },
    #[error("max_token_lifetime_secs must be greater than zero")]
    ZeroMaxLifetime,
}

/// One key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("set exactly one of `file` and `env`, not both")]
    BothSources,
    #[error("set one of `file` or `env` (key material is never written inline in the config)")]
    NoSource,
    #[error("cannot read key file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {var} is not set")]
    EnvNotSet { var: String },
    #[error("the shared secret is empty")]
    EmptySecret,
    #[error(
        "the shared secret is {len} bytes; at least {min} are required (min_shared_secret_bytes)"
    )]
    WeakSecret { len: usize, min: usize },
    #[error("expected a PEM {expected} public key: {detail}")]
    BadPem {
        expected: &'static str,
        detail: String,
    },
    #[error("the RSA key has {bits} bits; at least {min} are required")]
    RsaTooSmall { bits: usize, min: usize },
    #[error("kid must not be empty (omit it instead)")]
    EmptyKid,
}

/// A document an OpenID provider served (discovery or JWKS) cannot be used. The keys in force
/// stay.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcDocError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document has no jwks_uri")]
    NoJwksUri,
    #[error("jwks_uri {0:?} is not an https:// URL")]
    JwksUriNotHttps(String),
    #[error("the key set has no `keys` array")]
    NoKeysArray,
    #[error("the key set holds {count} keys; at most {max} are read")]
    TooManyKeys { count: usize, max: usize },
}

/// A token could not be generated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("invalid token duration {input:?}: expected <number><unit> with unit s, m, h, d or y (e.g. 30m, 1d, 1y)")]
    BadDuration { input: String },
    #[error("token duration must be greater than zero")]
    ZeroDuration,
    #[error("token duration {input:?} is too long")]
    DurationOverflow { input: String },
    #[error("the token expiry would overflow")]
    ExpiryOverflow,
    #[error("the issuer must not be empty")]
    EmptyIssuer,
    #[error("{issuer} issuer cannot contain http:// or https://")]
    IssuerIsUrl { issuer: String },
    #[error("the shared secret is empty")]
    EmptySecret,
    #[error("invalid {expected} private key: {detail}")]
    BadKey {
        expected: &'static str,
        detail: String,
    },
    #[error("signing failed: {0}")]
    Signing(String),
}
