//! Message digests and the PKCS#1 DigestInfo prefixes that go with them.

use aws_lc_rs::digest as lc;
use hsm_types::MechanismType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub const ALL: [HashAlg; 5] = [
        HashAlg::Sha1,
        HashAlg::Sha224,
        HashAlg::Sha256,
        HashAlg::Sha384,
        HashAlg::Sha512,
    ];

    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The digest mechanism (`CKM_SHA_1`, `CKM_SHA224`, …), not the signature ones.
    pub fn from_mechanism(m: MechanismType) -> Option<HashAlg> {
        match m {
            MechanismType::SHA_1 => Some(HashAlg::Sha1),
            MechanismType::SHA224 => Some(HashAlg::Sha224),
            MechanismType::SHA256 => Some(HashAlg::Sha256),
            MechanismType::SHA384 => Some(HashAlg::Sha384),
            MechanismType::SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    pub fn mechanism(self) -> MechanismType {
        match self {
            HashAlg::Sha1 => MechanismType::SHA_1,
            HashAlg::Sha224 => MechanismType::SHA224,
            HashAlg::Sha256 => MechanismType::SHA256,
            HashAlg::Sha384 => MechanismType::SHA384,
            HashAlg::Sha512 => MechanismType::SHA512,
        }
    }

    /// One-shot digest.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        lc::digest(self.lc_algorithm(), data).as_ref().to_vec()
    }

    pub(crate) fn lc_algorithm(self) -> &'static lc::Algorithm {
        match self {
            HashAlg::Sha1 => &lc::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha224 => &lc::SHA224,
            HashAlg::Sha256 => &lc::SHA256,
            HashAlg::Sha384 => &lc::SHA384,
            HashAlg::Sha512 => &lc::SHA512,
        }
    }

    /// DER of `DigestInfo` up to the digest octets (RFC 8017 §9.2 note 1).
    pub(crate) fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            HashAlg::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
            HashAlg::Sha224 => &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x04, 0x05, 0x00, 0x04, 0x1c,
            ],
            HashAlg::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            HashAlg::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            HashAlg::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    pub(crate) fn digest_info(self, digest: &[u8]) -> Vec<u8> {
        let mut out = self.digest_info_prefix().to_vec();
        out.extend_from_slice(digest);
        out
    }
}

/// Recognises a DER `DigestInfo` (with the NULL parameters) for one of our hashes.
pub(crate) fn parse_digest_info(data: &[u8]) -> Option<(HashAlg, &[u8])> {
    HashAlg::ALL.into_iter().find_map(|h| {
        let prefix = h.digest_info_prefix();
        (data.len() == prefix.len() + h.output_len() && data.starts_with(prefix))
            .then(|| (h, &data[prefix.len()..]))
    })
}

/// An incremental digest (`C_DigestUpdate`, and the hash of multi-part `C_SignUpdate`).
#[derive(Clone)]
pub struct Digester {
    alg: HashAlg,
    ctx: lc::Context,
}

impl Digester {
    pub fn new(alg: HashAlg) -> Self {
        Digester {
            alg,
            ctx: lc::Context::new(alg.lc_algorithm()),
        }
    }
    pub fn algorithm(&self) -> HashAlg {
        self.alg
    }
    pub fn output_len(&self) -> usize {
        self.alg.output_len()
    }
    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }
    pub fn finish(self) -> Vec<u8> {
        self.ctx.finish().as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn oracle(h: HashAlg, data: &[u8]) -> Vec<u8> {
        match h {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha224 => sha2::Sha224::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    #[test]
    fn digests_match_rustcrypto_and_incremental_equals_one_shot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for h in HashAlg::ALL {
            let one_shot = h.digest(&data);
            assert_eq!(one_shot, oracle(h, &data), "{h:?}");
            assert_eq!(one_shot.len(), h.output_len());
            let mut d = Digester::new(h);
            for chunk in data.chunks(77) {
                d.update(chunk);
            }
            // A clone mid-way (C_DigestUpdate then abandon) does not disturb the original.
            let fork = d.clone();
            assert_eq!(d.finish(), one_shot, "{h:?}");
            assert_eq!(fork.finish(), one_shot);
            assert_eq!(Digester::new(h).finish(), oracle(h, b""));
        }
    }

    #[test]
    fn known_vector_sha256_abc() {
        assert_eq!(
            HashAlg::Sha256.digest(b"abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
    }

    #[test]
    fn mechanisms_map_both_ways() {
        for h in HashAlg::ALL {
            assert_eq!(HashAlg::from_mechanism(h.mechanism()), Some(h));
        }
        assert_eq!(HashAlg::from_mechanism(MechanismType::SHA256_HMAC), None);
    }

    #[test]
    fn digest_info_prefixes_match_rustcrypto_rsa() {
        use rsa::Pkcs1v15Sign;
        let expected = [
            (HashAlg::Sha1, Pkcs1v15Sign::new::<sha1::Sha1>()),
            (HashAlg::Sha224, Pkcs1v15Sign::new::<sha2::Sha224>()),
            (HashAlg::Sha256, Pkcs1v15Sign::new::<sha2::Sha256>()),
            (HashAlg::Sha384, Pkcs1v15Sign::new::<sha2::Sha384>()),
            (HashAlg::Sha512, Pkcs1v15Sign::new::<sha2::Sha512>()),
        ];
        for (h, scheme) in expected {
            assert_eq!(h.digest_info_prefix(), &*scheme.prefix, "{h:?}");
            let di = h.digest_info(&h.digest(b"x"));
            assert_eq!(
                parse_digest_info(&di),
                Some((h, &di[di.len() - h.output_len()..]))
            );
            assert_eq!(parse_digest_info(&di[1..]), None);
        }
    }
}
