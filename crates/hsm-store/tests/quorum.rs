//! The dual-control record on a real RocksDB store: a state put back from before an
//! approval was spent is refused; an edited one fails its seal; a forged one fails its
//! binding for a logged-in reader; a stale write is refused; verdicts of requests the
//! state dropped go with it; re-initialising the token wipes it all.

mod common;

use common::*;
use hsm_store::cf::Cf;
use hsm_store::{Store, StoreError, keys};
use hsm_types::UserKind;
use hsm_types::quorum::{Admission, Guarded, QuorumPolicy, QuorumState, Verdict};

fn raw_put(store: &Store, key: Vec<u8>, value: Vec<u8>) {
    let mut b = hsm_store::backend::Batch::new();
    b.put(Cf::Meta, key, value);
    store.backend().write(b).unwrap();
}

/// A state with one approver, a rule and one request.
fn with_request(store: &Store, k: &hsm_store::TokenKeys) -> QuorumState {
    let mut s = store.quorum(k).unwrap();
    s.add_approver("alice", vec![7; 32], 1).unwrap();
    let mut p = QuorumPolicy::default();
    p.rules.insert(Guarded::Destroy, 1);
    s.set_policy(p).unwrap();
    assert!(matches!(
        s.admit(Guarded::Destroy, b"d", "x", "user", &[], 2),
        Admission::Wait { opened: true, .. }
    ));
    s.seq += 1;
    store.commit_quorum(k, &s).unwrap();
    s
}

#[test]
fn a_state_put_back_from_before_a_spend_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let mut s = with_request(&store, &k);
    let place = keys::meta::quorum(t);
    let unspent = store.backend().get(Cf::Meta, &place).unwrap().unwrap();
    s.requests[0].used = Some(3);
    s.seq += 1;
    store.commit_quorum(&k, &s).unwrap();
    // The attack: the record from before the request was spent, put back.
    raw_put(&store, place.clone(), unspent);
    let e = store.quorum(&k).unwrap_err();
    assert!(
        matches!(e, StoreError::Tampered { ref location } if location.contains("write 2 happened")),
        "{e}"
    );
    // Without the master key too (the marker check needs none).
    let public = store.public_access(t).unwrap();
    assert!(matches!(
        store.quorum(&public),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn edited_forged_and_stale_states_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let s = with_request(&store, &k);
    // A write that does not follow the stored one.
    let e = store.commit_quorum(&k, &s).unwrap_err();
    assert!(e.to_string().contains("changed meanwhile"), "{e}");
    let place = keys::meta::quorum(t);
    let mut sealed = store.backend().get(Cf::Meta, &place).unwrap().unwrap();
    let n = sealed.len();
    sealed[n / 2] ^= 1;
    raw_put(&store, place, sealed);
    assert!(matches!(store.quorum(&k), Err(StoreError::Tampered { .. })));
}

#[test]
fn verdicts_follow_their_requests_and_reinit_wipes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_dir(dir.path()).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let mut s = with_request(&store, &k);
    let id = s.requests[0].id;
    let v = Verdict {
        request: id,
        approver: 1,
        approve: true,
        at: 3,
        signature: vec![1; 64],
    };
    // An approver writes a verdict without any PIN.
    let public = store.public_access(t).unwrap();
    store.put_verdict(&public, &v).unwrap();
    assert!(
        store.put_verdict(&public, &v).is_err(),
        "one verdict per approver"
    );
    assert_eq!(store.verdicts(&k).unwrap(), vec![v.clone()]);
    // Dropping the request drops its verdict in the same write.
    s.requests.clear();
    s.seq += 1;
    store.commit_quorum(&k, &s).unwrap();
    assert!(store.verdicts(&k).unwrap().is_empty());
    store.reinit_token(t, &pin(SO_PIN), "fresh".into()).unwrap();
    let so = store.login(t, UserKind::So, &pin(SO_PIN)).unwrap();
    assert_eq!(store.quorum(&so).unwrap(), QuorumState::default());
    let mut left = 0;
    for prefix in [
        keys::meta::quorum_seq_prefix(t),
        keys::meta::verdict_prefix(t),
    ] {
        store
            .backend()
            .scan_prefix(Cf::Meta, &prefix, &mut |_, _| {
                left += 1;
                Ok(hsm_store::backend::Flow::Continue)
            })
            .unwrap();
    }
    assert_eq!(left, 0);
}
