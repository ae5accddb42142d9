//! A trusted wrapping key keeps `CKA_WRAP_WITH_TRUSTED` keys in: its roles, templates and
//! trust never change, it never decrypts, encrypts or derives, and it is not copied. Each
//! test runs one way of turning the SO's wrapping key into a way out, through the C ABI,
//! and checks that the key never shows up in clear.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::ptr::null_mut;

fn login(h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) {
    // SAFETY: a valid PIN buffer.
    assert_eq!(
        // SAFETY: the PIN buffer is live and as long as passed.
        unsafe { C_Login(h, user, pin.as_ptr() as *mut _, pin.len() as _) },
        CKR_OK
    );
}

fn logout(h: CK_SESSION_HANDLE) {
    assert_eq!(C_Logout(h), CKR_OK);
}

/// The SO's trusted wrapping key: a public token key with CKA_WRAP only (and, when
/// asked, CKA_UNWRAP with an unwrap template that pins the unwrapped key sensitive and
/// unextractable). Returns the user's session afterwards and the key.
fn so_wrapping_key(unwrap_with_template: bool) -> (CK_SESSION_HANDLE, CK_OBJECT_HANDLE) {
    let h = token_session();
    logout(h);
    login(h, CKU_SO, SO);
    let mut extra = vec![
        (CKA_TOKEN, Val::Bool(true)),
        (CKA_PRIVATE, Val::Bool(false)),
        (CKA_TRUSTED, Val::Bool(true)),
        (CKA_WRAP, Val::Bool(true)),
    ];
    let w = if unwrap_with_template {
        extra.push((CKA_UNWRAP, Val::Bool(true)));
        let mut t = Template::new(&aes_template(&[0x42; 32], &extra));
        let (p, n) = t.raw();
        // The nested CKA_UNWRAP_TEMPLATE: SENSITIVE = TRUE, EXTRACTABLE = FALSE.
        let (mut yes, mut no): (CK_BBOOL, CK_BBOOL) = (1, 0);
        let mut inner = [
            bool_attr(CKA_SENSITIVE, &mut yes),
            bool_attr(CKA_EXTRACTABLE, &mut no),
        ];
        // SAFETY: `p` points to `n` attributes; one more is appended in a copy.
        let mut all: Vec<CK_ATTRIBUTE> =
            unsafe { std::slice::from_raw_parts(p, n as usize) }.to_vec();
        all.push(CK_ATTRIBUTE {
            type_: CKA_UNWRAP_TEMPLATE,
            pValue: inner.as_mut_ptr() as *mut _,
            ulValueLen: (2 * std::mem::size_of::<CK_ATTRIBUTE>()) as _,
        });
        let mut o = 0;
        // SAFETY: a valid template with a nested one; `t` keeps the values alive.
        assert_eq!(
            // SAFETY: the template is live and as long as passed; `o` receives the handle.
            unsafe { C_CreateObject(h, all.as_mut_ptr(), all.len() as _, &mut o) },
            CKR_OK
        );
        o
    } else {
        create(h, &aes_template(&[0x42; 32], &extra)).unwrap()
    };
    logout(h);
    login(h, CKU_USER, USER);
    (h, w)
}

/// The user's key that may only leave under a trusted key.
fn picky_key(h: CK_SESSION_HANDLE) -> CK_OBJECT_HANDLE {
    create(
        h,
        &aes_template(
            &[0x17; 32],
            &[
                (CKA_TOKEN, Val::Bool(true)),
                (CKA_SENSITIVE, Val::Bool(true)),
                (CKA_EXTRACTABLE, Val::Bool(true)),
                (CKA_WRAP_WITH_TRUSTED, Val::Bool(true)),
            ],
        ),
    )
    .unwrap()
}

fn copy(
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: &[(CK_ATTRIBUTE_TYPE, Val)],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut t = Template::new(t);
    let (p, n) = t.raw();
    let mut c = 0;
    // SAFETY: a valid template and output.
    let rv = unsafe { C_CopyObject(h, o, p, n, &mut c) };
    rv_result(rv, c)
}

/// The unwrap the attacker wants: the blob back as a non-sensitive, extractable key.
fn unwrap_in_clear(
    h: CK_SESSION_HANDLE,
    w: CK_OBJECT_HANDLE,
    blob: &[u8],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    unwrap_with(
        h,
        &mut Mech::plain(CKM_AES_KEY_WRAP_KWP),
        w,
        blob,
        &[
            (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
            (CKA_SENSITIVE, Val::Bool(false)),
            (CKA_EXTRACTABLE, Val::Bool(true)),
        ],
    )
}

#[test]
fn roles_of_a_trusted_key_cannot_be_relaxed() {
    let _env = setup();
    let (h, w) = so_wrapping_key(false);
    let t = picky_key(h);
    let blob = wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP_KWP), w, t).unwrap();

    // The attack: swap W's roles, then unwrap the blob as an extractable key.
    assert_eq!(
        set_attributes(
            h,
            w,
            &[(CKA_WRAP, Val::Bool(false)), (CKA_UNWRAP, Val::Bool(true))]
        ),
        CKR_ATTRIBUTE_READ_ONLY
    );
    for a in [CKA_UNWRAP, CKA_DECRYPT, CKA_ENCRYPT, CKA_DERIVE] {
        assert_eq!(
            set_attributes(h, w, &[(a, Val::Bool(true))]),
            CKR_ATTRIBUTE_READ_ONLY,
            "{a:#x}"
        );
    }
    assert_eq!(
        set_attributes(h, w, &[(CKA_WRAP, Val::Bool(false))]),
        CKR_ATTRIBUTE_READ_ONLY
    );
    assert_eq!(
        unwrap_in_clear(h, w, &blob),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    // Nothing changed on W.
    assert_eq!(attribute(h, w, CKA_UNWRAP).unwrap(), vec![0]);
    assert_eq!(attribute(h, w, CKA_WRAP).unwrap(), vec![1]);

    // Not even the SO changes them, or the trust itself.
    logout(h);
    login(h, CKU_SO, SO);
    assert_eq!(
        set_attributes(h, w, &[(CKA_UNWRAP, Val::Bool(true))]),
        CKR_ATTRIBUTE_READ_ONLY
    );
    assert_eq!(
        set_attributes(h, w, &[(CKA_TRUSTED, Val::Bool(false))]),
        CKR_ATTRIBUTE_READ_ONLY
    );
    // A label is still the SO's (or anyone's) to change.
    assert_eq!(
        set_attributes(h, w, &[(CKA_LABEL, Val::Bytes(b"kek".to_vec()))]),
        CKR_OK
    );
    logout(h);
    login(h, CKU_USER, USER);
    assert_eq!(attribute(h, t, CKA_VALUE), Err(CKR_ATTRIBUTE_SENSITIVE));
}

#[test]
fn a_trusted_key_is_not_copied() {
    let _env = setup();
    let (h, w) = so_wrapping_key(false);
    let t = picky_key(h);
    let blob = wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP_KWP), w, t).unwrap();
    // A copy with the roles swapped, or an exact copy whose roles change afterwards:
    // either way the copy would open W's blobs.
    assert_eq!(
        copy(
            h,
            w,
            &[(CKA_WRAP, Val::Bool(false)), (CKA_UNWRAP, Val::Bool(true))]
        ),
        Err(CKR_ACTION_PROHIBITED)
    );
    assert_eq!(copy(h, w, &[]), Err(CKR_ACTION_PROHIBITED));
    assert_eq!(
        copy(h, w, &[(CKA_TOKEN, Val::Bool(false))]),
        Err(CKR_ACTION_PROHIBITED)
    );
    // The blob still does not come back in clear.
    assert_eq!(
        unwrap_in_clear(h, w, &blob),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
}

#[test]
fn a_trusted_key_never_decrypts_encrypts_or_derives() {
    let _env = setup();
    let (h, w) = so_wrapping_key(false);
    let t = picky_key(h);
    let blob = wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP), w, t).unwrap();
    // C_Decrypt(CKM_AES_ECB) of the RFC 3394 blob would be the raw unwrap's first step.
    assert_eq!(
        crypt_once(h, &mut Mech::plain(CKM_AES_ECB), w, &blob[..32], false),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    assert_eq!(
        set_attributes(h, w, &[(CKA_DECRYPT, Val::Bool(true))]),
        CKR_ATTRIBUTE_READ_ONLY
    );
    // The SO cannot make a trusted key that decrypts, encrypts or derives...
    logout(h);
    login(h, CKU_SO, SO);
    for a in [CKA_DECRYPT, CKA_ENCRYPT, CKA_DERIVE] {
        assert_eq!(
            create(
                h,
                &aes_template(
                    &[0x43; 32],
                    &[
                        (CKA_PRIVATE, Val::Bool(false)),
                        (CKA_TRUSTED, Val::Bool(true)),
                        (CKA_WRAP, Val::Bool(true)),
                        (a, Val::Bool(true)),
                    ],
                ),
            ),
            Err(CKR_TEMPLATE_INCONSISTENT),
            "{a:#x}"
        );
    }
    // ... nor trust a key that already does.
    let d = create(
        h,
        &aes_template(
            &[0x44; 32],
            &[
                (CKA_PRIVATE, Val::Bool(false)),
                (CKA_DECRYPT, Val::Bool(true)),
            ],
        ),
    )
    .unwrap();
    assert_eq!(
        set_attributes(h, d, &[(CKA_TRUSTED, Val::Bool(true))]),
        CKR_TEMPLATE_INCONSISTENT
    );
    // A trusted key made without naming those usages gets none of them.
    let quiet = create(
        h,
        &aes_template(
            &[0x45; 32],
            &[
                (CKA_PRIVATE, Val::Bool(false)),
                (CKA_TRUSTED, Val::Bool(true)),
                (CKA_WRAP, Val::Bool(true)),
            ],
        ),
    )
    .unwrap();
    for a in [CKA_DECRYPT, CKA_ENCRYPT, CKA_DERIVE] {
        assert_eq!(attribute(h, quiet, a).unwrap(), vec![0], "{a:#x}");
    }
}

#[test]
fn the_unwrap_template_of_a_trusted_key_holds() {
    let _env = setup();
    let (h, w) = so_wrapping_key(true);
    let t = picky_key(h);
    let blob = wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP_KWP), w, t).unwrap();
    // Clearing the template that pins unwrapped keys sensitive is refused...
    let mut empty = CK_ATTRIBUTE {
        type_: CKA_UNWRAP_TEMPLATE,
        pValue: null_mut(),
        ulValueLen: 0,
    };
    // SAFETY: an empty nested template.
    assert_eq!(
        // SAFETY: one live attribute with a valid (empty) value.
        unsafe { C_SetAttributeValue(h, w, &mut empty, 1) },
        CKR_ATTRIBUTE_READ_ONLY
    );
    // ... so the unwrap as an extractable key conflicts with it...
    assert_eq!(unwrap_in_clear(h, w, &blob), Err(CKR_TEMPLATE_INCONSISTENT));
    // ... and the key that does come back is sensitive and unextractable.
    let back = unwrap_with(
        h,
        &mut Mech::plain(CKM_AES_KEY_WRAP_KWP),
        w,
        &blob,
        &[
            (CKA_CLASS, Val::Ulong(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_AES)),
        ],
    )
    .unwrap();
    assert_eq!(attribute(h, back, CKA_VALUE), Err(CKR_ATTRIBUTE_SENSITIVE));
    assert_eq!(attribute(h, back, CKA_EXTRACTABLE).unwrap(), vec![0]);
    assert_eq!(
        wrap_with(h, &mut Mech::plain(CKM_AES_KEY_WRAP_KWP), w, back),
        Err(CKR_KEY_UNEXTRACTABLE)
    );
}

#[test]
fn copies_of_unmodifiable_objects_keep_every_attribute() {
    let _env = setup();
    let h = token_session();
    let k = create(
        h,
        &aes_template(
            &[0x55; 32],
            &[
                (CKA_MODIFIABLE, Val::Bool(false)),
                (CKA_LABEL, Val::Bytes(b"fixed".to_vec())),
            ],
        ),
    )
    .unwrap();
    for change in [
        (CKA_LABEL, Val::Bytes(b"other".to_vec())),
        (CKA_SIGN, Val::Bool(false)),
        (CKA_WRAP, Val::Bool(true)),
    ] {
        assert_eq!(
            copy(h, k, std::slice::from_ref(&change)),
            Err(CKR_ATTRIBUTE_READ_ONLY),
            "{change:?}"
        );
    }
    // Moving it to the token is not a change of the key.
    let c = copy(h, k, &[(CKA_TOKEN, Val::Bool(true))]).unwrap();
    assert_eq!(attribute(h, c, CKA_LABEL).unwrap(), b"fixed".to_vec());
    assert_eq!(attribute(h, c, CKA_MODIFIABLE).unwrap(), vec![0]);
}
