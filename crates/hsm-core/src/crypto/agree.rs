//! Elliptic-curve Diffie-Hellman (CKM_ECDH1_DERIVE's shared secret) through aws-lc-rs:
//! the NIST curves, and X25519 (RFC 7748) for `CKK_EC_MONTGOMERY` keys.

use super::{CryptoError, CryptoResult, Curve};
use aws_lc_rs::agreement::{
    self, ECDH_P256, ECDH_P384, ECDH_P521, PrivateKey, UnparsedPublicKey, X25519,
};
use aws_lc_rs::encoding::AsBigEndian;
use hsm_types::SecretBytes;

/// `CKA_EC_PARAMS` of X25519: the OID 1.3.101.110 (RFC 8410), DER.
pub const X25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x6e];
/// The same curve by name (`PrintableString "curve25519"`), as PKCS#11 3.0 also allows.
const X25519_NAME: &[u8] = b"\x13\x0acurve25519";

pub fn is_x25519_params(der: &[u8]) -> bool {
    der == X25519_OID || der == X25519_NAME
}

/// A new X25519 key: the 32-byte private scalar (`CKA_VALUE`) and public u-coordinate.
pub fn generate_x25519() -> CryptoResult<(SecretBytes, Vec<u8>)> {
    let failed = || CryptoError::General("X25519 key generation failed".into());
    let key = PrivateKey::generate(&X25519).map_err(|_| failed())?;
    let public = key.compute_public_key().map_err(|_| failed())?;
    let secret: aws_lc_rs::encoding::Curve25519SeedBin<'_> =
        key.as_be_bytes().map_err(|_| failed())?;
    Ok((
        SecretBytes::from_slice(secret.as_ref()),
        public.as_ref().to_vec(),
    ))
}

/// The public u-coordinate of an X25519 private scalar.
pub fn x25519_public(private_value: &[u8]) -> CryptoResult<Vec<u8>> {
    let key = PrivateKey::from_private_key(&X25519, private_value)
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    let public = key
        .compute_public_key()
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    Ok(public.as_ref().to_vec())
}

/// The X25519 shared secret of our scalar and a peer's 32-byte public value; an all-zero
/// result (a low-order peer point) is refused, as RFC 7748 §6.1 allows.
pub fn x25519(private_value: &[u8], peer: &[u8]) -> CryptoResult<SecretBytes> {
    let me = PrivateKey::from_private_key(&X25519, private_value)
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    agreement::agree(
        &me,
        UnparsedPublicKey::new(&X25519, peer),
        CryptoError::MechanismParamInvalid("the peer's public value is not an X25519 key".into()),
        |z| Ok(SecretBytes::from_slice(z)),
    )
}

/// The shared secret Z (the x-coordinate) of our private scalar and a peer's point.
pub fn ecdh(curve: Curve, private_value: &[u8], peer_point: &[u8]) -> CryptoResult<SecretBytes> {
    let alg = match curve {
        Curve::P256 => &ECDH_P256,
        Curve::P384 => &ECDH_P384,
        Curve::P521 => &ECDH_P521,
    };
    let me = PrivateKey::from_private_key(alg, private_value)
        .map_err(|_| CryptoError::KeyTypeInconsistent)?;
    let peer = UnparsedPublicKey::new(alg, peer_point);
    agreement::agree(
        &me,
        peer,
        CryptoError::MechanismParamInvalid(
            "the peer's public point is not on the key's curve".into(),
        ),
        |z| Ok(SecretBytes::from_slice(z)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1.
    #[test]
    fn x25519_matches_rfc7748() {
        let hex = crate::crypto::test_hex;
        let alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let alice_pub = x25519_public(&alice).unwrap();
        let bob_pub = x25519_public(&bob).unwrap();
        assert_eq!(
            alice_pub,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob_pub,
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(
            x25519(&alice, &bob_pub).unwrap().expose(),
            shared.as_slice()
        );
        assert_eq!(
            x25519(&bob, &alice_pub).unwrap().expose(),
            shared.as_slice()
        );
        let (mine, public) = generate_x25519().unwrap();
        assert_eq!(x25519_public(mine.expose()).unwrap(), public);
        // A low-order point gives an all-zero secret: refused.
        assert!(x25519(&alice, &[0u8; 32]).is_err());
        assert!(x25519(&alice, &[9u8; 31]).is_err());
    }

    #[test]
    fn both_sides_agree_and_a_foreign_point_is_refused() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let a = super::super::generate_ec(curve).unwrap();
            let b = super::super::generate_ec(curve).unwrap();
            let ab = ecdh(curve, a.private_value.expose(), &b.public_point).unwrap();
            let ba = ecdh(curve, b.private_value.expose(), &a.public_point).unwrap();
            assert_eq!(ab.expose(), ba.expose());
            assert_eq!(ab.len(), curve.field_len());
        }
        let a = super::super::generate_ec(Curve::P256).unwrap();
        let other = super::super::generate_ec(Curve::P384).unwrap();
        assert!(ecdh(Curve::P256, a.private_value.expose(), &other.public_point).is_err());
    }
}
