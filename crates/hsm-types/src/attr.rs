//! Typed attribute sets and their one canonical encoding (MessagePack through rmp-serde).

use crate::consts::{AttributeType, KeyType, MechanismType, ObjectClass};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroize;

/// One attribute value, typed by the attribute-policy table.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttrValue {
    Bool(bool),
    Ulong(u64),
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `CKA_ALLOWED_MECHANISMS`
    Mechanisms(Vec<u64>),
    /// `CKA_WRAP_TEMPLATE` and friends.
    Template(AttributeSet),
}

impl Zeroize for AttrValue {
    fn zeroize(&mut self) {
        match self {
            AttrValue::Bytes(b) => b.zeroize(),
            AttrValue::Mechanisms(m) => m.zeroize(),
            AttrValue::Template(t) => t.zeroize_all(),
            AttrValue::Bool(b) => *b = false,
            AttrValue::Ulong(u) => *u = 0,
        }
    }
}

impl fmt::Debug for AttrValue {
    // Byte values may be key material: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Ulong(u) => write!(f, "{u}"),
            AttrValue::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            AttrValue::Mechanisms(m) => f
                .debug_list()
                .entries(m.iter().map(|m| MechanismType(*m)))
                .finish(),
            AttrValue::Template(t) => write!(f, "{t:?}"),
        }
    }
}

/// An object's attributes, ordered by type. Values are zeroized when the set is dropped.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributeSet(BTreeMap<AttributeType, AttrValue>);

/// A canonical encoding could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("attribute set does not decode: {0}")]
pub struct CodecError(String);

impl AttributeSet {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, t: AttributeType) -> Option<&AttrValue> {
        self.0.get(&t)
    }
    pub fn contains(&self, t: AttributeType) -> bool {
        self.0.contains_key(&t)
    }
    pub fn set(&mut self, t: AttributeType, v: AttrValue) {
        if let Some(mut old) = self.0.insert(t, v) {
            old.zeroize();
        }
    }
    pub fn with(mut self, t: AttributeType, v: AttrValue) -> Self {
        self.set(t, v);
        self
    }
    pub fn remove(&mut self, t: AttributeType) -> Option<AttrValue> {
        self.0.remove(&t)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (AttributeType, &AttrValue)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }
    pub fn types(&self) -> impl Iterator<Item = AttributeType> + '_ {
        self.0.keys().copied()
    }

    pub fn bool(&self, t: AttributeType) -> Option<bool> {
        match self.get(t) {
            Some(AttrValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn ulong(&self, t: AttributeType) -> Option<u64> {
        match self.get(t) {
            Some(AttrValue::Ulong(u)) => Some(*u),
            _ => None,
        }
    }
    pub fn bytes(&self, t: AttributeType) -> Option<&[u8]> {
        match self.get(t) {
            Some(AttrValue::Bytes(b)) => Some(b),
            _ => None,
        }
    }
    pub fn mechanisms(&self) -> &[u64] {
        match self.get(AttributeType::ALLOWED_MECHANISMS) {
            Some(AttrValue::Mechanisms(m)) => m,
            _ => &[],
        }
    }
    pub fn class(&self) -> Option<ObjectClass> {
        self.ulong(AttributeType::CLASS).map(ObjectClass)
    }
    pub fn key_type(&self) -> Option<KeyType> {
        self.ulong(AttributeType::KEY_TYPE).map(KeyType)
    }
    pub fn label(&self) -> Option<&[u8]> {
        self.bytes(AttributeType::LABEL)
    }
    pub fn id(&self) -> Option<&[u8]> {
        self.bytes(AttributeType::ID)
    }
    /// `CKA_PRIVATE`, defaulting as PKCS#11 does for the class when absent: keys other
    /// than public keys are private.
    pub fn is_private(&self) -> bool {
        self.bool(AttributeType::PRIVATE).unwrap_or(matches!(
            self.class(),
            Some(ObjectClass::PRIVATE_KEY) | Some(ObjectClass::SECRET_KEY)
        ))
    }

    /// Moves out every attribute that `is_secret` selects, leaving the rest.
    pub fn split_off(&mut self, mut is_secret: impl FnMut(AttributeType) -> bool) -> AttributeSet {
        let keys: Vec<_> = self.0.keys().copied().filter(|k| is_secret(*k)).collect();
        let mut out = AttributeSet::new();
        for k in keys {
            if let Some(v) = self.0.remove(&k) {
                out.0.insert(k, v);
            }
        }
        out
    }
    /// Adds every attribute of `other`, replacing existing ones.
    pub fn merge(&mut self, other: AttributeSet) {
        let mut other = other;
        for (k, v) in std::mem::take(&mut other.0) {
            self.set(k, v);
        }
    }

    /// The canonical encoding: MessagePack of the ordered map. Equal sets encode equal.
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("encoding an in-memory attribute set cannot fail")
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| CodecError(e.to_string()))
    }

    fn zeroize_all(&mut self) {
        for v in self.0.values_mut() {
            v.zeroize();
        }
    }
}

impl Drop for AttributeSet {
    fn drop(&mut self) {
        self.zeroize_all();
    }
}

impl fmt::Debug for AttributeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl FromIterator<(AttributeType, AttrValue)> for AttributeSet {
    fn from_iter<I: IntoIterator<Item = (AttributeType, AttrValue)>>(iter: I) -> Self {
        let mut s = AttributeSet::new();
        for (k, v) in iter {
            s.set(k, v);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = AttrValue> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(AttrValue::Bool),
            any::<u64>().prop_map(AttrValue::Ulong),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(AttrValue::Bytes),
            proptest::collection::vec(any::<u64>(), 0..5).prop_map(AttrValue::Mechanisms),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            proptest::collection::btree_map(any::<u64>(), inner, 0..4).prop_map(|m| {
                AttrValue::Template(m.into_iter().map(|(k, v)| (AttributeType(k), v)).collect())
            })
        })
    }

    proptest! {
        #[test]
        fn encoding_round_trips(m in proptest::collection::btree_map(any::<u64>(), value(), 0..12)) {
            let set: AttributeSet = m.into_iter().map(|(k, v)| (AttributeType(k), v)).collect();
            let bytes = set.encode();
            let back = AttributeSet::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &set);
            prop_assert_eq!(back.encode(), bytes);
        }
    }

    #[test]
    fn debug_never_prints_byte_values() {
        let s = AttributeSet::new().with(
            AttributeType::VALUE,
            AttrValue::Bytes(b"topsecret".to_vec()),
        );
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("topsecret") && !shown.contains("116"),
            "{shown}"
        );
        assert!(shown.contains("<9 bytes>"));
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(AttributeSet::decode(&[0xc1, 0xff, 0x00]).is_err());
    }

    #[test]
    fn split_off_moves_selected_attributes() {
        let mut s = AttributeSet::new()
            .with(AttributeType::LABEL, AttrValue::Bytes(b"l".to_vec()))
            .with(AttributeType::VALUE, AttrValue::Bytes(b"k".to_vec()));
        let secret = s.split_off(|t| t == AttributeType::VALUE);
        assert!(s.contains(AttributeType::LABEL) && !s.contains(AttributeType::VALUE));
        assert_eq!(secret.bytes(AttributeType::VALUE), Some(&b"k"[..]));
    }
}
