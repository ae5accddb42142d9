//! The audit model against the Certificate Transparency reference vectors (SHA-256 from
//! RustCrypto, independent of the aws-lc-rs the core uses), proofs for every index and
//! prefix, and each kind of tampering found by `verify`.

use super::checkpoint::{Checkpoint, key_id, parse_note, signed_note};
use super::merkle::*;
use super::*;
use proptest::prelude::*;
use sha2::Digest;

struct S;
impl Sha256 for S {
    fn digest(parts: &[&[u8]]) -> Hash {
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

const CT_INPUTS: [&[u8]; 8] = [
    b"",
    &[0x00],
    &[0x10],
    &[0x20, 0x21],
    &[0x30, 0x31],
    &[0x40, 0x41, 0x42, 0x43],
    &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
    &[
        0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e,
        0x6f,
    ],
];

#[test]
fn tree_heads_match_the_certificate_transparency_vectors() {
    let leaves: Vec<Hash> = CT_INPUTS.iter().map(|d| leaf_hash::<S>(d)).collect();
    let want = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut f = Frontier::default();
    for (i, w) in want.iter().enumerate() {
        assert_eq!(hex(&root::<S>(&leaves[..=i])), *w, "size {}", i + 1);
        f.push::<S>(leaves[i]);
        assert_eq!(hex(&f.root::<S>()), *w, "frontier at size {}", i + 1);
    }
    assert_eq!(
        hex(&root::<S>(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u32)
        .map(|i| leaf_hash::<S>(&i.to_be_bytes()))
        .collect()
}

proptest! {
    #[test]
    fn every_inclusion_proof_verifies_and_a_wrong_leaf_does_not(n in 1usize..70, i in 0usize..70) {
        let l = leaves(n);
        let i = i % n;
        let head = root::<S>(&l);
        let p = inclusion_proof::<S>(i, &l);
        prop_assert!(verify_inclusion::<S>(i as u64, n as u64, &l[i], &p, &head));
        let other = leaf_hash::<S>(b"not in the log");
        prop_assert!(!verify_inclusion::<S>(i as u64, n as u64, &other, &p, &head));
        if n > 1 {
            prop_assert!(!verify_inclusion::<S>(((i + 1) % n) as u64, n as u64, &l[i], &p, &head));
        }
    }

    #[test]
    fn every_prefix_is_consistent_and_a_rewritten_one_is_not(n in 1usize..70, m in 1usize..70) {
        let l = leaves(n);
        let m = 1 + (m - 1) % n;
        let (a, b) = (root::<S>(&l[..m]), root::<S>(&l));
        let p = consistency_proof::<S>(m, &l);
        prop_assert!(verify_consistency::<S>(m as u64, n as u64, &a, &b, &p));
        let mut forged = l.clone();
        forged[m - 1] = leaf_hash::<S>(b"rewritten");
        let fa = root::<S>(&forged[..m]);
        if m < n {
            prop_assert!(!verify_consistency::<S>(m as u64, n as u64, &fa, &b, &p));
        }
    }
}

fn record(seq: u64, boot: u64) -> Vec<u8> {
    rmp_serde::to_vec_named(&AuditRecord {
        format: RECORD_FORMAT,
        seq,
        boot,
        time: 1000 + seq,
        actor: AuditActor {
            role: "user".into(),
            session: Some(7),
            pid: None,
            subject: None,
        },
        op: "object.create".into(),
        call: Some("C_CreateObject".into()),
        object: Some(seq),
        version: None,
        key: None,
        request: None,
        mechanism: None,
        result: 0,
    })
    .unwrap()
}

fn head(records: &[Vec<u8>], size: usize) -> Checkpoint {
    let l: Vec<Hash> = records[..size].iter().map(|r| leaf_hash::<S>(r)).collect();
    Checkpoint {
        origin: "ferrohsm/test".into(),
        size: size as u64,
        root: root::<S>(&l),
    }
}

fn check(records: &[Vec<u8>], cps: &[Checkpoint], pinned: Option<&Checkpoint>) -> Report {
    let signed: Vec<Signed<'_>> = cps
        .iter()
        .map(|c| Signed {
            checkpoint: c,
            signature_ok: true,
        })
        .collect();
    verify::<S>("ferrohsm/test", records, &signed, pinned)
}

#[test]
fn an_intact_log_verifies_and_each_tampering_is_named() {
    let log: Vec<Vec<u8>> = (0..10).map(|i| record(i, 1 + i / 5)).collect();
    let cps = [head(&log, 4), head(&log, 10)];
    let ok = check(&log, &cps, Some(&cps[0]));
    assert_eq!(ok.findings, []);
    assert_eq!(ok.latest_good, Some(10));

    let mut edited = log.clone();
    edited[2] = record(2, 1);
    edited[2][3] ^= 1;
    let r = check(&edited, &cps, None);
    assert!(
        r.findings.contains(&Finding::RootMismatch { size: 4 }),
        "{r:?}"
    );

    let mut deleted = log.clone();
    deleted.remove(6);
    let r = check(&deleted, &cps, None);
    assert!(
        r.findings.contains(&Finding::Sequence { at: 6, says: 7 }),
        "{r:?}"
    );
    assert!(r.findings.contains(&Finding::Truncated {
        checkpoint: 10,
        records: 9
    }));

    let mut reordered = log.clone();
    reordered.swap(7, 8);
    let r = check(&reordered, &cps, None);
    assert!(r.findings.contains(&Finding::Sequence { at: 7, says: 8 }));
    assert!(r.findings.contains(&Finding::RootMismatch { size: 10 }));

    let truncated = log[..8].to_vec();
    let r = check(&truncated, &cps, None);
    assert!(r.findings.contains(&Finding::Truncated {
        checkpoint: 10,
        records: 8
    }));

    // The whole log and its checkpoints put back to an older state: consistent in
    // itself, but behind the checkpoint the verifier pinned.
    let old = log[..4].to_vec();
    let r = check(&old, &cps[..1], Some(&cps[1]));
    assert_eq!(
        r.findings,
        [Finding::RolledBack {
            pinned: 10,
            records: 4
        }]
    );

    // A rewritten history under a pinned checkpoint, re-signed by whoever rewrote it.
    let mut rewritten = log.clone();
    rewritten[1] = record(1, 1);
    rewritten[1].push(0);
    let resigned = [head(&rewritten, 10)];
    let r = check(&rewritten, &resigned, Some(&cps[0]));
    assert_eq!(r.findings, [Finding::Forked { size: 4 }]);

    let mut boots = log.clone();
    boots[9] = record(9, 0);
    assert!(
        check(&boots, &[], None)
            .findings
            .contains(&Finding::BootBackwards { at: 9 })
    );

    let unsigned = [Signed {
        checkpoint: &cps[1],
        signature_ok: false,
    }];
    let r = verify::<S>("ferrohsm/test", &log, &unsigned, None);
    assert_eq!(r.findings, [Finding::BadSignature { size: 10 }]);
    assert_eq!(r.latest_good, None);
}

#[test]
fn checkpoints_round_trip_as_signed_notes() {
    let c = Checkpoint {
        origin: "ferrohsm/store-1/token-1".into(),
        size: 42,
        root: [7u8; 32],
    };
    let body = c.body();
    assert_eq!(body.lines().count(), 3);
    let id = key_id::<S>("ferrohsm/store-1/token-1", &[1u8; 32]);
    let note = signed_note(&body, "ferrohsm/store-1/token-1", id, &[9u8; 64]);
    assert!(note.contains("\n\n\u{2014} ferrohsm/store-1/token-1 "));
    let parsed = parse_note(&note).unwrap();
    assert_eq!(parsed.body, body);
    assert_eq!(
        parsed.signatures,
        [("ferrohsm/store-1/token-1".to_owned(), id, vec![9u8; 64])]
    );
    assert_eq!(Checkpoint::parse_body(&parsed.body).unwrap(), c);
    for bad in ["", "origin\n", "o\nx\nAAAA\n", "o\n1\nnot base64!\n"] {
        assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
    }
    assert!(parse_note(&body).is_err(), "a note needs a signature");
}

/// The borrowed form encodes to exactly the bytes of the owned one (as the store writes
/// records: MessagePack with field names), with and without the optional fields.
#[test]
fn a_borrowed_record_encodes_as_the_owned_one() {
    for (call, subject, key, request) in [
        (None, None, None, None),
        (Some("C_SignInit"), Some("alice"), Some(7), Some(9)),
    ] {
        let owned = AuditRecord {
            format: RECORD_FORMAT,
            seq: 41,
            boot: 3,
            time: 1_764_800_000,
            actor: AuditActor {
                role: "user".into(),
                session: Some(5),
                pid: Some(1234),
                subject: subject.map(str::to_string),
            },
            op: "key.sign".into(),
            call: call.map(str::to_string),
            object: Some(12),
            version: None,
            key,
            request,
            mechanism: Some(0x1041),
            result: 0,
        };
        let borrowed = AuditRecordRef {
            format: owned.format,
            seq: owned.seq,
            boot: owned.boot,
            time: owned.time,
            actor: AuditActorRef {
                role: "user",
                session: Some(5),
                pid: Some(1234),
                subject,
            },
            op: "key.sign",
            call,
            object: owned.object,
            version: owned.version,
            key,
            request,
            mechanism: owned.mechanism,
            result: owned.result,
        };
        assert_eq!(
            rmp_serde::to_vec_named(&borrowed).unwrap(),
            rmp_serde::to_vec_named(&owned).unwrap()
        );
    }
}
