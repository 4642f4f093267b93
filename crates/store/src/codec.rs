//! Value encoding for everything this crate persists: a format-version byte, then bincode.
//!
//! Every value written to sled (log entries, vote, pointers, records, snapshot) starts with
//! [`VALUE_FORMAT`]. A value with another first byte is refused with a clear error instead of
//! being misread, so a later format change can add a new version and convert on open.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Version byte in front of every persisted value.
pub(crate) const VALUE_FORMAT: u8 = 6;

/// A persisted value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: bincode::error::EncodeError,
    },
    #[error("decoding {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error("decoding {what}: empty value")]
    Empty { what: &'static str },
    #[error(
        "decoding {what}: unknown format version {found} (this build reads version {VALUE_FORMAT})"
    )]
    UnknownVersion { what: &'static str, found: u8 },
    #[error("decoding {what}: {extra} trailing bytes after the value")]
    Trailing { what: &'static str, extra: usize },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` behind the version byte. `what` names the value in errors.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![VALUE_FORMAT];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|source| CodecError::Encode { what, source })?;
    Ok(out)
}

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    body: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, config().with_limit::<LIMIT>())
}

/// Decodes a value written by [`encode`], checking the version byte and that nothing trails it.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty { what })?;
    if version != VALUE_FORMAT {
        return Err(CodecError::UnknownVersion {
            what,
            found: version,
        });
    }
    // bincode allocates a string or byte buffer of the length the input claims before reading
    // it; without a limit a corrupt length (2^62) aborts the process on the failed allocation.
    // The limit counts memory, not input: every integer claims its in-memory size (a u64
    // varint of one byte claims 8, a u128 16), so a valid value claims up to 16 times its
    // encoding. The limit is at least 64 times the input (found by the 100,000-volume
    // benchmark, whose snapshot a limit of the input's size refused, stopping the joining
    // node), and still far below what a forged length claims.
    let (value, used) = match body.len() {
        n if n <= 1 << 20 => decode_limited::<T, { 64 << 20 }>(body),
        n if n <= 64 << 20 => decode_limited::<T, { 4 << 30 }>(body),
        n if n <= 1 << 30 => decode_limited::<T, { 64 << 30 }>(body),
        _ => decode_limited::<T, { 1 << 40 }>(body),
    }
    .map_err(|source| CodecError::Decode { what, source })?;
    if used != body.len() {
        return Err(CodecError::Trailing {
            what,
            extra: body.len() - used,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let bytes = encode("t", &(7u64, String::from("x"))).unwrap();
        assert_eq!(bytes[0], VALUE_FORMAT);
        let back: (u64, String) = decode("t", &bytes).unwrap();
        assert_eq!(back, (7, "x".to_string()));

        let mut other = bytes.clone();
        other[0] = 9;
        let err = decode::<(u64, String)>("t", &other).unwrap_err();
        assert!(
            matches!(err, CodecError::UnknownVersion { found: 9, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("unknown format version 9"));

        assert!(matches!(
            decode::<u64>("t", &[]),
            Err(CodecError::Empty { .. })
        ));
        // A length claiming far more than the input is an error, not an allocation.
        for len in [1u64 << 40, 1 << 62, u64::MAX] {
            let mut bomb = vec![VALUE_FORMAT, 7, 253];
            bomb.extend(len.to_le_bytes());
            let err = decode::<(u64, String)>("t", &bomb).unwrap_err();
            assert!(matches!(err, CodecError::Decode { .. }), "{err}");
        }
        // Values larger in memory than encoded still decode: nine million small u64s are
        // 9 MB as varints and claim 72 MB (a limit of the input's size refused them).
        let many: Vec<u64> = vec![1; 9_000_000];
        let encoded = encode("t", &many).unwrap();
        assert!(encoded.len() < 10 << 20);
        assert_eq!(decode::<Vec<u64>>("t", &encoded).unwrap().len(), 9_000_000);
        let mut long = bytes;
        long.push(0);
        assert!(matches!(
            decode::<(u64, String)>("t", &long),
            Err(CodecError::Trailing { .. })
        ));
    }
}
