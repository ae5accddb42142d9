//! A FerroHSM slot over a SoftHSM2 token (the PKCS#11 passthrough adapter, ADR 0007),
//! through the C ABI: pairs made through FerroHSM live in SoftHSM2 (seen there by
//! `pkcs11-tool`, a separate process, as sensitive and never extractable), sign there
//! (checked by RustCrypto), survive a restart, and go from SoftHSM2 when destroyed; what
//! the adapter cannot do is refused with the right `CKR_*`, and a backing library that is
//! missing leaves the slot without a token, not a crash.
#![allow(unsafe_code)]

mod common;

use common::*;
use cryptoki_sys::*;
use ferrohsm_pkcs11::entry::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::null_mut;
use std::sync::OnceLock;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const BACKING_PIN: &str = "backing-pin-1";

/// SoftHSM2 with two tokens, `backing` and `other`, in a directory of its own; the process's
/// `SOFTHSM2_CONF` points at it (SoftHSM2 reads it at its `C_Initialize`, which the
/// adapter calls in this process).
fn softhsm() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::create_dir(dir.join("tokens")).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        // SAFETY: set once, before any test initialises the module (SERIAL is not held
        // yet, but no thread has loaded SoftHSM2 or reads the variable before this).
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        for label in ["backing", "other"] {
            let out = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label])
                .args(["--so-pin", "backing-so-1", "--pin", BACKING_PIN])
                .output()
                .expect("softhsm2-util (Debian package softhsm2; tools/test installs it)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(dir.join("pin"), format!("{BACKING_PIN}\n")).unwrap();
        dir
    })
}

/// The `[[slots]]` table binding token 1 to the SoftHSM2 token `backing`, through
/// `module`.
fn slot_table(module: &str) -> String {
    table(module, "backing")
}

fn table(module: &str, label: &str) -> String {
    format!(
        "[[slots]]\ntoken = 1\nadapter = \"pkcs11\"\nmodule = {module:?}\ntoken_label = {label:?}\npin_file = {:?}\n",
        softhsm().join("pin").display().to_string()
    )
}

/// What `pkcs11-tool` lists of the backing token's objects.
fn backing_objects() -> String {
    let out = Command::new("pkcs11-tool")
        .args(["--module", SOFTHSM, "--token-label", "backing", "--login"])
        .args(["--pin", BACKING_PIN, "--list-objects"])
        .output()
        .expect("pkcs11-tool (Debian package opensc)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p256_pair(
    h: CK_SESSION_HANDLE,
    label: &str,
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
    generate_pair(
        h,
        CKM_EC_KEY_PAIR_GEN,
        &[
            (CKA_EC_PARAMS, Val::Bytes(P256.to_vec())),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(label.into())),
        ],
        &[
            (CKA_SIGN, Val::Bool(true)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(label.into())),
        ],
    )
}

fn rsa_pair(h: CK_SESSION_HANDLE, label: &str) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    generate_pair(
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &[
            (CKA_MODULUS_BITS, Val::Ulong(2048)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(label.into())),
        ],
        &[
            (CKA_SIGN, Val::Bool(true)),
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_LABEL, Val::Bytes(label.into())),
        ],
    )
    .expect("an RSA-2048 pair in the backing token")
}

/// RustCrypto's verdict on an RSA signature (PKCS#1 v1.5 or PSS with SHA-256).
fn rsa_verifies(h: CK_SESSION_HANDLE, public: CK_OBJECT_HANDLE, msg: &[u8], sig: &[u8], pss: bool) {
    use sha2::Digest;
    let n = attribute(h, public, CKA_MODULUS).unwrap();
    let e = attribute(h, public, CKA_PUBLIC_EXPONENT).unwrap();
    let pk = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(&n),
        rsa::BoxedUint::from_be_slice_vartime(&e),
    )
    .unwrap();
    let digest = sha2::Sha256::digest(msg);
    let verdict = if pss {
        pk.verify(
            rsa::pss::Pss::<sha2::Sha256>::new_with_salt(32),
            &digest,
            sig,
        )
    } else {
        pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, sig)
    };
    verdict.expect("RustCrypto accepts the backing token's RSA signature");
}

fn p256_verifies(h: CK_SESSION_HANDLE, public: CK_OBJECT_HANDLE, msg: &[u8], sig: &[u8]) {
    use p256::ecdsa::signature::Verifier as _;
    let der = attribute(h, public, CKA_EC_POINT).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&der[2..]).unwrap();
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(sig).unwrap())
        .expect("RustCrypto accepts the backing token's ECDSA signature");
}

#[test]
fn pairs_live_sign_and_die_in_the_backing_token() {
    softhsm();
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    let _env = setup_with_tables(dir.path(), &slot_table(SOFTHSM));
    let h = user_session();
    let msg = b"signed in SoftHSM2 through FerroHSM";

    let (ec_pub, ec_priv) = p256_pair(h, "device-ec").expect("a P-256 pair in the backing token");
    let sig = sign(h, CKM_ECDSA_SHA256, ec_priv, msg).unwrap();
    p256_verifies(h, ec_pub, msg, &sig);
    assert_eq!(verify(h, CKM_ECDSA_SHA256, ec_pub, msg, &sig), Ok(()));
    // The private half is a reference: no value, never extractable, made in the device.
    assert_eq!(
        attribute(h, ec_priv, CKA_VALUE),
        Err(CKR_ATTRIBUTE_SENSITIVE)
    );
    assert_eq!(attribute(h, ec_priv, CKA_EXTRACTABLE), Ok(vec![0]));
    assert_eq!(attribute(h, ec_priv, CKA_NEVER_EXTRACTABLE), Ok(vec![1]));
    assert_eq!(attribute(h, ec_priv, CKA_LOCAL), Ok(vec![1]));
    let reference = attribute(h, ec_priv, 0x8F45_0006).expect("CKA_FERRO_DEVICE_KEY");
    assert!(reference.starts_with(b"\x01\x06pkcs11"), "{reference:?}");

    let (rsa_pub, rsa_priv) = rsa_pair(h, "device-rsa");
    for (mech, pss) in [
        (CKM_SHA256_RSA_PKCS, false),
        (CKM_SHA256_RSA_PKCS_PSS, true),
    ] {
        let mut m = if pss {
            let p = CK_RSA_PKCS_PSS_PARAMS {
                hashAlg: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                sLen: 32,
            };
            Mech::with(mech, &p)
        } else {
            Mech::plain(mech)
        };
        let sig = sign_with(h, &mut m, rsa_priv, msg);
        rsa_verifies(h, rsa_pub, msg, &sig, pss);
    }

    // SoftHSM2's own view (other tests' keys may be there too: this one's by its ID).
    let (ec_id, rsa_id) = (backing_id(h, ec_priv), backing_id(h, rsa_priv));
    let listed = backing_objects();
    for (id, kind) in [(&ec_id, "EC"), (&rsa_id, "RSA")] {
        let entry = backing_entry(&listed, id, "Private Key Object")
            .unwrap_or_else(|| panic!("no private key {id} in SoftHSM2: {listed}"));
        assert!(entry.contains(kind), "{entry}");
        assert!(entry.contains("label:      ferrohsm"), "{entry}");
        assert!(
            entry.contains("Usage:      sign\n"),
            "signing only: {entry}"
        );
        assert!(entry.contains("never extractable"), "{entry}");
    }
    assert!(
        backing_entry(&listed, &ec_id, "Public Key Object").is_some(),
        "{listed}"
    );

    assert_eq!(C_DestroyObject(h, ec_priv), CKR_OK);
    let listed = backing_objects();
    assert!(
        !listed.contains(&ec_id),
        "the destroyed pair left SoftHSM2 too: {listed}"
    );
    assert!(listed.contains(&rsa_id), "the other key stays: {listed}");
    assert!(find_by_label(h, CKO_PRIVATE_KEY, "device-ec").is_empty());
}

/// The backing token's `CKA_ID` of a device key (the tail of its reference), in hex as
/// `pkcs11-tool` prints it.
fn backing_id(h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> String {
    let reference = attribute(h, private, 0x8F45_0006).expect("CKA_FERRO_DEVICE_KEY");
    hex::encode(&reference[reference.len() - 16..])
}

/// The `pkcs11-tool` entry of the `kind` object (`Private Key Object`, …) with `id`: an
/// entry is its heading line and the indented lines under it.
fn backing_entry(listed: &str, id: &str, kind: &str) -> Option<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in listed.lines() {
        if !line.starts_with(' ') {
            entries.push(String::new());
        }
        if let Some(e) = entries.last_mut() {
            e.push_str(line);
            e.push('\n');
        }
    }
    entries
        .into_iter()
        .find(|e| e.starts_with(kind) && e.contains(&format!("ID:         {id}")))
}

#[test]
fn what_the_device_cannot_do_is_refused_by_name() {
    softhsm();
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    let _env = setup_with_tables(dir.path(), &slot_table(SOFTHSM));
    let h = user_session();
    let pair_with = |private: &[(CK_ATTRIBUTE_TYPE, Val)]| {
        let mut t = vec![(CKA_SIGN, Val::Bool(true))];
        t.extend_from_slice(private);
        generate_pair(
            h,
            CKM_EC_KEY_PAIR_GEN,
            &[
                (CKA_EC_PARAMS, Val::Bytes(P256.to_vec())),
                (CKA_TOKEN, Val::Bool(true)),
            ],
            &t,
        )
    };
    assert_eq!(
        pair_with(&[
            (CKA_TOKEN, Val::Bool(true)),
            (CKA_EXTRACTABLE, Val::Bool(true))
        ])
        .err(),
        Some(CKR_TEMPLATE_INCONSISTENT),
        "a device key is never extractable"
    );
    assert_eq!(
        pair_with(&[(CKA_TOKEN, Val::Bool(false))]).err(),
        Some(CKR_TEMPLATE_INCONSISTENT),
        "session keys in the device are not built yet"
    );
    assert!(
        pair_with(&[(CKA_TOKEN, Val::Bool(true))]).is_ok(),
        "a token key is made"
    );
    // No secret keys in the device yet: not offered, and refused.
    // SAFETY: CK_MECHANISM_INFO is a plain C struct of integers: all zeros is valid.
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        // SAFETY: a valid output.
        unsafe { C_GetMechanismInfo(1, CKM_AES_KEY_GEN, &mut info) },
        CKR_MECHANISM_INVALID
    );
    let mut m = Mech::plain(CKM_AES_KEY_GEN).raw();
    let mut t = Template::new(&[
        (CKA_VALUE_LEN, Val::Ulong(32)),
        (CKA_TOKEN, Val::Bool(true)),
    ]);
    let (p, n) = t.raw();
    let mut k = 0;
    assert_eq!(
        // SAFETY: valid mechanism, template and output.
        unsafe { C_GenerateKey(h, &mut m, p, n, &mut k) },
        CKR_MECHANISM_INVALID
    );
    // Key material cannot be brought into a device slot (an import would leave it here).
    let imported = create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_PRIVATE_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_EC)),
            (CKA_EC_PARAMS, Val::Bytes(P256.to_vec())),
            (CKA_VALUE, Val::Bytes(vec![0x17; 32])),
            (CKA_TOKEN, Val::Bool(true)),
        ],
    );
    assert_eq!(imported.err(), Some(CKR_TEMPLATE_INCONSISTENT));
    // Nor can a template forge a reference to a device key.
    let forged = create(
        h,
        &[
            (CKA_CLASS, Val::Ulong(CKO_PRIVATE_KEY)),
            (CKA_KEY_TYPE, Val::Ulong(CKK_EC)),
            (CKA_EC_PARAMS, Val::Bytes(P256.to_vec())),
            (
                0x8F45_0006,
                Val::Bytes(b"\x01\x06pkcs11\x00\x01xname".to_vec()),
            ),
            (CKA_TOKEN, Val::Bool(true)),
        ],
    );
    assert_eq!(
        forged.err(),
        Some(CKR_ATTRIBUTE_READ_ONLY),
        "a template cannot name a device key"
    );
}

#[test]
fn device_keys_survive_a_restart() {
    softhsm();
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    {
        let _env = setup_with_tables(dir.path(), &slot_table(SOFTHSM));
        let h = user_session();
        rsa_pair(h, "kept");
    }
    let _env = setup_with_tables(dir.path(), &slot_table(SOFTHSM));
    let h = user_session();
    let private = find_by_label(h, CKO_PRIVATE_KEY, "kept");
    let public = find_by_label(h, CKO_PUBLIC_KEY, "kept");
    assert_eq!((private.len(), public.len()), (1, 1));
    let msg = b"after a restart";
    let sig = sign_with(h, &mut Mech::plain(CKM_SHA256_RSA_PKCS), private[0], msg);
    rsa_verifies(h, public[0], msg, &sig, false);
}

/// A slot re-pointed at another backing token does not look for its keys there: the
/// reference names the token they were made in.
#[test]
fn a_key_is_never_used_on_another_device() {
    softhsm();
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    {
        let _env = setup_with_tables(dir.path(), &slot_table(SOFTHSM));
        let h = user_session();
        p256_pair(h, "moved").expect("a pair in `backing`");
    }
    let _env = setup_with_tables(dir.path(), &table(SOFTHSM, "other"));
    let h = user_session();
    let private = find_by_label(h, CKO_PRIVATE_KEY, "moved");
    assert_eq!(private.len(), 1, "FerroHSM still holds the object");
    assert_eq!(
        sign(h, CKM_ECDSA_SHA256, private[0], b"x"),
        Err(CKR_DEVICE_ERROR),
        "the key lives in another token"
    );
}

#[test]
fn a_missing_backing_library_leaves_the_slot_without_a_token() {
    softhsm();
    let dir = tempfile::tempdir().unwrap();
    ferro_token(dir.path());
    let _env = setup_with_tables(dir.path(), &slot_table("/nonexistent/libbacking.so"));
    // SAFETY: CK_SLOT_INFO is a plain C struct of bytes and integers: zeros are valid.
    let mut info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    // SAFETY: valid outputs.
    unsafe {
        assert_eq!(C_GetSlotInfo(1, &mut info), CKR_OK);
        assert_eq!(
            info.flags & CKF_TOKEN_PRESENT,
            0,
            "no token while the library is missing"
        );
        let mut h = 0;
        assert_eq!(
            C_OpenSession(1, CKF_SERIAL_SESSION, null_mut(), None, &mut h),
            CKR_TOKEN_NOT_PRESENT
        );
    }
}
