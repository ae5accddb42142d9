//! The Markdown section: machine, command, the table of both modules with ratios and the
//! aws-lc-rs limit, and the issue's targets with met / missed.

use crate::Setup;
use crate::model::{Cell, ModuleResult, Op, RawResult};
use std::fmt::Write;
use std::path::Path;

pub struct Machine {
    pub cpu: String,
    pub nproc: usize,
    pub loadavg: String,
    pub kernel: String,
    pub date: String,
    /// File system of the tokens' directory ("ext4 on /dev/vda").
    pub fs: String,
}

impl Machine {
    pub fn read(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpu,
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg,
            kernel,
            date: today(),
            fs: file_system(dir),
        }
    }
}

/// The mount that holds `dir`, from /proc/mounts (longest matching mount point).
fn file_system(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".into())
}

/// UTC date, YYYY-MM-DD (days-from-civil inverse, H. Hinnant).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Higher is better (ops/s).
    Rate,
    /// Lower is better (ms).
    Ms,
    /// Lower is better (MiB).
    Mib,
}

#[derive(Clone, Copy)]
pub enum Val {
    Num(f64),
    Skipped,
    NotRun,
}

impl Val {
    fn num(self) -> Option<f64> {
        match self {
            Val::Num(v) => Some(v),
            _ => None,
        }
    }
}

pub struct Row {
    pub name: String,
    /// Label in the chart.
    pub short: String,
    pub kind: Kind,
    pub ferro: Val,
    pub soft: Val,
    /// FerroHSM through `ferrohsm-server` (mode "auto"), when the run measured it.
    pub served: Val,
    pub raw: Option<f64>,
}

impl Row {
    /// FerroHSM's advantage: > 1 means FerroHSM is better.
    pub fn advantage(&self) -> Option<f64> {
        let (f, s) = (self.ferro.num()?, self.soft.num()?);
        if f <= 0.0 || s <= 0.0 {
            return None;
        }
        Some(match self.kind {
            Kind::Rate => f / s,
            Kind::Ms | Kind::Mib => s / f,
        })
    }

    pub fn vs_raw(&self) -> Option<f64> {
        Some(self.ferro.num()? / self.raw?)
    }

    /// Through the server against embedded: > 1 means the server is better.
    pub fn served_vs_embedded(&self) -> Option<f64> {
        let (v, e) = (self.served.num()?, self.ferro.num()?);
        if v <= 0.0 || e <= 0.0 {
            return None;
        }
        Some(match self.kind {
            Kind::Rate => v / e,
            Kind::Ms | Kind::Mib => e / v,
        })
    }
}

pub struct Report<'a> {
    pub setup: &'a Setup,
    pub machine: Machine,
    pub command: String,
    pub ferro_module: &'a Path,
    pub soft_module: &'a Path,
    pub ferro: &'a ModuleResult,
    pub soft: &'a ModuleResult,
    pub served: Option<&'a ModuleResult>,
    pub raw: &'a RawResult,
}

fn cell(cells: &[Cell], op: Op, threads: usize) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.op == op && c.threads == threads)
        .map(|c| c.rate)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_val(v: Val) -> String {
    match v {
        Val::Num(x) => fmt_num(x),
        Val::Skipped => "skipped (too slow)".into(),
        Val::NotRun => "not run".into(),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}×"),
        Some(r) if r >= 10.0 => format!("{r:.1}×"),
        Some(r) => format!("{r:.2}×"),
        None => "".into(),
    }
}

fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// Adds one line to the targets table: target, measured, met, reason.
type LineFn<'a> = dyn FnMut(&str, String, Option<bool>, String) + 'a;

/// µs per operation of a rate.
fn us(rate: f64) -> f64 {
    1e6 / rate
}

impl Report<'_> {
    fn size_val(m: &ModuleResult, objects: u64, f: impl Fn(&crate::model::Measured) -> f64) -> Val {
        match m.sizes.iter().find(|s| s.objects == objects) {
            None => Val::NotRun,
            Some(s) => s.measured.as_ref().map_or(Val::Skipped, |x| Val::Num(f(x))),
        }
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = self.rows_of(self.ferro);
        if let Some(served) = self.served {
            for (r, v) in rows.iter_mut().zip(self.rows_of(served)) {
                r.served = v.ferro;
            }
        }
        rows
    }

    /// The rows with `f` in FerroHSM's place.
    fn rows_of(&self, f: &ModuleResult) -> Vec<Row> {
        let s = self.soft;
        let mut rows = vec![Row {
            name: "durable token-object create (C_CreateObject, private AES key), objects/s".into(),
            short: "durable create".into(),
            kind: Kind::Rate,
            ferro: Val::Num(f.create_rate),
            soft: Val::Num(s.create_rate),
            served: Val::NotRun,
            raw: None,
        }];
        let mut sizes: Vec<u64> = f.sizes.iter().chain(&s.sizes).map(|x| x.objects).collect();
        sizes.sort_unstable();
        sizes.dedup();
        type Getter = fn(&crate::model::Measured) -> f64;
        let per_size: [(&str, &str, Kind, Getter); 6] = [
            (
                "C_CreateObject, every create up to {n} objects, objects/s",
                "create, all up to {n}",
                Kind::Rate,
                |m| m.create_rate_total,
            ),
            (
                "C_FindObjects by unique CKA_LABEL, {n} objects, finds/s",
                "find by label, {n}",
                Kind::Rate,
                |m| m.find_label_rate,
            ),
            (
                "C_FindObjects by unique CKA_ID, {n} objects, finds/s",
                "find by CKA_ID, {n}",
                Kind::Rate,
                |m| m.find_id_rate,
            ),
            (
                "cold C_Initialize + C_OpenSession, {n} objects, ms",
                "cold init+open, {n}",
                Kind::Ms,
                |m| m.cold.init_open_ms,
            ),
            (
                "first C_FindObjects after a cold start and C_Login, {n} objects, ms",
                "first find (cold), {n}",
                Kind::Ms,
                |m| m.cold.first_find_ms,
            ),
            (
                "peak RSS of a cold process (init, open, login, one find), {n} objects, MiB",
                "cold process RSS, {n}",
                Kind::Mib,
                |m| m.cold.rss_kib as f64 / 1024.0,
            ),
        ];
        for &n in &sizes {
            for (name, short, kind, get) in per_size {
                rows.push(Row {
                    name: name.replace("{n}", &count(n)),
                    short: short.replace("{n}", &count(n)),
                    kind,
                    ferro: Self::size_val(f, n, get),
                    soft: Self::size_val(s, n, get),
                    served: Val::NotRun,
                    raw: None,
                });
            }
        }
        let login = |m: &ModuleResult| {
            let mut v: Vec<f64> = m
                .sizes
                .iter()
                .filter_map(|s| s.measured.as_ref().map(|x| x.cold.login_ms))
                .chain([m.login_ms])
                .collect();
            crate::model::median(&mut v)
        };
        rows.push(Row {
            name: "C_Login (PIN KDF), median over the cold starts, ms".into(),
            short: "C_Login".into(),
            kind: Kind::Ms,
            ferro: Val::Num(login(f)),
            soft: Val::Num(login(s)),
            served: Val::NotRun,
            raw: None,
        });
        rows.push(Row {
            name: "peak RSS of the whole measuring process, MiB".into(),
            short: "benchmark process RSS".into(),
            kind: Kind::Mib,
            ferro: Val::Num(f.peak_rss_kib as f64 / 1024.0),
            soft: Val::Num(s.peak_rss_kib as f64 / 1024.0),
            served: Val::NotRun,
            raw: None,
        });
        for op in Op::ALL {
            for t in crate::THREADS {
                let unit = if op == Op::RsaKeygen {
                    "keys/s"
                } else {
                    "ops/s"
                };
                let th = if t == 1 { "1 thread" } else { "2 threads" };
                rows.push(Row {
                    name: format!("{}, {th}, {unit}", op.label()),
                    short: format!("{}, {th}", op.short()),
                    kind: Kind::Rate,
                    ferro: cell(&f.crypto, op, t).map_or(Val::NotRun, Val::Num),
                    soft: cell(&s.crypto, op, t).map_or(Val::NotRun, Val::Num),
                    served: Val::NotRun,
                    raw: cell(&self.raw.crypto, op, t),
                });
            }
        }
        rows
    }

    pub fn markdown(&self, rows: &[Row], png: Option<&str>) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let st = self.setup;
        let _ = writeln!(o, "## FerroHSM vs SoftHSM2\n");
        let _ = writeln!(
            o,
            "One command regenerates this section and its chart (`--large` adds 100k objects, \
             `--huge` also FerroHSM alone at 1M):\n\n```sh\ntools/bench/run\n```\n"
        );
        let _ = writeln!(
            o,
            "Run of {} (`{}`; {} s per cell{}). Dev profile: dependencies at -O2, our crates at \
             -O1 — the shared machine builds no release profile.\n",
            m.date,
            self.command,
            st.seconds,
            if st.smoke {
                ", **smoke run: tiny sizes, figures meaningless**"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "Machine: {}, `nproc` {}, Linux {}, tokens on {}; load average {} when the run \
             started (another build may share the cores, so single figures can be off by \
             2-3×; the ratios within one run are what this is for).\n",
            m.cpu, m.nproc, m.kernel, m.fs, m.loadavg
        );
        let _ = writeln!(
            o,
            "- **FerroHSM**: `{}` ({}), a fresh store per run, default Argon2id PIN cost \
             (64 MiB, t = 3).\n- **SoftHSM2**: `{}` ({}), a fresh token directory, \
             `objectstore.backend = file`.\n- Both tokens are made through `C_InitToken`, SO \
             `C_Login` and `C_InitPIN`, and driven by the same `cryptoki` code, each module in \
             its own child process. Objects for the create and find rows are private, \
             sensitive AES-256 token keys with a unique label and `CKA_ID`; the crypto rows \
             use private token keys, one session per thread (fresh GCM IV per call); each \
             crypto cell runs in {} rounds and reports the best (RSA key generation: the \
             mean), since other load only slows a round down. Each cold start is a new process (median of {}). The aws-lc-rs column is the same \
             operation called directly in a separate process: the limit, so the PKCS#11 \
             overhead shows.",
            self.ferro_module.display(),
            self.ferro.library,
            self.soft_module.display(),
            self.soft.library,
            st.rounds,
            st.cold_runs
        );
        for (name, m) in [("FerroHSM", self.ferro), ("SoftHSM2", self.soft)] {
            for n in &m.notes {
                let _ = writeln!(o, "- {name} {n}.");
            }
        }
        o.push('\n');
        let served = self.served.is_some();
        let _ = writeln!(
            o,
            "| row | FerroHSM | SoftHSM2 | FerroHSM / SoftHSM2 ¹ | aws-lc-rs | FerroHSM / aws-lc-rs |{}",
            if served {
                " FerroHSM via server | server / embedded ¹ |"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "|---|---:|---:|---:|---:|---:|{}",
            if served { "---:|---:|" } else { "" }
        );
        for r in rows {
            let extra = if served {
                format!(
                    " {} | {} |",
                    fmt_val(r.served),
                    fmt_ratio(r.served_vs_embedded())
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |{extra}",
                r.name,
                fmt_val(r.ferro),
                fmt_val(r.soft),
                fmt_ratio(r.advantage()),
                r.raw.map(fmt_num).unwrap_or_default(),
                fmt_ratio(r.vs_raw()),
            );
        }
        let _ = writeln!(
            o,
            "\n¹ Above 1 means FerroHSM is better: ops/s ÷ ops/s for rates, SoftHSM2 ÷ FerroHSM \
             for ms and MiB rows. \"skipped (too slow)\": SoftHSM2's population had used its \
             {:.0} s budget.\n",
            st.budget
        );
        if let Some(png) = png {
            let _ = writeln!(
                o,
                "![FerroHSM / SoftHSM2 per row, log scale; right of 1× FerroHSM is better]({png})\n"
            );
        }
        o.push_str(&self.targets(rows));
        o
    }

    fn targets(&self, rows: &[Row]) -> String {
        let (f, s) = (self.ferro, self.soft);
        let raw = &self.raw.crypto;
        let mut o = String::from(
            "### Targets of issue 6\n\n| target | measured | met | what limits it (measured) |\n|---|---|---|---|\n",
        );
        let mut line = |t: &str, measured: String, met: Option<bool>, why: String| {
            let met = match met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let why = if met == "met" { String::new() } else { why };
            let _ = writeln!(o, "| {t} | {measured} | {met} | {why} |");
        };
        let first = f.sizes.first().map(|x| x.objects).unwrap_or(0);
        let rate_at = |m: &ModuleResult, n: u64, label: bool| {
            m.sizes
                .iter()
                .find(|x| x.objects == n)
                .and_then(|x| x.measured.as_ref())
                .map(|x| {
                    if label {
                        x.find_label_rate
                    } else {
                        x.find_id_rate
                    }
                })
        };

        // Find by label at the first size.
        match (rate_at(f, first, true), rate_at(s, first, true)) {
            (Some(a), Some(b)) => line(
                &format!(
                    "find by label ≥ 1000× at 1k objects (here {})",
                    count(first)
                ),
                fmt_ratio(Some(a / b)),
                Some(a / b >= 1000.0),
                format!(
                    "per find: FerroHSM {:.0} µs, SoftHSM2 {:.0} µs",
                    us(a),
                    us(b)
                ),
            ),
            _ => line(
                "find by label ≥ 1000× at 1k objects",
                "—".into(),
                None,
                String::new(),
            ),
        }

        // Find at 1M vs 1k (FerroHSM).
        let largest = f
            .sizes
            .iter()
            .filter(|x| x.measured.is_some())
            .map(|x| x.objects)
            .max()
            .unwrap_or(first);
        if largest >= 1_000_000 && first > 0 {
            let l =
                rate_at(f, largest, true).unwrap_or(0.0) / rate_at(f, first, true).unwrap_or(1.0);
            let i =
                rate_at(f, largest, false).unwrap_or(0.0) / rate_at(f, first, false).unwrap_or(1.0);
            line(
                &format!("FerroHSM find at 1M ≥ 0.5× its rate at {}", count(first)),
                format!("label {l:.2}×, CKA_ID {i:.2}×"),
                Some(l.min(i) >= 0.5),
                format!(
                    "per find at {}: label {:.0} µs, CKA_ID {:.0} µs",
                    count(largest),
                    us(rate_at(f, largest, true).unwrap_or(1.0)),
                    us(rate_at(f, largest, false).unwrap_or(1.0))
                ),
            );
        } else if largest > first {
            let l =
                rate_at(f, largest, true).unwrap_or(0.0) / rate_at(f, first, true).unwrap_or(1.0);
            let i =
                rate_at(f, largest, false).unwrap_or(0.0) / rate_at(f, first, false).unwrap_or(1.0);
            line(
                "FerroHSM find at 1M ≥ 0.5× its rate at 1k",
                format!(
                    "1M needs `--huge`; at {} vs {}: label {l:.2}×, CKA_ID {i:.2}×",
                    count(largest),
                    count(first)
                ),
                None,
                String::new(),
            );
        }

        // Durable create: every create up to the largest count both modules reached (more
        // samples than the 1 s row, which is shown beside it).
        let total = |m: &ModuleResult, n: u64| {
            m.sizes
                .iter()
                .find(|x| x.objects == n)
                .and_then(|x| x.measured.as_ref())
                .map(|x| x.create_rate_total)
        };
        let both = s
            .sizes
            .iter()
            .filter(|x| x.measured.is_some())
            .map(|x| x.objects)
            .filter(|&n| total(f, n).is_some())
            .max();
        let (cf, cs, over) = match both {
            Some(n) => (
                total(f, n).unwrap_or(f.create_rate),
                total(s, n).unwrap_or(s.create_rate),
                format!("all creates up to {} objects", count(n)),
            ),
            None => (f.create_rate, s.create_rate, "the timed create row".into()),
        };
        line(
            "durable create ≥ 20× (FerroHSM syncs every create, SoftHSM2 does not)",
            format!(
                "{} over {over}; {} in the timed row",
                fmt_ratio(Some(cf / cs)),
                fmt_ratio(Some(f.create_rate / s.create_rate))
            ),
            Some(cf / cs >= 20.0),
            format!(
                "per create: FerroHSM {:.0} µs (one synced RocksDB batch), SoftHSM2 {:.0} µs",
                us(cf),
                us(cs)
            ),
        );

        let vs_soft = |op: Op, target: f64, t: &str, line: &mut LineFn<'_>| {
            let (Some(a), Some(b), Some(r)) = (
                cell(&f.crypto, op, 1),
                cell(&s.crypto, op, 1),
                cell(raw, op, 1),
            ) else {
                return;
            };
            line(
                t,
                fmt_ratio(Some(a / b)),
                Some(a / b >= target),
                format!(
                    "per op: FerroHSM {:.0} µs, SoftHSM2 {:.0} µs, aws-lc-rs alone {:.0} µs — aws-lc-rs itself is {} SoftHSM2",
                    us(a),
                    us(b),
                    us(r),
                    fmt_ratio(Some(r / b))
                ),
            );
        };
        vs_soft(
            Op::EcP256Sign,
            2.0,
            "ECDSA P-256 sign ≥ 2× (1 thread)",
            &mut line,
        );
        vs_soft(
            Op::RsaPkcs1Sign,
            1.8,
            "RSA-2048 PKCS#1 v1.5 sign ≥ 1.8× (1 thread)",
            &mut line,
        );
        vs_soft(
            Op::RsaPssSign,
            1.8,
            "RSA-2048 PSS sign ≥ 1.8× (1 thread)",
            &mut line,
        );
        vs_soft(
            Op::AesGcm4k,
            5.0,
            "AES-256-GCM 4 KiB ≥ 5× (1 thread)",
            &mut line,
        );

        // Scaling on sign rows.
        let mut scal = Vec::new();
        let mut worst = f64::INFINITY;
        let mut why = Vec::new();
        for op in Op::ALL.into_iter().filter(|o| o.is_sign()) {
            if let (Some(a1), Some(a2)) = (cell(&f.crypto, op, 1), cell(&f.crypto, op, 2)) {
                let r = a2 / a1;
                worst = worst.min(r);
                scal.push(format!("{} {r:.2}×", op.short()));
                if let (Some(r1), Some(r2)) = (cell(raw, op, 1), cell(raw, op, 2)) {
                    why.push(format!("{} {:.2}×", op.short(), r2 / r1));
                }
            }
        }
        if !scal.is_empty() {
            line(
                "FerroHSM 2 threads ≥ 1.8× one thread on sign",
                scal.join(", "),
                Some(worst >= 1.8),
                format!(
                    "aws-lc-rs alone scales {} on {} cores with load average {} at the start: \
                     the other core was not free",
                    why.join(", "),
                    self.machine.nproc,
                    self.machine.loadavg
                ),
            );
        }

        // Crypto rows against aws-lc-rs.
        let crypto: Vec<&Row> = rows.iter().filter(|r| r.raw.is_some()).collect();
        let missed: Vec<String> = crypto
            .iter()
            .filter(|r| r.vs_raw().is_some_and(|x| x < 0.8))
            .map(|r| {
                let fr = r.ferro.num().unwrap_or(1.0);
                let sr = r.soft.num().unwrap_or(1.0);
                let rr = r.raw.unwrap_or(1.0);
                format!(
                    "{} {} (+{:.1} µs per op over aws-lc-rs; SoftHSM2 +{:.1} µs)",
                    r.short,
                    fmt_ratio(r.vs_raw()),
                    us(fr) - us(rr),
                    us(sr) - us(rr)
                )
            })
            .collect();
        line(
            "crypto rows ≥ 0.8× the raw aws-lc-rs limit",
            format!(
                "{} of {} rows at or above 0.8×",
                crypto.len() - missed.len(),
                crypto.len()
            ),
            Some(missed.is_empty()),
            format!("below: {}", missed.join("; ")),
        );

        // RSS at 1M.
        let rss_at = |n: u64| {
            f.sizes
                .iter()
                .find(|x| x.objects == n)
                .and_then(|x| x.measured.as_ref())
                .map(|x| x.cold.clone())
        };
        if let Some(c) = rss_at(1_000_000) {
            let mib = c.rss_kib as f64 / 1024.0;
            line(
                "RSS with 1M objects ≤ 64 MiB",
                format!(
                    "cold process {mib:.0} MiB; whole benchmark process {:.0} MiB",
                    f.peak_rss_kib as f64 / 1024.0
                ),
                Some(mib <= 64.0),
                format!(
                    "{:.0} MiB before C_Login; the Argon2id PIN KDF (64 MiB by default) adds the rest",
                    c.rss_before_login_kib as f64 / 1024.0
                ),
            );
        } else if let Some(c) = rss_at(largest) {
            line(
                "RSS with 1M objects ≤ 64 MiB",
                format!(
                    "1M needs `--huge`; cold process at {}: {:.0} MiB ({:.0} MiB before C_Login)",
                    count(largest),
                    c.rss_kib as f64 / 1024.0,
                    c.rss_before_login_kib as f64 / 1024.0
                ),
                None,
                String::new(),
            );
        }
        o.push('\n');
        o
    }
}
