//! Shared helpers for the interop tests: where the built module is, and a throw-away
//! configuration pointing it at a temporary store.
#![forbid(unsafe_code)]

pub mod p11;

use std::path::{Path, PathBuf};

/// The shipped module: `FERROHSM_MODULE` if set, else `libferrohsm_pkcs11.so` in the
/// cargo target directory these tests were built into (tools/test builds it first).
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROHSM_MODULE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/libferrohsm_pkcs11.so
    let profile_dir = exe.parent().and_then(Path::parent).expect("target layout");
    let so = profile_dir.join("libferrohsm_pkcs11.so");
    assert!(
        so.exists(),
        "{} is missing: build it with `cargo build -p hsm-pkcs11` (tools/test does)",
        so.display()
    );
    so
}

/// A temporary store directory and a configuration file naming it, with a fast KDF.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub store: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::with_max_failures(10)
    }

    /// A configuration whose PIN policy locks after `max_failures` wrong PINs.
    pub fn with_max_failures(max_failures: u32) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        let config = dir.path().join("ferrohsm.toml");
        std::fs::write(
            &config,
            format!(
                "mode = \"embedded\"\nstore = {:?}\nlog_level = \"warn\"\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n\
                 [pin_policy]\nmin_len = 4\nmax_len = 64\nmax_failures = {max_failures}\n",
                store.display().to_string()
            ),
        )
        .expect("write config");
        TestEnv { dir, config, store }
    }
}

impl TestEnv {
    /// A store reached the default way, mode "auto": through the `ferrohsm-server` beside
    /// the module, started on demand, here with a short idle exit.
    pub fn served() -> TestEnv {
        let env = TestEnv::new();
        let text = std::fs::read_to_string(&env.config).expect("read config");
        let text = text.replace("mode = \"embedded\"", "mode = \"auto\"")
            + "[server]\nidle_exit_secs = 2\n";
        std::fs::write(&env.config, text).expect("write config");
        env
    }

    /// The store's server, as `ferrohsm-server` beside the module runs it.
    pub fn server_command(&self, what: &str) -> std::process::Output {
        std::process::Command::new(module_path().with_file_name("ferrohsm-server"))
            .arg("--config")
            .arg(&self.config)
            .arg(what)
            .output()
            .expect("run ferrohsm-server")
    }
}

impl Drop for TestEnv {
    /// A server started for this store stops with it.
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.config).is_ok_and(|t| t.contains("mode = \"auto\"")) {
            let _ = self.server_command("stop");
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the test named `child` of the current test binary in a new process with the
/// given environment, and fails unless it passes. PKCS#11 state is process-global and
/// the configuration is read from the environment, so each scenario gets a process.
pub fn run_child(child: &str, envs: &[(&str, &Path)]) -> String {
    let mut c = std::process::Command::new(std::env::current_exe().expect("test executable"));
    c.args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env("FERROHSM_TEST_CHILD", child);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("spawn child test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {child} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {child} did not run:\n{text}"
    );
    text
}

/// Starts the child test `child` like [`run_child`] but does not wait for it.
pub fn spawn_child(child: &str, envs: &[(&str, &Path)]) -> std::process::Child {
    let mut c = std::process::Command::new(std::env::current_exe().expect("test executable"));
    c.args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env("FERROHSM_TEST_CHILD", child)
        .stdin(std::process::Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().expect("spawn child test")
}

/// Waits until `path` exists (another process's signal), or panics after `secs`.
pub fn wait_for_file(path: &Path, secs: u64) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < end,
            "{} did not appear within {secs} s",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// True inside the child process started by [`run_child`] for this test.
pub fn is_child(name: &str) -> bool {
    std::env::var("FERROHSM_TEST_CHILD").is_ok_and(|c| c == name)
}

/// The `ferrohsm` CLI built next to the module.
pub fn cli_path() -> PathBuf {
    let so = module_path();
    let cli = so.with_file_name("ferrohsm");
    assert!(
        cli.exists(),
        "{} is missing: build it with `cargo build -p hsm-cli` (tools/test does)",
        cli.display()
    );
    cli
}

/// A configuration file for an existing store directory.
pub fn config_for(store: &Path, at: &Path) -> PathBuf {
    std::fs::write(
        at,
        format!(
            "mode = \"embedded\"\nstore = {:?}\nlog_level = \"warn\"\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n",
            store.display().to_string()
        ),
    )
    .expect("write config");
    at.to_path_buf()
}
