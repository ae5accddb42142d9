//! RSA encryption (OAEP, and PKCS#1 v1.5) through aws-lc-rs. The `rsa` crate only
//! converts components to the DER forms aws-lc-rs loads.

use super::rsa_key::RsaPrivateParts;
use super::{CryptoError, CryptoResult, HashAlg, strip_leading_zeros};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey};
use rsa::pkcs1::{RsaPublicKeyRef, UintRef};
use rsa::pkcs8::EncodePublicKey as _;
use zeroize::Zeroize;

fn algorithm(hash: HashAlg, mgf: HashAlg) -> CryptoResult<&'static OaepAlgorithm> {
    if hash != mgf {
        return Err(CryptoError::MechanismParamInvalid(
            "the MGF1 hash must equal the OAEP hash".into(),
        ));
    }
    Ok(match hash {
        HashAlg::Sha1 => &OAEP_SHA1_MGF1SHA1,
        HashAlg::Sha256 => &OAEP_SHA256_MGF1SHA256,
        HashAlg::Sha384 => &OAEP_SHA384_MGF1SHA384,
        HashAlg::Sha512 => &OAEP_SHA512_MGF1SHA512,
        HashAlg::Sha224 => {
            return Err(CryptoError::MechanismParamInvalid(
                "OAEP with SHA-224 is not offered".into(),
            ));
        }
    })
}

fn label(l: &[u8]) -> Option<&[u8]> {
    (!l.is_empty()).then_some(l)
}

fn public_key(n: &[u8], e: &[u8]) -> CryptoResult<PublicEncryptingKey> {
    let public = RsaPublicKeyRef {
        modulus: UintRef::new(strip_leading_zeros(n))
            .map_err(|_| CryptoError::KeyTypeInconsistent)?,
        public_exponent: UintRef::new(strip_leading_zeros(e))
            .map_err(|_| CryptoError::KeyTypeInconsistent)?,
    };
    let spki = rsa::PublicKey::try_from(public)
        .map_err(|_| CryptoError::KeyTypeInconsistent)?
        .to_public_key_der()
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    PublicEncryptingKey::from_der(spki.as_bytes()).map_err(|_| CryptoError::KeySizeRange)
}

fn private_key(parts: &RsaPrivateParts) -> CryptoResult<PrivateDecryptingKey> {
    let pair = parts
        .lc_key_pair()
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    let der = pair
        .as_der()
        .map_err(|_| CryptoError::General("RSA key export".into()))?;
    PrivateDecryptingKey::from_pkcs8(der.as_ref()).map_err(|_| CryptoError::KeyTypeInconsistent)
}

/// PKCS#1 v1.5 encryption with the public key (n, e).
pub fn rsa_pkcs1_encrypt(n: &[u8], e: &[u8], data: &[u8]) -> CryptoResult<Vec<u8>> {
    let key =
        Pkcs1PublicEncryptingKey::new(public_key(n, e)?).map_err(|_| CryptoError::KeySizeRange)?;
    if data.len() > key.max_plaintext_size() {
        return Err(CryptoError::DataLenRange);
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(data, &mut out)
        .map_err(|_| CryptoError::General("RSA encryption failed".into()))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// PKCS#1 v1.5 decryption. Only reachable when the configuration enables it: padding
/// oracles (Bleichenbacher, Marvin) make it dangerous by default. Every failure looks alike.
pub fn rsa_pkcs1_decrypt(parts: &RsaPrivateParts, data: &[u8]) -> CryptoResult<Vec<u8>> {
    let key = Pkcs1PrivateDecryptingKey::new(private_key(parts)?)
        .map_err(|_| CryptoError::KeySizeRange)?;
    if data.len() != key.key_size_bytes() {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    let mut out = vec![0u8; key.key_size_bytes()];
    let n = key
        .decrypt(data, &mut out)
        .map_err(|_| CryptoError::EncryptedDataInvalid)?
        .len();
    let plain = out[..n].to_vec();
    out.zeroize();
    Ok(plain)
}

/// Encrypts with the public key (n, e).
pub fn rsa_oaep_encrypt(
    n: &[u8],
    e: &[u8],
    hash: HashAlg,
    mgf: HashAlg,
    l: &[u8],
    data: &[u8],
) -> CryptoResult<Vec<u8>> {
    let alg = algorithm(hash, mgf)?;
    let key = public_key(n, e)?;
    let key = OaepPublicEncryptingKey::new(key).map_err(|_| CryptoError::KeySizeRange)?;
    if data.len() > key.max_plaintext_size(alg) {
        return Err(CryptoError::DataLenRange);
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let n = key
        .encrypt(alg, data, &mut out, label(l))
        .map_err(|_| CryptoError::General("RSA-OAEP encryption failed".into()))?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Decrypts with the private key; any failure is "encrypted data invalid", with no detail
/// that could serve as an oracle.
pub fn rsa_oaep_decrypt(
    parts: &RsaPrivateParts,
    hash: HashAlg,
    mgf: HashAlg,
    l: &[u8],
    data: &[u8],
) -> CryptoResult<Vec<u8>> {
    let alg = algorithm(hash, mgf)?;
    let key = private_key(parts)?;
    let key = OaepPrivateDecryptingKey::new(key).map_err(|_| CryptoError::KeySizeRange)?;
    if data.len() != key.key_size_bytes() {
        return Err(CryptoError::EncryptedDataLenRange);
    }
    let mut out = vec![0u8; key.min_output_size()];
    let n = key
        .decrypt(alg, data, &mut out, label(l))
        .map_err(|_| CryptoError::EncryptedDataInvalid)?
        .len();
    let plain = out[..n].to_vec();
    out.zeroize();
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_labels_and_rustcrypto_decrypts_ours() {
        let parts = super::super::generate_rsa(2048, None).unwrap();
        for hash in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
            let ct = rsa_oaep_encrypt(
                &parts.modulus,
                &parts.public_exponent,
                hash,
                hash,
                b"label",
                b"secret",
            )
            .unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(
                rsa_oaep_decrypt(&parts, hash, hash, b"label", &ct).unwrap(),
                b"secret"
            );
            assert!(matches!(
                rsa_oaep_decrypt(&parts, hash, hash, b"other", &ct),
                Err(CryptoError::EncryptedDataInvalid)
            ));
        }
        // The independent implementation decrypts what aws-lc-rs sealed.
        let ct = rsa_oaep_encrypt(
            &parts.modulus,
            &parts.public_exponent,
            HashAlg::Sha256,
            HashAlg::Sha256,
            b"",
            b"oracle",
        )
        .unwrap();
        let pkcs1 = rsa::pkcs1::RsaPrivateKeyRef {
            modulus: UintRef::new(&parts.modulus).unwrap(),
            public_exponent: UintRef::new(&parts.public_exponent).unwrap(),
            private_exponent: UintRef::new(parts.private_exponent.expose()).unwrap(),
            prime1: UintRef::new(parts.prime_1.expose()).unwrap(),
            prime2: UintRef::new(parts.prime_2.expose()).unwrap(),
            exponent1: UintRef::new(parts.exponent_1.expose()).unwrap(),
            exponent2: UintRef::new(parts.exponent_2.expose()).unwrap(),
            coefficient: UintRef::new(parts.coefficient.expose()).unwrap(),
            other_prime_infos: None,
        };
        let sk = rsa::PrivateKey::try_from(pkcs1).unwrap();
        let plain = sk.decrypt(rsa::Oaep::<sha2::Sha256>::new(), &ct).unwrap();
        assert_eq!(plain, b"oracle");
        assert!(matches!(
            rsa_oaep_encrypt(
                &parts.modulus,
                &parts.public_exponent,
                HashAlg::Sha256,
                HashAlg::Sha1,
                b"",
                b"x"
            ),
            Err(CryptoError::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            rsa_oaep_encrypt(
                &parts.modulus,
                &parts.public_exponent,
                HashAlg::Sha256,
                HashAlg::Sha256,
                b"",
                &[0; 200]
            ),
            Err(CryptoError::DataLenRange)
        ));
    }
}
