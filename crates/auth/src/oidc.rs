//! OpenID provider issuers: reading a provider's discovery document and key set (JWKS), and the
//! shared key set the authenticator checks that issuer's tokens with, replaced whole on rotation.
//!
//! Nothing here touches the network: the server fetches the documents (`crates/server/src/oidc.rs`),
//! passes them through [`parse_discovery`] and [`parse_jwks`], and installs the result with
//! [`OidcKeys::install`]. The same strength rules as for configured keys apply (RSA ≥
//! [`crate::MIN_RSA_BITS`] bits, ECDSA on P-256 or P-384, Ed25519); symmetric (`oct`) keys,
//! encryption keys and unknown key types are skipped, each with a note for the log.
//!
//! A token whose `kid` the key set lacks is refused at once and calls the hook given to
//! [`OidcKeys::new`]; the server's fetcher decides, rate-limited, whether to fetch again.

use std::fmt;
use std::sync::{Arc, RwLock};

use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::OidcDocError;
use crate::keys::{self, VerifyKey, ED_ALGS, MIN_RSA_BITS, P256_ALGS, P384_ALGS, RSA_ALGS};

/// Entries of a key set's `keys` array read at most; a larger set is refused whole.
pub const MAX_JWKS_KEYS: usize = 100;

/// base64url, padded or not (RFC 7518 says unpadded; a padded value is not worth a refusal).
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `jwks_uri` of a discovery document, after checking that the document names `issuer`
/// exactly (OpenID Connect Discovery §4.3) and that the key set is served over HTTPS.
pub fn parse_discovery(body: &[u8], issuer: &str) -> Result<String, OidcDocError> {
    let doc = json_object(body)?;
    let found = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if found != issuer {
        return Err(OidcDocError::IssuerMismatch {
            expected: issuer.to_string(),
            found: found.to_string(),
        });
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or(OidcDocError::NoJwksUri)?;
    if !uri.starts_with("https://") {
        return Err(OidcDocError::JwksUriNotHttps(uri.to_string()));
    }
    Ok(uri.to_string())
}

/// The usable keys of a JWKS document, in document order, and a note for each key skipped.
pub struct Jwks {
    keys: Vec<VerifyKey>,
    digest: [u8; 32],
    skipped: Vec<String>,
}

impl Jwks {
    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid` of each usable key (none for a key without one).
    pub fn kids(&self) -> Vec<Option<&str>> {
        self.keys.iter().map(|k| k.kid.as_deref()).collect()
    }

    /// Why each skipped key was skipped (its position and `kid`, never key material).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("kids", &self.kids())
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Reads a JWKS document (RFC 7517 §5). A document that is not a JSON object with a `keys`
/// array is an error; a key that is unusable is skipped with a note.
pub fn parse_jwks(body: &[u8]) -> Result<Jwks, OidcDocError> {
    let doc = json_object(body)?;
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(OidcDocError::NoKeysArray)?;
    if entries.len() > MAX_JWKS_KEYS {
        return Err(OidcDocError::TooManyKeys {
            count: entries.len(),
            max: MAX_JWKS_KEYS,
        });
    }
    let mut keys: Vec<VerifyKey> = Vec::new();
    let mut skipped = Vec::new();
    let mut digest = Sha256::new();
    for (i, entry) in entries.iter().enumerate() {
        let label = match entry.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key #{i} (kid {kid:?})"),
            None => format!("key #{i}"),
        };
        let key = match entry.as_object() {
            Some(jwk) => parse_jwk(jwk),
            None => Err("not a JSON object".to_string()),
        };
        match key {
            Ok(key) => {
                if let Some(kid) = &key.kid {
                    if keys.iter().any(|k| k.kid.as_ref() == Some(kid)) {
                        skipped.push(format!("{label}: a key with this kid came earlier"));
                        continue;
                    }
                }
                // What identifies the key: its id, type and public parameters.
                let identity: Vec<&Value> = ["kid", "kty", "crv", "alg", "n", "e", "x", "y"]
                    .iter()
                    .map(|f| entry.get(*f).unwrap_or(&Value::Null))
                    .collect();
                digest.update(serde_json::to_vec(&identity).unwrap_or_default());
                digest.update(b"\n");
                keys.push(key);
            }
            Err(why) => skipped.push(format!("{label}: {why}")),
        }
    }
    Ok(Jwks {
        keys,
        digest: digest.finalize().into(),
        skipped,
    })
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, OidcDocError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(OidcDocError::NotJson("not an object".into())),
        Err(e) => Err(OidcDocError::NotJson(e.to_string())),
    }
}

/// One JWK as a verification key, or why it is not used.
fn parse_jwk(jwk: &Map<String, Value>) -> Result<VerifyKey, String> {
    let text = |name: &str| -> Result<Option<&str>, String> {
        match jwk.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{name}` is not a string")),
        }
    };
    if let Some(usage) = text("use")? {
        if usage != "sig" {
            return Err(format!("use {usage:?} (only signature keys are used)"));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    let kid = match text("kid")? {
        Some("") => return Err("empty kid".into()),
        kid => kid.map(str::to_string),
    };
    let component = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("no `{name}`"))?;
        B64.decode(value)
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    let kty = text("kty")?.ok_or("no kty")?;
    let (family, key): (&'static [Algorithm], DecodingKey) = match kty {
        "RSA" => {
            let (n, e) = (component("n")?, component("e")?);
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| format!("not a usable RSA key: {e}"))?;
            let bits = key.n().bits();
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                ));
            }
            (
                RSA_ALGS,
                DecodingKey::from_rsa_raw_components(
                    &key.n().to_bytes_be(),
                    &key.e().to_bytes_be(),
                ),
            )
        }
        "EC" => {
            let (x, y) = (component("x")?, component("y")?);
            let mut sec1 = Vec::with_capacity(1 + x.len() + y.len());
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let bad = |crv: &str| format!("not a valid {crv} point");
            // jsonwebtoken's EC verifier takes the SEC1 point; the curve check makes sure the
            // point is on the named curve before any token is checked with it.
            match text("crv")? {
                Some("P-256") if x.len() == 32 && y.len() == 32 => {
                    let point = p256::PublicKey::from_sec1_bytes(&sec1)
                        .map_err(|_| bad("P-256"))?
                        .to_encoded_point(false);
                    (P256_ALGS, DecodingKey::from_ec_der(point.as_bytes()))
                }
                Some("P-384") if x.len() == 48 && y.len() == 48 => {
                    let point = p384::PublicKey::from_sec1_bytes(&sec1)
                        .map_err(|_| bad("P-384"))?
                        .to_encoded_point(false);
                    (P384_ALGS, DecodingKey::from_ec_der(point.as_bytes()))
                }
                Some(crv @ ("P-256" | "P-384")) => return Err(bad(crv)),
                other => {
                    return Err(format!(
                        "EC curve {other:?} (only P-256 and P-384 are supported)"
                    ))
                }
            }
        }
        "OKP" => match text("crv")? {
            Some("Ed25519") => {
                let key = DecodingKey::from_ed_der(&component("x")?);
                keys::check_ed25519(&key)?;
                (ED_ALGS, key)
            }
            other => return Err(format!("OKP curve {other:?} (only Ed25519 is supported)")),
        },
        "oct" => return Err("symmetric keys are never taken from a key set".into()),
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let algs = match text("alg")? {
        None => family,
        Some(alg) => {
            let one = single_alg(alg).ok_or_else(|| format!("unsupported alg {alg:?}"))?;
            if !family.contains(&one[0]) {
                return Err(format!("alg {alg:?} does not fit a {kty} key"));
            }
            one
        }
    };
    Ok(VerifyKey { kid, algs, key })
}

/// The one algorithm a JWK's `alg` pins it to.
fn single_alg(alg: &str) -> Option<&'static [Algorithm]> {
    Some(match alg {
        "RS256" => &[Algorithm::RS256],
        "RS384" => &[Algorithm::RS384],
        "RS512" => &[Algorithm::RS512],
        "ES256" => &[Algorithm::ES256],
        "ES384" => &[Algorithm::ES384],
        "EdDSA" => &[Algorithm::EdDSA],
        _ => return None,
    })
}

/// The keys of one OpenID provider as verified against now: the current set and its generation
/// (0 before any set was installed; each install that changes the keys adds one).
pub(crate) struct KeySet {
    pub keys: Vec<VerifyKey>,
    pub generation: u64,
    digest: Option<[u8; 32]>,
}

/// The key set of one OpenID provider issuer, shared by the authenticator (which reads it on
/// every verification) and the server's fetcher (which replaces it). It outlives an
/// authenticator: a reload (SIGHUP) keeps the keys of an issuer whose settings did not change.
pub struct OidcKeys {
    issuer: String,
    set: RwLock<Arc<KeySet>>,
    on_unknown_kid: Box<dyn Fn() + Send + Sync>,
}

impl fmt::Debug for OidcKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.snapshot();
        f.debug_struct("OidcKeys")
            .field("issuer", &self.issuer)
            .field("keys", &set.keys.len())
            .field("generation", &set.generation)
            .finish()
    }
}

impl OidcKeys {
    /// An empty key set for `issuer` (its tokens are refused until a set is installed).
    /// `on_unknown_kid` runs, on the request's thread, whenever a token of this issuer names a
    /// `kid` the set lacks or arrives before any set was installed: it must return at once.
    pub fn new(
        issuer: impl Into<String>,
        on_unknown_kid: impl Fn() + Send + Sync + 'static,
    ) -> Arc<OidcKeys> {
        Arc::new(OidcKeys {
            issuer: issuer.into(),
            set: RwLock::new(Arc::new(KeySet {
                keys: Vec::new(),
                generation: 0,
                digest: None,
            })),
            on_unknown_kid: Box::new(on_unknown_kid),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Puts `jwks` in force. Returns whether the keys changed; when they did, every token of
    /// this issuer that was verified before is verified again at its next use, so a key that
    /// left the set stops verifying cached tokens too.
    pub fn install(&self, jwks: Jwks) -> bool {
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        if set.digest == Some(jwks.digest) {
            return false;
        }
        *set = Arc::new(KeySet {
            keys: jwks.keys,
            generation: set.generation + 1,
            digest: Some(jwks.digest),
        });
        true
    }

    /// Puts the set `previous` holds in force here: for an issuer whose settings changed on
    /// a reload, whose fetcher starts afresh, so its tokens keep verifying meanwhile.
    pub fn carry_over(&self, previous: &OidcKeys) {
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = previous.snapshot();
    }

    /// How many keys are in force.
    pub fn len(&self) -> usize {
        self.snapshot().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a key set was ever installed.
    pub fn loaded(&self) -> bool {
        self.generation() > 0
    }

    /// The generation of the set in force (0: none installed yet).
    pub fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn unknown_kid(&self) {
        (self.on_unknown_kid)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::pkcs8::DecodePublicKey as _;
    use serde_json::json;

    fn key_text(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The JWK of a test RSA public key (`rsa-a.pub.pem`, ...).
    pub(crate) fn rsa_jwk(file: &str, kid: &str) -> Value {
        let key = rsa::RsaPublicKey::from_public_key_pem(&key_text(file)).unwrap();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
    }

    pub(crate) fn p256_jwk(file: &str, kid: &str) -> Value {
        let key = p256::PublicKey::from_public_key_pem(&key_text(file)).unwrap();
        let point = key.to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "kid": kid,
               "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
    }

    fn p384_jwk(file: &str, kid: &str) -> Value {
        let key = p384::PublicKey::from_public_key_pem(&key_text(file)).unwrap();
        let point = key.to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-384", "kid": kid,
               "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
    }

    fn ed_jwk(file: &str, kid: &str) -> Value {
        let key = DecodingKey::from_ed_pem(key_text(file).as_bytes()).unwrap();
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(key.as_bytes())})
    }

    fn set(keys: &[Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn every_supported_family_is_read_with_its_algorithms() {
        let jwks = parse_jwks(&set(&[
            rsa_jwk("rsa-a.pub.pem", "r"),
            p256_jwk("p256-a.pub.pem", "p256"),
            p384_jwk("p384-a.pub.pem", "p384"),
            ed_jwk("ed25519-a.pub.pem", "ed"),
        ]))
        .unwrap();
        assert_eq!(jwks.skipped(), &[] as &[String]);
        assert_eq!(
            jwks.kids(),
            vec![Some("r"), Some("p256"), Some("p384"), Some("ed")]
        );
        let algs: Vec<_> = jwks.keys.iter().map(|k| k.algs).collect();
        // The RSA key's `alg` pins it to RS256.
        assert_eq!(
            algs,
            vec![&[Algorithm::RS256][..], P256_ALGS, P384_ALGS, ED_ALGS]
        );
    }

    #[test]
    fn weak_symmetric_encryption_and_unknown_keys_are_skipped_with_a_note() {
        let mut enc = rsa_jwk("rsa-b.pub.pem", "enc");
        enc["use"] = json!("enc");
        let mut wrong_alg = p256_jwk("p256-b.pub.pem", "wrong-alg");
        wrong_alg["alg"] = json!("RS256");
        let mut not_verify = p256_jwk("p256-b.pub.pem", "sign-only");
        not_verify["key_ops"] = json!(["sign"]);
        let mut off_curve = p256_jwk("p256-a.pub.pem", "off-curve");
        off_curve["y"] = off_curve["x"].clone();
        let jwks = parse_jwks(&set(&[
            rsa_jwk("rsa-1024.pub.pem", "small"),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            enc,
            json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AA"}),
            json!({"kty": "OKP", "crv": "Ed25519", "kid": "short-ed", "x": "AAAA"}),
            json!({"kty": "PQ", "kid": "future"}),
            json!({"kid": "no-kty"}),
            json!("not an object"),
            wrong_alg,
            not_verify,
            off_curve,
            rsa_jwk("rsa-a.pub.pem", "good"),
        ]))
        .unwrap();
        assert_eq!(jwks.kids(), vec![Some("good")]);
        let notes = jwks.skipped().join("\n");
        for expected in [
            "kid \"small\"): the RSA key has 1024 bits; at least 2048 are required",
            "kid \"hmac\"): symmetric keys are never taken from a key set",
            "kid \"enc\"): use \"enc\"",
            "kid \"p521\"): EC curve Some(\"P-521\")",
            "kid \"x25519\"): OKP curve Some(\"X25519\")",
            "kid \"short-ed\"): an Ed25519 public key is 32 bytes",
            "kid \"future\"): unsupported kty \"PQ\"",
            "kid \"no-kty\"): no kty",
            "key #8: not a JSON object",
            "kid \"wrong-alg\"): alg \"RS256\" does not fit a EC key",
            "kid \"sign-only\"): key_ops does not include",
            "kid \"off-curve\"): not a valid P-256 point",
        ] {
            assert!(notes.contains(expected), "no {expected:?} in\n{notes}");
        }
        assert_eq!(jwks.skipped().len(), 12);
        // Notes name keys, never their material.
        assert!(!notes.contains("c2VjcmV0"), "{notes}");
    }

    #[test]
    fn documents_that_are_not_key_sets_are_errors() {
        assert!(matches!(
            parse_jwks(b"not json"),
            Err(OidcDocError::NotJson(_))
        ));
        assert!(matches!(parse_jwks(b"[]"), Err(OidcDocError::NotJson(_))));
        assert_eq!(
            parse_jwks(br#"{"keys": {}}"#).unwrap_err(),
            OidcDocError::NoKeysArray
        );
        let many: Vec<Value> = (0..=MAX_JWKS_KEYS).map(|_| json!({})).collect();
        assert_eq!(
            parse_jwks(&set(&many)).unwrap_err(),
            OidcDocError::TooManyKeys {
                count: MAX_JWKS_KEYS + 1,
                max: MAX_JWKS_KEYS
            }
        );
        assert!(parse_jwks(br#"{"keys": []}"#).unwrap().is_empty());
    }

    #[test]
    fn a_repeated_kid_keeps_the_first_key() {
        let jwks = parse_jwks(&set(&[
            rsa_jwk("rsa-a.pub.pem", "k"),
            rsa_jwk("rsa-b.pub.pem", "k"),
        ]))
        .unwrap();
        assert_eq!(jwks.len(), 1);
        assert!(jwks.skipped()[0].contains("came earlier"));
    }

    #[test]
    fn discovery_must_name_the_issuer_and_an_https_key_set() {
        let doc = |issuer: &str, jwks: &str| {
            serde_json::to_vec(&json!({"issuer": issuer, "jwks_uri": jwks})).unwrap()
        };
        assert_eq!(
            parse_discovery(&doc("https://idp", "https://idp/jwks"), "https://idp").unwrap(),
            "https://idp/jwks"
        );
        assert_eq!(
            parse_discovery(&doc("https://idp/", "https://idp/jwks"), "https://idp").unwrap_err(),
            OidcDocError::IssuerMismatch {
                expected: "https://idp".into(),
                found: "https://idp/".into()
            }
        );
        assert_eq!(
            parse_discovery(&doc("https://idp", "http://idp/jwks"), "https://idp").unwrap_err(),
            OidcDocError::JwksUriNotHttps("http://idp/jwks".into())
        );
        assert_eq!(
            parse_discovery(br#"{"issuer": "https://idp"}"#, "https://idp").unwrap_err(),
            OidcDocError::NoJwksUri
        );
    }

    #[test]
    fn installing_the_same_keys_again_keeps_the_generation() {
        let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hook = fired.clone();
        let keys = OidcKeys::new("https://idp", move || {
            hook.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(!keys.loaded());
        let a = || parse_jwks(&set(&[rsa_jwk("rsa-a.pub.pem", "a")])).unwrap();
        assert!(keys.install(a()));
        assert_eq!((keys.generation(), keys.len()), (1, 1));
        assert!(!keys.install(a()), "an unchanged set is not a rotation");
        assert_eq!(keys.generation(), 1);
        let ab = parse_jwks(&set(&[
            rsa_jwk("rsa-a.pub.pem", "a"),
            rsa_jwk("rsa-b.pub.pem", "b"),
        ]))
        .unwrap();
        assert!(keys.install(ab));
        assert_eq!((keys.generation(), keys.len()), (2, 2));
        // Same kid, other key material: a change.
        assert!(keys.install(parse_jwks(&set(&[rsa_jwk("rsa-b.pub.pem", "a")])).unwrap()));
        assert_eq!(keys.generation(), 3);
        keys.unknown_kid();
        assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    // The authenticator with an OpenID provider issuer: kid selection, the audience, the
    // unknown-kid hook and the verified-token cache across rotations.

    use crate::config::{AuthConfig, IssuerConfig, OidcConfig};
    use crate::Authenticator;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const ISS: &str = "https://idp.test";
    const NOW: u64 = 1_700_000_000;

    struct Fixture {
        auth: Authenticator,
        keys: Arc<OidcKeys>,
        unknown: Arc<AtomicUsize>,
    }

    fn fixture(namespace: Option<&str>) -> Fixture {
        let cfg = AuthConfig {
            issuers: vec![IssuerConfig {
                name: ISS.into(),
                custom_claim_namespace: namespace.map(str::to_string),
                keys: vec![],
                oidc: Some(OidcConfig {
                    audience: "custos".into(),
                    ca_file: None,
                    refresh_secs: 3600,
                    min_refetch_interval_secs: 30,
                }),
            }],
            ..AuthConfig::default()
        };
        let unknown = Arc::new(AtomicUsize::new(0));
        let hook = unknown.clone();
        let keys = OidcKeys::new(ISS, move || {
            hook.fetch_add(1, Ordering::SeqCst);
        });
        let shared = keys.clone();
        let auth = Authenticator::from_config_with(&cfg, &|_| None, &mut |name, oc| {
            assert_eq!((name, oc.audience.as_str()), (ISS, "custos"));
            shared.clone()
        })
        .unwrap();
        Fixture {
            auth,
            keys,
            unknown,
        }
    }

    fn token(signer: &str, kid: Option<&str>, claims: Value) -> String {
        let (alg, key) = match signer {
            "rsa-a" | "rsa-b" => (
                Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(
                    key_text(&format!("{signer}.key.pem")).as_bytes(),
                )
                .unwrap(),
            ),
            "p256-a" => (
                Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_pem(key_text("p256-a.key.pem").as_bytes())
                    .unwrap(),
            ),
            other => panic!("no signer {other}"),
        };
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn claims(aud: Value) -> Value {
        json!({"iss": ISS, "sub": "client-1", "aud": aud, "exp": NOW + 600, "iat": NOW - 5,
               "name": "Alice", "email": "alice@example.com", "roles": ["system.admin"]})
    }

    fn reason(f: &Fixture, token: &str) -> &'static str {
        f.auth.authenticate_token(token, NOW).unwrap_err().reason
    }

    #[test]
    fn tokens_are_refused_until_a_key_set_arrives_and_each_refusal_tells_the_fetcher() {
        let f = fixture(None);
        let t = token("rsa-a", Some("a"), claims(json!("custos")));
        assert_eq!(reason(&f, &t), "keys_not_loaded");
        assert_eq!(
            f.auth.authenticate_token(&t, NOW).unwrap_err().message,
            crate::error::MSG_UNABLE_TO_AUTHENTICATE
        );
        assert_eq!(f.unknown.load(Ordering::SeqCst), 2);
        f.keys
            .install(parse_jwks(&set(&[rsa_jwk("rsa-a.pub.pem", "a")])).unwrap());
        let id = f.auth.authenticate_token(&t, NOW).unwrap();
        assert_eq!(
            (
                id.username.as_str(),
                id.issuer.as_str(),
                id.roles.as_slice()
            ),
            ("client-1", ISS, &["system.admin".to_string()][..])
        );
        assert_eq!(f.unknown.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn keys_are_selected_by_kid_and_an_unknown_kid_is_refused_and_reported() {
        let f = fixture(None);
        f.keys.install(
            parse_jwks(&set(&[
                rsa_jwk("rsa-a.pub.pem", "a"),
                rsa_jwk("rsa-b.pub.pem", "b"),
                p256_jwk("p256-a.pub.pem", "ec"),
            ]))
            .unwrap(),
        );
        let aud = || claims(json!("custos"));
        f.auth
            .authenticate_token(&token("rsa-a", Some("a"), aud()), NOW)
            .unwrap();
        f.auth
            .authenticate_token(&token("rsa-b", Some("b"), aud()), NOW)
            .unwrap();
        f.auth
            .authenticate_token(&token("p256-a", Some("ec"), aud()), NOW)
            .unwrap();
        // Without a kid, every key of the family is tried.
        f.auth
            .authenticate_token(&token("rsa-b", None, aud()), NOW)
            .unwrap();
        assert_eq!(f.unknown.load(Ordering::SeqCst), 0);
        // A kid naming another key of the set: the named key only.
        assert_eq!(
            reason(&f, &token("rsa-a", Some("b"), aud())),
            "bad_signature"
        );
        assert_eq!(
            reason(&f, &token("rsa-a", Some("ec"), aud())),
            "kid_not_found"
        );
        assert_eq!(f.unknown.load(Ordering::SeqCst), 0);
        assert_eq!(
            reason(&f, &token("rsa-a", Some("made-up"), aud())),
            "kid_not_found"
        );
        assert_eq!(f.unknown.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_audience_must_be_named() {
        let f = fixture(None);
        f.keys
            .install(parse_jwks(&set(&[rsa_jwk("rsa-a.pub.pem", "a")])).unwrap());
        let t = |aud: Value| token("rsa-a", Some("a"), claims(aud));
        f.auth
            .authenticate_token(&t(json!(["other", "custos"])), NOW)
            .unwrap();
        for aud in [
            json!("other"),
            json!(["other"]),
            json!([]),
            json!("custos2"),
            json!(null),
            json!(7),
        ] {
            let err = f.auth.authenticate_token(&t(aud.clone()), NOW).unwrap_err();
            assert_eq!(
                (err.reason, err.kind, err.message.as_str()),
                (
                    "wrong_audience",
                    crate::AuthErrorKind::PermissionDenied,
                    crate::error::MSG_UNABLE_TO_AUTHENTICATE
                ),
                "aud {aud}"
            );
        }
        let mut no_aud = claims(json!("custos"));
        no_aud.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            reason(&f, &token("rsa-a", Some("a"), no_aud)),
            "wrong_audience"
        );
    }

    #[test]
    fn namespaced_claims_work_as_for_configured_issuers() {
        let f = fixture(Some("https://custos.example/"));
        f.keys
            .install(parse_jwks(&set(&[rsa_jwk("rsa-a.pub.pem", "a")])).unwrap());
        let mut c = claims(json!("custos"));
        c["https://custos.example/roles"] = json!(["system.view"]);
        c["https://custos.example/groups"] = json!(["ops"]);
        let id = f
            .auth
            .authenticate_token(&token("rsa-a", Some("a"), c), NOW)
            .unwrap();
        assert_eq!(id.roles, vec!["system.view".to_string()]);
        assert_eq!(id.groups, vec!["ops".to_string()]);
    }

    #[test]
    fn a_key_leaving_the_set_stops_verifying_cached_tokens() {
        let f = fixture(None);
        f.keys
            .install(parse_jwks(&set(&[rsa_jwk("rsa-a.pub.pem", "a")])).unwrap());
        let old = token("rsa-a", Some("a"), claims(json!("custos")));
        let new = token("rsa-b", Some("b"), claims(json!("custos")));
        f.auth.authenticate_token(&old, NOW).unwrap();
        assert_eq!(f.auth.cached_tokens(), 1);
        // Rotation, step 1: the new key is published beside the old one. Both verify; the
        // old token is checked again (another generation) and stays good.
        f.keys.install(
            parse_jwks(&set(&[
                rsa_jwk("rsa-b.pub.pem", "b"),
                rsa_jwk("rsa-a.pub.pem", "a"),
            ]))
            .unwrap(),
        );
        f.auth.authenticate_token(&old, NOW).unwrap();
        f.auth.authenticate_token(&new, NOW).unwrap();
        // The same set fetched again changes nothing: cached tokens stay cached.
        assert!(!f.keys.install(
            parse_jwks(&set(&[
                rsa_jwk("rsa-b.pub.pem", "b"),
                rsa_jwk("rsa-a.pub.pem", "a"),
            ]))
            .unwrap()
        ));
        f.auth.authenticate_token(&old, NOW).unwrap();
        // Step 2: only the new key. The old token was in the cache; it is refused now.
        f.keys
            .install(parse_jwks(&set(&[rsa_jwk("rsa-b.pub.pem", "b")])).unwrap());
        assert_eq!(reason(&f, &old), "kid_not_found");
        f.auth.authenticate_token(&new, NOW).unwrap();
        // The same kid with other material (a provider reusing a kid): refused as well.
        f.keys
            .install(parse_jwks(&set(&[rsa_jwk("rsa-a.pub.pem", "b")])).unwrap());
        assert_eq!(reason(&f, &new), "bad_signature");
    }

    #[test]
    fn oidc_issuers_are_checked_when_configured() {
        let base = |name: &str, oidc: OidcConfig, keys: Vec<crate::KeySource>| AuthConfig {
            issuers: vec![IssuerConfig {
                name: name.into(),
                custom_claim_namespace: None,
                keys,
                oidc: Some(oidc),
            }],
            ..AuthConfig::default()
        };
        let good = OidcConfig {
            audience: "custos".into(),
            ca_file: None,
            refresh_secs: 60,
            min_refetch_interval_secs: 5,
        };
        let err = |cfg: AuthConfig| Authenticator::from_config(&cfg).unwrap_err().to_string();
        Authenticator::from_config(&base(ISS, good.clone(), vec![])).unwrap();
        assert!(err(base("http://idp.test", good.clone(), vec![])).contains("https:// issuer URL"));
        assert!(err(base("idp.test", good.clone(), vec![])).contains("https:// issuer URL"));
        assert!(err(base(
            ISS,
            OidcConfig {
                audience: String::new(),
                ..good.clone()
            },
            vec![]
        ))
        .contains("oidc.audience must not be empty"));
        assert!(err(base(
            ISS,
            OidcConfig {
                min_refetch_interval_secs: 0,
                ..good.clone()
            },
            vec![]
        ))
        .contains("oidc.min_refetch_interval_secs must be greater than zero"));
        let key = crate::KeySource {
            kid: None,
            kind: crate::KeyKind::Hmac,
            file: None,
            env: Some("X".into()),
        };
        assert!(err(base(ISS, good, vec![key])).contains("set `keys` or `oidc`, not both"));
    }

    #[test]
    fn the_oidc_table_reads_from_toml_with_defaults_and_refuses_unknown_fields() {
        let cfg: AuthConfig = toml::from_str(
            "[[issuers]]\nname = \"https://idp.test\"\noidc = { audience = \"custos\", ca_file = \"/ca.pem\" }\n",
        )
        .unwrap();
        let oidc = cfg.issuers[0].oidc.clone().unwrap();
        assert_eq!(
            oidc,
            OidcConfig {
                audience: "custos".into(),
                ca_file: Some("/ca.pem".into()),
                refresh_secs: crate::config::DEFAULT_OIDC_REFRESH_SECS,
                min_refetch_interval_secs: crate::config::DEFAULT_OIDC_MIN_REFETCH_SECS,
            }
        );
        let typo = toml::from_str::<AuthConfig>(
            "[[issuers]]\nname = \"https://idp.test\"\noidc = { audience = \"custos\", refresh = 5 }\n",
        );
        assert!(typo
            .unwrap_err()
            .to_string()
            .contains("unknown field `refresh`"));
    }
}
