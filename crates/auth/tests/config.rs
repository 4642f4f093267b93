//! Configuration tests: the TOML shape, key loading from files and environment, and every startup error message.

mod common;

use std::ffi::OsString;

use common::{base_config, file_key, key_bytes, key_path, NOW};
use custos_auth::{
    generate_token, AuthConfig, Authenticator, GuestAccess, IssuerConfig, KeyKind, KeySource,
    SigningKey, TokenClaims, UsernameClaim,
};
use expect_test::{expect, Expect};

fn one_issuer(keys: Vec<KeySource>) -> AuthConfig {
    AuthConfig {
        issuers: vec![IssuerConfig {
            name: "iss".into(),
            custom_claim_namespace: None,
            oidc: None,
            keys,
        }],
        ..AuthConfig::default()
    }
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn check_err_text(cfg: &AuthConfig, expected: String) {
    match Authenticator::from_config_with_env(cfg, &no_env) {
        Ok(_) => panic!("configuration should have been refused"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

fn check_err(cfg: &AuthConfig, expected: Expect) {
    match Authenticator::from_config_with_env(cfg, &no_env) {
        Ok(_) => panic!("configuration should have been refused"),
        Err(e) => expected.assert_eq(&e.to_string()),
    }
}

#[test]
fn toml_shape() {
    let text = r#"
        username_claim = "name"
        guest_access = "disabled"
        leeway_secs = 30
        max_token_lifetime_secs = 86400

        [[issuers]]
        name = "openstorage.io"
        keys = [
          { kind = "hmac", env = "CUSTOS_TEST_SECRET" },
          { kind = "rsa", kid = "2024", file = "/etc/custos/rsa-2024.pub.pem" },
        ]

        [[issuers]]
        name = "https://idp.example/"
        custom_claim_namespace = "https://idp.example/claims/"
        [[issuers.keys]]
        kind = "ed25519"
        file = "/etc/custos/idp.pub.pem"
    "#;
    let cfg: AuthConfig = toml::from_str(text).unwrap();
    assert_eq!(cfg.username_claim, UsernameClaim::Name);
    assert_eq!(cfg.guest_access, GuestAccess::Disabled);
    assert_eq!(cfg.leeway_secs, 30);
    assert_eq!(cfg.max_token_lifetime_secs, Some(86_400));
    assert_eq!(cfg.min_shared_secret_bytes, 32);
    assert_eq!(cfg.issuers.len(), 2);
    assert_eq!(cfg.issuers[0].keys[1].kid.as_deref(), Some("2024"));
    assert_eq!(cfg.issuers[0].keys[1].kind, KeyKind::Rsa);
    assert_eq!(
        cfg.issuers[1].custom_claim_namespace.as_deref(),
        Some("https://idp.example/claims/")
    );
    assert_eq!(cfg.issuers[1].keys[0].kind, KeyKind::Ed25519);

    // Everything has a default: an empty section is "auth disabled, guests allowed".
    let empty: AuthConfig = toml::from_str("").unwrap();
    assert_eq!(empty, AuthConfig::default());
    let auth = Authenticator::from_config(&empty).unwrap();
    assert!(!auth.auth_enabled());
    assert!(auth.authenticate(None, NOW).unwrap().guest);

    // Typos are errors, not silently ignored settings; inline secrets are not a field.
    let typo = toml::from_str::<AuthConfig>("guest_acess = \"disabled\"").unwrap_err();
    assert!(typo.to_string().contains("unknown field"), "{typo}");
    let inline = toml::from_str::<AuthConfig>(
        "[[issuers]]\nname = \"x\"\nkeys = [{ kind = \"hmac\", secret = \"s\" }]",
    )
    .unwrap_err();
    assert!(inline.to_string().contains("unknown field"), "{inline}");
    let kind = toml::from_str::<AuthConfig>(
        "[[issuers]]\nname = \"x\"\nkeys = [{ kind = \"HS256\", env = \"X\" }]",
    )
    .unwrap_err();
    assert!(kind.to_string().contains("unknown variant"), "{kind}");
}

#[test]
fn keys_load_from_the_environment() {
    let secret = OsString::from("an-environment-secret-of-32-bytes-or-more");
    let pem = OsString::from(String::from_utf8(key_bytes("p256-a.pub.pem")).unwrap());
    let env = |var: &str| match var {
        "SECRET" => Some(secret.clone()),
        "EC_PEM" => Some(pem.clone()),
        _ => None,
    };
    let cfg = one_issuer(vec![
        KeySource {
            kid: None,
            kind: KeyKind::Hmac,
            file: None,
            env: Some("SECRET".into()),
        },
        KeySource {
            kid: None,
            kind: KeyKind::Ecdsa,
            file: None,
            env: Some("EC_PEM".into()),
        },
    ]);
    let auth = Authenticator::from_config_with_env(&cfg, &env).unwrap();
    assert!(auth.auth_enabled());
    assert_eq!(auth.issuers().collect::<Vec<_>>(), ["iss"]);

    let claims = TokenClaims {
        name: "n".into(),
        email: "e".into(),
        sub: Some("s".into()),
        ..TokenClaims::default()
    };
    for key in [
        SigningKey::SharedSecret(secret.clone().into_encoded_bytes()),
        SigningKey::EcdsaPem(key_bytes("p256-a.key.pem")),
    ] {
        let token = generate_token(&claims, "iss", &key, 60, NOW).unwrap();
        let id = auth
            .authenticate(Some(&format!("Bearer {token}")), NOW)
            .unwrap();
        assert_eq!(id.username, "s");
    }
}

#[test]
fn the_test_configuration_loads() {
    let auth = Authenticator::from_config(&base_config()).unwrap();
    assert_eq!(
        auth.issuers().collect::<Vec<_>>(),
        ["custos-test", "oidc.example", "rsa-only"]
    );
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    shareable(&auth);
}

#[test]
fn startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let with_file = |kind: KeyKind, path: std::path::PathBuf| KeySource {
        kid: None,
        kind,
        file: Some(path),
        env: None,
    };

    check_err(
        &one_issuer(vec![]),
        expect![[r#"auth issuer "iss" has no keys: configure at least one key, or `oidc`"#]],
    );
    check_err(
        &one_issuer(vec![with_file(KeyKind::Hmac, "/nonexistent/secret".into())]),
        expect![[
            r#"auth issuer "iss", key #0 (kind hmac, file /nonexistent/secret): cannot read key file /nonexistent/secret: No such file or directory (os error 2)"#
        ]],
    );
    check_err_text(
        &one_issuer(vec![with_file(KeyKind::Hmac, write("empty", b"\n"))]),
        format!(
            r#"auth issuer "iss", key #0 (kind hmac, file {}/empty): the shared secret is empty"#,
            dir.path().display()
        ),
    );
    let err = Authenticator::from_config_with_env(
        &one_issuer(vec![with_file(KeyKind::Hmac, write("weak", b"mysecret"))]),
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with(
            "the shared secret is 8 bytes; at least 32 are required (min_shared_secret_bytes)"
        ),
        "{err}"
    );
    // ... unless the operator lowers the bar (upstream's own tests use "mysecret").
    let mut weak_ok = one_issuer(vec![with_file(KeyKind::Hmac, write("weak2", b"mysecret"))]);
    weak_ok.min_shared_secret_bytes = 8;
    Authenticator::from_config_with_env(&weak_ok, &no_env).unwrap();

    check_err(
        &one_issuer(vec![KeySource {
            kid: None,
            kind: KeyKind::Hmac,
            file: Some("/x".into()),
            env: Some("X".into()),
        }]),
        expect![[
            r#"auth issuer "iss", key #0 (kind hmac, file /x, env X): set exactly one of `file` and `env`, not both"#
        ]],
    );
    check_err(
        &one_issuer(vec![KeySource {
            kid: Some("k".into()),
            kind: KeyKind::Rsa,
            file: None,
            env: None,
        }]),
        expect![[
            r#"auth issuer "iss", key #0 (kind rsa, kid "k"): set one of `file` or `env` (key material is never written inline in the config)"#
        ]],
    );
    check_err(
        &one_issuer(vec![KeySource {
            kid: None,
            kind: KeyKind::Hmac,
            file: None,
            env: Some("CUSTOS_TEST_UNSET_VARIABLE".into()),
        }]),
        expect![[
            r#"auth issuer "iss", key #0 (kind hmac, env CUSTOS_TEST_UNSET_VARIABLE): environment variable CUSTOS_TEST_UNSET_VARIABLE is not set"#
        ]],
    );
    check_err_text(
        &one_issuer(vec![file_key(KeyKind::Rsa, None, "rsa-a.key.pem")]),
        format!(
            r#"auth issuer "iss", key #0 (kind rsa, file {}): expected a PEM RSA public key: this is a private key; configure the public key instead (openssl pkey -in key.pem -pubout)"#,
            key_path("rsa-a.key.pem").display()
        ),
    );
    let cases: &[(KeyKind, &str, &str)] = &[
        (KeyKind::Rsa, "rsa-1024.pub.pem", "the RSA key has 1024 bits; at least 2048 are required"),
        (KeyKind::Rsa, "p256-a.pub.pem", "expected a PEM RSA public key: "),
        (KeyKind::Rsa, "hmac-a.secret", "expected a PEM RSA public key: no PEM block found"),
        (KeyKind::Ecdsa, "rsa-a.pub.pem", "expected a PEM ECDSA public key: not a P-256 or P-384 public key (only ES256 and ES384 are supported)"),
        (KeyKind::Ecdsa, "ed25519-a.pub.pem", "expected a PEM ECDSA public key: not a P-256 or P-384 public key"),
        (KeyKind::Ecdsa, "p256-a.sec1.key.pem", "expected a PEM ECDSA public key: this is a private key"),
        (KeyKind::Ed25519, "p256-a.pub.pem", "expected a PEM Ed25519 public key: not an Ed25519 public key"),
        (KeyKind::Ed25519, "ed25519-a.key.pem", "expected a PEM Ed25519 public key: this is a private key"),
    ];
    for (kind, file, expected) in cases {
        let err = Authenticator::from_config_with_env(
            &one_issuer(vec![file_key(*kind, None, file)]),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(expected), "{kind:?} {file}: {err}");
    }
    let garbage_pem = write(
        "garbage.pem",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    );
    for kind in [KeyKind::Rsa, KeyKind::Ecdsa, KeyKind::Ed25519] {
        let err = Authenticator::from_config_with_env(
            &one_issuer(vec![with_file(kind, garbage_pem.clone())]),
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected a PEM"), "{kind:?}: {err}");
    }
    let not_utf8 = write("binary", &[0xff, 0xfe, 0x00, 0x80]);
    let err = Authenticator::from_config_with_env(
        &one_issuer(vec![with_file(KeyKind::Rsa, not_utf8)]),
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.ends_with("the file is not PEM text"), "{err}");

    check_err(
        &one_issuer(vec![
            file_key(KeyKind::Hmac, Some("k1"), "hmac-a.secret"),
            file_key(KeyKind::Rsa, Some("k1"), "rsa-a.pub.pem"),
        ]),
        expect![[r#"auth issuer "iss": kid "k1" is used by two keys"#]],
    );
    check_err_text(
        &one_issuer(vec![file_key(KeyKind::Hmac, Some(""), "hmac-a.secret")]),
        format!(
            r#"auth issuer "iss", key #0 (kind hmac, kid "", file {}): kid must not be empty (omit it instead)"#,
            key_path("hmac-a.secret").display()
        ),
    );

    let mut twice = base_config();
    twice.issuers.push(twice.issuers[0].clone());
    check_err(
        &twice,
        expect![[r#"auth issuer "custos-test" is configured twice"#]],
    );

    let mut unnamed = base_config();
    unnamed.issuers[1].name.clear();
    check_err(&unnamed, expect!["auth issuer #1 has an empty name"]);

    let mut empty_ns = base_config();
    empty_ns.issuers[0].custom_claim_namespace = Some(String::new());
    check_err(
        &empty_ns,
        expect![[
            r#"auth issuer "custos-test": custom_claim_namespace must not be empty (omit it instead)"#
        ]],
    );

    check_err(
        &AuthConfig {
            guest_access: GuestAccess::Disabled,
            ..AuthConfig::default()
        },
        expect!["guest_access is disabled but no issuer is configured: no request could ever be authenticated"],
    );
    let mut leeway = base_config();
    leeway.leeway_secs = 301;
    check_err(
        &leeway,
        expect!["leeway_secs is 301; at most 300 seconds of clock skew may be tolerated"],
    );
    let mut lifetime = base_config();
    lifetime.max_token_lifetime_secs = Some(0);
    check_err(
        &lifetime,
        expect!["max_token_lifetime_secs must be greater than zero"],
    );
}
