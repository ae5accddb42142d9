//! One connection to the backing token: the loaded library, a logged-in read-write
//! session, and the handles of the keys used so far. Every call of the adapter runs on
//! it under one lock (a PKCS#11 session serves one call at a time).

use crate::Which;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use hsm_core::crypto::{self, DeviceKeyKind, HashAlg, RawSign};
use hsm_core::hardware::{Capabilities, DevicePair, DevicePublic};
use hsm_core::provider::PairSpec;
use hsm_core::{Error, Result};
use hsm_types::SecretString;
use std::collections::HashMap;

/// The label every key FerroHSM makes in a backing token carries there.
const LABEL: &str = "ferrohsm";

pub(crate) struct Conn {
    _ctx: Pkcs11,
    session: Session,
    pub serial: String,
    mechanisms: Vec<MechanismType>,
    /// Private-key handles by `CKA_ID`, as found (handles live as long as the session).
    handles: HashMap<Vec<u8>, ObjectHandle>,
}

/// What a backing module's answer means here: the device gone (reconnect), a mechanism
/// it lacks, or an error it reported.
fn map(e: P11Error, what: &str) -> Error {
    match e {
        P11Error::Pkcs11(rv, _) => match rv {
            RvError::DeviceRemoved
            | RvError::TokenNotPresent
            | RvError::SessionClosed
            | RvError::SessionHandleInvalid
            | RvError::CryptokiNotInitialized
            | RvError::UserNotLoggedIn => {
                Error::DeviceRemoved(format!("{what}: the backing token answered {rv}"))
            }
            RvError::MechanismInvalid | RvError::MechanismParamInvalid => Error::MechanismInvalid,
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => {
                Error::DeviceError(format!("{what}: the key is no longer in the backing token"))
            }
            rv => Error::DeviceError(format!("{what}: the backing token answered {rv}")),
        },
        P11Error::LibraryLoading(e) => {
            Error::DeviceRemoved(format!("{what}: the library cannot be loaded: {e}"))
        }
        other => Error::DeviceError(format!("{what}: {other}")),
    }
}

impl Conn {
    /// Loads the library, finds the token and logs in as its user. Another part of this
    /// process may have initialised the library already: that is not an error, and the
    /// adapter never finalises it.
    pub fn open(module: &str, which: &Which, pin: &SecretString) -> Result<Conn> {
        let ctx = Pkcs11::new(module).map_err(|e| map(e, module))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(map(e, "C_Initialize")),
        }
        let slot = find_slot(&ctx, which)?;
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| map(e, "C_GetTokenInfo"))?;
        let mechanisms = ctx
            .get_mechanism_list(slot)
            .map_err(|e| map(e, "C_GetMechanismList"))?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| map(e, "C_OpenSession"))?;
        match session.login(UserType::User, Some(&AuthPin::new(pin.expose().into()))) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(rv @ (RvError::PinIncorrect | RvError::PinLocked), _)) => {
                return Err(Error::DeviceError(format!(
                    "C_Login to the backing token: {rv} (check pin_file / pin_env)"
                )));
            }
            Err(e) => return Err(map(e, "C_Login")),
        }
        Ok(Conn {
            _ctx: ctx,
            session,
            serial: info.serial_number().trim().to_string(),
            mechanisms,
            handles: HashMap::new(),
        })
    }

    /// Whether the session still answers.
    pub fn check(&mut self) -> Result<()> {
        self.session
            .get_session_info()
            .map(drop)
            .map_err(|e| map(e, "C_GetSessionInfo"))
    }

    /// What FerroHSM offers on this slot, from the backing token's mechanisms.
    pub fn capabilities(&self) -> Capabilities {
        crate::capabilities_over(&self.mechanisms)
    }

    /// Makes a pair in the backing token under a fresh `CKA_ID`: the private half a
    /// sensitive, never-extractable token object that can only sign, the public half
    /// one that can only verify.
    pub fn generate_pair(&mut self, spec: PairSpec<'_>, _id: &[u8]) -> Result<DevicePair> {
        let mut name = vec![0u8; 16];
        crypto::random_bytes(&mut name).map_err(|e| Error::General(e.to_string()))?;
        let common = |verify: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Id(name.clone()),
                Attribute::Label(LABEL.as_bytes().to_vec()),
                if verify {
                    Attribute::Verify(true)
                } else {
                    Attribute::Sign(true)
                },
            ]
        };
        let mut public = common(true);
        let mut private = common(false);
        // Signing only: the backing token's own defaults (SoftHSM2 lets an RSA key
        // decrypt and unwrap) would give the key uses FerroHSM never makes of it.
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let mech = match spec {
            PairSpec::Ec(curve) => {
                public.push(Attribute::EcParams(curve.ec_params()));
                Mechanism::EccKeyPairGen
            }
            PairSpec::Ed25519 => {
                public.push(Attribute::EcParams(crypto::ED25519_OID.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            PairSpec::Rsa { bits, exponent } => {
                public.push(Attribute::ModulusBits((bits as u64).into()));
                public.push(Attribute::PublicExponent(
                    exponent.map_or_else(|| vec![1, 0, 1], <[u8]>::to_vec),
                ));
                Mechanism::RsaPkcsKeyPairGen
            }
            PairSpec::X25519 => return Err(Error::MechanismInvalid),
        };
        let (pubh, privh) = self
            .session
            .generate_key_pair(&mech, &public, &private)
            .map_err(|e| map(e, "C_GenerateKeyPair"))?;
        let public = self.public_of(pubh, spec).inspect_err(|_| {
            let _ = self.session.destroy_object(privh);
            let _ = self.session.destroy_object(pubh);
        })?;
        self.handles.insert(name.clone(), privh);
        Ok(DevicePair { name, public })
    }

    /// The public half of a pair just made, read back from the backing token.
    fn public_of(&self, h: ObjectHandle, spec: PairSpec<'_>) -> Result<DevicePublic> {
        let bad =
            |what: &str| Error::DeviceError(format!("the backing token's new public key: {what}"));
        let want = match spec {
            PairSpec::Rsa { .. } => vec![AttributeType::Modulus, AttributeType::PublicExponent],
            _ => vec![AttributeType::EcPoint],
        };
        let attrs = self
            .session
            .get_attributes(h, &want)
            .map_err(|e| map(e, "C_GetAttributeValue"))?;
        let (mut modulus, mut exponent, mut point) = (None, None, None);
        for a in attrs {
            match a {
                Attribute::Modulus(v) => modulus = Some(v),
                Attribute::PublicExponent(v) => exponent = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        match spec {
            PairSpec::Rsa { .. } => Ok(DevicePublic::Rsa {
                modulus: modulus.ok_or_else(|| bad("no CKA_MODULUS"))?,
                exponent: exponent.ok_or_else(|| bad("no CKA_PUBLIC_EXPONENT"))?,
            }),
            PairSpec::Ec(curve) => {
                let p = point.ok_or_else(|| bad("no CKA_EC_POINT"))?;
                let p = crypto::ec_point_from_der(&p)
                    .filter(|p| p.len() == curve.point_len())
                    .ok_or_else(|| bad("CKA_EC_POINT is not a point of the curve"))?;
                Ok(DevicePublic::Ec { point: p })
            }
            _ => {
                let p = point.ok_or_else(|| bad("no CKA_EC_POINT"))?;
                let public = match p.as_slice() {
                    [0x04, 32, rest @ ..] if rest.len() == 32 => rest.to_vec(),
                    raw if raw.len() == 32 => raw.to_vec(),
                    _ => return Err(bad("CKA_EC_POINT is not an Ed25519 public key")),
                };
                Ok(DevicePublic::Ed25519 { public })
            }
        }
    }

    /// The private key with `CKA_ID` = `name`.
    fn private_key(&mut self, name: &[u8]) -> Result<ObjectHandle> {
        if let Some(h) = self.handles.get(name) {
            return Ok(*h);
        }
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(name.to_vec()),
            ])
            .map_err(|e| map(e, "C_FindObjects"))?;
        let h = *found.first().ok_or_else(|| {
            Error::DeviceError("the key is no longer in the backing token".into())
        })?;
        self.handles.insert(name.to_vec(), h);
        Ok(h)
    }

    pub fn sign(&mut self, name: &[u8], _kind: DeviceKeyKind, op: RawSign<'_>) -> Result<Vec<u8>> {
        let h = self.private_key(name)?;
        let (mech, data) = match op {
            RawSign::Ecdsa(d) => (Mechanism::Ecdsa, d),
            RawSign::RsaPkcs1(d) => (Mechanism::RsaPkcs, d),
            RawSign::Eddsa(d) => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                d,
            ),
            RawSign::RsaPss {
                hash,
                mgf_hash,
                salt_len,
                digest,
            } => (
                Mechanism::RsaPkcsPss(PkcsPssParams {
                    hash_alg: hash_mechanism(hash),
                    mgf: mgf(mgf_hash),
                    s_len: (salt_len as u64).into(),
                }),
                digest,
            ),
        };
        self.session.sign(&mech, h, data).map_err(|e| {
            if matches!(
                e,
                P11Error::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _)
            ) {
                // Looked for again next time (the token may have been restored).
                self.handles.remove(name);
            }
            map(e, "C_Sign")
        })
    }

    /// Deletes both halves of the pair named `name` (a key already gone is no error).
    pub fn destroy(&mut self, name: &[u8]) -> Result<()> {
        let found = self
            .session
            .find_objects(&[Attribute::Id(name.to_vec())])
            .map_err(|e| map(e, "C_FindObjects"))?;
        for h in found {
            match self.session.destroy_object(h) {
                Ok(()) | Err(P11Error::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                Err(e) => return Err(map(e, "C_DestroyObject")),
            }
        }
        self.handles.remove(name);
        Ok(())
    }
}

fn find_slot(ctx: &Pkcs11, which: &Which) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| map(e, "C_GetSlotList"))?;
    let found = match which {
        Which::Slot(n) => slots.into_iter().find(|s| s.id() == *n),
        Which::Label(l) => slots.into_iter().find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == l.as_str())
        }),
    };
    found.ok_or_else(|| {
        Error::DeviceRemoved(match which {
            Which::Slot(n) => format!("the backing module has no token in slot {n}"),
            Which::Label(l) => format!("the backing module has no token labelled {l:?}"),
        })
    })
}

fn hash_mechanism(h: HashAlg) -> MechanismType {
    match h {
        HashAlg::Sha1 => MechanismType::SHA1,
        HashAlg::Sha224 => MechanismType::SHA224,
        HashAlg::Sha256 => MechanismType::SHA256,
        HashAlg::Sha384 => MechanismType::SHA384,
        HashAlg::Sha512 => MechanismType::SHA512,
    }
}

fn mgf(h: HashAlg) -> PkcsMgfType {
    match h {
        HashAlg::Sha1 => PkcsMgfType::MGF1_SHA1,
        HashAlg::Sha224 => PkcsMgfType::MGF1_SHA224,
        HashAlg::Sha256 => PkcsMgfType::MGF1_SHA256,
        HashAlg::Sha384 => PkcsMgfType::MGF1_SHA384,
        HashAlg::Sha512 => PkcsMgfType::MGF1_SHA512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn a_device_gone_is_told_from_an_error_it_reports() {
        let rv = |rv| map(P11Error::Pkcs11(rv, Function::Sign), "C_Sign");
        for gone in [
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::SessionHandleInvalid,
            RvError::CryptokiNotInitialized,
        ] {
            assert!(matches!(rv(gone), Error::DeviceRemoved(_)), "{gone}");
        }
        assert!(matches!(
            rv(RvError::MechanismInvalid),
            Error::MechanismInvalid
        ));
        assert!(
            matches!(rv(RvError::ObjectHandleInvalid), Error::DeviceError(m) if m.contains("no longer"))
        );
        assert!(matches!(rv(RvError::DeviceMemory), Error::DeviceError(_)));
    }
}
