//! The cluster data key: seals credential secrets at the edge (XChaCha20-Poly1305) before they are proposed.
//!
//! Every member holds the same key file(s) (`[secrets] data_key_file`, plus
//! `previous_key_files` kept for opening what older keys sealed). A key file holds 32 random
//! bytes in hex; its id is derived from the key (`k-` and 16 hex digits of a SHA-256), so the
//! same key has the same id on every member and rotation needs no naming. A secret is sealed
//! with a fresh random 24-byte nonce and the credential id, the cluster id and the field name
//! as associated data: a sealed value moved to another credential, field or cluster does not
//! open. Randomness is used here, at the edge, never in apply.

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, Key, XChaCha20Poly1305, XNonce};
use custos_model::{CredentialId, SealedSecret, SecretField};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `[secrets]` of the node configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// The key new secrets are sealed with (hex of 32 bytes, mode 0600). Unset: credentials
    /// with secrets cannot be created (custos never stores them in clear).
    #[serde(default)]
    pub data_key_file: Option<PathBuf>,
    /// Earlier keys, kept to open what they sealed (rotation: docs/operations.md).
    #[serde(default)]
    pub previous_key_files: Vec<PathBuf>,
}

/// What goes wrong with the data keys.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read data key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data key file {path} must hold 64 hex digits (32 bytes)")]
    Format { path: PathBuf },
    #[error("data key file {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    Mode { path: PathBuf, mode: u32 },
    #[error("no data key is configured ([secrets] data_key_file)")]
    NoKey,
    #[error("the secret was sealed with data key {0}, which this member does not hold")]
    UnknownKey(String),
    #[error("the sealed secret does not open with data key {0} (wrong key or tampered)")]
    Open(String),
}

/// The data keys of this member: the primary seals, all open.
pub struct DataKeys {
    primary: String,
    keys: BTreeMap<String, XChaCha20Poly1305>,
}

/// The id of a key: the same on every member holding it.
pub fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"custos data key id\0")
        .chain_update(key)
        .finalize();
    format!("k-{}", hex::encode(&digest[..8]))
}

fn read_key(path: &Path) -> Result<[u8; 32], SecretsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| SecretsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::Mode {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = hex::decode(text.trim()).map_err(|_| SecretsError::Format {
        path: path.to_path_buf(),
    })?;
    bytes.try_into().map_err(|_| SecretsError::Format {
        path: path.to_path_buf(),
    })
}

/// Writes a new random key to `path` with mode 0600 (refusing to overwrite a file).
pub fn generate_key_file(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    let key = XChaCha20Poly1305::generate_key(&mut OsRng);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{}", hex::encode(key))?;
    file.sync_all()?;
    Ok(key_id(&key.into()))
}

fn aad(cluster_id: &str, id: &CredentialId, field: SecretField) -> Vec<u8> {
    // Length-prefixed parts, so no two (cluster, id, field) give the same bytes.
    let mut out = b"custos credential secret v1".to_vec();
    for part in [cluster_id, id.as_str(), field.name()] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

impl DataKeys {
    /// The keys `[secrets]` names; `None` when no data key is configured.
    pub fn load(settings: &SecretsSettings) -> Result<Option<DataKeys>, SecretsError> {
        let Some(primary_path) = &settings.data_key_file else {
            return Ok(None);
        };
        let primary = read_key(primary_path)?;
        let mut keys = vec![primary];
        for path in &settings.previous_key_files {
            keys.push(read_key(path)?);
        }
        Ok(Some(DataKeys::from_keys(&keys)))
    }

    /// The first key is the primary.
    pub fn from_keys(keys: &[[u8; 32]]) -> DataKeys {
        DataKeys {
            primary: key_id(&keys[0]),
            keys: keys
                .iter()
                .map(|k| (key_id(k), XChaCha20Poly1305::new(&Key::from(*k))))
                .collect(),
        }
    }

    /// The id of the key new secrets are sealed with.
    pub fn primary_id(&self) -> &str {
        &self.primary
    }

    /// Seals `plaintext` under the primary key for field `field` of credential `id`.
    pub fn seal(
        &self,
        cluster_id: &str,
        id: &CredentialId,
        field: SecretField,
        plaintext: &[u8],
    ) -> SealedSecret {
        let cipher = &self.keys[&self.primary];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad(cluster_id, id, field),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message a request can carry");
        SealedSecret {
            key_id: self.primary.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens a sealed secret (validation, re-encryption); the plaintext never leaves the node.
    pub fn open(
        &self,
        cluster_id: &str,
        id: &CredentialId,
        field: SecretField,
        sealed: &SealedSecret,
    ) -> Result<Vec<u8>, SecretsError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| SecretsError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; 24] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::Open(sealed.key_id.clone()))?;
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad(cluster_id, id, field),
                },
            )
            .map_err(|_| SecretsError::Open(sealed.key_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_in_place() {
        let keys = DataKeys::from_keys(&[[7; 32]]);
        let id = CredentialId("c1".into());
        let sealed = keys.seal("cl", &id, SecretField::SecretKey, b"hunter2");
        assert!(!sealed
            .ciphertext
            .windows(7)
            .any(|w| w == b"hunter2".as_slice()));
        assert_eq!(
            keys.open("cl", &id, SecretField::SecretKey, &sealed)
                .unwrap(),
            b"hunter2"
        );
        // Another credential, field or cluster: does not open.
        let other = CredentialId("c2".into());
        assert!(keys
            .open("cl", &other, SecretField::SecretKey, &sealed)
            .is_err());
        assert!(keys.open("cl", &id, SecretField::JsonKey, &sealed).is_err());
        assert!(keys
            .open("c2", &id, SecretField::SecretKey, &sealed)
            .is_err());
        // Nonces differ per sealing.
        let again = keys.seal("cl", &id, SecretField::SecretKey, b"hunter2");
        assert_ne!(again.nonce, sealed.nonce);
    }

    #[test]
    fn rotation_opens_with_previous_keys() {
        let old = DataKeys::from_keys(&[[1; 32]]);
        let id = CredentialId("c1".into());
        let sealed = old.seal("cl", &id, SecretField::AccountKey, b"k");
        let rotated = DataKeys::from_keys(&[[2; 32], [1; 32]]);
        assert_ne!(rotated.primary_id(), old.primary_id());
        assert_eq!(
            rotated
                .open("cl", &id, SecretField::AccountKey, &sealed)
                .unwrap(),
            b"k"
        );
        let fresh = DataKeys::from_keys(&[[2; 32]]);
        assert!(matches!(
            fresh.open("cl", &id, SecretField::AccountKey, &sealed),
            Err(SecretsError::UnknownKey(_))
        ));
    }
}
