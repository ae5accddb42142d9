//! The PKCS#11 side, identical for every module: token set-up through C_InitToken and
//! C_InitPIN, the crypto cells, object creation and search, and the cold-start child.

use crate::model::{
    Cell, Cold, Measured, ModuleResult, Op, Res, Scope, SizeResult, XorShift, median, peak_rss_kib,
    rss_kib, run_cell,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::path::Path;
use std::time::Instant;

pub const SO_PIN: &str = "bench-so-pin-0000";
pub const USER_PIN: &str = "bench-user-pin-1111";
pub const TOKEN_LABEL: &str = "ferrohsm-bench";
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const MSG: &[u8] = b"FerroHSM vs SoftHSM2: the message every signature row signs";

fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

pub(crate) fn pin_of(s: &str) -> AuthPin {
    pin(s)
}

pub fn load(module: &Path) -> Res<Pkcs11> {
    let p = Pkcs11::new(module).map_err(|e| format!("load {}: {e}", module.display()))?;
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    Ok(p)
}

/// The slot of the (one) initialised token.
pub(crate) fn token_slot(p: &Pkcs11) -> Res<Slot> {
    p.get_slots_with_initialized_token()?
        .into_iter()
        .next()
        .ok_or_else(|| "no initialised token".into())
}

pub fn label_of(n: u64) -> Vec<u8> {
    format!("bench-obj-{n:08}").into_bytes()
}

pub(crate) fn id_of(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// The objects the create and find rows use: private, sensitive AES-256 token keys, each
/// with a unique label and CKA_ID.
pub(crate) fn object_template(n: u64) -> Vec<Attribute> {
    object_template_with(label_of(n), id_of(n), n)
}

/// The create and find rows' object with a given label and CKA_ID (`n` sets the value).
pub(crate) fn object_template_with(label: Vec<u8>, id: Vec<u8>, n: u64) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label),
        Attribute::Id(id),
        Attribute::Value(vec![(n % 251) as u8; 32]),
    ]
}

/// One set of the crypto rows' keys, all token objects or all session objects.
struct KeySet {
    ec256: (ObjectHandle, ObjectHandle),
    ec384: (ObjectHandle, ObjectHandle),
    rsa: (ObjectHandle, ObjectHandle),
    aes: ObjectHandle,
}

struct Keys {
    /// The module lacks CKM_ECDSA_SHA256/384 (SoftHSM 2.6): the client hashes and signs
    /// the digest with CKM_ECDSA.
    ecdsa_prehash: bool,
    token: KeySet,
    /// Session objects (CKA_TOKEN false) of the measuring process's main session, which
    /// lives through the crypto rows; every session of the process sees them.
    session: KeySet,
}

impl Keys {
    fn of(&self, scope: Option<Scope>) -> &KeySet {
        match scope {
            Some(Scope::Session) => &self.session,
            _ => &self.token,
        }
    }
}

/// The token keys' labels (the process workers find them by label); session keys add
/// "-session".
pub(crate) const P256_LABEL: &str = "bench-p256";
pub(crate) const AES_LABEL: &str = "bench-aes";

fn ec_pair(
    s: &Session,
    token: bool,
    params: &[u8],
    label: &str,
) -> Res<(ObjectHandle, ObjectHandle)> {
    Ok(s.generate_key_pair(
        &Mechanism::EccKeyPairGen,
        &[
            Attribute::Token(token),
            Attribute::EcParams(params.to_vec()),
            Attribute::Label(label.into()),
            Attribute::Verify(true),
        ],
        &[
            Attribute::Token(token),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Label(label.into()),
            Attribute::Sign(true),
        ],
    )?)
}

fn rsa_template(token: bool, label: &str) -> (Vec<Attribute>, Vec<Attribute>) {
    (
        vec![
            Attribute::Token(token),
            Attribute::ModulusBits(2048.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Label(label.into()),
            Attribute::Verify(true),
        ],
        vec![
            Attribute::Token(token),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Label(label.into()),
            Attribute::Sign(true),
        ],
    )
}

fn make_key_set(s: &Session, token: bool) -> Res<KeySet> {
    let suffix = if token { "" } else { "-session" };
    let l = |base: &str| format!("{base}{suffix}");
    let (rpub, rpriv) = rsa_template(token, &l("bench-rsa"));
    Ok(KeySet {
        ec256: ec_pair(s, token, &P256, &l(P256_LABEL))?,
        ec384: ec_pair(s, token, &P384, &l("bench-p384"))?,
        rsa: s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &rpub, &rpriv)?,
        aes: s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(token),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::ValueLen(32.into()),
                Attribute::Label(l(AES_LABEL).into_bytes()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )?,
    })
}

fn make_keys(s: &Session, ecdsa_prehash: bool) -> Res<Keys> {
    Ok(Keys {
        ecdsa_prehash,
        token: make_key_set(s, true).map_err(|e| format!("token keys: {e}"))?,
        session: make_key_set(s, false).map_err(|e| format!("session keys: {e}"))?,
    })
}

/// The plaintext length of an AES-GCM row.
pub fn gcm_len(op: Op) -> usize {
    match op {
        Op::AesGcm64 => 64,
        Op::AesGcm4k => 4096,
        _ => 1 << 20,
    }
}

/// The mechanisms a row needs beyond key generation (none: it always runs).
fn needs(op: Op, ecdsa_prehash: bool) -> &'static [MechanismType] {
    match op {
        Op::EcP256Sign | Op::EcP256Verify | Op::EcP384Sign | Op::EcP384Verify => {
            if ecdsa_prehash {
                &[MechanismType::ECDSA]
            } else {
                &[]
            }
        }
        Op::RsaPkcs1Sign => &[MechanismType::SHA256_RSA_PKCS],
        Op::RsaPssSign => &[MechanismType::SHA256_RSA_PKCS_PSS],
        Op::RsaKeygen => &[MechanismType::RSA_PKCS_KEY_PAIR_GEN],
        Op::AesGcm64 | Op::AesGcm4k | Op::AesGcm1m => &[MechanismType::AES_GCM],
        Op::Sha256_4k => &[MechanismType::SHA256],
        Op::Random32 | Op::Random1 => &[],
    }
}

fn pss() -> Mechanism<'static> {
    Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    })
}

/// ECDSA input: the message with CKM_ECDSA_SHA256/384, or its hash (computed here, per
/// call) with CKM_ECDSA.
pub(crate) fn ecdsa_input(prehash: bool, p384: bool) -> (Mechanism<'static>, Vec<u8>) {
    use aws_lc_rs::digest::{SHA256, SHA384, digest};
    match (prehash, p384) {
        (false, false) => (Mechanism::EcdsaSha256, MSG.to_vec()),
        (false, true) => (Mechanism::EcdsaSha384, MSG.to_vec()),
        (true, false) => (Mechanism::Ecdsa, digest(&SHA256, MSG).as_ref().to_vec()),
        (true, true) => (Mechanism::Ecdsa, digest(&SHA384, MSG).as_ref().to_vec()),
    }
}

/// One operation on its own session (opened in the calling thread), with the key of
/// `scope`.
fn worker(
    p: &Pkcs11,
    slot: Slot,
    keys: &Keys,
    op: Op,
    scope: Option<Scope>,
) -> Res<Box<dyn FnMut() -> Res<()>>> {
    let s = p.open_rw_session(slot)?;
    let set = keys.of(scope);
    let f: Box<dyn FnMut() -> Res<()>> = match op {
        Op::EcP256Sign | Op::EcP384Sign => {
            let p384 = op == Op::EcP384Sign;
            let key = if p384 { set.ec384.1 } else { set.ec256.1 };
            let prehash = keys.ecdsa_prehash;
            Box::new(move || {
                let (m, data) = ecdsa_input(prehash, p384);
                s.sign(&m, key, &data)?;
                Ok(())
            })
        }
        Op::RsaPkcs1Sign | Op::RsaPssSign => {
            let key = set.rsa.1;
            Box::new(move || {
                let m = if op == Op::RsaPkcs1Sign {
                    Mechanism::Sha256RsaPkcs
                } else {
                    pss()
                };
                s.sign(&m, key, MSG)?;
                Ok(())
            })
        }
        Op::EcP256Verify | Op::EcP384Verify => {
            let p384 = op == Op::EcP384Verify;
            let (pubk, privk) = if p384 { set.ec384 } else { set.ec256 };
            let prehash = keys.ecdsa_prehash;
            let (m, data) = ecdsa_input(prehash, p384);
            let sig = s.sign(&m, privk, &data)?;
            Box::new(move || {
                let (m, data) = ecdsa_input(prehash, p384);
                s.verify(&m, pubk, &data, &sig)?;
                Ok(())
            })
        }
        Op::RsaKeygen => {
            let (pubt, privt) = rsa_template(false, "bench-keygen");
            Box::new(move || {
                let (a, b) = s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &pubt, &privt)?;
                // Session objects; destroyed so neither module keeps thousands of them.
                s.destroy_object(a)?;
                s.destroy_object(b)?;
                Ok(())
            })
        }
        Op::AesGcm64 | Op::AesGcm4k | Op::AesGcm1m => {
            let data = vec![0x5a; gcm_len(op)];
            let key = set.aes;
            let mut counter = 0u64;
            Box::new(move || {
                counter += 1;
                let mut iv = [0u8; 12];
                iv[4..].copy_from_slice(&counter.to_be_bytes());
                let params = GcmParams::new(&mut iv, &[], 128.into())?;
                s.encrypt(&Mechanism::AesGcm(params), key, &data)?;
                Ok(())
            })
        }
        Op::Sha256_4k => {
            let data = vec![0xa5; 4096];
            Box::new(move || {
                s.digest(&Mechanism::Sha256, &data)?;
                Ok(())
            })
        }
        Op::Random32 => Box::new(move || {
            let mut buf = [0u8; 32];
            s.generate_random_slice(&mut buf)?;
            Ok(())
        }),
        Op::Random1 => Box::new(move || {
            let mut buf = [0u8; 1];
            s.generate_random_slice(&mut buf)?;
            Ok(())
        }),
    };
    Ok(f)
}

pub struct Plan {
    pub seconds: f64,
    pub sizes: Vec<u64>,
    /// Seconds of population after which the remaining sizes are skipped.
    pub budget: Option<f64>,
    pub cold_runs: usize,
    pub threads: Vec<usize>,
    /// The crypto rows to run.
    pub ops: Vec<Op>,
    /// Rounds per crypto cell (the best is reported).
    pub rounds: usize,
    /// Through the server: also 1 process against this many (0: not measured), at the
    /// first object count.
    pub procs: usize,
}

fn progress(name: &str, what: &str) {
    eprintln!("[{name}] {what}");
}

/// Runs every PKCS#11 row against one module in this process (a child of the parent).
pub fn measure(name: &str, module: &Path, plan: &Plan) -> Res<ModuleResult> {
    let mut p = load(module)?;
    let info = p.get_library_info()?;
    let library = format!(
        "{} {} {}",
        info.manufacturer_id().trim(),
        info.library_description().trim(),
        info.library_version()
    );
    progress(name, &format!("library: {library}"));

    // A fresh token through PKCS#11: C_InitToken, SO login, C_InitPIN.
    let first = p
        .get_slots_with_token()?
        .into_iter()
        .next()
        .ok_or("the module shows no token")?;
    p.init_token(first, &pin(SO_PIN), TOKEN_LABEL)?;
    let mut slot = token_slot(&p)?;
    {
        let s = p.open_rw_session(slot)?;
        s.login(UserType::So, Some(&pin(SO_PIN)))?;
        s.init_pin(&pin(USER_PIN))?;
        s.logout()?;
    }
    let mut s = p.open_rw_session(slot)?;
    let t = Instant::now();
    s.login(UserType::User, Some(&pin(USER_PIN)))?;
    let login_ms = t.elapsed().as_secs_f64() * 1e3;
    progress(name, &format!("C_Login {login_ms:.1} ms"));

    // Crypto rows on token keys and on session keys, 1 and 2 threads, each thread with its
    // own session.
    let mechs = p.get_mechanism_list(slot)?;
    let ecdsa_prehash = !(mechs.contains(&MechanismType::ECDSA_SHA256)
        && mechs.contains(&MechanismType::ECDSA_SHA384));
    let mut notes = Vec::new();
    if ecdsa_prehash {
        notes.push(
            "offers no CKM_ECDSA_SHA256/384: its ECDSA rows are CKM_ECDSA on a SHA-256/384 \
             digest the client computes per call (aws-lc-rs, under 1 µs)"
                .to_string(),
        );
    }
    let keys = make_keys(&s, ecdsa_prehash)?;
    let mut crypto: Vec<Cell> = Vec::new();
    for &op in &plan.ops {
        let lacking: Vec<String> = needs(op, ecdsa_prehash)
            .iter()
            .filter(|m| !mechs.contains(m))
            .map(|m| m.to_string())
            .collect();
        if !lacking.is_empty() {
            notes.push(format!(
                "offers no {}: its row \"{}\" is not run",
                lacking.join(", "),
                op.label()
            ));
            continue;
        }
        for &scope in op.scopes() {
            for &threads in &plan.threads {
                let (p2, keys2) = (&p, &keys);
                let cell = run_cell(op, scope, threads, plan.seconds, plan.rounds, || {
                    worker(p2, slot, keys2, op, scope)
                })?;
                let sc = scope.map_or(String::new(), |s| format!(", {}", s.label()));
                progress(
                    name,
                    &format!("{}{sc} x{threads}: {:.1} ops/s", op.label(), cell.rate),
                );
                crypto.push(cell);
            }
        }
    }

    // Durable creates, timed, up to the first size; they are the first objects. The
    // first one is untimed (one-off costs: SoftHSM2 writes its token files then).
    let t0 = Instant::now();
    s.create_object(&object_template(0))?;
    let mut created = 1u64;
    let first_size = plan.sizes.first().copied().unwrap_or(0);
    let t = Instant::now();
    while created < first_size.max(2) {
        s.create_object(&object_template(created))?;
        created += 1;
        if t.elapsed().as_secs_f64() >= plan.seconds {
            break;
        }
    }
    let create_count = created - 1;
    let create_rate = create_count as f64 / t.elapsed().as_secs_f64();
    let create_secs = t0.elapsed().as_secs_f64();
    progress(
        name,
        &format!("durable C_CreateObject: {create_rate:.0} objects/s ({created} objects)"),
    );

    let mut populate_secs = create_secs;
    let mut sizes = Vec::new();
    let mut out_of_budget = false;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut last_measured = None;
    for &size in &plan.sizes {
        if out_of_budget {
            sizes.push(SizeResult {
                objects: size,
                measured: None,
            });
            continue;
        }
        let from = created;
        let t = Instant::now();
        while created < size {
            s.create_object(&object_template(created))?;
            created += 1;
            if created.is_multiple_of(1000) {
                let spent = populate_secs + t.elapsed().as_secs_f64();
                if plan.budget.is_some_and(|b| spent > b) {
                    out_of_budget = true;
                    break;
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        populate_secs += secs;
        if out_of_budget {
            progress(
                name,
                &format!(
                    "population budget ({:.0} s) spent at {created} objects: {size} and larger skipped",
                    plan.budget.unwrap_or(0.0)
                ),
            );
            sizes.push(SizeResult {
                objects: size,
                measured: None,
            });
            continue;
        }
        let populate_rate = if size > from {
            (size - from) as f64 / secs
        } else {
            create_rate
        };

        let find_label_rate = {
            let t = Instant::now();
            let mut n = 0u64;
            loop {
                let i = rng.below(size);
                let found = s.find_objects(&[Attribute::Label(label_of(i))])?;
                if found.len() != 1 {
                    return Err(format!("label {i}: {} objects found", found.len()).into());
                }
                n += 1;
                if t.elapsed().as_secs_f64() >= plan.seconds {
                    break;
                }
            }
            n as f64 / t.elapsed().as_secs_f64()
        };
        let find_id_rate = {
            let t = Instant::now();
            let mut n = 0u64;
            loop {
                let i = rng.below(size);
                let found = s.find_objects(&[Attribute::Id(id_of(i))])?;
                if found.len() != 1 {
                    return Err(format!("CKA_ID {i}: {} objects found", found.len()).into());
                }
                n += 1;
                if t.elapsed().as_secs_f64() >= plan.seconds {
                    break;
                }
            }
            n as f64 / t.elapsed().as_secs_f64()
        };

        // Cold starts in fresh processes: this process lets go of the token first.
        drop(s);
        p.finalize()?;
        let cold = cold_runs(module, size, plan.cold_runs)?;
        p = load(module)?;
        slot = token_slot(&p)?;
        s = p.open_rw_session(slot)?;
        s.login(UserType::User, Some(&pin(USER_PIN)))?;

        progress(
            name,
            &format!(
                "{size} objects: populate {populate_rate:.0}/s, find by label {find_label_rate:.1}/s, \
                 by CKA_ID {find_id_rate:.1}/s, cold init+open {:.2} ms, login {:.1} ms, cold RSS {} MiB",
                cold.init_open_ms,
                cold.login_ms,
                cold.rss_kib / 1024
            ),
        );
        last_measured = Some(size);
        sizes.push(SizeResult {
            objects: size,
            measured: Some(Measured {
                populate_rate,
                create_rate_total: size as f64 / populate_secs,
                find_label_rate,
                find_id_rate,
                cold,
            }),
        });
    }
    // Through the server: 1 process against N on the same token, last, at the largest
    // count (this process stays connected, idle). Their creates stay on the token:
    // destroying thousands of objects would cost more than the whole run.
    let mut procs = Vec::new();
    let mut procs_objects = 0;
    if let (true, Some(objects)) = (plan.procs > 1, last_measured) {
        procs = crate::procs::run(module, objects, plan)?;
        procs_objects = objects;
        for c in &procs {
            progress(
                name,
                &format!(
                    "{} with {} process(es): {:.1}",
                    c.op.label(),
                    c.procs,
                    c.rate
                ),
            );
        }
    }
    drop(s);
    p.finalize()?;
    Ok(ModuleResult {
        library,
        notes,
        create_rate,
        create_count,
        login_ms,
        sizes,
        crypto,
        peak_rss_kib: peak_rss_kib(),
        procs,
        procs_objects,
    })
}

/// Starts `runs` cold children (this binary's `cold` subcommand; the configuration comes
/// through the inherited environment) and returns the medians.
fn cold_runs(module: &Path, objects: u64, runs: usize) -> Res<Cold> {
    let exe = std::env::current_exe()?;
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        let out = std::process::Command::new(&exe)
            .arg("cold")
            .arg("--module")
            .arg(module)
            .arg("--objects")
            .arg(objects.to_string())
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("cold child failed ({})", out.status).into());
        }
        all.push(serde_json::from_slice::<Cold>(&out.stdout)?);
    }
    let med = |f: fn(&Cold) -> f64| median(&mut all.iter().map(f).collect::<Vec<_>>());
    Ok(Cold {
        init_open_ms: med(|c| c.init_open_ms),
        login_ms: med(|c| c.login_ms),
        first_find_ms: med(|c| c.first_find_ms),
        rss_before_login_kib: med(|c| c.rss_before_login_kib as f64) as u64,
        rss_after_login_kib: med(|c| c.rss_after_login_kib as f64) as u64,
        rss_end_kib: med(|c| c.rss_end_kib as f64) as u64,
        rss_kib: med(|c| c.rss_kib as f64) as u64,
    })
}

/// The `cold` child: load, then time C_Initialize + C_OpenSession, C_Login, one find.
pub fn cold(module: &Path, objects: u64) -> Res<Cold> {
    let p = Pkcs11::new(module)?;
    let t = Instant::now();
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = token_slot(&p)?;
    let s = p.open_rw_session(slot)?;
    let init_open_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_before_login_kib = peak_rss_kib();
    let t = Instant::now();
    s.login(UserType::User, Some(&pin(USER_PIN)))?;
    let login_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_after_login_kib = rss_kib();
    let t = Instant::now();
    let want = objects / 2;
    let found = s.find_objects(&[Attribute::Label(label_of(want))])?;
    let first_find_ms = t.elapsed().as_secs_f64() * 1e3;
    if found.len() != 1 {
        return Err(format!("cold find of object {want}: {} found", found.len()).into());
    }
    let rss_end_kib = rss_kib();
    drop(s);
    p.finalize()?;
    Ok(Cold {
        init_open_ms,
        login_ms,
        first_find_ms,
        rss_before_login_kib,
        rss_after_login_kib,
        rss_end_kib,
        rss_kib: peak_rss_kib(),
    })
}
