//! Token signing for `custos auth token generate` (the equivalent of `pxctl auth token generate`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::SignError;
use crate::keys::{pem_label, MIN_RSA_BITS};

/// The identity to put in a token: the pxctl `--auth-config` YAML shape.
///
/// ```yaml
/// name: Test
/// email: 123@abc.com
/// roles: ["system.admin"]
/// groups: ["*"]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClaims {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    /// When missing or empty it becomes `base64("openstorage.io/<name>/<email>")`, as upstream.
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub roles: Vec<String>,
    /// Written to the token only when present (as upstream).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// The token id (`jti`), written only when present: `custos auth revoke --jti` names a
    /// token by it. `custos auth token generate` fills in a random one when the file has none.
    #[serde(default)]
    pub jti: Option<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Private key material for signing; the variant fixes the algorithm.
#[derive(Clone)]
pub enum SigningKey {
    /// HS256.
    SharedSecret(Vec<u8>),
    /// RS256; PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, ≥ 2048 bits.
    RsaPem(Vec<u8>),
    /// ES256 for a P-256 key, ES384 for a P-384 key; PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`.
    EcdsaPem(Vec<u8>),
    /// EdDSA; PKCS#8 `PRIVATE KEY`.
    Ed25519Pem(Vec<u8>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            SigningKey::SharedSecret(_) => "SharedSecret",
            SigningKey::RsaPem(_) => "RsaPem",
            SigningKey::EcdsaPem(_) => "EcdsaPem",
            SigningKey::Ed25519Pem(_) => "Ed25519Pem",
        };
        f.debug_tuple(kind).field(&"[redacted]").finish()
    }
}

/// The payload written by [`generate_token`], in upstream's claim set.
#[derive(Serialize)]
struct Payload<'a> {
    sub: &'a str,
    iss: &'a str,
    email: &'a str,
    name: &'a str,
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
}

/// Signs a token for `claims`, issued by `issuer`, valid from `now_unix` for `duration_secs`.
pub fn generate_token(
    claims: &TokenClaims,
    issuer: &str,
    key: &SigningKey,
    duration_secs: u64,
    now_unix: u64,
) -> Result<String, SignError> {
    if issuer.is_empty() {
        return Err(SignError::EmptyIssuer);
    }
    if issuer.contains("http://") || issuer.contains("https://") {
        return Err(SignError::IssuerIsUrl {
            issuer: issuer.to_string(),
        });
    }
    if duration_secs == 0 {
        return Err(SignError::ZeroDuration);
    }
    let exp = now_unix
        .checked_add(duration_secs)
        .filter(|exp| i64::try_from(*exp).is_ok())
        .ok_or(SignError::ExpiryOverflow)?;
    let (alg, encoding_key) = encoding_key(key)?;
    let sub = match claims.sub.as_deref() {
        Some(sub) if !sub.is_empty() => sub.to_string(),
        _ => default_subject(&claims.name, &claims.email),
    };
    let payload = Payload {
        sub: &sub,
        iss: issuer,
        email: &claims.email,
        name: &claims.name,
        roles: &claims.roles,
        groups: claims.groups.as_deref(),
        iat: now_unix,
        exp,
        jti: claims.jti.as_deref().filter(|j| !j.is_empty()),
    };
    jsonwebtoken::encode(&Header::new(alg), &payload, &encoding_key)
        .map_err(|e| SignError::Signing(e.to_string()))
}

/// Upstream's "mostly unique id" for a token without `sub`: `base64("openstorage.io/<name>/<email>")`.
pub fn default_subject(name: &str, email: &str) -> String {
    STANDARD.encode(format!("openstorage.io/{name}/{email}"))
}

/// Parses pxctl's `--token-duration`: `<number><unit>`, unit `s`, `m`, `h`, `d` or `y`
/// (a year is 365 days). Returns seconds; zero is refused.
pub fn parse_duration(s: &str) -> Result<u64, SignError> {
    let bad = || SignError::BadDuration {
        input: s.to_string(),
    };
    let unit_secs: u64 = match s.as_bytes().last() {
        Some(b's') => 1,
        Some(b'm') => 60,
        Some(b'h') => 60 * 60,
        Some(b'd') => 24 * 60 * 60,
        Some(b'y') => 365 * 24 * 60 * 60,
        _ => return Err(bad()),
    };
    let digits = &s[..s.len() - 1]; // the unit is one ASCII byte, so this is a char boundary
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let overflow = || SignError::DurationOverflow {
        input: s.to_string(),
    };
    let n: u64 = digits.parse().map_err(|_| overflow())?;
    let secs = n.checked_mul(unit_secs).ok_or_else(overflow)?;
    if secs == 0 {
        return Err(SignError::ZeroDuration);
    }
    Ok(secs)
}

fn bad_key(expected: &'static str, detail: impl Into<String>) -> SignError {
    SignError::BadKey {
        expected,
        detail: detail.into(),
    }
}

/// Text and PEM label of a private key, with a helpful error for a public key or a certificate.
fn private_pem(raw: &[u8], expected: &'static str) -> Result<(String, String), SignError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| bad_key(expected, "the file is not PEM text"))?
        .trim()
        .to_string();
    let label = pem_label(&text)
        .ok_or_else(|| bad_key(expected, "no PEM block found"))?
        .to_string();
    if !label.contains("PRIVATE KEY") {
        return Err(bad_key(
            expected,
            format!("found a {label:?} PEM block; signing needs the private key"),
        ));
    }
    Ok((text, label))
}

fn encoding_key(key: &SigningKey) -> Result<(Algorithm, EncodingKey), SignError> {
    match key {
        SigningKey::SharedSecret(secret) => {
            if secret.is_empty() {
                return Err(SignError::EmptySecret);
            }
            Ok((Algorithm::HS256, EncodingKey::from_secret(secret)))
        }
        SigningKey::RsaPem(raw) => {
            let (text, label) = private_pem(raw, "RSA")?;
            let key = match label.as_str() {
                "PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs8_pem(&text)
                    .map_err(|e| bad_key("RSA", e.to_string()))?,
                "RSA PRIVATE KEY" => rsa::RsaPrivateKey::from_pkcs1_pem(&text)
                    .map_err(|e| bad_key("RSA", e.to_string()))?,
                other => {
                    return Err(bad_key("RSA", format!("unexpected PEM block {other:?}")));
                }
            };
            let bits = key.n().bits();
            if bits < MIN_RSA_BITS {
                return Err(bad_key(
                    "RSA",
                    format!("the key has {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
            let der = key
                .to_pkcs1_der()
                .map_err(|e| bad_key("RSA", e.to_string()))?;
            Ok((Algorithm::RS256, EncodingKey::from_rsa_der(der.as_bytes())))
        }
        SigningKey::EcdsaPem(raw) => {
            let (text, label) = private_pem(raw, "ECDSA")?;
            let not_ec = || bad_key("ECDSA", "not a P-256 or P-384 private key");
            // jsonwebtoken wants PKCS#8; `openssl ecparam -genkey` writes SEC1, so convert.
            let (alg, der) = match label.as_str() {
                "PRIVATE KEY" => {
                    if let Ok(k) = p256::SecretKey::from_pkcs8_pem(&text) {
                        (Algorithm::ES256, k.to_pkcs8_der())
                    } else if let Ok(k) = p384::SecretKey::from_pkcs8_pem(&text) {
                        (Algorithm::ES384, k.to_pkcs8_der())
                    } else {
                        return Err(not_ec());
                    }
                }
                "EC PRIVATE KEY" => {
                    if let Ok(k) = p256::SecretKey::from_sec1_pem(&text) {
                        (Algorithm::ES256, k.to_pkcs8_der())
                    } else if let Ok(k) = p384::SecretKey::from_sec1_pem(&text) {
                        (Algorithm::ES384, k.to_pkcs8_der())
                    } else {
                        return Err(not_ec());
                    }
                }
                _ => return Err(not_ec()),
            };
            let der = der.map_err(|e| bad_key("ECDSA", e.to_string()))?;
            Ok((alg, EncodingKey::from_ec_der(der.as_bytes())))
        }
        SigningKey::Ed25519Pem(raw) => {
            let (text, _) = private_pem(raw, "Ed25519")?;
            let key = EncodingKey::from_ed_pem(text.as_bytes())
                .map_err(|_| bad_key("Ed25519", "not an Ed25519 private key"))?;
            // The key is only parsed when signing: probe once for a clear error.
            jsonwebtoken::crypto::sign(b"probe", &key, Algorithm::EdDSA)
                .map_err(|_| bad_key("Ed25519", "not an Ed25519 private key"))?;
            Ok((Algorithm::EdDSA, key))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_pxctl() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("1y"), Ok(365 * 86_400));
        assert_eq!(parse_duration("007d"), Ok(7 * 86_400));
        for bad in [
            "", "s", "1", "1w", "1D", " 1d", "1d ", "-1d", "+1d", "1.5h", "1h30m", "d1", "1é",
            "１d",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(SignError::BadDuration { .. })),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(parse_duration("0s"), Err(SignError::ZeroDuration));
        assert!(matches!(
            parse_duration("99999999999999999999y"),
            Err(SignError::DurationOverflow { .. })
        ));
        assert!(matches!(
            parse_duration("999999999999999999y"),
            Err(SignError::DurationOverflow { .. })
        ));
    }

    #[test]
    fn default_subject_is_upstreams() {
        // base64("openstorage.io/Test/123@abc.com")
        assert_eq!(
            default_subject("Test", "123@abc.com"),
            "b3BlbnN0b3JhZ2UuaW8vVGVzdC8xMjNAYWJjLmNvbQ=="
        );
    }

    #[test]
    fn signing_keys_do_not_print_their_material() {
        let k = SigningKey::SharedSecret(b"super-secret".to_vec());
        assert_eq!(format!("{k:?}"), r#"SharedSecret("[redacted]")"#);
    }
}
