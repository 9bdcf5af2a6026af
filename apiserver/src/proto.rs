//! Just enough Kubernetes protobuf decoding for `kubectl create namespace|secret|configmap`,
//! which send typed objects as `application/vnd.kubernetes.protobuf`. Other kinds answer 415.

use base64::Engine as _;
use serde_json::{Map, Value, json};

type Fields<'a> = Vec<(u64, Field<'a>)>;

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn parse(buf: &[u8]) -> Option<Fields<'_>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wt) = (key >> 3, key & 7);
        match wt {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                out.push((num, Field::Bytes(buf.get(pos..end)?)));
                pos = end;
            }
            _ => return None,
        }
    }
    Some(out)
}

fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn bytes_of<'a, 'b>(f: &'b Fields<'a>, n: u64) -> impl Iterator<Item = &'a [u8]> + 'b {
    f.iter()
        .filter(move |(k, _)| *k == n)
        .filter_map(|(_, v)| match v {
            Field::Bytes(b) => Some(*b),
            Field::Varint(_) => None,
        })
}

fn varint_of(f: &Fields<'_>, n: u64) -> Option<u64> {
    f.iter()
        .rev()
        .find(|(k, _)| *k == n)
        .and_then(|(_, v)| match v {
            Field::Varint(x) => Some(*x),
            Field::Bytes(_) => None,
        })
}

/// Last occurrence of a string field; proto3-style empty strings count as unset.
fn first_str(f: &Fields<'_>, n: u64) -> Option<Value> {
    bytes_of(f, n).last().filter(|b| !b.is_empty()).map(string)
}

/// map<string, string|bytes> entries (`{1: key, 2: value}`).
fn map(f: &Fields<'_>, n: u64, as_base64: bool) -> Option<Value> {
    let mut m = Map::new();
    for entry in bytes_of(f, n) {
        let e = parse(entry)?;
        let k = bytes_of(&e, 1)
            .last()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let v = bytes_of(&e, 2).last().unwrap_or(&[]);
        let v = if as_base64 {
            json!(base64::engine::general_purpose::STANDARD.encode(v))
        } else {
            string(v)
        };
        m.insert(k, v);
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let f = parse(b)?;
    let mut m = Map::new();
    for (n, key) in [
        (1, "name"),
        (2, "generateName"),
        (3, "namespace"),
        (5, "uid"),
        (6, "resourceVersion"),
    ] {
        if let Some(v) = first_str(&f, n) {
            m.insert(key.into(), v);
        }
    }
    if let Some(l) = map(&f, 11, false) {
        m.insert("labels".into(), l);
    }
    if let Some(a) = map(&f, 12, false) {
        m.insert("annotations".into(), a);
    }
    let fins: Vec<Value> = bytes_of(&f, 14).map(string).collect();
    if !fins.is_empty() {
        m.insert("finalizers".into(), Value::Array(fins));
    }
    let mut refs = Vec::new();
    for r in bytes_of(&f, 13) {
        let r = parse(r)?;
        let mut o = Map::new();
        for (n, key) in [(1, "kind"), (3, "name"), (4, "uid"), (5, "apiVersion")] {
            if let Some(v) = first_str(&r, n) {
                o.insert(key.into(), v);
            }
        }
        for (n, key) in [(6, "controller"), (7, "blockOwnerDeletion")] {
            if let Some(v) = varint_of(&r, n) {
                o.insert(key.into(), json!(v != 0));
            }
        }
        refs.push(Value::Object(o));
    }
    if !refs.is_empty() {
        m.insert("ownerReferences".into(), Value::Array(refs));
    }
    Some(Value::Object(m))
}

/// Decode a `k8s\0`-prefixed `runtime.Unknown` envelope holding a Namespace, Secret or ConfigMap.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing protobuf envelope magic")?;
    let unknown = parse(rest).ok_or("malformed protobuf envelope")?;
    let type_meta = bytes_of(&unknown, 1)
        .last()
        .and_then(parse)
        .ok_or("protobuf envelope without typeMeta")?;
    let api_version = first_str(&type_meta, 1).unwrap_or(json!(""));
    let kind = first_str(&type_meta, 2)
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let raw = bytes_of(&unknown, 2)
        .last()
        .ok_or("protobuf envelope without raw object")?;
    let f = parse(raw).ok_or("malformed protobuf object")?;
    let metadata = bytes_of(&f, 1)
        .last()
        .and_then(object_meta)
        .unwrap_or_else(|| json!({}));
    let mut obj = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    match kind.as_str() {
        "Namespace" => {
            let fins: Vec<Value> = bytes_of(&f, 2)
                .last()
                .and_then(parse)
                .map(|s| bytes_of(&s, 1).map(string).collect())
                .unwrap_or_default();
            if !fins.is_empty() {
                obj["spec"] = json!({"finalizers": fins});
            }
        }
        "Secret" => {
            if let Some(d) = map(&f, 2, true) {
                obj["data"] = d;
            }
            if let Some(t) = first_str(&f, 3) {
                obj["type"] = t;
            }
            if let Some(d) = map(&f, 4, false) {
                obj["stringData"] = d;
            }
            if let Some(i) = varint_of(&f, 5) {
                obj["immutable"] = json!(i != 0);
            }
        }
        "ConfigMap" => {
            if let Some(d) = map(&f, 2, false) {
                obj["data"] = d;
            }
            if let Some(d) = map(&f, 3, true) {
                obj["binaryData"] = d;
            }
            if let Some(i) = varint_of(&f, 4) {
                obj["immutable"] = json!(i != 0);
            }
        }
        other => {
            return Err(format!(
                "protobuf bodies are only understood for Namespace, Secret and ConfigMap (got {other:?}); send JSON"
            ));
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(n: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn decodes_a_secret() {
        let entry = [ld(1, b"k"), ld(2, b"v")].concat();
        let meta = [
            ld(1, b"s1"),
            ld(3, b"ns"),
            ld(11, &[ld(1, b"app"), ld(2, b"x")].concat()),
        ]
        .concat();
        let secret = [ld(1, &meta), ld(2, &entry), ld(3, b"Opaque")].concat();
        let tm = [ld(1, b"v1"), ld(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "namespace": "ns", "labels": {"app": "x"}},
                   "data": {"k": "dg=="}, "type": "Opaque"})
        );
        assert!(decode(b"nope").is_err());
    }
}
