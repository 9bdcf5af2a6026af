//! The status condition of every tenantdb resource: Kubernetes' `metav1.Condition` on the wire and
//! in the CRD schema, stored compactly in the operator's caches.
//!
//! Every cached Tenant carries five or six conditions. As `k8s_openapi`'s `Condition` (four
//! `String`s) each condition costs four heap allocations, three of them for values that repeat
//! across every Tenant (`type`, `status`, `reason`: "Ready", "True", "AsExpected", …). Here those
//! three are shared, reference-counted strings from one bounded table, so 10,000 Tenants hold one
//! copy of "Ready" instead of 10,000 (bench/README.md, finding 13). Serialization, deserialization
//! and the JSON schema are `metav1.Condition`'s own (they go through the `k8s_openapi` type), so the
//! CRDs and the JSON on the wire are unchanged (`crd_drift`, the `wire_format_*` tests below).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as WireCondition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// At most this many distinct strings are shared; past it, a new value gets its own allocation.
/// Condition types, statuses and reasons are a small fixed set written by the operator; the bound
/// only keeps a status edited by hand with ever new values from growing the table without limit.
/// (The CRD schema bounds a type to 316 characters and a reason to 1,024: at most about 1 MiB.)
const SHARED_CAP: usize = 1024;

static SHARED: LazyLock<Mutex<SharedTable>> =
    LazyLock::new(|| Mutex::new(SharedTable::new(SHARED_CAP)));

/// The table of shared strings: at most `cap` of them.
struct SharedTable {
    strings: HashSet<Arc<str>>,
    cap: usize,
}

impl SharedTable {
    fn new(cap: usize) -> Self {
        Self {
            strings: HashSet::new(),
            cap,
        }
    }

    /// The shared copy of `s`, added if there is room; a copy of its own if not.
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(existing) = self.strings.get(s) {
            return Arc::clone(existing);
        }
        let value: Arc<str> = Arc::from(s);
        if self.strings.len() < self.cap {
            self.strings.insert(Arc::clone(&value));
        }
        value
    }
}

/// A short string that repeats across many objects (a condition's type, status or reason): one
/// shared copy per distinct value. Compares, orders and hashes like the string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    /// The shared copy of `s` (a new one when the table is full).
    pub fn new(s: &str) -> Self {
        let mut table = SHARED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Self(table.get(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        Self::new("")
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// One status condition, with the fields and meaning of Kubernetes' `metav1.Condition`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The condition's type in CamelCase ("Ready", "Provisioned", …).
    pub type_: SharedStr,
    /// "True", "False" or "Unknown".
    pub status: SharedStr,
    /// Programmatic identifier of the reason for the last transition, CamelCase.
    pub reason: SharedStr,
    /// Human-readable detail of the transition.
    pub message: String,
    /// The `metadata.generation` the condition was set for.
    pub observed_generation: Option<i64>,
    /// When the status last changed.
    pub last_transition_time: Time,
}

impl From<WireCondition> for Condition {
    fn from(c: WireCondition) -> Self {
        Self {
            type_: SharedStr::new(&c.type_),
            status: SharedStr::new(&c.status),
            reason: SharedStr::new(&c.reason),
            message: c.message,
            observed_generation: c.observed_generation,
            last_transition_time: c.last_transition_time,
        }
    }
}

impl From<&Condition> for WireCondition {
    fn from(c: &Condition) -> Self {
        Self {
            type_: c.type_.as_str().to_owned(),
            status: c.status.as_str().to_owned(),
            reason: c.reason.as_str().to_owned(),
            message: c.message.clone(),
            observed_generation: c.observed_generation,
            last_transition_time: c.last_transition_time.clone(),
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireCondition::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        WireCondition::deserialize(deserializer).map(Self::from)
    }
}

impl JsonSchema for Condition {
    fn inline_schema() -> bool {
        WireCondition::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        WireCondition::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        WireCondition::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        WireCondition::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> serde_json::Value {
        serde_json::json!({
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "schema t_a in database tenantdb_shared owned by role t_a",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-12-07T04:01:21Z"
        })
    }

    #[test]
    fn wire_format_is_metav1_conditions() {
        let ours: Condition = serde_json::from_value(wire()).unwrap();
        let theirs: WireCondition = serde_json::from_value(wire()).unwrap();
        assert_eq!(ours.type_, "Ready");
        assert_eq!(ours.observed_generation, Some(3));
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&theirs).unwrap()
        );
        assert_eq!(serde_json::to_value(&ours).unwrap(), wire());
        let mut unset = wire();
        unset.as_object_mut().unwrap().remove("observedGeneration");
        let ours: Condition = serde_json::from_value(unset.clone()).unwrap();
        assert_eq!(serde_json::to_value(&ours).unwrap(), unset);
    }

    #[test]
    fn wire_format_accepts_and_refuses_what_metav1_does() {
        let mut missing = wire();
        missing.as_object_mut().unwrap().remove("reason");
        let mut wrong_type = wire();
        wrong_type["status"] = serde_json::json!(3);
        let mut bad_time = wire();
        bad_time["lastTransitionTime"] = serde_json::json!("yesterday");
        for (case, value) in [
            ("missing reason", missing),
            ("status a number", wrong_type),
            ("unparsable time", bad_time),
        ] {
            let theirs = serde_json::from_value::<WireCondition>(value.clone());
            let ours = serde_json::from_value::<Condition>(value);
            assert_eq!(theirs.is_ok(), ours.is_ok(), "{case}");
            if let (Ok(theirs), Ok(ours)) = (theirs, ours) {
                assert_eq!(theirs, WireCondition::from(&ours), "{case}");
            }
        }
    }

    #[test]
    fn schema_is_metav1_conditions() {
        let ours = schemars::SchemaGenerator::default().into_root_schema_for::<Vec<Condition>>();
        let theirs =
            schemars::SchemaGenerator::default().into_root_schema_for::<Vec<WireCondition>>();
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&theirs).unwrap()
        );
    }

    #[test]
    fn repeated_values_share_one_copy() {
        let a: Condition = serde_json::from_value(wire()).unwrap();
        let b: Condition = serde_json::from_value(wire()).unwrap();
        assert!(Arc::ptr_eq(&a.type_.0, &b.type_.0));
        assert!(Arc::ptr_eq(&a.reason.0, &b.reason.0));
        assert!(Arc::ptr_eq(&a.status.0, &b.status.0));
        // The message is per object and not shared.
        assert!(!std::ptr::eq(a.message.as_ptr(), b.message.as_ptr()));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut table = SharedTable::new(3);
        let a = table.get("a");
        for s in ["b", "c", "d", "e"] {
            assert_eq!(&*table.get(s), s);
        }
        assert_eq!(table.strings.len(), 3);
        // Shared while in the table; a value past the bound still works, it is only not shared.
        assert!(Arc::ptr_eq(&a, &table.get("a")));
        let (d1, d2) = (table.get("d"), table.get("d"));
        assert_eq!(d1, d2);
        assert!(!Arc::ptr_eq(&d1, &d2));
    }
}
