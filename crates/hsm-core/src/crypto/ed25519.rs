//! Ed25519 (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA without pre-hashing) through aws-lc-rs.

use super::{CryptoError, CryptoResult};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use hsm_types::SecretBytes;

/// `CKA_EC_PARAMS` of Ed25519: the OID 1.3.101.112 (RFC 8410), DER.
pub const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// The same curve by name, as PKCS#11 3.0 also allows (`PrintableString "edwards25519"`).
pub const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";

pub fn is_ed25519_params(der: &[u8]) -> bool {
    der == ED25519_OID || der == ED25519_NAME
}

/// A new key: the 32-byte seed (`CKA_VALUE`) and public key (inside `CKA_EC_POINT`).
pub fn generate_ed25519() -> CryptoResult<(SecretBytes, Vec<u8>)> {
    let pair = Ed25519KeyPair::generate()
        .map_err(|_| CryptoError::General("Ed25519 key generation failed".into()))?;
    Ok((seed_of(&pair)?, pair.public_key().as_ref().to_vec()))
}

fn seed_of(pair: &Ed25519KeyPair) -> CryptoResult<SecretBytes> {
    let seed = pair
        .seed()
        .map_err(|_| CryptoError::General("Ed25519 seed".into()))?;
    let seed: aws_lc_rs::encoding::Curve25519SeedBin<'_> = seed
        .as_be_bytes()
        .map_err(|_| CryptoError::General("Ed25519 seed".into()))?;
    Ok(SecretBytes::from_slice(seed.as_ref()))
}

/// A prepared Ed25519 private key.
pub struct Ed25519Signer(Ed25519KeyPair);

impl Ed25519Signer {
    pub fn new(seed: &[u8]) -> CryptoResult<Self> {
        if seed.len() != 32 {
            return Err(CryptoError::KeySizeRange);
        }
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Ed25519Signer)
            .map_err(|_| CryptoError::KeyTypeInconsistent)
    }

    /// The key as a PKCS#8 v1 `PrivateKeyInfo` (RFC 8410: the seed only).
    pub(crate) fn to_pkcs8(&self) -> CryptoResult<zeroize::Zeroizing<Vec<u8>>> {
        let doc = self
            .0
            .to_pkcs8v1()
            .map_err(|_| CryptoError::General("PKCS#8 encoding of an Ed25519 key failed".into()))?;
        Ok(zeroize::Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// The seed of a PKCS#8 v1 or v2 Ed25519 key (aws-lc-rs checks that a v2 document's
    /// public key is the seed's).
    pub(crate) fn seed_from_pkcs8(der: &[u8]) -> CryptoResult<SecretBytes> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| CryptoError::DataInvalid)?;
        seed_of(&pair)
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.0.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.0.sign(data).as_ref().to_vec()
    }
}

/// Verifies an Ed25519 signature.
pub fn ed25519_verify(public_key: &[u8], data: &[u8], signature: &[u8]) -> CryptoResult<()> {
    if public_key.len() != 32 {
        return Err(CryptoError::KeyTypeInconsistent);
    }
    if signature.len() != 64 {
        return Err(CryptoError::SignatureLenRange);
    }
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(data, signature)
        .map_err(|_| CryptoError::SignatureInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_hex as hex;

    #[test]
    fn rfc8032_test_1() {
        let k = Ed25519Signer::new(&hex(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        ))
        .unwrap();
        assert_eq!(
            k.public_key(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = k.sign(b"");
        assert_eq!(
            sig,
            hex(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        ed25519_verify(&k.public_key(), b"", &sig).unwrap();
        assert!(matches!(
            ed25519_verify(&k.public_key(), b"x", &sig),
            Err(CryptoError::SignatureInvalid)
        ));
        let (seed, public) = generate_ed25519().unwrap();
        assert_eq!(
            Ed25519Signer::new(seed.expose()).unwrap().public_key(),
            public
        );
    }
}
