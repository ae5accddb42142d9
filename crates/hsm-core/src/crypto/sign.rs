//! Signature mechanisms over prepared keys.

use super::ec::{EcSigner, EcVerifier};
use super::ed25519::{Ed25519Signer, ed25519_verify};
use super::rsa_key::{Pss, RsaSigner, RsaVerifier};
use super::{CryptoError, CryptoResult, Curve, HashAlg, RsaPrivateParts};

/// A signature mechanism with its parameters. ECDSA signatures are PKCS#11's raw `r || s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignMechanism {
    /// `CKM_ECDSA`: the data is a hash of any length, truncated or left-padded to the order.
    Ecdsa,
    /// `CKM_ECDSA_SHA1/224/256/384/512`, with any curve.
    EcdsaHash(HashAlg),
    /// `CKM_RSA_PKCS`: a DigestInfo, or any bytes up to k-11.
    RsaPkcs,
    /// `CKM_SHA*_RSA_PKCS`.
    RsaPkcsHash(HashAlg),
    /// `CKM_RSA_PKCS_PSS` (`prehashed`: the data is the digest) and `CKM_SHA*_RSA_PKCS_PSS`.
    RsaPss {
        hash: HashAlg,
        mgf_hash: HashAlg,
        salt_len: usize,
        prehashed: bool,
    },
    /// `CKM_EDDSA` (Ed25519, no pre-hashing): the data is taken whole.
    Eddsa,
}

impl SignMechanism {
    /// The hash to run over `C_SignUpdate` data before [`SigningKey::sign_prehashed`]; `None`
    /// for the mechanisms that take their data whole (the caller buffers those).
    pub fn multi_part_hash(&self) -> Option<HashAlg> {
        match self {
            SignMechanism::EcdsaHash(h) | SignMechanism::RsaPkcsHash(h) => Some(*h),
            SignMechanism::RsaPss {
                hash,
                prehashed: false,
                ..
            } => Some(*hash),
            SignMechanism::Ecdsa
            | SignMechanism::Eddsa
            | SignMechanism::RsaPkcs
            | SignMechanism::RsaPss {
                prehashed: true, ..
            } => None,
        }
    }

    fn is_ecdsa(&self) -> bool {
        matches!(self, SignMechanism::Ecdsa | SignMechanism::EcdsaHash(_))
    }

    fn is_rsa(&self) -> bool {
        matches!(
            self,
            SignMechanism::RsaPkcs | SignMechanism::RsaPkcsHash(_) | SignMechanism::RsaPss { .. }
        )
    }

    /// PSS parameters checked against a key of `modulus_bits`.
    fn pss(&self, modulus_bits: usize) -> CryptoResult<Option<Pss>> {
        match *self {
            SignMechanism::RsaPss {
                hash,
                mgf_hash,
                salt_len,
                prehashed,
            } => Pss::new(hash, mgf_hash, salt_len, modulus_bits, prehashed).map(Some),
            _ => Ok(None),
        }
    }
}

enum SigningInner {
    Rsa(Box<RsaSigner>),
    Ec(EcSigner),
    Ed25519(Ed25519Signer),
    Device(Box<dyn DeviceSigner>),
}

/// What kind of key a device holds, as far as signing needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKeyKind {
    Ec(Curve),
    Rsa { bits: usize },
    Ed25519,
}

/// One signature a device makes with a key it holds, its input already reduced to what
/// the device's raw mechanism takes: hashing happens here, so a device that cannot hash
/// in parts (AWS CloudHSM) still serves every hashed mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawSign<'a> {
    /// `CKM_ECDSA` over a digest; the signature is `r || s`.
    Ecdsa(&'a [u8]),
    /// `CKM_RSA_PKCS` over a DigestInfo (or raw bytes up to k − 11).
    RsaPkcs1(&'a [u8]),
    /// `CKM_RSA_PKCS_PSS` over a digest.
    RsaPss {
        hash: HashAlg,
        mgf_hash: HashAlg,
        salt_len: usize,
        digest: &'a [u8],
    },
    /// `CKM_EDDSA` (Ed25519) over the whole message.
    Eddsa(&'a [u8]),
}

/// A private key held in another device (`crate::hardware`): it signs there.
pub trait DeviceSigner: Send + Sync {
    fn kind(&self) -> DeviceKeyKind;
    fn sign(&self, op: RawSign<'_>) -> CryptoResult<Vec<u8>>;
}

/// A private key parsed once, ready to sign many times. No `Debug`, no `Clone`; the backends
/// wipe their key material when it is dropped.
pub struct SigningKey(SigningInner);

impl SigningKey {
    pub fn rsa(parts: &RsaPrivateParts) -> CryptoResult<SigningKey> {
        RsaSigner::new(parts).map(|k| SigningKey(SigningInner::Rsa(Box::new(k))))
    }

    /// From the scalar (`CKA_VALUE`), with or without leading zeros.
    pub fn ec(curve: Curve, private_value: &[u8]) -> CryptoResult<SigningKey> {
        EcSigner::new(curve, private_value).map(|k| SigningKey(SigningInner::Ec(k)))
    }

    /// From the 32-byte seed (`CKA_VALUE` of a `CKK_EC_EDWARDS` key).
    pub fn ed25519(seed: &[u8]) -> CryptoResult<SigningKey> {
        Ed25519Signer::new(seed).map(|k| SigningKey(SigningInner::Ed25519(k)))
    }

    /// A key that signs in another device.
    pub fn device(signer: Box<dyn DeviceSigner>) -> SigningKey {
        SigningKey(SigningInner::Device(signer))
    }

    /// The kind of key, whoever holds it.
    fn kind(&self) -> DeviceKeyKind {
        match &self.0 {
            SigningInner::Rsa(k) => DeviceKeyKind::Rsa { bits: k.bits() },
            SigningInner::Ec(k) => DeviceKeyKind::Ec(k.curve()),
            SigningInner::Ed25519(_) => DeviceKeyKind::Ed25519,
            SigningInner::Device(d) => d.kind(),
        }
    }

    /// RSA: the modulus length in bytes; ECDSA: `2 * field_len`; Ed25519: 64.
    pub fn signature_len(&self) -> usize {
        match (&self.0, self.kind()) {
            (SigningInner::Rsa(k), _) => k.signature_len(),
            (_, DeviceKeyKind::Rsa { bits }) => bits.div_ceil(8),
            (_, DeviceKeyKind::Ec(c)) => 2 * c.field_len(),
            (_, DeviceKeyKind::Ed25519) => 64,
        }
    }

    /// The curve of an EC key.
    pub fn curve(&self) -> Option<Curve> {
        match self.kind() {
            DeviceKeyKind::Ec(c) => Some(c),
            _ => None,
        }
    }

    /// The uncompressed public point of an EC key held here (`None` for a device's).
    pub fn ec_public_point(&self) -> Option<Vec<u8>> {
        match &self.0 {
            SigningInner::Rsa(_) | SigningInner::Device(_) => None,
            SigningInner::Ec(k) => Some(k.public_point()),
            SigningInner::Ed25519(k) => Some(k.public_key()),
        }
    }

    /// The matching public key (a device's key: `KeyTypeInconsistent`; its public half
    /// is stored beside the reference).
    pub fn verifying_key(&self) -> CryptoResult<VerifyingKey> {
        match &self.0 {
            SigningInner::Rsa(k) => {
                let (n, e) = k.public_components();
                VerifyingKey::rsa(&n, &e)
            }
            SigningInner::Ec(k) => VerifyingKey::ec(k.curve(), &k.public_point()),
            SigningInner::Ed25519(k) => VerifyingKey::ed25519(&k.public_key()),
            SigningInner::Device(_) => Err(CryptoError::KeyTypeInconsistent),
        }
    }

    /// Whether this key can sign with `mech` (for `C_SignInit`): `KeyTypeInconsistent`, or
    /// `MechanismInvalid`/`MechanismParamInvalid` for PSS parameters we cannot honour.
    pub fn check(&self, mech: &SignMechanism) -> CryptoResult<()> {
        match self.kind() {
            DeviceKeyKind::Ec(_) if mech.is_ecdsa() => Ok(()),
            DeviceKeyKind::Ed25519 if *mech == SignMechanism::Eddsa => Ok(()),
            DeviceKeyKind::Rsa { bits } if mech.is_rsa() => mech.pss(bits).map(|_| ()),
            _ => Err(CryptoError::KeyTypeInconsistent),
        }
    }

    /// A device's signature of `data` (already hashed, for a hashing mechanism).
    fn device_sign(
        d: &dyn DeviceSigner,
        mech: &SignMechanism,
        data: &[u8],
    ) -> CryptoResult<Vec<u8>> {
        let op = match (d.kind(), mech) {
            (DeviceKeyKind::Ec(_), _) => RawSign::Ecdsa(data),
            (DeviceKeyKind::Ed25519, _) => RawSign::Eddsa(data),
            (
                DeviceKeyKind::Rsa { .. },
                SignMechanism::RsaPss {
                    hash,
                    mgf_hash,
                    salt_len,
                    ..
                },
            ) => {
                if data.len() != hash.output_len() {
                    return Err(CryptoError::DataLenRange);
                }
                RawSign::RsaPss {
                    hash: *hash,
                    mgf_hash: *mgf_hash,
                    salt_len: *salt_len,
                    digest: data,
                }
            }
            (DeviceKeyKind::Rsa { .. }, _) => RawSign::RsaPkcs1(data),
        };
        d.sign(op)
    }

    /// Single-part `C_Sign`.
    pub fn sign(&self, mech: &SignMechanism, data: &[u8]) -> CryptoResult<Vec<u8>> {
        self.check(mech)?;
        if let Some(h) = mech.multi_part_hash() {
            return self.sign_prehashed(mech, &h.digest(data));
        }
        match &self.0 {
            SigningInner::Device(d) => Self::device_sign(d.as_ref(), mech, data),
            SigningInner::Ec(k) => k.sign_hash(data),
            SigningInner::Ed25519(k) => Ok(k.sign(data)),
            SigningInner::Rsa(k) => match mech.pss(k.bits())? {
                Some(pss) => {
                    check_digest_len(mech, data)?;
                    k.sign_pss(pss, data)
                }
                None => k.sign_pkcs1(data),
            },
        }
    }

    /// `C_SignFinal` for a hashing mechanism: `digest` is [`SignMechanism::multi_part_hash`]
    /// run over the data. `MechanismInvalid` for mechanisms that do not hash.
    pub fn sign_prehashed(&self, mech: &SignMechanism, digest: &[u8]) -> CryptoResult<Vec<u8>> {
        self.check(mech)?;
        let h = mech
            .multi_part_hash()
            .ok_or(CryptoError::MechanismInvalid)?;
        if digest.len() != h.output_len() {
            return Err(CryptoError::DataLenRange);
        }
        match &self.0 {
            SigningInner::Device(d) => match (d.kind(), mech) {
                (DeviceKeyKind::Rsa { .. }, SignMechanism::RsaPkcsHash(_)) => {
                    Self::device_sign(d.as_ref(), mech, &h.digest_info(digest))
                }
                _ => Self::device_sign(d.as_ref(), mech, digest),
            },
            SigningInner::Ec(k) => k.sign_hash(digest),
            SigningInner::Ed25519(_) => Err(CryptoError::MechanismInvalid),
            SigningInner::Rsa(k) => match mech.pss(k.bits())? {
                Some(pss) => k.sign_pss(pss, digest),
                None => k.sign_pkcs1_digest(h, digest),
            },
        }
    }
}

/// `CKM_RSA_PKCS_PSS` signs a digest: its length must be the hash's.
fn check_digest_len(mech: &SignMechanism, data: &[u8]) -> CryptoResult<()> {
    match mech {
        SignMechanism::RsaPss { hash, .. } if data.len() != hash.output_len() => {
            Err(CryptoError::DataLenRange)
        }
        _ => Ok(()),
    }
}

enum VerifyingInner {
    Rsa(RsaVerifier),
    Ec(EcVerifier),
    Ed25519(Vec<u8>),
}

/// A public key parsed once, ready to verify many times.
pub struct VerifyingKey(VerifyingInner);

impl VerifyingKey {
    pub fn rsa(modulus: &[u8], public_exponent: &[u8]) -> CryptoResult<VerifyingKey> {
        RsaVerifier::new(modulus, public_exponent).map(|k| VerifyingKey(VerifyingInner::Rsa(k)))
    }

    /// From the uncompressed point `04 || X || Y` (unwrap `CKA_EC_POINT` with
    /// [`super::ec_point_from_der`] first).
    pub fn ec(curve: Curve, public_point: &[u8]) -> CryptoResult<VerifyingKey> {
        EcVerifier::new(curve, public_point).map(|k| VerifyingKey(VerifyingInner::Ec(k)))
    }

    /// From the 32-byte public key (inside `CKA_EC_POINT` of a `CKK_EC_EDWARDS` key).
    pub fn ed25519(public_key: &[u8]) -> CryptoResult<VerifyingKey> {
        if public_key.len() != 32 {
            return Err(CryptoError::KeyTypeInconsistent);
        }
        Ok(VerifyingKey(VerifyingInner::Ed25519(public_key.to_vec())))
    }

    pub fn signature_len(&self) -> usize {
        match &self.0 {
            VerifyingInner::Rsa(k) => k.signature_len(),
            VerifyingInner::Ec(k) => k.signature_len(),
            VerifyingInner::Ed25519(_) => 64,
        }
    }

    pub fn curve(&self) -> Option<Curve> {
        match &self.0 {
            VerifyingInner::Rsa(_) | VerifyingInner::Ed25519(_) => None,
            VerifyingInner::Ec(k) => Some(k.curve()),
        }
    }

    /// Whether this key can verify with `mech` (for `C_VerifyInit`).
    pub fn check(&self, mech: &SignMechanism) -> CryptoResult<()> {
        match &self.0 {
            VerifyingInner::Ec(_) if mech.is_ecdsa() => Ok(()),
            VerifyingInner::Ed25519(_) if *mech == SignMechanism::Eddsa => Ok(()),
            VerifyingInner::Rsa(k) if mech.is_rsa() => mech.pss(k.bits()).map(|_| ()),
            _ => Err(CryptoError::KeyTypeInconsistent),
        }
    }

    /// Single-part `C_Verify`: `SignatureLenRange` for a signature of the wrong length,
    /// `SignatureInvalid` when it does not match.
    pub fn verify(&self, mech: &SignMechanism, data: &[u8], signature: &[u8]) -> CryptoResult<()> {
        self.check(mech)?;
        if let Some(h) = mech.multi_part_hash() {
            return self.verify_prehashed(mech, &h.digest(data), signature);
        }
        match &self.0 {
            VerifyingInner::Ec(k) => k.verify_hash(data, signature),
            VerifyingInner::Ed25519(pk) => ed25519_verify(pk, data, signature),
            VerifyingInner::Rsa(k) => match mech.pss(k.bits())? {
                Some(pss) => {
                    check_digest_len(mech, data)?;
                    k.verify_pss(pss, data, signature)
                }
                None => k.verify_pkcs1(data, signature),
            },
        }
    }

    /// `C_VerifyFinal` for a hashing mechanism; `digest` as for [`SigningKey::sign_prehashed`].
    pub fn verify_prehashed(
        &self,
        mech: &SignMechanism,
        digest: &[u8],
        signature: &[u8],
    ) -> CryptoResult<()> {
        self.check(mech)?;
        let h = mech
            .multi_part_hash()
            .ok_or(CryptoError::MechanismInvalid)?;
        if digest.len() != h.output_len() {
            return Err(CryptoError::DataLenRange);
        }
        match &self.0 {
            VerifyingInner::Ec(k) => k.verify_hash(digest, signature),
            VerifyingInner::Ed25519(_) => Err(CryptoError::MechanismInvalid),
            VerifyingInner::Rsa(k) => match mech.pss(k.bits())? {
                Some(pss) => k.verify_pss(pss, digest, signature),
                None => k.verify_pkcs1_digest(h, digest, signature),
            },
        }
    }
}

/// Signs and verifies a fixed message: run on every generated key pair. A pair that does
/// not match answers `General`; keys of different types `KeyTypeInconsistent`.
pub fn pairwise_check(sk: &SigningKey, vk: &VerifyingKey) -> CryptoResult<()> {
    const MESSAGE: &[u8] = b"FerroHSM pairwise consistency test";
    let mech = match (sk.kind(), &vk.0) {
        (DeviceKeyKind::Rsa { .. }, VerifyingInner::Rsa(_)) => {
            SignMechanism::RsaPkcsHash(HashAlg::Sha256)
        }
        (DeviceKeyKind::Ec(c), VerifyingInner::Ec(v)) if c == v.curve() => {
            SignMechanism::EcdsaHash(HashAlg::Sha256)
        }
        (DeviceKeyKind::Ed25519, VerifyingInner::Ed25519(_)) => SignMechanism::Eddsa,
        _ => return Err(CryptoError::KeyTypeInconsistent),
    };
    let sig = sk.sign(&mech, MESSAGE)?;
    vk.verify(&mech, MESSAGE, &sig)
        .map_err(|e| CryptoError::General(format!("pairwise consistency check failed: {e}")))
}
