//! Authentication configuration (the `[auth]` TOML section): trusted issuers, their keys and the policy knobs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default minimum length of an HMAC shared secret (RFC 7518 §3.2: key ≥ hash output).
pub const DEFAULT_MIN_SHARED_SECRET_BYTES: usize = 32;
/// Upper bound for `leeway_secs`.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Default `revocation_retention_secs`: a year.
pub const DEFAULT_REVOCATION_RETENTION_SECS: u64 = 365 * 24 * 60 * 60;

/// How the server authenticates callers.
///
/// No issuers means authentication is disabled (upstream: no authenticators ⇒ no auth
/// interceptors at all); check [`crate::Authenticator::auth_enabled`].
///
/// ```toml
/// [auth]
/// username_claim = "sub"          # sub | email | name
/// guest_access = "enabled"        # enabled | disabled
/// leeway_secs = 0                 # clock skew tolerated for exp / nbf / iat
/// max_token_lifetime_secs = 31536000
///
/// [[auth.issuers]]
/// name = "openstorage.io"
/// keys = [
///   { kind = "hmac", env = "CUSTOS_AUTH_SHARED_SECRET" },
///   { kind = "rsa", kid = "2024", file = "/etc/custos/jwt-rsa-2024.pub.pem" },
/// ]
///
/// [[auth.issuers]]
/// name = "https://idp.example"
/// oidc = { audience = "custos" }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub issuers: Vec<IssuerConfig>,
    pub username_claim: UsernameClaim,
    pub guest_access: GuestAccess,
    /// Seconds of clock skew tolerated when checking `exp`, `nbf` and `iat` (default 0, as upstream).
    pub leeway_secs: u64,
    /// When set, tokens whose `exp - iat` exceeds this many seconds are rejected.
    pub max_token_lifetime_secs: Option<u64>,
    /// Shared secrets shorter than this are refused at startup (default 32 bytes).
    pub min_shared_secret_bytes: usize,
    /// How long a token revocation is kept when nothing tells when the revoked tokens expire
    /// (the member never verified the token, no `max_token_lifetime_secs` bounds it, and the
    /// administrator gave no expiry): seconds from the revocation (or from a subject
    /// revocation's `issued_before`). Default a year. Set `max_token_lifetime_secs` so that
    /// no token can outlive its revocation.
    pub revocation_retention_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            issuers: Vec::new(),
            username_claim: UsernameClaim::default(),
            guest_access: GuestAccess::default(),
            leeway_secs: 0,
            max_token_lifetime_secs: None,
            min_shared_secret_bytes: DEFAULT_MIN_SHARED_SECRET_BYTES,
            revocation_retention_secs: DEFAULT_REVOCATION_RETENTION_SECS,
        }
    }
}

/// One trusted issuer: tokens whose `iss` equals `name` are verified with `keys`, or, for an
/// OpenID provider (`oidc` set, `keys` empty), with the keys it publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub name: String,
    /// Prefix of namespaced custom claims, e.g. `"https://idp.example/"` lifts
    /// `https://idp.example/roles` and `https://idp.example/groups` over `roles`/`groups`.
    #[serde(default)]
    pub custom_claim_namespace: Option<String>,
    /// Static keys; empty for an OpenID provider.
    #[serde(default)]
    pub keys: Vec<KeySource>,
    /// Set for an OpenID provider: `name` is its issuer URL (`https://...`), its keys come from
    /// the `jwks_uri` of `<name>/.well-known/openid-configuration`, and tokens must name
    /// `audience` in `aud`.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
}

/// Default `refresh_secs`: the published keys are fetched again every hour.
pub const DEFAULT_OIDC_REFRESH_SECS: u64 = 3600;
/// Default `min_refetch_interval_secs`: an unknown `kid` triggers a fetch at most this often.
pub const DEFAULT_OIDC_MIN_REFETCH_SECS: u64 = 30;

/// An OpenID provider's settings (`oidc = { audience = "custos", ... }` in an issuer).
///
/// ```toml
/// [[auth.issuers]]
/// name = "https://idp.example"          # the provider's issuer URL, exactly as in its tokens
/// oidc = { audience = "custos", ca_file = "/etc/custos/idp-ca.pem" }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The audience (client id or resource) `aud` must contain.
    pub audience: String,
    /// CA certificates (PEM) the provider's HTTPS certificate must chain to; the system's
    /// trust store when unset.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The keys are fetched again this often (seconds).
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// A token naming a `kid` the key set lacks triggers a fetch, at most once per this many
    /// seconds (the token itself is refused).
    #[serde(default = "default_min_refetch_secs")]
    pub min_refetch_interval_secs: u64,
}

fn default_refresh_secs() -> u64 {
    DEFAULT_OIDC_REFRESH_SECS
}

fn default_min_refetch_secs() -> u64 {
    DEFAULT_OIDC_MIN_REFETCH_SECS
}

/// Where one verification key comes from. Exactly one of `file` and `env` must be set; key
/// material is never written inline in the configuration.
///
/// Files and variables hold the raw shared secret (`hmac`; trailing ASCII whitespace is removed) or a
/// PEM public key (`rsa`, `ecdsa`, `ed25519`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySource {
    /// Key id: a token carrying `kid` is checked against this key only.
    #[serde(default)]
    pub kid: Option<String>,
    pub kind: KeyKind,
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub env: Option<String>,
}

/// The key family, which fixes the algorithms a key accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Shared secret: HS256, HS384, HS512.
    Hmac,
    /// RSA public key (≥ 2048 bits): RS256, RS384, RS512.
    Rsa,
    /// ECDSA public key: ES256 for P-256 keys, ES384 for P-384 keys.
    Ecdsa,
    /// Ed25519 public key: EdDSA.
    Ed25519,
}

impl KeyKind {
    /// The configuration spelling (`hmac`, `rsa`, `ecdsa`, `ed25519`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Hmac => "hmac",
            KeyKind::Rsa => "rsa",
            KeyKind::Ecdsa => "ecdsa",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

/// Which claim becomes [`custos_model::Identity::username`] (upstream `--username-claim`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsernameClaim {
    #[default]
    Sub,
    Email,
    Name,
}

impl UsernameClaim {
    /// The JSON claim name.
    pub fn claim(self) -> &'static str {
        match self {
            UsernameClaim::Sub => "sub",
            UsernameClaim::Email => "email",
            UsernameClaim::Name => "name",
        }
    }
}

/// What happens to requests without a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestAccess {
    /// They run as the guest (`system.guest`), as upstream.
    #[default]
    Enabled,
    /// They are refused with `UNAUTHENTICATED`.
    Disabled,
}
