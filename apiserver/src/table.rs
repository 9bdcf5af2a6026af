//! Server-side printing (`meta.k8s.io/v1 Table`) for `kubectl get`, and the JSONPath subset used
//! by `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::registry::{PrinterColumn, ResourceDef};

/// What a Table row carries in `object` (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// How objects are rendered in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Full,
    PartialMetadata,
    Table(IncludeObject),
}

/// The object as served at `version` (the store keeps one copy for all served versions; Events
/// of `events.k8s.io` are stored in the core form and converted).
pub fn present(obj: &Value, def: &ResourceDef, version: &str) -> Value {
    let av = def.api_version(version);
    let mut o = if def.storage.is_some() && def.is(crate::events::EVENTS_GROUP, "events") {
        crate::events::to_v1(obj)
    } else {
        obj.clone()
    };
    if o.get("apiVersion").and_then(Value::as_str) != Some(av.as_str())
        && let Value::Object(m) = &mut o
    {
        m.insert("apiVersion".into(), json!(av));
    }
    o
}

pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Evaluate a printer-column JSONPath subset: `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`,
/// plus the internal `#count .path` (number of keys / items).
pub fn eval_path<'a>(obj: &'a Value, path: &str) -> Option<Value> {
    if let Some(p) = path.strip_prefix("#count ") {
        return Some(match eval_path(obj, p)? {
            Value::Object(m) => json!(m.len()),
            Value::Array(a) => json!(a.len()),
            _ => json!(0),
        });
    }
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('.').unwrap_or(p);
    let mut cur: &'a Value = obj;
    for seg in split_segments(p) {
        let (name, filters) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg.as_str(), ""),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        let mut rest = filters;
        while let Some(stripped) = rest.strip_prefix('[') {
            let close = stripped.find(']')?;
            let inner = &stripped[..close];
            rest = &stripped[close + 1..];
            if let Ok(i) = inner.parse::<usize>() {
                cur = cur.get(i)?;
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, v) = f.split_once("==")?;
                let v = v.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|e| e.get(k.trim()).and_then(Value::as_str) == Some(v))?;
            } else if inner == "*" {
                // take the first element
                cur = cur.get(0)?;
            } else {
                return None;
            }
        }
    }
    Some(cur.clone())
}

fn split_segments(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Go's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

fn age_column() -> PrinterColumn {
    PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        json_path: ".metadata.creationTimestamp".into(),
        priority: 0,
    }
}

/// Effective columns: Name, then the declared columns; Age is added unless a CRD declares its own.
pub fn columns(def: &ResourceDef, version: &str) -> Vec<PrinterColumn> {
    let mut cols = vec![PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        json_path: ".metadata.name".into(),
        priority: 0,
    }];
    let declared = def.columns.get(version).cloned().unwrap_or_default();
    let custom = def.is_crd && !declared.is_empty();
    cols.extend(declared);
    if !custom {
        cols.push(age_column());
    }
    cols
}

fn cell(obj: &Value, col: &PrinterColumn) -> Value {
    let v = eval_path(obj, &col.json_path);
    match (col.type_.as_str(), v) {
        (_, None) | (_, Some(Value::Null)) => Value::Null,
        ("date", Some(Value::String(s))) => json!(age(&s)),
        ("string", Some(Value::String(s))) => json!(s),
        ("string", Some(other)) => json!(other.to_string()),
        (_, Some(other)) => other,
    }
}

/// Build a Table for `objs`.
pub fn table(
    def: &ResourceDef,
    version: &str,
    objs: &[&Value],
    list_meta: Value,
    include: IncludeObject,
    with_columns: bool,
) -> Value {
    let cols = columns(def, version);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
                   "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let o = &present(o, def, version);
            let cells: Vec<Value> = cols.iter().map(|c| cell(o, c)).collect();
            let mut row = json!({"cells": cells});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial(o),
                IncludeObject::Object => row["object"] = present(o, def, version),
            }
            row
        })
        .collect();
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows});
    if with_columns {
        t["columnDefinitions"] = Value::Array(defs);
    } else {
        t["columnDefinitions"] = json!(null);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let o = json!({"status": {"phase": "Ready", "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
                       "spec": {"items": [{"x": 1}]}, "data": {"a": "", "b": ""}});
        assert_eq!(eval_path(&o, ".status.phase"), Some(json!("Ready")));
        assert_eq!(
            eval_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(eval_path(&o, ".spec.items[0].x"), Some(json!(1)));
        assert_eq!(eval_path(&o, "#count .data"), Some(json!(2)));
        assert_eq!(eval_path(&o, ".nope.x"), None);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 3 + 60 * 5), "3h5m");
        assert_eq!(human_duration(86400 * 3), "3d");
    }
}
