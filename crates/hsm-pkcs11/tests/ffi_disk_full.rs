//! ROBUSTNESS F2 through the module: with the store's disk full, writes answer
//! `CKR_DEVICE_MEMORY` while finding and signing go on, and writes work again once space
//! returns. The store sits on a small tmpfs mounted for the test (root only; `tools/test`
//! sets `FERROHSM_ROOT_TESTS=1`, which makes a missing privilege a failure, not a skip).
#![allow(unsafe_code, clippy::unnecessary_cast)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn tmpfs(size: &str) -> Option<Tmpfs> {
    let dir = tempfile::tempdir().unwrap().keep();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        return Some(Tmpfs(dir));
    }
    let _ = std::fs::remove_dir(&dir);
    assert!(
        std::env::var("FERROHSM_ROOT_TESTS").as_deref() != Ok("1"),
        "cannot mount a tmpfs: this test needs root (tools/test runs as root)"
    );
    eprintln!("skipped: mounting a tmpfs needs root; tools/test runs this test");
    None
}

fn token_data(h: CK_SESSION_HANDLE, i: u32) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_DATA)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(format!("data-{i}").into_bytes())),
            (CKA_VALUE, Val::Bytes(vec![0x42; 4096])),
        ],
    )
}

#[test]
fn a_full_disk_answers_device_memory_while_signing_goes_on() {
    let Some(fs) = tmpfs("48m") else { return };
    let _env = setup_in(None, "", Some(&fs.0.join("store")));
    let h = token_session();
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (public, private) = generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_EC_PARAMS, Val::Bytes(p256)),
        ],
        &[(CKA_TOKEN, Val::Bool(true)), (CKA_SIGN, Val::Bool(true))],
    )
    .unwrap();

    // Fill the file system, then write until the store runs out of the space it holds.
    let filler = fs.0.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 16];
        while f.write(&chunk).is_ok_and(|n| n > 0) {}
    }
    let mut refused = 0;
    for i in 0..20_000 {
        match token_data(h, i) {
            Ok(_) => assert_eq!(
                refused, 0,
                "a write succeeded after a refusal, no space freed"
            ),
            Err(CKR_DEVICE_MEMORY) => {
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            Err(rv) => panic!("a write on a full disk answered {rv:#x}, not CKR_DEVICE_MEMORY"),
        }
    }
    assert_eq!(refused, 5, "the store never ran out of space");

    // Finding and signing go on.
    let mut class = CKO_PRIVATE_KEY;
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: &mut class as *mut _ as *mut _,
        ulValueLen: std::mem::size_of::<CK_ULONG>() as _,
    }];
    let (mut found, mut n) = ([0; 4], 0);
    // SAFETY: valid template and buffers.
    unsafe {
        assert_eq!(C_FindObjectsInit(h, t.as_mut_ptr(), 1), CKR_OK);
        assert_eq!(C_FindObjects(h, found.as_mut_ptr(), 4, &mut n), CKR_OK);
        assert_eq!(C_FindObjectsFinal(h), CKR_OK);
    }
    assert_eq!(&found[..n as usize], &[private]);
    let signature = sign(h, CKM_ECDSA_SHA256, private, b"disk full").unwrap();
    assert_eq!(
        verify(h, CKM_ECDSA_SHA256, public, b"disk full", &signature),
        Ok(())
    );

    // Space returns: writes work again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    assert!(token_data(h, 99_999).is_ok());
}
