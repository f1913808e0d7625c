//! Helpers shared by the protocol's integration tests.

use proptest::prelude::*;
use proptest::sample::Index;

/// One way to damage bytes.
#[derive(Clone, Debug)]
pub enum Edit {
    Xor(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

/// One to five random edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            (any::<Index>(), 1..=255u8).prop_map(|(at, xor)| Edit::Xor(at, xor)),
            (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert(at, byte)),
            any::<Index>().prop_map(Edit::Remove),
            any::<Index>().prop_map(Edit::Truncate),
        ],
        1..6,
    )
}

/// `bytes` with `edits` applied in order.
pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        if bytes.is_empty() {
            break;
        }
        match edit {
            Edit::Xor(at, xor) => {
                let at = at.index(bytes.len());
                bytes[at] ^= xor;
            }
            Edit::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
            Edit::Remove(at) => {
                bytes.remove(at.index(bytes.len()));
            }
            Edit::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        }
    }
    bytes
}
