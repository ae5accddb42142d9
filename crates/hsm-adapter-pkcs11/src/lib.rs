//! The PKCS#11 passthrough adapter (ADR 0007, `docs/adapters.md`): a FerroHSM slot whose
//! keys live in a token of another PKCS#11 module — SoftHSM2 in CI, AWS CloudHSM's or a
//! vendor's library in production. FerroHSM keeps the object (its attributes, lifecycle,
//! policy, audit) and a reference to the backing key (its `CKA_ID` there, and the
//! backing token's serial number); the private key is made in the backing token as
//! sensitive and not extractable, and every signature is made there.
//!
//! ```toml
//! [[slots]]
//! token = 1
//! adapter = "pkcs11"
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "backing"      # or slot_id = N
//! pin_file = "/etc/ferrohsm/backing.pin"   # or pin_env = "BACKING_PIN"
//! ```
//!
//! The backing module is loaded and logged in to on first use, not at start-up, so a
//! library or device that is missing then only makes the slot absent
//! (`CKF_TOKEN_PRESENT` clear) until it answers. A call that finds the device gone
//! answers `CKR_DEVICE_REMOVED` and drops the connection; the next call connects again,
//! at most once per second (`hsm_core::hardware::Reconnecting`).

#![forbid(unsafe_code)]

mod conn;

use conn::Conn;
use cryptoki::mechanism::MechanismType;
use hsm_core::Result;
use hsm_core::config::{SlotConfig, secret_setting};
use hsm_core::crypto::{DeviceKeyKind, RawSign};
use hsm_core::hardware::{Adapter, Adapters, Capabilities, DevicePair, Reconnecting};
use hsm_core::mechanism::flags;
use hsm_core::provider::PairSpec;
use hsm_types::{MechanismType as M, SecretString};
use std::sync::Arc;

/// The name `[[slots]] adapter = …` gives this adapter.
pub const KIND: &str = "pkcs11";

/// The settings this adapter takes.
const SETTINGS: [&str; 5] = ["module", "token_label", "slot_id", "pin_file", "pin_env"];

/// What FerroHSM serves on a passthrough slot, by the backing token's mechanism it needs:
/// a pair the backing token generates, and every hashing form of a signature it makes
/// raw (FerroHSM hashes, so a token that cannot hash in parts — AWS CloudHSM — serves
/// them all). `docs/adapters.md` shows this table; a test keeps the two equal.
pub const OFFERED: &[(MechanismType, u64, &[M])] = &[
    (
        MechanismType::ECC_KEY_PAIR_GEN,
        flags::GENERATE_KEY_PAIR,
        &[M::EC_KEY_PAIR_GEN],
    ),
    (
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        flags::GENERATE_KEY_PAIR,
        &[M::RSA_PKCS_KEY_PAIR_GEN],
    ),
    (
        MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
        flags::GENERATE_KEY_PAIR,
        &[M::EC_EDWARDS_KEY_PAIR_GEN],
    ),
    (
        MechanismType::ECDSA,
        flags::SIGN,
        &[
            M::ECDSA,
            M::ECDSA_SHA1,
            M::ECDSA_SHA224,
            M::ECDSA_SHA256,
            M::ECDSA_SHA384,
            M::ECDSA_SHA512,
        ],
    ),
    (
        MechanismType::RSA_PKCS,
        flags::SIGN,
        &[
            M::RSA_PKCS,
            M::SHA1_RSA_PKCS,
            M::SHA224_RSA_PKCS,
            M::SHA256_RSA_PKCS,
            M::SHA384_RSA_PKCS,
            M::SHA512_RSA_PKCS,
        ],
    ),
    (
        MechanismType::RSA_PKCS_PSS,
        flags::SIGN,
        &[
            M::RSA_PKCS_PSS,
            M::SHA1_RSA_PKCS_PSS,
            M::SHA224_RSA_PKCS_PSS,
            M::SHA256_RSA_PKCS_PSS,
            M::SHA384_RSA_PKCS_PSS,
            M::SHA512_RSA_PKCS_PSS,
        ],
    ),
    (MechanismType::EDDSA, flags::SIGN, &[M::EDDSA]),
];

/// [`OFFERED`] over a backing token that has `backing`.
pub fn capabilities_over(backing: &[MechanismType]) -> Capabilities {
    let ec = flags::EC_F_P | flags::EC_NAMEDCURVE | flags::EC_UNCOMPRESS;
    let mut c = Capabilities::default();
    for (needs, what, ours) in OFFERED {
        if backing.contains(needs) {
            c.0.extend(Capabilities::from_table(ours, what | ec).0);
        }
    }
    c
}

/// [`OFFERED`] as the Markdown table `docs/adapters.md` shows.
pub fn matrix() -> String {
    let mut out = String::from(
        "| FerroHSM mechanism | on a passthrough slot | the backing token needs |\n|---|---|---|\n",
    );
    for (needs, what, ours) in OFFERED {
        let raw = M(u64::from(*needs));
        let needs = format!("`CKM_{}`", raw.name().unwrap_or("?"));
        for m in *ours {
            let what = match (*what == flags::SIGN, *m == raw) {
                (false, _) => "generate a pair there; its private half stays there",
                (true, true) => "sign there; verify in FerroHSM",
                (true, false) => "sign there, the data hashed in FerroHSM; verify in FerroHSM",
            };
            out.push_str(&format!(
                "| `CKM_{}` | {what} | {needs} |\n",
                m.name().unwrap_or("?")
            ));
        }
    }
    out
}

/// Adds this adapter to a build's set.
pub fn register(adapters: Adapters) -> Adapters {
    adapters.with(KIND, factory)
}

/// Which token of the backing module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Label(String),
    Slot(u64),
}

struct Settings {
    module: String,
    which: Which,
    pin: SecretString,
}

fn factory(slot: &SlotConfig) -> std::result::Result<Arc<dyn Adapter>, String> {
    slot.only(&SETTINGS)?;
    let module = slot
        .text("module")?
        .ok_or_else(|| {
            format!(
                "slots (token {}): the pkcs11 adapter needs module = \"/path/to/the/library.so\"",
                slot.token
            )
        })?
        .to_string();
    let which = match (slot.text("token_label")?, slot.number("slot_id")?) {
        (Some(l), None) => Which::Label(l.to_string()),
        (None, Some(n)) if n >= 0 => Which::Slot(n as u64),
        _ => {
            return Err(format!(
                "slots (token {}): the pkcs11 adapter needs token_label or slot_id (one of them)",
                slot.token
            ));
        }
    };
    let pin = secret_setting(slot, "pin")?;
    Ok(Arc::new(Passthrough {
        settings: Settings { module, which, pin },
        conn: Reconnecting::default(),
    }))
}

/// A slot's backing token.
struct Passthrough {
    settings: Settings,
    /// The connection, and the backing token's serial number and what it can do.
    conn: Reconnecting<Conn, (String, Capabilities)>,
}

impl Passthrough {
    fn connect(&self) -> Result<(Conn, (String, Capabilities))> {
        let s = &self.settings;
        let c = Conn::open(&s.module, &s.which, &s.pin)?;
        let seen = (c.serial.clone(), c.capabilities());
        Ok((c, seen))
    }

    /// Runs `f` on the connection (`hardware::Reconnecting`: made on first use, again
    /// after the device went away).
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.conn.with(&self.describe(), || self.connect(), f)
    }

    fn seen(&self) -> Option<(String, Capabilities)> {
        self.conn.seen(&self.describe(), || self.connect())
    }
}

impl Adapter for Passthrough {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn device(&self) -> Option<String> {
        self.seen().map(|s| s.0)
    }

    fn describe(&self) -> String {
        let s = &self.settings;
        match &s.which {
            Which::Label(l) => format!("PKCS#11 token {l:?} of {}", s.module),
            Which::Slot(n) => format!("PKCS#11 slot {n} of {}", s.module),
        }
    }

    fn capabilities(&self) -> Capabilities {
        self.seen().map(|s| s.1).unwrap_or_default()
    }

    fn present(&self) -> bool {
        self.with(|c| c.check()).is_ok()
    }

    fn generate_pair(&self, spec: PairSpec<'_>, id: &[u8]) -> Result<DevicePair> {
        self.with(|c| c.generate_pair(spec, id))
    }

    fn sign(&self, name: &[u8], kind: DeviceKeyKind, op: RawSign<'_>) -> Result<Vec<u8>> {
        self.with(|c| c.sign(name, kind, op))
    }

    fn destroy(&self, name: &[u8]) -> Result<()> {
        self.with(|c| c.destroy(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_matrix_is_the_adapters_table() {
        let doc = include_str!("../../../docs/adapters.md");
        let section = hsm_core::hardware::marked_section(doc, "pkcs11-matrix")
            .expect("docs/adapters.md has the pkcs11-matrix markers");
        assert_eq!(
            section,
            matrix(),
            "docs/adapters.md's matrix is stale; between the markers put:\n{}",
            matrix()
        );
    }

    #[test]
    fn a_backing_token_without_a_mechanism_gets_none_of_its_forms() {
        let c = capabilities_over(&[MechanismType::ECDSA, MechanismType::ECC_KEY_PAIR_GEN]);
        assert!(c.allows(M::ECDSA_SHA256, flags::SIGN));
        assert!(c.allows(M::EC_KEY_PAIR_GEN, flags::GENERATE_KEY_PAIR));
        assert!(!c.allows(M::SHA256_RSA_PKCS, flags::SIGN));
        assert!(
            !c.allows(M::ECDSA_SHA256, flags::VERIFY),
            "verifying is FerroHSM's"
        );
    }

    #[test]
    fn settings_are_checked_before_any_device_is_reached() {
        let parse = |t: &str| {
            hsm_core::config::Config::parse(&format!(
                "store = \"s\"\n[[slots]]\ntoken = 1\nadapter = \"pkcs11\"\n{t}"
            ))
            .unwrap()
            .slots
            .remove(0)
        };
        let err = |t: &str| factory(&parse(t)).err().expect("refused");
        assert!(err("token_label = \"b\"\npin_env = \"X\"\n").contains("module"));
        assert!(err("module = \"m.so\"\npin_env = \"X\"\n").contains("token_label or slot_id"));
        assert!(
            err("module = \"m.so\"\ntoken_label = \"b\"\nslot_id = 1\npin_env = \"X\"\n")
                .contains("one of them")
        );
        assert!(
            err("module = \"m.so\"\ntoken_label = \"b\"\npin_env = \"X\"\nretries = 3\n")
                .contains("\"retries\"")
        );
        assert!(err("module = \"m.so\"\ntoken_label = \"b\"\n").contains("pin_file or pin_env"));
    }
}
