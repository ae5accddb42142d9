//! The mechanisms this token offers, with their true key sizes and flags (`C_GetMechanismList`,
//! `C_GetMechanismInfo`).

use hsm_types::MechanismType as M;

/// `CKF_*` mechanism flags (PKCS#11 values).
pub mod flags {
    pub const HW: u64 = 0x1;
    /// PKCS#11 3.0: usable with `C_MessageEncryptInit` / `C_MessageDecryptInit`.
    pub const MESSAGE_ENCRYPT: u64 = 0x2;
    pub const MESSAGE_DECRYPT: u64 = 0x4;
    pub const ENCRYPT: u64 = 0x100;
    pub const DECRYPT: u64 = 0x200;
    pub const DIGEST: u64 = 0x400;
    pub const SIGN: u64 = 0x800;
    pub const VERIFY: u64 = 0x2000;
    pub const GENERATE: u64 = 0x8000;
    pub const GENERATE_KEY_PAIR: u64 = 0x10000;
    pub const DERIVE: u64 = 0x80000;
    pub const WRAP: u64 = 0x20000;
    pub const UNWRAP: u64 = 0x40000;
    pub const EC_F_P: u64 = 0x100000;
    pub const EC_NAMEDCURVE: u64 = 0x800000;
    pub const EC_UNCOMPRESS: u64 = 0x1000000;
}

/// `CK_MECHANISM_INFO`: key sizes in bits for RSA and EC, bytes for AES and generic secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MechanismInfo {
    pub min_key: u64,
    pub max_key: u64,
    pub flags: u64,
}

const fn info(min_key: u64, max_key: u64, flags: u64) -> MechanismInfo {
    MechanismInfo {
        min_key,
        max_key,
        flags,
    }
}

const EC: u64 = flags::EC_F_P | flags::EC_NAMEDCURVE | flags::EC_UNCOMPRESS;

/// Every mechanism, in the order `C_GetMechanismList` reports them.
pub const TABLE: &[(M, MechanismInfo)] = &[
    (
        M::RSA_PKCS_KEY_PAIR_GEN,
        info(2048, 4096, flags::GENERATE_KEY_PAIR),
    ),
    (
        M::RSA_PKCS,
        info(
            2048,
            4096,
            flags::SIGN | flags::VERIFY | flags::ENCRYPT | flags::WRAP,
        ),
    ),
    (
        M::RSA_PKCS_OAEP,
        info(
            2048,
            4096,
            flags::ENCRYPT | flags::DECRYPT | flags::WRAP | flags::UNWRAP,
        ),
    ),
    (
        M::SHA256_RSA_PKCS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::SHA384_RSA_PKCS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::SHA512_RSA_PKCS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::RSA_PKCS_PSS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::SHA256_RSA_PKCS_PSS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::SHA384_RSA_PKCS_PSS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::SHA512_RSA_PKCS_PSS,
        info(2048, 4096, flags::SIGN | flags::VERIFY),
    ),
    (
        M::EC_KEY_PAIR_GEN,
        info(256, 521, flags::GENERATE_KEY_PAIR | EC),
    ),
    (M::ECDSA, info(256, 521, flags::SIGN | flags::VERIFY | EC)),
    (
        M::ECDSA_SHA256,
        info(256, 521, flags::SIGN | flags::VERIFY | EC),
    ),
    (
        M::ECDSA_SHA384,
        info(256, 521, flags::SIGN | flags::VERIFY | EC),
    ),
    (
        M::ECDSA_SHA512,
        info(256, 521, flags::SIGN | flags::VERIFY | EC),
    ),
    (M::ECDH1_DERIVE, info(255, 521, flags::DERIVE | EC)),
    (
        M::EC_MONTGOMERY_KEY_PAIR_GEN,
        info(255, 255, flags::GENERATE_KEY_PAIR),
    ),
    (
        M::EC_EDWARDS_KEY_PAIR_GEN,
        info(255, 255, flags::GENERATE_KEY_PAIR),
    ),
    (M::EDDSA, info(255, 255, flags::SIGN | flags::VERIFY)),
    (M::HKDF_DERIVE, info(1, 512, flags::DERIVE)),
    (M::FERRO_KEY_ROTATE, info(0, 0, flags::DERIVE)),
    (M::AES_KEY_GEN, info(16, 32, flags::GENERATE)),
    (
        M::AES_GCM,
        info(
            16,
            32,
            flags::ENCRYPT | flags::DECRYPT | flags::MESSAGE_ENCRYPT | flags::MESSAGE_DECRYPT,
        ),
    ),
    (M::AES_CBC, info(16, 32, flags::ENCRYPT | flags::DECRYPT)),
    (
        M::AES_CBC_PAD,
        info(16, 32, flags::ENCRYPT | flags::DECRYPT),
    ),
    (M::AES_CTR, info(16, 32, flags::ENCRYPT | flags::DECRYPT)),
    (M::AES_ECB, info(16, 32, flags::ENCRYPT | flags::DECRYPT)),
    (M::AES_CMAC, info(16, 32, flags::SIGN | flags::VERIFY)),
    (M::AES_KEY_WRAP, info(16, 32, flags::WRAP | flags::UNWRAP)),
    (
        M::AES_KEY_WRAP_KWP,
        info(16, 32, flags::WRAP | flags::UNWRAP),
    ),
    (M::GENERIC_SECRET_KEY_GEN, info(1, 512, flags::GENERATE)),
    (M::SP800_108_COUNTER_KDF, info(1, 512, flags::DERIVE)),
    (M::SP800_108_FEEDBACK_KDF, info(1, 512, flags::DERIVE)),
    (M::SHA_1_KEY_GEN, info(1, 512, flags::GENERATE)),
    (M::SHA224_KEY_GEN, info(1, 512, flags::GENERATE)),
    (M::SHA256_KEY_GEN, info(1, 512, flags::GENERATE)),
    (M::SHA384_KEY_GEN, info(1, 512, flags::GENERATE)),
    (M::SHA512_KEY_GEN, info(1, 512, flags::GENERATE)),
    (M::SHA_1_HMAC, info(1, 512, flags::SIGN | flags::VERIFY)),
    (M::SHA224_HMAC, info(1, 512, flags::SIGN | flags::VERIFY)),
    (M::SHA256_HMAC, info(1, 512, flags::SIGN | flags::VERIFY)),
    (M::SHA384_HMAC, info(1, 512, flags::SIGN | flags::VERIFY)),
    (M::SHA512_HMAC, info(1, 512, flags::SIGN | flags::VERIFY)),
    (M::SHA_1, info(0, 0, flags::DIGEST)),
    (M::SHA224, info(0, 0, flags::DIGEST)),
    (M::SHA256, info(0, 0, flags::DIGEST)),
    (M::SHA384, info(0, 0, flags::DIGEST)),
    (M::SHA512, info(0, 0, flags::DIGEST)),
];

pub fn mechanism_info(m: M) -> Option<MechanismInfo> {
    TABLE.iter().find(|(t, _)| *t == m).map(|(_, i)| *i)
}
