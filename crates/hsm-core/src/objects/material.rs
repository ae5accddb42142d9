//! Key material: what an imported or unwrapped key must hold to be stored, a key's
//! security strength, and private keys to and from their PKCS#8 form.

use crate::crypto::{self, Curve};
use crate::error::{Error, Result};
use crate::provider::{CryptoProvider, curve25519_public, rsa_parts};
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, KeyType, ObjectClass};

/// Attributes that an unwrapped key takes from the blob, never from the template.
pub(crate) const KEY_MATERIAL: [A; 9] = [
    A::VALUE,
    A::MODULUS,
    A::PUBLIC_EXPONENT,
    A::PRIVATE_EXPONENT,
    A::PRIME_1,
    A::PRIME_2,
    A::EXPONENT_1,
    A::EXPONENT_2,
    A::COEFFICIENT,
];

/// The security strength of a key in bits, by SP 800-57 Part 1 Rev. 5 table 2 (RSA:
/// 2048 → 112, 3072 → 128, 7680 → 192, 15360 → 256; EC: half the field; Ed25519: 128);
/// a secret key counts its length, up to 256.
pub(crate) fn key_strength(a: &AttributeSet) -> u32 {
    match a.key_type() {
        Some(KeyType::RSA) => {
            match crypto::rsa_modulus_bits(a.bytes(A::MODULUS).unwrap_or_default()) {
                15360.. => 256,
                7680.. => 192,
                3072.. => 128,
                2048.. => 112,
                _ => 80,
            }
        }
        Some(KeyType::EC) => match Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
        {
            Some(Curve::P256) => 128,
            Some(Curve::P384) => 192,
            Some(Curve::P521) => 256,
            None => 0,
        },
        Some(KeyType::EC_EDWARDS | KeyType::EC_MONTGOMERY) => 128,
        _ => a
            .bytes(A::VALUE)
            .map_or(0, |v| (v.len() as u32).saturating_mul(8).min(256)),
    }
}

/// The private key of an object, for wrapping.
pub(crate) fn private_key_of(
    provider: &dyn CryptoProvider,
    a: &AttributeSet,
) -> Result<crypto::PrivateKey> {
    let value = || {
        a.bytes(A::VALUE)
            .map(hsm_types::SecretBytes::from_slice)
            .ok_or(Error::UserNotLoggedIn)
    };
    match a.key_type() {
        Some(KeyType::RSA) => Ok(crypto::PrivateKey::Rsa(rsa_parts(a)?)),
        Some(KeyType::EC) => {
            let curve = Curve::from_ec_params(a.bytes(A::EC_PARAMS).unwrap_or_default())
                .ok_or(Error::KeyTypeInconsistent)?;
            let private_value = value()?;
            let public_point = match provider.signer(a)?.ec_public_point() {
                Some(p) => p,
                None => return Err(Error::KeyTypeInconsistent),
            };
            Ok(crypto::PrivateKey::Ec(crypto::EcPrivateParts {
                curve,
                private_value,
                public_point,
            }))
        }
        Some(KeyType::EC_EDWARDS) => Ok(crypto::PrivateKey::Ed25519(value()?)),
        Some(KeyType::EC_MONTGOMERY) => Ok(crypto::PrivateKey::X25519(value()?)),
        _ => Err(Error::KeyNotWrappable(
            "no PKCS#8 form for this key type".into(),
        )),
    }
}

/// Puts an unwrapped private key's material into the template, checking the key type and
/// curve the caller named (if any) against the key's own.
pub(crate) fn set_private_key(t: &mut AttributeSet, key: crypto::PrivateKey) -> Result<()> {
    let (key_type, params) = match &key {
        crypto::PrivateKey::Rsa(_) => (KeyType::RSA, None),
        crypto::PrivateKey::Ec(p) => (KeyType::EC, Some(p.curve.ec_params())),
        crypto::PrivateKey::Ed25519(_) => (KeyType::EC_EDWARDS, Some(crypto::ED25519_OID.to_vec())),
        crypto::PrivateKey::X25519(_) => {
            (KeyType::EC_MONTGOMERY, Some(crypto::X25519_OID.to_vec()))
        }
    };
    match t.key_type() {
        None => t.set(A::KEY_TYPE, AttrValue::Ulong(key_type.0)),
        Some(k) if k == key_type => {}
        Some(k) => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_KEY_TYPE {k:?}, but the wrapped key is {key_type:?}"
            )));
        }
    }
    if let Some(params) = params {
        let same_curve = |given: &[u8]| match key_type {
            KeyType::EC => Curve::from_ec_params(given) == Curve::from_ec_params(&params),
            KeyType::EC_MONTGOMERY => crypto::is_x25519_params(given),
            _ => crypto::is_ed25519_params(given),
        };
        match t.bytes(A::EC_PARAMS) {
            Some(given) if !same_curve(given) => {
                return Err(Error::TemplateInconsistent(
                    "CKA_EC_PARAMS name another curve than the wrapped key's".into(),
                ));
            }
            Some(_) => {}
            None => t.set(A::EC_PARAMS, AttrValue::Bytes(params)),
        }
    }
    match key {
        crypto::PrivateKey::Rsa(p) => {
            t.set(A::MODULUS, AttrValue::Bytes(p.modulus.clone()));
            t.set(
                A::PUBLIC_EXPONENT,
                AttrValue::Bytes(p.public_exponent.clone()),
            );
            for (a, v) in [
                (A::PRIVATE_EXPONENT, &p.private_exponent),
                (A::PRIME_1, &p.prime_1),
                (A::PRIME_2, &p.prime_2),
                (A::EXPONENT_1, &p.exponent_1),
                (A::EXPONENT_2, &p.exponent_2),
                (A::COEFFICIENT, &p.coefficient),
            ] {
                t.set(a, AttrValue::Bytes(v.expose().to_vec()));
            }
        }
        crypto::PrivateKey::Ec(p) => {
            t.set(
                A::VALUE,
                AttrValue::Bytes(p.private_value.expose().to_vec()),
            );
        }
        crypto::PrivateKey::Ed25519(seed) | crypto::PrivateKey::X25519(seed) => {
            t.set(A::VALUE, AttrValue::Bytes(seed.expose().to_vec()));
        }
    }
    Ok(())
}

/// Fills the class and key type a generation mechanism implies; a template that says
/// otherwise is inconsistent.
pub(crate) fn implied(
    mut t: AttributeSet,
    class: ObjectClass,
    key_type: KeyType,
) -> Result<AttributeSet> {
    match t.class() {
        None => t.set(A::CLASS, AttrValue::Ulong(class.0)),
        Some(c) if c == class => {}
        Some(c) => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_CLASS {c:?} does not fit the mechanism"
            )));
        }
    }
    match t.key_type() {
        None => t.set(A::KEY_TYPE, AttrValue::Ulong(key_type.0)),
        Some(k) if k == key_type => {}
        Some(k) => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_KEY_TYPE {k:?} does not fit the mechanism"
            )));
        }
    }
    Ok(t)
}

/// Checks imported key material before it is stored.
pub(crate) fn validate(provider: &dyn CryptoProvider, a: &AttributeSet) -> Result<()> {
    match (a.class(), a.key_type()) {
        (Some(ObjectClass::SECRET_KEY), Some(KeyType::AES)) => {
            let n = a.bytes(A::VALUE).map(<[u8]>::len).unwrap_or(0);
            if !matches!(n, 16 | 24 | 32) {
                return Err(Error::AttributeValueInvalid(format!(
                    "AES key of {n} bytes"
                )));
            }
        }
        (Some(ObjectClass::SECRET_KEY), _) => {
            if a.bytes(A::VALUE).is_none_or(<[u8]>::is_empty) {
                return Err(Error::AttributeValueInvalid("empty secret".into()));
            }
        }
        (Some(class), Some(KeyType::EC_MONTGOMERY)) => {
            let invalid = |e: Error| Error::AttributeValueInvalid(format!("X25519 key: {e}"));
            if !crypto::is_x25519_params(a.bytes(A::EC_PARAMS).unwrap_or_default()) {
                return Err(invalid(Error::KeyTypeInconsistent));
            }
            if class == ObjectClass::PRIVATE_KEY {
                let value = a.bytes(A::VALUE).unwrap_or_default();
                if value.len() != 32 {
                    return Err(invalid(Error::KeySizeRange));
                }
                crypto::x25519_public(value).map_err(|e| invalid(e.into()))?;
            } else {
                curve25519_public(a.bytes(A::EC_POINT).unwrap_or_default()).map_err(invalid)?;
            }
        }
        (Some(ObjectClass::PRIVATE_KEY | ObjectClass::PUBLIC_KEY), _) => {
            if a.class() == Some(ObjectClass::PRIVATE_KEY) {
                provider.signer(a).map_err(|e| {
                    Error::AttributeValueInvalid(format!("key material does not load: {e}"))
                })?;
            } else {
                provider.verifier(a).map_err(|e| {
                    Error::AttributeValueInvalid(format!("key material does not load: {e}"))
                })?;
            }
        }
        _ => {}
    }
    Ok(())
}
