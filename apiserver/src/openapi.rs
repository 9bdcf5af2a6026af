//! A minimal OpenAPI v3 surface so that `kubectl apply` (default `--validate=strict`) works:
//! the index at `/openapi/v3` and one document per group-version whose PATCH operations declare
//! the `fieldValidation` parameter (kubectl then delegates validation to this server) and whose
//! component schemas are the CRD schemas (built-in kinds get permissive schemas).
//! `/openapi/v2` is not served (404).

use serde_json::{Map, Value, json};

use crate::registry::{Registry, ResourceDef};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn schema_key(d: &ResourceDef, version: &str) -> String {
    if d.group.is_empty() {
        format!("io.k8s.api.core.{version}.{}", d.kind)
    } else {
        let rev: Vec<&str> = d.group.split('.').rev().collect();
        format!("{}.{version}.{}", rev.join("."), d.kind)
    }
}

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

fn group_versions(reg: &Registry) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for d in reg.defs.values() {
        for v in &d.versions {
            let gv = (d.group.clone(), v.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
    }
    out.sort();
    out
}

/// `GET /openapi/v3`
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions(reg) {
        let p = gv_path(&g, &v);
        let hash = fnv(&gv_doc(reg, &g, &v)
            .map(|d| d.to_string())
            .unwrap_or_default());
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/G/V`
pub fn gv_doc(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = reg.resources_in(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for d in defs {
        let key = schema_key(d, version);
        let gvk = json!({"group": d.group, "version": version, "kind": d.kind});
        let mut schema = d.schemas.get(version).cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if let Value::Object(m) = &mut schema {
            m.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk.clone()]),
            );
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                props
                    .entry("apiVersion")
                    .or_insert_with(|| json!({"type": "string"}));
                props
                    .entry("kind")
                    .or_insert_with(|| json!({"type": "string"}));
                props.insert(
                    "metadata".into(),
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                );
            }
        }
        schemas.insert(key.clone(), schema);
        let base = if d.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                d.plural
            )
        } else {
            format!("/{}/{}", gv_path(group, version), d.plural)
        };
        let resp = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{key}")}}}}});
        let op = |action: &str, params: Vec<Value>| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": resp});
        let write_params = || {
            vec![
                param("dryRun"),
                param("fieldManager"),
                param("fieldValidation"),
            ]
        };
        let mut patch_params = write_params();
        patch_params.push(param("force"));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"get": op("get", vec![]), "put": op("put", write_params()), "patch": op("patch", patch_params),
                   "delete": op("delete", vec![param("dryRun")])}),
        );
        paths.insert(
            base,
            json!({"get": op("list", vec![]), "post": op("post", write_params())}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (tenantdb-apiserver emulator)", "version": crate::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
