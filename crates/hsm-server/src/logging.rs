//! Logs through `tracing`: to standard error, or, once [`to_file`] is called, to a file.
//! A server started on demand has nobody reading its standard error after it is up. It
//! writes there while it starts, so the starter can relay a failure, and then moves to a
//! file in the store directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

static FILE: Mutex<Option<File>> = Mutex::new(None);

/// A log file that reaches this size is moved to `<name>.1` when the server starts.
const ROTATE_AT: u64 = 8 << 20;

pub fn init(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERROHSM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Sink)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// From now on, log lines go to `path` (created 0600, appended to).
pub fn to_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= ROTATE_AT) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW) // never a file a link names
        .open(path)?;
    *FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    Ok(())
}

struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut *FILE.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(f) => f.write(buf),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
