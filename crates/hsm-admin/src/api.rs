//! The endpoints: what each needs (a role from the bearer token, and for what opens the
//! token's keys the PIN of the PKCS#11 role that would do it), and the core call behind
//! it. Every call runs in the core exactly as through the Unix socket, so the same
//! policy holds: a guarded operation answers 403 `approval_required` with its request.

use crate::jwt::Principal;
use base64ct::{Base64, Encoding};
use hsm_core::lifecycle::{KeyCommand, KeyId};
use hsm_core::policy::quorum::QuorumCommand;
use hsm_core::types::quorum::{KeyRules, QuorumPolicy, Verdict};
use hsm_core::types::{SecretString, TokenId};
use hsm_core::{Error, Hsm, LoginKind};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// The roles a bearer token can carry.
pub const ROLES: [&str; 4] = ["so", "user", "approver", "auditor"];

/// `POST /v1/approvals/{id}/verdicts`: an approver's signed verdict (the signature over
/// `approval_message`, base64).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictBody {
    approver: u32,
    approve: bool,
    at: u64,
    signature: String,
}

/// One parsed request, past authentication.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub token: Option<u32>,
    pub principal: &'a Principal,
    /// `X-FerroHSM-PIN`: the PIN of the role the endpoint logs in as.
    pub pin: Option<Zeroizing<String>>,
    pub body: &'a [u8],
}

/// An answer: a status and a JSON body.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({"error": code, "message": message.into()}),
        }
    }
}

/// A core error as an HTTP answer (the same refusals PKCS#11 callers get).
fn core_error(e: Error) -> Reply {
    let msg = e.to_string();
    match e {
        Error::ApprovalRequired(_) => Reply::error(403, "approval_required", msg),
        Error::PolicyDenied(_) | Error::ActionProhibited(_) => Reply::error(403, "refused", msg),
        Error::PinIncorrect | Error::PinLocked | Error::UserNotLoggedIn => {
            Reply::error(403, "pin", msg)
        }
        Error::ArgumentsBad(_) | Error::TemplateInconsistent(_) => {
            Reply::error(400, "bad_request", msg)
        }
        _ => Reply::error(500, "core", msg),
    }
}

fn need(p: &Principal, any_of: &[&str]) -> Result<(), Reply> {
    if p.roles.iter().any(|r| any_of.contains(&r.as_str())) {
        return Ok(());
    }
    Err(Reply::error(
        403,
        "role",
        format!(
            "this needs one of the roles {any_of:?}; the token of {:?} carries {:?}",
            p.subject, p.roles
        ),
    ))
}

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(b)
        .map_err(|e| Reply::error(400, "bad_request", format!("the body does not parse: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Reply {
    match serde_json::to_value(v) {
        Ok(v) => Reply::ok(v),
        Err(e) => Reply::error(500, "core", e.to_string()),
    }
}

/// A session of a fresh application at the token's slot, closed with it.
struct Session<'h> {
    hsm: &'h Hsm,
    app: u64,
    h: u64,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.hsm.end_app(self.app);
    }
}

fn open<'h>(
    hsm: &'h Hsm,
    token: Option<u32>,
    login: Option<(LoginKind, Option<SecretString>)>,
) -> Result<Session<'h>, Reply> {
    let slot = slot_of(hsm, token)?;
    let app = hsm.new_app();
    let h = match hsm.open_session(app, slot, true) {
        Ok(h) => h,
        Err(e) => {
            hsm.end_app(app);
            return Err(core_error(e));
        }
    };
    let s = Session { hsm, app, h };
    if let Some((kind, pin)) = login {
        let pin = pin.ok_or_else(|| {
            Reply::error(
                401,
                "pin",
                "this opens the token's keys: give the PIN in X-FerroHSM-PIN",
            )
        })?;
        hsm.login(s.h, kind, pin).map_err(core_error)?;
    }
    Ok(s)
}

fn slot_of(hsm: &Hsm, token: Option<u32>) -> Result<u64, Reply> {
    let tokens = hsm.token_slots().map_err(core_error)?;
    match (token, tokens.as_slice()) {
        (None, [(_, slot)]) => Ok(*slot),
        (None, []) => Err(Reply::error(404, "no_token", "the store has no token")),
        (None, _) => Err(Reply::error(
            400,
            "bad_request",
            "the store has several tokens: give ?token=ID",
        )),
        (Some(t), all) => all
            .iter()
            .find(|(id, _)| *id == TokenId(t))
            .map(|(_, s)| *s)
            .ok_or_else(|| Reply::error(404, "no_token", format!("no token {t}"))),
    }
}

const READERS: [&str; 4] = ROLES;

/// Runs an authenticated call (blocking: the core does I/O and PIN KDFs).
pub fn dispatch(hsm: &Hsm, c: Call<'_>) -> Reply {
    match route(hsm, c) {
        Ok(r) | Err(r) => r,
    }
}

fn route(hsm: &Hsm, c: Call<'_>) -> Result<Reply, Reply> {
    let segs: Vec<&str> = c.path.trim_matches('/').split('/').collect();
    let p = c.principal;
    let pin = || c.pin.as_ref().map(|p| SecretString::from(p.as_str()));
    let user = || Some((LoginKind::User, pin()));
    let so = || Some((LoginKind::So, pin()));
    match (c.method, segs.as_slice()) {
        ("GET", ["v1", "approvals"]) => {
            need(p, &READERS)?;
            let s = open(hsm, c.token, None)?;
            Ok(to_json(&hsm.quorum_view(s.h).map_err(core_error)?))
        }
        ("GET", ["v1", "approvals", id]) => {
            need(p, &READERS)?;
            let id: u64 = number(id)?;
            let s = open(hsm, c.token, None)?;
            let view = hsm.quorum_view(s.h).map_err(core_error)?;
            let r = view.requests.iter().find(|r| r.request.id == id);
            r.map(to_json)
                .ok_or_else(|| Reply::error(404, "no_request", format!("no request {id}")))
        }
        ("POST", ["v1", "approvals", id, "verdicts"]) => {
            need(p, &["approver"])?;
            let b: VerdictBody = body(c.body)?;
            let signature = Base64::decode_vec(&b.signature).map_err(|_| {
                Reply::error(400, "bad_request", "signature: standard base64 expected")
            })?;
            let v = Verdict {
                request: number(id)?,
                approver: b.approver,
                approve: b.approve,
                at: b.at,
                signature,
            };
            let s = open(hsm, c.token, None)?;
            let standing = hsm.submit_verdict(s.h, v).map_err(core_error)?;
            Ok(Reply::ok(json!({"standing": standing.name()})))
        }
        ("GET", ["v1", "policy"]) => {
            need(p, &READERS)?;
            let s = open(hsm, c.token, None)?;
            let view = hsm.quorum_view(s.h).map_err(core_error)?;
            Ok(to_json(&view.state))
        }
        ("PUT", ["v1", "policy"]) => {
            need(p, &["so"])?;
            let policy: QuorumPolicy = body(c.body)?;
            quorum(hsm, &c, so(), QuorumCommand::SetPolicy { policy })
        }
        ("PUT", ["v1", "keys", id, "rules"]) => {
            need(p, &["so"])?;
            let rules: Option<KeyRules> = body(c.body)?;
            let cmd = QuorumCommand::SetKeyRules {
                key: number(id)?,
                rules,
            };
            quorum(hsm, &c, so(), cmd)
        }
        ("GET", ["v1", "keys"]) => {
            need(p, &["user", "auditor"])?;
            key_command(hsm, &c, user(), KeyCommand::List)
        }
        ("GET", ["v1", "keys", id]) => {
            need(p, &["user", "auditor"])?;
            let key = KeyId(number(id)?);
            key_command(hsm, &c, user(), KeyCommand::Show { key })
        }
        ("POST", ["v1", "keys", id, verb]) => {
            need(p, &["user"])?;
            let cmd = key_verb(KeyId(number(id)?), verb, c.body)?;
            key_command(hsm, &c, user(), cmd)
        }
        _ => Err(Reply::error(
            404,
            "not_found",
            format!("no endpoint {} {}", c.method, c.path),
        )),
    }
}

fn quorum(
    hsm: &Hsm,
    c: &Call<'_>,
    login: Option<(LoginKind, Option<SecretString>)>,
    cmd: QuorumCommand,
) -> Result<Reply, Reply> {
    let s = open(hsm, c.token, login)?;
    Ok(to_json(&hsm.quorum_command(s.h, cmd).map_err(core_error)?))
}

fn key_command(
    hsm: &Hsm,
    c: &Call<'_>,
    login: Option<(LoginKind, Option<SecretString>)>,
    cmd: KeyCommand,
) -> Result<Reply, Reply> {
    let s = open(hsm, c.token, login)?;
    Ok(to_json(&hsm.key_command(s.h, cmd).map_err(core_error)?))
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, Reply> {
    s.parse()
        .map_err(|_| Reply::error(400, "bad_request", format!("{s:?} is not a number")))
}

/// `POST /v1/keys/{id}/{verb}` with `{"version": N}`, `{"to": N}` or `{"below": N}`.
fn key_verb(key: KeyId, verb: &str, b: &[u8]) -> Result<KeyCommand, Reply> {
    let args: Value = if b.is_empty() { json!({}) } else { body(b)? };
    let arg = |name: &str| -> Result<u32, Reply> {
        args.get(name)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                Reply::error(
                    400,
                    "bad_request",
                    format!("{verb} needs {{\"{name}\": N}}"),
                )
            })
    };
    Ok(match verb {
        "rotate" => KeyCommand::Rotate { key },
        "rollback" => KeyCommand::Rollback {
            key,
            to: arg("to")?,
        },
        "disable" => KeyCommand::Disable {
            key,
            version: arg("version")?,
        },
        "enable" => KeyCommand::Enable {
            key,
            version: arg("version")?,
        },
        "destroy" => KeyCommand::ScheduleDestroy {
            key,
            version: arg("version")?,
        },
        "restore" => KeyCommand::Restore {
            key,
            version: arg("version")?,
        },
        "destroy-now" => KeyCommand::DestroyNow {
            key,
            version: arg("version")?,
        },
        "trim" => KeyCommand::Trim {
            key,
            below: arg("below")?,
        },
        _ => {
            return Err(Reply::error(
                404,
                "not_found",
                format!(
                    "no key action {verb:?} (rotate, rollback, disable, enable, destroy, \
                     restore, destroy-now, trim)"
                ),
            ));
        }
    })
}
