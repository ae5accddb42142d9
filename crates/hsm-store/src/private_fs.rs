//! Files only the store's owner can read, and temporary files nobody can redirect.
//! `schema/format.md` (*Permissions*) is the normative description.
//!
//! A store's files hold every token's wrapped master keys: whoever can copy them can guess
//! PINs offline, at the speed of their own hardware and with no failure counter. So a
//! store directory is `0700` and its files `0600` whatever the process umask (which is
//! process-global and belongs to the host application when this code runs as a PKCS#11
//! module, so it is never changed here):
//!
//! - a new store directory is made `0700` exclusively;
//! - it carries a POSIX default ACL `user::rwx group::--- other::---`, so every file that
//!   RocksDB creates in it later is born `0600` (a default ACL replaces the umask);
//! - every open of a writer, and every flush and compaction it asks for, sets the regular
//!   files in it to `0600` (on a file system without ACLs this sweep is what restricts
//!   the files; between two sweeps a new file may be `0644 & ~umask`, but it sits in a
//!   directory nobody else can enter);
//! - a directory that group or others can read, write or enter, or that another user
//!   owns, is refused (read-only opens too) with what to run to fix it.
//!
//! Temporary and partial files and directories are created exclusively under names with
//! a random part, never through a symbolic link, and only renamed into place without
//! replacing what is there.

use crate::error::{Result, StoreError};
use rustix::fs::{Mode, OFlags, RenameFlags, XattrFlags};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a store directory (and of every temporary directory made here).
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in a store directory, and of partial files.
pub const FILE_MODE: u32 = 0o600;

/// The name under which Linux keeps a directory's default ACL.
const DEFAULT_ACL_XATTR: &str = "system.posix_acl_default";

/// `user::rwx group::--- other::---` in the kernel's `posix_acl_xattr` layout: a version
/// (`u32` = 2), then `(tag u16, permissions u16, id u32)` entries sorted by tag, little
/// endian; the id of these three entries is unused (`ACL_UNDEFINED_ID`). The owner keeps
/// `x` so that a directory made inside (RocksDB makes none today) can still be entered;
/// files ask for no `x`, so they get `rw-`.
const DEFAULT_ACL: [u8; 28] = {
    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const OTHER: u16 = 0x20;
    const UNDEFINED_ID: u32 = u32::MAX;
    let entries: [(u16, u16); 3] = [(USER_OBJ, 0o7), (GROUP_OBJ, 0), (OTHER, 0)];
    let mut out = [0u8; 28];
    let v = 2u32.to_le_bytes();
    out[0] = v[0];
    out[1] = v[1];
    out[2] = v[2];
    out[3] = v[3];
    let mut i = 0;
    while i < entries.len() {
        let at = 4 + i * 8;
        let tag = entries[i].0.to_le_bytes();
        let perm = entries[i].1.to_le_bytes();
        let id = UNDEFINED_ID.to_le_bytes();
        out[at] = tag[0];
        out[at + 1] = tag[1];
        out[at + 2] = perm[0];
        out[at + 3] = perm[1];
        out[at + 4] = id[0];
        out[at + 5] = id[1];
        out[at + 6] = id[2];
        out[at + 7] = id[3];
        i += 1;
    }
    out
};

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// Makes sure `dir` is a store directory only this user can use, as a writer opens it:
/// creates it `0700` when absent (its parents with the usual modes: they are not the
/// store's), and otherwise checks it with [`check_store_dir`]. Then gives it the default
/// ACL when the file system has ACLs.
pub(crate) fn prepare_store_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| io_err("cannot create", parent, e))?;
            }
            match create_private_dir(dir) {
                Ok(()) => {}
                // Made by someone else in the meantime: checked below like any other.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("cannot create", dir, e)),
            }
        }
        Err(e) => return Err(io_err("cannot read", dir, e)),
    }
    check_store_dir(dir, true)?;
    set_default_acl(dir);
    Ok(())
}

/// Refuses a store directory that another user owns, or that group or others can read,
/// write or enter (`mode & 0o077 != 0`). A symbolic link to the directory is followed
/// (a configured path may be one); what is checked is the directory itself.
///
/// With `tighten_empty` (a writer's open), an *empty* directory of this user that nobody
/// else can write to is set to `0700` instead of refused: it is what `mkdir` under the
/// usual umask makes before the first open, and nothing in it can have been read or
/// planted. A directory others can write to is refused even empty: they may have raced a
/// file or a link into it.
pub(crate) fn check_store_dir(dir: &Path, tighten_empty: bool) -> Result<()> {
    let md = std::fs::metadata(dir).map_err(|e| io_err("cannot read", dir, e))?;
    if !md.is_dir() {
        return Err(StoreError::Io(format!(
            "store path {} is not a directory",
            dir.display()
        )));
    }
    let euid = rustix::process::geteuid().as_raw();
    if md.uid() != euid {
        return Err(StoreError::Io(format!(
            "store directory {} is owned by uid {}, not by the user this process runs as \
             (uid {euid}); its files hold wrapped master keys, so only their owner may open \
             them: run as that user (for instance with sudo -u), or hand the store over with \
             `chown -R {euid} {}`",
            dir.display(),
            md.uid(),
            dir.display()
        )));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if tighten_empty && mode & 0o022 == 0 && is_empty_dir(dir)? {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_err("cannot chmod 700", dir, e))?;
        tracing::info!(store = %dir.display(), "empty store directory was {mode:04o}; set to 0700");
        return Ok(());
    }
    Err(StoreError::Io(format!(
        "store directory {} has mode {mode:04o}: group or others can read, write or enter \
         it, and its files hold the wrapped master keys (anyone who copies them can guess \
         PINs offline); refusing to open it. Fix: `chmod 700 {}` and \
         `find {} -type f -exec chmod 600 {{}} +` (as the owner), then open it again",
        dir.display(),
        dir.display(),
        dir.display()
    )))
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| io_err("cannot list", dir, e))?
        .next()
        .is_none())
}

/// Gives `dir` the default ACL `user::rwx group::--- other::---`, so that files created in
/// it later are `0600` whatever the umask of the process that creates them. Answers
/// whether it is in place; without ACL support (some file systems, a kernel without
/// them) the sweeps of [`restrict_files`] are what restricts the files.
pub(crate) fn set_default_acl(dir: &Path) -> bool {
    match rustix::fs::setxattr(dir, DEFAULT_ACL_XATTR, &DEFAULT_ACL, XattrFlags::empty()) {
        Ok(()) => true,
        Err(e) => {
            tracing::info!(
                store = %dir.display(),
                "no POSIX default ACL on this directory ({e}): new files are restricted to \
                 0600 by a sweep at open and after each flush instead"
            );
            false
        }
    }
}

/// Sets every regular file directly in `dir` to `0600` (symbolic links and directories
/// are left alone; RocksDB makes neither). A file that disappears meanwhile (RocksDB
/// deletes obsolete files in the background) is skipped. The first other failure is
/// returned, naming the file: a file this user cannot chmod belongs to someone else.
pub(crate) fn restrict_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, e))?;
        let path = entry.path();
        let md = match entry.metadata() {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("cannot read", &path, e)),
        };
        // `DirEntry::metadata` does not follow a symbolic link.
        if !md.file_type().is_file() || md.mode() & 0o7777 == FILE_MODE {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(FILE_MODE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Io(format!(
                    "cannot restrict {} to 0600 (it is owned by uid {}): {e}; \
                     `chown` it to the store's owner",
                    path.display(),
                    md.uid()
                )));
            }
        }
    }
    Ok(())
}

/// Creates `path` as a new directory, exactly `0700` whatever the umask, with the default
/// ACL. Fails (`AlreadyExists`) if anything is at `path`, a symbolic link included: it is
/// never followed.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(DIR_MODE).create(path)?;
    // The umask may have taken bits of 0700 away; set the mode on the directory just made
    // (through a handle that refuses a link, should the name have been swapped).
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(DIR_MODE))?;
    let _ = rustix::fs::fsetxattr(&fd, DEFAULT_ACL_XATTR, &DEFAULT_ACL, XattrFlags::empty());
    Ok(())
}

/// Creates a new file at `path` for writing, `0600`: fails if anything is there (a file is
/// never truncated, a symbolic link never followed, wherever it points).
pub(crate) fn create_new_private_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// `path` with `.<tag>-<pid>-<16 random hex digits>` appended to its file name: a name no
/// other user can predict and plant something at.
pub(crate) fn unpredictable_sibling(path: &Path, tag: &str) -> Result<PathBuf> {
    let mut r = [0u8; 8];
    crate::crypto::fill_random(&mut r)?;
    let random: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{tag}-{}-{random}", std::process::id()));
    Ok(path.with_file_name(name))
}

/// Renames `from` to `to` only if nothing is at `to` (`AlreadyExists` otherwise), so a
/// file or directory that appeared there meanwhile, or a planted link, is never replaced.
/// On a file system without `RENAME_NOREPLACE`, a file is hard-linked then unlinked (a
/// link is exclusive too); a directory is renamed after a last check.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::io::Errno;
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::OPNOTSUPP => {
            if std::fs::symlink_metadata(from)?.is_dir() {
                match std::fs::symlink_metadata(to) {
                    Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::rename(from, to),
                    Err(e) => Err(e),
                }
            } else {
                std::fs::hard_link(from, to)?;
                std::fs::remove_file(from)
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_acl_has_the_kernel_layout() {
        assert_eq!(&DEFAULT_ACL[..4], &[2, 0, 0, 0]);
        // user::rwx
        assert_eq!(&DEFAULT_ACL[4..12], &[1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff]);
        // group::---
        assert_eq!(&DEFAULT_ACL[12..20], &[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        // other::---
        assert_eq!(
            &DEFAULT_ACL[20..28],
            &[0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn exclusive_creation_never_follows_a_link_or_replaces_a_file() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = create_new_private_file(&link).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        let e = create_new_private_file(&victim).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        let e = create_private_dir(&link).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

        let new = d.path().join("new");
        std::fs::write(&new, b"x").unwrap();
        let e = rename_noreplace(&new, &link).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        rename_noreplace(&new, &d.path().join("moved")).unwrap();
        assert!(!new.exists());
    }

    #[test]
    fn sibling_names_are_unpredictable() {
        let p = Path::new("/x/archive.fhb");
        let a = unpredictable_sibling(p, "partial").unwrap();
        let b = unpredictable_sibling(p, "partial").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("archive.fhb.partial-{}-", std::process::id())),
            "{name}"
        );
        assert_eq!(a.parent(), p.parent());
    }
}
