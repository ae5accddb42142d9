//! HMAC (CKM_SHA*_HMAC) through aws-lc-rs, incremental.

use super::{CryptoError, CryptoResult, HashAlg};
use aws_lc_rs::hmac;

/// An HMAC computation in progress. Holds the key schedule only (aws-lc zeroizes it).
pub struct Mac {
    ctx: hmac::Context,
    len: usize,
}

impl Mac {
    /// SHA-256, SHA-384 or SHA-512 HMAC with a key of 1 to 512 bytes.
    pub fn new(alg: HashAlg, key: &[u8]) -> CryptoResult<Mac> {
        let algorithm = match alg {
            HashAlg::Sha256 => hmac::HMAC_SHA256,
            HashAlg::Sha384 => hmac::HMAC_SHA384,
            HashAlg::Sha512 => hmac::HMAC_SHA512,
            _ => return Err(CryptoError::MechanismInvalid),
        };
        if key.is_empty() || key.len() > 512 {
            return Err(CryptoError::KeySizeRange);
        }
        let key = hmac::Key::new(algorithm, key);
        Ok(Mac {
            ctx: hmac::Context::with_key(&key),
            len: alg.output_len(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    pub fn finish(self) -> Vec<u8> {
        self.ctx.sign().as_ref().to_vec()
    }

    /// Compares in constant time; a wrong length is its own answer.
    pub fn verify(self, tag: &[u8]) -> CryptoResult<()> {
        if tag.len() != self.len {
            return Err(CryptoError::SignatureLenRange);
        }
        let mine = self.ctx.sign();
        aws_lc_rs::constant_time::verify_slices_are_equal(mine.as_ref(), tag)
            .map_err(|_| CryptoError::SignatureInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
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
            Mac::new(HashAlg::Sha1, b"k"),
            Err(CryptoError::MechanismInvalid)
        ));
        assert!(matches!(
            Mac::new(HashAlg::Sha256, b""),
            Err(CryptoError::KeySizeRange)
        ));
    }
}
