//! The admin HTTPS API of a real `ferrohsm-server`, driven by `curl` over TLS on
//! 127.0.0.1: tokens from a wrong issuer, signed by another key, expired, or without the
//! role are refused; an auditor reads and changes nothing; the same dual-control rule
//! holds as through the socket (a destroy answers `approval_required`, two approvers'
//! verdicts posted to the API release it once); plain HTTP and an untrusted certificate
//! get no answer.

mod common;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use common::*;
use hsm_core::types::quorum::{Verdict, approval_message};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

fn ed25519() -> Ed25519KeyPair {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

/// An Ed25519 public key as PEM SPKI (what `openssl pkey -pubout` writes).
fn public_pem(kp: &Ed25519KeyPair, path: &Path) {
    let mut der = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    der.extend_from_slice(kp.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        Base64::encode_string(&der)
    );
    std::fs::write(path, pem).unwrap();
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(kp: &Ed25519KeyPair, claims: Value) -> String {
    let h = Base64UrlUnpadded::encode_string(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let c = Base64UrlUnpadded::encode_string(claims.to_string().as_bytes());
    let sig = kp.sign(format!("{h}.{c}").as_bytes());
    format!("{h}.{c}.{}", Base64UrlUnpadded::encode_string(sig.as_ref()))
}

fn token_for(kp: &Ed25519KeyPair, roles: &[&str]) -> String {
    jwt(
        kp,
        json!({"iss": "test-idp", "sub": "tester", "aud": "ferrohsm", "exp": now() + 300, "roles": roles}),
    )
}

struct Api {
    base: String,
    ca: String,
}

impl Api {
    /// One call through curl: the status and the JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        jwt: Option<&str>,
        pin: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--cacert",
            &self.ca,
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(t) = jwt {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(p) = pin {
            cmd.args(["-H", &format!("X-FerroHSM-PIN: {p}")]);
        }
        if let Some(b) = body {
            cmd.args([
                "-H",
                "Content-Type: application/json",
                "--data",
                &b.to_string(),
            ]);
        }
        let o = cmd.arg(format!("{}{path}", self.base)).output().unwrap();
        assert!(o.status.success(), "curl {path}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let (body, status) = out.rsplit_once('\n').unwrap();
        let v = serde_json::from_str(body).unwrap_or(Value::Null);
        (status.trim().parse().unwrap(), v)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A certificate for 127.0.0.1, self-signed (the client trusts it with --cacert).
fn certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("admin.crt").display().to_string();
    let key = dir.join("admin.key").display().to_string();
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl req: {}", stderr(&o));
    (cert, key)
}

#[test]
fn the_admin_api_checks_tokens_and_roles_and_enforces_the_same_dual_control() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    let id = store_with_key(&store);
    let approvers: Vec<Ed25519KeyPair> = (0..3).map(|_| ed25519()).collect();
    for (i, kp) in approvers.iter().enumerate() {
        let pem = d.path().join(format!("approver{i}.pub.pem"));
        public_pem(kp, &pem);
        let o = ferrohsm(&[
            "quorum",
            "add-approver",
            "--store",
            store.to_str().unwrap(),
            "--name",
            &format!("approver{i}"),
            "--public-key",
            pem.to_str().unwrap(),
            "--so-pin-env",
            "T_SO",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = ferrohsm(&[
        "quorum",
        "set",
        "--store",
        store.to_str().unwrap(),
        "--rule",
        "destroy=2",
        "--so-pin-env",
        "T_SO",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let idp = ed25519();
    let idp_pem = d.path().join("idp.pub.pem");
    public_pem(&idp, &idp_pem);
    let (cert, key) = certificate(d.path());
    let port = free_port();
    let extra = format!(
        "[server.admin]\nlisten = \"127.0.0.1:{port}\"\ncertificate = {cert:?}\nprivate_key = {key:?}\n\
         audience = \"ferrohsm\"\n[[server.admin.issuers]]\nissuer = \"test-idp\"\n\
         algorithm = \"EdDSA\"\npublic_key = {:?}\n",
        idp_pem.display().to_string()
    );
    let _server = Server::start_with(d.path(), &store, &extra);
    let api = Api {
        base: format!("https://127.0.0.1:{port}"),
        ca: cert.clone(),
    };

    // Health needs no token; everything else does.
    let (s, v) = api.call("GET", "/v1/health", None, None, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    assert_eq!(api.call("GET", "/v1/policy", None, None, None).0, 401);

    // The attacks on authentication, each refused with 401 or 403.
    let other = ed25519();
    let wrong_issuer = jwt(
        &idp,
        json!({"iss": "evil", "aud": "ferrohsm", "exp": now() + 300, "roles": ["so"]}),
    );
    let wrong_key = jwt(
        &other,
        json!({"iss": "test-idp", "aud": "ferrohsm", "exp": now() + 300, "roles": ["so"]}),
    );
    let expired = jwt(
        &idp,
        json!({"iss": "test-idp", "aud": "ferrohsm", "exp": now() - 3600, "roles": ["so"]}),
    );
    for (t, why) in [
        (&wrong_issuer, "not trusted"),
        (&wrong_key, "does not verify"),
        (&expired, "expired"),
    ] {
        let (s, v) = api.call("GET", "/v1/policy", Some(t), None, None);
        assert_eq!(s, 401, "{why}: {v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
    }
    let no_role = token_for(&idp, &[]);
    let (s, v) = api.call("GET", "/v1/policy", Some(&no_role), None, None);
    assert_eq!((s, v["error"].as_str()), (403, Some("role")), "{v}");

    // An auditor reads the rules and changes nothing.
    let auditor = token_for(&idp, &["auditor"]);
    let (s, v) = api.call("GET", "/v1/policy", Some(&auditor), None, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["policy"]["rules"]["Destroy"], 2, "{v}");
    let lowered = json!({"rules": {}, "request_ttl": 3600, "approved_ttl": 600});
    let (s, _) = api.call(
        "PUT",
        "/v1/policy",
        Some(&auditor),
        Some("so-secret-1"),
        Some(lowered.clone()),
    );
    assert_eq!(s, 403);
    // The SO through the API: lowering the rule needs the quorum, as everywhere.
    let so = token_for(&idp, &["so"]);
    let (s, v) = api.call(
        "PUT",
        "/v1/policy",
        Some(&so),
        Some("so-secret-1"),
        Some(lowered),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("approval_required")),
        "{v}"
    );

    // The user destroys through the API: the rule holds, a request opens.
    let user = token_for(&idp, &["user"]);
    let destroy = format!("/v1/keys/{id}/destroy");
    let (s, v) = api.call(
        "POST",
        &destroy,
        Some(&user),
        None,
        Some(json!({"version": 1})),
    );
    assert_eq!((s, v["error"].as_str()), (401, Some("pin")), "no PIN: {v}");
    let (s, v) = api.call(
        "POST",
        &destroy,
        Some(&user),
        Some("user-secret-1"),
        Some(json!({"version": 1})),
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("approval_required")),
        "{v}"
    );

    // Approvers list the requests and post signed verdicts.
    let approver = token_for(&idp, &["approver"]);
    let (s, view) = api.call("GET", "/v1/approvals", Some(&approver), None, None);
    assert_eq!(s, 200, "{view}");
    let req = view["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["request"]["subject"]
                .as_str()
                .unwrap()
                .contains(&format!("destroy key {id}"))
        })
        .expect("the destroy request")["request"]
        .clone();
    let rid = req["id"].as_u64().unwrap();
    let digest: Vec<u8> = serde_json::from_value(req["digest"].clone()).unwrap();
    let store_id: Vec<u8> = serde_json::from_value(view["store_id"].clone()).unwrap();
    let token = view["token"].as_u64().unwrap();
    let post = |who: u32, kp: &Ed25519KeyPair, role: &str| {
        let mut v = Verdict {
            request: rid,
            approver: who,
            approve: true,
            at: view["now"].as_u64().unwrap(),
            signature: Vec::new(),
        };
        v.signature = kp
            .sign(&approval_message(&store_id, token, &v, &digest))
            .as_ref()
            .to_vec();
        let body = json!({"approver": who, "approve": true, "at": v.at, "signature": Base64::encode_string(&v.signature)});
        api.call(
            "POST",
            &format!("/v1/approvals/{rid}/verdicts"),
            Some(&token_for(&idp, &[role])),
            None,
            Some(body),
        )
    };
    assert_eq!(
        post(1, &approvers[0], "auditor").0,
        403,
        "an auditor does not approve"
    );
    let (s, v) = post(1, &approvers[1], "approver");
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("refused")),
        "a forged signature: {v}"
    );
    assert_eq!(post(1, &approvers[0], "approver").1["standing"], "pending");
    assert_eq!(
        post(1, &approvers[0], "approver").0,
        403,
        "the same approver twice"
    );
    let (s, v) = api.call(
        "POST",
        &destroy,
        Some(&user),
        Some("user-secret-1"),
        Some(json!({"version": 1})),
    );
    assert_eq!(s, 403, "one approval of two: {v}");
    assert_eq!(post(3, &approvers[2], "approver").1["standing"], "approved");
    let (s, v) = api.call(
        "POST",
        &destroy,
        Some(&user),
        Some("user-secret-1"),
        Some(json!({"version": 1})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = api.call(
        "GET",
        &format!("/v1/keys/{id}"),
        Some(&user),
        Some("user-secret-1"),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert!(v.to_string().contains("DestroyScheduled"), "{v}");

    // Plain HTTP, and TLS without trusting the certificate, get no answer.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/v1/health"),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("\"ok\""));
    let untrusted = Command::new("curl")
        .args(["-sS", &format!("https://127.0.0.1:{port}/v1/health")])
        .output()
        .unwrap();
    assert!(
        !untrusted.status.success(),
        "an untrusted certificate is refused by the client"
    );
}
