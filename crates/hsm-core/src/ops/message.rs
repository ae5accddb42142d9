//! Message-based AES-GCM (PKCS#11 3.0 `C_MessageEncryptInit` …): one key, then one
//! message after another, each with its own IV, AAD and tag.

use super::{Action, OpKind};
use crate::crypto;
use crate::error::{Error, Result};
use crate::mechanism::IvGenerator;
use crate::runtime::{Hsm, lock};
use hsm_types::MechanismType as M;
use zeroize::Zeroizing;

/// Random bits a token-generated GCM IV must hold at least (SP 800-38D §8.2.2).
const MIN_RANDOM_IV_BITS: u64 = 96;

/// A message-based encryption or decryption: the key, for one message after another.
pub(crate) struct MessageOp {
    key: Zeroizing<Vec<u8>>,
}

/// The per-message parameters of message-based AES-GCM (`CK_GCM_MESSAGE_PARAMS`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcmMessage {
    /// The IV: given (`CKG_NO_GENERATE`, and always for decryption), or filled by the
    /// token after its first `iv_fixed_bits` bits.
    pub iv: Vec<u8>,
    pub iv_fixed_bits: u64,
    pub generator: IvGenerator,
    pub tag_bits: u64,
}

fn kind(encrypt: bool) -> OpKind {
    if encrypt {
        OpKind::MessageEncrypt
    } else {
        OpKind::MessageDecrypt
    }
}

impl Hsm {
    /// `C_MessageEncryptInit` / `C_MessageDecryptInit`: AES-GCM only; the mechanism's own
    /// parameter, if any, is not used (each message brings `CK_GCM_MESSAGE_PARAMS`).
    pub fn message_crypt_init(&self, h: u64, mech: M, key: u64, encrypt: bool) -> Result<()> {
        let kind = kind(encrypt);
        self.run(h, Action::Start(kind), |c| {
            if lock(&c.session.ops).is_active(kind) {
                return Err(Error::OperationActive);
            }
            if mech != M::AES_GCM {
                return Err(Error::MechanismInvalid);
            }
            let k = self.aes_key(c, key, encrypt, mech)?;
            let key = Zeroizing::new(super::cipher::aes_value(&k)?.to_vec());
            let mut ops = lock(&c.session.ops);
            c.slot.still_logged_in_for(&k.attrs)?;
            ops.put(kind, MessageOp { key });
            Ok(())
        })
    }

    /// `C_EncryptMessage`: one message under the operation's key. Returns the ciphertext
    /// and the tag; when the token generates the IV, `p.iv` holds it afterwards. The IV
    /// is generated only here, never on a length query (the caller asks for the length
    /// without calling this).
    pub fn encrypt_message(
        &self,
        h: u64,
        p: &mut GcmMessage,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.run(h, Action::Continue(OpKind::MessageEncrypt), |c| {
            let ops = lock(&c.session.ops);
            let op = ops.get::<MessageOp>(OpKind::MessageEncrypt)?;
            let tag_bits = u32::try_from(p.tag_bits).unwrap_or(u32::MAX);
            crypto::check_gcm_params(&p.iv, tag_bits)?;
            self.message_iv(p)?;
            let mut sealed = crypto::aes_gcm_encrypt(&op.key, &p.iv, aad, tag_bits, plaintext)?;
            let tag = sealed.split_off(plaintext.len());
            Ok((sealed, tag))
        })
    }

    /// [`Hsm::encrypt_message`] with the IV it used given back beside the ciphertext and
    /// tag (for [`crate::Token`]).
    pub fn seal_message(
        &self,
        h: u64,
        p: &GcmMessage,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<crate::api::SealedMessage> {
        let mut p = p.clone();
        let (ciphertext, tag) = self.encrypt_message(h, &mut p, aad, plaintext)?;
        Ok(crate::api::SealedMessage {
            iv: p.iv.into(),
            ciphertext: ciphertext.into(),
            tag: tag.into(),
        })
    }

    /// Fills the IV when the caller asked the token to generate it: random after the fixed
    /// prefix, with at least 96 random bits.
    fn message_iv(&self, p: &mut GcmMessage) -> Result<()> {
        match p.generator {
            IvGenerator::NO_GENERATE => Ok(()),
            IvGenerator::GENERATE | IvGenerator::GENERATE_RANDOM => {
                let total = p.iv.len() as u64 * 8;
                if p.iv_fixed_bits > total || total - p.iv_fixed_bits < MIN_RANDOM_IV_BITS {
                    return Err(Error::MechanismParamInvalid(format!(
                        "a generated IV needs {MIN_RANDOM_IV_BITS} random bits: {} of a {total}-bit IV are fixed",
                        p.iv_fixed_bits
                    )));
                }
                let mut fresh = vec![0u8; p.iv.len()];
                self.provider().random(&mut fresh)?;
                let whole = (p.iv_fixed_bits / 8) as usize;
                fresh[..whole].copy_from_slice(&p.iv[..whole]);
                let partial = (p.iv_fixed_bits % 8) as u32;
                if partial > 0 {
                    let keep = 0xffu8 << (8 - partial);
                    fresh[whole] = (p.iv[whole] & keep) | (fresh[whole] & !keep);
                }
                p.iv = fresh;
                Ok(())
            }
            IvGenerator::GENERATE_COUNTER | IvGenerator::GENERATE_COUNTER_XOR => {
                Err(Error::MechanismParamInvalid(
                    "counter IVs are not generated (their uniqueness would need state across sessions): use CKG_GENERATE_RANDOM"
                        .into(),
                ))
            }
            IvGenerator(other) => Err(Error::MechanismParamInvalid(format!(
                "IV generator {other:#x}"
            ))),
        }
    }

    /// `C_DecryptMessage`: the plaintext of one message, released only if its tag holds.
    pub fn decrypt_message(
        &self,
        h: u64,
        p: &GcmMessage,
        tag: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>> {
        self.run(h, Action::Continue(OpKind::MessageDecrypt), |c| {
            let ops = lock(&c.session.ops);
            let op = ops.get::<MessageOp>(OpKind::MessageDecrypt)?;
            let tag_bits = u32::try_from(p.tag_bits).unwrap_or(u32::MAX);
            crypto::check_gcm_params(&p.iv, tag_bits)?;
            let mut input = Zeroizing::new(Vec::with_capacity(ciphertext.len() + tag.len()));
            input.extend_from_slice(ciphertext);
            input.extend_from_slice(tag);
            Ok(crypto::aes_gcm_decrypt(
                &op.key, &p.iv, aad, tag_bits, &input,
            )?)
        })
    }

    /// `C_MessageEncryptFinal` / `C_MessageDecryptFinal`.
    pub fn message_crypt_final(&self, h: u64, encrypt: bool) -> Result<()> {
        let kind = kind(encrypt);
        self.run(h, Action::Continue(kind), |c| {
            lock(&c.session.ops).take::<MessageOp>(kind).map(|_| ())
        })
    }
}
