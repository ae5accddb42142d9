//! Message-based encryption and decryption (PKCS#11 3.0 §5.9, §5.11), AES-GCM only; the
//! multi-part message calls and message-based signing and verifying (§5.14, §5.16) are
//! not built. The message calls are not operations that a failure ends ([`super::ending`]
//! is not used): the message context stays until `C_Message*Final`.

use super::two_call;
use crate::boundary::Error;
use crate::guard::{self, data};
use crate::mechanism::gcm_message;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::types::MechanismType;
use hsm_core::{OpKind, Token};
use std::ffi::c_void;

/// `C_MessageEncryptInit` / `C_MessageDecryptInit`: the mechanism's type is what counts;
/// each message brings its own `CK_GCM_MESSAGE_PARAMS`.
///
/// # Safety
/// `m` readable.
unsafe fn message_init(
    h: &dyn Token,
    session: CK_SESSION_HANDLE,
    m: *const CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    encrypt: bool,
) -> Result<(), Error> {
    // SAFETY: forwarded contract; NULL and misaligned are refused.
    let m = unsafe { guard::reference(m, "pMechanism is NULL") }?;
    let mech = MechanismType(m.mechanism as u64);
    Ok(h.message_crypt_init(session as u64, mech, key as u64, encrypt)?)
}

/// The message context must be there before the message's parameters are looked at.
fn require(h: &dyn Token, session: CK_SESSION_HANDLE, kind: OpKind) -> Result<(), Error> {
    if !h.has_operation(session as u64, kind)? {
        return Err(CoreError::OperationNotInitialized.into());
    }
    Ok(())
}

entry_points! {
    /// # Safety
    /// `m` readable.
    pub unsafe extern "C" fn C_MessageEncryptInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        unsafe { message_init(h, session, m, key, true) }
    }

    /// One message: the ciphertext has the plaintext's length, the tag goes to `pTag`, a
    /// token-generated IV to `pIv`. A NULL or short output buffer answers the length and
    /// generates nothing.
    ///
    /// # Safety
    /// `param` a `CK_GCM_MESSAGE_PARAMS` of `pl` bytes; `a`/`d` readable for `al`/`dl`;
    /// `ol` valid; a non-null `out` writable for `*ol` bytes.
    #[allow(clippy::too_many_arguments)]
    pub unsafe extern "C" fn C_EncryptMessage(
        session: CK_SESSION_HANDLE,
        param: *mut c_void,
        pl: CK_ULONG,
        a: *mut CK_BYTE,
        al: CK_ULONG,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        require(h, session, OpKind::MessageEncrypt)?;
        // SAFETY: forwarded contract.
        let (raw, p) = unsafe { gcm_message(param, pl) }?;
        // SAFETY: forwarded contract.
        let aad = unsafe { data(a, al, "pAssociatedData") }?;
        // SAFETY: forwarded contract.
        let input = unsafe { data(d, dl, "pPlaintext") }?;
        let produce = || {
            let sealed = h.encrypt_message(session as u64, &p, aad, input)?;
            // The answer may come from a server: its lengths are checked, not trusted.
            if sealed.iv.len() != p.iv.len() || sealed.tag.len() as u64 * 8 != p.tag_bits {
                return Err(CoreError::DeviceError(
                    "the token answered with an IV or tag of the wrong length".into(),
                )
                .into());
            }
            // SAFETY: pIv holds ulIvLen == p.iv.len() bytes and pTag tag_bits / 8 bytes
            // (checked by gcm_message), and the lengths were just checked.
            unsafe {
                guard::write_array(raw.pIv, &sealed.iv);
                guard::write_array(raw.pTag, &sealed.tag);
            }
            Ok(sealed.ciphertext)
        };
        // SAFETY: forwarded contract.
        unsafe { two_call(out, ol, "pulCiphertextLen is NULL", input.len(), produce) }
    }

    pub extern "C" fn C_MessageEncryptFinal(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        Ok(h.message_crypt_final(session as u64, true)?)
    }

    /// # Safety
    /// `m` readable.
    pub unsafe extern "C" fn C_MessageDecryptInit(
        session: CK_SESSION_HANDLE,
        m: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV = |h| {
        // SAFETY: forwarded contract.
        unsafe { message_init(h, session, m, key, false) }
    }

    /// # Safety
    /// As [`C_EncryptMessage`]; `pTag` readable for the tag.
    #[allow(clippy::too_many_arguments)]
    pub unsafe extern "C" fn C_DecryptMessage(
        session: CK_SESSION_HANDLE,
        param: *mut c_void,
        pl: CK_ULONG,
        a: *mut CK_BYTE,
        al: CK_ULONG,
        d: *mut CK_BYTE,
        dl: CK_ULONG,
        out: *mut CK_BYTE,
        ol: *mut CK_ULONG,
    ) -> CK_RV = |h| {
        require(h, session, OpKind::MessageDecrypt)?;
        // SAFETY: forwarded contract.
        let (raw, p) = unsafe { gcm_message(param, pl) }?;
        // SAFETY: pTag readable for the tag's bytes (non-null, whole bytes, at most 16:
        // checked by gcm_message).
        let tag = unsafe { guard::bytes(raw.pTag, (p.tag_bits / 8) as CK_ULONG, 16, "pTag") }?;
        // SAFETY: forwarded contract.
        let aad = unsafe { data(a, al, "pAssociatedData") }?;
        // SAFETY: forwarded contract.
        let input = unsafe { data(d, dl, "pCiphertext") }?;
        let produce = || Ok(h.decrypt_message(session as u64, &p, tag, aad, input)?);
        // SAFETY: forwarded contract.
        unsafe { two_call(out, ol, "pulPlaintextLen is NULL", input.len(), produce) }
    }

    pub extern "C" fn C_MessageDecryptFinal(session: CK_SESSION_HANDLE) -> CK_RV = |h| {
        Ok(h.message_crypt_final(session as u64, false)?)
    }
}

not_supported! {
    C_EncryptMessageBegin(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
    );
    C_EncryptMessageNext(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
        a6: *mut CK_BYTE,
        a7: *mut CK_ULONG,
        a8: CK_FLAGS,
    );
    C_DecryptMessageBegin(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
    );
    C_DecryptMessageNext(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
        a6: *mut CK_BYTE,
        a7: *mut CK_ULONG,
        a8: CK_FLAGS,
    );
    C_MessageSignInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_SignMessage(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
        a6: *mut CK_BYTE,
        a7: *mut CK_ULONG,
    );
    C_SignMessageBegin(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG);
    C_SignMessageNext(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
        a6: *mut CK_BYTE,
        a7: *mut CK_ULONG,
    );
    C_MessageSignFinal(a1: CK_SESSION_HANDLE);
    C_MessageVerifyInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_VerifyMessage(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
        a6: *mut CK_BYTE,
        a7: CK_ULONG,
    );
    C_VerifyMessageBegin(a1: CK_SESSION_HANDLE, a2: *mut c_void, a3: CK_ULONG);
    C_VerifyMessageNext(
        a1: CK_SESSION_HANDLE,
        a2: *mut c_void,
        a3: CK_ULONG,
        a4: *mut CK_BYTE,
        a5: CK_ULONG,
        a6: *mut CK_BYTE,
        a7: CK_ULONG,
    );
    C_MessageVerifyFinal(a1: CK_SESSION_HANDLE);
}
