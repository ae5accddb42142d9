//! SP 800-108 key derivation through `C_DeriveKey`: counter and feedback mode, the PRF
//! input built from the caller's fields, additional keys with their handles, and the
//! refusals. Expected values come from RustCrypto's HMAC applied to the SP 800-108
//! formulas, not from the token's own code.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use hmac::{KeyInit, Mac};
use std::ptr::null_mut;

const BASE: [u8; 32] = [0x3d; 32];

fn hmac256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn base_key(h: CK_SESSION_HANDLE, key_type: CK_ULONG, derive: bool) -> CK_OBJECT_HANDLE {
    create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(key_type)),
            (CKA_VALUE, Val::Bytes(BASE.to_vec())),
            (CKA_DERIVE, Val::Bool(derive)),
            (CKA_SENSITIVE, Val::Bool(false)),
            (CKA_EXTRACTABLE, Val::Bool(true)),
        ],
    )
    .unwrap()
}

fn secret(key_type: CK_ULONG, len: CK_ULONG) -> Vec<(CK_ATTRIBUTE_TYPE, Val)> {
    vec![
        (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, Val::Ulong(key_type)),
        (CKA_VALUE_LEN, Val::Ulong(len)),
    ]
}

/// The PRF input fields, with the formats they point to kept alive.
struct Fields {
    counter: CK_SP800_108_COUNTER_FORMAT,
    dkm: CK_SP800_108_DKM_LENGTH_FORMAT,
    label: Vec<u8>,
    params: Vec<CK_PRF_DATA_PARAM>,
}

impl Fields {
    /// `[i]_16 || "label" || [L]_32`, the iteration variable being the counter (counter
    /// mode) or the previous block (feedback mode, which then gets an 8-bit counter too).
    fn new(feedback: bool, method: CK_ULONG) -> Box<Fields> {
        let mut f = Box::new(Fields {
            counter: CK_SP800_108_COUNTER_FORMAT {
                bLittleEndian: 0,
                ulWidthInBits: if feedback { 8 } else { 16 },
            },
            dkm: CK_SP800_108_DKM_LENGTH_FORMAT {
                dkmLengthMethod: method,
                bLittleEndian: 0,
                ulWidthInBits: 32,
            },
            label: b"label".to_vec(),
            params: Vec::new(),
        });
        let counter = &mut f.counter as *mut _ as *mut _;
        let size = std::mem::size_of::<CK_SP800_108_COUNTER_FORMAT>() as CK_ULONG;
        let mut params = if feedback {
            vec![
                CK_PRF_DATA_PARAM {
                    type_: CK_SP800_108_ITERATION_VARIABLE,
                    pValue: null_mut(),
                    ulValueLen: 0,
                },
                CK_PRF_DATA_PARAM {
                    type_: CK_SP800_108_COUNTER,
                    pValue: counter,
                    ulValueLen: size,
                },
            ]
        } else {
            vec![CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_ITERATION_VARIABLE,
                pValue: counter,
                ulValueLen: size,
            }]
        };
        params.push(CK_PRF_DATA_PARAM {
            type_: CK_SP800_108_BYTE_ARRAY,
            pValue: f.label.as_mut_ptr() as *mut _,
            ulValueLen: f.label.len() as _,
        });
        params.push(CK_PRF_DATA_PARAM {
            type_: CK_SP800_108_DKM_LENGTH,
            pValue: &mut f.dkm as *mut _ as *mut _,
            ulValueLen: std::mem::size_of::<CK_SP800_108_DKM_LENGTH_FORMAT>() as _,
        });
        f.params = params;
        f
    }
}

/// `C_DeriveKey` with SP 800-108; `extra` are the additional keys' templates. Returns
/// the key's handle and the additional handles as the module wrote them.
fn derive(
    h: CK_SESSION_HANDLE,
    base: CK_OBJECT_HANDLE,
    prf: CK_MECHANISM_TYPE,
    fields: &mut Fields,
    iv: Option<&mut [u8]>,
    template: &[(CK_ATTRIBUTE_TYPE, Val)],
    extra: &[Vec<(CK_ATTRIBUTE_TYPE, Val)>],
) -> (Result<CK_OBJECT_HANDLE, CK_RV>, Vec<CK_OBJECT_HANDLE>) {
    let mut extra_templates: Vec<Template> = extra.iter().map(|t| Template::new(t)).collect();
    let mut handles: Vec<CK_OBJECT_HANDLE> = vec![0xdead; extra.len()];
    let mut derived: Vec<CK_DERIVED_KEY> = extra_templates
        .iter_mut()
        .zip(handles.iter_mut())
        .map(|(t, h)| {
            let (p, n) = t.raw();
            CK_DERIVED_KEY {
                pTemplate: p,
                ulAttributeCount: n,
                phKey: h,
            }
        })
        .collect();
    let extra_ptr = if derived.is_empty() {
        null_mut()
    } else {
        derived.as_mut_ptr()
    };
    let mut m = match iv {
        Some(iv) => Mech::with(
            CKM_SP800_108_FEEDBACK_KDF,
            &CK_SP800_108_FEEDBACK_KDF_PARAMS {
                prfType: prf,
                ulNumberOfDataParams: fields.params.len() as _,
                pDataParams: fields.params.as_mut_ptr(),
                ulIVLen: iv.len() as _,
                pIV: iv.as_mut_ptr(),
                ulAdditionalDerivedKeys: extra.len() as _,
                pAdditionalDerivedKeys: extra_ptr,
            },
        ),
        None => Mech::with(
            CKM_SP800_108_COUNTER_KDF,
            &CK_SP800_108_KDF_PARAMS {
                prfType: prf,
                ulNumberOfDataParams: fields.params.len() as _,
                pDataParams: fields.params.as_mut_ptr(),
                ulAdditionalDerivedKeys: extra.len() as _,
                pAdditionalDerivedKeys: extra_ptr,
            },
        ),
    };
    let mut raw = m.raw();
    let mut t = Template::new(template);
    let (tp, tn) = t.raw();
    let mut out = 0;
    // SAFETY: valid mechanism (its pointers live in `fields`, `derived`, `handles`),
    // template and output.
    let rv = unsafe { C_DeriveKey(h, &mut raw, base, tp, tn, &mut out) };
    drop(derived);
    (rv_result(rv, out), handles)
}

fn value(h: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE) -> Vec<u8> {
    attribute(h, k, CKA_VALUE).unwrap()
}

#[test]
fn counter_mode_keys_match_the_formula_and_take_whole_segments() {
    let _env = setup();
    let h = token_session();
    let base = base_key(h, CKK_GENERIC_SECRET, true);
    let mut fields = Fields::new(false, CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS);
    // A 48-byte key and a 16-byte key: three segments of HMAC-SHA-256, L = 768 bits.
    let mut t = secret(CKK_GENERIC_SECRET, 48);
    t.push((CKA_SENSITIVE, Val::Bool(false)));
    let (k, extra) = derive(
        h,
        base,
        CKM_SHA256_HMAC,
        &mut fields,
        None,
        &t,
        &[secret(CKK_AES, 16)],
    );
    let k = k.unwrap();
    let input = |i: u8| [&[0, i][..], b"label", &768u32.to_be_bytes()].concat();
    let (k1, k2, k3) = (
        hmac256(&BASE, &input(1)),
        hmac256(&BASE, &input(2)),
        hmac256(&BASE, &input(3)),
    );
    assert_eq!(value(h, k), [&k1[..], &k2[..16]].concat());
    assert_eq!(extra.len(), 1);
    assert_ne!(extra[0], 0xdead, "the additional key's handle was written");
    assert_eq!(
        value(h, extra[0]),
        k3[..16],
        "the second key starts a new segment"
    );
    // Omitted CKA_SENSITIVE/EXTRACTABLE come from the base key (here: not sensitive).
    assert_eq!(attribute(h, extra[0], CKA_SENSITIVE).unwrap(), [0]);
    assert_eq!(
        attribute(h, k, CKA_KEY_GEN_MECHANISM).unwrap(),
        CKM_SP800_108_COUNTER_KDF.to_ne_bytes()
    );
}

#[test]
fn feedback_mode_chains_the_previous_block() {
    let _env = setup();
    let h = token_session();
    let base = base_key(h, CKK_GENERIC_SECRET, true);
    let mut fields = Fields::new(true, CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS);
    let mut iv = vec![0x11u8; 32];
    let (k, _) = derive(
        h,
        base,
        CKM_SHA256_HMAC,
        &mut fields,
        Some(&mut iv),
        &secret(CKK_GENERIC_SECRET, 40),
        &[],
    );
    let l = 320u32.to_be_bytes();
    let k1 = hmac256(&BASE, &[&iv[..], &[1], b"label", &l].concat());
    let k2 = hmac256(&BASE, &[&k1[..], &[2], b"label", &l].concat());
    assert_eq!(value(h, k.unwrap()), [&k1[..], &k2[..8]].concat());
}

#[test]
fn sp800_108_refusals_derive_nothing() {
    let _env = setup();
    let h = token_session();
    let generic = base_key(h, CKK_GENERIC_SECRET, true);
    let aes = base_key(h, CKK_AES, true);
    let no_derive = base_key(h, CKK_GENERIC_SECRET, false);
    let t = secret(CKK_AES, 32);
    let mut f = Fields::new(false, CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS);
    let objects = || {
        let mut n = 0;
        let mut found = [0; 64];
        // SAFETY: an empty template and a valid buffer.
        unsafe {
            assert_eq!(C_FindObjectsInit(h, null_mut(), 0), CKR_OK);
            assert_eq!(C_FindObjects(h, found.as_mut_ptr(), 64, &mut n), CKR_OK);
            assert_eq!(C_FindObjectsFinal(h), CKR_OK);
        }
        n
    };
    let before = objects();
    for (base, prf, rv) in [
        (aes, CKM_SHA256_HMAC, CKR_KEY_TYPE_INCONSISTENT),
        (generic, CKM_AES_CMAC, CKR_KEY_TYPE_INCONSISTENT),
        (no_derive, CKM_SHA256_HMAC, CKR_KEY_FUNCTION_NOT_PERMITTED),
        (generic, CKM_SHA256, CKR_MECHANISM_PARAM_INVALID),
    ] {
        assert_eq!(
            derive(h, base, prf, &mut f, None, &t, &[]).0,
            Err(rv),
            "{prf:#x}"
        );
    }
    // A bad additional template: nothing is derived and its handle says so.
    let (k, extra) = derive(
        h,
        generic,
        CKM_SHA256_HMAC,
        &mut f,
        None,
        &t,
        &[secret(CKK_AES, 17)],
    );
    assert_eq!(k, Err(CKR_TEMPLATE_INCONSISTENT));
    assert_eq!(extra, [0], "CK_INVALID_HANDLE for the additional key");
    // A field set SP 800-108 does not allow: two iteration variables.
    let dup = f.params[0];
    f.params.push(dup);
    assert_eq!(
        derive(h, generic, CKM_SHA256_HMAC, &mut f, None, &t, &[]).0,
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    assert_eq!(objects(), before, "no key was made by any refused call");
    // AES-CMAC over an AES base key works.
    let mut f = Fields::new(false, CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS);
    assert!(
        derive(h, aes, CKM_AES_CMAC, &mut f, None, &t, &[])
            .0
            .is_ok()
    );
}
