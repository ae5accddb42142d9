//! Sign and verify: ECDSA, EdDSA, RSA PKCS#1 v1.5 and PSS with prepared keys; HMAC and
//! AES-CMAC with secret keys. Single-part and multi-part.

use super::{Action, OpKind};
use crate::crypto::{self, Digester, HashAlg, SignMechanism};
use crate::error::{Error, Result};
use crate::mechanism::Mechanism;
use crate::objects::CachedKey;
use crate::objects::usage::KeyUse;
use crate::policy::engine::{UseGuard, input_hash};
use crate::runtime::{Call, Hsm, lock};
use hsm_types::{AttributeType as A, KeyType, MechanismType as M, ObjectClass};
use std::sync::Arc;

/// Raw (unhashed) signature input is buffered; cap it.
const MAX_RAW_INPUT: usize = 64 * 1024;

/// What a sign or verify operation computes with.
enum SignAlgo {
    Asym {
        mech: SignMechanism,
        key: Arc<CachedKey>,
        /// Hashed mechanisms hash parts as they come; raw ones buffer them.
        hasher: Option<Digester>,
        buffer: Vec<u8>,
    },
    Mac(crypto::Mac),
}

impl SignAlgo {
    /// Feeds a part; raw input beyond the cap is refused.
    fn update(&mut self, data: &[u8]) -> std::result::Result<(), ()> {
        match self {
            SignAlgo::Asym {
                hasher: Some(d), ..
            } => d.update(data),
            SignAlgo::Asym { buffer, .. } => {
                if buffer.len() + data.len() > MAX_RAW_INPUT {
                    return Err(());
                }
                buffer.extend_from_slice(data)
            }
            SignAlgo::Mac(m) => m.update(data),
        }
        Ok(())
    }
}

pub(crate) struct SignOp {
    algo: SignAlgo,
    /// A `CKA_ALWAYS_AUTHENTICATE` key signs only after `C_Login(CKU_CONTEXT_SPECIFIC)`.
    pub needs_context_login: bool,
    multi_part: bool,
    /// A key whose every use needs approvals: the input's hash, which they bind to.
    approval: Option<(UseGuard, Digester)>,
}

/// A signing mechanism: an asymmetric one, or a MAC.
enum SignKind {
    Asym(SignMechanism),
    Hmac(HashAlg),
    Cmac,
}

impl Hsm {
    pub fn sign_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.sign_verify_init(h, mech, key, OpKind::Sign)
    }

    pub fn verify_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.sign_verify_init(h, mech, key, OpKind::Verify)
    }

    fn sign_verify_init(&self, h: u64, mech: &Mechanism, key: u64, kind: OpKind) -> Result<()> {
        self.run(h, Action::Start(kind), |c| {
            if lock(&c.session.ops).is_active(kind) {
                return Err(Error::OperationActive);
            }
            let sign = kind == OpKind::Sign;
            let sk = sign_kind(mech)?;
            let k = self.prepared_key(&c.slot, c.token, key)?;
            let approval = self
                .check_signing_key(c, key, &k, &sk, mech.kind(), sign)?
                .map(|g| (g.with_params(mech), Digester::new(HashAlg::Sha256)));
            let algo = match sk {
                SignKind::Asym(sm) => SignAlgo::Asym {
                    hasher: sm.multi_part_hash().map(Digester::new),
                    mech: sm,
                    key: k.clone(),
                    buffer: Vec::new(),
                },
                SignKind::Hmac(alg) => {
                    let value = k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                    SignAlgo::Mac(crypto::Mac::new(alg, value)?)
                }
                SignKind::Cmac => {
                    let value = k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)?;
                    SignAlgo::Mac(crypto::Mac::aes_cmac(value)?)
                }
            };
            let op = SignOp {
                algo,
                needs_context_login: sign && k.attrs.bool(A::ALWAYS_AUTHENTICATE) == Some(true),
                multi_part: false,
                approval,
            };
            let mut ops = lock(&c.session.ops);
            c.slot.still_logged_in_for(&k.attrs)?;
            ops.put(kind, op);
            Ok(())
        })
    }

    /// The key fits the mechanism: a private (sign) or public (verify) key of the curve or
    /// RSA; for HMAC a generic secret or the hash's own HMAC key type (PKCS#11 3.0
    /// §6.20); for CMAC an AES key.
    fn check_signing_key(
        &self,
        c: &Call,
        handle: u64,
        k: &CachedKey,
        sk: &SignKind,
        mech: M,
        sign: bool,
    ) -> Result<Option<UseGuard>> {
        let usage = if sign { A::SIGN } else { A::VERIFY };
        let hmac_types;
        let (class, types): (ObjectClass, &[KeyType]) = match sk {
            SignKind::Asym(sm) => {
                let class = if sign {
                    ObjectClass::PRIVATE_KEY
                } else {
                    ObjectClass::PUBLIC_KEY
                };
                let types: &[KeyType] = match sm {
                    SignMechanism::Ecdsa | SignMechanism::EcdsaHash(_) => &[KeyType::EC],
                    SignMechanism::Eddsa => &[KeyType::EC_EDWARDS],
                    _ => &[KeyType::RSA],
                };
                (class, types)
            }
            SignKind::Hmac(alg) => {
                hmac_types = [KeyType::GENERIC_SECRET, hmac_key_type(*alg)];
                (ObjectClass::SECRET_KEY, &hmac_types)
            }
            SignKind::Cmac => (ObjectClass::SECRET_KEY, &[KeyType::AES]),
        };
        self.check_use(c, handle, &k.attrs, KeyUse::new(class, types, usage, mech))
    }

    /// Length of the signature or MAC the active sign operation will produce.
    pub fn sign_len(&self, h: u64) -> Result<usize> {
        self.run(h, Action::Continue(OpKind::Sign), |c| {
            let ops = lock(&c.session.ops);
            match &ops.get::<SignOp>(OpKind::Sign)?.algo {
                SignAlgo::Asym { key, .. } => Ok(key.signer()?.signature_len()),
                SignAlgo::Mac(m) => Ok(m.len()),
            }
        })
    }

    /// Takes the active sign operation, unless it still waits for a context-specific login.
    fn take_sign(c: &Call) -> Result<SignOp> {
        let mut ops = lock(&c.session.ops);
        if ops.get::<SignOp>(OpKind::Sign)?.needs_context_login {
            return Err(Error::UserNotLoggedIn);
        }
        ops.take(OpKind::Sign)
    }

    /// Single-part sign; ends the operation (on success and on failure).
    pub fn sign(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(OpKind::Sign), |c| {
            let op = Self::take_sign(c)?;
            if op.multi_part {
                return Err(Error::OperationActive);
            }
            if let Some((g, _)) = &op.approval {
                self.release_use(c, g, &input_hash(data))?;
            }
            match op.algo {
                SignAlgo::Asym { mech, key, .. } => Ok(key.signer()?.sign(&mech, data)?),
                SignAlgo::Mac(mut m) => {
                    m.update(data);
                    Ok(m.finish())
                }
            }
        })
    }

    pub fn sign_update(&self, h: u64, data: &[u8]) -> Result<()> {
        self.update(h, OpKind::Sign, data)
    }

    pub fn verify_update(&self, h: u64, data: &[u8]) -> Result<()> {
        self.update(h, OpKind::Verify, data)
    }

    fn update(&self, h: u64, kind: OpKind, data: &[u8]) -> Result<()> {
        self.run(h, Action::Continue(kind), |c| {
            let mut ops = lock(&c.session.ops);
            let op = ops.get_mut::<SignOp>(kind)?;
            op.multi_part = true;
            if let Some((_, d)) = &mut op.approval {
                d.update(data);
            }
            if op.algo.update(data).is_err() {
                ops.end(kind);
                return Err(Error::DataLenRange);
            }
            Ok(())
        })
    }

    pub fn sign_final(&self, h: u64) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(OpKind::Sign), |c| {
            let op = Self::take_sign(c)?;
            if let Some((g, d)) = op.approval {
                self.release_use(c, &g, &d.finish())?;
            }
            match op.algo {
                SignAlgo::Asym {
                    mech,
                    key,
                    hasher,
                    buffer,
                } => {
                    let signer = key.signer()?;
                    Ok(match hasher {
                        Some(d) => signer.sign_prehashed(&mech, &d.finish())?,
                        None => signer.sign(&mech, &buffer)?,
                    })
                }
                SignAlgo::Mac(m) => Ok(m.finish()),
            }
        })
    }

    /// Whether a sign operation is active.
    pub fn sign_is_active(&self, h: u64) -> Result<bool> {
        self.has_operation(h, OpKind::Sign)
    }

    pub fn verify(&self, h: u64, data: &[u8], signature: &[u8]) -> Result<()> {
        self.run(h, Action::Continue(OpKind::Verify), |c| {
            let op = lock(&c.session.ops).take::<SignOp>(OpKind::Verify)?;
            if op.multi_part {
                return Err(Error::OperationActive);
            }
            match op.algo {
                SignAlgo::Asym { mech, key, .. } => {
                    Ok(key.verifier()?.verify(&mech, data, signature)?)
                }
                SignAlgo::Mac(mut m) => {
                    m.update(data);
                    Ok(m.verify(signature)?)
                }
            }
        })
    }

    pub fn verify_final(&self, h: u64, signature: &[u8]) -> Result<()> {
        self.run(h, Action::Continue(OpKind::Verify), |c| {
            let op = lock(&c.session.ops).take::<SignOp>(OpKind::Verify)?;
            match op.algo {
                SignAlgo::Asym {
                    mech,
                    key,
                    hasher,
                    buffer,
                } => {
                    let v = key.verifier()?;
                    match hasher {
                        Some(d) => v.verify_prehashed(&mech, &d.finish(), signature)?,
                        None => v.verify(&mech, &buffer, signature)?,
                    }
                    Ok(())
                }
                SignAlgo::Mac(m) => Ok(m.verify(signature)?),
            }
        })
    }
}

/// The `CKK_SHA*_HMAC` key type of a hash.
fn hmac_key_type(alg: HashAlg) -> KeyType {
    match alg {
        HashAlg::Sha1 => KeyType::SHA_1_HMAC,
        HashAlg::Sha224 => KeyType::SHA224_HMAC,
        HashAlg::Sha256 => KeyType::SHA256_HMAC,
        HashAlg::Sha384 => KeyType::SHA384_HMAC,
        HashAlg::Sha512 => KeyType::SHA512_HMAC,
    }
}

/// The HMAC hash of a mechanism, if it is an HMAC (the SP 800-108 PRFs use it too).
pub(crate) fn hmac_hash(m: M) -> Option<HashAlg> {
    Some(match m {
        M::SHA_1_HMAC => HashAlg::Sha1,
        M::SHA224_HMAC => HashAlg::Sha224,
        M::SHA256_HMAC => HashAlg::Sha256,
        M::SHA384_HMAC => HashAlg::Sha384,
        M::SHA512_HMAC => HashAlg::Sha512,
        _ => return None,
    })
}

fn sign_kind(m: &Mechanism) -> Result<SignKind> {
    if let Mechanism::Plain(p) = m {
        if let Some(hash) = hmac_hash(*p) {
            return Ok(SignKind::Hmac(hash));
        }
        if *p == M::AES_CMAC {
            return Ok(SignKind::Cmac);
        }
    }
    Ok(SignKind::Asym(sign_mechanism(m)?))
}

fn sign_mechanism(m: &Mechanism) -> Result<SignMechanism> {
    Ok(match m {
        Mechanism::Plain(M::ECDSA) => SignMechanism::Ecdsa,
        Mechanism::Plain(M::EDDSA) => SignMechanism::Eddsa,
        Mechanism::Plain(M::ECDSA_SHA256) => SignMechanism::EcdsaHash(HashAlg::Sha256),
        Mechanism::Plain(M::ECDSA_SHA384) => SignMechanism::EcdsaHash(HashAlg::Sha384),
        Mechanism::Plain(M::ECDSA_SHA512) => SignMechanism::EcdsaHash(HashAlg::Sha512),
        Mechanism::Plain(M::RSA_PKCS) => SignMechanism::RsaPkcs,
        Mechanism::Plain(M::SHA256_RSA_PKCS) => SignMechanism::RsaPkcsHash(HashAlg::Sha256),
        Mechanism::Plain(M::SHA384_RSA_PKCS) => SignMechanism::RsaPkcsHash(HashAlg::Sha384),
        Mechanism::Plain(M::SHA512_RSA_PKCS) => SignMechanism::RsaPkcsHash(HashAlg::Sha512),
        Mechanism::Pss {
            mechanism,
            hash,
            mgf,
            salt_len,
        } => {
            let h = HashAlg::from_mechanism(*hash)
                .ok_or_else(|| Error::MechanismParamInvalid(format!("hash {hash:?}")))?;
            let (prehashed, want) = match *mechanism {
                M::RSA_PKCS_PSS => (true, None),
                M::SHA256_RSA_PKCS_PSS => (false, Some(HashAlg::Sha256)),
                M::SHA384_RSA_PKCS_PSS => (false, Some(HashAlg::Sha384)),
                M::SHA512_RSA_PKCS_PSS => (false, Some(HashAlg::Sha512)),
                _ => return Err(Error::MechanismInvalid),
            };
            if want.is_some_and(|w| w != h) {
                return Err(Error::MechanismParamInvalid(
                    "the PSS hash must match the mechanism".into(),
                ));
            }
            SignMechanism::RsaPss {
                hash: h,
                mgf_hash: mgf.hash()?,
                salt_len: *salt_len as usize,
                prehashed,
            }
        }
        Mechanism::Plain(
            M::RSA_PKCS_PSS
            | M::SHA256_RSA_PKCS_PSS
            | M::SHA384_RSA_PKCS_PSS
            | M::SHA512_RSA_PKCS_PSS,
        ) => {
            return Err(Error::MechanismParamInvalid(
                "CK_RSA_PKCS_PSS_PARAMS required".into(),
            ));
        }
        _ => return Err(Error::MechanismInvalid),
    })
}
