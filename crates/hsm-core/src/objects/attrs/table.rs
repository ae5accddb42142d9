//! The attribute table of each object class: which attributes it has, which are required
//! when, and their defaults.

use crate::error::{Error, Result};
use hsm_types::{AttrValue, AttributeType as A, KeyType, MechanismType, ObjectClass};

/// `CK_UNAVAILABLE_INFORMATION` as stored for `CKA_KEY_GEN_MECHANISM` of imported keys.
pub const UNAVAILABLE: u64 = u64::MAX;

/// How an attribute enters an object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Req {
    /// May be given; the default applies otherwise.
    Optional,
    /// Must be given to `C_CreateObject` (key material, certificate body).
    OnCreate,
    /// Must be given to key generation (`CKA_VALUE_LEN`, `CKA_MODULUS_BITS`, `CKA_EC_PARAMS`).
    OnGenerate,
    /// Must be given to both.
    Always,
    /// Computed by the token on create; generation computes it too.
    Computed,
    /// Set by the token for generated keys, given for imported ones.
    GeneratedOnly,
}

/// One row of a class table.
#[derive(Clone, Debug)]
pub struct ClassRule {
    pub attr: A,
    pub req: Req,
    pub default: Option<AttrValue>,
}

fn r(attr: A, req: Req, default: Option<AttrValue>) -> ClassRule {
    ClassRule { attr, req, default }
}
fn b(v: bool) -> Option<AttrValue> {
    Some(AttrValue::Bool(v))
}
fn empty() -> Option<AttrValue> {
    Some(AttrValue::Bytes(Vec::new()))
}

/// Where an object comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Origin {
    /// `C_CreateObject`: imported, never local.
    Created,
    /// `C_GenerateKey` / `C_GenerateKeyPair` with this mechanism.
    Generated(MechanismType),
}

/// The classes this token stores.
pub fn supported_class(c: ObjectClass) -> bool {
    matches!(
        c,
        ObjectClass::DATA
            | ObjectClass::CERTIFICATE
            | ObjectClass::PUBLIC_KEY
            | ObjectClass::PRIVATE_KEY
            | ObjectClass::SECRET_KEY
    )
}

/// The attribute table for a class (and key type, for keys).
pub fn class_rules(class: ObjectClass, key_type: Option<KeyType>) -> Result<Vec<ClassRule>> {
    use Req::*;
    let is_key = matches!(
        class,
        ObjectClass::PUBLIC_KEY | ObjectClass::PRIVATE_KEY | ObjectClass::SECRET_KEY
    );
    // Only RSA pairs encrypt and decrypt among the asymmetric keys offered.
    let rsa_pair = key_type == Some(KeyType::RSA);
    // X25519 keys agree on secrets and do nothing else: they derive by default and sign
    // or verify never.
    let montgomery = key_type == Some(KeyType::EC_MONTGOMERY);
    let private_default = matches!(class, ObjectClass::PRIVATE_KEY | ObjectClass::SECRET_KEY);
    let mut v = vec![
        r(A::CLASS, Always, None),
        r(A::TOKEN, Optional, b(false)),
        r(A::PRIVATE, Optional, b(private_default)),
        r(A::MODIFIABLE, Optional, b(true)),
        r(A::COPYABLE, Optional, b(true)),
        r(A::DESTROYABLE, Optional, b(true)),
        r(A::LABEL, Optional, empty()),
        r(A::UNIQUE_ID, Computed, None),
    ];
    match class {
        ObjectClass::DATA => {
            v.push(r(A::APPLICATION, Optional, empty()));
            v.push(r(A::OBJECT_ID, Optional, empty()));
            v.push(r(A::VALUE, Optional, empty()));
        }
        ObjectClass::CERTIFICATE => {
            v.extend([
                r(A::CERTIFICATE_TYPE, OnCreate, None),
                r(A::TRUSTED, Optional, b(false)),
                r(A::CERTIFICATE_CATEGORY, Optional, Some(AttrValue::Ulong(0))),
                r(A::CHECK_VALUE, Optional, None),
                r(A::START_DATE, Optional, empty()),
                r(A::END_DATE, Optional, empty()),
                r(A::PUBLIC_KEY_INFO, Optional, empty()),
                r(A::SUBJECT, OnCreate, None),
                r(A::ID, Optional, empty()),
                r(A::ISSUER, Optional, empty()),
                r(A::SERIAL_NUMBER, Optional, empty()),
                r(A::VALUE, OnCreate, None),
                r(A::URL, Optional, empty()),
                r(A::HASH_OF_SUBJECT_PUBLIC_KEY, Optional, empty()),
                r(A::HASH_OF_ISSUER_PUBLIC_KEY, Optional, empty()),
                r(
                    A::JAVA_MIDP_SECURITY_DOMAIN,
                    Optional,
                    Some(AttrValue::Ulong(0)),
                ),
                r(A::NAME_HASH_ALGORITHM, Optional, None),
            ]);
        }
        _ if is_key => {
            v.extend([
                r(A::KEY_TYPE, Always, None),
                r(A::ID, Optional, empty()),
                r(A::START_DATE, Optional, empty()),
                r(A::END_DATE, Optional, empty()),
                r(
                    A::DERIVE,
                    Optional,
                    b(montgomery && class == ObjectClass::PRIVATE_KEY),
                ),
                r(A::LOCAL, Computed, None),
                r(A::KEY_GEN_MECHANISM, Computed, None),
                // The lifecycle's (docs/pkcs11/vendor.md): the token's to set.
                r(A::FERRO_KEY_ID, Computed, None),
                r(A::FERRO_KEY_VERSION, Computed, None),
                r(A::FERRO_KEY_STATE, Computed, None),
                r(A::FERRO_IS_PRIMARY, Computed, None),
                r(A::FERRO_DESTROY_DEADLINE, Computed, None),
                // Where a device key lives (`crate::hardware`): the token's to set.
                r(A::FERRO_DEVICE_KEY, Computed, None),
                r(
                    A::ALLOWED_MECHANISMS,
                    Optional,
                    Some(AttrValue::Mechanisms(Vec::new())),
                ),
            ]);
            match class {
                ObjectClass::PUBLIC_KEY => v.extend([
                    r(A::SUBJECT, Optional, empty()),
                    r(A::ENCRYPT, Optional, b(rsa_pair)),
                    r(A::VERIFY, Optional, b(!montgomery)),
                    r(A::VERIFY_RECOVER, Optional, b(false)),
                    r(A::WRAP, Optional, b(false)),
                    r(A::TRUSTED, Optional, b(false)),
                    r(A::WRAP_TEMPLATE, Optional, None),
                    r(A::PUBLIC_KEY_INFO, Optional, empty()),
                ]),
                ObjectClass::PRIVATE_KEY => v.extend([
                    r(A::SUBJECT, Optional, empty()),
                    r(A::SENSITIVE, Optional, b(true)),
                    r(A::DECRYPT, Optional, b(rsa_pair)),
                    r(A::SIGN, Optional, b(!montgomery)),
                    r(A::SIGN_RECOVER, Optional, b(false)),
                    r(A::UNWRAP, Optional, b(false)),
                    r(A::EXTRACTABLE, Optional, b(false)),
                    r(A::ALWAYS_SENSITIVE, Computed, None),
                    r(A::NEVER_EXTRACTABLE, Computed, None),
                    r(A::WRAP_WITH_TRUSTED, Optional, b(false)),
                    r(A::UNWRAP_TEMPLATE, Optional, None),
                    r(A::ALWAYS_AUTHENTICATE, Optional, b(false)),
                    r(A::PUBLIC_KEY_INFO, Optional, empty()),
                ]),
                _ => v.extend([
                    r(A::SENSITIVE, Optional, b(true)),
                    r(A::ENCRYPT, Optional, b(true)),
                    r(A::DECRYPT, Optional, b(true)),
                    r(A::SIGN, Optional, b(true)),
                    r(A::VERIFY, Optional, b(true)),
                    r(A::WRAP, Optional, b(false)),
                    r(A::UNWRAP, Optional, b(false)),
                    r(A::EXTRACTABLE, Optional, b(false)),
                    r(A::ALWAYS_SENSITIVE, Computed, None),
                    r(A::NEVER_EXTRACTABLE, Computed, None),
                    r(A::WRAP_WITH_TRUSTED, Optional, b(false)),
                    r(A::TRUSTED, Optional, b(false)),
                    r(A::WRAP_TEMPLATE, Optional, None),
                    r(A::UNWRAP_TEMPLATE, Optional, None),
                    r(A::DERIVE_TEMPLATE, Optional, None),
                ]),
            }
            let kt = key_type.ok_or_else(|| Error::TemplateIncomplete("CKA_KEY_TYPE".into()))?;
            match (class, kt) {
                (ObjectClass::PUBLIC_KEY, KeyType::RSA) => v.extend([
                    r(A::MODULUS, OnCreate, None),
                    r(A::MODULUS_BITS, OnGenerate, None),
                    r(A::PUBLIC_EXPONENT, OnCreate, None),
                ]),
                (ObjectClass::PRIVATE_KEY, KeyType::RSA) => v.extend([
                    r(A::MODULUS, GeneratedOnly, None),
                    r(A::PUBLIC_EXPONENT, GeneratedOnly, None),
                    r(A::PRIVATE_EXPONENT, GeneratedOnly, None),
                    r(A::PRIME_1, GeneratedOnly, None),
                    r(A::PRIME_2, GeneratedOnly, None),
                    r(A::EXPONENT_1, GeneratedOnly, None),
                    r(A::EXPONENT_2, GeneratedOnly, None),
                    r(A::COEFFICIENT, GeneratedOnly, None),
                ]),
                (
                    ObjectClass::PUBLIC_KEY,
                    KeyType::EC | KeyType::EC_EDWARDS | KeyType::EC_MONTGOMERY,
                ) => v.extend([
                    r(A::EC_PARAMS, Always, None),
                    r(A::EC_POINT, OnCreate, None),
                ]),
                (
                    ObjectClass::PRIVATE_KEY,
                    KeyType::EC | KeyType::EC_EDWARDS | KeyType::EC_MONTGOMERY,
                ) => v.extend([
                    r(A::EC_PARAMS, OnCreate, None),
                    r(A::VALUE, GeneratedOnly, None),
                ]),
                (
                    ObjectClass::SECRET_KEY,
                    KeyType::AES
                    | KeyType::GENERIC_SECRET
                    | KeyType::HKDF
                    | KeyType::SHA_1_HMAC
                    | KeyType::SHA224_HMAC
                    | KeyType::SHA256_HMAC
                    | KeyType::SHA384_HMAC
                    | KeyType::SHA512_HMAC,
                ) => v.extend([
                    r(A::VALUE, GeneratedOnly, None),
                    r(A::VALUE_LEN, OnGenerate, None),
                    r(A::CHECK_VALUE, Optional, None),
                ]),
                _ => {
                    return Err(Error::TemplateInconsistent(format!(
                        "key type {kt:?} is not supported for {class:?}"
                    )));
                }
            }
        }
        _ => {
            return Err(Error::TemplateInconsistent(format!(
                "object class {class:?} is not supported"
            )));
        }
    }
    Ok(v)
}
