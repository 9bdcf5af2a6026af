//! The set of served resources: built-in kinds plus CustomResourceDefinitions.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::schema::{self, Ty};

use crate::error::Error;

/// `(group, plural)`: the storage identity of a resource (all served versions share one store).
pub type GroupResource = (String, String);

#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub json_path: String,
    pub priority: i64,
}

#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions (first is the preferred/storage version).
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// `openAPIV3Schema` per version (CRDs only).
    pub schemas: BTreeMap<String, Value>,
    /// Printer columns per version.
    pub columns: BTreeMap<String, Vec<PrinterColumn>>,
    /// Built-in kinds: track `metadata.generation`? (CRDs always do.)
    pub is_crd: bool,
    /// Versions whose schema carries `x-kubernetes-validations` (CEL rules).
    pub cel_versions: Vec<String>,
    /// The structural type of each served version (server-side apply, field ownership).
    pub types: BTreeMap<String, Arc<Ty>>,
    /// Where the objects are kept when another resource's storage is shared (events.k8s.io
    /// Events live in the core Events storage, as on the real server).
    pub storage: Option<GroupResource>,
}

impl ResourceDef {
    pub fn gr(&self) -> GroupResource {
        (self.group.clone(), self.plural.clone())
    }

    /// The storage identity: `gr()` unless the storage is shared with another resource.
    pub fn storage_gr(&self) -> GroupResource {
        self.storage.clone().unwrap_or_else(|| self.gr())
    }

    /// The structural type of `version` (a schemaless resource: every field is "deduced").
    pub fn ty(&self, version: &str) -> Arc<Ty> {
        self.types.get(version).cloned().unwrap_or_else(|| {
            Arc::new(schema::from_openapi(
                &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                true,
            ))
        })
    }

    /// `group`/`plural` test (core group: "").
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `Tenant.tenantdb.io` (used in Invalid messages), or just `Secret` for the core group.
    pub fn kind_group(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short: &[&str],
    ) -> Self {
        let types = schema::builtin(group, version, plural)
            .map(|t| BTreeMap::from([(version.to_string(), Arc::new(t))]))
            .unwrap_or_default();
        ResourceDef {
            types,
            group: group.into(),
            versions: vec![version.into()],
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: vec![],
            namespaced,
            status_subresource: false,
            schemas: BTreeMap::new(),
            columns: BTreeMap::new(),
            is_crd: false,
            cel_versions: vec![],
            storage: None,
        }
    }

    fn stored_as(mut self, group: &str, plural: &str) -> Self {
        self.storage = Some((group.to_string(), plural.to_string()));
        self
    }

    fn with_columns(mut self, cols: &[(&str, &str, &str)]) -> Self {
        let v = self.versions[0].clone();
        self.columns.insert(
            v,
            cols.iter()
                .map(|(n, t, p)| PrinterColumn {
                    name: n.to_string(),
                    type_: t.to_string(),
                    format: String::new(),
                    description: String::new(),
                    json_path: p.to_string(),
                    priority: 0,
                })
                .collect(),
        );
        self
    }

    /// Parse an `apiextensions.k8s.io/v1` CustomResourceDefinition.
    pub fn from_crd(crd: &Value) -> Result<Self, Error> {
        let bad = |m: &str| Error::InvalidCrd(m.to_string());
        let spec = crd.get("spec").ok_or_else(|| bad("missing spec"))?;
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing spec.group"))?;
        let names = spec.get("names").ok_or_else(|| bad("missing spec.names"))?;
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let plural = s(names, "plural").ok_or_else(|| bad("missing spec.names.plural"))?;
        let kind = s(names, "kind").ok_or_else(|| bad("missing spec.names.kind"))?;
        let singular = s(names, "singular").unwrap_or_else(|| kind.to_lowercase());
        let list_kind = s(names, "listKind").unwrap_or_else(|| format!("{kind}List"));
        let strs = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let short_names = strs(names.get("shortNames"));
        let categories = strs(names.get("categories"));
        let namespaced = spec
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or("Namespaced")
            != "Cluster";
        let vs = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing spec.versions"))?;
        let mut versions = Vec::new();
        let mut storage_first = Vec::new();
        let mut schemas = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut columns = BTreeMap::new();
        let mut status_subresource = false;
        let mut cel_versions = Vec::new();
        for v in vs {
            let name = s(v, "name").ok_or_else(|| bad("version without name"))?;
            if !v.get("served").and_then(Value::as_bool).unwrap_or(true) {
                continue;
            }
            if v.pointer("/subresources/status").is_some() {
                status_subresource = true;
            }
            if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
                if schema.to_string().contains("\"x-kubernetes-validations\"") {
                    cel_versions.push(name.clone());
                }
                schemas.insert(name.clone(), schema.clone());
                types.insert(name.clone(), Arc::new(schema::from_openapi(schema, true)));
            }
            let cols = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|c| PrinterColumn {
                            name: s(c, "name").unwrap_or_default(),
                            type_: s(c, "type").unwrap_or_else(|| "string".into()),
                            format: s(c, "format").unwrap_or_default(),
                            description: s(c, "description").unwrap_or_default(),
                            json_path: s(c, "jsonPath").unwrap_or_default(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default();
            columns.insert(name.clone(), cols);
            if v.get("storage").and_then(Value::as_bool).unwrap_or(false) {
                storage_first.insert(0, name);
            } else {
                storage_first.push(name);
            }
        }
        versions.extend(storage_first);
        if versions.is_empty() {
            return Err(bad("no served versions"));
        }
        Ok(ResourceDef {
            types,
            group: group.to_string(),
            versions,
            plural,
            singular,
            kind,
            list_kind,
            short_names,
            categories,
            namespaced,
            status_subresource,
            schemas,
            columns,
            is_crd: true,
            cel_versions,
            storage: None,
        })
    }
}

/// All served resources.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub defs: BTreeMap<GroupResource, ResourceDef>,
}

pub use crate::groups::{CRD_GROUP, RBAC_GROUP};

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        let defs = [
            ResourceDef::builtin("", "v1", "namespaces", "Namespace", false, &["ns"])
                .with_columns(&[("Status", "string", ".status.phase")]),
            ResourceDef::builtin("", "v1", "secrets", "Secret", true, &[]).with_columns(&[
                ("Type", "string", ".type"),
                ("Data", "integer", "#count .data"),
            ]),
            ResourceDef::builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"])
                .with_columns(&[("Data", "integer", "#count .data")]),
            ResourceDef::builtin("", "v1", "events", "Event", true, &["ev"]).with_columns(&[
                ("Type", "string", ".type"),
                ("Reason", "string", ".reason"),
                ("Message", "string", ".message"),
            ]),
            ResourceDef::builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"])
                .with_columns(&[
                    ("Type", "string", ".type"),
                    ("Reason", "string", ".reason"),
                    ("Note", "string", ".note"),
                ])
                .stored_as("", "events"),
            ResourceDef::builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
            ResourceDef::builtin(RBAC_GROUP, "v1", "roles", "Role", true, &[]),
            ResourceDef::builtin(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", true, &[])
                .with_columns(&[("Role", "string", ".roleRef.name")]),
            ResourceDef::builtin(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", false, &[]),
            ResourceDef::builtin(
                RBAC_GROUP,
                "v1",
                "clusterrolebindings",
                "ClusterRoleBinding",
                false,
                &[],
            )
            .with_columns(&[("Role", "string", ".roleRef.name")]),
            ResourceDef::builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[])
                .with_columns(&[("Holder", "string", ".spec.holderIdentity")]),
            ResourceDef::builtin(
                CRD_GROUP,
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
            )
            .with_columns(&[("Created At", "date", ".metadata.creationTimestamp")]),
        ];
        for d in defs {
            r.defs.insert(d.gr(), d);
        }
        r
    }

    pub fn get(&self, group: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs.get(&(group.to_string(), plural.to_string()))
    }

    /// The resource serving `apiVersion` + `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<(&ResourceDef, String)> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.defs
            .values()
            .find(|d| d.group == group && d.kind == kind && d.serves(version))
            .map(|d| (d, version.to_string()))
    }

    /// Resolve a request path's `(group, version, plural)`.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.get(group, plural).filter(|d| d.serves(version))
    }

    /// Groups with their versions (preferred first), core group excluded.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in self.defs.values() {
            if d.group.is_empty() {
                continue;
            }
            let e = out.entry(d.group.clone()).or_default();
            for v in &d.versions {
                if !e.contains(v) {
                    e.push(v.clone());
                }
            }
        }
        for vs in out.values_mut() {
            vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out.into_iter().collect()
    }

    pub fn resources_in(&self, group: &str, version: &str) -> Vec<&ResourceDef> {
        self.defs
            .values()
            .filter(|d| d.group == group && d.serves(version))
            .collect()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (tier, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (tier, major, minor)
}

/// Build the `status` a real server reports for an established CRD.
pub fn crd_status(crd: &Value, now: &str) -> Value {
    let names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut accepted = names.clone();
    if accepted.get("singular").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["singular"] = json!(k.to_lowercase());
    }
    if accepted.get("listKind").is_none()
        && let Some(k) = names.get("kind").and_then(Value::as_str)
    {
        accepted["listKind"] = json!(format!("{k}List"));
    }
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ]
    })
}
