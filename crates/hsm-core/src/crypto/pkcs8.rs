//! PKCS#8 `PrivateKeyInfo`: the form a private key takes inside a wrapped blob (PKCS#11
//! 3.1, "wrapping/unwrapping private keys"), so that other tokens, OpenSSL and Java read
//! what we wrap, and we read what they wrap.
//!
//! aws-lc-rs writes the documents (its buffers zeroize on drop) and checks the keys it
//! reads; the RustCrypto `pkcs8` types only tell the three algorithms apart and take the
//! RSA components out, which aws-lc-rs does not export.

use super::ec::{Curve, EcPrivateParts, EcSigner};
use super::ed25519::Ed25519Signer;
use super::rsa_key::{RsaPrivateParts, rsa_parts_from_pkcs8};
use super::{CryptoError, CryptoResult};
use hsm_types::SecretBytes;
use rsa::pkcs8::der::Decode as _;
use rsa::pkcs8::{ObjectIdentifier, PrivateKeyInfoRef};
use zeroize::Zeroizing;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const X25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.110");
/// RFC 8410's X25519 `PrivateKeyInfo` up to the key: version 0, the algorithm, and the
/// OCTET STRING holding the 32-byte `CurvePrivateKey` OCTET STRING (aws-lc-rs writes no
/// X25519 PKCS#8, so this one fixed layout is written here).
const X25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// A private key of one of the families the token holds.
pub enum PrivateKey {
    Rsa(RsaPrivateParts),
    Ec(EcPrivateParts),
    /// The 32-byte seed (`CKA_VALUE`).
    Ed25519(SecretBytes),
    /// The 32-byte scalar (`CKA_VALUE` of a `CKK_EC_MONTGOMERY` key).
    X25519(SecretBytes),
}

/// The DER `PrivateKeyInfo` of a key (version 1, no attributes).
pub fn private_key_to_pkcs8(key: &PrivateKey) -> CryptoResult<Zeroizing<Vec<u8>>> {
    let failed = |what: &str| CryptoError::General(format!("PKCS#8 encoding of {what} failed"));
    match key {
        PrivateKey::Rsa(parts) => {
            use aws_lc_rs::encoding::AsDer;
            let pair = parts
                .lc_key_pair()
                .map_err(|_| failed("an RSA key (its components do not load)"))?;
            let der = pair.as_der().map_err(|_| failed("an RSA key"))?;
            Ok(Zeroizing::new(der.as_ref().to_vec()))
        }
        PrivateKey::Ec(parts) => {
            EcSigner::new(parts.curve, parts.private_value.expose())?.to_pkcs8()
        }
        PrivateKey::Ed25519(seed) => Ed25519Signer::new(seed.expose())?.to_pkcs8(),
        PrivateKey::X25519(scalar) => {
            super::x25519_public(scalar.expose())?;
            let mut der = Zeroizing::new(X25519_PKCS8_PREFIX.to_vec());
            der.extend_from_slice(scalar.expose());
            Ok(der)
        }
    }
}

/// Reads a `PrivateKeyInfo` (version 1 or 2) of an RSA, P-256/384/521 or Ed25519 key and
/// checks that the key loads. Anything else is `DataInvalid` (an unknown algorithm or
/// curve, trailing bytes, inconsistent components) — the caller answers "wrapped key
/// invalid" without saying more.
pub fn private_key_from_pkcs8(der: &[u8]) -> CryptoResult<PrivateKey> {
    let der = without_block_padding(der);
    let info = PrivateKeyInfoRef::from_der(der).map_err(|_| CryptoError::DataInvalid)?;
    let alg = info.algorithm;
    if alg.oid == RSA_ENCRYPTION {
        let parts = rsa_parts_from_pkcs8(der).map_err(|_| CryptoError::DataInvalid)?;
        parts.lc_key_pair().map_err(|_| CryptoError::DataInvalid)?;
        Ok(PrivateKey::Rsa(parts))
    } else if alg.oid == EC_PUBLIC_KEY {
        let curve = match alg.parameters_oid().map_err(|_| CryptoError::DataInvalid)? {
            P256 => Curve::P256,
            P384 => Curve::P384,
            P521 => Curve::P521,
            _ => return Err(CryptoError::DataInvalid),
        };
        EcSigner::parts_from_pkcs8(curve, der).map(PrivateKey::Ec)
    } else if alg.oid == ED25519 {
        Ed25519Signer::seed_from_pkcs8(der).map(PrivateKey::Ed25519)
    } else if alg.oid == X25519 {
        // CurvePrivateKey ::= OCTET STRING (32 bytes), inside the privateKey OCTET STRING.
        match info.private_key.as_bytes() {
            [0x04, 0x20, scalar @ ..] if scalar.len() == 32 => {
                super::x25519_public(scalar).map_err(|_| CryptoError::DataInvalid)?;
                Ok(PrivateKey::X25519(SecretBytes::from_slice(scalar)))
            }
            _ => Err(CryptoError::DataInvalid),
        }
    } else {
        Err(CryptoError::DataInvalid)
    }
}

/// The document without up to 7 zero bytes after its outer SEQUENCE. SoftHSM2 zero-pads
/// what it wraps to a multiple of 8 bytes and counts the padding as part of the key
/// (RFC 5649 needs no such padding), so its PKCS#8 blobs arrive with a zero tail. Any
/// other trailing byte stays and fails the parse.
fn without_block_padding(der: &[u8]) -> &[u8] {
    let declared = match der {
        [0x30, n, ..] if *n < 0x80 => Some(2 + usize::from(*n)),
        [0x30, 0x81, n, ..] => Some(3 + usize::from(*n)),
        [0x30, 0x82, hi, lo, ..] => Some(4 + (usize::from(*hi) << 8 | usize::from(*lo))),
        _ => None,
    };
    match declared {
        Some(end)
            if end < der.len() && der.len() - end < 8 && der[end..].iter().all(|b| *b == 0) =>
        {
            &der[..end]
        }
        _ => der,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{generate_ec, generate_ed25519, generate_rsa};

    fn round_trip(key: &PrivateKey) -> PrivateKey {
        let der = private_key_to_pkcs8(key).unwrap();
        private_key_from_pkcs8(&der).unwrap()
    }

    #[test]
    fn rsa_round_trips_component_for_component() {
        let parts = generate_rsa(2048, None).unwrap();
        let modulus = parts.modulus.clone();
        let d = parts.private_exponent.expose().to_vec();
        let q_inv = parts.coefficient.expose().to_vec();
        let PrivateKey::Rsa(back) = round_trip(&PrivateKey::Rsa(parts)) else {
            panic!("not RSA")
        };
        assert_eq!(back.modulus, modulus);
        assert_eq!(back.private_exponent.expose(), d.as_slice());
        assert_eq!(back.coefficient.expose(), q_inv.as_slice());
    }

    #[test]
    fn ec_round_trips_on_every_curve() {
        for curve in Curve::ALL {
            let parts = generate_ec(curve).unwrap();
            let point = parts.public_point.clone();
            let value = parts.private_value.expose().to_vec();
            let PrivateKey::Ec(back) = round_trip(&PrivateKey::Ec(parts)) else {
                panic!("not EC")
            };
            assert_eq!(back.curve, curve);
            assert_eq!(back.private_value.expose(), value.as_slice());
            assert_eq!(back.public_point, point);
        }
    }

    #[test]
    fn ed25519_round_trips() {
        let (seed, _) = generate_ed25519().unwrap();
        let bytes = seed.expose().to_vec();
        let PrivateKey::Ed25519(back) = round_trip(&PrivateKey::Ed25519(seed)) else {
            panic!("not Ed25519")
        };
        assert_eq!(back.expose(), bytes.as_slice());
    }

    #[test]
    fn x25519_round_trips_in_rfc8410_form() {
        let (scalar, _) = crate::crypto::generate_x25519().unwrap();
        let bytes = scalar.expose().to_vec();
        let der = private_key_to_pkcs8(&PrivateKey::X25519(scalar)).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(der[16..], bytes[..]);
        let PrivateKey::X25519(back) = private_key_from_pkcs8(&der).unwrap() else {
            panic!("not X25519")
        };
        assert_eq!(back.expose(), bytes.as_slice());
    }

    /// What the RustCrypto oracle writes, we read: a P-256 key made by `p256`.
    #[test]
    fn reads_a_p256_key_written_by_another_implementation() {
        use p256::pkcs8::EncodePrivateKey;
        let sk = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let der = sk.to_pkcs8_der().unwrap();
        let PrivateKey::Ec(parts) = private_key_from_pkcs8(der.as_bytes()).unwrap() else {
            panic!("not EC")
        };
        assert_eq!(parts.curve, Curve::P256);
        assert_eq!(parts.private_value.expose(), &[7u8; 32]);
        assert_eq!(
            parts.public_point,
            sk.public_key().to_sec1_bytes().to_vec(),
            "the public point is the one of that scalar"
        );
    }

    /// SoftHSM2's blobs: the document, then zeros up to a multiple of 8 bytes.
    #[test]
    fn a_zero_tail_of_under_8_bytes_is_block_padding() {
        let (seed, _) = generate_ed25519().unwrap();
        let bytes = seed.expose().to_vec();
        let der = private_key_to_pkcs8(&PrivateKey::Ed25519(seed)).unwrap();
        for zeros in 1..8 {
            let mut padded = der.to_vec();
            padded.extend(std::iter::repeat_n(0u8, zeros));
            let PrivateKey::Ed25519(back) = private_key_from_pkcs8(&padded).unwrap() else {
                panic!("not Ed25519")
            };
            assert_eq!(back.expose(), bytes.as_slice());
        }
        let mut eight = der.to_vec();
        eight.extend([0u8; 8]);
        assert!(matches!(
            private_key_from_pkcs8(&eight),
            Err(CryptoError::DataInvalid)
        ));
    }

    #[test]
    fn garbage_unknown_algorithms_and_trailing_bytes_are_invalid() {
        let (seed, _) = generate_ed25519().unwrap();
        let der = private_key_to_pkcs8(&PrivateKey::Ed25519(seed)).unwrap();
        let mut trailing = der.to_vec();
        trailing.push(1);
        let mut ed448 = der.to_vec();
        // 1.3.101.112 (Ed25519) → 1.3.101.113 (Ed448): same shape, an algorithm not held.
        let at = ed448
            .windows(3)
            .position(|w| w == [0x2b, 0x65, 0x70])
            .unwrap();
        ed448[at + 2] = 0x71;
        for bad in [
            &b""[..],
            b"\x30\x00",
            &trailing,
            &ed448,
            &der[..der.len() - 1],
        ] {
            assert!(
                matches!(private_key_from_pkcs8(bad), Err(CryptoError::DataInvalid)),
                "{bad:02x?}"
            );
        }
    }
}
