//! Starting the store's server on demand (`mode = "auto"`): `ferrohsm-server start`
//! starts a detached server unless one already answers, waits until it does, and exits.
//! When two processes start one at once, the store's lock decides: the second server
//! cannot open the store and goes away, and both clients reach the first.

use hsm_core::Error as CoreError;
use hsm_core::config::Config;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `close_range(2)`'s flag: mark the range close-on-exec rather than closing it.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// The server to start: the configured one, then `FERROHSM_SERVER`, then the one beside
/// this module (or one directory up, as in a cargo target directory), then `PATH`.
fn server_executable(config: &Config) -> Option<PathBuf> {
    if let Some(p) = &config.server.executable {
        return Some(p.clone());
    }
    if let Some(p) = std::env::var_os("FERROHSM_SERVER") {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = crate::module_path().and_then(|p| p.parent().map(Path::to_path_buf)) {
        for d in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
            let p = d.join("ferrohsm-server");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ferrohsm-server"))
            .find(|p| p.is_file())
    })
}

/// Runs `ferrohsm-server start` and waits for it: on success a server answers on the
/// socket. Its stderr, on failure, becomes the error's message.
pub fn start_server(config: &Config, config_path: &Path) -> Result<(), CoreError> {
    let exe = server_executable(config).ok_or_else(|| {
        CoreError::DeviceRemoved(
            "mode \"auto\": no ferrohsm-server to start (looked at [server] executable, \
             FERROHSM_SERVER, beside the module and on PATH); install it, or set \
             mode = \"embedded\" for one process"
                .into(),
        )
    })?;
    tracing::info!(server = %exe.display(), "starting ferrohsm-server for the store");
    let mut cmd = Command::new(&exe);
    // The server outlives the application that started it: it must not keep what the
    // application inherited without close-on-exec (a shell's `flock` descriptor, a pipe
    // a harness waits on for its end). From fd 3 up everything is marked close-on-exec
    // in the child; the pipe the spawn reports errors on is close-on-exec already.
    // SAFETY: between fork and exec only close_range(2), async-signal-safe, runs; where
    // the kernel lacks it (ENOSYS, before Linux 5.11) the descriptors stay as they were.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    let out = cmd
        .arg("--config")
        .arg(config_path)
        .arg("start")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| CoreError::DeviceRemoved(format!("cannot run {}: {e}", exe.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    Err(CoreError::DeviceRemoved(format!(
        "{} start failed ({}): {}",
        exe.display(),
        out.status,
        why.trim()
    )))
}
