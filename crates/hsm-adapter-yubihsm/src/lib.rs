//! The YubiHSM 2 adapter (ADR 0007, `docs/adapters.md`): a FerroHSM slot whose key pairs
//! live in a YubiHSM 2, reached through `yubihsm-connector`'s HTTP API. FerroHSM keeps
//! the object and a reference (the device's serial number and the key's object id);
//! the key is generated in the device with only the capability to sign, and every
//! signature is made there.
//!
//! ```toml
//! [[slots]]
//! token = 2
//! adapter = "yubihsm"
//! connector = "http://127.0.0.1:12345"   # yubihsm-connector
//! auth_key_id = 1
//! password_file = "/etc/ferrohsm/yubihsm.password"   # or password_env
//! domain = 1                              # 1–16, the domain keys are made in
//! ```
//!
//! What it serves is P-256, P-384 and P-521 ECDSA and Ed25519 key pairs: the `yubihsm`
//! crate (0.42) signs RSA only over a SHA-256 it computes itself, and its PSS form is
//! broken, so RSA is not offered. The crate's MockHsm (`connector = "mockhsm"`, in builds
//! with this crate's `mockhsm` feature, which are test builds) serves P-256 and Ed25519.

#![forbid(unsafe_code)]

use hsm_core::config::{SlotConfig, secret_setting};
use hsm_core::crypto::{Curve, DeviceKeyKind, RawSign};
use hsm_core::hardware::{Adapter, Adapters, Capabilities, DevicePair, DevicePublic, Reconnecting};
use hsm_core::mechanism::flags;
use hsm_core::provider::PairSpec;
use hsm_core::{Error, Result};
use hsm_types::MechanismType as M;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use yubihsm::{Capability, Client, Connector, Credentials, Domain, asymmetric, object};

/// The name `[[slots]] adapter = …` gives this adapter.
pub const KIND: &str = "yubihsm";

const SETTINGS: [&str; 5] = [
    "connector",
    "auth_key_id",
    "password_file",
    "password_env",
    "domain",
];

/// Adds this adapter to a build's set.
pub fn register(adapters: Adapters) -> Adapters {
    adapters.with(KIND, factory)
}

/// The mechanisms a YubiHSM slot serves (`docs/adapters.md` shows them; a test keeps the
/// two equal).
pub const OFFERED: &[(M, u64)] = &[
    (M::EC_KEY_PAIR_GEN, flags::GENERATE_KEY_PAIR),
    (M::EC_EDWARDS_KEY_PAIR_GEN, flags::GENERATE_KEY_PAIR),
    (M::ECDSA, flags::SIGN),
    (M::ECDSA_SHA1, flags::SIGN),
    (M::ECDSA_SHA224, flags::SIGN),
    (M::ECDSA_SHA256, flags::SIGN),
    (M::ECDSA_SHA384, flags::SIGN),
    (M::ECDSA_SHA512, flags::SIGN),
    (M::EDDSA, flags::SIGN),
];

fn capabilities() -> Capabilities {
    let ec = flags::EC_F_P | flags::EC_NAMEDCURVE | flags::EC_UNCOMPRESS;
    let mut c = Capabilities::default();
    for (m, f) in OFFERED {
        c.0.extend(Capabilities::from_table(&[*m], f | ec).0);
    }
    c
}

/// [`OFFERED`] as the Markdown table `docs/adapters.md` shows.
pub fn matrix() -> String {
    let mut out = String::from("| FerroHSM mechanism | on a YubiHSM slot |\n|---|---|\n");
    for (m, f) in OFFERED {
        let what = match (*f == flags::SIGN, *m) {
            (false, M::EC_KEY_PAIR_GEN) => "generate a P-256, P-384 or P-521 pair there",
            (false, _) => "generate an Ed25519 pair there",
            (true, M::ECDSA | M::EDDSA) => "sign there; verify in FerroHSM",
            (true, _) => "sign there, the data hashed in FerroHSM; verify in FerroHSM",
        };
        out.push_str(&format!("| `CKM_{}` | {what} |\n", m.name().unwrap_or("?")));
    }
    out
}

fn factory(slot: &SlotConfig) -> std::result::Result<Arc<dyn Adapter>, String> {
    slot.only(&SETTINGS)?;
    let named = slot.text("connector")?.ok_or_else(|| {
        format!(
            "slots (token {}): the yubihsm adapter needs connector = \"http://host:port\"",
            slot.token
        )
    })?;
    let connector = connector(slot.token, named)?;
    let auth = slot.number("auth_key_id")?.unwrap_or(1);
    let auth = object::Id::try_from(auth)
        .map_err(|_| format!("slots (token {}): auth_key_id must be 0–65535", slot.token))?;
    let domain = match slot.number("domain")?.unwrap_or(1) {
        n @ 1..=16 => Domain::at(n as usize)
            .map_err(|e| format!("slots (token {}): domain {n}: {e}", slot.token))?,
        n => {
            return Err(format!(
                "slots (token {}): domain {n}: a YubiHSM has domains 1–16",
                slot.token
            ));
        }
    };
    let password = if named == "mockhsm" && slot.text("password_file")?.is_none() {
        // The mock's own credentials (auth key 1, "password"), for tests.
        None
    } else {
        Some(secret_setting(slot, "password")?)
    };
    let credentials = match password {
        Some(p) => Credentials::from_password(auth, p.expose().as_bytes()),
        None => Credentials::default(),
    };
    Ok(Arc::new(YubiHsm {
        named: named.to_string(),
        connector,
        credentials,
        domain,
        conn: Reconnecting::default(),
    }))
}

/// The connector a `connector` setting names.
fn connector(token: u32, named: &str) -> std::result::Result<Connector, String> {
    if named == "mockhsm" {
        return mock(token);
    }
    let Some(rest) = named.strip_prefix("http://") else {
        return Err(format!(
            "slots (token {token}): connector {named:?}: expected http://host:port \
             (yubihsm-connector; USB is not in this build)"
        ));
    };
    let (addr, port) = rest.trim_end_matches('/').rsplit_once(':').ok_or_else(|| {
        format!("slots (token {token}): connector {named:?}: expected http://host:port")
    })?;
    let port = port
        .parse()
        .map_err(|_| format!("slots (token {token}): connector {named:?}: bad port"))?;
    Ok(Connector::http(&yubihsm::HttpConfig {
        addr: addr.to_string(),
        port,
        timeout_ms: 5000,
    }))
}

#[cfg(feature = "mockhsm")]
fn mock(_token: u32) -> std::result::Result<Connector, String> {
    Ok(Connector::mockhsm())
}

#[cfg(not(feature = "mockhsm"))]
fn mock(token: u32) -> std::result::Result<Connector, String> {
    Err(format!(
        "slots (token {token}): connector \"mockhsm\" exists in test builds only"
    ))
}

struct YubiHsm {
    named: String,
    /// Kept for reconnecting: a MockHsm's keys live in its connector.
    connector: Connector,
    credentials: Credentials,
    domain: Domain,
    /// The session, and the device's serial number.
    conn: Reconnecting<Client, String>,
}

impl YubiHsm {
    /// Opens a session and reads the device's serial number. The client may panic (the
    /// MockHsm does on what it does not model): that is a device error, not a crash.
    fn connect(&self) -> Result<(Client, String)> {
        let opened = catch_unwind(AssertUnwindSafe(|| {
            let c = Client::open(self.connector.clone(), self.credentials.clone(), true)?;
            let info = c.device_info()?;
            Ok::<_, yubihsm::client::Error>((c, info.serial_number.to_string()))
        }));
        match opened {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(Error::DeviceRemoved(e.to_string())),
            Err(_) => Err(Error::DeviceError("the YubiHSM client panicked".into())),
        }
    }

    /// Runs `f` with a session (`hardware::Reconnecting`: opened on first use, again
    /// after a transport failure); a panic inside the client drops the session too.
    fn with<T>(&self, f: impl FnOnce(&Client) -> Result<T>) -> Result<T> {
        self.conn.with(
            &self.describe(),
            || self.connect(),
            |c| {
                catch_unwind(AssertUnwindSafe(|| f(c))).unwrap_or_else(|_| {
                    Err(Error::DeviceRemoved("the YubiHSM client panicked".into()))
                })
            },
        )
    }
}

/// A client error as a `CKR_*`: the transport gone, or an error the device reported.
fn map(e: yubihsm::client::Error, what: &str) -> Error {
    use yubihsm::client::ErrorKind as K;
    match e.kind() {
        K::ProtocolError | K::ConnectorError | K::ClosedSessionError | K::CreateFailed => {
            Error::DeviceRemoved(format!("{what}: {e}"))
        }
        _ => Error::DeviceError(format!("{what}: {e}")),
    }
}

impl Adapter for YubiHsm {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn device(&self) -> Option<String> {
        self.conn.seen(&self.describe(), || self.connect())
    }

    fn describe(&self) -> String {
        format!("YubiHSM 2 at {}", self.named)
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn present(&self) -> bool {
        self.with(|c| c.device_info().map(drop).map_err(|e| map(e, "Device Info")))
            .is_ok()
    }

    fn generate_pair(&self, spec: PairSpec<'_>, _id: &[u8]) -> Result<DevicePair> {
        let (algorithm, capability) = match spec {
            PairSpec::Ec(Curve::P256) => (asymmetric::Algorithm::EcP256, Capability::SIGN_ECDSA),
            PairSpec::Ec(Curve::P384) => (asymmetric::Algorithm::EcP384, Capability::SIGN_ECDSA),
            PairSpec::Ec(Curve::P521) => (asymmetric::Algorithm::EcP521, Capability::SIGN_ECDSA),
            PairSpec::Ed25519 => (asymmetric::Algorithm::Ed25519, Capability::SIGN_EDDSA),
            _ => return Err(Error::MechanismInvalid),
        };
        self.with(|c| {
            let id = free_id(c)?;
            let label = object::Label::from_bytes(b"ferrohsm")
                .map_err(|e| Error::General(e.to_string()))?;
            c.generate_asymmetric_key(id, label, self.domain, capability, algorithm)
                .map_err(|e| map(e, "Generate Asymmetric Key"))?;
            let public = c.get_public_key(id).map_err(|e| map(e, "Get Public Key"))?;
            let bytes = public.as_slice().to_vec();
            let public = match spec {
                // The device gives X || Y; PKCS#11 wants the uncompressed point.
                PairSpec::Ec(_) => DevicePublic::Ec {
                    point: [&[0x04][..], &bytes].concat(),
                },
                _ => DevicePublic::Ed25519 { public: bytes },
            };
            Ok(DevicePair {
                name: id.to_be_bytes().to_vec(),
                public,
            })
        })
    }

    fn sign(&self, name: &[u8], kind: DeviceKeyKind, op: RawSign<'_>) -> Result<Vec<u8>> {
        let id = key_id(name)?;
        match (kind, op) {
            (DeviceKeyKind::Ec(curve), RawSign::Ecdsa(digest)) => {
                let digest = fit_digest(digest, curve.field_len());
                let der = self.with(|c| {
                    c.sign_ecdsa_prehash_raw(id, digest)
                        .map_err(|e| map(e, "Sign ECDSA"))
                })?;
                raw_signature(&der, curve.field_len())
            }
            (DeviceKeyKind::Ed25519, RawSign::Eddsa(data)) => self.with(|c| {
                c.sign_ed25519(id, data)
                    .map(|s| s.to_bytes().to_vec())
                    .map_err(|e| map(e, "Sign EdDSA"))
            }),
            _ => Err(Error::MechanismInvalid),
        }
    }

    fn destroy(&self, name: &[u8]) -> Result<()> {
        let id = key_id(name)?;
        self.with(|c| match c.delete_object(id, object::Type::AsymmetricKey) {
            Ok(()) => Ok(()),
            Err(e) if e.device_error() == Some(yubihsm::device::ErrorKind::ObjectNotFound) => {
                Ok(())
            }
            Err(e) => Err(map(e, "Delete Object")),
        })
    }
}

/// An object id no asymmetric key of the device has (ids are 1–65534; the device's own
/// "pick one" is id 0, which the MockHsm does not model).
fn free_id(c: &Client) -> Result<object::Id> {
    let taken: std::collections::BTreeSet<object::Id> = c
        .list_objects(&[object::Filter::Type(object::Type::AsymmetricKey)])
        .map_err(|e| map(e, "List Objects"))?
        .into_iter()
        .map(|o| o.object_id)
        .collect();
    (0x100..0xFFFE)
        .find(|id| !taken.contains(id))
        .ok_or_else(|| Error::DeviceMemory("the YubiHSM has no free object id".into()))
}

fn key_id(name: &[u8]) -> Result<object::Id> {
    <[u8; 2]>::try_from(name)
        .map(u16::from_be_bytes)
        .map_err(|_| Error::DeviceError("a YubiHSM key reference is two bytes".into()))
}

/// A digest as ECDSA uses it for a curve of `n`-byte order: its leftmost `n` bytes, or
/// left-padded with zeros (the device takes exactly `n`).
fn fit_digest(digest: &[u8], n: usize) -> Vec<u8> {
    if digest.len() >= n {
        digest[..n].to_vec()
    } else {
        let mut v = vec![0u8; n - digest.len()];
        v.extend_from_slice(digest);
        v
    }
}

/// `r || s`, each `n` bytes, from the DER `SEQUENCE { INTEGER r, INTEGER s }` the device
/// answers.
fn raw_signature(der: &[u8], n: usize) -> Result<Vec<u8>> {
    let bad = || Error::DeviceError("the YubiHSM's ECDSA signature is not DER".into());
    let body = match der {
        [0x30, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        [0x30, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => return Err(bad()),
    };
    let mut out = Vec::with_capacity(2 * n);
    let mut rest = body;
    for _ in 0..2 {
        let [0x02, len, tail @ ..] = rest else {
            return Err(bad());
        };
        let len = usize::from(*len);
        let int = tail.get(..len).ok_or_else(bad)?;
        let int = &int[int.iter().take_while(|b| **b == 0).count()..];
        if int.len() > n {
            return Err(bad());
        }
        out.extend(std::iter::repeat_n(0, n - int.len()));
        out.extend_from_slice(int);
        rest = &tail[len..];
    }
    if rest.is_empty() { Ok(out) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_matrix_is_the_adapters_table() {
        let doc = include_str!("../../../docs/adapters.md");
        let section = hsm_core::hardware::marked_section(doc, "yubihsm-matrix")
            .expect("docs/adapters.md has the yubihsm-matrix markers");
        assert_eq!(
            section,
            matrix(),
            "docs/adapters.md's matrix is stale; between the markers put:\n{}",
            matrix()
        );
    }

    /// The adapter over the crate's MockHsm: a key destroyed through it is gone from the
    /// device, and destroying it again is no error.
    #[cfg(feature = "mockhsm")]
    #[test]
    fn a_destroyed_key_leaves_the_device() {
        let slot = hsm_core::config::Config::parse(
            "store = \"s\"\n[[slots]]\ntoken = 1\nadapter = \"yubihsm\"\nconnector = \"mockhsm\"\n",
        )
        .unwrap()
        .slots
        .remove(0);
        let a = factory(&slot).unwrap();
        let made = a.generate_pair(PairSpec::Ec(Curve::P256), &[]).unwrap();
        let id = key_id(&made.name).unwrap();
        let signed = a.sign(
            &made.name,
            DeviceKeyKind::Ec(Curve::P256),
            RawSign::Ecdsa(&[7; 32]),
        );
        assert_eq!(signed.unwrap().len(), 64);
        a.destroy(&made.name).unwrap();
        let gone = a.sign(
            &made.name,
            DeviceKeyKind::Ec(Curve::P256),
            RawSign::Ecdsa(&[7; 32]),
        );
        assert!(
            matches!(gone, Err(Error::DeviceError(_))),
            "key {id} still signs: {gone:?}"
        );
        a.destroy(&made.name)
            .expect("a key already gone is no error");
    }

    #[test]
    fn der_signatures_become_fixed_width_r_and_s() {
        // r with a leading zero (high bit set), s short.
        let mut der = vec![0x30, 0x00, 0x02, 0x21, 0x00];
        der.extend([0xff; 32]);
        der.extend([0x02, 0x02, 0x01, 0x02]);
        der[1] = (der.len() - 2) as u8;
        let raw = raw_signature(&der, 32).unwrap();
        assert_eq!(&raw[..32], &[0xff; 32]);
        assert_eq!(&raw[32..62], &[0; 30]);
        assert_eq!(&raw[62..], &[1, 2]);
        assert!(
            raw_signature(&der[..der.len() - 1], 32).is_err(),
            "cut short"
        );
        assert!(raw_signature(&[0x31, 0], 32).is_err(), "not a SEQUENCE");
    }

    #[test]
    fn digests_fit_the_curve() {
        assert_eq!(fit_digest(&[1; 48], 32), vec![1; 32]);
        assert_eq!(fit_digest(&[1; 20], 32)[..12], [0; 12]);
        assert_eq!(fit_digest(&[1; 64], 66).len(), 66);
    }

    #[test]
    fn settings_are_checked_before_the_device_is_reached() {
        let parse = |t: &str| {
            hsm_core::config::Config::parse(&format!(
                "store = \"s\"\n[[slots]]\ntoken = 1\nadapter = \"yubihsm\"\n{t}"
            ))
            .unwrap()
            .slots
            .remove(0)
        };
        let err = |t: &str| factory(&parse(t)).err().expect("refused");
        assert!(err("password_env = \"X\"\n").contains("connector"));
        assert!(err("connector = \"usb\"\npassword_env = \"X\"\n").contains("USB"));
        assert!(err("connector = \"http://h\"\npassword_env = \"X\"\n").contains("host:port"));
        assert!(
            err("connector = \"http://h:1\"\npassword_env = \"X\"\ndomain = 17\n").contains("1–16")
        );
        assert!(err("connector = \"http://h:1\"\n").contains("password_file or password_env"));
        assert!(
            err("connector = \"http://h:1\"\npassword_env = \"X\"\nserial = 3\n")
                .contains("\"serial\"")
        );
    }
}
