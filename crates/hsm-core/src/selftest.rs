//! Power-on self-tests: a known-answer test for every algorithm family before the module
//! serves anything, run at `C_Initialize`. A failure puts the module in an error state
//! where no cryptographic operation produces output (see `Hsm::check_health`).
//!
//! The expected values come from outside this code base: the SHA and HMAC vectors are the
//! FIPS 180 / RFC 4231 examples, AES-GCM is test case 14 of the GCM specification, and the
//! RSA and ECDSA signatures were made with the `openssl` command-line tool.

use crate::crypto::{self, Curve, Digester, HashAlg, SignMechanism, VerifyingKey};

/// Environment variable that makes one named self-test fail, so tests can check the
/// error state. It can only take functionality away (the module fails closed), and it is
/// read only in builds with the `test-hooks` feature: a shipped module ignores it.
pub const INJECT_ENV: &str = "FERROHSM_SELFTEST_INJECT_FAILURE";

/// The self-test a test asked to fail, if this build has the hook.
#[cfg(feature = "test-hooks")]
fn injected() -> Option<String> {
    std::env::var(INJECT_ENV).ok()
}

#[cfg(not(feature = "test-hooks"))]
fn injected() -> Option<String> {
    None
}

/// A constant of this file in hex; a malformed one decodes to nothing, which fails its
/// test (the module fails closed).
fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_default()
}

/// A self-test: it passes, or says what went wrong.
pub type SelfTest = fn() -> Result<(), String>;

/// The self-tests, by name.
pub const TESTS: &[(&str, SelfTest)] = &[
    ("sha", sha),
    ("hmac", hmac),
    ("aes-gcm", aes_gcm),
    ("rsa-verify", rsa_verify),
    ("ecdsa-verify", ecdsa_verify),
    ("ecdsa-sign", ecdsa_sign),
    ("rng", rng),
];

/// Runs every self-test; the first failure is returned with its name.
pub fn run_all() -> Result<(), String> {
    let inject = injected();
    for (name, test) in TESTS {
        if inject.as_deref() == Some(*name) {
            return Err(format!(
                "self-test {name} failed (injected through {INJECT_ENV})"
            ));
        }
        test().map_err(|e| format!("self-test {name} failed: {e}"))?;
    }
    Ok(())
}

fn expect(what: &str, got: &[u8], want: &str) -> Result<(), String> {
    if got == unhex(want).as_slice() {
        Ok(())
    } else {
        Err(format!("{what}: wrong answer"))
    }
}

fn digest(alg: HashAlg, data: &[u8]) -> Vec<u8> {
    let mut d = Digester::new(alg);
    d.update(data);
    d.finish()
}

fn sha() -> Result<(), String> {
    expect(
        "SHA-1",
        &digest(HashAlg::Sha1, b"abc"),
        "a9993e364706816aba3e25717850c26c9cd0d89d",
    )?;
    expect(
        "SHA-256",
        &digest(HashAlg::Sha256, b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )?;
    expect(
        "SHA-384",
        &digest(HashAlg::Sha384, b"abc"),
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
    )?;
    expect(
        "SHA-512",
        &digest(HashAlg::Sha512, b"abc"),
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    )
}

fn hmac() -> Result<(), String> {
    // RFC 4231, test case 1.
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[0x0b; 20]);
    let tag = aws_lc_rs::hmac::sign(&key, b"Hi There");
    expect(
        "HMAC-SHA-256",
        tag.as_ref(),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    )
}

fn aes_gcm() -> Result<(), String> {
    // GCM specification, test case 14: 256-bit zero key, zero IV, one zero block.
    let out = crypto::aes_gcm_encrypt(&[0; 32], &[0; 12], &[], 128, &[0; 16])
        .map_err(|e| e.to_string())?;
    expect(
        "AES-256-GCM",
        &out,
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919",
    )?;
    let back =
        crypto::aes_gcm_decrypt(&[0; 32], &[0; 12], &[], 128, &out).map_err(|e| e.to_string())?;
    if back != [0; 16] {
        return Err("AES-256-GCM: decryption does not invert".into());
    }
    Ok(())
}

const RSA_MODULUS: &str = "d8026e728c37f164688fcbd6e9608ae6378966fad5c0349fe21eb660b3b86be8c644b52e9c76b3f6c33df610a06fba66196eacb407e4bd3de61f30f3da1c32c889d1aa0d79f1a45a059a3f5b09452fbf7a3d73e122a15958b73bbe672e3f99a1b2b28a19edc68bb15e80b79acd870b98a403817cf4fea061e4b7e02fd7ebf9c68d6b3b7704cd781e69841aaf1459d06ce3677532fee26f2f8dcc0845fffc755c8f41fd0c638d26b3305169954ccb7149972c5834210d893100f5f701af4d8c560aac46c217ca2604c980a32805981787ed4521ce1da913c58044cee532c55669e9938f585a7421a2f5cd1d834a5e37cacafbc4756208a9d9e2506d29361d2a31";
const RSA_SIGNATURE: &str = "6738a88297c0fad80d068d5d41fc34f1dac0c809bd74527bfaa1bfdefcebcd3c1e4edbe6fdad11420b853cb7f77b6774c0dd1df11a755b10c841a4c768a664686866abcc9d9f085a275c0408077aed0af71e2a72436499fc18ab65cf14d4459ba30fde76e791f59370a89e9343d8ca5db4cfb73323357259fa9aba8da86cb39c82d4c5397dd4d4f7b3229a8b9fc06e2a615182b3525614152f668b83e97a9d64cbf2a4ee96e38996ca71a28a131957d6456a54e9f1affac6439e1aaf632bb64a1faffd01c7c1601a931f8f19579bf6766cb6a7ba57ec4c7690584cf3fea81e91a9a80d1a387539456ea14bf5c18b38ec6c1d9db02cf7a480a26d2db1991bd710";
const EC_POINT: &str = "04f9621dee6dfa9ec9cadbd406d166b02df1ba2976bf5d291cc50226697ad64956ab0104e17cb3c658252ad782feddeb05efeeee3fcf3b898ff66a8b07d8a7ef79";
const EC_SIGNATURE: &str = "ecf858ef86623055426954e01256a1e4a67ab322a53c37328f0444b7d660028ab92c5cbf20f88e5202dd15bd6d2b28b34cfc5d3f4832bdd37c23e74fcddc0da6";

fn rsa_verify() -> Result<(), String> {
    let key = VerifyingKey::rsa(&unhex(RSA_MODULUS), &[1, 0, 1]).map_err(|e| e.to_string())?;
    let mech = SignMechanism::RsaPkcsHash(HashAlg::Sha256);
    key.verify(&mech, b"abc", &unhex(RSA_SIGNATURE))
        .map_err(|e| format!("RSA PKCS#1 v1.5: {e}"))?;
    if key.verify(&mech, b"abd", &unhex(RSA_SIGNATURE)).is_ok() {
        return Err("RSA PKCS#1 v1.5 accepts a signature of other data".into());
    }
    Ok(())
}

fn ecdsa_verify() -> Result<(), String> {
    let key = VerifyingKey::ec(Curve::P256, &unhex(EC_POINT)).map_err(|e| e.to_string())?;
    let mech = SignMechanism::EcdsaHash(HashAlg::Sha256);
    key.verify(&mech, b"abc", &unhex(EC_SIGNATURE))
        .map_err(|e| format!("ECDSA P-256: {e}"))?;
    if key.verify(&mech, b"abd", &unhex(EC_SIGNATURE)).is_ok() {
        return Err("ECDSA P-256 accepts a signature of other data".into());
    }
    Ok(())
}

fn ecdsa_sign() -> Result<(), String> {
    // Signing is randomised: sign with a fixed key and check the result verifies.
    for curve in [Curve::P256, Curve::P384] {
        let mut scalar = vec![0u8; curve.field_len()];
        scalar[curve.field_len() - 1] = 7;
        let sk = crypto::SigningKey::ec(curve, &scalar).map_err(|e| e.to_string())?;
        let vk = sk.verifying_key().map_err(|e| e.to_string())?;
        crypto::pairwise_check(&sk, &vk).map_err(|e| format!("ECDSA {curve:?}: {e}"))?;
    }
    Ok(())
}

fn rng() -> Result<(), String> {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    crypto::random_bytes(&mut a).map_err(|e| e.to_string())?;
    crypto::random_bytes(&mut b).map_err(|e| e.to_string())?;
    if a == b || a == [0; 32] {
        return Err("the generator repeats itself".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_self_test_passes() {
        for (name, t) in TESTS {
            t().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_aes_gcm_vector_matches_rustcrypto() {
        use aes_gcm::aead::{Aead, KeyInit};
        let c = aes_gcm::Aes256Gcm::new_from_slice(&[0; 32]).unwrap();
        let out = c.encrypt(&[0u8; 12].into(), &[0u8; 16][..]).unwrap();
        assert_eq!(
            out,
            unhex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
        );
    }
}
