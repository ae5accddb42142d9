//! The lifecycle room: the vocabulary of key versions that the key-lifecycle work builds
//! on. The store already keeps a version history per object (`Store::versions`,
//! `Store::rollback`); rotating, disabling, scheduling destruction and restoring are not
//! offered through any interface yet, and nothing here pretends they are.

/// The state of one version of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionState {
    /// Usable within the key's policy.
    Enabled,
    /// Kept, but refused for every use until enabled again.
    Disabled,
    /// Refused for every use; its material is erased at `deadline` (seconds since the
    /// Unix epoch) unless restored before.
    DestroyScheduled { deadline: u64 },
    /// Material erased; a tombstone keeps the number, which is never reused.
    Destroyed,
}

impl VersionState {
    /// Whether a version in this state may be used at all.
    pub fn usable(self) -> bool {
        self == VersionState::Enabled
    }
}
