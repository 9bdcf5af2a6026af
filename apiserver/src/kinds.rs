//! Built-in kinds as kube-apiserver decodes and validates them: typed decoding (unknown fields per
//! `fieldValidation`, JSON type errors, `null` as the Go zero value), Secrets (data keys, size,
//! `type` immutable, type-specific keys, `immutable`), ConfigMaps, Leases, RBAC objects.

use base64::Engine as _;
use serde_json::Value;

use crate::error::FieldError;
use crate::objectmeta;
use crate::schema::{Scalar, Ty};

/// `MaxSecretSize` (also the ConfigMap limit).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type(t: &Ty) -> &'static str {
    match t {
        Ty::Scalar(Scalar::String) => "string",
        Ty::Scalar(Scalar::Integer) => "int64",
        Ty::Scalar(Scalar::Number) => "float64",
        Ty::Scalar(Scalar::Boolean) => "bool",
        Ty::Scalar(Scalar::Any) | Ty::Deduced => "interface {}",
        Ty::List { .. } => "[]",
        Ty::Map { .. } => "map",
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Typed decoding of a built-in object: unknown fields are removed and returned (dotted paths),
/// `null`s are dropped (Go's zero value), a JSON type mismatch is an error message.
pub fn decode(obj: &mut Value, ty: &Ty, kind: &str) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    walk(obj, ty, "", kind, &mut unknown)?;
    // Map order depends on serde_json's `preserve_order` (feature unification): sort.
    unknown.sort();
    Ok(unknown)
}

fn walk(
    v: &mut Value,
    ty: &Ty,
    path: &str,
    kind: &str,
    unknown: &mut Vec<String>,
) -> Result<(), String> {
    let mismatch = |v: &Value, t: &Ty| {
        format!(
            "json: cannot unmarshal {} into Go struct field {kind}.{path} of type {}",
            json_type(v),
            go_type(t)
        )
    };
    match ty {
        Ty::Scalar(s) => {
            let ok = match s {
                Scalar::String => v.is_string(),
                Scalar::Integer => v.as_i64().is_some() || v.as_u64().is_some(),
                Scalar::Number => v.is_number(),
                Scalar::Boolean => v.is_boolean(),
                Scalar::Any => !v.is_object() && !v.is_array(),
            };
            if !ok && !v.is_null() {
                return Err(mismatch(v, ty));
            }
        }
        Ty::Deduced => {}
        Ty::List { elem, .. } => match v {
            Value::Array(items) => {
                items.retain(|i| !i.is_null());
                for i in items.iter_mut() {
                    walk(i, elem, path, kind, unknown)?;
                }
            }
            Value::Null => {}
            other => return Err(mismatch(other, ty)),
        },
        Ty::Map { fields, elem, .. } => match v {
            Value::Object(m) => {
                let mut drop = Vec::new();
                for (k, child) in m.iter_mut() {
                    if child.is_null() {
                        drop.push(k.clone());
                        continue;
                    }
                    match fields.get(k).or(elem.as_deref()) {
                        Some(t) => walk(child, t, &join(path, k), kind, unknown)?,
                        None => {
                            unknown.push(join(path, k));
                            drop.push(k.clone());
                        }
                    }
                }
                for k in drop {
                    m.remove(&k);
                }
            }
            Value::Null => {}
            other => return Err(mismatch(other, ty)),
        },
    }
    Ok(())
}

fn data_keys(obj: &Value, field: &str, errs: &mut Vec<FieldError>) -> usize {
    let mut total = 0;
    if let Some(Value::Object(m)) = obj.get(field) {
        for (k, v) in m {
            for msg in objectmeta::config_map_key(k) {
                errs.push(FieldError::invalid(
                    &format!("{field}[{k}]"),
                    &Value::String(k.clone()),
                    msg,
                ));
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    total
}

fn decoded_len(obj: &Value, field: &str) -> usize {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .map(|s| {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_or(s.len(), |b| b.len())
                })
                .sum()
        })
        .unwrap_or(0)
}

fn immutable(new: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        let blank =
            |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_some_and(|m| m.is_empty()));
        if new.get(*f) != old.get(*f) && !(blank(new.get(*f)) && blank(old.get(*f))) {
            errs.push(FieldError::forbidden(
                f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

/// `ValidateSecret` / `ValidateSecretUpdate` (after `stringData` was folded into `data`).
pub fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    data_keys(obj, "data", &mut errs);
    if decoded_len(obj, "data") > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("data", MAX_DATA_BYTES as u64));
    }
    let has = |k: &str| obj.get("data").and_then(|d| d.get(k)).is_some();
    let required = |k: &str| FieldError::required(&format!("data[{k}]"));
    match obj.get("type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let ann = obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if ann.is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => errs.push(required(".dockercfg")),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(required(".dockerconfigjson"))
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => errs.push(required("ssh-privatekey")),
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(required(k));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let (n, o) = (obj.get("type"), old.get("type"));
        if n != o {
            errs.push(FieldError::invalid(
                "type",
                n.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        immutable(obj, old, &["data"], &mut errs);
    }
    errs
}

/// `ValidateConfigMap` / `ValidateConfigMapUpdate`.
pub fn validate_config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = data_keys(obj, "data", &mut errs);
    total += decoded_len(obj, "binaryData");
    data_keys(obj, "binaryData", &mut errs);
    if let (Some(Value::Object(d)), Some(Value::Object(b))) =
        (obj.get("data"), obj.get("binaryData"))
    {
        for k in d.keys().filter(|k| b.contains_key(*k)) {
            errs.push(FieldError::invalid(
                &format!("data[{k}]"),
                &Value::String(k.clone()),
                "duplicate of key present in binaryData",
            ));
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(FieldError::too_long("", MAX_DATA_BYTES as u64));
    }
    if let Some(old) = old {
        immutable(obj, old, &["data", "binaryData"], &mut errs);
    }
    errs
}

/// `ValidateLeaseSpec`.
pub fn validate_lease(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(d) = spec.get("leaseDurationSeconds").filter(|v| !v.is_null())
        && d.as_i64().is_some_and(|d| d <= 0)
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = spec.get("leaseTransitions").filter(|v| !v.is_null())
        && t.as_i64().is_some_and(|t| t < 0)
    {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
    let strategy = spec.get("strategy").and_then(Value::as_str).unwrap_or("");
    if !strategy.is_empty() && strategy != "OldestEmulationVersion" {
        errs.push(FieldError::not_supported(
            "spec.strategy",
            &Value::String(strategy.into()),
            &[Value::String("OldestEmulationVersion".into())],
        ));
    }
    let preferred = spec
        .get("preferredHolder")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !preferred.is_empty() && strategy.is_empty() {
        errs.push(FieldError::forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        ));
    }
    for f in ["acquireTime", "renewTime"] {
        if let Some(v) = spec.get(f).and_then(Value::as_str)
            && chrono::DateTime::parse_from_rfc3339(v).is_err()
        {
            errs.push(FieldError::invalid(
                &format!("spec.{f}"),
                &Value::String(v.into()),
                "must be an RFC 3339 time (MicroTime)",
            ));
        }
    }
    errs
}

/// `ValidateRole` / `ValidateClusterRole`: every rule has verbs; resource rules have API groups
/// and resources; non-resource URLs only in cluster roles and never together with resources.
pub fn validate_rules(obj: &Value, cluster: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, r) in obj
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let n = |k: &str| r.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        let field = |k: &str| format!("rules[{i}].{k}");
        if n("verbs") == 0 {
            errs.push(FieldError {
                reason: "FieldValueRequired",
                field: field("verbs"),
                value: None,
                detail: "verbs must contain at least one value".into(),
            });
        }
        if n("nonResourceURLs") > 0 {
            if !cluster {
                errs.push(FieldError::invalid(
                    &field("nonResourceURLs"),
                    r.get("nonResourceURLs").unwrap_or(&Value::Null),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if n("apiGroups") > 0 || n("resources") > 0 || n("resourceNames") > 0 {
                errs.push(FieldError::invalid(
                    &field("nonResourceURLs"),
                    r.get("nonResourceURLs").unwrap_or(&Value::Null),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if n("apiGroups") == 0 {
            errs.push(FieldError {
                reason: "FieldValueRequired",
                field: field("apiGroups"),
                value: None,
                detail: "resource rules must supply at least one api group".into(),
            });
        }
        if n("resources") == 0 {
            errs.push(FieldError {
                reason: "FieldValueRequired",
                field: field("resources"),
                value: None,
                detail: "resource rules must supply at least one resource".into(),
            });
        }
    }
    errs
}

/// `ValidateRoleBinding` / `ValidateClusterRoleBinding` (+ `roleRef` immutable on update).
pub fn validate_binding(obj: &Value, old: Option<&Value>, cluster: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rr = obj.get("roleRef").cloned().unwrap_or(Value::Null);
    let rs = |k: &str| rr.get(k).and_then(Value::as_str).unwrap_or("");
    if rs("apiGroup") != "rbac.authorization.k8s.io" {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            &Value::String(rs("apiGroup").into()),
            &[Value::String("rbac.authorization.k8s.io".into())],
        ));
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&rs("kind")) {
        errs.push(FieldError::not_supported(
            "roleRef.kind",
            &Value::String(rs("kind").into()),
            &kinds
                .iter()
                .map(|k| Value::String(k.to_string()))
                .collect::<Vec<_>>(),
        ));
    }
    if rs("name").is_empty() {
        errs.push(FieldError::required("roleRef.name"));
    }
    for (i, sub) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ss = |k: &str| sub.get(k).and_then(Value::as_str).unwrap_or("");
        let field = |k: &str| format!("subjects[{i}].{k}");
        if ss("name").is_empty() {
            errs.push(FieldError::required(&field("name")));
        }
        match ss("kind") {
            "ServiceAccount" => {
                if cluster && ss("namespace").is_empty() {
                    errs.push(FieldError::required(&field("namespace")));
                }
            }
            "User" | "Group" => {
                if ss("apiGroup") != "rbac.authorization.k8s.io" {
                    errs.push(FieldError::not_supported(
                        &field("apiGroup"),
                        &Value::String(ss("apiGroup").into()),
                        &[Value::String("rbac.authorization.k8s.io".into())],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &field("kind"),
                &Value::String(other.into()),
                &["ServiceAccount", "User", "Group"].map(|k| Value::String(k.into())),
            )),
        }
    }
    if let Some(old) = old
        && old.get("roleRef") != obj.get("roleRef")
    {
        errs.push(FieldError::invalid("roleRef", &rr, "cannot change roleRef"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;
    use serde_json::json;

    fn render(e: &[FieldError]) -> Vec<String> {
        e.iter().map(FieldError::render).collect()
    }

    #[test]
    fn typed_decoding_of_builtins() {
        let ty = schema::builtin("", "v1", "secrets").unwrap();
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "bogus": 1},
                           "data": {"k": "dg=="}, "extra": true, "immutable": null});
        let unknown = decode(&mut s, &ty, "Secret").unwrap();
        assert_eq!(unknown, ["extra", "metadata.bogus"]);
        assert!(s.get("immutable").is_none() && s.get("extra").is_none());
        let mut bad = json!({"type": 5});
        assert_eq!(
            decode(&mut bad, &ty, "Secret").unwrap_err(),
            "json: cannot unmarshal number into Go struct field Secret.type of type string"
        );
    }

    #[test]
    fn secrets_and_config_maps() {
        let e = render(&validate_secret(
            &json!({"type": "Opaque", "data": {"ok.key": "dg==", "bad/key": "dg=="}}),
            None,
        ));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters"), "{e:?}");
        let old = json!({"type": "Opaque", "immutable": true, "data": {"a": "dg=="}});
        let e = render(&validate_secret(
            &json!({"type": "kubernetes.io/tls", "data": {"a": "eA=="}}),
            Some(&old),
        ));
        assert!(
            e.contains(
                &"type: Invalid value: \"kubernetes.io/tls\": field is immutable".to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(
                &"immutable: Forbidden: field is immutable when `immutable` is set".to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"data: Forbidden: field is immutable when `immutable` is set".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"data[tls.crt]: Required value".to_string()),
            "{e:?}"
        );
        let big = "x".repeat(MAX_DATA_BYTES + 1);
        assert_eq!(
            render(&validate_config_map(&json!({"data": {"k": big}}), None)),
            [format!(
                "Too long: may not be more than {MAX_DATA_BYTES} bytes"
            )]
        );
        assert_eq!(
            render(&validate_config_map(
                &json!({"data": {"k": "v"}, "binaryData": {"k": "dg=="}}),
                None
            )),
            ["data[k]: Invalid value: \"k\": duplicate of key present in binaryData"]
        );
    }

    #[test]
    fn leases_and_rbac() {
        let e = render(&validate_lease(
            &json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "x"}}),
        ));
        assert_eq!(
            e,
            [
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
                "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
            ]
        );
        let e = render(&validate_rules(
            &json!({"rules": [{"apiGroups": [""], "resources": []},
                                                          {"nonResourceURLs": ["/x"], "verbs": ["get"]}]}),
            false,
        ));
        assert_eq!(e.len(), 3, "{e:?}");
        let b = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
                       "subjects": [{"kind": "ServiceAccount", "name": "sa"}]});
        assert_eq!(
            render(&validate_binding(&b, None, true)),
            ["subjects[0].namespace: Required value"]
        );
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("y");
        assert!(
            render(&validate_binding(&changed, Some(&b), false))
                .iter()
                .any(|e| e.contains("cannot change roleRef"))
        );
    }
}
