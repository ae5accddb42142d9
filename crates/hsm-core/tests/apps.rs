//! Applications through the shipped [`Token`] seam, on a real on-disk store: what the
//! server gives each client connection. Login is per application (PKCS#11 §5.6), session
//! handles and session objects belong to the application that made them, and an
//! application that ends leaves nothing behind. And no key material that the token hides
//! ever leaves the core, whoever asks.

use hsm_core::config::Config;
use hsm_core::runtime::SessionState;
use hsm_core::types::policy::is_secret;
use hsm_core::types::{
    AttrValue, AttributeSet, AttributeType as A, MechanismType as M, ObjectClass, SecretString,
};
use hsm_core::{Error, Hsm, Local, LoginKind, Mechanism, Token};
use std::sync::Arc;

fn token(dir: &std::path::Path) -> (Arc<Hsm>, u64) {
    let config = Config::parse(&format!(
        "store = {:?}\n[kdf]\nm_kib = 256\nt_cost = 1\np_cost = 1\n[pin_policy]\nmin_len = 4\nmax_len = 16\nmax_failures = 5\n",
        dir.join("store")
    ))
    .unwrap();
    let hsm = Arc::new(Hsm::open(config).unwrap());
    let admin = Local::new(hsm.clone());
    let slot = admin.slot_list(true).unwrap()[0];
    admin
        .init_token(slot, SecretString::from("so-pin-1"), "apps".into())
        .unwrap();
    let s = admin.open_session(slot, true).unwrap();
    admin
        .login(s, LoginKind::So, SecretString::from("so-pin-1"))
        .unwrap();
    admin.init_pin(s, SecretString::from("user-pin")).unwrap();
    (hsm, slot)
}

fn aes_template(token: bool) -> AttributeSet {
    let mut t = AttributeSet::new();
    t.set(A::TOKEN, AttrValue::Bool(token));
    t.set(A::VALUE_LEN, AttrValue::Ulong(32));
    t.set(A::ENCRYPT, AttrValue::Bool(true));
    t.set(A::LABEL, AttrValue::Bytes(b"k".to_vec()));
    t
}

fn find_all(t: &dyn Token, s: u64) -> Vec<u64> {
    t.find_init(s, AttributeSet::new()).unwrap();
    let found = t.find_next(s, 1000).unwrap();
    t.find_final(s).unwrap();
    found
}

#[test]
fn each_application_has_its_own_login_sessions_and_session_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, slot) = token(dir.path());
    let a = Local::new(hsm.clone());
    let b = Local::new(hsm.clone());
    let sa = a.open_session(slot, true).unwrap();
    let sb = b.open_session(slot, true).unwrap();
    a.login(sa, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    let aes_gen = Mechanism::Plain(M::AES_KEY_GEN);
    let private_token_key = a.generate_key(sa, &aes_gen, aes_template(true)).unwrap();
    let session_key = a.generate_key(sa, &aes_gen, aes_template(false)).unwrap();

    // A's login is not B's: B sees no private objects and cannot use A's keys.
    assert_eq!(a.session_info(sa).unwrap().state, SessionState::RwUser);
    assert_eq!(b.session_info(sb).unwrap().state, SessionState::RwPublic);
    assert!(find_all(&a, sa).contains(&session_key));
    assert!(find_all(&b, sb).is_empty(), "B sees A's objects");
    let ecb = Mechanism::Plain(M::AES_ECB);
    assert!(matches!(
        b.encrypt_init(sb, &ecb, private_token_key),
        Err(Error::UserNotLoggedIn | Error::KeyHandleInvalid | Error::ObjectHandleInvalid)
    ));
    assert!(matches!(
        b.object_attributes(sb, session_key),
        Err(Error::ObjectHandleInvalid)
    ));
    // B cannot use A's session handle, nor log A out, nor close it.
    for e in [
        b.encrypt_init(sa, &ecb, session_key).unwrap_err(),
        b.logout(sa).unwrap_err(),
        b.close_session(sa).unwrap_err(),
    ] {
        assert!(matches!(e, Error::SessionHandleInvalid), "{e}");
    }
    // B logs in on its own; logging B out leaves A logged in.
    b.login(sb, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    assert!(find_all(&b, sb).contains(&private_token_key));
    assert!(!find_all(&b, sb).contains(&session_key));
    b.logout(sb).unwrap();
    assert_eq!(a.session_info(sa).unwrap().state, SessionState::RwUser);
    a.encrypt_init(sa, &ecb, session_key).unwrap();
    assert_eq!(a.encrypt(sa, &[0u8; 16]).unwrap().len(), 16);

    // A ends (its client went away): its sessions and session objects go, B stays.
    drop(a);
    assert!(hsm.session_app(sa).is_none());
    b.login(sb, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    let left = find_all(&b, sb);
    assert_eq!(left, vec![private_token_key], "A's session key outlived A");
}

#[test]
fn an_ended_application_opens_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, slot) = token(dir.path());
    let app = hsm.new_app();
    hsm.end_app(app);
    assert!(hsm.open_session(app, slot, false).is_err());
}

#[test]
fn hidden_key_material_never_leaves_the_core() {
    let dir = tempfile::tempdir().unwrap();
    let (hsm, slot) = token(dir.path());
    let t = Local::new(hsm);
    let s = t.open_session(slot, true).unwrap();
    t.login(s, LoginKind::User, SecretString::from("user-pin"))
        .unwrap();
    let mut pt = AttributeSet::new();
    pt.set(A::TOKEN, AttrValue::Bool(true));
    pt.set(A::MODULUS_BITS, AttrValue::Ulong(2048));
    let mut st = AttributeSet::new();
    st.set(A::TOKEN, AttrValue::Bool(true));
    st.set(A::SENSITIVE, AttrValue::Bool(true));
    let rsa = Mechanism::Plain(M::RSA_PKCS_KEY_PAIR_GEN);
    let (public, private) = t.generate_key_pair(s, &rsa, pt, st).unwrap();
    let aes_gen = Mechanism::Plain(M::AES_KEY_GEN);
    let mut unextractable = aes_template(false);
    unextractable.set(A::EXTRACTABLE, AttrValue::Bool(false));
    let secret = t.generate_key(s, &aes_gen, unextractable).unwrap();

    // The attack: ask for every attribute the objects have, through the seam the FFI
    // layer and the server both use. What comes back holds no key material at all.
    for (key, class) in [
        (private, ObjectClass::PRIVATE_KEY),
        (secret, ObjectClass::SECRET_KEY),
    ] {
        let got = t.object_attributes(s, key).unwrap();
        let leaked: Vec<A> = got.types().filter(|a| is_secret(Some(class), *a)).collect();
        assert!(leaked.is_empty(), "{leaked:?} left the core");
        assert!(got.get(A::KEY_TYPE).is_some(), "the rest is still there");
    }
    // The public key's modulus is not secret and is still answered.
    let got = t.object_attributes(s, public).unwrap();
    assert!(matches!(got.get(A::MODULUS), Some(AttrValue::Bytes(n)) if n.len() == 256));

    // An extractable, non-sensitive key's value is readable, as PKCS#11 says.
    let mut open = aes_template(false);
    open.set(A::SENSITIVE, AttrValue::Bool(false));
    open.set(A::EXTRACTABLE, AttrValue::Bool(true));
    let open = t.generate_key(s, &aes_gen, open).unwrap();
    let got = t.object_attributes(s, open).unwrap();
    assert!(matches!(got.get(A::VALUE), Some(AttrValue::Bytes(v)) if v.len() == 32));
}
