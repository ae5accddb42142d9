//! The cryptographic provider: every primitive the token uses, behind one small API.
//!
//! All production cryptography is aws-lc-rs. The RustCrypto `rsa` crate is used only where
//! aws-lc-rs has no API: reading the components of a freshly generated RSA key out of its
//! PKCS#8 document, and the PKCS#1 v1.5 private/public operation on bytes aws-lc-rs will not
//! take as a digest (raw `CKM_RSA_PKCS` input, and SHA-1/SHA-224 DigestInfo, which aws-lc-rs
//! cannot sign). PKCS#1 v1.5 is deterministic, so both paths give identical signatures.
//!
//! Supported: SHA-1/224/256/384/512; AES-GCM with 128/192/256-bit keys; RSA keys of
//! 2048..=8192 bits (generated: 2048/3072/4096, e = 65537) with `CKM_RSA_PKCS`,
//! `CKM_SHA*_RSA_PKCS`, `CKM_RSA_PKCS_PSS` and `CKM_SHA{256,384,512}_RSA_PKCS_PSS`; ECDSA on
//! P-256 and P-384 with raw `r||s` signatures, `CKM_ECDSA` with input of any length and
//! `CKM_ECDSA_SHA*` with any hash on either curve.
//!
//! AES-GCM takes IVs of 1 to 256 bytes (12-byte ones through aws-lc-rs's AEAD, others
//! through `gcm.rs`, whose GHASH is ours) and tags of 96 to 128 bits; shorter tags, empty
//! and longer IVs are `MechanismParamInvalid` by choice.
//!
//! `MechanismParamInvalid`, because aws-lc-rs has no API for it:
//! - RSA-PSS with an MGF1 hash different from the message hash, or a salt length other than
//!   0, the hash length or the maximum (aws-lc-rs takes the salt length as a `'static`
//!   constant, so only these three are built in); PSS with SHA-1/SHA-224 (aws-lc-rs has PSS
//!   with SHA-256/384/512 only) — `MechanismInvalid` when the hash is the mechanism's own
//!   (`CKM_SHA1_RSA_PKCS_PSS`), `MechanismParamInvalid` when it comes from the parameters;
//! - RSA generation with a public exponent other than 65537 (aws-lc-rs fixes it).
//!
//! Sizes outside the ranges above answer `KeySizeRange`. Key material the backend rejects (a
//! point off the curve, a scalar out of range, inconsistent RSA components) answers
//! `General` with the reason: it is a corrupt or malformed key, not a caller mistake.

mod agree;
mod block;
mod digest;
mod ec;
mod ed25519;
mod gcm;
mod hkdf;
mod kbkdf;
mod mac;
mod oaep;
mod pkcs8;
mod rsa_key;
mod sign;
mod symmetric;
mod x963;

#[cfg(test)]
mod sign_tests;

pub use agree::{X25519_OID, ecdh, generate_x25519, is_x25519_params, x25519, x25519_public};
pub use block::{BlockMode, aes_decrypt, aes_encrypt, aes_key_unwrap, aes_key_wrap, encrypted_len};
pub use digest::{Digester, HashAlg};
pub use ec::{Curve, EcPrivateParts, ec_point_der, ec_point_from_der, generate_ec};
pub use ed25519::{ED25519_OID, generate_ed25519, is_ed25519_params};
pub use hkdf::hkdf;
pub use kbkdf::{DkmMethod, Field as KbkdfField, IntFormat, Mode as KbkdfMode, Prf, kbkdf};
pub use mac::Mac;
pub use oaep::{rsa_oaep_decrypt, rsa_oaep_encrypt, rsa_pkcs1_decrypt, rsa_pkcs1_encrypt};
pub use pkcs8::{PrivateKey, private_key_from_pkcs8, private_key_to_pkcs8};
pub use rsa_key::{RsaPrivateParts, bit_len as rsa_modulus_bits, generate_rsa};
pub use sign::{
    DeviceKeyKind, DeviceSigner, RawSign, SignMechanism, SigningKey, VerifyingKey, pairwise_check,
};
pub use symmetric::{
    GCM_IV_LEN, GCM_TAG_BITS, GcmKey, MAX_SECRET_LEN, aes_gcm_decrypt, aes_gcm_encrypt,
    check_gcm_params, generate_secret, random_bytes,
};
pub use x963::{sp800_56c_kdf, x963_kdf};

/// Errors of the provider, one per `CKR_*` a caller would answer.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("mechanism not supported")]
    MechanismInvalid,
    #[error("mechanism parameter not supported: {0}")]
    MechanismParamInvalid(String),
    #[error("key type does not match the mechanism")]
    KeyTypeInconsistent,
    #[error("key size out of range")]
    KeySizeRange,
    #[error("data length out of range")]
    DataLenRange,
    #[error("data invalid")]
    DataInvalid,
    #[error("encrypted data invalid")]
    EncryptedDataInvalid,
    #[error("encrypted data length out of range")]
    EncryptedDataLenRange,
    #[error("signature invalid")]
    SignatureInvalid,
    #[error("signature length out of range")]
    SignatureLenRange,
    #[error("crypto failure: {0}")]
    General(String),
    /// A device that holds the key answered with an error (`CKR_DEVICE_ERROR`).
    #[error("device error: {0}")]
    Device(String),
    /// A device that holds the key is gone (`CKR_DEVICE_REMOVED`).
    #[error("device removed: {0}")]
    DeviceRemoved(String),
}

pub type CryptoResult<T> = Result<T, CryptoError>;

/// Hex test vectors as bytes (the crypto modules' tests share it).
#[cfg(test)]
pub(crate) fn test_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Big-endian integers in PKCS#11 attributes may carry leading zeros; the backends want none.
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
