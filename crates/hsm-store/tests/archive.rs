//! Backup archives on real stores: round trip, consistency under live writers, and every
//! kind of damage refused with the target untouched.

mod common;

use common::*;
use hsm_store::archive::{self, BackupSecret, NoProgress};
use hsm_store::{KdfParams, Query, Store, StoreError};
use hsm_types::{AttributeType as A, SecretString, UserKind};
use std::path::Path;

fn pass() -> BackupSecret {
    BackupSecret::Passphrase(SecretString::from("backup-passphrase"))
}

fn fill(dir: &Path, n: usize) -> hsm_types::TokenId {
    let store = Store::open_dir(dir).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let objs: Vec<_> = (0..n)
        .map(|i| data_object(format!("obj-{i}").as_bytes(), &[i as u8; 600], i % 2 == 0))
        .collect();
    for chunk in objs.chunks(1000) {
        store.create_objects(&k, chunk.to_vec()).unwrap();
    }
    t
}

#[test]
fn round_trip_keeps_every_record_and_the_store_id() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let t = fill(&src, 3000);
    let file = d.path().join("a.fhb");
    let m = archive::create(&src, &file, &pass(), KdfParams::INSECURE_FAST, &NoProgress).unwrap();
    assert_eq!(m.tokens[0].objects, 3000);
    assert_eq!(archive::verify(&file, &pass(), &NoProgress).unwrap(), m);
    assert_eq!(archive::manifest(&file, &pass()).unwrap(), m);
    let dst = d.path().join("dst");
    archive::restore(&file, &pass(), &dst, &NoProgress).unwrap();
    let a = Store::open_dir_read_only(&src).unwrap();
    let b = Store::open_dir(&dst).unwrap();
    assert_eq!(a.store_id(), b.store_id());
    let k = b.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let found = b
        .find(
            &k,
            &Query {
                label: Some(b"obj-2999".to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        b.read_object(&k, found[0]).unwrap().attrs.bytes(A::VALUE),
        Some(&[2999usize as u8; 600][..])
    );
    assert!(b.check_token(&k).unwrap().problems.is_empty());
    // The key file path works too.
    let key = BackupSecret::KeyFile(hsm_types::SecretBytes::new(vec![42; 32]));
    let file2 = d.path().join("b.fhb");
    archive::create(&src, &file2, &key, KdfParams::INSECURE_FAST, &NoProgress).unwrap();
    archive::verify(
        &file2,
        &BackupSecret::KeyFile(hsm_types::SecretBytes::new(vec![42; 32])),
        &NoProgress,
    )
    .unwrap();
    assert!(matches!(
        archive::verify(&file2, &pass(), &NoProgress),
        Err(StoreError::BackupKey(_))
    ));
}

#[test]
fn backup_taken_while_writers_run_is_a_consistent_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    let store = Store::open_dir(&src).unwrap();
    let t = new_token(&store);
    let k = store.login(t, UserKind::User, &pin(USER_PIN)).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // The writer creates objects in pairs, each pair one atomic batch, and changes
        // labels in place: a consistent snapshot holds whole pairs only.
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let pair = vec![
                    data_object(format!("pair-{i}-a").as_bytes(), b"x", false),
                    data_object(format!("pair-{i}-b").as_bytes(), b"x", false),
                ];
                store.create_objects(&k, pair).unwrap();
                i += 1;
            }
        });
        for round in 0..4 {
            std::thread::sleep(std::time::Duration::from_millis(150));
            let file = d.path().join(format!("live-{round}.fhb"));
            archive::create(&src, &file, &pass(), KdfParams::INSECURE_FAST, &NoProgress).unwrap();
            let dst = d.path().join(format!("restored-{round}"));
            archive::restore(&file, &pass(), &dst, &NoProgress).unwrap();
            let r = Store::open_dir_read_only(&dst).unwrap();
            let pk = r.public_access(t).unwrap();
            let ids = r.find(&pk, &Query::default()).unwrap();
            assert!(
                ids.len() % 2 == 0,
                "round {round}: {} objects, a pair was split",
                ids.len()
            );
            let report = r.check_token(&pk).unwrap();
            assert!(
                report.problems.is_empty(),
                "round {round}: {:?}",
                report.problems
            );
            let mut labels: Vec<String> = ids
                .iter()
                .map(|id| {
                    String::from_utf8(
                        r.read_object(&pk, *id)
                            .unwrap()
                            .attrs
                            .label()
                            .unwrap()
                            .to_vec(),
                    )
                    .unwrap()
                })
                .collect();
            labels.sort();
            for pair in labels.chunks(2) {
                assert_eq!(
                    pair[0].trim_end_matches("-a"),
                    pair[1].trim_end_matches("-b"),
                    "round {round}"
                );
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

fn damaged(d: &Path, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = std::fs::read(d.join("a.fhb")).unwrap();
    f(&mut bytes);
    let p = d.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn damage_of_every_kind_is_refused_and_the_target_untouched() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fill(&src, 4000); // a few MiB: several chunks
    archive::create(
        &src,
        &d.path().join("a.fhb"),
        &pass(),
        KdfParams::INSECURE_FAST,
        &NoProgress,
    )
    .unwrap();
    let len = std::fs::metadata(d.path().join("a.fhb")).unwrap().len() as usize;
    assert!(len > 2 * (1 << 20), "needs several chunks, got {len} bytes");
    let header_end = 16
        + 4
        + u32::from_be_bytes(
            std::fs::read(d.path().join("a.fhb")).unwrap()[16..20]
                .try_into()
                .unwrap(),
        ) as usize;
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "flipped byte",
            damaged(d.path(), "flip.fhb", |b| b[len / 2] ^= 1),
            "failed authentication",
        ),
        (
            "truncated",
            damaged(d.path(), "trunc.fhb", |b| b.truncate(len - 100)),
            "truncated",
        ),
        (
            "final chunk cut",
            damaged(d.path(), "cut.fhb", |b| {
                // Remove the final chunk entirely: what remains still authenticates chunk by chunk.
                let mut pos = header_end;
                let mut last_start = pos;
                while pos < b.len() {
                    last_start = pos;
                    pos += 4 + u32::from_be_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
                }
                b.truncate(last_start);
            }),
            "truncated",
        ),
        (
            "reordered chunks",
            damaged(d.path(), "swap.fhb", |b| {
                let c0 = header_end;
                let l0 = 4 + u32::from_be_bytes(b[c0..c0 + 4].try_into().unwrap()) as usize;
                let c1 = c0 + l0;
                let l1 = 4 + u32::from_be_bytes(b[c1..c1 + 4].try_into().unwrap()) as usize;
                assert_eq!(l0, l1, "two full chunks");
                let first = b[c0..c1].to_vec();
                let second = b[c1..c1 + l1].to_vec();
                b[c0..c1].copy_from_slice(&second);
                b[c1..c1 + l1].copy_from_slice(&first);
            }),
            "reordered",
        ),
        (
            "not a backup",
            damaged(d.path(), "junk.fhb", |b| b[0] = b'X'),
            "not a FerroHSM backup",
        ),
    ];
    for (what, file, expect) in cases {
        let e = archive::verify(&file, &pass(), &NoProgress).unwrap_err();
        assert!(e.to_string().contains(expect), "{what}: {e}");
        let target = d.path().join(format!("target-{}", what.replace(' ', "-")));
        let e = archive::restore(&file, &pass(), &target, &NoProgress).unwrap_err();
        assert!(e.to_string().contains(expect), "{what}: {e}");
        assert!(!target.exists(), "{what}: the target must not appear");
    }
    let wrong = BackupSecret::Passphrase(SecretString::from("not-the-passphrase"));
    assert!(matches!(
        archive::verify(&d.path().join("a.fhb"), &wrong, &NoProgress),
        Err(StoreError::BackupKey(_))
    ));
    // A non-empty target is refused and left alone.
    let busy = d.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), b"mine").unwrap();
    let e = archive::restore(&d.path().join("a.fhb"), &pass(), &busy, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(std::fs::read(busy.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    // An existing archive is never overwritten.
    let e = archive::create(
        &src,
        &d.path().join("a.fhb"),
        &pass(),
        KdfParams::INSECURE_FAST,
        &NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}
