//! The listening socket: 0600, in a directory that only the store's owner can write to
//! (by default the store directory itself, 0700), so nobody can put another socket in its
//! place; a stale socket of a dead server is replaced, a live one or any other file never.

use std::io::{Error, ErrorKind, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A bound socket, and what to remove when the server stops.
pub struct Bound {
    pub listener: UnixListener,
    path: PathBuf,
    inode: (u64, u64),
}

/// Binds `path` for a server whose store `owner` owns.
pub fn bind(path: &Path, owner: u32) -> Result<Bound> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let md = std::fs::metadata(dir)?;
    if md.uid() != owner || md.mode() & 0o022 != 0 {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "the socket's directory {} is owned by uid {} with mode {:04o}; it must belong \
                 to the store's owner (uid {owner}) and be writable by nobody else, or another \
                 user could put a socket of their own in its place (`chmod 700 {}`)",
                dir.display(),
                md.uid(),
                md.mode() & 0o7777,
                dir.display()
            ),
        ));
    }
    clear_stale(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let md = std::fs::symlink_metadata(path)?;
    Ok(Bound {
        listener,
        path: path.to_path_buf(),
        inode: (md.dev(), md.ino()),
    })
}

/// Removes a socket nobody listens on; refuses a live one and anything not a socket.
fn clear_stale(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !md.file_type().is_socket() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(Error::new(
            ErrorKind::AddrInUse,
            format!(
                "another server already listens on {} (for another store?)",
                path.display()
            ),
        ));
    }
    std::fs::remove_file(path)
}

impl Drop for Bound {
    /// The socket goes with the server, unless another server has replaced it meanwhile.
    fn drop(&mut self) {
        if let Ok(md) = std::fs::symlink_metadata(&self.path)
            && (md.dev(), md.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
