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
    let m = archive::create(&src, &file, &pass(), KdfParams::BACKUP_MINIMUM, &NoProgress).unwrap();
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
            archive::create(&src, &file, &pass(), KdfParams::BACKUP_MINIMUM, &NoProgress).unwrap();
            let dst = d.path().join(format!("restored-{round}"));
            archive::restore(&file, &pass(), &dst, &NoProgress).unwrap();
            let r = Store::open_dir_read_only(&dst).unwrap();
            let pk = r.public_access(t).unwrap();
            let ids = r.find(&pk, &Query::default()).unwrap();
            assert!(
                ids.len().is_multiple_of(2),
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
        KdfParams::BACKUP_MINIMUM,
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
        KdfParams::BACKUP_MINIMUM,
        &NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

/// The cleartext header, as `schema/backup.md` describes it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    format: u32,
    key_source: String,
    kdf: Option<KdfParams>,
    #[serde(with = "serde_bytes")]
    salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    nonce_prefix: Vec<u8>,
    chunk_size: u32,
    #[serde(with = "serde_bytes")]
    key_check: Vec<u8>,
}

/// `file` with its header's KDF cost replaced.
fn with_kdf(file: &Path, out: &Path, kdf: KdfParams) {
    let bytes = std::fs::read(file).unwrap();
    let len = u32::from_be_bytes(bytes[16..20].try_into().unwrap()) as usize;
    let mut h: Header = rmp_serde::from_slice(&bytes[20..20 + len]).unwrap();
    assert_eq!(h.key_source, "passphrase");
    h.kdf = Some(kdf);
    let new = rmp_serde::to_vec_named(&h).unwrap();
    let mut o = bytes[..16].to_vec();
    o.extend_from_slice(&(new.len() as u32).to_be_bytes());
    o.extend_from_slice(&new);
    o.extend_from_slice(&bytes[20 + len..]);
    std::fs::write(out, o).unwrap();
}

#[test]
fn crafted_or_weak_kdf_costs_in_a_header_are_refused_before_any_derivation() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fill(&src, 10);
    let file = d.path().join("a.fhb");
    archive::create(&src, &file, &pass(), KdfParams::BACKUP_MINIMUM, &NoProgress).unwrap();
    let k = |m_kib, t_cost, p_cost| KdfParams {
        m_kib,
        t_cost,
        p_cost,
    };
    let cases = [
        ("huge memory", k(u32::MAX, 2, 1), "cap"),
        ("endless passes", k(65_536, u32::MAX, 1), "cap"),
        ("countless lanes", k(65_536, 2, u32::MAX), "cap"),
        ("all at once", k(u32::MAX, u32::MAX, u32::MAX), "cap"),
        (
            "hours of work",
            k(KdfParams::MAX_M_KIB, KdfParams::MAX_T_COST, 1),
            "cap",
        ),
        (
            "below the floor",
            KdfParams::INSECURE_FAST,
            "below the floor",
        ),
        ("one pass of 19 MiB", k(19_456, 1, 1), "below the floor"),
    ];
    for (i, (what, kdf, expect)) in cases.into_iter().enumerate() {
        let crafted = d.path().join(format!("crafted-{i}.fhb"));
        with_kdf(&file, &crafted, kdf);
        let started = std::time::Instant::now();
        let e = archive::verify(&crafted, &pass(), &NoProgress).unwrap_err();
        assert!(matches!(e, StoreError::BackupInvalid(_)), "{what}: {e}");
        assert!(e.to_string().contains(expect), "{what}: {e}");
        let e = archive::manifest(&crafted, &pass()).unwrap_err();
        assert!(e.to_string().contains(expect), "{what}: {e}");
        let target = d.path().join(format!("target-{i}"));
        let e = archive::restore(&crafted, &pass(), &target, &NoProgress).unwrap_err();
        assert!(e.to_string().contains(expect), "{what}: {e}");
        assert!(!target.exists(), "{what}: the target must not appear");
        // A hang guard, not a benchmark: three refusals, no derivation.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
    // Nothing was left beside the targets.
    let partial: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

#[test]
fn a_weak_passphrase_cost_is_refused_when_writing() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fill(&src, 3);
    let out = d.path().join("weak.fhb");
    for kdf in [
        KdfParams::INSECURE_FAST,
        KdfParams {
            m_kib: 19_456,
            t_cost: 1,
            p_cost: 1,
        },
        KdfParams {
            m_kib: u32::MAX,
            t_cost: 1,
            p_cost: 1,
        },
    ] {
        let e = archive::create(&src, &out, &pass(), kdf, &NoProgress).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{kdf:?}: {e}");
        assert!(
            e.to_string().contains("below the floor") || e.to_string().contains("cap"),
            "{kdf:?}: {e}"
        );
        assert!(!out.exists());
    }
    // OWASP's equivalent minimums pass; a key file archive has no passphrase cost at all.
    archive::create(
        &src,
        &out,
        &pass(),
        KdfParams {
            m_kib: 47_104,
            t_cost: 1,
            p_cost: 1,
        },
        &NoProgress,
    )
    .unwrap();
    let key = BackupSecret::KeyFile(hsm_types::SecretBytes::new(vec![9; 32]));
    archive::create(
        &src,
        &d.path().join("keyfile.fhb"),
        &key,
        KdfParams::INSECURE_FAST,
        &NoProgress,
    )
    .unwrap();
}

/// The old partial name, `<out>.partial-<pid>`, which any local user could predict.
fn predictable_partial(p: &Path) -> std::path::PathBuf {
    let mut name = p.file_name().unwrap().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    p.with_file_name(name)
}

#[test]
fn a_link_planted_at_the_partial_path_is_never_followed() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    fill(&src, 20);
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = d.path().join("a.fhb");
    let planted = predictable_partial(&out);
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    archive::create(&src, &out, &pass(), KdfParams::BACKUP_MINIMUM, &NoProgress).unwrap();
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        b"precious",
        "victim untouched"
    );
    assert!(
        std::fs::symlink_metadata(&planted).unwrap().is_symlink(),
        "the planted link is left as it was"
    );
    assert!(!std::fs::symlink_metadata(&out).unwrap().is_symlink());
    assert_eq!(
        std::fs::metadata(&out).unwrap().mode() & 0o777,
        0o600,
        "an archive is 0600"
    );
    archive::verify(&out, &pass(), &NoProgress).unwrap();

    // A link planted at the archive's own name (after the check, or before) is refused.
    let out2 = d.path().join("b.fhb");
    std::os::unix::fs::symlink(&victim, &out2).unwrap();
    let e =
        archive::create(&src, &out2, &pass(), KdfParams::BACKUP_MINIMUM, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // Restore: a directory (or a link) at the old temporary name is neither removed
    // nor followed; the restore goes elsewhere and succeeds.
    let target = d.path().join("restored");
    let leftover = predictable_partial(&target);
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("someone-elses"), b"keep").unwrap();
    let target2 = d.path().join("restored2");
    let victim_dir = d.path().join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    std::fs::write(victim_dir.join("file"), b"keep").unwrap();
    std::os::unix::fs::symlink(&victim_dir, predictable_partial(&target2)).unwrap();
    for t in [&target, &target2] {
        archive::restore(&out, &pass(), t, &NoProgress).unwrap();
        Store::open_dir(t).unwrap();
    }
    assert_eq!(
        std::fs::read(leftover.join("someone-elses")).unwrap(),
        b"keep"
    );
    assert_eq!(std::fs::read(victim_dir.join("file")).unwrap(), b"keep");
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 1);
}
