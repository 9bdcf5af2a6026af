//! Controllers and their shared context.
//!
//! - [`tenant`]: the Tenant reconciler (a pipeline of named stages);
//! - [`migration`]: the TenantMigration controller (rollouts as background passes);
//! - [`context`]: what every reconcile gets ([`Context`]);
//! - [`state`]: the per-object state, one map ([`state::Objects`]), with backoff and the
//!   status-write guard;
//! - [`settings`]: operator-wide settings.

pub mod context;
mod events;
pub mod migration;
pub mod server;
pub mod settings;
pub mod state;
pub mod tenant;
pub mod warm;

use kube::{Resource, ResourceExt};

pub use context::{Context, MAX_EVENT_NOTE, bounded_note};
pub use settings::OperatorSettings;
pub use state::{Backoff, Memo, MetaFacts, Settled, facts_hash};

/// The error of a reconcile run by kube-runtime's finalizer helper, as our error: the apply's or
/// cleanup's own error, or the Kubernetes error of adding/removing the finalizer.
pub(crate) fn finalizer_error(
    e: kube::runtime::finalizer::Error<crate::error::Error>,
) -> crate::error::Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => crate::error::Error::from(e),
        other => crate::error::Error::Internal(other.to_string()),
    }
}

/// The annotation `kubectl apply` (client-side) keeps a whole copy of the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from an object what the operator never reads before the reflector caches it:
/// `metadata.managedFields` (every field manager's field set: on a Tenant whose status is
/// server-side applied it is larger than the spec) and `kubectl apply`'s last-applied copy.
/// At 10,000 cached Tenants these were most of the operator's memory (bench/README.md, 2c).
pub(crate) fn prune_for_cache<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// `kind/namespace/name` key for per-object bookkeeping.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    object_key_for::<K>(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

/// [`object_key`] of the object `namespace/name` of kind `K`.
pub fn object_key_for<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pruning_keeps_what_the_operator_reads() {
        use crate::crd::Tenant;
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "7",
                "labels": {"l": "1"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "x"},
                "finalizers": ["tenantdb.io/cleanup"],
                "managedFields": [{"manager": "tenantdb", "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {}}}]},
            "spec": {"isolation": "schema"},
            "status": {"phase": "Ready"}
        }))
        .unwrap();
        let before = t.clone();
        super::prune_for_cache(&mut t);
        assert!(t.metadata.managed_fields.is_none());
        let ann = t.metadata.annotations.clone().unwrap();
        assert_eq!(ann.len(), 1);
        assert_eq!(ann["keep"], "x");
        assert_eq!(t.metadata.labels, before.metadata.labels);
        assert_eq!(t.metadata.finalizers, before.metadata.finalizers);
        assert_eq!(
            t.metadata.resource_version,
            before.metadata.resource_version
        );
        assert_eq!(
            serde_json::to_value(&t.spec).unwrap(),
            serde_json::to_value(&before.spec).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&t.status).unwrap(),
            serde_json::to_value(&before.status).unwrap()
        );
    }

    use super::*;

    #[test]
    fn event_notes_stay_under_the_events_api_limit() {
        assert_eq!(bounded_note("short".into()), "short");
        for n in [1023, 1024, 5000] {
            for unit in ["a", "é", "漢"] {
                let note = bounded_note(unit.repeat(n));
                assert!(note.len() <= MAX_EVENT_NOTE, "{} bytes", note.len());
            }
        }
        assert!(bounded_note("x".repeat(2000)).ends_with('…'));
    }
}
