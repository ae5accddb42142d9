//! The hash-based KDFs of `CKM_ECDH1_DERIVE`, built over aws-lc-rs's digests (it has no
//! public API for them): ANSI X9.63 (SEC 1 §3.6.1, `CKD_SHA*_KDF`),
//! `K = H(Z ‖ 1 ‖ info) ‖ H(Z ‖ 2 ‖ info) ‖ …`, and the SP 800-56C one-step KDF
//! (`CKD_SHA*_KDF_SP800`), `K = H(1 ‖ Z ‖ info) ‖ H(2 ‖ Z ‖ info) ‖ …`; both with a 32-bit
//! big-endian counter, cut to the length asked for.

use super::{CryptoError, CryptoResult, Digester, HashAlg};
use hsm_types::SecretBytes;
use zeroize::Zeroizing;

/// `len` bytes from the shared secret `z` and the shared info (ANSI X9.63).
pub fn x963_kdf(hash: HashAlg, z: &[u8], info: &[u8], len: usize) -> CryptoResult<SecretBytes> {
    counter_kdf(hash, z, info, len, false)
}

/// `len` bytes from the shared secret `z` and the fixed info (SP 800-56C one-step, hash).
pub fn sp800_56c_kdf(
    hash: HashAlg,
    z: &[u8],
    info: &[u8],
    len: usize,
) -> CryptoResult<SecretBytes> {
    counter_kdf(hash, z, info, len, true)
}

fn counter_kdf(
    hash: HashAlg,
    z: &[u8],
    info: &[u8],
    len: usize,
    counter_first: bool,
) -> CryptoResult<SecretBytes> {
    if len == 0 || len > super::MAX_SECRET_LEN {
        return Err(CryptoError::KeySizeRange);
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len + hash.output_len()));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut d = Digester::new(hash);
        if counter_first {
            d.update(&counter.to_be_bytes());
            d.update(z);
        } else {
            d.update(z);
            d.update(&counter.to_be_bytes());
        }
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

    /// The OpenPGP X25519 sample the `cryptoki` crate's tests use (RFC 6637-style KDF:
    /// SHA-256 over 00000001 ‖ Z ‖ parameters): X25519, then the SP 800-56C one-step KDF.
    #[test]
    fn x25519_then_sp800_56c_matches_the_openpgp_sample() {
        let z = crate::crypto::x25519(
            &hex("F00670C5F139E7E6C2511EA04FF507AFBBE237CE3C71A89CA59A1C5CF8856562"),
            &hex("533B3F09E53B3DEED661A13F7A7D9694AB71CE156C728E00DEE87A1EE3A14C4A"),
        )
        .unwrap();
        let info = hex(
            "0A2B0601040197550105011203010807416E6F6E796D6F75732053656E646572202020205633A4C5AE4305BC0FE2ABB699A8EE54632790A0",
        );
        let k = sp800_56c_kdf(HashAlg::Sha256, z.expose(), &info, 16).unwrap();
        assert_eq!(
            k.expose(),
            hex("AF8CE51D0139A6D60831A9BABAB20186").as_slice()
        );
        // The counter comes first here and after Z in X9.63: the two differ.
        assert_ne!(
            x963_kdf(HashAlg::Sha256, z.expose(), &info, 16)
                .unwrap()
                .expose(),
            k.expose()
        );
    }

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
