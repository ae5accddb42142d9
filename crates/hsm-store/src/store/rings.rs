//! Key rings (`hsm_types::lifecycle`): one record per key in `meta`, sealed under the
//! token's header key and bound to its master key, and a marker per transition so a ring
//! record put back from earlier is refused like a replayed header. A transition is one
//! durable batch: the ring, the objects it makes (a rotation's new material), the
//! attribute changes it makes (the version number a key's first objects get) and the
//! objects it erases. `schema/format.md` gives the layout, `docs/lifecycle.md` the model.

use super::{Store, TokenKeys, u64_from};
use crate::audit::Event;
use crate::backend::{Batch, Flow};
use crate::cf::Cf;
use crate::crypto::{self, Purpose, aad};
use crate::error::{Result, StoreError};
use crate::keys;
use crate::records::{self, VersionCause};
use hsm_types::lifecycle::{KeyId, KeyRing};
use hsm_types::{AttributeSet, ObjectId};
use serde::{Deserialize, Serialize};

/// The domain byte of ring bindings (header bindings use 0xb1).
const RING_BINDING_TAG: u8 = 0xb2;

/// A ring as stored: the ring and its MAC under the master key's binding key.
#[derive(Serialize, Deserialize)]
struct RingRecord {
    ring: KeyRing,
    #[serde(with = "serde_bytes")]
    binding: Vec<u8>,
}

/// What a transition writes beside the ring, all in its batch.
#[derive(Default)]
pub struct RingWrites {
    /// New objects; their ids become, in order, the objects of version `into_version`.
    pub create: Vec<AttributeSet>,
    pub into_version: Option<u32>,
    /// New attribute sets for existing objects (each a new object version).
    pub update: Vec<(ObjectId, AttributeSet)>,
    /// Objects crypto-erased: every version, their keys and index entries.
    pub erase: Vec<ObjectId>,
    /// The transition, for the audit log (`rotate`, `disable`, …; `transition` if unset).
    pub what: Option<&'static str>,
}

impl Store {
    fn ring_aad(&self, keys: &TokenKeys, key: KeyId, purpose: Purpose) -> Vec<u8> {
        aad(
            purpose,
            &self.store_id,
            &[keys.token.0 as u64, keys.generation as u64, key.0],
        )
    }

    fn ring_mac(&self, keys: &TokenKeys, ring: &KeyRing) -> Result<Vec<u8>> {
        let m = keys.master()?;
        let mut msg = self.ring_aad(keys, ring.key, Purpose::RingBinding);
        msg.extend_from_slice(&records::encode(ring));
        Ok(crypto::blind(&m.binding, RING_BINDING_TAG, &msg).to_vec())
    }

    /// A key's ring, or `None` when the key has had no transition. With the master key
    /// the binding is checked; without it only the AEAD vouches (as for public objects).
    pub fn ring(&self, keys: &TokenKeys, key: KeyId) -> Result<Option<KeyRing>> {
        match self.kv.get(Cf::Meta, &keys::meta::ring(keys.token, key))? {
            None => Ok(None),
            Some(v) => self.open_ring(keys, key, &v).map(Some),
        }
    }

    /// Every ring of the token.
    pub fn rings(&self, keys: &TokenKeys) -> Result<Vec<KeyRing>> {
        let mut found = Vec::new();
        self.kv.scan_prefix(
            Cf::Meta,
            &keys::meta::ring_prefix(keys.token),
            &mut |k, v| {
                found.push((k.to_vec(), v.to_vec()));
                Ok(Flow::Continue)
            },
        )?;
        found
            .into_iter()
            .map(|(k, v)| {
                let key = keys::meta::decode_ring(&k).ok_or_else(|| {
                    StoreError::corruption(format!("meta/ring/{}", keys.token), "malformed key")
                })?;
                self.open_ring(keys, key, &v)
            })
            .collect()
    }

    fn open_ring(&self, keys: &TokenKeys, key: KeyId, sealed: &[u8]) -> Result<KeyRing> {
        let loc = || format!("meta/ring/{}/{}", keys.token, key);
        let plain = crypto::open(
            &keys.header,
            &self.ring_aad(keys, key, Purpose::Ring),
            sealed,
            loc,
        )?;
        let rec: RingRecord = records::decode(&plain, loc)?;
        if rec.ring.key != key {
            return Err(StoreError::Tampered { location: loc() });
        }
        if keys.master.is_some() {
            let mac = self.ring_mac(keys, &rec.ring)?;
            if aws_lc_rs::constant_time::verify_slices_are_equal(&mac, &rec.binding).is_err() {
                return Err(StoreError::Tampered {
                    location: format!("{} (binding)", loc()),
                });
            }
        }
        let next = keys::meta::ring_seq(keys.token, key, rec.ring.seq + 1);
        if self.kv.get(Cf::Meta, &next)?.is_some() {
            return Err(StoreError::Tampered {
                location: format!(
                    "{} (record at transition {} but transition {} happened)",
                    loc(),
                    rec.ring.seq,
                    rec.ring.seq + 1
                ),
            });
        }
        Ok(rec.ring)
    }

    /// Writes a transition: `ring` (whose `seq` is one past the stored ring's, or 1 for a
    /// key's first) with `w`, in one durable batch, then purges what was erased. Refuses
    /// a ring that is not the next of the stored one — another writer got there first.
    /// Returns the ring as written (with the created objects' ids in it).
    pub fn commit_ring(
        &self,
        keys: &TokenKeys,
        mut ring: KeyRing,
        w: RingWrites,
    ) -> Result<(KeyRing, Vec<ObjectId>)> {
        keys.master()?;
        let _g = self.lock();
        let stored = self.ring(keys, ring.key)?.map_or(0, |r| r.seq);
        if ring.seq != stored + 1 {
            return Err(StoreError::Invalid(format!(
                "key {} changed meanwhile (transition {stored} is stored, this one follows {})",
                ring.key,
                ring.seq.saturating_sub(1)
            )));
        }
        let mut b = Batch::new();
        let mut purge = Vec::new();
        let mut events =
            vec![Event::new(format!("key.{}", w.what.unwrap_or("transition"))).key(ring.key.0)];
        let ids = self.stage_ring_creates(&mut b, keys, &w.create)?;
        events.extend(ids.iter().map(|id| {
            Event::new("object.create")
                .object(*id)
                .version(hsm_types::VersionNo(1))
                .key(ring.key.0)
        }));
        if let Some(n) = w.into_version {
            let v = ring
                .versions
                .iter_mut()
                .find(|v| v.number == n)
                .ok_or_else(|| StoreError::Invalid(format!("the ring has no version {n}")))?;
            v.objects = ids.clone();
        }
        for (id, attrs) in w.update {
            let (v, p) = self.stage_new_version(&mut b, keys, id, attrs, |cur| {
                (VersionCause::AttributesChanged, Some(cur))
            })?;
            events.push(
                Event::new("object.update")
                    .object(id)
                    .version(v)
                    .key(ring.key.0),
            );
            purge.extend(p);
        }
        for id in &w.erase {
            purge.extend(self.stage_destroy(&mut b, keys, *id)?);
            events.push(Event::new("object.destroy").object(*id).key(ring.key.0));
        }
        let record = RingRecord {
            binding: self.ring_mac(keys, &ring)?,
            ring,
        };
        let key = record.ring.key;
        b.put(
            Cf::Meta,
            keys::meta::ring(keys.token, key),
            crypto::seal(
                &keys.header,
                &self.ring_aad(keys, key, Purpose::Ring),
                &records::encode(&record),
            )?,
        );
        b.put(
            Cf::Meta,
            keys::meta::ring_seq(keys.token, key, record.ring.seq),
            Vec::new(),
        );
        self.write_audited(keys.token, Some(keys), b, events)?;
        if !purge.is_empty() {
            self.kv.purge(&purge)?;
        }
        Ok((record.ring, ids))
    }

    fn stage_ring_creates(
        &self,
        b: &mut Batch,
        keys: &TokenKeys,
        create: &[AttributeSet],
    ) -> Result<Vec<ObjectId>> {
        if create.is_empty() {
            return Ok(Vec::new());
        }
        let next_key = keys::meta::next_object(keys.token);
        let first = match self.kv.get(Cf::Meta, &next_key)? {
            Some(v) => u64_from(&v, "meta/next_object")?,
            None => return Err(StoreError::TokenNotFound(keys.token)),
        };
        let mut ids = Vec::with_capacity(create.len());
        for (i, attrs) in create.iter().enumerate() {
            let id = ObjectId(first + i as u64);
            self.stage_create(b, keys, id, attrs)?;
            ids.push(id);
        }
        b.put(
            Cf::Meta,
            next_key,
            (first + create.len() as u64).to_be_bytes().to_vec(),
        );
        Ok(ids)
    }

    /// Stages the deletion of every ring record and marker of the token (re-initialisation).
    pub(super) fn stage_ring_wipe(&self, b: &mut Batch, token: hsm_types::TokenId) -> Result<()> {
        for prefix in [
            keys::meta::ring_prefix(token),
            keys::meta::ring_seq_prefix(token),
        ] {
            self.kv.scan_prefix(Cf::Meta, &prefix, &mut |k, _| {
                b.delete(Cf::Meta, k.to_vec());
                Ok(Flow::Continue)
            })?;
        }
        Ok(())
    }
}
