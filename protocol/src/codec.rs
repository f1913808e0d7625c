//! The one binary encoding of every wire type: postcard, made canonical.
//!
//! Signatures cover the encoding of a value, so a value must have exactly one encoding. Postcard
//! is deterministic when encoding, but a decoder could accept alternative spellings (over-long
//! varints, trailing bytes); [`decode`] re-encodes what it read and refuses anything that does not
//! come back byte for byte.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes could not be read as a wire value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{len} bytes is more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("not a valid encoding ({0})")]
    Invalid(#[from] postcard::Error),
    #[error("{0} unexpected bytes after the end")]
    TrailingBytes(usize),
    #[error("not in canonical form")]
    NonCanonical,
    #[error("delegation chain longer than {max} links")]
    ChainTooLong { max: usize },
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{count} bootstrap addresses, more than the {max} allowed")]
    TooManyAddresses { count: usize, max: usize },
    #[error("bootstrap address is not a valid multiaddr")]
    BadAddress,
}

/// Encodes a value. Encoding into memory cannot fail for the types in this crate.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encodes protocol types into a Vec infallibly")
}

/// Decodes a value of at most `max` bytes, refusing trailing bytes and non-canonical encodings.
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8], max: usize) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    if encode(&value) != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}
