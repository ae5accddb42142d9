//! Many processes on one token: the built module in mode "auto" (the default) through the
//! `ferrohsm-server` beside it, started on demand, driven by the `cryptoki` crate and by
//! `pkcs11-tool`. Each scenario runs in child processes (PKCS#11 state is per process).

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use ferrohsm_tests::p11::{P256, SO_PIN, USER_PIN, ec_point, init, pin, rv};
use ferrohsm_tests::{TestEnv, is_child, module_path, run_child, spawn_child, wait_for_file};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The directory of the test's store, where the processes of a scenario leave signals.
fn work() -> PathBuf {
    PathBuf::from(std::env::var_os("FERROHSM_WORK").expect("FERROHSM_WORK"))
}

fn first_token(p: &Pkcs11) -> Slot {
    p.get_slots_with_token().unwrap()[0]
}

/// Initialises the token with both PINs; returns a logged-in user session.
fn fresh_token(p: &Pkcs11) -> (Slot, Session) {
    let slot = first_token(p);
    p.init_token(slot, &pin(SO_PIN), "served").unwrap();
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    s.init_pin(&pin(USER_PIN)).unwrap();
    s.logout().unwrap();
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    (slot, s)
}

fn ec_pair(s: &Session, label: &str, id: u8) -> (ObjectHandle, ObjectHandle) {
    s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::EcParams(P256.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(vec![id]),
            Attribute::Verify(true),
        ],
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(vec![id]),
            Attribute::Sign(true),
        ],
    )
    .unwrap()
}

fn find(s: &Session, class: ObjectClass, label: &str) -> Vec<ObjectHandle> {
    s.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
    .unwrap()
}

/// Checks a raw `CKM_ECDSA` signature over a 32-byte digest with RustCrypto.
fn verify_p256(point: &[u8], digest: &[u8], sig: &[u8]) {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
    vk.verify_prehash(digest, &sig)
        .expect("RustCrypto verifies the signature");
}

fn envs(env: &TestEnv) -> [(&'static str, &Path); 2] {
    [
        ("FERROHSM_CONF", &env.config),
        ("FERROHSM_WORK", env.dir.path()),
    ]
}

fn pkcs11_tool(env: &TestEnv, args: &[&str]) -> String {
    let out = std::process::Command::new("pkcs11-tool")
        .env("FERROHSM_CONF", &env.config)
        .arg("--module")
        .arg(module_path())
        .args(args)
        .output()
        .expect("pkcs11-tool (Debian package opensc) runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pkcs11-tool {args:?}:\n{text}");
    text
}

// ------------------------------------------------- two processes and pkcs11-tool at once

#[test]
fn a_second_process_and_pkcs11_tool_work_while_one_holds_the_token() {
    let env = TestEnv::served();
    let mut holder = spawn_child("child_holder", &envs(&env));
    let w = env.dir.path();
    wait_for_file(&w.join("ready"), 60);
    // pkcs11-tool, in a process of its own, lists and signs with the holder's key.
    let listed = pkcs11_tool(&env, &["--login", "--pin", USER_PIN, "--list-objects"]);
    assert!(listed.contains("label:      held"), "{listed}");
    std::fs::write(w.join("msg"), b"signed by pkcs11-tool").unwrap();
    let sig = w.join("sig");
    pkcs11_tool(
        &env,
        &[
            "--login",
            "--pin",
            USER_PIN,
            "--sign",
            "--id",
            "01",
            "-m",
            "ECDSA-SHA256",
            "--input-file",
            w.join("msg").to_str().unwrap(),
            "--output-file",
            sig.to_str().unwrap(),
        ],
    );
    let point = std::fs::read(w.join("held.point")).unwrap();
    use sha2::Digest;
    let digest = sha2::Sha256::digest(b"signed by pkcs11-tool");
    verify_p256(&point, &digest, &std::fs::read(&sig).unwrap());
    pkcs11_tool(
        &env,
        &[
            "--login",
            "--pin",
            USER_PIN,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "tool-made",
            "--id",
            "02",
        ],
    );
    // And a third process through the cryptoki crate.
    run_child("child_second", &envs(&env));
    std::fs::write(w.join("done"), b"").unwrap();
    let status = holder.wait().unwrap();
    assert!(status.success(), "the holder failed");
}

#[test]
fn child_holder() {
    if !is_child("child_holder") {
        return;
    }
    let p = init();
    let (_, s) = fresh_token(&p);
    let (public, _) = ec_pair(&s, "held", 1);
    std::fs::write(work().join("held.point"), ec_point(&s, public)).unwrap();
    std::fs::write(work().join("ready"), b"").unwrap();
    wait_for_file(&work().join("done"), 120);
    // What the others made is here, and the holder's own login and session still work.
    assert_eq!(find(&s, ObjectClass::PRIVATE_KEY, "tool-made").len(), 1);
    assert_eq!(find(&s, ObjectClass::PRIVATE_KEY, "second-made").len(), 1);
    let key = find(&s, ObjectClass::PRIVATE_KEY, "held")[0];
    let sig = s.sign(&Mechanism::Ecdsa, key, &[7u8; 32]).unwrap();
    verify_p256(&ec_point(&s, public), &[7u8; 32], &sig);
}

#[test]
fn child_second() {
    if !is_child("child_second") {
        return;
    }
    let p = init();
    let slot = first_token(&p);
    let s = p.open_rw_session(slot).unwrap();
    // Login is per process: the holder's does not log this one in.
    assert_eq!(
        s.get_session_info().unwrap().session_state(),
        SessionState::RwPublic
    );
    assert!(find(&s, ObjectClass::PRIVATE_KEY, "held").is_empty());
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let key = find(&s, ObjectClass::PRIVATE_KEY, "held")[0];
    let public = find(&s, ObjectClass::PUBLIC_KEY, "held")[0];
    let sig = s.sign(&Mechanism::Ecdsa, key, &[9u8; 32]).unwrap();
    verify_p256(&ec_point(&s, public), &[9u8; 32], &sig);
    ec_pair(&s, "second-made", 3);
}

// ---------------------------------------------------- a server killed under load (F9)

#[test]
fn a_server_killed_under_load_answers_device_removed_then_a_new_server_serves() {
    let env = TestEnv::served();
    run_child("child_kill_server", &envs(&env));
}

fn server_pid() -> u32 {
    let out = std::process::Command::new(module_path().with_file_name("ferrohsm-server"))
        .args(["status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("(pid ")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text:?}"))
}

#[test]
fn child_kill_server() {
    if !is_child("child_kill_server") {
        return;
    }
    let p = init();
    let (slot, s) = fresh_token(&p);
    let (_, key) = ec_pair(&s, "survivor", 1);
    let pid = server_pid();
    // Two signers under way when the server dies.
    let signers: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                let s = p.open_ro_session(slot).unwrap();
                let mut signed = 0u32;
                loop {
                    match s.sign(&Mechanism::Ecdsa, key, &[1u8; 32]) {
                        Ok(_) => signed += 1,
                        Err(e) => return (signed, e),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut removed = 0;
    for t in signers {
        let (signed, e) = t.join().unwrap();
        assert!(signed > 0, "the signer never signed before the kill");
        match e {
            Error::Pkcs11(RvError::DeviceRemoved, _) => removed += 1,
            // Its first call after another thread's reconnect reached the new server.
            Error::Pkcs11(RvError::SessionHandleInvalid, _) => {}
            other => panic!("a signer got {other:?}"),
        }
    }
    assert!(removed >= 1, "nobody saw CKR_DEVICE_REMOVED");
    // The old session is gone with its server; the module reached a new one by itself.
    assert_eq!(rv(s.get_session_info()), RvError::SessionHandleInvalid);
    assert_ne!(server_pid(), pid, "no new server");
    // Nothing acknowledged was lost: the key made before the kill signs.
    let s = p.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let key = find(&s, ObjectClass::PRIVATE_KEY, "survivor")[0];
    let public = find(&s, ObjectClass::PUBLIC_KEY, "survivor")[0];
    let sig = s.sign(&Mechanism::Ecdsa, key, &[2u8; 32]).unwrap();
    verify_p256(&ec_point(&s, public), &[2u8; 32], &sig);
}

// ------------------------------------------------ a client killed mid-operation (F9)

#[test]
fn a_client_killed_mid_operation_leaves_its_sessions_closed_and_the_server_healthy() {
    let env = TestEnv::served();
    let mut victim = spawn_child("child_victim", &envs(&env));
    wait_for_file(&env.dir.path().join("ready"), 60);
    victim.kill().unwrap();
    victim.wait().unwrap();
    run_child("child_after_victim", &envs(&env));
}

#[test]
fn child_victim() {
    if !is_child("child_victim") {
        return;
    }
    let p = init();
    let (slot, s) = fresh_token(&p);
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(false),
        Attribute::Label(b"victim-session".to_vec()),
        Attribute::Value(b"x".to_vec()),
    ])
    .unwrap();
    let others: Vec<Session> = (0..3).map(|_| p.open_ro_session(slot).unwrap()).collect();
    others[0].digest_init(&Mechanism::Sha256).unwrap();
    others[0].digest_update(b"half a digest").unwrap();
    std::fs::write(work().join("ready"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn child_after_victim() {
    if !is_child("child_after_victim") {
        return;
    }
    let p = init();
    let slot = first_token(&p);
    let s = p.open_rw_session(slot).unwrap();
    // The victim's four sessions went with it (the server counts every client's).
    let end = Instant::now() + Duration::from_secs(5);
    while p.get_token_info(slot).unwrap().session_count() != Some(1) {
        assert!(Instant::now() < end, "the dead client's sessions stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        s.get_session_info().unwrap().session_state(),
        SessionState::RwPublic
    );
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    assert!(find(&s, ObjectClass::DATA, "victim-session").is_empty());
}

// --------------------------------------------------------- fork and threads (item 2)

#[test]
fn a_forked_child_initialises_again_and_the_parent_goes_on() {
    let env = TestEnv::served();
    run_child("child_fork", &envs(&env));
}

#[test]
#[allow(unsafe_code)]
fn child_fork() {
    if !is_child("child_fork") {
        return;
    }
    let p = init();
    let (slot, s) = fresh_token(&p);
    let (public, key) = ec_pair(&s, "forked", 1);
    // SAFETY: fork in a process whose only other threads are the test harness's idle
    // ones; the child calls the module and then `_exit`, running no destructor.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = (|| {
            // The parent's initialisation is not the child's.
            if !matches!(
                p.get_slots_with_token(),
                Err(Error::Pkcs11(RvError::CryptokiNotInitialized, _))
            ) {
                return 10;
            }
            let q = Pkcs11::new(module_path()).expect("load");
            if q.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                .is_err()
            {
                return 11;
            }
            let Ok(cs) = q.open_ro_session(slot) else {
                return 12;
            };
            if cs.login(UserType::User, Some(&pin(USER_PIN))).is_err() {
                return 13;
            }
            let Ok(found) = cs.find_objects(&[Attribute::Label(b"forked".to_vec())]) else {
                return 14;
            };
            if found.len() != 2 {
                return 15;
            }
            0
        })();
        // SAFETY: leaves the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
    // The parent's connection, session and login are untouched.
    let sig = s.sign(&Mechanism::Ecdsa, key, &[3u8; 32]).unwrap();
    verify_p256(&ec_point(&s, public), &[3u8; 32], &sig);
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn a_client_starts_no_thread_and_honours_cant_create_threads() {
    let env = TestEnv::served();
    run_child("child_threads", &envs(&env));
}

#[test]
fn child_threads() {
    if !is_child("child_threads") {
        return;
    }
    let p = Pkcs11::new(module_path()).unwrap();
    let before = threads();
    p.initialize(CInitializeArgs::new(
        CInitializeFlags::OS_LOCKING_OK | CInitializeFlags::LIBRARY_CANT_CREATE_OS_THREADS,
    ))
    .expect("C_Initialize without threads, the server started on demand");
    let (_, s) = fresh_token(&p);
    s.generate_random_vec(16).unwrap();
    assert_eq!(threads(), before, "the module started a thread");
    drop(s);
    p.finalize().unwrap();
    assert_eq!(threads(), before);
    // Embedded asked for, threads forbidden (GnuTLS's p11tool does this): the store opens
    // in the server instead, and still no thread starts here.
    let conf = std::env::var_os("FERROHSM_CONF").unwrap();
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(
        &conf,
        text.replace("mode = \"auto\"", "mode = \"embedded\""),
    )
    .unwrap();
    let p = Pkcs11::new(module_path()).unwrap();
    p.initialize(CInitializeArgs::new(
        CInitializeFlags::OS_LOCKING_OK | CInitializeFlags::LIBRARY_CANT_CREATE_OS_THREADS,
    ))
    .expect("C_Initialize, embedded configured, threads forbidden");
    let s = p.open_ro_session(first_token(&p)).unwrap();
    s.generate_random_vec(16).unwrap();
    assert_eq!(threads(), before, "embedded opened the store here");
}

// ------------------------------------------------------ the CLI beside a server (item 4)

#[test]
fn the_cli_reads_and_backs_up_a_served_store_and_refuses_to_write_it() {
    let env = TestEnv::served();
    let mut holder = spawn_child("child_keep_open", &envs(&env));
    let w = env.dir.path();
    wait_for_file(&w.join("ready"), 60);
    let store = env.store.to_str().unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(ferrohsm_tests::cli_path())
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = cli(args);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    assert!(ok(&["token", "list", "--store", store]).contains("served"));
    assert!(ok(&["inspect", "--store", store, "objects"]).contains("kept"));
    ok(&["migrate", "status", "--store", store]);
    let pass = w.join("pass");
    std::fs::write(&pass, "a backup passphrase of some length").unwrap();
    let archive = w.join("served.fhsm");
    ok(&[
        "backup",
        "create",
        "--store",
        store,
        "--out",
        archive.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--no-progress",
    ]);
    ok(&[
        "backup",
        "verify",
        archive.to_str().unwrap(),
        "--passphrase-file",
        pass.to_str().unwrap(),
        "--no-progress",
    ]);
    // A writer is refused, and told that the server holds the store.
    let so = w.join("so");
    std::fs::write(&so, SO_PIN).unwrap();
    let o = cli(&[
        "token",
        "init",
        "--store",
        store,
        "--label",
        "other",
        "--so-pin-file",
        so.to_str().unwrap(),
        "--no-user-pin",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("ferrohsm-server"), "{err}");
    std::fs::write(w.join("done"), b"").unwrap();
    assert!(holder.wait().unwrap().success());
}

#[test]
fn child_keep_open() {
    if !is_child("child_keep_open") {
        return;
    }
    let p = init();
    let (_, s) = fresh_token(&p);
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(b"kept".to_vec()),
        Attribute::Value(b"v".to_vec()),
    ])
    .unwrap();
    std::fs::write(work().join("ready"), b"").unwrap();
    wait_for_file(&work().join("done"), 120);
}

// ------------------------------------------- 8 processes × 2 threads on one token (L6)

#[test]
fn eight_processes_of_two_threads_sign_encrypt_create_and_find_without_an_error() {
    let env = TestEnv::served();
    run_child("child_load_setup", &envs(&env));
    let ids: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            let [a, b] = envs(&env);
            spawn_child("child_load", &[a, b, ("FERROHSM_LOAD_ID", Path::new(id))])
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a loaded process failed");
    }
    let out = run_child("child_load_count", &envs(&env));
    let line = out.lines().find(|l| l.contains("objects created"));
    println!("{}", line.unwrap_or_default());
}

#[test]
fn child_load_setup() {
    if !is_child("child_load_setup") {
        return;
    }
    let p = init();
    let (_, s) = fresh_token(&p);
    ec_pair(&s, "load-ec", 1);
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::ValueLen(32.into()),
            Attribute::Label(b"load-aes".to_vec()),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ],
    )
    .unwrap();
}

/// How long each loaded process runs (30 s unless `FERROHSM_LOAD_SECS` says otherwise).
fn load_duration() -> Duration {
    let secs = std::env::var("FERROHSM_LOAD_SECS").map_or(30, |s| s.parse().unwrap());
    Duration::from_secs(secs)
}

fn gcm<'a>(iv: &'a mut [u8; 12], aad: &'a str) -> Mechanism<'a> {
    use cryptoki::mechanism::aead::GcmParams;
    Mechanism::AesGcm(GcmParams::new(iv, aad.as_bytes(), 128.into()).unwrap())
}

/// One thread's share of the load; returns how many objects it created.
fn load_round(p: &Pkcs11, slot: Slot, id: &str, thread: usize, end: Instant) -> u64 {
    let s = p.open_rw_session(slot).unwrap();
    let key = find(&s, ObjectClass::PRIVATE_KEY, "load-ec")[0];
    let point = ec_point(&s, find(&s, ObjectClass::PUBLIC_KEY, "load-ec")[0]);
    let aes = find(&s, ObjectClass::SECRET_KEY, "load-aes")[0];
    let mut made = 0u64;
    while Instant::now() < end {
        let digest = [made as u8; 32];
        let sig = s.sign(&Mechanism::Ecdsa, key, &digest).unwrap();
        if made.is_multiple_of(64) {
            verify_p256(&point, &digest, &sig);
        }
        let mut iv = [thread as u8; 12];
        iv[4..].copy_from_slice(&made.to_be_bytes());
        let data = vec![made as u8; 1024];
        let ct = s.encrypt(&gcm(&mut iv.clone(), id), aes, &data).unwrap();
        assert_eq!(
            s.decrypt(&gcm(&mut iv.clone(), id), aes, &ct).unwrap(),
            data
        );
        let label = format!("load-{id}-{thread}-{made}");
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.clone().into_bytes()),
            Attribute::Value(vec![1, 2, 3]),
        ])
        .unwrap();
        made += 1;
        assert_eq!(find(&s, ObjectClass::DATA, &label).len(), 1, "{label}");
    }
    made
}

#[test]
fn child_load() {
    if !is_child("child_load") {
        return;
    }
    let id = std::env::var("FERROHSM_LOAD_ID").unwrap();
    let p = init();
    let slot = first_token(&p);
    let s = p.open_ro_session(slot).unwrap();
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    let end = Instant::now() + load_duration();
    let made: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|t| {
                let (p, id) = (&p, &id);
                scope.spawn(move || load_round(p, slot, id, t, end))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert!(made > 0);
    std::fs::write(work().join(format!("load-{id}.count")), made.to_string()).unwrap();
}

#[test]
fn child_load_count() {
    if !is_child("child_load_count") {
        return;
    }
    let made: u64 = (0..8)
        .map(|i| {
            let f = work().join(format!("load-{i}.count"));
            std::fs::read_to_string(f).unwrap().parse::<u64>().unwrap()
        })
        .sum();
    let p = init();
    let s = p.open_ro_session(first_token(&p)).unwrap();
    let found = s
        .find_objects(&[Attribute::Class(ObjectClass::DATA)])
        .unwrap()
        .len() as u64;
    assert_eq!(
        found, made,
        "objects created under load and found afterwards"
    );
    println!("{made} objects created by 8 processes x 2 threads, all found");
}

// ------------------------------------------- processes starting at once: one server

#[test]
fn four_processes_starting_at_once_end_up_with_one_server() {
    let env = TestEnv::served();
    run_child("child_race_setup", &envs(&env));
    assert!(
        !env.server_command("stop").stdout.is_empty(),
        "no server to stop after the setup"
    );
    let ids: Vec<String> = (0..4).map(|i| i.to_string()).collect();
    let racers: Vec<_> = ids
        .iter()
        .map(|id| {
            let [a, b] = envs(&env);
            spawn_child("child_racer", &[a, b, ("FERROHSM_LOAD_ID", Path::new(id))])
        })
        .collect();
    let w = env.dir.path();
    let pids: Vec<String> = ids
        .iter()
        .map(|id| {
            let f = w.join(format!("racer-{id}.pid"));
            wait_for_file(&f, 60);
            std::fs::read_to_string(f).unwrap()
        })
        .collect();
    std::fs::write(w.join("done"), b"").unwrap();
    for mut r in racers {
        assert!(r.wait().unwrap().success(), "a racer failed");
    }
    assert!(pids.iter().all(|p| p == &pids[0]), "servers: {pids:?}");
}

#[test]
fn child_race_setup() {
    if !is_child("child_race_setup") {
        return;
    }
    let p = init();
    fresh_token(&p);
}

#[test]
fn child_racer() {
    if !is_child("child_racer") {
        return;
    }
    let id = std::env::var("FERROHSM_LOAD_ID").unwrap();
    let p = init();
    let s = p.open_rw_session(first_token(&p)).unwrap();
    s.login(UserType::User, Some(&pin(USER_PIN))).unwrap();
    // Connected: the server this process reached is the one that answers now.
    let tmp = work().join(format!("racer-{id}.tmp"));
    std::fs::write(&tmp, server_pid().to_string()).unwrap();
    std::fs::rename(tmp, work().join(format!("racer-{id}.pid"))).unwrap();
    wait_for_file(&work().join("done"), 120);
}
