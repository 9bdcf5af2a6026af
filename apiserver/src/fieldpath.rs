//! Field paths and sets as structured-merge-diff (`sigs.k8s.io/structured-merge-diff/fieldpath`)
//! defines them: path elements `f:<field>`, `k:{<keys>}` (list-map items), `v:<value>` (set
//! items), `i:<index>`; a set of member paths; the `FieldsV1` JSON encoding of
//! `metadata.managedFields[].fieldsV1`; and the `.a.b[k="v"]` rendering of conflict messages.

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// One step of a path. Values are kept as canonical JSON text so that elements are ordered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// A list-map item: its key fields and their values (sorted by field name).
    Key(Vec<(String, String)>),
    /// A set item (scalar value).
    Value(String),
    /// An item of a list without keys (not produced for atomic lists).
    Index(usize),
}

pub type Path = Vec<PathElement>;

impl PathElement {
    /// `f:name` / `k:{"type":"Ready"}` / `v:"x"` / `i:0`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(kv) => {
                let mut m = Map::new();
                for (k, v) in kv {
                    m.insert(
                        k.clone(),
                        serde_json::from_str(v).unwrap_or(Value::String(v.clone())),
                    );
                }
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    pub fn decode(s: &str) -> Option<PathElement> {
        let (kind, rest) = s.split_at_checked(2)?;
        match kind {
            "f:" => Some(PathElement::Field(rest.to_string())),
            "k:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                let m = v.as_object()?;
                let mut kv: Vec<(String, String)> =
                    m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                kv.sort();
                Some(PathElement::Key(kv))
            }
            "v:" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(PathElement::Value(v.to_string()))
            }
            "i:" => rest.parse().ok().map(PathElement::Index),
            _ => None,
        }
    }

    /// As in conflict messages: `.name`, `[type="Ready"]`, `[="x"]`, `[0]`.
    pub fn render(&self) -> String {
        match self {
            PathElement::Field(f) => format!(".{f}"),
            PathElement::Key(kv) => {
                let parts: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(v) => format!("[={v}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// `.spec.conditions[type="Ready"].status`
pub fn render_path(p: &[PathElement]) -> String {
    p.iter().map(PathElement::render).collect()
}

/// A set of member paths (structured-merge-diff's `fieldpath.Set`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<Path>,
}

impl Set {
    pub fn new() -> Self {
        Set::default()
    }

    pub fn insert(&mut self, p: Path) {
        self.members.insert(p);
    }

    pub fn has(&self, p: &[PathElement]) -> bool {
        self.members.contains(p)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.members.iter()
    }

    pub fn union(&self, o: &Set) -> Set {
        Set {
            members: self.members.union(&o.members).cloned().collect(),
        }
    }

    pub fn difference(&self, o: &Set) -> Set {
        Set {
            members: self.members.difference(&o.members).cloned().collect(),
        }
    }

    pub fn intersection(&self, o: &Set) -> Set {
        Set {
            members: self.members.intersection(&o.members).cloned().collect(),
        }
    }

    /// Members of `self` that are neither in `o` nor below a member of `o`.
    pub fn recursive_difference(&self, o: &Set) -> Set {
        Set {
            members: self
                .members
                .iter()
                .filter(|p| !(0..=p.len()).any(|n| o.members.contains(&p[..n])))
                .cloned()
                .collect(),
        }
    }

    /// Only members at or below `prefix`.
    pub fn under(&self, prefix: &[PathElement]) -> Set {
        Set {
            members: self
                .members
                .iter()
                .filter(|p| p.starts_with(prefix))
                .cloned()
                .collect(),
        }
    }

    /// Paths below `pe` (with `pe` stripped), excluding `pe` itself.
    pub fn with_prefix(&self, pe: &PathElement) -> Set {
        Set {
            members: self
                .members
                .iter()
                .filter(|p| p.len() > 1 && &p[0] == pe)
                .map(|p| p[1..].to_vec())
                .collect(),
        }
    }

    /// Whether any member lies strictly below `pe`.
    pub fn has_children(&self, pe: &PathElement) -> bool {
        self.members.iter().any(|p| p.len() > 1 && &p[0] == pe)
    }

    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        fn build(paths: &[&[PathElement]]) -> Map<String, Value> {
            let mut out = Map::new();
            let mut i = 0;
            while i < paths.len() {
                let head = &paths[i][0];
                let mut j = i;
                let mut member = false;
                let mut children: Vec<&[PathElement]> = Vec::new();
                while j < paths.len() && &paths[j][0] == head {
                    if paths[j].len() == 1 {
                        member = true;
                    } else {
                        children.push(&paths[j][1..]);
                    }
                    j += 1;
                }
                let mut node = build(&children);
                if member && !node.is_empty() {
                    node.insert(".".into(), Value::Object(Map::new()));
                }
                out.insert(head.encode(), Value::Object(node));
                i = j;
            }
            out
        }
        let paths: Vec<&[PathElement]> = self
            .members
            .iter()
            .filter(|p| !p.is_empty())
            .map(Vec::as_slice)
            .collect();
        Value::Object(build(&paths))
    }

    /// Parse `fieldsV1`; `None` when it is not valid.
    pub fn from_fields_v1(v: &Value) -> Option<Set> {
        fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) -> Option<()> {
            let m = v.as_object()?;
            if m.is_empty() && !prefix.is_empty() {
                out.insert(prefix.clone());
                return Some(());
            }
            for (k, child) in m {
                if k == "." {
                    if !prefix.is_empty() {
                        out.insert(prefix.clone());
                    }
                    continue;
                }
                prefix.push(PathElement::decode(k)?);
                walk(child, prefix, out)?;
                prefix.pop();
            }
            Some(())
        }
        let mut out = BTreeSet::new();
        walk(v, &mut Vec::new(), &mut out)?;
        Some(Set { members: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_roundtrip_and_rendering() {
        let mut s = Set::new();
        s.insert(vec![f("data"), f("a")]);
        s.insert(vec![f("metadata"), f("labels"), f("app")]);
        let key = PathElement::Key(vec![("type".into(), "\"Ready\"".into())]);
        s.insert(vec![f("status"), f("conditions"), key.clone()]);
        s.insert(vec![f("status"), f("conditions"), key.clone(), f("status")]);
        s.insert(vec![
            f("spec"),
            f("tags"),
            PathElement::Value("\"x\"".into()),
        ]);
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}},
                   "f:spec": {"f:tags": {"v:\"x\"": {}}},
                   "f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}}}})
        );
        assert_eq!(Set::from_fields_v1(&v), Some(s));
        assert_eq!(
            render_path(&[f("status"), f("conditions"), key, f("status")]),
            ".status.conditions[type=\"Ready\"].status"
        );
        assert_eq!(Set::from_fields_v1(&json!({"x:bad": {}})), None);
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::new();
        a.insert(vec![f("a"), f("b")]);
        a.insert(vec![f("c")]);
        let mut b = Set::new();
        b.insert(vec![f("a")]);
        assert_eq!(a.recursive_difference(&b).len(), 1);
        assert_eq!(a.difference(&b).len(), 2);
        assert_eq!(a.with_prefix(&f("a")).len(), 1);
        assert!(a.has_children(&f("a")) && !a.has_children(&f("c")));
    }
}
