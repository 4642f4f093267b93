//! Fuzz target of token verification (feature `fuzz`): [`token`].
//!
//! Two modes share the input. Raw: the bytes are an `authorization` value; if the authenticator
//! accepts it, an HMAC computed here (independently of jsonwebtoken) or the RSA public key must
//! verify its signature with a configured key. Structured: the bytes choose a JOSE header, claims,
//! a signing key, a tampering and a scheme; a reference computed from those choices says whether
//! the token must be accepted, and the authenticator must agree both ways.

use std::ffi::OsString;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custos_model::fuzz::Input;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::config::{AuthConfig, IssuerConfig, KeyKind, KeySource};
use crate::error::{
    AuthErrorKind, MSG_GUEST_DISABLED, MSG_INVALID_HEADER, MSG_NO_ISSUER,
    MSG_UNABLE_TO_AUTHENTICATE,
};
use crate::verify::Authenticator;

/// The fuzz clock.
pub const NOW: u64 = 1_700_000_000;
const SECRET_A: &str = "fuzz-secret-a-0123456789abcdef-0123456789";
const SECRET_B: &str = "fuzz-secret-b-0123456789abcdef-0123456789";
const SECRET_UNKNOWN: &str = "fuzz-secret-c-not-configured-0123456789ab";
// TEST-ONLY keys (crates/auth/tests/keys/README.md).
const RSA_PUB: &str = include_str!("../tests/keys/rsa-a.pub.pem");
const RSA_KEY: &str = include_str!("../tests/keys/rsa-a.key.pem");

/// `fuzz-a`: one HMAC key (A, no kid). `fuzz-b`: an RSA key (kid r1) and an HMAC key (B, kid h1).
fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = |kind, kid: Option<&str>, env: &str| KeySource {
            kid: kid.map(str::to_string),
            kind,
            file: None,
            env: Some(env.to_string()),
        };
        let cfg = AuthConfig {
            issuers: vec![
                IssuerConfig {
                    name: "fuzz-a".into(),
                    custom_claim_namespace: None,
                    oidc: None,
                    keys: vec![key(KeyKind::Hmac, None, "A")],
                },
                IssuerConfig {
                    name: "fuzz-b".into(),
                    custom_claim_namespace: None,
                    oidc: None,
                    keys: vec![
                        key(KeyKind::Rsa, Some("r1"), "RSA"),
                        key(KeyKind::Hmac, Some("h1"), "B"),
                    ],
                },
            ],
            ..AuthConfig::default()
        };
        let env = |var: &str| match var {
            "A" => Some(OsString::from(SECRET_A)),
            "B" => Some(OsString::from(SECRET_B)),
            "RSA" => Some(OsString::from(RSA_PUB)),
            _ => None,
        };
        Authenticator::from_config_with_env(&cfg, &env).expect("the fuzz authenticator")
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing");
    format!("{message}.{sig}")
}

fn valid_claims(iss: &str) -> String {
    format!(
        r#"{{"iss":"{iss}","sub":"alice","name":"Alice","email":"a@x","iat":{},"exp":{},"roles":["system.user"]}}"#,
        NOW - 10,
        NOW + 3600
    )
}

/// Valid tokens to start from: HS256 from `fuzz-a`, HS512 with kid h1 and RS256 with kid r1
/// from `fuzz-b` (RSA signing is slow, so it happens once).
pub fn valid_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let rsa = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).expect("test RSA key");
        vec![
            sign(
                r#"{"alg":"HS256"}"#,
                &valid_claims("fuzz-a"),
                &EncodingKey::from_secret(SECRET_A.as_bytes()),
                Algorithm::HS256,
            ),
            sign(
                r#"{"alg":"HS512","kid":"h1"}"#,
                &valid_claims("fuzz-b"),
                &EncodingKey::from_secret(SECRET_B.as_bytes()),
                Algorithm::HS512,
            ),
            sign(
                r#"{"alg":"RS256","kid":"r1"}"#,
                &valid_claims("fuzz-b"),
                &rsa,
                Algorithm::RS256,
            ),
        ]
    })
}

/// HMAC (RFC 2104) over sha2, written here so the check does not share code with the verifier.
fn hmac<D: Digest>(key: &[u8], message: &[u8], block: usize) -> Vec<u8> {
    let mut k = if key.len() > block {
        D::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(block, 0);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = D::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    D::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Is `token` signed by one of the configured keys under the algorithm its header names?
fn signed_by_a_configured_key(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(header) = URL_SAFE_NO_PAD.decode(h) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&header) else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(s) else {
        return false;
    };
    let message = format!("{h}.{p}");
    let secrets = [SECRET_A.as_bytes(), SECRET_B.as_bytes()];
    let mac = |f: &dyn Fn(&[u8]) -> Vec<u8>| secrets.iter().any(|k| f(k) == sig);
    match header["alg"].as_str() {
        Some("HS256") => mac(&|k| hmac::<Sha256>(k, message.as_bytes(), 64)),
        Some("HS384") => mac(&|k| hmac::<Sha384>(k, message.as_bytes(), 128)),
        Some("HS512") => mac(&|k| hmac::<Sha512>(k, message.as_bytes(), 128)),
        Some("RS256") => {
            let key = DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).expect("test RSA key");
            jsonwebtoken::crypto::verify(s, message.as_bytes(), &key, Algorithm::RS256)
                .unwrap_or(false)
        }
        _ => false,
    }
}

/// Every refusal carries one of the upstream texts, with the kind that goes with it.
fn check_refusal(e: &crate::AuthError) {
    let fixed_unauthenticated = [MSG_INVALID_HEADER, MSG_NO_ISSUER, MSG_GUEST_DISABLED];
    match e.kind {
        AuthErrorKind::PermissionDenied => {
            assert_eq!(e.message, MSG_UNABLE_TO_AUTHENTICATE, "{e:?}")
        }
        AuthErrorKind::Unauthenticated => assert!(
            fixed_unauthenticated.contains(&e.message.as_str())
                || e.message.ends_with(" is not a trusted issuer"),
            "{e:?}"
        ),
    }
    assert!(!e.reason.is_empty());
}

fn path_of(result: &Result<custos_model::Identity, crate::AuthError>) -> u64 {
    match result {
        Ok(_) => 1,
        Err(e) => e
            .reason
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    }
}

/// The token verification target (see the module docs).
pub fn token(data: &[u8]) -> u64 {
    let mut u = Input::new(data);
    if u.byte().is_multiple_of(4) {
        raw(u.rest())
    } else {
        structured(&mut u)
    }
}

fn raw(bytes: &[u8]) -> u64 {
    let value = String::from_utf8_lossy(bytes);
    let auth = authenticator();
    let result = auth.authenticate(Some(value.as_ref()), NOW);
    match &result {
        // An empty value is no token: the guest (guest access is enabled here).
        Ok(id) if value.is_empty() => assert!(id.guest, "{id:?}"),
        Ok(id) => {
            assert!(
                !id.guest,
                "a non-empty authorization value made a guest: {value:?}"
            );
            let token = value.split_once(' ').map(|(_, t)| t).unwrap_or_default();
            assert!(
                signed_by_a_configured_key(token),
                "accepted a token no configured key signed: {value:?} as {id:?}"
            );
        }
        Err(e) => check_refusal(e),
    }
    if let Ok(id) = auth.authenticate_token(&value, NOW) {
        assert!(
            signed_by_a_configured_key(&value),
            "accepted a token no configured key signed: {value:?} as {id:?}"
        );
    }
    path_of(&result) << 1
}

fn structured(u: &mut Input<'_>) -> u64 {
    // JOSE header: alg, kid, extras.
    const ALGS: &[&str] = &[
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "none",
        "NONE",
        "PS256",
        "",
        "<missing>",
        "<number>",
    ];
    let alg = *u.choose(ALGS);
    let hmac_alg = match alg {
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        "HS256" => Some(Algorithm::HS256),
        _ => None,
    };
    let mut header = Vec::new();
    match alg {
        "<missing>" => {}
        "<number>" => header.push(r#""alg":256"#.to_string()),
        a => header.push(format!(r#""alg":"{a}""#)),
    }
    const KIDS: &[&str] = &["<none>", "h1", "r1", "../../etc/passwd", "<number>"];
    let kid = *u.choose(KIDS);
    match kid {
        "<none>" => {}
        "<number>" => header.push(r#""kid":1"#.into()),
        k => header.push(format!(r#""kid":"{k}""#)),
    }
    const EXTRAS: &[&str] = &["", "jku", "jwk", "crit", "dup"];
    let extra = *u.choose(EXTRAS);
    match extra {
        "jku" => header.push(r#""jku":"http://127.0.0.1:1/k","x5u":"http://127.0.0.1:1/c""#.into()),
        "jwk" => header.push(format!(
            r#""jwk":{{"kty":"oct","k":"{}"}}"#,
            b64(SECRET_UNKNOWN.as_bytes())
        )),
        "crit" => header.push(r#""crit":["exp"]"#.into()),
        "dup" => header.push(r#""alg":"none""#.into()),
        _ => {}
    }
    let header = format!("{{{}}}", header.join(","));
    let header_ok = hmac_alg.is_some() && matches!(extra, "" | "jku" | "jwk") && kid != "<number>";

    // Claims: each choice is valid or not.
    let mut claims = Vec::new();
    let mut claims_ok = true;
    let mut pick = |u: &mut Input<'_>, name: &str, options: &[(&str, bool)]| {
        let (value, ok) = *u.choose(options);
        claims_ok &= ok;
        if value != "<missing>" {
            claims.push(format!(r#""{name}":{value}"#));
        }
        value.to_string()
    };
    let iss = pick(
        u,
        "iss",
        &[
            (r#""fuzz-a""#, true),
            (r#""fuzz-b""#, true),
            (r#""evil""#, false),
            (r#""""#, false),
            ("<missing>", false),
            ("7", false),
        ],
    );
    let exp_valid = (NOW + 60).to_string();
    let exp_now = NOW.to_string();
    let exp_past = (NOW - 1).to_string();
    let max = u64::MAX.to_string();
    pick(
        u,
        "sub",
        &[
            (r#""alice""#, true),
            (r#""""#, false),
            ("<missing>", false),
            ("null", false),
            ("5", false),
        ],
    );
    pick(
        u,
        "exp",
        &[
            (exp_valid.as_str(), true),
            (exp_now.as_str(), false),
            (exp_past.as_str(), false),
            ("0", false),
            (r#""9999999999""#, false),
            ("1.5", false),
            ("-3", false),
            ("<missing>", false),
            (max.as_str(), true),
            ("null", false),
        ],
    );
    let nbf_past = (NOW - 10).to_string();
    let nbf_future = (NOW + 10).to_string();
    pick(
        u,
        "nbf",
        &[
            ("<missing>", true),
            (nbf_past.as_str(), true),
            (nbf_future.as_str(), false),
            (r#""1""#, false),
        ],
    );
    pick(
        u,
        "iat",
        &[
            (nbf_past.as_str(), true),
            (nbf_future.as_str(), false),
            ("<missing>", false),
            (r#""1""#, false),
        ],
    );
    pick(u, "name", &[(r#""Alice""#, true), ("<missing>", false)]);
    pick(u, "email", &[(r#""a@x""#, true), ("<missing>", false)]);
    pick(
        u,
        "roles",
        &[
            ("<missing>", true),
            (r#"["system.user","r2"]"#, true),
            (r#""system.admin""#, false),
            ("[1]", false),
            ("null", true),
        ],
    );
    if u.byte() % 8 == 7 && !claims.is_empty() {
        // The first claim again: a duplicate key, which the verifier's strict parser refuses.
        claims.push(claims[0].clone());
        claims_ok = false;
    }
    let payload = format!("{{{}}}", claims.join(","));

    // Signing key.
    const KEYS: &[&str] = &["A", "B", "unknown", "rsa-pem-as-hmac", "empty", "garbage"];
    let key = *u.choose(KEYS);
    let sign_alg = hmac_alg.unwrap_or(Algorithm::HS256);
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let secret = match key {
        "A" => Some(SECRET_A.as_bytes()),
        "B" => Some(SECRET_B.as_bytes()),
        "unknown" => Some(SECRET_UNKNOWN.as_bytes()),
        "rsa-pem-as-hmac" => Some(RSA_PUB.as_bytes()),
        _ => None,
    };
    let signature = match (key, secret) {
        (_, Some(secret)) => jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(secret),
            sign_alg,
        )
        .expect("HMAC"),
        ("garbage", _) => b64(u.bytes(64)),
        _ => String::new(),
    };
    let key_ok = match iss.as_str() {
        r#""fuzz-a""# => key == "A" && kid == "<none>",
        r#""fuzz-b""# => key == "B" && matches!(kid, "<none>" | "h1"),
        _ => false,
    };
    let mut token = format!("{message}.{signature}");

    // Tampering after signing.
    const TAMPER: &[&str] = &["", "", "", "flip", "escalate", "pad", "strip", "segment"];
    let tamper = *u.choose(TAMPER);
    match tamper {
        "flip" => {
            let mut bytes = token.into_bytes();
            let at = u.below(bytes.len());
            bytes[at] ^= 1 + u.byte() % 127;
            token = String::from_utf8_lossy(&bytes).into_owned();
        }
        "escalate" => {
            let escalated = payload.replace("system.user", "system.admin");
            let escalated = if escalated == payload {
                payload.replace('}', r#","groups":["*"]}"#)
            } else {
                escalated
            };
            token = format!(
                "{}.{}.{signature}",
                b64(header.as_bytes()),
                b64(escalated.as_bytes())
            );
        }
        "pad" => {
            token = format!(
                "{}.{}=.{signature}",
                b64(header.as_bytes()),
                b64(payload.as_bytes())
            )
        }
        "strip" => token = format!("{message}."),
        "segment" => token.push_str(".x"),
        _ => {}
    }

    const SCHEMES: &[(&str, bool)] = &[
        ("Bearer ", true),
        ("bearer ", true),
        ("BEARER ", true),
        ("Basic ", false),
        ("", false),
        ("Bearer  ", false),
        ("Bearer\t", false),
    ];
    let (scheme, scheme_ok) = *u.choose(SCHEMES);
    let value = format!("{scheme}{token}");

    let expected = header_ok && claims_ok && key_ok && scheme_ok && tamper.is_empty();
    let result = authenticator().authenticate(Some(&value), NOW);
    match &result {
        Ok(id) => {
            assert!(expected, "accepted {value:?} (header {header}, claims {payload}, key {key}, tamper {tamper:?}) as {id:?}");
            assert_eq!(id.username, "alice");
            assert_eq!(format!("{:?}", id.issuer), iss);
        }
        Err(e) => {
            assert!(
                !expected,
                "refused {value:?} (header {header}, claims {payload}, key {key}): {e:?}"
            );
            check_refusal(e);
        }
    }
    path_of(&result) << 1 | 1
}

/// Inputs to start from: the valid tokens in raw mode, and a few structured choices.
pub fn token_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = valid_tokens()
        .iter()
        .map(|t| [&[0u8][..], format!("Bearer {t}").as_bytes()].concat())
        .collect();
    // Structured: every choice 0 is the valid one (HS256, no kid, fuzz-a, key A, Bearer).
    seeds.push(vec![1; 1]);
    seeds.push(vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    seeds.push(vec![2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_hmac_matches_known_answers() {
        // RFC 4231 test case 2.
        let mac = hmac::<Sha256>(b"Jefe", b"what do ya want for nothing?", 64);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_valid_tokens_are_accepted_and_signed_by_configured_keys() {
        for t in valid_tokens() {
            assert!(authenticator().authenticate_token(t, NOW).is_ok(), "{t}");
            assert!(signed_by_a_configured_key(t));
        }
        let all_valid = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            structured(&mut Input::new(&all_valid[1..])),
            3,
            "the all-zero structured input is a valid token"
        );
    }
}
