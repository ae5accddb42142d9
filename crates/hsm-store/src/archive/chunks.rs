//! The sealed part of an archive: length-prefixed frames cut into chunks of `CHUNK` bytes
//! (the last one shorter), each sealed with AES-256-GCM under the archive key. A chunk's
//! AAD names the header, the chunk's place and whether it is the last, so chunks cannot
//! be reordered, dropped or cut short unnoticed.

use super::{CHUNK, Frame, bad};
use crate::error::{Result, StoreError};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};
use std::io::{Read, Write};
use zeroize::Zeroize;

fn chunk_aad(header_hash: &[u8], index: u64, last: bool) -> Vec<u8> {
    let mut a = header_hash.to_vec();
    a.extend_from_slice(&index.to_be_bytes());
    a.push(last as u8);
    a
}

fn nonce(prefix: &[u8], index: u64) -> Result<Nonce> {
    let idx = u32::try_from(index).map_err(|_| bad("archive has too many chunks"))?;
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(prefix);
    n[8..].copy_from_slice(&idx.to_be_bytes());
    Ok(Nonce::assume_unique_for_key(n))
}

/// Writes length-prefixed frames into encrypted chunks.
pub(super) struct SealedWriter<W: Write> {
    out: W,
    key: LessSafeKey,
    header_hash: Vec<u8>,
    nonce_prefix: Vec<u8>,
    buf: Vec<u8>,
    index: u64,
}

impl<W: Write> SealedWriter<W> {
    pub(super) fn new(
        out: W,
        key: LessSafeKey,
        header_hash: Vec<u8>,
        nonce_prefix: Vec<u8>,
    ) -> Self {
        SealedWriter {
            out,
            key,
            header_hash,
            nonce_prefix,
            buf: Vec::new(),
            index: 0,
        }
    }

    pub(super) fn frame(&mut self, f: &Frame) -> Result<()> {
        let bytes = rmp_serde::to_vec_named(f).map_err(|e| bad(format!("encoding: {e}")))?;
        self.buf
            .extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(&bytes);
        while self.buf.len() >= CHUNK {
            let rest = self.buf.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.seal(chunk, false)?;
        }
        Ok(())
    }

    fn seal(&mut self, mut chunk: Vec<u8>, last: bool) -> Result<()> {
        let aad = chunk_aad(&self.header_hash, self.index, last);
        self.key
            .seal_in_place_append_tag(
                nonce(&self.nonce_prefix, self.index)?,
                Aad::from(aad),
                &mut chunk,
            )
            .map_err(|_| bad("sealing failed"))?;
        self.out
            .write_all(&(chunk.len() as u32).to_be_bytes())
            .map_err(|e| StoreError::Io(e.to_string()))?;
        self.out
            .write_all(&chunk)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        self.index += 1;
        Ok(())
    }

    /// Seals what is buffered as the final chunk.
    pub(super) fn finish(mut self) -> Result<W> {
        let rest = std::mem::take(&mut self.buf);
        self.seal(rest, true)?;
        Ok(self.out)
    }
}

/// Reads and authenticates chunks, yielding frames.
pub(super) struct SealedReader<R: Read> {
    input: R,
    key: LessSafeKey,
    header_hash: Vec<u8>,
    nonce_prefix: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    index: u64,
    done: bool,
}

impl<R: Read> SealedReader<R> {
    pub(super) fn new(
        input: R,
        key: LessSafeKey,
        header_hash: Vec<u8>,
        nonce_prefix: Vec<u8>,
    ) -> Self {
        SealedReader {
            input,
            key,
            header_hash,
            nonce_prefix,
            buf: Vec::new(),
            pos: 0,
            index: 0,
            done: false,
        }
    }

    /// Whether the archive ends here: nothing left of the final chunk, and no chunk after
    /// it.
    pub(super) fn at_end(&mut self) -> Result<bool> {
        if self.pos != self.buf.len() {
            return Ok(false);
        }
        Ok(!self.next_chunk()?)
    }

    fn next_chunk(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(bad(format!(
                    "truncated: the archive ends after chunk {} without its final chunk",
                    self.index
                )));
            }
            Err(e) => return Err(StoreError::Io(e.to_string())),
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(16..=CHUNK + 16).contains(&len) {
            return Err(bad(format!(
                "chunk {} has an impossible length {len}",
                self.index
            )));
        }
        let mut chunk = vec![0u8; len];
        self.input.read_exact(&mut chunk).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad(format!("truncated inside chunk {}", self.index))
            } else {
                StoreError::Io(e.to_string())
            }
        })?;
        // A chunk is the last one exactly when it authenticates as the last one.
        for last in [false, true] {
            let mut attempt = chunk.clone();
            let aad = chunk_aad(&self.header_hash, self.index, last);
            if let Ok(plain) = self.key.open_in_place(
                nonce(&self.nonce_prefix, self.index)?,
                Aad::from(aad),
                &mut attempt,
            ) {
                let n = plain.len();
                attempt.truncate(n);
                self.buf.drain(..self.pos);
                self.pos = 0;
                self.buf.extend_from_slice(&attempt);
                attempt.zeroize();
                self.index += 1;
                if last {
                    self.done = true;
                    let mut extra = [0u8; 1];
                    if self
                        .input
                        .read(&mut extra)
                        .map_err(|e| StoreError::Io(e.to_string()))?
                        > 0
                    {
                        return Err(bad("data follows the final chunk"));
                    }
                }
                return Ok(true);
            }
        }
        // The key was checked against the header, so this chunk is damaged or misplaced.
        Err(bad(format!(
            "chunk {} failed authentication: the archive is damaged or its chunks were reordered",
            self.index
        )))
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buf.len() - self.pos < n {
            if !self.next_chunk()? {
                return Err(bad("the archive ends inside a frame"));
            }
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    pub(super) fn frame(&mut self) -> Result<Frame> {
        let len = self.take(4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > 64 << 20 {
            return Err(bad("a frame claims more than 64 MiB"));
        }
        let bytes = self.take(len)?;
        rmp_serde::from_slice(&bytes).map_err(|e| bad(format!("a frame does not decode: {e}")))
    }
}
