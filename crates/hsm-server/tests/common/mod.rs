//! A real `ferrohsm-server` process on a temporary store, and a raw protocol client to
//! talk to it byte by byte.

#![allow(dead_code)]

use hsm_core::api::{CALLS, Request};
use hsm_proto::{AppKey, Hello, Welcome};
use serde::de::DeserializeOwned;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub child: Child,
}

impl Server {
    /// Starts `ferrohsm-server serve` with `extra` appended to the `[server]` section.
    pub fn start(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ferrohsm.toml");
        let store = dir.path().join("store");
        std::fs::write(
            &config,
            format!(
                "mode = \"client\"\nstore = {:?}\nlog_level = \"info\"\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n[server]\n{extra}\n",
                store.display().to_string()
            ),
        )
        .unwrap();
        let socket = store.join("ferrohsm-server.sock");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferrohsm-server"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Server {
            dir,
            config,
            socket,
            child,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no server on {}:\n{}", self.socket.display(), self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Whether a line the server logs contains `needle` within a few seconds (it answers
    /// the client before its log line reaches the file).
    pub fn logs(&self, needle: &str) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The server's peak resident memory, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn raw(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// A connection after a good handshake, and its application.
    pub fn client(&self, join: Option<AppKey>) -> (UnixStream, AppKey) {
        let mut s = self.raw();
        match hello(&mut s, good_hello(join)) {
            Welcome::Accepted { app, .. } => (s, app),
            Welcome::Refused { reason } => panic!("refused: {reason}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

pub fn good_hello(join: Option<AppKey>) -> Hello {
    Hello::new(CALLS, "test", "frames-test".into(), join)
}

/// Sends the magic and `h`; reads the server's magic and welcome.
pub fn hello(s: &mut UnixStream, h: Hello) -> Welcome {
    hsm_proto::shake_hands(s, &h).unwrap()
}

pub fn read_welcome(s: &mut impl std::io::Read) -> Welcome {
    hsm_proto::read_magic(s, "server").unwrap();
    let p = hsm_proto::read_frame(s, hsm_proto::HELLO_MAX).unwrap();
    hsm_proto::decode(&p).unwrap()
}

/// One call on a connection.
pub fn call<T: DeserializeOwned>(s: &mut UnixStream, r: &Request) -> hsm_core::Result<T> {
    s.write_all(&hsm_proto::encode(r).unwrap()).unwrap();
    read_answer(s)
}

pub fn read_answer<T: DeserializeOwned>(s: &mut UnixStream) -> hsm_core::Result<T> {
    let p = hsm_proto::read_frame(s, hsm_proto::MAX_FRAME).unwrap();
    hsm_proto::decode(&p).unwrap()
}

/// Whether the server has closed this connection (reads end of stream).
pub fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(std::io::Read::read(s, &mut b), Ok(0) | Err(_))
}

pub fn path(p: &Path) -> String {
    p.display().to_string()
}
