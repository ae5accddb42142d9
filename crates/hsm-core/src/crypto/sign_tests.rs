//! Signatures checked against independent implementations: RustCrypto `p256`/`p384` for
//! ECDSA and RustCrypto `rsa` for PKCS#1 v1.5 and PSS, in both directions.

use super::*;
use ::rsa::traits::PublicKeyParts as _;
use ::rsa::{BoxedUint, Pkcs1v15Sign, pss::Pss};
use ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use hsm_types::SecretBytes;
use std::sync::OnceLock;

const MSG: &[u8] = b"a message a PKCS#11 client wants signed";

/// The curves RustCrypto checks here (P-521 is checked against openssl in the interop
/// tests and by round trip below).
const ORACLE_CURVES: [Curve; 2] = [Curve::P256, Curve::P384];

fn hash_all() -> [HashAlg; 5] {
    HashAlg::ALL
}

// ---------------------------------------------------------------------------------------
// ECDSA

/// RustCrypto verification of a raw `r || s` signature over a prehash of any length.
fn oracle_ec_verify(curve: Curve, point: &[u8], prehash: &[u8], sig: &[u8]) -> bool {
    match curve {
        Curve::P256 => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
            let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
            vk.verify_prehash(prehash, &sig).is_ok()
        }
        Curve::P384 => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
            let sig = p384::ecdsa::Signature::from_slice(sig).unwrap();
            vk.verify_prehash(prehash, &sig).is_ok()
        }
        Curve::P521 => unreachable!("no RustCrypto oracle for P-521 here"),
    }
}

fn oracle_ec_sign(curve: Curve, scalar: &[u8], prehash: &[u8]) -> Vec<u8> {
    match curve {
        Curve::P256 => {
            let sk = p256::ecdsa::SigningKey::from_slice(scalar).unwrap();
            let sig: p256::ecdsa::Signature = sk.sign_prehash(prehash).unwrap();
            sig.to_bytes().to_vec()
        }
        Curve::P384 => {
            let sk = p384::ecdsa::SigningKey::from_slice(scalar).unwrap();
            let sig: p384::ecdsa::Signature = sk.sign_prehash(prehash).unwrap();
            sig.to_bytes().to_vec()
        }
        Curve::P521 => unreachable!("no RustCrypto oracle for P-521 here"),
    }
}

fn ec_pair(curve: Curve) -> (EcPrivateParts, SigningKey, VerifyingKey) {
    let parts = generate_ec(curve).unwrap();
    let sk = SigningKey::ec(curve, parts.private_value.expose()).unwrap();
    let vk = VerifyingKey::ec(curve, &parts.public_point).unwrap();
    (parts, sk, vk)
}

#[test]
fn ecdsa_hashed_signatures_interoperate_with_rustcrypto_for_every_curve_and_hash() {
    for curve in ORACLE_CURVES {
        let (parts, sk, vk) = ec_pair(curve);
        assert_eq!(sk.signature_len(), 2 * curve.field_len());
        assert_eq!(vk.signature_len(), 2 * curve.field_len());
        for h in hash_all() {
            let mech = SignMechanism::EcdsaHash(h);
            let digest = h.digest(MSG);

            let ours = sk.sign(&mech, MSG).unwrap();
            assert_eq!(ours.len(), 2 * curve.field_len());
            assert!(
                oracle_ec_verify(curve, &parts.public_point, &digest, &ours),
                "{curve:?} {h:?}: RustCrypto rejects our signature"
            );
            vk.verify(&mech, MSG, &ours).unwrap();

            let theirs = oracle_ec_sign(curve, parts.private_value.expose(), &digest);
            vk.verify(&mech, MSG, &theirs)
                .unwrap_or_else(|e| panic!("{curve:?} {h:?}: we reject RustCrypto's: {e}"));

            // Multi-part: hash incrementally, then sign/verify the digest.
            let mut d = Digester::new(mech.multi_part_hash().unwrap());
            d.update(&MSG[..10]);
            d.update(&MSG[10..]);
            let prehashed = sk.sign_prehashed(&mech, &d.finish()).unwrap();
            vk.verify(&mech, MSG, &prehashed).unwrap();
            vk.verify_prehashed(&mech, &digest, &theirs).unwrap();
        }
    }
}

#[test]
fn raw_ecdsa_takes_hashes_of_any_length_as_ecdsa_defines() {
    let (parts, sk, vk) = ec_pair(Curve::P256);
    // 32 bytes: the order's length; 48: truncated to the leftmost 32; 20: left-padded.
    for len in [32, 48, 20] {
        let input: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let ours = sk.sign(&SignMechanism::Ecdsa, &input).unwrap();
        assert!(
            oracle_ec_verify(Curve::P256, &parts.public_point, &input, &ours),
            "{len}-byte input"
        );
        vk.verify(&SignMechanism::Ecdsa, &input, &ours).unwrap();
        let theirs = oracle_ec_sign(Curve::P256, parts.private_value.expose(), &input);
        vk.verify(&SignMechanism::Ecdsa, &input, &theirs).unwrap();
    }
    // Truncation really keeps the leftmost bytes: a 48-byte input signs as its first 32.
    let long = [0x42u8; 48];
    let sig = sk.sign(&SignMechanism::Ecdsa, &long).unwrap();
    vk.verify(&SignMechanism::Ecdsa, &long[..32], &sig).unwrap();
    // Raw mechanisms are not hashed incrementally.
    assert_eq!(SignMechanism::Ecdsa.multi_part_hash(), None);
    assert!(matches!(
        sk.sign_prehashed(&SignMechanism::Ecdsa, &[0; 32]),
        Err(CryptoError::MechanismInvalid)
    ));
}

#[test]
fn ecdsa_rejects_altered_and_misshapen_signatures() {
    for curve in ORACLE_CURVES {
        let (_, sk, vk) = ec_pair(curve);
        let mech = SignMechanism::EcdsaHash(HashAlg::Sha256);
        let sig = sk.sign(&mech, MSG).unwrap();
        for i in [0, sig.len() / 2, sig.len() - 1] {
            let mut bad = sig.clone();
            bad[i] ^= 0x04;
            assert!(matches!(
                vk.verify(&mech, MSG, &bad),
                Err(CryptoError::SignatureInvalid)
            ));
        }
        assert!(matches!(
            vk.verify(&mech, b"another message", &sig),
            Err(CryptoError::SignatureInvalid)
        ));
        for bad_len in [0, sig.len() - 1, sig.len() + 1] {
            let mut bad = sig.clone();
            bad.resize(bad_len, 0);
            assert!(matches!(
                vk.verify(&mech, MSG, &bad),
                Err(CryptoError::SignatureLenRange)
            ));
        }
        assert!(matches!(
            vk.verify(&mech, MSG, &vec![0u8; sig.len()]),
            Err(CryptoError::SignatureInvalid)
        ));
        assert!(matches!(
            sk.sign_prehashed(&mech, &[0; 31]),
            Err(CryptoError::DataLenRange)
        ));
        assert!(matches!(
            sk.sign(&SignMechanism::RsaPkcs, MSG),
            Err(CryptoError::KeyTypeInconsistent)
        ));
        assert!(matches!(
            vk.verify(&SignMechanism::RsaPkcsHash(HashAlg::Sha256), MSG, &sig),
            Err(CryptoError::KeyTypeInconsistent)
        ));
    }
}

#[test]
fn ec_key_from_a_scalar_matches_generation_and_passes_pairwise() {
    for curve in ORACLE_CURVES {
        let (parts, sk, vk) = ec_pair(curve);
        assert_eq!(sk.ec_public_point().unwrap(), parts.public_point);
        assert_eq!(sk.curve(), Some(curve));
        pairwise_check(&sk, &vk).unwrap();
        pairwise_check(&sk, &sk.verifying_key().unwrap()).unwrap();
        let (_, _, other_vk) = ec_pair(curve);
        assert!(matches!(
            pairwise_check(&sk, &other_vk),
            Err(CryptoError::General(_))
        ));
    }
    let (_, p256_sk, _) = ec_pair(Curve::P256);
    let (_, _, p384_vk) = ec_pair(Curve::P384);
    assert!(matches!(
        pairwise_check(&p256_sk, &p384_vk),
        Err(CryptoError::KeyTypeInconsistent)
    ));
}

// ---------------------------------------------------------------------------------------
// RSA

/// The one RSA-2048 key most tests share: generation is the slow part.
fn rsa_key() -> &'static RsaPrivateParts {
    static KEY: OnceLock<RsaPrivateParts> = OnceLock::new();
    KEY.get_or_init(|| generate_rsa(2048, Some(&[0x00, 0x01, 0x00, 0x01])).unwrap())
}

fn uint(b: &[u8]) -> BoxedUint {
    BoxedUint::from_be_slice_vartime(b)
}

fn oracle_rsa_public(p: &RsaPrivateParts) -> ::rsa::PublicKey {
    ::rsa::PublicKey::new(uint(&p.modulus), uint(&p.public_exponent)).unwrap()
}

/// Built from n, e, d, p, q by RustCrypto itself (it recomputes the CRT values), so it
/// does not share our component handling.
fn oracle_rsa_private(p: &RsaPrivateParts) -> ::rsa::PrivateKey {
    ::rsa::PrivateKey::from_components(
        uint(&p.modulus),
        uint(&p.public_exponent),
        uint(p.private_exponent.expose()),
        vec![uint(p.prime_1.expose()), uint(p.prime_2.expose())],
    )
    .unwrap()
}

fn pkcs1_scheme(h: HashAlg) -> Pkcs1v15Sign {
    match h {
        HashAlg::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        HashAlg::Sha224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
        HashAlg::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

fn pss_verify_oracle(pk: &::rsa::PublicKey, h: HashAlg, salt: usize, digest: &[u8], sig: &[u8]) {
    let r = match h {
        HashAlg::Sha256 => pk.verify(Pss::<sha2::Sha256>::new_with_salt(salt), digest, sig),
        HashAlg::Sha384 => pk.verify(Pss::<sha2::Sha384>::new_with_salt(salt), digest, sig),
        HashAlg::Sha512 => pk.verify(Pss::<sha2::Sha512>::new_with_salt(salt), digest, sig),
        _ => unreachable!(),
    };
    r.unwrap_or_else(|e| panic!("RustCrypto rejects our PSS {h:?} salt {salt}: {e}"));
}

fn pss_sign_oracle(sk: &::rsa::PrivateKey, h: HashAlg, salt: usize, digest: &[u8]) -> Vec<u8> {
    match h {
        HashAlg::Sha256 => sk.sign(Pss::<sha2::Sha256>::new_with_salt(salt), digest),
        HashAlg::Sha384 => sk.sign(Pss::<sha2::Sha384>::new_with_salt(salt), digest),
        HashAlg::Sha512 => sk.sign(Pss::<sha2::Sha512>::new_with_salt(salt), digest),
        _ => unreachable!(),
    }
    .unwrap()
}

#[test]
fn generated_rsa_components_are_consistent_and_load_back() {
    let parts = rsa_key();
    assert_eq!(parts.modulus.len(), 256);
    assert!(parts.modulus[0] & 0x80 != 0, "a full 2048-bit modulus");
    assert_eq!(parts.public_exponent, [0x01, 0x00, 0x01]);
    // RustCrypto accepts the components (it checks n = pq and de = 1 mod p-1, q-1) and
    // derives the same CRT exponents we export.
    let oracle = oracle_rsa_private(parts);
    oracle.validate().unwrap();
    {
        use ::rsa::traits::PrivateKeyParts as _;
        let trimmed = |u: &BoxedUint| u.to_be_bytes_trimmed_vartime().to_vec();
        assert_eq!(trimmed(oracle.dp().unwrap()), parts.exponent_1.expose());
        assert_eq!(trimmed(oracle.dq().unwrap()), parts.exponent_2.expose());
    }
    let sk = SigningKey::rsa(parts).unwrap();
    assert_eq!(sk.signature_len(), 256);
    let vk = VerifyingKey::rsa(&parts.modulus, &parts.public_exponent).unwrap();
    assert_eq!(vk.signature_len(), 256);
    pairwise_check(&sk, &vk).unwrap();
    pairwise_check(&sk, &sk.verifying_key().unwrap()).unwrap();
    assert_eq!(oracle.n_bytes().as_ref(), &parts.modulus[..]);

    // Leading zeros in attributes are harmless.
    let mut n = vec![0u8];
    n.extend_from_slice(&parts.modulus);
    VerifyingKey::rsa(&n, &[0, 0, 1, 0, 1]).unwrap();
}

#[test]
fn rsa_pkcs1_hashed_signatures_interoperate_with_rustcrypto() {
    let parts = rsa_key();
    let sk = SigningKey::rsa(parts).unwrap();
    let vk = VerifyingKey::rsa(&parts.modulus, &parts.public_exponent).unwrap();
    let (opk, osk) = (oracle_rsa_public(parts), oracle_rsa_private(parts));
    for h in hash_all() {
        let mech = SignMechanism::RsaPkcsHash(h);
        let digest = h.digest(MSG);
        let ours = sk.sign(&mech, MSG).unwrap();
        assert_eq!(ours.len(), 256);
        opk.verify(pkcs1_scheme(h), &digest, &ours)
            .unwrap_or_else(|e| panic!("{h:?}: RustCrypto rejects ours: {e}"));
        let theirs = osk.sign(pkcs1_scheme(h), &digest).unwrap();
        assert_eq!(theirs, ours, "{h:?}: PKCS#1 v1.5 is deterministic");
        vk.verify(&mech, MSG, &theirs).unwrap();
        vk.verify_prehashed(&mech, &digest, &theirs).unwrap();

        // CKM_RSA_PKCS over the DigestInfo is the same signature.
        let di = h.digest_info(&digest);
        assert_eq!(
            sk.sign(&SignMechanism::RsaPkcs, &di).unwrap(),
            ours,
            "{h:?}"
        );
        vk.verify(&SignMechanism::RsaPkcs, &di, &ours).unwrap();
        assert_eq!(sk.sign_prehashed(&mech, &digest).unwrap(), ours);
    }
}

#[test]
fn rsa_pkcs1_raw_input_interoperates_and_is_bounded() {
    let parts = rsa_key();
    let sk = SigningKey::rsa(parts).unwrap();
    let vk = VerifyingKey::rsa(&parts.modulus, &parts.public_exponent).unwrap();
    let (opk, osk) = (oracle_rsa_public(parts), oracle_rsa_private(parts));
    // The TLS 1.0/1.1 MD5||SHA-1 blob, and the longest input a 2048-bit key takes.
    for blob in [vec![0x3cu8; 36], vec![0x01; 256 - 11], vec![]] {
        let ours = sk.sign(&SignMechanism::RsaPkcs, &blob).unwrap();
        assert_eq!(ours.len(), 256);
        opk.verify(Pkcs1v15Sign::new_unprefixed(), &blob, &ours)
            .unwrap();
        let theirs = osk.sign(Pkcs1v15Sign::new_unprefixed(), &blob).unwrap();
        assert_eq!(theirs, ours);
        vk.verify(&SignMechanism::RsaPkcs, &blob, &theirs).unwrap();
    }
    let sig = sk.sign(&SignMechanism::RsaPkcs, &[0x3c; 36]).unwrap();
    assert!(matches!(
        vk.verify(&SignMechanism::RsaPkcs, &[0x3d; 36], &sig),
        Err(CryptoError::SignatureInvalid)
    ));
    assert!(matches!(
        sk.sign(&SignMechanism::RsaPkcs, &[1; 256 - 10]),
        Err(CryptoError::DataLenRange)
    ));
    assert!(matches!(
        vk.verify(&SignMechanism::RsaPkcs, &[1; 256 - 10], &sig),
        Err(CryptoError::DataLenRange)
    ));
}

#[test]
fn rsa_pss_interoperates_with_rustcrypto_for_each_supported_salt() {
    let parts = rsa_key();
    let sk = SigningKey::rsa(parts).unwrap();
    let vk = VerifyingKey::rsa(&parts.modulus, &parts.public_exponent).unwrap();
    let (opk, osk) = (oracle_rsa_public(parts), oracle_rsa_private(parts));
    for h in [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512] {
        let digest = h.digest(MSG);
        let max = 256 - h.output_len() - 2;
        for salt_len in [h.output_len(), 0, max] {
            for prehashed in [false, true] {
                let mech = SignMechanism::RsaPss {
                    hash: h,
                    mgf_hash: h,
                    salt_len,
                    prehashed,
                };
                let data: &[u8] = if prehashed { &digest } else { MSG };
                let ours = sk.sign(&mech, data).unwrap();
                assert_eq!(ours.len(), 256);
                pss_verify_oracle(&opk, h, salt_len, &digest, &ours);
                vk.verify(&mech, data, &ours).unwrap();
                let theirs = pss_sign_oracle(&osk, h, salt_len, &digest);
                vk.verify(&mech, data, &theirs)
                    .unwrap_or_else(|e| panic!("{h:?} salt {salt_len}: we reject theirs: {e}"));
                let mut bad = theirs.clone();
                bad[100] ^= 1;
                assert!(matches!(
                    vk.verify(&mech, data, &bad),
                    Err(CryptoError::SignatureInvalid)
                ));
            }
            // Multi-part CKM_SHA*_RSA_PKCS_PSS signs the incrementally computed digest.
            let mech = SignMechanism::RsaPss {
                hash: h,
                mgf_hash: h,
                salt_len,
                prehashed: false,
            };
            assert_eq!(mech.multi_part_hash(), Some(h));
            let sig = sk.sign_prehashed(&mech, &digest).unwrap();
            vk.verify(&mech, MSG, &sig).unwrap();
        }
    }
}

#[test]
fn rsa_pss_parameters_aws_lc_rs_cannot_honour_are_refused() {
    let parts = rsa_key();
    let sk = SigningKey::rsa(parts).unwrap();
    let vk = VerifyingKey::rsa(&parts.modulus, &parts.public_exponent).unwrap();
    let pss = |hash, mgf_hash, salt_len, prehashed| SignMechanism::RsaPss {
        hash,
        mgf_hash,
        salt_len,
        prehashed,
    };
    use HashAlg::*;
    let param_invalid = [
        pss(Sha256, Sha256, 20, false),
        pss(Sha256, Sha1, 32, false),
        pss(Sha384, Sha256, 48, true),
        pss(Sha1, Sha1, 20, true),
        pss(Sha224, Sha224, 28, true),
    ];
    for mech in &param_invalid {
        assert!(
            matches!(sk.check(mech), Err(CryptoError::MechanismParamInvalid(_))),
            "{mech:?}"
        );
        assert!(matches!(
            sk.sign(mech, MSG),
            Err(CryptoError::MechanismParamInvalid(_))
        ));
        assert!(matches!(
            vk.verify(mech, MSG, &[0; 256]),
            Err(CryptoError::MechanismParamInvalid(_))
        ));
    }
    // CKM_SHA1_RSA_PKCS_PSS itself is the unsupported thing.
    assert!(matches!(
        sk.sign(&pss(Sha1, Sha1, 20, false), MSG),
        Err(CryptoError::MechanismInvalid)
    ));
    // CKM_RSA_PKCS_PSS signs a digest of the hash's length.
    assert!(matches!(
        sk.sign(&pss(Sha256, Sha256, 32, true), &[0; 31]),
        Err(CryptoError::DataLenRange)
    ));
    assert!(matches!(
        sk.check(&SignMechanism::Ecdsa),
        Err(CryptoError::KeyTypeInconsistent)
    ));
}

#[test]
fn rsa_verification_rejects_wrong_lengths_and_foreign_signatures() {
    let parts = rsa_key();
    let sk = SigningKey::rsa(parts).unwrap();
    let vk = VerifyingKey::rsa(&parts.modulus, &parts.public_exponent).unwrap();
    let mech = SignMechanism::RsaPkcsHash(HashAlg::Sha256);
    let sig = sk.sign(&mech, MSG).unwrap();
    for bad_len in [255, 257, 0] {
        let mut bad = sig.clone();
        bad.resize(bad_len, 0);
        assert!(matches!(
            vk.verify(&mech, MSG, &bad),
            Err(CryptoError::SignatureLenRange)
        ));
    }
    let mut bad = sig.clone();
    bad[0] ^= 0x01;
    assert!(matches!(
        vk.verify(&mech, MSG, &bad),
        Err(CryptoError::SignatureInvalid)
    ));
    // A SHA-256 signature does not verify as SHA-384, nor as SHA-1 through the raw path.
    assert!(matches!(
        vk.verify(&SignMechanism::RsaPkcsHash(HashAlg::Sha384), MSG, &sig),
        Err(CryptoError::SignatureInvalid)
    ));
    assert!(matches!(
        vk.verify(&SignMechanism::RsaPkcsHash(HashAlg::Sha1), MSG, &sig),
        Err(CryptoError::SignatureInvalid)
    ));
}

#[test]
fn rsa_pairwise_check_catches_a_mismatched_pair_and_bad_components() {
    let parts = rsa_key();
    let sk = SigningKey::rsa(parts).unwrap();
    let other = generate_rsa(2048, None).unwrap();
    let other_vk = VerifyingKey::rsa(&other.modulus, &other.public_exponent).unwrap();
    assert!(matches!(
        pairwise_check(&sk, &other_vk),
        Err(CryptoError::General(_))
    ));
    let (_, _, ec_vk) = ec_pair(Curve::P256);
    assert!(matches!(
        pairwise_check(&sk, &ec_vk),
        Err(CryptoError::KeyTypeInconsistent)
    ));
    // Components from two different keys do not load.
    let mixed = RsaPrivateParts {
        modulus: parts.modulus.clone(),
        public_exponent: parts.public_exponent.clone(),
        private_exponent: SecretBytes::from_slice(other.private_exponent.expose()),
        prime_1: SecretBytes::from_slice(parts.prime_1.expose()),
        prime_2: SecretBytes::from_slice(parts.prime_2.expose()),
        exponent_1: SecretBytes::from_slice(parts.exponent_1.expose()),
        exponent_2: SecretBytes::from_slice(parts.exponent_2.expose()),
        coefficient: SecretBytes::from_slice(parts.coefficient.expose()),
    };
    assert!(matches!(
        SigningKey::rsa(&mixed),
        Err(CryptoError::General(_))
    ));
}

#[test]
fn rsa_sizes_and_exponents_outside_the_supported_set_are_refused() {
    for bits in [1024, 2047, 2049, 8192, 0] {
        assert!(
            matches!(generate_rsa(bits, None), Err(CryptoError::KeySizeRange)),
            "{bits}"
        );
    }
    for e in [&[0x03][..], &[0x01, 0x00, 0x00, 0x01], &[], &[0, 0]] {
        assert!(matches!(
            generate_rsa(2048, Some(e)),
            Err(CryptoError::MechanismParamInvalid(_))
        ));
    }
    let small = [0xc5u8; 128]; // a 1024-bit "modulus"
    assert!(matches!(
        VerifyingKey::rsa(&small, &[1, 0, 1]),
        Err(CryptoError::KeySizeRange)
    ));
}

#[test]
fn prepared_keys_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SigningKey>();
    send_sync::<VerifyingKey>();
}

#[test]
fn multi_part_hash_is_none_exactly_for_the_raw_mechanisms() {
    use HashAlg::Sha256;
    assert_eq!(SignMechanism::RsaPkcs.multi_part_hash(), None);
    assert_eq!(
        SignMechanism::RsaPss {
            hash: Sha256,
            mgf_hash: Sha256,
            salt_len: 32,
            prehashed: true
        }
        .multi_part_hash(),
        None
    );
    assert_eq!(
        SignMechanism::RsaPkcsHash(Sha256).multi_part_hash(),
        Some(Sha256)
    );
    assert_eq!(
        SignMechanism::EcdsaHash(HashAlg::Sha1).multi_part_hash(),
        Some(HashAlg::Sha1)
    );
}

#[test]
fn p521_signs_and_verifies_every_hash_and_raw_input() {
    let (_, sk, vk) = ec_pair(Curve::P521);
    assert_eq!(sk.signature_len(), 132);
    for h in hash_all() {
        let mech = SignMechanism::EcdsaHash(h);
        let sig = sk.sign(&mech, MSG).unwrap();
        vk.verify(&mech, MSG, &sig).unwrap();
        assert!(vk.verify(&mech, b"other", &sig).is_err());
    }
    for len in [20usize, 32, 64] {
        let input = vec![0x5a; len];
        let sig = sk.sign(&SignMechanism::Ecdsa, &input).unwrap();
        vk.verify(&SignMechanism::Ecdsa, &input, &sig).unwrap();
    }
    assert!(matches!(
        sk.sign(&SignMechanism::Ecdsa, &[1; 65]),
        Err(CryptoError::DataLenRange)
    ));
}
