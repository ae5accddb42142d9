//! `CK_ATTRIBUTE` arrays to and from typed attribute sets, `CK_MECHANISM` to the core's
//! parsed mechanism, and the pointer guards every entry point uses.

use crate::boundary::Error;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::GcmMessage;
use hsm_core::mechanism::{EcKdf, HkdfSalt, IvGenerator, Mechanism, Mgf};
use hsm_core::objects::attrs::{Readable, readable};
use hsm_core::types::policy::{self, ValueKind};
use hsm_core::types::{AttrValue, AttributeSet, AttributeType, MechanismType};

/// Most attributes a template may carry; a larger count is refused before anything is
/// allocated from it.
pub const MAX_TEMPLATE: usize = 1024;
/// Largest single attribute value accepted (certificates are the big ones).
pub const MAX_VALUE: usize = 1 << 20;
/// Largest data buffer a single call takes.
pub const MAX_DATA: usize = 64 << 20;

const ULONG: usize = std::mem::size_of::<CK_ULONG>();

/// `(ptr, len)` to a slice: NULL with length 0 is an empty slice; NULL with a length, or
/// a length beyond `max`, is refused.
///
/// # Safety
/// A non-null `ptr` points to `len` readable bytes.
pub unsafe fn slice<'a>(
    ptr: *const u8,
    len: CK_ULONG,
    max: usize,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    let len = usize::try_from(len).map_err(|_| Error::bad(what))?;
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || len > max {
        return Err(Error::bad(what));
    }
    // SAFETY: the caller guarantees ptr points to len readable bytes; both were checked.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Like [`slice`], for data to be processed: too much data is a length error.
///
/// # Safety
/// As [`slice`].
pub unsafe fn data<'a>(
    ptr: *const u8,
    len: CK_ULONG,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    if usize::try_from(len).map_or(true, |l| l > MAX_DATA) {
        return Err(CoreError::DataLenRange.into());
    }
    // SAFETY: forwarded contract.
    unsafe { slice(ptr, len, MAX_DATA, what) }
}

/// # Safety
/// A non-null `ptr` points to `count` readable `CK_ATTRIBUTE`s whose value pointers are
/// valid for their lengths.
unsafe fn attributes<'a>(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<&'a [CK_ATTRIBUTE], Error> {
    let count = usize::try_from(count).map_err(|_| Error::bad("ulCount"))?;
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::bad("pTemplate is NULL with a non-zero count"));
    }
    if count > MAX_TEMPLATE {
        return Err(Error::bad("template has too many attributes"));
    }
    // SAFETY: checked non-null; the caller guarantees count readable entries.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Parses a caller's template. Unknown types, values of the wrong size, and the same type
/// twice with different values are refused with the matching `CKR_*`.
///
/// # Safety
/// As [`attributes`].
pub unsafe fn parse(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> Result<AttributeSet, Error> {
    // SAFETY: forwarded contract.
    let attrs = unsafe { attributes(ptr, count) }?;
    parse_depth(attrs, 0)
}

fn parse_depth(attrs: &[CK_ATTRIBUTE], depth: u32) -> Result<AttributeSet, Error> {
    let mut set = AttributeSet::new();
    for a in attrs {
        let t = AttributeType(a.type_ as u64);
        let rule = policy::rule(t).ok_or(CoreError::AttributeTypeInvalid)?;
        let invalid =
            |why: &str| Error::Core(CoreError::AttributeValueInvalid(format!("{t:?}: {why}")));
        let len = usize::try_from(a.ulValueLen).map_err(|_| invalid("length"))?;
        if len > MAX_VALUE {
            return Err(invalid("value too long"));
        }
        if a.pValue.is_null() && len > 0 {
            return Err(invalid("NULL value with a length"));
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: non-null, length capped; the caller guarantees it is readable.
            unsafe { std::slice::from_raw_parts(a.pValue as *const u8, len) }
        };
        let v = match rule.kind {
            ValueKind::Bool => match bytes {
                [b] => AttrValue::Bool(*b != 0),
                _ => return Err(invalid("CK_BBOOL must be one byte")),
            },
            ValueKind::Ulong => {
                let arr: [u8; ULONG] = bytes
                    .try_into()
                    .map_err(|_| invalid("CK_ULONG of the wrong size"))?;
                AttrValue::Ulong(CK_ULONG::from_ne_bytes(arr) as u64)
            }
            ValueKind::Bytes | ValueKind::Date => AttrValue::Bytes(bytes.to_vec()),
            ValueKind::Mechanisms => {
                if bytes.len() % ULONG != 0 {
                    return Err(invalid("not a whole number of mechanisms"));
                }
                AttrValue::Mechanisms(
                    bytes
                        .chunks_exact(ULONG)
                        .map(|c| CK_ULONG::from_ne_bytes(c.try_into().unwrap_or_default()) as u64)
                        .collect(),
                )
            }
            ValueKind::Template => {
                if depth > 0 || len % std::mem::size_of::<CK_ATTRIBUTE>() != 0 {
                    return Err(invalid("nested template"));
                }
                let n = len / std::mem::size_of::<CK_ATTRIBUTE>();
                // SAFETY: the value is an array of n CK_ATTRIBUTEs (its length says so);
                // an empty one may come as NULL, which `attributes` answers with no entries.
                let inner = unsafe { attributes(a.pValue as *const CK_ATTRIBUTE, n as CK_ULONG) }?;
                AttrValue::Template(parse_depth(inner, depth + 1)?)
            }
        };
        match set.get(t) {
            Some(old) if *old != v => {
                return Err(CoreError::TemplateInconsistent(format!(
                    "{t:?} given twice with different values"
                ))
                .into());
            }
            _ => set.set(t, v),
        }
    }
    Ok(set)
}

fn encode(v: &AttrValue) -> Vec<u8> {
    match v {
        AttrValue::Bool(b) => vec![*b as u8],
        AttrValue::Ulong(u) => (*u as CK_ULONG).to_ne_bytes().to_vec(),
        AttrValue::Bytes(b) => b.clone(),
        AttrValue::Mechanisms(m) => m
            .iter()
            .flat_map(|x| (*x as CK_ULONG).to_ne_bytes())
            .collect(),
        // Array attributes are written element by element by `put`, never encoded whole.
        AttrValue::Template(_) => Vec::new(),
    }
}

/// Writes one value into a caller's `CK_ATTRIBUTE` by the rules of `C_GetAttributeValue`:
/// a NULL `pValue` asks for the length, a short buffer gets `CK_UNAVAILABLE_INFORMATION`
/// (the answer is `false`), otherwise the value is copied. An array attribute
/// (`CKA_WRAP_TEMPLATE` & co.) is `count × sizeof(CK_ATTRIBUTE)` long; given room, its
/// elements get their types filled in and their values written by the same rules.
///
/// # Safety
/// A non-null `a.pValue` is writable for `a.ulValueLen` bytes; for an array attribute
/// it holds that many bytes of `CK_ATTRIBUTE`s whose own `pValue`s obey this contract.
unsafe fn put(a: &mut CK_ATTRIBUTE, v: &AttrValue) -> bool {
    if let AttrValue::Template(inner) = v {
        let need = inner.len() * std::mem::size_of::<CK_ATTRIBUTE>();
        if a.pValue.is_null() {
            a.ulValueLen = need as CK_ULONG;
            return true;
        }
        if (a.ulValueLen as usize) < need || !a.pValue.cast::<CK_ATTRIBUTE>().is_aligned() {
            a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
            return false;
        }
        let elements = a.pValue as *mut CK_ATTRIBUTE;
        let mut fits = true;
        for (i, (t, value)) in inner.iter().enumerate() {
            // SAFETY: i < inner.len() elements fit in the caller's buffer (checked above).
            let e = unsafe { &mut *elements.add(i) };
            e.type_ = t.0 as CK_ATTRIBUTE_TYPE;
            // SAFETY: forwarded contract for the element's own buffer.
            fits &= unsafe { put(e, value) };
        }
        a.ulValueLen = need as CK_ULONG;
        return fits;
    }
    let bytes = encode(v);
    if a.pValue.is_null() {
        a.ulValueLen = bytes.len() as CK_ULONG;
        true
    } else if (a.ulValueLen as usize) < bytes.len() {
        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
        false
    } else {
        // SAFETY: pValue is writable for ulValueLen >= bytes.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), a.pValue as *mut u8, bytes.len()) };
        a.ulValueLen = bytes.len() as CK_ULONG;
        true
    }
}

/// Fills a `C_GetAttributeValue` template from an object: every entry is processed;
/// the call's result is the most significant problem met (sensitive, then unknown type,
/// then buffer too small), as PKCS#11 §5.7 allows.
///
/// # Safety
/// As [`attributes`], and each non-null `pValue` is writable for `ulValueLen` bytes.
pub unsafe fn fill(
    obj: &AttributeSet,
    ptr: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<(), Error> {
    // SAFETY: forwarded contract.
    let attrs = unsafe { attributes(ptr, count) }?;
    let n = attrs.len();
    let (mut sensitive, mut invalid, mut small) = (false, false, false);
    for i in 0..n {
        // SAFETY: i < n entries, writable per the contract.
        let a = unsafe { &mut *ptr.add(i) };
        let t = AttributeType(a.type_ as u64);
        match readable(obj, t) {
            Readable::Sensitive => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                sensitive = true;
            }
            Readable::Absent => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                invalid = true;
            }
            Readable::Value(v) => {
                // SAFETY: the caller's buffers obey `put`'s contract (ours).
                small |= !unsafe { put(a, v) };
            }
        }
    }
    if sensitive {
        Err(CoreError::AttributeSensitive.into())
    } else if invalid {
        Err(CoreError::AttributeTypeInvalid.into())
    } else if small {
        Err(CoreError::BufferTooSmall(0).into())
    } else {
        Ok(())
    }
}

/// Parses `CK_MECHANISM` with the parameters this module understands.
///
/// # Safety
/// A non-null `m` points to a `CK_MECHANISM` whose parameter pointer is valid for its
/// length.
pub unsafe fn mechanism(m: *const CK_MECHANISM) -> Result<Mechanism, Error> {
    // SAFETY: null is rejected; otherwise valid per the contract.
    let m = unsafe { m.as_ref() }.ok_or(Error::bad("pMechanism is NULL"))?;
    let kind = MechanismType(m.mechanism as u64);
    let plen = m.ulParameterLen as usize;
    let param_invalid = |why: &str| Error::Core(CoreError::MechanismParamInvalid(why.to_owned()));
    match kind {
        MechanismType::RSA_PKCS_PSS
        | MechanismType::SHA256_RSA_PKCS_PSS
        | MechanismType::SHA384_RSA_PKCS_PSS
        | MechanismType::SHA512_RSA_PKCS_PSS => {
            if m.pParameter.is_null() || plen != std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() {
                return Err(param_invalid("CK_RSA_PKCS_PSS_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_RSA_PKCS_PSS_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_RSA_PKCS_PSS_PARAMS) };
            Ok(Mechanism::Pss {
                mechanism: kind,
                hash: MechanismType(p.hashAlg as u64),
                mgf: Mgf(p.mgf as u64),
                salt_len: p.sLen as u64,
            })
        }
        MechanismType::AES_GCM => {
            if m.pParameter.is_null() || plen != std::mem::size_of::<CK_GCM_PARAMS>() {
                return Err(param_invalid("CK_GCM_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_GCM_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_GCM_PARAMS) };
            // SAFETY: pointers valid for their lengths per the contract; capped.
            let iv = unsafe { slice(p.pIv, p.ulIvLen, 256, "GCM IV") }
                .map_err(|_| param_invalid("GCM IV"))?;
            // SAFETY: as above.
            let aad = unsafe { slice(p.pAAD, p.ulAADLen, MAX_DATA, "GCM AAD") }
                .map_err(|_| param_invalid("GCM AAD"))?;
            Ok(Mechanism::Gcm {
                iv: iv.to_vec(),
                aad: aad.to_vec(),
                tag_bits: p.ulTagBits as u64,
            })
        }
        MechanismType::AES_KEY_WRAP | MechanismType::AES_KEY_WRAP_KWP if m.pParameter.is_null() => {
            Ok(Mechanism::Plain(kind))
        }
        MechanismType::AES_CBC
        | MechanismType::AES_CBC_PAD
        | MechanismType::AES_KEY_WRAP
        | MechanismType::AES_KEY_WRAP_KWP => {
            // SAFETY: pointer valid for its length per the contract; capped.
            let iv = unsafe { slice(m.pParameter as *const u8, m.ulParameterLen, 64, "IV") }
                .map_err(|_| param_invalid("IV"))?;
            Ok(Mechanism::Iv {
                mechanism: kind,
                iv: iv.to_vec(),
            })
        }
        MechanismType::EDDSA if !m.pParameter.is_null() => {
            if plen != std::mem::size_of::<CK_EDDSA_PARAMS>() {
                return Err(param_invalid("CK_EDDSA_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_EDDSA_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_EDDSA_PARAMS) };
            if p.phFlag != 0 || p.ulContextDataLen != 0 {
                return Err(param_invalid(
                    "only plain Ed25519 (no pre-hash, no context) is supported",
                ));
            }
            Ok(Mechanism::Plain(kind))
        }
        MechanismType::SP800_108_COUNTER_KDF | MechanismType::SP800_108_FEEDBACK_KDF => {
            // SAFETY: forwarded contract (sizes are checked inside).
            unsafe { kbkdf(kind, m.pParameter, plen) }
        }
        MechanismType::HKDF_DERIVE => {
            if m.pParameter.is_null() || plen != std::mem::size_of::<CK_HKDF_PARAMS>() {
                return Err(param_invalid("CK_HKDF_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_HKDF_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_HKDF_PARAMS) };
            // SAFETY: pointers valid for their lengths per the contract; capped.
            let salt = unsafe { slice(p.pSalt, p.ulSaltLen, 4096, "HKDF salt") }
                .map_err(|_| param_invalid("HKDF salt"))?;
            // SAFETY: as above.
            let info = unsafe { slice(p.pInfo, p.ulInfoLen, 4096, "HKDF info") }
                .map_err(|_| param_invalid("HKDF info"))?;
            Ok(Mechanism::Hkdf {
                extract: p.bExtract != 0,
                expand: p.bExpand != 0,
                prf: MechanismType(p.prfHashMechanism as u64),
                salt_type: HkdfSalt(p.ulSaltType as u64),
                salt: salt.to_vec(),
                info: info.to_vec(),
            })
        }
        MechanismType::RSA_PKCS_OAEP => {
            if m.pParameter.is_null() || plen != std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>() {
                return Err(param_invalid("CK_RSA_PKCS_OAEP_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_RSA_PKCS_OAEP_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_RSA_PKCS_OAEP_PARAMS) };
            if p.source != 0 && p.source != CKZ_DATA_SPECIFIED {
                return Err(param_invalid("OAEP source must be CKZ_DATA_SPECIFIED"));
            }
            // SAFETY: pointer valid for its length per the contract; capped. NULL with a
            // length is refused.
            let label = unsafe {
                slice(
                    p.pSourceData as *const u8,
                    p.ulSourceDataLen,
                    4096,
                    "OAEP label",
                )
            }
            .map_err(|_| param_invalid("OAEP label"))?;
            Ok(Mechanism::Oaep {
                hash: MechanismType(p.hashAlg as u64),
                mgf: Mgf(p.mgf as u64),
                label: label.to_vec(),
            })
        }
        MechanismType::ECDH1_DERIVE => {
            if m.pParameter.is_null() || plen != std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() {
                return Err(param_invalid("CK_ECDH1_DERIVE_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_ECDH1_DERIVE_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_ECDH1_DERIVE_PARAMS) };
            // SAFETY: pointers valid for their lengths per the contract; capped.
            let shared = unsafe { slice(p.pSharedData, p.ulSharedDataLen, 4096, "shared data") }
                .map_err(|_| param_invalid("shared data"))?;
            // SAFETY: as above.
            let public = unsafe { slice(p.pPublicData, p.ulPublicDataLen, 1024, "public data") }
                .map_err(|_| param_invalid("public data"))?;
            Ok(Mechanism::Ecdh {
                kdf: EcKdf(p.kdf as u64),
                shared_data: shared.to_vec(),
                public_data: public.to_vec(),
            })
        }
        MechanismType::AES_CTR => {
            if m.pParameter.is_null() || plen != std::mem::size_of::<CK_AES_CTR_PARAMS>() {
                return Err(param_invalid("CK_AES_CTR_PARAMS expected"));
            }
            // SAFETY: size checked; the caller passes a CK_AES_CTR_PARAMS.
            let p = unsafe { &*(m.pParameter as *const CK_AES_CTR_PARAMS) };
            // The whole 128-bit block counts; a narrower counter would only differ after
            // 2^bits blocks, which the input caps never reach for bits >= 32.
            if p.ulCounterBits < 32 || p.ulCounterBits > 128 {
                return Err(param_invalid("ulCounterBits must be 32 to 128"));
            }
            Ok(Mechanism::Iv {
                mechanism: kind,
                iv: p.cb.to_vec(),
            })
        }
        _ => Ok(Mechanism::Plain(kind)),
    }
}

/// Writes `bytes` to a caller's output buffer with the PKCS#11 length convention: NULL
/// output reports the length; too small reports the length and `CKR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `out_len` is valid; a non-null `out` is writable for `*out_len` bytes.
pub unsafe fn write_out(bytes: &[u8], out: *mut u8, out_len: *mut CK_ULONG) -> Result<(), Error> {
    // SAFETY: checked by the caller's contract; null rejected.
    let len = unsafe { out_len.as_mut() }.ok_or(Error::bad("output length pointer is NULL"))?;
    if out.is_null() {
        *len = bytes.len() as CK_ULONG;
        return Ok(());
    }
    if (*len as usize) < bytes.len() {
        *len = bytes.len() as CK_ULONG;
        return Err(CoreError::BufferTooSmall(bytes.len()).into());
    }
    // SAFETY: out is writable for *len >= bytes.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    *len = bytes.len() as CK_ULONG;
    Ok(())
}

/// The raw SP 800-108 parameters: PRF, data fields, IV and additional keys (counter mode
/// has no IV).
struct KbkdfRaw {
    prf: CK_MECHANISM_TYPE,
    count: CK_ULONG,
    data: *mut CK_PRF_DATA_PARAM,
    iv: (*mut CK_BYTE, CK_ULONG),
    extra: (CK_ULONG, *mut CK_DERIVED_KEY),
}

/// # Safety
/// A non-null `p` of the right size points to the mechanism's parameter struct.
unsafe fn kbkdf_raw(
    kind: MechanismType,
    p: *mut std::ffi::c_void,
    len: usize,
) -> Result<KbkdfRaw, Error> {
    let param_invalid = |why: &str| Error::Core(CoreError::MechanismParamInvalid(why.to_owned()));
    if kind == MechanismType::SP800_108_FEEDBACK_KDF {
        if p.is_null() || len != std::mem::size_of::<CK_SP800_108_FEEDBACK_KDF_PARAMS>() {
            return Err(param_invalid("CK_SP800_108_FEEDBACK_KDF_PARAMS expected"));
        }
        // SAFETY: size checked.
        let p = unsafe { &*(p as *const CK_SP800_108_FEEDBACK_KDF_PARAMS) };
        Ok(KbkdfRaw {
            prf: p.prfType,
            count: p.ulNumberOfDataParams,
            data: p.pDataParams,
            iv: (p.pIV, p.ulIVLen),
            extra: (p.ulAdditionalDerivedKeys, p.pAdditionalDerivedKeys),
        })
    } else {
        if p.is_null() || len != std::mem::size_of::<CK_SP800_108_KDF_PARAMS>() {
            return Err(param_invalid("CK_SP800_108_KDF_PARAMS expected"));
        }
        // SAFETY: size checked.
        let p = unsafe { &*(p as *const CK_SP800_108_KDF_PARAMS) };
        Ok(KbkdfRaw {
            prf: p.prfType,
            count: p.ulNumberOfDataParams,
            data: p.pDataParams,
            iv: (std::ptr::null_mut(), 0),
            extra: (p.ulAdditionalDerivedKeys, p.pAdditionalDerivedKeys),
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
unsafe fn kbkdf(
    kind: MechanismType,
    p: *mut std::ffi::c_void,
    len: usize,
) -> Result<Mechanism, Error> {
    use hsm_core::crypto::{DkmMethod, IntFormat, KbkdfField};
    let param_invalid = |why: &str| Error::Core(CoreError::MechanismParamInvalid(why.to_owned()));
    // SAFETY: forwarded contract.
    let raw = unsafe { kbkdf_raw(kind, p, len) }?;
    let count = raw.count as usize;
    if count > MAX_KBKDF_FIELDS || (count > 0 && raw.data.is_null()) {
        return Err(param_invalid("SP 800-108 data parameters"));
    }
    let mut fields = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: pDataParams holds ulNumberOfDataParams entries (checked non-null).
        let d = unsafe { &*raw.data.add(i) };
        let vlen = d.ulValueLen as usize;
        let format = |what: &str| -> Result<IntFormat, Error> {
            if d.pValue.is_null() || vlen != std::mem::size_of::<CK_SP800_108_COUNTER_FORMAT>() {
                return Err(param_invalid(what));
            }
            // SAFETY: size checked.
            let f = unsafe { &*(d.pValue as *const CK_SP800_108_COUNTER_FORMAT) };
            Ok(IntFormat {
                little_endian: f.bLittleEndian != 0,
                bits: f.ulWidthInBits as u64,
            })
        };
        fields.push(match d.type_ {
            CK_SP800_108_ITERATION_VARIABLE if d.pValue.is_null() && vlen == 0 => {
                KbkdfField::Iteration(None)
            }
            CK_SP800_108_ITERATION_VARIABLE => {
                KbkdfField::Iteration(Some(format("CK_SP800_108_COUNTER_FORMAT expected")?))
            }
            CK_SP800_108_COUNTER => {
                KbkdfField::Counter(format("CK_SP800_108_COUNTER_FORMAT expected")?)
            }
            CK_SP800_108_DKM_LENGTH => {
                if d.pValue.is_null()
                    || vlen != std::mem::size_of::<CK_SP800_108_DKM_LENGTH_FORMAT>()
                {
                    return Err(param_invalid("CK_SP800_108_DKM_LENGTH_FORMAT expected"));
                }
                // SAFETY: size checked.
                let f = unsafe { &*(d.pValue as *const CK_SP800_108_DKM_LENGTH_FORMAT) };
                let method = match f.dkmLengthMethod {
                    CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS => DkmMethod::SumOfKeys,
                    CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS => DkmMethod::SumOfSegments,
                    _ => return Err(param_invalid("DKM length method")),
                };
                KbkdfField::DkmLength(
                    method,
                    IntFormat {
                        little_endian: f.bLittleEndian != 0,
                        bits: f.ulWidthInBits as u64,
                    },
                )
            }
            CK_SP800_108_BYTE_ARRAY => {
                // SAFETY: pValue valid for ulValueLen bytes per the contract; capped.
                let b =
                    unsafe { slice(d.pValue as *const u8, d.ulValueLen, MAX_DATA, "byte array") }
                        .map_err(|_| param_invalid("SP 800-108 byte array"))?;
                KbkdfField::Bytes(b.to_vec())
            }
            CK_SP800_108_KEY_HANDLE => {
                return Err(param_invalid(
                    "CK_SP800_108_KEY_HANDLE fields are not supported",
                ));
            }
            _ => return Err(param_invalid("unknown SP 800-108 data field type")),
        });
    }
    // SAFETY: pIV valid for ulIVLen bytes per the contract; capped.
    let iv = unsafe { slice(raw.iv.0, raw.iv.1, 1024, "IV") }
        .map_err(|_| param_invalid("SP 800-108 feedback IV"))?
        .to_vec();
    let (n, keys) = (raw.extra.0 as usize, raw.extra.1);
    if n > MAX_KBKDF_KEYS || (n > 0 && keys.is_null()) {
        return Err(param_invalid("SP 800-108 additional derived keys"));
    }
    let mut additional = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: pAdditionalDerivedKeys holds n entries (checked non-null).
        let k = unsafe { &*keys.add(i) };
        if k.phKey.is_null() {
            return Err(Error::bad("CK_DERIVED_KEY.phKey is NULL"));
        }
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

/// Writes the handles of the additional SP 800-108 keys (or `CK_INVALID_HANDLE` to all
/// of them when the derivation failed) into their `CK_DERIVED_KEY.phKey`.
///
/// # Safety
/// `m` is the mechanism [`mechanism`] parsed as `Mechanism::Kbkdf`.
pub unsafe fn kbkdf_write_handles(m: *const CK_MECHANISM, handles: Option<&[u64]>) {
    // SAFETY: parsed before, so non-null and of the right size.
    let m = unsafe { &*m };
    let kind = MechanismType(m.mechanism as u64);
    // SAFETY: as above.
    let Ok(raw) = (unsafe { kbkdf_raw(kind, m.pParameter, m.ulParameterLen as usize) }) else {
        return;
    };
    for i in 0..raw.extra.0 as usize {
        // SAFETY: checked at parse time: n entries, each phKey non-null and writable.
        unsafe {
            let k = &*raw.extra.1.add(i);
            *k.phKey = handles.and_then(|h| h.get(i)).copied().unwrap_or(0) as CK_OBJECT_HANDLE;
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
    param: *mut std::ffi::c_void,
    len: CK_ULONG,
) -> Result<(&'a mut CK_GCM_MESSAGE_PARAMS, GcmMessage), Error> {
    let param_invalid = |why: &str| Error::Core(CoreError::MechanismParamInvalid(why.to_owned()));
    if param.is_null() || len as usize != std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>() {
        return Err(param_invalid("CK_GCM_MESSAGE_PARAMS expected"));
    }
    // SAFETY: size checked; the caller passes a CK_GCM_MESSAGE_PARAMS.
    let p = unsafe { &mut *(param as *mut CK_GCM_MESSAGE_PARAMS) };
    // SAFETY: pIv valid for ulIvLen bytes per the contract; capped.
    let iv = unsafe { slice(p.pIv, p.ulIvLen, 256, "GCM IV") }
        .map_err(|_| param_invalid("GCM IV: 1 to 256 bytes, not NULL"))?
        .to_vec();
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

/// Output-length convention for operations that end when they produce output: answers
/// a NULL buffer or a too-small one with the needed length and leaves the operation
/// active; otherwise runs `produce` (which ends it) and copies the result.
///
/// # Safety
/// As [`write_out`].
pub unsafe fn produce(
    needed: usize,
    out: *mut u8,
    out_len: *mut CK_ULONG,
    produce: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<(), Error> {
    // SAFETY: as write_out.
    let len = unsafe { out_len.as_mut() }.ok_or(Error::bad("output length pointer is NULL"))?;
    if out.is_null() {
        *len = needed as CK_ULONG;
        return Ok(());
    }
    if (*len as usize) < needed {
        *len = needed as CK_ULONG;
        return Err(CoreError::BufferTooSmall(needed).into());
    }
    let bytes = produce()?;
    // SAFETY: as write_out (bytes.len() <= needed <= *len).
    unsafe { write_out(&bytes, out, out_len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(t: CK_ATTRIBUTE_TYPE, v: &mut [u8]) -> CK_ATTRIBUTE {
        CK_ATTRIBUTE {
            type_: t,
            pValue: v.as_mut_ptr() as *mut _,
            ulValueLen: v.len() as CK_ULONG,
        }
    }

    #[test]
    fn parse_checks_sizes_types_and_duplicates() {
        let mut t = [1u8];
        let mut class = (CKO_SECRET_KEY as CK_ULONG).to_ne_bytes();
        let mut label = *b"lbl";
        let good = [
            attr(CKA_TOKEN, &mut t),
            attr(CKA_CLASS, &mut class),
            attr(CKA_LABEL, &mut label),
        ];
        // SAFETY: valid local array.
        let s = unsafe { parse(good.as_ptr(), good.len() as CK_ULONG) }.unwrap();
        assert_eq!(s.bool(AttributeType::TOKEN), Some(true));
        assert_eq!(s.ulong(AttributeType::CLASS), Some(CKO_SECRET_KEY as u64));
        let mut two = [1u8, 0];
        let bad_bool = [attr(CKA_TOKEN, &mut two)];
        // SAFETY: valid local array.
        assert_eq!(
            unsafe { parse(bad_bool.as_ptr(), 1) }.unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut short = [1u8, 2, 3];
        let bad_ulong = [attr(CKA_CLASS, &mut short)];
        // SAFETY: valid local array.
        assert_eq!(
            unsafe { parse(bad_ulong.as_ptr(), 1) }.unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut x = [0u8; 4];
        let unknown = [attr(0x8123_4567, &mut x)];
        // SAFETY: valid local array.
        assert_eq!(
            unsafe { parse(unknown.as_ptr(), 1) }.unwrap_err().rv(),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        let (mut a, mut b) = ([1u8], [0u8]);
        let dup = [attr(CKA_TOKEN, &mut a), attr(CKA_TOKEN, &mut b)];
        // SAFETY: valid local array.
        assert_eq!(
            unsafe { parse(dup.as_ptr(), 2) }.unwrap_err().rv(),
            CKR_TEMPLATE_INCONSISTENT
        );
        let null_value = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: std::ptr::null_mut(),
            ulValueLen: 5,
        }];
        // SAFETY: valid local array.
        assert_eq!(
            unsafe { parse(null_value.as_ptr(), 1) }.unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        // SAFETY: null with a count is refused before any read.
        assert_eq!(
            unsafe { parse(std::ptr::null(), 3) }.unwrap_err().rv(),
            CKR_ARGUMENTS_BAD
        );
        let huge = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: label.as_mut_ptr() as *mut _,
            ulValueLen: 1 << 40,
        }];
        // SAFETY: the claimed length is refused before the value is read.
        assert_eq!(
            unsafe { parse(huge.as_ptr(), 1) }.unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        // SAFETY: the count is refused before anything is read.
        assert_eq!(
            unsafe { parse(good.as_ptr(), 1 << 40) }.unwrap_err().rv(),
            CKR_ARGUMENTS_BAD
        );
    }
}
