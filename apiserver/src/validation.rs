//! Structural-schema processing for custom resources (pruning, defaulting, validation) and
//! object-meta validation, with messages in the real API server's style.

use base64::Engine as _;
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::error::FieldError;

/// Result of [`process_custom_resource`].
#[derive(Debug, Default)]
pub struct Processed {
    /// Validation failures (422).
    pub errors: Vec<FieldError>,
    /// Dotted paths of unknown fields that were pruned (for `fieldValidation=Strict|Warn`).
    pub pruned: Vec<String>,
}

/// Prune unknown fields, drop non-nullable nulls, apply defaults, then validate.
/// `obj` is the whole object; `apiVersion`, `kind` and `metadata` are left to the server.
pub fn process_custom_resource(obj: &mut Value, schema: &Value) -> Processed {
    process_custom_resource_with(obj, schema, true)
}

/// [`process_custom_resource`]; `drop_nulls: false` keeps `null`s of non-nullable fields (an
/// apply result is not decoded: they fail validation instead).
pub fn process_custom_resource_with(
    obj: &mut Value,
    schema: &Value,
    drop_nulls: bool,
) -> Processed {
    let mut pruned = Vec::new();
    if let Value::Object(m) = obj {
        for (k, v) in m.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = prop_schema(schema, k) {
                prune_rec(v, s, k, &mut pruned, drop_nulls);
            }
        }
        let preserve = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true);
        if !preserve {
            m.retain(|k, _| {
                let keep = matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    || prop_schema(schema, k).is_some();
                if !keep {
                    pruned.push(k.clone());
                }
                keep
            });
        }
        if drop_nulls {
            drop_nulls_top(m, schema);
        }
    }
    default_rec(obj, schema, true);
    let mut errors = Vec::new();
    validate_rec(obj, schema, "", &mut errors, true);
    Processed { errors, pruned }
}

/// Prune a value (not an object root) against its schema node; `pruned` gets the unknown fields.
pub fn prune_value(v: &mut Value, schema: &Value, pruned: &mut Vec<String>) {
    prune_rec(v, schema, "", pruned, false);
}

/// Validate a value against its schema node (defaults of a CRD schema).
pub fn validate_value(v: &Value, schema: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_rec(v, schema, "", &mut errs, false);
    errs
}

fn prop_schema<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

fn drop_nulls_top(m: &mut Map<String, Value>, schema: &Value) {
    m.retain(|k, v| {
        !v.is_null()
            || matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
            || prop_schema(schema, k).is_some_and(nullable)
    });
}

fn prune_rec(
    v: &mut Value,
    schema: &Value,
    path: &str,
    pruned: &mut Vec<String>,
    drop_nulls: bool,
) {
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let embedded = schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    match v {
        Value::Object(m) => {
            let has_props = schema.get("properties").is_some();
            let addl = schema.get("additionalProperties");
            let addl_any = addl.and_then(Value::as_bool) == Some(true);
            for (k, child) in m.iter_mut() {
                if let Some(s) = prop_schema(schema, k) {
                    prune_rec(child, s, &join(path, k), pruned, drop_nulls);
                }
            }
            if !preserve && !addl_any && (has_props || addl.is_none()) {
                m.retain(|k, _| {
                    let keep = prop_schema(schema, k).is_some()
                        || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
                    if !keep {
                        pruned.push(join(path, k));
                    }
                    keep
                });
            }
            if drop_nulls {
                m.retain(|k, c| !c.is_null() || prop_schema(schema, k).is_none_or(nullable));
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter_mut().enumerate() {
                    prune_rec(x, items, &format!("{path}[{i}]"), pruned, drop_nulls);
                }
            }
        }
        _ => {}
    }
}

fn default_rec(v: &mut Value, schema: &Value, root: bool) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (k, ps) in props {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if !m.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, child) in m.iter_mut() {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = prop_schema(schema, k) {
                    default_rec(child, s, false);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for x in a.iter_mut() {
                    default_rec(x, items, false);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
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

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_ok(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => is_integer(v),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn regex_cached(pattern: &str) -> Option<Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut g = cache.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok())
        .clone()
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => {
            s.len() == 36
                && s.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        }
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "hostname" => crate::objectmeta::is_dns1123_subdomain(s),
        "email" => s
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.')),
        _ => true,
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn validate_rec(v: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>, root: bool) {
    let field = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if !nullable(schema) && schema.get("type").is_some() {
            errs.push(FieldError::type_invalid(
                path,
                v,
                format!(
                    "{field} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if int_or_string {
        if !(v.is_string() || is_integer(v)) {
            errs.push(FieldError::type_invalid(
                path,
                v,
                format!(
                    "{field} in body must be of type integer or string: \"{}\"",
                    type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str)
        && !type_ok(v, ty)
    {
        errs.push(FieldError::type_invalid(
            path,
            v,
            format!("{field} in body must be of type {ty}: \"{}\"", type_name(v)),
        ));
        return;
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(v)
    {
        errs.push(FieldError::not_supported(path, v, allowed));
    }
    match v {
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                errs.push(FieldError::too_long(path, max));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{field} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && regex_cached(p).is_some_and(|re| !re.is_match(s))
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{field} in body should match '{p}'"),
                ));
            }
            if let Some(f) = schema.get("format").and_then(Value::as_str)
                && !format_ok(f, s)
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{field} in body must be of type {f}: {v}"),
                ));
            }
        }
        Value::Number(_) => {
            let x = num(v).unwrap_or(0.0);
            let excl_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            let excl_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(num) {
                if excl_min && x <= min {
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        format!(
                            "{field} in body should be greater than {}",
                            schema["minimum"]
                        ),
                    ));
                } else if x < min {
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        format!(
                            "{field} in body should be greater than or equal to {}",
                            schema["minimum"]
                        ),
                    ));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(num) {
                if excl_max && x >= max {
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        format!("{field} in body should be less than {}", schema["maximum"]),
                    ));
                } else if x > max {
                    errs.push(FieldError::invalid(
                        path,
                        v,
                        format!(
                            "{field} in body should be less than or equal to {}",
                            schema["maximum"]
                        ),
                    ));
                }
            }
            if let Some(m) = schema.get("multipleOf").and_then(num)
                && m != 0.0
                && (x / m).fract() != 0.0
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!(
                        "{field} in body should be a multiple of {}",
                        schema["multipleOf"]
                    ),
                ));
            }
        }
        Value::Array(a) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && a.len() as u64 > max
            {
                errs.push(FieldError::too_many(path, a.len(), max));
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (a.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{field} in body should have at least {min} items"),
                ));
            }
            let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
            if list_type == Some("map") {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let key_of = |x: &Value| -> Vec<Value> {
                    keys.iter()
                        .map(|k| x.get(*k).cloned().unwrap_or(Value::Null))
                        .collect()
                };
                for (i, x) in a.iter().enumerate() {
                    if a[..i].iter().any(|y| key_of(y) == key_of(x)) {
                        let shown: serde_json::Map<String, Value> = keys
                            .iter()
                            .map(|k| (k.to_string(), x.get(*k).cloned().unwrap_or(Value::Null)))
                            .collect();
                        errs.push(FieldError {
                            reason: "FieldValueDuplicate",
                            field: format!("{path}[{i}]"),
                            value: Some(Value::Object(shown).to_string()),
                            detail: String::new(),
                        });
                    }
                }
            }
            if list_type == Some("set")
                || schema.get("uniqueItems").and_then(Value::as_bool) == Some(true)
            {
                for (i, x) in a.iter().enumerate() {
                    if a[..i].contains(x) {
                        errs.push(FieldError {
                            reason: "FieldValueDuplicate",
                            field: format!("{path}[{i}]"),
                            value: Some(crate::error::render_value(x)),
                            detail: String::new(),
                        });
                    }
                }
            }
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    validate_rec(x, items, &format!("{path}[{i}]"), errs, false);
                }
            }
        }
        Value::Object(m) => {
            if let Some(Value::Array(req)) = schema.get("required") {
                for r in req.iter().filter_map(Value::as_str) {
                    if root && matches!(r, "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if !m.contains_key(r) {
                        errs.push(FieldError::required(&join(path, r)));
                    }
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
                && m.len() as u64 > max
            {
                errs.push(FieldError::too_many(path, m.len(), max));
            }
            if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
                && (m.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{field} in body should have at least {min} properties"),
                ));
            }
            for (k, child) in m {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(s) = prop_schema(schema, k) {
                    validate_rec(child, s, &join(path, k), errs, false);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for s in all {
            validate_rec(v, s, path, errs, root);
        }
    }
    let passes = |s: &Value| {
        let mut e = Vec::new();
        validate_rec(v, s, path, &mut e, root);
        e.is_empty()
    };
    if let Some(Value::Array(any)) = schema.get("anyOf")
        && !any.iter().any(passes)
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{field} in body must match at least one schema in anyOf"),
        ));
    }
    if let Some(Value::Array(one)) = schema.get("oneOf")
        && one.iter().filter(|s| passes(s)).count() != 1
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{field} in body must match exactly one schema in oneOf"),
        ));
    }
    if let Some(not) = schema.get("not")
        && passes(not)
    {
        errs.push(FieldError::invalid(
            path,
            v,
            format!("{field} in body should not match the schema in not"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["engine"],
                    "properties": {
                        "engine": {"type": "string", "enum": ["postgres", "mongodb"]},
                        "isolation": {"type": "string", "enum": ["database", "schema"], "default": "database"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8, "minLength": 2},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "note": {"type": "string", "nullable": true},
                        "when": {"type": "string", "format": "date-time"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "nested": {"type": "object", "properties": {"a": {"type": "integer", "default": 3}}}
                    }
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        })
    }

    fn run(mut obj: Value) -> (Value, Vec<String>) {
        let p = process_custom_resource(&mut obj, &schema());
        (obj, p.errors.iter().map(FieldError::render).collect())
    }

    #[test]
    fn prunes_and_defaults() {
        let (o, e) = run(
            json!({"apiVersion": "x/v1", "kind": "T", "metadata": {"name": "a", "junk": 1},
            "spec": {"engine": "postgres", "bogus": 1, "extra": {"k": {"deep": 1}}, "note": null, "when": null,
                     "nested": {}, "limits": {"cpu": 2}}, "top": 1}),
        );
        assert!(e.is_empty(), "{e:?}");
        let mut again = o.clone();
        again["spec"]["bogus"] = json!(1);
        again["top"] = json!(1);
        assert_eq!(
            process_custom_resource(&mut again, &schema()).pruned,
            vec!["spec.bogus", "top"]
        );
        assert_eq!(o["spec"]["isolation"], "database");
        assert!(o["spec"].get("bogus").is_none());
        assert!(o.get("top").is_none());
        assert_eq!(o["spec"]["extra"]["k"]["deep"], 1);
        assert!(o["spec"]["note"].is_null() && o["spec"].get("note").is_some());
        assert!(o["spec"].get("when").is_none());
        assert_eq!(o["spec"]["nested"]["a"], 3);
        assert_eq!(
            o["metadata"]["junk"], 1,
            "metadata is not pruned by the schema"
        );
    }

    #[test]
    fn reports_errors_like_the_api_server() {
        let (_, e) = run(
            json!({"spec": {"engine": "mysql", "isolation": "foo", "replicas": 9, "name": "Abcdefghij",
            "tags": ["a", "b", "c"], "when": "yesterday", "port": 1.5, "limits": {"cpu": "x"}}}),
        );
        let want = [
            "spec.engine: Unsupported value: \"mysql\": supported values: \"postgres\", \"mongodb\"",
            "spec.isolation: Unsupported value: \"foo\": supported values: \"database\", \"schema\"",
            "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5",
            "spec.name: Too long: may not be more than 8 bytes",
            "spec.name: Invalid value: \"Abcdefghij\": spec.name in body should match '^[a-z]+$'",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            "spec.port: Invalid value: 1.5: spec.port in body must be of type integer or string: \"number\"",
            "spec.limits.cpu: Invalid value: \"x\": spec.limits.cpu in body must be of type integer: \"string\"",
        ];
        for w in want {
            assert!(e.iter().any(|x| x == w), "missing {w:?} in {e:#?}");
        }
        let (_, e) = run(json!({"spec": {"replicas": "3"}}));
        assert!(
            e.contains(&"spec.engine: Required value".to_string()),
            "{e:?}"
        );
        assert!(
            e.iter().any(|x| x.contains("must be of type integer")),
            "{e:?}"
        );
    }
}
