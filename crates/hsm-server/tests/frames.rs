//! ROBUSTNESS A5 on a real server over its real socket: random bytes, a length of 2^63, a
//! truncated frame, an unknown protocol version, another build's call list, a peer whose
//! uid is not allowed, a forged application key. Each gets a clear answer and a closed
//! connection, nothing is allocated from a claimed size, and the server keeps serving.

mod common;

use common::{Server, call, closed, good_hello, hello, read_answer, read_welcome};
use hsm_core::Error;
use hsm_core::api::Request;
use hsm_proto::{AppKey, Welcome};
use std::io::Write;

/// A good client still gets its answer: the server is up and serving.
fn still_serves(s: &mut Server) {
    assert!(s.alive(), "the server died:\n{}", s.log());
    let (mut c, _) = s.client(None);
    let slots: Vec<u64> = call(&mut c, &Request::slot_list { present: true }).unwrap();
    assert!(!slots.is_empty());
}

fn refusal(w: Welcome) -> String {
    match w {
        Welcome::Refused { reason } => reason,
        Welcome::Accepted { .. } => panic!("accepted"),
    }
}

#[test]
fn random_bytes_and_wrong_magic_are_refused() {
    let mut s = Server::start("");
    // A small xorshift: different garbage each round, the same each run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..40 {
        let mut junk = vec![0u8; 1 + round * 37 % 700];
        for b in junk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut c = s.raw();
        let _ = c.write_all(&junk);
        let _ = c.shutdown(std::net::Shutdown::Write);
        // Eight bytes or more that are not the magic: a refusal, then the end. Fewer:
        // the end of the stream (the server waits for no more).
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c, &mut answer);
        if junk.len() >= hsm_proto::MAGIC.len() {
            let w = read_welcome(&mut &answer[..]);
            assert!(refusal(w).contains("not a FerroHSM client"));
        } else {
            assert!(answer.is_empty());
        }
    }
    let mut c = s.raw();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(refusal(read_welcome(&mut c)).contains("wrong magic"));
    still_serves(&mut s);
}

#[test]
fn huge_and_truncated_frames_close_the_connection_without_allocating() {
    let mut s = Server::start("");
    let before = s.peak_rss_kib();
    // A claimed length of 2^63 in the hello, and after a good handshake.
    let mut c = s.raw();
    c.write_all(&hsm_proto::MAGIC).unwrap();
    c.write_all(&(1u64 << 63).to_be_bytes()).unwrap();
    assert!(closed(&mut c));
    for claimed in [1u64 << 63, u64::MAX, hsm_proto::MAX_FRAME + 1] {
        let (mut c, _) = s.client(None);
        c.write_all(&claimed.to_be_bytes()).unwrap();
        let e = read_answer::<()>(&mut c).unwrap_err();
        assert!(
            matches!(&e, Error::DeviceError(m) if m.contains("over this side's cap")),
            "{e}"
        );
        assert!(closed(&mut c));
    }
    // A frame cut short: the server gives up on that connection only.
    let (mut c, _) = s.client(None);
    c.write_all(&100u64.to_be_bytes()).unwrap();
    c.write_all(b"0123456789").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let e = read_answer::<()>(&mut c).unwrap_err();
    assert!(
        matches!(&e, Error::DeviceError(m) if m.contains("bad frame")),
        "{e}"
    );
    assert!(closed(&mut c));
    // A frame of the right length whose content is no call.
    let (mut c, _) = s.client(None);
    let mut junk = 5u64.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0xc1; 5]);
    c.write_all(&junk).unwrap();
    let e = read_answer::<()>(&mut c).unwrap_err();
    assert!(
        matches!(&e, Error::DeviceError(m) if m.contains("undecodable call")),
        "{e}"
    );
    assert!(closed(&mut c));
    // Nothing near any claimed size was allocated (the store's caches are a few MiB).
    let grew = s.peak_rss_kib().saturating_sub(before);
    assert!(grew < 32 * 1024, "peak RSS grew by {grew} KiB");
    still_serves(&mut s);
}

#[test]
fn an_unknown_version_or_another_builds_calls_are_refused_in_words() {
    let mut s = Server::start("");
    let mut h = good_hello(None);
    h.versions = (7, 9);
    h.software = "9.0.0".into();
    let why = refusal(hello(&mut s.raw(), h));
    assert!(
        why.contains("protocol versions 7..=9") && why.contains("9.0.0"),
        "{why}"
    );
    let mut h = good_hello(None);
    h.calls ^= 1;
    let why = refusal(hello(&mut s.raw(), h));
    assert!(why.contains("different call lists"), "{why}");
    // An oversized hello is refused by its length alone.
    let mut c = s.raw();
    c.write_all(&hsm_proto::MAGIC).unwrap();
    c.write_all(&(hsm_proto::HELLO_MAX + 1).to_be_bytes())
        .unwrap();
    assert!(closed(&mut c));
    still_serves(&mut s);
}

#[test]
fn a_peer_whose_uid_is_not_allowed_is_refused() {
    // SAFETY-free: the uid this test runs as, read from /proc.
    let me = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .unwrap();
    let other: u32 = me.parse::<u32>().unwrap() + 4242;
    let mut s = Server::start(&format!("allow_uids = [{other}]"));
    let why = refusal(hello(&mut s.raw(), good_hello(None)));
    assert!(
        why.contains(&format!("uid {me} may not use this token")),
        "{why}"
    );
    assert!(s.logs("may not use"), "{}", s.log());
    assert!(s.alive());
}

#[test]
fn joining_an_application_takes_its_key() {
    let mut s = Server::start("");
    let (mut a, app) = s.client(None);
    let slot = call::<Vec<u64>>(&mut a, &Request::slot_list { present: true }).unwrap()[0];
    let so_pin = hsm_core::types::SecretString::from("so-pin-1");
    let label = "frames".to_string();
    call::<()>(
        &mut a,
        &Request::init_token {
            slot,
            so_pin,
            label,
        },
    )
    .unwrap();
    let h: u64 = call(&mut a, &Request::open_session { slot, rw: false }).unwrap();
    // A forged key for A's application is refused.
    let forged = AppKey {
        app: app.app,
        key: [0u8; 32],
    };
    let why = refusal(hello(&mut s.raw(), good_hello(Some(forged))));
    assert!(why.contains("no application"), "{why}");
    // Another application cannot use A's session.
    let (mut b, _) = s.client(None);
    let e = call::<hsm_core::runtime::SessionInfo>(&mut b, &Request::session_info { session: h })
        .unwrap_err();
    assert!(matches!(e, Error::SessionHandleInvalid), "{e}");
    // A second connection of A's application (another thread of that client) can.
    let (mut a2, _) = s.client(Some(app.clone()));
    let info: hsm_core::runtime::SessionInfo =
        call(&mut a2, &Request::session_info { session: h }).unwrap();
    assert_eq!(info.slot, slot);
    // The application lives while any of its connections does; then it ends with its
    // sessions.
    drop(a);
    let _: hsm_core::runtime::SessionInfo =
        call(&mut a2, &Request::session_info { session: h }).unwrap();
    drop(a2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let why = refusal(hello(&mut s.raw(), good_hello(Some(app))));
    assert!(
        why.contains("no application") || why.contains("has ended"),
        "{why}"
    );
    let e = call::<hsm_core::runtime::SessionInfo>(&mut b, &Request::session_info { session: h })
        .unwrap_err();
    assert!(matches!(e, Error::SessionHandleInvalid), "{e}");
    still_serves(&mut s);
}
