//! The same crypto operations called directly through aws-lc-rs: the limit a PKCS#11
//! module built on it can reach.

use crate::model::{Cell, Op, Res, run_cell};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, ParsedPublicKey, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256, RsaKeyPair,
};

const MSG: &[u8] = b"FerroHSM vs SoftHSM2: the message every signature row signs";

fn err(what: &str) -> crate::model::BoxError {
    format!("aws-lc-rs: {what} failed").into()
}

fn worker(op: Op) -> Res<Box<dyn FnMut() -> Res<()>>> {
    let rng = SystemRandom::new();
    let f: Box<dyn FnMut() -> Res<()>> = match op {
        Op::EcP256Sign | Op::EcP384Sign => {
            let alg = if op == Op::EcP256Sign {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::generate(alg).map_err(|_| err("EC keygen"))?;
            Box::new(move || {
                pair.sign(&rng, MSG).map_err(|_| err("ECDSA sign"))?;
                Ok(())
            })
        }
        Op::EcP256Verify | Op::EcP384Verify => {
            let (s_alg, v_alg) = if op == Op::EcP256Verify {
                (&ECDSA_P256_SHA256_FIXED_SIGNING, &ECDSA_P256_SHA256_FIXED)
            } else {
                (&ECDSA_P384_SHA384_FIXED_SIGNING, &ECDSA_P384_SHA384_FIXED)
            };
            let pair = EcdsaKeyPair::generate(s_alg).map_err(|_| err("EC keygen"))?;
            let sig = pair.sign(&rng, MSG).map_err(|_| err("ECDSA sign"))?;
            let sig = sig.as_ref().to_vec();
            // Parsed once, as a module can keep it prepared.
            let public = ParsedPublicKey::new(v_alg, pair.public_key().as_ref())
                .map_err(|_| err("EC public key"))?;
            Box::new(move || {
                public
                    .verify_sig(MSG, &sig)
                    .map_err(|_| err("ECDSA verify"))?;
                Ok(())
            })
        }
        Op::RsaPkcs1Sign | Op::RsaPssSign => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| err("RSA keygen"))?;
            let mut sig = vec![0u8; pair.public_modulus_len()];
            Box::new(move || {
                let enc = if op == Op::RsaPkcs1Sign {
                    &RSA_PKCS1_SHA256
                } else {
                    &RSA_PSS_SHA256
                };
                pair.sign(enc, &rng, MSG, &mut sig)
                    .map_err(|_| err("RSA sign"))?;
                Ok(())
            })
        }
        Op::RsaKeygen => Box::new(|| {
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| err("RSA keygen"))?;
            Ok(())
        }),
        Op::AesGcm64 | Op::AesGcm4k | Op::AesGcm1m => {
            let data = vec![0x5a; crate::p11::gcm_len(op)];
            let key = LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| err("AES key"))?,
            );
            let mut counter = 0u64;
            Box::new(move || {
                counter += 1;
                let mut iv = [0u8; 12];
                iv[4..].copy_from_slice(&counter.to_be_bytes());
                // A fresh output buffer per call, as C_Encrypt fills the caller's.
                let mut buf = Vec::with_capacity(data.len() + 16);
                buf.extend_from_slice(&data);
                key.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::empty(),
                    &mut buf,
                )
                .map_err(|_| err("AES-GCM seal"))?;
                Ok(())
            })
        }
        Op::Sha256_4k => {
            let data = vec![0xa5; 4096];
            Box::new(move || {
                std::hint::black_box(digest(&SHA256, &data));
                Ok(())
            })
        }
        Op::Random32 => Box::new(|| {
            let mut buf = [0u8; 32];
            aws_lc_rs::rand::fill(&mut buf).map_err(|_| err("random"))?;
            Ok(())
        }),
        Op::Random1 => Box::new(|| {
            let mut buf = [0u8; 1];
            aws_lc_rs::rand::fill(&mut buf).map_err(|_| err("random"))?;
            Ok(())
        }),
    };
    Ok(f)
}

pub fn measure(seconds: f64, rounds: usize, threads: &[usize], ops: &[Op]) -> Res<Vec<Cell>> {
    let mut cells = Vec::new();
    for &op in ops {
        for &t in threads {
            let cell = run_cell(op, None, t, seconds, rounds, || worker(op))?;
            eprintln!("[aws-lc-rs] {} x{t}: {:.1} ops/s", op.label(), cell.rate);
            cells.push(cell);
        }
    }
    Ok(cells)
}
