//! Status rendering (pure): the TenantMigration status from the previous one, the progress and
//! the verdict, keeping times and transition times when nothing changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::{MigrationPhase, TenantMigrationStatus};
use crate::status::{Cond, merge_conditions};

/// Since when the previous status `prev` is of a settled rollout of this revision: one that
/// reached `Succeeded`, which from then on migrates only tenants created since (`settledAt`) and
/// leaves the others alone. It stays so through later passes that catch new tenants up (phase
/// `Running`, reason `CatchingUp`), also through one that fails, until a new revision. A status
/// written before `settledAt` existed is settled since its `completedAt` if it is not `Failed`.
pub fn settled_since(prev: &TenantMigrationStatus, same_revision: bool) -> Option<Timestamp> {
    if !same_revision {
        return None;
    }
    let legacy = || {
        prev.completed_at
            .as_ref()
            .filter(|_| phase_is_not_failed(prev.phase))
    };
    prev.settled_at.as_ref().or_else(legacy).map(|t| t.0)
}

fn phase_is_not_failed(phase: MigrationPhase) -> bool {
    phase != MigrationPhase::Failed
}

/// Renders the status from the previous one, the progress and the verdict. Times and condition
/// transition times are kept from `prev` when nothing changed, so that an unchanged rollout
/// renders an identical status (and is not written). A settled rollout (see [`settled_since`])
/// keeps its `settledAt`, which tells new tenants from tenants left alone since, whatever its
/// passes conclude; and its `completedAt` while a pass catches new tenants up.
#[allow(clippy::too_many_arguments)]
pub fn render_status(
    prev: &TenantMigrationStatus,
    same_revision: bool,
    revision: &str,
    generation: Option<i64>,
    target_version: i64,
    progress: &Progress,
    verdict: &Verdict,
    canary_tenants: &[String],
    canary_passed: bool,
    now: Timestamp,
) -> TenantMigrationStatus {
    let c = progress.counts();
    let (tenants, omitted) = progress.bounded_entries();
    let terminal = matches!(
        verdict.phase,
        MigrationPhase::Succeeded | MigrationPhase::Failed
    );
    let started_at = if same_revision {
        prev.started_at.clone()
    } else {
        None
    }
    .or(Some(Time(now)));
    let settled = settled_since(prev, same_revision);
    // Kept through a catch-up pass; not from a Failed status (the pass after a failed catch-up
    // has none: its conclusion gets a new one).
    let completed_at = if settled.is_some()
        && phase_is_not_failed(verdict.phase)
        && phase_is_not_failed(prev.phase)
        && prev.completed_at.is_some()
    {
        prev.completed_at.clone()
    } else if !terminal {
        None
    } else if same_revision && prev.phase == verdict.phase && prev.completed_at.is_some() {
        prev.completed_at.clone()
    } else {
        Some(Time(now))
    };
    let phase = verdict.phase;
    let settled_at = settled
        .map(Time)
        .or_else(|| (phase == MigrationPhase::Succeeded).then_some(Time(now)));
    let progressing = matches!(phase, MigrationPhase::Running | MigrationPhase::Pending);
    let desired = [
        Cond::new(
            conditions::PROGRESSING,
            progressing,
            verdict.reason,
            verdict.message.clone(),
        ),
        Cond::new(
            conditions::COMPLETE,
            phase == MigrationPhase::Succeeded,
            if phase == MigrationPhase::Succeeded {
                verdict.reason
            } else {
                "NotComplete"
            },
            if phase == MigrationPhase::Succeeded {
                verdict.message.clone()
            } else {
                format!(
                    "{}/{} tenants at version {target_version}",
                    c.succeeded, c.total
                )
            },
        ),
        Cond::new(
            conditions::FAILED,
            phase == MigrationPhase::Failed,
            if phase == MigrationPhase::Failed {
                verdict.reason
            } else if c.failed > 0 {
                "WithinFailureBudget"
            } else {
                "AsExpected"
            },
            if phase == MigrationPhase::Failed {
                verdict.message.clone()
            } else if c.failed > 0 {
                format!("{} tenants failed (within the failure budget)", c.failed)
            } else {
                "no tenant failed".to_string()
            },
        ),
    ];
    let prev_conditions = &prev.conditions;
    TenantMigrationStatus {
        phase,
        observed_generation: generation,
        conditions: merge_conditions(prev_conditions, &desired, generation, now),
        message: Some(verdict.message.clone()),
        revision: Some(revision.to_string()),
        target_version: Some(target_version),
        total: to_i32(c.total),
        succeeded: to_i32(c.succeeded),
        failed: to_i32(c.failed),
        pending: to_i32(c.pending),
        running: to_i32(c.running),
        skipped: to_i32(c.skipped),
        canary_tenants: canary_tenants.to_vec(),
        canary_passed,
        started_at,
        completed_at,
        settled_at,
        tenants,
        omitted_tenants: to_i32(omitted),
    }
}

/// Status of an invalid spec: phase Failed, reason `InvalidSpec`; the rollout bookkeeping of the
/// previous revision is dropped.
pub fn invalid_status(
    prev: &TenantMigrationStatus,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> TenantMigrationStatus {
    let desired = [
        Cond::new(conditions::PROGRESSING, false, "InvalidSpec", message),
        Cond::new(conditions::COMPLETE, false, "InvalidSpec", message),
        Cond::new(conditions::FAILED, true, "InvalidSpec", message),
    ];
    TenantMigrationStatus {
        phase: MigrationPhase::Failed,
        observed_generation: generation,
        conditions: merge_conditions(&prev.conditions, &desired, generation, now),
        message: Some(message.to_string()),
        ..TenantMigrationStatus::default()
    }
}
