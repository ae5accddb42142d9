//! The sealing layer: AES-256-GCM records bound to their place by associated data, key
//! wrapping, key derivation, blinded index digests, and Argon2id PIN keys.
//! `schema/sealing.md` is the normative description; `SEAL_FORMAT` is its version.

use crate::error::{Result, StoreError};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hkdf, hmac, rand};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use zeroize::Zeroize;

/// Version of the sealed-record layout and of the AAD construction.
pub const SEAL_FORMAT: u8 = 1;
pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;

/// A 256-bit key. No `Debug`, no `Clone`; zeroized on drop.
///
/// A key used again and again (a token's sealing and index keys, for as long as it is
/// logged in) keeps its prepared forms beside it, made at first use: the AES-GCM key
/// schedule and the HMAC-SHA256 inner and outer states. Each lookup and each record
/// opened would otherwise derive them afresh (about 5,000 instructions for the HMAC key
/// alone, more than the digest it serves). aws-lc wipes both states when they are
/// dropped (`EVP_AEAD_CTX_cleanup`, `HMAC_CTX_cleanup`), and the bytes are zeroized here.
pub struct Key32 {
    bytes: [u8; KEY_LEN],
    aead: OnceLock<LessSafeKey>,
    hmac: OnceLock<hmac::Key>,
}

impl Key32 {
    fn new(bytes: [u8; KEY_LEN]) -> Self {
        Key32 {
            bytes,
            aead: OnceLock::new(),
            hmac: OnceLock::new(),
        }
    }

    pub fn random() -> Result<Self> {
        let mut k = [0u8; KEY_LEN];
        fill_random(&mut k)?;
        let key = Self::new(k);
        k.zeroize();
        Ok(key)
    }
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let arr: [u8; KEY_LEN] = b.try_into().map_err(|_| {
            StoreError::corruption(
                "key material",
                format!("key of {} bytes, expected 32", b.len()),
            )
        })?;
        Ok(Self::new(arr))
    }
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    fn aead(&self) -> &LessSafeKey {
        self.aead.get_or_init(|| {
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("32-byte AES key"))
        })
    }

    fn hmac(&self) -> &hmac::Key {
        self.hmac
            .get_or_init(|| hmac::Key::new(hmac::HMAC_SHA256, &self.bytes))
    }

    /// A subkey for one purpose (HKDF-SHA256, the purpose string as info).
    pub fn derive(&self, purpose: &[u8]) -> Key32 {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ferrohsm/v1").extract(&self.bytes);
        let mut out = [0u8; KEY_LEN];
        prk.expand(&[purpose], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF-SHA256 with a 32-byte output cannot fail");
        let key = Key32::new(out);
        out.zeroize();
        key
    }
}

impl Drop for Key32 {
    fn drop(&mut self) {
        self.bytes.zeroize();
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
    /// The MAC binding an object header and its current record to the master key.
    HeaderBinding = 8,
    /// A key ring record (schema 3).
    Ring = 9,
    /// The MAC binding a key ring record to the master key.
    RingBinding = 10,
    /// The dual-control state (schema 4).
    Quorum = 11,
    /// The MAC binding the dual-control state to the master key.
    QuorumBinding = 12,
    /// An approver's verdict (signed by the approver; sealed like the rest of `meta`).
    Verdict = 13,
    /// The token's audit key pair (schema 5).
    AuditKey = 14,
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
    let k = key.aead();
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
    let k = key.aead();
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
    seal(kek, aad, &key.bytes)
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
    let mut ctx = hmac::Context::with_key(index_key.hmac());
    ctx.update(&[tag]);
    ctx.update(value);
    let tag = ctx.sign();
    tag.as_ref()[..crate::keys::DIGEST_LEN]
        .try_into()
        .expect("HMAC-SHA256 is 32 bytes")
}

/// Argon2id cost, stored per token so stores made with other costs keep opening.
///
/// Costs are read from files (token records, backup headers) that an attacker may have
/// written, so every derivation first checks them against caps ([`KdfParams::check`]):
/// a crafted `m_kib = 2^32-1` would otherwise ask for 4 TiB, and `t_cost = 2^32-1` for
/// hours of work. `schema/sealing.md` documents the caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// OWASP's Argon2id minimum configurations (Password Storage Cheat Sheet): equivalent
/// trade-offs of memory (KiB) for passes. A cost meets the backup floor when it reaches
/// one of them in both memory and passes.
const OWASP_MINIMUMS: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

impl KdfParams {
    /// OWASP's first Argon2id recommendation (m = 19 MiB, t = 2, p = 1) raised to
    /// 64 MiB: about 0.15 s per login on the reference machine.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
    /// For tests and fixtures only: fast and weak. Below the backup floor.
    pub const INSECURE_FAST: KdfParams = KdfParams {
        m_kib: 256,
        t_cost: 1,
        p_cost: 1,
    };
    /// The cheapest cost a backup passphrase may have (OWASP's m = 19 MiB, t = 2, p = 1):
    /// what tests and benchmarks of backups use.
    pub const BACKUP_MINIMUM: KdfParams = KdfParams {
        m_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// Memory cap: 4 GiB, twice RFC 9106's first recommendation (2 GiB, t = 1).
    pub const MAX_M_KIB: u32 = 4 << 20;
    /// Pass cap. Recommendations stop at single digits; memory is the cost to raise.
    pub const MAX_T_COST: u32 = 64;
    /// Lane cap. This build computes lanes one after the other, so lanes add no strength
    /// per second spent, and each needs 8 KiB of the memory.
    pub const MAX_P_COST: u32 = 64;
    /// Work cap, memory × passes in KiB: 16 GiB, e.g. 4 GiB × 4 or 256 MiB × 64. The time
    /// a derivation takes grows with this product (some seconds to tens of seconds at the
    /// cap, on one core), so it bounds how long a crafted cost can hold a login.
    pub const MAX_WORK_KIB: u64 = 16 << 20;

    /// Whether this cost is within the caps and valid for Argon2id; the reason if not.
    pub fn check(&self) -> std::result::Result<(), String> {
        let KdfParams {
            m_kib,
            t_cost,
            p_cost,
        } = *self;
        let what = format!("Argon2id cost m={m_kib} KiB t={t_cost} p={p_cost}");
        if m_kib > Self::MAX_M_KIB {
            return Err(format!(
                "{what}: memory above the cap of {} KiB (4 GiB)",
                Self::MAX_M_KIB
            ));
        }
        if t_cost > Self::MAX_T_COST {
            return Err(format!(
                "{what}: passes above the cap of {}",
                Self::MAX_T_COST
            ));
        }
        if p_cost > Self::MAX_P_COST {
            return Err(format!(
                "{what}: lanes above the cap of {}",
                Self::MAX_P_COST
            ));
        }
        if u64::from(m_kib) * u64::from(t_cost) > Self::MAX_WORK_KIB {
            return Err(format!(
                "{what}: memory × passes above the cap of {} KiB (16 GiB)",
                Self::MAX_WORK_KIB
            ));
        }
        argon2::Params::new(m_kib, t_cost, p_cost, Some(KEY_LEN))
            .map(|_| ())
            .map_err(|e| format!("{what}: {e}"))
    }

    /// [`KdfParams::check`] for a cost the caller chose (a token's, a backup's).
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(StoreError::Invalid)
    }

    /// Whether this cost reaches the floor for backup passphrases: one of OWASP's minimum
    /// Argon2id configurations (19 MiB × 2 passes, or 46 MiB × 1, 12 MiB × 3, 9 MiB × 4,
    /// 7 MiB × 5). An archive travels and is kept for years; its passphrase is all that
    /// protects it offline, so a cost below this is refused both when writing and when
    /// reading (an archive this weak was not written by this build, or was weakened).
    pub fn meets_backup_floor(&self) -> bool {
        OWASP_MINIMUMS
            .iter()
            .any(|&(m, t)| self.m_kib >= m && self.t_cost >= t)
    }
}

/// The key-encryption key for one PIN (or backup passphrase). The cost is checked against
/// the caps first: it comes from a token record, which whoever can write the files can
/// craft. The memory is reserved fallibly, so a cost the machine cannot afford answers an
/// error instead of aborting the process, and is zeroized after use.
pub fn pin_key(params: &KdfParams, salt: &[u8], pin: &[u8]) -> Result<Key32> {
    params.check().map_err(|e| {
        StoreError::corruption("token record", format!("refused KDF parameters: {e}"))
    })?;
    let p = argon2::Params::new(params.m_kib, params.t_cost, params.p_cost, Some(KEY_LEN))
        .map_err(|e| {
            StoreError::corruption("token record", format!("bad Argon2 parameters: {e}"))
        })?;
    let blocks = p.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut memory: Vec<argon2::Block> = Vec::new();
    memory.try_reserve_exact(blocks).map_err(|_| {
        StoreError::Io(format!(
            "cannot allocate {} MiB for Argon2id (m={} KiB)",
            blocks / 1024,
            params.m_kib
        ))
    })?;
    memory.resize(blocks, argon2::Block::default());
    let mut out = [0u8; KEY_LEN];
    let r = argon.hash_password_into_with_memory(pin, salt, &mut out, &mut memory[..]);
    memory.zeroize();
    if let Err(e) = r {
        out.zeroize();
        return Err(StoreError::Invalid(format!("Argon2id: {e}")));
    }
    let key = Key32::new(out);
    out.zeroize();
    Ok(key)
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
    fn crafted_costs_are_refused_before_any_work() {
        let started = std::time::Instant::now();
        for (m_kib, t_cost, p_cost) in [
            (u32::MAX, 1, 1),
            (256, u32::MAX, 1),
            (1 << 20, 1, u32::MAX),
            (KdfParams::MAX_M_KIB + 1, 1, 1),
            (KdfParams::MAX_M_KIB, 64, 1),
            (1024, KdfParams::MAX_T_COST + 1, 1),
            (1024, 1, KdfParams::MAX_P_COST + 1),
            (u32::MAX, u32::MAX, u32::MAX),
        ] {
            let p = KdfParams {
                m_kib,
                t_cost,
                p_cost,
            };
            let e = pin_key(&p, b"somesaltsomesalt", b"1234")
                .err()
                .expect("must refuse");
            assert!(
                matches!(e, StoreError::Corruption { .. }) && e.to_string().contains("cap"),
                "{p:?}: {e}"
            );
            assert!(p.validate().is_err(), "{p:?}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        for ok in [
            KdfParams::DEFAULT,
            KdfParams::INSECURE_FAST,
            KdfParams::BACKUP_MINIMUM,
            // RFC 9106's first recommendation, and the caps themselves.
            KdfParams {
                m_kib: 2 << 20,
                t_cost: 1,
                p_cost: 4,
            },
            KdfParams {
                m_kib: KdfParams::MAX_M_KIB,
                t_cost: 4,
                p_cost: KdfParams::MAX_P_COST,
            },
        ] {
            ok.validate().unwrap();
        }
    }

    #[test]
    fn the_backup_floor_is_owasps_minimum() {
        assert!(KdfParams::DEFAULT.meets_backup_floor());
        assert!(KdfParams::BACKUP_MINIMUM.meets_backup_floor());
        assert!(!KdfParams::INSECURE_FAST.meets_backup_floor());
        let c = |m_kib, t_cost| KdfParams {
            m_kib,
            t_cost,
            p_cost: 1,
        };
        assert!(c(47_104, 1).meets_backup_floor());
        assert!(!c(47_103, 1).meets_backup_floor());
        assert!(!c(19_455, 2).meets_backup_floor());
        assert!(!c(19_456, 1).meets_backup_floor());
        assert!(c(7_168, 5).meets_backup_floor());
        assert!(!c(7_167, 50).meets_backup_floor());
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
