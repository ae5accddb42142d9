//! The Markdown section: machine, profile, artefact sizes, the table of every module with
//! ratios and the aws-lc-rs limit, the through-the-server processes table, and (in
//! targets.rs) the issues' targets with met / missed.

use crate::model::{Cell, ModuleResult, Op, ProcOp, RawResult, Scope};
use crate::{Outcome, Setup};
use std::fmt::Write;
use std::path::{Path, PathBuf};

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
    pub fn num(self) -> Option<f64> {
        match self {
            Val::Num(v) => Some(v),
            _ => None,
        }
    }
}

/// `a` against `b`: > 1 means `a` is better (rates: a ÷ b; ms and MiB: b ÷ a).
pub fn better(kind: Kind, a: Val, b: Val) -> Option<f64> {
    let (a, b) = (a.num()?, b.num()?);
    if a <= 0.0 || b <= 0.0 {
        return None;
    }
    Some(match kind {
        Kind::Rate => a / b,
        Kind::Ms | Kind::Mib => b / a,
    })
}

pub struct Row {
    pub name: String,
    /// Label in the chart.
    pub short: String,
    pub kind: Kind,
    pub ferro: Val,
    pub soft: Val,
    pub kryo: Val,
    /// FerroHSM through `ferrohsm-server` (mode "auto"), when the run measured it.
    pub served: Val,
    pub raw: Option<f64>,
    /// A crypto row: (operation, key scope, threads).
    pub crypto: Option<(Op, Option<Scope>, usize)>,
}

impl Row {
    fn new(name: String, short: String, kind: Kind) -> Row {
        Row {
            name,
            short,
            kind,
            ferro: Val::NotRun,
            soft: Val::NotRun,
            kryo: Val::NotRun,
            served: Val::NotRun,
            raw: None,
            crypto: None,
        }
    }

    /// FerroHSM's advantage over SoftHSM2: > 1 means FerroHSM is better.
    pub fn advantage(&self) -> Option<f64> {
        better(self.kind, self.ferro, self.soft)
    }

    /// FerroHSM's advantage over Kryoptic.
    pub fn advantage_kryo(&self) -> Option<f64> {
        better(self.kind, self.ferro, self.kryo)
    }

    pub fn vs_raw(&self) -> Option<f64> {
        Some(self.ferro.num()? / self.raw?)
    }

    /// Through the server against embedded: > 1 means the server is better.
    pub fn served_vs_embedded(&self) -> Option<f64> {
        better(self.kind, self.served, self.ferro)
    }
}

pub struct Report<'a> {
    pub setup: &'a Setup,
    pub machine: Machine,
    pub command: String,
    pub ferro_module: &'a Path,
    pub soft_module: &'a Path,
    pub kryo_module: Option<&'a Path>,
    /// Kryoptic's version and feature set, as tools/bench/kryoptic built it.
    pub kryo_build: Option<&'a str>,
    pub ferro: &'a ModuleResult,
    pub soft: &'a ModuleResult,
    pub kryo: &'a Outcome,
    pub served: Option<&'a ModuleResult>,
    pub raw: &'a RawResult,
    /// FerroHSM at each `[audit] level` (empty: not measured).
    pub audited: &'a [(&'static str, crate::Outcome)],
}

/// The durable-create row's label.
pub const CREATE_LABEL: &str =
    "durable token-object create (C_CreateObject, private AES key), objects/s";

/// "1 thread", "2 threads".
pub fn threads_label(t: usize) -> String {
    if t == 1 {
        "1 thread".into()
    } else {
        format!("{t} threads")
    }
}

pub fn cell(cells: &[Cell], op: Op, scope: Option<Scope>, threads: usize) -> Option<f64> {
    cells
        .iter()
        .find(|c| c.op == op && c.threads == threads && (c.scope == scope || c.scope.is_none()))
        .map(|c| c.rate)
}

pub fn fmt_num(v: f64) -> String {
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

pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}×"),
        Some(r) if r >= 10.0 => format!("{r:.1}×"),
        Some(r) => format!("{r:.2}×"),
        None => "".into(),
    }
}

pub fn count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Size of a shipped file, and whether it carries DWARF debug information.
pub struct Artefact {
    pub path: PathBuf,
    pub bytes: u64,
    /// Bytes of `.debug_*` sections; None when the ELF headers could not be read.
    pub debug_bytes: Option<u64>,
}

/// libferrohsm_pkcs11.so and the ferrohsm-server and ferrohsm binaries beside it.
pub fn artefacts(module: &Path) -> Vec<Artefact> {
    let dir = module.parent().unwrap_or(Path::new("."));
    [
        module.to_path_buf(),
        dir.join("ferrohsm-server"),
        dir.join("ferrohsm"),
    ]
    .into_iter()
    .filter_map(|path| {
        let bytes = std::fs::metadata(&path).ok()?.len();
        let debug_bytes = elf_debug_bytes(&path);
        Some(Artefact {
            path,
            bytes,
            debug_bytes,
        })
    })
    .collect()
}

/// The summed size of an ELF64 (little-endian) file's `.debug_*` sections.
fn elf_debug_bytes(path: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(&eh, 0x28),
        u16_at(&eh, 0x3a),
        u16_at(&eh, 0x3c),
        u16_at(&eh, 0x3e),
    );
    if shentsize < 64 || shnum == 0 || shstrndx >= shnum {
        return None;
    }
    let mut sh = vec![0u8; (shentsize * shnum) as usize];
    f.seek(SeekFrom::Start(shoff)).ok()?;
    f.read_exact(&mut sh).ok()?;
    let entry = |i: u64| &sh[(i * shentsize) as usize..((i + 1) * shentsize) as usize];
    let strtab = entry(shstrndx);
    let (str_off, str_size) = (u64_at(strtab, 0x18), u64_at(strtab, 0x20));
    let mut names = vec![0u8; usize::try_from(str_size).ok()?.min(1 << 20)];
    f.seek(SeekFrom::Start(str_off)).ok()?;
    f.read_exact(&mut names).ok()?;
    let mut total = 0;
    for i in 0..shnum {
        let e = entry(i);
        let name_off = u32_at(e, 0) as usize;
        let name = names.get(name_off..).unwrap_or_default();
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        if name[..end].starts_with(b".debug_") {
            total += u64_at(e, 0x20);
        }
    }
    Some(total)
}

impl Report<'_> {
    fn size_val(m: &ModuleResult, objects: u64, f: impl Fn(&crate::model::Measured) -> f64) -> Val {
        match m.sizes.iter().find(|s| s.objects == objects) {
            None => Val::NotRun,
            Some(s) => s.measured.as_ref().map_or(Val::Skipped, |x| Val::Num(f(x))),
        }
    }

    pub fn kryo(&self) -> Option<&ModuleResult> {
        self.kryo.measured()
    }

    pub fn rows(&self) -> Vec<Row> {
        let mut rows = self.rows_of(self.ferro);
        for (r, v) in rows.iter_mut().zip(self.rows_of(self.soft)) {
            r.soft = v.ferro;
        }
        if let Some(k) = self.kryo() {
            for (r, v) in rows.iter_mut().zip(self.rows_of(k)) {
                r.kryo = v.ferro;
            }
        }
        if let Some(served) = self.served {
            for (r, v) in rows.iter_mut().zip(self.rows_of(served)) {
                r.served = v.ferro;
            }
        }
        rows
    }

    /// The object counts any module measured.
    fn all_sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = [Some(self.ferro), Some(self.soft), self.kryo()]
            .into_iter()
            .flatten()
            .flat_map(|m| m.sizes.iter().map(|x| x.objects))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    /// The rows with `f`'s figures in FerroHSM's place (the others are filled by `rows`).
    fn rows_of(&self, f: &ModuleResult) -> Vec<Row> {
        let mut rows = vec![Row {
            ferro: Val::Num(f.create_rate),
            ..Row::new(CREATE_LABEL.into(), "durable create".into(), Kind::Rate)
        }];
        type Getter = fn(&crate::model::Measured) -> f64;
        let per_size: [(&str, &str, Kind, Getter); 9] = [
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
                "cold start, open: C_Initialize + C_OpenSession, {n} objects, ms",
                "cold open, {n}",
                Kind::Ms,
                |m| m.cold.init_open_ms,
            ),
            (
                "cold start, login: C_Login (the PIN KDF), {n} objects, ms",
                "cold C_Login, {n}",
                Kind::Ms,
                |m| m.cold.login_ms,
            ),
            (
                "cold start, first find: C_FindObjects after C_Login, {n} objects, ms",
                "cold first find, {n}",
                Kind::Ms,
                |m| m.cold.first_find_ms,
            ),
            (
                "cold process, peak RSS (VmHWM) before C_Login, {n} objects, MiB",
                "cold RSS before login, {n}",
                Kind::Mib,
                |m| mib(m.cold.rss_before_login_kib),
            ),
            (
                "cold process, RSS (VmRSS) right after C_Login, {n} objects, MiB",
                "cold RSS after login, {n}",
                Kind::Mib,
                |m| mib(m.cold.rss_after_login_kib),
            ),
            (
                "cold process, peak RSS (VmHWM) at the end (open, login, one find), {n} objects, MiB",
                "cold peak RSS, {n}",
                Kind::Mib,
                |m| mib(m.cold.rss_kib),
            ),
        ];
        for n in self.all_sizes() {
            for (name, short, kind, get) in per_size {
                rows.push(Row {
                    ferro: Self::size_val(f, n, get),
                    ..Row::new(
                        name.replace("{n}", &count(n)),
                        short.replace("{n}", &count(n)),
                        kind,
                    )
                });
            }
        }
        rows.push(Row {
            ferro: Val::Num(mib(f.peak_rss_kib)),
            ..Row::new(
                "peak RSS of the whole measuring process, MiB".into(),
                "benchmark process RSS".into(),
                Kind::Mib,
            )
        });
        for op in Op::ALL {
            for &scope in op.scopes() {
                for t in crate::THREADS {
                    let unit = if op == Op::RsaKeygen {
                        "keys/s"
                    } else {
                        "ops/s"
                    };
                    let th = threads_label(t);
                    let sc = scope.map_or(String::new(), |s| format!(", {}", s.label()));
                    rows.push(Row {
                        ferro: cell(&f.crypto, op, scope, t).map_or(Val::NotRun, Val::Num),
                        raw: cell(&self.raw.crypto, op, None, t),
                        crypto: Some((op, scope, t)),
                        ..Row::new(
                            format!("{}{sc}, {th}, {unit}", op.label()),
                            format!("{}{sc}, {th}", op.short()),
                            Kind::Rate,
                        )
                    });
                }
            }
        }
        rows
    }

    fn profile(&self) -> &'static str {
        if cfg!(debug_assertions) {
            "**dev profile** (dependencies at -O2, our crates at -O1; not what users run)"
        } else {
            "**release profile**"
        }
    }

    pub fn markdown(&self, rows: &[Row], png: Option<&str>) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let st = self.setup;
        let _ = writeln!(o, "## FerroHSM vs SoftHSM2 and Kryoptic\n");
        let _ = writeln!(
            o,
            "One command regenerates this section and its chart (`--large` adds 100k objects, \
             `--huge` also FerroHSM alone at 1M; `--no-kryoptic` leaves Kryoptic out):\n\n\
             ```sh\ntools/bench/run\n```\n"
        );
        let _ = writeln!(
            o,
            "Run of {} (`{}`; {} s per cell{}). Measured: the {} — the profile this benchmark \
             binary was built with; `tools/bench/run` builds the module, the server and the \
             benchmark together with `cargo build --release`.\n",
            m.date,
            self.command,
            st.seconds,
            if st.smoke {
                ", **smoke run: tiny sizes, figures meaningless**"
            } else {
                ""
            },
            self.profile()
        );
        let _ = writeln!(
            o,
            "Machine: {}, `nproc` {}, Linux {}, tokens on {}; load average {} when the run \
             started (another build may share the cores, so single figures can be off by \
             2-3×; the ratios within one run are what this is for).\n",
            m.cpu, m.nproc, m.kernel, m.fs, m.loadavg
        );
        self.artefacts(&mut o);
        self.modules(&mut o);
        o.push('\n');
        self.table(&mut o, rows);
        if let Some(png) = png {
            let _ = writeln!(
                o,
                "![FerroHSM / SoftHSM2 and FerroHSM / Kryoptic per row, log scale; right of 1× \
                 FerroHSM is better]({png})\n"
            );
        }
        self.procs_table(&mut o);
        if !self.audited.is_empty() {
            o.push_str(&crate::audit::section(self.audited));
        }
        o.push_str(&crate::targets::targets(self, rows));
        o
    }

    fn artefacts(&self, o: &mut String) {
        let arts = artefacts(self.ferro_module);
        if arts.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "Shipped artefacts this run used ({} directory `{}`):\n\n| file | MiB | debug information |\n|---|---:|---|",
            if cfg!(debug_assertions) {
                "dev"
            } else {
                "release"
            },
            self.ferro_module
                .parent()
                .unwrap_or(Path::new("."))
                .display()
        );
        for a in arts {
            let name = a.path.file_name().unwrap_or_default().to_string_lossy();
            let debug = match a.debug_bytes {
                Some(0) => "none".to_string(),
                Some(b) => format!("{:.1} MiB of `.debug_*` sections", b as f64 / 1048576.0),
                None => "unknown (not a readable ELF64 file)".to_string(),
            };
            let _ = writeln!(
                o,
                "| `{name}` | {:.1} | {debug} |",
                a.bytes as f64 / 1048576.0
            );
        }
        o.push('\n');
    }

    fn modules(&self, o: &mut String) {
        let st = self.setup;
        let _ = writeln!(
            o,
            "- **FerroHSM**: `{}` ({}), a fresh store per run, default Argon2id PIN cost \
             (64 MiB, t = 3); embedded (mode \"embedded\"){}.",
            self.ferro_module.display(),
            self.ferro.library,
            if self.served.is_some() {
                ", and through `ferrohsm-server` (mode \"auto\", its own store; the server \
                 starts on demand) in the \"via server\" column"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "- **SoftHSM2**: `{}` ({}), a fresh token directory, `objectstore.backend = file`.",
            self.soft_module.display(),
            self.soft.library
        );
        match self.kryo {
            Outcome::Measured(k) => {
                let _ = writeln!(
                    o,
                    "- **Kryoptic**: `{}` ({}), built from crates.io by `tools/bench/kryoptic` \
                     against the system OpenSSL ({}); a fresh SQLite token (`dbtype = \"sqlite\"`) \
                     per run.",
                    self.kryo_module
                        .map(Path::display)
                        .map_or(String::new(), |d| d.to_string()),
                    k.library,
                    self.kryo_build.unwrap_or("build not described")
                );
            }
            Outcome::NotRun(why) => {
                let _ = writeln!(o, "- **Kryoptic**: not run: {why}.");
            }
        }
        let _ = writeln!(
            o,
            "- Every token is made through `C_InitToken`, SO `C_Login` and `C_InitPIN`, and \
             driven by the same `cryptoki` code, each module in its own child process. Objects \
             for the create and find rows are private, sensitive AES-256 token keys with a \
             unique label and `CKA_ID`. Each crypto row that uses a key runs twice: with \
             private token keys (`CKA_TOKEN` true) and with the same keys as session objects \
             (`CKA_TOKEN` false, made in the measuring process's long-lived main session); one \
             session per thread, a fresh GCM IV per call. Each crypto cell runs in {} rounds \
             and reports the best (RSA key generation: the mean), since other load only slows \
             a round down. Each cold start is a new process (median of {}). The aws-lc-rs \
             column is the same operation called directly in a separate process (it has no \
             key scope: the same figure stands beside both rows): the limit, so the PKCS#11 \
             overhead shows.",
            st.rounds, st.cold_runs
        );
        let named = [
            ("FerroHSM", Some(self.ferro)),
            ("SoftHSM2", Some(self.soft)),
            ("Kryoptic", self.kryo()),
        ];
        for (name, m) in named {
            for n in m.map(|m| m.notes.as_slice()).unwrap_or_default() {
                let _ = writeln!(o, "- {name} {n}.");
            }
        }
    }

    fn table(&self, o: &mut String, rows: &[Row]) {
        let served = self.served.is_some();
        let kryo_note = if self.kryo().is_none() { " ²" } else { "" };
        let _ = writeln!(
            o,
            "| row | FerroHSM | SoftHSM2 | FerroHSM / SoftHSM2 ¹ | Kryoptic{kryo_note} | FerroHSM / Kryoptic ¹ | aws-lc-rs | FerroHSM / aws-lc-rs |{}",
            if served {
                " FerroHSM via server | server / embedded ¹ |"
            } else {
                ""
            }
        );
        let _ = writeln!(
            o,
            "|---|---:|---:|---:|---:|---:|---:|---:|{}",
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
                "| {} | {} | {} | {} | {} | {} | {} | {} |{extra}",
                r.name,
                fmt_val(r.ferro),
                fmt_val(r.soft),
                fmt_ratio(r.advantage()),
                fmt_val(r.kryo),
                fmt_ratio(r.advantage_kryo()),
                r.raw.map(fmt_num).unwrap_or_default(),
                fmt_ratio(r.vs_raw()),
            );
        }
        let _ = writeln!(
            o,
            "\n¹ Above 1 means FerroHSM is better: ops/s ÷ ops/s for rates, the other ÷ FerroHSM \
             for ms and MiB rows. \"skipped (too slow)\": SoftHSM2's or Kryoptic's population \
             had used its {:.0} s budget.",
            self.setup.budget
        );
        if let Outcome::NotRun(why) = self.kryo {
            let _ = writeln!(o, "\n² Kryoptic not run: {why}.");
        }
        o.push('\n');
    }

    /// The multi-process cell of `op` at `procs` processes, through the server.
    pub fn procs_rate(&self, op: ProcOp, procs: usize) -> Option<f64> {
        self.served?
            .procs
            .iter()
            .find(|c| c.op == op && c.procs == procs)
            .map(|c| c.rate)
    }

    /// FerroHSM embedded, 1 thread, for the row a multi-process row repeats (find: at the
    /// object count the processes ran at).
    pub fn embedded_for(&self, op: ProcOp) -> Option<f64> {
        let f = self.ferro;
        let objects = self.served.map_or(0, |s| s.procs_objects);
        let first = f
            .sizes
            .iter()
            .find(|s| s.objects == objects)
            .and_then(|s| s.measured.as_ref());
        match op {
            ProcOp::EcP256Sign => cell(&f.crypto, Op::EcP256Sign, Some(Scope::Token), 1),
            ProcOp::AesGcm4k => cell(&f.crypto, Op::AesGcm4k, Some(Scope::Token), 1),
            ProcOp::FindLabel => first.map(|m| m.find_label_rate),
            ProcOp::Create => Some(f.create_rate),
        }
    }

    fn procs_table(&self, o: &mut String) {
        let n = self.setup.procs;
        if self.served.is_none_or(|s| s.procs.is_empty()) {
            return;
        }
        let objects = self.served.map_or(0, |s| s.procs_objects);
        let _ = writeln!(
            o,
            "### Through the server: 1 process and {n} processes\n\nFerroHSM through one \
             `ferrohsm-server` (mode \"auto\"), the token holding {} objects; each process \
             loads the module, logs in and runs one thread; the {n} start together and their \
             rates are summed (best of {} rounds). Embedded: the same row in the main table, \
             one thread.\n\n| row | embedded, 1 thread | via server, 1 process | via server, \
             {n} processes | {n} ÷ 1 |\n|---|---:|---:|---:|---:|",
            count(objects),
            self.setup.rounds
        );
        for op in ProcOp::ALL {
            let one = self.procs_rate(op, 1);
            let many = self.procs_rate(op, n);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                op.label(),
                self.embedded_for(op).map(fmt_num).unwrap_or_default(),
                one.map(fmt_num).unwrap_or_default(),
                many.map(fmt_num).unwrap_or_default(),
                fmt_ratio(one.zip(many).map(|(a, b)| b / a)),
            );
        }
        o.push('\n');
    }
}
