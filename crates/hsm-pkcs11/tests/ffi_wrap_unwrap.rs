//! Wrapping and unwrapping through the raw `C_*` functions of the rlib: AES key wrap and
//! the key-separation attacks it must stop, `CKA_UNWRAP_TEMPLATE` and trusted wrapping
//! keys, and an AES key sealed to our RSA public key and unwrapped with OAEP.
//! (`ffi_key_wrapping.rs` has the RSA and private-key wrapping rules.)
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

/// `C_WrapKey` with a mechanism that takes no parameter.
fn wrap(
    h: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    w: CK_OBJECT_HANDLE,
    k: CK_OBJECT_HANDLE,
) -> Result<Vec<u8>, CK_RV> {
    wrap_with(h, &mut Mech::plain(mech), w, k)
}

/// `C_UnwrapKey` with `CKM_AES_KEY_WRAP` into an AES key with ENCRYPT/DECRYPT, and
/// `CKA_EXTRACTABLE` when given.
fn unwrap(
    h: CK_SESSION_HANDLE,
    w: CK_OBJECT_HANDLE,
    blob: &[u8],
    extractable: Option<CK_BBOOL>,
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut t = vec![
        (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
        (CKA_ENCRYPT, Val::Bool(true)),
        (CKA_DECRYPT, Val::Bool(true)),
    ];
    if let Some(x) = extractable {
        t.push((CKA_EXTRACTABLE, Val::Bytes(vec![x])));
    }
    unwrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP), w, blob, &t)
}

#[test]
fn wrap_unwrap_and_the_key_separation_attacks() {
    let _env = setup();
    let h = token_session();
    let w = secret(h, &[1; 32], &[(CKA_WRAP, 1), (CKA_UNWRAP, 1)]).unwrap();
    let k = secret(
        h,
        &[2; 32],
        &[(CKA_EXTRACTABLE, 1), (CKA_ENCRYPT, 1), (CKA_DECRYPT, 1)],
    )
    .unwrap();
    let blob = wrap(h, CKM_AES_KEY_WRAP, w, k).unwrap();
    assert_eq!(blob.len(), 40);
    let k2 = unwrap(h, w, &blob, None).unwrap();
    // The unwrapped key is the same key: what one encrypts, the other decrypts.
    let mut iv = [3u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let ct = crypt(h, &mut cbc, k, &[9u8; 32], true).unwrap();
    assert_eq!(crypt(h, &mut cbc, k2, &ct, false).unwrap(), vec![9u8; 32]);
    // Imported through unwrap: never local, always-sensitive or never-extractable.
    let (mut local, mut always, mut never) = (1 as CK_BBOOL, 1 as CK_BBOOL, 1 as CK_BBOOL);
    let mut q = [
        bool_attr(CKA_LOCAL, &mut local),
        bool_attr(CKA_ALWAYS_SENSITIVE, &mut always),
        bool_attr(CKA_NEVER_EXTRACTABLE, &mut never),
    ];
    assert_eq!(
        // SAFETY: valid template.
        unsafe { C_GetAttributeValue(h, k2, q.as_mut_ptr(), 3) },
        CKR_OK
    );
    assert_eq!((local, always, never), (0, 0, 0));

    // Clulow: wrap K under W, then decrypt the blob with W. W cannot decrypt.
    let mut ecb = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        crypt(h, &mut ecb, w, &blob[..32], false),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // ... or encrypt chosen data with W and unwrap it as a key. W cannot encrypt.
    assert_eq!(
        crypt(h, &mut ecb, w, &[0u8; 32], true),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // (Keys asked to hold both roles: `ffi_key_separation.rs`, standard and strict.)

    // Unextractable keys never leave; nor under a weaker key; nor, when marked so, under an
    // untrusted key.
    let sealed = secret(h, &[5; 32], &[(CKA_EXTRACTABLE, 0)]).unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, w, sealed),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
    let weak = secret(h, &[6; 16], &[(CKA_WRAP, 1)]).unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, weak, k),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    let picky = secret(
        h,
        &[7; 32],
        &[(CKA_EXTRACTABLE, 1), (CKA_WRAP_WITH_TRUSTED, 1)],
    )
    .unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, w, picky),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    // A key without CKA_WRAP wraps nothing; a key of the wrong type is refused as such.
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, k, k2),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, 0xdead, k),
        Err(CKR_WRAPPING_KEY_HANDLE_INVALID)
    );
    // KWP wraps any length.
    assert_eq!(wrap(h, CKM_AES_KEY_WRAP_KWP, w, k).unwrap().len(), 40);

    // The blob carries the key's length: a CKA_VALUE_LEN that disagrees is refused rather
    // than overridden, one that agrees is accepted.
    let unwrap_len = |len: CK_ULONG| {
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_KEY_WRAP,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut class, mut kt, mut len) = (CKO_SECRET_KEY, CKK_AES, len);
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            ulong_attr(CKA_KEY_TYPE, &mut kt),
            ulong_attr(CKA_VALUE_LEN, &mut len),
        ];
        let mut b = blob.clone();
        let mut o = 0;
        // SAFETY: valid template and blob.
        unsafe {
            C_UnwrapKey(
                h,
                &mut m,
                w,
                b.as_mut_ptr(),
                b.len() as _,
                t.as_mut_ptr(),
                t.len() as _,
                &mut o,
            )
        }
    };
    assert_eq!(unwrap_len(16), CKR_TEMPLATE_INCONSISTENT);
    assert_eq!(unwrap_len(blob.len() as CK_ULONG - 8), CKR_OK);

    // Damaged or truncated blobs are refused.
    let mut bad = blob.clone();
    bad[7] ^= 1;
    assert_eq!(unwrap(h, w, &bad, None), Err(CKR_WRAPPED_KEY_INVALID));
    assert_eq!(
        unwrap(h, w, &blob[..12], None),
        Err(CKR_WRAPPED_KEY_LEN_RANGE)
    );
    assert_eq!(
        unwrap(h, k, &blob, None),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
}

#[test]
fn unwrap_template_and_trusted_wrapping() {
    let _env = setup();
    let h = token_session();
    // An unwrapping key whose CKA_UNWRAP_TEMPLATE pins CKA_EXTRACTABLE = FALSE.
    let mut f: CK_BBOOL = 0;
    let mut inner = [bool_attr(CKA_EXTRACTABLE, &mut f)];
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut value = [8u8; 32];
    let (mut wr, mut un): (CK_BBOOL, CK_BBOOL) = (1, 1);
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
        bool_attr(CKA_WRAP, &mut wr),
        bool_attr(CKA_UNWRAP, &mut un),
        CK_ATTRIBUTE {
            type_: CKA_UNWRAP_TEMPLATE,
            pValue: inner.as_mut_ptr() as *mut _,
            ulValueLen: std::mem::size_of::<CK_ATTRIBUTE>() as _,
        },
    ];
    let mut w = 0;
    assert_eq!(
        // SAFETY: valid template with a nested template.
        unsafe { C_CreateObject(h, t.as_mut_ptr(), 6, &mut w) },
        CKR_OK
    );
    // The template reads back the way PKCS#11 reads array attributes: its size first,
    // then the element types and lengths, then the values.
    let size = std::mem::size_of::<CK_ATTRIBUTE>() as CK_ULONG;
    let mut q = [CK_ATTRIBUTE {
        type_: CKA_UNWRAP_TEMPLATE,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    assert_eq!(
        // SAFETY: valid template, NULL pValue.
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(q[0].ulValueLen, size, "one nested attribute");
    let mut elements = [CK_ATTRIBUTE {
        type_: 0xffff,
        pValue: null_mut(),
        ulValueLen: 0,
    }];
    q[0].pValue = elements.as_mut_ptr() as *mut _;
    q[0].ulValueLen = size - 1;
    assert_eq!(
        // SAFETY: pValue is writable for ulValueLen bytes.
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(q[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    q[0].ulValueLen = size;
    assert_eq!(
        // SAFETY: room for one element whose pValue is NULL.
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(
        (elements[0].type_, elements[0].ulValueLen),
        (CKA_EXTRACTABLE, 1)
    );
    let mut pinned: CK_BBOOL = 7;
    elements[0].pValue = &mut pinned as *mut CK_BBOOL as *mut _;
    // The write above went through `elements` itself: hand the module a fresh pointer.
    q[0].pValue = elements.as_mut_ptr() as *mut _;
    assert_eq!(
        // SAFETY: the element's buffer holds one CK_BBOOL.
        unsafe { C_GetAttributeValue(h, w, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(
        pinned, 0,
        "CKA_EXTRACTABLE = FALSE read back from the template"
    );

    let k = secret(h, &[9; 32], &[(CKA_EXTRACTABLE, 1)]).unwrap();
    let blob = wrap(h, CKM_AES_KEY_WRAP, w, k).unwrap();
    assert_eq!(
        unwrap(h, w, &blob, Some(1)),
        Err(CKR_TEMPLATE_INCONSISTENT),
        "conflicts with CKA_UNWRAP_TEMPLATE"
    );
    let k2 = unwrap(h, w, &blob, None).unwrap();
    let mut x: CK_BBOOL = 1;
    let mut q = [bool_attr(CKA_EXTRACTABLE, &mut x)];
    assert_eq!(
        // SAFETY: valid template.
        unsafe { C_GetAttributeValue(h, k2, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(x, 0, "the unwrap template applied");

    // CKA_WRAP_WITH_TRUSTED keys leave only under a key the SO marked trusted.
    let picky = secret(
        h,
        &[10; 32],
        &[(CKA_EXTRACTABLE, 1), (CKA_WRAP_WITH_TRUSTED, 1)],
    )
    .unwrap();
    assert_eq!(
        wrap(h, CKM_AES_KEY_WRAP, w, picky),
        Err(CKR_KEY_NOT_WRAPPABLE)
    );
    // The user cannot mark a key trusted.
    let mut yes: CK_BBOOL = 1;
    let mut trust = [bool_attr(CKA_TRUSTED, &mut yes)];
    assert_eq!(
        // SAFETY: valid template.
        unsafe { C_SetAttributeValue(h, w, trust.as_mut_ptr(), 1) },
        CKR_ATTRIBUTE_READ_ONLY
    );
    // The SO can (on a public key it can see).
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(
            C_Login(h, CKU_SO, SO.as_ptr() as *mut _, SO.len() as _),
            CKR_OK
        );
    }
    let trusted = secret(
        h,
        &[11; 32],
        &[(CKA_PRIVATE, 0), (CKA_WRAP, 1), (CKA_TRUSTED, 1)],
    )
    .unwrap();
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(
            C_Login(h, CKU_USER, USER.as_ptr() as *mut _, USER.len() as _),
            CKR_OK
        );
    }
    assert_eq!(wrap(h, CKM_AES_KEY_WRAP, trusted, picky).unwrap().len(), 40);
}

#[test]
fn rsa_oaep_unwraps_a_key_sealed_to_our_public_key() {
    let _env = setup();
    let h = token_session();
    let (public, private) = generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[
            (CKA_MODULUS_BITS, Val::Ulong(2048)),
            (CKA_ENCRYPT, Val::Bool(true)),
        ],
        &[(CKA_UNWRAP, Val::Bool(true))],
    )
    .unwrap();
    let mut label = *b"import";
    let mut params = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr() as *mut _,
        ulSourceDataLen: label.len() as _,
    };
    let mut m = CK_MECHANISM {
        mechanism: CKM_RSA_PKCS_OAEP,
        pParameter: &mut params as *mut _ as *mut _,
        ulParameterLen: std::mem::size_of::<CK_RSA_PKCS_OAEP_PARAMS>() as _,
    };
    // The sender seals an AES-256 key to our public key (C_Encrypt stands in for it).
    let secret = [0x5au8; 32];
    let blob = crypt(h, &mut m, public, &secret, true).unwrap();
    let unwrap_with = |m: &mut CK_MECHANISM, key: CK_OBJECT_HANDLE, blob: &[u8]| {
        let (mut class, mut kt) = (CKO_SECRET_KEY, CKK_AES);
        let (mut s, mut x) = (0 as CK_BBOOL, 1 as CK_BBOOL);
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            ulong_attr(CKA_KEY_TYPE, &mut kt),
            bool_attr(CKA_SENSITIVE, &mut s),
            bool_attr(CKA_EXTRACTABLE, &mut x),
        ];
        let mut b = blob.to_vec();
        let mut out = 0;
        // SAFETY: valid mechanism, blob and template.
        match unsafe {
            C_UnwrapKey(
                h,
                m,
                key,
                b.as_mut_ptr(),
                b.len() as _,
                t.as_mut_ptr(),
                4,
                &mut out,
            )
        } {
            CKR_OK => Ok(out),
            rv => Err(rv),
        }
    };
    let k = unwrap_with(&mut m, private, &blob).unwrap();
    let mut value = [0u8; 32];
    let mut q = [bytes_attr(CKA_VALUE, &mut value)];
    assert_eq!(
        // SAFETY: valid template.
        unsafe { C_GetAttributeValue(h, k, q.as_mut_ptr(), 1) },
        CKR_OK
    );
    assert_eq!(value, secret);
    // A damaged blob, the public key, and the AES-wrap path for an RSA key are refused.
    let mut bad = blob.clone();
    bad[10] ^= 1;
    assert_eq!(
        unwrap_with(&mut m, private, &bad),
        Err(CKR_WRAPPED_KEY_INVALID)
    );
    assert_eq!(
        unwrap_with(&mut m, private, &blob[1..]),
        Err(CKR_WRAPPED_KEY_LEN_RANGE)
    );
    assert_eq!(
        unwrap_with(&mut m, public, &blob),
        Err(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
    );
    let mut kw = CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    assert_eq!(
        unwrap_with(&mut kw, private, &blob),
        Err(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)
    );
    // Sending it back the same way is refused: an AES-256 key does not leave under
    // RSA-2048 (112-bit strength), and this public key has no CKA_WRAP anyway.
    let mut n: CK_ULONG = 512;
    let mut out = [0u8; 512];
    assert_eq!(
        // SAFETY: valid mechanism and buffers.
        unsafe { C_WrapKey(h, &mut m, public, k, out.as_mut_ptr(), &mut n) },
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
}
