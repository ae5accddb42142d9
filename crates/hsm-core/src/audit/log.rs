//! The tamper-evident log's cryptography in the core: the model's SHA-256 through
//! aws-lc-rs, and Ed25519 signing and checking of checkpoints as C2SP signed notes
//! (`hsm_types::audit`). The records in the store and the CLI come next (#16).

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use hsm_types::audit::checkpoint::{Checkpoint, Malformed, key_id, parse_note, signed_note};
use hsm_types::audit::merkle::{Hash, Sha256};

/// SHA-256 for the audit model, through aws-lc-rs.
pub struct AwsLc;

impl Sha256 for AwsLc {
    fn digest(parts: &[&[u8]]) -> Hash {
        let mut c = Context::new(&SHA256);
        for p in parts {
            c.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        out
    }
}

/// Signs `c` as a note by the key named `c.origin`.
pub fn sign_checkpoint(c: &Checkpoint, key: &Ed25519KeyPair) -> String {
    let body = c.body();
    let id = key_id::<AwsLc>(&c.origin, key.public_key().as_ref());
    signed_note(&body, &c.origin, id, key.sign(body.as_bytes()).as_ref())
}

/// The checkpoint in `note`, and whether a signature by `public_key` (named as the
/// checkpoint's origin) verifies over it.
pub fn open_checkpoint(note: &str, public_key: &[u8]) -> Result<(Checkpoint, bool), Malformed> {
    let n = parse_note(note)?;
    let c = Checkpoint::parse_body(&n.body)?;
    let id = key_id::<AwsLc>(&c.origin, public_key);
    let ok = n.signatures.iter().any(|(name, kid, sig)| {
        *name == c.origin
            && *kid == id
            && UnparsedPublicKey::new(&ED25519, public_key)
                .verify(n.body.as_bytes(), sig)
                .is_ok()
    });
    Ok((c, ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use hsm_types::audit::merkle::{Frontier, leaf_hash};

    #[test]
    fn aws_lc_gives_the_certificate_transparency_root() {
        let inputs: [&[u8]; 3] = [b"", &[0x00], &[0x10]];
        let mut f = Frontier::default();
        for i in inputs {
            f.push::<AwsLc>(leaf_hash::<AwsLc>(i));
        }
        let hex: String = f
            .root::<AwsLc>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
        );
    }

    #[test]
    fn a_signed_checkpoint_opens_and_a_changed_one_does_not() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let public = key.public_key().as_ref().to_vec();
        let c = Checkpoint {
            origin: "ferrohsm/test".into(),
            size: 3,
            root: [5u8; 32],
        };
        let note = sign_checkpoint(&c, &key);
        assert_eq!(open_checkpoint(&note, &public).unwrap(), (c.clone(), true));
        let grown = note.replacen("\n3\n", "\n4\n", 1);
        let (c4, ok) = open_checkpoint(&grown, &public).unwrap();
        assert_eq!((c4.size, ok), (4, false), "an edited size does not verify");
        let other = Ed25519KeyPair::from_pkcs8(
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .unwrap()
                .as_ref(),
        )
        .unwrap();
        assert!(
            !open_checkpoint(&note, other.public_key().as_ref())
                .unwrap()
                .1
        );
    }
}
