//! The attribute model per object class: which attributes a class has, which are required,
//! their defaults, and the rules for create, copy, set, read and match. One table per
//! class ([`class_rules`]) that every rule reads; the value kinds and sticky/computed flags
//! come from `hsm_types::policy`.

use crate::error::{Error, Result};
use hsm_types::policy::{self, ValueKind};
use hsm_types::{AttrValue, AttributeSet, AttributeType as A, ObjectClass};

mod table;
#[cfg(test)]
mod tests;

pub use table::{ClassRule, Origin, Req, UNAVAILABLE, class_rules, supported_class};

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

/// Every attribute of the template belongs to the class, and none is one the token sets.
fn check_membership(
    template: &AttributeSet,
    rules: &[ClassRule],
    class: ObjectClass,
    origin: Origin,
) -> Result<()> {
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
    Ok(())
}

/// The attributes the token computes for a new key: `CKA_LOCAL`, `CKA_KEY_GEN_MECHANISM`,
/// and for private and secret keys `CKA_ALWAYS_SENSITIVE` / `CKA_NEVER_EXTRACTABLE`.
fn set_computed(out: &mut AttributeSet, class: ObjectClass, origin: Origin) {
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
                AttrValue::Bool(local && bool_of(out, A::SENSITIVE)),
            );
            out.set(
                A::NEVER_EXTRACTABLE,
                AttrValue::Bool(local && !bool_of(out, A::EXTRACTABLE)),
            );
        }
    }
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
    check_membership(template, &rules, class, origin)?;
    let mut out = AttributeSet::new();
    for rule in &rules {
        let required = matches!(
            (rule.req, origin),
            (Req::Always, _)
                | (Req::OnCreate | Req::GeneratedOnly, Origin::Created)
                | (Req::OnGenerate, Origin::Generated(_))
        );
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
    set_computed(&mut out, class, origin);
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

/// One attribute change against the rules: `CKA_MODIFIABLE`, what a trusted key freezes,
/// immutable and computed attributes, sticky flags, and who may set `CKA_TRUSTED`.
fn check_change(
    current: &AttributeSet,
    t: A,
    v: &AttrValue,
    f: policy::Flags,
    ctx: Ctx,
    copying: bool,
) -> Result<()> {
    let old = current.get(t);
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
    if t == A::PRIVATE && current.bool(A::PRIVATE) == Some(true) && v == &AttrValue::Bool(false) {
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
            "the object has CKA_MODIFIABLE = FALSE".into(),
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
        check_change(current, t, v, rule.flags, ctx, copying)?;
        out.set(t, v.clone());
    }
    if is_trusted(&out)
        && let Some(a) = FORBIDDEN_FOR_TRUSTED.iter().find(|a| bool_of(&out, **a))
    {
        return Err(Error::TemplateInconsistent(format!(
            "a trusted key never has {a:?}"
        )));
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

/// Takes out the values [`readable`] would refuse (secret attributes of a key whose
/// material is hidden), so they are not copied to whoever asked for the attributes — the
/// FFI layer, or a client over the server's socket. [`readable`] still answers
/// `Sensitive` for them. The values taken out are zeroized.
pub fn redact(attrs: &mut AttributeSet) {
    if material_hidden(attrs) {
        let class = attrs.class();
        drop(attrs.split_off(|t| policy::is_secret(class, t)));
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
