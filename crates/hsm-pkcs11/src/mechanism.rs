//! `CK_MECHANISM` to the core's parsed [`Mechanism`], and the `CK_GCM_MESSAGE_PARAMS` of
//! one message-based call. Every parameter struct is read through [`guard::param`]: NULL,
//! a wrong length or a misaligned pointer is `CKR_MECHANISM_PARAM_INVALID`.

use crate::boundary::Error;
use crate::guard::{self, MAX_DATA};
use crate::template::parse;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::GcmMessage;
use hsm_core::mechanism::{EcKdf, HkdfSalt, IvGenerator, Mechanism, Mgf};
use hsm_core::types::MechanismType;
use std::ffi::c_void;

fn param_invalid(why: &str) -> Error {
    Error::Core(CoreError::MechanismParamInvalid(why.to_owned()))
}

/// Bytes inside a parameter struct: any problem is the parameter's
/// (`CKR_MECHANISM_PARAM_INVALID`, `why`).
///
/// # Safety
/// As [`guard::bytes`].
unsafe fn param_bytes(
    ptr: *const u8,
    len: CK_ULONG,
    max: usize,
    why: &str,
) -> Result<Vec<u8>, Error> {
    // SAFETY: forwarded contract.
    unsafe { guard::bytes(ptr, len, max, "mechanism parameter") }
        .map(<[u8]>::to_vec)
        .map_err(|_| param_invalid(why))
}

/// Parses `CK_MECHANISM` with the parameters this module understands.
///
/// # Safety
/// A non-null `m` points to a `CK_MECHANISM` whose parameter pointer is valid for its
/// length.
pub unsafe fn mechanism(m: *const CK_MECHANISM) -> Result<Mechanism, Error> {
    // SAFETY: forwarded contract; NULL and misaligned are refused.
    let m = unsafe { guard::reference(m, "pMechanism is NULL") }?;
    let kind = MechanismType(m.mechanism as u64);
    let (p, len) = (m.pParameter as *const c_void, m.ulParameterLen);
    // SAFETY: the parameter pointer is valid for its length per the contract; each parser
    // checks NULL, size and alignment before it reads.
    unsafe {
        match kind {
            MechanismType::RSA_PKCS_PSS
            | MechanismType::SHA256_RSA_PKCS_PSS
            | MechanismType::SHA384_RSA_PKCS_PSS
            | MechanismType::SHA512_RSA_PKCS_PSS => pss(kind, p, len),
            MechanismType::AES_GCM => gcm(p, len),
            MechanismType::AES_KEY_WRAP | MechanismType::AES_KEY_WRAP_KWP if p.is_null() => {
                Ok(Mechanism::Plain(kind))
            }
            MechanismType::AES_CBC
            | MechanismType::AES_CBC_PAD
            | MechanismType::AES_KEY_WRAP
            | MechanismType::AES_KEY_WRAP_KWP => Ok(Mechanism::Iv {
                mechanism: kind,
                iv: param_bytes(p as *const u8, len, 64, "IV")?,
            }),
            MechanismType::EDDSA if !p.is_null() => eddsa(kind, p, len),
            MechanismType::SP800_108_COUNTER_KDF | MechanismType::SP800_108_FEEDBACK_KDF => {
                kbkdf(kind, p, len)
            }
            MechanismType::HKDF_DERIVE => hkdf(p, len),
            MechanismType::RSA_PKCS_OAEP => oaep(p, len),
            MechanismType::ECDH1_DERIVE => ecdh(p, len),
            MechanismType::AES_CTR => ctr(kind, p, len),
            _ => Ok(Mechanism::Plain(kind)),
        }
    }
}

/// # Safety
/// A non-null `p` of `len` bytes is valid for its length (all the parsers below).
unsafe fn pss(kind: MechanismType, p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    const WHAT: &str = "CK_RSA_PKCS_PSS_PARAMS expected";
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_RSA_PKCS_PSS_PARAMS>(p, len, WHAT) }?;
    Ok(Mechanism::Pss {
        mechanism: kind,
        hash: MechanismType(p.hashAlg as u64),
        mgf: Mgf(p.mgf as u64),
        salt_len: p.sLen as u64,
    })
}

/// # Safety
/// As [`pss`].
unsafe fn gcm(p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_GCM_PARAMS>(p, len, "CK_GCM_PARAMS expected") }?;
    Ok(Mechanism::Gcm {
        // SAFETY: pointers valid for their lengths per the contract; capped.
        iv: unsafe { param_bytes(p.pIv, p.ulIvLen, 256, "GCM IV") }?,
        // SAFETY: as above.
        aad: unsafe { param_bytes(p.pAAD, p.ulAADLen, MAX_DATA, "GCM AAD") }?,
        tag_bits: p.ulTagBits as u64,
    })
}

/// # Safety
/// As [`pss`].
unsafe fn eddsa(kind: MechanismType, p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_EDDSA_PARAMS>(p, len, "CK_EDDSA_PARAMS expected") }?;
    if p.phFlag != 0 || p.ulContextDataLen != 0 {
        return Err(param_invalid(
            "only plain Ed25519 (no pre-hash, no context) is supported",
        ));
    }
    Ok(Mechanism::Plain(kind))
}

/// # Safety
/// As [`pss`].
unsafe fn hkdf(p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_HKDF_PARAMS>(p, len, "CK_HKDF_PARAMS expected") }?;
    Ok(Mechanism::Hkdf {
        extract: p.bExtract != 0,
        expand: p.bExpand != 0,
        prf: MechanismType(p.prfHashMechanism as u64),
        salt_type: HkdfSalt(p.ulSaltType as u64),
        // SAFETY: pointers valid for their lengths per the contract; capped.
        salt: unsafe { param_bytes(p.pSalt, p.ulSaltLen, 4096, "HKDF salt") }?,
        // SAFETY: as above.
        info: unsafe { param_bytes(p.pInfo, p.ulInfoLen, 4096, "HKDF info") }?,
    })
}

/// # Safety
/// As [`pss`].
unsafe fn oaep(p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    const WHAT: &str = "CK_RSA_PKCS_OAEP_PARAMS expected";
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_RSA_PKCS_OAEP_PARAMS>(p, len, WHAT) }?;
    if p.source != 0 && p.source != CKZ_DATA_SPECIFIED {
        return Err(param_invalid("OAEP source must be CKZ_DATA_SPECIFIED"));
    }
    // SAFETY: pointer valid for its length per the contract; capped. NULL with a length
    // is refused.
    let label = unsafe {
        param_bytes(
            p.pSourceData as *const u8,
            p.ulSourceDataLen,
            4096,
            "OAEP label",
        )
    }?;
    Ok(Mechanism::Oaep {
        hash: MechanismType(p.hashAlg as u64),
        mgf: Mgf(p.mgf as u64),
        label,
    })
}

/// # Safety
/// As [`pss`].
unsafe fn ecdh(p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    const WHAT: &str = "CK_ECDH1_DERIVE_PARAMS expected";
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_ECDH1_DERIVE_PARAMS>(p, len, WHAT) }?;
    Ok(Mechanism::Ecdh {
        kdf: EcKdf(p.kdf as u64),
        // SAFETY: pointers valid for their lengths per the contract; capped.
        shared_data: unsafe { param_bytes(p.pSharedData, p.ulSharedDataLen, 4096, "shared data") }?,
        // SAFETY: as above.
        public_data: unsafe { param_bytes(p.pPublicData, p.ulPublicDataLen, 1024, "public data") }?,
    })
}

/// # Safety
/// As [`pss`].
unsafe fn ctr(kind: MechanismType, p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param::<CK_AES_CTR_PARAMS>(p, len, "CK_AES_CTR_PARAMS expected") }?;
    // The whole 128-bit block counts; a narrower counter would only differ after 2^bits
    // blocks, which the input caps never reach for bits >= 32.
    if p.ulCounterBits < 32 || p.ulCounterBits > 128 {
        return Err(param_invalid("ulCounterBits must be 32 to 128"));
    }
    Ok(Mechanism::Iv {
        mechanism: kind,
        iv: p.cb.to_vec(),
    })
}

/// The raw SP 800-108 parameters: PRF, data fields, IV and additional keys (counter mode
/// has no IV).
struct KbkdfRaw {
    prf: CK_MECHANISM_TYPE,
    data: (*mut CK_PRF_DATA_PARAM, CK_ULONG),
    iv: (*mut CK_BYTE, CK_ULONG),
    extra: (*mut CK_DERIVED_KEY, CK_ULONG),
}

/// # Safety
/// A non-null `p` of the right size points to the mechanism's parameter struct.
unsafe fn kbkdf_raw(
    kind: MechanismType,
    p: *const c_void,
    len: CK_ULONG,
) -> Result<KbkdfRaw, Error> {
    if kind == MechanismType::SP800_108_FEEDBACK_KDF {
        const WHAT: &str = "CK_SP800_108_FEEDBACK_KDF_PARAMS expected";
        // SAFETY: forwarded contract; NULL, size and alignment checked.
        let p = unsafe { guard::param::<CK_SP800_108_FEEDBACK_KDF_PARAMS>(p, len, WHAT) }?;
        Ok(KbkdfRaw {
            prf: p.prfType,
            data: (p.pDataParams, p.ulNumberOfDataParams),
            iv: (p.pIV, p.ulIVLen),
            extra: (p.pAdditionalDerivedKeys, p.ulAdditionalDerivedKeys),
        })
    } else {
        const WHAT: &str = "CK_SP800_108_KDF_PARAMS expected";
        // SAFETY: forwarded contract; NULL, size and alignment checked.
        let p = unsafe { guard::param::<CK_SP800_108_KDF_PARAMS>(p, len, WHAT) }?;
        Ok(KbkdfRaw {
            prf: p.prfType,
            data: (p.pDataParams, p.ulNumberOfDataParams),
            iv: (std::ptr::null_mut(), 0),
            extra: (p.pAdditionalDerivedKeys, p.ulAdditionalDerivedKeys),
        })
    }
}

/// Most PRF input fields and additional keys one derivation takes.
const MAX_KBKDF_FIELDS: usize = 64;
const MAX_KBKDF_KEYS: usize = 32;

/// Parses SP 800-108 parameters.
///
/// # Safety
/// A non-null `p` of the right size points to the parameter struct, whose arrays and
/// values are valid for their lengths.
unsafe fn kbkdf(kind: MechanismType, p: *const c_void, len: CK_ULONG) -> Result<Mechanism, Error> {
    // SAFETY: forwarded contract.
    let raw = unsafe { kbkdf_raw(kind, p, len) }?;
    // SAFETY: pDataParams holds ulNumberOfDataParams entries per the contract; NULL with a
    // count, too many and misaligned are refused.
    let data = unsafe { guard::array(raw.data.0, raw.data.1, MAX_KBKDF_FIELDS, "pDataParams") }
        .map_err(|_| param_invalid("SP 800-108 data parameters"))?;
    let mut fields = Vec::with_capacity(data.len());
    for d in data {
        // SAFETY: each field's value is valid for its length per the contract.
        fields.push(unsafe { kbkdf_field(d) }?);
    }
    // SAFETY: pIV valid for ulIVLen bytes per the contract; capped.
    let iv = unsafe { param_bytes(raw.iv.0, raw.iv.1, 1024, "SP 800-108 feedback IV") }?;
    // SAFETY: pAdditionalDerivedKeys holds ulAdditionalDerivedKeys entries per the
    // contract; NULL with a count, too many and misaligned are refused.
    let keys = unsafe { guard::array(raw.extra.0, raw.extra.1, MAX_KBKDF_KEYS, "keys") }
        .map_err(|_| param_invalid("SP 800-108 additional derived keys"))?;
    let mut additional = Vec::with_capacity(keys.len());
    for k in keys {
        // SAFETY: checked for NULL and alignment only; written after the derivation.
        unsafe { guard::out_ref(k.phKey, "CK_DERIVED_KEY.phKey is NULL") }?;
        // SAFETY: the template is valid for its count per the contract.
        additional.push(unsafe { parse(k.pTemplate, k.ulAttributeCount) }?);
    }
    Ok(Mechanism::Kbkdf {
        mechanism: kind,
        prf: MechanismType(raw.prf as u64),
        fields,
        iv,
        additional,
    })
}

/// One `CK_PRF_DATA_PARAM`.
///
/// # Safety
/// `d.pValue` is valid for `d.ulValueLen` bytes.
unsafe fn kbkdf_field(d: &CK_PRF_DATA_PARAM) -> Result<hsm_core::crypto::KbkdfField, Error> {
    use hsm_core::crypto::{DkmMethod, IntFormat, KbkdfField};
    let format = |what: &str| -> Result<IntFormat, Error> {
        // SAFETY: forwarded contract; NULL, size and alignment checked.
        let f =
            unsafe { guard::param::<CK_SP800_108_COUNTER_FORMAT>(d.pValue, d.ulValueLen, what) }?;
        Ok(IntFormat {
            little_endian: f.bLittleEndian != 0,
            bits: f.ulWidthInBits as u64,
        })
    };
    Ok(match d.type_ {
        CK_SP800_108_ITERATION_VARIABLE if d.pValue.is_null() && d.ulValueLen == 0 => {
            KbkdfField::Iteration(None)
        }
        CK_SP800_108_ITERATION_VARIABLE => {
            KbkdfField::Iteration(Some(format("CK_SP800_108_COUNTER_FORMAT expected")?))
        }
        CK_SP800_108_COUNTER => {
            KbkdfField::Counter(format("CK_SP800_108_COUNTER_FORMAT expected")?)
        }
        CK_SP800_108_DKM_LENGTH => {
            const WHAT: &str = "CK_SP800_108_DKM_LENGTH_FORMAT expected";
            // SAFETY: forwarded contract; NULL, size and alignment checked.
            let f = unsafe {
                guard::param::<CK_SP800_108_DKM_LENGTH_FORMAT>(d.pValue, d.ulValueLen, WHAT)
            }?;
            let method = match f.dkmLengthMethod {
                CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS => DkmMethod::SumOfKeys,
                CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS => DkmMethod::SumOfSegments,
                _ => return Err(param_invalid("DKM length method")),
            };
            let format = IntFormat {
                little_endian: f.bLittleEndian != 0,
                bits: f.ulWidthInBits as u64,
            };
            KbkdfField::DkmLength(method, format)
        }
        CK_SP800_108_BYTE_ARRAY => {
            // SAFETY: pValue valid for ulValueLen bytes per the contract; capped.
            let b = unsafe {
                param_bytes(
                    d.pValue as *const u8,
                    d.ulValueLen,
                    MAX_DATA,
                    "SP 800-108 byte array",
                )
            }?;
            KbkdfField::Bytes(b)
        }
        CK_SP800_108_KEY_HANDLE => {
            return Err(param_invalid(
                "CK_SP800_108_KEY_HANDLE fields are not supported",
            ));
        }
        _ => return Err(param_invalid("unknown SP 800-108 data field type")),
    })
}

/// Writes the handles of the additional SP 800-108 keys (or `CK_INVALID_HANDLE` to all
/// of them when the derivation failed) into their `CK_DERIVED_KEY.phKey`.
///
/// # Safety
/// `m` is the mechanism [`mechanism`] parsed as `Mechanism::Kbkdf`, and its `phKey`s are
/// writable.
pub unsafe fn kbkdf_write_handles(m: *const CK_MECHANISM, handles: Option<&[u64]>) {
    // SAFETY: parsed before, so non-null, aligned and of the right size.
    let Ok(m) = (unsafe { guard::reference(m, "pMechanism") }) else {
        return;
    };
    let kind = MechanismType(m.mechanism as u64);
    // SAFETY: as above.
    let Ok(raw) = (unsafe { kbkdf_raw(kind, m.pParameter, m.ulParameterLen) }) else {
        return;
    };
    // SAFETY: as above: checked at parse time.
    let Ok(keys) = (unsafe { guard::array(raw.extra.0, raw.extra.1, MAX_KBKDF_KEYS, "keys") })
    else {
        return;
    };
    for (i, k) in keys.iter().enumerate() {
        // SAFETY: checked at parse time: each phKey non-null, aligned and writable.
        if let Ok(out) = unsafe { guard::out_ref(k.phKey, "phKey") } {
            *out = handles.and_then(|h| h.get(i)).copied().unwrap_or(0) as CK_OBJECT_HANDLE;
        }
    }
}

/// The `CK_GCM_MESSAGE_PARAMS` of one message-based AES-GCM call: the parameters as the
/// runtime takes them, and the struct itself (the token writes a generated IV into `pIv`
/// and the tag into `pTag`). The tag length is whole bytes of at most 16, and `pTag` must
/// be there for it.
///
/// # Safety
/// A non-null `param` of the right size points to a `CK_GCM_MESSAGE_PARAMS` whose
/// pointers are valid for their lengths (`pTag` for `ulTagBits / 8` bytes).
pub unsafe fn gcm_message<'a>(
    param: *mut c_void,
    len: CK_ULONG,
) -> Result<(&'a mut CK_GCM_MESSAGE_PARAMS, GcmMessage), Error> {
    const WHAT: &str = "CK_GCM_MESSAGE_PARAMS expected";
    // SAFETY: forwarded contract; NULL, size and alignment checked.
    let p = unsafe { guard::param_mut::<CK_GCM_MESSAGE_PARAMS>(param, len, WHAT) }?;
    // SAFETY: pIv valid for ulIvLen bytes per the contract; capped.
    let iv = unsafe { param_bytes(p.pIv, p.ulIvLen, 256, "GCM IV: 1 to 256 bytes, not NULL") }?;
    if p.ulTagBits > 128 || p.ulTagBits % 8 != 0 || p.pTag.is_null() {
        return Err(param_invalid(
            "GCM tag: whole bytes up to 128 bits, and pTag set",
        ));
    }
    let m = GcmMessage {
        iv,
        iv_fixed_bits: p.ulIvFixedBits as u64,
        generator: IvGenerator(p.ivGenerator as u64),
        tag_bits: p.ulTagBits as u64,
    };
    Ok((p, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rv(r: Result<Mechanism, Error>) -> CK_RV {
        r.map_or_else(|e| e.rv(), |_| CKR_OK)
    }

    /// A parameter struct one byte off its alignment is refused like a NULL one.
    #[test]
    fn misaligned_parameter_structs_are_param_invalid() {
        #[repr(C, align(8))]
        struct Buf([u8; 2 * size_of::<CK_GCM_PARAMS>()]);
        let mut buf = Buf([0; 2 * size_of::<CK_GCM_PARAMS>()]);
        let mut gcm = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: buf.0.as_mut_ptr().wrapping_add(1) as *mut c_void,
            ulParameterLen: size_of::<CK_GCM_PARAMS>() as CK_ULONG,
        };
        // SAFETY: the misaligned parameter is refused before it is read.
        assert_eq!(rv(unsafe { mechanism(&gcm) }), CKR_MECHANISM_PARAM_INVALID);
        gcm.pParameter = buf.0.as_mut_ptr() as *mut c_void;
        // SAFETY: an all-zero CK_GCM_PARAMS (no IV, no AAD) inside `buf`.
        assert_eq!(rv(unsafe { mechanism(&gcm) }), CKR_OK);
        for (kind, size) in [
            (CKM_RSA_PKCS_PSS, size_of::<CK_RSA_PKCS_PSS_PARAMS>()),
            (CKM_RSA_PKCS_OAEP, size_of::<CK_RSA_PKCS_OAEP_PARAMS>()),
            (CKM_HKDF_DERIVE, size_of::<CK_HKDF_PARAMS>()),
            (CKM_ECDH1_DERIVE, size_of::<CK_ECDH1_DERIVE_PARAMS>()),
            (CKM_EDDSA, size_of::<CK_EDDSA_PARAMS>()),
            (
                CKM_SP800_108_COUNTER_KDF,
                size_of::<CK_SP800_108_KDF_PARAMS>(),
            ),
        ] {
            let m = CK_MECHANISM {
                mechanism: kind,
                pParameter: buf.0.as_mut_ptr().wrapping_add(4) as *mut c_void,
                ulParameterLen: size as CK_ULONG,
            };
            // SAFETY: refused before the parameter is read.
            let r = unsafe { mechanism(&m) };
            assert_eq!(rv(r), CKR_MECHANISM_PARAM_INVALID, "{kind:#x}");
        }
    }

    #[test]
    fn a_misaligned_mechanism_is_arguments_bad() {
        let buf = [0u64; 4];
        let m = (buf.as_ptr() as *const u8).wrapping_add(1) as *const CK_MECHANISM;
        // SAFETY: refused before it is read.
        assert_eq!(rv(unsafe { mechanism(m) }), CKR_ARGUMENTS_BAD);
        // SAFETY: NULL is refused.
        let r = unsafe { mechanism(std::ptr::null()) };
        assert_eq!(rv(r), CKR_ARGUMENTS_BAD);
    }
}
