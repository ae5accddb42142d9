//! `C_DeriveKey`: ECDH (P-256/384/521 and X25519; null, X9.63 and SP 800-56C KDFs),
//! HKDF, and SP 800-108 (counter and feedback mode, with additional derived keys). Every
//! derivation is three shared steps: the base-key check, the template, the attributes.

use super::Action;
use super::sign::hmac_hash;
use crate::crypto::{self, Curve, HashAlg};
use crate::error::{Error, Result};
use crate::mechanism::params::EcKdfScheme;
use crate::mechanism::{HkdfSalt, Mechanism};
use crate::objects::attrs::{self, Ctx, Origin};
use crate::objects::usage::{KeyUse, key_handle};
use crate::policy::engine::input_hash;
use crate::provider::curve25519_public;
use crate::runtime::{Call, Hsm};
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType as M, ObjectClass,
};

/// The key types an HMAC PRF takes.
const HMAC_KEYS: [KeyType; 6] = [
    KeyType::GENERIC_SECRET,
    KeyType::SHA_1_HMAC,
    KeyType::SHA224_HMAC,
    KeyType::SHA256_HMAC,
    KeyType::SHA384_HMAC,
    KeyType::SHA512_HMAC,
];

/// A derived key's template with its length in bytes and the `CKA_VALUE_LEN` the caller
/// asked for (if any).
struct Derived {
    template: AttributeSet,
    len: usize,
    requested: Option<usize>,
}

impl Hsm {
    /// `C_DeriveKey`: `CKM_ECDH1_DERIVE` (null, X9.63 or SP 800-56C KDF) from an EC or
    /// X25519 private key, or `CKM_HKDF_DERIVE` from a generic secret or HKDF key. The new
    /// secret key's template is merged with the base key's `CKA_DERIVE_TEMPLATE`;
    /// `CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE` are the base key's AND the new key's.
    pub fn derive_key(
        &self,
        h: u64,
        mech: &Mechanism,
        base: u64,
        template: AttributeSet,
    ) -> Result<u64> {
        self.run(h, Action::DeriveKey, |c| {
            hsm_store::audit::note_mechanism(mech.kind().0);
            if mech.kind() == M::FERRO_KEY_ROTATE {
                return self.rotate_by_derive(c, base, &template);
            }
            let b = self.load(&c.slot, c.token, base).map_err(key_handle)?;
            let (class, types): (ObjectClass, &[KeyType]) = match mech {
                Mechanism::Ecdh { .. } => (
                    ObjectClass::PRIVATE_KEY,
                    &[KeyType::EC, KeyType::EC_MONTGOMERY],
                ),
                Mechanism::Hkdf { .. } => (
                    ObjectClass::SECRET_KEY,
                    &[KeyType::GENERIC_SECRET, KeyType::HKDF],
                ),
                _ if matches!(mech.kind(), M::ECDH1_DERIVE | M::HKDF_DERIVE) => {
                    return Err(Error::MechanismParamInvalid(
                        "this derivation needs its parameters".into(),
                    ));
                }
                _ => return Err(Error::MechanismInvalid),
            };
            self.check_base_key(c, base, &b.attrs, (class, types), mech, mech.kind())?;
            let mut d = derived_template(&b.attrs, template)?;
            let value = match mech {
                Mechanism::Ecdh {
                    kdf,
                    shared_data,
                    public_data,
                } => {
                    let scheme = kdf.scheme()?;
                    ecdh_value(&b.attrs, scheme, shared_data, public_data, &d)?
                }
                Mechanism::Hkdf {
                    extract,
                    expand,
                    prf,
                    salt_type,
                    salt,
                    info,
                } => {
                    let hash = HashAlg::from_mechanism(*prf).ok_or_else(|| {
                        Error::MechanismParamInvalid(format!("HKDF hash {prf:?}"))
                    })?;
                    let salt: &[u8] = match *salt_type {
                        HkdfSalt::NULL => &[],
                        HkdfSalt::DATA => salt,
                        _ => {
                            return Err(Error::MechanismParamInvalid(
                                "HKDF salt: CKF_HKDF_SALT_NULL or _DATA only".into(),
                            ));
                        }
                    };
                    let ikm = b.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                    crypto::hkdf(hash, ikm, *extract, *expand, salt, info, d.len)?
                        .expose()
                        .to_vec()
                }
                _ => return Err(Error::MechanismInvalid),
            };
            let ctx = self.ctx(&c.slot);
            let attrs = derived_attrs(ctx, &b.attrs, &mut d.template, value, mech.kind())?;
            Ok(self.store_new(c, vec![attrs])?[0])
        })
    }

    /// `C_DeriveKey` with SP 800-108 (`CKM_SP800_108_COUNTER_KDF`, `_FEEDBACK_KDF`):
    /// the key of the call's template, then one per `CK_DERIVED_KEY`, each from its own
    /// whole PRF outputs; all are stored in one batch or none is. Returns their handles in
    /// that order. HMAC PRFs take generic secret or HMAC keys, AES-CMAC takes AES keys;
    /// a template without `CKA_SENSITIVE`/`CKA_EXTRACTABLE` takes the base key's.
    pub fn derive_keys(
        &self,
        h: u64,
        mech: &Mechanism,
        base: u64,
        template: AttributeSet,
    ) -> Result<Vec<u64>> {
        let Mechanism::Kbkdf {
            mechanism,
            prf,
            fields,
            iv,
            additional,
        } = mech
        else {
            return Err(Error::MechanismInvalid);
        };
        self.run(h, Action::DeriveKey, |c| {
            hsm_store::audit::note_mechanism(mech.kind().0);
            let b = self.load(&c.slot, c.token, base).map_err(key_handle)?;
            let (prf, types): (crypto::Prf, &[KeyType]) = match *prf {
                M::AES_CMAC => (crypto::Prf::AesCmac, &[KeyType::AES]),
                m => match hmac_hash(m) {
                    Some(hash) => (crypto::Prf::Hmac(hash), &HMAC_KEYS),
                    None => {
                        return Err(Error::MechanismParamInvalid(format!(
                            "SP 800-108 PRF {m:?}: HMAC-SHA-1/224/256/384/512 or AES-CMAC"
                        )));
                    }
                },
            };
            let fit = (ObjectClass::SECRET_KEY, types);
            self.check_base_key(c, base, &b.attrs, fit, mech, *mechanism)?;
            let mode = match *mechanism {
                M::SP800_108_FEEDBACK_KDF => crypto::KbkdfMode::Feedback(iv.clone()),
                _ => crypto::KbkdfMode::Counter,
            };
            let mut derived = Vec::with_capacity(1 + additional.len());
            for mut t in std::iter::once(template).chain(additional.iter().cloned()) {
                for a in [A::SENSITIVE, A::EXTRACTABLE] {
                    if let (false, Some(v)) = (t.contains(a), b.attrs.get(a)) {
                        t.set(a, v.clone());
                    }
                }
                derived.push(derived_template(&b.attrs, t)?);
            }
            let lens: Vec<usize> = derived.iter().map(|d| d.len).collect();
            let key = b.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
            let values = crypto::kbkdf(prf, key, &mode, fields, &lens)?;
            let ctx = self.ctx(&c.slot);
            let mut objects = Vec::with_capacity(values.len());
            for (mut d, value) in derived.into_iter().zip(values) {
                let value = value.expose().to_vec();
                objects.push(derived_attrs(
                    ctx,
                    &b.attrs,
                    &mut d.template,
                    value,
                    *mechanism,
                )?);
            }
            self.store_new(c, objects)
        })
    }

    /// The base key may derive with this mechanism: its type fits, `CKA_DERIVE` is set,
    /// the mechanism is among its allowed ones, and the policy agrees (a key whose every
    /// use needs approvals derives once they bind to these parameters).
    fn check_base_key(
        &self,
        c: &Call,
        handle: u64,
        b: &AttributeSet,
        (class, types): (ObjectClass, &[KeyType]),
        params: &Mechanism,
        mech: M,
    ) -> Result<()> {
        let u = KeyUse::new(class, types, A::DERIVE, mech)
            .no_trusted()
            .no_always_authenticate();
        if let Some(g) = self.check_use(c, handle, b, u)? {
            let input = input_hash(format!("{params:?}").as_bytes());
            self.release_use(c, &g, &input)?;
        }
        Ok(())
    }
}

/// The shared secret of ECDH with the peer's public data, through the KDF the caller
/// named. A generic secret without `CKA_VALUE_LEN` takes Z whole, or one hash output.
fn ecdh_value(
    b: &AttributeSet,
    scheme: EcKdfScheme,
    shared_data: &[u8],
    public_data: &[u8],
    d: &Derived,
) -> Result<Vec<u8>> {
    if scheme == EcKdfScheme::Null && !shared_data.is_empty() {
        return Err(Error::MechanismParamInvalid(
            "CKD_NULL takes no shared data".into(),
        ));
    }
    let scalar = b.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
    let z = if b.key_type() == Some(KeyType::EC_MONTGOMERY) {
        let peer = curve25519_public(public_data)
            .map_err(|_| Error::MechanismParamInvalid("public data is not an X25519 key".into()))?;
        crypto::x25519(scalar, &peer)?
    } else {
        let curve = Curve::from_ec_params(b.bytes(A::EC_PARAMS).unwrap_or_default())
            .ok_or(Error::KeyTypeInconsistent)?;
        let peer = crypto::ec_point_from_der(public_data)
            .ok_or_else(|| Error::MechanismParamInvalid("public data is not an EC point".into()))?;
        crypto::ecdh(curve, scalar, &peer)?
    };
    let natural = match scheme {
        EcKdfScheme::Null => z.len(),
        EcKdfScheme::X963(h) | EcKdfScheme::Sp800_56c(h) => h.output_len(),
    };
    let generic = d.template.key_type() == Some(KeyType::GENERIC_SECRET);
    let len = if d.requested.is_none() && generic {
        natural
    } else {
        d.len
    };
    Ok(match scheme {
        EcKdfScheme::Sp800_56c(hash) => crypto::sp800_56c_kdf(hash, z.expose(), shared_data, len)?
            .expose()
            .to_vec(),
        EcKdfScheme::X963(hash) => crypto::x963_kdf(hash, z.expose(), shared_data, len)?
            .expose()
            .to_vec(),
        EcKdfScheme::Null if len > z.len() => {
            return Err(Error::TemplateInconsistent(format!(
                "CKA_VALUE_LEN {len} exceeds the {}-byte shared secret",
                z.len()
            )));
        }
        EcKdfScheme::Null => z.expose()[..len].to_vec(),
    })
}

/// A derived key's template merged with the base key's `CKA_DERIVE_TEMPLATE`, and its
/// length: `CKA_VALUE_LEN`, or 32 bytes for AES and generic secrets without one.
fn derived_template(b: &AttributeSet, template: AttributeSet) -> Result<Derived> {
    if template.contains(A::VALUE) {
        return Err(Error::TemplateInconsistent(
            "CKA_VALUE comes from the derivation".into(),
        ));
    }
    let mut t = template;
    if t.class().is_none() {
        t.set(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
    }
    if let Some(AttrValue::Template(dt)) = b.get(A::DERIVE_TEMPLATE) {
        for (a, v) in dt.iter() {
            match t.get(a) {
                Some(mine) if mine != v => {
                    return Err(Error::TemplateInconsistent(format!(
                        "{a:?} conflicts with the base key's CKA_DERIVE_TEMPLATE"
                    )));
                }
                _ => t.set(a, v.clone()),
            }
        }
    }
    if t.class() != Some(ObjectClass::SECRET_KEY) {
        return Err(Error::TemplateInconsistent(
            "derivation makes secret keys".into(),
        ));
    }
    let requested = t.ulong(A::VALUE_LEN).map(|n| n as usize);
    let len = match (t.key_type(), requested) {
        (None, _) => return Err(Error::TemplateIncomplete("CKA_KEY_TYPE".into())),
        (Some(KeyType::AES), Some(n)) if matches!(n, 16 | 24 | 32) => n,
        (Some(KeyType::AES), None) => 32,
        (Some(KeyType::AES), Some(_)) => {
            return Err(Error::TemplateInconsistent(
                "an AES key is 16, 24 or 32 bytes".into(),
            ));
        }
        (Some(KeyType::GENERIC_SECRET), Some(n)) if (1..=512).contains(&n) => n,
        (Some(KeyType::GENERIC_SECRET), None) => 32,
        (Some(KeyType::GENERIC_SECRET), Some(_)) => return Err(Error::KeySizeRange),
        (Some(_), _) => {
            return Err(Error::TemplateInconsistent(
                "derivation makes AES or generic secret keys".into(),
            ));
        }
    };
    Ok(Derived {
        template: t,
        len,
        requested,
    })
}

/// The attributes of a derived key: its value and length, the mechanism that made it,
/// and `CKA_ALWAYS_SENSITIVE` / `CKA_NEVER_EXTRACTABLE` as the base key's AND its own.
fn derived_attrs(
    ctx: Ctx,
    b: &AttributeSet,
    t: &mut AttributeSet,
    value: Vec<u8>,
    mech: M,
) -> Result<AttributeSet> {
    let len = value.len();
    t.remove(A::VALUE_LEN);
    t.set(A::VALUE, AttrValue::Bytes(value));
    let mut attrs = attrs::build_new(t, Origin::Created, ctx)?;
    attrs.set(A::VALUE_LEN, AttrValue::Ulong(len as u64));
    attrs.set(A::KEY_GEN_MECHANISM, AttrValue::Ulong(mech.0));
    let sensitive = attrs.bool(A::SENSITIVE) == Some(true);
    let extractable = attrs.bool(A::EXTRACTABLE) == Some(true);
    attrs.set(
        A::ALWAYS_SENSITIVE,
        AttrValue::Bool(b.bool(A::ALWAYS_SENSITIVE) == Some(true) && sensitive),
    );
    attrs.set(
        A::NEVER_EXTRACTABLE,
        AttrValue::Bool(b.bool(A::NEVER_EXTRACTABLE) == Some(true) && !extractable),
    );
    Ok(attrs)
}
