//! Bad templates and attribute rules, through the raw `C_*` functions of the rlib: values
//! of the wrong size, unknown types, incomplete and inconsistent templates, the user
//! setting `CKA_TRUSTED`, `C_GetAttributeValue`'s buffer and sensitive-value rules, and
//! `C_CopyObject` keeping the sticky attributes.
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

#[test]
fn template_value_rules() {
    let _env = setup();
    let h = token_session();
    // SAFETY: valid templates with deliberately wrong sizes.
    unsafe {
        let mut class: CK_ULONG = CKO_DATA;
        let mut two = [1u8, 1];
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            bytes_attr(CKA_TOKEN, &mut two),
        ];
        let mut o = 0;
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 2, &mut o),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut short = [1u8; 3];
        let mut t = [bytes_attr(CKA_CLASS, &mut short)];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 1, &mut o),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: null_mut(),
            ulValueLen: 4,
        }];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 1, &mut o),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut x = [0u8; 4];
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            bytes_attr(0x8765_4321, &mut x),
        ];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 2, &mut o),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        let mut secret: CK_ULONG = CKO_SECRET_KEY;
        let mut t = [ulong_attr(CKA_CLASS, &mut secret)];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 1, &mut o),
            CKR_TEMPLATE_INCOMPLETE
        );
        let (mut a, mut b): (CK_BBOOL, CK_BBOOL) = (1, 0);
        let mut t = [
            ulong_attr(CKA_CLASS, &mut class),
            bool_attr(CKA_TOKEN, &mut a),
            bool_attr(CKA_TOKEN, &mut b),
        ];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 3, &mut o),
            CKR_TEMPLATE_INCONSISTENT
        );
        let mut trusted: CK_BBOOL = 1;
        let mut cert: CK_ULONG = CKO_CERTIFICATE;
        let mut x509: CK_ULONG = CKC_X_509;
        let (mut subj, mut val) = (*b"subject", *b"der");
        let mut t = [
            ulong_attr(CKA_CLASS, &mut cert),
            ulong_attr(CKA_CERTIFICATE_TYPE, &mut x509),
            bytes_attr(CKA_SUBJECT, &mut subj),
            bytes_attr(CKA_VALUE, &mut val),
            bool_attr(CKA_TRUSTED, &mut trusted),
        ];
        assert_eq!(
            C_CreateObject(h, t.as_mut_ptr(), 5, &mut o),
            CKR_ATTRIBUTE_READ_ONLY,
            "only the SO sets CKA_TRUSTED"
        );
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 4, &mut o), CKR_OK);
    }
}

#[test]
fn get_attribute_value_buffer_and_sensitive_rules() {
    let _env = setup();
    let h = token_session();
    let (_, private) = ec_pair(h);
    // SAFETY: valid templates; value buffers sized as stated.
    unsafe {
        // NULL value: lengths only, CKR_OK.
        let mut t = [CK_ATTRIBUTE {
            type_: CKA_EC_PARAMS,
            pValue: null_mut(),
            ulValueLen: 0,
        }];
        assert_eq!(C_GetAttributeValue(h, private, t.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(t[0].ulValueLen, 10);
        // Too small: that entry unavailable, BUFFER_TOO_SMALL.
        let mut small = [0u8; 4];
        let mut t = [bytes_attr(CKA_EC_PARAMS, &mut small)];
        assert_eq!(
            C_GetAttributeValue(h, private, t.as_mut_ptr(), 1),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        // Sensitive value: unavailable, ATTRIBUTE_SENSITIVE, the other entries still filled.
        let mut value = [0u8; 64];
        let mut sign: CK_BBOOL = 0;
        let mut t = [
            bytes_attr(CKA_VALUE, &mut value),
            bool_attr(CKA_SIGN, &mut sign),
        ];
        assert_eq!(
            C_GetAttributeValue(h, private, t.as_mut_ptr(), 2),
            CKR_ATTRIBUTE_SENSITIVE
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
        assert_eq!(t[1].ulValueLen, 1);
        assert_eq!(sign, 1);
        assert!(
            value.iter().all(|b| *b == 0),
            "nothing of the key was written"
        );
        // An attribute the object lacks.
        let mut m = [0u8; 8];
        let mut t = [bytes_attr(CKA_MODULUS, &mut m)];
        assert_eq!(
            C_GetAttributeValue(h, private, t.as_mut_ptr(), 1),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    }
}

#[test]
fn copy_object_keeps_the_sticky_rules() {
    let _env = setup();
    let h = token_session();
    let mut class: CK_ULONG = CKO_SECRET_KEY;
    let mut kt: CK_ULONG = CKK_AES;
    let mut value = [5u8; 16];
    let (mut sensitive, mut label) = (1 as CK_BBOOL, *b"orig");
    let mut t = [
        ulong_attr(CKA_CLASS, &mut class),
        ulong_attr(CKA_KEY_TYPE, &mut kt),
        bytes_attr(CKA_VALUE, &mut value),
        bool_attr(CKA_SENSITIVE, &mut sensitive),
        bytes_attr(CKA_LABEL, &mut label),
    ];
    let mut o = 0;
    // SAFETY: valid templates.
    unsafe {
        assert_eq!(C_CreateObject(h, t.as_mut_ptr(), 5, &mut o), CKR_OK);
        let mut new_label = *b"copy";
        let mut ct = [bytes_attr(CKA_LABEL, &mut new_label)];
        let mut c = 0;
        assert_eq!(C_CopyObject(h, o, ct.as_mut_ptr(), 1, &mut c), CKR_OK);
        assert_ne!(c, o);
        let mut got = [0u8; 4];
        let mut q = [bytes_attr(CKA_LABEL, &mut got)];
        assert_eq!(C_GetAttributeValue(h, c, q.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(&got, b"copy");
        let mut no: CK_BBOOL = 0;
        let mut relax = [bool_attr(CKA_SENSITIVE, &mut no)];
        assert_eq!(
            C_CopyObject(h, o, relax.as_mut_ptr(), 1, &mut c),
            CKR_ATTRIBUTE_READ_ONLY
        );
        let mut copyable: CK_BBOOL = 0;
        let mut freeze = [bool_attr(CKA_COPYABLE, &mut copyable)];
        assert_eq!(C_SetAttributeValue(h, o, freeze.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(
            C_CopyObject(h, o, ct.as_mut_ptr(), 1, &mut c),
            CKR_ACTION_PROHIBITED
        );
    }
}
