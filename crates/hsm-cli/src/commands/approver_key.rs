//! An approver's Ed25519 key: a PEM file, or a key pair in another PKCS#11 token (a
//! smart card, a YubiKey, SoftHSM2, another FerroHSM) reached through its module with
//! the `cryptoki` crate, so the private key never leaves that token. The token signs
//! with `CKM_EDDSA`; its public key is read from the public key object's `CKA_EC_POINT`.

use crate::exit::{CliError, CliResult};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use clap::Args;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::{Path, PathBuf};

/// Where an approver's key is: `--key FILE`, or `--pkcs11-module LIB --key-label L`.
#[derive(Args, Clone)]
pub struct KeySource {
    /// Your Ed25519 private key (it names you: the approver registered with its public
    /// key), PEM PKCS#8 (`openssl genpkey -algorithm ed25519`).
    #[arg(long, value_name = "FILE", conflicts_with = "pkcs11_module")]
    pub key: Option<PathBuf>,
    /// Sign with an Ed25519 key in another PKCS#11 token, through this module.
    #[arg(long, value_name = "LIB", requires = "key_label")]
    pub pkcs11_module: Option<PathBuf>,
    /// That token's label (default: the module's only token).
    #[arg(long, value_name = "LABEL")]
    pub token_label: Option<String>,
    /// The label of the key pair in that token.
    #[arg(long, value_name = "LABEL")]
    pub key_label: Option<String>,
    /// Read that token's user PIN from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub token_pin_env: Option<String>,
}

/// A key that can sign approvals.
pub enum ApproverKey {
    File(Ed25519KeyPair, PathBuf),
    Token(TokenKey),
}

/// A key pair in another token, with a logged-in session when it is to sign.
pub struct TokenKey {
    // Declared before the context it came from: dropped first.
    session: Session,
    _pkcs11: Pkcs11,
    label: String,
    public: Vec<u8>,
}

fn p11(e: cryptoki::error::Error, what: &str) -> CliError {
    CliError::Core(format!("the approver's token: {what}: {e}"))
}

impl ApproverKey {
    /// Opens the key; `sign` logs in to a token (its PIN is needed to sign, not to read
    /// the public key).
    pub fn open(s: &KeySource, sign: bool) -> CliResult<ApproverKey> {
        if let Some(path) = &s.key {
            let der = super::approvals::pem(path, "PRIVATE KEY")?;
            let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| {
                CliError::Usage(format!(
                    "{}: not an Ed25519 private key (PKCS#8)",
                    path.display()
                ))
            })?;
            return Ok(ApproverKey::File(kp, path.clone()));
        }
        let (Some(module), Some(label)) = (&s.pkcs11_module, &s.key_label) else {
            return Err(CliError::Usage(
                "give --key FILE, or --pkcs11-module LIB with --key-label LABEL".into(),
            ));
        };
        let pin = match (&s.token_pin_env, sign) {
            (Some(var), _) => Some(std::env::var(var).map_err(|_| {
                CliError::Usage(format!("--token-pin-env {var}: the variable is not set"))
            })?),
            (None, true) => {
                return Err(CliError::Usage(
                    "signing with a token's key needs its PIN: --token-pin-env VAR".into(),
                ));
            }
            (None, false) => None,
        };
        open_token(module, s.token_label.as_deref(), label, pin).map(ApproverKey::Token)
    }

    /// The raw Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            ApproverKey::File(kp, _) => kp.public_key().as_ref().to_vec(),
            ApproverKey::Token(t) => t.public.clone(),
        }
    }

    pub fn sign(&self, msg: &[u8]) -> CliResult<Vec<u8>> {
        match self {
            ApproverKey::File(kp, _) => Ok(kp.sign(msg).as_ref().to_vec()),
            ApproverKey::Token(t) => {
                let key = find(&t.session, ObjectClass::PRIVATE_KEY, &t.label)?;
                let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                t.session
                    .sign(&mech, key, msg)
                    .map_err(|e| p11(e, "CKM_EDDSA signing"))
            }
        }
    }

    /// How to name the key in a message.
    pub fn describe(&self) -> String {
        match self {
            ApproverKey::File(_, p) => p.display().to_string(),
            ApproverKey::Token(t) => format!("the token key {:?}", t.label),
        }
    }
}

fn open_token(
    module: &Path,
    token_label: Option<&str>,
    label: &str,
    pin: Option<String>,
) -> CliResult<TokenKey> {
    let pkcs11 = Pkcs11::new(module)
        .map_err(|e| CliError::Usage(format!("{}: not a PKCS#11 module: {e}", module.display())))?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| p11(e, "C_Initialize"))?;
    let mut found = Vec::new();
    for slot in pkcs11
        .get_slots_with_token()
        .map_err(|e| p11(e, "C_GetSlotList"))?
    {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(|e| p11(e, "C_GetTokenInfo"))?;
        if info.token_initialized() && token_label.is_none_or(|l| info.label().trim() == l) {
            found.push(slot);
        }
    }
    let slot = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(CliError::Usage(format!(
                "{}: no initialised token{}",
                module.display(),
                token_label.map_or(String::new(), |l| format!(" labelled {l:?}"))
            )));
        }
        _ => {
            return Err(CliError::Usage(format!(
                "{}: several tokens: give --token-label",
                module.display()
            )));
        }
    };
    let session = pkcs11
        .open_ro_session(slot)
        .map_err(|e| p11(e, "C_OpenSession"))?;
    if let Some(pin) = pin {
        session
            .login(UserType::User, Some(&AuthPin::new(pin.into())))
            .map_err(|e| p11(e, "C_Login"))?;
    }
    let public_obj = find(&session, ObjectClass::PUBLIC_KEY, label)?;
    let attrs = session
        .get_attributes(public_obj, &[AttributeType::EcPoint])
        .map_err(|e| p11(e, "reading CKA_EC_POINT"))?;
    let point = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .unwrap_or_default();
    Ok(TokenKey {
        public: ed25519_point(&point).ok_or_else(|| {
            CliError::Usage(format!("the token key {label:?} is not an Ed25519 key"))
        })?,
        session,
        _pkcs11: pkcs11,
        label: label.to_owned(),
    })
}

fn find(session: &Session, class: ObjectClass, label: &str) -> CliResult<ObjectHandle> {
    let t = [
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let found = session
        .find_objects(&t)
        .map_err(|e| p11(e, "C_FindObjects"))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(CliError::Usage(format!(
            "the token has no {class} labelled {label:?} (for a private key: is the PIN right?)"
        ))),
        _ => Err(CliError::Usage(format!(
            "the token has several {class} objects labelled {label:?}"
        ))),
    }
}

/// An Ed25519 `CKA_EC_POINT`: the DER OCTET STRING PKCS#11 3.0 asks for, or the raw
/// 32 bytes some modules give.
fn ed25519_point(p: &[u8]) -> Option<Vec<u8>> {
    match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => Some(rest.to_vec()),
        raw if raw.len() == 32 => Some(raw.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::ed25519_point;

    #[test]
    fn points_in_both_forms_and_nothing_else() {
        let mut der = vec![0x04, 0x20];
        der.extend([7u8; 32]);
        assert_eq!(ed25519_point(&der), Some(vec![7u8; 32]));
        assert_eq!(ed25519_point(&[9u8; 32]), Some(vec![9u8; 32]));
        assert_eq!(ed25519_point(&[0x04, 0x41, 1, 2]), None);
        assert_eq!(ed25519_point(&[]), None);
    }
}
