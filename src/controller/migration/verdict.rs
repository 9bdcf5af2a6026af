//! Stage `verdict` (pure): the phase, reason and message of a TenantMigration from its counts,
//! budget, canaries, pause and the state of its rollout pass.

use super::*;
use crate::crd::MigrationPhase;

/// Everything that decides a TenantMigration's phase and conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Phase.
    pub phase: MigrationPhase,
    /// Reason of the Progressing/Failed conditions.
    pub reason: &'static str,
    /// Human-readable summary.
    pub message: String,
}

/// Inputs of [`verdict`].
#[derive(Debug, Clone, Default)]
pub struct VerdictInput {
    /// Counts.
    pub counts: Counts,
    /// Failure budget (ignored for dry runs).
    pub failure_budget: usize,
    /// Dry run.
    pub dry_run: bool,
    /// A canary failed.
    pub canary_failed: bool,
    /// Canaries still gate the fleet.
    pub canary_pending: bool,
    /// `strategy.paused`.
    pub paused: bool,
    /// Previously Succeeded for this revision (catching up new tenants).
    pub settled: bool,
    /// A transient error is being retried.
    pub retrying: bool,
    /// Some pending tenants are not Ready or are moving to another server.
    pub waiting_for_tenants: bool,
    /// Single-tenant target that does not exist.
    pub missing_tenant: Option<String>,
    /// Target version.
    pub target_version: i64,
    /// Rendered by a running pass (progress): the pass never concludes — a terminal phase is the
    /// verdict of the reconcile after the pass, which also emits its Event.
    pub pass_running: bool,
}

/// Decides phase, reason and message (pure).
pub fn verdict(v: &VerdictInput) -> Verdict {
    let inner = conclude(v);
    if v.pass_running
        && matches!(
            inner.phase,
            MigrationPhase::Succeeded | MigrationPhase::Failed
        )
    {
        return Verdict {
            phase: MigrationPhase::Running,
            reason: "Finishing",
            message: format!("{} (the rollout pass is finishing)", inner.message),
        };
    }
    inner
}

fn conclude(v: &VerdictInput) -> Verdict {
    let c = v.counts;
    let done = format!(
        "{}/{} tenants at version {}",
        c.succeeded, c.total, v.target_version
    );
    let failures = if c.failed > 0 {
        format!(", {} failed", c.failed)
    } else {
        String::new()
    };
    let mk = |phase, reason, message: String| Verdict {
        phase,
        reason,
        message,
    };
    if v.canary_failed {
        return mk(
            MigrationPhase::Failed,
            "CanaryFailed",
            format!("a canary tenant failed: no other tenant is started ({done}{failures})"),
        );
    }
    if !v.dry_run && c.failed > v.failure_budget {
        return mk(
            MigrationPhase::Failed,
            "FailureBudgetExceeded",
            format!(
                "{} tenants failed, more than the failure budget of {}: no new tenant is started ({done})",
                c.failed, v.failure_budget
            ),
        );
    }
    if let Some(t) = &v.missing_tenant {
        return mk(
            MigrationPhase::Pending,
            "TenantNotFound",
            format!("Tenant {t} does not exist"),
        );
    }
    if c.pending + c.running == 0 || (v.settled && c.running == 0 && !v.retrying) {
        let (reason, what) = if c.total == 0 {
            (
                "NoMatchingTenants",
                "no Tenant matches the selector".to_string(),
            )
        } else if v.dry_run {
            (
                "DryRunComplete",
                format!("dry run: planned {} tenants{failures}", c.succeeded),
            )
        } else {
            ("Complete", format!("{done}{failures}"))
        };
        return mk(MigrationPhase::Succeeded, reason, what);
    }
    if v.paused {
        return mk(
            MigrationPhase::Paused,
            "Paused",
            format!("paused: {done}{failures}, {} pending", c.pending),
        );
    }
    let reason = if v.retrying {
        "Retrying"
    } else if v.settled {
        "CatchingUp"
    } else if v.canary_pending {
        "CanaryInProgress"
    } else if c.running == 0 && v.waiting_for_tenants {
        "WaitingForTenants"
    } else {
        "RollingOut"
    };
    mk(
        MigrationPhase::Running,
        reason,
        format!(
            "{done}{failures}, {} running, {} pending",
            c.running, c.pending
        ),
    )
}
