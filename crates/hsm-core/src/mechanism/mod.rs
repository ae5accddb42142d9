//! Mechanisms: the table of what this token offers ([`table`]), the parsed form of a
//! mechanism with its parameters ([`Mechanism`]), and the typed values inside those
//! parameters ([`params`]).

pub mod params;
pub mod table;

pub use params::{EcKdf, HkdfSalt, IvGenerator, Mgf};
pub use table::{MechanismInfo, TABLE, flags, mechanism_info};

use hsm_types::MechanismType as M;
use serde::{Deserialize, Serialize};

/// A mechanism with its parameters, as the FFI layer parsed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mechanism {
    /// A mechanism without parameters.
    Plain(M),
    /// `CK_RSA_PKCS_PSS_PARAMS`
    Pss {
        mechanism: M,
        hash: M,
        mgf: Mgf,
        salt_len: u64,
    },
    /// `CK_GCM_PARAMS`
    Gcm {
        iv: Vec<u8>,
        aad: Vec<u8>,
        tag_bits: u64,
    },
    /// AES-CBC and CBC-PAD (the IV is the parameter) and AES-CTR (`CK_AES_CTR_PARAMS`'s
    /// counter block).
    Iv { mechanism: M, iv: Vec<u8> },
    /// `CK_HKDF_PARAMS`.
    Hkdf {
        extract: bool,
        expand: bool,
        prf: M,
        salt_type: HkdfSalt,
        salt: Vec<u8>,
        info: Vec<u8>,
    },
    /// `CK_RSA_PKCS_OAEP_PARAMS` (the label is the source data).
    Oaep { hash: M, mgf: Mgf, label: Vec<u8> },
    /// `CK_ECDH1_DERIVE_PARAMS`.
    Ecdh {
        kdf: EcKdf,
        shared_data: Vec<u8>,
        public_data: Vec<u8>,
    },
    /// `CK_SP800_108_KDF_PARAMS` / `CK_SP800_108_FEEDBACK_KDF_PARAMS`: the PRF, the PRF
    /// input fields, feedback mode's IV, and the templates of the additional keys.
    Kbkdf {
        mechanism: M,
        prf: M,
        fields: Vec<crate::crypto::KbkdfField>,
        iv: Vec<u8>,
        additional: Vec<hsm_types::AttributeSet>,
    },
}

impl Mechanism {
    pub fn kind(&self) -> M {
        match self {
            Mechanism::Plain(m)
            | Mechanism::Pss { mechanism: m, .. }
            | Mechanism::Iv { mechanism: m, .. } => *m,
            Mechanism::Gcm { .. } => M::AES_GCM,
            Mechanism::Ecdh { .. } => M::ECDH1_DERIVE,
            Mechanism::Oaep { .. } => M::RSA_PKCS_OAEP,
            Mechanism::Hkdf { .. } => M::HKDF_DERIVE,
            Mechanism::Kbkdf { mechanism, .. } => *mechanism,
        }
    }
}
