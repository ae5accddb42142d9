//! PKCS#11 constants as open newtypes: any `u64` round-trips (vendor values included);
//! `Debug` prints the spec name when the value is known.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($konst:ident = $val:expr),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            $(pub const $konst: $name = $name($val);)*

            /// Every value this build knows by name.
            pub const KNOWN: &'static [$name] = &[$($name::$konst),*];

            /// The spec name (`CKA_LABEL`, …) without its prefix, if known.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $val => Some(stringify!($konst)),)*
                    _ => None,
                }
            }

            /// Parses a spec name with or without its prefix, or a number (`0x…` or decimal).
            pub fn parse(s: &str) -> Option<$name> {
                let upper = s.trim().to_ascii_uppercase();
                let bare = upper.split_once('_').filter(|(p, _)| p.len() == 3 && p.starts_with("CK")).map(|(_, r)| r.to_owned()).unwrap_or(upper.clone());
                if let Some(v) = Self::KNOWN.iter().find(|k| k.name() == Some(bare.as_str())) {
                    return Some(*v);
                }
                let t = s.trim();
                if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    return u64::from_str_radix(hex, 16).ok().map($name);
                }
                t.parse::<u64>().ok().map($name)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

const ARRAY: u64 = 0x4000_0000;

open_enum!(
    /// `CKA_*`
    AttributeType {
        CLASS = 0x0, TOKEN = 0x1, PRIVATE = 0x2, LABEL = 0x3, UNIQUE_ID = 0x4,
        APPLICATION = 0x10, VALUE = 0x11, OBJECT_ID = 0x12,
        CERTIFICATE_TYPE = 0x80, ISSUER = 0x81, SERIAL_NUMBER = 0x82, AC_ISSUER = 0x83,
        OWNER = 0x84, ATTR_TYPES = 0x85, TRUSTED = 0x86, CERTIFICATE_CATEGORY = 0x87,
        JAVA_MIDP_SECURITY_DOMAIN = 0x88, URL = 0x89, HASH_OF_SUBJECT_PUBLIC_KEY = 0x8a,
        HASH_OF_ISSUER_PUBLIC_KEY = 0x8b, NAME_HASH_ALGORITHM = 0x8c, CHECK_VALUE = 0x90,
        KEY_TYPE = 0x100, SUBJECT = 0x101, ID = 0x102, SENSITIVE = 0x103, ENCRYPT = 0x104,
        DECRYPT = 0x105, WRAP = 0x106, UNWRAP = 0x107, SIGN = 0x108, SIGN_RECOVER = 0x109,
        VERIFY = 0x10a, VERIFY_RECOVER = 0x10b, DERIVE = 0x10c, START_DATE = 0x110,
        END_DATE = 0x111, MODULUS = 0x120, MODULUS_BITS = 0x121, PUBLIC_EXPONENT = 0x122,
        PRIVATE_EXPONENT = 0x123, PRIME_1 = 0x124, PRIME_2 = 0x125, EXPONENT_1 = 0x126,
        EXPONENT_2 = 0x127, COEFFICIENT = 0x128, PUBLIC_KEY_INFO = 0x129, PRIME = 0x130,
        SUBPRIME = 0x131, BASE = 0x132, PRIME_BITS = 0x133, SUBPRIME_BITS = 0x134,
        VALUE_BITS = 0x160, VALUE_LEN = 0x161, EXTRACTABLE = 0x162, LOCAL = 0x163,
        NEVER_EXTRACTABLE = 0x164, ALWAYS_SENSITIVE = 0x165, KEY_GEN_MECHANISM = 0x166,
        MODIFIABLE = 0x170, COPYABLE = 0x171, DESTROYABLE = 0x172, EC_PARAMS = 0x180,
        EC_POINT = 0x181, ALWAYS_AUTHENTICATE = 0x202, WRAP_WITH_TRUSTED = 0x210,
        WRAP_TEMPLATE = ARRAY | 0x211, UNWRAP_TEMPLATE = ARRAY | 0x212,
        DERIVE_TEMPLATE = ARRAY | 0x213, ALLOWED_MECHANISMS = ARRAY | 0x600,
        // FerroHSM's vendor attributes (`CKA_VENDOR_DEFINED | 0x0F45_0000 | n`), documented
        // in docs/pkcs11/vendor.md: the key lifecycle, and where a device key lives.
        FERRO_KEY_ID = 0x8F45_0001, FERRO_KEY_VERSION = 0x8F45_0002,
        FERRO_KEY_STATE = 0x8F45_0003, FERRO_IS_PRIMARY = 0x8F45_0004,
        FERRO_DESTROY_DEADLINE = 0x8F45_0005, FERRO_DEVICE_KEY = 0x8F45_0006,
    }
);

open_enum!(
    /// `CKO_*`
    ObjectClass {
        DATA = 0, CERTIFICATE = 1, PUBLIC_KEY = 2, PRIVATE_KEY = 3, SECRET_KEY = 4,
        HW_FEATURE = 5, DOMAIN_PARAMETERS = 6, MECHANISM = 7, OTP_KEY = 8, PROFILE = 9,
    }
);

open_enum!(
    /// `CKK_*`
    KeyType {
        RSA = 0, DSA = 1, DH = 2, EC = 3, GENERIC_SECRET = 0x10, DES3 = 0x15, AES = 0x1f,
        SHA_1_HMAC = 0x28, SHA256_HMAC = 0x2b, SHA384_HMAC = 0x2c, SHA512_HMAC = 0x2d,
        SHA224_HMAC = 0x2e, EC_EDWARDS = 0x40,
        EC_MONTGOMERY = 0x41, HKDF = 0x42,
    }
);

open_enum!(
    /// `CKM_*`
    MechanismType {
        RSA_PKCS_KEY_PAIR_GEN = 0x0, RSA_PKCS = 0x1, RSA_X_509 = 0x3, SHA1_RSA_PKCS = 0x6,
        RSA_PKCS_OAEP = 0x9, RSA_PKCS_PSS = 0xd, SHA1_RSA_PKCS_PSS = 0xe,
        SHA256_RSA_PKCS = 0x40, SHA384_RSA_PKCS = 0x41, SHA512_RSA_PKCS = 0x42,
        SHA256_RSA_PKCS_PSS = 0x43, SHA384_RSA_PKCS_PSS = 0x44, SHA512_RSA_PKCS_PSS = 0x45,
        SHA224_RSA_PKCS = 0x46, SHA224_RSA_PKCS_PSS = 0x47,
        SHA_1 = 0x220, SHA_1_HMAC = 0x221, SHA224 = 0x255, SHA224_HMAC = 0x256,
        SHA256 = 0x250, SHA256_HMAC = 0x251, SHA384 = 0x260, SHA384_HMAC = 0x261,
        SHA512 = 0x270, SHA512_HMAC = 0x271, GENERIC_SECRET_KEY_GEN = 0x350,
        SP800_108_COUNTER_KDF = 0x3ac, SP800_108_FEEDBACK_KDF = 0x3ad,
        EC_KEY_PAIR_GEN = 0x1040, ECDSA = 0x1041, ECDSA_SHA1 = 0x1042, ECDSA_SHA224 = 0x1043,
        ECDSA_SHA256 = 0x1044, ECDSA_SHA384 = 0x1045, ECDSA_SHA512 = 0x1046,
        ECDH1_DERIVE = 0x1050, EC_EDWARDS_KEY_PAIR_GEN = 0x1055,
        EC_MONTGOMERY_KEY_PAIR_GEN = 0x1056, EDDSA = 0x1057,
        AES_KEY_GEN = 0x1080, AES_ECB = 0x1081, AES_CBC = 0x1082, AES_CBC_PAD = 0x1085,
        AES_CTR = 0x1086, AES_GCM = 0x1087, AES_CMAC = 0x108a, AES_KEY_WRAP = 0x2109,
        AES_KEY_WRAP_PAD = 0x210a, AES_KEY_WRAP_KWP = 0x210b, SHA_1_KEY_GEN = 0x4003,
        SHA224_KEY_GEN = 0x4004, SHA256_KEY_GEN = 0x4005,
        SHA384_KEY_GEN = 0x4006, SHA512_KEY_GEN = 0x4007, HKDF_DERIVE = 0x402a,
        // FerroHSM's (`CKM_VENDOR_DEFINED | 0x0F45_0000 | n`, docs/pkcs11/vendor.md):
        // C_DeriveKey on a key's version makes the key's next version.
        FERRO_KEY_ROTATE = 0x8F45_0001,
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip_and_print_their_number() {
        let vendor = AttributeType(0x8000_1234);
        assert_eq!(vendor.name(), None);
        assert_eq!(format!("{vendor:?}"), "AttributeType(0x80001234)");
        assert_eq!(format!("{:?}", AttributeType::LABEL), "LABEL");
    }

    #[test]
    fn parse_accepts_names_with_and_without_prefix_and_numbers() {
        assert_eq!(
            ObjectClass::parse("CKO_PRIVATE_KEY"),
            Some(ObjectClass::PRIVATE_KEY)
        );
        assert_eq!(
            ObjectClass::parse("secret_key"),
            Some(ObjectClass::SECRET_KEY)
        );
        assert_eq!(KeyType::parse("0x1f"), Some(KeyType::AES));
        assert_eq!(
            MechanismType::parse("CKM_ECDSA_SHA256"),
            Some(MechanismType::ECDSA_SHA256)
        );
        assert_eq!(KeyType::parse("nonsense"), None);
    }

    #[test]
    fn names_are_unique_per_type() {
        for list in [
            AttributeType::KNOWN.iter().map(|a| a.0).collect::<Vec<_>>(),
            ObjectClass::KNOWN.iter().map(|a| a.0).collect(),
            KeyType::KNOWN.iter().map(|a| a.0).collect(),
            MechanismType::KNOWN.iter().map(|a| a.0).collect(),
        ] {
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "duplicate constant value");
        }
    }
}
