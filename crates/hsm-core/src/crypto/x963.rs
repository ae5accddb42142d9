//! The ANSI X9.63 key derivation function (SEC 1 §3.6.1), which PKCS#11 names
//! `CKD_SHA*_KDF` for `CKM_ECDH1_DERIVE`: `K = H(Z ‖ 1 ‖ info) ‖ H(Z ‖ 2 ‖ info) ‖ …`
//! with a 32-bit big-endian counter, cut to the length asked for. aws-lc-rs has no public
//! X9.63 KDF, so it is built here over aws-lc-rs's digests.

use super::{CryptoError, CryptoResult, Digester, HashAlg};
use hsm_types::SecretBytes;
use zeroize::Zeroizing;

/// `len` bytes from the shared secret `z` and the shared info.
pub fn x963_kdf(hash: HashAlg, z: &[u8], info: &[u8], len: usize) -> CryptoResult<SecretBytes> {
    if len == 0 || len > super::MAX_SECRET_LEN {
        return Err(CryptoError::KeySizeRange);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + hash.output_len()));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut d = Digester::new(hash);
        d.update(z);
        d.update(&counter.to_be_bytes());
        d.update(info);
        let block = Zeroizing::new(d.finish());
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    Ok(SecretBytes::new(out.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_hex as hex;
    use sha2::Digest as _;

    #[test]
    fn nist_cavs_vector_sha256() {
        // NIST CAVS (SP 800-135) ANSI X9.63 KDF, SHA-256, no shared info, 128 bits.
        let k = x963_kdf(
            HashAlg::Sha256,
            &hex("96c05619d56c328ab95fe84b18264b08725b85e33fd34f08"),
            b"",
            16,
        )
        .unwrap();
        assert_eq!(k.expose(), hex("443024c3dae66b95e6f5670601558f71"));
    }

    #[test]
    fn several_blocks_match_the_definition_with_rustcrypto_hashes() {
        let z = [0x42u8; 32];
        let k = x963_kdf(HashAlg::Sha256, &z, b"ferrohsm", 40).unwrap();
        let block = |i: u32| {
            let mut h = sha2::Sha256::new();
            h.update(z);
            h.update(i.to_be_bytes());
            h.update(b"ferrohsm");
            h.finalize().to_vec()
        };
        let want: Vec<u8> = [block(1), block(2)].concat()[..40].to_vec();
        assert_eq!(k.expose(), want);
        let k384 = x963_kdf(HashAlg::Sha384, &z, b"", 48).unwrap();
        let mut h = sha2::Sha384::new();
        h.update(z);
        h.update(1u32.to_be_bytes());
        assert_eq!(k384.expose(), h.finalize().as_slice());
        assert!(matches!(
            x963_kdf(HashAlg::Sha256, &z, b"", 0),
            Err(CryptoError::KeySizeRange)
        ));
    }
}
