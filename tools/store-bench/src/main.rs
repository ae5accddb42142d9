//! Store benchmark (not a test): builds stores of growing size on real RocksDB and
//! measures durable create, read, find by label and by `CKA_ID`, reopen time and peak
//! RSS. Find must not grow with the object count: every lookup goes through an index.
//!
//! `cargo run --release -p store-bench -- --sizes 10000,100000,1000000 --out docs/benchmarks-store.md`
#![forbid(unsafe_code)]

use clap::Parser;
use hsm_store::{KdfParams, PinPolicy, Query, Store, TokenKeys, TokenSpec};
use hsm_types::{
    AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType, ObjectClass, SecretString,
    UserKind,
};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Object counts to measure at, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Lookups and reads timed per size.
    #[arg(long, default_value_t = 2000)]
    samples: u64,
    /// Durable single creates timed per size (each one is an fsync).
    #[arg(long, default_value_t = 200)]
    durable_creates: u64,
    /// Where to write the Markdown table (stdout always gets it too).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Directory for the stores (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Also time backup create, verify and restore at this object count (one of --sizes).
    #[arg(long)]
    backup_at: Option<u64>,
}

fn object(n: u64) -> AttributeSet {
    let private = n.is_multiple_of(2);
    AttributeSet::new()
        .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
        .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0))
        .with(A::TOKEN, AttrValue::Bool(true))
        .with(A::PRIVATE, AttrValue::Bool(private))
        .with(
            A::LABEL,
            AttrValue::Bytes(format!("bench-key-{n:08}").into_bytes()),
        )
        .with(A::ID, AttrValue::Bytes(n.to_be_bytes().to_vec()))
        .with(A::VALUE, AttrValue::Bytes(vec![(n % 251) as u8; 32]))
        .with(A::SENSITIVE, AttrValue::Bool(true))
        .with(
            A::ALLOWED_MECHANISMS,
            AttrValue::Mechanisms(vec![MechanismType::AES_GCM.0]),
        )
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

struct Row {
    size: u64,
    load: Duration,
    durable_create_us: f64,
    read_us: f64,
    find_label_us: f64,
    find_id_us: f64,
    find_class_and_id_us: f64,
    open_ms: f64,
    rss_mib: f64,
    disk_mib: f64,
}

fn per_op_us(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn fill(store: &Store, k: &TokenKeys, from: u64, to: u64) {
    const BATCH: u64 = 2000;
    let mut n = from;
    while n < to {
        let end = (n + BATCH).min(to);
        store
            .create_objects(k, (n..end).map(object).collect())
            .expect("bulk create");
        n = end;
    }
}

fn main() {
    let args = Args::parse();
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let path = base.join("bench-store");
    let _ = std::fs::remove_dir_all(&path);
    let pin = || SecretString::from("bench-pin-1234");
    let mut rows = Vec::new();
    let mut backup_rows: Vec<String> = Vec::new();
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    let mut loaded = 0u64;
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    {
        let store = Store::open_dir(&path).expect("open store");
        store
            .init_token(TokenSpec {
                label: "bench".into(),
                so_pin: pin(),
                user_pin: Some(pin()),
                kdf: KdfParams::INSECURE_FAST,
                pin_policy: PinPolicy::default(),
            })
            .expect("init token");
    }
    for &size in &sizes {
        let t = Instant::now();
        {
            let store = Store::open_dir(&path).expect("open store");
            let token = store.tokens().expect("tokens")[0].id;
            let k = store.login(token, UserKind::User, &pin()).expect("login");
            fill(&store, &k, loaded, size);
        }
        let load = t.elapsed();
        loaded = size;

        // Measure on a reopened store, so lookups go to the SST files, not a warm memtable.
        let t = Instant::now();
        let store = Store::open_dir(&path).expect("reopen");
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        let token = store.tokens().expect("tokens")[0].id;
        let k = store.login(token, UserKind::User, &pin()).expect("login");

        // Durable single creates: each one a synced batch, as C_CreateObject does.
        let t = Instant::now();
        for i in 0..args.durable_creates {
            store
                .create_object(&k, object(10_000_000_000 + size * 1000 + i))
                .expect("create");
        }
        let durable = t.elapsed();

        let mut time = |f: &mut dyn FnMut(u64)| {
            let t = Instant::now();
            for _ in 0..args.samples {
                f(next(size));
            }
            per_op_us(t.elapsed(), args.samples)
        };
        let read_us = time(&mut |n| {
            let id = hsm_types::ObjectId(n + 1);
            store.read_object(&k, id).expect("read");
        });
        let find_label_us = time(&mut |n| {
            let got = store
                .find(
                    &k,
                    &Query {
                        label: Some(format!("bench-key-{n:08}").into_bytes()),
                        ..Default::default()
                    },
                )
                .expect("find");
            assert_eq!(got.len(), 1, "label {n}");
        });
        let find_id_us = time(&mut |n| {
            let got = store
                .find(
                    &k,
                    &Query {
                        id: Some(n.to_be_bytes().to_vec()),
                        ..Default::default()
                    },
                )
                .expect("find");
            assert_eq!(got.len(), 1, "id {n}");
        });
        // Class matches every object; the id criterion runs first and the class is then
        // confirmed by point lookups.
        let find_class_and_id_us = time(&mut |n| {
            let q = Query {
                class: Some(ObjectClass::SECRET_KEY),
                id: Some(n.to_be_bytes().to_vec()),
                ..Default::default()
            };
            assert_eq!(store.find(&k, &q).expect("find").len(), 1);
        });
        drop(k);
        drop(store);
        rows.push(Row {
            size,
            load,
            durable_create_us: per_op_us(durable, args.durable_creates.max(1)),
            read_us,
            find_label_us,
            find_id_us,
            find_class_and_id_us,
            open_ms,
            rss_mib: peak_rss_kib() as f64 / 1024.0,
            disk_mib: dir_size(&path) as f64 / (1024.0 * 1024.0),
        });
        eprintln!("size {size}: done");
        if args.backup_at == Some(size) {
            backup_rows.push(time_backup(&path, &base, size));
        }
    }
    let mut md = String::new();
    md.push_str("| objects | bulk load (objects/s) | durable create (µs) | read (µs) | find by label (µs) | find by CKA_ID (µs) | find class+ID (µs) | reopen (ms) | peak RSS (MiB) | on disk (MiB) |\n");
    md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut prev = 0;
    for r in &rows {
        let added = r.size - prev;
        prev = r.size;
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} |\n",
            r.size,
            added as f64 / r.load.as_secs_f64().max(1e-9),
            r.durable_create_us,
            r.read_us,
            r.find_label_us,
            r.find_id_us,
            r.find_class_and_id_us,
            r.open_ms,
            r.rss_mib,
            r.disk_mib
        ));
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        md.push_str(&format!(
            "\nFind by label at {} objects takes {:.2}× its time at {} objects; find by CKA_ID {:.2}×.\n",
            last.size,
            last.find_label_us / first.find_label_us,
            first.size,
            last.find_id_us / first.find_id_us
        ));
    }
    if !backup_rows.is_empty() {
        md.push_str("\n| objects | archive (MiB) | backup create (s) | verify (s) | restore (s) | create (objects/s) | restore (objects/s) |\n|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &backup_rows {
            md.push_str(r);
        }
    }
    print!("{md}");
    if let Some(out) = args.out {
        let mut f = std::fs::File::create(&out).expect("create output file");
        f.write_all(md.as_bytes()).expect("write output");
    }
}

/// Backup create, verify and restore of the store as it is (its objects plus the durable
/// creates), through the same library calls the CLI makes.
fn time_backup(path: &std::path::Path, base: &std::path::Path, size: u64) -> String {
    use hsm_store::archive::{self, BackupSecret, NoProgress};
    let file = base.join(format!("bench-{size}.fhb"));
    let target = base.join(format!("bench-restore-{size}"));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&target);
    let secret = BackupSecret::Passphrase(SecretString::from("bench-passphrase"));
    let t = Instant::now();
    // The cheapest passphrase cost a backup accepts (tens of milliseconds of the total).
    let m = archive::create(path, &file, &secret, KdfParams::BACKUP_MINIMUM, &NoProgress)
        .expect("backup");
    let create = t.elapsed().as_secs_f64();
    let t = Instant::now();
    archive::verify(&file, &secret, &NoProgress).expect("verify");
    let verify = t.elapsed().as_secs_f64();
    let t = Instant::now();
    archive::restore(&file, &secret, &target, &NoProgress).expect("restore");
    let restore = t.elapsed().as_secs_f64();
    let objects: u64 = m.tokens.iter().map(|t| t.objects).sum();
    let mib = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&target);
    format!(
        "| {objects} | {mib:.0} | {create:.1} | {verify:.1} | {restore:.1} | {:.0} | {:.0} |\n",
        objects as f64 / create,
        objects as f64 / restore
    )
}
