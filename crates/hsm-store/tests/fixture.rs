//! The golden store of schema version 1 (tests/fixtures/store-v1, written once by
//! `cargo run -p hsm-store --example make_fixture`) must keep opening in every later build.

use hsm_store::backend::rocks::{OpenMode, RocksBackend};
use hsm_store::{Query, Store, VersionCause};
use hsm_types::{AttributeType as A, ObjectClass, SecretString, TokenId, UserKind, VersionNo};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    // A store directory must be its owner's alone (ROBUSTNESS A1); a temporary directory
    // is 0777 & ~umask.
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn golden_v1_fixture_is_upgraded_with_the_so_pin_and_reads() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/store-v1");
    let dir = tempfile::tempdir().unwrap();
    // Work on a copy: opening read-write may write (WAL, OPTIONS); the fixture stays as committed.
    copy_dir(&fixture, dir.path());
    // Schema 1 → 2 binds every header to the master key: an open alone cannot do it.
    for e in [
        Store::open_dir(dir.path()).err(),
        Store::open_dir_read_only(dir.path()).err(),
    ] {
        let e = e.expect("a schema-1 store is refused until it is upgraded");
        assert!(
            matches!(e, hsm_store::StoreError::Migration { from: 1, to: 2, .. })
                && e.to_string().contains("ferrohsm migrate run"),
            "{e}"
        );
    }
    let upgrade = |pin: &str| {
        let kv = RocksBackend::open(dir.path(), OpenMode::ReadWrite).unwrap();
        Store::upgrade_with_so_pin(Box::new(kv), &SecretString::from(pin))
    };
    let e = upgrade("wrong-so-pin")
        .err()
        .expect("a wrong SO PIN upgrades nothing");
    assert!(e.to_string().contains("incorrect PIN"), "{e}");
    assert!(Store::open_dir(dir.path()).is_err(), "still schema 1");
    {
        use hsm_store::backend::KvBackend;
        let kv = RocksBackend::open(dir.path(), OpenMode::ReadOnly).unwrap();
        let counter = kv
            .get(
                hsm_store::cf::Cf::Meta,
                &hsm_store::keys::meta::pin_failures(TokenId(1), UserKind::So),
            )
            .unwrap();
        assert_eq!(
            counter,
            Some(1u32.to_be_bytes().to_vec()),
            "the guess counted"
        );
    }
    let (store, bound) = upgrade("golden-so-pin").unwrap();
    assert_eq!(bound, 2, "both headers of the golden token");
    // The token's audit log starts with the store's history as far as it knows it: the
    // refused upgrade's wrong PIN, then the migration.
    let mut ops = Vec::new();
    store
        .audit_records(TokenId(1), 0, &mut |_, b| {
            ops.push(hsm_store::audit::decode_record(b)?.op);
            Ok(hsm_store::backend::Flow::Continue)
        })
        .unwrap();
    let migrated = format!("store.migrate.1-{}", hsm_store::migrate::CURRENT);
    assert_eq!(ops.last(), Some(&migrated), "{ops:?}");
    assert!(store.verify_audit(TokenId(1), None, None).unwrap().ok());
    drop(store);
    // Upgraded once: later opens just open, and a second upgrade has nothing to do.
    let (store, again) = upgrade("golden-so-pin").unwrap();
    assert_eq!(
        (store.schema_version(), again),
        (hsm_store::migrate::CURRENT, 0)
    );
    drop(store);
    let store = Store::open_dir(dir.path()).unwrap();
    assert_eq!(store.schema_version(), hsm_store::migrate::CURRENT);
    let tokens = store.tokens().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].label, "golden");
    let t = TokenId(1);
    assert!(matches!(
        store.login(t, UserKind::User, &SecretString::from("wrong-pin")),
        Err(hsm_store::StoreError::PinIncorrect { .. })
    ));
    let k = store
        .login(t, UserKind::User, &SecretString::from("golden-user-pin"))
        .unwrap();
    let aes = store
        .find(
            &k,
            &Query {
                label: Some(b"golden-aes".to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(aes.len(), 1);
    let obj = store.read_object(&k, aes[0]).unwrap();
    assert_eq!(obj.attrs.class(), Some(ObjectClass::SECRET_KEY));
    assert_eq!(
        obj.attrs.bytes(A::VALUE),
        Some(&(0u8..32).collect::<Vec<_>>()[..])
    );
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    id: Some(vec![1]),
                    ..Default::default()
                }
            )
            .unwrap(),
        aes
    );
    let public = store.public_access(t).unwrap();
    let data = store
        .find(
            &public,
            &Query {
                label: Some(b"golden-data".to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(data.len(), 1);
    let hist = store.versions(&public, data[0]).unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[1].cause, VersionCause::AttributesChanged);
    assert_eq!(
        store
            .read_version(&public, data[0], VersionNo(1))
            .unwrap()
            .attrs
            .label(),
        Some(&b"golden-data-v1"[..])
    );
    assert!(store.check_indexes(&k).unwrap().is_empty());
    // And the files of the fixture itself are untouched by the test.
    assert!(!fixture.join("ferrohsm.lock").exists());
}
