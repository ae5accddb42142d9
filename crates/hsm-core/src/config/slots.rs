//! `[[slots]]`: which tokens the module shows, in slot order, and where each token's keys
//! live — in FerroHSM (the software adapter, the default) or in another device through an
//! adapter (`docs/adapters.md`). The adapter's settings sit in the same table; each
//! adapter names the ones it takes and refuses the others.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One `[[slots]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SlotConfig {
    pub token: u32,
    /// `software` (default), `pkcs11` or `yubihsm`.
    #[serde(default = "software")]
    pub adapter: String,
    /// Everything else in the table: the adapter's settings.
    #[serde(flatten)]
    pub settings: BTreeMap<String, Setting>,
}

/// One adapter setting's value.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    Text(String),
    Number(i64),
    Flag(bool),
}

/// The adapter every slot has unless its table names another.
pub const SOFTWARE: &str = "software";

fn software() -> String {
    SOFTWARE.into()
}

/// Settings that would put a secret in the file: refused by name, whatever the adapter.
const INLINE_SECRETS: [&str; 4] = ["pin", "password", "so_pin", "passphrase"];

impl SlotConfig {
    /// A slot of the software adapter (what `[[slots]] token = N` alone says).
    pub fn software(token: u32) -> SlotConfig {
        SlotConfig {
            token,
            adapter: software(),
            settings: BTreeMap::new(),
        }
    }

    pub fn is_software(&self) -> bool {
        self.adapter == SOFTWARE
    }

    /// A text setting, if present: `Err` names it when it has another type.
    pub fn text(&self, key: &str) -> Result<Option<&str>, String> {
        match self.settings.get(key) {
            None => Ok(None),
            Some(Setting::Text(t)) => Ok(Some(t)),
            Some(_) => Err(format!("slots (token {}): {key} must be text", self.token)),
        }
    }

    /// A number setting, if present.
    pub fn number(&self, key: &str) -> Result<Option<i64>, String> {
        match self.settings.get(key) {
            None => Ok(None),
            Some(Setting::Number(n)) => Ok(Some(*n)),
            Some(_) => Err(format!(
                "slots (token {}): {key} must be a number",
                self.token
            )),
        }
    }

    /// Refuses settings outside `known`, naming them and the adapter.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.settings.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(format!(
                "slots (token {}): the {} adapter has no setting {k:?} (it takes: {})",
                self.token,
                self.adapter,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )),
        }
    }

    /// What every slot table must satisfy, before any adapter looks at it.
    pub(super) fn validate(&self) -> Result<(), String> {
        if let Some(k) = self
            .settings
            .keys()
            .find(|k| INLINE_SECRETS.contains(&k.as_str()))
        {
            return Err(format!(
                "slots (token {}): {k} cannot be written in the configuration file; \
                 give {k}_file (a file readable only by this user) or {k}_env (an \
                 environment variable) instead",
                self.token
            ));
        }
        if self.is_software() {
            self.only(&[])?;
        }
        Ok(())
    }

    /// Relative paths in `*_file` and `module` settings are taken from the file's
    /// directory, like `store`.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for (k, v) in &mut self.settings {
            if let Setting::Text(t) = v
                && (k.ends_with("_file") || k == "module")
                && Path::new(t.as_str()).is_relative()
            {
                *t = base.join(t.as_str()).display().to_string();
            }
        }
    }
}

/// A secret an adapter needs (a device PIN, a password), read from `<key>_file` or
/// `<key>_env` — never from the file itself. Trailing newlines of a file are dropped.
pub fn secret_setting(slot: &SlotConfig, key: &str) -> Result<hsm_types::SecretString, String> {
    let (file, env) = (format!("{key}_file"), format!("{key}_env"));
    match (slot.text(&file)?, slot.text(&env)?) {
        (Some(_), Some(_)) => Err(format!(
            "slots (token {}): give {file} or {env}, not both",
            slot.token
        )),
        (Some(path), None) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("slots (token {}): {file} {path}: {e}", slot.token))?,
            );
            Ok(hsm_types::SecretString::new(
                text.trim_end_matches(['\r', '\n']).to_string(),
            ))
        }
        (None, Some(var)) => std::env::var(var)
            .map(hsm_types::SecretString::new)
            .map_err(|_| {
                format!(
                    "slots (token {}): {env}: the environment variable {var} is not set",
                    slot.token
                )
            }),
        (None, None) => Err(format!(
            "slots (token {}): the {} adapter needs {file} or {env}",
            slot.token, slot.adapter
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn an_adapter_slot_keeps_its_settings_and_software_takes_none() {
        let c = Config::parse(
            "store = \"s\"\n[[slots]]\ntoken = 1\n[[slots]]\ntoken = 2\nadapter = \"pkcs11\"\n\
             module = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"backing\"\n\
             pin_env = \"BACKING_PIN\"\nslot_id = 3\n",
        )
        .unwrap();
        assert_eq!(c.slots[0], SlotConfig::software(1));
        let s = &c.slots[1];
        assert_eq!(s.adapter, "pkcs11");
        assert_eq!(s.text("token_label").unwrap(), Some("backing"));
        assert_eq!(s.number("slot_id").unwrap(), Some(3));
        assert!(s.number("token_label").unwrap_err().contains("number"));
        assert!(s.only(&["module"]).unwrap_err().contains("pin_env"));
        let e = Config::parse("store = \"s\"\n[[slots]]\ntoken = 1\nmodule = \"x\"\n").unwrap_err();
        assert!(
            e.contains("software adapter has no setting \"module\""),
            "{e}"
        );
    }

    #[test]
    fn a_secret_written_in_the_file_is_refused_by_name() {
        for key in ["pin", "password"] {
            let e = Config::parse(&format!(
                "store = \"s\"\n[[slots]]\ntoken = 1\nadapter = \"pkcs11\"\n{key} = \"1234\"\n"
            ))
            .unwrap_err();
            assert!(e.contains(&format!("{key}_file")), "{e}");
        }
    }

    #[test]
    fn secrets_come_from_a_file_or_the_environment() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pin");
        std::fs::write(&f, "s3cret\n").unwrap();
        let mut s = SlotConfig {
            adapter: "pkcs11".into(),
            ..SlotConfig::software(1)
        };
        assert!(
            secret_setting(&s, "pin")
                .err()
                .unwrap()
                .contains("pin_file or pin_env")
        );
        s.settings
            .insert("pin_file".into(), Setting::Text(f.display().to_string()));
        assert_eq!(secret_setting(&s, "pin").unwrap().expose(), "s3cret");
        s.settings.insert(
            "pin_env".into(),
            Setting::Text("FERROHSM_TEST_NO_SUCH_VARIABLE".into()),
        );
        assert!(
            secret_setting(&s, "pin")
                .err()
                .unwrap()
                .contains("not both")
        );
        s.settings.remove("pin_file");
        assert!(
            secret_setting(&s, "pin")
                .err()
                .unwrap()
                .contains("is not set")
        );
    }
}
