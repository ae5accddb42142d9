//! How inspection shows values: names for PKCS#11 constants, hex for bytes, text where an
//! attribute is text, RFC 3339 for times — and never key material.

use hsm_core::store::VersionCause;
use hsm_core::types::policy;
use hsm_core::types::{AttrValue, AttributeSet, AttributeType as A, KeyType, MechanismType};
use hsm_core::types::{ObjectClass, VersionNo};
use serde::Serialize;
use serde_json::{Value, json};

pub(super) fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// Parses hex digits, with or without a `0x` prefix.
pub(super) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if !t.len().is_multiple_of(2) {
        return Err(format!("'{s}' is not hex: odd number of digits"));
    }
    hex::decode(t).map_err(|_| format!("'{s}' is not hex"))
}

/// `1970-01-01T00:00:00Z` from Unix seconds (proleptic Gregorian, UTC).
pub(super) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days: shift to eras of 400 years starting 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Bytes as text when they are printable UTF-8, else as `0x…` hex.
pub(super) fn text_or_hex(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!("0x{}", hex(b)),
    }
}

pub(super) fn class_name(c: ObjectClass) -> String {
    c.name()
        .map_or_else(|| format!("{:#x}", c.0), str::to_owned)
}
pub(super) fn key_type_name(k: KeyType) -> String {
    k.name()
        .map_or_else(|| format!("{:#x}", k.0), str::to_owned)
}
pub(super) fn mechanism_name(m: MechanismType) -> String {
    m.name()
        .map_or_else(|| format!("{:#x}", m.0), str::to_owned)
}
pub(super) fn attribute_name(a: A) -> String {
    a.name()
        .map_or_else(|| format!("{:#x}", a.0), str::to_owned)
}

pub(super) fn cause(c: &VersionCause) -> String {
    match c {
        VersionCause::Created => "created".into(),
        VersionCause::AttributesChanged => "attributes changed".into(),
        VersionCause::RolledBack { from } => format!("rolled back to {:?}", VersionNo(*from)),
    }
}

/// Aligned `key  value` lines.
pub(super) fn pairs(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}

/// One attribute as shown.
#[derive(Serialize)]
pub(super) struct Shown {
    pub attribute: String,
    /// What a person reads: names for constants, text or hex for bytes.
    pub value: String,
    /// The value for scripts: bool, number, hex string, list or map. Absent when sensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// Length of a sensitive value, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<usize>,
}

/// Whether an attribute of an object of `class` must not be shown. The policy table says
/// which attributes are key material for key classes; objects of no or an unknown class
/// are treated as keys, so a vendor key class never leaks its material here.
pub(super) fn withheld(class: Option<ObjectClass>, t: A) -> bool {
    let known = class.is_some_and(|c| ObjectClass::KNOWN.contains(&c));
    policy::is_secret(class, t)
        || (!known && policy::rule(t).is_some_and(|r| r.flags.secret_in_keys))
}

/// Every attribute of a set, key material replaced by its length.
pub(super) fn attributes(attrs: &AttributeSet) -> Vec<Shown> {
    let class = attrs.class();
    attrs
        .iter()
        .map(|(t, v)| {
            if withheld(class, t) {
                sensitive(t, v)
            } else {
                let (value, raw) = value(t, v);
                Shown {
                    attribute: attribute_name(t),
                    value,
                    raw: Some(raw),
                    sensitive: false,
                    length: None,
                }
            }
        })
        .collect()
}

fn sensitive(t: A, v: &AttrValue) -> Shown {
    let length = match v {
        AttrValue::Bytes(b) => Some(b.len()),
        _ => None,
    };
    Shown {
        attribute: attribute_name(t),
        value: match length {
            Some(n) => format!("<sensitive, {n} bytes>"),
            None => "<sensitive>".into(),
        },
        raw: None,
        sensitive: true,
        length,
    }
}

fn is_text(t: A) -> bool {
    [A::LABEL, A::APPLICATION, A::URL, A::START_DATE, A::END_DATE].contains(&t)
}

/// (text, raw JSON) of one non-secret value.
fn value(t: A, v: &AttrValue) -> (String, Value) {
    match v {
        AttrValue::Bool(b) => (b.to_string(), json!(b)),
        AttrValue::Ulong(u) => {
            let text = match t {
                A::CLASS => class_name(ObjectClass(*u)),
                A::KEY_TYPE => key_type_name(KeyType(*u)),
                A::KEY_GEN_MECHANISM | A::NAME_HASH_ALGORITHM => mechanism_name(MechanismType(*u)),
                A::CERTIFICATE_TYPE => match u {
                    0 => "X_509".into(),
                    1 => "X_509_ATTR_CERT".into(),
                    2 => "WTLS".into(),
                    _ => format!("{u:#x}"),
                },
                _ => u.to_string(),
            };
            (text, json!(u))
        }
        AttrValue::Bytes(b) if b.is_empty() => ("(empty)".into(), json!("")),
        AttrValue::Bytes(b) if is_text(t) => (text_or_hex(b), json!(hex(b))),
        AttrValue::Bytes(b) => (format!("0x{}", hex(b)), json!(hex(b))),
        AttrValue::Mechanisms(m) => (
            m.iter()
                .map(|m| mechanism_name(MechanismType(*m)))
                .collect::<Vec<_>>()
                .join(", "),
            json!(m),
        ),
        AttrValue::Template(set) => {
            // A template describes other objects; whatever key material it names is
            // withheld whatever the class.
            let shown: Vec<(String, String, Option<Value>)> = set
                .iter()
                .map(|(t, v)| {
                    if policy::rule(t).is_some_and(|r| r.flags.secret_in_keys) {
                        let s = sensitive(t, v);
                        (s.attribute, s.value, None)
                    } else {
                        let (text, raw) = value(t, v);
                        (attribute_name(t), text, Some(raw))
                    }
                })
                .collect();
            let text = shown
                .iter()
                .map(|(n, v, _)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let raw: serde_json::Map<String, Value> = shown
                .into_iter()
                .map(|(n, _, r)| (n, r.unwrap_or(Value::Null)))
                .collect();
            (format!("{{{text}}}"), Value::Object(raw))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_agrees_with_a_day_by_day_walk() {
        let days_in = |y: i64, m: u32| match m {
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for day in 0..(400 * 366) {
            let want = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
            assert_eq!(rfc3339(day * 86_400), want);
            d += 1;
            if d > days_in(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(parse_hex("0x01aB").unwrap(), vec![1, 0xab]);
        assert_eq!(parse_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(hex(&parse_hex("00ff10").unwrap()), "00ff10");
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("é1").is_err());
    }

    #[test]
    fn key_material_is_never_rendered() {
        let set = AttributeSet::new()
            .with(A::CLASS, AttrValue::Ulong(ObjectClass::SECRET_KEY.0))
            .with(A::VALUE, AttrValue::Bytes(b"topsecret".to_vec()))
            .with(A::LABEL, AttrValue::Bytes(b"k".to_vec()));
        let shown = attributes(&set);
        let all = serde_json::to_string(&shown).unwrap();
        assert!(!all.contains("topsecret") && !all.contains(&hex(b"topsecret")));
        assert!(all.contains("<sensitive, 9 bytes>"), "{all}");
        // A vendor class is treated as a key class.
        assert!(withheld(Some(ObjectClass(0x8000_0001)), A::VALUE));
        assert!(withheld(None, A::PRIVATE_EXPONENT));
        assert!(!withheld(Some(ObjectClass::DATA), A::VALUE));
        // Inside templates too.
        let t = AttributeSet::new().with(A::VALUE, AttrValue::Bytes(b"topsecret".to_vec()));
        let (text, raw) = value(A::WRAP_TEMPLATE, &AttrValue::Template(t));
        assert!(!format!("{text}{raw}").contains("topsecret"), "{text}");
    }

    #[test]
    fn constants_show_by_name_and_unknown_ones_by_number() {
        assert_eq!(
            value(A::CLASS, &AttrValue::Ulong(3)).0,
            "PRIVATE_KEY".to_owned()
        );
        assert_eq!(value(A::KEY_TYPE, &AttrValue::Ulong(0x1f)).0, "AES");
        assert_eq!(
            value(
                A::ALLOWED_MECHANISMS,
                &AttrValue::Mechanisms(vec![0x1041, 0x8000_0000])
            )
            .0,
            "ECDSA, 0x80000000"
        );
        assert_eq!(attribute_name(A(0x8000_1234)), "0x80001234");
        assert_eq!(value(A::LABEL, &AttrValue::Bytes(b"hi".to_vec())).0, "hi");
        assert_eq!(value(A::LABEL, &AttrValue::Bytes(vec![0xff])).0, "0xff");
        assert_eq!(value(A::ID, &AttrValue::Bytes(b"hi".to_vec())).0, "0x6869");
    }
}
