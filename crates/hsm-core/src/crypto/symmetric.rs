//! Randomness, secret generation and AES-GCM.

use super::{CryptoError, CryptoResult};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use hsm_types::SecretBytes;
use zeroize::Zeroizing;

/// The IV length aws-lc-rs AES-GCM takes, and SP 800-38D recommends; other lengths go
/// through `gcm.rs`.
pub const GCM_IV_LEN: usize = 12;
/// Longest IV accepted (PKCS#11 allows up to 2^32 − 1 bytes; nobody needs more than this,
/// and the cap bounds the work a caller can ask of one call).
pub const GCM_MAX_IV_LEN: usize = 256;
/// The tag length aws-lc-rs AES-GCM produces; shorter tags are that tag truncated.
pub const GCM_TAG_BITS: u32 = 128;
const GCM_TAG_LEN: usize = GCM_TAG_BITS as usize / 8;
/// Shortest tag accepted. SP 800-38D allows 32 and 64 bits only under limits on the
/// number of messages and their length that a token cannot enforce, so they are refused.
pub const GCM_MIN_TAG_BITS: u32 = 96;
/// GCM's plaintext limit, 2^32 - 2 blocks (SP 800-38D §5.2.1.1).
pub(super) const GCM_MAX_INPUT: usize = ((1 << 32) - 2) * 16;
/// Longest generic secret `generate_secret` makes; caps an allocation sized by the caller.
pub const MAX_SECRET_LEN: usize = 1024;

pub fn random_bytes(buf: &mut [u8]) -> CryptoResult<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| CryptoError::General("random generator failed".into()))
}

/// A fresh secret of `len` bytes (AES keys, generic secrets); `KeySizeRange` outside
/// `1..=MAX_SECRET_LEN`. Checking AES's 16/24/32 is the caller's, who knows the key type.
pub fn generate_secret(len: usize) -> CryptoResult<SecretBytes> {
    if len == 0 || len > MAX_SECRET_LEN {
        return Err(CryptoError::KeySizeRange);
    }
    let mut buf = vec![0u8; len];
    random_bytes(&mut buf)?;
    Ok(SecretBytes::new(buf))
}

/// The AES-GCM algorithm for a key of this size, once the IV and tag pass
/// [`check_gcm_params`]; every GCM call starts here, whatever its IV length.
fn gcm_alg(key: &[u8], iv: &[u8], tag_bits: u32) -> CryptoResult<&'static aead::Algorithm> {
    let alg = match key.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        _ => return Err(CryptoError::KeySizeRange),
    };
    check_gcm_params(iv, tag_bits)?;
    Ok(alg)
}

/// aws-lc-rs's AEAD key and nonce, for a 12-byte IV.
fn gcm_key(
    alg: &'static aead::Algorithm,
    key: &[u8],
    iv: &[u8],
) -> CryptoResult<(LessSafeKey, Nonce)> {
    let key = UnboundKey::new(alg, key)
        .map_err(|_| CryptoError::General("AES-GCM key rejected".into()))?;
    let nonce = Nonce::try_assume_unique_for_key(iv)
        .map_err(|_| CryptoError::General("AES-GCM IV rejected".into()))?;
    Ok((LessSafeKey::new(key), nonce))
}

/// The IV and tag sizes this GCM takes: an IV of 1 to 256 bytes (12 recommended), a tag
/// of 96 to 128 bits in whole bytes (`MechanismParamInvalid` otherwise). Checked at
/// `C_*Init` and again per call.
pub fn check_gcm_params(iv: &[u8], tag_bits: u32) -> CryptoResult<()> {
    if iv.is_empty() || iv.len() > GCM_MAX_IV_LEN {
        return Err(CryptoError::MechanismParamInvalid(format!(
            "AES-GCM IV of {} bytes: 1 to {GCM_MAX_IV_LEN} bytes are supported",
            iv.len()
        )));
    }
    if !(GCM_MIN_TAG_BITS..=GCM_TAG_BITS).contains(&tag_bits) || !tag_bits.is_multiple_of(8) {
        return Err(CryptoError::MechanismParamInvalid(format!(
            "AES-GCM tag of {tag_bits} bits: {GCM_MIN_TAG_BITS}, 104, 112, 120 or {GCM_TAG_BITS} bits are supported"
        )));
    }
    Ok(())
}

/// Returns `ciphertext || tag`.
pub fn aes_gcm_encrypt(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_bits: u32,
    plaintext: &[u8],
) -> CryptoResult<Vec<u8>> {
    gcm_alg(key, iv, tag_bits)?;
    let tag_len = tag_bits as usize / 8;
    if iv.len() != GCM_IV_LEN {
        return super::gcm::seal(key, iv, aad, tag_len, plaintext);
    }
    let mut out = vec![0u8; plaintext.len() + tag_len];
    GcmKey::new(key)?.seal_into(iv, aad, tag_len, plaintext, &mut out)?;
    Ok(out)
}

/// An AES-GCM key made ready once (aws-lc-rs's key schedule and GHASH table), for the
/// 12-byte IVs almost every caller uses; kept with a prepared key so each `C_Encrypt`
/// does not set it up again. Other IV lengths and short tags on decryption go through
/// the byte-key functions.
pub struct GcmKey(LessSafeKey);

impl GcmKey {
    pub fn new(key: &[u8]) -> CryptoResult<GcmKey> {
        let alg = match key.len() {
            16 => &aead::AES_128_GCM,
            24 => &aead::AES_192_GCM,
            32 => &aead::AES_256_GCM,
            _ => return Err(CryptoError::KeySizeRange),
        };
        let key = UnboundKey::new(alg, key)
            .map_err(|_| CryptoError::General("AES-GCM key rejected".into()))?;
        Ok(GcmKey(LessSafeKey::new(key)))
    }

    fn nonce(iv: &[u8]) -> CryptoResult<Nonce> {
        Nonce::try_assume_unique_for_key(iv).map_err(|_| {
            CryptoError::MechanismParamInvalid(format!(
                "a {} byte IV where a {GCM_IV_LEN} byte one is handled here",
                iv.len()
            ))
        })
    }

    /// Seals `plain` straight into `out` (the caller's buffer): the ciphertext, then the
    /// leading `tag_len` bytes of the tag (a t-bit GCM tag is the leading t bits of the
    /// full one, SP 800-38D §7.1). Returns the length written. Nothing secret is copied
    /// anywhere else: the plaintext is encrypted where it lands.
    pub fn seal_into(
        &self,
        iv: &[u8],
        aad: &[u8],
        tag_len: usize,
        plain: &[u8],
        out: &mut [u8],
    ) -> CryptoResult<usize> {
        let n = plain.len();
        if plain.len() > GCM_MAX_INPUT {
            return Err(CryptoError::DataLenRange);
        }
        if tag_len > GCM_TAG_LEN || out.len() < n + tag_len {
            return Err(CryptoError::General("GCM output buffer too short".into()));
        }
        let (body, rest) = out.split_at_mut(n);
        body.copy_from_slice(plain);
        let tag = self
            .0
            .seal_in_place_separate_tag(Self::nonce(iv)?, Aad::from(aad), body)
            .map_err(|_| CryptoError::DataLenRange)?;
        rest[..tag_len].copy_from_slice(&tag.as_ref()[..tag_len]);
        Ok(n + tag_len)
    }

    /// Opens `input` (ciphertext ‖ 16-byte tag) straight into `out`. On a bad tag `out`
    /// may have held unauthenticated plaintext for a moment: it is zeroed before the
    /// error returns, so the caller's buffer never shows it.
    pub fn open_into(
        &self,
        iv: &[u8],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
    ) -> CryptoResult<usize> {
        let Some(n) = input.len().checked_sub(GCM_TAG_LEN) else {
            return Err(CryptoError::EncryptedDataLenRange);
        };
        if out.len() < n {
            return Err(CryptoError::General("GCM output buffer too short".into()));
        }
        let (ct, tag) = input.split_at(n);
        let out = &mut out[..n];
        if self
            .0
            .open_separate_gather(Self::nonce(iv)?, Aad::from(aad), ct, tag, out)
            .is_err()
        {
            zeroize::Zeroize::zeroize(out);
            return Err(CryptoError::EncryptedDataInvalid);
        }
        Ok(n)
    }
}

pub fn aes_gcm_decrypt(
    raw_key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_bits: u32,
    ciphertext_and_tag: &[u8],
) -> CryptoResult<Vec<u8>> {
    let alg = gcm_alg(raw_key, iv, tag_bits)?;
    let tag_len = tag_bits as usize / 8;
    if ciphertext_and_tag.len() < tag_len {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    if iv.len() != GCM_IV_LEN {
        return super::gcm::open(raw_key, iv, aad, tag_len, ciphertext_and_tag);
    }
    if tag_len < GCM_TAG_LEN {
        let sealer = gcm_key(alg, raw_key, iv)?;
        return gcm_open_truncated(raw_key, sealer, iv, aad, tag_len, ciphertext_and_tag);
    }
    let mut plain = vec![0u8; ciphertext_and_tag.len() - GCM_TAG_LEN];
    GcmKey::new(raw_key)?.open_into(iv, aad, ciphertext_and_tag, &mut plain)?;
    Ok(plain)
}

/// Opens a GCM message whose tag is shorter than 128 bits, which aws-lc-rs's AEAD API
/// does not take: the ciphertext is decrypted with AES-CTR from GCM's first counter block
/// (`IV ‖ 0x00000002` for a 96-bit IV), sealed again to recompute the full tag over the
/// same AAD and ciphertext, and the plaintext is released only if the tag's leading bytes
/// match (in constant time). GCM's length limit keeps the 32-bit counter from wrapping,
/// so a 128-bit CTR counter gives the same key stream.
fn gcm_open_truncated(
    raw_key: &[u8],
    sealer: (LessSafeKey, Nonce),
    iv: &[u8],
    aad: &[u8],
    tag_len: usize,
    input: &[u8],
) -> CryptoResult<Vec<u8>> {
    let (ct, tag) = input.split_at(input.len() - tag_len);
    if ct.len() > GCM_MAX_INPUT {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    let mut counter = [0u8; 16];
    counter[..GCM_IV_LEN].copy_from_slice(iv);
    counter[15] = 2;
    let plain = Zeroizing::new(super::aes_encrypt(
        super::BlockMode::Ctr,
        raw_key,
        &counter,
        ct,
    )?);
    let (key, nonce) = sealer;
    let mut again = Zeroizing::new(plain.to_vec());
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut *again)
        .map_err(|_| CryptoError::EncryptedDataLenRange)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(&again[ct.len()..][..tag_len], tag)
        .map_err(|_| CryptoError::EncryptedDataInvalid)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{Aead, KeyInit, Payload};

    const IV: [u8; 12] = [7; 12];

    fn oracle_encrypt(key: &[u8], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let payload = Payload { msg: pt, aad };
        let nonce = (&IV).into();
        match key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                .unwrap()
                .encrypt(nonce, payload),
            32 => aes_gcm::Aes256Gcm::new_from_slice(key)
                .unwrap()
                .encrypt(nonce, payload),
            _ => unreachable!(),
        }
        .unwrap()
    }

    fn oracle_decrypt(key: &[u8], aad: &[u8], ct: &[u8]) -> Vec<u8> {
        let payload = Payload { msg: ct, aad };
        let nonce = (&IV).into();
        match key.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(key)
                .unwrap()
                .decrypt(nonce, payload),
            32 => aes_gcm::Aes256Gcm::new_from_slice(key)
                .unwrap()
                .decrypt(nonce, payload),
            _ => unreachable!(),
        }
        .unwrap()
    }

    #[test]
    fn round_trip_for_every_key_size() {
        for len in [16, 24, 32] {
            let key = generate_secret(len).unwrap();
            assert_eq!(key.len(), len);
            for pt in [&b""[..], b"attack at dawn", &[0xa5; 1000]] {
                let ct = aes_gcm_encrypt(key.expose(), &IV, b"hdr", 128, pt).unwrap();
                assert_eq!(ct.len(), pt.len() + 16);
                let back = aes_gcm_decrypt(key.expose(), &IV, b"hdr", 128, &ct).unwrap();
                assert_eq!(back, pt);
            }
        }
    }

    #[test]
    fn interoperates_with_rustcrypto_aes_gcm() {
        for len in [16, 32] {
            let key = generate_secret(len).unwrap();
            let pt = b"the quick brown fox jumps over the lazy dog";
            let ours = aes_gcm_encrypt(key.expose(), &IV, b"aad", 128, pt).unwrap();
            assert_eq!(oracle_decrypt(key.expose(), b"aad", &ours), pt);
            let theirs = oracle_encrypt(key.expose(), b"aad", pt);
            assert_eq!(theirs, ours, "GCM is deterministic for a given key and IV");
            assert_eq!(
                aes_gcm_decrypt(key.expose(), &IV, b"aad", 128, &theirs).unwrap(),
                pt
            );
        }
    }

    #[test]
    fn tampering_is_detected() {
        let key = generate_secret(32).unwrap();
        let ct = aes_gcm_encrypt(key.expose(), &IV, b"aad", 128, b"secret payload").unwrap();
        for i in [0, 5, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert!(matches!(
                aes_gcm_decrypt(key.expose(), &IV, b"aad", 128, &bad),
                Err(CryptoError::EncryptedDataInvalid)
            ));
        }
        assert!(matches!(
            aes_gcm_decrypt(key.expose(), &IV, b"other aad", 128, &ct),
            Err(CryptoError::EncryptedDataInvalid)
        ));
        let other_key = generate_secret(32).unwrap();
        assert!(matches!(
            aes_gcm_decrypt(other_key.expose(), &IV, b"aad", 128, &ct),
            Err(CryptoError::EncryptedDataInvalid)
        ));
        assert!(matches!(
            aes_gcm_decrypt(key.expose(), &IV, b"aad", 128, &ct[..15]),
            Err(CryptoError::EncryptedDataLenRange)
        ));
    }

    #[test]
    fn unsupported_sizes_answer_the_documented_errors() {
        let key = [1u8; 32];
        for bad_key in [&[1u8; 15][..], &[1u8; 20], &[1u8; 33], &[]] {
            assert!(matches!(
                aes_gcm_encrypt(bad_key, &IV, b"", 128, b"x"),
                Err(CryptoError::KeySizeRange)
            ));
            assert!(matches!(
                aes_gcm_decrypt(bad_key, &IV, b"", 128, &[0; 32]),
                Err(CryptoError::KeySizeRange)
            ));
        }
        for bad_iv in [&[0u8; GCM_MAX_IV_LEN + 1][..], &[]] {
            assert!(matches!(
                aes_gcm_encrypt(&key, bad_iv, b"", 128, b"x"),
                Err(CryptoError::MechanismParamInvalid(m)) if m.contains("IV")
            ));
            assert!(matches!(
                aes_gcm_decrypt(&key, bad_iv, b"", 128, &[0; 32]),
                Err(CryptoError::MechanismParamInvalid(m)) if m.contains("IV")
            ));
        }
        // IVs other than 96 bits take another path, with the same key and tag checks.
        assert!(matches!(
            aes_gcm_encrypt(&[1u8; 20], &[0u8; 16], b"", 128, b"x"),
            Err(CryptoError::KeySizeRange)
        ));
        assert!(matches!(
            aes_gcm_decrypt(&key, &[0u8; 16], b"", 64, &[0; 32]),
            Err(CryptoError::MechanismParamInvalid(m)) if m.contains("tag")
        ));
        assert!(matches!(
            aes_gcm_decrypt(&key, &[0u8; 16], b"", 128, &[0; 15]),
            Err(CryptoError::EncryptedDataLenRange)
        ));
        for bad_tag in [32, 64, 100, 0, 136, 256] {
            assert!(matches!(
                aes_gcm_encrypt(&key, &IV, b"", bad_tag, b"x"),
                Err(CryptoError::MechanismParamInvalid(m)) if m.contains("tag")
            ));
            assert!(matches!(
                aes_gcm_decrypt(&key, &IV, b"", bad_tag, &[0; 32]),
                Err(CryptoError::MechanismParamInvalid(_))
            ));
        }
    }

    #[test]
    fn truncated_tags_are_the_full_tag_cut_and_checked_in_full() {
        use aes_gcm::aead::consts::U12;
        type Gcm96 = aes_gcm::AesGcm<aes_gcm::aes::Aes256, U12, U12>;
        let key = generate_secret(32).unwrap();
        let pt = b"short tags are allowed down to 96 bits";
        let full = aes_gcm_encrypt(key.expose(), &IV, b"aad", 128, pt).unwrap();
        for bits in [96u32, 104, 112, 120] {
            let n = bits as usize / 8;
            let ct = aes_gcm_encrypt(key.expose(), &IV, b"aad", bits, pt).unwrap();
            assert_eq!(ct, full[..pt.len() + n], "{bits}-bit tag");
            assert_eq!(
                aes_gcm_decrypt(key.expose(), &IV, b"aad", bits, &ct).unwrap(),
                pt
            );
            // Any flipped bit, in the ciphertext or the tag, or other AAD: refused.
            for i in [0, pt.len() - 1, pt.len(), ct.len() - 1] {
                let mut bad = ct.clone();
                bad[i] ^= 0x80;
                assert!(matches!(
                    aes_gcm_decrypt(key.expose(), &IV, b"aad", bits, &bad),
                    Err(CryptoError::EncryptedDataInvalid)
                ));
            }
            assert!(matches!(
                aes_gcm_decrypt(key.expose(), &IV, b"AAD", bits, &ct),
                Err(CryptoError::EncryptedDataInvalid)
            ));
            assert!(matches!(
                aes_gcm_decrypt(key.expose(), &IV, b"aad", bits, &ct[..n - 1]),
                Err(CryptoError::EncryptedDataLenRange)
            ));
        }
        // The oracle's 96-bit-tag GCM agrees both ways, also on an empty message.
        let oracle = Gcm96::new_from_slice(key.expose()).unwrap();
        for msg in [&pt[..], b""] {
            let ours = aes_gcm_encrypt(key.expose(), &IV, b"aad", 96, msg).unwrap();
            let payload = Payload {
                msg: &ours,
                aad: b"aad",
            };
            assert_eq!(oracle.decrypt((&IV).into(), payload).unwrap(), msg);
            let payload = Payload { msg, aad: b"aad" };
            let theirs = oracle.encrypt((&IV).into(), payload).unwrap();
            assert_eq!(
                aes_gcm_decrypt(key.expose(), &IV, b"aad", 96, &theirs).unwrap(),
                msg
            );
        }
    }

    #[test]
    fn secrets_are_random_and_bounded() {
        let a = generate_secret(32).unwrap();
        let b = generate_secret(32).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(matches!(generate_secret(0), Err(CryptoError::KeySizeRange)));
        assert!(matches!(
            generate_secret(MAX_SECRET_LEN + 1),
            Err(CryptoError::KeySizeRange)
        ));
        let mut buf = [0u8; 64];
        random_bytes(&mut buf).unwrap();
        assert_ne!(buf, [0u8; 64]);
    }
}
