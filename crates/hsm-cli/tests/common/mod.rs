//! What the CLI's black-box tests share: the built binary, a store with one token and
//! one AES key made the way the module makes one, and a real `ferrohsm-server` holding a
//! store.
#![allow(dead_code)]

use hsm_core::store::{Store, TokenKeys};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, ObjectClass, SecretString, TokenId,
    UserKind,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

pub fn ferrohsm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrohsm"))
        .args(args)
        .env("T_USER", "user-secret-1")
        .env("T_SO", "so-secret-1")
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A store with one token and one AES key; returns the key's id.
pub fn store_with_key(store: &Path) -> u64 {
    let o = ferrohsm(&[
        "token",
        "init",
        "--store",
        store.to_str().unwrap(),
        "--label",
        "cli",
        "--so-pin-env",
        "T_SO",
        "--user-pin-env",
        "T_USER",
        "--kdf-memory-kib",
        "256",
        "--kdf-iterations",
        "1",
        "--kdf-parallelism",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = Store::open_dir(store).unwrap();
    let k = login(&s);
    let attrs = AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
        .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(true))
        .with(A::SENSITIVE, AttrValue::Bool(true))
        .with(A::ENCRYPT, AttrValue::Bool(true))
        .with(A::LABEL, AttrValue::Bytes(b"payments".to_vec()))
        .with(A::VALUE_LEN, AttrValue::Ulong(32))
        .with(A::VALUE, AttrValue::Bytes(vec![0x42; 32]));
    s.create_object(&k, attrs).unwrap().0
}

pub fn login(s: &Store) -> TokenKeys {
    s.login(
        TokenId(1),
        UserKind::User,
        &SecretString::from("user-secret-1"),
    )
    .unwrap()
}

pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A running `ferrohsm-server` holding a store; killed when dropped.
pub struct Server {
    child: Child,
    pub conf: PathBuf,
}

impl Server {
    pub fn start(dir: &Path, store: &Path) -> Server {
        Self::start_with(dir, store, "")
    }

    /// [`Server::start`] with `extra` appended to the configuration.
    pub fn start_with(dir: &Path, store: &Path, extra: &str) -> Server {
        let conf = dir.join("ferrohsm.toml");
        std::fs::write(
            &conf,
            format!("store = {store:?}\nmode = \"client\"\n{extra}\n"),
        )
        .unwrap();
        let exe = Path::new(env!("CARGO_BIN_EXE_ferrohsm")).with_file_name("ferrohsm-server");
        assert!(
            exe.exists(),
            "{} is built with the workspace",
            exe.display()
        );
        let child = Command::new(&exe)
            .args(["--config", conf.to_str().unwrap(), "serve"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status = || {
            Command::new(&exe)
                .args(["--config", conf.to_str().unwrap(), "status"])
                .output()
                .unwrap()
                .status
                .success()
        };
        let t0 = std::time::Instant::now();
        while !status() {
            assert!(t0.elapsed().as_secs() < 30, "the server never answered");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Server { child, conf }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
