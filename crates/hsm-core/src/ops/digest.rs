//! Digests (`C_Digest*`, `C_DigestKey`) and random numbers.

use super::{Action, OpKind};
use crate::crypto::{Digester, HashAlg};
use crate::error::{Error, Result};
use crate::mechanism::Mechanism;
use crate::objects::usage::key_handle;
use crate::runtime::{Hsm, lock};
use hsm_types::{AttributeType as A, ObjectClass};

/// A digest in progress.
pub(crate) struct DigestOp {
    alg: HashAlg,
    digester: Digester,
}

impl Hsm {
    pub fn digest_init(&self, h: u64, mech: &Mechanism) -> Result<()> {
        self.run(h, Action::Start(OpKind::Digest), |c| {
            let mut ops = lock(&c.session.ops);
            if ops.is_active(OpKind::Digest) {
                return Err(Error::OperationActive);
            }
            let alg = match mech {
                Mechanism::Plain(m) => {
                    HashAlg::from_mechanism(*m).ok_or(Error::MechanismInvalid)?
                }
                _ => return Err(Error::MechanismInvalid),
            };
            let digester = Digester::new(alg);
            ops.put(OpKind::Digest, DigestOp { alg, digester });
            Ok(())
        })
    }

    pub fn digest_len(&self, h: u64) -> Result<usize> {
        self.run(h, Action::Continue(OpKind::Digest), |c| {
            Ok(lock(&c.session.ops)
                .get::<DigestOp>(OpKind::Digest)?
                .alg
                .output_len())
        })
    }

    pub fn digest(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(OpKind::Digest), |c| {
            let mut op = lock(&c.session.ops).take::<DigestOp>(OpKind::Digest)?;
            op.digester.update(data);
            Ok(op.digester.finish())
        })
    }

    pub fn digest_update(&self, h: u64, data: &[u8]) -> Result<()> {
        self.run(h, Action::Continue(OpKind::Digest), |c| {
            lock(&c.session.ops)
                .get_mut::<DigestOp>(OpKind::Digest)?
                .digester
                .update(data);
            Ok(())
        })
    }

    /// `C_DigestKey`: feeds a secret key's value into the active digest. Only secret keys
    /// that are not sensitive and are extractable (`CKR_KEY_INDIGESTIBLE` otherwise): a
    /// digest is not a safe one-way view of a key — HMAC keys longer than the hash block
    /// *are* their digest to HMAC, so SHA-256 of a long sensitive HMAC key would hand out
    /// the key HMAC actually uses.
    pub fn digest_key(&self, h: u64, key: u64) -> Result<()> {
        self.run(h, Action::Start(OpKind::Digest), |c| {
            if !lock(&c.session.ops).is_active(OpKind::Digest) {
                return Err(Error::OperationNotInitialized);
            }
            let k = self.load(&c.slot, c.token, key).map_err(key_handle)?;
            if k.attrs.class() != Some(ObjectClass::SECRET_KEY) {
                return Err(Error::KeyIndigestible(
                    "only secret keys are digested".into(),
                ));
            }
            if k.attrs.bool(A::SENSITIVE) != Some(false)
                || k.attrs.bool(A::EXTRACTABLE) != Some(true)
            {
                return Err(Error::KeyIndigestible(
                    "only non-sensitive, extractable keys are digested".into(),
                ));
            }
            self.authorize(c, Some(&k.attrs))?;
            let value = k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
            lock(&c.session.ops)
                .get_mut::<DigestOp>(OpKind::Digest)?
                .digester
                .update(value);
            Ok(())
        })
    }

    pub fn digest_final(&self, h: u64) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(OpKind::Digest), |c| {
            let op = lock(&c.session.ops).take::<DigestOp>(OpKind::Digest)?;
            Ok(op.digester.finish())
        })
    }

    pub fn generate_random(&self, h: u64, out: &mut [u8]) -> Result<()> {
        self.run(h, Action::Random, |_| self.provider().random(out))
    }

    /// `len` random bytes, as a buffer of their own (for [`crate::Token`]).
    pub fn random(&self, h: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        self.generate_random(h, &mut out)?;
        Ok(out)
    }

    pub fn seed_random(&self, h: u64) -> Result<()> {
        // The generator is the operating system's, through aws-lc; it takes no seed.
        self.run(h, Action::SeedRandom, |_| {
            Err(Error::RandomSeedNotSupported)
        })
    }
}
