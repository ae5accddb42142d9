//! The sealing layer: AES-256-GCM records bound to their place by associated data, key
//! wrapping, key derivation, blinded index digests, and Argon2id PIN keys.
//! `schema/sealing.md` is the normative description; `SEAL_FORMAT` is its version.

use crate::error::{Result, StoreError};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac, rand};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Version of the sealed-record layout and of the AAD construction.
pub const SEAL_FORMAT: u8 = 1;
pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;

/// A 256-bit key. No `Debug`, no `Clone`; zeroized on drop.
pub struct Key32([u8; KEY_LEN]);

impl Key32 {
    pub fn random() -> Result<Self> {
        let mut k = [0u8; KEY_LEN];
        fill_random(&mut k)?;
        Ok(Self(k))
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = b.try_into().map_err(|_| {
            StoreError::corruption(
                "key material",
                format!("key of {} bytes, expected 32", b.len()),
            )
        })?;
        Ok(Self(arr))
    }
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A subkey for one purpose (HKDF-SHA256, the purpose string as info).
    pub fn derive(&self, purpose: &[u8]) -> Key32 {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ferrohsm/v1").extract(&self.0);
        let mut out = [0u8; KEY_LEN];
        prk.expand(&[purpose], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-SHA256 with a 32-byte output cannot fail");
        Key32(out)
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    rand::fill(buf).map_err(|_| StoreError::Io("system random generator failed".into()))
}

/// What a sealed record is, so a record of one kind never opens as another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Purpose {
    Header = 1,
    Version = 2,
    Attributes = 3,
    Secrets = 4,
    WrapObjectKey = 5,
    WrapSecretKey = 6,
    WrapMasterKey = 7,
}

/// Associated data: format, purpose, then the record's place (store id, token, object,
/// version as fixed-width big-endian integers).
pub fn aad(purpose: Purpose, store_id: &[u8; 16], place: &[u64]) -> Vec<u8> {
    let mut a = Vec::with_capacity(2 + 16 + place.len() * 8);
    a.push(SEAL_FORMAT);
    a.push(purpose as u8);
    a.extend_from_slice(store_id);
    for p in place {
        a.extend_from_slice(&p.to_be_bytes());
    }
    a
}

/// `format (1) | nonce (12) | ciphertext | tag (16)`
pub fn seal(key: &Key32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).expect("32-byte AES key"));
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(SEAL_FORMAT);
    out.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| StoreError::Io("AES-GCM seal failed".into()))?;
    out.extend_from_slice(&body);
    body.zeroize();
    Ok(out)
}

/// Opens a sealed record; any change to it or to its place fails with `Tampered`.
pub fn open(
    key: &Key32,
    aad: &[u8],
    sealed: &[u8],
    location: impl FnOnce() -> String,
) -> Result<Vec<u8>> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN {
        return Err(StoreError::corruption(
            location(),
            "sealed record too short",
        ));
    }
    if sealed[0] != SEAL_FORMAT {
        return Err(StoreError::corruption(
            location(),
            format!("unknown seal format {}", sealed[0]),
        ));
    }
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).expect("32-byte AES key"));
    let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().expect("length checked");
    let mut body = sealed[1 + NONCE_LEN..].to_vec();
    match k.open_in_place(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    ) {
        Ok(plain) => {
            let n = plain.len();
            body.truncate(n);
            Ok(body)
        }
        Err(_) => {
            body.zeroize();
            Err(StoreError::Tampered {
                location: location(),
            })
        }
    }
}

/// Wraps a key under another (AES-256-GCM, the wrapped key's place as AAD).
pub fn wrap(kek: &Key32, aad: &[u8], key: &Key32) -> Result<Vec<u8>> {
    seal(kek, aad, &key.0)
}

/// Unwraps a key; a wrong KEK or a moved blob fails with `Tampered`.
pub fn unwrap(
    kek: &Key32,
    aad: &[u8],
    wrapped: &[u8],
    location: impl FnOnce() -> String,
) -> Result<Key32> {
    let mut raw = open(kek, aad, wrapped, location)?;
    let k = Key32::from_bytes(&raw);
    raw.zeroize();
    k
}

/// Blinded index digest: HMAC-SHA256 under the index key, truncated.
pub fn blind(index_key: &Key32, tag: u8, value: &[u8]) -> [u8; crate::keys::DIGEST_LEN] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &index_key.0);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(&[tag]);
    ctx.update(value);
    let tag = ctx.sign();
    tag.as_ref()[..crate::keys::DIGEST_LEN]
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes")
}

/// Argon2id cost, stored per token so stores made with other costs keep opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// OWASP's first Argon2id recommendation (m = 19 MiB, t = 2, p = 1) raised to
    /// 64 MiB: about 0.15 s per login on the reference machine.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// For tests and fixtures only: fast and weak.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_kib: 256,
        t_cost: 1,
        p_cost: 1,
    };

    pub fn validate(&self) -> Result<()> {
        argon2::Params::new(self.m_kib, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map(|_| ())
            .map_err(|e| {
                StoreError::Invalid(format!(
                    "Argon2 parameters m={} t={} p={}: {e}",
                    self.m_kib, self.t_cost, self.p_cost
                ))
            })
    }
}

/// The key-encryption key for one PIN.
pub fn pin_key(params: &KdfParams, salt: &[u8], pin: &[u8]) -> Result<Key32> {
    let p = argon2::Params::new(params.m_kib, params.t_cost, params.p_cost, Some(KEY_LEN))
        .map_err(|e| {
            StoreError::corruption("token record", format!("bad Argon2 parameters: {e}"))
        })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = [0u8; KEY_LEN];
    argon
        .hash_password_into(pin, salt, &mut out)
        .map_err(|e| StoreError::Invalid(format!("Argon2id: {e}")))?;
    Ok(Key32(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_record_opens_only_with_its_key_and_place() {
        let k = Key32::random().unwrap();
        let id = [7u8; 16];
        let a = aad(Purpose::Attributes, &id, &[1, 2, 3]);
        let s = seal(&k, &a, b"hello").unwrap();
        assert_eq!(open(&k, &a, &s, String::new).unwrap(), b"hello");
        let other_place = aad(Purpose::Attributes, &id, &[1, 2, 4]);
        assert!(matches!(
            open(&k, &other_place, &s, String::new),
            Err(StoreError::Tampered { .. })
        ));
        let other_purpose = aad(Purpose::Header, &id, &[1, 2, 3]);
        assert!(matches!(
            open(&k, &other_purpose, &s, String::new),
            Err(StoreError::Tampered { .. })
        ));
        let mut flipped = s.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open(&k, &a, &flipped, String::new),
            Err(StoreError::Tampered { .. })
        ));
        assert!(matches!(
            open(&Key32::random().unwrap(), &a, &s, String::new),
            Err(StoreError::Tampered { .. })
        ));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_are_stable() {
        let k = Key32::random().unwrap();
        assert_ne!(k.derive(b"a").expose(), k.derive(b"b").expose());
        assert_eq!(k.derive(b"a").expose(), k.derive(b"a").expose());
    }

    #[test]
    fn pin_key_depends_on_pin_and_salt_only() {
        let p = KdfParams::INSECURE_FAST;
        let a = pin_key(&p, b"somesaltsomesalt", b"1234").unwrap();
        let b = pin_key(&p, b"somesaltsomesalt", b"1234").unwrap();
        let c = pin_key(&p, b"somesaltsomesalt", b"1235").unwrap();
        assert_eq!(a.expose(), b.expose());
        assert_ne!(a.expose(), c.expose());
        let d = pin_key(&p, b"othersaltothersa", b"1234").unwrap();
        assert_ne!(a.expose(), d.expose());
    }
}
