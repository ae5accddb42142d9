//! The token label as `C_InitToken` receives it.

/// The label of `C_InitToken`: 32 bytes, blank-padded by the standard. Some clients
/// (PyKCS11 among them) pass a shorter, NUL-terminated string instead, so the label ends at
/// the first NUL; bytes that are not UTF-8 become U+FFFD, and the result is cut back to 32
/// bytes on a character boundary so that the replacement characters cannot push it over.
pub(crate) fn label_of(raw: &[u8]) -> String {
    let raw = raw.split(|b| *b == 0).next().unwrap_or_default();
    let mut label = String::from_utf8_lossy(raw).trim_end().to_owned();
    while label.len() > 32 {
        label.pop();
    }
    label
}

#[cfg(test)]
mod tests {
    use super::label_of;

    #[test]
    fn labels_end_at_blanks_or_a_nul_and_fit_in_32_bytes() {
        let mut padded = *b"ci signing                      ";
        assert_eq!(label_of(&padded), "ci signing");
        padded[9] = 0;
        padded[12] = 0xff;
        assert_eq!(
            label_of(&padded),
            "ci signin",
            "what follows a NUL is not the label"
        );
        let garbage = [0xffu8; 32];
        let l = label_of(&garbage);
        assert!(l.len() <= 32 && l.chars().all(|c| c == '\u{fffd}'), "{l:?}");
        assert_eq!(label_of(&[b' '; 32]), "");
    }
}
