//! How the PKCS#11 module talks to `ferrohsm-server` over a Unix socket.
//!
//! A connection begins with both sides sending [`MAGIC`]. Then come frames: an 8-byte
//! big-endian payload length, then the payload, one MessagePack value (`rmp-serde`).
//! - The first frame each way is the handshake: the client's [`Hello`] and the server's
//!   [`Welcome`]. The client offers a range of protocol versions and the fingerprint of
//!   the call list it was built with. The server takes the highest common version and
//!   refuses, in words, a client it cannot serve.
//! - After that, every frame from the client is one call, and the frame that comes back is
//!   its answer. The calls are defined with the token's API in `hsm_core::api`.
//!
//! A claimed length is checked against the reader's cap before anything is allocated for
//! it. The handshake's cap is [`HELLO_MAX`], and calls use [`MAX_FRAME`] unless configured
//! otherwise. Frame buffers are zeroized when dropped: they carry PINs and plaintext.
//!
//! This crate knows frames, not calls, so it stays small: the module's build pays for
//! serde and MessagePack, nothing more.

#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use zeroize::{Zeroize, Zeroizing};

/// What both sides send first, so neither mistakes another program for a peer.
pub const MAGIC: [u8; 8] = *b"FERROHSM";
/// The protocol versions this build speaks.
pub const VERSIONS: std::ops::RangeInclusive<u32> = 1..=1;
/// The length prefix of a frame.
pub const HEADER_LEN: usize = 8;
/// The largest handshake frame.
pub const HELLO_MAX: u64 = 4096;
/// The default largest call or answer: 64 MiB, above any buffer a PKCS#11 client hands
/// one call in practice (a bigger one is `CKR_DATA_LEN_RANGE` on the client's side).
pub const MAX_FRAME: u64 = 64 << 20;

/// A frame's payload, or a whole encoded frame; zeroized when dropped.
pub type Frame = Zeroizing<Vec<u8>>;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("the peer is not a FerroHSM {0} (it did not begin with the protocol's magic)")]
    NotFerroHsm(&'static str),
    #[error("a frame of {len} bytes is over this side's cap of {cap} bytes")]
    TooLarge { len: u64, cap: u64 },
    #[error("the connection ended {got} bytes into a {want}-byte frame")]
    Truncated { got: usize, want: usize },
    #[error("an undecodable frame: {0}")]
    Decode(String),
    #[error("a value that cannot be encoded: {0}")]
    Encode(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// The client's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The lowest and highest protocol version the client speaks.
    pub versions: (u32, u32),
    /// The fingerprint of the client's call list ([`fingerprint`]). Client and server
    /// must have been built from the same list: otherwise a call could decode as another.
    pub calls: u64,
    /// The client's software version, for messages.
    pub software: String,
    /// The client program and its pid, for the server's logs.
    pub client: String,
    /// Join an application the client already has (another thread's connection):
    /// sessions and login are per application, so every connection of one process shares
    /// them.
    pub join: Option<AppKey>,
}

impl Hello {
    /// A hello offering every version this build speaks.
    pub fn new(calls: u64, software: &str, client: String, join: Option<AppKey>) -> Hello {
        Hello {
            versions: (*VERSIONS.start(), *VERSIONS.end()),
            calls,
            software: software.into(),
            client,
            join,
        }
    }
}

/// The client's side of the handshake on a blocking stream: our magic and hello out (one
/// write), the server's magic and welcome back.
pub fn shake_hands(s: &mut (impl Read + Write), hello: &Hello) -> Result<Welcome, FrameError> {
    let mut out = Zeroizing::new(MAGIC.to_vec());
    out.extend_from_slice(&encode(hello)?);
    s.write_all(&out)?;
    read_magic(s, "server")?;
    decode(&read_frame(s, HELLO_MAX)?)
}

/// An application on the server and the key that proves a connection belongs to it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppKey {
    pub app: u64,
    #[serde(with = "serde_bytes")]
    pub key: [u8; 32],
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AppKey {{ app: {}, key: <hidden> }}", self.app)
    }
}

impl Drop for AppKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// The server's answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    Accepted {
        version: u32,
        /// The application this connection serves (new, or the one joined).
        app: AppKey,
        /// The server's software version, for messages.
        server: String,
        /// The server's process id (`ferrohsm-server stop` signals it).
        pid: u32,
    },
    Refused {
        reason: String,
    },
}

/// The version both speak, if any: the highest in both ranges.
pub fn common_version(offered: (u32, u32), ours: &std::ops::RangeInclusive<u32>) -> Option<u32> {
    let high = offered.1.min(*ours.end());
    (high >= offered.0.max(*ours.start())).then_some(high)
}

/// FNV-1a over the text of a call list: equal lists, equal fingerprints. Computed at
/// compile time by the crate that holds the list.
pub const fn fingerprint(text: &str) -> u64 {
    fnv1a(text.as_bytes())
}

/// 64-bit FNV-1a: a short stable name for some bytes (not a cryptographic hash).
pub const fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// The length a frame header claims, if it is within `cap`.
pub fn frame_len(header: [u8; HEADER_LEN], cap: u64) -> Result<usize, FrameError> {
    let len = u64::from_be_bytes(header);
    if len > cap {
        return Err(FrameError::TooLarge { len, cap });
    }
    usize::try_from(len).map_err(|_| FrameError::TooLarge { len, cap })
}

/// Encodes `value` as a whole frame, header included, ready for one write.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Frame, FrameError> {
    let mut out = Zeroizing::new(Vec::with_capacity(64));
    out.extend_from_slice(&[0; HEADER_LEN]);
    rmp_serde::encode::write(&mut *out, value).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = (out.len() - HEADER_LEN) as u64;
    out[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Decodes one payload. Trailing bytes are an error: a frame is exactly one value.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let mut rest = payload;
    let v =
        rmp_serde::decode::from_read(&mut rest).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} bytes after the value",
            rest.len()
        )));
    }
    Ok(v)
}

/// Writes the magic that opens a connection.
pub fn write_magic(w: &mut impl Write) -> Result<(), FrameError> {
    w.write_all(&MAGIC)?;
    Ok(())
}

/// Reads and checks the peer's magic; `peer` names what the peer should be.
pub fn read_magic(r: &mut impl Read, peer: &'static str) -> Result<(), FrameError> {
    let mut m = [0u8; MAGIC.len()];
    read_full(r, &mut m)?;
    if m != MAGIC {
        return Err(FrameError::NotFerroHsm(peer));
    }
    Ok(())
}

/// Reads one frame's payload, refusing a claimed length over `cap` before allocating.
pub fn read_frame(r: &mut impl Read, cap: u64) -> Result<Frame, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    read_full(r, &mut header)?;
    let len = frame_len(header, cap)?;
    let mut payload = Zeroizing::new(vec![0u8; len]);
    match read_full(r, &mut payload) {
        Err(FrameError::Closed) => Err(FrameError::Truncated { got: 0, want: len }),
        other => other.map(|_| payload),
    }
}

/// A Unix stream that waits for data by spinning for a moment before it sleeps.
///
/// A call over the socket is two wake-ups of a sleeping thread, one on each side. On a
/// loaded machine each costs tens of microseconds, more than most calls take to serve.
/// So a reader first polls without blocking (`MSG_DONTWAIT`), for up to `spin`, and only
/// then blocks. Writes are the stream's own.
///
/// Spinning pays only while a core is free to spin on: two client threads spinning on a
/// two-core machine take the cores the server needs to answer them. So at most half the
/// cores' worth of readers in one process spin at a time ([`spin_budget`]); the others
/// sleep at once, as a plain read would. And spinning pays only when the answer comes
/// within the spin: when a spin runs out (the machine is busier than its cores, several
/// client processes are spinning, or the call is slow), the readers of this process
/// sleep at once for the next [`SPIN_BACKOFF`] reads before they try again.
pub struct Spinning<'a> {
    stream: &'a std::os::unix::net::UnixStream,
    spin: std::time::Duration,
}

impl<'a> Spinning<'a> {
    pub fn new(stream: &'a std::os::unix::net::UnixStream, spin: std::time::Duration) -> Self {
        Spinning { stream, spin }
    }
}

/// Readers of this process spinning right now.
static SPINNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Reads left that sleep without spinning, after a spin ran out.
static SKIP_SPIN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// Reads that sleep at once after a spin that ran out.
pub const SPIN_BACKOFF: u32 = 64;

/// Whether this read may spin: not while backing off.
fn backing_off() -> bool {
    use std::sync::atomic::Ordering;
    SKIP_SPIN
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// How many readers of one process may spin at once: half the cores, at least one.
pub fn spin_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)))
}

/// A place among the spinning readers, given back when dropped.
struct SpinSlot;

impl SpinSlot {
    fn take() -> Option<SpinSlot> {
        use std::sync::atomic::Ordering;
        let budget = spin_budget();
        SPINNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < budget).then_some(n + 1)
            })
            .ok()
            .map(|_| SpinSlot)
    }
}

impl Drop for SpinSlot {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Read for Spinning<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rustix::net::{RecvFlags, recv};
        let mut slot = None;
        let mut start = None;
        loop {
            match recv(self.stream, &mut *buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    let since = match start {
                        Some(t) => t,
                        None if backing_off() => return (&*self.stream).read(buf),
                        None => *start.insert(std::time::Instant::now()),
                    };
                    if slot.is_none() {
                        slot = SpinSlot::take();
                    }
                    let ran_out = since.elapsed() >= self.spin;
                    if slot.is_none() || ran_out {
                        if ran_out {
                            SKIP_SPIN.store(SPIN_BACKOFF, std::sync::atomic::Ordering::Relaxed);
                        }
                        drop(slot);
                        return (&*self.stream).read(buf);
                    }
                    std::hint::spin_loop();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Write for Spinning<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.stream).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fills `buf`: `Closed` if the stream ends before its first byte, `Truncated` if in the
/// middle.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    got,
                    want: buf.len(),
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_frame_round_trips() {
        let hello = Hello {
            versions: (1, 1),
            calls: fingerprint("fn a();"),
            software: "0.1.0".into(),
            client: "test[1]".into(),
            join: Some(AppKey {
                app: 7,
                key: [9; 32],
            }),
        };
        let frame = encode(&hello).unwrap();
        let payload = read_frame(&mut &frame[..], HELLO_MAX).unwrap();
        assert_eq!(decode::<Hello>(&payload).unwrap(), hello);
        assert!(!format!("{:?}", hello).contains("9, 9"), "the key shows");
    }

    #[test]
    fn a_claimed_length_over_the_cap_is_refused_before_allocation() {
        let mut huge = (1u64 << 63).to_be_bytes().to_vec();
        huge.extend_from_slice(b"tail");
        let e = read_frame(&mut &huge[..], MAX_FRAME).unwrap_err();
        assert!(
            matches!(e, FrameError::TooLarge { len, cap } if len == 1 << 63 && cap == MAX_FRAME)
        );
        let just_over = (HELLO_MAX + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &just_over[..], HELLO_MAX),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frames_and_closed_streams_are_told_apart() {
        assert!(matches!(
            read_frame(&mut &[][..], MAX_FRAME),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0][..], MAX_FRAME),
            Err(FrameError::Truncated { got: 3, want: 8 })
        ));
        let mut cut = 10u64.to_be_bytes().to_vec();
        cut.extend_from_slice(b"abc");
        assert!(matches!(
            read_frame(&mut &cut[..], MAX_FRAME),
            Err(FrameError::Truncated { got: 3, want: 10 })
        ));
    }

    #[test]
    fn trailing_bytes_and_wrong_magic_are_refused() {
        let mut frame = encode(&5u32).unwrap()[HEADER_LEN..].to_vec();
        frame.push(0);
        assert!(matches!(decode::<u32>(&frame), Err(FrameError::Decode(_))));
        assert!(matches!(
            read_magic(&mut &b"GET / HTTP/1.1"[..], "server"),
            Err(FrameError::NotFerroHsm("server"))
        ));
    }

    #[test]
    fn versions_meet_at_the_highest_common_one() {
        assert_eq!(common_version((1, 3), &(2..=5)), Some(3));
        assert_eq!(common_version((1, 1), &(1..=1)), Some(1));
        assert_eq!(common_version((2, 4), &(1..=1)), None);
        assert_eq!(common_version((3, 1), &(1..=5)), None, "an empty offer");
    }

    proptest! {
        /// Whatever bytes arrive, reading and decoding a hello answers an error or a
        /// value, never a panic, and never allocates past the cap.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = read_frame(&mut &bytes[..], HELLO_MAX) {
                prop_assert!(p.len() as u64 <= HELLO_MAX);
                let _ = decode::<Hello>(&p);
            }
        }

        /// A valid frame with random bytes flipped still decodes to an error or a value.
        #[test]
        fn damaged_hellos_never_panic(pos in 0usize..200, byte in any::<u8>()) {
            let hello = Hello {
                versions: (1, 1),
                calls: 1,
                software: "x".into(),
                client: "y".into(),
                join: None,
            };
            let mut frame = encode(&hello).unwrap().to_vec();
            let i = pos % frame.len();
            frame[i] = byte;
            if let Ok(p) = read_frame(&mut &frame[..], HELLO_MAX) {
                let _ = decode::<Hello>(&p);
            }
        }
    }
}
