//! Conditions with Kubernetes semantics: `lastTransitionTime` moves only when a condition's status
//! changes; a status that equals the current one is not written at all.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::crd::{Condition, SharedStr};

/// Condition types used on Tenants.
pub mod types {
    /// Everything is provisioned and healthy.
    pub const READY: &str = "Ready";
    /// The database objects exist.
    pub const PROVISIONED: &str = "Provisioned";
    /// A transient problem (database unreachable, failed statement) is being retried.
    pub const DEGRADED: &str = "Degraded";
    /// The MongoDB database, user, collections and indexes exist.
    pub const MONGO_PROVISIONED: &str = "MongoProvisioned";
    /// The storage quota is exhausted and writes are disabled.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// Tenant: placed on a database server (and whether its `spec.placement` still allows it).
    pub const PLACED: &str = "Placed";
    /// DatabaseServer: new tenants may be placed on it (Ready, not cordoned, room left).
    pub const SCHEDULABLE: &str = "Schedulable";
    /// DatabaseServer: its deletion waits until no tenant is placed on it.
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
    /// A draining DatabaseServer holds no tenant any more.
    pub const DRAINED: &str = "Drained";
    /// A PostgreSQL DatabaseServer's `wal_level` allows moving tenants off it.
    pub const LOGICAL_REPLICATION: &str = "LogicalReplication";
}

/// A desired condition, before `lastTransitionTime` is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// True / False / Unknown.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Cond {
    /// A condition with the given truth value.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Merges desired conditions into the previous list. A condition whose status is unchanged keeps
/// its `lastTransitionTime`; others get `now`. Conditions of other types are kept as they are.
pub fn merge_conditions(
    previous: &[Condition],
    desired: &[Cond],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|p| !desired.iter().any(|d| p.type_ == d.type_))
        .cloned()
        .collect();
    for d in desired {
        let status = if d.status { "True" } else { "False" };
        let prev = previous.iter().find(|p| p.type_ == d.type_);
        let last_transition_time = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        out.push(Condition {
            type_: SharedStr::new(d.type_),
            status: SharedStr::new(status),
            reason: SharedStr::new(&d.reason),
            message: d.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let first = merge_conditions(
            &[],
            &[Cond::new("Ready", false, "Provisioning", "x")],
            Some(1),
            t0,
        );
        assert_eq!(first[0].last_transition_time.0, t0);
        // Same status, new reason: time kept.
        let second = merge_conditions(
            &first,
            &[Cond::new("Ready", false, "DatabaseUnavailable", "y")],
            Some(2),
            t1,
        );
        assert_eq!(second[0].last_transition_time.0, t0);
        assert_eq!(second[0].reason, "DatabaseUnavailable");
        assert_eq!(second[0].observed_generation, Some(2));
        // Status flips: time moves.
        let third = merge_conditions(
            &second,
            &[Cond::new("Ready", true, "Provisioned", "z")],
            Some(2),
            t1,
        );
        assert_eq!(third[0].last_transition_time.0, t1);
        // Unchanged input gives equal output (so the status write is skipped).
        let again = merge_conditions(
            &third,
            &[Cond::new("Ready", true, "Provisioned", "z")],
            Some(2),
            t0,
        );
        assert_eq!(again, third);
    }

    #[test]
    fn other_condition_types_are_kept_and_sorted() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let a = merge_conditions(
            &[],
            &[
                Cond::new("Ready", true, "R", ""),
                Cond::new("Degraded", false, "AsExpected", ""),
            ],
            None,
            t0,
        );
        let b = merge_conditions(&a, &[Cond::new("Provisioned", true, "P", "")], None, t0);
        let types: Vec<_> = b.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Degraded", "Provisioned", "Ready"]);
        assert!(is_true(&b, "Ready"));
        assert!(!is_true(&b, "Degraded"));
    }
}
