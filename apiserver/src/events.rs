//! Events: one storage for `v1` and `events.k8s.io/v1` (objects are kept in the core form and
//! converted field by field, as kube-apiserver converts through its internal type), and
//! `ValidateEventCreate` / `ValidateEventUpdate` with the stricter rules for `events.k8s.io`.

use serde_json::{Map, Value, json};

use crate::error::FieldError;
use crate::objectmeta;

pub const EVENTS_GROUP: &str = "events.k8s.io";

/// `events.k8s.io/v1` name ↔ core/v1 name.
const FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, to_core: bool, api_version: &str) -> Value {
    let Value::Object(m) = obj else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let renamed = FIELDS.iter().find_map(|(v1, core)| {
            if to_core && k == v1 {
                Some(*core)
            } else if !to_core && k == core {
                Some(*v1)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(k).to_string(), v.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in the core form (no-op for a core object).
pub fn to_core(obj: &Value) -> Value {
    if obj.get("apiVersion").and_then(Value::as_str) == Some("v1") {
        return obj.clone();
    }
    rename(obj, true, "v1")
}

/// A core Event in the `events.k8s.io/v1` form (no-op for an `events.k8s.io` object).
pub fn to_v1(obj: &Value) -> Value {
    if obj.get("apiVersion").and_then(Value::as_str) == Some("events.k8s.io/v1") {
        return obj.clone();
    }
    rename(obj, false, "events.k8s.io/v1")
}

fn s<'a>(o: &'a Value, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

fn set(o: &Value, k: &str) -> bool {
    o.get(k).is_some_and(|v| !v.is_null())
}

fn empty_invalid(field: &str, detail: String) -> FieldError {
    FieldError::invalid(field, &Value::String(String::new()), detail)
}

/// `legacyValidateEvent` (both APIs) on the core form.
fn legacy(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ns = ev
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved_ns = ev
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            &Value::String(involved_ns.to_string()),
            "does not match event.namespace",
        )
    };
    if !set(ev, "eventTime") {
        if involved_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != involved_ns {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = s(ev, "reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController"));
        }
        for m in objectmeta::qualified_name(controller) {
            errs.push(FieldError::invalid(
                "reportingController",
                &Value::String(controller.into()),
                m,
            ));
        }
        let instance = s(ev, "reportingInstance");
        if instance.is_empty() {
            errs.push(FieldError::required("reportingInstance"));
        }
        if instance.len() > 128 {
            errs.push(empty_invalid(
                "reportingInstance",
                "can have at most 128 characters".into(),
            ));
        }
        let action = s(ev, "action");
        if action.is_empty() {
            errs.push(FieldError::required("action"));
        }
        if action.len() > 128 {
            errs.push(empty_invalid(
                "action",
                "can have at most 128 characters".into(),
            ));
        }
        let reason = s(ev, "reason");
        if reason.is_empty() {
            errs.push(FieldError::required("reason"));
        }
        if reason.len() > 128 {
            errs.push(empty_invalid(
                "reason",
                "can have at most 128 characters".into(),
            ));
        }
        if s(ev, "message").len() > 1024 {
            errs.push(empty_invalid(
                "message",
                "can have at most 1024 characters".into(),
            ));
        }
    }
    for m in objectmeta::dns1123_subdomain(ns) {
        errs.push(FieldError::invalid(
            "namespace",
            &Value::String(ns.into()),
            m,
        ));
    }
    errs
}

fn series_errors(ev: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(series) = ev.get("series").filter(|v| v.is_object()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(empty_invalid("series.count", "should be at least 2".into()));
        }
        if !set(series, "lastObservedTime") {
            errs.push(FieldError::required("series.lastObservedTime"));
        }
    }
    errs
}

/// `ValidateEventCreate` on the core form; `strict` for requests through `events.k8s.io`.
pub fn validate_create(ev: &Value, strict: bool) -> Vec<FieldError> {
    let mut errs = legacy(ev);
    if !strict {
        return errs;
    }
    errs.extend(series_errors(ev));
    if !set(ev, "eventTime") {
        errs.push(FieldError::required("eventTime"));
    }
    let ty = s(ev, "type");
    if ty != "Normal" && ty != "Warning" {
        errs.push(empty_invalid("type", format!("has invalid value: {ty}")));
    }
    for (k, name) in [
        ("firstTimestamp", "firstTimestamp"),
        ("lastTimestamp", "lastTimestamp"),
    ] {
        if set(ev, k) {
            errs.push(empty_invalid(name, "needs to be unset".into()));
        }
    }
    if ev.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        errs.push(empty_invalid("count", "needs to be unset".into()));
    }
    if !s(ev.get("source").unwrap_or(&Value::Null), "component").is_empty()
        || !s(ev.get("source").unwrap_or(&Value::Null), "host").is_empty()
    {
        errs.push(empty_invalid("source", "needs to be unset".into()));
    }
    errs
}

/// `ValidateEventUpdate` on the core form.
pub fn validate_update(new: &Value, old: &Value, strict: bool) -> Vec<FieldError> {
    let mut errs = legacy(new);
    if !strict {
        return errs;
    }
    if new.get("series") != old.get("series") {
        errs.extend(series_errors(new));
    }
    for f in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    ] {
        let (n, o) = (new.get(f), old.get(f));
        let blank = |v: Option<&Value>| v.is_none_or(Value::is_null);
        if n != o && !(blank(n) && blank(o)) {
            let field = match f {
                "reportingComponent" => "reportingController",
                other => other,
            };
            errs.push(FieldError::invalid(
                field,
                n.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_event() -> Value {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
               "metadata": {"name": "e", "namespace": "team-a"},
               "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Warning", "reason": "Failed",
               "action": "Reconcile", "note": "boom", "reportingController": "tenantdb",
               "reportingInstance": "pod-1",
               "regarding": {"kind": "Tenant", "namespace": "team-a", "name": "t"}})
    }

    fn render(e: &[FieldError]) -> Vec<String> {
        e.iter().map(FieldError::render).collect()
    }

    #[test]
    fn conversion_round_trips() {
        let core = to_core(&v1_event());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["message"], "boom");
        assert_eq!(core["involvedObject"]["name"], "t");
        assert_eq!(core["reportingComponent"], "tenantdb");
        assert_eq!(to_v1(&core), v1_event());
        assert_eq!(to_core(&core), core);
    }

    #[test]
    fn limits_and_strict_rules() {
        assert!(validate_create(&to_core(&v1_event()), true).is_empty());
        let mut long = v1_event();
        long["note"] = json!("x".repeat(1025));
        long["reason"] = json!("r".repeat(129));
        long["action"] = json!("a".repeat(129));
        let e = render(&validate_create(&to_core(&long), true));
        assert!(
            e.contains(
                &"message: Invalid value: \"\": can have at most 1024 characters".to_string()
            ),
            "{e:?}"
        );
        assert!(
            e.contains(&"reason: Invalid value: \"\": can have at most 128 characters".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"action: Invalid value: \"\": can have at most 128 characters".to_string()),
            "{e:?}"
        );
        // Through the core API, an event without eventTime is legacy and barely checked.
        let legacy_ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"namespace": "team-a"},
                               "involvedObject": {"namespace": "team-a"}, "message": "x".repeat(5000)});
        assert!(validate_create(&legacy_ev, false).is_empty());
        assert!(!validate_create(&legacy_ev, true).is_empty());
        // Updates through events.k8s.io keep everything but the series immutable.
        let old = to_core(&v1_event());
        let mut new = old.clone();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:00:01.000000Z"});
        assert!(validate_update(&new, &old, true).is_empty());
        new["message"] = json!("changed");
        assert_eq!(
            render(&validate_update(&new, &old, true)),
            ["message: Invalid value: \"changed\": field is immutable"]
        );
    }
}
