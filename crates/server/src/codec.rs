//! The peer payload codec: bincode (standard config) over serde for openraft and custos types.
//!
//! Decoding is bounded by [`DECODE_LIMIT`]: bincode allocates a string or byte buffer of the
//! length the input claims before reading it, so without a limit a ten-byte payload claiming a
//! 2^40-byte string made the node abort on a failed allocation.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most bytes a decoded payload may claim for its strings and buffers together: twice the
/// peer listener's 64 MiB message limit, so nothing a peer can legitimately send comes near it.
pub const DECODE_LIMIT: usize = 128 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("peer payload codec: {0}")]
pub struct CodecError(String);

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(v, _)| v)
        .map_err(|e| CodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_lengths_beyond_the_limit_are_errors_not_allocations() {
        let command = custos_model::Command {
            request_id: custos_model::RequestId("r".into()),
            ..sample()
        };
        let bytes = encode(&command).unwrap();
        assert_eq!(decode::<custos_model::Command>(&bytes).unwrap(), command);
        for len in [1u64 << 32, 1 << 40, 1 << 62, u64::MAX] {
            // The request id (a string) comes first: varint marker 253 = a u64 follows.
            let mut bomb = vec![253];
            bomb.extend(len.to_le_bytes());
            let err = decode::<custos_model::Command>(&bomb).unwrap_err();
            assert!(err.to_string().starts_with("peer payload codec"), "{err}");
        }
    }

    fn sample() -> custos_model::Command {
        custos_model::Command {
            request_id: custos_model::RequestId(String::new()),
            identity: custos_model::Identity::guest(),
            time_ms: 1,
            origin: custos_model::NodeId(1),
            op: custos_model::Op::DeleteRole { name: "r".into() },
        }
    }
}
