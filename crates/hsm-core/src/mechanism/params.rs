//! The numbers inside mechanism parameters, as open newtypes: a value PKCS#11 defines has a
//! name here, any other value is kept as given and refused where it is used (with the
//! value in the message), so a parser never has to drop what it does not know.

use crate::crypto::HashAlg;
use crate::error::{Error, Result};

/// `CK_RSA_PKCS_MGF_TYPE`: the MGF1 hash of PSS and OAEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Mgf(pub u64);

impl Mgf {
    pub const MGF1_SHA1: Mgf = Mgf(1);
    pub const MGF1_SHA256: Mgf = Mgf(2);
    pub const MGF1_SHA384: Mgf = Mgf(3);
    pub const MGF1_SHA512: Mgf = Mgf(4);
    pub const MGF1_SHA224: Mgf = Mgf(5);

    /// The hash MGF1 runs on.
    pub fn hash(self) -> Result<HashAlg> {
        Ok(match self {
            Mgf::MGF1_SHA1 => HashAlg::Sha1,
            Mgf::MGF1_SHA256 => HashAlg::Sha256,
            Mgf::MGF1_SHA384 => HashAlg::Sha384,
            Mgf::MGF1_SHA512 => HashAlg::Sha512,
            Mgf::MGF1_SHA224 => HashAlg::Sha224,
            Mgf(other) => return Err(Error::MechanismParamInvalid(format!("MGF {other:#x}"))),
        })
    }
}

/// `CK_EC_KDF_TYPE`: what ECDH does with the shared secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct EcKdf(pub u64);

/// The key derivation an [`EcKdf`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcKdfScheme {
    /// `CKD_NULL`: the shared secret itself.
    Null,
    /// ANSI X9.63 (`CKD_SHA*_KDF`).
    X963(HashAlg),
    /// SP 800-56C one-step (`CKD_SHA*_KDF_SP800`).
    Sp800_56c(HashAlg),
}

impl EcKdf {
    pub const NULL: EcKdf = EcKdf(1);
    pub const SHA1: EcKdf = EcKdf(2);
    pub const SHA224: EcKdf = EcKdf(5);
    pub const SHA256: EcKdf = EcKdf(6);
    pub const SHA384: EcKdf = EcKdf(7);
    pub const SHA512: EcKdf = EcKdf(8);
    pub const SHA1_SP800: EcKdf = EcKdf(14);
    pub const SHA224_SP800: EcKdf = EcKdf(15);
    pub const SHA256_SP800: EcKdf = EcKdf(16);
    pub const SHA384_SP800: EcKdf = EcKdf(17);
    pub const SHA512_SP800: EcKdf = EcKdf(18);

    pub fn scheme(self) -> Result<EcKdfScheme> {
        use EcKdfScheme::*;
        Ok(match self {
            EcKdf::NULL => Null,
            EcKdf::SHA1 => X963(HashAlg::Sha1),
            EcKdf::SHA224 => X963(HashAlg::Sha224),
            EcKdf::SHA256 => X963(HashAlg::Sha256),
            EcKdf::SHA384 => X963(HashAlg::Sha384),
            EcKdf::SHA512 => X963(HashAlg::Sha512),
            EcKdf::SHA1_SP800 => Sp800_56c(HashAlg::Sha1),
            EcKdf::SHA224_SP800 => Sp800_56c(HashAlg::Sha224),
            EcKdf::SHA256_SP800 => Sp800_56c(HashAlg::Sha256),
            EcKdf::SHA384_SP800 => Sp800_56c(HashAlg::Sha384),
            EcKdf::SHA512_SP800 => Sp800_56c(HashAlg::Sha512),
            EcKdf(other) => {
                return Err(Error::MechanismParamInvalid(format!(
                    "ECDH KDF {other:#x}: CKD_NULL, CKD_SHA1/224/256/384/512_KDF and _KDF_SP800 are supported"
                )));
            }
        })
    }
}

/// `CK_HKDF_PARAMS.ulSaltType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct HkdfSalt(pub u64);

impl HkdfSalt {
    pub const NULL: HkdfSalt = HkdfSalt(1);
    pub const DATA: HkdfSalt = HkdfSalt(2);
    /// The salt is a key object; not offered.
    pub const KEY: HkdfSalt = HkdfSalt(4);
}

/// `CK_GENERATOR_FUNCTION` of PKCS#11 3.0: who makes a message's IV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IvGenerator(pub u64);

impl IvGenerator {
    pub const NO_GENERATE: IvGenerator = IvGenerator(0);
    pub const GENERATE: IvGenerator = IvGenerator(1);
    pub const GENERATE_COUNTER: IvGenerator = IvGenerator(2);
    pub const GENERATE_RANDOM: IvGenerator = IvGenerator(3);
    pub const GENERATE_COUNTER_XOR: IvGenerator = IvGenerator(4);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_refused_with_their_number() {
        assert_eq!(Mgf(2).hash().unwrap(), HashAlg::Sha256);
        let e = Mgf(9).hash().unwrap_err().to_string();
        assert!(e.contains("0x9"), "{e}");
        assert_eq!(
            EcKdf(16).scheme().unwrap(),
            EcKdfScheme::Sp800_56c(HashAlg::Sha256)
        );
        assert_eq!(EcKdf(1).scheme().unwrap(), EcKdfScheme::Null);
        let e = EcKdf(3).scheme().unwrap_err().to_string();
        assert!(e.contains("0x3"), "{e}");
    }
}
