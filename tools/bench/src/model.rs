//! What the measuring child processes send back to the parent (JSON on stdout), and the
//! timing loop they share.

use serde::{Deserialize, Serialize};
use std::sync::Barrier;
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// One crypto row: the same operation through PKCS#11 and through aws-lc-rs directly.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Op {
    EcP256Sign,
    EcP256Verify,
    EcP384Sign,
    EcP384Verify,
    RsaPkcs1Sign,
    RsaPssSign,
    RsaKeygen,
    AesGcm64,
    AesGcm4k,
    AesGcm1m,
    Sha256_4k,
    Random32,
    Random1,
}

impl Op {
    pub const ALL: [Op; 13] = [
        Op::EcP256Sign,
        Op::EcP256Verify,
        Op::EcP384Sign,
        Op::EcP384Verify,
        Op::RsaPkcs1Sign,
        Op::RsaPssSign,
        Op::RsaKeygen,
        Op::AesGcm64,
        Op::AesGcm4k,
        Op::AesGcm1m,
        Op::Sha256_4k,
        Op::Random32,
        Op::Random1,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Op::EcP256Sign => "ECDSA P-256 sign (CKM_ECDSA_SHA256)",
            Op::EcP256Verify => "ECDSA P-256 verify (CKM_ECDSA_SHA256)",
            Op::EcP384Sign => "ECDSA P-384 sign (CKM_ECDSA_SHA384)",
            Op::EcP384Verify => "ECDSA P-384 verify (CKM_ECDSA_SHA384)",
            Op::RsaPkcs1Sign => "RSA-2048 PKCS#1 v1.5 sign (CKM_SHA256_RSA_PKCS)",
            Op::RsaPssSign => "RSA-2048 PSS sign (CKM_SHA256_RSA_PKCS_PSS)",
            Op::RsaKeygen => "RSA-2048 key generation",
            Op::AesGcm64 => "AES-256-GCM encrypt 64 B",
            Op::AesGcm4k => "AES-256-GCM encrypt 4 KiB",
            Op::AesGcm1m => "AES-256-GCM encrypt 1 MiB",
            Op::Sha256_4k => "SHA-256 digest 4 KiB",
            Op::Random32 => "C_GenerateRandom 32 bytes",
            Op::Random1 => "C_GenerateRandom 1 byte (the call overhead)",
        }
    }

    /// The name `--ops` takes for this row.
    pub fn arg_name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// Short name for the chart.
    pub fn short(self) -> &'static str {
        match self {
            Op::EcP256Sign => "P-256 sign",
            Op::EcP256Verify => "P-256 verify",
            Op::EcP384Sign => "P-384 sign",
            Op::EcP384Verify => "P-384 verify",
            Op::RsaPkcs1Sign => "RSA-2048 PKCS#1 sign",
            Op::RsaPssSign => "RSA-2048 PSS sign",
            Op::RsaKeygen => "RSA-2048 keygen",
            Op::AesGcm64 => "AES-GCM 64 B",
            Op::AesGcm4k => "AES-GCM 4 KiB",
            Op::AesGcm1m => "AES-GCM 1 MiB",
            Op::Sha256_4k => "SHA-256 4 KiB",
            Op::Random32 => "random 32 B",
            Op::Random1 => "random 1 B",
        }
    }

    pub fn is_sign(self) -> bool {
        matches!(
            self,
            Op::EcP256Sign | Op::EcP384Sign | Op::RsaPkcs1Sign | Op::RsaPssSign
        )
    }

    /// The row uses a key, so it runs once with a token key and once with a session key.
    pub fn uses_key(self) -> bool {
        !matches!(
            self,
            Op::RsaKeygen | Op::Sha256_4k | Op::Random32 | Op::Random1
        )
    }

    /// The key scopes this row runs with (`None`: the row uses no key).
    pub fn scopes(self) -> &'static [Option<Scope>] {
        if self.uses_key() {
            &[Some(Scope::Token), Some(Scope::Session)]
        } else {
            &[None]
        }
    }
}

/// Where a crypto row's key lives.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// CKA_TOKEN true: stored on the token.
    Token,
    /// CKA_TOKEN false: made in the measuring process's long-lived main session.
    Session,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Scope::Token => "token key",
            Scope::Session => "session key",
        }
    }
}

/// A crypto cell: `ops` operations by `threads` threads in parallel.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Cell {
    pub op: Op,
    /// The key's scope (None for rows without a key, and for aws-lc-rs).
    pub scope: Option<Scope>,
    pub threads: usize,
    pub ops: u64,
    /// The best round's ops/s, summed over threads (RSA key generation: the mean).
    pub rate: f64,
    /// Every round's ops/s.
    pub round_rates: Vec<f64>,
}

/// Cold start of a fresh process on a token holding some objects.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Cold {
    /// C_Initialize + C_GetSlotList + C_OpenSession (the library already loaded).
    pub init_open_ms: f64,
    /// C_Login (the PIN KDF and unwrapping the token keys).
    pub login_ms: f64,
    /// The first C_FindObjects by label after login.
    pub first_find_ms: f64,
    /// VmHWM (peak) before C_Login.
    pub rss_before_login_kib: u64,
    /// VmRSS (current) right after C_Login returned: the KDF's memory is gone if it was
    /// released.
    pub rss_after_login_kib: u64,
    /// VmRSS after the first find (before C_Finalize).
    pub rss_end_kib: u64,
    /// VmHWM (peak) at the end.
    pub rss_kib: u64,
}

/// Figures at one object count.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SizeResult {
    pub objects: u64,
    /// None when population did not finish within the budget.
    pub measured: Option<Measured>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Measured {
    /// Population rate (C_CreateObject, objects/s) from the previous count up to this one.
    pub populate_rate: f64,
    /// Every create so far (the create row's included): objects on the token ÷ seconds.
    pub create_rate_total: f64,
    pub find_label_rate: f64,
    pub find_id_rate: f64,
    /// Medians over the cold runs.
    pub cold: Cold,
}

/// Everything one module child measured.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ModuleResult {
    pub library: String,
    /// Where this module needed a different mechanism.
    pub notes: Vec<String>,
    /// Durable token-object creation (C_CreateObject of an AES key), objects/s.
    pub create_rate: f64,
    pub create_count: u64,
    /// C_Login in the measuring process, right after token initialisation.
    pub login_ms: f64,
    pub sizes: Vec<SizeResult>,
    pub crypto: Vec<Cell>,
    pub peak_rss_kib: u64,
    /// Through the server only: 1 process against N processes on the same token.
    pub procs: Vec<ProcCell>,
    /// The objects on the token while the processes ran.
    pub procs_objects: u64,
}

/// A row measured in N processes at once (each one thread, started together).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ProcOp {
    EcP256Sign,
    AesGcm4k,
    FindLabel,
    Create,
}

impl ProcOp {
    pub const ALL: [ProcOp; 4] = [
        ProcOp::EcP256Sign,
        ProcOp::AesGcm4k,
        ProcOp::FindLabel,
        ProcOp::Create,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProcOp::EcP256Sign => "ECDSA P-256 sign (token key), ops/s",
            ProcOp::AesGcm4k => "AES-256-GCM encrypt 4 KiB (token key), ops/s",
            ProcOp::FindLabel => "C_FindObjects by unique CKA_LABEL, finds/s",
            ProcOp::Create => "durable token-object create (C_CreateObject), objects/s",
        }
    }
}

/// One multi-process cell: the best round's rate summed over `procs` processes.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ProcCell {
    pub op: ProcOp,
    pub procs: usize,
    pub rate: f64,
    pub round_rates: Vec<f64>,
}

/// aws-lc-rs called directly.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RawResult {
    pub crypto: Vec<Cell>,
}

/// Runs `threads` workers in parallel for `rounds` rounds of `secs / rounds` each and
/// returns the best round's summed rate: load from other processes on a shared machine
/// only ever slows a round down. RSA key generation (a few keys per round, its time set
/// by the prime search) reports the mean over all rounds instead. `make` runs inside each
/// thread (so it may open a session there) and returns the operation; it is called once
/// untimed as a warm-up before the threads start together.
pub fn run_cell<F>(
    op: Op,
    scope: Option<Scope>,
    threads: usize,
    secs: f64,
    rounds: usize,
    make: F,
) -> Res<Cell>
where
    F: Fn() -> Res<Box<dyn FnMut() -> Res<()>>> + Sync,
{
    let rounds = rounds.max(1);
    let barrier = Barrier::new(threads);
    let budget = Duration::from_secs_f64(secs / rounds as f64);
    let results: Vec<Res<Vec<(u64, f64)>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                sc.spawn(|| -> Res<Vec<(u64, f64)>> {
                    let mut prepared = make().and_then(|mut f| f().map(|()| f));
                    let mut per_round = Vec::new();
                    for _ in 0..rounds {
                        // Every thread reaches every barrier, failed or not.
                        barrier.wait();
                        let Ok(f) = prepared.as_mut() else { continue };
                        let start = Instant::now();
                        let mut n = 0u64;
                        let failed = loop {
                            if let Err(e) = f() {
                                break Some(e);
                            }
                            n += 1;
                            if start.elapsed() >= budget {
                                break None;
                            }
                        };
                        match failed {
                            Some(e) => prepared = Err(e),
                            None => per_round.push((n, start.elapsed().as_secs_f64())),
                        }
                    }
                    prepared.map(|_| per_round)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect()
    });
    let mut ops = 0;
    let mut round_rates = vec![0.0; rounds];
    for r in results {
        let per_round = r.map_err(|e| {
            let scope = scope.map_or(String::new(), |s| format!(", {}", s.label()));
            format!("{}{scope}, {threads} thread(s): {e}", op.label())
        })?;
        for (i, (n, t)) in per_round.into_iter().enumerate() {
            ops += n;
            round_rates[i] += n as f64 / t;
        }
    }
    let rate = if op == Op::RsaKeygen {
        round_rates.iter().sum::<f64>() / rounds as f64
    } else {
        round_rates.iter().copied().fold(0.0, f64::max)
    };
    Ok(Cell {
        op,
        scope,
        threads,
        ops,
        rate,
        round_rates,
    })
}

/// A KiB field of /proc/self/status (0 when unreadable).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// This process's peak resident set size (VmHWM), KiB.
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM")
}

/// This process's current resident set size (VmRSS), KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// A small deterministic generator for picking objects to look up.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
