//! Message authentication codes through aws-lc-rs, incremental: HMAC (CKM_SHA*_HMAC) and
//! AES-CMAC (CKM_AES_CMAC).

use super::{CryptoError, CryptoResult, HashAlg};
use aws_lc_rs::{cmac, hmac};

/// A MAC computation in progress. Holds the key schedule only (aws-lc zeroizes it).
pub struct Mac {
    ctx: Ctx,
    len: usize,
}

enum Ctx {
    /// Boxed: an HMAC context is over a kilobyte, and operations in a session sit side by
    /// side in one table.
    Hmac(Box<hmac::Context>),
    Cmac(cmac::Context),
}

impl Mac {
    /// HMAC with SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512 and a key of 1 to 512 bytes.
    /// HMAC-SHA-1 stays sound as a MAC (it needs no collision resistance) and is what
    /// HOTP/TOTP (RFC 4226/6238) run on.
    pub fn new(alg: HashAlg, key: &[u8]) -> CryptoResult<Mac> {
        let algorithm = match alg {
            HashAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha224 => hmac::HMAC_SHA224,
            HashAlg::Sha256 => hmac::HMAC_SHA256,
            HashAlg::Sha384 => hmac::HMAC_SHA384,
            HashAlg::Sha512 => hmac::HMAC_SHA512,
        };
        if key.is_empty() || key.len() > 512 {
            return Err(CryptoError::KeySizeRange);
        }
        let key = hmac::Key::new(algorithm, key);
        Ok(Mac {
            ctx: Ctx::Hmac(Box::new(hmac::Context::with_key(&key))),
            len: alg.output_len(),
        })
    }

    /// AES-CMAC (NIST SP 800-38B) with a 128-, 192- or 256-bit key; 16-byte tags.
    pub fn aes_cmac(key: &[u8]) -> CryptoResult<Mac> {
        let algorithm = match key.len() {
            16 => cmac::AES_128,
            24 => cmac::AES_192,
            32 => cmac::AES_256,
            _ => return Err(CryptoError::KeySizeRange),
        };
        let key = cmac::Key::new(algorithm, key).map_err(|_| CryptoError::KeySizeRange)?;
        Ok(Mac {
            ctx: Ctx::Cmac(cmac::Context::with_key(&key)),
            len: 16,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.ctx {
            Ctx::Hmac(c) => c.update(data),
            // Updating a live CMAC context cannot fail; a failure would show at finish.
            Ctx::Cmac(c) => {
                let _ = c.update(data);
            }
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self.ctx {
            Ctx::Hmac(c) => c.sign().as_ref().to_vec(),
            Ctx::Cmac(c) => c.sign().map(|t| t.as_ref().to_vec()).unwrap_or_default(),
        }
    }

    /// Compares in constant time; a wrong length is its own answer.
    pub fn verify(self, tag: &[u8]) -> CryptoResult<()> {
        if tag.len() != self.len {
            return Err(CryptoError::SignatureLenRange);
        }
        let mine = self.finish();
        if mine.len() != tag.len() {
            return Err(CryptoError::General("MAC computation failed".into()));
        }
        aws_lc_rs::constant_time::verify_slices_are_equal(&mine, tag)
            .map_err(|_| CryptoError::SignatureInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_hex as hex;

    /// RFC 2202 case 2 (SHA-1), RFC 4231 case 2 (SHA-224), and the first HOTP value's
    /// HMAC of RFC 4226 appendix D (counter 0 under "12345678901234567890").
    #[test]
    fn sha1_and_sha224_hmac_vectors() {
        let mac = |alg, key: &[u8], data: &[u8]| {
            let mut m = Mac::new(alg, key).unwrap();
            m.update(data);
            m.finish()
        };
        assert_eq!(
            mac(HashAlg::Sha1, b"Jefe", b"what do ya want for nothing?"),
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
        assert_eq!(
            mac(HashAlg::Sha224, b"Jefe", b"what do ya want for nothing?"),
            hex("a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44")
        );
        assert_eq!(
            mac(HashAlg::Sha1, b"12345678901234567890", &[0u8; 8]),
            hex("cc93cf18508d94934c64b65d8ba7667fb7cde4b0")
        );
    }

    #[test]
    fn rfc4231_case_2_in_parts() {
        // Key "Jefe", data "what do ya want for nothing?".
        let mut m = Mac::new(HashAlg::Sha256, b"Jefe").unwrap();
        m.update(b"what do ya want ");
        m.update(b"for nothing?");
        assert_eq!(
            m.finish(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        let mut m = Mac::new(HashAlg::Sha512, b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            m.finish(),
            hex(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            )
        );
    }

    #[test]
    fn aes_cmac_matches_sp800_38b() {
        // SP 800-38B D.1, AES-128, Example 2 (one block).
        let mut m = Mac::aes_cmac(&hex("2b7e151628aed2a6abf7158809cf4f3c")).unwrap();
        m.update(&hex("6bc1bee22e409f96e93d7e117393172a"));
        assert_eq!(m.finish(), hex("070a16b46b4d4144f79bdd9dd04a287c"));
        // Example 1: the empty message.
        let m = Mac::aes_cmac(&hex("2b7e151628aed2a6abf7158809cf4f3c")).unwrap();
        assert_eq!(m.finish(), hex("bb1d6929e95937287fa37d129b756746"));
        assert!(matches!(
            Mac::aes_cmac(&[0; 10]),
            Err(CryptoError::KeySizeRange)
        ));
    }

    #[test]
    fn verify_rejects_wrong_tags_and_lengths() {
        let mut m = Mac::new(HashAlg::Sha384, b"key").unwrap();
        m.update(b"data");
        let tag = m.finish();
        let check = |t: &[u8]| {
            let mut m = Mac::new(HashAlg::Sha384, b"key").unwrap();
            m.update(b"data");
            m.verify(t)
        };
        assert!(check(&tag).is_ok());
        let mut bad = tag.clone();
        bad[0] ^= 1;
        assert!(matches!(check(&bad), Err(CryptoError::SignatureInvalid)));
        assert!(matches!(
            check(&tag[..10]),
            Err(CryptoError::SignatureLenRange)
        ));
        assert!(matches!(
            Mac::new(HashAlg::Sha256, b""),
            Err(CryptoError::KeySizeRange)
        ));
    }
}
