//! The key lifecycle through the runtime the PKCS#11 module drives, on a real on-disk
//! store: after a rotation the label finds the new version and the old one still
//! verifies; disabled, scheduled and destroyed versions refuse every use whatever handle
//! a client kept; a scheduled destruction is restorable before its deadline and gone
//! after it (time moved through the manager, no sleeping).

use hsm_core::config::Config;
use hsm_core::lifecycle::{DEFAULT_DESTROY_DELAY, KeyId, KeyPolicy, VersionState};
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, MechanismType as M, ObjectClass, SecretString,
};
use hsm_core::{Error, Hsm, LoginKind, Mechanism};

fn config(dir: &std::path::Path) -> Config {
    Config::parse(&format!(
        "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n",
        dir.join("store")
    ))
    .unwrap()
}

/// A token with the user logged in on a read-write session.
fn token(dir: &std::path::Path) -> (Hsm, u64) {
    let hsm = Hsm::open(config(dir)).unwrap();
    let slot = hsm.slot_list(true).unwrap()[0];
    let app = hsm.new_app();
    hsm.init_token(slot, SecretString::from("so-pin-1"), "life".into())
        .unwrap();
    let h = hsm.open_session(app, slot, true).unwrap();
    hsm.login(h, LoginKind::So, SecretString::from("so-pin-1"))
        .unwrap();
    hsm.init_pin(h, SecretString::from("user-pin")).unwrap();
    hsm.logout(h).unwrap();
    hsm.login(h, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    (hsm, h)
}

fn p256_pair(hsm: &Hsm, h: u64, label: &str) -> (u64, u64) {
    let mut public = AttributeSet::new();
    public.set(A::TOKEN, AttrValue::Bool(true));
    public.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    public.set(A::ID, AttrValue::Bytes(b"sig-1".to_vec()));
    public.set(
        A::EC_PARAMS,
        AttrValue::Bytes(vec![
            0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]),
    );
    let mut private = AttributeSet::new();
    private.set(A::TOKEN, AttrValue::Bool(true));
    private.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    private.set(A::ID, AttrValue::Bytes(b"sig-1".to_vec()));
    let mech = Mechanism::Plain(M::EC_KEY_PAIR_GEN);
    hsm.generate_key_pair(h, &mech, public, private).unwrap()
}

fn find(hsm: &Hsm, h: u64, template: AttributeSet) -> Vec<u64> {
    hsm.find_init(h, template).unwrap();
    let found = hsm.find_next(h, 100).unwrap();
    hsm.find_final(h).unwrap();
    found
}

fn by_label(label: &str, class: ObjectClass) -> AttributeSet {
    let mut t = AttributeSet::new();
    t.set(A::CLASS, AttrValue::Ulong(class.0));
    t.set(A::LABEL, AttrValue::Bytes(label.as_bytes().to_vec()));
    t
}

fn sign(hsm: &Hsm, h: u64, key: u64, data: &[u8]) -> Result<Vec<u8>, Error> {
    hsm.sign_init(h, &Mechanism::Plain(M::ECDSA), key)?;
    hsm.sign(h, data)
}

fn verify(hsm: &Hsm, h: u64, key: u64, data: &[u8], sig: &[u8]) -> Result<(), Error> {
    hsm.verify_init(h, &Mechanism::Plain(M::ECDSA), key)?;
    hsm.verify(h, data, sig)
}

fn refused(r: Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::KeyFunctionNotPermitted(_)))
}

#[test]
fn after_rotation_the_label_signs_with_the_new_version_and_the_old_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (pub1, priv1) = p256_pair(&hsm, h, "release-signing");
    let digest = [0x5au8; 32];
    let old_sig = sign(&hsm, h, priv1, &digest).unwrap();
    let key = hsm.key_of(h, priv1).unwrap();
    assert_eq!(hsm.key_of(h, pub1).unwrap(), key, "both halves are one key");
    let ring = hsm.lifecycle(h, |km| km.rotate(key)).unwrap();
    assert_eq!((ring.primary, ring.versions.len()), (Some(2), 2));

    // An unmodified client: find by label, one private and one public key, the new ones.
    let privs = find(
        &hsm,
        h,
        by_label("release-signing", ObjectClass::PRIVATE_KEY),
    );
    let pubs = find(
        &hsm,
        h,
        by_label("release-signing", ObjectClass::PUBLIC_KEY),
    );
    assert_eq!((privs.len(), pubs.len()), (1, 1), "{privs:?} {pubs:?}");
    assert_ne!(privs[0], priv1);
    assert_ne!(pubs[0], pub1);
    let new_sig = sign(&hsm, h, privs[0], &digest).unwrap();
    verify(&hsm, h, pubs[0], &digest, &new_sig).unwrap();
    assert!(
        verify(&hsm, h, pub1, &digest, &new_sig).is_err(),
        "new material"
    );
    verify(&hsm, h, pub1, &digest, &old_sig).unwrap();

    // Every version through the vendor attribute; and what each shows.
    let mut all = AttributeSet::new();
    all.set(A::FERRO_KEY_ID, AttrValue::Ulong(key.0));
    assert_eq!(find(&hsm, h, all).len(), 4);
    let a = hsm.object_attributes(h, priv1).unwrap();
    assert_eq!(a.ulong(A::FERRO_KEY_VERSION), Some(1));
    assert_eq!(a.bool(A::FERRO_IS_PRIMARY), Some(false));
    assert_eq!(
        a.ulong(A::FERRO_KEY_STATE),
        Some(VersionState::Enabled.code())
    );
    assert_ne!(
        a.bytes(A::UNIQUE_ID),
        hsm.object_attributes(h, privs[0])
            .unwrap()
            .bytes(A::UNIQUE_ID)
    );

    // The old version may no longer sign once the policy says so, and still verifies.
    let p = KeyPolicy {
        min_encrypt_version: 2,
        ..ring.policy
    };
    hsm.lifecycle(h, |km| km.set_policy(key, p)).unwrap();
    assert!(refused(sign(&hsm, h, priv1, &digest)));
    verify(&hsm, h, pub1, &digest, &old_sig).unwrap();
    // And a copy of a version, which would escape all this, is refused.
    assert!(matches!(
        hsm.copy_object(h, priv1, AttributeSet::new()),
        Err(Error::ActionProhibited(_))
    ));
}

#[test]
fn a_disabled_version_refuses_every_use_whatever_handle_was_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (pub1, priv1) = p256_pair(&hsm, h, "tls");
    let digest = [1u8; 32];
    let sig = sign(&hsm, h, priv1, &digest).unwrap();
    let key = hsm.key_of(h, priv1).unwrap();
    // Disabling the only version leaves the key without a primary: plain searches miss it.
    hsm.lifecycle(h, |km| km.disable(key, 1)).unwrap();
    assert!(
        refused(sign(&hsm, h, priv1, &digest)),
        "cached key, old handle"
    );
    assert!(refused(verify(&hsm, h, pub1, &digest, &sig)));
    assert!(find(&hsm, h, by_label("tls", ObjectClass::PRIVATE_KEY)).is_empty());
    hsm.lifecycle(h, |km| km.enable(key, 1)).unwrap();
    sign(&hsm, h, priv1, &digest).unwrap();
    assert_eq!(
        find(&hsm, h, by_label("tls", ObjectClass::PRIVATE_KEY)),
        vec![priv1]
    );
}

#[test]
fn a_scheduled_destruction_is_restorable_before_its_deadline_and_gone_after() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (_, priv1) = p256_pair(&hsm, h, "ca");
    let key = hsm.key_of(h, priv1).unwrap();
    hsm.lifecycle(h, |km| km.rotate(key)).unwrap();
    // C_DestroyObject on version 1 schedules it (the default 30-day delay).
    hsm.destroy_object(h, priv1).unwrap();
    let ring = hsm.lifecycle(h, |km| Ok(km.ring(key)?.0)).unwrap();
    let VersionState::DestroyScheduled { deadline } = ring.version(1).unwrap().state else {
        panic!("{ring:?}");
    };
    let now = hsm.lifecycle(h, |km| Ok(km.time())).unwrap();
    assert!(
        deadline >= now + DEFAULT_DESTROY_DELAY - 5,
        "{deadline} {now}"
    );
    assert!(refused(sign(&hsm, h, priv1, &[2u8; 32])));
    hsm.lifecycle(h, |km| km.restore(key, 1)).unwrap();
    hsm.lifecycle(h, |km| km.enable(key, 1)).unwrap();
    sign(&hsm, h, priv1, &[2u8; 32]).unwrap();

    // Scheduled again, then the clock passes the deadline: no restore, and a sweep erases.
    hsm.destroy_object(h, priv1).unwrap();
    let later = now + DEFAULT_DESTROY_DELAY + 60;
    let e = hsm
        .lifecycle(h, |km| km.at(later).restore(key, 1))
        .unwrap_err();
    assert!(e.to_string().contains("restore window closed"), "{e}");
    let report = hsm.lifecycle(h, |km| km.at(later).sweep()).unwrap();
    assert_eq!(report.destroyed, vec![(key, 1)]);
    assert!(matches!(
        hsm.object_attributes(h, priv1),
        Err(Error::ObjectHandleInvalid)
    ));
    let ring = hsm.lifecycle(h, |km| Ok(km.ring(key)?.0)).unwrap();
    assert!(matches!(
        ring.version(1).unwrap().state,
        VersionState::Destroyed { .. }
    ));
    assert!(ring.version(1).unwrap().objects.is_empty());
    assert_eq!(ring.primary, Some(2), "the newer version is untouched");
}

#[test]
fn transitions_need_the_user_and_refuse_what_the_state_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (_, priv1) = p256_pair(&hsm, h, "k");
    let key = hsm.key_of(h, priv1).unwrap();
    let e = hsm.lifecycle(h, |km| km.enable(key, 1)).unwrap_err();
    assert!(e.to_string().contains("version 1 is enabled"), "{e}");
    let e = hsm.lifecycle(h, |km| km.destroy_now(key, 1)).unwrap_err();
    assert!(e.to_string().contains("destroy_delay"), "{e}");
    let e = hsm
        .lifecycle(h, |km| km.rollback(KeyId(key.0), 7))
        .unwrap_err();
    assert!(e.to_string().contains("no version 7"), "{e}");
    hsm.logout(h).unwrap();
    assert!(matches!(
        hsm.lifecycle(h, |km| km.rotate(key)),
        Err(Error::UserNotLoggedIn)
    ));
}

#[test]
fn no_template_sets_a_lifecycle_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (_, priv1) = p256_pair(&hsm, h, "k");
    let key = hsm.key_of(h, priv1).unwrap();
    hsm.lifecycle(h, |km| km.rotate(key)).unwrap();
    // The attack: an imported key claiming to be version 9 of the rotated key.
    let mut t = AttributeSet::new();
    t.set(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
    t.set(
        A::KEY_TYPE,
        AttrValue::Ulong(hsm_core::types::KeyType::AES.0),
    );
    t.set(A::TOKEN, AttrValue::Bool(true));
    t.set(A::VALUE, AttrValue::Bytes(vec![7u8; 32]));
    t.set(A::FERRO_KEY_ID, AttrValue::Ulong(key.0));
    t.set(A::FERRO_KEY_VERSION, AttrValue::Ulong(9));
    assert!(matches!(
        hsm.create_object(h, t),
        Err(Error::AttributeReadOnly(_))
    ));
    // Nor can a version be moved to another number or key, or marked primary.
    for (a, v) in [
        (A::FERRO_KEY_VERSION, AttrValue::Ulong(2)),
        (A::FERRO_KEY_ID, AttrValue::Ulong(1)),
        (A::FERRO_IS_PRIMARY, AttrValue::Bool(true)),
    ] {
        let mut change = AttributeSet::new();
        change.set(a, v);
        assert!(
            matches!(
                hsm.set_attributes(h, priv1, change),
                Err(Error::AttributeReadOnly(_))
            ),
            "{a:?}"
        );
    }
    let a = hsm.object_attributes(h, priv1).unwrap();
    assert_eq!(a.ulong(A::FERRO_KEY_VERSION), Some(1));
}

#[test]
fn pkcs11_rotates_through_c_derive_key_with_the_vendor_mechanism() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (_, priv1) = p256_pair(&hsm, h, "ci");
    let rotate = Mechanism::Plain(M::FERRO_KEY_ROTATE);
    let mut t = AttributeSet::new();
    t.set(A::LABEL, AttrValue::Bytes(b"other".to_vec()));
    assert!(matches!(
        hsm.derive_key(h, &rotate, priv1, t),
        Err(Error::TemplateInconsistent(_))
    ));
    let priv2 = hsm
        .derive_key(h, &rotate, priv1, AttributeSet::new())
        .unwrap();
    assert_ne!(priv2, priv1);
    assert_eq!(
        find(&hsm, h, by_label("ci", ObjectClass::PRIVATE_KEY)),
        vec![priv2]
    );
    let a = hsm.object_attributes(h, priv2).unwrap();
    assert_eq!(a.ulong(A::FERRO_KEY_VERSION), Some(2));
    assert_eq!(a.bool(A::FERRO_IS_PRIMARY), Some(true));
    // Rotating from the old version's handle rotates the same key again.
    let priv3 = hsm
        .derive_key(h, &rotate, priv1, AttributeSet::new())
        .unwrap();
    let a = hsm.object_attributes(h, priv3).unwrap();
    assert_eq!(a.ulong(A::FERRO_KEY_VERSION), Some(3));
    assert!(sign(&hsm, h, priv3, &[3u8; 32]).is_ok());
}

#[test]
fn the_servers_timer_does_what_fell_due_on_logged_in_slots() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    let (_, priv1) = p256_pair(&hsm, h, "timed");
    let key = hsm.key_of(h, priv1).unwrap();
    let now = hsm.lifecycle(h, |km| Ok(km.time())).unwrap();
    let long_ago = now - DEFAULT_DESTROY_DELAY - 3600;
    // Rotated long ago, version 1 scheduled long ago: its deadline has passed.
    hsm.lifecycle(h, |km| km.at(long_ago).rotate(key)).unwrap();
    hsm.lifecycle(h, |km| km.at(long_ago).schedule_destroy(key, 1))
        .unwrap();
    let ring = hsm.lifecycle(h, |km| Ok(km.ring(key)?.0)).unwrap();
    let p = KeyPolicy {
        auto_rotate_period: Some(86_400),
        ..ring.policy
    };
    hsm.lifecycle(h, |km| km.at(long_ago).set_policy(key, p))
        .unwrap();
    assert_eq!(hsm.lifecycle_tick(), (1, 1), "one erased, one rotated");
    assert!(matches!(
        hsm.object_attributes(h, priv1),
        Err(Error::ObjectHandleInvalid)
    ));
    let ring = hsm.lifecycle(h, |km| Ok(km.ring(key)?.0)).unwrap();
    assert_eq!(ring.primary, Some(3));
    assert_eq!(hsm.lifecycle_tick(), (0, 0), "nothing more is due");
    // Nobody logged in: nothing runs.
    hsm.logout(h).unwrap();
    assert_eq!(hsm.lifecycle_tick(), (0, 0));
}

#[test]
fn destroying_a_key_that_never_rotated_erases_it_unless_configured_to_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, h) = token(dir.path());
    // By default the PKCS#11 meaning: the handle is invalid afterwards.
    let (_, priv0) = p256_pair(&hsm, h, "gone");
    hsm.destroy_object(h, priv0).unwrap();
    assert!(matches!(
        hsm.object_attributes(h, priv0),
        Err(Error::ObjectHandleInvalid)
    ));
    drop(hsm);

    // schedule_plain_destroy = true: version 1 of its own ring, scheduled. No plain search
    // finds either half, no handle uses it, and it comes back before the deadline.
    let mut cfg = config(dir.path());
    cfg.lifecycle.schedule_plain_destroy = true;
    let hsm = Hsm::open(cfg).unwrap();
    let slot = hsm.slot_list(true).unwrap()[0];
    let h = hsm.open_session(hsm.new_app(), slot, true).unwrap();
    hsm.login(h, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    let (pub1, priv1) = p256_pair(&hsm, h, "plain");
    hsm.destroy_object(h, priv1).unwrap();
    assert!(find(&hsm, h, by_label("plain", ObjectClass::PRIVATE_KEY)).is_empty());
    assert!(find(&hsm, h, by_label("plain", ObjectClass::PUBLIC_KEY)).is_empty());
    assert!(refused(sign(&hsm, h, priv1, &[3u8; 32])));
    assert!(verify(&hsm, h, pub1, &[3u8; 32], &[0u8; 64]).is_err());
    let key = hsm.key_of(h, priv1).unwrap();
    let ring = hsm.lifecycle(h, |km| Ok(km.ring(key)?.0)).unwrap();
    assert!(matches!(
        ring.version(1).unwrap().state,
        VersionState::DestroyScheduled { .. }
    ));
    assert_eq!(
        ring.version(1).unwrap().objects.len(),
        2,
        "both halves: {ring:?}"
    );
    hsm.lifecycle(h, |km| km.restore(key, 1)).unwrap();
    hsm.lifecycle(h, |km| km.enable(key, 1)).unwrap();
    assert_eq!(
        find(&hsm, h, by_label("plain", ObjectClass::PRIVATE_KEY)),
        vec![priv1]
    );
    sign(&hsm, h, priv1, &[3u8; 32]).unwrap();
}
