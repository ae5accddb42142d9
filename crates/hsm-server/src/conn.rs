//! One client connection: the peer check, the handshake, then calls until the client
//! goes. Each client process is one application of the token (its sessions, its login).
//! Its first connection makes the application; its other connections join it with the
//! application's key. When the last one closes, the application ends: its sessions close
//! and its login is dropped, whether the client said goodbye or died.

use hsm_core::api::{CALLS, Reply, Request};
use hsm_core::{Error as CoreError, Hsm, Local};
use hsm_proto::{AppKey, FrameError, Hello, Welcome};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection shares.
pub struct Shared {
    pub hsm: Arc<Hsm>,
    pub allow_uids: Vec<u32>,
    pub max_frame: u64,
    apps: Mutex<HashMap<u64, (AppKey, Weak<Local>)>>,
    clients: AtomicUsize,
    /// When the last client left (for the idle exit).
    idle_since: Mutex<Option<Instant>>,
}

impl Shared {
    pub fn new(hsm: Arc<Hsm>, allow_uids: Vec<u32>, max_frame: u64) -> Shared {
        Shared {
            hsm,
            allow_uids,
            max_frame,
            apps: Mutex::new(HashMap::new()),
            clients: AtomicUsize::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
        }
    }

    /// How long the server has had no client, if it has none.
    pub fn idle_for(&self) -> Option<Duration> {
        lock(&self.idle_since).map(|t| t.elapsed())
    }

    /// A new application, or the one `join` names if its key matches.
    fn application(&self, join: Option<&AppKey>) -> Result<(Arc<Local>, AppKey), String> {
        let mut apps = lock(&self.apps);
        apps.retain(|_, (_, w)| w.strong_count() > 0);
        if let Some(j) = join {
            return match apps.get(&j.app) {
                Some((key, w))
                    if aws_lc_rs::constant_time::verify_slices_are_equal(&key.key, &j.key)
                        .is_ok() =>
                {
                    w.upgrade()
                        .map(|l| (l, key.clone()))
                        .ok_or_else(|| format!("application {} has ended", j.app))
                }
                _ => Err(format!(
                    "no application {} with that key here (the server was restarted, or \
                     every connection of the application closed)",
                    j.app
                )),
            };
        }
        let local = Arc::new(Local::new(self.hsm.clone()));
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| "no randomness for an application key")?;
        let app = AppKey {
            app: local.app(),
            key,
        };
        apps.insert(app.app, (app.clone(), Arc::downgrade(&local)));
        Ok((local, app))
    }
}

/// Serves one connection to its end. Never panics the server: errors end the connection.
pub async fn handle(mut stream: UnixStream, shared: Arc<Shared>) {
    let peer = stream.peer_cred().ok();
    let who = peer.map_or_else(
        || "peer ?".to_string(),
        |c| format!("pid {:?} uid {}", c.pid(), c.uid()),
    );
    let _guard = Present::new(&shared);
    let (local, client) = match tokio::time::timeout(
        HELLO_TIMEOUT,
        handshake(&mut stream, &shared, peer.map(|c| c.uid())),
    )
    .await
    {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            tracing::warn!(peer = %who, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %who, "no hello within {HELLO_TIMEOUT:?}; closed");
            return;
        }
    };
    tracing::info!(peer = %who, %client, app = local.app(), "client connected");
    match calls(&mut stream, &shared, &local).await {
        Ok(()) => tracing::info!(peer = %who, app = local.app(), "client left"),
        Err(e) => tracing::warn!(peer = %who, app = local.app(), "connection closed: {e}"),
    }
}

/// Reads the client's magic and hello, answers with ours and a welcome (or a refusal).
///
/// The peer's uid is checked after its hello is read (a refusal sent to a peer whose
/// bytes are still unread could be lost to a connection reset).
async fn handshake(
    stream: &mut UnixStream,
    shared: &Shared,
    uid: Option<u32>,
) -> Result<(Arc<Local>, String), FrameError> {
    let mut magic = [0u8; 8];
    stream.read_exact(&mut magic).await?;
    if magic != hsm_proto::MAGIC {
        let _ = refuse(stream, "not a FerroHSM client (wrong magic)".into()).await;
        return Err(FrameError::NotFerroHsm("client"));
    }
    let payload = read_frame(stream, hsm_proto::HELLO_MAX).await?;
    let hello: Hello = match hsm_proto::decode(&payload) {
        Ok(h) => h,
        Err(e) => {
            let _ = refuse(stream, format!("unreadable hello: {e}")).await;
            return Err(e);
        }
    };
    if !uid.is_some_and(|u| shared.allow_uids.contains(&u)) {
        let reason = format!(
            "uid {} may not use this token ([server] allow_uids = {:?})",
            uid.map_or_else(|| "?".into(), |u| u.to_string()),
            shared.allow_uids
        );
        refuse(stream, reason.clone()).await?;
        return Err(FrameError::Decode(reason));
    }
    let Some(version) = hsm_proto::common_version(hello.versions, &hsm_proto::VERSIONS) else {
        let reason = format!(
            "protocol versions {}..={} offered (module {}); this server ({}) speaks {}..={}: \
             install a module and server of the same release",
            hello.versions.0,
            hello.versions.1,
            hello.software,
            env!("CARGO_PKG_VERSION"),
            hsm_proto::VERSIONS.start(),
            hsm_proto::VERSIONS.end()
        );
        refuse(stream, reason.clone()).await?;
        return Err(FrameError::Decode(reason));
    };
    if hello.calls != CALLS {
        let reason = format!(
            "the module ({}) and this server ({}) were built from different call lists: \
             install a module and server of the same build",
            hello.software,
            env!("CARGO_PKG_VERSION")
        );
        refuse(stream, reason.clone()).await?;
        return Err(FrameError::Decode(reason));
    }
    let (local, app) = match shared.application(hello.join.as_ref()) {
        Ok(a) => a,
        Err(reason) => {
            refuse(stream, reason.clone()).await?;
            return Err(FrameError::Decode(reason));
        }
    };
    let welcome = Welcome::Accepted {
        version,
        app,
        server: format!("ferrohsm-server {}", env!("CARGO_PKG_VERSION")),
        pid: std::process::id(),
    };
    send_welcome(stream, &welcome).await?;
    Ok((local, hello.client))
}

/// The calls of an accepted connection, one answer per request, until the client closes.
async fn calls(stream: &mut UnixStream, shared: &Shared, local: &Local) -> Result<(), FrameError> {
    loop {
        let payload = match read_frame(stream, shared.max_frame).await {
            Ok(p) => p,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => {
                let _ = answer_error(stream, format!("bad frame: {e}")).await;
                return Err(e);
            }
        };
        let request: Request = match hsm_proto::decode(&payload) {
            Ok(r) => r,
            Err(e) => {
                let _ = answer_error(stream, format!("undecodable call: {e}")).await;
                return Err(e);
            }
        };
        drop(payload);
        // The core blocks (RocksDB, the PIN KDF): run it on this worker and let tokio
        // move the other connections' tasks elsewhere meanwhile.
        let frame = tokio::task::block_in_place(|| request.serve(local, Encoder));
        stream.write_all(&frame).await?;
    }
}

/// Encodes each answer as a whole frame.
struct Encoder;

impl Reply for Encoder {
    type Output = hsm_proto::Frame;
    fn reply<T: Serialize>(self, answer: &hsm_core::Result<T>) -> hsm_proto::Frame {
        hsm_proto::encode(answer).unwrap_or_else(|e| {
            let err: hsm_core::Result<()> = Err(CoreError::General(format!(
                "the answer cannot be encoded: {e}"
            )));
            hsm_proto::encode(&err).unwrap_or_default()
        })
    }
}

/// Tells a client that breaks the protocol why it is being disconnected.
async fn answer_error(stream: &mut UnixStream, why: String) -> Result<(), FrameError> {
    let err: hsm_core::Result<()> = Err(CoreError::DeviceError(format!("protocol: {why}")));
    send(stream, &err).await
}

async fn refuse(stream: &mut UnixStream, reason: String) -> Result<(), FrameError> {
    send_welcome(stream, &Welcome::Refused { reason }).await
}

/// The server's side of the handshake: its magic, then the welcome or refusal.
async fn send_welcome(stream: &mut UnixStream, w: &Welcome) -> Result<(), FrameError> {
    let mut out = hsm_proto::MAGIC.to_vec();
    out.extend_from_slice(&hsm_proto::encode(w)?);
    stream.write_all(&out).await?;
    Ok(())
}

async fn send<T: Serialize>(stream: &mut UnixStream, value: &T) -> Result<(), FrameError> {
    stream.write_all(&hsm_proto::encode(value)?).await?;
    Ok(())
}

/// Reads one frame, refusing a claimed length over `cap` before allocating anything.
async fn read_frame(stream: &mut UnixStream, cap: u64) -> Result<hsm_proto::Frame, FrameError> {
    let mut header = [0u8; hsm_proto::HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = hsm_proto::frame_len(header, cap)?;
    let mut payload = zeroize::Zeroizing::new(vec![0u8; len]);
    match stream.read_exact(&mut payload).await {
        Ok(_) => Ok(payload),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(FrameError::Truncated { got: 0, want: len })
        }
        Err(e) => Err(e.into()),
    }
}

/// Counts a connection while it lasts; the last one to go starts the idle clock.
struct Present<'a>(&'a Shared);

impl<'a> Present<'a> {
    fn new(s: &'a Shared) -> Self {
        s.clients.fetch_add(1, Ordering::SeqCst);
        *lock(&s.idle_since) = None;
        Present(s)
    }
}

impl Drop for Present<'_> {
    fn drop(&mut self) {
        let mut idle = lock(&self.0.idle_since);
        if self.0.clients.fetch_sub(1, Ordering::SeqCst) == 1 {
            *idle = Some(Instant::now());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
