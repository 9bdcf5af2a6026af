//! Controllers and their shared context.
//!
//! - [`tenant`]: the Tenant reconciler (a pipeline of named stages);
//! - [`migration`]: the TenantMigration controller (rollouts as background passes);
//! - [`context`]: what every reconcile gets ([`Context`]);
//! - [`state`]: the per-object state, one map ([`state::Objects`]), with backoff and the
//!   status-write guard;
//! - [`settings`]: operator-wide settings.

pub mod context;
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
