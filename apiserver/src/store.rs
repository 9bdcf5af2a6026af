//! The in-memory object store: one global resourceVersion counter, event history for watches,
//! and every write path (create / update / patch / delete / garbage collection).

use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

use crate::error::{ApiError, FieldError, Target};
use crate::objectmeta::{self, MetaRules, NameRule};
use crate::patch;
use crate::registry::{CRD_GROUP, GroupResource, Registry, ResourceDef, crd_status};
use crate::selector::{FieldSelector, LabelSelector};
use crate::validation;

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
    /// Required for apply patches (recorded nowhere: managedFields are not tracked, so
    /// `force` has nothing to override and is accepted and ignored).
    pub field_manager: Option<String>,
    /// `fieldValidation`: how unknown (pruned) fields are reported.
    pub field_validation: FieldValidation,
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

type ObjKey = (String, String);

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
    objects: HashMap<GroupResource, BTreeMap<ObjKey, Arc<Value>>>,
    uids: HashMap<String, (GroupResource, String, String)>,
    rv: u64,
    history: VecDeque<Arc<Event>>,
    /// Every event with `rv > compacted` is still in `history`.
    compacted: u64,
    max_history: usize,
    tx: broadcast::Sender<Arc<Event>>,
    rng: u64,
    /// Warnings produced by the last write (drained by the HTTP layer into `Warning` headers).
    pub warnings: Vec<String>,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
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

fn finalizers_empty(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

fn is_deleting(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// Everything but metadata (and status when it is a subresource): generation bumps when this changes.
fn spec_part(obj: &Value, status_sub: bool) -> Value {
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

    fn new_uid(&mut self) -> String {
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

    fn random_suffix(&mut self) -> String {
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
        self.get_obj(&def.gr(), ns, name)
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
        for (k, obj) in self.iter_objects(&def.gr(), ns) {
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
        let gr = def.gr();
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

    fn emit(&mut self, ev: Event) {
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

    /// Store a new version of an object (create or update) and emit the event.
    fn store(&mut self, def: &ResourceDef, mut obj: Value, old: Option<Arc<Value>>) -> Arc<Value> {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let ns = meta_str(&obj, "namespace").to_string();
        let name = meta_str(&obj, "name").to_string();
        let uid = meta_str(&obj, "uid").to_string();
        let obj = Arc::new(obj);
        self.objects
            .entry(def.gr())
            .or_default()
            .insert((ns.clone(), name.clone()), obj.clone());
        self.uids.insert(uid, (def.gr(), ns.clone(), name));
        let type_ = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(Event {
            rv: self.rv,
            gr: def.gr(),
            namespace: ns,
            type_,
            object: obj.clone(),
            old,
            at: std::time::Instant::now(),
        });
        obj
    }

    /// Remove an object for good, emit DELETED (with a new resourceVersion) and collect garbage.
    fn remove(&mut self, def: &ResourceDef, mut last: Value) -> Arc<Value> {
        self.rv += 1;
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let ns = meta_str(&last, "namespace").to_string();
        let name = meta_str(&last, "name").to_string();
        let uid = meta_str(&last, "uid").to_string();
        let gr = def.gr();
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
        self.collect_garbage(&uid);
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

    /// Objects with an ownerReference to `owner_uid`.
    fn dependents_of(&self, owner_uid: &str) -> Vec<(GroupResource, String, String)> {
        self.dependents_where(owner_uid, |_, _| true)
    }

    /// Objects with an ownerReference to `owner_uid` for which `pick(object, reference)` holds.
    fn dependents_where(
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
    fn delete_each(&mut self, victims: Vec<(GroupResource, String, String)>, options: &Value) {
        for (gr, ns, name) in victims {
            if let Some(def) = self.registry.defs.get(&gr).cloned() {
                let _ = self.delete(&def, &ns, &name, options, false);
            }
        }
    }

    /// Orphan propagation: removes the references to `owner_uid` from its dependents (MODIFIED).
    fn orphan_dependents(&mut self, owner_uid: &str) {
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
    fn maybe_finish_foreground(&mut self, owner_uid: &str) {
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

    /// Delete every dependent whose owners are all gone (background propagation).
    fn collect_garbage(&mut self, owner_uid: &str) {
        let victims = self.dependents_where(owner_uid, |obj, _| {
            let all_gone = meta(obj)
                .and_then(|m| m.get("ownerReferences"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .all(|r| {
                    r.get("uid")
                        .and_then(Value::as_str)
                        .is_none_or(|u| !self.uids.contains_key(u))
                });
            all_gone && !is_deleting(obj)
        });
        self.delete_each(victims, &json!({}));
    }

    fn drop_crd(&mut self, crd: &Value) {
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

    fn maybe_finish_namespace(&mut self, ns: &str) {
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

    // ----- writes ----------------------------------------------------------------------------

    /// Server-side defaulting, validation and bookkeeping common to create and update.
    fn prepare(
        &mut self,
        def: &ResourceDef,
        version: &str,
        obj: &mut Value,
        old: Option<&Value>,
        fv: FieldValidation,
    ) -> Result<(), ApiError> {
        let name = meta_str(obj, "name").to_string();
        let t = target(def, &name);
        if let Value::Object(m) = obj {
            m.insert("apiVersion".into(), json!(def.api_version(version)));
            m.insert("kind".into(), json!(def.kind));
        }
        // Secrets: fold stringData into data.
        if def.group.is_empty() && def.plural == "secrets" {
            fold_string_data(obj)
                .map_err(|e| ApiError::invalid(&def.kind_group(), &name, &t, &[e]))?;
            if let Value::Object(m) = obj {
                m.entry("type").or_insert_with(|| json!("Opaque"));
            }
        }
        if def.group.is_empty() && def.plural == "namespaces" {
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if let Value::Object(m) = obj {
                let status = m.entry("status").or_insert_with(|| json!({}));
                if status.get("phase").is_none() {
                    status["phase"] = json!("Active");
                }
            }
        }
        let mut errs = match meta_rules(def) {
            Some(rules) => objectmeta::validate_object_meta(obj, rules),
            None => Vec::new(),
        };
        if let Some(old) = old {
            errs.extend(objectmeta::validate_object_meta_update(obj, old));
        }
        if def.is_crd
            && let Some(schema) = def.schemas.get(version)
        {
            let processed = validation::process_custom_resource(obj, schema);
            errs.extend(processed.errors);
            if errs.is_empty() && def.cel_versions.iter().any(|v| v == version) {
                errs.extend(validation::validate_cel(obj, schema, old));
            }
            if !processed.pruned.is_empty() {
                let unknown: Vec<String> = processed
                    .pruned
                    .iter()
                    .map(|p| format!("unknown field {p:?}"))
                    .collect();
                match fv {
                    FieldValidation::Ignore => {}
                    FieldValidation::Warn => self.warnings.extend(unknown),
                    FieldValidation::Strict => {
                        return Err(ApiError::bad_request(format!(
                            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                            unknown.join(", "),
                            kind = def.kind
                        )));
                    }
                }
            }
        }
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            match ResourceDef::from_crd(obj) {
                Ok(d) => {
                    let want = format!("{}.{}", d.plural, d.group);
                    if name != want {
                        errs.push(FieldError::invalid(
                            "metadata.name",
                            &json!(name),
                            "must be spec.names.plural+\".\"+spec.group",
                        ));
                    }
                    if let Some(existing) = self.registry.get(&d.group, &d.plural)
                        && !existing.is_crd
                    {
                        errs.push(FieldError::invalid(
                            "spec.names.plural",
                            &json!(d.plural),
                            "conflicts with a built-in resource",
                        ));
                    }
                }
                Err(e) => errs.push(FieldError::invalid("spec", &json!(null), e.to_string())),
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&def.kind_group(), &name, &t, &errs));
        }
        Ok(())
    }

    fn check_namespace(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
        if !def.namespaced {
            return Ok(());
        }
        let ns_gr: GroupResource = (String::new(), "namespaces".into());
        match self.get_obj(&ns_gr, "", ns) {
            None => Err(ApiError::not_found(&Target {
                group: "",
                resource: "namespaces",
                name: ns,
            })),
            Some(n) if is_deleting(&n) => Err(ApiError::forbidden(
                &target(def, name),
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// POST a new object (`ns` is "" for cluster-scoped resources).
    pub fn create(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_kind(def, version, &obj)?;
        let body_ns = meta_str(&obj, "namespace").to_string();
        if def.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        } else if !body_ns.is_empty() {
            meta_mut(&mut obj).remove("namespace");
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let gen_name = meta_str(&obj, "generateName").to_string();
            if !gen_name.is_empty() {
                let mut prefix = gen_name;
                prefix.truncate(58);
                name = format!("{prefix}{}", self.random_suffix());
            }
        }
        self.check_namespace(def, ns, &name)?;
        let uid = self.new_uid();
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            if def.namespaced {
                m.insert("namespace".into(), json!(ns));
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            m.remove("managedFields");
            if def.is_crd {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if def.status_subresource
            && let Value::Object(m) = &mut obj
        {
            m.remove("status");
        }
        self.prepare(def, version, &mut obj, None, opts.field_validation)?;
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            obj["status"] = crd_status(&obj, &now_rfc3339());
        }
        if self
            .get_obj(&def.gr(), if def.namespaced { ns } else { "" }, &name)
            .is_some()
        {
            return Err(ApiError::already_exists(&target(def, &name)));
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            self.register_crd(&obj)?;
        }
        Ok(self.store(def, obj, None))
    }

    fn register_crd(&mut self, crd: &Value) -> Result<(), ApiError> {
        let d = ResourceDef::from_crd(crd).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.registry.defs.insert(d.gr(), d);
        Ok(())
    }

    /// Finish an update: server-owned fields, subresource rules, validation, no-op detection,
    /// and "finalizers emptied on a deleting object" => delete.
    fn finish_update(
        &mut self,
        def: &ResourceDef,
        version: &str,
        old: Arc<Value>,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        let name = meta_str(&old, "name").to_string();
        let t = target(def, &name);
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        // resourceVersion precondition
        let want_rv = meta_str(&new, "resourceVersion").to_string();
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&t));
        }
        let new_uid = meta_str(&new, "uid");
        if !new_uid.is_empty() && new_uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                &t,
                &format!(
                    "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if subresource == Some("status") {
            // only .status changes
            let status = new.get("status").cloned();
            new = (*old).clone();
            if let Value::Object(m) = &mut new {
                match status {
                    Some(s) => {
                        m.insert("status".into(), s);
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
        } else if def.status_subresource
            && let Value::Object(m) = &mut new
        {
            match old.get("status") {
                Some(s) => {
                    m.insert("status".into(), s.clone());
                }
                None => {
                    m.remove("status");
                }
            }
        }
        if def.group == CRD_GROUP
            && def.plural == "customresourcedefinitions"
            && let Some(s) = old.get("status")
            && subresource != Some("status")
        {
            new["status"] = s.clone();
        }
        {
            let om = meta(&old).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
            ] {
                match om.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            m.insert(
                "resourceVersion".into(),
                om.get("resourceVersion").cloned().unwrap_or(Value::Null),
            );
            m.remove("selfLink");
        }
        self.prepare(def, version, &mut new, Some(&old), opts.field_validation)?;
        if def.is_crd
            && spec_part(&new, def.status_subresource) != spec_part(&old, def.status_subresource)
        {
            let g = meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        // Compare ignoring apiVersion differences between served versions.
        let mut old_cmp = (*old).clone();
        if let Value::Object(m) = &mut old_cmp {
            m.insert("apiVersion".into(), json!(def.api_version(version)));
        }
        if new == old_cmp {
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(Arc::new(new));
        }
        if is_deleting(&new) && finalizers_empty(&new) {
            return Ok(self.remove(def, new));
        }
        if def.group == CRD_GROUP && def.plural == "customresourcedefinitions" {
            self.register_crd(&new)?;
        }
        Ok(self.store(def, new, Some(old)))
    }

    /// PUT (replace) an object or its status.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        check_kind(def, version, &obj)?;
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&obj, "namespace");
        if def.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old = self.get(def, ns, name)?;
        self.finish_update(def, version, old, obj, subresource, opts)
    }

    /// PATCH an object or its status. Returns (created?, object).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        subresource: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<(bool, Arc<Value>), ApiError> {
        if kind == PatchKind::Apply {
            if opts.field_manager.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::invalid(
                    "PatchOptions.meta.k8s.io",
                    "",
                    &Target::default(),
                    &[FieldError {
                        reason: "FieldValueRequired",
                        field: "fieldManager".into(),
                        value: None,
                        detail: "is required for apply patch".into(),
                    }],
                ));
            }
            if !body.is_object() {
                return Err(ApiError::bad_request("apply patch body must be an object"));
            }
            check_kind(def, version, body)?;
            let body_name = meta_str(body, "name");
            if !body_name.is_empty() && body_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        let old = match self.get_obj(&def.gr(), ns, name) {
            Some(o) => o,
            None if kind == PatchKind::Apply && subresource.is_none() => {
                let mut obj = body.clone();
                strip_nulls(&mut obj);
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return Ok((true, self.create(def, version, ns, obj, opts)?));
            }
            None => return Err(ApiError::not_found(&target(def, name))),
        };
        let mut new = (*old).clone();
        match kind {
            PatchKind::Json => patch::json_patch(&mut new, body).map_err(|e| {
                let mut err = ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                );
                err.details = Some(json!({"name": name, "kind": def.plural}));
                err
            })?,
            PatchKind::Merge => patch::merge_patch(&mut new, body),
            PatchKind::Strategic => patch::strategic_merge_patch(&mut new, body),
            PatchKind::Apply => {
                let schema = def.schemas.get(version);
                patch::apply_merge(&mut new, body, schema);
            }
        }
        Ok((
            false,
            self.finish_update(def, version, old, new, subresource, opts)?,
        ))
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
                return Ok(self.get_obj(&def.gr(), ns, name).unwrap_or(stored));
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

    fn namespace_has_content(&self, ns: &str) -> bool {
        self.objects.iter().any(|(gr, m)| {
            !(gr.0.is_empty() && gr.1 == "namespaces") && m.keys().any(|(n, _)| n == ns)
        })
    }

    fn delete_namespace_content(&mut self, ns: &str) {
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

/// How `metadata` of a kind is validated (`None`: core/v1 Events, whose legacy validation checks
/// no metadata).
fn meta_rules(def: &ResourceDef) -> Option<MetaRules> {
    let core = def.group.is_empty();
    let name = match (def.group.as_str(), def.plural.as_str()) {
        ("", "events") => return None,
        ("", "namespaces") => NameRule::Label,
        (crate::registry::RBAC_GROUP, _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    };
    Some(MetaRules {
        name,
        namespaced: def.namespaced,
        core_finalizers: core || def.is("events.k8s.io", "events"),
    })
}

pub fn target<'a>(def: &'a ResourceDef, name: &'a str) -> Target<'a> {
    Target {
        group: &def.group,
        resource: &def.plural,
        name,
    }
}

fn check_kind(def: &ResourceDef, version: &str, obj: &Value) -> Result<(), ApiError> {
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != def.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({k}) does not match the resource {} ({})",
            def.plural, def.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != def.api_version(version)
        && !def.versions.iter().any(|v| def.api_version(v) == av)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version(version)
        )));
    }
    Ok(())
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Secret `stringData` is write-only: merged into base64 `data` (stringData wins), then dropped.
/// `data` values must be valid base64.
fn fold_string_data(obj: &mut Value) -> Result<(), FieldError> {
    let Value::Object(m) = obj else { return Ok(()) };
    if let Some(Value::Object(data)) = m.get("data") {
        for (k, v) in data {
            let ok = v
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(FieldError::invalid(
                    &format!("data[{k}]"),
                    v,
                    "illegal base64 data",
                ));
            }
        }
    }
    if let Some(sd) = m.remove("stringData") {
        let Value::Object(sd) = sd else {
            return Err(FieldError::type_invalid(
                "stringData",
                &sd,
                "must be an object",
            ));
        };
        let data = m.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        for (k, v) in sd {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            data[k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
        }
    }
    Ok(())
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

    #[test]
    fn string_data_folds() {
        let mut s = json!({"data": {"a": "eA=="}, "stringData": {"b": "y", "a": "z"}});
        fold_string_data(&mut s).unwrap();
        assert_eq!(s, json!({"data": {"a": "eg==", "b": "eQ=="}}));
        let mut bad = json!({"data": {"a": "not base64!"}});
        assert!(fold_string_data(&mut bad).is_err());
    }
}
