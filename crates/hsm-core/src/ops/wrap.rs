//! `C_WrapKey` and `C_UnwrapKey`: AES key wrap (RFC 3394 and 5649) of secret keys and of
//! private keys as PKCS#8; RSA-OAEP and PKCS#1 v1.5 of secret keys.

use super::Action;
use super::cipher::oaep_hashes;
use crate::crypto::{self, HashAlg};
use crate::error::{Error, Result};
use crate::mechanism::Mechanism;
use crate::objects::attrs::{self, Origin};
use crate::objects::material::{self, KEY_MATERIAL, key_strength, private_key_of, set_private_key};
use crate::objects::usage::{KeyUse, key_handle};
use crate::objects::{Loaded, computed_on_import};
use crate::policy::engine::{UseGuard, input_hash, key_id};
use crate::policy::quorum::request_digest;
use crate::provider::rsa_parts;
use crate::runtime::{Call, Hsm, Location};
use hsm_types::quorum::Guarded;
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType as M, ObjectClass,
};
use zeroize::Zeroizing;

/// How `C_WrapKey` / `C_UnwrapKey` protect the key.
enum WrapScheme {
    Aes {
        padded: bool,
    },
    Oaep {
        hash: HashAlg,
        mgf: HashAlg,
        label: Vec<u8>,
    },
    Pkcs1,
}

impl WrapScheme {
    /// How a mechanism wraps: AES key wrap under a secret key, or RSA (OAEP; PKCS#1 v1.5)
    /// under a key pair.
    fn of(mech: &Mechanism) -> Result<WrapScheme> {
        match mech {
            Mechanism::Oaep { hash, mgf, label } => {
                let (hash, mgf) = oaep_hashes(*hash, *mgf)?;
                Ok(WrapScheme::Oaep {
                    hash,
                    mgf,
                    label: label.clone(),
                })
            }
            Mechanism::Plain(M::RSA_PKCS) => Ok(WrapScheme::Pkcs1),
            _ => key_wrap_mode(mech).map(|padded| WrapScheme::Aes { padded }),
        }
    }
}

/// The AES key-wrap variant a mechanism names, refusing any IV but the default one.
fn key_wrap_mode(mech: &Mechanism) -> Result<bool> {
    match mech {
        Mechanism::Plain(M::AES_KEY_WRAP) => Ok(false),
        Mechanism::Plain(M::AES_KEY_WRAP_KWP) => Ok(true),
        Mechanism::Iv {
            mechanism: M::AES_KEY_WRAP,
            iv,
        } if iv.as_slice() == [0xa6; 8] => Ok(false),
        Mechanism::Iv {
            mechanism: M::AES_KEY_WRAP_KWP,
            iv,
        } if iv.as_slice() == [0xa6, 0x59, 0x59, 0xa6] => Ok(true),
        Mechanism::Iv {
            mechanism: M::AES_KEY_WRAP | M::AES_KEY_WRAP_KWP,
            ..
        } => Err(Error::MechanismParamInvalid(
            "only the default key-wrap IV is supported".into(),
        )),
        _ => Err(Error::MechanismInvalid),
    }
}

/// A wrapping or unwrapping key, its AES value if it has one, and (unwrap) the
/// approvals every use of it needs.
type WrappingKey = (Loaded, Option<Zeroizing<Vec<u8>>>, Option<UseGuard>);

impl Hsm {
    /// Loads the key that wraps (`wrap`) or unwraps with `scheme` and checks it: an AES
    /// secret key for key wrap, the RSA public (wrap) or private (unwrap) key otherwise,
    /// with the usage bit and the mechanism allowed. An AES key's value comes with it.
    fn wrapping_key(
        &self,
        c: &Call,
        handle: u64,
        scheme: &WrapScheme,
        mech: &Mechanism,
        wrap: bool,
    ) -> Result<WrappingKey> {
        let o = self.load(&c.slot, c.token, handle).map_err(|e| match e {
            Error::ObjectHandleInvalid if wrap => Error::WrappingKeyHandleInvalid,
            Error::ObjectHandleInvalid => Error::UnwrappingKeyHandleInvalid,
            e => e,
        })?;
        let (class, key_type) = match scheme {
            WrapScheme::Aes { .. } => (ObjectClass::SECRET_KEY, KeyType::AES),
            _ if wrap => (ObjectClass::PUBLIC_KEY, KeyType::RSA),
            _ => (ObjectClass::PRIVATE_KEY, KeyType::RSA),
        };
        let types = [key_type];
        let u = if wrap {
            KeyUse::new(class, &types, A::WRAP, mech.kind())
                .wrong_type(Error::WrappingKeyTypeInconsistent)
        } else {
            KeyUse::new(class, &types, A::UNWRAP, mech.kind())
                .wrong_type(Error::UnwrappingKeyTypeInconsistent)
                .no_always_authenticate()
        };
        let approval = self
            .check_use(c, handle, &o.attrs, u)?
            .map(|g| g.with_params(mech));
        let kek = match scheme {
            WrapScheme::Aes { .. } => Some(Zeroizing::new(
                o.attrs
                    .bytes(A::VALUE)
                    .map(<[u8]>::to_vec)
                    .ok_or(Error::UserNotLoggedIn)?,
            )),
            _ => None,
        };
        Ok((o, kek, approval))
    }

    /// `C_WrapKey`. A secret key leaves as its value, under AES key wrap or RSA; a private
    /// key leaves as PKCS#8 `PrivateKeyInfo` under AES key wrap. The key must be
    /// extractable; a key marked `CKA_WRAP_WITH_TRUSTED` only leaves under a trusted key;
    /// the wrapping key's `CKA_WRAP_TEMPLATE` must match the key; and a key never leaves
    /// under a key of lower security strength (SP 800-57), unless
    /// `allow_weaker_wrapping_key` says otherwise.
    pub fn wrap_key(&self, h: u64, mech: &Mechanism, wrapping: u64, key: u64) -> Result<Vec<u8>> {
        self.run(h, Action::WrapKey, |c| {
            hsm_store::audit::note_mechanism(mech.kind().0);
            let scheme = WrapScheme::of(mech)?;
            let (w, kek, _) = self.wrapping_key(c, wrapping, &scheme, mech, true)?;
            let k = self.load(&c.slot, c.token, key).map_err(key_handle)?;
            self.may_leave(&k.attrs, &w.attrs, &scheme)?;
            self.check_version_enabled(c, &k.attrs)?;
            if let Location::Token { id, .. } = k.location {
                hsm_store::audit::note_object(id);
                // A token key leaving the token: the `export` rule's approvals, bound to
                // the key, the wrapping key and the mechanism.
                let fields: [&[u8]; 4] = [
                    b"wrap",
                    &id.0.to_be_bytes(),
                    &wrapping.to_be_bytes(),
                    &mech.kind().0.to_be_bytes(),
                ];
                let digest = request_digest(Guarded::Export, &fields);
                let subject = format!("wrap key object {id} under object {wrapping:#x}");
                let key = key_id(id, &k.attrs);
                self.guard(c, Guarded::Export, key, &digest, &subject)?;
            }
            let payload: Zeroizing<Vec<u8>> = match k.attrs.class() {
                Some(ObjectClass::PRIVATE_KEY) => {
                    crypto::private_key_to_pkcs8(&private_key_of(self.provider(), &k.attrs)?)?
                }
                _ => Zeroizing::new(
                    k.attrs
                        .bytes(A::VALUE)
                        .ok_or(Error::UserNotLoggedIn)?
                        .to_vec(),
                ),
            };
            wrap_payload(&scheme, kek.as_deref(), &w.attrs, &payload)
        })
    }

    /// The rules a key must pass to leave under a wrapping key.
    fn may_leave(&self, k: &AttributeSet, w: &AttributeSet, scheme: &WrapScheme) -> Result<()> {
        match (k.class(), scheme) {
            (Some(ObjectClass::SECRET_KEY), _)
            | (Some(ObjectClass::PRIVATE_KEY), WrapScheme::Aes { .. }) => {}
            (Some(ObjectClass::PRIVATE_KEY), _) => {
                return Err(Error::KeyNotWrappable(
                    "RSA wraps secret keys; a private key leaves under AES key wrap (CKM_AES_KEY_WRAP_KWP) as PKCS#8".into(),
                ));
            }
            _ => {
                return Err(Error::KeyNotWrappable(
                    "only secret and private keys are wrapped".into(),
                ));
            }
        }
        if k.bool(A::EXTRACTABLE) != Some(true) {
            return Err(Error::KeyUnextractable);
        }
        if k.bool(A::WRAP_WITH_TRUSTED) == Some(true) && w.bool(A::TRUSTED) != Some(true) {
            return Err(Error::KeyNotWrappable(
                "CKA_WRAP_WITH_TRUSTED: the wrapping key is not trusted".into(),
            ));
        }
        if let Some(AttrValue::Template(t)) = w.get(A::WRAP_TEMPLATE)
            && !attrs::matches(k, t)
            && !t.is_empty()
        {
            return Err(Error::KeyNotWrappable(
                "the key does not match the wrapping key's CKA_WRAP_TEMPLATE".into(),
            ));
        }
        let (wrapper, wrapped) = (key_strength(w), key_strength(k));
        if wrapper < wrapped && !self.config.allow_weaker_wrapping_key {
            return Err(Error::KeyNotWrappable(format!(
                "a key of {wrapper}-bit strength does not wrap a key of {wrapped}-bit strength \
                 (SP 800-57; see allow_weaker_wrapping_key)"
            )));
        }
        Ok(())
    }

    /// `C_UnwrapKey`: a new key from the caller's template merged with the unwrapping
    /// key's `CKA_UNWRAP_TEMPLATE`. AES key wrap brings secret keys (the value) and private
    /// keys (PKCS#8 `PrivateKeyInfo` of RSA, P-256/384/521 or Ed25519); RSA-OAEP brings
    /// secret keys someone wrapped under our public key, and so does PKCS#1 v1.5 when
    /// `allow_rsa_pkcs1_v15_decrypt` is on. Unwrapped keys are never local,
    /// always-sensitive or never-extractable.
    pub fn unwrap_key(
        &self,
        h: u64,
        mech: &Mechanism,
        unwrapping: u64,
        wrapped: &[u8],
        template: AttributeSet,
    ) -> Result<u64> {
        self.run(h, Action::UnwrapKey, |c| {
            hsm_store::audit::note_mechanism(mech.kind().0);
            let scheme = WrapScheme::of(mech)?;
            if matches!(scheme, WrapScheme::Pkcs1) && !self.config.allow_rsa_pkcs1_v15_decrypt {
                tracing::warn!(
                    "CKM_RSA_PKCS unwrap is off (allow_rsa_pkcs1_v15_decrypt): use CKM_RSA_PKCS_OAEP"
                );
                return Err(Error::MechanismInvalid);
            }
            let template_bytes = template.encode();
            let (u, kek, approval) = self.wrapping_key(c, unwrapping, &scheme, mech, false)?;
            if let Some(g) = &approval {
                self.release_use(c, g, &input_hash(wrapped))?;
            }
            let mut t = unwrap_template(template, &u.attrs, &scheme)?;
            let value = unwrap_payload(&scheme, kek.as_deref(), &u.attrs, wrapped)?;
            if t.class() == Some(ObjectClass::PRIVATE_KEY) {
                let key =
                    crypto::private_key_from_pkcs8(&value).map_err(|_| Error::WrappedKeyInvalid)?;
                set_private_key(&mut t, key)?;
            } else {
                // Every wrapping here carries the key's length, so a CKA_VALUE_LEN in the
                // template can only agree with it or be refused: taking the wrapped length
                // anyway would hand back a key the caller did not describe (SoftHSM2's
                // blobs of keys whose length is not a multiple of 8 carry zero padding
                // inside, for one).
                if let Some(asked) = t.ulong(A::VALUE_LEN)
                    && asked != value.len() as u64
                {
                    return Err(Error::TemplateInconsistent(format!(
                        "CKA_VALUE_LEN {asked} but the wrapped key is {} bytes long",
                        value.len()
                    )));
                }
                t.set(A::VALUE, AttrValue::Bytes(value.to_vec()));
            }
            let mut attrs = attrs::build_new(&t, Origin::Created, self.ctx(&c.slot))?;
            material::validate(self.provider(), &attrs).map_err(|_| Error::WrappedKeyInvalid)?;
            let fields: [&[u8]; 4] = [
                &input_hash(wrapped),
                &unwrapping.to_be_bytes(),
                &mech.kind().0.to_be_bytes(),
                &template_bytes,
            ];
            self.guard_import(c, &attrs, "unwrap", &fields)?;
            computed_on_import(&mut attrs);
            Ok(self.store_new(c, vec![attrs])?[0])
        })
    }
}

/// The caller's template merged with the unwrapping key's `CKA_UNWRAP_TEMPLATE`; key
/// material comes from the blob, never from the template.
fn unwrap_template(
    template: AttributeSet,
    u: &AttributeSet,
    scheme: &WrapScheme,
) -> Result<AttributeSet> {
    if let Some(a) = KEY_MATERIAL.iter().find(|a| template.contains(**a)) {
        return Err(Error::TemplateInconsistent(format!(
            "{a:?} comes from the wrapped key"
        )));
    }
    let mut t = template;
    if let Some(AttrValue::Template(ut)) = u.get(A::UNWRAP_TEMPLATE) {
        for (a, v) in ut.iter() {
            match t.get(a) {
                Some(mine) if mine != v => {
                    return Err(Error::TemplateInconsistent(format!(
                        "{a:?} conflicts with the unwrapping key's CKA_UNWRAP_TEMPLATE"
                    )));
                }
                _ => t.set(a, v.clone()),
            }
        }
    }
    match (t.class(), scheme) {
        (None, _) => Err(Error::TemplateIncomplete("CKA_CLASS".into())),
        (Some(ObjectClass::SECRET_KEY), _)
        | (Some(ObjectClass::PRIVATE_KEY), WrapScheme::Aes { .. }) => Ok(t),
        (Some(ObjectClass::PRIVATE_KEY), _) => Err(Error::TemplateInconsistent(
            "RSA unwraps secret keys; private keys come under AES key wrap".into(),
        )),
        _ => Err(Error::TemplateInconsistent(
            "only secret and private keys are unwrapped".into(),
        )),
    }
}

/// Wraps `payload` under the key encryption key (AES) or the public key in `w` (RSA).
fn wrap_payload(
    scheme: &WrapScheme,
    kek: Option<&Vec<u8>>,
    w: &AttributeSet,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let public = || -> Result<(&[u8], &[u8])> {
        Ok((
            w.bytes(A::MODULUS)
                .ok_or(Error::WrappingKeyTypeInconsistent)?,
            w.bytes(A::PUBLIC_EXPONENT)
                .ok_or(Error::WrappingKeyTypeInconsistent)?,
        ))
    };
    let out = match scheme {
        WrapScheme::Aes { padded } => {
            crypto::aes_key_wrap(kek.map(Vec::as_slice).unwrap_or_default(), payload, *padded)
        }
        WrapScheme::Oaep { hash, mgf, label } => {
            let (n, e) = public()?;
            crypto::rsa_oaep_encrypt(n, e, *hash, *mgf, label, payload)
        }
        WrapScheme::Pkcs1 => {
            let (n, e) = public()?;
            crypto::rsa_pkcs1_encrypt(n, e, payload)
        }
    };
    out.map_err(|e| match (e, scheme) {
        (crypto::CryptoError::DataLenRange, WrapScheme::Aes { .. }) => Error::KeyNotWrappable(
            "RFC 3394 wraps whole 8-byte blocks of at least 16 bytes; use CKM_AES_KEY_WRAP_KWP"
                .into(),
        ),
        (crypto::CryptoError::DataLenRange, _) => {
            Error::KeyNotWrappable("the key is too long for this RSA key and padding".into())
        }
        (e, _) => e.into(),
    })
}

/// Opens a wrapped key under the key encryption key (AES) or the private key in `u`.
fn unwrap_payload(
    scheme: &WrapScheme,
    kek: Option<&Vec<u8>>,
    u: &AttributeSet,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let unwrapped = match scheme {
        WrapScheme::Aes { padded } => {
            crypto::aes_key_unwrap(kek.map(Vec::as_slice).unwrap_or_default(), wrapped, *padded)
        }
        WrapScheme::Oaep { hash, mgf, label } => {
            crypto::rsa_oaep_decrypt(&rsa_parts(u)?, *hash, *mgf, label, wrapped)
        }
        WrapScheme::Pkcs1 => crypto::rsa_pkcs1_decrypt(&rsa_parts(u)?, wrapped),
    };
    Ok(Zeroizing::new(unwrapped.map_err(|e| match e {
        crypto::CryptoError::EncryptedDataInvalid => Error::WrappedKeyInvalid,
        crypto::CryptoError::EncryptedDataLenRange => Error::WrappedKeyLenRange,
        e => e.into(),
    })?))
}
