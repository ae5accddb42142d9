//! Dual control (`hsm_types::quorum`): the token's [`QuorumState`] is one record in
//! `meta`, sealed under the header key and bound to the master key, with a marker per
//! write so an older state put back (a spent approval made usable again, a removed
//! approver back) is refused like a replayed ring. Approvers' verdicts are records of
//! their own: each carries the approver's Ed25519 signature, which is what makes it
//! count (the core checks it), so an approver writes one without any PIN.
//! `schema/format.md` gives the layout, `docs/approvals.md` the model.

use super::{Store, TokenKeys};
use crate::audit::Event;
use crate::backend::{Batch, Flow};
use crate::cf::Cf;
use crate::crypto::{self, Purpose, aad};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::records;
use hsm_types::quorum::{QuorumState, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The domain byte of dual-control bindings (header 0xb1, rings 0xb2).
const QUORUM_BINDING_TAG: u8 = 0xb3;

#[derive(Serialize, Deserialize)]
struct QuorumRecord {
    state: QuorumState,
    #[serde(with = "serde_bytes")]
    binding: Vec<u8>,
}

impl Store {
    fn quorum_aad(&self, keys: &TokenKeys, purpose: Purpose, place: &[u64]) -> Vec<u8> {
        let mut p = vec![keys.token.0 as u64, keys.generation as u64];
        p.extend_from_slice(place);
        aad(purpose, &self.store_id, &p)
    }

    fn quorum_mac(&self, keys: &TokenKeys, state: &QuorumState) -> Result<Vec<u8>> {
        let m = keys.master()?;
        let mut msg = self.quorum_aad(keys, Purpose::QuorumBinding, &[]);
        msg.extend_from_slice(&records::encode(state));
        Ok(crypto::blind(&m.binding, QUORUM_BINDING_TAG, &msg).to_vec())
    }

    /// The token's dual-control state (the empty state, no rule, when none was written).
    /// With the master key the binding is checked; without it only the AEAD vouches.
    pub fn quorum(&self, keys: &TokenKeys) -> Result<QuorumState> {
        let Some(sealed) = self.kv.get(Cf::Meta, &keys::meta::quorum(keys.token))? else {
            return Ok(QuorumState::default());
        };
        let loc = || format!("meta/quorum/{}", keys.token);
        let aad = self.quorum_aad(keys, Purpose::Quorum, &[]);
        let plain = crypto::open(&keys.header, &aad, &sealed, loc)?;
        let rec: QuorumRecord = records::decode(&plain, loc)?;
        if keys.master.is_some() {
            let mac = self.quorum_mac(keys, &rec.state)?;
            if aws_lc_rs::constant_time::verify_slices_are_equal(&mac, &rec.binding).is_err() {
                return Err(StoreError::Tampered {
                    location: format!("{} (binding)", loc()),
                });
            }
        }
        let next = keys::meta::quorum_seq(keys.token, rec.state.seq + 1);
        if self.kv.get(Cf::Meta, &next)?.is_some() {
            return Err(StoreError::Tampered {
                location: format!(
                    "{} (record of write {} but write {} happened)",
                    loc(),
                    rec.state.seq,
                    rec.state.seq + 1
                ),
            });
        }
        Ok(rec.state)
    }

    /// [`Store::quorum`], shared: from this process's cache once it was read with the
    /// master key or written here (what the policy engine asks on every key use).
    pub fn quorum_shared(&self, keys: &TokenKeys) -> Result<Arc<QuorumState>> {
        let slot = (keys.token, keys.generation);
        if keys.master.is_some()
            && let Some(s) = self.quorum_cache_lock().get(&slot)
        {
            return Ok(s.clone());
        }
        let state = Arc::new(self.quorum(keys)?);
        if keys.master.is_some() {
            self.quorum_cache_lock().insert(slot, state.clone());
        }
        Ok(state)
    }

    fn quorum_cache_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(hsm_types::TokenId, u32), Arc<QuorumState>>> {
        self.quorum_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `state`, whose `seq` must follow the stored one's, in one durable batch;
    /// verdicts on requests the state no longer holds are deleted with it.
    pub fn commit_quorum(&self, keys: &TokenKeys, state: &QuorumState) -> Result<()> {
        keys.master()?;
        let _g = self.lock();
        let stored = self.quorum(keys)?.seq;
        if state.seq != stored + 1 {
            return Err(StoreError::Invalid(format!(
                "the approvals changed meanwhile (write {stored} is stored, this one follows {})",
                state.seq.saturating_sub(1)
            )));
        }
        let events = quorum_events(&self.quorum(keys)?, state);
        let mut b = Batch::new();
        for v in self.verdicts(keys)? {
            if state.request(v.request).is_none() {
                b.delete(
                    Cf::Meta,
                    keys::meta::verdict(keys.token, v.request, v.approver),
                );
            }
        }
        let record = QuorumRecord {
            binding: self.quorum_mac(keys, state)?,
            state: state.clone(),
        };
        let aad = self.quorum_aad(keys, Purpose::Quorum, &[]);
        b.put(
            Cf::Meta,
            keys::meta::quorum(keys.token),
            crypto::seal(&keys.header, &aad, &records::encode(&record))?,
        );
        b.put(
            Cf::Meta,
            keys::meta::quorum_seq(keys.token, state.seq),
            Vec::new(),
        );
        let slot = (keys.token, keys.generation);
        self.quorum_cache_lock().remove(&slot);
        self.write_audited(keys.token, Some(keys), b, events)?;
        self.quorum_cache_lock()
            .insert(slot, Arc::new(state.clone()));
        Ok(())
    }

    /// Every verdict recorded for the token, unchecked: the caller verifies signatures.
    /// A record that does not open is skipped (it cannot count) and reported in the log.
    pub fn verdicts(&self, keys: &TokenKeys) -> Result<Vec<Verdict>> {
        let mut found = Vec::new();
        self.kv.scan_prefix(
            Cf::Meta,
            &keys::meta::verdict_prefix(keys.token),
            &mut |k, v| {
                found.push((k.to_vec(), v.to_vec()));
                Ok(Flow::Continue)
            },
        )?;
        let mut out = Vec::with_capacity(found.len());
        for (k, sealed) in found {
            match self.open_verdict(keys, &k, &sealed) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!("an approval record is ignored: {e}"),
            }
        }
        Ok(out)
    }

    fn open_verdict(&self, keys: &TokenKeys, k: &[u8], sealed: &[u8]) -> Result<Verdict> {
        let loc = || format!("meta/verdict/{}/{:02x?}", keys.token, k);
        let aad = self.quorum_aad(keys, Purpose::Verdict, &[]);
        let plain = crypto::open(&keys.header, &aad, sealed, loc)?;
        let v: Verdict = records::decode(&plain, loc)?;
        if keys::meta::verdict(keys.token, v.request, v.approver) != k {
            return Err(StoreError::Tampered { location: loc() });
        }
        Ok(v)
    }

    /// Records a verdict, durably. The caller checked it (signature, request open,
    /// approver registered, no verdict of theirs yet); a second one is refused here too.
    pub fn put_verdict(&self, keys: &TokenKeys, v: &Verdict) -> Result<()> {
        let _g = self.lock();
        let k = keys::meta::verdict(keys.token, v.request, v.approver);
        if self.kv.get(Cf::Meta, &k)?.is_some() {
            return Err(StoreError::Invalid(format!(
                "approver {} already gave a verdict on request {}",
                v.approver, v.request
            )));
        }
        let aad = self.quorum_aad(keys, Purpose::Verdict, &[]);
        let mut b = Batch::new();
        b.put(
            Cf::Meta,
            k,
            crypto::seal(&keys.header, &aad, &records::encode(v))?,
        );
        let op = if v.approve {
            "approval.approve"
        } else {
            "approval.deny"
        };
        let event = Event::new(op).request(v.request);
        self.write_audited(keys.token, Some(keys), b, vec![event])
    }

    /// Stages the deletion of the token's dual-control state, markers and verdicts
    /// (re-initialisation).
    pub(super) fn stage_quorum_wipe(&self, b: &mut Batch, token: hsm_types::TokenId) -> Result<()> {
        b.delete(Cf::Meta, keys::meta::quorum(token));
        for prefix in [
            keys::meta::quorum_seq_prefix(token),
            keys::meta::verdict_prefix(token),
        ] {
            self.kv.scan_prefix(Cf::Meta, &prefix, &mut |k, _| {
                b.delete(Cf::Meta, k.to_vec());
                Ok(Flow::Continue)
            })?;
        }
        Ok(())
    }
}

/// What a write of the dual-control state changes, as audit events: approvers added and
/// removed, rules changed, requests opened and spent, uses counted.
fn quorum_events(old: &QuorumState, new: &QuorumState) -> Vec<Event> {
    let mut out = Vec::new();
    let ids = |s: &QuorumState| -> Vec<u32> { s.approvers.iter().map(|a| a.id).collect() };
    let (before, after) = (ids(old), ids(new));
    out.extend(
        after
            .iter()
            .filter(|a| !before.contains(a))
            .map(|_| Event::new("approver.add")),
    );
    out.extend(
        before
            .iter()
            .filter(|a| !after.contains(a))
            .map(|_| Event::new("approver.remove")),
    );
    if old.policy != new.policy {
        out.push(Event::new("policy.update"));
    }
    for (key, rules) in &new.keys {
        if old.keys.get(key) != Some(rules) {
            out.push(Event::new("policy.key").key(*key));
        }
    }
    for key in old.keys.keys().filter(|k| !new.keys.contains_key(k)) {
        out.push(Event::new("policy.key.clear").key(*key));
    }
    for r in &new.requests {
        match old.request(r.id) {
            None => out.push(Event::new(format!("approval.request.{}", r.op.name())).request(r.id)),
            Some(o) if o.used.is_none() && r.used.is_some() => {
                out.push(Event::new("approval.spend").request(r.id))
            }
            Some(_) => {}
        }
    }
    for (key, n) in &new.uses {
        if old.uses.get(key) != Some(n) {
            out.push(Event::new("key.use.count").key(*key));
        }
    }
    if out.is_empty() {
        out.push(Event::new("quorum.update"));
    }
    out
}
