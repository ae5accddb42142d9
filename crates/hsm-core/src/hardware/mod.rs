//! The hardware adapter seam (ADR 0007): keys whose material lives in another device — a
//! PKCS#11 module, a YubiHSM 2 — and the capability set that says what each device can do
//! with them. A slot is bound to an adapter by its `[[slots]]` table; the software
//! adapter (FerroHSM's own store and aws-lc-rs) is the default and has no object here.
//!
//! What changes for a device key is only where its private half is: FerroHSM stores the
//! object as for any key, minus the private value, plus [`DeviceKey`] in
//! `CKA_FERRO_DEVICE_KEY` (inside the sealed record, like every attribute). Everything
//! before the signature — the session, the policy verdict, the key's use check, its
//! lifecycle state, approvals, the audit record, metrics — is the same code for both, so
//! nothing there is adapter-specific. The adapters live in their own crates
//! (`hsm-adapter-pkcs11`, …), which pull the vendor libraries; the module and the server
//! register the ones they are built with in [`crate::runtime::Hooks::adapters`].

mod connection;

pub use connection::Reconnecting;

use crate::config::SlotConfig;
use crate::crypto::{CryptoError, CryptoResult, Curve, DeviceKeyKind, DeviceSigner, RawSign};
use crate::error::{Error, Result};
use crate::mechanism::{self, flags};
use crate::provider::PairSpec;
use hsm_types::{AttributeSet, AttributeType as A, KeyType, MechanismType as M};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a device can do with one mechanism (`CKF_*` bits of the mechanism table: sign,
/// verify, encrypt, decrypt, wrap, unwrap, generate, derive, digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub mechanism: M,
    pub min_key: u64,
    pub max_key: u64,
    pub flags: u64,
}

/// Everything a device offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(pub Vec<Capability>);

impl Capabilities {
    /// What the software provider offers: the mechanism table.
    pub fn of_table() -> Capabilities {
        Capabilities(
            mechanism::TABLE
                .iter()
                .map(|(m, i)| Capability {
                    mechanism: *m,
                    min_key: i.min_key,
                    max_key: i.max_key,
                    flags: i.flags,
                })
                .collect(),
        )
    }

    /// Whether `mechanism` is offered with all of `flags`.
    pub fn allows(&self, mechanism: M, flags: u64) -> bool {
        self.0
            .iter()
            .any(|c| c.mechanism == mechanism && c.flags & flags == flags)
    }

    /// The mechanism table's rows for `mechanisms`, with only the `flags` the device
    /// serves for them (what an adapter builds its set from).
    pub fn from_table(mechanisms: &[M], only: u64) -> Capabilities {
        Capabilities(
            mechanisms
                .iter()
                .filter_map(|m| {
                    mechanism::TABLE
                        .iter()
                        .find(|(t, _)| t == m)
                        .map(|(_, i)| Capability {
                            mechanism: *m,
                            min_key: i.min_key,
                            max_key: i.max_key,
                            flags: i.flags & only,
                        })
                })
                .collect(),
        )
    }
}

/// The public half of a key pair made in a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevicePublic {
    /// The uncompressed point `04 || X || Y`.
    Ec {
        point: Vec<u8>,
    },
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// The 32-byte public key.
    Ed25519 {
        public: Vec<u8>,
    },
}

/// A key pair made in a device: the device's name for it and its public half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePair {
    pub name: Vec<u8>,
    pub public: DevicePublic,
}

/// A device that holds keys: what a slot's adapter does. Calls may block on the device;
/// a failure of the transport answers [`Error::DeviceRemoved`], one the device reports
/// [`Error::DeviceError`], a request it cannot serve the `CKR_*` that says so.
pub trait Adapter: Send + Sync {
    /// `pkcs11`, `yubihsm`.
    fn kind(&self) -> &'static str;
    /// Which device, as every reference stores it (a PKCS#11 token's serial number, a
    /// YubiHSM's serial): a key made in one device is never looked for in another.
    /// `None` while the device has not answered yet.
    fn device(&self) -> Option<String>;
    /// A line for logs and `C_GetSlotInfo`.
    fn describe(&self) -> String;
    fn capabilities(&self) -> Capabilities;
    /// Whether the device answers now (`CKF_TOKEN_PRESENT`).
    fn present(&self) -> bool;
    /// Makes a key pair that never leaves the device; `id` is FerroHSM's `CKA_ID` for it.
    fn generate_pair(&self, spec: PairSpec<'_>, id: &[u8]) -> Result<DevicePair>;
    fn sign(&self, name: &[u8], kind: DeviceKeyKind, op: RawSign<'_>) -> Result<Vec<u8>>;
    /// Deletes the key from the device; a key the device no longer has is not an error.
    fn destroy(&self, name: &[u8]) -> Result<()>;
}

/// Builds a slot's adapter from its `[[slots]]` table; `Err` says what is wrong with the
/// settings (a device that does not answer yet is not an error: the adapter connects
/// when first used).
pub type AdapterFactory = fn(&SlotConfig) -> std::result::Result<Arc<dyn Adapter>, String>;

/// The adapters a build knows, by the name `[[slots]] adapter = …` gives.
#[derive(Clone, Default)]
pub struct Adapters(BTreeMap<&'static str, AdapterFactory>);

impl Adapters {
    pub fn with(mut self, kind: &'static str, factory: AdapterFactory) -> Adapters {
        self.0.insert(kind, factory);
        self
    }

    /// The adapter of a slot that is not the software one.
    pub fn build(&self, slot: &SlotConfig) -> std::result::Result<Arc<dyn Adapter>, String> {
        match self.0.get(slot.adapter.as_str()) {
            Some(f) => f(slot),
            None => Err(format!(
                "slots (token {}): this build has no {:?} adapter (it has: software{})",
                slot.token,
                slot.adapter,
                self.0.keys().map(|k| format!(", {k}")).collect::<String>()
            )),
        }
    }
}

/// Where a device key lives, as `CKA_FERRO_DEVICE_KEY` holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    pub adapter: String,
    pub device: String,
    pub name: Vec<u8>,
}

/// The encoding's version, its first byte.
const DEVICE_KEY_FORMAT: u8 = 1;

impl DeviceKey {
    /// `1 || len(adapter) || adapter || len(device) (2 bytes) || device || name`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![DEVICE_KEY_FORMAT, self.adapter.len() as u8];
        v.extend_from_slice(self.adapter.as_bytes());
        v.extend_from_slice(&(self.device.len() as u16).to_be_bytes());
        v.extend_from_slice(self.device.as_bytes());
        v.extend_from_slice(&self.name);
        v
    }

    pub fn decode(b: &[u8]) -> Result<DeviceKey> {
        let bad = || Error::General("CKA_FERRO_DEVICE_KEY is damaged".into());
        let (&format, rest) = b.split_first().ok_or_else(bad)?;
        if format != DEVICE_KEY_FORMAT {
            return Err(bad());
        }
        let (&n, rest) = rest.split_first().ok_or_else(bad)?;
        let adapter = rest.get(..n as usize).ok_or_else(bad)?;
        let rest = &rest[n as usize..];
        let m = u16::from_be_bytes(
            rest.get(..2)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let device = rest.get(2..2 + m as usize).ok_or_else(bad)?;
        Ok(DeviceKey {
            adapter: String::from_utf8(adapter.to_vec()).map_err(|_| bad())?,
            device: String::from_utf8(device.to_vec()).map_err(|_| bad())?,
            name: rest[2 + m as usize..].to_vec(),
        })
    }

    /// The device key of an object, if it is one.
    pub fn of(attrs: &AttributeSet) -> Result<Option<DeviceKey>> {
        attrs
            .bytes(A::FERRO_DEVICE_KEY)
            .map(DeviceKey::decode)
            .transpose()
    }

    /// Checks that `adapter` is the device this key lives in.
    pub fn check(&self, adapter: Option<&Arc<dyn Adapter>>) -> Result<Arc<dyn Adapter>> {
        match adapter.map(|a| (a, a.device())) {
            // A device that does not answer yet: the operation will say so.
            Some((a, None)) if a.kind() == self.adapter => Ok(a.clone()),
            Some((a, Some(d))) if a.kind() == self.adapter && d == self.device => Ok(a.clone()),
            Some((a, d)) => Err(Error::DeviceError(format!(
                "this key lives in {} device {:?}, but its slot is bound to {} ({}, device {})",
                self.adapter,
                self.device,
                a.kind(),
                a.describe(),
                d.as_deref().unwrap_or("not answering")
            ))),
            None => Err(Error::DeviceError(format!(
                "this key lives in {} device {:?}, but its slot has no adapter \
                 (check [[slots]] in the configuration)",
                self.adapter, self.device
            ))),
        }
    }
}

/// The kind of key a device key object describes (its stored public attributes).
pub(crate) fn key_kind(attrs: &AttributeSet) -> Result<DeviceKeyKind> {
    match attrs.key_type() {
        Some(KeyType::EC) => Curve::from_ec_params(attrs.bytes(A::EC_PARAMS).unwrap_or_default())
            .map(DeviceKeyKind::Ec)
            .ok_or(Error::KeyTypeInconsistent),
        Some(KeyType::RSA) => {
            let n = attrs.bytes(A::MODULUS).ok_or(Error::KeyTypeInconsistent)?;
            let lead = n.iter().take_while(|b| **b == 0).count();
            Ok(DeviceKeyKind::Rsa {
                bits: (n.len() - lead) * 8,
            })
        }
        Some(KeyType::EC_EDWARDS) => Ok(DeviceKeyKind::Ed25519),
        _ => Err(Error::KeyTypeInconsistent),
    }
}

/// A device key ready to sign: its adapter and its name there.
pub(crate) struct DeviceKeySigner {
    pub adapter: Arc<dyn Adapter>,
    pub name: Vec<u8>,
    pub kind: DeviceKeyKind,
}

impl DeviceSigner for DeviceKeySigner {
    fn kind(&self) -> DeviceKeyKind {
        self.kind
    }

    fn sign(&self, op: RawSign<'_>) -> CryptoResult<Vec<u8>> {
        self.adapter
            .sign(&self.name, self.kind, op)
            .map_err(|e| match e {
                Error::DeviceRemoved(m) => CryptoError::DeviceRemoved(m),
                Error::MechanismInvalid => CryptoError::MechanismInvalid,
                Error::DataLenRange => CryptoError::DataLenRange,
                other => CryptoError::Device(other.to_string()),
            })
    }
}

/// The signing key of a device key object on a slot bound to `adapter`.
pub(crate) fn signer(
    adapter: Option<&Arc<dyn Adapter>>,
    key: &DeviceKey,
    attrs: &AttributeSet,
) -> Result<crate::crypto::SigningKey> {
    Ok(crate::crypto::SigningKey::device(Box::new(
        DeviceKeySigner {
            adapter: key.check(adapter)?,
            name: key.name.clone(),
            kind: key_kind(attrs)?,
        },
    )))
}

/// The part of `doc` between `<!-- marker -->` and `<!-- /marker -->` (each on a line of
/// its own): where `docs/adapters.md` holds a table an adapter generates, which the
/// adapter's test compares with what its code says.
pub fn marked_section<'a>(doc: &'a str, marker: &str) -> Option<&'a str> {
    let rest = doc.split_once(&format!("<!-- {marker} -->\n"))?.1;
    Some(rest.split_once(&format!("<!-- /{marker} -->"))?.0)
}

/// The key-pair generation mechanism of a pair spec (for capability checks).
pub fn pair_mechanism(spec: PairSpec<'_>) -> M {
    match spec {
        PairSpec::Rsa { .. } => M::RSA_PKCS_KEY_PAIR_GEN,
        PairSpec::Ec(_) => M::EC_KEY_PAIR_GEN,
        PairSpec::Ed25519 => M::EC_EDWARDS_KEY_PAIR_GEN,
        PairSpec::X25519 => M::EC_MONTGOMERY_KEY_PAIR_GEN,
    }
}

/// Refuses a generation the device cannot do.
pub(crate) fn check_generate(a: &dyn Adapter, spec: PairSpec<'_>) -> Result<()> {
    if a.capabilities()
        .allows(pair_mechanism(spec), flags::GENERATE_KEY_PAIR)
    {
        Ok(())
    } else {
        Err(Error::MechanismInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_software_capabilities_are_the_mechanism_table() {
        let c = Capabilities::of_table();
        assert_eq!(c.0.len(), mechanism::TABLE.len());
        assert!(c.allows(M::ECDSA, flags::SIGN | flags::VERIFY));
        assert!(!c.allows(M::ECDSA, flags::ENCRYPT));
        assert!(c.allows(M::AES_GCM, flags::MESSAGE_ENCRYPT));
    }

    #[test]
    fn a_device_key_reference_round_trips_and_damage_is_refused() {
        let k = DeviceKey {
            adapter: "pkcs11".into(),
            device: "a1b2c3".into(),
            name: vec![0, 1, 2, 255],
        };
        assert_eq!(DeviceKey::decode(&k.encode()).unwrap(), k);
        let e = k.encode();
        for cut in [0, 1, 3, 5] {
            assert!(DeviceKey::decode(&e[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = e.clone();
        other[0] = 2;
        assert!(DeviceKey::decode(&other).is_err(), "an unknown format");
    }

    #[test]
    fn a_key_is_used_only_on_the_device_it_lives_in() {
        let k = DeviceKey {
            adapter: "pkcs11".into(),
            device: "serial-1".into(),
            name: b"id".to_vec(),
        };
        let e = k.check(None).err().unwrap();
        assert!(
            matches!(&e, Error::DeviceError(m) if m.contains("serial-1")),
            "{e}"
        );
    }
}
