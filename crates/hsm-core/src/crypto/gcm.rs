//! AES-GCM with IVs other than 96 bits (SP 800-38D §7.1), which aws-lc-rs's AEAD does
//! not take: the first counter block J0 is then GHASH of the IV, not `IV ‖ 0³¹1`.
//!
//! aws-lc-rs still does every AES operation (CTR mode for the key stream, E_K(0) for the
//! hash key, E_K(J0) for the tag mask). GHASH itself is written here, bit by bit with masks
//! instead of branches or tables, so that its time does not depend on the hash key or the
//! data. It is slow next to aws-lc-rs's GCM (which handles the common 96-bit IVs), which is
//! acceptable for a path peers rarely take.

use super::block::{BlockMode, aes_encrypt};
use super::symmetric::GCM_MAX_INPUT;
use super::{CryptoError, CryptoResult};
use zeroize::Zeroizing;

const BLOCK: usize = 16;

/// Multiplication in GF(2^128) with GCM's bit order and polynomial (SP 800-38D §6.3):
/// constant time, no branch or table lookup on either operand.
fn gf_mul(x: u128, y: u128) -> u128 {
    const R: u128 = 0xe1 << 120;
    let mut z = 0u128;
    let mut v = y;
    for i in 0..128 {
        let bit = (x >> (127 - i)) & 1;
        z ^= v & 0u128.wrapping_sub(bit);
        let carry = v & 1;
        v = (v >> 1) ^ (R & 0u128.wrapping_sub(carry));
    }
    z
}

/// GHASH under the hash key `h`, over whole blocks (a short last block is zero-padded).
struct Ghash {
    h: u128,
    y: u128,
}

impl Ghash {
    fn new(h: u128) -> Ghash {
        Ghash { h, y: 0 }
    }

    fn update_padded(&mut self, data: &[u8]) {
        for chunk in data.chunks(BLOCK) {
            let mut block = [0u8; BLOCK];
            block[..chunk.len()].copy_from_slice(chunk);
            self.y = gf_mul(self.y ^ u128::from_be_bytes(block), self.h);
        }
    }

    fn lengths(&mut self, a_bytes: usize, c_bytes: usize) {
        let block = (u128::from(a_bytes as u64 * 8) << 64) | u128::from(c_bytes as u64 * 8);
        self.y = gf_mul(self.y ^ block, self.h);
    }
}

/// E_K(block) through aws-lc-rs (a one-block CTR key stream over zeros).
fn encrypt_block(key: &[u8], block: u128) -> CryptoResult<u128> {
    let out = Zeroizing::new(aes_encrypt(
        BlockMode::Ctr,
        key,
        &block.to_be_bytes(),
        &[0u8; BLOCK],
    )?);
    let mut b = [0u8; BLOCK];
    b.copy_from_slice(&out);
    Ok(u128::from_be_bytes(b))
}

/// GCM's counter mode from `first` with `inc32`: only the low 32 bits count, wrapping.
/// aws-lc-rs's CTR carries into the upper bits, so the stream is cut where the low word
/// wraps.
fn gctr(key: &[u8], first: u128, data: &[u8]) -> CryptoResult<Vec<u8>> {
    let low = first as u32;
    let before_wrap = (u64::from(u32::MAX) - u64::from(low) + 1) as usize;
    let split = data.len().min(before_wrap.saturating_mul(BLOCK));
    let mut out = aes_encrypt(BlockMode::Ctr, key, &first.to_be_bytes(), &data[..split])?;
    if split < data.len() {
        let wrapped = first & !u128::from(u32::MAX);
        out.extend(aes_encrypt(
            BlockMode::Ctr,
            key,
            &wrapped.to_be_bytes(),
            &data[split..],
        )?);
    }
    Ok(out)
}

/// H, J0 and the tag mask E_K(J0) for this key and IV.
fn setup(key: &[u8], iv: &[u8]) -> CryptoResult<(u128, u128, u128)> {
    let h = encrypt_block(key, 0)?;
    let j0 = if iv.len() == 12 {
        let mut b = [0u8; BLOCK];
        b[..12].copy_from_slice(iv);
        b[15] = 1;
        u128::from_be_bytes(b)
    } else {
        let mut g = Ghash::new(h);
        g.update_padded(iv);
        g.lengths(0, iv.len());
        g.y
    };
    Ok((h, j0, encrypt_block(key, j0)?))
}

fn tag(h: u128, mask: u128, aad: &[u8], ct: &[u8]) -> [u8; BLOCK] {
    let mut g = Ghash::new(h);
    g.update_padded(aad);
    g.update_padded(ct);
    g.lengths(aad.len(), ct.len());
    (g.y ^ mask).to_be_bytes()
}

fn inc32(x: u128) -> u128 {
    (x & !u128::from(u32::MAX)) | u128::from((x as u32).wrapping_add(1))
}

/// `ciphertext ‖ tag` (the tag's leading `tag_len` bytes).
pub(crate) fn seal(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_len: usize,
    plaintext: &[u8],
) -> CryptoResult<Vec<u8>> {
    if plaintext.len() > GCM_MAX_INPUT {
        return Err(CryptoError::DataLenRange);
    }
    let (h, j0, mask) = setup(key, iv)?;
    let mut out = gctr(key, inc32(j0), plaintext)?;
    let t = tag(h, mask, aad, &out);
    out.extend_from_slice(&t[..tag_len]);
    Ok(out)
}

/// The plaintext, released only when the tag matches (compared in constant time).
pub(crate) fn open(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_len: usize,
    input: &[u8],
) -> CryptoResult<Vec<u8>> {
    let (ct, given) = input.split_at(input.len() - tag_len);
    if ct.len() > GCM_MAX_INPUT {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    let (h, j0, mask) = setup(key, iv)?;
    let t = tag(h, mask, aad, ct);
    aws_lc_rs::constant_time::verify_slices_are_equal(&t[..tag_len], given)
        .map_err(|_| CryptoError::EncryptedDataInvalid)?;
    gctr(key, inc32(j0), ct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_hex as hex;

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 5 and 6
    /// (AES-128, 64-bit and 480-bit IVs) and 17 and 18 (AES-256).
    #[test]
    fn published_vectors_with_short_and_long_ivs() {
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let cases = [
            (
                "feffe9928665731c6d6a8f9467308308",
                "cafebabefacedbad",
                "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c742373806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598",
                "3612d2e79e3b0785561be14aaca2fccb",
            ),
            (
                "feffe9928665731c6d6a8f9467308308",
                "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
                "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca701e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5",
                "619cc5aefffe0bfa462af43c1699d050",
            ),
            (
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "cafebabefacedbad",
                "c3762df1ca787d32ae47c13bf19844cbaf1ae14d0b976afac52ff7d79bba9de0feb582d33934a4f0954cc2363bc73f7862ac430e64abe499f47c9b1f",
                "3a337dbf46a792c45e454913fe2ea8f2",
            ),
            (
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b",
                "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf40fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f",
                "a44a8266ee1c8eb0c8b5d4cf5ae9f19a",
            ),
        ];
        for (key, iv, ct, t) in cases {
            let (key, iv) = (hex(key), hex(iv));
            let mut want = hex(ct);
            want.extend(hex(t));
            assert_eq!(
                seal(&key, &iv, &aad, 16, &pt).unwrap(),
                want,
                "iv {iv:02x?}"
            );
            assert_eq!(open(&key, &iv, &aad, 16, &want).unwrap(), pt);
            let mut bad = want.clone();
            bad[3] ^= 1;
            assert!(matches!(
                open(&key, &iv, &aad, 16, &bad),
                Err(CryptoError::EncryptedDataInvalid)
            ));
        }
    }

    /// The key stream wraps in the low 32 bits of the counter, as GCM's inc32 does.
    #[test]
    fn the_counter_wraps_in_its_low_word() {
        let key = [0x24u8; 16];
        let first = (0x0102_0304_0506_0708_090a_0b0c_u128 << 32) | 0xffff_ffff;
        let data = [0u8; 48];
        let stream = gctr(&key, first, &data).unwrap();
        let block = |c: u128| encrypt_block(&key, c).unwrap().to_be_bytes();
        assert_eq!(stream[..16], block(first));
        assert_eq!(stream[16..32], block(first & !u128::from(u32::MAX)));
        assert_eq!(stream[32..], block((first & !u128::from(u32::MAX)) | 1));
    }

    /// RustCrypto's GCM with a 16-byte nonce agrees (the IV length peers use most after 12).
    #[test]
    fn agrees_with_rustcrypto_on_128_bit_ivs() {
        use aes_gcm::aead::consts::U16;
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        type Gcm16 = aes_gcm::AesGcm<aes_gcm::aes::Aes256, U16>;
        let key = [0x17u8; 32];
        let iv = [0xa9u8; 16];
        for pt in [&b""[..], b"x", &[0x5a; 100]] {
            let theirs = Gcm16::new_from_slice(&key)
                .unwrap()
                .encrypt(
                    (&iv).into(),
                    Payload {
                        msg: pt,
                        aad: b"header",
                    },
                )
                .unwrap();
            assert_eq!(seal(&key, &iv, b"header", 16, pt).unwrap(), theirs);
        }
    }

    /// Short tags on this path are the full tag cut, as RustCrypto's 96-bit-tag GCM says,
    /// and a wrong byte anywhere in them is refused.
    #[test]
    fn short_tags_with_a_64_bit_iv() {
        use aes_gcm::aead::consts::{U8, U12};
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        type Gcm8x12 = aes_gcm::AesGcm<aes_gcm::aes::Aes128, U8, U12>;
        let key = [0x0fu8; 16];
        let iv = [0x33u8; 8];
        let theirs = Gcm8x12::new_from_slice(&key)
            .unwrap()
            .encrypt(
                (&iv).into(),
                Payload {
                    msg: b"twelve-byte tag",
                    aad: b"",
                },
            )
            .unwrap();
        let mine = seal(&key, &iv, b"", 12, b"twelve-byte tag").unwrap();
        assert_eq!(mine, theirs);
        assert_eq!(open(&key, &iv, b"", 12, &mine).unwrap(), b"twelve-byte tag");
        for i in mine.len() - 12..mine.len() {
            let mut bad = mine.clone();
            bad[i] ^= 0x80;
            assert!(open(&key, &iv, b"", 12, &bad).is_err(), "tag byte {i}");
        }
    }

    /// A 96-bit IV through this code gives what aws-lc-rs's GCM gives.
    #[test]
    fn agrees_with_aws_lc_rs_on_96_bit_ivs() {
        let key = [0x61u8; 32];
        let iv = [0x3cu8; 12];
        let mine = seal(&key, &iv, b"aad", 16, b"the same either way").unwrap();
        let theirs =
            super::super::aes_gcm_encrypt(&key, &iv, b"aad", 128, b"the same either way").unwrap();
        assert_eq!(mine, theirs);
    }
}
