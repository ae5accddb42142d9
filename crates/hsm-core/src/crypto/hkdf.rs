//! HKDF (RFC 5869) for CKM_HKDF_DERIVE, through aws-lc-rs.

use super::{CryptoError, CryptoResult, HashAlg};
use aws_lc_rs::hkdf::{self, HKDF_SHA256, HKDF_SHA384, HKDF_SHA512, KeyType, Prk, Salt};
use hsm_types::SecretBytes;

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn algorithm(hash: HashAlg) -> CryptoResult<hkdf::Algorithm> {
    match hash {
        HashAlg::Sha256 => Ok(HKDF_SHA256),
        HashAlg::Sha384 => Ok(HKDF_SHA384),
        HashAlg::Sha512 => Ok(HKDF_SHA512),
        _ => Err(CryptoError::MechanismParamInvalid(
            "HKDF with SHA-256, SHA-384 or SHA-512 only".into(),
        )),
    }
}

/// Extract (when `extract`) then expand (when `expand`) `len` bytes. Extract-only returns
/// the pseudo-random key itself, which aws-lc-rs does not expose: refused.
pub fn hkdf(
    hash: HashAlg,
    ikm: &[u8],
    extract: bool,
    expand: bool,
    salt: &[u8],
    info: &[u8],
    len: usize,
) -> CryptoResult<SecretBytes> {
    let alg = algorithm(hash)?;
    if !expand {
        return Err(CryptoError::MechanismParamInvalid(
            "extract-only HKDF is not supported".into(),
        ));
    }
    if len == 0 || len > 255 * hash.output_len() {
        return Err(CryptoError::KeySizeRange);
    }
    let prk = if extract {
        Salt::new(alg, salt).extract(ikm)
    } else {
        Prk::new_less_safe(alg, ikm)
    };
    let infos = [info];
    let okm = prk
        .expand(&infos, Len(len))
        .map_err(|_| CryptoError::KeySizeRange)?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .map_err(|_| CryptoError::General("HKDF expand failed".into()))?;
    Ok(SecretBytes::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_hex as hex;

    #[test]
    fn rfc5869_test_case_1() {
        let okm = hkdf(
            HashAlg::Sha256,
            &hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            true,
            true,
            &hex("000102030405060708090a0b0c"),
            &hex("f0f1f2f3f4f5f6f7f8f9"),
            42,
        )
        .unwrap();
        assert_eq!(okm.expose(), hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865").as_slice());
        assert!(hkdf(HashAlg::Sha1, b"k", true, true, b"", b"", 16).is_err());
        assert!(hkdf(HashAlg::Sha256, b"k", true, false, b"", b"", 16).is_err());
    }
}
