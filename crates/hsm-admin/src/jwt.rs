//! Bearer tokens: compact JWS (RFC 7515) JWTs (RFC 7519) from configured issuers, each
//! with one public key and one algorithm (`EdDSA` with Ed25519, or `ES256` with P-256).
//! The algorithm is the issuer's, never the token's say: a token whose header names
//! another (`none`, `HS256` over the public key, …) is refused before any signature is
//! checked. `iss` picks the issuer; `exp` is required; `nbf` and `aud` are checked when
//! present or configured; the roles come from one configured claim.

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::Value;
use std::fmt;

/// How far a token's times may be from ours.
pub const LEEWAY_SECS: u64 = 60;

/// What a token may be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    EdDsa,
    Es256,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "EdDSA" => Some(Algorithm::EdDsa),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// One trusted issuer.
#[derive(Clone)]
pub struct Issuer {
    pub name: String,
    pub algorithm: Algorithm,
    /// The raw public key: 32 bytes (Ed25519) or the uncompressed P-256 point.
    pub public_key: Vec<u8>,
}

/// Who the token says the caller is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub issuer: String,
    pub subject: String,
    pub roles: Vec<String>,
}

/// Why a token is refused (said to the caller: no secret in it).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn refused(why: impl Into<String>) -> Refused {
    Refused(why.into())
}

/// The rules tokens are checked against.
pub struct Verifier {
    pub issuers: Vec<Issuer>,
    /// Required in `aud` when set.
    pub audience: Option<String>,
    /// The claim holding the roles: an array of strings, or one space-separated string.
    pub roles_claim: String,
}

fn part(s: &str, what: &str) -> Result<Vec<u8>, Refused> {
    Base64UrlUnpadded::decode_vec(s)
        .map_err(|_| refused(format!("the token's {what} is not base64url")))
}

fn json(bytes: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, Refused> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(refused(format!("the token's {what} is not a JSON object"))),
    }
}

impl Verifier {
    /// Checks a compact token at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Principal, Refused> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused(
                "the token is not a compact JWS (header.claims.signature)",
            ));
        };
        let header = json(&part(h, "header")?, "header")?;
        let claims = json(&part(c, "claims")?, "claims")?;
        let signature = part(s, "signature")?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| refused("the token has no issuer (iss)"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.name == iss)
            .ok_or_else(|| refused(format!("issuer {iss:?} is not trusted")))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != issuer.algorithm.name() {
            return Err(refused(format!(
                "issuer {iss:?} signs with {}, the token says {alg:?}",
                issuer.algorithm.name()
            )));
        }
        if header.contains_key("crit") {
            return Err(refused(
                "the token has critical header parameters we do not know",
            ));
        }
        let signed = format!("{h}.{c}");
        let ok = match issuer.algorithm {
            Algorithm::EdDsa => UnparsedPublicKey::new(&signature::ED25519, &issuer.public_key)
                .verify(signed.as_bytes(), &signature),
            Algorithm::Es256 => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &issuer.public_key)
                    .verify(signed.as_bytes(), &signature)
            }
        };
        ok.map_err(|_| {
            refused(format!(
                "the signature does not verify under issuer {iss:?}'s key"
            ))
        })?;
        self.check_claims(&claims, now)?;
        Ok(Principal {
            issuer: iss.to_owned(),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            roles: roles(claims.get(&self.roles_claim)),
        })
    }

    fn check_claims(
        &self,
        claims: &serde_json::Map<String, Value>,
        now: u64,
    ) -> Result<(), Refused> {
        let time = |k: &str| {
            claims.get(k).map(|v| {
                v.as_u64()
                    .ok_or_else(|| refused(format!("{k} is not a number")))
            })
        };
        let exp = time("exp").ok_or_else(|| refused("the token has no expiry (exp)"))??;
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(refused(format!("the token expired at {exp}")));
        }
        if let Some(nbf) = time("nbf").transpose()?
            && now.saturating_add(LEEWAY_SECS) < nbf
        {
            return Err(refused(format!("the token is not valid before {nbf}")));
        }
        if let Some(want) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == want,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
                _ => false,
            };
            if !ok {
                return Err(refused(format!("the token is not for audience {want:?}")));
            }
        }
        Ok(())
    }
}

fn roles(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    fn token(kp: &Ed25519KeyPair, header: &str, claims: &str) -> String {
        let h = Base64UrlUnpadded::encode_string(header.as_bytes());
        let c = Base64UrlUnpadded::encode_string(claims.as_bytes());
        let sig = kp.sign(format!("{h}.{c}").as_bytes());
        format!("{h}.{c}.{}", Base64UrlUnpadded::encode_string(sig.as_ref()))
    }

    fn setup() -> (Ed25519KeyPair, Verifier) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let v = Verifier {
            issuers: vec![Issuer {
                name: "idp".into(),
                algorithm: Algorithm::EdDsa,
                public_key: kp.public_key().as_ref().to_vec(),
            }],
            audience: Some("ferrohsm".into()),
            roles_claim: "roles".into(),
        };
        (kp, v)
    }

    const ED: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

    #[test]
    fn a_good_token_names_its_subject_and_roles() {
        let (kp, v) = setup();
        let t = token(
            &kp,
            ED,
            r#"{"iss":"idp","sub":"alice","aud":["x","ferrohsm"],"exp":2000,"roles":["approver","auditor"]}"#,
        );
        let p = v.verify(&t, 1000).unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.roles, ["approver", "auditor"]);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let (kp, v) = setup();
        let claims = r#"{"iss":"idp","aud":"ferrohsm","exp":2000,"roles":"so"}"#;
        let cases = [
            (
                token(&kp, ED, r#"{"iss":"other","aud":"ferrohsm","exp":2000}"#),
                "not trusted",
            ),
            (
                token(&kp, ED, r#"{"iss":"idp","aud":"ferrohsm","exp":900}"#),
                "expired",
            ),
            (
                token(&kp, ED, r#"{"iss":"idp","aud":"ferrohsm"}"#),
                "no expiry",
            ),
            (
                token(
                    &kp,
                    ED,
                    r#"{"iss":"idp","aud":"ferrohsm","exp":2000,"nbf":1500}"#,
                ),
                "not valid before",
            ),
            (
                token(&kp, ED, r#"{"iss":"idp","aud":"else","exp":2000}"#),
                "audience",
            ),
            (token(&kp, r#"{"alg":"none"}"#, claims), "the token says"),
            (token(&kp, r#"{"alg":"HS256"}"#, claims), "the token says"),
            (
                token(&kp, r#"{"alg":"EdDSA","crit":["x"]}"#, claims),
                "critical",
            ),
            ("a.b".to_owned(), "compact"),
        ];
        for (t, why) in cases {
            let e = v.verify(&t, 1000).unwrap_err();
            assert!(e.0.contains(why), "{why}: {e}");
        }
        // A token whose claims were changed after signing.
        let good = token(&kp, ED, claims);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = Base64UrlUnpadded::encode_string(
            br#"{"iss":"idp","aud":"ferrohsm","exp":9999999999,"roles":"so"}"#,
        );
        parts[1] = &forged;
        let e = v.verify(&parts.join("."), 1000).unwrap_err();
        assert!(e.0.contains("does not verify"), "{e}");
    }
}
