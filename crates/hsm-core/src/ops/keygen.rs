//! Key generation: secret keys (AES, generic and HMAC secrets) and key pairs (RSA,
//! P-256/384/521, Ed25519, X25519), each pair checked before it is stored.

use super::Action;
use crate::crypto::{self, Curve};
use crate::error::{Error, Result};
use crate::hardware::{self, Adapter, DeviceKey, DevicePublic};
use crate::mechanism::Mechanism;
use crate::mechanism::flags;
use crate::objects::attrs::{self, Ctx, Origin};
use crate::objects::find::without;
use crate::objects::material::implied;
use crate::provider::{GeneratedPair, PairSpec};
use crate::runtime::Hsm;
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType as M, ObjectClass,
};
use std::sync::Arc;

/// The two halves of a pair being made.
struct Pair {
    public: AttributeSet,
    private: AttributeSet,
}

impl Hsm {
    pub fn generate_key(&self, h: u64, mech: &Mechanism, template: AttributeSet) -> Result<u64> {
        self.run(h, Action::GenerateKey, |c| {
            hsm_store::audit::note_mechanism(mech.kind().0);
            let m = mech.kind();
            let key_type = match m {
                M::AES_KEY_GEN => KeyType::AES,
                M::GENERIC_SECRET_KEY_GEN => KeyType::GENERIC_SECRET,
                M::SHA_1_KEY_GEN => KeyType::SHA_1_HMAC,
                M::SHA224_KEY_GEN => KeyType::SHA224_HMAC,
                M::SHA256_KEY_GEN => KeyType::SHA256_HMAC,
                M::SHA384_KEY_GEN => KeyType::SHA384_HMAC,
                M::SHA512_KEY_GEN => KeyType::SHA512_HMAC,
                _ => return Err(Error::MechanismInvalid),
            };
            let t = implied(template, ObjectClass::SECRET_KEY, key_type)?;
            let mut attrs = attrs::build_new(&t, Origin::Generated(m), self.ctx(&c.slot))?;
            let len = attrs
                .ulong(A::VALUE_LEN)
                .ok_or_else(|| Error::TemplateIncomplete("CKA_VALUE_LEN".into()))?
                as usize;
            let ok = match key_type {
                KeyType::AES => matches!(len, 16 | 24 | 32),
                _ => (1..=512).contains(&len),
            };
            if !ok {
                return Err(Error::KeySizeRange);
            }
            if let Some(a) = c.slot.shared.adapter()? {
                // No secret keys in a device yet: its capabilities list none to generate.
                return Err(if a.capabilities().allows(m, flags::GENERATE) {
                    Error::FunctionNotSupported
                } else {
                    Error::MechanismInvalid
                });
            }
            let value = self.provider().generate_secret(len)?;
            attrs.set(A::VALUE, AttrValue::Bytes(value.expose().to_vec()));
            Ok(self.store_new(c, vec![attrs])?[0])
        })
    }

    pub fn generate_key_pair(
        &self,
        h: u64,
        mech: &Mechanism,
        public: AttributeSet,
        private: AttributeSet,
    ) -> Result<(u64, u64)> {
        self.run(h, Action::GenerateKeyPair, |c| {
            hsm_store::audit::note_mechanism(mech.kind().0);
            let ctx = self.ctx(&c.slot);
            let device = c.slot.shared.adapter()?.cloned();
            let private = match &device {
                Some(a) => device_template(private, a.as_ref())?,
                None => private,
            };
            let private_template = private.clone();
            let g = Gen {
                ctx,
                device: device.as_ref(),
            };
            let mut pair = match mech.kind() {
                M::RSA_PKCS_KEY_PAIR_GEN => self.rsa_pair(g, public, private)?,
                M::EC_KEY_PAIR_GEN => self.ec_pair(g, public, private)?,
                m @ (M::EC_EDWARDS_KEY_PAIR_GEN | M::EC_MONTGOMERY_KEY_PAIR_GEN) => {
                    self.curve25519_pair(g, m, public, private)?
                }
                _ => return Err(Error::MechanismInvalid),
            };
            // A pair made in a device is deleted there again if it cannot be stored here.
            let made_there = DeviceKey::of(&pair.private)?;
            let stored = attrs::check_pair_separation(
                &pair.public,
                (&private_template, &mut pair.private),
                self.config.key_separation,
            )
            .and_then(|()| self.pairwise_check(&pair, device.as_ref()))
            .and_then(|()| {
                share_id(&mut pair);
                self.store_new(c, vec![pair.public, pair.private])
            });
            if stored.is_err()
                && let (Some(a), Some(k)) = (&device, &made_there)
            {
                forget_device_key(a.as_ref(), k);
            }
            let handles = stored?;
            Ok((handles[0], handles[1]))
        })
    }

    /// The pair's material: made by the provider, or in the slot's device.
    fn make_pair(&self, g: Gen<'_>, spec: PairSpec<'_>) -> Result<Made> {
        match g.device {
            None => Ok(Made::Software(self.provider().generate_pair(spec)?)),
            Some(a) => {
                hardware::check_generate(a.as_ref(), spec)?;
                let device = a.device().ok_or_else(|| {
                    Error::DeviceRemoved(format!("{} does not answer", a.describe()))
                })?;
                let made = a.generate_pair(spec, &[])?;
                let key = DeviceKey {
                    adapter: a.kind().into(),
                    device,
                    name: made.name,
                };
                Ok(Made::Device(key, made.public))
            }
        }
    }

    fn rsa_pair(&self, g: Gen<'_>, public: AttributeSet, private: AttributeSet) -> Result<Pair> {
        let ctx = g.ctx;
        let m = M::RSA_PKCS_KEY_PAIR_GEN;
        let pt = implied(public, ObjectClass::PUBLIC_KEY, KeyType::RSA)?;
        let exponent = pt.bytes(A::PUBLIC_EXPONENT).map(<[u8]>::to_vec);
        let mut pubk =
            attrs::build_new(&without(&pt, A::PUBLIC_EXPONENT), Origin::Generated(m), ctx)?;
        let mut privk = attrs::build_new(
            &implied(private, ObjectClass::PRIVATE_KEY, KeyType::RSA)?,
            Origin::Generated(m),
            ctx,
        )?;
        let bits = pubk
            .ulong(A::MODULUS_BITS)
            .ok_or_else(|| Error::TemplateIncomplete("CKA_MODULUS_BITS".into()))?;
        if !matches!(bits, 2048 | 3072 | 4096) {
            return Err(Error::KeySizeRange);
        }
        let spec = PairSpec::Rsa {
            bits: bits as u32,
            exponent: exponent.as_deref(),
        };
        let (modulus, exponent) = match self.make_pair(g, spec)? {
            Made::Software(GeneratedPair::Rsa(parts)) => {
                crate::lifecycle::material::set_rsa_private(&mut privk, &parts);
                (parts.modulus.clone(), parts.public_exponent.clone())
            }
            Made::Device(key, DevicePublic::Rsa { modulus, exponent }) => {
                privk.set(A::FERRO_DEVICE_KEY, AttrValue::Bytes(key.encode()));
                (modulus, exponent)
            }
            _ => return Err(another_kind()),
        };
        for (a, v) in [(A::MODULUS, &modulus), (A::PUBLIC_EXPONENT, &exponent)] {
            pubk.set(a, AttrValue::Bytes(v.clone()));
            privk.set(a, AttrValue::Bytes(v.clone()));
        }
        Ok(Pair {
            public: pubk,
            private: privk,
        })
    }

    fn ec_pair(&self, g: Gen<'_>, public: AttributeSet, private: AttributeSet) -> Result<Pair> {
        let ctx = g.ctx;
        let m = M::EC_KEY_PAIR_GEN;
        let pt = implied(public, ObjectClass::PUBLIC_KEY, KeyType::EC)?;
        let mut pubk = attrs::build_new(&pt, Origin::Generated(m), ctx)?;
        let params = pubk
            .bytes(A::EC_PARAMS)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let curve = Curve::from_ec_params(&params).ok_or_else(|| {
            Error::AttributeValueInvalid(
                "CKA_EC_PARAMS: only P-256, P-384 and P-521 are supported".into(),
            )
        })?;
        let privt = same_params(private, KeyType::EC, &params)?;
        let mut privk = attrs::build_new(&privt, Origin::Generated(m), ctx)?;
        let point = match self.make_pair(g, PairSpec::Ec(curve))? {
            Made::Software(GeneratedPair::Ec(parts)) => {
                privk.set(
                    A::VALUE,
                    AttrValue::Bytes(parts.private_value.expose().to_vec()),
                );
                parts.public_point.clone()
            }
            Made::Device(key, DevicePublic::Ec { point }) => {
                privk.set(A::FERRO_DEVICE_KEY, AttrValue::Bytes(key.encode()));
                point
            }
            _ => return Err(another_kind()),
        };
        pubk.set(A::EC_POINT, AttrValue::Bytes(crypto::ec_point_der(&point)));
        Ok(Pair {
            public: pubk,
            private: privk,
        })
    }

    /// Curve25519 either way: Ed25519 signs, X25519 agrees on secrets.
    fn curve25519_pair(
        &self,
        g: Gen<'_>,
        m: M,
        public: AttributeSet,
        private: AttributeSet,
    ) -> Result<Pair> {
        let ctx = g.ctx;
        let edwards = m == M::EC_EDWARDS_KEY_PAIR_GEN;
        type Curve25519 = (KeyType, fn(&[u8]) -> bool, &'static str, PairSpec<'static>);
        let (kt, fits, only, spec): Curve25519 = if edwards {
            (
                KeyType::EC_EDWARDS,
                crypto::is_ed25519_params,
                "CKA_EC_PARAMS: only Ed25519 is supported",
                PairSpec::Ed25519,
            )
        } else {
            (
                KeyType::EC_MONTGOMERY,
                crypto::is_x25519_params,
                "CKA_EC_PARAMS: only X25519 is supported",
                PairSpec::X25519,
            )
        };
        let pt = implied(public, ObjectClass::PUBLIC_KEY, kt)?;
        let mut pubk = attrs::build_new(&pt, Origin::Generated(m), ctx)?;
        let params = pubk
            .bytes(A::EC_PARAMS)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        if !fits(&params) {
            return Err(Error::AttributeValueInvalid(only.into()));
        }
        let privt = same_params(private, kt, &params)?;
        let mut privk = attrs::build_new(&privt, Origin::Generated(m), ctx)?;
        let public_key = match self.make_pair(g, spec)? {
            Made::Software(GeneratedPair::Curve25519 {
                private: seed,
                public,
            }) => {
                privk.set(A::VALUE, AttrValue::Bytes(seed.expose().to_vec()));
                public
            }
            Made::Device(key, DevicePublic::Ed25519 { public }) if edwards => {
                privk.set(A::FERRO_DEVICE_KEY, AttrValue::Bytes(key.encode()));
                public
            }
            _ => return Err(another_kind()),
        };
        pubk.set(
            A::EC_POINT,
            AttrValue::Bytes(crypto::ec_point_der(&public_key)),
        );
        Ok(Pair {
            public: pubk,
            private: privk,
        })
    }

    /// Pair-wise consistency before the pair is stored: it signs and verifies (in the
    /// device, for a device's pair), or (an X25519 pair) the private half yields the
    /// public one.
    fn pairwise_check(&self, pair: &Pair, device: Option<&Arc<dyn Adapter>>) -> Result<()> {
        let Some(key) = DeviceKey::of(&pair.private)? else {
            return crate::lifecycle::material::pairwise(
                self.provider(),
                &pair.private,
                &pair.public,
            );
        };
        let sk = hardware::signer(device, &key, &pair.private)?;
        let vk = self.provider().verifier(&pair.public)?;
        crypto::pairwise_check(&sk, &vk)
            .map_err(|e| Error::General(format!("pair-wise consistency check failed: {e}")))
    }
}

/// What a generation works with: the template context and the slot's device, if any.
#[derive(Clone, Copy)]
struct Gen<'a> {
    ctx: Ctx,
    device: Option<&'a Arc<dyn Adapter>>,
}

/// A pair's material: the provider's, or a device's reference and public half.
enum Made {
    Software(GeneratedPair),
    Device(DeviceKey, DevicePublic),
}

fn another_kind() -> Error {
    Error::General("the key generator made another kind of pair".into())
}

/// A device's private key never leaves it: sensitive, not extractable, not copyable (a
/// copy would share the device key, and destroying one would take it from both). A
/// template asking otherwise is refused; so is a session key, which the adapters do not
/// make yet.
fn device_template(mut t: AttributeSet, a: &dyn Adapter) -> Result<AttributeSet> {
    for (attr, must) in [
        (A::SENSITIVE, true),
        (A::EXTRACTABLE, false),
        (A::COPYABLE, false),
    ] {
        match t.bool(attr) {
            Some(v) if v != must => {
                return Err(Error::TemplateInconsistent(format!(
                    "CKA_{} = {v}: this slot's keys live in {} and never leave it",
                    attr.name().unwrap_or("?"),
                    a.describe()
                )));
            }
            _ => t.set(attr, AttrValue::Bool(must)),
        }
    }
    if t.bool(A::TOKEN) != Some(true) {
        return Err(Error::TemplateInconsistent(format!(
            "CKA_TOKEN: keys made in {} are token objects (session keys in a device are \
             not supported yet); set CKA_TOKEN = true",
            a.describe()
        )));
    }
    Ok(t)
}

/// Deletes a device key whose object could not be stored, so it does not linger there.
fn forget_device_key(a: &dyn Adapter, k: &DeviceKey) {
    if let Err(e) = a.destroy(&k.name) {
        tracing::error!(
            "a device key left in {} after its generation failed: {e}",
            a.describe()
        );
    }
}

/// The private template with the public half's `CKA_EC_PARAMS` (which it may repeat but
/// not contradict).
fn same_params(private: AttributeSet, kt: KeyType, params: &[u8]) -> Result<AttributeSet> {
    let mut privt = implied(private, ObjectClass::PRIVATE_KEY, kt)?;
    if privt.bytes(A::EC_PARAMS).is_some_and(|p| p != params) {
        return Err(Error::TemplateInconsistent(
            "CKA_EC_PARAMS differ between the two templates".into(),
        ));
    }
    privt.set(A::EC_PARAMS, AttrValue::Bytes(params.to_vec()));
    Ok(privt)
}

/// Both halves share `CKA_ID` if only one was given one.
fn share_id(pair: &mut Pair) {
    let (pubk, privk) = (&mut pair.public, &mut pair.private);
    if pubk.id().is_some_and(<[u8]>::is_empty) && privk.id().is_some_and(|i| !i.is_empty()) {
        pubk.set(
            A::ID,
            AttrValue::Bytes(privk.id().unwrap_or_default().to_vec()),
        );
    } else if privk.id().is_some_and(<[u8]>::is_empty) && pubk.id().is_some_and(|i| !i.is_empty()) {
        privk.set(
            A::ID,
            AttrValue::Bytes(pubk.id().unwrap_or_default().to_vec()),
        );
    }
}
