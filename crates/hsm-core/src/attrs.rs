//! The attribute model per object class: which attributes a class has, which are required,
//! their defaults, and the rules for create, copy, set, read and match. One table per
//! class ([`class_rules`]) that every rule reads; the value kinds and sticky/computed flags
//! come from `hsm_types::policy`.

use crate::error::{Error, Result};
use hsm_types::policy::{self, ValueKind};
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType, ObjectClass};

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

fn bool_of(set: &AttributeSet, a: A) -> bool {
    set.bool(a).unwrap_or(false)
}

/// Who is asking; the SO may set `CKA_TRUSTED`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Actor {
    Public,
    User,
    So,
}

/// How strictly one key's roles are kept apart (`key_separation` in the configuration).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Separation {
    /// WRAP with DECRYPT and UNWRAP with ENCRYPT on one key (or across a generated pair)
    /// are allowed, as the templates of PyKCS11, pkcs11-tool and most clients ask for.
    /// What keeps a sensitive key in: `CKA_EXTRACTABLE` FALSE by default,
    /// `CKA_WRAP_WITH_TRUSTED`, trusted keys whose roles never change and that never
    /// decrypt, and the SP 800-57 strength rule.
    #[default]
    Standard,
    /// Those combinations are refused as well (`CKR_TEMPLATE_INCONSISTENT` when a key is
    /// made, `CKR_ATTRIBUTE_READ_ONLY` on set or copy).
    Strict,
}

/// Who asks, and under which separation rule: what every attribute rule reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ctx {
    pub actor: Actor,
    pub separation: Separation,
}

impl Ctx {
    pub fn new(actor: Actor, separation: Separation) -> Ctx {
        Ctx { actor, separation }
    }
}

/// The usages a trusted key (`CKA_TRUSTED`) may never have: a key others rely on to keep
/// `CKA_WRAP_WITH_TRUSTED` keys in must not also turn a wrapped blob back into clear text.
pub const FORBIDDEN_FOR_TRUSTED: [A; 3] = [A::ENCRYPT, A::DECRYPT, A::DERIVE];

/// What is fixed on a trusted key, for everyone (the SO included): its roles, its
/// templates and its trust. Changing any of them is how a wrapping key is turned into one
/// that unwraps a `CKA_WRAP_WITH_TRUSTED` key as extractable.
pub const FROZEN_ON_TRUSTED: [A; 9] = [
    A::WRAP,
    A::UNWRAP,
    A::ENCRYPT,
    A::DECRYPT,
    A::DERIVE,
    A::TRUSTED,
    A::WRAP_TEMPLATE,
    A::UNWRAP_TEMPLATE,
    A::DERIVE_TEMPLATE,
];

/// Whether an object is a trusted key.
pub fn is_trusted(attrs: &AttributeSet) -> bool {
    attrs.bool(A::TRUSTED) == Some(true)
        && matches!(
            attrs.class(),
            Some(ObjectClass::SECRET_KEY | ObjectClass::PUBLIC_KEY | ObjectClass::PRIVATE_KEY)
        )
}

/// A trusted key never encrypts, decrypts or derives. Usages left to their defaults yield;
/// asked-for ones are refused.
fn check_trusted_usages(template: &AttributeSet, out: &mut AttributeSet) -> Result<()> {
    if !is_trusted(out) {
        return Ok(());
    }
    for a in FORBIDDEN_FOR_TRUSTED {
        if bool_of(out, a) {
            if template.get(a).is_none() {
                out.set(a, AttrValue::Bool(false));
            } else {
                return Err(Error::TemplateInconsistent(format!(
                    "a trusted key never has {a:?}"
                )));
            }
        }
    }
    Ok(())
}

fn check_values(set: &AttributeSet) -> Result<()> {
    for (t, v) in set.iter() {
        let Some(rule) = policy::rule(t) else {
            return Err(Error::AttributeTypeInvalid);
        };
        let ok = match (rule.kind, v) {
            (ValueKind::Bool, AttrValue::Bool(_))
            | (ValueKind::Ulong, AttrValue::Ulong(_))
            | (ValueKind::Bytes, AttrValue::Bytes(_)) => true,
            (ValueKind::Date, AttrValue::Bytes(d)) => {
                d.is_empty() || (d.len() == 8 && d.iter().all(u8::is_ascii_digit))
            }
            (ValueKind::Mechanisms, AttrValue::Mechanisms(_)) => true,
            (ValueKind::Template, AttrValue::Template(inner)) => {
                check_values(inner)?;
                true
            }
            _ => false,
        };
        if !ok {
            return Err(Error::AttributeValueInvalid(format!("{t:?}")));
        }
    }
    Ok(())
}

/// Builds a new object's attribute set from a caller's template: checks every attribute
/// belongs to the class, that token-computed ones are absent, that required ones are
/// present, fills defaults and computed values, and enforces key separation.
pub fn build_new(template: &AttributeSet, origin: Origin, ctx: Ctx) -> Result<AttributeSet> {
    check_values(template)?;
    let class = template
        .class()
        .ok_or_else(|| Error::TemplateIncomplete("CKA_CLASS".into()))?;
    if !supported_class(class) {
        return Err(Error::TemplateInconsistent(format!(
            "object class {class:?} is not supported"
        )));
    }
    let rules = class_rules(class, template.key_type())?;
    for t in template.types() {
        let Some(rule) = rules.iter().find(|r| r.attr == t) else {
            return Err(Error::TemplateInconsistent(format!(
                "{t:?} does not belong to {class:?}"
            )));
        };
        let computed = rule.req == Req::Computed
            || (rule.req == Req::GeneratedOnly && matches!(origin, Origin::Generated(_)));
        if computed {
            return Err(Error::AttributeReadOnly(format!(
                "{t:?} is set by the token"
            )));
        }
    }
    let mut out = AttributeSet::new();
    for rule in &rules {
        let required = match (rule.req, origin) {
            (Req::Always, _) => true,
            (Req::OnCreate | Req::GeneratedOnly, Origin::Created) => true,
            (Req::OnGenerate, Origin::Generated(_)) => true,
            _ => false,
        };
        match template.get(rule.attr) {
            Some(v) => out.set(rule.attr, v.clone()),
            None if required => return Err(Error::TemplateIncomplete(format!("{:?}", rule.attr))),
            None => {
                if let Some(d) = &rule.default {
                    out.set(rule.attr, d.clone());
                }
            }
        }
    }
    if bool_of(&out, A::TRUSTED) && ctx.actor != Actor::So {
        return Err(Error::AttributeReadOnly(
            "only the security officer may set CKA_TRUSTED".into(),
        ));
    }
    check_trusted_usages(template, &mut out)?;
    if class == ObjectClass::CERTIFICATE && out.ulong(A::CERTIFICATE_TYPE) != Some(0) {
        return Err(Error::AttributeValueInvalid(
            "only X.509 certificates (CKC_X_509) are supported".into(),
        ));
    }
    // Token-computed attributes.
    let is_key = matches!(
        class,
        ObjectClass::PRIVATE_KEY | ObjectClass::SECRET_KEY | ObjectClass::PUBLIC_KEY
    );
    if is_key {
        let local = matches!(origin, Origin::Generated(_));
        out.set(A::LOCAL, AttrValue::Bool(local));
        out.set(
            A::KEY_GEN_MECHANISM,
            AttrValue::Ulong(match origin {
                Origin::Generated(m) => m.0,
                Origin::Created => UNAVAILABLE,
            }),
        );
        if matches!(class, ObjectClass::PRIVATE_KEY | ObjectClass::SECRET_KEY) {
            // Imported keys were seen in clear by someone: never "always sensitive".
            out.set(
                A::ALWAYS_SENSITIVE,
                AttrValue::Bool(local && bool_of(&out, A::SENSITIVE)),
            );
            out.set(
                A::NEVER_EXTRACTABLE,
                AttrValue::Bool(local && !bool_of(&out, A::EXTRACTABLE)),
            );
        }
    }
    separate_roles(template, &mut out, ctx.separation)?;
    Ok(out)
}

/// WRAP with DECRYPT and UNWRAP with ENCRYPT on one key (Clulow's attacks). When the
/// caller asks for WRAP or UNWRAP and leaves the conflicting usage to its default, the
/// default yields, under either rule: nobody gets the pair without asking for it. Asking
/// for both is accepted under the standard rule and refused under the strict one.
fn separate_roles(template: &AttributeSet, out: &mut AttributeSet, sep: Separation) -> Result<()> {
    for (role, conflicting) in [(A::WRAP, A::DECRYPT), (A::UNWRAP, A::ENCRYPT)] {
        if bool_of(out, role) && bool_of(out, conflicting) {
            if template.get(conflicting).is_none() {
                out.set(conflicting, AttrValue::Bool(false));
            } else if template.get(role).is_none() {
                out.set(role, AttrValue::Bool(false));
            } else if sep == Separation::Strict {
                return Err(Error::TemplateInconsistent(format!(
                    "{role:?} together with {conflicting:?} (key_separation = \"strict\")"
                )));
            }
        }
    }
    Ok(())
}

/// The two halves of a generated pair count as one key for the same rule: a public key
/// that wraps and a private half that decrypts (wrap K under the public key, decrypt the
/// blob with the private one: K in clear). The mirror rule (no ENCRYPT on a public key
/// whose private half unwraps) would protect nothing: anyone can encrypt under a public
/// key without the token. `CKA_WRAP` defaults to FALSE, so a wrapping public key was
/// asked for: a private key's default `CKA_DECRYPT` yields to it; an asked-for one is
/// accepted under the standard rule (PyKCS11's and most tutorials' RSA template) and
/// refused under the strict one.
pub fn check_pair_separation(
    public: &AttributeSet,
    (private_template, private): (&AttributeSet, &mut AttributeSet),
    separation: Separation,
) -> Result<()> {
    if !(bool_of(public, A::WRAP) && bool_of(private, A::DECRYPT)) {
        return Ok(());
    }
    if private_template.get(A::DECRYPT).is_none() {
        private.set(A::DECRYPT, AttrValue::Bool(false));
    } else if separation == Separation::Strict {
        return Err(Error::TemplateInconsistent(
            "key pair: CKA_WRAP on the public key with CKA_DECRYPT on the private key".into(),
        ));
    }
    Ok(())
}

/// Applies `C_SetAttributeValue` (or `C_CopyObject`) changes, enforcing the table: class
/// membership, immutable and computed attributes, sticky flags, `CKA_MODIFIABLE` (a copy
/// of an unmodifiable object may only move, to the token or a session), `CKA_TRUSTED`
/// and what it freezes, key separation.
pub fn apply_changes(
    current: &AttributeSet,
    changes: &AttributeSet,
    ctx: Ctx,
    copying: bool,
) -> Result<AttributeSet> {
    check_values(changes)?;
    let class = current
        .class()
        .ok_or_else(|| Error::General("stored object without CKA_CLASS".into()))?;
    let rules = class_rules(class, current.key_type())?;
    if !copying && current.bool(A::MODIFIABLE) == Some(false) {
        return Err(Error::ActionProhibited(
            "the object has CKA_MODIFIABLE = FALSE",
        ));
    }
    let mut out = current.clone();
    for (t, v) in changes.iter() {
        if !rules.iter().any(|r| r.attr == t) {
            return Err(Error::AttributeTypeInvalid);
        }
        let rule = policy::rule(t).ok_or(Error::AttributeTypeInvalid)?;
        let old = current.get(t);
        if old == Some(v) {
            continue;
        }
        let f = rule.flags;
        if copying && current.bool(A::MODIFIABLE) == Some(false) && t != A::TOKEN {
            return Err(Error::AttributeReadOnly(format!(
                "{t:?}: the object has CKA_MODIFIABLE = FALSE, so its copy keeps its attributes"
            )));
        }
        if is_trusted(current) && FROZEN_ON_TRUSTED.contains(&t) {
            return Err(Error::AttributeReadOnly(format!(
                "{t:?} of a trusted key never changes"
            )));
        }
        let copy_may_change = copying && matches!(t, A::TOKEN | A::PRIVATE);
        if (f.immutable || f.token_computed) && !copy_may_change {
            return Err(Error::AttributeReadOnly(format!("{t:?} cannot change")));
        }
        if t == A::PRIVATE && current.bool(A::PRIVATE) == Some(true) && v == &AttrValue::Bool(false)
        {
            return Err(Error::AttributeReadOnly(
                "a private object cannot become public".into(),
            ));
        }
        if f.sticky_true && old == Some(&AttrValue::Bool(true)) {
            return Err(Error::AttributeReadOnly(format!(
                "{t:?} can only change to TRUE"
            )));
        }
        if f.sticky_false && old == Some(&AttrValue::Bool(false)) {
            return Err(Error::AttributeReadOnly(format!(
                "{t:?} can only change to FALSE"
            )));
        }
        if t == A::TRUSTED && v == &AttrValue::Bool(true) && ctx.actor != Actor::So {
            return Err(Error::AttributeReadOnly(
                "only the security officer may set CKA_TRUSTED".into(),
            ));
        }
        out.set(t, v.clone());
    }
    if is_trusted(&out) {
        if let Some(a) = FORBIDDEN_FOR_TRUSTED.iter().find(|a| bool_of(&out, **a)) {
            return Err(Error::TemplateInconsistent(format!(
                "a trusted key never has {a:?}"
            )));
        }
    }
    if ctx.separation == Separation::Strict {
        for (role, conflicting) in [(A::WRAP, A::DECRYPT), (A::UNWRAP, A::ENCRYPT)] {
            if bool_of(&out, role) && bool_of(&out, conflicting) {
                return Err(Error::AttributeReadOnly(format!(
                    "{role:?} together with {conflicting:?} is refused (key_separation = \"strict\")"
                )));
            }
        }
    }
    // Becoming sensitive or unextractable later does not make a key "always"/"never".
    if bool_of(&out, A::SENSITIVE) && !bool_of(current, A::SENSITIVE) {
        out.set(A::ALWAYS_SENSITIVE, AttrValue::Bool(false));
    }
    Ok(out)
}

/// What `C_GetAttributeValue` may reveal of one attribute.
pub enum Readable<'a> {
    Value(&'a AttrValue),
    Sensitive,
    Absent,
}

/// Whether the object's key material is hidden (`CKA_SENSITIVE` or not extractable).
pub fn material_hidden(attrs: &AttributeSet) -> bool {
    bool_of(attrs, A::SENSITIVE) || attrs.bool(A::EXTRACTABLE) == Some(false)
}

pub fn readable(attrs: &AttributeSet, t: A) -> Readable<'_> {
    if policy::is_secret(attrs.class(), t) && material_hidden(attrs) {
        // Report sensitive whether or not the value is present in this copy.
        return Readable::Sensitive;
    }
    match attrs.get(t) {
        Some(v) => Readable::Value(v),
        None => Readable::Absent,
    }
}

/// Whether an object matches a search template. A template that names key material of a
/// key whose material is hidden matches nothing (no equality oracle).
pub fn matches(attrs: &AttributeSet, template: &AttributeSet) -> bool {
    template.iter().all(|(t, want)| match readable(attrs, t) {
        Readable::Value(v) => v == want,
        Readable::Sensitive | Readable::Absent => false,
    })
}

/// Rough size of an object for `C_GetObjectSize`: its canonical encoding.
pub fn object_size(attrs: &AttributeSet) -> usize {
    attrs.encode().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Ctx {
        Ctx::new(Actor::User, Separation::Standard)
    }
    fn so() -> Ctx {
        Ctx::new(Actor::So, Separation::Standard)
    }
    fn strict_user() -> Ctx {
        Ctx::new(Actor::User, Separation::Strict)
    }

    fn aes_template() -> AttributeSet {
        AttributeSet::new()
            .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
            .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0))
            .with(A::VALUE, AttrValue::Bytes(vec![7; 32]))
    }

    #[test]
    fn defaults_are_the_safe_ones() {
        let o = build_new(&aes_template(), Origin::Created, user()).unwrap();
        assert_eq!(o.bool(A::SENSITIVE), Some(true));
        assert_eq!(o.bool(A::EXTRACTABLE), Some(false));
        assert_eq!(o.bool(A::PRIVATE), Some(true));
        assert_eq!(o.bool(A::LOCAL), Some(false));
        assert_eq!(
            o.bool(A::ALWAYS_SENSITIVE),
            Some(false),
            "imported keys are never always-sensitive"
        );
        assert_eq!(o.ulong(A::KEY_GEN_MECHANISM), Some(UNAVAILABLE));
    }

    #[test]
    fn template_rules() {
        let missing =
            AttributeSet::new().with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
        assert!(matches!(
            build_new(&missing, Origin::Created, user()),
            Err(Error::TemplateIncomplete(_))
        ));
        let no_value = AttributeSet::new()
            .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
            .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::AES.0));
        assert!(matches!(
            build_new(&no_value, Origin::Created, user()),
            Err(Error::TemplateIncomplete(_))
        ));
        let computed = aes_template().with(A::LOCAL, AttrValue::Bool(true));
        assert!(matches!(
            build_new(&computed, Origin::Created, user()),
            Err(Error::AttributeReadOnly(_))
        ));
        let trusted = aes_template().with(A::TRUSTED, AttrValue::Bool(true));
        assert!(matches!(
            build_new(&trusted, Origin::Created, user()),
            Err(Error::AttributeReadOnly(_))
        ));
        assert!(build_new(&trusted, Origin::Created, so()).is_ok());
        let both = aes_template()
            .with(A::WRAP, AttrValue::Bool(true))
            .with(A::DECRYPT, AttrValue::Bool(true));
        let o = build_new(&both, Origin::Created, user()).unwrap();
        assert_eq!(
            (o.bool(A::WRAP), o.bool(A::DECRYPT)),
            (Some(true), Some(true)),
            "the standard rule takes what clients ask for"
        );
        assert!(matches!(
            build_new(&both, Origin::Created, strict_user()),
            Err(Error::TemplateInconsistent(_))
        ));
        let wrap_only = aes_template().with(A::WRAP, AttrValue::Bool(true));
        for ctx in [user(), strict_user()] {
            let o = build_new(&wrap_only, Origin::Created, ctx).unwrap();
            assert_eq!(
                o.bool(A::DECRYPT),
                Some(false),
                "the default yields to an explicit WRAP"
            );
        }
        let bad_date = aes_template().with(A::START_DATE, AttrValue::Bytes(b"2026-1-1".to_vec()));
        assert!(matches!(
            build_new(&bad_date, Origin::Created, user()),
            Err(Error::AttributeValueInvalid(_))
        ));
        let foreign = aes_template().with(A::MODULUS, AttrValue::Bytes(vec![1]));
        assert!(matches!(
            build_new(&foreign, Origin::Created, user()),
            Err(Error::TemplateInconsistent(_))
        ));
    }

    #[test]
    fn sticky_rules_hold_on_set() {
        let o = build_new(&aes_template(), Origin::Created, user()).unwrap();
        let unsensitive = AttributeSet::new().with(A::SENSITIVE, AttrValue::Bool(false));
        assert!(matches!(
            apply_changes(&o, &unsensitive, user(), false),
            Err(Error::AttributeReadOnly(_))
        ));
        let extractable = AttributeSet::new().with(A::EXTRACTABLE, AttrValue::Bool(true));
        assert!(matches!(
            apply_changes(&o, &extractable, user(), false),
            Err(Error::AttributeReadOnly(_))
        ));
        let value = AttributeSet::new().with(A::VALUE, AttrValue::Bytes(vec![1; 32]));
        assert!(matches!(
            apply_changes(&o, &value, user(), false),
            Err(Error::AttributeReadOnly(_))
        ));
        let label = AttributeSet::new().with(A::LABEL, AttrValue::Bytes(b"new".to_vec()));
        assert_eq!(
            apply_changes(&o, &label, user(), false).unwrap().label(),
            Some(&b"new"[..])
        );
        let wrap = AttributeSet::new().with(A::WRAP, AttrValue::Bool(true));
        assert!(
            matches!(
                apply_changes(&o, &wrap, strict_user(), false),
                Err(Error::AttributeReadOnly(_))
            ),
            "strict: WRAP on a DECRYPT key"
        );
        assert!(
            apply_changes(&o, &wrap, user(), false).is_ok(),
            "standard: WRAP on a DECRYPT key"
        );
        let frozen = apply_changes(&o, &AttributeSet::new(), user(), false)
            .unwrap()
            .with(A::MODIFIABLE, AttrValue::Bool(false));
        assert!(matches!(
            apply_changes(&frozen, &label, user(), false),
            Err(Error::ActionProhibited(_))
        ));
    }

    #[test]
    fn a_trusted_key_keeps_its_roles_and_never_decrypts() {
        let t = aes_template()
            .with(A::TRUSTED, AttrValue::Bool(true))
            .with(A::WRAP, AttrValue::Bool(true));
        let w = build_new(&t, Origin::Created, so()).unwrap();
        for a in FORBIDDEN_FOR_TRUSTED {
            assert_eq!(
                w.bool(a),
                Some(false),
                "{a:?} defaults off on a trusted key"
            );
        }
        assert!(matches!(
            build_new(
                &t.clone().with(A::DECRYPT, AttrValue::Bool(true)),
                Origin::Created,
                so()
            ),
            Err(Error::TemplateInconsistent(_))
        ));
        for (a, v) in [
            (A::WRAP, AttrValue::Bool(false)),
            (A::UNWRAP, AttrValue::Bool(true)),
            (A::DECRYPT, AttrValue::Bool(true)),
            (A::DERIVE, AttrValue::Bool(true)),
            (A::TRUSTED, AttrValue::Bool(false)),
            (A::UNWRAP_TEMPLATE, AttrValue::Template(AttributeSet::new())),
        ] {
            let change = AttributeSet::new().with(a, v);
            for ctx in [user(), so()] {
                assert!(
                    matches!(
                        apply_changes(&w, &change, ctx, false),
                        Err(Error::AttributeReadOnly(_))
                    ),
                    "{a:?} changed on a trusted key by {:?}",
                    ctx.actor
                );
            }
        }
        let label = AttributeSet::new().with(A::LABEL, AttrValue::Bytes(b"w".to_vec()));
        assert!(apply_changes(&w, &label, user(), false).is_ok());
        // The SO makes an existing decrypting key trusted: refused, it would decrypt.
        let k = build_new(&aes_template(), Origin::Created, so()).unwrap();
        let trust = AttributeSet::new().with(A::TRUSTED, AttrValue::Bool(true));
        assert!(matches!(
            apply_changes(&k, &trust, so(), false),
            Err(Error::TemplateInconsistent(_))
        ));
    }

    #[test]
    fn copies_of_unmodifiable_objects_change_nothing_but_where_they_live() {
        let frozen = build_new(
            &aes_template().with(A::MODIFIABLE, AttrValue::Bool(false)),
            Origin::Created,
            user(),
        )
        .unwrap();
        let to_token = AttributeSet::new().with(A::TOKEN, AttrValue::Bool(true));
        assert!(apply_changes(&frozen, &to_token, user(), true).is_ok());
        for change in [
            AttributeSet::new().with(A::LABEL, AttrValue::Bytes(b"x".to_vec())),
            AttributeSet::new().with(A::SIGN, AttrValue::Bool(false)),
        ] {
            assert!(matches!(
                apply_changes(&frozen, &change, user(), true),
                Err(Error::AttributeReadOnly(_))
            ));
        }
    }

    #[test]
    fn always_authenticate_only_turns_on() {
        let t = AttributeSet::new()
            .with(A::CLASS, AttrValue::Ulong(ObjectClass::PRIVATE_KEY.0))
            .with(A::KEY_TYPE, AttrValue::Ulong(KeyType::EC.0))
            .with(A::EC_PARAMS, AttrValue::Bytes(vec![6, 8]))
            .with(A::VALUE, AttrValue::Bytes(vec![1; 32]))
            .with(A::ALWAYS_AUTHENTICATE, AttrValue::Bool(true));
        let k = build_new(&t, Origin::Created, user()).unwrap();
        let off = AttributeSet::new().with(A::ALWAYS_AUTHENTICATE, AttrValue::Bool(false));
        assert!(matches!(
            apply_changes(&k, &off, user(), false),
            Err(Error::AttributeReadOnly(_))
        ));
    }

    #[test]
    fn sensitive_material_is_unreadable_and_unmatchable() {
        let o = build_new(&aes_template(), Origin::Created, user()).unwrap();
        assert!(matches!(readable(&o, A::VALUE), Readable::Sensitive));
        assert!(matches!(readable(&o, A::LABEL), Readable::Value(_)));
        let probe = AttributeSet::new().with(A::VALUE, AttrValue::Bytes(vec![7; 32]));
        assert!(
            !matches(&o, &probe),
            "no equality oracle on a sensitive value"
        );
        let by_class =
            AttributeSet::new().with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
        assert!(matches(&o, &by_class));
    }
}
