//! Black-box tests of `ferrohsm inspect …`: the built binary against real stores, made
//! with the store library and read back through `--json`.

use hsm_core::store::backend::Batch;
use hsm_core::store::cf::Cf;
use hsm_core::store::keys::{self, Visibility};
use hsm_core::store::{KdfParams, PinPolicy, Store, TokenKeys, TokenSpec};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType, ObjectClass, ObjectId,
    SecretString, TokenId, UserKind, VersionNo,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SO_PIN: &str = "so-pin-1234";
const USER_PIN: &str = "user-pin-5678";
/// Key material of the objects below; none of it may ever reach the output.
const AES_PRIVATE: &[u8] = b"\x8a\x13AES-private-key\x00\xfe\x42";
const AES_PUBLIC: &[u8] = b"\x17\x99AES-public-obj-key\x01\xee";
const EC_PRIVATE: &[u8] = b"\x5cEC-private-scalar-value\xc3\x07";

fn ferrohsm(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrohsm"));
    c.args(args).env_remove("T_USER");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `ferrohsm inspect --store DIR <args…>`, with the user PIN from `T_USER` when `pin`.
fn inspect(store: &Path, args: &[&str], pin: Option<&str>) -> Output {
    let mut all = vec!["inspect", "--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    match pin {
        Some(p) => {
            all.extend(["--user-pin-env", "T_USER"]);
            ferrohsm(&all, &[("T_USER", p)])
        }
        None => ferrohsm(&all, &[]),
    }
}

/// The same, with `--json`, expecting success.
fn json(store: &Path, args: &[&str], pin: Option<&str>) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let o = inspect(store, &all, pin);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn spec(label: &str) -> TokenSpec {
    TokenSpec {
        label: label.into(),
        so_pin: SecretString::from(SO_PIN),
        user_pin: Some(SecretString::from(USER_PIN)),
        kdf: KdfParams::INSECURE_FAST,
        pin_policy: PinPolicy {
            min_len: 4,
            max_len: 64,
            max_failures: 5,
        },
    }
}

fn bytes(b: &[u8]) -> AttrValue {
    AttrValue::Bytes(b.to_vec())
}

fn data(label: &str) -> AttributeSet {
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::DATA.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(false))
        .with(A::LABEL, bytes(label.as_bytes()))
        .with(A::VALUE, bytes(b"hello, data"))
}

fn aes(label: &str, id: &[u8], value: &[u8], private: bool) -> AttributeSet {
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
        .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(private))
        .with(A::SENSITIVE, AttrValue::Bool(true))
        .with(A::LABEL, bytes(label.as_bytes()))
        .with(A::ID, bytes(id))
        .with(A::VALUE, bytes(value))
        .with(A::VALUE_LEN, AttrValue::Ulong(value.len() as u64))
        .with(
            A::ALLOWED_MECHANISMS,
            AttrValue::Mechanisms(vec![MechanismType::AES_GCM.0]),
        )
}

fn ec(class: ObjectClass, label: &str, id: &[u8]) -> AttributeSet {
    let s = AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(class.0))
        .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::EC.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(
            A::PRIVATE,
            AttrValue::Bool(class == ObjectClass::PRIVATE_KEY),
        )
        .with(A::LABEL, bytes(label.as_bytes()))
        .with(A::ID, bytes(id))
        .with(A::EC_PARAMS, bytes(&[0x06, 0x08, 0x2a, 0x86, 0x48]))
        .with(
            A::ALLOWED_MECHANISMS,
            AttrValue::Mechanisms(vec![MechanismType::ECDSA.0]),
        );
    if class == ObjectClass::PRIVATE_KEY {
        s.with(A::VALUE, bytes(EC_PRIVATE))
            .with(A::SIGN, AttrValue::Bool(true))
    } else {
        s.with(A::EC_POINT, bytes(&[0x04, 0x41, 0x04, 0x01]))
            .with(A::VERIFY, AttrValue::Bool(true))
    }
}

/// The objects of a fixture token, by id.
struct Ids {
    data: ObjectId,
    aes_private: ObjectId,
    aes_public: ObjectId,
    ec_public: ObjectId,
    ec_private: ObjectId,
}

/// One token "alpha" with: a public data object with three versions (created, changed,
/// rolled back), a private AES key, a public AES key (its material sealed apart), and an
/// EC key pair sharing CKA_ID 0102 with the private AES key.
fn populate(store: &Store) -> (TokenKeys, Ids) {
    let t = store.init_token(spec("alpha")).unwrap();
    let k = store
        .login(t, UserKind::User, &SecretString::from(USER_PIN))
        .unwrap();
    let data_id = store.create_object(&k, data("readme")).unwrap();
    store.update_object(&k, data_id, data("readme-v2")).unwrap();
    store.rollback(&k, data_id, VersionNo(1)).unwrap();
    let ids = Ids {
        data: data_id,
        aes_private: store
            .create_object(&k, aes("signing-key", &[1, 2], AES_PRIVATE, true))
            .unwrap(),
        aes_public: store
            .create_object(&k, aes("public-aes", &[0xaa], AES_PUBLIC, false))
            .unwrap(),
        ec_public: store
            .create_object(&k, ec(ObjectClass::PUBLIC_KEY, "ec-pub", &[1, 2]))
            .unwrap(),
        ec_private: store
            .create_object(&k, ec(ObjectClass::PRIVATE_KEY, "ec-priv", &[1, 2]))
            .unwrap(),
    };
    (k, ids)
}

/// A store directory with the fixture token, closed again.
fn fixture() -> (tempfile::TempDir, PathBuf, Ids) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let store = Store::open_dir(&dir).unwrap();
    let (_, ids) = populate(&store);
    drop(store);
    (d, dir, ids)
}

fn object_ids(listing: &Value) -> Vec<u64> {
    listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_u64().unwrap())
        .collect()
}

/// Every way `secret` could show up in text: raw, hex in either case, or as a JSON list.
fn leaks(text: &[u8], secret: &[u8]) -> bool {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let needles = [
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        // The printable middle of the value, as it would appear if shown as text.
        secret[2..secret.len() - 3].to_vec(),
        serde_json::to_vec(&secret.to_vec()).unwrap(),
    ];
    needles
        .iter()
        .any(|n| text.windows(n.len()).any(|w| w == n.as_slice()))
}

#[test]
fn summary_counts_public_objects_without_the_pin_and_all_with_it() {
    let (_d, dir, _) = fixture();
    let v = json(&dir, &["summary"], None);
    assert_eq!(v["schema_version"], hsm_core::store::migrate::CURRENT);
    assert_eq!(v["store_id"].as_str().unwrap().len(), 32);
    assert!(v["size_on_disk"].as_u64().unwrap() > 0);
    let t = &v["tokens"][0];
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(t["label"], "alpha");
    assert_eq!(t["serial"].as_str().unwrap().len(), 16);
    assert_eq!(
        (t["objects"].as_u64(), t["private_objects"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(t["versions"], 7);
    assert_eq!(t["with_user_pin"], false);
    assert_eq!(
        t["by_class"],
        serde_json::json!({"DATA": 1, "SECRET_KEY": 1, "PUBLIC_KEY": 1})
    );
    assert_eq!(t["by_key_type"], serde_json::json!({"AES": 1, "EC": 1}));
    assert!(
        t["note"].as_str().unwrap().contains("user PIN"),
        "{}",
        t["note"]
    );

    let v = json(&dir, &["summary"], Some(USER_PIN));
    let t = &v["tokens"][0];
    assert_eq!(t["with_user_pin"], true);
    assert_eq!(
        t["by_class"],
        serde_json::json!({"DATA": 1, "SECRET_KEY": 2, "PUBLIC_KEY": 1, "PRIVATE_KEY": 1})
    );
    assert_eq!(t["by_key_type"], serde_json::json!({"AES": 2, "EC": 2}));
    assert!(t.get("note").is_none());

    // The table says the same, with the note on its own line.
    let o = inspect(&dir, &["summary"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("schema version") && text.contains("alpha"),
        "{text}"
    );
    assert!(
        text.contains("DATA=1, PUBLIC_KEY=1, SECRET_KEY=1"),
        "{text}"
    );
    assert!(
        text.contains("note: token 1") && text.contains("2 private"),
        "{text}"
    );
}

#[test]
fn objects_are_found_through_every_filter() {
    let (_d, dir, ids) = fixture();
    let public = [ids.data.0, ids.aes_public.0, ids.ec_public.0];
    let v = json(&dir, &["objects"], None);
    assert_eq!(object_ids(&v), public);
    assert_eq!(v["with_user_pin"], false);
    assert!(v["note"].as_str().unwrap().contains("2 private objects"));
    let all = json(&dir, &["objects"], Some(USER_PIN));
    assert_eq!(object_ids(&all).len(), 5);
    assert!(all.get("note").is_none());
    let row = all["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == ids.aes_private.0)
        .unwrap();
    assert_eq!(row["class"], "SECRET_KEY");
    assert_eq!(row["key_type"], "AES");
    assert_eq!(row["label"], "signing-key");
    assert_eq!(row["id"], "0102");
    assert_eq!(row["private"], true);
    assert_eq!(row["version"], 1);
    let data_row = &all["objects"][0];
    assert_eq!(
        (data_row["label"].as_str(), data_row["version"].as_u64()),
        (Some("readme"), Some(3))
    );

    let cases: &[(&[&str], Option<&str>, Vec<ObjectId>)] = &[
        (
            &["--class", "private_key"],
            Some(USER_PIN),
            vec![ids.ec_private],
        ),
        (&["--class", "private_key"], None, vec![]),
        (
            &["--class", "CKO_SECRET_KEY"],
            Some(USER_PIN),
            vec![ids.aes_private, ids.aes_public],
        ),
        (&["--class", "4"], None, vec![ids.aes_public]),
        (
            &["--key-type", "ec"],
            Some(USER_PIN),
            vec![ids.ec_public, ids.ec_private],
        ),
        (&["--key-type", "CKK_AES"], None, vec![ids.aes_public]),
        (
            &["--id", "0102"],
            Some(USER_PIN),
            vec![ids.aes_private, ids.ec_public, ids.ec_private],
        ),
        (
            &["--id", "0x0102", "--class", "public_key"],
            None,
            vec![ids.ec_public],
        ),
        (
            &["--label", "signing-key"],
            Some(USER_PIN),
            vec![ids.aes_private],
        ),
        (&["--label", "signing-key"], None, vec![]),
        (&["--label", "readme"], None, vec![ids.data]),
        (&["--label", "readme-v2"], None, vec![]),
        (
            &["--mechanism", "CKM_ECDSA"],
            Some(USER_PIN),
            vec![ids.ec_public, ids.ec_private],
        ),
        (
            &["--mechanism", "aes_gcm", "--key-type", "aes"],
            Some(USER_PIN),
            vec![ids.aes_private, ids.aes_public],
        ),
    ];
    for (args, pin, want) in cases {
        let mut a = vec!["objects"];
        a.extend_from_slice(args);
        let v = json(&dir, &a, *pin);
        let want: Vec<u64> = want.iter().map(|o| o.0).collect();
        assert_eq!(object_ids(&v), want, "{args:?} pin {}", pin.is_some());
    }

    let o = inspect(&dir, &["objects"], Some(USER_PIN));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("OBJECT") && lines[0].contains("KEY TYPE"),
        "{table}"
    );
    assert_eq!(lines.len(), 6, "{table}");
    assert!(
        table.contains("signing-key") && table.contains("0102"),
        "{table}"
    );
}

#[test]
fn show_renders_attributes_and_never_key_material() {
    let (_d, dir, ids) = fixture();
    let secrets = [AES_PRIVATE, AES_PUBLIC, EC_PRIVATE];
    let obj = ids.aes_private.0.to_string();
    let v = json(&dir, &["show", &obj], Some(USER_PIN));
    assert_eq!(
        (v["private"].as_bool(), v["version"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(v["class"], "SECRET_KEY");
    assert_eq!(v["secrets_withheld"], false);
    let attrs: BTreeMap<String, Value> = v["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attribute"].as_str().unwrap().to_owned(), a.clone()))
        .collect();
    assert_eq!(attrs["CLASS"]["value"], "SECRET_KEY");
    assert_eq!(attrs["CLASS"]["raw"], 4);
    assert_eq!(attrs["KEY_TYPE"]["value"], "AES");
    assert_eq!(attrs["LABEL"]["value"], "signing-key");
    assert_eq!(attrs["ID"]["value"], "0x0102");
    assert_eq!(attrs["SENSITIVE"]["raw"], true);
    assert_eq!(attrs["ALLOWED_MECHANISMS"]["value"], "AES_GCM");
    assert_eq!(attrs["VALUE"]["sensitive"], true);
    assert_eq!(attrs["VALUE"]["length"], AES_PRIVATE.len());
    assert_eq!(
        attrs["VALUE"]["value"],
        format!("<sensitive, {} bytes>", AES_PRIVATE.len())
    );
    assert!(attrs["VALUE"].get("raw").is_none());

    // Every object, with and without the PIN, as JSON and as a table: no key material.
    let every = [
        ids.data,
        ids.aes_private,
        ids.aes_public,
        ids.ec_public,
        ids.ec_private,
    ];
    for o in every {
        let o = o.0.to_string();
        for pin in [Some(USER_PIN), None] {
            for fmt in [&["--json"][..], &[][..]] {
                let mut a = vec!["show", o.as_str()];
                a.extend_from_slice(fmt);
                let out = inspect(&dir, &a, pin);
                for s in secrets {
                    assert!(!leaks(&out.stdout, s), "show {o} {fmt:?}: {}", stdout(&out));
                    assert!(!leaks(&out.stderr, s), "show {o} {fmt:?}: {}", stderr(&out));
                }
            }
        }
    }
    let table = stdout(&inspect(&dir, &["show", &obj], Some(USER_PIN)));
    let sensitive = format!("<sensitive, {} bytes>", AES_PRIVATE.len());
    assert!(table.contains(&sensitive), "{table}");
    assert!(
        table.contains("LABEL") && table.contains("signing-key"),
        "{table}"
    );

    // A public key object with material: readable without the PIN, material withheld.
    let v = json(&dir, &["show", &ids.aes_public.0.to_string()], None);
    assert_eq!(v["secrets_withheld"], true);
    assert!(!v.to_string().contains("\"VALUE\""), "{v}");
    let v = json(
        &dir,
        &["show", &ids.aes_public.0.to_string()],
        Some(USER_PIN),
    );
    assert_eq!(v["secrets_withheld"], false);
    assert!(v.to_string().contains("<sensitive"), "{v}");
    // A data object's value is not key material, so it shows.
    let v = json(
        &dir,
        &["show", &ids.data.0.to_string(), "--version", "2"],
        None,
    );
    assert_eq!(v["version"], 2);
    assert!(v.to_string().contains("readme-v2"), "{v}");

    // A private object without the PIN: a clear refusal.
    let o = inspect(&dir, &["show", &obj], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("private") && stderr(&o).contains("user PIN"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn versions_list_the_history_with_causes() {
    let (_d, dir, ids) = fixture();
    let v = json(&dir, &["versions", &ids.data.0.to_string()], None);
    let h = v["versions"].as_array().unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[0]["cause"], "Created");
    assert_eq!(h[1]["cause"], "AttributesChanged");
    assert_eq!(
        h[2]["cause"],
        serde_json::json!({"RolledBack": {"from": 1}})
    );
    assert_eq!(
        h.iter().map(|x| x["parent"].clone()).collect::<Vec<_>>(),
        [Value::Null, 1.into(), 1.into()]
    );
    assert_eq!(
        h.iter()
            .map(|x| x["current"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for x in h {
        let at = x["created_at"].as_u64().unwrap();
        assert!(at <= now && now - at < 600);
        let created = x["created"].as_str().unwrap();
        assert!(
            created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "{created}"
        );
    }
    // A private object's history needs no PIN: it holds no attributes.
    let v = json(&dir, &["versions", &ids.aes_private.0.to_string()], None);
    assert_eq!(v["versions"][0]["cause"], "Created");
    let o = inspect(&dir, &["versions", &ids.data.0.to_string()], None);
    let table = stdout(&o);
    assert!(
        table.contains("rolled back to v1") && table.contains("attributes changed"),
        "{table}"
    );
}

#[test]
fn check_passes_a_clean_store_and_names_damage() {
    let (_d, dir, ids) = fixture();
    let v = json(&dir, &["check"], None);
    assert_eq!(v["clean"], true);
    assert_eq!(v["tokens"][0]["objects"], 5);
    assert_eq!(v["tokens"][0]["versions"], 7);
    assert_eq!(v["tokens"][0]["private_unverified"], 2);
    let v = json(&dir, &["check"], Some(USER_PIN));
    assert_eq!(
        (
            v["clean"].as_bool(),
            v["tokens"][0]["private_unverified"].as_u64()
        ),
        (Some(true), Some(0))
    );
    let o = inspect(&dir, &["check"], None);
    assert!(
        stdout(&o).contains("clean")
            && stdout(&o).contains("2 private attribute records not verified"),
        "{}",
        stdout(&o)
    );

    // One flipped byte inside the private key's sealed attribute record, and an index
    // entry that points at no object.
    {
        let store = Store::open_dir(&dir).unwrap();
        let key = keys::version(TokenId(1), ids.aes_private, VersionNo(1));
        let mut rec = store.backend().get(Cf::Attributes, &key).unwrap().unwrap();
        let mid = rec.len() / 2;
        rec[mid] ^= 0x01;
        let mut b = Batch::new();
        b.put(Cf::Attributes, key, rec);
        b.put(
            Cf::IdxLabel,
            keys::index(TokenId(1), Visibility::Public, &[7; 16], ObjectId(999)),
            Vec::new(),
        );
        store.backend().write(b).unwrap();
    }
    let damaged = format!("attributes/1/{}/1", ids.aes_private);
    let o = inspect(&dir, &["check"], Some(USER_PIN));
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&damaged) && text.contains("failed authentication"),
        "{text}"
    );
    assert!(
        text.contains("idx_label: entry for object 999 matches no record"),
        "{text}"
    );
    assert!(stderr(&o).contains("problems found"), "{}", stderr(&o));

    let o = inspect(&dir, &["check", "--json"], Some(USER_PIN));
    assert_eq!(o.status.code(), Some(5));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], false);
    let problems = v["tokens"][0]["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["location"] == damaged.as_str()),
        "{v}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["location"] == "indexes" && p["problem"].as_str().unwrap().contains("999")),
        "{v}"
    );
    // Without the PIN the private record is not opened, but the stray index entry is public.
    let o = inspect(&dir, &["check"], None);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        !stdout(&o).contains(&damaged) && stdout(&o).contains("999"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_finds_a_damaged_public_record_without_the_pin() {
    let (_d, dir, ids) = fixture();
    {
        let store = Store::open_dir(&dir).unwrap();
        let key = keys::version(TokenId(1), ids.data, VersionNo(2));
        let mut rec = store.backend().get(Cf::Attributes, &key).unwrap().unwrap();
        let last = rec.len() - 1;
        rec[last] ^= 0x80;
        let mut b = Batch::new();
        b.put(Cf::Attributes, key, rec);
        store.backend().write(b).unwrap();
    }
    let o = inspect(&dir, &["check", "--json"], None);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let loc = format!("attributes/1/{}/2", ids.data);
    assert!(
        v["tokens"][0]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["location"] == loc.as_str()),
        "{v}"
    );
}

#[test]
fn inspect_sees_a_store_held_open_by_another_writer() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("store");
    let holder = Store::open_dir(&dir).unwrap();
    let (k, ids) = populate(&holder);
    // Written after the fixture, while the holder keeps the store open.
    let late = holder.create_object(&k, data("written-live")).unwrap();
    holder
        .create_object(&k, aes("late-key", &[9], b"late-secret-material", true))
        .unwrap();

    let v = json(&dir, &["objects", "--label", "written-live"], None);
    assert_eq!(object_ids(&v), [late.0]);
    let v = json(&dir, &["summary"], Some(USER_PIN));
    assert_eq!(v["tokens"][0]["objects"], 7);
    let v = json(&dir, &["check"], Some(USER_PIN));
    assert_eq!(v["clean"], true, "{v}");
    let v = json(
        &dir,
        &["show", &ids.ec_private.0.to_string()],
        Some(USER_PIN),
    );
    assert_eq!(v["class"], "PRIVATE_KEY");
    // The writer still works, and sees nothing changed by the inspections.
    assert_eq!(holder.pin_failures(TokenId(1), UserKind::User).unwrap(), 0);
    holder.create_object(&k, data("after")).unwrap();
    drop(holder);
}

/// Every file of a store and its bytes, except the primary's RocksDB info logs.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with("LOG") {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn inspect_never_changes_a_byte_of_the_store() {
    let (_d, dir, ids) = fixture();
    let before = snapshot(&dir);
    assert!(before.len() > 3);
    let obj = ids.aes_private.0.to_string();
    let runs: &[(&[&str], Option<&str>)] = &[
        (&["summary"], None),
        (&["summary"], Some(USER_PIN)),
        (&["objects"], Some(USER_PIN)),
        (&["show", &obj], Some(USER_PIN)),
        (&["versions", &obj], None),
        (&["check"], Some(USER_PIN)),
    ];
    for (args, pin) in runs {
        let o = inspect(&dir, args, *pin);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    // A wrong PIN is refused without a write too.
    let o = inspect(&dir, &["objects"], Some("wrong-pin-0000"));
    assert_eq!(o.status.code(), Some(4));
    let after = snapshot(&dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files appeared or vanished"
    );
    for (p, b) in &before {
        assert!(after[p] == *b, "{} changed", p.display());
    }
}

#[test]
fn bad_inputs_fail_with_a_message_naming_the_problem() {
    let (d, dir, _) = fixture();
    // A directory that is not a store, and one that does not exist.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = inspect(&empty, &["summary"], None);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a FerroHSM store"),
        "{}",
        stderr(&o)
    );
    let o = inspect(&d.path().join("missing"), &["summary"], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no such directory"), "{}", stderr(&o));

    let o = inspect(&dir, &["show", "999"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("object 999 does not exist"),
        "{}",
        stderr(&o)
    );
    let o = inspect(&dir, &["versions", "999"], None);
    assert!(
        stderr(&o).contains("object 999 does not exist"),
        "{}",
        stderr(&o)
    );
    let o = inspect(&dir, &["show", "1", "--version", "9"], None);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no version 9"), "{}", stderr(&o));

    let o = inspect(&dir, &["objects", "--class", "privat_key"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown object class 'privat_key'"),
        "{}",
        stderr(&o)
    );
    let o = inspect(&dir, &["objects", "--id", "xyz"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not hex"), "{}", stderr(&o));
    let o = inspect(&dir, &["objects", "--token", "7"], None);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("token 7 does not exist"),
        "{}",
        stderr(&o)
    );

    let o = inspect(&dir, &["objects"], Some("wrong-pin-0000"));
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("incorrect PIN"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = inspect(
        &dir,
        &["objects", "--user-pin-env", "NOT_SET_ANYWHERE"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NOT_SET_ANYWHERE"), "{}", stderr(&o));
    // No terminal to prompt on.
    let o = inspect(&dir, &["objects", "--pin-prompt"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no terminal"), "{}", stderr(&o));
}

#[test]
fn pin_file_unlocks_private_objects() {
    let (d, dir, ids) = fixture();
    let pin = d.path().join("user.pin");
    std::fs::write(&pin, format!("{USER_PIN}\n")).unwrap();
    let o = ferrohsm(
        &[
            "inspect",
            "--store",
            dir.to_str().unwrap(),
            "show",
            &ids.ec_private.0.to_string(),
            "--user-pin-file",
            pin.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["class"], "PRIVATE_KEY");
    assert!(!leaks(&o.stdout, EC_PRIVATE));
}

#[test]
fn several_tokens_need_a_choice_for_objects_but_not_for_summary() {
    let (_d, dir, _) = fixture();
    {
        let store = Store::open_dir(&dir).unwrap();
        let t = store.init_token(spec("beta")).unwrap();
        let k = store
            .login(t, UserKind::User, &SecretString::from(USER_PIN))
            .unwrap();
        store.create_object(&k, data("beta-data")).unwrap();
    }
    let v = json(&dir, &["summary"], None);
    let labels: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["alpha", "beta"]);
    assert_eq!(v["tokens"][1]["objects"], 1);
    let v = json(&dir, &["check"], None);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 2);
    assert_eq!(v["clean"], true);

    for args in [&["objects"][..], &["show", "1"], &["versions", "1"]] {
        let o = inspect(&dir, args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("--token"), "{args:?}: {}", stderr(&o));
    }
    // A PIN belongs to one token.
    let o = inspect(&dir, &["summary"], Some(USER_PIN));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));

    let v = json(&dir, &["objects", "--token", "2"], None);
    assert_eq!(v["token"], 2);
    assert_eq!(v["objects"][0]["label"], "beta-data");
    let v = json(&dir, &["summary", "--token", "2"], Some(USER_PIN));
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(v["tokens"][0]["with_user_pin"], true);
}
