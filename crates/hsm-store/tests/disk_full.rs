//! ROBUSTNESS F2: the disk fills up under a real RocksDB store.
//!
//! The store lives on a small tmpfs mounted for the test (root only: `tools/test` runs as
//! root and sets `FERROHSM_ROOT_TESTS=1`, which turns a missing privilege into a failure
//! instead of a skip). A filler file takes the remaining space; writes must then fail with
//! `StoreError::NoSpace` while reads go on, nothing written before may be lost, and once
//! the filler is gone writes must succeed again — in the same process and after a reopen.

mod common;

use common::*;
use hsm_store::backend::rocks::{OpenMode, RocksBackend};
use hsm_store::{Store, StoreError};
use hsm_types::UserKind;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(size: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Some(Mount(dir))
        } else {
            let _ = std::fs::remove_dir(&dir);
            None
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system with one file until the kernel says ENOSPC.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
}

fn libc_enospc() -> i32 {
    28
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_loses_nothing() {
    let Some(mnt) = Mount::tmpfs("48m") else {
        let required = std::env::var("FERROHSM_ROOT_TESTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "cannot mount a tmpfs: this test needs root (tools/test runs as root)"
        );
        eprintln!("skipped: mounting a tmpfs needs root; tools/test runs this test");
        return;
    };
    let dir = mnt.0.join("store");
    let store = Store::open(Box::new(
        RocksBackend::open(&dir, OpenMode::ReadWrite).unwrap(),
    ))
    .unwrap();
    let token = new_token(&store);
    let keys = store.login(token, UserKind::User, &pin(USER_PIN)).unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..50u32 {
        let label = format!("before-{i}");
        let id = store
            .create_object(&keys, data_object(label.as_bytes(), &[i as u8; 512], true))
            .unwrap();
        acknowledged.push((id, label));
    }

    fill(&mnt.0.join("filler"));
    // Writes go on into space RocksDB already holds (its preallocated log) and then fail
    // with NoSpace — every one of them, not only the first.
    let mut refused = 0;
    let mut accepted_on_full_disk = 0;
    for i in 0..20_000u32 {
        let label = format!("full-{i}");
        match store.create_object(&keys, data_object(label.as_bytes(), &[7; 4096], true)) {
            Ok(id) if refused == 0 => {
                accepted_on_full_disk += 1;
                acknowledged.push((id, label));
            }
            Ok(_) => panic!("a write succeeded after a NoSpace refusal, with no space freed"),
            Err(StoreError::NoSpace(_)) => {
                refused += 1;
                if refused == 20 {
                    break;
                }
            }
            Err(e) => panic!("a write on a full disk answered {e:?}, not NoSpace"),
        }
    }
    eprintln!("{accepted_on_full_disk} writes fitted in held space, then {refused} refused");
    assert_eq!(refused, 20, "writes never ran out of space");
    // Reads go on.
    for (id, label) in &acknowledged {
        let o = store.read_object(&keys, *id).unwrap();
        assert_eq!(o.attrs.label(), Some(label.as_bytes()));
    }

    // Space returns: writes resume in the same process.
    std::fs::remove_file(mnt.0.join("filler")).unwrap();
    let mut resumed = None;
    for attempt in 0..300 {
        match store.create_object(&keys, data_object(b"after", &[9; 512], true)) {
            Ok(id) => {
                resumed = Some((id, attempt));
                break;
            }
            Err(StoreError::NoSpace(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => panic!("a write after space returned answered {e:?}"),
        }
    }
    let (after, attempts) = resumed.expect("writes resumed once space returned");
    eprintln!("writes resumed after {attempts} retries");
    acknowledged.push((after, "after".into()));
    drop(keys);
    drop(store);

    // Nothing acknowledged is lost across a reopen.
    let store = Store::open(Box::new(
        RocksBackend::open(&dir, OpenMode::ReadWrite).unwrap(),
    ))
    .unwrap();
    let keys = store.login(token, UserKind::User, &pin(USER_PIN)).unwrap();
    for (id, label) in &acknowledged {
        let o = store.read_object(&keys, *id).unwrap();
        assert_eq!(o.attrs.label(), Some(label.as_bytes()));
    }
    assert!(store.check_indexes(&keys).unwrap().is_empty());
}
