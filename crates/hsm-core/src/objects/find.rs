//! `C_FindObjectsInit` / `C_FindObjects` / `C_FindObjectsFinal`: token objects through the
//! store's blinded indexes, then session objects; the matches are fixed at init.

use super::attrs;
use crate::error::{Error, Result};
use crate::ops::{Action, FindOp, OpKind};
use crate::runtime::handles::token_handle;
use crate::runtime::{Call, Hsm, lock, read};
use hsm_store::Query;
use hsm_types::{AttributeSet, AttributeType as A};

impl Hsm {
    pub fn find_init(&self, h: u64, template: AttributeSet) -> Result<()> {
        self.run(h, Action::Start(OpKind::Find), |c| {
            if lock(&c.session.ops).is_active(OpKind::Find) {
                return Err(Error::OperationActive);
            }
            let mut found = Vec::new();
            if template.bool(A::TOKEN) != Some(false) {
                found = self.find_token_objects(c, &template)?;
            }
            if template.bool(A::TOKEN) != Some(true) {
                found.extend(self.find_session_objects(c, &template));
            }
            lock(&c.session.ops).put(OpKind::Find, FindOp { found, pos: 0 });
            Ok(())
        })
    }

    fn find_token_objects(&self, c: &Call, template: &AttributeSet) -> Result<Vec<u64>> {
        let user = c.slot.user_logged_in();
        let keys = self.keys(&c.slot, c.token)?;
        let q = Query {
            class: template.class(),
            label: template.label().map(<[u8]>::to_vec),
            id: template.id().map(<[u8]>::to_vec),
            key_type: template.key_type(),
            mechanism: None,
        };
        let ids = self.store.find(&keys, &q)?;
        let indexed_only = template
            .types()
            .all(|t| matches!(t, A::CLASS | A::LABEL | A::ID | A::KEY_TYPE | A::TOKEN));
        let so = c.slot.actor() == attrs::Actor::So;
        let rest = crate::lifecycle::runtime::without_view(&without(template, A::TOKEN));
        let mut found = Vec::new();
        for id in ids {
            if indexed_only && !so {
                // The store's index answered and only shows private objects to the
                // master key holder, who here is the user.
                found.push(token_handle(c.slot.id, id)?);
                continue;
            }
            if !user && self.store.is_private(&keys, id)? {
                continue;
            }
            match self.store.read_object(&keys, id) {
                Ok(o) if attrs::matches(&o.attrs, &rest) => {
                    found.push(token_handle(c.slot.id, id)?)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(object = %id, "skipped in search: {e}"),
            }
        }
        self.filter_versions(c, template, found)
    }

    fn find_session_objects(&self, c: &Call, template: &AttributeSet) -> Vec<u64> {
        let user = c.slot.user_logged_in();
        let objs = read(&self.session_objects);
        let mut local: Vec<u64> = objs
            .iter()
            .filter(|(_, o)| {
                o.slot == c.slot.id
                    && o.app == c.slot.app
                    && (user || !o.attrs.is_private())
                    && attrs::matches(&o.attrs, template)
            })
            .map(|(n, _)| *n)
            .collect();
        local.sort_unstable();
        local
    }

    pub fn find_next(&self, h: u64, max: usize) -> Result<Vec<u64>> {
        self.run(h, Action::Continue(OpKind::Find), |c| {
            let mut ops = lock(&c.session.ops);
            let f = ops.get_mut::<FindOp>(OpKind::Find)?;
            let end = f.pos + max.min(f.found.len() - f.pos);
            let out = f.found[f.pos..end].to_vec();
            f.pos = end;
            Ok(out)
        })
    }

    pub fn find_final(&self, h: u64) -> Result<()> {
        self.run(h, Action::Continue(OpKind::Find), |c| {
            lock(&c.session.ops)
                .take::<FindOp>(OpKind::Find)
                .map(|_| ())
        })
    }
}

/// A template without one attribute.
pub(crate) fn without(t: &AttributeSet, a: A) -> AttributeSet {
    let mut t = t.clone();
    t.remove(a);
    t
}
