//! The aws-lc-rs provider: every algorithm of `crate::crypto`.

use super::{CryptoProvider, GeneratedPair, PairSpec};
use crate::crypto::{self, Curve, SigningKey, VerifyingKey};
use crate::error::{Error, Result};
use crate::hardware::Capabilities;
use hsm_types::{AttributeSet, AttributeType as A, KeyType, SecretBytes};

/// The software provider (aws-lc-rs), the default.
pub struct SoftwareProvider;

impl CryptoProvider for SoftwareProvider {
    fn name(&self) -> &'static str {
        "software (aws-lc-rs)"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::of_table()
    }

    fn random(&self, out: &mut [u8]) -> Result<()> {
        Ok(crypto::random_bytes(out)?)
    }

    fn generate_secret(&self, len: usize) -> Result<SecretBytes> {
        Ok(crypto::generate_secret(len)?)
    }

    fn generate_pair(&self, spec: PairSpec<'_>) -> Result<GeneratedPair> {
        Ok(match spec {
            PairSpec::Rsa { bits, exponent } => {
                GeneratedPair::Rsa(crypto::generate_rsa(bits, exponent)?)
            }
            PairSpec::Ec(curve) => GeneratedPair::Ec(crypto::generate_ec(curve)?),
            PairSpec::Ed25519 => {
                let (private, public) = crypto::generate_ed25519()?;
                GeneratedPair::Curve25519 { private, public }
            }
            PairSpec::X25519 => {
                let (private, public) = crypto::generate_x25519()?;
                GeneratedPair::Curve25519 { private, public }
            }
        })
    }

    fn signer(&self, a: &AttributeSet) -> Result<SigningKey> {
        let missing = || Error::UserNotLoggedIn;
        match a.key_type() {
            Some(KeyType::EC) => {
                let curve = Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
                    .ok_or(Error::KeyTypeInconsistent)?;
                Ok(SigningKey::ec(
                    curve,
                    a.bytes(A::VALUE).ok_or_else(missing)?,
                )?)
            }
            Some(KeyType::RSA) => Ok(SigningKey::rsa(&rsa_parts(a)?)?),
            Some(KeyType::EC_EDWARDS) => {
                if !crypto::is_ed25519_params(a.bytes(A::EC_PARAMS).unwrap_or_default()) {
                    return Err(Error::KeyTypeInconsistent);
                }
                Ok(SigningKey::ed25519(a.bytes(A::VALUE).ok_or_else(missing)?)?)
            }
            _ => Err(Error::KeyTypeInconsistent),
        }
    }

    fn verifier(&self, a: &AttributeSet) -> Result<VerifyingKey> {
        match a.key_type() {
            Some(KeyType::EC_EDWARDS) => {
                if !crypto::is_ed25519_params(a.bytes(A::EC_PARAMS).unwrap_or_default()) {
                    return Err(Error::KeyTypeInconsistent);
                }
                Ok(VerifyingKey::ed25519(&curve25519_public(
                    a.bytes(A::EC_POINT).unwrap_or_default(),
                )?)?)
            }
            Some(KeyType::EC) => {
                let curve = Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
                    .ok_or(Error::KeyTypeInconsistent)?;
                let point = crypto::ec_point_from_der(a.bytes(A::EC_POINT).unwrap_or_default())
                    .ok_or(Error::KeyTypeInconsistent)?;
                Ok(VerifyingKey::ec(curve, &point)?)
            }
            Some(KeyType::RSA) => Ok(VerifyingKey::rsa(
                a.bytes(A::MODULUS).unwrap_or_default(),
                a.bytes(A::PUBLIC_EXPONENT).unwrap_or_default(),
            )?),
            _ => Err(Error::KeyTypeInconsistent),
        }
    }
}

/// The private components of an RSA key object (absent without the user's login).
pub fn rsa_parts(a: &AttributeSet) -> Result<crypto::RsaPrivateParts> {
    let get = |t: A| a.bytes(t).map(<[u8]>::to_vec).ok_or(Error::UserNotLoggedIn);
    let secret = |t: A| get(t).map(SecretBytes::new);
    Ok(crypto::RsaPrivateParts {
        modulus: get(A::MODULUS)?,
        public_exponent: get(A::PUBLIC_EXPONENT)?,
        private_exponent: secret(A::PRIVATE_EXPONENT)?,
        prime_1: secret(A::PRIME_1)?,
        prime_2: secret(A::PRIME_2)?,
        exponent_1: secret(A::EXPONENT_1)?,
        exponent_2: secret(A::EXPONENT_2)?,
        coefficient: secret(A::COEFFICIENT)?,
    })
}

/// A Curve25519 public key (Ed25519 or X25519) from `CKA_EC_POINT` or ECDH public data:
/// a DER OCTET STRING of 32 bytes, or the 32 bytes themselves.
pub fn curve25519_public(point: &[u8]) -> Result<Vec<u8>> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => Ok(rest.to_vec()),
        raw if raw.len() == 32 => Ok(raw.to_vec()),
        _ => Err(Error::AttributeValueInvalid(
            "a Curve25519 public key is 32 bytes (or their DER OCTET STRING)".into(),
        )),
    }
}
