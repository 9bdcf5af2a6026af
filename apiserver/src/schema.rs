//! The structural type model server-side apply works on (structured-merge-diff's `schema`):
//! scalars, maps (declared fields plus optional element type; granular or atomic), lists (atomic,
//! set, or map keyed by fields) and the "deduced" type of `x-kubernetes-preserve-unknown-fields`.
//! Built from a CRD's `openAPIV3Schema` the way kube-apiserver converts it, and written out for the
//! built-in kinds the emulator serves (from their Go types' list/map markers).

use serde_json::Value;
use std::collections::BTreeMap;

use crate::fieldpath::{PathElement, Set};

/// What JSON a scalar must be (type checks of built-in kinds; CRDs are checked by the schema).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Integer,
    Number,
    Boolean,
    /// int-or-string, or anything.
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ListKind {
    Atomic,
    Set,
    /// Keyed by these fields (with their schema defaults, if any).
    Map(Vec<(String, Option<Value>)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Scalar(Scalar),
    List {
        elem: Box<Ty>,
        kind: ListKind,
    },
    Map {
        fields: BTreeMap<String, Ty>,
        /// Type of keys that are not declared fields (`additionalProperties`); `None`: unknown
        /// keys are "not declared in schema".
        elem: Option<Box<Ty>>,
        atomic: bool,
    },
    /// `__untyped_deduced_`: maps granular (deduced values), lists atomic, scalars leaves.
    Deduced,
}

impl Ty {
    /// structured-merge-diff's `EnsureNamedFieldsAreMembers`: every named (declared) struct field
    /// of this type that has members below it in `set` becomes a member itself (map keys do not).
    pub fn ensure_named_fields(&self, set: &Set) -> Set {
        let mut out = set.clone();
        for p in set.iter() {
            let mut t = self;
            for (i, pe) in p.iter().enumerate() {
                if i + 1 == p.len() {
                    break;
                }
                let (child, named) = t.child(pe);
                if named {
                    out.insert(p[..=i].to_vec());
                }
                match child {
                    Some(c) => t = c,
                    None => break,
                }
            }
        }
        out
    }

    /// The type of a child reached through `pe`, and whether `pe` is a named (declared) field.
    pub fn child(&self, pe: &PathElement) -> (Option<&Ty>, bool) {
        match (self, pe) {
            (Ty::Map { fields, elem, .. }, PathElement::Field(f)) => match fields.get(f) {
                Some(t) => (Some(t), true),
                None => (elem.as_deref(), false),
            },
            (Ty::List { elem, .. }, _) => (Some(elem), false),
            (Ty::Deduced, PathElement::Field(_)) => (Some(&Ty::Deduced), false),
            _ => (None, false),
        }
    }

    #[cfg(test)]
    pub fn is_atomic(&self) -> bool {
        matches!(
            self,
            Ty::Map { atomic: true, .. }
                | Ty::List {
                    kind: ListKind::Atomic,
                    ..
                }
        )
    }
}

fn b(t: Ty) -> Box<Ty> {
    Box::new(t)
}

/// Convert an `openAPIV3Schema` node (structural) as kube-apiserver's CRD type converter does.
/// `root`: the object root (gets `apiVersion`, `kind`, and the real ObjectMeta type).
pub fn from_openapi(s: &Value, root: bool) -> Ty {
    let flag = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
    if flag("x-kubernetes-int-or-string") {
        return Ty::Scalar(Scalar::Any);
    }
    let ty = s.get("type").and_then(Value::as_str);
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    match ty {
        Some("array") => {
            let elem = s
                .get("items")
                .map(|i| from_openapi(i, false))
                .unwrap_or(Ty::Deduced);
            let kind = match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListKind::Set,
                Some("map") => {
                    let items = s.get("items");
                    let keys = s
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|k| {
                                    let d = items
                                        .and_then(|i| {
                                            i.pointer(&format!("/properties/{k}/default"))
                                        })
                                        .cloned();
                                    (k.to_string(), d)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    ListKind::Map(keys)
                }
                _ => ListKind::Atomic,
            };
            Ty::List {
                elem: b(elem),
                kind,
            }
        }
        Some("string") => Ty::Scalar(Scalar::String),
        Some("integer") => Ty::Scalar(Scalar::Integer),
        Some("number") => Ty::Scalar(Scalar::Number),
        Some("boolean") => Ty::Scalar(Scalar::Boolean),
        Some("object") | None => {
            let props = s.get("properties").and_then(Value::as_object);
            if ty.is_none() && props.is_none() && !root {
                return Ty::Deduced;
            }
            let mut fields: BTreeMap<String, Ty> = props
                .map(|p| {
                    p.iter()
                        .map(|(k, v)| (k.clone(), from_openapi(v, false)))
                        .collect()
                })
                .unwrap_or_default();
            if root || flag("x-kubernetes-embedded-resource") {
                fields.insert("apiVersion".into(), Ty::Scalar(Scalar::String));
                fields.insert("kind".into(), Ty::Scalar(Scalar::String));
                fields.insert("metadata".into(), object_meta());
            }
            let elem = match s.get("additionalProperties") {
                Some(Value::Object(a)) => Some(b(from_openapi(&Value::Object(a.clone()), false))),
                Some(Value::Bool(true)) => Some(b(Ty::Deduced)),
                _ if preserve => Some(b(Ty::Deduced)),
                _ => None,
            };
            let atomic = s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
            Ty::Map {
                fields,
                elem,
                atomic,
            }
        }
        Some(_) => Ty::Scalar(Scalar::Any),
    }
}

// ----- built-in kinds --------------------------------------------------------------------------

fn string() -> Ty {
    Ty::Scalar(Scalar::String)
}
fn int() -> Ty {
    Ty::Scalar(Scalar::Integer)
}
fn boolean() -> Ty {
    Ty::Scalar(Scalar::Boolean)
}
fn obj(fields: &[(&str, Ty)]) -> Ty {
    Ty::Map {
        fields: fields
            .iter()
            .map(|(k, t)| (k.to_string(), t.clone()))
            .collect(),
        elem: None,
        atomic: false,
    }
}
fn map_of(t: Ty) -> Ty {
    Ty::Map {
        fields: BTreeMap::new(),
        elem: Some(b(t)),
        atomic: false,
    }
}
fn atomic_list(t: Ty) -> Ty {
    Ty::List {
        elem: b(t),
        kind: ListKind::Atomic,
    }
}
fn set_of(t: Ty) -> Ty {
    Ty::List {
        elem: b(t),
        kind: ListKind::Set,
    }
}
fn map_list(keys: &[&str], t: Ty) -> Ty {
    Ty::List {
        elem: b(t),
        kind: ListKind::Map(keys.iter().map(|k| (k.to_string(), None)).collect()),
    }
}

/// `metav1.ObjectMeta`.
pub fn object_meta() -> Ty {
    let owner = obj(&[
        ("apiVersion", string()),
        ("kind", string()),
        ("name", string()),
        ("uid", string()),
        ("controller", boolean()),
        ("blockOwnerDeletion", boolean()),
    ]);
    obj(&[
        ("name", string()),
        ("generateName", string()),
        ("namespace", string()),
        ("selfLink", string()),
        ("uid", string()),
        ("resourceVersion", string()),
        ("generation", int()),
        ("creationTimestamp", string()),
        ("deletionTimestamp", string()),
        ("deletionGracePeriodSeconds", int()),
        ("labels", map_of(string())),
        ("annotations", map_of(string())),
        ("ownerReferences", map_list(&["uid"], owner)),
        ("finalizers", set_of(string())),
        ("managedFields", atomic_list(Ty::Deduced)),
    ])
}

fn object_reference() -> Ty {
    obj(&[
        ("kind", string()),
        ("namespace", string()),
        ("name", string()),
        ("uid", string()),
        ("apiVersion", string()),
        ("resourceVersion", string()),
        ("fieldPath", string()),
    ])
}

fn root(fields: &[(&str, Ty)]) -> Ty {
    let mut all: Vec<(&str, Ty)> = vec![
        ("apiVersion", string()),
        ("kind", string()),
        ("metadata", object_meta()),
    ];
    all.extend(fields.iter().cloned());
    obj(&all)
}

fn policy_rule() -> Ty {
    obj(&[
        ("verbs", atomic_list(string())),
        ("apiGroups", atomic_list(string())),
        ("resources", atomic_list(string())),
        ("resourceNames", atomic_list(string())),
        ("nonResourceURLs", atomic_list(string())),
    ])
}

fn binding() -> Vec<(&'static str, Ty)> {
    vec![
        (
            "subjects",
            atomic_list(obj(&[
                ("kind", string()),
                ("apiGroup", string()),
                ("name", string()),
                ("namespace", string()),
            ])),
        ),
        (
            "roleRef",
            obj(&[
                ("apiGroup", string()),
                ("kind", string()),
                ("name", string()),
            ]),
        ),
    ]
}

/// The type of a built-in kind (`None` for kinds without one).
pub fn builtin(group: &str, version: &str, plural: &str) -> Option<Ty> {
    let condition = obj(&[
        ("type", string()),
        ("status", string()),
        ("lastTransitionTime", string()),
        ("reason", string()),
        ("message", string()),
    ]);
    Some(match (group, version, plural) {
        ("", "v1", "namespaces") => root(&[
            ("spec", obj(&[("finalizers", atomic_list(string()))])),
            (
                "status",
                obj(&[
                    ("phase", string()),
                    ("conditions", map_list(&["type"], condition)),
                ]),
            ),
        ]),
        ("", "v1", "secrets") => root(&[
            ("data", map_of(string())),
            ("stringData", map_of(string())),
            ("type", string()),
            ("immutable", boolean()),
        ]),
        ("", "v1", "configmaps") => root(&[
            ("data", map_of(string())),
            ("binaryData", map_of(string())),
            ("immutable", boolean()),
        ]),
        ("", "v1", "serviceaccounts") => root(&[
            ("secrets", map_list(&["name"], object_reference())),
            ("imagePullSecrets", atomic_list(obj(&[("name", string())]))),
            ("automountServiceAccountToken", boolean()),
        ]),
        ("", "v1", "events") => root(&[
            ("involvedObject", object_reference()),
            ("reason", string()),
            ("message", string()),
            (
                "source",
                obj(&[("component", string()), ("host", string())]),
            ),
            ("firstTimestamp", string()),
            ("lastTimestamp", string()),
            ("count", int()),
            ("type", string()),
            ("eventTime", string()),
            (
                "series",
                obj(&[("count", int()), ("lastObservedTime", string())]),
            ),
            ("action", string()),
            ("related", object_reference()),
            ("reportingComponent", string()),
            ("reportingInstance", string()),
        ]),
        ("events.k8s.io", "v1", "events") => root(&[
            ("eventTime", string()),
            (
                "series",
                obj(&[("count", int()), ("lastObservedTime", string())]),
            ),
            ("reportingController", string()),
            ("reportingInstance", string()),
            ("action", string()),
            ("reason", string()),
            ("regarding", object_reference()),
            ("related", object_reference()),
            ("note", string()),
            ("type", string()),
            (
                "deprecatedSource",
                obj(&[("component", string()), ("host", string())]),
            ),
            ("deprecatedFirstTimestamp", string()),
            ("deprecatedLastTimestamp", string()),
            ("deprecatedCount", int()),
        ]),
        ("coordination.k8s.io", "v1", "leases") => root(&[(
            "spec",
            obj(&[
                ("holderIdentity", string()),
                ("leaseDurationSeconds", int()),
                ("acquireTime", string()),
                ("renewTime", string()),
                ("leaseTransitions", int()),
                ("strategy", string()),
                ("preferredHolder", string()),
            ]),
        )]),
        (crate::groups::RBAC_GROUP, "v1", "roles") => {
            root(&[("rules", atomic_list(policy_rule()))])
        }
        (crate::groups::RBAC_GROUP, "v1", "clusterroles") => root(&[
            ("rules", atomic_list(policy_rule())),
            (
                "aggregationRule",
                obj(&[("clusterRoleSelectors", atomic_list(Ty::Deduced))]),
            ),
        ]),
        (crate::groups::RBAC_GROUP, "v1", "rolebindings" | "clusterrolebindings") => {
            root(&binding())
        }
        (crate::groups::CRD_GROUP, "v1", "customresourcedefinitions") => {
            root(&[("spec", Ty::Deduced), ("status", Ty::Deduced)])
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_schema_conversion() {
        let t = from_openapi(
            &json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "port": {"x-kubernetes-int-or-string": true},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "sel": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"a": {"type": "string"}}}}},
                "status": {"type": "object", "properties": {"conditions": {"type": "array",
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}}}}}}}}),
            true,
        );
        let f = |n: &str| PathElement::Field(n.into());
        let (spec, named) = t.child(&f("spec"));
        assert!(named);
        let spec = spec.unwrap();
        assert!(spec.child(&f("tags")).0.unwrap().is_atomic());
        assert!(!spec.child(&f("set")).0.unwrap().is_atomic());
        assert_eq!(spec.child(&f("port")).0, Some(&Ty::Scalar(Scalar::Any)));
        let extra = spec.child(&f("extra")).0.unwrap();
        assert_eq!(extra.child(&f("anything")), (Some(&Ty::Deduced), false));
        let labels = spec.child(&f("labels")).0.unwrap();
        assert_eq!(
            labels.child(&f("x")),
            (Some(&Ty::Scalar(Scalar::String)), false)
        );
        assert!(spec.child(&f("sel")).0.unwrap().is_atomic());
        assert_eq!(spec.child(&f("unknown")), (None, false));
        let (meta, named) = t.child(&f("metadata"));
        assert!(named && meta == Some(&object_meta()));
        let conds = t
            .child(&f("status"))
            .0
            .unwrap()
            .child(&f("conditions"))
            .0
            .unwrap();
        assert!(matches!(conds, Ty::List { kind: ListKind::Map(k), .. } if k[0].0 == "type"));
    }
}
