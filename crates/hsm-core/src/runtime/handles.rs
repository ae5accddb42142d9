//! Object handles: a token object's handle is its slot and object id side by side; a
//! session object's has the top bit set and a process-wide counter below it. Handles are
//! never reused within a process (see `docs/adr/0005-handle-model.md`).

use crate::error::{Error, Result};
use hsm_types::ObjectId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A table keyed by handles the module made itself (session handles, session object
/// handles: counters). No key in it is chosen by a caller, so SipHash's defence against
/// chosen keys buys nothing here, and every call looks its session up: a multiply is
/// all a lookup needs. (A caller chooses only what it looks up, and a miss costs what a
/// hit does.)
pub(crate) type HandleMap<V> = HashMap<u64, V, BuildHasherDefault<HandleHasher>>;

#[derive(Default, Clone, Copy)]
pub(crate) struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // The multiply mixes upwards; fold the high half into the low bits the table's
        // buckets are picked by.
        self.0 ^ (self.0 >> 32)
    }
}

pub(crate) const SESSION_OBJECT_BIT: u64 = 1 << 63;
const OBJECT_ID_BITS: u32 = 48;

/// Where an object lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    Token { slot: u64, id: ObjectId },
    Session(u64),
}

pub(crate) fn token_handle(slot: u64, id: ObjectId) -> Result<u64> {
    if id.0 >= 1 << OBJECT_ID_BITS || slot >= 1 << (63 - OBJECT_ID_BITS) {
        return Err(Error::General("object id beyond the handle space".into()));
    }
    Ok((slot << OBJECT_ID_BITS) | id.0)
}

pub(crate) fn decode_handle(h: u64) -> Option<Location> {
    if h == 0 {
        None
    } else if h & SESSION_OBJECT_BIT != 0 {
        Some(Location::Session(h))
    } else {
        let slot = h >> OBJECT_ID_BITS;
        let id = h & ((1 << OBJECT_ID_BITS) - 1);
        (id != 0).then_some(Location::Token {
            slot,
            id: ObjectId(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_never_collide() {
        let h = token_handle(3, ObjectId(77)).unwrap();
        assert_eq!(
            decode_handle(h),
            Some(Location::Token {
                slot: 3,
                id: ObjectId(77)
            })
        );
        assert_eq!(decode_handle(0), None);
        assert_eq!(decode_handle(3 << OBJECT_ID_BITS), None, "object id 0");
        let s = SESSION_OBJECT_BIT | 5;
        assert_eq!(decode_handle(s), Some(Location::Session(s)));
        assert!(token_handle(1, ObjectId(1 << OBJECT_ID_BITS)).is_err());
        assert!(token_handle(1 << 15, ObjectId(1)).is_err());
    }
}
