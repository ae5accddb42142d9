//! The golden store of schema version 1 (tests/fixtures/store-v1, written once by
//! `cargo run -p hsm-store --example make_fixture`) must keep opening in every later build.

use hsm_store::{Query, Store, VersionCause};
use hsm_types::{AttributeType as A, ObjectClass, SecretString, TokenId, UserKind, VersionNo};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn golden_v1_fixture_opens_and_reads() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/store-v1");
    let dir = tempfile::tempdir().unwrap();
    // Work on a copy: opening read-write may write (WAL, OPTIONS); the fixture stays as committed.
    copy_dir(&fixture, dir.path());
    let store = Store::open_dir(dir.path()).unwrap();
    assert_eq!(store.schema_version(), 1);
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
