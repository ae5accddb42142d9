//! Writes the golden schema-v1 fixture store to `tests/fixtures/store-v1/` at the
//! repository root. Run once per schema version; the fixture is committed.
//!
//! `cargo run -p hsm-store --example make_fixture`

use hsm_store::{KdfParams, PinPolicy, Store, TokenSpec};
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, ObjectClass, SecretString, UserKind,
};

fn main() {
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/store-v1");
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    {
        let store = Store::open_dir(&out).unwrap();
        let t = store
            .init_token(TokenSpec {
                label: "golden".into(),
                so_pin: SecretString::from("golden-so-pin"),
                user_pin: Some(SecretString::from("golden-user-pin")),
                kdf: KdfParams::INSECURE_FAST,
                pin_policy: PinPolicy::default(),
            })
            .unwrap();
        let k = store
            .login(t, UserKind::User, &SecretString::from("golden-user-pin"))
            .unwrap();
        let aes = AttributeSet::new()
            .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
            .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0))
            .with(A::TOKEN, AttrValue::Bool(true))
            .with(A::PRIVATE, AttrValue::Bool(true))
            .with(A::LABEL, AttrValue::Bytes(b"golden-aes".to_vec()))
            .with(A::ID, AttrValue::Bytes(vec![0x01]))
            .with(A::VALUE, AttrValue::Bytes((0u8..32).collect()))
            .with(A::SENSITIVE, AttrValue::Bool(true));
        store.create_object(&k, aes).unwrap();
        let data = |label: &[u8]| {
            AttributeSet::new()
                .with(A::CLASS, AttrValue::Ulong(ObjectClass::DATA.0))
                .with(A::TOKEN, AttrValue::Bool(true))
                .with(A::PRIVATE, AttrValue::Bool(false))
                .with(A::LABEL, AttrValue::Bytes(label.to_vec()))
                .with(A::VALUE, AttrValue::Bytes(b"golden data".to_vec()))
        };
        let d = store.create_object(&k, data(b"golden-data-v1")).unwrap();
        store.update_object(&k, d, data(b"golden-data")).unwrap();
        // Everything into SST files, so the fixture does not depend on WAL replay.
        store.backend().purge(&[]).unwrap();
    }
    for entry in std::fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("LOG") || name == "ferrohsm.lock" || name == "LOCK" {
            std::fs::remove_file(&p).unwrap();
        }
    }
    println!("wrote {}", out.display());
}
