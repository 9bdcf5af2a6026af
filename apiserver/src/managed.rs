//! `metadata.managedFields` and the field manager of kube-apiserver (apimachinery
//! `util/managedfields` over structured-merge-diff's `merge.Updater`): every write records which
//! manager owns which fields; an apply merges the configuration, removes fields its manager
//! applied before but no longer does (unless another manager owns them), and fails with a 409
//! naming manager and field when it would change a field another manager owns (unless forced).

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use crate::error::ApiError;
use crate::fieldpath::{Path, PathElement, Set, render_path};
use crate::schema::Ty;
use crate::smd;

/// `Apply` or `Update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// A manager's identity: appliers are one manager across API versions, updaters are per version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// "" for `Apply`.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: &str) -> Self {
        ManagerId {
            manager: manager.to_string(),
            operation,
            api_version: if operation == Operation::Apply {
                String::new()
            } else {
                api_version.to_string()
            },
            subresource: subresource.to_string(),
        }
    }

    /// `printManager` of conflict messages.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {:?}", self.subresource);
        }
        if self.operation == Operation::Update {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub set: Set,
    pub api_version: String,
    pub time: Option<String>,
}

pub type Managed = BTreeMap<ManagerId, Entry>;

/// The fields stripped from every manager's set (`stripMetaManager`).
fn strip_set() -> Set {
    let mut s = Set::new();
    let f = |x: &str| PathElement::Field(x.into());
    s.insert(vec![f("apiVersion")]);
    s.insert(vec![f("kind")]);
    s.insert(vec![f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(vec![f("metadata"), f(m)]);
    }
    s
}

/// Which part of the object an endpoint may own (reset fields of kube's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    /// The main endpoint of a resource with a status subresource: `.status` is reset.
    ExceptStatus,
    /// The status subresource: only `.status` is written.
    OnlyStatus,
}

impl Scope {
    fn filter(self, s: &Set) -> Set {
        let status: Path = vec![PathElement::Field("status".into())];
        match self {
            Scope::Everything => s.clone(),
            Scope::ExceptStatus => {
                let mut st = Set::new();
                st.insert(status);
                s.recursive_difference(&st)
            }
            Scope::OnlyStatus => s.under(&status),
        }
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Decode `metadata.managedFields`; `None` when absent or not valid (the caller falls back).
pub fn decode(obj: &Value) -> Option<Managed> {
    let list = obj.pointer("/metadata/managedFields")?.as_array()?;
    let mut out = Managed::new();
    for e in list {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
        let operation = match s("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        if s("fieldsType") != "FieldsV1" {
            return None;
        }
        let set = Set::from_fields_v1(e.get("fieldsV1").unwrap_or(&json!({})))?;
        let id = ManagerId::new(s("manager"), operation, s("apiVersion"), s("subresource"));
        out.insert(
            id,
            Entry {
                set,
                api_version: s("apiVersion").to_string(),
                time: e.get("time").and_then(Value::as_str).map(str::to_string),
            },
        );
    }
    Some(out)
}

/// `metadata.managedFields` for a set of managers, in kube's order (operation, time, manager).
pub fn encode(m: &Managed) -> Value {
    let mut entries: Vec<(&ManagerId, &Entry)> = m.iter().collect();
    entries.sort_by(|(a, ea), (b, eb)| {
        (
            a.operation,
            &ea.time,
            &a.manager,
            &ea.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation,
                &eb.time,
                &b.manager,
                &eb.api_version,
                &b.subresource,
            ))
    });
    Value::Array(
        entries
            .into_iter()
            .map(|(id, e)| {
                let mut o = Map::new();
                o.insert("manager".into(), json!(id.manager));
                o.insert("operation".into(), json!(id.operation.as_str()));
                o.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    o.insert("time".into(), json!(t));
                }
                o.insert("fieldsType".into(), json!("FieldsV1"));
                o.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !id.subresource.is_empty() {
                    o.insert("subresource".into(), json!(id.subresource));
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// The managers to start from on a non-apply write: the request's own `managedFields` if it sets
/// valid, non-empty ones (and `[{}]` resets them), otherwise the live object's (`decodeLiveOrNew`).
pub fn base_for_update(live: Option<&Value>, new: &Value, subresource: bool) -> Managed {
    let from_live = || live.and_then(decode).unwrap_or_default();
    if subresource {
        return from_live();
    }
    match new.pointer("/metadata/managedFields") {
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty) => {
            Managed::new()
        }
        Some(Value::Array(a)) if !a.is_empty() => match decode(new) {
            Some(m) if !m.is_empty() => m,
            _ => from_live(),
        },
        _ => from_live(),
    }
}

/// An object without `metadata.managedFields` (what the field manager compares).
pub fn without_managed_fields(v: &Value) -> Value {
    let mut o = v.clone();
    if let Some(Value::Object(m)) = o.get_mut("metadata") {
        m.remove("managedFields");
    }
    o
}

/// Conflicts: the fields another manager owns that an apply would change.
pub type Conflicts = Vec<(ManagerId, Path)>;

/// `merge.Updater.update`: other managers lose the fields this write changes (a conflict for an
/// apply without `force`) and those it removes.
fn update_owners(
    live: Option<&Value>,
    new: &Value,
    ty: &Ty,
    managers: &mut Managed,
    workflow: &ManagerId,
    force: bool,
    scope: Scope,
) -> Result<smd::Comparison, Conflicts> {
    let c = smd::compare(live, Some(new), ty);
    let c = smd::Comparison {
        added: scope.filter(&c.added),
        modified: scope.filter(&c.modified),
        removed: scope.filter(&c.removed),
    };
    let changed = c.modified.union(&c.added);
    let mut conflicts: Conflicts = Vec::new();
    for (id, e) in managers.iter() {
        if id == workflow {
            continue;
        }
        for p in e.set.intersection(&changed).iter() {
            conflicts.push((id.clone(), p.clone()));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    for (id, e) in managers.iter_mut() {
        if id == workflow {
            continue;
        }
        e.set = e.set.difference(&changed).difference(&c.removed);
    }
    managers.retain(|_, e| !e.set.is_empty());
    Ok(c)
}

/// The Update operation (create, update, JSON/merge/strategic patch): `manager` takes the fields
/// this write added or changed, in addition to those it already had.
#[allow(clippy::too_many_arguments)]
pub fn update(
    live: Option<&Value>,
    new: &Value,
    ty: &Ty,
    managers: &mut Managed,
    manager: &ManagerId,
    api_version: &str,
    scope: Scope,
) {
    let current = ManagerId::new("current-operation", Operation::Update, "", "");
    let live = live.map(without_managed_fields);
    let new = without_managed_fields(new);
    let Ok(c) = update_owners(live.as_ref(), &new, ty, managers, &current, true, scope) else {
        return;
    };
    let set = c.modified.union(&c.added).difference(&strip_set());
    if set.is_empty() {
        return;
    }
    let mut entry = managers.remove(manager).unwrap_or(Entry {
        set: Set::new(),
        api_version: api_version.to_string(),
        time: None,
    });
    entry.set = entry.set.union(&set);
    entry.api_version = api_version.to_string();
    entry.time = Some(now());
    managers.insert(manager.clone(), entry);
    cap(managers);
}

/// Update entries beyond this many are merged into `ancient-changes` (`DefaultMaxUpdateManagers`).
const MAX_UPDATE_MANAGERS: usize = 10;

fn cap(managers: &mut Managed) {
    loop {
        let mut updaters: Vec<(ManagerId, Option<String>)> = managers
            .iter()
            .filter(|(id, _)| id.operation == Operation::Update && id.manager != "ancient-changes")
            .map(|(id, e)| (id.clone(), e.time.clone()))
            .collect();
        let buckets = managers
            .keys()
            .filter(|id| id.manager == "ancient-changes")
            .count();
        if updaters.len() + buckets <= MAX_UPDATE_MANAGERS || updaters.is_empty() {
            return;
        }
        updaters.sort_by(|a, b| a.1.cmp(&b.1));
        let (oldest, _) = updaters.remove(0);
        let Some(e) = managers.remove(&oldest) else {
            return;
        };
        let bucket = ManagerId::new("ancient-changes", Operation::Update, &e.api_version, "");
        let merged = match managers.remove(&bucket) {
            Some(b) => Entry {
                set: b.set.union(&e.set),
                api_version: e.api_version.clone(),
                time: e.time.clone().max(b.time),
            },
            None => e,
        };
        managers.insert(bucket, merged);
    }
}

/// Why an apply failed.
pub enum ApplyError {
    /// The configuration does not fit the schema (typing errors).
    Typing(Vec<String>),
    Conflicts(Conflicts),
}

/// `merge.Updater.prune`: remove what `manager` applied last time but not now, unless another
/// manager owns it (`addBackOwnedItems`) or it was never this manager's (`addBackDanglingItems`).
fn prune(merged: &Value, managers: &Managed, last: &Set, ty: &Ty) -> Value {
    if last.is_empty() {
        return merged.clone();
    }
    let last_e = ty.ensure_named_fields(last);
    let pruned = smd::remove_items(merged, &last_e, ty);
    let owned = ty.ensure_named_fields(
        &managers
            .values()
            .fold(Set::new(), |acc, e| acc.union(&e.set)),
    );
    let merged_set = ty.ensure_named_fields(&smd::field_set(merged, ty));
    let pruned_set = ty.ensure_named_fields(&smd::field_set(&pruned, ty));
    let pruned = smd::remove_items(
        merged,
        &merged_set.difference(&pruned_set.union(&owned)),
        ty,
    );
    let pruned_set = ty.ensure_named_fields(&smd::field_set(&pruned, ty));
    smd::remove_items(
        merged,
        &merged_set.difference(&pruned_set).intersection(&last_e),
        ty,
    )
}

/// The Apply operation: merge `config` into `live` (`{}` when creating) for `manager`. Returns
/// the new object (`None`: nothing changed) and updates `managers`.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: &Value,
    config: &Value,
    ty: &Ty,
    managers: &mut Managed,
    manager: &ManagerId,
    api_version: &str,
    force: bool,
    scope: Scope,
) -> Result<Option<Value>, ApplyError> {
    let config_set = smd::typed_field_set(config, ty).map_err(ApplyError::Typing)?;
    let live = without_managed_fields(live);
    let merged = smd::merge(Some(&live), Some(config), ty).unwrap_or_else(|| live.clone());
    let last = managers
        .get(manager)
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let before = managers.clone();
    managers.insert(
        manager.clone(),
        Entry {
            set: scope.filter(&config_set),
            api_version: api_version.to_string(),
            time: managers.get(manager).and_then(|e| e.time.clone()),
        },
    );
    let new = prune(&merged, managers, &last, ty);
    if let Err(c) = update_owners(Some(&live), &new, ty, managers, manager, force, scope) {
        *managers = before;
        return Err(ApplyError::Conflicts(c));
    }
    if let Some(e) = managers.get_mut(manager) {
        e.set = e.set.difference(&strip_set());
        if e.set.is_empty() {
            managers.remove(manager);
        }
    }
    if new == live {
        return Ok(None);
    }
    if let Some(e) = managers.get_mut(manager) {
        e.time = Some(now());
    }
    Ok(Some(new))
}

/// The 409 of an apply conflict (`NewConflictError`).
pub fn conflict_error(t: &crate::error::Target<'_>, conflicts: &Conflicts) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(id, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", id.describe()),
                   "field": render_path(p)})
        })
        .collect();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0.describe(),
            render_path(&conflicts[0].1)
        )
    } else {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, p) in conflicts {
            by.entry(id.describe()).or_default().push(render_path(p));
        }
        let mut lines = Vec::new();
        for (m, paths) in by {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let mut e = ApiError::new(409, "Conflict", message);
    let mut d = json!({"name": t.name, "kind": t.resource, "causes": causes});
    if !t.group.is_empty() {
        d["group"] = json!(t.group);
    }
    e.details = Some(d);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::from_openapi;

    fn ty() -> Ty {
        from_openapi(
            &json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                    "m": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "status": {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"},
                    "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}}}),
            true,
        )
    }

    fn cfg(v: Value) -> Value {
        let mut v = v;
        v["apiVersion"] = json!("x.io/v1");
        v["kind"] = json!("T");
        v["metadata"] = json!({"name": "t"});
        v
    }

    fn id(m: &str) -> ManagerId {
        ManagerId::new(m, Operation::Apply, "", "")
    }

    fn apply_ok(live: &Value, c: Value, m: &mut Managed, who: &str, force: bool) -> Value {
        match apply(
            live,
            &cfg(c),
            &ty(),
            m,
            &id(who),
            "x.io/v1",
            force,
            Scope::Everything,
        ) {
            Ok(Some(v)) => v,
            Ok(None) => live.clone(),
            Err(ApplyError::Typing(e)) => panic!("typing: {e:?}"),
            Err(ApplyError::Conflicts(c)) => panic!("conflicts: {c:?}"),
        }
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed_unless_co_owned() {
        let mut m = Managed::new();
        let live =
            json!({"apiVersion": "x.io/v1", "kind": "T", "metadata": {"name": "t", "uid": "u"}});
        let v = apply_ok(
            &live,
            json!({"spec": {"a": "1", "m": {"k1": "v", "k2": "v"}}, "status": {"conditions": [{"type": "A", "status": "T"}, {"type": "B", "status": "F"}]}}),
            &mut m,
            "one",
            false,
        );
        assert_eq!(v["metadata"]["uid"], "u", "server fields survive");
        // "two" co-owns spec.a (same value: no conflict) and owns status.x.
        let v = apply_ok(
            &v,
            json!({"spec": {"a": "1"}, "status": {"x": "2"}}),
            &mut m,
            "two",
            false,
        );
        // "one" stops applying spec.a, m.k2 and condition B.
        let v = apply_ok(
            &v,
            json!({"spec": {"m": {"k1": "v"}}, "status": {"conditions": [{"type": "A", "status": "T"}]}}),
            &mut m,
            "one",
            false,
        );
        assert_eq!(v["spec"]["a"], "1", "co-owned by two");
        assert_eq!(v["spec"]["m"], json!({"k1": "v"}));
        assert_eq!(
            v["status"]["conditions"],
            json!([{"type": "A", "status": "T"}])
        );
        assert_eq!(v["status"]["x"], "2");
        // "two" stops applying everything it had: spec.a goes, status.x goes.
        let v = apply_ok(&v, json!({}), &mut m, "two", false);
        assert!(v["spec"].get("a").is_none(), "{v}");
        assert!(v["status"].get("x").is_none(), "{v}");
        // The encoded managedFields round-trip.
        let mut obj = v.clone();
        obj["metadata"]["managedFields"] = encode(&m);
        assert_eq!(decode(&obj).unwrap(), m);
        let fields = &obj["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields["f:spec"], json!({"f:m": {"f:k1": {}}}));
    }

    #[test]
    fn conflicts_without_force_and_update_ownership() {
        let mut m = Managed::new();
        let live = json!({"apiVersion": "x.io/v1", "kind": "T", "metadata": {"name": "t"}});
        let v = apply_ok(
            &live,
            json!({"spec": {"a": "1", "b": "1"}}),
            &mut m,
            "one",
            false,
        );
        // An Update (e.g. kubectl edit) takes spec.b from "one" without a conflict.
        let mut edited = v.clone();
        edited["spec"]["b"] = json!("2");
        let editor = ManagerId::new("kubectl-edit", Operation::Update, "x.io/v1", "");
        update(
            Some(&v),
            &edited,
            &ty(),
            &mut m,
            &editor,
            "x.io/v1",
            Scope::Everything,
        );
        assert!(m[&editor].set.has(&[
            PathElement::Field("spec".into()),
            PathElement::Field("b".into())
        ]));
        // "one" re-applying b=1 now conflicts with the editor.
        match apply(
            &edited,
            &cfg(json!({"spec": {"a": "1", "b": "1"}})),
            &ty(),
            &mut m,
            &id("one"),
            "x.io/v1",
            false,
            Scope::Everything,
        ) {
            Err(ApplyError::Conflicts(c)) => {
                let e = conflict_error(
                    &crate::error::Target {
                        group: "x.io",
                        resource: "ts",
                        name: "t",
                    },
                    &c,
                );
                assert_eq!(e.code, 409);
                assert_eq!(
                    e.message,
                    "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using x.io/v1: .spec.b"
                );
            }
            _ => panic!("expected a conflict"),
        }
        // Forced: "one" takes it back; the editor loses it (and its now empty entry).
        let v = apply_ok(
            &edited,
            json!({"spec": {"a": "1", "b": "1"}}),
            &mut m,
            "one",
            true,
        );
        assert_eq!(v["spec"]["b"], "1");
        assert!(!m.contains_key(&editor));
        // The same values re-applied: a no-op.
        assert!(matches!(
            apply(
                &v,
                &cfg(json!({"spec": {"a": "1", "b": "1"}})),
                &ty(),
                &mut m,
                &id("one"),
                "x.io/v1",
                false,
                Scope::Everything
            ),
            Ok(None)
        ));
    }

    #[test]
    fn status_scope_and_caps() {
        let mut m = Managed::new();
        let live = json!({"apiVersion": "x.io/v1", "kind": "T", "metadata": {"name": "t"}, "spec": {"a": "1"}});
        let r = apply(
            &live,
            &cfg(json!({"spec": {"a": "9"}, "status": {"x": "1"}})),
            &ty(),
            &mut m,
            &ManagerId::new("st", Operation::Apply, "", "status"),
            "x.io/v1",
            false,
            Scope::OnlyStatus,
        );
        assert!(r.is_ok());
        let set = &m[&ManagerId::new("st", Operation::Apply, "", "status")].set;
        assert!(
            set.iter()
                .all(|p| p[0] == PathElement::Field("status".into())),
            "{set:?}"
        );
        let mut many = Managed::new();
        for i in 0..13 {
            let mut s = Set::new();
            s.insert(vec![PathElement::Field(format!("f{i}"))]);
            many.insert(
                ManagerId::new(&format!("m{i:02}"), Operation::Update, "v1", ""),
                Entry {
                    set: s,
                    api_version: "v1".into(),
                    time: Some(format!("2026-01-01T00:00:{i:02}Z")),
                },
            );
        }
        cap(&mut many);
        assert_eq!(many.len(), 10);
        let bucket = &many[&ManagerId::new("ancient-changes", Operation::Update, "v1", "")];
        assert_eq!(bucket.set.len(), 4);
    }
}
