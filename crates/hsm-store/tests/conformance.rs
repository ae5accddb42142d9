//! One conformance suite, run against both backends: the raw key-value contract, the
//! object store on top of it, and model-based tests that apply random operation
//! sequences to the store and to a `BTreeMap` model and demand they agree.

mod common;

use common::*;
use hsm_store::backend::{Batch, Flow};
use hsm_store::cf::Cf;
use hsm_store::{Query, Store, StoreError, TokenKeys, VersionCause};
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType, ObjectClass, ObjectId,
    UserKind, VersionNo,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

// ------------------------------------------------------------------ raw backend contract

fn kv_get_put_delete(kind: Kind) {
    let (kv, _d) = backend(kind);
    assert_eq!(kv.get(Cf::Objects, b"k").unwrap(), None);
    let mut b = Batch::new();
    b.put(Cf::Objects, b"k".to_vec(), b"v1".to_vec());
    b.put(Cf::Attributes, b"k".to_vec(), b"other-family".to_vec());
    kv.write(b).unwrap();
    assert_eq!(kv.get(Cf::Objects, b"k").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(
        kv.get(Cf::Attributes, b"k").unwrap(),
        Some(b"other-family".to_vec())
    );
    assert_eq!(
        kv.get(Cf::Versions, b"k").unwrap(),
        None,
        "families are separate"
    );
    let mut b = Batch::new();
    b.delete(Cf::Objects, b"k".to_vec());
    b.put(Cf::Objects, b"k2".to_vec(), b"v2".to_vec());
    kv.write(b).unwrap();
    assert_eq!(kv.get(Cf::Objects, b"k").unwrap(), None);
    assert_eq!(kv.get(Cf::Objects, b"k2").unwrap(), Some(b"v2".to_vec()));
}

fn kv_later_op_in_batch_wins(kind: Kind) {
    let (kv, _d) = backend(kind);
    let mut b = Batch::new();
    b.put(Cf::Meta, b"a".to_vec(), b"1".to_vec());
    b.delete(Cf::Meta, b"a".to_vec());
    b.put(Cf::Meta, b"b".to_vec(), b"1".to_vec());
    b.put(Cf::Meta, b"b".to_vec(), b"2".to_vec());
    kv.write(b).unwrap();
    assert_eq!(kv.get(Cf::Meta, b"a").unwrap(), None);
    assert_eq!(kv.get(Cf::Meta, b"b").unwrap(), Some(b"2".to_vec()));
}

fn kv_prefix_scan_is_ordered_and_bounded(kind: Kind) {
    let (kv, _d) = backend(kind);
    let mut b = Batch::new();
    for k in [
        &b"ab\x02"[..],
        b"ab\x01",
        b"ab\xff",
        b"ac",
        b"aa\xff",
        b"ab",
    ] {
        b.put(Cf::IdxLabel, k.to_vec(), vec![]);
    }
    b.put(Cf::IdxLabel, b"ab\xff\xff".to_vec(), vec![1]);
    kv.write(b).unwrap();
    let mut seen = Vec::new();
    kv.scan_prefix(Cf::IdxLabel, b"ab", &mut |k, _| {
        seen.push(k.to_vec());
        Ok(Flow::Continue)
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            b"ab".to_vec(),
            b"ab\x01".to_vec(),
            b"ab\x02".to_vec(),
            b"ab\xff".to_vec(),
            b"ab\xff\xff".to_vec()
        ]
    );
    let mut first = Vec::new();
    kv.scan_prefix(Cf::IdxLabel, b"ab", &mut |k, _| {
        first.push(k.to_vec());
        Ok(Flow::Stop)
    })
    .unwrap();
    assert_eq!(first, vec![b"ab".to_vec()]);
    let mut none = 0;
    kv.scan_prefix(Cf::IdxLabel, b"zz", &mut |_, _| {
        none += 1;
        Ok(Flow::Continue)
    })
    .unwrap();
    assert_eq!(none, 0);
}

fn kv_scan_visitor_error_propagates(kind: Kind) {
    let (kv, _d) = backend(kind);
    let mut b = Batch::new();
    b.put(Cf::Meta, b"x1".to_vec(), vec![]);
    kv.write(b).unwrap();
    let e = kv
        .scan_prefix(Cf::Meta, b"x", &mut |_, _| {
            Err(StoreError::Invalid("stop".into()))
        })
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)));
}

#[derive(Debug, Clone)]
enum KvOp {
    Put(u8, Vec<u8>, Vec<u8>),
    Delete(u8, Vec<u8>),
}

fn kv_op() -> impl Strategy<Value = KvOp> {
    let key = proptest::collection::vec(0u8..4, 0..4);
    prop_oneof![
        (
            0u8..3,
            key.clone(),
            proptest::collection::vec(any::<u8>(), 0..6)
        )
            .prop_map(|(c, k, v)| KvOp::Put(c, k, v)),
        (0u8..3, key).prop_map(|(c, k)| KvOp::Delete(c, k)),
    ]
}

fn kv_matches_model(kind: Kind, batches: Vec<Vec<KvOp>>) -> Result<(), TestCaseError> {
    let (kv, _d) = backend(kind);
    let cfs = [Cf::Objects, Cf::Attributes, Cf::IdxId];
    let mut model: BTreeMap<(usize, Vec<u8>), Vec<u8>> = BTreeMap::new();
    for ops in batches {
        let mut b = Batch::new();
        for op in ops {
            match op {
                KvOp::Put(c, k, v) => {
                    model.insert((c as usize, k.clone()), v.clone());
                    b.put(cfs[c as usize], k, v);
                }
                KvOp::Delete(c, k) => {
                    model.remove(&(c as usize, k.clone()));
                    b.delete(cfs[c as usize], k);
                }
            }
        }
        kv.write(b).unwrap();
    }
    for (ci, cf) in cfs.iter().enumerate() {
        for p in [vec![], vec![0], vec![1, 2], vec![3]] {
            let mut got = Vec::new();
            kv.scan_prefix(*cf, &p, &mut |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                Ok(Flow::Continue)
            })
            .unwrap();
            let want: Vec<_> = model
                .iter()
                .filter(|((c, k), _)| *c == ci && k.starts_with(&p))
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ store contract

fn user(store: &Store, t: hsm_types::TokenId) -> TokenKeys {
    store.login(t, UserKind::User, &pin(USER_PIN)).unwrap()
}

fn store_round_trips_every_record_type(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let info = store.token_info(t).unwrap();
    assert_eq!(info.label, "test token");
    assert!(info.user_pin_initialized);
    let k = user(&store, t);
    let key = secret_key(
        b"aes",
        b"\x01\x02",
        b"0123456789abcdef0123456789abcdef",
        true,
    );
    let id = store.create_object(&k, key.clone()).unwrap();
    let got = store.read_object(&k, id).unwrap();
    assert_eq!(got.attrs, key);
    assert_eq!(got.version, VersionNo(1));
    assert!(got.private && !got.secrets_withheld);
    let pub_data = data_object(b"note", b"hello", false);
    let id2 = store.create_object(&k, pub_data.clone()).unwrap();
    assert_ne!(id, id2);
    assert_eq!(
        store
            .read_object(&store.public_access(t).unwrap(), id2)
            .unwrap()
            .attrs,
        pub_data
    );
    let v = store.versions(&k, id).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].cause, VersionCause::Created);
    assert!(v[0].current);
    assert_eq!(store.tokens().unwrap().len(), 1);
}

fn store_private_objects_need_login(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let public = store.public_access(t).unwrap();
    assert!(matches!(
        store.create_object(&public, secret_key(b"l", b"i", b"v", true)),
        Err(StoreError::NotLoggedIn)
    ));
    let k = user(&store, t);
    let id = store
        .create_object(&k, secret_key(b"l", b"i", b"v", true))
        .unwrap();
    assert!(matches!(
        store.read_object(&public, id),
        Err(StoreError::NotLoggedIn)
    ));
    assert_eq!(
        store
            .find(
                &public,
                &Query {
                    label: Some(b"l".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![]
    );
    assert_eq!(store.find(&public, &Query::default()).unwrap(), vec![]);
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    label: Some(b"l".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![id]
    );
}

fn store_public_key_material_is_withheld_without_login(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    let id = store
        .create_object(
            &k,
            secret_key(b"pub-secret", b"i", b"key-bytes-here!!", false),
        )
        .unwrap();
    let public = store.public_access(t).unwrap();
    let seen = store.read_object(&public, id).unwrap();
    assert!(seen.secrets_withheld);
    assert_eq!(seen.attrs.bytes(A::VALUE), None);
    assert_eq!(seen.attrs.label(), Some(&b"pub-secret"[..]));
    assert_eq!(
        store.read_object(&k, id).unwrap().attrs.bytes(A::VALUE),
        Some(&b"key-bytes-here!!"[..])
    );
}

fn store_versions_update_and_rollback(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    let id = store
        .create_object(&k, data_object(b"first", b"1", true))
        .unwrap();
    let v2 = store
        .update_object(&k, id, data_object(b"second", b"2", true))
        .unwrap();
    assert_eq!(v2, VersionNo(2));
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    label: Some(b"first".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    label: Some(b"second".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![id]
    );
    assert_eq!(
        store
            .read_version(&k, id, VersionNo(1))
            .unwrap()
            .attrs
            .label(),
        Some(&b"first"[..])
    );
    let v3 = store.rollback(&k, id, VersionNo(1)).unwrap();
    assert_eq!(v3, VersionNo(3));
    let cur = store.read_object(&k, id).unwrap();
    assert_eq!(cur.version, VersionNo(3));
    assert_eq!(cur.attrs.label(), Some(&b"first"[..]));
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    label: Some(b"first".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![id]
    );
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    label: Some(b"second".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![]
    );
    let hist = store.versions(&k, id).unwrap();
    assert_eq!(
        hist.iter().map(|v| v.version.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(hist[2].cause, VersionCause::RolledBack { from: 1 });
    assert_eq!(hist[2].parent, Some(VersionNo(1)));
    assert!(hist[2].current && !hist[0].current && !hist[1].current);
    assert!(matches!(
        store.rollback(&k, id, VersionNo(9)),
        Err(StoreError::VersionNotFound(..))
    ));
    assert!(store.check_indexes(&k).unwrap().is_empty());
}

fn store_destroy_is_final(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    let id = store
        .create_object(&k, secret_key(b"gone", b"g", b"v", true))
        .unwrap();
    store
        .update_object(&k, id, secret_key(b"gone2", b"g", b"v", true))
        .unwrap();
    store.destroy_object(&k, id).unwrap();
    assert!(matches!(
        store.read_object(&k, id),
        Err(StoreError::ObjectNotFound(..))
    ));
    assert!(matches!(
        store.read_version(&k, id, VersionNo(1)),
        Err(StoreError::ObjectNotFound(..))
    ));
    assert_eq!(
        store
            .find(
                &k,
                &Query {
                    id: Some(b"g".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![]
    );
    assert_eq!(store.find(&k, &Query::default()).unwrap(), vec![]);
    let next = store
        .create_object(&k, secret_key(b"new", b"n", b"v", true))
        .unwrap();
    assert!(next > id, "object ids are never reused");
    assert!(store.check_indexes(&k).unwrap().is_empty());
}

fn store_find_by_every_index(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    let aes = store
        .create_object(&k, secret_key(b"a", b"id-a", b"v", true))
        .unwrap();
    let data = store
        .create_object(&k, data_object(b"d", b"x", false))
        .unwrap();
    let ec = store
        .create_object(
            &k,
            AttributeSet::new()
                .with(A::CLASS, AttrValue::Ulong(ObjectClass::PUBLIC_KEY.0))
                .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::EC.0))
                .with(A::PRIVATE, AttrValue::Bool(false))
                .with(A::ID, bytes(b"id-a"))
                .with(
                    A::ALLOWED_MECHANISMS,
                    AttrValue::Mechanisms(vec![
                        MechanismType::ECDSA.0,
                        MechanismType::ECDSA_SHA256.0,
                    ]),
                ),
        )
        .unwrap();
    let q = |q: Query| store.find(&k, &q).unwrap();
    assert_eq!(
        q(Query {
            class: Some(ObjectClass::SECRET_KEY),
            ..Default::default()
        }),
        vec![aes]
    );
    assert_eq!(
        q(Query {
            class: Some(ObjectClass::DATA),
            ..Default::default()
        }),
        vec![data]
    );
    assert_eq!(
        q(Query {
            id: Some(b"id-a".to_vec()),
            ..Default::default()
        }),
        vec![aes, ec]
    );
    assert_eq!(
        q(Query {
            id: Some(b"id-a".to_vec()),
            class: Some(ObjectClass::PUBLIC_KEY),
            ..Default::default()
        }),
        vec![ec]
    );
    assert_eq!(
        q(Query {
            key_type: Some(KeyType::AES),
            ..Default::default()
        }),
        vec![aes]
    );
    assert_eq!(
        q(Query {
            mechanism: Some(MechanismType::ECDSA_SHA256),
            ..Default::default()
        }),
        vec![ec]
    );
    assert_eq!(
        q(Query {
            mechanism: Some(MechanismType::AES_GCM),
            ..Default::default()
        }),
        vec![aes]
    );
    assert_eq!(
        q(Query {
            mechanism: Some(MechanismType::RSA_PKCS),
            ..Default::default()
        }),
        vec![]
    );
    assert_eq!(q(Query::default()), vec![aes, data, ec]);
    let public = store.public_access(t).unwrap();
    assert_eq!(
        store
            .find(
                &public,
                &Query {
                    id: Some(b"id-a".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![ec]
    );
}

fn store_pins_lock_and_unlock(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    for i in 1..=5 {
        match store.login(t, UserKind::User, &pin("wrong-pin")) {
            Err(StoreError::PinIncorrect { failures, max }) => assert_eq!((failures, max), (i, 5)),
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 5);
    assert!(matches!(
        store.login(t, UserKind::User, &pin("wrong-pin")),
        Err(StoreError::PinLocked)
    ));
    assert!(
        matches!(
            store.login(t, UserKind::User, &pin(USER_PIN)),
            Err(StoreError::PinLocked)
        ),
        "locked even with the right PIN"
    );
    let so = store.login(t, UserKind::So, &pin(SO_PIN)).unwrap();
    store.init_user_pin(&so, &pin("new-user-pin")).unwrap();
    assert_eq!(store.pin_failures(t, UserKind::User).unwrap(), 0);
    assert!(matches!(
        store.login(t, UserKind::User, &pin(USER_PIN)),
        Err(StoreError::PinIncorrect { .. })
    ));
    store
        .login(t, UserKind::User, &pin("new-user-pin"))
        .unwrap();
    assert!(matches!(
        store.login(t, UserKind::User, &pin("ab")),
        Err(StoreError::PinLenRange { .. })
    ));
}

fn store_change_pin_keeps_objects(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    let id = store
        .create_object(&k, secret_key(b"kept", b"k", b"secret", true))
        .unwrap();
    drop(k);
    store
        .change_pin(t, UserKind::User, &pin(USER_PIN), &pin("changed-pin"))
        .unwrap();
    assert!(matches!(
        store.login(t, UserKind::User, &pin(USER_PIN)),
        Err(StoreError::PinIncorrect { .. })
    ));
    let k = store.login(t, UserKind::User, &pin("changed-pin")).unwrap();
    assert_eq!(
        store.read_object(&k, id).unwrap().attrs.bytes(A::VALUE),
        Some(&b"secret"[..])
    );
}

fn store_reinit_wipes_the_token(kind: Kind) {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    store
        .create_object(&k, secret_key(b"old", b"o", b"v", true))
        .unwrap();
    store
        .create_object(&k, data_object(b"pub", b"v", false))
        .unwrap();
    assert!(matches!(
        store.reinit_token(t, &pin("bad-so-pin"), "x".into()),
        Err(StoreError::PinIncorrect { .. })
    ));
    store.reinit_token(t, &pin(SO_PIN), "fresh".into()).unwrap();
    let info = store.token_info(t).unwrap();
    assert_eq!(info.label, "fresh");
    assert!(!info.user_pin_initialized);
    assert!(matches!(
        store.login(t, UserKind::User, &pin(USER_PIN)),
        Err(StoreError::UserPinNotInitialized)
    ));
    let so = store.login(t, UserKind::So, &pin(SO_PIN)).unwrap();
    assert_eq!(store.find(&so, &Query::default()).unwrap(), vec![]);
    assert_eq!(store.object_count(t).unwrap(), 0);
}

fn store_tokens_are_isolated(kind: Kind) {
    let (store, _d) = store(kind);
    let t1 = new_token(&store);
    let t2 = store.init_token(spec("second")).unwrap();
    let k1 = user(&store, t1);
    let k2 = user(&store, t2);
    let id = store
        .create_object(&k1, data_object(b"same", b"1", false))
        .unwrap();
    assert_eq!(
        store
            .find(
                &k2,
                &Query {
                    label: Some(b"same".to_vec()),
                    ..Default::default()
                }
            )
            .unwrap(),
        vec![]
    );
    assert!(matches!(
        store.read_object(&k2, id),
        Err(StoreError::ObjectNotFound(..))
    ));
    assert_eq!(
        store
            .tokens()
            .unwrap()
            .iter()
            .map(|t| t.label.as_str())
            .collect::<Vec<_>>(),
        vec!["test token", "second"]
    );
}

// ------------------------------------------------------------------ store model test

#[derive(Debug, Clone)]
enum ObjOp {
    Create {
        label: u8,
        id: u8,
        private: bool,
        mech: u8,
    },
    Update {
        pick: usize,
        label: u8,
    },
    Rollback {
        pick: usize,
        back: u32,
    },
    Destroy {
        pick: usize,
    },
}

fn obj_op() -> impl Strategy<Value = ObjOp> {
    prop_oneof![
        3 => (0u8..4, 0u8..4, any::<bool>(), 0u8..3).prop_map(|(label, id, private, mech)| ObjOp::Create { label, id, private, mech }),
        2 => (any::<usize>(), 0u8..4).prop_map(|(pick, label)| ObjOp::Update { pick, label }),
        1 => (any::<usize>(), 1u32..4).prop_map(|(pick, back)| ObjOp::Rollback { pick, back }),
        1 => any::<usize>().prop_map(|pick| ObjOp::Destroy { pick }),
    ]
}

fn attrs_for(label: u8, id: u8, private: bool, mech: u8) -> AttributeSet {
    let class = if mech == 0 {
        ObjectClass::DATA
    } else {
        ObjectClass::SECRET_KEY
    };
    let mut s = AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(class.0))
        .with(A::PRIVATE, AttrValue::Bool(private))
        .with(A::LABEL, bytes(format!("label-{label}").as_bytes()))
        .with(A::ID, bytes(&[id]));
    if mech > 0 {
        s.set(A::KEY_TYPE, AttrValue::Ulong(KeyType::GENERIC_SECRET.0));
        s.set(A::VALUE, bytes(b"secret-value"));
        s.set(
            A::ALLOWED_MECHANISMS,
            AttrValue::Mechanisms(vec![MechanismType::SHA256_HMAC.0 + mech as u64]),
        );
    }
    s
}

fn store_matches_model(kind: Kind, ops: Vec<ObjOp>) -> Result<(), TestCaseError> {
    let (store, _d) = store(kind);
    let t = new_token(&store);
    let k = user(&store, t);
    // Model: object -> every version's attribute set (index = version - 1).
    let mut model: BTreeMap<ObjectId, Vec<AttributeSet>> = BTreeMap::new();
    for op in ops {
        let live: Vec<ObjectId> = model.keys().copied().collect();
        match op {
            ObjOp::Create {
                label,
                id,
                private,
                mech,
            } => {
                let a = attrs_for(label, id, private, mech);
                let oid = store.create_object(&k, a.clone()).unwrap();
                prop_assert!(!model.contains_key(&oid));
                model.insert(oid, vec![a]);
            }
            ObjOp::Update { pick, label } if !live.is_empty() => {
                let oid = live[pick % live.len()];
                let mut a = model[&oid].last().unwrap().clone();
                a.set(A::LABEL, bytes(format!("label-{label}").as_bytes()));
                let v = store.update_object(&k, oid, a.clone()).unwrap();
                let hist = model.get_mut(&oid).unwrap();
                hist.push(a);
                prop_assert_eq!(v.0 as usize, hist.len());
            }
            ObjOp::Rollback { pick, back } if !live.is_empty() => {
                let oid = live[pick % live.len()];
                let hist = model.get_mut(&oid).unwrap();
                let to = back.min(hist.len() as u32);
                let a = hist[to as usize - 1].clone();
                store.rollback(&k, oid, VersionNo(to)).unwrap();
                hist.push(a);
            }
            ObjOp::Destroy { pick } if !live.is_empty() => {
                let oid = live[pick % live.len()];
                store.destroy_object(&k, oid).unwrap();
                model.remove(&oid);
            }
            _ => {}
        }
    }
    // Every object, every version, every lookup agrees with the model.
    prop_assert_eq!(
        store.find(&k, &Query::default()).unwrap(),
        model.keys().copied().collect::<Vec<_>>()
    );
    for (oid, hist) in &model {
        let cur = store.read_object(&k, *oid).unwrap();
        prop_assert_eq!(&cur.attrs, hist.last().unwrap());
        prop_assert_eq!(cur.version.0 as usize, hist.len());
        for (i, a) in hist.iter().enumerate() {
            prop_assert_eq!(
                &store
                    .read_version(&k, *oid, VersionNo(i as u32 + 1))
                    .unwrap()
                    .attrs,
                a
            );
        }
        prop_assert_eq!(store.versions(&k, *oid).unwrap().len(), hist.len());
    }
    for label in 0u8..4 {
        let l = format!("label-{label}").into_bytes();
        let want: Vec<ObjectId> = model
            .iter()
            .filter(|(_, h)| h.last().unwrap().label() == Some(&l[..]))
            .map(|(o, _)| *o)
            .collect();
        prop_assert_eq!(
            store
                .find(
                    &k,
                    &Query {
                        label: Some(l),
                        ..Default::default()
                    }
                )
                .unwrap(),
            want
        );
    }
    for id in 0u8..4 {
        let want: Vec<ObjectId> = model
            .iter()
            .filter(|(_, h)| h.last().unwrap().id() == Some(&[id][..]))
            .map(|(o, _)| *o)
            .collect();
        prop_assert_eq!(
            store
                .find(
                    &k,
                    &Query {
                        id: Some(vec![id]),
                        ..Default::default()
                    }
                )
                .unwrap(),
            want
        );
        let want_pub: Vec<ObjectId> = model
            .iter()
            .filter(|(_, h)| {
                h.last().unwrap().id() == Some(&[id][..]) && !h.last().unwrap().is_private()
            })
            .map(|(o, _)| *o)
            .collect();
        prop_assert_eq!(
            store
                .find(
                    &store.public_access(t).unwrap(),
                    &Query {
                        id: Some(vec![id]),
                        ..Default::default()
                    }
                )
                .unwrap(),
            want_pub
        );
    }
    for class in [ObjectClass::DATA, ObjectClass::SECRET_KEY] {
        let want: Vec<ObjectId> = model
            .iter()
            .filter(|(_, h)| h.last().unwrap().class() == Some(class))
            .map(|(o, _)| *o)
            .collect();
        prop_assert_eq!(
            store
                .find(
                    &k,
                    &Query {
                        class: Some(class),
                        ..Default::default()
                    }
                )
                .unwrap(),
            want
        );
    }
    for mech in 1u8..3 {
        let m = MechanismType(MechanismType::SHA256_HMAC.0 + mech as u64);
        let want: Vec<ObjectId> = model
            .iter()
            .filter(|(_, h)| h.last().unwrap().mechanisms().contains(&m.0))
            .map(|(o, _)| *o)
            .collect();
        prop_assert_eq!(
            store
                .find(
                    &k,
                    &Query {
                        mechanism: Some(m),
                        ..Default::default()
                    }
                )
                .unwrap(),
            want
        );
    }
    let problems = store.check_indexes(&k).unwrap();
    prop_assert!(problems.is_empty(), "index problems: {:?}", problems);
    Ok(())
}

macro_rules! suite {
    ($modname:ident, $kind:expr, $cases:expr) => {
        mod $modname {
            use super::*;

            #[test]
            fn kv_get_put_delete() {
                super::kv_get_put_delete($kind)
            }
            #[test]
            fn kv_later_op_in_batch_wins() {
                super::kv_later_op_in_batch_wins($kind)
            }
            #[test]
            fn kv_prefix_scan_is_ordered_and_bounded() {
                super::kv_prefix_scan_is_ordered_and_bounded($kind)
            }
            #[test]
            fn kv_scan_visitor_error_propagates() {
                super::kv_scan_visitor_error_propagates($kind)
            }
            #[test]
            fn store_round_trips_every_record_type() {
                super::store_round_trips_every_record_type($kind)
            }
            #[test]
            fn store_private_objects_need_login() {
                super::store_private_objects_need_login($kind)
            }
            #[test]
            fn store_public_key_material_is_withheld_without_login() {
                super::store_public_key_material_is_withheld_without_login($kind)
            }
            #[test]
            fn store_versions_update_and_rollback() {
                super::store_versions_update_and_rollback($kind)
            }
            #[test]
            fn store_destroy_is_final() {
                super::store_destroy_is_final($kind)
            }
            #[test]
            fn store_find_by_every_index() {
                super::store_find_by_every_index($kind)
            }
            #[test]
            fn store_pins_lock_and_unlock() {
                super::store_pins_lock_and_unlock($kind)
            }
            #[test]
            fn store_change_pin_keeps_objects() {
                super::store_change_pin_keeps_objects($kind)
            }
            #[test]
            fn store_reinit_wipes_the_token() {
                super::store_reinit_wipes_the_token($kind)
            }
            #[test]
            fn store_tokens_are_isolated() {
                super::store_tokens_are_isolated($kind)
            }

            proptest! {
                #![proptest_config(ProptestConfig { cases: $cases, ..ProptestConfig::default() })]
                #[test]
                fn kv_matches_model(batches in proptest::collection::vec(proptest::collection::vec(kv_op(), 1..6), 1..12)) {
                    super::kv_matches_model($kind, batches)?;
                }
                #[test]
                fn store_matches_model(ops in proptest::collection::vec(obj_op(), 1..40)) {
                    super::store_matches_model($kind, ops)?;
                }
            }
        }
    };
}

suite!(memory, Kind::Memory, 128);
suite!(rocksdb, Kind::Rocks, 24);
