//! Black-box tests of `ferrohsm token …`: the built binary, real stores on disk.

use std::path::Path;
use std::process::{Command, Output};

fn ferrohsm(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrohsm"));
    c.args(args)
        .env_remove("FERROHSM_SO_PIN")
        .env_remove("FERROHSM_USER_PIN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

const FAST: [&str; 6] = [
    "--kdf-memory-kib",
    "256",
    "--kdf-iterations",
    "1",
    "--kdf-parallelism",
    "1",
];

fn init(store: &Path, label: &str) -> Output {
    let mut args = vec![
        "token",
        "init",
        "--store",
        store.to_str().unwrap(),
        "--label",
        label,
        "--so-pin-env",
        "T_SO",
        "--user-pin-env",
        "T_USER",
    ];
    args.extend(FAST);
    ferrohsm(
        &args,
        &[("T_SO", "so-secret-1"), ("T_USER", "user-secret-1")],
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_then_list_as_table_and_json() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let o = init(&store, "CI signing");
    assert!(o.status.success(), "{}", stderr(&o));
    let pin_file = d.path().join("so.pin");
    std::fs::write(&pin_file, "file-so-pin\n").unwrap();
    let mut args = vec![
        "token",
        "init",
        "--store",
        store.to_str().unwrap(),
        "--label",
        "second",
        "--so-pin-file",
        pin_file.to_str().unwrap(),
        "--no-user-pin",
    ];
    args.extend(FAST);
    let o = ferrohsm(&args, &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = ferrohsm(&["token", "list", "--store", store.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TOKEN") && lines[0].contains("LABEL"),
        "{table}"
    );
    assert!(
        lines[1].contains("CI signing") && lines[1].contains("yes"),
        "{table}"
    );
    assert!(
        lines[2].contains("second") && lines[2].contains("no"),
        "{table}"
    );

    let o = ferrohsm(
        &[
            "token",
            "list",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema_version"], hsm_core::store::migrate::CURRENT);
    assert_eq!(v["store_id"].as_str().unwrap().len(), 32);
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["label"], "CI signing");
    assert_eq!(tokens[0]["user_pin_initialized"], true);
    assert_eq!(tokens[1]["user_pin_initialized"], false);
    assert_eq!(tokens[1]["id"], 2);
    // No PIN ever reaches the output.
    let all = format!("{table}{v}");
    assert!(!all.contains("so-secret-1") && !all.contains("file-so-pin"));
}

#[test]
fn missing_pin_sources_fail_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("s");
    let o = ferrohsm(
        &[
            "token",
            "init",
            "--store",
            store.to_str().unwrap(),
            "--label",
            "x",
            "--so-pin-env",
            "NOT_SET_ANYWHERE",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NOT_SET_ANYWHERE"), "{}", stderr(&o));
    // Without a terminal there is nobody to prompt.
    let o = ferrohsm(
        &[
            "token",
            "init",
            "--store",
            store.to_str().unwrap(),
            "--label",
            "x",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no terminal"), "{}", stderr(&o));
    let o = ferrohsm(
        &[
            "token",
            "init",
            "--store",
            store.to_str().unwrap(),
            "--label",
            "x",
            "--so-pin-file",
            "/nonexistent/pin",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("/nonexistent/pin"), "{}", stderr(&o));
}

#[test]
fn short_pin_and_long_label_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("s");
    let mut args = vec![
        "token",
        "init",
        "--store",
        store.to_str().unwrap(),
        "--label",
        "x",
        "--so-pin-env",
        "T_SO",
        "--no-user-pin",
    ];
    args.extend(FAST);
    let o = ferrohsm(&args, &[("T_SO", "12")]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("PIN length"), "{}", stderr(&o));
    let long = "x".repeat(33);
    let o = ferrohsm(
        &[
            "token",
            "init",
            "--store",
            store.to_str().unwrap(),
            "--label",
            &long,
            "--so-pin-env",
            "T_SO",
        ],
        &[("T_SO", "1234")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("label"), "{}", stderr(&o));
}

#[test]
fn list_of_a_non_store_fails_clearly() {
    let d = tempfile::tempdir().unwrap();
    let o = ferrohsm(
        &[
            "token",
            "list",
            "--store",
            d.path().join("nothing").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a FerroHSM store"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn list_works_while_another_process_holds_the_store() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    assert!(init(&store, "busy").status.success());
    // Hold the store the way the module will: open read-write in another process.
    let holder = hsm_core::store::Store::open_dir(&store).unwrap();
    let o = ferrohsm(
        &[
            "token",
            "list",
            "--store",
            store.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tokens"][0]["label"], "busy");
    // A second writer is refused and told who holds it.
    let o = init(&store, "other");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&o)
    );
    drop(holder);
}
