//! Bad pointers, handles, counts and lengths, through the raw `C_*` functions of the rlib:
//! NULL pointers and invalid or stale handles, counts and lengths too large to be real,
//! and the output-length convention (a NULL or too-small output buffer reports the length
//! and keeps the operation; multi-part length queries consume nothing).
//!
//! The module's state is process-global, so the tests take one lock and each runs a full
//! `C_Initialize` … `C_Finalize` cycle on its own store.
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use ferrohsm_pkcs11::*;
use std::ptr::null_mut;

#[test]
fn null_pointers_and_invalid_handles() {
    let _env = setup();
    // SAFETY: every non-null pointer is valid.
    unsafe {
        assert_eq!(C_GetInfo(null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(C_GetSlotList(0, null_mut(), null_mut()), CKR_ARGUMENTS_BAD);
        assert_eq!(C_GetTokenInfo(1, null_mut()), CKR_ARGUMENTS_BAD);
        let mut ti: CK_TOKEN_INFO = std::mem::zeroed();
        assert_eq!(C_GetTokenInfo(99, &mut ti), CKR_SLOT_ID_INVALID);
        assert_eq!(C_GetTokenInfo(0, &mut ti), CKR_SLOT_ID_INVALID);
        let mut h = 0;
        assert_eq!(
            C_OpenSession(1, 0, null_mut(), None, &mut h),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        let mut si: CK_SESSION_INFO = std::mem::zeroed();
        assert_eq!(C_GetSessionInfo(12345, &mut si), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(C_GetSessionInfo(0, &mut si), CKR_SESSION_HANDLE_INVALID);
        let h = token_session();
        let mut size = 0;
        assert_eq!(C_GetObjectSize(h, 0, &mut size), CKR_OBJECT_HANDLE_INVALID);
        assert_eq!(
            C_GetObjectSize(h, 0xdead_beef, &mut size),
            CKR_OBJECT_HANDLE_INVALID
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_ECDSA,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, 0xdead_beef), CKR_KEY_HANDLE_INVALID);
        assert_eq!(C_SignInit(h, null_mut(), 1), CKR_ARGUMENTS_BAD);
        assert_eq!(C_FindObjectsInit(h, null_mut(), 3), CKR_ARGUMENTS_BAD);
        let mut unknown = CK_MECHANISM {
            mechanism: 0x8000_7777,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (_, private) = ec_pair(h);
        assert_eq!(C_SignInit(h, &mut unknown, private), CKR_MECHANISM_INVALID);
        // A stale session handle stays invalid; handles are never reused.
        assert_eq!(C_CloseSession(h), CKR_OK);
        assert_eq!(C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
        let mut h2 = 0;
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut h2),
            CKR_OK
        );
        assert_ne!(h2, h);
    }
}

#[test]
fn huge_counts_and_lengths_are_refused_before_use() {
    let _env = setup();
    let h = token_session();
    let mut label = *b"x";
    // SAFETY: the claimed sizes are refused before anything is read past the real buffers.
    unsafe {
        let mut t = [bytes_attr(CKA_LABEL, &mut label)];
        assert_eq!(
            C_FindObjectsInit(h, t.as_mut_ptr(), 1 << 32),
            CKR_ARGUMENTS_BAD
        );
        t[0].ulValueLen = 1 << 63;
        assert_eq!(
            C_FindObjectsInit(h, t.as_mut_ptr(), 1),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_DigestInit(h, &mut m), CKR_OK);
        let mut out = [0u8; 32];
        let mut n = out.len() as CK_ULONG;
        assert_eq!(
            C_Digest(h, label.as_mut_ptr(), 1 << 62, out.as_mut_ptr(), &mut n),
            CKR_DATA_LEN_RANGE
        );
        assert_eq!(
            C_GenerateRandom(h, out.as_mut_ptr(), 1 << 40),
            CKR_DATA_LEN_RANGE
        );
    }
}

#[test]
fn output_length_convention_keeps_the_operation() {
    let _env = setup();
    let h = token_session();
    let (public, private) = ec_pair(h);
    let mut data = *b"message";
    // SAFETY: valid buffers; lengths as stated.
    unsafe {
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, null_mut(), &mut 0),
            CKR_OPERATION_NOT_INITIALIZED
        );
        let mut m = CK_MECHANISM {
            mechanism: CKM_ECDSA_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_SignInit(h, &mut m, private), CKR_OK);
        assert_eq!(C_SignInit(h, &mut m, private), CKR_OPERATION_ACTIVE);
        let mut n: CK_ULONG = 0;
        assert_eq!(C_Sign(h, data.as_mut_ptr(), 7, null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 64, "NULL output reports the length");
        let mut small = [0u8; 10];
        let mut n_small = small.len() as CK_ULONG;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, small.as_mut_ptr(), &mut n_small),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(n_small, 64);
        let mut sig = [0u8; 64];
        let mut n = sig.len() as CK_ULONG;
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut n),
            CKR_OK,
            "still active after the two queries"
        );
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED,
            "ended"
        );
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 64),
            CKR_OK
        );
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        sig[5] ^= 1;
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 64),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(C_VerifyInit(h, &mut m, public), CKR_OK);
        assert_eq!(
            C_Verify(h, data.as_mut_ptr(), 7, sig.as_mut_ptr(), 63),
            CKR_SIGNATURE_LEN_RANGE
        );
        // Wrong key class for the operation.
        assert_eq!(C_SignInit(h, &mut m, public), CKR_KEY_TYPE_INCONSISTENT);
        // GCM with bad parameters.
        let mut gcm = CK_GCM_PARAMS {
            pIv: null_mut(),
            ulIvLen: 0,
            ulIvBits: 0,
            pAAD: null_mut(),
            ulAADLen: 0,
            ulTagBits: 0,
        };
        let mut mg = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: &mut gcm as *mut _ as *mut _,
            ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as _,
        };
        let mut len: CK_ULONG = 32;
        let mut class: CK_ULONG = CKO_SECRET_KEY;
        let mut t = [
            ulong_attr(CKA_VALUE_LEN, &mut len),
            ulong_attr(CKA_CLASS, &mut class),
        ];
        let mut kg = CK_MECHANISM {
            mechanism: CKM_AES_KEY_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let mut aes = 0;
        assert_eq!(
            C_GenerateKey(h, &mut kg, t.as_mut_ptr(), 2, &mut aes),
            CKR_OK
        );
        assert_eq!(C_EncryptInit(h, &mut mg, aes), CKR_MECHANISM_PARAM_INVALID);
        let mut bad_len = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: &mut gcm as *mut _ as *mut _,
            ulParameterLen: 3,
        };
        assert_eq!(
            C_EncryptInit(h, &mut bad_len, aes),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn multi_part_length_queries_consume_nothing() {
    let _env = setup();
    let h = token_session();
    let value = [3u8; 16];
    let key = aes_key(h, &value);
    let mut ecb = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let mut part = [9u8; 16];
    let mut out = [0u8; 64];
    // SAFETY: valid buffers.
    unsafe {
        assert_eq!(C_EncryptInit(h, &mut ecb, key), CKR_OK);
        let mut total = 0;
        for _ in 0..3 {
            let mut n: CK_ULONG = 0;
            // As the cryptoki crate does: ask for the length, then pass the part.
            assert_eq!(
                C_EncryptUpdate(h, part.as_mut_ptr(), 16, null_mut(), &mut n),
                CKR_OK
            );
            assert_eq!(n, 16, "ECB hands each whole block back at once");
            let mut n = out.len() as CK_ULONG;
            assert_eq!(
                C_EncryptUpdate(h, part.as_mut_ptr(), 16, out.as_mut_ptr(), &mut n),
                CKR_OK
            );
            total += n;
        }
        assert_eq!(total, 48, "three parts of 16 bytes, each counted once");
        let mut n: CK_ULONG = 0;
        assert_eq!(C_EncryptFinal(h, null_mut(), &mut n), CKR_OK);
        assert_eq!(n, 0, "nothing left for the final part");
        let mut n = out.len() as CK_ULONG;
        assert_eq!(C_EncryptFinal(h, out.as_mut_ptr(), &mut n), CKR_OK);
        assert_eq!(n, 0);
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_EncryptUpdate(h, part.as_mut_ptr(), 16, null_mut(), &mut n),
            CKR_OPERATION_NOT_INITIALIZED
        );
    }
}

/// A pointer `offset` bytes into `buf`: misaligned for any type wider than a byte when
/// `offset` is odd. The storage is `u64`s, so it is large and aligned to begin with.
fn misaligned<T>(buf: &mut [u64; 16], offset: usize) -> *mut T {
    // SAFETY: `offset` stays inside `buf` (16 × 8 bytes).
    unsafe { buf.as_mut_ptr().cast::<u8>().add(offset).cast::<T>() }
}

#[test]
fn misaligned_pointers_are_refused_before_they_are_read() {
    let _env = setup();
    let h = token_session();
    let mut buf = [0u64; 16];
    // SAFETY: every pointer points into `buf`, large enough for what it names; the module
    // must refuse the misaligned ones without reading or writing through them.
    unsafe {
        let count = misaligned::<CK_ULONG>(&mut buf, 1);
        assert_eq!(C_GetSlotList(0, null_mut(), count), CKR_ARGUMENTS_BAD);
        let info = misaligned::<CK_SESSION_INFO>(&mut buf, 3);
        assert_eq!(C_GetSessionInfo(h, info), CKR_ARGUMENTS_BAD);
        let template = misaligned::<CK_ATTRIBUTE>(&mut buf, 1);
        assert_eq!(C_FindObjectsInit(h, template, 1), CKR_ARGUMENTS_BAD);
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: misaligned::<CK_GCM_PARAMS>(&mut buf, 5).cast(),
            ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
        };
        assert_eq!(C_EncryptInit(h, &mut m, 1), CKR_MECHANISM_PARAM_INVALID);
        let mech = misaligned::<CK_MECHANISM>(&mut buf, 1);
        assert_eq!(C_SignInit(h, mech, 1), CKR_ARGUMENTS_BAD);
    }
    assert_eq!(
        buf, [0u64; 16],
        "nothing was written through a refused pointer"
    );
    // The same calls with aligned pointers go through.
    let mut n: CK_ULONG = 0;
    // SAFETY: `n` is a live, aligned CK_ULONG.
    assert_eq!(unsafe { C_GetSlotList(0, null_mut(), &mut n) }, CKR_OK);
    assert!(n >= 1);
}
