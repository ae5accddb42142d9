//! The attribute-policy table: one row per known attribute type, read by every rule that
//! needs to know an attribute's value kind, whether it is secret, or whether an index
//! covers it. Per-class create/modify rules of the PKCS#11 layer read the same rows.

use crate::attr::AttributeSet;
use crate::consts::{AttributeType as A, ObjectClass};

/// How an attribute's value is typed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ValueKind {
    Bool,
    Ulong,
    Bytes,
    /// `CK_DATE`: exactly 8 ASCII digits (or empty).
    Date,
    Mechanisms,
    Template,
}

/// Flags of a row.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Flags {
    /// Key material when the object is a private or secret key: sealed under the token
    /// master key, never shown by inspection, never readable while `CKA_SENSITIVE`.
    pub secret_in_keys: bool,
    /// Computed by the token; a template may not set it.
    pub token_computed: bool,
    /// May change only from FALSE to TRUE (`CKA_SENSITIVE`, `CKA_WRAP_WITH_TRUSTED`).
    pub sticky_true: bool,
    /// May change only from TRUE to FALSE (`CKA_EXTRACTABLE`).
    pub sticky_false: bool,
    /// Fixed once the object exists (`CKA_CLASS`, key material, …).
    pub immutable: bool,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub attr: A,
    pub kind: ValueKind,
    pub flags: Flags,
}

const fn f() -> Flags {
    Flags {
        secret_in_keys: false,
        token_computed: false,
        sticky_true: false,
        sticky_false: false,
        immutable: false,
    }
}
const SECRET: Flags = Flags {
    secret_in_keys: true,
    immutable: true,
    ..f()
};
const COMPUTED: Flags = Flags {
    token_computed: true,
    immutable: true,
    ..f()
};
const IMMUTABLE: Flags = Flags {
    immutable: true,
    ..f()
};
const STICKY_TRUE: Flags = Flags {
    sticky_true: true,
    ..f()
};
const STICKY_FALSE: Flags = Flags {
    sticky_false: true,
    ..f()
};

macro_rules! table {
    ($($attr:ident : $kind:ident $(, $flags:expr)?;)*) => {
        /// The table. Order is irrelevant; lookups go through [`rule`].
        pub const TABLE: &[Rule] = &[$(Rule { attr: A::$attr, kind: ValueKind::$kind, flags: table!(@f $($flags)?) }),*];
    };
    (@f) => { f() };
    (@f $e:expr) => { $e };
}

table! {
    CLASS: Ulong, IMMUTABLE;
    TOKEN: Bool, IMMUTABLE;
    PRIVATE: Bool, IMMUTABLE;
    LABEL: Bytes;
    UNIQUE_ID: Bytes, COMPUTED;
    APPLICATION: Bytes;
    VALUE: Bytes, SECRET;
    OBJECT_ID: Bytes;
    CERTIFICATE_TYPE: Ulong, IMMUTABLE;
    ISSUER: Bytes;
    SERIAL_NUMBER: Bytes;
    AC_ISSUER: Bytes;
    OWNER: Bytes;
    ATTR_TYPES: Bytes;
    TRUSTED: Bool;
    CERTIFICATE_CATEGORY: Ulong;
    JAVA_MIDP_SECURITY_DOMAIN: Ulong;
    URL: Bytes;
    HASH_OF_SUBJECT_PUBLIC_KEY: Bytes;
    HASH_OF_ISSUER_PUBLIC_KEY: Bytes;
    NAME_HASH_ALGORITHM: Ulong;
    CHECK_VALUE: Bytes;
    KEY_TYPE: Ulong, IMMUTABLE;
    SUBJECT: Bytes;
    ID: Bytes;
    SENSITIVE: Bool, STICKY_TRUE;
    ENCRYPT: Bool;
    DECRYPT: Bool;
    WRAP: Bool;
    UNWRAP: Bool;
    SIGN: Bool;
    SIGN_RECOVER: Bool;
    VERIFY: Bool;
    VERIFY_RECOVER: Bool;
    DERIVE: Bool;
    START_DATE: Date;
    END_DATE: Date;
    MODULUS: Bytes, IMMUTABLE;
    MODULUS_BITS: Ulong, IMMUTABLE;
    PUBLIC_EXPONENT: Bytes, IMMUTABLE;
    PRIVATE_EXPONENT: Bytes, SECRET;
    PRIME_1: Bytes, SECRET;
    PRIME_2: Bytes, SECRET;
    EXPONENT_1: Bytes, SECRET;
    EXPONENT_2: Bytes, SECRET;
    COEFFICIENT: Bytes, SECRET;
    PUBLIC_KEY_INFO: Bytes;
    PRIME: Bytes, IMMUTABLE;
    SUBPRIME: Bytes, IMMUTABLE;
    BASE: Bytes, IMMUTABLE;
    PRIME_BITS: Ulong, IMMUTABLE;
    SUBPRIME_BITS: Ulong, IMMUTABLE;
    VALUE_BITS: Ulong, IMMUTABLE;
    VALUE_LEN: Ulong, IMMUTABLE;
    EXTRACTABLE: Bool, STICKY_FALSE;
    LOCAL: Bool, COMPUTED;
    NEVER_EXTRACTABLE: Bool, COMPUTED;
    ALWAYS_SENSITIVE: Bool, COMPUTED;
    KEY_GEN_MECHANISM: Ulong, COMPUTED;
    MODIFIABLE: Bool, IMMUTABLE;
    COPYABLE: Bool, STICKY_FALSE;
    DESTROYABLE: Bool;
    EC_PARAMS: Bytes, IMMUTABLE;
    EC_POINT: Bytes, IMMUTABLE;
    ALWAYS_AUTHENTICATE: Bool, STICKY_TRUE;
    WRAP_WITH_TRUSTED: Bool, STICKY_TRUE;
    WRAP_TEMPLATE: Template;
    UNWRAP_TEMPLATE: Template;
    DERIVE_TEMPLATE: Template;
    ALLOWED_MECHANISMS: Mechanisms, IMMUTABLE;
    FERRO_KEY_ID: Ulong, COMPUTED;
    FERRO_KEY_VERSION: Ulong, COMPUTED;
    FERRO_KEY_STATE: Ulong, COMPUTED;
    FERRO_IS_PRIMARY: Bool, COMPUTED;
    FERRO_DESTROY_DEADLINE: Ulong, COMPUTED;
    FERRO_DEVICE_KEY: Bytes, COMPUTED;
}

/// The row for `attr`, if this build knows the attribute.
pub fn rule(attr: A) -> Option<&'static Rule> {
    TABLE.iter().find(|r| r.attr == attr)
}

/// Whether `attr` holds key material for an object of `class`.
pub fn is_secret(class: Option<ObjectClass>, attr: A) -> bool {
    let key_class = matches!(
        class,
        Some(ObjectClass::PRIVATE_KEY) | Some(ObjectClass::SECRET_KEY) | Some(ObjectClass::OTP_KEY)
    );
    key_class && rule(attr).is_some_and(|r| r.flags.secret_in_keys)
}

/// Whether this set carries any key material.
pub fn has_secrets(set: &AttributeSet) -> bool {
    let class = set.class();
    set.types().any(|t| is_secret(class, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_unique_and_named() {
        for (i, r) in TABLE.iter().enumerate() {
            assert!(
                r.attr.name().is_some(),
                "row {i} names an unknown attribute"
            );
            assert_eq!(
                TABLE.iter().filter(|o| o.attr == r.attr).count(),
                1,
                "{:?} twice",
                r.attr
            );
        }
    }

    #[test]
    fn value_is_secret_only_for_keys() {
        assert!(is_secret(Some(ObjectClass::SECRET_KEY), A::VALUE));
        assert!(is_secret(
            Some(ObjectClass::PRIVATE_KEY),
            A::PRIVATE_EXPONENT
        ));
        assert!(!is_secret(Some(ObjectClass::DATA), A::VALUE));
        assert!(!is_secret(Some(ObjectClass::CERTIFICATE), A::VALUE));
        assert!(!is_secret(Some(ObjectClass::PRIVATE_KEY), A::LABEL));
    }
}
