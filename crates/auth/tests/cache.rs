//! The verified-token cache: a token verified once is answered from the cache, but its time
//! claims are checked again on every use, and any other bytes are verified afresh.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{alg, authenticator, signer, NOW};

/// An HS256 token over `claims` (JSON text), signed with `hmac-a`.
fn token(claims: &str) -> String {
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let message = format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(claims));
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &signer("hmac-a"), alg("HS256")).unwrap();
    format!("{message}.{sig}")
}

fn claims(iat: u64, exp: u64, nbf: Option<u64>) -> String {
    let nbf = nbf.map(|n| format!(r#","nbf":{n}"#)).unwrap_or_default();
    format!(
        r#"{{"iss":"custos-test","sub":"alice","name":"Alice","email":"alice@example.com","iat":{iat},"exp":{exp}{nbf}}}"#
    )
}

#[test]
fn a_cached_token_gets_the_same_identity_again() {
    let auth = authenticator("default");
    let t = token(&claims(NOW, NOW + 3600, None));
    let first = auth.authenticate_token(&t, NOW).unwrap();
    let again = auth.authenticate_token(&t, NOW + 1).unwrap();
    assert_eq!(first, again);
    assert_eq!(first.fingerprint, custos_auth::token_fingerprint(&t));
    assert_eq!(first.username, "alice");
}

#[test]
fn a_cached_token_still_expires() {
    let auth = authenticator("default");
    let t = token(&claims(NOW, NOW + 60, None));
    auth.authenticate_token(&t, NOW).unwrap();
    let e = auth.authenticate_token(&t, NOW + 60).unwrap_err();
    assert_eq!(e.reason, "expired");
    // The leeway widens the window the same way with and without the cache.
    let lenient = authenticator("leeway-60");
    lenient.authenticate_token(&t, NOW).unwrap();
    lenient.authenticate_token(&t, NOW + 119).unwrap();
    assert_eq!(
        lenient
            .authenticate_token(&t, NOW + 120)
            .unwrap_err()
            .reason,
        "expired"
    );
}

#[test]
fn a_cached_token_is_not_valid_before_its_nbf_or_iat() {
    let auth = authenticator("default");
    let t = token(&claims(NOW, NOW + 3600, Some(NOW + 100)));
    // Verified (and cached) once valid ...
    auth.authenticate_token(&t, NOW + 100).unwrap();
    // ... it is still refused at an earlier time, as it was before it was cached.
    assert_eq!(
        auth.authenticate_token(&t, NOW + 99).unwrap_err().reason,
        "not_yet_valid"
    );
    let future = token(&claims(NOW + 500, NOW + 3600, None));
    auth.authenticate_token(&future, NOW + 500).unwrap();
    assert_eq!(
        auth.authenticate_token(&future, NOW).unwrap_err().reason,
        "issued_in_future"
    );
}

#[test]
fn only_the_exact_bytes_hit_the_cache() {
    let auth = authenticator("default");
    let t = token(&claims(NOW, NOW + 3600, None));
    auth.authenticate_token(&t, NOW).unwrap();
    // The same claims with another signature: verified afresh, and refused.
    let (message, _) = t.rsplit_once('.').unwrap();
    let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
    assert_eq!(
        auth.authenticate_token(&forged, NOW).unwrap_err().reason,
        "bad_signature"
    );
    // A new authenticator (as a key reload builds) starts with nothing cached.
    let reloaded = authenticator("default");
    reloaded.authenticate_token(&t, NOW).unwrap();
}

#[test]
fn the_cache_is_bounded() {
    let auth = authenticator("default");
    for i in 0..(custos_auth::verify::MAX_VERIFIED_TOKENS as u64 + 10) {
        let t = token(&claims(NOW, NOW + 3600 + i, None));
        auth.authenticate_token(&t, NOW).unwrap();
    }
    assert!(auth.cached_tokens() <= custos_auth::verify::MAX_VERIFIED_TOKENS);
}

#[test]
fn the_identity_carries_the_tokens_jti_and_iat_for_revocation() {
    let auth = authenticator("default");
    let with_jti = token(&format!(
        r#"{{"iss":"custos-test","sub":"alice","name":"Alice","email":"alice@example.com","iat":{NOW},"exp":{},"jti":"t-42"}}"#,
        NOW + 3600
    ));
    let who = auth.authenticate_token(&with_jti, NOW).unwrap();
    assert_eq!((who.token_id.as_str(), who.issued_at), ("t-42", NOW));
    let without = auth
        .authenticate_token(&token(&claims(NOW - 5, NOW + 3600, None)), NOW)
        .unwrap();
    assert_eq!(
        (without.token_id.as_str(), without.issued_at),
        ("", NOW - 5)
    );
    // A jti that is not a string is refused, as golang-jwt's RegisteredClaims would.
    let numeric = token(&format!(
        r#"{{"iss":"custos-test","sub":"alice","name":"Alice","email":"alice@example.com","iat":{NOW},"exp":{},"jti":7}}"#,
        NOW + 3600
    ));
    assert_eq!(
        auth.authenticate_token(&numeric, NOW).unwrap_err().reason,
        "invalid_claim"
    );
    // What a revocation learns of a token this member verified: its expiry.
    assert_eq!(auth.seen_expiry(|w| w.token_id == "t-42"), Some(NOW + 3600));
    assert_eq!(auth.seen_expiry(|w| w.token_id == "other"), None);
}
