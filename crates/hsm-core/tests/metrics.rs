//! The built-in metrics through the runtime, on a real store: calls are counted by
//! function, mechanism and result, logins and wrong PINs apart, latencies in histograms;
//! the gauges show sessions, the audit log and key versions; the textfile is written
//! whole; and no series carries a key's label or an error's message.

mod common;

use common::*;
use hsm_core::config::Config;
use hsm_core::types::SecretString;
use hsm_core::types::{AttrValue, AttributeSet, AttributeType as A, MechanismType as M};
use hsm_core::{Error, Hsm, LoginKind, Mechanism};

fn config(dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n[metrics]\ntextfile = {:?}\ntextfile_interval_secs = 0\n",
        dir.join("store"),
        dir.join("ferrohsm.prom")
    ))
    .unwrap()
}

#[test]
fn calls_and_state_are_counted_without_labels_or_messages() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(config(dir.path())).unwrap();
    let (_, user) = token(&hsm);
    let mut t = AttributeSet::new();
    t.set(A::TOKEN, AttrValue::Bool(true));
    t.set(A::ENCRYPT, AttrValue::Bool(true));
    t.set(A::LABEL, AttrValue::Bytes(b"very-private-label".to_vec()));
    t.set(A::VALUE_LEN, AttrValue::Ulong(32));
    let key = hsm
        .generate_key(user, &Mechanism::Plain(M::AES_KEY_GEN), t)
        .unwrap();
    let ecb = Mechanism::Plain(M::AES_ECB);
    for _ in 0..4 {
        hsm.encrypt_init(user, &ecb, key).unwrap();
        hsm.encrypt(user, &[0u8; 16]).unwrap();
    }
    let slot = hsm.slot_list(true).unwrap()[0];
    let s = hsm.open_session(hsm.new_app(), slot, false).unwrap();
    let wrong = hsm.login(s, LoginKind::User, SecretString::from("not-the-pin"));
    assert!(matches!(wrong, Err(Error::PinIncorrect)));

    let text = hsm.metrics_text().expect("metrics are configured");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    assert!(line("ferrohsm_operations_total{call=\"C_EncryptInit\",mechanism=\"CKM_AES_ECB\",result=\"ok\"}").ends_with(" 4"));
    assert!(line("ferrohsm_operations_total{call=\"C_Login\",mechanism=\"none\",result=\"pin_incorrect\"}").ends_with(" 1"));
    assert_eq!(
        line("ferrohsm_login_failures_total "),
        "ferrohsm_login_failures_total 1"
    );
    assert!(line("ferrohsm_operation_duration_seconds_count{call=\"C_Encrypt\"}").ends_with(" 4"));
    assert_eq!(line("ferrohsm_sessions_open "), "ferrohsm_sessions_open 3");
    assert_eq!(
        line("ferrohsm_errors_total{ckr=\"0x000000a0\"}"),
        "ferrohsm_errors_total{ckr=\"0x000000a0\"} 1"
    );
    assert!(line("ferrohsm_key_versions{token=\"1\",state=\"enabled\"}").ends_with(" 1"));
    let records: u64 = line("ferrohsm_audit_log_records{token=\"1\"}")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(records >= 5, "{records}");
    assert!(!text.contains("very-private-label"));
    assert!(!text.contains("not-the-pin"));
    // The textfile holds a whole exposition.
    let file = std::fs::read_to_string(dir.path().join("ferrohsm.prom")).unwrap();
    assert!(file.contains("# TYPE ferrohsm_operations_total counter"));
    assert!(file.trim_end().ends_with(|c: char| c.is_ascii_digit()));
}

#[test]
fn without_configuration_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let hsm = Hsm::open(
        hsm_core::config::Config::parse(&format!(
            "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n",
            dir.path().join("store")
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(hsm.metrics_text().is_none());
}
