//! One client connection: the peer check, the handshake, then calls until the client
//! goes. Each client process is one application of the token (its sessions, its login).
//! Its first connection makes the application; its other connections join it with the
//! application's key. When the last one closes, the application ends: its sessions close
//! and its login is dropped, whether the client said goodbye or died.

use hsm_core::api::{CALLS, Reply, Request};
use hsm_core::{Error as CoreError, Hsm, Local};
use hsm_proto::{AppKey, FrameError, Hello, Spinning, Welcome};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a connection's thread polls for the client's next call before it sleeps (a
/// client that calls again at once is answered without a wake-up).
const SPIN: Duration = Duration::from_micros(50);
/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection shares.
pub struct Shared {
    pub hsm: Arc<Hsm>,
    pub allow_uids: Vec<u32>,
    pub max_frame: u64,
    apps: Mutex<HashMap<u64, (AppKey, Weak<Local>)>>,
    clients: AtomicUsize,
    /// Every open connection, so that stopping the server can end them all.
    open: Mutex<HashMap<u64, UnixStream>>,
    next_conn: std::sync::atomic::AtomicU64,
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
            open: Mutex::new(HashMap::new()),
            next_conn: std::sync::atomic::AtomicU64::new(0),
            idle_since: Mutex::new(Some(Instant::now())),
        }
    }

    /// Ends every connection (the server is stopping): their threads see the end of
    /// their stream, and their applications end.
    pub fn close_all(&self) {
        for s in lock(&self.open).values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
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

/// Serves one connection to its end, on a thread of its own: a call is a blocking read,
/// the core's work and a blocking write, with no hand-off between threads on the way
/// (an idle client costs a parked thread). Errors end the connection, never the server.
pub async fn handle(stream: tokio::net::UnixStream, shared: Arc<Shared>) {
    let peer = stream.peer_cred().ok();
    let who = peer.map_or_else(
        || "peer ?".to_string(),
        |c| format!("pid {:?} uid {}", c.pid(), c.uid()),
    );
    let std_stream = match stream
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(peer = %who, "cannot take the connection: {e}");
            return;
        }
    };
    let uid = peer.map(|c| c.uid());
    let pid = peer
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let _ = tokio::task::spawn_blocking(move || {
        // The audit records of this connection's calls name its client process.
        hsm_core::audit::set_client_pid(pid);
        serve(std_stream, &shared, uid, &who);
        hsm_core::audit::set_client_pid(None);
    })
    .await;
}

fn serve(stream: UnixStream, shared: &Shared, uid: Option<u32>, who: &str) {
    let _guard = Present::new(shared);
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    if let Ok(c) = stream.try_clone() {
        lock(&shared.open).insert(id, c);
    }
    serve_registered(&stream, shared, uid, who);
    lock(&shared.open).remove(&id);
}

fn serve_registered(stream: &UnixStream, shared: &Shared, uid: Option<u32>, who: &str) {
    let mut reader = BufReader::with_capacity(64 << 10, Spinning::new(stream, SPIN));
    let mut writer = stream;
    let _ = stream.set_read_timeout(Some(HELLO_TIMEOUT));
    let (local, client) = match handshake(&mut reader, &mut writer, shared, uid) {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::warn!(peer = %who, "handshake failed: {e}");
            return;
        }
    };
    let _ = stream.set_read_timeout(None);
    tracing::info!(peer = %who, %client, app = local.app(), "client connected");
    match calls(&mut reader, &mut writer, shared, &local) {
        Ok(()) => tracing::info!(peer = %who, app = local.app(), "client left"),
        Err(e) => tracing::warn!(peer = %who, app = local.app(), "connection closed: {e}"),
    }
}

/// Reads the client's magic and hello, answers with ours and a welcome (or a refusal).
///
/// The peer's uid is checked after its hello is read (a refusal sent to a peer whose
/// bytes are still unread could be lost to a connection reset).
fn handshake(
    r: &mut impl Read,
    w: &mut impl Write,
    shared: &Shared,
    uid: Option<u32>,
) -> Result<(Arc<Local>, String), FrameError> {
    if let Err(e) = hsm_proto::read_magic(r, "client") {
        if matches!(e, FrameError::NotFerroHsm(_)) {
            let _ = refuse(w, "not a FerroHSM client (wrong magic)".into());
        }
        return Err(e);
    }
    let payload = hsm_proto::read_frame(r, hsm_proto::HELLO_MAX)?;
    let hello: Hello = match hsm_proto::decode(&payload) {
        Ok(h) => h,
        Err(e) => {
            let _ = refuse(w, format!("unreadable hello: {e}"));
            return Err(e);
        }
    };
    if let Err(reason) = admissible(&hello, shared, uid) {
        refuse(w, reason.clone())?;
        return Err(FrameError::Decode(reason));
    }
    let version = hsm_proto::common_version(hello.versions, &hsm_proto::VERSIONS).unwrap_or(1);
    let (local, app) = match shared.application(hello.join.as_ref()) {
        Ok(a) => a,
        Err(reason) => {
            refuse(w, reason.clone())?;
            return Err(FrameError::Decode(reason));
        }
    };
    let welcome = Welcome::Accepted {
        version,
        app,
        server: format!("ferrohsm-server {}", env!("CARGO_PKG_VERSION")),
        pid: std::process::id(),
    };
    send_welcome(w, &welcome)?;
    Ok((local, hello.client))
}

/// Why a hello cannot be served, in words for the client: its uid, its protocol
/// versions, its call list.
fn admissible(hello: &Hello, shared: &Shared, uid: Option<u32>) -> Result<(), String> {
    if !uid.is_some_and(|u| shared.allow_uids.contains(&u)) {
        return Err(format!(
            "uid {} may not use this token ([server] allow_uids = {:?})",
            uid.map_or_else(|| "?".into(), |u| u.to_string()),
            shared.allow_uids
        ));
    }
    if hsm_proto::common_version(hello.versions, &hsm_proto::VERSIONS).is_none() {
        return Err(format!(
            "protocol versions {}..={} offered (module {}); this server ({}) speaks {}..={}: \
             install a module and server of the same release",
            hello.versions.0,
            hello.versions.1,
            hello.software,
            env!("CARGO_PKG_VERSION"),
            hsm_proto::VERSIONS.start(),
            hsm_proto::VERSIONS.end()
        ));
    }
    if hello.calls != CALLS {
        return Err(format!(
            "the module ({}) and this server ({}) were built from different call lists: \
             install a module and server of the same build",
            hello.software,
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(())
}

/// The calls of an accepted connection, one answer per request, until the client closes.
fn calls(
    r: &mut impl Read,
    w: &mut impl Write,
    shared: &Shared,
    local: &Local,
) -> Result<(), FrameError> {
    loop {
        let payload = match hsm_proto::read_frame(r, shared.max_frame) {
            Ok(p) => p,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => {
                let _ = answer_error(w, format!("bad frame: {e}"));
                return Err(e);
            }
        };
        let request: Request = match hsm_proto::decode(&payload) {
            Ok(r) => r,
            Err(e) => {
                let _ = answer_error(w, format!("undecodable call: {e}"));
                return Err(e);
            }
        };
        drop(payload);
        let frame = request.serve(local, Encoder);
        w.write_all(&frame)?;
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
fn answer_error(w: &mut impl Write, why: String) -> Result<(), FrameError> {
    let err: hsm_core::Result<()> = Err(CoreError::DeviceError(format!("protocol: {why}")));
    w.write_all(&hsm_proto::encode(&err)?)?;
    Ok(())
}

fn refuse(w: &mut impl Write, reason: String) -> Result<(), FrameError> {
    send_welcome(w, &Welcome::Refused { reason })
}

/// The server's side of the handshake: its magic, then the welcome or refusal.
fn send_welcome(w: &mut impl Write, welcome: &Welcome) -> Result<(), FrameError> {
    let mut out = hsm_proto::MAGIC.to_vec();
    out.extend_from_slice(&hsm_proto::encode(welcome)?);
    w.write_all(&out)?;
    Ok(())
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
