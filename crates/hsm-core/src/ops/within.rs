//! One-shot outputs in one call: the length check of PKCS#11's two-call convention and
//! the operation together. In process this is what the separate calls did. For a client
//! of the server it saves a round trip on every `C_Sign`, `C_Encrypt`, `C_Decrypt` and
//! `C_Digest` that comes with a buffer. A buffer smaller than the output is
//! `BufferTooSmall` with the length needed, and the operation stays active, as PKCS#11
//! wants.

use crate::error::{Error, Result};
use crate::runtime::Hsm;
use zeroize::Zeroizing;

fn fits(cap: usize, needed: usize) -> Result<()> {
    if cap < needed {
        return Err(Error::BufferTooSmall(needed));
    }
    Ok(())
}

impl Hsm {
    pub fn sign_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        fits(cap, self.sign_len(h)?)?;
        self.sign(h, data)
    }

    /// Through [`Hsm::encrypt_into`] with a buffer of the needed size: the prepared key,
    /// and no copy of the input into the operation.
    pub fn encrypt_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        let needed = self.encrypt_len(h, data.len())?;
        fits(cap, needed)?;
        let mut out = vec![0u8; needed];
        let n = self.encrypt_into(h, data, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// As [`Hsm::encrypt_within`]; on any failure the buffer is wiped before it is freed
    /// (a bad tag leaves it zeroed already).
    pub fn decrypt_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        let needed = self.decrypt_len(h, data.len())?;
        fits(cap, needed)?;
        let mut out = Zeroizing::new(vec![0u8; needed]);
        let n = self.decrypt_into(h, data, &mut out)?;
        out.truncate(n);
        Ok(std::mem::take(&mut *out))
    }

    pub fn digest_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        fits(cap, self.digest_len(h)?)?;
        self.digest(h, data)
    }
}
