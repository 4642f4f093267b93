//! Token generation tests: every key type round-trips through the authenticator, and upstream's generator rules hold.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{authenticator, key_bytes, NOW};
use custos_auth::{generate_token, parse_duration, SignError, SigningKey, TokenClaims};
use expect_test::expect;
use serde_json::Value;

fn admin() -> TokenClaims {
    serde_yaml::from_str(
        // hack/sdk-auth-sample.yml from upstream, plus a sub
        "name: Test\nemail: 123@abc.com\nsub: test-user\nroles: [\"system.admin\"]\ngroups: [\"*\"]\n",
    )
    .unwrap()
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut next =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

#[test]
fn every_key_type_round_trips() {
    let auth = authenticator("default");
    let keys = [
        (
            "HS256",
            SigningKey::SharedSecret(b"custos-test-only-shared-secret-A-0123456789".to_vec()),
        ),
        ("RS256", SigningKey::RsaPem(key_bytes("rsa-a.key.pem"))),
        (
            "RS256",
            SigningKey::RsaPem(key_bytes("rsa-a.pkcs1.key.pem")),
        ),
        ("ES256", SigningKey::EcdsaPem(key_bytes("p256-a.key.pem"))),
        (
            "ES256",
            SigningKey::EcdsaPem(key_bytes("p256-a.sec1.key.pem")),
        ),
        ("ES384", SigningKey::EcdsaPem(key_bytes("p384-a.key.pem"))),
        (
            "EdDSA",
            SigningKey::Ed25519Pem(key_bytes("ed25519-a.key.pem")),
        ),
    ];
    for (alg, key) in keys {
        let token = generate_token(&admin(), "custos-test", &key, 3600, NOW).unwrap();
        let (header, payload) = parts(&token);
        assert_eq!(header["alg"], alg, "{key:?}");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(payload["iat"], NOW);
        assert_eq!(payload["exp"], NOW + 3600);
        let id = auth
            .authenticate(Some(&format!("Bearer {token}")), NOW)
            .unwrap_or_else(|e| panic!("{key:?}: {e:?}"));
        assert_eq!(id.username, "test-user");
        assert_eq!(id.name, "Test");
        assert_eq!(id.email, "123@abc.com");
        assert_eq!(id.issuer, "custos-test");
        assert_eq!(id.roles, ["system.admin"]);
        assert_eq!(id.groups, ["*"]);
        assert!(!id.guest);
        assert!(id.is_ownership_admin());
        // Expired exactly at iat + duration.
        let late = auth.authenticate(Some(&format!("Bearer {token}")), NOW + 3600);
        assert_eq!(late.unwrap_err().reason, "expired");
    }
}

#[test]
fn payload_matches_upstream_shape() {
    let key = SigningKey::SharedSecret(b"custos-test-only-shared-secret-A-0123456789".to_vec());
    let sample: TokenClaims = serde_yaml::from_str(
        "name: Test\nemail: 123@abc.com\nroles: [\"system.admin\"]\ngroups: [\"*\"]\n",
    )
    .unwrap();
    let token = generate_token(&sample, "openstorage.io", &key, 86_400, NOW).unwrap();
    let (_, payload) = parts(&token);
    expect![[r#"{"email":"123@abc.com","exp":1700086400,"groups":["*"],"iat":1700000000,"iss":"openstorage.io","name":"Test","roles":["system.admin"],"sub":"b3BlbnN0b3JhZ2UuaW8vVGVzdC8xMjNAYWJjLmNvbQ=="}"#]]
        .assert_eq(&payload.to_string());

    // groups are written only when given; roles always (possibly empty).
    let bare: TokenClaims = serde_yaml::from_str("name: n\nemail: e\nsub: s\nroles:\n").unwrap();
    let token = generate_token(&bare, "openstorage.io", &key, 60, NOW).unwrap();
    let (_, payload) = parts(&token);
    expect![[r#"{"email":"e","exp":1700000060,"iat":1700000000,"iss":"openstorage.io","name":"n","roles":[],"sub":"s"}"#]]
        .assert_eq(&payload.to_string());

    // An empty sub is replaced too, as upstream (`len(claims.Subject) == 0`).
    let empty_sub = TokenClaims {
        sub: Some(String::new()),
        ..sample
    };
    let token = generate_token(&empty_sub, "openstorage.io", &key, 60, NOW).unwrap();
    assert_eq!(
        parts(&token).1["sub"],
        "b3BlbnN0b3JhZ2UuaW8vVGVzdC8xMjNAYWJjLmNvbQ=="
    );

    let typo = serde_yaml::from_str::<TokenClaims>("name: n\nrole: [system.admin]\n").unwrap_err();
    assert!(typo.to_string().contains("unknown field `role`"), "{typo}");
}

#[test]
fn generator_refusals() {
    let claims = admin();
    let secret = SigningKey::SharedSecret(b"custos-test-only-shared-secret-A-0123456789".to_vec());
    let err = |issuer: &str, key: &SigningKey, secs: u64, now: u64| {
        generate_token(&claims, issuer, key, secs, now)
            .unwrap_err()
            .to_string()
    };
    expect!["https://idp.example issuer cannot contain http:// or https://"].assert_eq(&err(
        "https://idp.example",
        &secret,
        60,
        NOW,
    ));
    expect!["my-http://thing issuer cannot contain http:// or https://"].assert_eq(&err(
        "my-http://thing",
        &secret,
        60,
        NOW,
    ));
    expect!["the issuer must not be empty"].assert_eq(&err("", &secret, 60, NOW));
    expect!["token duration must be greater than zero"].assert_eq(&err("i", &secret, 0, NOW));
    expect!["the token expiry would overflow"].assert_eq(&err("i", &secret, u64::MAX, NOW));
    expect!["the token expiry would overflow"].assert_eq(&err("i", &secret, i64::MAX as u64, NOW));
    expect!["the shared secret is empty"].assert_eq(&err(
        "i",
        &SigningKey::SharedSecret(vec![]),
        60,
        NOW,
    ));

    let bad_keys = [
        (
            SigningKey::RsaPem(key_bytes("rsa-a.pub.pem")),
            r#"invalid RSA private key: found a "PUBLIC KEY" PEM block; signing needs the private key"#,
        ),
        (
            SigningKey::RsaPem(key_bytes("p256-a.key.pem")),
            "invalid RSA private key: ",
        ),
        (
            SigningKey::RsaPem(b"not pem".to_vec()),
            "invalid RSA private key: no PEM block found",
        ),
        (
            SigningKey::EcdsaPem(key_bytes("rsa-a.key.pem")),
            "invalid ECDSA private key: not a P-256 or P-384 private key",
        ),
        (
            SigningKey::EcdsaPem(key_bytes("p256-a.pub.pem")),
            "signing needs the private key",
        ),
        (
            SigningKey::EcdsaPem(key_bytes("ed25519-a.key.pem")),
            "invalid ECDSA private key: not a P-256 or P-384 private key",
        ),
        (
            SigningKey::Ed25519Pem(key_bytes("p256-a.key.pem")),
            "invalid Ed25519 private key: not an Ed25519 private key",
        ),
        (
            SigningKey::Ed25519Pem(key_bytes("ed25519-a.pub.pem")),
            "signing needs the private key",
        ),
        (
            SigningKey::Ed25519Pem(vec![0xff, 0xfe]),
            "invalid Ed25519 private key: the file is not PEM text",
        ),
    ];
    for (key, expected) in bad_keys {
        let e = err("i", &key, 60, NOW);
        assert!(e.contains(expected), "{key:?}: {e}");
    }
}

#[test]
fn cli_durations() {
    let d = parse_duration("1d").unwrap();
    assert_eq!(d, 86_400);
    assert_eq!(
        parse_duration("1w"),
        Err(SignError::BadDuration { input: "1w".into() })
    );
    expect!["invalid token duration \"1w\": expected <number><unit> with unit s, m, h, d or y (e.g. 30m, 1d, 1y)"]
        .assert_eq(&parse_duration("1w").unwrap_err().to_string());
}

#[test]
fn generated_tokens_respect_the_lifetime_cap() {
    let auth = authenticator("max-lifetime-1d");
    let key = SigningKey::SharedSecret(b"custos-test-only-shared-secret-A-0123456789".to_vec());
    let ok = generate_token(
        &admin(),
        "custos-test",
        &key,
        parse_duration("1d").unwrap(),
        NOW,
    )
    .unwrap();
    assert!(auth
        .authenticate(Some(&format!("Bearer {ok}")), NOW)
        .is_ok());
    let long = generate_token(
        &admin(),
        "custos-test",
        &key,
        parse_duration("1y").unwrap(),
        NOW,
    )
    .unwrap();
    let e = auth
        .authenticate(Some(&format!("Bearer {long}")), NOW)
        .unwrap_err();
    assert_eq!(e.reason, "lifetime_too_long");
}
