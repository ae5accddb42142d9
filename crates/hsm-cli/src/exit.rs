//! Errors and the exit codes they map to (documented in `docs/cli.md`).

use hsm_core::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
    /// An integrity check ran and found problems (the report is already printed).
    #[error("{0}")]
    CheckFailed(String),
    /// The key's state or policy does not allow the operation.
    #[error("refused: {0}")]
    Refused(String),
    /// The operation waits for approvals (dual control): the message names the request.
    #[error("approval required: {0}")]
    Pending(String),
    /// A PIN the core refused.
    #[error("{0}")]
    Auth(String),
    /// Another failure reported by the core.
    #[error("{0}")]
    Core(String),
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Io(_) => 1,
            CliError::CheckFailed(_) => 5,
            CliError::Refused(_) => 7,
            CliError::Pending(_) => 8,
            CliError::Core(_) => 1,
            CliError::Auth(_) => 4,
            CliError::Store(e) => match e {
                StoreError::Locked { .. } => 3,
                StoreError::PinIncorrect { .. }
                | StoreError::PinLocked
                | StoreError::PinLenRange { .. }
                | StoreError::UserPinNotInitialized => 4,
                StoreError::BackupKey(_) => 4,
                StoreError::Corruption { .. }
                | StoreError::Tampered { .. }
                | StoreError::NotAStore
                | StoreError::BackupInvalid(_) => 5,
                StoreError::SchemaTooNew { .. } | StoreError::Migration { .. } => 6,
                StoreError::NoSpace(_)
                | StoreError::Io(_)
                | StoreError::TokenNotFound(_)
                | StoreError::ObjectNotFound(..)
                | StoreError::VersionNotFound(..)
                | StoreError::NotLoggedIn
                | StoreError::AuditUnavailable(_)
                | StoreError::Invalid(_) => 1,
            },
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
