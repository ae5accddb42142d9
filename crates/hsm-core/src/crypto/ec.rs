//! NIST curves: parameters, key generation, point encodings and ECDSA on a hash.

use super::{CryptoError, CryptoResult, strip_leading_zeros};
use aws_lc_rs::agreement;
use aws_lc_rs::digest as lc_digest;
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{self as lc_sig, EcdsaKeyPair, KeyPair as _, ParsedPublicKey};
use hsm_types::SecretBytes;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
const DER_OCTET_STRING: u8 = 0x04;
const DER_PRINTABLE_STRING: u8 = 0x13;
const UNCOMPRESSED: u8 = 0x04;

impl Curve {
    pub const ALL: [Curve; 3] = [Curve::P256, Curve::P384, Curve::P521];

    /// `CKA_EC_PARAMS`: the named-curve OID, or the PrintableString curve name some
    /// clients send instead.
    pub fn from_ec_params(der: &[u8]) -> Option<Curve> {
        if der == P256_OID {
            return Some(Curve::P256);
        }
        if der == P384_OID {
            return Some(Curve::P384);
        }
        if der == P521_OID {
            return Some(Curve::P521);
        }
        match der {
            [DER_PRINTABLE_STRING, len, name @ ..] if usize::from(*len) == name.len() => match name
            {
                b"prime256v1" | b"secp256r1" => Some(Curve::P256),
                b"secp384r1" => Some(Curve::P384),
                b"secp521r1" => Some(Curve::P521),
                _ => None,
            },
            _ => None,
        }
    }

    /// The DER named-curve OID, as `CKA_EC_PARAMS` stores it.
    pub fn ec_params(self) -> Vec<u8> {
        match self {
            Curve::P256 => P256_OID.to_vec(),
            Curve::P384 => P384_OID.to_vec(),
            Curve::P521 => P521_OID.to_vec(),
        }
    }

    pub fn bits(self) -> u32 {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    /// Bytes of a field element, of the scalar, and of each of `r` and `s`.
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// Length of the uncompressed point `04 || X || Y`.
    pub fn point_len(self) -> usize {
        1 + 2 * self.field_len()
    }

    fn signing_alg(self) -> &'static lc_sig::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &lc_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &lc_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            Curve::P521 => &lc_sig::ECDSA_P521_SHA512_FIXED_SIGNING,
        }
    }

    fn verification_alg(self) -> &'static lc_sig::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &lc_sig::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &lc_sig::ECDSA_P384_SHA384_FIXED,
            Curve::P521 => &lc_sig::ECDSA_P521_SHA512_FIXED,
        }
    }

    /// The digest the aws-lc-rs algorithm for this curve insists on; its length is the
    /// order's, so a hash normalised to it is signed exactly as ECDSA defines.
    fn native_digest(self) -> &'static lc_digest::Algorithm {
        match self {
            Curve::P256 => &lc_digest::SHA256,
            Curve::P384 => &lc_digest::SHA384,
            Curve::P521 => &lc_digest::SHA512,
        }
    }

    fn ecdh_alg(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P384 => &agreement::ECDH_P384,
            Curve::P521 => &agreement::ECDH_P521,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// ECDSA's `bits2int`: keep the leftmost `field_len` bytes of a longer hash, left-pad a
    /// shorter one (same integer). P-521's order is not a whole number of bytes, and
    /// aws-lc-rs takes its digests as SHA-512-sized: inputs up to 64 bytes are padded to
    /// that, longer raw inputs are refused.
    fn normalise_hash(self, hash: &[u8]) -> CryptoResult<lc_digest::Digest> {
        if self == Curve::P521 {
            if hash.len() > 64 {
                return Err(CryptoError::DataLenRange);
            }
            let mut buf = [0u8; 64];
            buf[64 - hash.len()..].copy_from_slice(hash);
            return lc_digest::Digest::import_less_safe(&buf, self.native_digest())
                .map_err(|_| CryptoError::General("digest import failed".into()));
        }
        let n = self.field_len();
        let mut buf = [0u8; 48];
        if hash.len() >= n {
            buf[..n].copy_from_slice(&hash[..n]);
        } else {
            buf[n - hash.len()..n].copy_from_slice(hash);
        }
        lc_digest::Digest::import_less_safe(&buf[..n], self.native_digest())
            .map_err(|_| CryptoError::General("digest import failed".into()))
    }
}

/// EC private key material as the PKCS#11 attributes hold it.
pub struct EcPrivateParts {
    pub curve: Curve,
    /// The scalar `d`, `field_len` bytes big-endian (`CKA_VALUE`).
    pub private_value: SecretBytes,
    /// `04 || X || Y`; wrap with [`ec_point_der`] for `CKA_EC_POINT`.
    pub public_point: Vec<u8>,
}

pub fn generate_ec(curve: Curve) -> CryptoResult<EcPrivateParts> {
    let pair = EcdsaKeyPair::generate(curve.signing_alg())
        .map_err(|_| CryptoError::General("EC key generation failed".into()))?;
    let scalar = pair
        .private_key()
        .as_be_bytes()
        .map_err(|_| CryptoError::General("EC private key export failed".into()))?;
    Ok(EcPrivateParts {
        curve,
        private_value: SecretBytes::new(fixed_scalar(curve, scalar.as_ref())?.to_vec()),
        public_point: pair.public_key().as_ref().to_vec(),
    })
}

/// The scalar left-padded to `field_len`; a longer value cannot be below the order.
fn fixed_scalar(curve: Curve, value: &[u8]) -> CryptoResult<Zeroizing<Vec<u8>>> {
    let n = curve.field_len();
    let value = strip_leading_zeros(value);
    if value.len() > n {
        return Err(CryptoError::KeySizeRange);
    }
    let mut out = Zeroizing::new(vec![0u8; n]);
    out[n - value.len()..].copy_from_slice(value);
    Ok(out)
}

/// `CKA_EC_POINT`: the point wrapped in a DER OCTET STRING.
pub fn ec_point_der(point: &[u8]) -> Vec<u8> {
    let mut out = vec![DER_OCTET_STRING];
    let len = point.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = strip_leading_zeros(&bytes);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(point);
    out
}

/// Reads `CKA_EC_POINT` as the spec says (DER OCTET STRING) or as some clients send it
/// (the raw point). Only uncompressed points of our curves' sizes are accepted, which also
/// makes the two forms unambiguous.
pub fn ec_point_from_der(der_or_raw: &[u8]) -> Option<Vec<u8>> {
    let is_point = |p: &[u8]| {
        p.first() == Some(&UNCOMPRESSED) && Curve::ALL.iter().any(|c| c.point_len() == p.len())
    };
    if let [DER_OCTET_STRING, len, inner @ ..] = der_or_raw
        && usize::from(*len) == inner.len()
        && is_point(inner)
    {
        return Some(inner.to_vec());
    }
    // P-521 points (133 bytes) need the long length form.
    if let [DER_OCTET_STRING, 0x81, len, inner @ ..] = der_or_raw
        && *len >= 0x80
        && usize::from(*len) == inner.len()
        && is_point(inner)
    {
        return Some(inner.to_vec());
    }
    is_point(der_or_raw).then(|| der_or_raw.to_vec())
}

/// A prepared ECDSA private key.
pub(crate) struct EcSigner {
    curve: Curve,
    pair: EcdsaKeyPair,
}

impl EcSigner {
    pub(crate) fn new(curve: Curve, private_value: &[u8]) -> CryptoResult<Self> {
        let scalar = fixed_scalar(curve, private_value)?;
        let rejected = || {
            CryptoError::General(format!(
                "EC private value is not a valid {} scalar",
                curve.name()
            ))
        };
        // aws-lc-rs wants the public point alongside the scalar; ECDH's key type derives it.
        let point = agreement::PrivateKey::from_private_key(curve.ecdh_alg(), &scalar)
            .map_err(|_| rejected())?
            .compute_public_key()
            .map_err(|_| rejected())?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            curve.signing_alg(),
            &scalar,
            point.as_ref(),
        )
        .map_err(|_| rejected())?;
        Ok(EcSigner { curve, pair })
    }

    pub(crate) fn curve(&self) -> Curve {
        self.curve
    }

    /// The key as a PKCS#8 `PrivateKeyInfo` (with its public point, RFC 5915).
    pub(crate) fn to_pkcs8(&self) -> CryptoResult<Zeroizing<Vec<u8>>> {
        let doc = self
            .pair
            .to_pkcs8v1()
            .map_err(|_| CryptoError::General("PKCS#8 encoding of an EC key failed".into()))?;
        Ok(Zeroizing::new(doc.as_ref().to_vec()))
    }

    /// The scalar and point of a PKCS#8 EC key on `curve`; aws-lc-rs checks the scalar's
    /// range and, when the document carries one, that the point is the scalar's.
    pub(crate) fn parts_from_pkcs8(curve: Curve, der: &[u8]) -> CryptoResult<EcPrivateParts> {
        let pair = EcdsaKeyPair::from_pkcs8(curve.signing_alg(), der)
            .map_err(|_| CryptoError::DataInvalid)?;
        let scalar = pair
            .private_key()
            .as_be_bytes()
            .map_err(|_| CryptoError::DataInvalid)?;
        Ok(EcPrivateParts {
            curve,
            private_value: SecretBytes::new(fixed_scalar(curve, scalar.as_ref())?.to_vec()),
            public_point: pair.public_key().as_ref().to_vec(),
        })
    }

    pub(crate) fn public_point(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Raw ECDSA (`CKM_ECDSA`) of a hash of any length; `r || s`.
    pub(crate) fn sign_hash(&self, hash: &[u8]) -> CryptoResult<Vec<u8>> {
        let digest = self.curve.normalise_hash(hash)?;
        let sig = self
            .pair
            .sign_digest(&digest)
            .map_err(|_| CryptoError::General("ECDSA signing failed".into()))?;
        Ok(sig.as_ref().to_vec())
    }
}

/// A prepared ECDSA public key.
pub(crate) struct EcVerifier {
    curve: Curve,
    key: ParsedPublicKey,
}

impl EcVerifier {
    pub(crate) fn new(curve: Curve, point: &[u8]) -> CryptoResult<Self> {
        let rejected = || {
            CryptoError::General(format!(
                "EC point is not an uncompressed {} point on the curve",
                curve.name()
            ))
        };
        if point.len() != curve.point_len() || point[0] != UNCOMPRESSED {
            return Err(rejected());
        }
        let key = ParsedPublicKey::new(curve.verification_alg(), point).map_err(|_| rejected())?;
        Ok(EcVerifier { curve, key })
    }

    pub(crate) fn curve(&self) -> Curve {
        self.curve
    }

    pub(crate) fn signature_len(&self) -> usize {
        2 * self.curve.field_len()
    }

    pub(crate) fn verify_hash(&self, hash: &[u8], signature: &[u8]) -> CryptoResult<()> {
        if signature.len() != self.signature_len() {
            return Err(CryptoError::SignatureLenRange);
        }
        let digest = self.curve.normalise_hash(hash)?;
        self.key
            .verify_digest_sig(&digest, signature)
            .map_err(|_| CryptoError::SignatureInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_params_round_trip_and_accept_curve_names() {
        for c in Curve::ALL {
            assert_eq!(Curve::from_ec_params(&c.ec_params()), Some(c));
        }
        assert_eq!(
            Curve::P256.ec_params(),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
        assert_eq!(
            Curve::from_ec_params(b"\x13\x0aprime256v1"),
            Some(Curve::P256)
        );
        assert_eq!(
            Curve::from_ec_params(b"\x13\x09secp384r1"),
            Some(Curve::P384)
        );
        assert_eq!(
            Curve::from_ec_params(b"\x13\x09secp521r1"),
            Some(Curve::P521)
        );
        assert_eq!(Curve::from_ec_params(b"\x13\x0bprime256v1"), None);
        // secp256k1
        assert_eq!(
            Curve::from_ec_params(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]),
            None
        );
        assert_eq!((Curve::P256.bits(), Curve::P256.field_len()), (256, 32));
        assert_eq!((Curve::P384.bits(), Curve::P384.field_len()), (384, 48));
    }

    #[test]
    fn ec_point_der_round_trips_and_raw_points_are_accepted() {
        for c in Curve::ALL {
            let parts = generate_ec(c).unwrap();
            let point = &parts.public_point;
            assert_eq!(point.len(), c.point_len());
            let der = ec_point_der(point);
            let header: &[u8] = if point.len() < 0x80 {
                &[0x04, point.len() as u8]
            } else {
                &[0x04, 0x81, point.len() as u8]
            };
            assert!(der.starts_with(header));
            assert_eq!(ec_point_from_der(&der).as_ref(), Some(point));
            assert_eq!(ec_point_from_der(point).as_ref(), Some(point));
            assert_eq!(ec_point_from_der(&der[..der.len() - 1]), None);
        }
        assert_eq!(ec_point_from_der(&[0x04, 0x02, 0x04, 0x00]), None);
        assert_eq!(ec_point_der(&[0xaa; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn key_from_scalar_has_the_generated_public_point() {
        for c in Curve::ALL {
            let parts = generate_ec(c).unwrap();
            assert_eq!(parts.private_value.len(), c.field_len());
            let signer = EcSigner::new(c, parts.private_value.expose()).unwrap();
            assert_eq!(signer.public_point(), parts.public_point);
            // CKA_VALUE with its leading zeros stripped, or with an extra one, is the same key.
            let mut padded = vec![0u8];
            padded.extend_from_slice(parts.private_value.expose());
            assert_eq!(
                EcSigner::new(c, &padded).unwrap().public_point(),
                parts.public_point
            );
        }
    }

    #[test]
    fn invalid_scalars_and_points_are_rejected() {
        assert!(matches!(
            EcSigner::new(Curve::P256, &[0u8; 32]),
            Err(CryptoError::General(_))
        ));
        assert!(matches!(
            EcSigner::new(Curve::P256, &[0xffu8; 32]),
            Err(CryptoError::General(_))
        ));
        assert!(matches!(
            EcSigner::new(Curve::P256, &[0x01u8; 33]),
            Err(CryptoError::KeySizeRange)
        ));
        let p384 = generate_ec(Curve::P384).unwrap();
        assert!(EcVerifier::new(Curve::P256, &p384.public_point).is_err());
        let mut off_curve = generate_ec(Curve::P256).unwrap().public_point;
        off_curve[64] ^= 1;
        assert!(matches!(
            EcVerifier::new(Curve::P256, &off_curve),
            Err(CryptoError::General(_))
        ));
    }
}
