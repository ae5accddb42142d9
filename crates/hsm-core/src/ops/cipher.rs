//! Encrypt and decrypt: AES-GCM, CBC, CBC-PAD, CTR and ECB with secret keys; RSA-OAEP
//! and PKCS#1 v1.5 with key pairs. Single-part and multi-part.

use super::{Action, OpKind};
use crate::crypto::{self, HashAlg};
use crate::error::{Error, Result};
use crate::mechanism::{Mechanism, Mgf};
use crate::objects::CachedKey;
use crate::objects::usage::KeyUse;
use crate::policy::engine::{UseGuard, input_hash};
use crate::provider::rsa_parts;
use crate::runtime::{Call, Hsm, lock};
use hsm_types::{AttributeType as A, KeyType, MechanismType as M, ObjectClass};
use std::sync::Arc;
use zeroize::Zeroizing;

/// AEAD and RSA input is buffered until the end; cap it.
const MAX_AEAD_INPUT: usize = 64 * 1024 * 1024;

/// An encrypt or decrypt operation. GCM and RSA buffer their input and answer at the end
/// (GCM must see the tag first); ECB and CBC answer whole blocks as they come.
pub(crate) struct CipherOp {
    /// The key as prepared for use (its value, its GCM schedule, its RSA form), shared
    /// with the cache: nothing of it is copied per operation.
    key: Arc<CachedKey>,
    /// The IV; for CBC streamed part by part, the last ciphertext block so far.
    iv: Vec<u8>,
    cipher: CipherKind,
    /// Input not processed yet: all of it for GCM and RSA, a partial block for ECB/CBC.
    buffer: Zeroizing<Vec<u8>>,
    /// A `CKA_ALWAYS_AUTHENTICATE` private key decrypts only after
    /// `C_Login(CKU_CONTEXT_SPECIFIC)`.
    pub needs_context_login: bool,
    /// A key whose every use needs approvals, bound to the whole input: released at the
    /// single-part call or the final (block modes, which answer part by part, refuse
    /// parts for such a key).
    approval: Option<UseGuard>,
}

enum CipherKind {
    Gcm {
        aad: Vec<u8>,
        tag_bits: u32,
    },
    Block(crypto::BlockMode),
    Oaep {
        hash: HashAlg,
        mgf: HashAlg,
        label: Vec<u8>,
        modulus_len: usize,
    },
    RsaPkcs1 {
        modulus_len: usize,
    },
}

/// The direction of a cipher operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Encrypt,
    Decrypt,
}

impl Dir {
    fn of(encrypt: bool) -> Dir {
        if encrypt { Dir::Encrypt } else { Dir::Decrypt }
    }

    fn kind(self) -> OpKind {
        match self {
            Dir::Encrypt => OpKind::Encrypt,
            Dir::Decrypt => OpKind::Decrypt,
        }
    }
}

/// What a cipher mechanism asks for.
enum Setup {
    Aes {
        iv: Vec<u8>,
        cipher: CipherKind,
    },
    /// RSA; OAEP with its hashes and label, or PKCS#1 v1.5.
    Rsa(Option<(HashAlg, HashAlg, Vec<u8>)>),
}

impl CipherOp {
    /// How many bytes a part leaves processed at once, with `extra` more input: the whole
    /// blocks of ECB and CBC, less the last block when CBC-PAD decrypts (it may be the
    /// padding); nothing for the modes that answer at the end.
    fn streamed_len(&self, d: Dir, extra: usize) -> usize {
        let CipherKind::Block(mode) = self.cipher else {
            return 0;
        };
        if mode == crypto::BlockMode::Ctr {
            return 0;
        }
        let pending = self.buffer.len() + extra;
        let whole = pending / 16 * 16;
        match d {
            Dir::Decrypt if mode == crypto::BlockMode::CbcPad && whole == pending && whole > 0 => {
                whole - 16
            }
            _ => whole,
        }
    }

    fn output_len(&self, d: Dir, extra: usize) -> usize {
        let n = self.buffer.len() + extra;
        match (&self.cipher, d) {
            (CipherKind::Gcm { tag_bits, .. }, Dir::Encrypt) => {
                n + (*tag_bits as usize).div_ceil(8)
            }
            (CipherKind::Gcm { tag_bits, .. }, Dir::Decrypt) => {
                n.saturating_sub((*tag_bits as usize).div_ceil(8))
            }
            (CipherKind::Block(mode), Dir::Encrypt) => crypto::encrypted_len(*mode, n),
            (
                CipherKind::Oaep { modulus_len, .. } | CipherKind::RsaPkcs1 { modulus_len, .. },
                _,
            ) => *modulus_len,
            // Padding is only known after decryption: the length is an upper bound.
            (CipherKind::Block(_), Dir::Decrypt) => n,
        }
    }

    /// GCM with a 12-byte IV between two buffers, with the key's prepared schedule
    /// (decryption only with a full tag); `None` for the cases the general path takes.
    fn gcm_into(&self, d: Dir, data: &[u8], out: &mut [u8]) -> Option<Result<usize>> {
        let CipherKind::Gcm { aad, tag_bits } = &self.cipher else {
            return None;
        };
        let tag_len = *tag_bits as usize / 8;
        if self.iv.len() != crypto::GCM_IV_LEN
            || (d == Dir::Decrypt && tag_len * 8 != crypto::GCM_TAG_BITS as usize)
        {
            return None;
        }
        let k = match self.key.gcm() {
            Ok(k) => k,
            Err(e) => return Some(Err(e)),
        };
        Some(
            match d {
                Dir::Encrypt => k.seal_into(&self.iv, aad, tag_len, data, out),
                Dir::Decrypt => k.open_into(&self.iv, aad, data, out),
            }
            .map_err(Into::into),
        )
    }

    /// Single-part: `data` (with nothing buffered, the usual case) goes straight into the
    /// caller's `out` where it can — GCM is sealed or opened in place there, so the
    /// plaintext is never copied into the module's memory and nothing the size of the
    /// data is allocated or wiped. Otherwise through [`CipherOp::finish`], whose output
    /// (plaintext when decrypting) is wiped once copied out.
    fn finish_into(&mut self, d: Dir, data: &[u8], out: &mut [u8]) -> Result<usize> {
        if self.buffer.is_empty()
            && let Some(r) = self.gcm_into(d, data, out)
        {
            return r;
        }
        self.buffer.extend_from_slice(data);
        let v = Zeroizing::new(self.finish(d)?);
        out.get_mut(..v.len())
            .ok_or(Error::BufferTooSmall(v.len()))?
            .copy_from_slice(&v);
        Ok(v.len())
    }

    /// The whole input at once (single-part, or the final part).
    fn finish(&self, d: Dir) -> Result<Vec<u8>> {
        let data = &self.buffer;
        if matches!(self.cipher, CipherKind::Gcm { .. }) {
            let mut out = vec![0u8; self.output_len(d, 0)];
            if let Some(r) = self.gcm_into(d, data, &mut out) {
                out.truncate(r?);
                return Ok(out);
            }
        }
        let key = &self.key.attrs;
        let aes = || aes_value(&self.key);
        Ok(match (&self.cipher, d) {
            (CipherKind::Gcm { aad, tag_bits }, Dir::Encrypt) => {
                crypto::aes_gcm_encrypt(aes()?, &self.iv, aad, *tag_bits, data)?
            }
            (CipherKind::Gcm { aad, tag_bits }, Dir::Decrypt) => {
                crypto::aes_gcm_decrypt(aes()?, &self.iv, aad, *tag_bits, data)?
            }
            (CipherKind::Block(mode), Dir::Encrypt) => {
                crypto::aes_encrypt(*mode, aes()?, &self.iv, data)?
            }
            (CipherKind::Block(mode), Dir::Decrypt) => {
                crypto::aes_decrypt(*mode, aes()?, &self.iv, data)?
            }
            (
                CipherKind::Oaep {
                    hash, mgf, label, ..
                },
                Dir::Encrypt,
            ) => {
                let n = key.bytes(A::MODULUS).unwrap_or_default();
                let e = key.bytes(A::PUBLIC_EXPONENT).unwrap_or_default();
                crypto::rsa_oaep_encrypt(n, e, *hash, *mgf, label, data)?
            }
            (
                CipherKind::Oaep {
                    hash, mgf, label, ..
                },
                Dir::Decrypt,
            ) => crypto::rsa_oaep_decrypt(&rsa_parts(key)?, *hash, *mgf, label, data)?,
            (CipherKind::RsaPkcs1 { .. }, Dir::Encrypt) => {
                let n = key.bytes(A::MODULUS).unwrap_or_default();
                let e = key.bytes(A::PUBLIC_EXPONENT).unwrap_or_default();
                crypto::rsa_pkcs1_encrypt(n, e, data)?
            }
            (CipherKind::RsaPkcs1 { .. }, Dir::Decrypt) => {
                crypto::rsa_pkcs1_decrypt(&rsa_parts(key)?, data)?
            }
        })
    }

    /// Processes what a part made ready (whole ECB/CBC blocks) and keeps the rest.
    fn stream(&mut self, d: Dir) -> Result<Vec<u8>> {
        let ready = self.streamed_len(d, 0);
        let CipherKind::Block(mode) = self.cipher else {
            return Ok(Vec::new());
        };
        if ready == 0 {
            return Ok(Vec::new());
        }
        let chunk: Zeroizing<Vec<u8>> = Zeroizing::new(self.buffer.drain(..ready).collect());
        // Whole blocks of CBC-PAD are plain CBC; the padding comes with the final part.
        let inner = if mode == crypto::BlockMode::CbcPad {
            crypto::BlockMode::Cbc
        } else {
            mode
        };
        let key = aes_value(&self.key)?;
        let out = match d {
            Dir::Encrypt => crypto::aes_encrypt(inner, key, &self.iv, &chunk)?,
            Dir::Decrypt => crypto::aes_decrypt(inner, key, &self.iv, &chunk)?,
        };
        if inner == crypto::BlockMode::Cbc {
            let last = match d {
                Dir::Encrypt => &out[out.len() - 16..],
                Dir::Decrypt => &chunk[chunk.len() - 16..],
            };
            self.iv = last.to_vec();
        }
        Ok(out)
    }
}

impl Hsm {
    pub fn encrypt_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.cipher_init(h, mech, key, Dir::Encrypt)
    }

    pub fn decrypt_init(&self, h: u64, mech: &Mechanism, key: u64) -> Result<()> {
        self.cipher_init(h, mech, key, Dir::Decrypt)
    }

    fn cipher_init(&self, h: u64, mech: &Mechanism, key: u64, d: Dir) -> Result<()> {
        self.run(h, Action::Start(d.kind()), |c| {
            if lock(&c.session.ops).is_active(d.kind()) {
                return Err(Error::OperationActive);
            }
            let (op, attrs) = match self.cipher_setup(mech, d)? {
                Setup::Aes { iv, cipher } => {
                    let (k, approval) = self.aes_key_for(c, key, d == Dir::Encrypt, mech.kind())?;
                    aes_value(&k)?;
                    let op = CipherOp {
                        key: k.clone(),
                        iv,
                        cipher,
                        buffer: Zeroizing::new(Vec::new()),
                        needs_context_login: false,
                        approval: approval.map(|g| g.with_params(mech)),
                    };
                    (op, k)
                }
                Setup::Rsa(oaep) => self.rsa_cipher(c, mech, key, d, oaep)?,
            };
            let mut ops = lock(&c.session.ops);
            c.slot.still_logged_in_for(&attrs.attrs)?;
            ops.put(d.kind(), op);
            Ok(())
        })
    }

    /// What the mechanism and its parameters ask for; refuses a mechanism that is not a
    /// cipher, or one without the parameters it needs.
    fn cipher_setup(&self, mech: &Mechanism, d: Dir) -> Result<Setup> {
        let aes = |iv: Vec<u8>, cipher| Ok(Setup::Aes { iv, cipher });
        match mech {
            Mechanism::Gcm { iv, aad, tag_bits } => {
                // Out-of-range CK_ULONGs become u32::MAX, which the check refuses.
                let tag_bits = u32::try_from(*tag_bits).unwrap_or(u32::MAX);
                crypto::check_gcm_params(iv, tag_bits)?;
                let aad = aad.clone();
                aes(iv.clone(), CipherKind::Gcm { aad, tag_bits })
            }
            Mechanism::Iv { mechanism, iv } => {
                let mode = match *mechanism {
                    M::AES_CBC => crypto::BlockMode::Cbc,
                    M::AES_CBC_PAD => crypto::BlockMode::CbcPad,
                    M::AES_CTR => crypto::BlockMode::Ctr,
                    _ => return Err(Error::MechanismInvalid),
                };
                if iv.len() != 16 {
                    return Err(Error::MechanismParamInvalid(format!(
                        "the IV must be 16 bytes, not {}",
                        iv.len()
                    )));
                }
                aes(iv.clone(), CipherKind::Block(mode))
            }
            Mechanism::Plain(M::AES_ECB) => {
                aes(Vec::new(), CipherKind::Block(crypto::BlockMode::Ecb))
            }
            Mechanism::Plain(M::RSA_PKCS) => {
                if d == Dir::Decrypt && !self.config.allow_rsa_pkcs1_v15_decrypt {
                    tracing::warn!(
                        "CKM_RSA_PKCS decryption is off (allow_rsa_pkcs1_v15_decrypt): use CKM_RSA_PKCS_OAEP"
                    );
                    return Err(Error::MechanismInvalid);
                }
                Ok(Setup::Rsa(None))
            }
            Mechanism::Oaep { hash, mgf, label } => {
                let (hash, mgf) = oaep_hashes(*hash, *mgf)?;
                Ok(Setup::Rsa(Some((hash, mgf, label.clone()))))
            }
            Mechanism::Plain(M::RSA_PKCS_OAEP) => Err(Error::MechanismParamInvalid(
                "CK_RSA_PKCS_OAEP_PARAMS required".into(),
            )),
            Mechanism::Plain(M::AES_GCM | M::AES_CBC | M::AES_CBC_PAD | M::AES_CTR) => Err(
                Error::MechanismParamInvalid("this AES mode needs its parameters (IV)".into()),
            ),
            _ => Err(Error::MechanismInvalid),
        }
    }

    /// An AES key that may encrypt (or decrypt) with `mech`, for an operation that
    /// cannot bind approvals to its input (message-based GCM): a key whose every use
    /// needs approvals is refused.
    pub(crate) fn aes_key(
        &self,
        c: &Call,
        key: u64,
        encrypt: bool,
        mech: M,
    ) -> Result<Arc<CachedKey>> {
        match self.aes_key_for(c, key, encrypt, mech)? {
            (k, None) => Ok(k),
            (_, Some(_)) => Err(Error::PolicyDenied(
                "every use of this key needs approvals, which bind to one C_Decrypt's \
                 input: message-based decryption cannot use it"
                    .into(),
            )),
        }
    }

    fn aes_key_for(
        &self,
        c: &Call,
        key: u64,
        encrypt: bool,
        mech: M,
    ) -> Result<(Arc<CachedKey>, Option<UseGuard>)> {
        let k = self.prepared_key(&c.slot, c.token, key)?;
        let usage = if encrypt { A::ENCRYPT } else { A::DECRYPT };
        let u = KeyUse::new(ObjectClass::SECRET_KEY, &[KeyType::AES], usage, mech).no_trusted();
        let approval = self.check_use(c, key, &k.attrs, u)?;
        Ok((k, approval))
    }

    /// RSA-OAEP (or PKCS#1 v1.5 when `oaep` is `None`): encryption with a public key,
    /// decryption with a private key.
    fn rsa_cipher(
        &self,
        c: &Call,
        mech: &Mechanism,
        key: u64,
        d: Dir,
        oaep: Option<(HashAlg, HashAlg, Vec<u8>)>,
    ) -> Result<(CipherOp, Arc<CachedKey>)> {
        let k = self.prepared_key(&c.slot, c.token, key)?;
        let (class, usage) = match d {
            Dir::Encrypt => (ObjectClass::PUBLIC_KEY, A::ENCRYPT),
            Dir::Decrypt => (ObjectClass::PRIVATE_KEY, A::DECRYPT),
        };
        let u = KeyUse::new(class, &[KeyType::RSA], usage, mech.kind()).no_trusted();
        let approval = self.check_use(c, key, &k.attrs, u)?;
        let m = k.attrs.bytes(A::MODULUS).unwrap_or_default();
        let modulus_len = m.len() - m.iter().take_while(|b| **b == 0).count();
        let cipher = match oaep {
            Some((hash, mgf, label)) => CipherKind::Oaep {
                hash,
                mgf,
                label,
                modulus_len,
            },
            None => CipherKind::RsaPkcs1 { modulus_len },
        };
        let op = CipherOp {
            needs_context_login: d == Dir::Decrypt
                && k.attrs.bool(A::ALWAYS_AUTHENTICATE) == Some(true),
            key: k.clone(),
            iv: Vec::new(),
            cipher,
            buffer: Zeroizing::new(Vec::new()),
            approval: approval.map(|g| g.with_params(mech)),
        };
        Ok((op, k))
    }

    /// Output length of a single-part encrypt of `len` bytes (with what is buffered).
    pub fn encrypt_len(&self, h: u64, len: usize) -> Result<usize> {
        self.output_len(h, Dir::Encrypt, len)
    }

    /// Output length (an upper bound for padded modes) of decrypting `len` more bytes.
    pub fn decrypt_len(&self, h: u64, len: usize) -> Result<usize> {
        self.output_len(h, Dir::Decrypt, len)
    }

    fn output_len(&self, h: u64, d: Dir, len: usize) -> Result<usize> {
        self.run(h, Action::Continue(d.kind()), |c| {
            Ok(lock(&c.session.ops)
                .get::<CipherOp>(d.kind())?
                .output_len(d, len))
        })
    }

    /// Single-part encrypt into the caller's buffer: the length written, or
    /// `BufferTooSmall(needed)` with the operation still active (PKCS#11's convention).
    pub fn encrypt_into(&self, h: u64, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.cipher_into(h, Dir::Encrypt, data, out)
    }

    /// Single-part decrypt into the caller's buffer, as [`Hsm::encrypt_into`].
    pub fn decrypt_into(&self, h: u64, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.cipher_into(h, Dir::Decrypt, data, out)
    }

    fn cipher_into(&self, h: u64, d: Dir, data: &[u8], out: &mut [u8]) -> Result<usize> {
        self.run(h, Action::Continue(d.kind()), |c| {
            let mut op = {
                let mut ops = lock(&c.session.ops);
                let needed = ops.get::<CipherOp>(d.kind())?.output_len(d, data.len());
                if out.len() < needed {
                    return Err(Error::BufferTooSmall(needed));
                }
                ops.take::<CipherOp>(d.kind())?
            };
            if op.needs_context_login {
                return Err(Error::UserNotLoggedIn);
            }
            if let Some(g) = &op.approval {
                let mut input = op.buffer.to_vec();
                input.extend_from_slice(data);
                self.release_use(c, g, &input_hash(&input))?;
            }
            op.finish_into(d, data, out)
        })
    }

    /// Single-part (or final) cipher in one direction; ends the operation.
    fn cipher_run(&self, h: u64, d: Dir, data: &[u8]) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(d.kind()), |c| {
            let mut op = lock(&c.session.ops).take::<CipherOp>(d.kind())?;
            if op.needs_context_login {
                return Err(Error::UserNotLoggedIn);
            }
            op.buffer.extend_from_slice(data);
            if let Some(g) = &op.approval {
                self.release_use(c, g, &input_hash(&op.buffer))?;
            }
            op.finish(d)
        })
    }

    /// Takes a part. ECB and CBC (with or without padding) return every whole block
    /// at once (CBC-PAD decryption keeps the last one back: it may be the padding); GCM,
    /// CTR and RSA buffer the input and answer at the end (GCM after the tag is known or
    /// checked). Any failure ends the operation.
    fn cipher_update(&self, h: u64, d: Dir, data: &[u8]) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(d.kind()), |c| {
            let mut ops = lock(&c.session.ops);
            let op = ops.get_mut::<CipherOp>(d.kind())?;
            let r = if op.needs_context_login {
                Err(Error::UserNotLoggedIn)
            } else if op.approval.is_some() && matches!(op.cipher, CipherKind::Block(_)) {
                Err(Error::PolicyDenied(
                    "every use of this key needs approvals bound to the whole input: \
                     decrypt it in one C_Decrypt"
                        .into(),
                ))
            } else if op.buffer.len() + data.len() > MAX_AEAD_INPUT {
                Err(match d {
                    Dir::Encrypt => Error::DataLenRange,
                    Dir::Decrypt => Error::EncryptedDataLenRange,
                })
            } else {
                op.buffer.extend_from_slice(data);
                op.stream(d)
            };
            if r.is_err() {
                ops.end(d.kind());
            }
            r
        })
    }

    /// What a `C_EncryptUpdate` / `C_DecryptUpdate` of `len` more bytes returns.
    pub fn update_len(&self, h: u64, encrypt: bool, len: usize) -> Result<usize> {
        let d = Dir::of(encrypt);
        self.run(h, Action::Continue(d.kind()), |c| {
            Ok(lock(&c.session.ops)
                .get::<CipherOp>(d.kind())?
                .streamed_len(d, len))
        })
    }

    pub fn encrypt(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.cipher_run(h, Dir::Encrypt, data)
    }

    pub fn encrypt_update(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.cipher_update(h, Dir::Encrypt, data)
    }

    pub fn encrypt_final(&self, h: u64) -> Result<Vec<u8>> {
        self.cipher_run(h, Dir::Encrypt, &[])
    }

    pub fn decrypt(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.cipher_run(h, Dir::Decrypt, data)
    }

    pub fn decrypt_update(&self, h: u64, data: &[u8]) -> Result<Vec<u8>> {
        self.cipher_update(h, Dir::Decrypt, data)
    }

    pub fn decrypt_final(&self, h: u64) -> Result<Vec<u8>> {
        self.cipher_run(h, Dir::Decrypt, &[])
    }
}

/// An AES key's value (absent without the user's login).
pub(crate) fn aes_value(k: &CachedKey) -> Result<&[u8]> {
    k.attrs.bytes(A::VALUE).ok_or(Error::UserNotLoggedIn)
}

/// The OAEP hash and MGF1 hash of `CK_RSA_PKCS_OAEP_PARAMS`.
pub(crate) fn oaep_hashes(hash: M, mgf: Mgf) -> Result<(HashAlg, HashAlg)> {
    let hash = HashAlg::from_mechanism(hash)
        .ok_or_else(|| Error::MechanismParamInvalid(format!("OAEP hash {hash:?}")))?;
    Ok((hash, mgf.hash()?))
}
