//! The hardware adapter seam (seed §3): keys whose material lives in another device — a
//! PKCS#11 module, a YubiHSM 2 — and the capability set that says what each device can do
//! with them. The software provider is the default adapter; no other adapter exists yet,
//! so these traits have no implementation in this crate (the adapters live in their own
//! crates, which pull the vendor libraries).

use crate::error::Result;
use crate::mechanism::{self, Mechanism};
use hsm_types::{AttributeSet, MechanismType as M};

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
}

/// A device's own name for a key (a PKCS#11 `CKA_ID`, a YubiHSM object id), opaque here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef(pub Vec<u8>);

/// A device that holds keys.
pub trait HardwareKeyStore: Send + Sync {
    fn name(&self) -> &str;
    fn capabilities(&self) -> &Capabilities;
    /// Generates a key in the device, from the attributes FerroHSM decided on; returns
    /// the device's reference and the public attributes to store beside it.
    fn generate(
        &self,
        mechanism: &Mechanism,
        template: &AttributeSet,
    ) -> Result<(KeyRef, AttributeSet)>;
    fn destroy(&self, key: &KeyRef) -> Result<()>;
}

/// A device that signs with the keys it holds.
pub trait HardwareSigner: Send + Sync {
    fn sign(&self, key: &KeyRef, mechanism: &Mechanism, data: &[u8]) -> Result<Vec<u8>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::flags;

    #[test]
    fn the_software_capabilities_are_the_mechanism_table() {
        let c = Capabilities::of_table();
        assert_eq!(c.0.len(), mechanism::TABLE.len());
        assert!(c.allows(M::ECDSA, flags::SIGN | flags::VERIFY));
        assert!(!c.allows(M::ECDSA, flags::ENCRYPT));
        assert!(c.allows(M::AES_GCM, flags::MESSAGE_ENCRYPT));
    }
}
