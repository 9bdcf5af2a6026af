//! The value operations of structured-merge-diff (`typed/`) that server-side apply is built on:
//! a value's field set (with the "typed patch object" validation: undeclared fields, duplicate or
//! key-less list-map items, wrong JSON types), comparison of two values (added / modified /
//! removed paths), merge of an applied configuration into a live object (list-map items by key,
//! keeping their order), and removal of a set of paths.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::fieldpath::{Path, PathElement, Set, render_path};
use crate::schema::{ListKind, Scalar, Ty};

static DEDUCED: Ty = Ty::Deduced;
static NO_FIELDS: BTreeMap<String, Ty> = BTreeMap::new();

/// How a value is treated under a type.
enum Shape<'a> {
    Scalar(Scalar),
    List {
        elem: &'a Ty,
        kind: &'a ListKind,
    },
    Map {
        fields: &'a BTreeMap<String, Ty>,
        elem: Option<&'a Ty>,
        atomic: bool,
    },
}

static ATOMIC: ListKind = ListKind::Atomic;

fn shape<'a>(ty: &'a Ty, v: Option<&Value>) -> Shape<'a> {
    match ty {
        Ty::Scalar(s) => Shape::Scalar(*s),
        Ty::List { elem, kind } => Shape::List { elem, kind },
        Ty::Map {
            fields,
            elem,
            atomic,
        } => Shape::Map {
            fields,
            elem: elem.as_deref(),
            atomic: *atomic,
        },
        Ty::Deduced => match v {
            Some(Value::Object(_)) => Shape::Map {
                fields: &NO_FIELDS,
                elem: Some(&DEDUCED),
                atomic: false,
            },
            Some(Value::Array(_)) => Shape::List {
                elem: &DEDUCED,
                kind: &ATOMIC,
            },
            _ => Shape::Scalar(Scalar::Any),
        },
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// The path element of a list item (`k:` for list-maps, `v:` for sets).
pub fn list_item_pe(kind: &ListKind, item: &Value) -> Result<PathElement, String> {
    match kind {
        ListKind::Atomic => Err("atomic lists have no item paths".into()),
        ListKind::Set => {
            if item.is_object() || item.is_array() {
                return Err(format!(
                    "associative list without keys has an element that's a {}",
                    json_type(item)
                ));
            }
            Ok(PathElement::Value(item.to_string()))
        }
        ListKind::Map(keys) => {
            let m = item.as_object().ok_or_else(|| {
                format!(
                    "associative list with keys has an element that's not a map type ({})",
                    json_type(item)
                )
            })?;
            let mut kv = Vec::new();
            for (k, default) in keys {
                match m.get(k).or(default.as_ref()) {
                    Some(v) if !v.is_object() && !v.is_array() => {
                        kv.push((k.clone(), v.to_string()))
                    }
                    Some(_) => {
                        return Err(format!(
                            "associative list with keys has an element whose key field {k:?} is not a scalar"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                        ));
                    }
                }
            }
            kv.sort();
            Ok(PathElement::Key(kv))
        }
    }
}

fn scalar_ok(kind: Scalar, v: &Value) -> Option<String> {
    if v.is_null() {
        return None;
    }
    match kind {
        Scalar::String if !v.is_string() => Some(format!("expected string, got {v}")),
        Scalar::Integer | Scalar::Number if !v.is_number() => Some(format!(
            "expected numeric (int or float), got {}",
            json_type(v)
        )),
        Scalar::Boolean if !v.is_boolean() => Some(format!("expected boolean, got {v}")),
        Scalar::Any if v.is_object() || v.is_array() => {
            Some(format!("expected scalar, got {}", json_type(v)))
        }
        _ => None,
    }
}

/// Errors of typing a value (`ValidationErrors.Error()` of structured-merge-diff).
pub fn render_errors(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        let mut s = "errors:".to_string();
        for e in errs {
            s.push_str("\n  ");
            s.push_str(e);
        }
        s
    }
}

struct FieldSetWalk<'e> {
    set: Set,
    /// `Some`: validate like `ObjectToTyped` without `AllowDuplicates` (an applied config).
    errs: Option<&'e mut Vec<String>>,
}

impl FieldSetWalk<'_> {
    fn err(&mut self, path: &Path, msg: String) {
        if let Some(e) = self.errs.as_deref_mut() {
            e.push(if path.is_empty() {
                msg
            } else {
                format!("{}: {msg}", render_path(path))
            });
        }
    }

    fn walk(&mut self, v: &Value, ty: &Ty, path: &mut Path) {
        match shape(ty, Some(v)) {
            Shape::Scalar(kind) => {
                if let Some(m) = scalar_ok(kind, v) {
                    self.err(path, m);
                }
                self.set.insert(path.clone());
            }
            Shape::List { kind, elem } => {
                if matches!(kind, ListKind::Atomic) {
                    if !v.is_array() && !v.is_null() {
                        self.err(path, format!("expected list, got {}", json_type(v)));
                    }
                    self.set.insert(path.clone());
                    return;
                }
                let Value::Array(items) = v else {
                    if !v.is_null() {
                        self.err(path, format!("expected list, got {}", json_type(v)));
                    }
                    return;
                };
                let mut seen = std::collections::HashSet::new();
                for item in items {
                    let pe = match list_item_pe(kind, item) {
                        Ok(pe) => pe,
                        Err(e) => {
                            self.err(path, e);
                            continue;
                        }
                    };
                    if !seen.insert(pe.clone()) {
                        self.err(path, format!("duplicate entries for key {}", pe.render()));
                    }
                    path.push(pe);
                    self.walk(item, elem, path);
                    self.set.insert(path.clone());
                    path.pop();
                }
            }
            Shape::Map {
                fields,
                elem,
                atomic,
            } => {
                if atomic {
                    if !v.is_object() && !v.is_null() {
                        self.err(path, format!("expected map, got {}", json_type(v)));
                    }
                    self.set.insert(path.clone());
                    return;
                }
                let Value::Object(m) = v else {
                    if !v.is_null() {
                        self.err(path, format!("expected map, got {}", json_type(v)));
                    }
                    return;
                };
                for (k, val) in m {
                    let (cty, named) = match fields.get(k) {
                        Some(t) => (t, true),
                        None => match elem {
                            Some(t) => (t, false),
                            None => {
                                path.push(PathElement::Field(k.clone()));
                                self.err(path, "field not declared in schema".into());
                                path.pop();
                                continue;
                            }
                        },
                    };
                    path.push(PathElement::Field(k.clone()));
                    self.walk(val, cty, path);
                    let empty_map = val.as_object().is_some_and(Map::is_empty);
                    if val.is_null() || empty_map || !named {
                        self.set.insert(path.clone());
                    }
                    path.pop();
                }
            }
        }
    }
}

/// The field set of a value (a live object: lenient, like `AllowDuplicates`).
pub fn field_set(v: &Value, ty: &Ty) -> Set {
    let mut w = FieldSetWalk {
        set: Set::new(),
        errs: None,
    };
    w.walk(v, ty, &mut Vec::new());
    w.set
}

/// The field set of an applied configuration, or its typing errors ("field not declared in
/// schema", duplicate list-map keys, wrong JSON types).
pub fn typed_field_set(v: &Value, ty: &Ty) -> Result<Set, Vec<String>> {
    let mut errs = Vec::new();
    let mut w = FieldSetWalk {
        set: Set::new(),
        errs: Some(&mut errs),
    };
    w.walk(v, ty, &mut Vec::new());
    let set = w.set;
    if errs.is_empty() { Ok(set) } else { Err(errs) }
}

/// Paths added, modified and removed between two values.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn same_kind(l: &Value, r: &Value) -> bool {
    matches!(
        (l, r),
        (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_))
    )
}

/// Index list items by path element (first occurrence wins; items without one are skipped).
fn index_items<'v>(
    kind: &ListKind,
    items: &'v [Value],
) -> (Vec<PathElement>, HashMap<PathElement, &'v Value>) {
    let mut order = Vec::new();
    let mut by = HashMap::new();
    for item in items {
        if let Ok(pe) = list_item_pe(kind, item) {
            order.push(pe.clone());
            by.entry(pe).or_insert(item);
        }
    }
    (order, by)
}

/// `lhs.Compare(rhs)`.
pub fn compare(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty) -> Comparison {
    let mut c = Comparison::default();
    cmp(lhs, rhs, ty, &mut Vec::new(), &mut c);
    c
}

fn leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &Path, c: &mut Comparison) {
    match (lhs, rhs) {
        (None, Some(_)) => c.added.insert(path.clone()),
        (Some(_), None) => c.removed.insert(path.clone()),
        (Some(l), Some(r)) if l != r => c.modified.insert(path.clone()),
        _ => {}
    }
}

fn cmp(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty, path: &mut Path, c: &mut Comparison) {
    if lhs.is_none() && rhs.is_none() {
        return;
    }
    if let (Some(l), Some(r)) = (lhs, rhs)
        && !same_kind(l, r)
        && (l.is_object() || l.is_array() || r.is_object() || r.is_array())
    {
        return leaf(lhs, rhs, path, c);
    }
    let both_empty = is_empty_container(lhs) && is_empty_container(rhs);
    match shape(ty, rhs.or(lhs)) {
        Shape::Scalar(_) => leaf(lhs, rhs, path, c),
        Shape::List { kind, elem } => {
            if matches!(kind, ListKind::Atomic) || both_empty {
                return leaf(lhs, rhs, path, c);
            }
            let empty = Vec::new();
            let l = lhs.and_then(Value::as_array).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_array).unwrap_or(&empty);
            let (lo, lm) = index_items(kind, l);
            let (ro, rm) = index_items(kind, r);
            let mut seen = std::collections::HashSet::new();
            for pe in lo.iter().chain(ro.iter()) {
                if !seen.insert(pe.clone()) {
                    continue;
                }
                path.push(pe.clone());
                cmp(lm.get(pe).copied(), rm.get(pe).copied(), elem, path, c);
                path.pop();
            }
            container(lhs, rhs, path, c);
        }
        Shape::Map {
            fields,
            elem,
            atomic,
        } => {
            if atomic || both_empty {
                return leaf(lhs, rhs, path, c);
            }
            let empty = Map::new();
            let l = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let r = rhs.and_then(Value::as_object).unwrap_or(&empty);
            for k in l.keys().chain(r.keys().filter(|k| !l.contains_key(*k))) {
                let cty = fields.get(k).or(elem).unwrap_or(&DEDUCED);
                path.push(PathElement::Field(k.clone()));
                cmp(l.get(k), r.get(k), cty, path, c);
                path.pop();
            }
            container(lhs, rhs, path, c);
        }
    }
}

fn container(lhs: Option<&Value>, rhs: Option<&Value>, path: &Path, c: &mut Comparison) {
    match (lhs, rhs) {
        (None, Some(_)) => c.added.insert(path.clone()),
        (Some(_), None) => c.removed.insert(path.clone()),
        _ => {}
    }
}

/// `live.Merge(config)`: the applied configuration wins for every field it sets; maps merge key
/// by key, list-maps and sets item by item (keeping the configuration's order for its items and
/// the live position of the others), atomic lists/maps and scalars are replaced.
pub fn merge(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty) -> Option<Value> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(l), None) => return Some(l.clone()),
        (None, Some(r)) => return Some(r.clone()),
        (Some(l), Some(r)) => (l, r),
    };
    if !same_kind(l, r) || (is_empty_container(lhs) && is_empty_container(rhs)) {
        return Some(r.clone());
    }
    match shape(ty, Some(r)) {
        Shape::Scalar(_) => Some(r.clone()),
        Shape::List { kind, elem } => {
            if matches!(kind, ListKind::Atomic) {
                return Some(r.clone());
            }
            let (Value::Array(la), Value::Array(ra)) = (l, r) else {
                return Some(r.clone());
            };
            Some(Value::Array(merge_list(kind, elem, la, ra)))
        }
        Shape::Map {
            fields,
            elem,
            atomic,
        } => {
            if atomic {
                return Some(r.clone());
            }
            let (Value::Object(lm), Value::Object(rm)) = (l, r) else {
                return Some(r.clone());
            };
            let mut out = lm.clone();
            for (k, rv) in rm {
                let cty = fields.get(k).or(elem).unwrap_or(&DEDUCED);
                if let Some(v) = merge(lm.get(k), Some(rv), cty) {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
    }
}

fn merge_list(kind: &ListKind, elem: &Ty, la: &[Value], ra: &[Value]) -> Vec<Value> {
    let pes = |items: &[Value]| -> Vec<Option<PathElement>> {
        items.iter().map(|i| list_item_pe(kind, i).ok()).collect()
    };
    let lpe = pes(la);
    let rpe = pes(ra);
    let mut observed_l: HashMap<&PathElement, &Value> = HashMap::new();
    for (pe, item) in lpe.iter().zip(la) {
        if let Some(pe) = pe {
            observed_l.entry(pe).or_insert(item);
        }
    }
    let mut observed_r: HashMap<&PathElement, &Value> = HashMap::new();
    for (pe, item) in rpe.iter().zip(ra) {
        if let Some(pe) = pe {
            observed_r.insert(pe, item);
        }
    }
    let mut shared: VecDeque<&PathElement> = rpe
        .iter()
        .flatten()
        .filter(|pe| observed_l.contains_key(pe))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_r: std::collections::HashSet<&PathElement> = std::collections::HashSet::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    while li < la.len() || ri < ra.len() {
        if li < la.len() && ri < ra.len() {
            if let (Some(lp), Some(rp)) = (&lpe[li], &rpe[ri])
                && lp == rp
            {
                merged_r.insert(lp);
                if let Some(v) = merge(
                    observed_l.get(lp).copied(),
                    observed_r.get(lp).copied(),
                    elem,
                ) {
                    out.push(v);
                }
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if let Some(lp) = &lpe[li]
                && observed_r.contains_key(lp)
                && next_shared.is_some_and(|n| n != lp)
            {
                li += 1;
                continue;
            }
        }
        if li < la.len() {
            match &lpe[li] {
                Some(lp) if observed_r.contains_key(lp) => {
                    if merged_r.contains(lp) {
                        li += 1;
                        continue;
                    }
                }
                _ => {
                    out.push(la[li].clone());
                    li += 1;
                    continue;
                }
            }
        }
        if ri < ra.len() {
            match &rpe[ri] {
                Some(rp) => {
                    merged_r.insert(rp);
                    if let Some(v) = merge(observed_l.get(rp).copied(), Some(&ra[ri]), elem) {
                        out.push(v);
                    }
                    if next_shared.is_some_and(|n| n == rp) {
                        next_shared = shared.pop_front();
                    }
                }
                None => out.push(ra[ri].clone()),
            }
            ri += 1;
        }
    }
    out
}

/// `RemoveItems`: drop every member path of `set` (and everything below it) from `v`. A map or
/// list left with nothing becomes `null`, as in structured-merge-diff.
pub fn remove_items(v: &Value, set: &Set, ty: &Ty) -> Value {
    match shape(ty, Some(v)) {
        Shape::Scalar(_) => v.clone(),
        Shape::List { kind, elem } => {
            let Value::Array(items) = v else {
                return Value::Null;
            };
            if items.is_empty() || matches!(kind, ListKind::Atomic) {
                return Value::Null;
            }
            let mut out = Vec::new();
            for item in items {
                let Ok(pe) = list_item_pe(kind, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                if set.has_children(&pe) {
                    out.push(remove_items(item, &set.with_prefix(&pe), elem));
                } else {
                    out.push(item.clone());
                }
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Array(out)
            }
        }
        Shape::Map {
            fields,
            elem,
            atomic,
        } => {
            let Value::Object(m) = v else {
                return Value::Null;
            };
            if m.is_empty() || atomic {
                return Value::Null;
            }
            let mut out = Map::new();
            for (k, val) in m {
                let pe = PathElement::Field(k.clone());
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                if set.has_children(&pe) {
                    let cty = fields.get(k).or(elem).unwrap_or(&DEDUCED);
                    out.insert(k.clone(), remove_items(val, &set.with_prefix(&pe), cty));
                } else {
                    out.insert(k.clone(), val.clone());
                }
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Object(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::from_openapi;
    use serde_json::json;

    fn ty() -> Ty {
        from_openapi(
            &json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "size": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "status": {"type": "object", "properties": {"conditions": {"type": "array",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}}}),
            true,
        )
    }

    fn paths(s: &Set) -> Vec<String> {
        s.iter().map(|p| render_path(p)).collect()
    }

    #[test]
    fn field_sets_follow_granularity() {
        let v = json!({"spec": {"size": 1, "tags": ["a"], "labels": {"x": "y"}},
                        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(
            paths(&typed_field_set(&v, &ty()).unwrap()),
            [
                ".spec.labels.x",
                ".spec.size",
                ".spec.tags",
                ".status.conditions[type=\"Ready\"]",
                ".status.conditions[type=\"Ready\"].status",
                ".status.conditions[type=\"Ready\"].type",
            ]
        );
        let bad = json!({"spec": {"size": "x", "bogus": 1},
                          "status": {"conditions": [{"status": "True"}, {"type": "A"}, {"type": "A"}]}});
        let errs = typed_field_set(&bad, &ty()).unwrap_err();
        assert!(
            errs.contains(&".spec.bogus: field not declared in schema".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&".spec.size: expected numeric (int or float), got string".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("omits key field \"type\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("duplicate entries for key [type=\"A\"]")),
            "{errs:?}"
        );
    }

    #[test]
    fn compare_and_merge() {
        let l = json!({"spec": {"size": 1, "tags": ["a"]}, "status": {"conditions": [{"type": "A", "status": "True"}]}});
        let r = json!({"spec": {"size": 2, "tags": ["a"], "labels": {"k": "v"}}, "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "B"}]}});
        let c = compare(Some(&l), Some(&r), &ty());
        assert_eq!(
            paths(&c.modified),
            [".spec.size", ".status.conditions[type=\"A\"].status"]
        );
        assert_eq!(
            paths(&c.added),
            [
                ".spec.labels",
                ".spec.labels.k",
                ".status.conditions[type=\"B\"]",
                ".status.conditions[type=\"B\"].type"
            ]
        );
        assert!(c.removed.is_empty());
        // Merge keeps live items the config does not mention, in place; config order otherwise.
        let live = json!({"status": {"conditions": [{"type": "D"}, {"type": "P"}, {"type": "R", "status": "x"}]}});
        let cfg = json!({"status": {"conditions": [{"type": "D"}, {"type": "M"}, {"type": "R", "status": "y"}]}});
        let m = merge(Some(&live), Some(&cfg), &ty()).unwrap();
        assert_eq!(
            m["status"]["conditions"],
            json!([{"type": "D"}, {"type": "P"}, {"type": "M"}, {"type": "R", "status": "y"}])
        );
        // A config that lists every live item keeps its own order.
        let cfg = json!({"status": {"conditions": [{"type": "D"}, {"type": "M"}, {"type": "P"}, {"type": "R"}]}});
        let m = merge(Some(&live), Some(&cfg), &ty()).unwrap();
        let types: Vec<&str> = m["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["D", "M", "P", "R"]);
        // Atomic lists are replaced, maps merge, nulls are kept.
        let m = merge(
            Some(&json!({"spec": {"tags": ["a", "b"], "labels": {"a": "1"}}})),
            Some(&json!({"spec": {"tags": ["c"], "labels": {"b": "2"}, "size": null}})),
            &ty(),
        )
        .unwrap();
        assert_eq!(
            m,
            json!({"spec": {"tags": ["c"], "labels": {"a": "1", "b": "2"}, "size": null}})
        );
    }

    #[test]
    fn remove_items_drops_members_and_subtrees() {
        let v = json!({"spec": {"size": 1, "labels": {"a": "1", "b": "2"}}, "status": {"conditions": [{"type": "A"}, {"type": "B"}]}});
        let mut s = Set::new();
        s.insert(vec![
            PathElement::Field("spec".into()),
            PathElement::Field("labels".into()),
            PathElement::Field("a".into()),
        ]);
        s.insert(vec![
            PathElement::Field("status".into()),
            PathElement::Field("conditions".into()),
            PathElement::Key(vec![("type".into(), "\"A\"".into())]),
        ]);
        assert_eq!(
            remove_items(&v, &s, &ty()),
            json!({"spec": {"size": 1, "labels": {"b": "2"}}, "status": {"conditions": [{"type": "B"}]}})
        );
    }
}
