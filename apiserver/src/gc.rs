//! Deletion: finalizers and graceful marking, propagation policies (Orphan / Background /
//! Foreground), garbage collection of dependents, namespace cleanup.

use serde_json::{Value, json};
use std::sync::Arc;

use crate::error::ApiError;
use crate::registry::{GroupResource, ResourceDef};
use crate::store::{
    ListOpts, ListResult, ObjKey, State, finalizers_empty, is_deleting, meta, meta_mut, meta_str,
    now_rfc3339, target,
};

/// The finalizer that holds an owner deleted with `propagationPolicy: Foreground`.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy` (and the deprecated `orphanDependents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    fn from_options(options: &Value) -> Result<Self, ApiError> {
        let orphan_dependents = options.get("orphanDependents").and_then(Value::as_bool);
        match options.get("propagationPolicy").and_then(Value::as_str) {
            None => Ok(if orphan_dependents == Some(true) {
                Propagation::Orphan
            } else {
                Propagation::Background
            }),
            Some(_) if orphan_dependents.is_some() => Err(ApiError::bad_request(
                "DeleteOptions: orphanDependents and propagationPolicy cannot both be set",
            )),
            Some("Orphan") => Ok(Propagation::Orphan),
            Some("Background") => Ok(Propagation::Background),
            Some("Foreground") => Ok(Propagation::Foreground),
            Some(other) => Err(ApiError::bad_request(format!(
                "DeleteOptions.propagationPolicy: Unsupported value: \"{other}\": supported values: \"Orphan\", \"Background\", \"Foreground\""
            ))),
        }
    }
}

impl State {
    /// Objects with an ownerReference to `owner_uid`.
    pub(crate) fn dependents_of(&self, owner_uid: &str) -> Vec<(GroupResource, String, String)> {
        self.dependents_where(owner_uid, |_, _| true)
    }

    /// Objects with an ownerReference to `owner_uid` for which `pick(object, reference)` holds.
    pub(crate) fn dependents_where(
        &self,
        owner_uid: &str,
        pick: impl Fn(&Value, &Value) -> bool,
    ) -> Vec<(GroupResource, String, String)> {
        let mut out = Vec::new();
        if owner_uid.is_empty() {
            return out;
        }
        for (gr, objs) in &self.objects {
            for obj in objs.values() {
                let refs = meta(obj)
                    .and_then(|m| m.get("ownerReferences"))
                    .and_then(Value::as_array);
                if refs.is_some_and(|r| {
                    r.iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(owner_uid) && pick(obj, r)
                    })
                }) {
                    out.push((
                        gr.clone(),
                        meta_str(obj, "namespace").to_string(),
                        meta_str(obj, "name").to_string(),
                    ));
                }
            }
        }
        out
    }

    /// Deletes each of `victims` with `options` (errors ignored: a victim may be gone already).
    pub(crate) fn delete_each(
        &mut self,
        victims: Vec<(GroupResource, String, String)>,
        options: &Value,
    ) {
        for (gr, ns, name) in victims {
            if let Some(def) = self.registry.defs.get(&gr).cloned() {
                let _ = self.delete(&def, &ns, &name, options, false);
            }
        }
    }

    /// Orphan propagation: removes the references to `owner_uid` from its dependents (MODIFIED).
    pub(crate) fn orphan_dependents(&mut self, owner_uid: &str) {
        for (gr, ns, name) in self.dependents_of(owner_uid) {
            let (Some(def), Some(old)) = (
                self.registry.defs.get(&gr).cloned(),
                self.get_obj(&gr, &ns, &name),
            ) else {
                continue;
            };
            let mut new = (*old).clone();
            let m = meta_mut(&mut new);
            if let Some(Value::Array(refs)) = m.get_mut("ownerReferences") {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
                if refs.is_empty() {
                    m.remove("ownerReferences");
                }
            }
            self.store(&def, new, Some(old));
        }
    }

    /// Foreground propagation: once no dependent with `blockOwnerDeletion: true` is left, the
    /// owner's `foregroundDeletion` finalizer is removed (and the owner with it, if it was the last).
    pub(crate) fn maybe_finish_foreground(&mut self, owner_uid: &str) {
        let Some((gr, ns, name)) = self.uids.get(owner_uid).cloned() else {
            return;
        };
        let (Some(def), Some(owner)) = (
            self.registry.defs.get(&gr).cloned(),
            self.get_obj(&gr, &ns, &name),
        ) else {
            return;
        };
        let waiting = meta(&owner)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == FOREGROUND_FINALIZER));
        let blocked = !self
            .dependents_where(owner_uid, |_, r| {
                r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
            })
            .is_empty();
        if !waiting || blocked {
            return;
        }
        let mut new = (*owner).clone();
        if let Some(Value::Array(f)) = meta_mut(&mut new).get_mut("finalizers") {
            f.retain(|x| x != FOREGROUND_FINALIZER);
        }
        if finalizers_empty(&new) {
            self.remove(&def, new);
        } else {
            self.store(&def, new, Some(owner));
        }
    }

    /// An owner is gone: collect its dependents now, or after the configured delay (the real
    /// garbage collector is asynchronous; `Config::gc_delay` emulates that).
    pub(crate) fn owner_removed(&mut self, owner_uid: &str) {
        match self.gc_delay {
            None => self.collect_garbage(owner_uid),
            Some(d) => self
                .gc_pending
                .push((std::time::Instant::now() + d, owner_uid.to_string())),
        }
    }

    /// Run the delayed collections that are due (the server's background task calls this).
    pub(crate) fn run_due_gc(&mut self, now: std::time::Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.gc_pending)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.gc_pending = later;
        for (_, uid) in due {
            self.collect_garbage(&uid);
        }
    }

    /// `attemptToDeleteItem` for the dependents of a removed owner: a dependent whose owners are
    /// all gone is deleted; one that still has an owner loses its dangling references.
    pub(crate) fn collect_garbage(&mut self, owner_uid: &str) {
        let alive = |r: &Value, uids: &std::collections::HashMap<String, _>| {
            r.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| uids.contains_key(u))
        };
        let mut victims = Vec::new();
        let mut trim = Vec::new();
        for (gr, ns, name) in self.dependents_of(owner_uid) {
            let Some(obj) = self.get_obj(&gr, &ns, &name) else {
                continue;
            };
            let refs: Vec<Value> = meta(&obj)
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if refs.iter().all(|r| !alive(r, &self.uids)) {
                if !is_deleting(&obj) {
                    victims.push((gr, ns, name));
                }
            } else if refs.iter().any(|r| !alive(r, &self.uids)) {
                trim.push((gr, obj));
            }
        }
        for (gr, obj) in trim {
            let Some(def) = self.registry.defs.get(&gr).cloned() else {
                continue;
            };
            let mut new = (*obj).clone();
            if let Some(Value::Array(refs)) = meta_mut(&mut new).get_mut("ownerReferences") {
                let uids = &self.uids;
                refs.retain(|r| alive(r, uids));
            }
            self.store(&def, new, Some(obj));
        }
        self.delete_each(victims, &json!({}));
    }

    pub(crate) fn drop_crd(&mut self, crd: &Value) {
        if let Ok(def) = ResourceDef::from_crd(crd) {
            let gr = def.gr();
            let keys: Vec<ObjKey> = self
                .objects
                .get(&gr)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for (ns, name) in keys {
                if let Some(obj) = self.get_obj(&gr, &ns, &name) {
                    self.remove(&def, (*obj).clone());
                }
            }
            self.registry.defs.remove(&gr);
        }
    }

    pub(crate) fn maybe_finish_namespace(&mut self, ns: &str) {
        let ns_gr: GroupResource = (String::new(), "namespaces".into());
        let Some(nsobj) = self.get_obj(&ns_gr, "", ns) else {
            return;
        };
        if !is_deleting(&nsobj) || !finalizers_empty(&nsobj) {
            return;
        }
        let empty = self
            .objects
            .iter()
            .all(|(gr, m)| *gr == ns_gr || !m.keys().any(|(n, _)| n == ns));
        if empty && let Some(def) = self.registry.defs.get(&ns_gr).cloned() {
            self.remove(&def, (*nsobj).clone());
        }
    }

    /// DELETE: with finalizers mark deletionTimestamp (MODIFIED), otherwise remove (DELETED).
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let old = self.get(def, ns, name)?;
        let t = target(def, name);
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &t,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &t,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        let policy = Propagation::from_options(options)?;
        if is_deleting(&old) {
            return Ok(old);
        }
        let is_ns = def.group.is_empty() && def.plural == "namespaces";
        if is_ns && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(&t, "this namespace may not be deleted"));
        }
        if dry_run {
            return Ok(old);
        }
        let uid = meta_str(&old, "uid").to_string();
        // The real garbage collector removes the owner's references from its dependents (the
        // `orphan` finalizer holds the owner meanwhile); here that happens before the delete.
        if policy == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        // Foreground: the owner stays, deleting with the `foregroundDeletion` finalizer, until
        // every dependent with `blockOwnerDeletion` is gone; dependents are deleted in foreground too.
        let foreground = policy == Propagation::Foreground && !self.dependents_of(&uid).is_empty();
        if foreground || !finalizers_empty(&old) || (is_ns && self.namespace_has_content(name)) {
            let mut new = (*old).clone();
            {
                let m = meta_mut(&mut new);
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                // `markAsDeleting`: an object with a generation gets a new one.
                if let Some(g) = m
                    .get("generation")
                    .and_then(Value::as_i64)
                    .filter(|g| *g > 0)
                {
                    m.insert("generation".into(), json!(g + 1));
                }
                if foreground
                    && let Value::Array(a) = m.entry("finalizers").or_insert_with(|| json!([]))
                {
                    a.push(json!(FOREGROUND_FINALIZER));
                }
            }
            if is_ns {
                new["status"] = json!({"phase": "Terminating"});
            }
            let stored = self.store(def, new, Some(old));
            if foreground {
                let dependents = self.dependents_of(&uid);
                self.delete_each(dependents, &json!({"propagationPolicy": "Foreground"}));
                self.maybe_finish_foreground(&uid);
                return Ok(self.get_obj(&def.storage_gr(), ns, name).unwrap_or(stored));
            }
            if is_ns {
                self.delete_namespace_content(name);
                self.maybe_finish_namespace(name);
                return Ok(self.get_obj(&def.gr(), "", name).unwrap_or(stored));
            }
            return Ok(stored);
        }
        Ok(self.remove(def, (*old).clone()))
    }

    pub(crate) fn namespace_has_content(&self, ns: &str) -> bool {
        self.objects.iter().any(|(gr, m)| {
            !(gr.0.is_empty() && gr.1 == "namespaces") && m.keys().any(|(n, _)| n == ns)
        })
    }

    pub(crate) fn delete_namespace_content(&mut self, ns: &str) {
        let mut victims = Vec::new();
        for (gr, m) in &self.objects {
            for (n, name) in m.keys() {
                if n == ns {
                    victims.push((gr.clone(), n.clone(), name.clone()));
                }
            }
        }
        self.delete_each(victims, &json!({}));
    }

    /// DELETE on a collection: delete every matching object.
    pub fn delete_collection(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        opts: &ListOpts,
        dry_run: bool,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let ListResult { items, .. } = self.list(
            def,
            ns,
            &ListOpts {
                limit: None,
                continue_token: None,
                ..opts.clone()
            },
        )?;
        let mut out = Vec::new();
        for o in items {
            let n = meta_str(&o, "namespace").to_string();
            let name = meta_str(&o, "name").to_string();
            out.push(self.delete(def, &n, &name, &json!({}), dry_run)?);
        }
        Ok(out)
    }
}
