//! Criterion benchmark: full request authorization (token verification, role check, ownership
//! check) against token verification alone and the bare signature check, per algorithm family.

use criterion::{criterion_group, criterion_main, Criterion};
use custos_auth::{
    generate_token, AuthConfig, Authenticator, IssuerConfig, KeyKind, KeySource, SigningKey,
    TokenClaims,
};
use custos_model::ownership::{permitted, AccessType, Acls, Ownership};
use custos_model::{MethodName, State};
use jsonwebtoken::{crypto, Algorithm, DecodingKey};
use std::hint::black_box;
use std::path::PathBuf;

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).unwrap()
}

struct Case {
    name: &'static str,
    kind: KeyKind,
    public: &'static str,
    signing: SigningKey,
    alg: Algorithm,
    decoding: DecodingKey,
}

fn cases() -> Vec<Case> {
    let secret = String::from_utf8(read("hmac-a.secret"))
        .unwrap()
        .trim()
        .as_bytes()
        .to_vec();
    vec![
        Case {
            name: "HS256",
            kind: KeyKind::Hmac,
            public: "hmac-a.secret",
            signing: SigningKey::SharedSecret(secret.clone()),
            alg: Algorithm::HS256,
            decoding: DecodingKey::from_secret(&secret),
        },
        Case {
            name: "RS256",
            kind: KeyKind::Rsa,
            public: "rsa-a.pub.pem",
            signing: SigningKey::RsaPem(read("rsa-a.key.pem")),
            alg: Algorithm::RS256,
            decoding: DecodingKey::from_rsa_pem(&read("rsa-a.pub.pem")).unwrap(),
        },
        Case {
            name: "ES256",
            kind: KeyKind::Ecdsa,
            public: "p256-a.pub.pem",
            signing: SigningKey::EcdsaPem(read("p256-a.key.pem")),
            alg: Algorithm::ES256,
            decoding: DecodingKey::from_ec_pem(&read("p256-a.pub.pem")).unwrap(),
        },
        Case {
            name: "EdDSA",
            kind: KeyKind::Ed25519,
            public: "ed25519-a.pub.pem",
            signing: SigningKey::Ed25519Pem(read("ed25519-a.key.pem")),
            alg: Algorithm::EdDSA,
            decoding: DecodingKey::from_ed_pem(&read("ed25519-a.pub.pem")).unwrap(),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let now = 1_800_000_000;
    let state = State::new();
    let method = MethodName::from_full("/openstorage.api.OpenStorageVolume/Inspect");
    let ownership = Ownership {
        owner: "someone-else".into(),
        acls: Acls {
            groups: [("engineering".to_string(), AccessType::Read)]
                .into_iter()
                .collect(),
            ..Acls::default()
        },
    };
    for case in cases() {
        let config = AuthConfig {
            issuers: vec![IssuerConfig {
                name: "bench".into(),
                custom_claim_namespace: None,
                oidc: None,
                keys: vec![KeySource {
                    kid: None,
                    kind: case.kind,
                    file: Some(key_path(case.public)),
                    env: None,
                }],
            }],
            ..AuthConfig::default()
        };
        let auth = Authenticator::from_config(&config).unwrap();
        let claims = TokenClaims {
            name: "Alice".into(),
            email: "alice@example.com".into(),
            sub: Some("alice".into()),
            roles: vec!["system.user".into()],
            groups: Some(vec!["engineering".into()]),
            jti: None,
        };
        let token = generate_token(&claims, "bench", &case.signing, 3600, now - 10).unwrap();
        let header = format!("bearer {token}");
        let (message, signature) = token.rsplit_once('.').unwrap();

        let mut group = c.benchmark_group(case.name);
        group.bench_function("signature_only", |b| {
            b.iter(|| {
                assert!(crypto::verify(
                    black_box(signature),
                    message.as_bytes(),
                    &case.decoding,
                    case.alg
                )
                .unwrap())
            })
        });
        // Full verification: the cache is emptied before every call (a token's first use).
        group.bench_function("token_verification", |b| {
            b.iter(|| {
                auth.forget_verified();
                auth.authenticate(Some(black_box(&header)), now).unwrap()
            })
        });
        // Every later use of the same token: a cache hit and its time checks.
        group.bench_function("cached_verification", |b| {
            b.iter(|| auth.authenticate(Some(black_box(&header)), now).unwrap())
        });
        let verified = auth.authenticate(Some(&header), now).unwrap();
        group.bench_function("role_and_ownership", |b| {
            b.iter(|| {
                state.authorize(black_box(&verified), &method).unwrap();
                assert!(permitted(
                    black_box(&verified),
                    Some(&ownership),
                    AccessType::Read
                ));
            })
        });
        group.bench_function("full_authorization", |b| {
            b.iter(|| {
                auth.forget_verified();
                let who = auth.authenticate(Some(black_box(&header)), now).unwrap();
                state.authorize(&who, &method).unwrap();
                assert!(permitted(&who, Some(&ownership), AccessType::Read));
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
