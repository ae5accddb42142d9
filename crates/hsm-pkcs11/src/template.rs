//! `CK_ATTRIBUTE` arrays to and from typed attribute sets. Every array and value is
//! reached through the pointer guards (`crate::guard`).

use crate::boundary::Error;
use crate::guard;
use cryptoki_sys::*;
use hsm_core::Error as CoreError;
use hsm_core::objects::attrs::{Readable, readable};
use hsm_core::types::policy::{self, ValueKind};
use hsm_core::types::{AttrValue, AttributeSet, AttributeType};

/// Most attributes a template may carry; a larger count is refused before anything is
/// allocated from it.
pub const MAX_TEMPLATE: usize = 1024;
/// Largest single attribute value accepted (certificates are the big ones).
pub const MAX_VALUE: usize = 1 << 20;

const ULONG: usize = std::mem::size_of::<CK_ULONG>();

/// A caller's template: NULL with a count, too many entries or a misaligned array is
/// `CKR_ARGUMENTS_BAD`.
///
/// # Safety
/// A non-null `ptr` points to `count` readable `CK_ATTRIBUTE`s whose value pointers are
/// valid for their lengths.
unsafe fn attributes<'a>(
    ptr: *const CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<&'a [CK_ATTRIBUTE], Error> {
    // SAFETY: forwarded contract.
    unsafe { guard::array(ptr, count, MAX_TEMPLATE, "pTemplate") }
}

/// Parses a caller's template. Unknown types, values of the wrong size, and the same type
/// twice with different values are refused with the matching `CKR_*`.
///
/// # Safety
/// As `attributes`.
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
        // SAFETY: the caller guarantees the value is readable for its length (NULL with
        // a length and oversized values are refused above).
        let bytes =
            unsafe { guard::bytes(a.pValue as *const u8, a.ulValueLen, MAX_VALUE, "pValue") }?;
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
                if !bytes.len().is_multiple_of(ULONG) {
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
                let element = std::mem::size_of::<CK_ATTRIBUTE>();
                if depth > 0 || !len.is_multiple_of(element) {
                    return Err(invalid("nested template"));
                }
                let (inner, n) = (a.pValue as *const CK_ATTRIBUTE, len / element);
                // A misaligned array is answered like the value's other faults (an invalid
                // value, not a bad argument); too many entries stay CKR_ARGUMENTS_BAD.
                if n > 0 && n <= MAX_TEMPLATE && !inner.is_aligned() {
                    return Err(invalid("nested template not aligned for CK_ATTRIBUTE"));
                }
                // SAFETY: the value is an array of n CK_ATTRIBUTEs (its length says so);
                // an empty one may come as NULL, which `attributes` answers with no
                // entries.
                let inner = unsafe { attributes(inner, n as CK_ULONG) }?;
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
/// elements get their types filled in and their values written by the same rules (a
/// buffer misaligned for `CK_ATTRIBUTE` counts as no room).
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
        let elements = a.pValue as *mut CK_ATTRIBUTE;
        if (a.ulValueLen as usize) < need || !elements.is_aligned() {
            a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
            return false;
        }
        let count = inner.len() as CK_ULONG;
        // SAFETY: the buffer holds ulValueLen >= need bytes, room for inner.len()
        // CK_ATTRIBUTEs (checked above), writable per the contract.
        let Ok(elements) = (unsafe { guard::array_mut(elements, count, usize::MAX, "pValue") })
        else {
            a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
            return false;
        };
        let mut fits = true;
        for (e, (t, value)) in elements.iter_mut().zip(inner.iter()) {
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
        // SAFETY: pValue is non-null and writable for ulValueLen >= bytes.len() bytes.
        unsafe { guard::write_array(a.pValue as *mut u8, &bytes) };
        a.ulValueLen = bytes.len() as CK_ULONG;
        true
    }
}

/// Fills a `C_GetAttributeValue` template from an object: every entry is processed;
/// the call's result is the most significant problem met (sensitive, then unknown type,
/// then buffer too small), as PKCS#11 §5.7 allows.
///
/// # Safety
/// As `attributes`, and each non-null `pValue` is writable for `ulValueLen` bytes.
pub unsafe fn fill(
    obj: &AttributeSet,
    ptr: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Result<(), Error> {
    // SAFETY: forwarded contract (the entries are the caller's, writable).
    let attrs = unsafe { guard::array_mut(ptr, count, MAX_TEMPLATE, "pTemplate") }?;
    let (mut sensitive, mut invalid, mut small) = (false, false, false);
    for a in attrs {
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

    /// The answer to parsing `count` entries at `ptr`.
    ///
    /// # Safety
    /// As [`parse`].
    unsafe fn rv(ptr: *const CK_ATTRIBUTE, count: CK_ULONG) -> CK_RV {
        // SAFETY: forwarded contract.
        unsafe { parse(ptr, count) }.map_or_else(|e| e.rv(), |_| CKR_OK)
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
        let mut short = [1u8, 2, 3];
        let bad_ulong = [attr(CKA_CLASS, &mut short)];
        let mut x = [0u8; 4];
        let unknown = [attr(0x8123_4567, &mut x)];
        let (mut a, mut b) = ([1u8], [0u8]);
        let dup = [attr(CKA_TOKEN, &mut a), attr(CKA_TOKEN, &mut b)];
        let null_value = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: std::ptr::null_mut(),
            ulValueLen: 5,
        }];
        let huge = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: label.as_mut_ptr() as *mut _,
            ulValueLen: 1 << 40,
        }];
        // SAFETY: valid local arrays; NULL with a count, the huge value length and the
        // huge count are refused before anything is read.
        unsafe {
            assert_eq!(rv(bad_bool.as_ptr(), 1), CKR_ATTRIBUTE_VALUE_INVALID);
            assert_eq!(rv(bad_ulong.as_ptr(), 1), CKR_ATTRIBUTE_VALUE_INVALID);
            assert_eq!(rv(unknown.as_ptr(), 1), CKR_ATTRIBUTE_TYPE_INVALID);
            assert_eq!(rv(dup.as_ptr(), 2), CKR_TEMPLATE_INCONSISTENT);
            assert_eq!(rv(null_value.as_ptr(), 1), CKR_ATTRIBUTE_VALUE_INVALID);
            assert_eq!(rv(std::ptr::null(), 3), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(huge.as_ptr(), 1), CKR_ATTRIBUTE_VALUE_INVALID);
            assert_eq!(rv(good.as_ptr(), 1 << 40), CKR_ARGUMENTS_BAD);
        }
    }

    #[test]
    fn misaligned_templates_are_refused() {
        // Room for two attributes, viewed one byte off CK_ATTRIBUTE's alignment.
        let buf = [0u64; 8];
        let off = (buf.as_ptr() as *const u8).wrapping_add(1) as *const CK_ATTRIBUTE;
        let mut inner = [0u64; 4];
        let nested = [CK_ATTRIBUTE {
            type_: CKA_WRAP_TEMPLATE,
            pValue: (inner.as_mut_ptr() as *mut u8).wrapping_add(4) as *mut _,
            ulValueLen: std::mem::size_of::<CK_ATTRIBUTE>() as CK_ULONG,
        }];
        // SAFETY: misaligned arrays are refused before they are read.
        unsafe {
            assert_eq!(rv(off, 1), CKR_ARGUMENTS_BAD);
            assert_eq!(rv(nested.as_ptr(), 1), CKR_ATTRIBUTE_VALUE_INVALID);
        }
    }
}
