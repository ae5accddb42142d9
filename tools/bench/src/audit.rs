//! What the audit log costs (issue 16): FerroHSM embedded, each `[audit] level` in its own
//! child on its own fresh store, on the rows the log touches — durable creates (one record
//! in each create's write batch from `management` up) and key use (one record per
//! operation at `all`, written unsynced and made durable by group commit).

use crate::model::{ModuleResult, Op, Scope};
use crate::report::{cell, fmt_num, fmt_ratio, threads_label};
use crate::{Outcome, Setup};
use std::fmt::Write;

/// The levels measured, the unaudited one first: every ratio is against it.
pub const LEVELS: [&str; 3] = ["off", "management", "all"];

/// The crypto rows measured at each level.
const OPS: [Op; 2] = [Op::EcP256Sign, Op::AesGcm4k];

/// The `--ops` argument of the audit children: [`OPS`] that the run measures at all.
pub fn ops_arg(s: &Setup) -> String {
    OPS.iter()
        .map(|o| o.arg_name())
        .filter(|name| s.ops.split(',').any(|o| o == name))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `[audit]` section of the child's configuration for `level`.
pub fn config(level: &str) -> String {
    format!("[audit]\nlevel = {level:?}\n")
}

/// Keeps, figure by figure, the better of two runs of one level in `kept`.
pub fn keep_best(kept: &mut Outcome, other: Outcome) {
    match (&mut *kept, other) {
        (Outcome::Measured(k), Outcome::Measured(o)) => {
            k.create_rate = k.create_rate.max(o.create_rate);
            for c in o.crypto {
                match k
                    .crypto
                    .iter_mut()
                    .find(|x| x.op == c.op && x.scope == c.scope && x.threads == c.threads)
                {
                    Some(x) if x.rate < c.rate => *x = c,
                    Some(_) => {}
                    None => k.crypto.push(c),
                }
            }
        }
        (Outcome::NotRun(_), o @ Outcome::Measured(_)) => *kept = o,
        _ => {}
    }
}

/// One figure of the table, per level.
struct Line {
    label: String,
    values: Vec<Option<f64>>,
}

fn lines(levels: &[(&str, Outcome)]) -> Vec<Line> {
    let of = |f: &dyn Fn(&ModuleResult) -> Option<f64>| -> Vec<Option<f64>> {
        levels
            .iter()
            .map(|(_, o)| o.measured().and_then(f))
            .collect()
    };
    let mut v = vec![Line {
        label: crate::report::CREATE_LABEL.into(),
        values: of(&|m| Some(m.create_rate).filter(|r| *r > 0.0)),
    }];
    for op in OPS {
        for t in crate::THREADS {
            v.push(Line {
                label: format!("{}, token key, {}, ops/s", op.label(), threads_label(t)),
                values: of(&|m| cell(&m.crypto, op, Some(Scope::Token), t)),
            });
        }
    }
    v
}

fn ratio(values: &[Option<f64>], i: usize) -> Option<f64> {
    match (
        values.first().copied().flatten(),
        values.get(i).copied().flatten(),
    ) {
        (Some(off), Some(x)) if off > 0.0 => Some(x / off),
        _ => None,
    }
}

/// The "Audit cost" section: the figures per level and issue 16's two targets.
pub fn section(levels: &[(&str, Outcome)]) -> String {
    let mut o = String::from(
        "### Audit cost (issue 16)\n\nFerroHSM embedded, one fresh store per `[audit] level` \
         (each in its own child process, 1k objects, the default checkpoint settings); the \
         levels run four times (off, management, all, then all, management, off, twice) and \
         each figure is the best of its four runs. The main table above runs at the default level, \
         `management`.\n\n",
    );
    for (level, out) in levels {
        if let Outcome::NotRun(why) = out {
            let _ = writeln!(o, "- level `{level}` not measured: {why}");
        }
    }
    let _ = write!(o, "\n| row |");
    for (level, _) in levels {
        let _ = write!(o, " level `{level}` |");
    }
    for (level, _) in levels.iter().skip(1) {
        let _ = write!(o, " `{level}` ÷ `off` |");
    }
    let _ = write!(o, "\n|---|");
    for _ in 0..levels.len() * 2 - 1 {
        o.push_str("---:|");
    }
    o.push('\n');
    let lines = lines(levels);
    for l in &lines {
        let _ = write!(o, "| {} |", l.label);
        for v in &l.values {
            let _ = write!(o, " {} |", v.map_or("—".into(), fmt_num));
        }
        for i in 1..levels.len() {
            let _ = write!(o, " {} |", fmt_ratio(ratio(&l.values, i)));
        }
        o.push('\n');
    }
    o.push_str("\n| target | measured | met |\n|---|---|---|\n");
    let at = |name: &str| LEVELS.iter().position(|l| *l == name);
    for (target, line, level, min) in [
        (
            "audit at `management` costs ≤ 10% of durable-create throughput",
            0,
            "management",
            0.9,
        ),
        (
            "audit at `all`: P-256 signing keeps ≥ 0.8× its unaudited rate (1 thread)",
            1,
            "all",
            0.8,
        ),
    ] {
        let r = at(level).and_then(|i| ratio(&lines[line].values, i));
        let verdict = match r {
            None => "not measured",
            Some(r) if r >= min => "met",
            Some(_) => "**missed**",
        };
        let _ = writeln!(o, "| {target} | {} | {verdict} |", fmt_ratio(r));
    }
    o.push('\n');
    o
}
