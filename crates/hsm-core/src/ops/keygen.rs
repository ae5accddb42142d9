//! Key generation: secret keys (AES, generic and HMAC secrets) and key pairs (RSA,
//! P-256/384/521, Ed25519, X25519), each pair checked before it is stored.

use super::Action;
use crate::crypto::{self, Curve};
use crate::error::{Error, Result};
use crate::mechanism::Mechanism;
use crate::objects::attrs::{self, Ctx, Origin};
use crate::objects::find::without;
use crate::objects::material::implied;
use crate::provider::{GeneratedPair, PairSpec};
use crate::runtime::Hsm;
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType as M, ObjectClass,
};

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
            let private_template = private.clone();
            let mut pair = match mech.kind() {
                M::RSA_PKCS_KEY_PAIR_GEN => self.rsa_pair(ctx, public, private)?,
                M::EC_KEY_PAIR_GEN => self.ec_pair(ctx, public, private)?,
                m @ (M::EC_EDWARDS_KEY_PAIR_GEN | M::EC_MONTGOMERY_KEY_PAIR_GEN) => {
                    self.curve25519_pair(ctx, m, public, private)?
                }
                _ => return Err(Error::MechanismInvalid),
            };
            attrs::check_pair_separation(
                &pair.public,
                (&private_template, &mut pair.private),
                self.config.key_separation,
            )?;
            self.pairwise_check(&pair)?;
            share_id(&mut pair);
            let handles = self.store_new(c, vec![pair.public, pair.private])?;
            Ok((handles[0], handles[1]))
        })
    }

    fn rsa_pair(&self, ctx: Ctx, public: AttributeSet, private: AttributeSet) -> Result<Pair> {
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
        let GeneratedPair::Rsa(parts) = self.provider().generate_pair(spec)? else {
            return Err(Error::General(
                "the provider made another kind of pair".into(),
            ));
        };
        for (a, v) in [
            (A::MODULUS, &parts.modulus),
            (A::PUBLIC_EXPONENT, &parts.public_exponent),
        ] {
            pubk.set(a, AttrValue::Bytes(v.clone()));
            privk.set(a, AttrValue::Bytes(v.clone()));
        }
        crate::lifecycle::material::set_rsa_private(&mut privk, &parts);
        Ok(Pair {
            public: pubk,
            private: privk,
        })
    }

    fn ec_pair(&self, ctx: Ctx, public: AttributeSet, private: AttributeSet) -> Result<Pair> {
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
        let GeneratedPair::Ec(parts) = self.provider().generate_pair(PairSpec::Ec(curve))? else {
            return Err(Error::General(
                "the provider made another kind of pair".into(),
            ));
        };
        pubk.set(
            A::EC_POINT,
            AttrValue::Bytes(crypto::ec_point_der(&parts.public_point)),
        );
        privk.set(
            A::VALUE,
            AttrValue::Bytes(parts.private_value.expose().to_vec()),
        );
        Ok(Pair {
            public: pubk,
            private: privk,
        })
    }

    /// Curve25519 either way: Ed25519 signs, X25519 agrees on secrets.
    fn curve25519_pair(
        &self,
        ctx: Ctx,
        m: M,
        public: AttributeSet,
        private: AttributeSet,
    ) -> Result<Pair> {
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
        let GeneratedPair::Curve25519 {
            private: seed,
            public: public_key,
        } = self.provider().generate_pair(spec)?
        else {
            return Err(Error::General(
                "the provider made another kind of pair".into(),
            ));
        };
        pubk.set(
            A::EC_POINT,
            AttrValue::Bytes(crypto::ec_point_der(&public_key)),
        );
        privk.set(A::VALUE, AttrValue::Bytes(seed.expose().to_vec()));
        Ok(Pair {
            public: pubk,
            private: privk,
        })
    }

    /// Pair-wise consistency before the pair is stored: it signs and verifies, or (an
    /// X25519 pair) the private half yields the public one.
    fn pairwise_check(&self, pair: &Pair) -> Result<()> {
        crate::lifecycle::material::pairwise(self.provider(), &pair.private, &pair.public)
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
