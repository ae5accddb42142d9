//! The one key-usage check every keyed operation makes: the key's class and type fit the
//! mechanism, the usage attribute is TRUE, the mechanism is among `CKA_ALLOWED_MECHANISMS`,
//! and the policy engine agrees.

use super::attrs;
use crate::error::{Error, Result};
use crate::policy::engine::UseGuard;
use crate::runtime::handles::decode_handle;
use crate::runtime::{Call, Hsm, Location};
use hsm_types::{AttributeSet, AttributeType as A, KeyType, MechanismType as M, ObjectClass};

/// What an operation needs of its key.
pub(crate) struct KeyUse<'a> {
    pub class: ObjectClass,
    /// The key types that fit the mechanism.
    pub key_types: &'a [KeyType],
    /// The usage attribute that must be TRUE (`CKA_SIGN`, `CKA_WRAP`, …).
    pub usage: A,
    pub mechanism: M,
    /// The error for a key of the wrong class or type.
    pub wrong_type: Error,
    /// Trusted keys only wrap and unwrap (encrypt, decrypt and derive refuse them).
    pub refuse_trusted: bool,
    /// `CKA_ALWAYS_AUTHENTICATE` keys only sign and decrypt (unwrap and derive refuse them).
    pub refuse_always_authenticate: bool,
}

impl<'a> KeyUse<'a> {
    pub fn new(class: ObjectClass, key_types: &'a [KeyType], usage: A, mechanism: M) -> Self {
        KeyUse {
            class,
            key_types,
            usage,
            mechanism,
            wrong_type: Error::KeyTypeInconsistent,
            refuse_trusted: false,
            refuse_always_authenticate: false,
        }
    }

    pub fn wrong_type(mut self, e: Error) -> Self {
        self.wrong_type = e;
        self
    }

    pub fn no_trusted(mut self) -> Self {
        self.refuse_trusted = true;
        self
    }

    pub fn no_always_authenticate(mut self) -> Self {
        self.refuse_always_authenticate = true;
        self
    }
}

impl Hsm {
    /// Checks a key for an operation (see [`KeyUse`]), then asks the token's rules (by the
    /// key's handle: per-key rules follow token keys) and the policy hook. `Some`: every
    /// use of this key needs approvals bound to its input (see `policy::engine`).
    pub(crate) fn check_use(
        &self,
        call: &Call,
        handle: u64,
        key: &AttributeSet,
        u: KeyUse<'_>,
    ) -> Result<Option<UseGuard>> {
        hsm_store::audit::note_mechanism(u.mechanism.0);
        if let Some(Location::Token { id, .. }) = decode_handle(handle) {
            hsm_store::audit::note_object(id);
        }
        let fits = key.class() == Some(u.class)
            && key.key_type().is_some_and(|t| u.key_types.contains(&t));
        if !fits {
            return Err(u.wrong_type);
        }
        if u.refuse_trusted {
            refuse_trusted(key)?;
        }
        if u.refuse_always_authenticate {
            refuse_always_authenticate(key)?;
        }
        if key.bool(u.usage) != Some(true) {
            return Err(Error::KeyFunctionNotPermitted(
                usage_is_false(u.usage).into(),
            ));
        }
        if u.class == ObjectClass::PRIVATE_KEY
            && u.usage != A::SIGN
            && key.get(A::FERRO_DEVICE_KEY).is_some()
        {
            return Err(Error::KeyFunctionNotPermitted(
                "this key lives in a device, which only signs with it through its adapter \
                 (docs/adapters.md)"
                    .into(),
            ));
        }
        let allowed = key.mechanisms();
        if !allowed.is_empty() && !allowed.contains(&u.mechanism.0) {
            return Err(Error::MechanismInvalid);
        }
        self.check_lifecycle(call, key, u.usage)?;
        self.authorize(call, Some(key))?;
        self.use_policy(call, handle, key, u.mechanism, u.usage)
    }
}

fn usage_is_false(a: A) -> &'static str {
    match a {
        A::SIGN => "CKA_SIGN is FALSE",
        A::VERIFY => "CKA_VERIFY is FALSE",
        A::ENCRYPT => "CKA_ENCRYPT is FALSE",
        A::DECRYPT => "CKA_DECRYPT is FALSE",
        A::WRAP => "CKA_WRAP is FALSE",
        A::UNWRAP => "CKA_UNWRAP is FALSE",
        A::DERIVE => "CKA_DERIVE is FALSE",
        _ => "the key's usage attribute is FALSE",
    }
}

/// A bad object handle where a key is meant is a bad key handle.
pub(crate) fn key_handle(e: Error) -> Error {
    match e {
        Error::ObjectHandleInvalid => Error::KeyHandleInvalid,
        e => e,
    }
}

/// A trusted key never encrypts, decrypts or derives (also checked when it is made;
/// this holds for records made before that rule).
fn refuse_trusted(attrs: &AttributeSet) -> Result<()> {
    if attrs::is_trusted(attrs) {
        return Err(Error::KeyFunctionNotPermitted(
            "a trusted key (CKA_TRUSTED) only wraps or unwraps".into(),
        ));
    }
    Ok(())
}

/// `CKA_ALWAYS_AUTHENTICATE` keys are used one operation at a time, each after
/// `C_Login(CKU_CONTEXT_SPECIFIC)`; PKCS#11 has that login for operations with an
/// `*Init` (sign, decrypt) only, so such keys do not unwrap or derive.
fn refuse_always_authenticate(attrs: &AttributeSet) -> Result<()> {
    if attrs.bool(A::ALWAYS_AUTHENTICATE) == Some(true) {
        return Err(Error::KeyFunctionNotPermitted(
            "a CKA_ALWAYS_AUTHENTICATE key signs and decrypts only, each time after C_Login(CKU_CONTEXT_SPECIFIC)".into(),
        ));
    }
    Ok(())
}
