//! Through the server: the same rows in 1 process and in N processes at once on one token
//! (issue 12). The measuring child spawns N workers (this binary's hidden `proc-worker`
//! subcommand; the module's configuration comes through the inherited environment, so all
//! of them reach the same ferrohsm-server), each with one session per row and one thread.
//! Each worker logs in and prepares every row, says "ready", then runs a row for the time
//! the parent asks whenever it writes `go ROW SECONDS` to the worker's stdin, and answers
//! `OPS SECONDS`. The parent writes `go` to the first worker alone (1 process) or to all
//! of them together (N processes), sums their rates, and keeps the best round. This runs
//! last in the measuring child, so the objects the create row makes (they stay) change no
//! other row.

use crate::model::{ProcCell, ProcOp, Res};
use crate::p11::{
    AES_LABEL, P256_LABEL, USER_PIN, ecdsa_input, label_of, load, object_template_with, pin_of,
    token_slot,
};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    index: usize,
}

impl Worker {
    fn send(&mut self, line: &str) -> Res<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("process worker {}: {e}", self.index).into())
    }

    fn recv(&mut self) -> Res<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.is_empty() {
            let status = self.child.wait()?;
            return Err(format!("process worker {} exited ({status})", self.index).into());
        }
        Ok(line.trim().to_string())
    }
}

/// Kills the workers that are still running when the parent gives up on an error.
struct Workers(Vec<Worker>);

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.0 {
            if matches!(w.child.try_wait(), Ok(None)) {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
        }
    }
}

/// Runs every row in 1 process and in `plan.procs` processes; `objects` is the number of
/// objects on the token (the find row looks up random ones).
pub fn run(module: &Path, objects: u64, plan: &crate::p11::Plan) -> Res<Vec<ProcCell>> {
    let n = plan.procs;
    let exe = std::env::current_exe()?;
    let mut ws = Workers(Vec::new());
    for index in 0..n {
        let mut child = Command::new(&exe)
            .arg("proc-worker")
            .arg("--module")
            .arg(module)
            .arg("--objects")
            .arg(objects.to_string())
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("process worker without pipes".into());
        };
        ws.0.push(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            index,
        });
    }
    for w in &mut ws.0 {
        let line = w.recv()?;
        if line != "ready" {
            return Err(format!("process worker {}: said {line:?}, not ready", w.index).into());
        }
    }
    let rounds = plan.rounds.max(1);
    let secs = plan.seconds / rounds as f64;
    let mut cells = Vec::new();
    for (k, op) in ProcOp::ALL.into_iter().enumerate() {
        for procs in [1, n] {
            let mut round_rates = Vec::new();
            for _ in 0..rounds {
                for w in &mut ws.0[..procs] {
                    w.send(&format!("go {k} {secs}"))?;
                }
                let mut sum = 0.0;
                for w in &mut ws.0[..procs] {
                    let line = w.recv()?;
                    let mut it = line.split_whitespace().map(str::parse::<f64>);
                    let (Some(Ok(ops)), Some(Ok(t))) = (it.next(), it.next()) else {
                        return Err(
                            format!("process worker {}, {}: {line}", w.index, op.label()).into(),
                        );
                    };
                    sum += ops / t;
                }
                round_rates.push(sum);
            }
            cells.push(ProcCell {
                op,
                procs,
                rate: round_rates.iter().copied().fold(0.0, f64::max),
                round_rates,
            });
        }
    }
    for w in &mut ws.0 {
        w.send("end")?;
    }
    for w in &mut ws.0 {
        let line = w.recv()?;
        if line != "done" {
            return Err(format!("process worker {}: {line}", w.index).into());
        }
        let status = w.child.wait()?;
        if !status.success() {
            return Err(format!("process worker {} failed ({status})", w.index).into());
        }
    }
    Ok(cells)
}

type OpFn = Box<dyn FnMut() -> Res<()>>;

fn find_one(s: &Session, template: &[Attribute]) -> Res<ObjectHandle> {
    let found = s.find_objects(template)?;
    match found.as_slice() {
        [h] => Ok(*h),
        _ => Err(format!("{} objects match {template:?}", found.len()).into()),
    }
}

/// The `proc-worker` child: one thread, one session per row, driven through stdin.
pub fn worker(module: &Path, objects: u64, index: u64) -> Res<()> {
    let p = load(module)?;
    let slot = token_slot(&p)?;
    let main = p.open_rw_session(slot)?;
    match main.login(UserType::User, Some(&pin_of(USER_PIN))) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(format!("C_Login: {e}").into()),
    }
    let mechs = p.get_mechanism_list(slot)?;
    let prehash = !mechs.contains(&MechanismType::ECDSA_SHA256);
    let ec = find_one(
        &main,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true),
            Attribute::Label(P256_LABEL.into()),
        ],
    )?;
    let aes = find_one(
        &main,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Label(AES_LABEL.into()),
        ],
    )?;
    let mut fns: Vec<OpFn> = Vec::new();
    for op in ProcOp::ALL {
        let s = p.open_rw_session(slot)?;
        let mut f: OpFn = match op {
            ProcOp::EcP256Sign => Box::new(move || {
                let (m, data) = ecdsa_input(prehash, false);
                s.sign(&m, ec, &data)?;
                Ok(())
            }),
            ProcOp::AesGcm4k => {
                let data = vec![0x5a; 4096];
                // The IVs differ between processes: the index is in the IV's first bytes.
                let mut counter = 0u64;
                Box::new(move || {
                    counter += 1;
                    let mut iv = [0u8; 12];
                    iv[..4].copy_from_slice(&(index as u32).to_be_bytes());
                    iv[4..].copy_from_slice(&counter.to_be_bytes());
                    let params = GcmParams::new(&mut iv, &[], 128.into())?;
                    s.encrypt(&Mechanism::AesGcm(params), aes, &data)?;
                    Ok(())
                })
            }
            ProcOp::FindLabel => {
                let mut rng = crate::model::XorShift(0x2545_f491_4f6c_dd1d ^ (index + 1));
                Box::new(move || {
                    let i = rng.below(objects);
                    let found = s.find_objects(&[Attribute::Label(label_of(i))])?;
                    if found.len() != 1 {
                        return Err(format!("label {i}: {} objects found", found.len()).into());
                    }
                    Ok(())
                })
            }
            ProcOp::Create => {
                let mut n = 0u64;
                Box::new(move || {
                    n += 1;
                    let label = format!("bench-proc-{index}-{n:08}").into_bytes();
                    let mut id = vec![0xff, index as u8];
                    id.extend_from_slice(&n.to_be_bytes());
                    s.create_object(&object_template_with(label, id, n))?;
                    Ok(())
                })
            }
        };
        // Warm-up, untimed.
        f().map_err(|e| format!("{}: {e}", op.label()))?;
        fns.push(f);
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go", k, secs] => {
                let k: usize = k.parse()?;
                let budget = Duration::from_secs_f64(secs.parse()?);
                let f = fns.get_mut(k).ok_or("no such row")?;
                let start = Instant::now();
                let mut n = 0u64;
                loop {
                    f().map_err(|e| format!("{}: {e}", ProcOp::ALL[k].label()))?;
                    n += 1;
                    if start.elapsed() >= budget {
                        break;
                    }
                }
                writeln!(out, "{n} {}", start.elapsed().as_secs_f64())?;
                out.flush()?;
            }
            ["end"] => break,
            _ => return Err(format!("unknown command {line:?}").into()),
        }
    }
    drop(fns);
    drop(main);
    p.finalize()?;
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}
