//! The in-memory object store: one global resourceVersion counter, event history for watches,
//! and every write path (create / update / patch / delete / garbage collection).

use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

use crate::error::{ApiError, Target};
use crate::registry::{CRD_GROUP, GroupResource, Registry, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the store (also used for synthetic initial ADDED events).
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub gr: GroupResource,
    pub namespace: String,
    pub type_: EventType,
    pub object: Arc<Value>,
    /// The previous state for MODIFIED (selector transitions).
    pub old: Option<Arc<Value>>,
    /// When the change happened (watch latency is measured from here).
    pub at: std::time::Instant,
}

/// The kind of PATCH body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

/// Options shared by write requests.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    /// `fieldManager` (required for apply patches).
    pub field_manager: Option<String>,
    /// `fieldValidation`: how unknown (pruned) fields are reported.
    pub field_validation: FieldValidation,
    /// The product part of the request's User-Agent: the manager of non-apply writes without
    /// `fieldManager` (`prefixFromUserAgent`).
    pub user_agent_manager: String,
    /// `force` (`Some(false)` when given as false: still forbidden for non-apply patches).
    pub force: Option<bool>,
}

impl WriteOpts {
    /// The manager recorded in `managedFields`.
    pub fn manager(&self) -> &str {
        self.field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.user_agent_manager)
    }
}

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// The real server's default: prune and answer with `Warning` headers.
    #[default]
    Warn,
    Strict,
}

/// What a list request asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOpts {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

pub(crate) type ObjKey = (String, String);

/// One page of a list.
pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    /// The list's resourceVersion (kept across pages of one paged list).
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

pub struct State {
    pub registry: Registry,
    pub(crate) objects: HashMap<GroupResource, BTreeMap<ObjKey, Arc<Value>>>,
    pub(crate) uids: HashMap<String, (GroupResource, String, String)>,
    pub(crate) rv: u64,
    pub(crate) history: VecDeque<Arc<Event>>,
    /// Every event with `rv > compacted` is still in `history`.
    pub(crate) compacted: u64,
    pub(crate) max_history: usize,
    pub(crate) tx: broadcast::Sender<Arc<Event>>,
    pub(crate) rng: u64,
    /// Warnings produced by the last write (drained by the HTTP layer into `Warning` headers).
    pub warnings: Vec<String>,
    /// `Some`: garbage collection runs this long after an owner is removed.
    pub(crate) gc_delay: Option<std::time::Duration>,
    /// Owners whose dependents are collected at the given time.
    pub(crate) gc_pending: Vec<(std::time::Instant, String)>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("value was just made an object"),
    }
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    ensure_object(ensure_object(obj).entry("metadata").or_insert(Value::Null))
}

pub fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn parse_rv(s: &str) -> Option<u64> {
    s.parse().ok()
}

pub(crate) fn finalizers_empty(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// Everything but metadata (and status when it is a subresource): generation bumps when this changes.
pub(crate) fn spec_part(obj: &Value, status_sub: bool) -> Value {
    let mut o = obj.clone();
    if let Value::Object(m) = &mut o {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_sub {
            m.remove("status");
        }
    }
    o
}

/// Continue tokens: hex of `rv/namespace/name` (the last returned key).
fn encode_continue(rv: u64, key: &ObjKey) -> String {
    let raw = format!("{rv}\u{0}{}\u{0}{}", key.0, key.1);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(tok: &str) -> Option<(u64, ObjKey)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let mut it = s.split('\u{0}');
    let rv = it.next()?.parse().ok()?;
    Some((rv, (it.next()?.to_string(), it.next()?.to_string())))
}

impl State {
    pub fn new(max_history: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let seed = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1;
        State {
            registry: Registry::with_builtins(),
            objects: HashMap::new(),
            uids: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            max_history: max_history.max(1),
            tx,
            rng: seed,
            warnings: Vec::new(),
            gc_delay: None,
            gc_pending: Vec::new(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn new_uid(&mut self) -> String {
        let a = self.next_rand();
        let b = self.next_rand();
        let h = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    pub(crate) fn random_suffix(&mut self) -> String {
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| ALPHA[(self.next_rand() % ALPHA.len() as u64) as usize] as char)
            .collect()
    }

    // ----- reads -----------------------------------------------------------------------------

    pub fn get_obj(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.get_obj(&def.storage_gr(), ns, name)
            .ok_or_else(|| ApiError::not_found(&target(def, name)))
    }

    /// Objects of a resource, optionally in one namespace, in key order.
    pub fn iter_objects<'a>(
        &'a self,
        gr: &GroupResource,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a {
        self.objects
            .get(gr)
            .into_iter()
            .flat_map(move |m| m.iter().filter(move |(k, _)| ns.is_none_or(|n| k.0 == n)))
    }

    /// Returns (items, list resourceVersion, continue token, remaining count).
    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        opts: &ListOpts,
    ) -> Result<ListResult, ApiError> {
        let (list_rv, after) = match opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            Some(tok) => {
                let (rv, key) = decode_continue(tok)
                    .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
                if rv < self.compacted {
                    let mut e = ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    );
                    e.code = 410;
                    return Err(e);
                }
                (rv, Some(key))
            }
            None => (self.rv, None),
        };
        let mut items = Vec::new();
        let mut token = None;
        let mut remaining = 0;
        let mut last_key: Option<&ObjKey> = None;
        for (k, obj) in self.iter_objects(&def.storage_gr(), ns) {
            if after.as_ref().is_some_and(|a| k <= a) {
                continue;
            }
            if !opts.labels.matches(obj) || !opts.fields.matches(obj) {
                continue;
            }
            if let Some(limit) = opts.limit.filter(|l| *l > 0)
                && items.len() >= limit
            {
                remaining += 1;
                continue;
            }
            last_key = Some(k);
            items.push(obj.clone());
        }
        if remaining > 0
            && let Some(k) = last_key
        {
            token = Some(encode_continue(list_rv, k));
        }
        Ok(ListResult {
            items,
            rv: list_rv,
            continue_token: token,
            remaining,
        })
    }

    /// Start a watch: the events to send first, and a receiver subscribed atomically after them.
    #[allow(clippy::type_complexity)]
    pub fn watch_start(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        from_rv: Option<u64>,
    ) -> Result<(Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>, u64), ApiError> {
        let gr = def.storage_gr();
        let initial: Vec<Arc<Event>> = match from_rv {
            Some(rv) if rv != 0 => {
                if rv < self.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        self.compacted + 1
                    )));
                }
                self.events_since(rv, &gr, ns)
            }
            _ => self
                .iter_objects(&gr, ns)
                .map(|(k, o)| {
                    Arc::new(Event {
                        rv: parse_rv(meta_str(o, "resourceVersion")).unwrap_or(self.rv),
                        gr: gr.clone(),
                        namespace: k.0.clone(),
                        type_: EventType::Added,
                        object: o.clone(),
                        old: None,
                        at: std::time::Instant::now(),
                    })
                })
                .collect(),
        };
        Ok((initial, self.tx.subscribe(), self.rv))
    }

    /// History events after `rv` for one resource (and namespace).
    pub fn events_since(&self, rv: u64, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Event>> {
        self.history
            .iter()
            .filter(|e| e.rv > rv && &e.gr == gr && ns.is_none_or(|n| e.namespace == n))
            .cloned()
            .collect()
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    // ----- commit ----------------------------------------------------------------------------

    pub(crate) fn emit(&mut self, ev: Event) {
        let ev = Arc::new(ev);
        self.history.push_back(ev.clone());
        while self.history.len() > self.max_history {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    /// Store a new version of an object (create or update) and emit the event. Objects of a
    /// resource sharing another's storage (events.k8s.io Events) are stored in that form.
    pub(crate) fn store(
        &mut self,
        def: &ResourceDef,
        obj: Value,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        let mut obj = to_storage(def, obj);
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let uid = meta_str(&obj, "uid").to_string();
        let gr = def.storage_gr();
        let obj = Arc::new(obj);
        let stored_old = self
            .objects
            .entry(gr.clone())
            .or_default()
            .insert((ns.clone(), name.clone()), obj.clone());
        self.uids.insert(uid, (gr.clone(), ns.clone(), name));
        let type_ = if old.is_some() || stored_old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(Event {
            rv: self.rv,
            gr,
            namespace: ns,
            type_,
            object: obj.clone(),
            old: stored_old.or(old),
            at: std::time::Instant::now(),
        });
        obj
    }

    /// Remove an object for good, emit DELETED (with a new resourceVersion) and collect garbage.
    pub(crate) fn remove(&mut self, def: &ResourceDef, last: Value) -> Arc<Value> {
        let mut last = to_storage(def, last);
        self.rv += 1;
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let ns = meta_str(&last, "namespace").to_string();
        let name = meta_str(&last, "name").to_string();
        let uid = meta_str(&last, "uid").to_string();
        let gr = def.storage_gr();
        if let Some(m) = self.objects.get_mut(&gr) {
            m.remove(&(ns.clone(), name.clone()));
        }
        self.uids.remove(&uid);
        let last = Arc::new(last);
        self.emit(Event {
            rv: self.rv,
            gr: gr.clone(),
            namespace: ns.clone(),
            type_: EventType::Deleted,
            object: last.clone(),
            old: None,
            at: std::time::Instant::now(),
        });
        if gr.0 == CRD_GROUP && gr.1 == "customresourcedefinitions" {
            self.drop_crd(&last);
        }
        if gr.0.is_empty() && gr.1 == "namespaces" {
            // nothing left inside by construction
        }
        self.owner_removed(&uid);
        // Owners deleting in foreground may have been waiting for this object.
        let owners: Vec<String> = meta(&last)
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for owner in owners {
            self.maybe_finish_foreground(&owner);
        }
        if def.namespaced && !ns.is_empty() {
            self.maybe_finish_namespace(&ns);
        }
        last
    }
}

/// An object in its storage form (events.k8s.io Events are kept as core Events).
pub(crate) fn to_storage(def: &ResourceDef, obj: Value) -> Value {
    if def.storage.is_some() && def.is(crate::events::EVENTS_GROUP, "events") {
        crate::events::to_core(&obj)
    } else {
        obj
    }
}

/// An object in the form `def` serves (the inverse of [`to_storage`]).
pub(crate) fn from_storage(def: &ResourceDef, obj: Arc<Value>) -> Arc<Value> {
    if def.storage.is_some() && def.is(crate::events::EVENTS_GROUP, "events") {
        Arc::new(crate::events::to_v1(&obj))
    } else {
        obj
    }
}

pub fn target<'a>(def: &'a ResourceDef, name: &'a str) -> Target<'a> {
    Target {
        group: &def.group,
        resource: &def.plural,
        name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_token_roundtrip() {
        let k = ("ns".to_string(), "a-b".to_string());
        assert_eq!(decode_continue(&encode_continue(42, &k)), Some((42, k)));
        assert_eq!(decode_continue("!!"), None);
    }
}
