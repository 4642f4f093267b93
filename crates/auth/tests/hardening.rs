//! Hardening tests: key URLs in headers are never fetched, and no input makes the authenticator panic.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{authenticator, signer, NOW};
use custos_auth::{token_fingerprint, AuthErrorKind, Authenticator, MAX_TOKEN_BYTES};
use jsonwebtoken::Algorithm;
use proptest::prelude::*;

fn token(header: &str, payload: &str, key: &str, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &signer(key), alg).unwrap();
    format!("{message}.{sig}")
}

fn payload(iss: &str) -> String {
    format!(
        r#"{{"iss":"{iss}","sub":"alice","name":"Alice","email":"a@x","iat":{NOW},"exp":{}}}"#,
        NOW + 60
    )
}

#[test]
fn key_urls_in_headers_are_never_fetched() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let auth = authenticator("default");
    // Valid and invalid signatures alike: the URLs must not be touched either way.
    for (key, alg) in [
        ("hmac-a", Algorithm::HS256),
        ("rsa-b", Algorithm::RS256),
        ("hmac-unknown", Algorithm::HS256),
    ] {
        let header = format!(
            r#"{{"alg":"{alg:?}","jku":"{url}","x5u":"{url}","jwk":{{"kty":"RSA","n":"AQAB","e":"AQAB","x5u":"{url}"}}}}"#
        );
        let t = token(&header, &payload("custos-test"), key, alg);
        let _ = auth.authenticate(Some(&format!("Bearer {t}")), NOW);
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("something connected to the jku/x5u URL: {other:?}"),
    }
}

#[test]
fn the_size_cap_is_exact() {
    let auth = authenticator("default");
    let base = token(
        r#"{"alg":"HS256"}"#,
        &payload("custos-test"),
        "hmac-a",
        Algorithm::HS256,
    );
    // Garbage of exactly the cap is decoded (and refused as malformed); one byte more is not.
    let at_cap = format!("{}.{}", "A".repeat(MAX_TOKEN_BYTES - 2), "B");
    let over = format!("{at_cap}C");
    assert_eq!(at_cap.len(), MAX_TOKEN_BYTES);
    let e = auth.authenticate_token(&at_cap, NOW).unwrap_err();
    assert_eq!(e.reason, "malformed_token");
    let e = auth.authenticate_token(&over, NOW).unwrap_err();
    assert_eq!(e.reason, "token_too_large");
    assert!(auth.authenticate_token(&base, NOW).is_ok());
}

#[test]
fn fingerprints_never_contain_the_token() {
    let t = token(
        r#"{"alg":"HS256"}"#,
        &payload("custos-test"),
        "hmac-a",
        Algorithm::HS256,
    );
    let fp = token_fingerprint(&t);
    assert_eq!(fp.len(), 12);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!t.contains(&fp));
    assert_ne!(fp, token_fingerprint(&format!("{t}x")));
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<Vec<u8>>().prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        "[A-Za-z0-9_-]{0,64}",
        any::<String>(),
        // JSON-ish objects with interesting claims and header fields.
        (
            prop::sample::select(vec!["HS256", "RS256", "ES256", "ES384", "EdDSA", "none", "PS256", ""]),
            prop::sample::select(vec!["custos-test", "rsa-only", "oidc.example", "evil", ""]),
            any::<i64>(),
            prop::sample::select(vec![r#""roles":"x""#, r#""roles":[1]"#, r#""kid":"rsa-a""#, r#""crit":[]"#, r#""nbf":1.5"#, r#""x":null"#]),
        )
            .prop_map(|(alg, iss, n, extra)| URL_SAFE_NO_PAD.encode(format!(
                r#"{{"alg":"{alg}","iss":"{iss}","sub":"s","name":"n","email":"e","iat":{n},"exp":{n},{extra}}}"#
            ))),
    ]
}

static DEFAULT: LazyLock<Authenticator> = LazyLock::new(|| authenticator("default"));
static LEEWAY: LazyLock<Authenticator> = LazyLock::new(|| authenticator("leeway-60"));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_header_values_never_panic(value in any::<String>()) {
        let auth = &*DEFAULT;
        let _ = auth.authenticate(Some(&value), NOW);
        let _ = auth.authenticate(Some(&format!("Bearer {value}")), NOW);
    }

    #[test]
    fn arbitrary_segments_never_panic(
        segs in prop::collection::vec(segment(), 0..6),
        now in any::<u64>(),
    ) {
        let auth = &*LEEWAY;
        let t = segs.join(".");
        match auth.authenticate(Some(&format!("Bearer {t}")), now) {
            // A random token can only pass by forging a signature.
            Ok(id) => prop_assert!(false, "accepted a random token: {id:?}"),
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                prop_assert!(!e.reason.is_empty());
                if e.kind == AuthErrorKind::PermissionDenied {
                    prop_assert_eq!(e.message, "Unable to authenticate token");
                }
            }
        }
    }

    #[test]
    fn random_signatures_on_valid_payloads_are_refused(sig in any::<Vec<u8>>(), alg in prop::sample::select(vec!["HS256", "RS256", "ES256", "ES384", "EdDSA"])) {
        let auth = &*DEFAULT;
        let t = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#)),
            URL_SAFE_NO_PAD.encode(payload("custos-test")),
            URL_SAFE_NO_PAD.encode(&sig),
        );
        let e = auth.authenticate_token(&t, NOW).unwrap_err();
        prop_assert_eq!(e.reason, "bad_signature");
    }
}
