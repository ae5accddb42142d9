//! Operations: what a call does ([`Action`], the unit the policy engine, the audit log and
//! the metrics see), and the operations a session has in progress (`Ops`, one slot per
//! [`OpKind`]). One file per family: sign and verify, ciphers, message-based GCM, key
//! generation, wrap and unwrap, derivation, digest and random.

mod cipher;
mod derive;
mod digest;
mod keygen;
mod message;
mod sign;
mod within;
mod wrap;

pub use message::GcmMessage;

pub(crate) use cipher::CipherOp;
pub(crate) use digest::DigestOp;
pub(crate) use message::MessageOp;
pub(crate) use sign::SignOp;

use crate::error::{Error, Result};
use crate::runtime::{Hsm, lock};

/// The operations a session can have in progress, one of each at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OpKind {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    MessageEncrypt,
    MessageDecrypt,
    Digest,
    Find,
}

impl OpKind {
    const ALL: [OpKind; 8] = [
        OpKind::Sign,
        OpKind::Verify,
        OpKind::Encrypt,
        OpKind::Decrypt,
        OpKind::MessageEncrypt,
        OpKind::MessageDecrypt,
        OpKind::Digest,
        OpKind::Find,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a call into the core does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    Logout,
    InitToken,
    InitPin,
    SetPin,
    CreateObject,
    CopyObject,
    DestroyObject,
    ReadObject,
    SetAttributes,
    GenerateKey,
    GenerateKeyPair,
    WrapKey,
    UnwrapKey,
    DeriveKey,
    /// `C_*Init`: an operation starts (with its key, if it has one).
    Start(OpKind),
    /// An update, final, single-part call or length query of an operation in progress.
    Continue(OpKind),
    Random,
    SeedRandom,
    /// A key-lifecycle transition or listing ([`crate::Hsm::lifecycle`]).
    Lifecycle,
}

impl Action {
    /// Whether the call computes with keys or randomness, which a module in its error
    /// state refuses. Continuing an operation needs no check: none can have started.
    pub fn performs_cryptography(self) -> bool {
        match self {
            Action::GenerateKey
            | Action::GenerateKeyPair
            | Action::WrapKey
            | Action::UnwrapKey
            | Action::DeriveKey
            | Action::Random => true,
            Action::Start(k) => k != OpKind::Find,
            _ => false,
        }
    }
}

/// The operation in progress of one kind, with its state.
pub(crate) enum Operation {
    Sign(SignOp),
    Cipher(CipherOp),
    Message(MessageOp),
    Digest(DigestOp),
    Find(FindOp),
}

/// A search's matches, fixed at `C_FindObjectsInit`, and how many were handed out.
pub(crate) struct FindOp {
    pub found: Vec<u64>,
    pub pos: usize,
}

/// The state types of [`Operation`], so a session's operations are read by type.
pub(crate) trait OpState: Sized {
    fn wrap(self) -> Operation;
    fn of(op: &Operation) -> Option<&Self>;
    fn of_mut(op: &mut Operation) -> Option<&mut Self>;
    fn unwrap(op: Operation) -> Option<Self>;
}

macro_rules! op_state {
    ($($variant:ident($t:ty)),* $(,)?) => {$(
        impl OpState for $t {
            fn wrap(self) -> Operation {
                Operation::$variant(self)
            }
            fn of(op: &Operation) -> Option<&Self> {
                match op {
                    Operation::$variant(s) => Some(s),
                    _ => None,
                }
            }
            fn of_mut(op: &mut Operation) -> Option<&mut Self> {
                match op {
                    Operation::$variant(s) => Some(s),
                    _ => None,
                }
            }
            fn unwrap(op: Operation) -> Option<Self> {
                match op {
                    Operation::$variant(s) => Some(s),
                    _ => None,
                }
            }
        }
    )*};
}

op_state!(
    Sign(SignOp),
    Cipher(CipherOp),
    Message(MessageOp),
    Digest(DigestOp),
    Find(FindOp),
);

/// A session's operations in progress: at most one per [`OpKind`].
#[derive(Default)]
pub(crate) struct Ops {
    slots: [Option<Operation>; 8],
}

impl Ops {
    pub fn is_active(&self, k: OpKind) -> bool {
        self.slots[k.index()].is_some()
    }

    /// Installs an operation of kind `k` (the caller checked none was active).
    pub fn put<T: OpState>(&mut self, k: OpKind, op: T) {
        self.slots[k.index()] = Some(op.wrap());
    }

    pub fn get<T: OpState>(&self, k: OpKind) -> Result<&T> {
        self.slots[k.index()]
            .as_ref()
            .and_then(T::of)
            .ok_or(Error::OperationNotInitialized)
    }

    pub fn get_mut<T: OpState>(&mut self, k: OpKind) -> Result<&mut T> {
        self.slots[k.index()]
            .as_mut()
            .and_then(T::of_mut)
            .ok_or(Error::OperationNotInitialized)
    }

    /// Ends the operation of kind `k` and hands back its state.
    pub fn take<T: OpState>(&mut self, k: OpKind) -> Result<T> {
        self.slots[k.index()]
            .take()
            .and_then(T::unwrap)
            .ok_or(Error::OperationNotInitialized)
    }

    pub fn end(&mut self, k: OpKind) {
        self.slots[k.index()] = None;
    }

    /// At logout every operation that may use a private key or show private objects
    /// ends; a digest goes on.
    pub fn end_at_logout(&mut self) {
        for k in OpKind::ALL {
            if k != OpKind::Digest {
                self.end(k);
            }
        }
    }

    /// A context-specific login happened: the sign operation that waited for it goes
    /// on, or else the decrypt operation.
    pub fn context_login_done(&mut self) {
        if let Ok(op) = self.get_mut::<SignOp>(OpKind::Sign)
            && op.needs_context_login
        {
            op.needs_context_login = false;
            return;
        }
        if let Ok(op) = self.get_mut::<CipherOp>(OpKind::Decrypt) {
            op.needs_context_login = false;
        }
    }
}

impl Hsm {
    /// Ends the given operations of a session (`C_SessionCancel`, and bad input that
    /// terminates an operation).
    pub fn cancel(&self, h: u64, kinds: &[OpKind]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = lock(&s.ops);
        for k in kinds {
            ops.end(*k);
        }
        Ok(())
    }

    /// Whether an operation of this kind is active (for the output-length convention:
    /// a length query leaves it active).
    pub fn has_operation(&self, h: u64, op: OpKind) -> Result<bool> {
        let s = self.session(h)?;
        Ok(lock(&s.ops).is_active(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operation_per_kind_read_by_type() {
        let mut ops = Ops::default();
        assert!(!ops.is_active(OpKind::Find));
        ops.put(
            OpKind::Find,
            FindOp {
                found: vec![7, 8],
                pos: 0,
            },
        );
        assert!(ops.is_active(OpKind::Find));
        assert!(matches!(
            ops.get::<DigestOp>(OpKind::Find),
            Err(Error::OperationNotInitialized)
        ));
        ops.get_mut::<FindOp>(OpKind::Find).unwrap().pos = 1;
        assert_eq!(ops.get::<FindOp>(OpKind::Find).unwrap().pos, 1);
        ops.end_at_logout();
        assert!(!ops.is_active(OpKind::Find));
        assert!(matches!(
            ops.take::<FindOp>(OpKind::Find),
            Err(Error::OperationNotInitialized)
        ));
    }

    #[test]
    fn op_kinds_index_their_own_slot() {
        for (i, k) in OpKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }
}
