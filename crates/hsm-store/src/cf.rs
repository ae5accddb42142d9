//! Column families: every name in one place (`schema/format.md` lists the same).

/// A column family of the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Cf {
    /// Schema version, store id, token records (wrapped master keys, KDF parameters),
    /// PIN failure counters, id counters.
    Meta,
    /// Object headers: current version, wrapped per-object keys.
    Objects,
    /// Sealed attribute sets, one per object version.
    Attributes,
    /// Version records: time, parent, cause.
    Versions,
    IdxClass,
    IdxLabel,
    /// `CKA_ID`: the attribute clients search by most.
    IdxId,
    IdxKeyType,
    /// One entry per mechanism in `CKA_ALLOWED_MECHANISMS`.
    IdxMechanism,
    /// The audit log (schema 5): records and signed checkpoints, per token, in order.
    Audit,
}

impl Cf {
    pub const ALL: [Cf; 10] = [
        Cf::Meta,
        Cf::Objects,
        Cf::Attributes,
        Cf::Versions,
        Cf::IdxClass,
        Cf::IdxLabel,
        Cf::IdxId,
        Cf::IdxKeyType,
        Cf::IdxMechanism,
        Cf::Audit,
    ];
    pub const INDEXES: [Cf; 5] = [
        Cf::IdxClass,
        Cf::IdxLabel,
        Cf::IdxId,
        Cf::IdxKeyType,
        Cf::IdxMechanism,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Cf::Meta => "meta",
            Cf::Objects => "objects",
            Cf::Attributes => "attributes",
            Cf::Versions => "versions",
            Cf::IdxClass => "idx_class",
            Cf::IdxLabel => "idx_label",
            Cf::IdxId => "idx_id",
            Cf::IdxKeyType => "idx_key_type",
            Cf::IdxMechanism => "idx_mechanism",
            Cf::Audit => "audit",
        }
    }

    /// Fixed key-prefix length that scans of this family use (`schema/format.md`): the
    /// index value prefix, or an object's key for its history.
    pub const fn prefix_len(self) -> Option<usize> {
        match self {
            Cf::IdxClass | Cf::IdxLabel | Cf::IdxId | Cf::IdxKeyType | Cf::IdxMechanism => {
                Some(4 + 1 + crate::keys::DIGEST_LEN)
            }
            Cf::Versions | Cf::Attributes => Some(12),
            Cf::Meta | Cf::Objects | Cf::Audit => None,
        }
    }

    /// The schema version that added this family. A store of an older schema lacks it
    /// until its migration; the writer's open creates it.
    pub const fn added_in(self) -> u32 {
        match self {
            Cf::Audit => 5,
            _ => 1,
        }
    }

    pub fn from_name(name: &str) -> Option<Cf> {
        Cf::ALL.into_iter().find(|c| c.name() == name)
    }

    /// One byte that separates the indexes inside blinded digests (see `schema/`).
    pub const fn index_tag(self) -> u8 {
        match self {
            Cf::IdxClass => 1,
            Cf::IdxLabel => 2,
            Cf::IdxId => 3,
            Cf::IdxKeyType => 4,
            Cf::IdxMechanism => 5,
            _ => 0,
        }
    }
}
