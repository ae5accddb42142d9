//! Signed checkpoints in the C2SP formats: a `tlog-checkpoint` body (origin, tree
//! size, base64 root hash) inside a `signed-note` with one Ed25519 signature line:
//! `— <name> <base64(key id ‖ signature)>`, the key id being the first 4 bytes of
//! SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key). Anyone with the token's audit public key
//! checks one with the note tooling of the Go checksum database or Sigsum.

use super::merkle::{Hash, Sha256};
use base64ct::{Base64, Encoding};

/// A tree head: the log named `origin` had `size` records, with this root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// The signature-type byte of Ed25519 note keys.
const ED25519_NOTE: u8 = 0x01;

/// Why a checkpoint or note does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(why: impl Into<String>) -> Malformed {
    Malformed(why.into())
}

impl Checkpoint {
    /// The note body (what is signed), each line ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            Base64::encode_string(&self.root)
        )
    }

    pub fn parse_body(body: &str) -> Result<Checkpoint, Malformed> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line is not a tree size"))?;
        let root = lines
            .next()
            .and_then(|r| Base64::decode_vec(r).ok())
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or_else(|| bad("the third line is not a base64 SHA-256 root"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The note key id of an Ed25519 key named `name`.
pub fn key_id<H: Sha256>(name: &str, public_key: &[u8]) -> [u8; 4] {
    let h = H::digest(&[name.as_bytes(), b"\n", &[ED25519_NOTE], public_key]);
    [h[0], h[1], h[2], h[3]]
}

/// A signed note: `body` followed by an empty line and one signature line.
pub fn signed_note(body: &str, name: &str, key_id: [u8; 4], signature: &[u8]) -> String {
    let mut sig = key_id.to_vec();
    sig.extend_from_slice(signature);
    format!("{body}\n\u{2014} {name} {}\n", Base64::encode_string(&sig))
}

/// A note split into its body and its signature lines (name, key id, signature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub body: String,
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

pub fn parse_note(text: &str) -> Result<Note, Malformed> {
    let (body, sigs) = text
        .split_once("\n\n")
        .ok_or_else(|| bad("no empty line between the body and the signatures"))?;
    let mut signatures = Vec::new();
    for line in sigs.split('\n').filter(|l| !l.is_empty()) {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad(format!("not a signature line: {line:?}")))?;
        let (name, b64) = rest
            .rsplit_once(' ')
            .ok_or_else(|| bad("a signature line without a signature"))?;
        let raw = Base64::decode_vec(b64).map_err(|_| bad("a signature that is not base64"))?;
        if raw.len() < 5 {
            return Err(bad("a signature shorter than its key id"));
        }
        let id = [raw[0], raw[1], raw[2], raw[3]];
        signatures.push((name.to_owned(), id, raw[4..].to_vec()));
    }
    if signatures.is_empty() {
        return Err(bad("a note without signatures"));
    }
    Ok(Note {
        body: format!("{body}\n"),
        signatures,
    })
}
