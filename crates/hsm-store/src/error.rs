use hsm_types::{ObjectId, TokenId, VersionNo};

/// Everything the store can answer instead of success. Callers map these to `CKR_*`
/// (hsm-pkcs11) or exit codes (hsm-cli); the messages are written for operators.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store is in use by another process: {holder}")]
    Locked { holder: String },
    #[error(
        "store schema version {found} is newer than this build supports ({supported}); upgrade FerroHSM"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("store has no schema version record; not a FerroHSM store or badly damaged")]
    NotAStore,
    #[error("migration from schema {from} to {to} failed: {reason}")]
    Migration { from: u32, to: u32, reason: String },
    #[error("no space left on the store's device: {0}")]
    NoSpace(String),
    #[error("I/O error in the store: {0}")]
    Io(String),
    #[error("store corruption in {location}: {detail}")]
    Corruption { location: String, detail: String },
    #[error("sealed record {location} failed authentication (edited, swapped or replayed)")]
    Tampered { location: String },
    #[error("token {0} does not exist in this store")]
    TokenNotFound(TokenId),
    #[error("object {1} does not exist on token {0}")]
    ObjectNotFound(TokenId, ObjectId),
    #[error("object {0} has no version {1}")]
    VersionNotFound(ObjectId, VersionNo),
    #[error("incorrect PIN")]
    PinIncorrect { failures: u32, max: u32 },
    #[error("PIN is locked after too many failed attempts")]
    PinLocked,
    #[error("PIN length must be between {min} and {max} characters")]
    PinLenRange { min: u32, max: u32 },
    #[error("the user PIN has not been initialised")]
    UserPinNotInitialized,
    #[error("this operation needs the token's master key: log in first")]
    NotLoggedIn,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("backup refused: {0}")]
    BackupInvalid(String),
    #[error("backup key: {0}")]
    BackupKey(String),
    /// `[audit] required = true` and the operation's audit record could not be written:
    /// the operation was refused (nothing else was written either).
    #[error("the audit record cannot be written, and auditing is required: {0}")]
    AuditUnavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    pub fn corruption(location: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        StoreError::Corruption {
            location: location.into(),
            detail: detail.to_string(),
        }
    }
}
