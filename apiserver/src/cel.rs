//! CEL `x-kubernetes-validations` evaluated the way apiextensions-apiserver does: rule by rule
//! at each schema node (with the `kube-cel` evaluator), never on a `null` value, with the old
//! value correlated by field name, map key, list-map key or set value (items of atomic lists have
//! no old value); transition rules (using `oldSelf`) run only with an old value (or
//! `optionalOldSelf`); other rules are ratcheted: an unchanged value is not re-validated. Also the
//! ratcheting of schema errors on unchanged values (KEP-4008).

use serde_json::Value;

use crate::error::FieldError;

/// A schema node without the rules of its descendants (each node's rules run on their own).
pub(crate) fn node_only(schema: &Value) -> Value {
    fn strip(v: &mut Value) {
        if let Value::Object(m) = v {
            m.remove("x-kubernetes-validations");
            for k in ["properties"] {
                if let Some(Value::Object(props)) = m.get_mut(k) {
                    for p in props.values_mut() {
                        strip(p);
                    }
                }
            }
            for k in ["items", "additionalProperties"] {
                if let Some(c) = m.get_mut(k) {
                    strip(c);
                }
            }
            for k in ["allOf", "anyOf", "oneOf"] {
                if let Some(Value::Array(a)) = m.get_mut(k) {
                    a.iter_mut().for_each(strip);
                }
            }
        }
    }
    let mut s = schema.clone();
    if let Value::Object(m) = &mut s {
        let own = m.remove("x-kubernetes-validations");
        let mut rest = Value::Object(m.clone());
        strip(&mut rest);
        if let (Value::Object(r), Some(own)) = (&mut rest, own) {
            r.insert("x-kubernetes-validations".into(), own);
        }
        return rest;
    }
    s
}

pub fn uses_old_self(rule: &str) -> bool {
    let b = rule.as_bytes();
    rule.match_indices("oldSelf").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 7).copied();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The old list item correlated with `item` (list-map by keys, set by value; atomic: none).
fn correlate<'a>(schema: &Value, item: &Value, old_list: Option<&'a Value>) -> Option<&'a Value> {
    let old = old_list?.as_array()?;
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            old.iter()
                .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
        }
        Some("set") => old.iter().find(|o| *o == item),
        _ => None,
    }
}

/// Evaluate every rule of `schema` against `obj` (`old` on updates).
pub fn validate_cel(obj: &Value, schema: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    walk(obj, old, schema, "", &mut errs);
    errs
}

fn walk(v: &Value, old: Option<&Value>, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    // Rules never run on null (an unset nullable field).
    if v.is_null() {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    if let Some(rules) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        let unchanged = old.is_some_and(|o| o == v);
        let mut run: Vec<Value> = Vec::new();
        for r in rules {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or("");
            let optional_old = r.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
            if uses_old_self(rule) {
                // Transition rules: only with a correlated old value, never ratcheted.
                if old.is_none() && !optional_old {
                    continue;
                }
            } else if unchanged {
                // Ratcheting: an unchanged value keeps passing whatever the rule says now.
                continue;
            }
            run.push(r.clone());
        }
        if !run.is_empty() {
            let mut node = node_only(schema);
            node["x-kubernetes-validations"] = Value::Array(run);
            if let Err(e) = kube_cel::validate(&node, v, old) {
                for e in e.as_slice() {
                    let field = if e.field_path.is_empty() {
                        path.to_string()
                    } else if path.is_empty() {
                        e.field_path.clone()
                    } else {
                        format!("{path}.{}", e.field_path.trim_start_matches('.'))
                    };
                    let reason = match e.reason.as_deref() {
                        Some("FieldValueForbidden") => "FieldValueForbidden",
                        Some("FieldValueRequired") => "FieldValueRequired",
                        Some("FieldValueDuplicate") => "FieldValueDuplicate",
                        _ => "FieldValueInvalid",
                    };
                    let shown = if field.is_empty() {
                        "<nil>".to_string()
                    } else {
                        field.clone()
                    };
                    let mut fe = FieldError::invalid(
                        &shown,
                        &Value::String(type_name(v).into()),
                        e.message.clone(),
                    );
                    fe.reason = reason;
                    if reason != "FieldValueInvalid" {
                        fe.value = None;
                    }
                    errs.push(fe);
                }
            }
        }
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let addl = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m {
                let cs = props.and_then(|p| p.get(k)).or(addl);
                if let Some(cs) = cs {
                    walk(child, old.and_then(|o| o.get(k)), cs, &join(path, k), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let oi = correlate(schema, item, old);
                    walk(item, oi, is, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = schema.get(k) {
            for b in branches {
                walk(v, old, b, path, errs);
            }
        }
    }
}

/// The new and the correlated old value at an error's field path (`spec.a[2].b`).
fn resolve<'a>(
    path: &str,
    new: &'a Value,
    old: &'a Value,
    schema: &Value,
) -> (Option<&'a Value>, Option<&'a Value>) {
    let mut n = Some(new);
    let mut o = Some(old);
    let mut s = Some(schema);
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (name, idx) = match seg.split_once('[') {
            Some((a, rest)) => (a, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !name.is_empty() {
            n = n.and_then(|v| v.get(name));
            o = o.and_then(|v| v.get(name));
            s = s.and_then(|s| {
                s.get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
            });
        }
        if let Some(i) = idx {
            let list_schema = s;
            let item = n.and_then(|v| v.get(i));
            o = match (item, list_schema) {
                (Some(it), Some(ls))
                    if ls
                        .get("x-kubernetes-list-type")
                        .and_then(Value::as_str)
                        .is_some() =>
                {
                    correlate(ls, it, o)
                }
                // Atomic list: an item is unchanged only when the whole list is.
                _ => match (n, o) {
                    (Some(nl), Some(ol)) if nl == ol => ol.get(i),
                    _ => None,
                },
            };
            n = item;
            s = list_schema.and_then(|l| l.get("items"));
        }
    }
    (n, o)
}

/// Drop schema errors raised on values the update did not change (validation ratcheting), except
/// for the validations kube never ratchets (`required`, list uniqueness, `anyOf`/`oneOf`/`not`).
pub fn ratchet_schema_errors(
    errs: Vec<FieldError>,
    new: &Value,
    old: &Value,
    schema: &Value,
) -> Vec<FieldError> {
    errs.into_iter()
        .filter(|e| {
            let never = matches!(e.reason, "FieldValueRequired" | "FieldValueDuplicate")
                || ["in anyOf", "in oneOf", "schema in not"]
                    .iter()
                    .any(|m| e.detail.contains(m));
            if never {
                return true;
            }
            let (n, o) = resolve(&e.field, new, old, schema);
            !(n.is_some() && n == o)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(e: &[FieldError]) -> Vec<String> {
        e.iter().map(FieldError::render).collect()
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "size too big"}],
            "properties": {
                "size": {"type": "integer"},
                "engine": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "engine is immutable"}]},
                "name": {"type": "string", "nullable": true, "x-kubernetes-validations": [
                    {"rule": "self == oldSelf", "message": "name is immutable"},
                    {"rule": "self.startsWith('a')", "message": "name must start with a"}]},
                "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                    "items": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "integer",
                        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "v is immutable"}]}}}}}}}})
    }

    #[test]
    fn rules_transition_rules_nulls_and_correlation() {
        let new = json!({"spec": {"size": 11, "engine": "mongodb"}});
        let old = json!({"spec": {"size": 1, "engine": "postgres"}});
        assert_eq!(
            render(&validate_cel(&new, &schema(), None)),
            ["spec: Invalid value: \"object\": size too big"]
        );
        assert!(
            render(&validate_cel(&new, &schema(), Some(&old))).contains(
                &"spec.engine: Invalid value: \"string\": engine is immutable".to_string()
            )
        );
        // null: no rule runs (neither the transition rule nor the plain one).
        let with_null = json!({"spec": {"size": 1, "name": null}});
        let was_set = json!({"spec": {"size": 1, "name": "abc"}});
        assert!(validate_cel(&with_null, &schema(), Some(&was_set)).is_empty());
        // list-map items are correlated by key, not by index.
        let old_items =
            json!({"spec": {"size": 1, "items": [{"k": "a", "v": 1}, {"k": "b", "v": 2}]}});
        let reordered =
            json!({"spec": {"size": 1, "items": [{"k": "b", "v": 2}, {"k": "a", "v": 1}]}});
        assert!(validate_cel(&reordered, &schema(), Some(&old_items)).is_empty());
        let changed =
            json!({"spec": {"size": 1, "items": [{"k": "b", "v": 3}, {"k": "a", "v": 1}]}});
        assert_eq!(
            render(&validate_cel(&changed, &schema(), Some(&old_items))),
            ["spec.items[0].v: Invalid value: \"integer\": v is immutable"]
        );
    }

    #[test]
    fn ratcheting() {
        // An unchanged value that violates a (new) plain rule is accepted on update...
        let old = json!({"spec": {"size": 1, "name": "zed"}});
        let same = json!({"spec": {"size": 2, "name": "zed"}});
        assert!(validate_cel(&same, &schema(), Some(&old)).is_empty());
        // ...but not when it changes, and transition rules always run.
        let changed = json!({"spec": {"size": 2, "name": "zoe"}});
        let e = render(&validate_cel(&changed, &schema(), Some(&old)));
        assert!(
            e.contains(&"spec.name: Invalid value: \"string\": name must start with a".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"spec.name: Invalid value: \"string\": name is immutable".to_string()),
            "{e:?}"
        );
        // Schema errors on unchanged values are ratcheted, on changed ones kept.
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string", "maxLength": 2}, "b": {"type": "string", "maxLength": 2}}}}});
        let errs = vec![
            FieldError::too_long("spec.a", 2),
            FieldError::too_long("spec.b", 2),
            FieldError::required("spec.c"),
        ];
        let kept = ratchet_schema_errors(
            errs,
            &json!({"spec": {"a": "xxx", "b": "yyy"}}),
            &json!({"spec": {"a": "xxx", "b": "zzz"}}),
            &s,
        );
        assert_eq!(
            render(&kept),
            [
                "spec.b: Too long: may not be more than 2 bytes",
                "spec.c: Required value"
            ]
        );
        assert!(uses_old_self("self == oldSelf") && !uses_old_self("self.oldSelfish == 1"));
    }
}
