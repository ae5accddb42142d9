//! FerroHSM vs SoftHSM2 and Kryoptic through one PKCS#11 client (the `cryptoki` crate).
//! Not a test: it measures, in one run, durable object creation, C_FindObjects by label
//! and by CKA_ID at growing object counts, cold C_Initialize + C_OpenSession, C_Login and
//! first find, the crypto rows with token keys and session keys and 1 and 2 threads, and
//! RSS; FerroHSM also through its server, in 1 and N processes; and the same crypto called
//! directly through aws-lc-rs, so the PKCS#11 overhead shows.
//!
//! Each module runs in its own child process (this binary re-executed with the hidden
//! `measure` subcommand), so PKCS#11 global state is clean and each peak RSS is its own;
//! cold starts are further children (`cold`), the N processes are `proc-worker` children,
//! and aws-lc-rs runs in a child (`raw`).
//!
//! `tools/bench/run` regenerates the "FerroHSM vs SoftHSM2" section of docs/benchmarks.md.
#![forbid(unsafe_code)]

mod audit;
mod chart;
mod model;
mod p11;
mod procs;
mod raw;
mod report;
mod targets;

use clap::{Args, Parser, Subcommand};
use model::{ModuleResult, RawResult, Res};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Parser)]
#[command(
    name = "ferrohsm-bench",
    about = "FerroHSM vs SoftHSM2 and Kryoptic through one PKCS#11 client",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Seconds per measured cell (each crypto cell, each find row, the create row).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Also measure at 100k objects.
    #[arg(long)]
    large: bool,
    /// 100k objects, and FerroHSM alone at 1M (long: about one durable create per object).
    #[arg(long)]
    huge: bool,
    /// Every row at a tiny size and duration (CI: keeps the benchmark working; still calls
    /// both modules).
    #[arg(long)]
    smoke: bool,
    /// Object counts, comma separated (overrides the defaults 1000,10000).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<u64>>,
    /// SoftHSM2's population budget in seconds: larger counts are reported "skipped (too
    /// slow)" once populating the token has taken this long.
    #[arg(long, default_value_t = 120.0)]
    budget: f64,
    /// Cold-start processes per object count (the median is reported).
    #[arg(long, default_value_t = 3)]
    cold_runs: usize,
    /// FerroHSM's module (default: libferrohsm_pkcs11.so next to this binary).
    #[arg(long)]
    ferrohsm: Option<PathBuf>,
    /// Also measure FerroHSM through the ferrohsm-server beside the module (mode "auto"),
    /// in a column beside the embedded one.
    #[arg(long)]
    with_server: bool,
    /// Processes in the "through the server, N processes" rows (with --with-server).
    #[arg(long, default_value_t = 4)]
    procs: usize,
    /// SoftHSM2's module.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    softhsm: PathBuf,
    /// Kryoptic's module (tools/bench/kryoptic builds it); without it the Kryoptic column
    /// says "not run".
    #[arg(long)]
    kryoptic: Option<PathBuf>,
    /// How Kryoptic was built (version, features), for the report.
    #[arg(long)]
    kryoptic_build: Option<String>,
    /// Why there is no Kryoptic module (shown in its column instead of figures).
    #[arg(long, conflicts_with = "kryoptic")]
    kryoptic_unavailable: Option<String>,
    /// Write the Markdown section here too (stdout always gets it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the bar chart of the ratios here (PNG).
    #[arg(long)]
    png: Option<PathBuf>,
    /// How the Markdown links the chart (default: the PNG's file name).
    #[arg(long)]
    png_link: Option<String>,
    /// TrueType font for the chart's text (Debian: fonts-dejavu-core); without it the
    /// chart is drawn without text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
    /// Rounds per crypto cell, each of --seconds / rounds; the best round is reported
    /// (RSA key generation: the mean).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Only these crypto rows (e.g. to profile one with perf); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    ops: Option<Vec<model::Op>>,
    /// A Markdown file appended after the targets (hand-measured explanations).
    #[arg(long)]
    notes: Option<PathBuf>,
    /// Directory for both tokens' files (default: a new temporary directory, removed at the
    /// end). Durable-create figures depend on its file system.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The command shown in the report (default: this binary's arguments).
    #[arg(long, hide = true)]
    command: Option<String>,
    /// Leave out the audit-cost section (FerroHSM at each `[audit] level`).
    #[arg(long)]
    no_audit_cost: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// One module's PKCS#11 rows (a child process; JSON on stdout).
    #[command(hide = true)]
    Measure {
        #[arg(long)]
        name: String,
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        seconds: f64,
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        sizes: Vec<u64>,
        #[arg(long)]
        budget: Option<f64>,
        #[arg(long)]
        cold_runs: usize,
        #[arg(long, value_delimiter = ',')]
        threads: Vec<usize>,
        /// The crypto rows (none: only the object rows).
        #[arg(long, value_enum, value_delimiter = ',')]
        ops: Vec<model::Op>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Also 1 process against this many (through the server).
        #[arg(long, default_value_t = 0)]
        procs: usize,
    },
    /// One of the N processes (a child of `measure`; driven through stdin).
    #[command(hide = true)]
    ProcWorker {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        objects: u64,
        #[arg(long)]
        index: u64,
    },
    /// One cold start (a child process; JSON on stdout).
    #[command(hide = true)]
    Cold {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        objects: u64,
    },
    /// The crypto rows through aws-lc-rs directly (a child process; JSON on stdout).
    #[command(hide = true)]
    Raw {
        #[arg(long)]
        seconds: f64,
        #[arg(long, value_delimiter = ',')]
        threads: Vec<usize>,
        #[arg(long, value_enum, value_delimiter = ',')]
        ops: Vec<model::Op>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

const THREADS: [usize; 2] = [1, 2];

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Some(Cmd::Measure {
            name,
            module,
            seconds,
            sizes,
            budget,
            cold_runs,
            threads,
            ops,
            rounds,
            procs,
        }) => {
            let plan = p11::Plan {
                seconds,
                sizes,
                budget,
                cold_runs,
                threads,
                ops,
                rounds,
                procs,
            };
            p11::measure(&name, &module, &plan).and_then(|r| print_json(&r))
        }
        Some(Cmd::ProcWorker {
            module,
            objects,
            index,
        }) => procs::worker(&module, objects, index),
        Some(Cmd::Cold { module, objects }) => {
            p11::cold(&module, objects).and_then(|r| print_json(&r))
        }
        Some(Cmd::Raw {
            seconds,
            threads,
            ops,
            rounds,
        }) => raw::measure(seconds, rounds, &threads, &ops)
            .and_then(|crypto| print_json(&RawResult { crypto })),
        None => run(cli.run),
    };
    if let Err(e) = r {
        eprintln!("ferrohsm-bench: {e}");
        std::process::exit(1);
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Res<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// What the parent decided to run.
#[derive(Clone)]
pub struct Setup {
    pub seconds: f64,
    pub ferro_sizes: Vec<u64>,
    pub soft_sizes: Vec<u64>,
    pub budget: f64,
    pub cold_runs: usize,
    pub smoke: bool,
    pub ops: String,
    pub rounds: usize,
    /// Processes of the "through the server" rows (0: not measured).
    pub procs: usize,
}

/// The crypto rows to run, as the children's `--ops` argument.
fn ops_arg(a: &RunArgs) -> String {
    let ops = a.ops.clone().unwrap_or(model::Op::ALL.to_vec());
    ops.iter()
        .map(|o| o.arg_name())
        .collect::<Vec<_>>()
        .join(",")
}

fn setup(a: &RunArgs) -> Setup {
    if a.smoke {
        let sizes = a.sizes.clone().unwrap_or(vec![20, 50]);
        return Setup {
            seconds: a.seconds.min(0.02),
            ferro_sizes: sizes.clone(),
            soft_sizes: sizes,
            budget: a.budget.min(20.0),
            cold_runs: 1,
            smoke: true,
            ops: ops_arg(a),
            rounds: 1,
            procs: if a.with_server { a.procs } else { 0 },
        };
    }
    let mut sizes = a.sizes.clone().unwrap_or(vec![1000, 10000]);
    if (a.large || a.huge) && a.sizes.is_none() {
        sizes.push(100_000);
    }
    let mut ferro_sizes = sizes.clone();
    if a.huge && a.sizes.is_none() {
        ferro_sizes.push(1_000_000);
    }
    Setup {
        seconds: a.seconds,
        ferro_sizes,
        soft_sizes: sizes,
        budget: a.budget,
        cold_runs: a.cold_runs,
        smoke: false,
        ops: ops_arg(a),
        rounds: a.rounds,
        procs: if a.with_server { a.procs } else { 0 },
    }
}

/// A module that was measured, or why it was not.
pub enum Outcome {
    Measured(ModuleResult),
    NotRun(String),
}

impl Outcome {
    pub fn measured(&self) -> Option<&ModuleResult> {
        match self {
            Outcome::Measured(m) => Some(m),
            Outcome::NotRun(_) => None,
        }
    }
}

fn run(a: RunArgs) -> Res<()> {
    let s = setup(&a);
    let ferro_module = match &a.ferrohsm {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("libferrohsm_pkcs11.so"),
    };
    for (m, hint) in [
        (&ferro_module, "build it with `cargo build -p hsm-pkcs11`"),
        (&a.softhsm, "install Debian's softhsm2"),
    ] {
        if !m.exists() {
            return Err(format!("{} is missing: {hint}", m.display()).into());
        }
    }
    let work = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new()
                .prefix("ferrohsm-bench")
                .tempdir_in(d)?
        }
        None => tempfile::Builder::new()
            .prefix("ferrohsm-bench")
            .tempdir()?,
    };
    let machine = report::Machine::read(work.path());

    // FerroHSM: a fresh store, the default Argon2 cost (no [kdf] section); in-process,
    // and with --with-server through ferrohsm-server.
    let ferro_store = |name: &str, mode: &str, extra: &str| -> Res<PathBuf> {
        let fdir = work.path().join(format!("ferrohsm-{name}"));
        std::fs::create_dir_all(&fdir)?;
        let fconf = fdir.join("ferrohsm.toml");
        std::fs::write(
            &fconf,
            format!(
                "mode = {mode:?}\nstore = {:?}\nlog_level = \"warn\"\n[server]\nidle_exit_secs = 2\n{extra}",
                fdir.join("store").display().to_string()
            ),
        )?;
        Ok(fconf)
    };
    let fconf = ferro_store("embedded", "embedded", "")?;
    let ferro = measure_child(
        "FerroHSM",
        &ferro_module,
        ("FERROHSM_CONF", &fconf),
        &s,
        &s.ferro_sizes,
        None,
        0,
    )?;
    let served = if a.with_server {
        let vconf = ferro_store("auto", "auto", "")?;
        Some(measure_child(
            "FerroHSM via server",
            &ferro_module,
            ("FERROHSM_CONF", &vconf),
            &s,
            &s.ferro_sizes,
            None,
            s.procs,
        )?)
    } else {
        None
    };

    // The audit log's cost: FerroHSM embedded at each level, on fewer rows. The levels
    // run four times, in one order and then the other, each time on a fresh store, and
    // each figure is the best of its runs: the disk's sync latency wanders by 2× from one
    // second to the next here, and a later child pays for the write-back of the earlier
    // ones' files, neither of which is a cost of its level.
    let mut audited: Vec<(&'static str, Outcome)> = Vec::new();
    if !a.no_audit_cost {
        let mut plan = s.clone();
        plan.ops = audit::ops_arg(&s);
        plan.cold_runs = 1;
        // Durable creates wait on the disk, whose pace wanders: twice the time per cell.
        plan.seconds = s.seconds * 2.0;
        let sizes = [s.ferro_sizes.first().copied().unwrap_or(1000).min(1000)];
        let there_and_back = || audit::LEVELS.iter().chain(audit::LEVELS.iter().rev());
        let order = there_and_back().chain(there_and_back());
        for (pass, level) in order.enumerate() {
            let dir = format!("audit-{level}-{pass}");
            let conf = ferro_store(&dir, "embedded", &audit::config(level))?;
            let name = format!("FerroHSM, audit level {level}");
            let env = ("FERROHSM_CONF", conf.as_path());
            let out = match measure_child(&name, &ferro_module, env, &plan, &sizes, None, 0) {
                Ok(m) => Outcome::Measured(m),
                Err(e) => Outcome::NotRun(e.to_string()),
            };
            match audited.iter_mut().find(|(l, _)| l == level) {
                Some((_, earlier)) => audit::keep_best(earlier, out),
                None => audited.push((level, out)),
            }
        }
    }

    // SoftHSM2: its own token directory, file backend.
    let sdir = work.path().join("softhsm2");
    std::fs::create_dir_all(sdir.join("tokens"))?;
    let sconf = sdir.join("softhsm2.conf");
    std::fs::write(
        &sconf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            sdir.join("tokens").display()
        ),
    )?;
    let soft = measure_child(
        "SoftHSM2",
        &a.softhsm,
        ("SOFTHSM2_CONF", &sconf),
        &s,
        &s.soft_sizes,
        Some(s.budget),
        0,
    )?;

    // Kryoptic: its own SQLite token in the run's directory (KRYOPTIC_CONF names the
    // configuration). A failure here leaves its column "not run" with the reason.
    let kryo = match (&a.kryoptic, &a.kryoptic_unavailable) {
        (Some(k), _) if !k.exists() => Outcome::NotRun(format!("{} is missing", k.display())),
        (Some(k), _) => {
            let kdir = work.path().join("kryoptic");
            std::fs::create_dir_all(&kdir)?;
            let kconf = kdir.join("kryoptic.toml");
            std::fs::write(
                &kconf,
                format!(
                    "[[slots]]\nslot = 1\ndescription = \"ferrohsm-bench\"\ndbtype = \"sqlite\"\ndbargs = {:?}\n",
                    kdir.join("token.sql").display().to_string()
                ),
            )?;
            match measure_child(
                "Kryoptic",
                k,
                ("KRYOPTIC_CONF", &kconf),
                &s,
                &s.soft_sizes,
                Some(s.budget),
                0,
            ) {
                Ok(m) => Outcome::Measured(m),
                Err(e) => {
                    eprintln!("Kryoptic not measured: {e}");
                    Outcome::NotRun(e.to_string())
                }
            }
        }
        (None, Some(why)) => Outcome::NotRun(why.clone()),
        (None, None) => Outcome::NotRun("no --kryoptic module given".into()),
    };

    let raw: RawResult = child_json(
        Command::new(std::env::current_exe()?)
            .arg("raw")
            .arg("--seconds")
            .arg(s.seconds.to_string())
            .arg("--threads")
            .arg(join(&THREADS))
            .arg("--ops")
            .arg(&s.ops)
            .arg("--rounds")
            .arg(s.rounds.to_string()),
    )?;

    let command = a.command.clone().unwrap_or_else(|| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("ferrohsm-bench {}", args.join(" "))
    });
    let png_link = a.png_link.clone().or_else(|| {
        a.png
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    });
    let rep = report::Report {
        setup: &s,
        machine,
        command,
        ferro_module: &ferro_module,
        soft_module: &a.softhsm,
        kryo_module: a.kryoptic.as_deref(),
        kryo_build: a.kryoptic_build.as_deref(),
        ferro: &ferro,
        soft: &soft,
        kryo: &kryo,
        served: served.as_ref(),
        raw: &raw,
        audited: &audited,
    };
    let rows = rep.rows();
    let mut md = rep.markdown(&rows, png_link.as_deref());
    if let Some(n) = &a.notes {
        let text = std::fs::read_to_string(n).map_err(|e| format!("{}: {e}", n.display()))?;
        md.push_str(text.trim_end());
        md.push('\n');
    }
    print!("{md}");
    if let Some(out) = &a.out {
        std::fs::write(out, &md)?;
    }
    // The chart is always drawn (so the smoke run exercises it), written when asked for.
    let png = chart::render(&rows, &a.font)?;
    if let Some(p) = &a.png {
        std::fs::write(p, png)?;
        eprintln!("chart written to {}", p.display());
    }
    Ok(())
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn measure_child(
    name: &str,
    module: &Path,
    env: (&str, &Path),
    s: &Setup,
    sizes: &[u64],
    budget: Option<f64>,
    procs: usize,
) -> Res<ModuleResult> {
    eprintln!("== {name}: {}", module.display());
    let mut c = Command::new(std::env::current_exe()?);
    c.arg("measure")
        .arg("--name")
        .arg(name)
        .arg("--module")
        .arg(module)
        .arg("--seconds")
        .arg(s.seconds.to_string())
        .arg("--sizes")
        .arg(join(sizes))
        .arg("--cold-runs")
        .arg(s.cold_runs.to_string())
        .arg("--threads")
        .arg(join(&THREADS))
        .arg("--rounds")
        .arg(s.rounds.to_string())
        .arg("--procs")
        .arg(procs.to_string())
        .env(env.0, env.1);
    if !s.ops.is_empty() {
        c.arg("--ops").arg(&s.ops);
    }
    if let Some(b) = budget {
        c.arg("--budget").arg(b.to_string());
    }
    child_json(&mut c).map_err(|e| format!("{name}: {e}").into())
}

fn child_json<T: serde::de::DeserializeOwned>(c: &mut Command) -> Res<T> {
    let out = c.stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err(format!("child process failed ({})", out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
