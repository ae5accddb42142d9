//! The targets of issue 13 (and the server targets of issue 12), each with what this run
//! measured and met / missed / not measured.

use crate::model::{ModuleResult, Op, ProcOp, Scope};
use crate::report::{Report, Row, cell, count, fmt_num, fmt_ratio, mib};
use std::fmt::Write;

enum Met {
    Yes,
    No,
    NotMeasured,
    /// A figure asked for, not a threshold.
    Reported,
}

fn met(b: bool) -> Met {
    if b { Met::Yes } else { Met::No }
}

/// µs per operation of a rate.
fn us(rate: f64) -> f64 {
    1e6 / rate
}

struct Lines(String);

impl Lines {
    fn line(&mut self, target: &str, measured: String, m: Met, why: String) {
        let (m, why) = match m {
            Met::Yes => ("met", String::new()),
            Met::No => ("**missed**", why),
            Met::NotMeasured => ("not measured", why),
            Met::Reported => ("reported", why),
        };
        let _ = writeln!(self.0, "| {target} | {measured} | {m} | {why} |");
    }
}

fn find_rate(m: &ModuleResult, n: u64, label: bool) -> Option<f64> {
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
}

fn cold_at(m: &ModuleResult, n: u64) -> Option<crate::model::Cold> {
    m.sizes
        .iter()
        .find(|x| x.objects == n)
        .and_then(|x| x.measured.as_ref())
        .map(|x| x.cold.clone())
}

pub fn targets(r: &Report<'_>, rows: &[Row]) -> String {
    let f = r.ferro;
    let raw = &r.raw.crypto;
    let mut l = Lines(String::from(
        "### Targets of issue 13 (and the server's of issue 12)\n\nFerroHSM embedded unless \
         the row says otherwise; ratios to aws-lc-rs alone are from this run, 1 thread.\n\n\
         | target | measured | met | what limits it (measured) |\n|---|---|---|---|\n",
    ));

    // Session keys against token keys, every keyed crypto row.
    let mut pairs = Vec::new();
    for op in Op::ALL.into_iter().filter(|o| o.uses_key()) {
        for t in crate::THREADS {
            let tk = cell(&f.crypto, op, Some(Scope::Token), t);
            let sk = cell(&f.crypto, op, Some(Scope::Session), t);
            if let (Some(tk), Some(sk)) = (tk, sk) {
                pairs.push((op, t, tk, sk));
            }
        }
    }
    if pairs.is_empty() {
        l.line(
            "session-key rows within 10% of token-key rows",
            "—".into(),
            Met::NotMeasured,
            String::new(),
        );
    } else {
        let ratio = |p: &(Op, usize, f64, f64)| p.3 / p.2;
        let lo = pairs.iter().map(ratio).fold(f64::INFINITY, f64::min);
        let hi = pairs.iter().map(ratio).fold(0.0, f64::max);
        let out: Vec<String> = pairs
            .iter()
            .filter(|p| (ratio(p) - 1.0).abs() > 0.1)
            .map(|p| {
                format!(
                    "{} ×{}: {} ({:.1} µs per op with the session key, {:.1} µs with the token key)",
                    p.0.short(),
                    p.1,
                    fmt_ratio(Some(ratio(p))),
                    us(p.3),
                    us(p.2)
                )
            })
            .collect();
        l.line(
            "session-key rows within 10% of token-key rows",
            format!(
                "session ÷ token {lo:.2}× to {hi:.2}× over {} rows; {} of them within 10%",
                pairs.len(),
                pairs.len() - out.len()
            ),
            met(out.is_empty()),
            format!("outside: {}", out.join("; ")),
        );
    }

    // Ratios to aws-lc-rs alone.
    for (op, target) in [
        (Op::AesGcm4k, 0.7),
        (Op::AesGcm1m, 0.9),
        (Op::EcP256Sign, 0.9),
        (Op::RsaPkcs1Sign, 0.9),
        (Op::RsaPssSign, 0.9),
        (Op::Sha256_4k, 0.9),
    ] {
        let name = format!("{} ≥ {target}× aws-lc-rs alone", op.short());
        let Some(rr) = cell(raw, op, None, 1) else {
            l.line(&name, "—".into(), Met::NotMeasured, String::new());
            continue;
        };
        let got: Vec<(String, f64)> = op
            .scopes()
            .iter()
            .filter_map(|&sc| {
                let v = cell(&f.crypto, op, sc, 1)?;
                let what = sc.map_or("", |s| {
                    if s == Scope::Token {
                        "token key "
                    } else {
                        "session key "
                    }
                });
                Some((what.to_string(), v))
            })
            .collect();
        if got.is_empty() {
            l.line(&name, "—".into(), Met::NotMeasured, String::new());
            continue;
        }
        let worst = got.iter().map(|g| g.1 / rr).fold(f64::INFINITY, f64::min);
        l.line(
            &name,
            got.iter()
                .map(|(w, v)| format!("{w}{}", fmt_ratio(Some(v / rr))))
                .collect::<Vec<_>>()
                .join(", "),
            met(worst >= target),
            format!(
                "per op: aws-lc-rs alone {:.2} µs; FerroHSM {}",
                us(rr),
                got.iter()
                    .map(|(w, v)| format!("{w}{:.2} µs (+{:.2} µs)", us(*v), us(*v) - us(rr)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    // Find at 1M against 1k, and the cold RSS there.
    let first = f.sizes.first().map_or(0, |x| x.objects);
    let largest = f
        .sizes
        .iter()
        .filter(|x| x.measured.is_some())
        .map(|x| x.objects)
        .max()
        .unwrap_or(first);
    let find_ratio = |n: u64, label: bool| -> Option<f64> {
        Some(find_rate(f, n, label)? / find_rate(f, first, label)?)
    };
    let at = |n: u64| {
        format!(
            "label {}, CKA_ID {} ({:.1} and {:.1} µs per find at {})",
            fmt_ratio(find_ratio(n, true)),
            fmt_ratio(find_ratio(n, false)),
            find_rate(f, n, true).map_or(0.0, us),
            find_rate(f, n, false).map_or(0.0, us),
            count(n)
        )
    };
    let find_target = format!("find at 1M ≥ 0.8× its rate at {}", count(first));
    if largest >= 1_000_000 {
        let worst = find_ratio(largest, true)
            .unwrap_or(0.0)
            .min(find_ratio(largest, false).unwrap_or(0.0));
        l.line(&find_target, at(largest), met(worst >= 0.8), String::new());
    } else {
        l.line(
            &find_target,
            if largest > first {
                format!("1M needs `--huge`; at {}: {}", count(largest), at(largest))
            } else {
                "1M needs `--huge`".into()
            },
            Met::NotMeasured,
            String::new(),
        );
    }
    let rss_target = "cold-process RSS at 1M ≤ 64 MiB beside the KDF's transient memory";
    let rss_text = |c: &crate::model::Cold| {
        format!(
            "peak before C_Login {:.0} MiB, after the first find {:.0} MiB; peak with the KDF {:.0} MiB",
            mib(c.rss_before_login_kib),
            mib(c.rss_end_kib),
            mib(c.rss_kib)
        )
    };
    match cold_at(f, largest) {
        Some(c) if largest >= 1_000_000 => {
            let without_kdf = mib(c.rss_before_login_kib.max(c.rss_end_kib));
            l.line(
                rss_target,
                rss_text(&c),
                met(without_kdf <= 64.0),
                String::new(),
            );
        }
        Some(c) => l.line(
            rss_target,
            format!("1M needs `--huge`; at {}: {}", count(largest), rss_text(&c)),
            Met::NotMeasured,
            String::new(),
        ),
        None => l.line(rss_target, "—".into(), Met::NotMeasured, String::new()),
    }

    // Cold start: the KDF's memory released after the login; the split.
    if let Some(c) = cold_at(f, first) {
        let (before, after, peak) = (
            mib(c.rss_before_login_kib),
            mib(c.rss_after_login_kib),
            mib(c.rss_kib),
        );
        l.line(
            "the KDF's memory released right after C_Login (cold process)",
            format!(
                "at {}: peak {peak:.0} MiB; right after C_Login {after:.0} MiB; peak before \
                 C_Login {before:.0} MiB",
                count(first)
            ),
            met(after <= before + 32.0),
            format!(
                "{:.0} MiB more resident after C_Login than before it",
                after - before
            ),
        );
        let split = |m: &ModuleResult| {
            cold_at(m, first).map(|c| {
                format!(
                    "open {:.2} ms / login (KDF) {:.1} ms / first find {:.2} ms",
                    c.init_open_ms, c.login_ms, c.first_find_ms
                )
            })
        };
        let mut parts = vec![format!("embedded: {}", split(f).unwrap_or_default())];
        for (name, m) in [
            ("via server", r.served),
            ("SoftHSM2", Some(r.soft)),
            ("Kryoptic", r.kryo()),
        ] {
            if let Some(s) = m.and_then(split) {
                parts.push(format!("{name}: {s}"));
            }
        }
        l.line(
            &format!(
                "cold start split into open, KDF and first find ({})",
                count(first)
            ),
            parts.join("; "),
            Met::Reported,
            String::new(),
        );
    }

    // Two threads where aws-lc-rs alone reaches 1.8×.
    let mut eligible = 0;
    let mut raw_scal = Vec::new();
    let mut missed = Vec::new();
    for row in rows {
        let Some((op, scope, 1)) = row.crypto else {
            continue;
        };
        let (Some(r1), Some(r2)) = (cell(raw, op, None, 1), cell(raw, op, None, 2)) else {
            continue;
        };
        if scope != Some(Scope::Session) {
            raw_scal.push(format!("{} {:.2}×", op.short(), r2 / r1));
        }
        if r2 / r1 < 1.8 {
            continue;
        }
        let (Some(f1), Some(f2)) = (cell(&f.crypto, op, scope, 1), cell(&f.crypto, op, scope, 2))
        else {
            continue;
        };
        eligible += 1;
        if f2 / f1 < 1.8 {
            let sc = scope.map_or(String::new(), |s| format!(", {}", s.label()));
            missed.push(format!(
                "{}{sc} {:.2}× (aws-lc-rs {:.2}×)",
                op.short(),
                f2 / f1,
                r2 / r1
            ));
        }
    }
    let two = "every crypto row at 2 threads ≥ 1.8× its 1-thread rate, where aws-lc-rs alone reaches 1.8×";
    if eligible == 0 {
        l.line(
            two,
            format!(
                "aws-lc-rs alone reached 1.8× on no row ({})",
                raw_scal.join(", ")
            ),
            Met::NotMeasured,
            format!(
                "{} cores, load average {} at the start: the other core was not free",
                r.machine.nproc, r.machine.loadavg
            ),
        );
    } else {
        l.line(
            two,
            format!("{} of {eligible} eligible rows", eligible - missed.len()),
            met(missed.is_empty()),
            format!("below: {}", missed.join("; ")),
        );
    }

    server_targets(r, &mut l, first);
    l.0.push('\n');
    l.0
}

/// Issue 12's targets for the server path.
fn server_targets(r: &Report<'_>, l: &mut Lines, first: u64) {
    let f = r.ferro;
    let Some(v) = r.served else {
        l.line(
            "through the server (issue 12)",
            "needs `--with-server`".into(),
            Met::NotMeasured,
            String::new(),
        );
        return;
    };
    let tk = Some(Scope::Token);
    match (
        cell(&v.crypto, Op::EcP256Sign, tk, 1),
        cell(&f.crypto, Op::EcP256Sign, tk, 1),
    ) {
        (Some(a), Some(b)) => l.line(
            "via server: P-256 sign, 1 thread ≥ 0.5× embedded",
            format!(
                "{} ({} against {} ops/s)",
                fmt_ratio(Some(a / b)),
                fmt_num(a),
                fmt_num(b)
            ),
            met(a / b >= 0.5),
            format!(
                "{:.1} µs per sign via server, {:.1} µs embedded",
                us(a),
                us(b)
            ),
        ),
        _ => l.line(
            "via server: P-256 sign, 1 thread ≥ 0.5× embedded",
            "—".into(),
            Met::NotMeasured,
            String::new(),
        ),
    }
    let n = r.setup.procs;
    for op in ProcOp::ALL {
        let name = format!(
            "via server: {n} processes ≥ 1.6× one process, {}",
            op.label()
        );
        match (r.procs_rate(op, 1), r.procs_rate(op, n)) {
            (Some(a), Some(b)) => l.line(
                &name,
                format!(
                    "{} ({} against {})",
                    fmt_ratio(Some(b / a)),
                    fmt_num(b),
                    fmt_num(a)
                ),
                met(b / a >= 1.6),
                format!(
                    "{} cores, load average {} at the start",
                    r.machine.nproc, r.machine.loadavg
                ),
            ),
            _ => l.line(&name, "—".into(), Met::NotMeasured, String::new()),
        }
    }
    match find_rate(v, first, true) {
        Some(a) => l.line(
            &format!(
                "via server: find by label ≥ 20k/s (1 thread, {} objects)",
                count(first)
            ),
            format!("{}/s", fmt_num(a)),
            met(a >= 20_000.0),
            format!("{:.1} µs per find", us(a)),
        ),
        None => l.line(
            "via server: find by label ≥ 20k/s",
            "—".into(),
            Met::NotMeasured,
            String::new(),
        ),
    }
    let per_call = |m: Option<&ModuleResult>| {
        m.and_then(|m| cell(&m.crypto, Op::Random1, None, 1))
            .map(|x| format!("{:.2} µs", us(x)))
    };
    let mut parts = Vec::new();
    for (name, m) in [
        ("via server", Some(v)),
        ("embedded", Some(f)),
        ("SoftHSM2", Some(r.soft)),
        ("Kryoptic", r.kryo()),
    ] {
        if let Some(x) = per_call(m) {
            parts.push(format!("{name} {x}"));
        }
    }
    if let Some(x) = cell(&r.raw.crypto, Op::Random1, None, 1) {
        parts.push(format!("aws-lc-rs alone {:.2} µs", us(x)));
    }
    l.line(
        "call overhead: µs per C_GenerateRandom of 1 byte",
        if parts.is_empty() {
            "—".into()
        } else {
            parts.join("; ")
        },
        if parts.is_empty() {
            Met::NotMeasured
        } else {
            Met::Reported
        },
        String::new(),
    );
    if let Some(c) = cold_at(v, first) {
        let total = c.init_open_ms + c.login_ms + c.first_find_ms;
        l.line(
            &format!(
                "via server: a new process's C_Initialize + C_Login + find ≤ 20 ms ({} objects)",
                count(first)
            ),
            format!("{total:.1} ms"),
            met(total <= 20.0),
            format!(
                "open {:.2} ms, login {:.1} ms, first find {:.2} ms",
                c.init_open_ms, c.login_ms, c.first_find_ms
            ),
        );
    }
}
