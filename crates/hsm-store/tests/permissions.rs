//! ROBUSTNESS A1: a store only its owner can read, whatever the umask.
//!
//! Every test here runs under `umask 022` (set once for this test binary, which holds only
//! these tests: the umask is per process, so no other test sees it). Under that umask
//! `mkdir` makes 0755 and RocksDB's files are born 0644; the store must still end up 0700
//! with every file 0600, through its own directory creation, the default ACL and the
//! sweeps, and never by changing the umask of the process it runs in.

mod common;

use common::*;
use hsm_store::archive::{self, BackupSecret, NoProgress};
use hsm_store::backend::rocks::{OpenMode, RocksBackend};
use hsm_store::{KdfParams, Store};
use hsm_types::{SecretString, UserKind};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn umask_022() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    });
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Asserts `dir` is 0700 and every file in it 0600, naming the ones that are not.
fn assert_private(dir: &Path, when: &str) {
    assert_eq!(
        mode(dir),
        0o700,
        "{when}: {} is {:o}",
        dir.display(),
        mode(dir)
    );
    let files = all_files(dir);
    assert!(!files.is_empty(), "{when}: no files in {}", dir.display());
    let exposed: Vec<String> = files
        .iter()
        .filter(|f| mode(f) != 0o600)
        .map(|f| format!("{} {:o}", f.display(), mode(f)))
        .collect();
    assert!(exposed.is_empty(), "{when}: files not 0600: {exposed:?}");
}

/// A store with a token and objects, one of them destroyed (a flush and a compaction).
fn populate(dir: &Path) {
    let store = Store::open_dir(dir).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let objs: Vec<_> = (0..200)
        .map(|i| data_object(format!("o-{i}").as_bytes(), &[i as u8; 300], i % 2 == 0))
        .collect();
    let ids = store.create_objects(&k, objs).unwrap();
    store.destroy_object(&k, ids[0]).unwrap();
    store
        .create_object(&k, secret_key(b"aes", b"id", &[7; 32], true))
        .unwrap();
}

#[test]
fn a_store_made_under_umask_022_is_0700_with_0600_files() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    populate(&dir);
    assert_private(&dir, "after creation");
    // A reopen writes a new log, manifest and options file.
    populate(&dir);
    assert_private(&dir, "after a reopen");
    let _ro = Store::open_dir_read_only(&dir).unwrap();
    assert_private(&dir, "beside a reader");
}

#[test]
fn a_readable_store_is_refused_with_how_to_fix_it() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    populate(&dir);
    for exposed in [0o755, 0o750, 0o701, 0o770, 0o707] {
        chmod(&dir, exposed);
        let rw = Store::open_dir(&dir)
            .err()
            .expect("read-write open must refuse");
        let ro = Store::open_dir_read_only(&dir)
            .err()
            .expect("read-only open must refuse");
        for e in [rw.to_string(), ro.to_string()] {
            assert!(e.contains(&dir.display().to_string()), "{e}");
            assert!(e.contains(&format!("{exposed:04o}")), "{e}");
            assert!(e.contains(&format!("chmod 700 {}", dir.display())), "{e}");
            assert!(e.contains("chmod 600"), "{e}");
        }
        assert_eq!(mode(&dir), exposed, "a refused open changes nothing");
    }
    chmod(&dir, 0o700);
    // A file left readable (copied in by hand, say) is set back to 0600 by a writer.
    let log = dir.join("LOG");
    chmod(&log, 0o644);
    let store = Store::open_dir(&dir).unwrap();
    assert_eq!(store.tokens().unwrap().len(), 1);
    drop(store);
    assert_private(&dir, "after the fix");
    Store::open_dir_read_only(&dir).unwrap();
}

#[test]
fn an_empty_directory_made_by_mkdir_is_tightened_but_a_writable_one_refused() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("mkdir");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(mode(&dir), 0o755);
    populate(&dir);
    assert_private(&dir, "a store in a directory made by mkdir");

    let open = d.path().join("world-writable");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let e = Store::open_dir(&open)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(e.contains("0777") && e.contains("chmod 700"), "{e}");
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn a_store_owned_by_another_user_is_refused() {
    umask_022();
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: giving a directory to another user needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    populate(&dir);
    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
    for e in [
        Store::open_dir(&dir)
            .err()
            .expect("must refuse")
            .to_string(),
        Store::open_dir_read_only(&dir)
            .err()
            .expect("must refuse")
            .to_string(),
    ] {
        assert!(e.contains("owned by uid 65534"), "{e}");
        assert!(e.contains("uid 0"), "{e}");
        assert!(e.contains(&dir.display().to_string()), "{e}");
    }
    std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    Store::open_dir(&dir).unwrap();
}

/// The fallback where the file system has no default ACL: the sweeps after a flush and
/// at open restrict what RocksDB makes.
#[test]
fn without_a_default_acl_the_sweeps_restrict_new_files() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let store = Store::open_dir(&dir).unwrap();
    // Take the ACL away under the open store: from now on RocksDB's files are born
    // 0644 & ~022, as on a file system without ACLs.
    let _ = rustix::fs::removexattr(&dir, "system.posix_acl_default");
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let id = store
        .create_object(&k, data_object(b"x", &[1; 4000], true))
        .unwrap();
    // Destroy flushes every family and compacts: new table files, a new log.
    store.destroy_object(&k, id).unwrap();
    assert_private(&dir, "after a flush without an ACL");
    drop(store);
    let _ = rustix::fs::removexattr(&dir, "system.posix_acl_default");
    Store::open_dir(&dir).unwrap();
    assert_private(&dir, "after an open without an ACL");
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A real file system without extended attributes (ramfs), where root may mount one.
#[test]
fn on_a_file_system_without_acls_the_store_is_still_private() {
    umask_022();
    let mnt = tempfile::tempdir().unwrap().keep();
    let ok = Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&mnt)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let _ = std::fs::remove_dir(&mnt);
        eprintln!("skipped: mounting a ramfs needs root");
        return;
    }
    let mnt = Mount(mnt);
    let dir = mnt.0.join("store");
    populate(&dir);
    assert!(
        rustix::fs::getxattr(&dir, "system.posix_acl_default", &mut [0u8; 64]).is_err(),
        "ramfs keeps no ACL"
    );
    assert_private(&dir, "on ramfs");
}

#[test]
fn a_restored_store_is_private() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    populate(&src);
    let file = d.path().join("a.fhb");
    let pass = || BackupSecret::Passphrase(SecretString::from("backup-passphrase"));
    archive::create(&src, &file, &pass(), KdfParams::BACKUP_MINIMUM, &NoProgress).unwrap();
    assert_eq!(mode(&file), 0o600, "the archive itself");
    let dst = d.path().join("restored");
    archive::restore(&file, &pass(), &dst, &NoProgress).unwrap();
    assert_private(&dst, "a restored store");
    // Into an empty directory made by mkdir (0755 under this umask): the store that
    // replaces it is 0700.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    archive::restore(&file, &pass(), &empty, &NoProgress).unwrap();
    assert_private(&empty, "a store restored into an empty directory");
    Store::open_dir(&empty).unwrap();
}

#[test]
fn a_checkpoint_is_private_and_never_replaces_anything() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    populate(&dir);
    let kv = RocksBackend::open(&dir, OpenMode::ReadWrite).unwrap();
    let copy = d.path().join("copy");
    kv.checkpoint(&copy).unwrap();
    assert_private(&copy, "a checkpoint");
    // A link planted where a checkpoint goes is refused, never followed.
    let victim = d.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let link = d.path().join("planted");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert!(kv.checkpoint(&link).is_err());
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    // Nothing of the staging directories is left beside it.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("staging"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(kv);
    Store::open_dir(&copy).unwrap();
}

#[test]
fn a_readers_scratch_directory_is_private() {
    umask_022();
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    populate(&dir);
    let prefix = format!("ferrohsm-secondary.scratch-{}-", std::process::id());
    let ro = Store::open_dir_read_only(&dir).unwrap();
    // Other tests of this binary may have readers open too: every scratch directory of
    // this process must be private, and there is at least ours.
    let scratch: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert!(!scratch.is_empty(), "no scratch directory under {prefix}");
    for s in &scratch {
        if let Ok(md) = std::fs::symlink_metadata(s) {
            assert_eq!(md.mode() & 0o7777, 0o700, "{}", s.display());
        }
    }
    drop(ro);
}
