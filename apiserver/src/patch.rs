//! Patch application: RFC 6902 JSON patch, RFC 7386 merge patch and a strategic-merge
//! approximation (server-side apply is `managed.rs` / `smd.rs`).

use serde_json::{Map, Value};

/// A failed patch (rendered as 422 by the HTTP layer, like the real server).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchError(pub String);

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_pointer(p: &str) -> Result<Vec<String>, PatchError> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| PatchError(format!("JSON pointer {p:?} must start with '/'")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get_path<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_path_mut<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn missing(path: &str) -> PatchError {
    PatchError(format!("doc is missing path: {path:?}: missing value"))
}

fn add(doc: &mut Value, path_str: &str, value: Value) -> Result<(), PatchError> {
    let path = parse_pointer(path_str)?;
    let Some((last, parent_path)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_path_mut(doc, parent_path).ok_or_else(|| missing(path_str))?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| PatchError(format!("invalid array index {last:?} in {path_str:?}")))?;
            if i > a.len() {
                return Err(PatchError(format!(
                    "add operation does not apply: index {i} out of bounds"
                )));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(missing(path_str)),
    }
}

fn remove(doc: &mut Value, path_str: &str) -> Result<Value, PatchError> {
    let path = parse_pointer(path_str)?;
    let Some((last, parent_path)) = path.split_last() else {
        return Err(PatchError("cannot remove the whole document".into()));
    };
    let parent = get_path_mut(doc, parent_path).ok_or_else(|| missing(path_str))?;
    match parent {
        Value::Object(m) => m.remove(last).ok_or_else(|| missing(path_str)),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing(path_str))?;
            if i >= a.len() {
                return Err(missing(path_str));
            }
            Ok(a.remove(i))
        }
        _ => Err(missing(path_str)),
    }
}

/// Apply an RFC 6902 JSON patch. `test` against a missing path compares equal to `null`
/// (the behaviour of the real API server, which kube-runtime's finalizer helper relies on).
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError("JSON patch must be an array of operations".into()))?;
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError("operation without \"op\"".into()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| PatchError(format!("operation {name:?} without \"path\"")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError(format!("operation {name:?} without \"value\"")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError(format!("operation {name:?} without \"from\"")))
        };
        match name {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                let p = parse_pointer(path)?;
                let v = value()?;
                let slot = get_path_mut(doc, &p).ok_or_else(|| missing(path))?;
                *slot = v;
            }
            "move" => {
                let v = remove(doc, from()?)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get_path(doc, &parse_pointer(from()?)?)
                    .cloned()
                    .ok_or_else(|| missing(path))?;
                add(doc, path, v)?;
            }
            "test" => {
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                let got = get_path(doc, &parse_pointer(path)?)
                    .cloned()
                    .unwrap_or(Value::Null);
                if got != want {
                    return Err(PatchError(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(PatchError(format!(
                    "unexpected kind of operation {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(pm) = patch {
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        if let Value::Object(tm) = target {
            for (k, v) in pm {
                if v.is_null() {
                    tm.remove(k);
                } else {
                    merge_patch(tm.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
    } else {
        *target = patch.clone();
    }
}

/// Strategic merge patch, approximated: a merge patch that understands the directives kubectl
/// emits for metadata (`$setElementOrder/…`, `$retainKeys`, `$deleteFromPrimitiveList/…`,
/// `$patch: delete|replace`) and merges `metadata.finalizers` (set) and
/// `metadata.ownerReferences` (keyed by uid) like the real server. Other lists are replaced, which
/// is exact for custom resources (the real server refuses SMP on CRs) and for Secret/ConfigMap.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    smp(target, patch, "");
}

fn smp(target: &mut Value, patch: &Value, path: &str) {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = pm.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(tm) = target else { return };
    if let Some(Value::Array(keep)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tm.retain(|k, _| keep.contains(&k.as_str()) || pm.contains_key(k));
    }
    for (k, v) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (tm.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let child = format!("{path}/{k}");
        if v.is_null() {
            tm.remove(k);
            continue;
        }
        match (child.as_str(), v) {
            ("/metadata/finalizers", Value::Array(add)) => {
                let slot = tm.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                union_list(slot, add);
            }
            ("/metadata/ownerReferences", Value::Array(items)) => {
                let slot = tm.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                merge_keyed_list(slot, items, &["uid"], |t, p| smp(t, p, ""));
            }
            (_, Value::Object(o)) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                tm.remove(k);
            }
            _ => smp(tm.entry(k.clone()).or_insert(Value::Null), v, &child),
        }
    }
}

fn union_list(slot: &mut Value, add: &[Value]) {
    if let Value::Array(list) = slot {
        for x in add {
            if !list.contains(x) {
                list.push(x.clone());
            }
        }
    } else {
        *slot = Value::Array(add.to_vec());
    }
}

fn merge_keyed_list(
    slot: &mut Value,
    items: &[Value],
    keys: &[&str],
    mut merge: impl FnMut(&mut Value, &Value),
) {
    if !slot.is_array() {
        *slot = Value::Array(vec![]);
    }
    let Value::Array(list) = slot else { return };
    for item in items {
        let same = |e: &Value| keys.iter().all(|k| e.get(*k) == item.get(*k));
        if let Some(existing) = list.iter_mut().find(|e| same(e)) {
            if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                let key: Vec<Option<&Value>> = keys.iter().map(|k| item.get(*k)).collect();
                list.retain(|e| keys.iter().map(|k| e.get(*k)).collect::<Vec<_>>() != key);
                break;
            }
            merge(existing, item);
        } else if item.get("$patch").is_none() {
            list.push(item.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_test_null_on_missing_path_passes() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let p = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}
        ]);
        json_patch(&mut doc, &p).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["x"]));
        // now the test against null fails
        assert!(json_patch(&mut doc, &p).is_err());
    }

    #[test]
    fn json_patch_ops() {
        let mut doc = json!({"a": [1, 2, 3], "b": {"c": 1}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/a/1", "value": 2},
                {"op": "remove", "path": "/a/1"},
                {"op": "add", "path": "/a/-", "value": 4},
                {"op": "add", "path": "/a/0", "value": 0},
                {"op": "replace", "path": "/b/c", "value": "x"},
                {"op": "copy", "from": "/b", "path": "/d"},
                {"op": "move", "from": "/d/c", "path": "/e"},
                {"op": "add", "path": "/f~1g", "value": true}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"a": [0, 1, 3, 4], "b": {"c": "x"}, "d": {}, "e": "x", "f/g": true})
        );
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "replace", "path": "/nope", "value": 1}])
            )
            .is_err()
        );
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/e", "value": "y"}])
            )
            .is_err()
        );
        assert!(json_patch(&mut doc, &json!([{"op": "frob", "path": "/e"}])).is_err());
        assert!(json_patch(&mut doc, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "n": {"x": null}}),
        );
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3], "n": {}}));
        let mut s = json!("x");
        merge_patch(&mut s, &json!({"a": 1}));
        assert_eq!(s, json!({"a": 1}));
    }

    #[test]
    fn strategic_merge_metadata_lists() {
        let mut doc = json!({"metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1", "name": "x"}]}, "data": {"k": "v"}});
        strategic_merge_patch(
            &mut doc,
            &json!({"$setElementOrder/finalizers": ["a", "b"], "metadata": {"finalizers": ["b"],
                "ownerReferences": [{"uid": "2", "name": "y"}]}, "data": {"k": null, "n": "m"}}),
        );
        assert_eq!(doc["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            doc["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
        assert_eq!(doc["data"], json!({"n": "m"}));
        strategic_merge_patch(
            &mut doc,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(doc["metadata"]["finalizers"], json!(["b"]));
    }
}
