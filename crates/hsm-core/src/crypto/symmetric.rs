//! Randomness, secret generation and AES-GCM.

use super::{CryptoError, CryptoResult};
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use hsm_types::SecretBytes;
use zeroize::Zeroizing;

/// The one IV length aws-lc-rs AES-GCM takes.
pub const GCM_IV_LEN: usize = 12;
/// The one tag length aws-lc-rs AES-GCM produces.
pub const GCM_TAG_BITS: u32 = 128;
const GCM_TAG_LEN: usize = GCM_TAG_BITS as usize / 8;
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

fn gcm_key(key: &[u8], iv: &[u8], tag_bits: u32) -> CryptoResult<(LessSafeKey, Nonce)> {
    let alg = match key.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        _ => return Err(CryptoError::KeySizeRange),
    };
    if iv.len() != GCM_IV_LEN {
        return Err(CryptoError::MechanismParamInvalid(format!(
            "AES-GCM IV of {} bytes: only {GCM_IV_LEN}-byte IVs are supported",
            iv.len()
        )));
    }
    if tag_bits != GCM_TAG_BITS {
        return Err(CryptoError::MechanismParamInvalid(format!(
            "AES-GCM tag of {tag_bits} bits: only {GCM_TAG_BITS}-bit tags are supported"
        )));
    }
    let key = UnboundKey::new(alg, key)
        .map_err(|_| CryptoError::General("AES-GCM key rejected".into()))?;
    let nonce = Nonce::try_assume_unique_for_key(iv)
        .map_err(|_| CryptoError::General("AES-GCM IV rejected".into()))?;
    Ok((LessSafeKey::new(key), nonce))
}

/// Returns `ciphertext || tag`.
pub fn aes_gcm_encrypt(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_bits: u32,
    plaintext: &[u8],
) -> CryptoResult<Vec<u8>> {
    let (key, nonce) = gcm_key(key, iv, tag_bits)?;
    let mut out = Vec::with_capacity(plaintext.len() + GCM_TAG_LEN);
    out.extend_from_slice(plaintext);
    // Only fails for input beyond GCM's 2^36-byte limit.
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut out)
        .map_err(|_| CryptoError::DataLenRange)?;
    Ok(out)
}

pub fn aes_gcm_decrypt(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_bits: u32,
    ciphertext_and_tag: &[u8],
) -> CryptoResult<Vec<u8>> {
    let (key, nonce) = gcm_key(key, iv, tag_bits)?;
    if ciphertext_and_tag.len() < GCM_TAG_LEN {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    // On a bad tag the buffer may hold unauthenticated plaintext: it is wiped on drop.
    let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::EncryptedDataInvalid)?
        .len();
    let mut plain = std::mem::take(&mut *buf);
    plain.truncate(len);
    Ok(plain)
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
        for bad_iv in [&[0u8; 8][..], &[0u8; 16], &[]] {
            assert!(matches!(
                aes_gcm_encrypt(&key, bad_iv, b"", 128, b"x"),
                Err(CryptoError::MechanismParamInvalid(m)) if m.contains("IV")
            ));
        }
        for bad_tag in [96, 120, 0, 256] {
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
