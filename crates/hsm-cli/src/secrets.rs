//! PINs come from a file, an environment variable or a prompt, never from the command
//! line itself (where `ps` and shell history would show them).

use crate::exit::{CliError, CliResult};
use hsm_core::types::SecretString;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Where one PIN comes from.
pub enum From {
    File(PathBuf),
    Env(String),
    Prompt,
}

pub fn read_pin(what: &str, source: From, confirm: bool) -> CliResult<SecretString> {
    match source {
        From::File(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| {
                CliError::Io(format!("cannot read {what} from {}: {e}", p.display()))
            })?;
            let pin = text.lines().next().unwrap_or("").to_owned();
            if pin.is_empty() {
                return Err(CliError::Usage(format!(
                    "{what} file {} is empty",
                    p.display()
                )));
            }
            Ok(SecretString::new(pin))
        }
        From::Env(var) => match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Ok(SecretString::new(v)),
            _ => Err(CliError::Usage(format!(
                "{what}: environment variable {var} is not set"
            ))),
        },
        From::Prompt => {
            if !std::io::stdin().is_terminal() {
                return Err(CliError::Usage(format!(
                    "{what} needed: no terminal to prompt on; use a --*-pin-file or --*-pin-env option"
                )));
            }
            let first = rpassword::prompt_password(format!("{what}: "))
                .map_err(|e| CliError::Io(e.to_string()))?;
            if confirm {
                let again = rpassword::prompt_password(format!("{what} (again): "))
                    .map_err(|e| CliError::Io(e.to_string()))?;
                if again != first {
                    return Err(CliError::Usage(format!("the two {what} entries differ")));
                }
            }
            Ok(SecretString::new(first))
        }
    }
}

pub fn source(file: Option<PathBuf>, env: Option<String>) -> From {
    match (file, env) {
        (Some(f), _) => From::File(f),
        (None, Some(e)) => From::Env(e),
        (None, None) => From::Prompt,
    }
}
