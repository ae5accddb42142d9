//! Every store key is built and parsed here, in encode/decode pairs. Ids are big-endian
//! and fixed width so RocksDB's byte order is numeric order and prefix scans work.
//! `schema/format.md` is the normative description of these layouts.

use crate::cf::Cf;
use hsm_types::lifecycle::KeyId;
use hsm_types::{
    AttributeSet, KeyType, MechanismType, ObjectClass, ObjectId, TokenId, UserKind, VersionNo,
};

/// Length of a blinded index digest.
pub const DIGEST_LEN: usize = 16;

/// `meta` keys.
pub mod meta {
    use super::*;

    pub const SCHEMA_VERSION: &[u8] = b"\x00schema_version";
    pub const STORE_ID: &[u8] = b"\x00store_id";
    pub const NEXT_TOKEN: &[u8] = b"\x00next_token";
    const TOKEN: u8 = 0x01;
    const PIN_FAILURES: u8 = 0x02;
    const NEXT_OBJECT: u8 = 0x03;
    const RING: u8 = 0x04;
    const RING_SEQ: u8 = 0x05;
    const QUORUM: u8 = 0x06;
    const QUORUM_SEQ: u8 = 0x07;
    const VERDICT: u8 = 0x08;
    const AUDIT_HEAD: u8 = 0x09;
    const AUDIT_KEYS: u8 = 0x0a;
    /// Raised each time a writer opens the store (schema 5): audit records of one run
    /// share it.
    pub const BOOT: &[u8] = b"\x00boot";

    pub fn token(t: TokenId) -> Vec<u8> {
        tagged(TOKEN, t)
    }
    pub fn token_prefix() -> Vec<u8> {
        vec![TOKEN]
    }
    pub fn decode_token(key: &[u8]) -> Option<TokenId> {
        match key {
            [TOKEN, rest @ ..] if rest.len() == 4 => {
                Some(TokenId(u32::from_be_bytes(rest.try_into().ok()?)))
            }
            _ => None,
        }
    }
    pub fn pin_failures(t: TokenId, who: UserKind) -> Vec<u8> {
        let mut k = tagged(PIN_FAILURES, t);
        k.push(who.code());
        k
    }
    pub fn next_object(t: TokenId) -> Vec<u8> {
        tagged(NEXT_OBJECT, t)
    }
    /// A key's ring record (schema 3).
    pub fn ring(t: TokenId, key: KeyId) -> Vec<u8> {
        let mut k = tagged(RING, t);
        k.extend_from_slice(&key.0.to_be_bytes());
        k
    }
    pub fn ring_prefix(t: TokenId) -> Vec<u8> {
        tagged(RING, t)
    }
    pub fn decode_ring(key: &[u8]) -> Option<KeyId> {
        match key {
            [RING, _, _, _, _, rest @ ..] if rest.len() == 8 => {
                Some(KeyId(u64::from_be_bytes(rest.try_into().ok()?)))
            }
            _ => None,
        }
    }
    /// The marker of a ring's transition `seq`: a ring record whose next marker exists
    /// was put back from earlier.
    pub fn ring_seq(t: TokenId, key: KeyId, seq: u64) -> Vec<u8> {
        let mut k = tagged(RING_SEQ, t);
        k.extend_from_slice(&key.0.to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
    pub fn ring_seq_prefix(t: TokenId) -> Vec<u8> {
        tagged(RING_SEQ, t)
    }
    /// The token's dual-control state (schema 4).
    pub fn quorum(t: TokenId) -> Vec<u8> {
        tagged(QUORUM, t)
    }
    /// The marker of the dual-control state's write `seq` (as for rings).
    pub fn quorum_seq(t: TokenId, seq: u64) -> Vec<u8> {
        let mut k = tagged(QUORUM_SEQ, t);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
    pub fn quorum_seq_prefix(t: TokenId) -> Vec<u8> {
        tagged(QUORUM_SEQ, t)
    }
    /// One approver's verdict on one request.
    pub fn verdict(t: TokenId, request: u64, approver: u32) -> Vec<u8> {
        let mut k = tagged(VERDICT, t);
        k.extend_from_slice(&request.to_be_bytes());
        k.extend_from_slice(&approver.to_be_bytes());
        k
    }
    pub fn verdict_prefix(t: TokenId) -> Vec<u8> {
        tagged(VERDICT, t)
    }
    /// The token's audit log head: its size, Merkle frontier and last checkpoint (schema 5).
    pub fn audit_head(t: TokenId) -> Vec<u8> {
        tagged(AUDIT_HEAD, t)
    }
    /// The token's audit keys: public keys in clear, private keys sealed (schema 5).
    pub fn audit_keys(t: TokenId) -> Vec<u8> {
        tagged(AUDIT_KEYS, t)
    }
    fn tagged(tag: u8, t: TokenId) -> Vec<u8> {
        let mut k = Vec::with_capacity(6);
        k.push(tag);
        k.extend_from_slice(&t.0.to_be_bytes());
        k
    }
}

/// `audit` keys: a token's records by sequence number, then its signed checkpoints by
/// tree size (schema 5).
pub mod audit {
    use super::*;

    const RECORD: u8 = 0x00;
    const CHECKPOINT: u8 = 0x01;

    pub fn record(t: TokenId, seq: u64) -> Vec<u8> {
        numbered(t, RECORD, seq)
    }
    pub fn record_prefix(t: TokenId) -> Vec<u8> {
        prefix(t, RECORD)
    }
    pub fn checkpoint(t: TokenId, size: u64) -> Vec<u8> {
        numbered(t, CHECKPOINT, size)
    }
    pub fn checkpoint_prefix(t: TokenId) -> Vec<u8> {
        prefix(t, CHECKPOINT)
    }
    /// The number (sequence or size) of a key under either prefix.
    pub fn decode_number(key: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(key.get(5..13)?.try_into().ok()?)).filter(|_| key.len() == 13)
    }
    fn prefix(t: TokenId, kind: u8) -> Vec<u8> {
        let mut k = Vec::with_capacity(13);
        k.extend_from_slice(&t.0.to_be_bytes());
        k.push(kind);
        k
    }
    fn numbered(t: TokenId, kind: u8, n: u64) -> Vec<u8> {
        let mut k = prefix(t, kind);
        k.extend_from_slice(&n.to_be_bytes());
        k
    }
}

/// Prefix of everything a token owns in the object, version, attribute and index families.
pub fn token_prefix(t: TokenId) -> Vec<u8> {
    t.0.to_be_bytes().to_vec()
}

/// The token a key of those families belongs to, or `None` for a key too short to name one.
pub fn decode_token_prefix(key: &[u8]) -> Option<TokenId> {
    Some(TokenId(u32::from_be_bytes(key.get(..4)?.try_into().ok()?)))
}

/// `objects` key, and the prefix of the object's `versions` and `attributes` keys.
pub fn object(t: TokenId, o: ObjectId) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&t.0.to_be_bytes());
    k.extend_from_slice(&o.0.to_be_bytes());
    k
}

pub fn decode_object(key: &[u8]) -> Option<(TokenId, ObjectId)> {
    if key.len() != 12 {
        return None;
    }
    Some((
        TokenId(u32::from_be_bytes(key[..4].try_into().ok()?)),
        ObjectId(u64::from_be_bytes(key[4..].try_into().ok()?)),
    ))
}

/// The first key after every key of object `o` (exclusive range end).
pub fn object_end(t: TokenId, o: ObjectId) -> Vec<u8> {
    match o.0.checked_add(1) {
        Some(n) => object(t, ObjectId(n)),
        None => {
            let mut k = token_prefix(TokenId(t.0 + 1));
            k.extend_from_slice(&[0; 8]);
            k
        }
    }
}

/// `versions` and `attributes` key.
pub fn version(t: TokenId, o: ObjectId, v: VersionNo) -> Vec<u8> {
    let mut k = object(t, o);
    k.extend_from_slice(&v.0.to_be_bytes());
    k
}

pub fn decode_version(key: &[u8]) -> Option<(TokenId, ObjectId, VersionNo)> {
    if key.len() != 16 {
        return None;
    }
    let (t, o) = decode_object(&key[..12])?;
    Some((
        t,
        o,
        VersionNo(u32::from_be_bytes(key[12..].try_into().ok()?)),
    ))
}

/// Whether an index entry belongs to a public or a private object. Private entries are
/// blinded under a key only a logged-in token has.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Visibility {
    Public = 0,
    Private = 1,
}

/// Index key: token, visibility, blinded digest of the value, object.
pub fn index(t: TokenId, vis: Visibility, digest: &[u8; DIGEST_LEN], o: ObjectId) -> Vec<u8> {
    let mut k = index_prefix(t, vis, digest);
    k.extend_from_slice(&o.0.to_be_bytes());
    k
}

/// Prefix of every index entry with this value.
pub fn index_prefix(t: TokenId, vis: Visibility, digest: &[u8; DIGEST_LEN]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + 1 + DIGEST_LEN + 8);
    k.extend_from_slice(&t.0.to_be_bytes());
    k.push(vis as u8);
    k.extend_from_slice(digest);
    k
}

pub fn decode_index(key: &[u8]) -> Option<(TokenId, Visibility, [u8; DIGEST_LEN], ObjectId)> {
    if key.len() != 4 + 1 + DIGEST_LEN + 8 {
        return None;
    }
    let t = TokenId(u32::from_be_bytes(key[..4].try_into().ok()?));
    let vis = match key[4] {
        0 => Visibility::Public,
        1 => Visibility::Private,
        _ => return None,
    };
    let digest: [u8; DIGEST_LEN] = key[5..5 + DIGEST_LEN].try_into().ok()?;
    let o = ObjectId(u64::from_be_bytes(key[5 + DIGEST_LEN..].try_into().ok()?));
    Some((t, vis, digest, o))
}

/// The values index entries are made of, each with its family: what `crypto::blind` turns
/// into an entry's digest. Attribute bytes as they are (label, id), numbers as `u64` BE
/// (class, key type, mechanism). Writers and lookups both take them from here, so a
/// lookup always computes the digest a write stored.
pub mod index_value {
    use super::*;

    pub fn class(c: ObjectClass) -> (Cf, Vec<u8>) {
        (Cf::IdxClass, c.0.to_be_bytes().to_vec())
    }
    pub fn label(l: &[u8]) -> (Cf, Vec<u8>) {
        (Cf::IdxLabel, l.to_vec())
    }
    pub fn id(i: &[u8]) -> (Cf, Vec<u8>) {
        (Cf::IdxId, i.to_vec())
    }
    pub fn key_type(k: KeyType) -> (Cf, Vec<u8>) {
        (Cf::IdxKeyType, k.0.to_be_bytes().to_vec())
    }
    pub fn mechanism(m: MechanismType) -> (Cf, Vec<u8>) {
        (Cf::IdxMechanism, m.0.to_be_bytes().to_vec())
    }

    /// The (index, value) pairs of an attribute set: one per indexed attribute it has,
    /// one per distinct allowed mechanism.
    pub fn of(attrs: &AttributeSet) -> Vec<(Cf, Vec<u8>)> {
        let mut out = Vec::new();
        if let Some(c) = attrs.class() {
            out.push(class(c));
        }
        if let Some(l) = attrs.label() {
            out.push(label(l));
        }
        if let Some(i) = attrs.id() {
            out.push(id(i));
        }
        if let Some(k) = attrs.key_type() {
            out.push(key_type(k));
        }
        let mut mechs: Vec<u64> = attrs.mechanisms().to_vec();
        mechs.sort_unstable();
        mechs.dedup();
        for m in mechs {
            out.push(mechanism(MechanismType(m)));
        }
        out
    }
}

/// The first key after every key that starts with `prefix`, or `None` if no such key
/// exists (all bytes 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn object_keys_round_trip_and_sort_numerically(t in any::<u32>(), a in any::<u64>(), b in any::<u64>()) {
            let (ka, kb) = (object(TokenId(t), ObjectId(a)), object(TokenId(t), ObjectId(b)));
            prop_assert_eq!(decode_object(&ka), Some((TokenId(t), ObjectId(a))));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
        }

        #[test]
        fn version_keys_round_trip_sort_and_nest(t in any::<u32>(), o in any::<u64>(), v in any::<u32>(), w in any::<u32>()) {
            let kv = version(TokenId(t), ObjectId(o), VersionNo(v));
            let kw = version(TokenId(t), ObjectId(o), VersionNo(w));
            prop_assert_eq!(decode_version(&kv), Some((TokenId(t), ObjectId(o), VersionNo(v))));
            prop_assert_eq!(kv.cmp(&kw), v.cmp(&w));
            prop_assert!(kv.starts_with(&object(TokenId(t), ObjectId(o))));
            prop_assert!(kv < object_end(TokenId(t), ObjectId(o)));
        }

        #[test]
        fn tokens_sort_before_objects(t1 in any::<u32>(), t2 in any::<u32>(), o1 in any::<u64>(), o2 in any::<u64>()) {
            let k1 = object(TokenId(t1), ObjectId(o1));
            let k2 = object(TokenId(t2), ObjectId(o2));
            prop_assert_eq!(k1.cmp(&k2), (t1, o1).cmp(&(t2, o2)));
            prop_assert!(k1.starts_with(&token_prefix(TokenId(t1))));
        }

        #[test]
        fn index_keys_round_trip_and_group_by_value(t in any::<u32>(), d in any::<[u8; 16]>(), o in any::<u64>(), private in any::<bool>()) {
            let vis = if private { Visibility::Private } else { Visibility::Public };
            let k = index(TokenId(t), vis, &d, ObjectId(o));
            prop_assert_eq!(decode_index(&k), Some((TokenId(t), vis, d, ObjectId(o))));
            prop_assert!(k.starts_with(&index_prefix(TokenId(t), vis, &d)));
        }

        #[test]
        fn prefix_end_bounds_every_extension(p in proptest::collection::vec(any::<u8>(), 1..8), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut k = p.clone();
            k.extend_from_slice(&tail);
            if let Some(end) = prefix_end(&p) {
                prop_assert!(k < end);
                prop_assert!(!end.starts_with(&p));
            } else {
                prop_assert!(p.iter().all(|b| *b == 0xff));
            }
        }

        #[test]
        fn meta_token_keys_round_trip(t in any::<u32>()) {
            prop_assert_eq!(meta::decode_token(&meta::token(TokenId(t))), Some(TokenId(t)));
        }

        #[test]
        fn every_token_key_names_its_token(t in any::<u32>(), o in any::<u64>(), d in any::<[u8; 16]>()) {
            prop_assert_eq!(decode_token_prefix(&object(TokenId(t), ObjectId(o))), Some(TokenId(t)));
            prop_assert_eq!(decode_token_prefix(&index(TokenId(t), Visibility::Public, &d, ObjectId(o))), Some(TokenId(t)));
        }
    }

    #[test]
    fn a_key_too_short_names_no_token() {
        assert_eq!(decode_token_prefix(&[0, 0, 1]), None);
    }

    /// The layout `schema/format.md` gives for index values.
    #[test]
    fn index_values_are_bytes_or_u64_be() {
        use hsm_types::{AttrValue, AttributeType as A};
        let attrs = AttributeSet::new()
            .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
            .with(A::LABEL, AttrValue::Bytes(b"lbl".to_vec()));
        assert_eq!(
            index_value::of(&attrs),
            vec![
                (
                    Cf::IdxClass,
                    ObjectClass::SECRET_KEY.0.to_be_bytes().to_vec()
                ),
                (Cf::IdxLabel, b"lbl".to_vec()),
            ]
        );
        assert_eq!(
            index_value::mechanism(MechanismType(0x1082)),
            (Cf::IdxMechanism, vec![0, 0, 0, 0, 0, 0, 0x10, 0x82])
        );
    }

    #[test]
    fn last_object_of_a_token_has_an_end() {
        let end = object_end(TokenId(1), ObjectId(u64::MAX));
        assert!(version(TokenId(1), ObjectId(u64::MAX), VersionNo(u32::MAX)) < end);
        assert!(end <= object(TokenId(2), ObjectId(0)));
    }
}
