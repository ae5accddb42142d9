//! `schema/` is normative: its checked tables must agree with the code's constants.

use hsm_store::cf::Cf;

fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("schema/format.md lacks {heading:?}"));
    let rest = &doc[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

fn table_rows(section: &str) -> Vec<Vec<String>> {
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn schema_doc_matches_code() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schema/format.md"
    ))
    .unwrap();
    let versions = table_rows(section(&doc, "## Versions (checked)"));
    let get = |name: &str| {
        versions
            .iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].parse::<u32>().unwrap())
    };
    assert_eq!(get("schema version"), Some(hsm_store::migrate::CURRENT));
    assert_eq!(
        get("seal format"),
        Some(hsm_store::crypto::SEAL_FORMAT as u32)
    );
    let families: Vec<String> = table_rows(section(&doc, "## Column families (checked)"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let code: Vec<String> = Cf::ALL.iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(
        families, code,
        "column families in schema/format.md vs hsm_store::cf::Cf::ALL"
    );
    assert!(doc.contains(&format!(
        "`{}`",
        String::from_utf8_lossy(hsm_store::keys::meta::SCHEMA_VERSION).replace('\0', "\\x00")
    )));
    let sealing = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schema/sealing.md"
    ))
    .unwrap();
    assert!(sealing.contains(&format!("seal format {}", hsm_store::crypto::SEAL_FORMAT)));
}
