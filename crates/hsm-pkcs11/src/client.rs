//! The module as a client of `ferrohsm-server`: each call is one frame out and one frame
//! back over a Unix socket.
//!
//! - **One application per process.** The first connection makes the application on the
//!   server. Each further connection (one per thread that calls at the same time, kept in
//!   a pool) joins it with the application's key, so every thread sees the same sessions
//!   and login, as PKCS#11 wants.
//! - **No threads.** The module starts no thread of its own in this mode, so
//!   `CKF_LIBRARY_CANT_CREATE_OS_THREADS` is honoured. Starting a server is a child
//!   process (`ferrohsm-server start`), which has exited by the time `C_Initialize`
//!   returns.
//! - **A lost server** (killed, or its socket gone) answers `CKR_DEVICE_REMOVED` on the
//!   call that noticed. After that, each call tries again as a new application. The
//!   sessions of the old one are gone with its server, so their handles answer
//!   `CKR_SESSION_HANDLE_INVALID`.

use hsm_core::api::{CALLS, Request, Transport};
use hsm_core::config::{Config, Mode};
use hsm_core::{Error as CoreError, Result as CoreResult};
use hsm_proto::{AppKey, FrameError, Hello, Welcome};
use serde::de::DeserializeOwned;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How long a caller polls for the server's answer before it sleeps: most calls are
/// answered within it, without a wake-up.
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// A connected client: the socket, this process's application, idle connections.
pub struct Client {
    socket: PathBuf,
    /// In mode "auto": how to start a server again when it is gone.
    restart: Option<(Config, PathBuf)>,
    app: Mutex<Option<AppKey>>,
    idle: Mutex<Vec<UnixStream>>,
    max_frame: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.socket.display())
    }
}

impl Client {
    /// Connects to the store's server. In `auto` mode a server is started first if none
    /// answers. Even when a start reports a failure (a host that reaps every child itself
    /// makes its status unreadable), a server may answer now: it is asked once more.
    pub fn connect(config: &Config, config_path: &Path) -> CoreResult<Client> {
        let socket = config
            .socket_path()
            .map_err(|e| CoreError::DeviceError(e.to_string()))?;
        let client = Client {
            socket,
            restart: (config.mode == Mode::Auto)
                .then(|| (config.clone(), config_path.to_path_buf())),
            app: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            max_frame: hsm_proto::MAX_FRAME,
        };
        let first = client.take().map_err(|e| e.into_core(&client.socket))?;
        client.put_back(first);
        Ok(client)
    }

    /// A connection of this process's application: an idle one, or a new one. In mode
    /// "auto" a server that is gone is started again.
    fn take(&self) -> Result<UnixStream, ConnectError> {
        if let Some(c) = lock(&self.idle).pop() {
            return Ok(c);
        }
        match (self.open(), &self.restart) {
            (Err(e), Some((config, path))) if e.server_absent() => {
                let started = crate::launch::start_server(config, path);
                self.open().map_err(|e| match started {
                    Err(why) => ConnectError::Start(why),
                    Ok(()) => e,
                })
            }
            (r, _) => r,
        }
    }

    fn put_back(&self, c: UnixStream) {
        lock(&self.idle).push(c);
    }

    /// The server was lost: no connection and no application of it is any use.
    fn forget_server(&self) {
        lock(&self.idle).clear();
        *lock(&self.app) = None;
    }

    /// Opens a connection and shakes hands: joins this process's application, or makes
    /// it when there is none yet.
    fn open(&self) -> Result<UnixStream, ConnectError> {
        let mut s = UnixStream::connect(&self.socket).map_err(ConnectError::Connect)?;
        let join = lock(&self.app).clone();
        let hello = Hello::new(CALLS, env!("CARGO_PKG_VERSION"), client_name(), join);
        let answer = hsm_proto::shake_hands(&mut s, &hello).map_err(ConnectError::Protocol)?;
        match answer {
            Welcome::Accepted { app, .. } => {
                let mut mine = lock(&self.app);
                if mine.is_none() {
                    *mine = Some(app);
                }
                Ok(s)
            }
            Welcome::Refused { reason } => Err(ConnectError::Refused(reason)),
        }
    }

    /// One call: the request out, the answer back, on a connection no other thread uses
    /// meanwhile.
    fn round_trip(&self, c: &mut UnixStream, frame: &[u8]) -> Result<hsm_proto::Frame, FrameError> {
        c.write_all(frame)?;
        hsm_proto::read_frame(&mut hsm_proto::Spinning::new(c, SPIN), self.max_frame)
    }
}

impl Transport for Client {
    fn call<T: DeserializeOwned>(&self, request: &Request) -> CoreResult<T> {
        let frame = hsm_proto::encode(request)
            .map_err(|e| CoreError::General(format!("cannot encode {}: {e}", request.name())))?;
        if frame.len() as u64 > self.max_frame {
            return Err(CoreError::DataLenRange);
        }
        let mut c = self.take().map_err(|e| {
            if e.server_absent() {
                self.forget_server();
            }
            e.into_core(&self.socket)
        })?;
        match self.round_trip(&mut c, &frame) {
            Ok(payload) => {
                let answer = hsm_proto::decode::<CoreResult<T>>(&payload);
                match answer {
                    Ok(a) => {
                        self.put_back(c);
                        a
                    }
                    // The server answered something this build cannot read: the
                    // connection is out of step, so it is not reused.
                    Err(e) => Err(CoreError::DeviceError(format!(
                        "the server's answer to {} is unreadable: {e}",
                        request.name()
                    ))),
                }
            }
            Err(e) => {
                self.forget_server();
                tracing::warn!(call = request.name(), socket = %self.socket.display(), "server lost: {e}");
                Err(CoreError::DeviceRemoved(format!(
                    "the connection to ferrohsm-server at {} broke during {}: {e}",
                    self.socket.display(),
                    request.name()
                )))
            }
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// Nobody listens on the socket (or it does not exist).
    Connect(std::io::Error),
    /// The server refused this client, and said why.
    Refused(String),
    /// Something answered, but not as a FerroHSM server.
    Protocol(FrameError),
    /// No server answered, and none could be started.
    Start(CoreError),
}

impl ConnectError {
    /// No server at all (as opposed to one that refused us).
    /// A server on its way out (idle) closes a connection it just accepted: that counts.
    pub fn server_absent(&self) -> bool {
        match self {
            ConnectError::Connect(e) => matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ),
            ConnectError::Protocol(FrameError::Closed) => true,
            _ => false,
        }
    }

    fn into_core(self, socket: &Path) -> CoreError {
        let at = socket.display();
        match self {
            ConnectError::Connect(e) => CoreError::DeviceRemoved(format!(
                "no ferrohsm-server answers at {at}: {e} (mode \"client\" starts none; \
                 \"auto\" does)"
            )),
            ConnectError::Refused(r) => {
                CoreError::DeviceError(format!("ferrohsm-server at {at} refused this client: {r}"))
            }
            ConnectError::Protocol(e) => {
                CoreError::DeviceError(format!("the handshake with {at} failed: {e}"))
            }
            ConnectError::Start(e) => e,
        }
    }
}

/// The program and pid, for the server's log.
fn client_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "?".into());
    format!("{exe}[{}]", std::process::id())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
