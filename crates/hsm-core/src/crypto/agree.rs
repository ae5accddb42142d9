//! Elliptic-curve Diffie-Hellman (CKM_ECDH1_DERIVE with the null KDF) through aws-lc-rs.

use super::{CryptoError, CryptoResult, Curve};
use aws_lc_rs::agreement::{self, ECDH_P256, ECDH_P384, ECDH_P521, PrivateKey, UnparsedPublicKey};
use hsm_types::SecretBytes;

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
