//! `libferrohsm_pkcs11.so`: the PKCS#11 module.
//!
//! Every `C_*` export is a short shim: check pointers, call a function returning
//! `Result`, map the error to `CK_RV` in one exhaustive match ([`boundary::Error::rv`]),
//! all inside a panic boundary ([`boundary::ffi`]). The exports are in [`entry`], one
//! file per chapter of PKCS#11; every pointer they are given goes through `guard`. This
//! is the only crate with `unsafe`.
// The C edge is the one crate with `unsafe`: every block says why it is sound.
#![allow(unsafe_code)]
// CK_ULONG is 64 bits here but 32 on Windows: the casts are portability, not noise.
#![allow(clippy::unnecessary_cast)]

pub mod boundary;
pub mod client;
pub mod entry;
mod guard;
mod label;
mod launch;
mod mechanism;
mod state;
pub mod template;
pub mod token_flags;

pub use entry::general::*;

use boundary::Error;

/// The token runtime behind the exports, for in-process tests that look at state no
/// `C_*` call shows (the key cache, say). Not part of the C interface.
#[doc(hidden)]
pub fn runtime() -> Result<std::sync::Arc<hsm_core::Hsm>, Error> {
    state::hsm()
}

/// The file this code was loaded from (the `.so`, or a test binary that links the
/// rlib): the mapping of `/proc/self/maps` that holds one of its functions.
pub(crate) fn module_path() -> Option<std::path::PathBuf> {
    let here = module_path as fn() -> Option<std::path::PathBuf> as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (lo, hi) = f.next()?.split_once('-')?;
        let lo = usize::from_str_radix(lo, 16).ok()?;
        let hi = usize::from_str_radix(hi, 16).ok()?;
        let path = f.nth(4)?;
        (lo <= here && here < hi && path.starts_with('/')).then(|| path.into())
    })
}

/// Library version reported by `C_GetInfo` (major, minor).
pub const LIBRARY_VERSION: (u8, u8) = (0, 1);
pub const MANUFACTURER: &str = "FerroHSM";
pub const DESCRIPTION: &str = "FerroHSM software token";

#[cfg(test)]
mod tests {
    #[test]
    fn functions_doc_lists_every_entry_point() {
        let doc = include_str!("../../../docs/pkcs11/functions.md");
        let status = |name: &str| {
            doc.lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .map(|l| l.split('|').nth(2).unwrap_or("").trim().to_owned())
                .unwrap_or_else(|| panic!("docs/pkcs11/functions.md has no row for {name}"))
        };
        for name in crate::entry::NOT_SUPPORTED {
            assert_eq!(status(name), "not supported", "{name}");
        }
        for name in crate::entry::IMPLEMENTED {
            assert!(
                status(name).starts_with("supported"),
                "{name}: {}",
                status(name)
            );
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `C_")).count();
        assert_eq!(
            rows,
            crate::entry::NOT_SUPPORTED.len() + crate::entry::IMPLEMENTED.len()
        );
    }
}
