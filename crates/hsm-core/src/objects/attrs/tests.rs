use super::*;
use hsm_types::KeyType;

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
    let missing = AttributeSet::new().with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
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
    let by_class = AttributeSet::new().with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0));
    assert!(matches(&o, &by_class));
}
