//! Label and field selectors.

use serde_json::Value;

use crate::registry::ResourceDef;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed `labelSelector`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Req>,
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let bad = || format!("unable to parse requirement: invalid label selector {term:?}");
            let req = if let Some(open) = term.find('(') {
                let close = term.rfind(')').ok_or_else(bad)?;
                let head: Vec<&str> = term[..open].split_whitespace().collect();
                let vals: Vec<String> = term[open + 1..close]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                match head.as_slice() {
                    [k, "in"] => Req::In(k.to_string(), vals),
                    [k, "notin"] => Req::NotIn(k.to_string(), vals),
                    _ => return Err(bad()),
                }
            } else if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('>') {
                Req::Gt(k.trim().into(), v.trim().parse().map_err(|_| bad())?)
            } else if let Some((k, v)) = term.split_once('<') {
                Req::Lt(k.trim().into(), v.trim().parse().map_err(|_| bad())?)
            } else {
                Req::Exists(term.clone())
            };
            let (key, vals): (&str, Vec<&str>) = match &req {
                Req::Exists(k) | Req::NotExists(k) | Req::Gt(k, _) | Req::Lt(k, _) => (k, vec![]),
                Req::Eq(k, v) | Req::NotEq(k, v) => (k, vec![v.as_str()]),
                Req::In(k, v) | Req::NotIn(k, v) => (k, v.iter().map(String::as_str).collect()),
            };
            if !valid_key(key) || !vals.iter().all(|v| valid_value(v)) {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                let val = val.as_str().ok_or("matchLabels values must be strings")?;
                reqs.push(Req::Eq(k.clone(), val.to_string()));
            }
        }
        for e in v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let vals: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            reqs.push(match e.get("operator").and_then(Value::as_str) {
                Some("In") => Req::In(key, vals),
                Some("NotIn") => Req::NotIn(key, vals),
                Some("Exists") => Req::Exists(key),
                Some("DoesNotExist") => Req::NotExists(key),
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            });
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Does an object (full JSON) match?
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Gt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            Req::Lt(k, n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

/// A parsed `fieldSelector` (`=`, `==`, `!=` on dotted paths; values compared as strings,
/// a missing field is `""`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            // The leftmost operator splits the term (kube's `splitTerm`): `a=b==` is `a` = `b==`.
            let op = term.char_indices().find_map(|(i, _)| {
                let rest = &term[i..];
                ["!=", "==", "="]
                    .into_iter()
                    .find(|op| rest.starts_with(op))
                    .map(|op| (i, op))
            });
            let Some((i, op)) = op else {
                return Err(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ));
            };
            let (k, neg, v) = (&term[..i], op == "!=", &term[i + op.len()..]);
            reqs.push((k.trim().to_string(), neg, v.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// kube-apiserver answers 400 `field label not supported: <field>` for a field the kind does
    /// not select on: `metadata.name` (and `metadata.namespace` where namespaced) everywhere, and
    /// a few per kind (`type` of Secrets, `status.phase` of Namespaces, Events' references).
    pub fn supported_by(&self, def: &ResourceDef) -> Result<(), String> {
        match self.reqs.iter().find(|(k, _, _)| !supported(def, k)) {
            Some((k, _, _)) => Err(format!("field label not supported: {k}")),
            None => Ok(()),
        }
    }

    /// The selector in the stored (core) form of `def`'s objects: events.k8s.io Events are stored
    /// as core Events, so `regarding.name` is `involvedObject.name` there (kube's field label
    /// conversion of events.k8s.io/v1).
    pub fn stored_form(mut self, def: &ResourceDef) -> Self {
        if (def.group.as_str(), def.plural.as_str()) == ("events.k8s.io", "events") {
            for (k, _, _) in &mut self.reqs {
                if let Some(rest) = k.strip_prefix("regarding.") {
                    *k = format!("involvedObject.{rest}");
                } else if k == "reportingController" {
                    *k = "reportingComponent".into();
                }
            }
        }
        self
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(path, neg, want)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) != *neg
        })
    }
}

/// The fields `def`'s kind can be selected on (its `GetAttrs`/field label conversion).
fn supported(def: &ResourceDef, field: &str) -> bool {
    const CORE_EVENT: &[&str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    const EVENT: &[&str] = &[
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    ];
    match field {
        "metadata.name" => true,
        "metadata.namespace" => def.namespaced,
        f => match (def.group.as_str(), def.plural.as_str()) {
            ("", "secrets") => f == "type",
            ("", "namespaces") => f == "status.phase",
            ("", "events") => CORE_EVENT.contains(&f),
            ("events.k8s.io", "events") => EVENT.contains(&f),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "n1", "namespace": "ns", "labels": labels}, "type": "Opaque"})
    }

    #[test]
    fn label_selector_ops() {
        let o = obj(json!({"app": "db", "tier": "gold", "n": "5"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m(""));
        assert!(m("app=db"));
        assert!(m("app==db"));
        assert!(!m("app!=db"));
        assert!(m("app!=web"));
        assert!(m("tier in (gold, silver)"));
        assert!(!m("tier notin (gold,silver)"));
        assert!(m("zone notin (a)"));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!zone"));
        assert!(m("app=db,tier in (gold),!zone"));
        assert!(!m("app=db,tier in (silver)"));
        assert!(m("n>4") && !m("n<5"));
        assert!(!m("zone"));
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
    }

    #[test]
    fn field_selector() {
        let o = obj(json!({}));
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&o);
        assert!(m("metadata.name=n1"));
        assert!(m("metadata.name==n1,metadata.namespace=ns"));
        assert!(!m("metadata.namespace!=ns"));
        assert!(m("type=Opaque"));
        assert!(m("status.phase="));
        assert!(FieldSelector::parse("garbage").is_err());
        // The leftmost operator splits a term.
        let v = json!({"type": "a=="});
        assert!(FieldSelector::parse("type=a==").unwrap().matches(&v));
    }

    #[test]
    fn supported_fields_and_the_events_stored_form() {
        let reg = crate::registry::Registry::with_builtins();
        let def = |g: &str, p: &str| reg.get(g, p).unwrap().clone();
        let ok = |d: &ResourceDef, s: &str| FieldSelector::parse(s).unwrap().supported_by(d);
        let (secrets, ns, events) = (
            def("", "secrets"),
            def("", "namespaces"),
            def("events.k8s.io", "events"),
        );
        assert_eq!(ok(&secrets, "type=Opaque,metadata.namespace=a"), Ok(()));
        assert_eq!(
            ok(&secrets, "data.x=1"),
            Err("field label not supported: data.x".into())
        );
        assert_eq!(ok(&ns, "status.phase=Active"), Ok(()));
        assert!(ok(&ns, "metadata.namespace=x").is_err(), "cluster-scoped");
        assert_eq!(
            ok(&events, "regarding.name=t,reportingController=c"),
            Ok(())
        );
        assert!(
            ok(&events, "involvedObject.name=t").is_err(),
            "the core name"
        );
        let stored = json!({"involvedObject": {"name": "t"}, "reportingComponent": "c"});
        let f = FieldSelector::parse("regarding.name=t,reportingController=c").unwrap();
        assert!(!f.matches(&stored));
        assert!(f.stored_form(&events).matches(&stored));
    }
}
