//! custos authentication: OpenStorage-compatible JWT verification against trusted issuers, and token signing.
//!
//! The server builds one [`Authenticator`] from the `[auth]` section of its configuration
//! ([`AuthConfig`]) and calls [`Authenticator::authenticate`] with the `authorization` metadata
//! value of each request and the current time. The result is an [`Identity`] (possibly the guest)
//! or an [`AuthError`] whose `kind` and `message` are exactly what upstream OpenStorage returns
//! to the client, and whose `reason` is a stable label for metrics and the audit log.
//!
//! Deliberate differences from upstream (all stricter): a positive `exp` is required (upstream
//! treats `exp: 0` as never expiring); numeric dates must be non-negative integers; duplicate
//! JSON keys, `crit` headers, tokens over [`MAX_TOKEN_BYTES`] and tokens with other than three
//! segments are refused; shared secrets must be at least
//! [`config::DEFAULT_MIN_SHARED_SECRET_BYTES`] long unless configured otherwise; RSA keys must be
//! at least 2048 bits; EdDSA is accepted in addition to HS*, RS* and ES*.
//!
//! OpenID provider issuers ([`OidcConfig`]) take their keys from the provider's published key
//! set, which the server fetches and installs ([`OidcKeys`]); this crate parses the documents
//! and does no networking.
//!
//! [`generate_token`] signs tokens for `custos auth token generate`, like `pxctl auth token generate`.
//! Tokens are never stored or logged; use [`token_fingerprint`] to refer to one in the audit log.

pub mod config;
pub mod error;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
mod keys;
pub mod oidc;
pub mod sign;
pub mod verify;

use sha2::{Digest, Sha256};

pub use config::{
    AuthConfig, GuestAccess, IssuerConfig, KeyKind, KeySource, OidcConfig, UsernameClaim,
};
pub use custos_model::Identity;
pub use error::{AuthError, AuthErrorKind, ConfigError, KeyError, OidcDocError, SignError};
pub use keys::MIN_RSA_BITS;
pub use oidc::{parse_discovery, parse_jwks, Jwks, OidcKeys};
pub use sign::{default_subject, generate_token, parse_duration, SigningKey, TokenClaims};
pub use verify::{Authenticator, MAX_TOKEN_BYTES, REQUIRED_CLAIMS};

/// A short, non-reversible name for a token in logs and audit records: the first 12 hex
/// characters of its SHA-256. Never log the token itself.
pub fn token_fingerprint(token: &str) -> String {
    fingerprint_of(&Sha256::digest(token.as_bytes()).into())
}

/// The fingerprint of a token whose SHA-256 is `digest`.
pub(crate) fn fingerprint_of(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_12_hex_chars_of_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(token_fingerprint("abc"), "ba7816bf8f01");
        assert_eq!(token_fingerprint("").len(), 12);
    }
}
