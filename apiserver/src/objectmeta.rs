//! `metadata` validation of every kind and the string formats of apimachinery's
//! `util/validation` (qualified names, label values, RFC 1123 names, config-map keys, path
//! segments), with the real messages.

use serde_json::Value;

use crate::error::FieldError;

const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

/// `TotalAnnotationSizeLimitB`.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// `validation.RegexError`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn qualified_name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || b"-_.".contains(&c))
}

fn dns_label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `IsDNS1123Label`: the messages (empty = valid).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push(max_len_error(63));
    }
    if !dns_label_ok(s) {
        e.push(regex_error(
            DNS1123_LABEL_ERR,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    e
}

/// `IsDNS1123Subdomain` (each dot-separated part is a label of the regex; no per-part length).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push(max_len_error(253));
    }
    if !s.split('.').all(dns_label_ok) {
        e.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    e
}

pub fn is_dns1123_label(s: &str) -> bool {
    dns1123_label(s).is_empty()
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    dns1123_subdomain(s).is_empty()
}

/// `IsQualifiedName`.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [n] => *n,
        [prefix, n] => {
            if prefix.is_empty() {
                e.push("prefix part must be non-empty".to_string());
            } else {
                e.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            n
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            )];
        }
    };
    if name.is_empty() {
        e.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        e.push(format!("name part {}", max_len_error(63)));
    }
    if !qualified_name_part_ok(name) {
        e.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    e
}

/// `IsValidLabelValue`.
pub fn label_value(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push(max_len_error(63));
    }
    if !(s.is_empty() || qualified_name_part_ok(s)) {
        e.push(regex_error(
            LABEL_VALUE_ERR,
            &format!("({QUALIFIED_NAME_FMT})?"),
            &["MyValue", "my_value", "12345"],
        ));
    }
    e
}

/// `IsConfigMapKey` (ConfigMap and Secret data keys).
pub fn config_map_key(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push(max_len_error(253));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
    {
        e.push(regex_error(
            CONFIG_MAP_KEY_ERR,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if s == "." {
        e.push("must not be '.'".into());
    } else if s == ".." {
        e.push("must not be '..'".into());
    } else if s.starts_with("..") {
        e.push("must not start with '..'".into());
    }
    e
}

/// `IsValidPathSegmentName` (RBAC object names; every name is also checked by the storage key).
pub fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    let mut e = Vec::new();
    for bad in ["/", "%"] {
        if s.contains(bad) {
            e.push(format!("may not contain '{bad}'"));
        }
    }
    e
}

/// How a kind's `metadata.name` is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// `NameIsDNSSubdomain` (most kinds, custom resources).
    Subdomain,
    /// `NameIsDNSLabel` (Namespaces).
    Label,
    /// `ValidateRBACName` / path segment (Roles, bindings).
    PathSegment,
}

/// Options of [`validate_object_meta`].
#[derive(Debug, Clone, Copy)]
pub struct MetaRules {
    pub name: NameRule,
    pub namespaced: bool,
    /// Core-group kinds: a finalizer without `/` must be a standard one.
    pub core_finalizers: bool,
}

fn field_errs(field: &str, value: &str, msgs: Vec<String>) -> impl Iterator<Item = FieldError> {
    let v = Value::String(value.to_string());
    let field = field.to_string();
    msgs.into_iter()
        .map(move |m| FieldError::invalid(&field, &v, m))
}

/// `ValidateObjectMeta` of kube (create and update): name by `rules.name`, labels, annotations
/// (keys and the 256 KiB total), owner references, finalizers, generation.
pub fn validate_object_meta(obj: &Value, rules: MetaRules) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
    let name = s("name");
    if name.is_empty() {
        errs.push(FieldError {
            reason: "FieldValueRequired",
            field: "metadata.name".into(),
            value: None,
            detail: "name or generateName is required".into(),
        });
    } else {
        let msgs = match rules.name {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::PathSegment => path_segment_name(name),
        };
        errs.extend(field_errs("metadata.name", name, msgs));
    }
    if rules.namespaced {
        let ns = s("namespace");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace"));
        } else {
            errs.extend(field_errs("metadata.namespace", ns, dns1123_label(ns)));
        }
    }
    if meta
        .get("generation")
        .and_then(Value::as_i64)
        .is_some_and(|g| g < 0)
    {
        errs.push(FieldError::invalid(
            "metadata.generation",
            &meta["generation"],
            "must be greater than or equal to 0",
        ));
    }
    if let Some(Value::Object(labels)) = meta.get("labels") {
        for (k, v) in labels {
            errs.extend(field_errs("metadata.labels", k, qualified_name(k)));
            match v.as_str() {
                Some(val) => errs.extend(field_errs("metadata.labels", val, label_value(val))),
                None => errs.push(FieldError::type_invalid(
                    "metadata.labels",
                    v,
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(Value::Object(ann)) = meta.get("annotations") {
        let mut total = 0usize;
        for (k, v) in ann {
            errs.extend(field_errs(
                "metadata.annotations",
                k,
                qualified_name(&k.to_lowercase()),
            ));
            total += k.len() + v.as_str().map_or(0, str::len);
            if !v.is_string() {
                errs.push(FieldError::type_invalid(
                    "metadata.annotations",
                    v,
                    "annotation values must be strings",
                ));
            }
        }
        if total > ANNOTATIONS_MAX_BYTES {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                ANNOTATIONS_MAX_BYTES as u64,
            ));
        }
    }
    if let Some(Value::Array(refs)) = meta.get("ownerReferences") {
        let mut controller: Option<String> = None;
        for r in refs {
            let f = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
            let version = f("apiVersion").rsplit('/').next().unwrap_or("");
            if version.is_empty() {
                errs.push(FieldError::invalid(
                    "metadata.ownerReferences.apiVersion",
                    &Value::String(f("apiVersion").into()),
                    "version must not be empty",
                ));
            }
            for k in ["kind", "name", "uid"] {
                if f(k).is_empty() {
                    errs.push(FieldError::invalid(
                        &format!("metadata.ownerReferences.{k}"),
                        &Value::String(String::new()),
                        "must not be empty",
                    ));
                }
            }
            if f("apiVersion") == "v1" && f("kind") == "Event" {
                errs.push(FieldError::invalid(
                    "metadata.ownerReferences",
                    r,
                    "/v1, Kind=Event is disallowed from being an owner",
                ));
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                let this = format!("{}/{}", f("kind"), f("name"));
                match &controller {
                    Some(first) => errs.push(FieldError::invalid(
                        "metadata.ownerReferences",
                        &Value::Array(refs.clone()),
                        format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                    )),
                    None => controller = Some(this),
                }
            }
        }
    }
    if let Some(Value::Array(fins)) = meta.get("finalizers") {
        for (i, f) in fins.iter().enumerate() {
            let field = format!("metadata.finalizers[{i}]");
            let Some(name) = f.as_str() else {
                errs.push(FieldError::type_invalid(&field, f, "must be a string"));
                continue;
            };
            errs.extend(field_errs(
                "metadata.finalizers",
                name,
                qualified_name(name),
            ));
            if rules.core_finalizers
                && !name.contains('/')
                && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion")
            {
                errs.push(FieldError::invalid(
                    &field,
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        let has = |n: &str| fins.iter().any(|f| f == n);
        if has("orphan") && has("foregroundDeletion") {
            errs.push(FieldError::invalid(
                "metadata.finalizers",
                &Value::Array(fins.clone()),
                "finalizer orphan and foregroundDeletion cannot be both set",
            ));
        }
    }
    errs
}

/// `ValidateObjectMetaUpdate`: nothing but the rules the emulator does not enforce by
/// overwriting server-managed fields: no new finalizer on an object being deleted.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let deleting = old
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if !deleting {
        return Vec::new();
    }
    let list = |o: &Value| -> Vec<String> {
        o.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = list(old);
    let mut extra: Vec<String> = list(new)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    extra.sort();
    extra.dedup();
    if extra.is_empty() {
        return Vec::new();
    }
    let shown: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
    vec![FieldError::forbidden(
        "metadata.finalizers",
        format!(
            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            shown.join(", ")
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(e: &[FieldError]) -> Vec<String> {
        e.iter().map(FieldError::render).collect()
    }

    const SUB: MetaRules = MetaRules {
        name: NameRule::Subdomain,
        namespaced: true,
        core_finalizers: true,
    };

    #[test]
    fn names_follow_apimachinery() {
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("A"));
        assert!(!is_dns1123_subdomain("a_b"));
        // A subdomain has no per-part length limit, only 253 in total.
        assert!(is_dns1123_subdomain(&"a".repeat(100)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert_eq!(path_segment_name("system:discovery"), Vec::<String>::new());
        assert_eq!(path_segment_name("a/b"), vec!["may not contain '/'"]);
        assert_eq!(path_segment_name(".."), vec!["may not be '..'"]);
        let e = validate_object_meta(
            &json!({"metadata": {"name": "Bad_Name", "namespace": "ns"}}),
            SUB,
        );
        assert_eq!(
            render(&e),
            [
                "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
    }

    #[test]
    fn labels_annotations_owners_finalizers() {
        let long = "x".repeat(64);
        let e = validate_object_meta(
            &json!({"metadata": {"name": "a", "namespace": "ns",
                "labels": {"ok": "fine", "x": "bad value", "long": long, "bad key!": "v"},
                "annotations": {"Upper/Case": "v", "big": "y".repeat(ANNOTATIONS_MAX_BYTES)},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
                    {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "", "controller": true}],
                "finalizers": ["example.com/x", "plain"]}}),
            SUB,
        );
        let r = render(&e);
        let has = |s: &str| r.iter().any(|x| x.contains(s));
        assert!(
            has(
                "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string"
            ),
            "{r:#?}"
        );
        assert!(
            has(&format!(
                "metadata.labels: Invalid value: \"{}\": must be no more than 63 characters",
                "x".repeat(64)
            )),
            "{r:#?}"
        );
        assert!(
            has("metadata.labels: Invalid value: \"bad key!\": name part must consist of"),
            "{r:#?}"
        );
        assert!(
            has("metadata.annotations: Too long: may not be more than 262144 bytes"),
            "{r:#?}"
        );
        assert!(
            !has("Upper/Case"),
            "annotation keys are checked lower-cased: {r:#?}"
        );
        assert!(
            has("metadata.ownerReferences.uid: Invalid value: \"\": must not be empty"),
            "{r:#?}"
        );
        assert!(
            has(
                "Only one reference can have Controller set to true. Found \"true\" in references for A/a and B/b"
            ),
            "{r:#?}"
        );
        assert!(
            has(
                "metadata.finalizers[1]: Invalid value: \"plain\": name is neither a standard finalizer name nor is it fully qualified"
            ),
            "{r:#?}"
        );
        assert_eq!(config_map_key("ok-key_1.x"), Vec::<String>::new());
        assert_eq!(config_map_key("..x"), vec!["must not start with '..'"]);
        assert!(
            config_map_key("a/b")[0]
                .starts_with("a valid config key must consist of alphanumeric characters")
        );
    }

    #[test]
    fn no_new_finalizer_on_a_deleting_object() {
        let old = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["a.io/x"]}});
        let new = json!({"metadata": {"finalizers": ["a.io/x", "b.io/y"]}});
        assert_eq!(
            render(&validate_object_meta_update(&new, &old)),
            [
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b.io/y\"}"
            ]
        );
        let fewer = json!({"metadata": {"finalizers": []}});
        assert!(validate_object_meta_update(&fewer, &old).is_empty());
        let not_deleting = json!({"metadata": {"finalizers": []}});
        assert!(validate_object_meta_update(&new, &not_deleting).is_empty());
    }
}
