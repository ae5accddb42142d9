//! The crypto provider seam (the seed's `CryptoEngine`): what the operations ask of the
//! code that holds the algorithms. [`SoftwareProvider`] (aws-lc-rs) is the first and,
//! today, only implementation; the runtime reaches it through
//! [`crate::runtime::Hooks::provider`].
//!
//! Covered so far: randomness, key generation, and turning stored key material into
//! signing and verifying keys (what the prepared-key cache holds). Symmetric ciphers,
//! key wrap and derivation still call `crate::crypto` directly; they move behind this
//! trait with the hardware adapters, which need them to.

mod software;

pub use software::{SoftwareProvider, curve25519_public, rsa_parts};

use crate::crypto::{Curve, EcPrivateParts, RsaPrivateParts, SigningKey, VerifyingKey};
use crate::error::Result;
use crate::hardware::Capabilities;
use hsm_types::{AttributeSet, SecretBytes};

/// A key pair to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairSpec<'a> {
    Rsa {
        bits: u32,
        exponent: Option<&'a [u8]>,
    },
    Ec(Curve),
    Ed25519,
    X25519,
}

/// A generated key pair's material.
pub enum GeneratedPair {
    Rsa(RsaPrivateParts),
    Ec(EcPrivateParts),
    /// Ed25519 or X25519: the 32-byte private value and the 32-byte public key.
    Curve25519 {
        private: SecretBytes,
        public: Vec<u8>,
    },
}

pub trait CryptoProvider: Send + Sync {
    /// A short name for logs and `ferrohsm` output.
    fn name(&self) -> &'static str;
    /// What this provider can do, per mechanism and key type.
    fn capabilities(&self) -> Capabilities;
    fn random(&self, out: &mut [u8]) -> Result<()>;
    fn generate_secret(&self, len: usize) -> Result<SecretBytes>;
    fn generate_pair(&self, spec: PairSpec<'_>) -> Result<GeneratedPair>;
    /// The signing key of a private key object (its material must be present).
    fn signer(&self, key: &AttributeSet) -> Result<SigningKey>;
    /// The verifying key of a public key object.
    fn verifier(&self, key: &AttributeSet) -> Result<VerifyingKey>;
}
