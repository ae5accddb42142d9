//! The policy engine's model: who asks ([`Role`]), what they ask for ([`Operation`]),
//! the rules of one key ([`KeyRules`]: approvals per class, a usage window, a use limit,
//! a mechanism allow-list) and the one evaluation ([`QuorumState::evaluate`]) that
//! answers [`Decision::Allow`], [`Decision::Deny`] or [`Decision::NeedsApproval`].

use super::{Guarded, QuorumError, QuorumPolicy, QuorumState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Who asks. The SO, the user and public sessions come from PKCS#11 logins; the auditor
/// reads (requests, rules, keys' state, the log) and may do nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    So,
    User,
    Public,
    Auditor,
}

/// What the engine is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A key used with `mechanism` (an operation starts). `secret`: the key's secret half
    /// is used (sign, decrypt, unwrap, derive), which a [`Guarded::Use`] rule guards.
    Use { mechanism: u64, secret: bool },
    /// A guarded management operation (destroy, export, rollback, …).
    Manage(Guarded),
}

/// The engine's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// `needed` approvals of class `op` release it (the request is the caller's to open,
    /// bound to the digest of exactly what it will do).
    NeedsApproval {
        op: Guarded,
        needed: u32,
    },
}

/// One key's rules, set by the SO under the quorum for policy changes. Absent fields
/// leave the token's rules in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRules {
    /// Approvals per class for this key, replacing the token's rule for the class
    /// (either way: a code-signing root may need 3 to destroy where the token says 2).
    #[serde(default)]
    pub approvals: BTreeMap<Guarded, u32>,
    /// No use before this time (Unix seconds).
    #[serde(default)]
    pub not_before: Option<u64>,
    /// No use from this time on.
    #[serde(default)]
    pub not_after: Option<u64>,
    /// At most this many operations started with the key, ever.
    #[serde(default)]
    pub max_uses: Option<u64>,
    /// The only mechanisms the key may be used with (replaces the token's list).
    #[serde(default)]
    pub mechanisms: Option<BTreeSet<u64>>,
}

impl KeyRules {
    pub fn is_empty(&self) -> bool {
        *self == KeyRules::default()
    }

    fn check(&self) -> Result<(), QuorumError> {
        if let Some(g) = self
            .approvals
            .keys()
            .find(|g| !Guarded::PER_KEY.contains(g))
        {
            return Err(QuorumError::Invalid(format!(
                "{} is not a rule of one key (a key's rules: destroy, export, rollback, \
                 trim, key-policy, use)",
                g.name()
            )));
        }
        if let (Some(a), Some(b)) = (self.not_before, self.not_after)
            && a >= b
        {
            return Err(QuorumError::Invalid(format!(
                "the window is empty: not-before {a} is not before not-after {b}"
            )));
        }
        if self.max_uses == Some(0) {
            return Err(QuorumError::Invalid(
                "max-uses 0 would forbid every use; set not-after to retire a key".into(),
            ));
        }
        check_mechanisms(self.mechanisms.as_ref())
    }
}

pub(super) fn check_mechanisms(m: Option<&BTreeSet<u64>>) -> Result<(), QuorumError> {
    if m.is_some_and(|m| m.is_empty()) {
        return Err(QuorumError::Invalid(
            "an empty mechanism list would forbid every use".into(),
        ));
    }
    Ok(())
}

impl QuorumState {
    /// The policy engine: may `role` do `op` (on `key`, by its key id) at `now`?
    /// Auditors do nothing; a key is used only inside its window, below its use limit
    /// and with an allowed mechanism; a guarded class with a rule needs approvals.
    pub fn evaluate(&self, role: Role, op: Operation, key: Option<u64>, now: u64) -> Decision {
        if role == Role::Auditor {
            return Decision::Deny("an auditor reads; it does not operate".into());
        }
        let rules = key.and_then(|k| self.keys.get(&k));
        let guarded = match op {
            Operation::Manage(g) => g,
            Operation::Use { mechanism, secret } => {
                if let Some(why) = self.refuse_use(key, rules, mechanism, now) {
                    return Decision::Deny(why);
                }
                if !secret {
                    return Decision::Allow;
                }
                Guarded::Use
            }
        };
        match self.required_for(guarded, key) {
            0 => Decision::Allow,
            needed => Decision::NeedsApproval {
                op: guarded,
                needed,
            },
        }
    }

    fn refuse_use(
        &self,
        key: Option<u64>,
        rules: Option<&KeyRules>,
        mechanism: u64,
        now: u64,
    ) -> Option<String> {
        let name = || key.map_or("the key".to_owned(), |k| format!("key {k}"));
        if let Some(r) = rules {
            if let Some(t) = r.not_before.filter(|t| now < *t) {
                return Some(format!("{} may not be used before {t}", name()));
            }
            if let Some(t) = r.not_after.filter(|t| now >= *t) {
                return Some(format!("{} may not be used from {t} on", name()));
            }
            let used = key.and_then(|k| self.uses.get(&k)).copied().unwrap_or(0);
            if let Some(max) = r.max_uses.filter(|m| used >= *m) {
                return Some(format!("{} was used {used} times of {max} allowed", name()));
            }
        }
        let allowed = rules
            .and_then(|r| r.mechanisms.as_ref())
            .or(self.policy.mechanisms.as_ref());
        match allowed {
            Some(list) if !list.contains(&mechanism) => Some(format!(
                "mechanism 0x{mechanism:x} is not among those the policy allows for {}",
                name()
            )),
            _ => None,
        }
    }

    /// Whether a use of `key` must be counted (its rules set a limit).
    pub fn counts_uses(&self, key: u64) -> bool {
        self.keys.get(&key).is_some_and(|r| r.max_uses.is_some())
    }

    /// Counts one use of `key`.
    pub fn count_use(&mut self, key: u64) {
        *self.uses.entry(key).or_default() += 1;
    }

    /// Sets (or, with `None` or empty rules, clears) key `key`'s rules (the caller has
    /// admitted [`Guarded::Quorum`] under the rules in force before the change).
    pub fn set_key_rules(&mut self, key: u64, rules: Option<KeyRules>) -> Result<(), QuorumError> {
        let mut next = self.clone();
        match rules.filter(|r| !r.is_empty()) {
            Some(mut r) => {
                r.check()?;
                r.approvals.retain(|_, m| *m > 0);
                next.keys.insert(key, r);
            }
            None => {
                next.keys.remove(&key);
            }
        }
        next.check_reachable()?;
        *self = next;
        Ok(())
    }
}

/// A canonical byte form of rules, for request digests: the same rules give the same
/// bytes in every release.
pub fn canonical_policy(p: &QuorumPolicy) -> Vec<u8> {
    let mut out = Vec::new();
    approvals_bytes(&mut out, &p.rules);
    out.extend_from_slice(&p.request_ttl.to_be_bytes());
    out.extend_from_slice(&p.approved_ttl.to_be_bytes());
    mechanisms_bytes(&mut out, p.mechanisms.as_ref());
    out
}

/// [`canonical_policy`] for one key's rules.
pub fn canonical_key_rules(r: &KeyRules) -> Vec<u8> {
    let mut out = Vec::new();
    approvals_bytes(&mut out, &r.approvals);
    for t in [r.not_before, r.not_after, r.max_uses] {
        match t {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_be_bytes());
            }
            None => out.push(0),
        }
    }
    mechanisms_bytes(&mut out, r.mechanisms.as_ref());
    out
}

fn approvals_bytes(out: &mut Vec<u8>, rules: &BTreeMap<Guarded, u32>) {
    out.extend_from_slice(&(rules.len() as u32).to_be_bytes());
    for (g, m) in rules {
        out.push(g.code());
        out.extend_from_slice(&m.to_be_bytes());
    }
}

fn mechanisms_bytes(out: &mut Vec<u8>, m: Option<&BTreeSet<u64>>) {
    match m {
        Some(list) => {
            out.push(1);
            out.extend_from_slice(&(list.len() as u32).to_be_bytes());
            for x in list {
                out.extend_from_slice(&x.to_be_bytes());
            }
        }
        None => out.push(0),
    }
}
