//! `start` and `status`: what the module runs in mode "auto", and what an operator asks.
//!
//! `start` returns once a server answers on the store's socket. That server may be one
//! already running, the one it started, or one another starter started at the same
//! moment: the store's lock lets only one of them serve, and the others exit with
//! [`EXIT_STORE_HELD`].

use crate::EXIT_STORE_HELD;
use hsm_core::config::Config;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a starter keeps looking for another server after its own found the store
/// held: the holder may be a server still starting up.
const HELD_GRACE: Duration = Duration::from_secs(3);

/// The store's socket path, or the exit of a configuration that names none.
fn socket(config: &Config) -> Result<std::path::PathBuf, ExitCode> {
    config.socket_path().map_err(|e| {
        eprintln!("ferrohsm-server: {e}");
        ExitCode::FAILURE
    })
}

/// Shakes hands with the server as a client would and prints who answered.
pub fn status(config: &Config) -> ExitCode {
    let socket = match socket(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match ask(&socket) {
        Ok(hsm_proto::Welcome::Accepted { server, pid, .. }) => {
            println!("{server} (pid {pid}) answers on {}", socket.display());
            ExitCode::SUCCESS
        }
        Ok(hsm_proto::Welcome::Refused { reason }) => {
            println!(
                "a server answers on {} but refuses us: {reason}",
                socket.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("no server answers on {}: {e}", socket.display());
            ExitCode::FAILURE
        }
    }
}

/// Asks the server to stop (SIGTERM) and waits until its socket is gone.
pub fn stop(config: &Config) -> ExitCode {
    let socket = match socket(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let pid = match ask(&socket) {
        Ok(hsm_proto::Welcome::Accepted { pid, .. }) => pid,
        Ok(hsm_proto::Welcome::Refused { reason }) => {
            eprintln!("ferrohsm-server: the server refuses us: {reason}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            println!("no server answers on {}", socket.display());
            return ExitCode::SUCCESS;
        }
    };
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        eprintln!("ferrohsm-server: the server gave pid {pid}");
        return ExitCode::FAILURE;
    };
    if let Err(e) = rustix::process::kill_process(p, rustix::process::Signal::TERM) {
        eprintln!("ferrohsm-server: cannot signal pid {pid}: {e}");
        return ExitCode::FAILURE;
    }
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if UnixStream::connect(&socket).is_err() {
            println!("stopped the server (pid {pid}) on {}", socket.display());
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("ferrohsm-server: pid {pid} still answers after 10 s");
    ExitCode::FAILURE
}

fn ask(socket: &Path) -> Result<hsm_proto::Welcome, hsm_proto::FrameError> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let hello = hsm_proto::Hello::new(
        hsm_core::api::CALLS,
        env!("CARGO_PKG_VERSION"),
        format!("ferrohsm-server status[{}]", std::process::id()),
        None,
    );
    hsm_proto::shake_hands(&mut s, &hello)
}

pub fn run(config: &Config, config_path: &Path) -> ExitCode {
    match start(config, config_path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrohsm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(config: &Config, config_path: &Path) -> Result<(), String> {
    let socket = config.socket_path().map_err(|e| e.to_string())?;
    if UnixStream::connect(&socket).is_ok() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let log = config.store.join("ferrohsm-server.log");
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(config_path)
        .arg("serve")
        .arg("--idle-exit")
        .arg(config.server.idle_exit_secs.to_string())
        .arg("--log-file")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C meant for the client does not reach it.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start a server: {e}"))?;
    let said = Arc::new(Mutex::new(String::new()));
    if let Some(mut err) = child.stderr.take() {
        let said = said.clone();
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = err.read_to_string(&mut buf);
            *said.lock().unwrap_or_else(|p| p.into_inner()) = buf;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(config.server.start_timeout_secs.max(1));
    let mut held_since = None;
    while Instant::now() < deadline {
        if UnixStream::connect(&socket).is_ok() {
            return Ok(());
        }
        if held_since.is_none()
            && let Ok(Some(status)) = child.try_wait()
        {
            if status.code() != Some(EXIT_STORE_HELD.into()) {
                std::thread::sleep(Duration::from_millis(50)); // its last words
                return Err(format!(
                    "the server exited ({status}) before it answered: {}",
                    said.lock().unwrap_or_else(|p| p.into_inner()).trim()
                ));
            }
            held_since = Some(Instant::now());
        }
        if held_since.is_some_and(|t: Instant| t.elapsed() > HELD_GRACE) {
            std::thread::sleep(Duration::from_millis(50));
            return Err(format!(
                "{} and no server answers on {} (is a process using the store in mode \
                 \"embedded\"?)",
                said.lock().unwrap_or_else(|p| p.into_inner()).trim(),
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "no server answered on {} within {} s; its log is {}",
        socket.display(),
        config.server.start_timeout_secs,
        log.display()
    ))
}
