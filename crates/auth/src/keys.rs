//! Loading verification keys from files or environment variables, and the algorithms each key accepts.

use std::ffi::OsString;

use jsonwebtoken::{Algorithm, DecodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::DecodePublicKey as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::traits::PublicKeyParts as _;

use crate::config::{KeyKind, KeySource};
use crate::error::KeyError;

/// RSA keys smaller than this are refused, for verifying and for signing.
pub const MIN_RSA_BITS: usize = 2048;

const HMAC_ALGS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
// PS256/384/512 are deliberately absent: upstream accepts only the RS* family for RSA keys.
pub(crate) const RSA_ALGS: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
pub(crate) const P256_ALGS: &[Algorithm] = &[Algorithm::ES256];
pub(crate) const P384_ALGS: &[Algorithm] = &[Algorithm::ES384];
pub(crate) const ED_ALGS: &[Algorithm] = &[Algorithm::EdDSA];

/// A loaded verification key, pinned to the algorithms of its family (and curve).
#[derive(Debug)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub algs: &'static [Algorithm],
    pub key: DecodingKey,
}

/// Reads the raw bytes of a key source: exactly one of `file` and `env`.
pub(crate) fn read_source(
    src: &KeySource,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Vec<u8>, KeyError> {
    match (&src.file, &src.env) {
        (Some(_), Some(_)) => Err(KeyError::BothSources),
        (None, None) => Err(KeyError::NoSource),
        (Some(path), None) => std::fs::read(path).map_err(|source| KeyError::ReadFile {
            path: path.clone(),
            source,
        }),
        (None, Some(var)) => env(var)
            .map(OsString::into_encoded_bytes)
            .ok_or_else(|| KeyError::EnvNotSet { var: var.clone() }),
    }
}

/// Loads one verification key.
pub(crate) fn load(
    src: &KeySource,
    min_secret_bytes: usize,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<VerifyKey, KeyError> {
    if src.kid.as_deref() == Some("") {
        return Err(KeyError::EmptyKid);
    }
    let raw = read_source(src, env)?;
    let (algs, key) = match src.kind {
        KeyKind::Hmac => {
            let secret = trim_trailing_whitespace(&raw);
            if secret.is_empty() {
                return Err(KeyError::EmptySecret);
            }
            if secret.len() < min_secret_bytes {
                return Err(KeyError::WeakSecret {
                    len: secret.len(),
                    min: min_secret_bytes,
                });
            }
            (HMAC_ALGS, DecodingKey::from_secret(secret))
        }
        KeyKind::Rsa => (RSA_ALGS, rsa_public(&raw)?),
        KeyKind::Ecdsa => ec_public(&raw)?,
        KeyKind::Ed25519 => (ED_ALGS, ed_public(&raw)?),
    };
    Ok(VerifyKey {
        kid: src.kid.clone(),
        algs,
        key,
    })
}

/// `echo secret > file` leaves a newline that is not part of the secret. Trailing ASCII
/// whitespace is dropped, the same rule as `custos auth token generate --shared-secret-file`.
fn trim_trailing_whitespace(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 0 && raw[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &raw[..end]
}

/// The label of the first PEM block (`PUBLIC KEY`, `RSA PRIVATE KEY`, ...), if any.
pub(crate) fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(&text[start..start + len])
}

/// Text of a PEM public key, with a helpful error for the usual mistakes.
fn public_pem<'a>(raw: &'a [u8], expected: &'static str) -> Result<(&'a str, &'a str), KeyError> {
    let bad = |detail: &str| KeyError::BadPem {
        expected,
        detail: detail.to_string(),
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| bad("the file is not PEM text"))?
        .trim();
    let label = pem_label(text).ok_or_else(|| bad("no PEM block found"))?;
    if label.contains("PRIVATE KEY") {
        return Err(bad(
            "this is a private key; configure the public key instead (openssl pkey -in key.pem -pubout)",
        ));
    }
    if label == "CERTIFICATE" {
        return Err(bad(
            "certificates are not accepted; extract the public key (openssl x509 -in cert.pem -pubkey -noout)",
        ));
    }
    Ok((text, label))
}

fn rsa_public(raw: &[u8]) -> Result<DecodingKey, KeyError> {
    let bad = |detail: String| KeyError::BadPem {
        expected: "RSA",
        detail,
    };
    let (text, label) = public_pem(raw, "RSA")?;
    let key = match label {
        "PUBLIC KEY" => {
            rsa::RsaPublicKey::from_public_key_pem(text).map_err(|e| bad(e.to_string()))
        }
        "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_pem(text).map_err(|e| bad(e.to_string())),
        other => Err(bad(format!("unexpected PEM block {other:?}"))),
    }?;
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall {
            bits,
            min: MIN_RSA_BITS,
        });
    }
    Ok(DecodingKey::from_rsa_raw_components(
        &key.n().to_bytes_be(),
        &key.e().to_bytes_be(),
    ))
}

fn ec_public(raw: &[u8]) -> Result<(&'static [Algorithm], DecodingKey), KeyError> {
    let (text, label) = public_pem(raw, "ECDSA")?;
    let bad = |detail: &str| KeyError::BadPem {
        expected: "ECDSA",
        detail: detail.to_string(),
    };
    if label != "PUBLIC KEY" {
        return Err(bad(&format!("unexpected PEM block {label:?}")));
    }
    // jsonwebtoken's EC verifier takes the SEC1 point (`from_ec_der` is a misnomer).
    if let Ok(key) = p256::PublicKey::from_public_key_pem(text) {
        let point = key.to_encoded_point(false);
        return Ok((P256_ALGS, DecodingKey::from_ec_der(point.as_bytes())));
    }
    if let Ok(key) = p384::PublicKey::from_public_key_pem(text) {
        let point = key.to_encoded_point(false);
        return Ok((P384_ALGS, DecodingKey::from_ec_der(point.as_bytes())));
    }
    Err(bad(
        "not a P-256 or P-384 public key (only ES256 and ES384 are supported)",
    ))
}

fn ed_public(raw: &[u8]) -> Result<DecodingKey, KeyError> {
    let (text, _) = public_pem(raw, "Ed25519")?;
    let bad = |detail: &str| KeyError::BadPem {
        expected: "Ed25519",
        detail: detail.to_string(),
    };
    let key =
        DecodingKey::from_ed_pem(text.as_bytes()).map_err(|_| bad("not an Ed25519 public key"))?;
    check_ed25519(&key).map_err(bad)?;
    Ok(key)
}

/// Whether an Ed25519 key (its raw 32 bytes) is usable, checked once at load time.
pub(crate) fn check_ed25519(key: &DecodingKey) -> Result<(), &'static str> {
    // jsonwebtoken's EdDSA verifier slices the first 32 bytes without checking the length
    // (it would panic on a shorter key), so the length is checked here, once, at load time.
    if key.as_bytes().len() != 32 {
        return Err("an Ed25519 public key is 32 bytes");
    }
    // Building the verifier decompresses the point: an invalid point fails here, not per request.
    jsonwebtoken::crypto::verify("", b"", key, Algorithm::EdDSA)
        .map_err(|_| "not a valid Ed25519 point")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_labels() {
        assert_eq!(
            pem_label("-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----"),
            Some("PUBLIC KEY")
        );
        assert_eq!(pem_label("junk"), None);
        assert_eq!(pem_label("-----BEGIN oops"), None);
    }

    #[test]
    fn trailing_whitespace_is_not_part_of_the_secret() {
        assert_eq!(trim_trailing_whitespace(b"abc\r\n\n"), b"abc");
        assert_eq!(trim_trailing_whitespace(b"abc \t\n"), b"abc");
        assert_eq!(trim_trailing_whitespace(b"\n"), b"");
        assert_eq!(trim_trailing_whitespace(b"a\nb "), b"a\nb");
        assert_eq!(trim_trailing_whitespace(b" a"), b" a");
    }
}
