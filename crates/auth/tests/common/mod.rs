//! Shared test fixtures: paths of the test-only keys and the authenticator configurations the tests use.

#![allow(dead_code)]

use std::path::PathBuf;

use custos_auth::{AuthConfig, Authenticator, IssuerConfig, KeyKind, KeySource};
use jsonwebtoken::{Algorithm, EncodingKey};

/// The fixed "now" of the data-driven cases (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;

/// A secret configured nowhere: the "wrong key".
pub const UNKNOWN_SECRET: &[u8] = b"custos-test-only-secret-that-nobody-trusts-0000";

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

pub fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

pub fn file_key(kind: KeyKind, kid: Option<&str>, file: &str) -> KeySource {
    KeySource {
        kid: kid.map(str::to_string),
        kind,
        file: Some(key_path(file)),
        env: None,
    }
}

/// Issuer `custos-test` with every key family (and two HMAC keys, for rotation); issuer
/// `rsa-only` with only an RSA key; issuer `oidc.example` with namespaced custom claims.
pub fn base_config() -> AuthConfig {
    AuthConfig {
        issuers: vec![
            IssuerConfig {
                name: "custos-test".into(),
                custom_claim_namespace: None,
                oidc: None,
                keys: vec![
                    file_key(KeyKind::Hmac, None, "hmac-a.secret"),
                    file_key(KeyKind::Hmac, Some("hmac-b"), "hmac-b.secret"),
                    file_key(KeyKind::Rsa, Some("rsa-a"), "rsa-a.pub.pem"),
                    file_key(KeyKind::Ecdsa, None, "p256-a.pub.pem"),
                    file_key(KeyKind::Ecdsa, None, "p384-a.pub.pem"),
                    file_key(KeyKind::Ed25519, Some("ed-a"), "ed25519-a.pub.pem"),
                ],
            },
            IssuerConfig {
                name: "rsa-only".into(),
                custom_claim_namespace: None,
                oidc: None,
                keys: vec![file_key(KeyKind::Rsa, None, "rsa-a.pub.pem")],
            },
            IssuerConfig {
                name: "oidc.example".into(),
                custom_claim_namespace: Some("https://custos.example/".into()),
                oidc: None,
                keys: vec![file_key(KeyKind::Hmac, None, "hmac-a.secret")],
            },
        ],
        ..AuthConfig::default()
    }
}

/// The named authenticator variants the case files can pick with `auth:`.
pub fn authenticator(variant: &str) -> Authenticator {
    let mut cfg = base_config();
    match variant {
        "default" => {}
        "name-claim" => cfg.username_claim = custos_auth::UsernameClaim::Name,
        "email-claim" => cfg.username_claim = custos_auth::UsernameClaim::Email,
        "leeway-60" => cfg.leeway_secs = 60,
        "guest-disabled" => cfg.guest_access = custos_auth::GuestAccess::Disabled,
        "max-lifetime-1d" => cfg.max_token_lifetime_secs = Some(86_400),
        other => panic!("unknown authenticator variant {other:?}"),
    }
    Authenticator::from_config(&cfg).unwrap()
}

/// A named signing key for hand-made tokens.
pub fn signer(name: &str) -> EncodingKey {
    match name {
        "hmac-a" => EncodingKey::from_secret(b"custos-test-only-shared-secret-A-0123456789"),
        "hmac-b" => EncodingKey::from_secret(&key_bytes("hmac-b.secret")),
        "hmac-unknown" => EncodingKey::from_secret(UNKNOWN_SECRET),
        // The classic HS/RS confusion: the RSA *public* key PEM used as an HMAC secret.
        "rsa-a-pub-as-hmac" => EncodingKey::from_secret(&key_bytes("rsa-a.pub.pem")),
        "rsa-a" => EncodingKey::from_rsa_pem(&key_bytes("rsa-a.key.pem")).unwrap(),
        "rsa-b" => EncodingKey::from_rsa_pem(&key_bytes("rsa-b.key.pem")).unwrap(),
        "p256-a" => EncodingKey::from_ec_pem(&key_bytes("p256-a.key.pem")).unwrap(),
        "p256-b" => EncodingKey::from_ec_pem(&key_bytes("p256-b.key.pem")).unwrap(),
        "p384-a" => EncodingKey::from_ec_pem(&key_bytes("p384-a.key.pem")).unwrap(),
        "ed25519-a" => EncodingKey::from_ed_pem(&key_bytes("ed25519-a.key.pem")).unwrap(),
        "ed25519-b" => EncodingKey::from_ed_pem(&key_bytes("ed25519-b.key.pem")).unwrap(),
        other => panic!("unknown signer {other:?}"),
    }
}

pub fn alg(name: &str) -> Algorithm {
    name.parse()
        .unwrap_or_else(|_| panic!("unknown algorithm {name:?}"))
}
