//! Object handles: a token object's handle is its slot and object id side by side; a
//! session object's has the top bit set and a process-wide counter below it. Handles are
//! never reused within a process (see `docs/adr/0001-handle-model.md`).

use crate::error::{Error, Result};
use hsm_types::ObjectId;

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
