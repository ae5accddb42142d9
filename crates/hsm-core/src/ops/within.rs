//! One-shot outputs in one call: the length check of PKCS#11's two-call convention and
//! the operation together. In process this is what the separate calls did. For a client
//! of the server it saves a round trip on every `C_Sign`, `C_Encrypt`, `C_Decrypt` and
//! `C_Digest` that comes with a buffer. A buffer smaller than the output is
//! `BufferTooSmall` with the length needed, and the operation stays active, as PKCS#11
//! wants.

use crate::error::{Error, Result};
use crate::runtime::Hsm;

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

    pub fn encrypt_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        fits(cap, self.encrypt_len(h, data.len())?)?;
        self.encrypt(h, data)
    }

    pub fn decrypt_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        fits(cap, self.decrypt_len(h, data.len())?)?;
        self.decrypt(h, data)
    }

    pub fn digest_within(&self, h: u64, data: &[u8], cap: usize) -> Result<Vec<u8>> {
        fits(cap, self.digest_len(h)?)?;
        self.digest(h, data)
    }
}
