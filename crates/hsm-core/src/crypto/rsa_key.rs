//! RSA: generation, loading from PKCS#11 components, PKCS#1 v1.5 and PSS.
//!
//! aws-lc-rs does the work; the RustCrypto `rsa` crate reads the generated key's PKCS#8 into
//! components, and does the PKCS#1 v1.5 operation on bytes aws-lc-rs only signs as a digest
//! of SHA-256/384/512 (raw `CKM_RSA_PKCS` input, SHA-1/SHA-224 DigestInfo).

use super::digest::parse_digest_info;
use super::{CryptoError, CryptoResult, HashAlg, strip_leading_zeros};
use aws_lc_rs::digest as lc_digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{self as lc_rsa, KeyPairComponents, PublicKeyComponents};
use aws_lc_rs::signature::{self as lc_sig, RsaParameters, RsaPssSaltLength, RsaSignatureEncoding};
use hsm_types::SecretBytes;
use rsa::pkcs1::der::Decode as _;
use rsa::pkcs1::{RsaPrivateKeyRef, RsaPublicKeyRef, UintRef};
use rsa::{Pkcs1v15Sign, pkcs8::PrivateKeyInfoRef};

pub(crate) const MIN_BITS: usize = 2048;
pub(crate) const MAX_BITS: usize = 8192;
const F4: [u8; 3] = [0x01, 0x00, 0x01];
/// PKCS#1 v1.5 type-1 padding takes at least 11 bytes of the block.
const PKCS1_OVERHEAD: usize = 11;

/// RSA private key material as the PKCS#11 attributes hold it: big-endian, unsigned.
pub struct RsaPrivateParts {
    pub modulus: Vec<u8>,
    pub public_exponent: Vec<u8>,
    pub private_exponent: SecretBytes,
    pub prime_1: SecretBytes,
    pub prime_2: SecretBytes,
    pub exponent_1: SecretBytes,
    pub exponent_2: SecretBytes,
    pub coefficient: SecretBytes,
}

impl RsaPrivateParts {
    /// The aws-lc-rs key pair of these components (signing, and the DER that the
    /// decrypting keys load from).
    pub(crate) fn lc_key_pair(&self) -> Result<lc_rsa::KeyPair, aws_lc_rs::error::KeyRejected> {
        lc_rsa::KeyPair::from_components(&KeyPairComponents {
            public_key: PublicKeyComponents {
                n: strip_leading_zeros(&self.modulus),
                e: strip_leading_zeros(&self.public_exponent),
            },
            d: self.private_exponent.expose(),
            p: self.prime_1.expose(),
            q: self.prime_2.expose(),
            dP: self.exponent_1.expose(),
            dQ: self.exponent_2.expose(),
            qInv: self.coefficient.expose(),
        })
    }
}

/// A fresh key of 2048, 3072 or 4096 bits (`KeySizeRange` otherwise). aws-lc-rs always uses
/// e = 65537: another `public_exponent` answers `MechanismParamInvalid`.
pub fn generate_rsa(bits: u32, public_exponent: Option<&[u8]>) -> CryptoResult<RsaPrivateParts> {
    let size = match bits {
        2048 => lc_rsa::KeySize::Rsa2048,
        3072 => lc_rsa::KeySize::Rsa3072,
        4096 => lc_rsa::KeySize::Rsa4096,
        _ => return Err(CryptoError::KeySizeRange),
    };
    if let Some(e) = public_exponent
        && strip_leading_zeros(e) != F4
    {
        return Err(CryptoError::MechanismParamInvalid(
            "RSA public exponent: only 65537 is supported".into(),
        ));
    }
    let pair = lc_rsa::KeyPair::generate(size)
        .map_err(|_| CryptoError::General("RSA key generation failed".into()))?;
    // aws-lc-rs exports no components, only PKCS#8 (its buffer zeroizes on drop).
    let pkcs8 = pair
        .as_der()
        .map_err(|_| CryptoError::General("RSA key export failed".into()))?;
    rsa_parts_from_pkcs8(pkcs8.as_ref())
}

/// The components of an RSA `PrivateKeyInfo` (two primes; not checked for consistency:
/// [`RsaPrivateParts::lc_key_pair`] does that).
pub(crate) fn rsa_parts_from_pkcs8(der: &[u8]) -> CryptoResult<RsaPrivateParts> {
    let malformed = |what: &str| CryptoError::General(format!("RSA private key: {what}"));
    let info = PrivateKeyInfoRef::from_der(der).map_err(|_| malformed("bad PKCS#8"))?;
    if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(malformed("not rsaEncryption"));
    }
    let k = RsaPrivateKeyRef::from_der(info.private_key.as_bytes())
        .map_err(|_| malformed("bad PKCS#1"))?;
    if k.other_prime_infos.is_some() {
        return Err(malformed("multi-prime"));
    }
    let secret = |u: &UintRef<'_>| SecretBytes::from_slice(u.as_bytes());
    Ok(RsaPrivateParts {
        modulus: k.modulus.as_bytes().to_vec(),
        public_exponent: k.public_exponent.as_bytes().to_vec(),
        private_exponent: secret(&k.private_exponent),
        prime_1: secret(&k.prime1),
        prime_2: secret(&k.prime2),
        exponent_1: secret(&k.exponent1),
        exponent_2: secret(&k.exponent2),
        coefficient: secret(&k.coefficient),
    })
}

/// The bit length of a big-endian unsigned integer (an RSA modulus).
pub fn bit_len(n: &[u8]) -> usize {
    let n = strip_leading_zeros(n);
    match n.first() {
        None => 0,
        Some(top) => n.len() * 8 - top.leading_zeros() as usize,
    }
}

fn check_size(modulus: &[u8]) -> CryptoResult<usize> {
    let bits = bit_len(modulus);
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(CryptoError::KeySizeRange)
    }
}

/// The hashes aws-lc-rs signs with; SHA-1 and SHA-224 go through the raw path.
#[derive(Clone, Copy)]
enum LcHash {
    Sha256,
    Sha384,
    Sha512,
}

impl LcHash {
    fn of(h: HashAlg) -> Option<LcHash> {
        match h {
            HashAlg::Sha256 => Some(LcHash::Sha256),
            HashAlg::Sha384 => Some(LcHash::Sha384),
            HashAlg::Sha512 => Some(LcHash::Sha512),
            HashAlg::Sha1 | HashAlg::Sha224 => None,
        }
    }

    fn pkcs1_signing(self) -> &'static RsaSignatureEncoding {
        match self {
            LcHash::Sha256 => &lc_sig::RSA_PKCS1_SHA256,
            LcHash::Sha384 => &lc_sig::RSA_PKCS1_SHA384,
            LcHash::Sha512 => &lc_sig::RSA_PKCS1_SHA512,
        }
    }

    fn pkcs1_verification(self) -> &'static RsaParameters {
        match self {
            LcHash::Sha256 => &lc_sig::RSA_PKCS1_2048_8192_SHA256,
            LcHash::Sha384 => &lc_sig::RSA_PKCS1_2048_8192_SHA384,
            LcHash::Sha512 => &lc_sig::RSA_PKCS1_2048_8192_SHA512,
        }
    }
}

/// The PSS salt lengths aws-lc-rs can be given: its API wants a `'static` encoding, so the
/// useful ones are built in as constants.
#[derive(Clone, Copy)]
enum PssSalt {
    Zero,
    HashLen,
    Max,
}

#[derive(Clone, Copy)]
pub(crate) struct Pss {
    hash: LcHash,
    alg: HashAlg,
    salt: PssSalt,
}

impl Pss {
    /// Checks PSS parameters against what aws-lc-rs can do for a key of `modulus_bits`.
    /// `from_params`: the hash came from `CK_RSA_PKCS_PSS_PARAMS` (plain `CKM_RSA_PKCS_PSS`)
    /// rather than from the mechanism itself.
    pub(crate) fn new(
        hash: HashAlg,
        mgf_hash: HashAlg,
        salt_len: usize,
        modulus_bits: usize,
        from_params: bool,
    ) -> CryptoResult<Pss> {
        let Some(lc_hash) = LcHash::of(hash) else {
            return Err(if from_params {
                CryptoError::MechanismParamInvalid(format!(
                    "RSA-PSS with {hash:?}: only SHA-256/384/512 are supported"
                ))
            } else {
                CryptoError::MechanismInvalid
            });
        };
        if mgf_hash != hash {
            return Err(CryptoError::MechanismParamInvalid(format!(
                "RSA-PSS MGF1 with {mgf_hash:?}: the MGF1 hash must be the message hash {hash:?}"
            )));
        }
        let h_len = hash.output_len();
        let em_len = (modulus_bits - 1).div_ceil(8);
        let max = em_len.saturating_sub(h_len + 2);
        let salt = if salt_len == h_len {
            PssSalt::HashLen
        } else if salt_len == 0 {
            PssSalt::Zero
        } else if salt_len == max {
            PssSalt::Max
        } else {
            return Err(CryptoError::MechanismParamInvalid(format!(
                "RSA-PSS salt of {salt_len} bytes: supported are 0, {h_len} (hash length) and \
                 {max} (the maximum for this key)"
            )));
        };
        Ok(Pss {
            hash: lc_hash,
            alg: hash,
            salt,
        })
    }

    fn signing(self) -> &'static RsaSignatureEncoding {
        use RsaPssSaltLength::{Custom, Max};
        match (self.hash, self.salt) {
            (LcHash::Sha256, PssSalt::HashLen) => &lc_sig::RSA_PSS_SHA256,
            (LcHash::Sha256, PssSalt::Zero) => {
                &const { lc_sig::RSA_PSS_SHA256.with_pss_salt_length(Custom(0)) }
            }
            (LcHash::Sha256, PssSalt::Max) => {
                &const { lc_sig::RSA_PSS_SHA256.with_pss_salt_length(Max) }
            }
            (LcHash::Sha384, PssSalt::HashLen) => &lc_sig::RSA_PSS_SHA384,
            (LcHash::Sha384, PssSalt::Zero) => {
                &const { lc_sig::RSA_PSS_SHA384.with_pss_salt_length(Custom(0)) }
            }
            (LcHash::Sha384, PssSalt::Max) => {
                &const { lc_sig::RSA_PSS_SHA384.with_pss_salt_length(Max) }
            }
            (LcHash::Sha512, PssSalt::HashLen) => &lc_sig::RSA_PSS_SHA512,
            (LcHash::Sha512, PssSalt::Zero) => {
                &const { lc_sig::RSA_PSS_SHA512.with_pss_salt_length(Custom(0)) }
            }
            (LcHash::Sha512, PssSalt::Max) => {
                &const { lc_sig::RSA_PSS_SHA512.with_pss_salt_length(Max) }
            }
        }
    }

    fn verification(self) -> &'static RsaParameters {
        use RsaPssSaltLength::{Custom, Max};
        match (self.hash, self.salt) {
            (LcHash::Sha256, PssSalt::HashLen) => &lc_sig::RSA_PSS_2048_8192_SHA256,
            (LcHash::Sha256, PssSalt::Zero) => {
                &const { lc_sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(Custom(0)) }
            }
            (LcHash::Sha256, PssSalt::Max) => {
                &const { lc_sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(Max) }
            }
            (LcHash::Sha384, PssSalt::HashLen) => &lc_sig::RSA_PSS_2048_8192_SHA384,
            (LcHash::Sha384, PssSalt::Zero) => {
                &const { lc_sig::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(Custom(0)) }
            }
            (LcHash::Sha384, PssSalt::Max) => {
                &const { lc_sig::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(Max) }
            }
            (LcHash::Sha512, PssSalt::HashLen) => &lc_sig::RSA_PSS_2048_8192_SHA512,
            (LcHash::Sha512, PssSalt::Zero) => {
                &const { lc_sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(Custom(0)) }
            }
            (LcHash::Sha512, PssSalt::Max) => {
                &const { lc_sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(Max) }
            }
        }
    }
}

fn import_digest(h: HashAlg, digest: &[u8]) -> CryptoResult<lc_digest::Digest> {
    lc_digest::Digest::import_less_safe(digest, h.lc_algorithm())
        .map_err(|_| CryptoError::DataLenRange)
}

fn raw_key_from_parts(parts: &RsaPrivateParts) -> CryptoResult<rsa::PrivateKey> {
    fn uint(b: &[u8]) -> CryptoResult<UintRef<'_>> {
        UintRef::new(b).map_err(|_| CryptoError::General("RSA component too long".into()))
    }
    let pkcs1 = RsaPrivateKeyRef {
        modulus: uint(&parts.modulus)?,
        public_exponent: uint(&parts.public_exponent)?,
        private_exponent: uint(parts.private_exponent.expose())?,
        prime1: uint(parts.prime_1.expose())?,
        prime2: uint(parts.prime_2.expose())?,
        exponent1: uint(parts.exponent_1.expose())?,
        exponent2: uint(parts.exponent_2.expose())?,
        coefficient: uint(parts.coefficient.expose())?,
        other_prime_infos: None,
    };
    rsa::PrivateKey::try_from(pkcs1)
        .map_err(|e| CryptoError::General(format!("RSA private key rejected: {e}")))
}

/// A prepared RSA private key.
pub(crate) struct RsaSigner {
    pair: lc_rsa::KeyPair,
    raw: rsa::PrivateKey,
    bits: usize,
}

impl RsaSigner {
    pub(crate) fn new(parts: &RsaPrivateParts) -> CryptoResult<Self> {
        let bits = check_size(&parts.modulus)?;
        let pair = parts
            .lc_key_pair()
            .map_err(|e| CryptoError::General(format!("RSA private key rejected: {e}")))?;
        let raw = raw_key_from_parts(parts)?;
        Ok(RsaSigner { pair, raw, bits })
    }

    pub(crate) fn bits(&self) -> usize {
        self.bits
    }

    pub(crate) fn signature_len(&self) -> usize {
        self.pair.public_modulus_len()
    }

    pub(crate) fn public_components(&self) -> (Vec<u8>, Vec<u8>) {
        use rsa::traits::PublicKeyParts;
        (self.raw.n_bytes().to_vec(), self.raw.e_bytes().to_vec())
    }

    fn sign_lc(
        &self,
        enc: &'static RsaSignatureEncoding,
        h: HashAlg,
        digest: &[u8],
    ) -> CryptoResult<Vec<u8>> {
        let digest = import_digest(h, digest)?;
        let mut sig = vec![0u8; self.signature_len()];
        self.pair
            .sign_digest(enc, &digest, &mut sig)
            .map_err(|_| CryptoError::General("RSA signing failed".into()))?;
        Ok(sig)
    }

    /// `CKM_SHA*_RSA_PKCS` on a computed digest.
    pub(crate) fn sign_pkcs1_digest(&self, h: HashAlg, digest: &[u8]) -> CryptoResult<Vec<u8>> {
        match LcHash::of(h) {
            Some(lh) => self.sign_lc(lh.pkcs1_signing(), h, digest),
            None => {
                if digest.len() != h.output_len() {
                    return Err(CryptoError::DataLenRange);
                }
                self.sign_raw(&h.digest_info(digest))
            }
        }
    }

    /// `CKM_RSA_PKCS`: a DigestInfo aws-lc-rs knows is signed by it, anything else raw.
    pub(crate) fn sign_pkcs1(&self, data: &[u8]) -> CryptoResult<Vec<u8>> {
        if let Some((h, digest)) = parse_digest_info(data)
            && let Some(lh) = LcHash::of(h)
        {
            return self.sign_lc(lh.pkcs1_signing(), h, digest);
        }
        self.sign_raw(data)
    }

    fn sign_raw(&self, data: &[u8]) -> CryptoResult<Vec<u8>> {
        let k = self.signature_len();
        if data.len() + PKCS1_OVERHEAD > k {
            return Err(CryptoError::DataLenRange);
        }
        let sig = self
            .raw
            .sign(Pkcs1v15Sign::new_unprefixed(), data)
            .map_err(|e| CryptoError::General(format!("RSA signing failed: {e}")))?;
        Ok(left_pad(sig, k))
    }

    pub(crate) fn sign_pss(&self, pss: Pss, digest: &[u8]) -> CryptoResult<Vec<u8>> {
        self.sign_lc(pss.signing(), pss.alg, digest)
    }
}

fn left_pad(v: Vec<u8>, len: usize) -> Vec<u8> {
    if v.len() >= len {
        return v;
    }
    let mut out = vec![0u8; len - v.len()];
    out.extend_from_slice(&v);
    out
}

/// A prepared RSA public key.
pub(crate) struct RsaVerifier {
    n: Vec<u8>,
    e: Vec<u8>,
    raw: rsa::PublicKey,
    bits: usize,
}

impl RsaVerifier {
    pub(crate) fn new(modulus: &[u8], public_exponent: &[u8]) -> CryptoResult<Self> {
        let bits = check_size(modulus)?;
        let n = strip_leading_zeros(modulus).to_vec();
        let e = strip_leading_zeros(public_exponent).to_vec();
        let rejected =
            |why: String| CryptoError::General(format!("RSA public key rejected: {why}"));
        // Parsing once validates the key for aws-lc-rs; it is rebuilt per algorithm on use.
        PublicKeyComponents {
            n: &n[..],
            e: &e[..],
        }
        .to_parsed_public_key(&lc_sig::RSA_PKCS1_2048_8192_SHA256)
        .map_err(|err| rejected(err.to_string()))?;
        let pkcs1 = RsaPublicKeyRef {
            modulus: UintRef::new(&n).map_err(|err| rejected(err.to_string()))?,
            public_exponent: UintRef::new(&e).map_err(|err| rejected(err.to_string()))?,
        };
        let raw = rsa::PublicKey::try_from(pkcs1).map_err(|err| rejected(err.to_string()))?;
        Ok(RsaVerifier { n, e, raw, bits })
    }

    pub(crate) fn bits(&self) -> usize {
        self.bits
    }

    pub(crate) fn signature_len(&self) -> usize {
        self.bits.div_ceil(8)
    }

    fn check_len(&self, signature: &[u8]) -> CryptoResult<()> {
        if signature.len() == self.signature_len() {
            Ok(())
        } else {
            Err(CryptoError::SignatureLenRange)
        }
    }

    fn verify_lc(
        &self,
        params: &'static RsaParameters,
        h: HashAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> CryptoResult<()> {
        let digest = import_digest(h, digest)?;
        let key = PublicKeyComponents {
            n: &self.n[..],
            e: &self.e[..],
        }
        .to_parsed_public_key(params)
        .map_err(|e| CryptoError::General(format!("RSA public key rejected: {e}")))?;
        key.verify_digest_sig(&digest, signature)
            .map_err(|_| CryptoError::SignatureInvalid)
    }

    pub(crate) fn verify_pkcs1_digest(
        &self,
        h: HashAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> CryptoResult<()> {
        self.check_len(signature)?;
        match LcHash::of(h) {
            Some(lh) => self.verify_lc(lh.pkcs1_verification(), h, digest, signature),
            None => {
                if digest.len() != h.output_len() {
                    return Err(CryptoError::DataLenRange);
                }
                self.verify_raw(&h.digest_info(digest), signature)
            }
        }
    }

    pub(crate) fn verify_pkcs1(&self, data: &[u8], signature: &[u8]) -> CryptoResult<()> {
        self.check_len(signature)?;
        if let Some((h, digest)) = parse_digest_info(data)
            && let Some(lh) = LcHash::of(h)
        {
            return self.verify_lc(lh.pkcs1_verification(), h, digest, signature);
        }
        self.verify_raw(data, signature)
    }

    fn verify_raw(&self, data: &[u8], signature: &[u8]) -> CryptoResult<()> {
        if data.len() + PKCS1_OVERHEAD > self.signature_len() {
            return Err(CryptoError::DataLenRange);
        }
        self.raw
            .verify(Pkcs1v15Sign::new_unprefixed(), data, signature)
            .map_err(|_| CryptoError::SignatureInvalid)
    }

    pub(crate) fn verify_pss(&self, pss: Pss, digest: &[u8], signature: &[u8]) -> CryptoResult<()> {
        self.check_len(signature)?;
        self.verify_lc(pss.verification(), pss.alg, digest, signature)
    }
}
