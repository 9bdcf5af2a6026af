//! Progress bookkeeping, the verdict (phase, reason, message) and status rendering. Pure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::{
    MigrationPhase, TenantMigrationProgress, TenantMigrationState, TenantMigrationStatus,
};
use crate::status::{Cond, merge_conditions};

// ---------------------------------------------------------------------------------------------
// Progress and status (pure)
// ---------------------------------------------------------------------------------------------

/// Per-tenant states and entries of one rollout revision, from which status is rendered.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Current state of every selected tenant (counts).
    pub states: BTreeMap<String, TenantMigrationState>,
    /// Entries (unbounded here; bounded when rendered).
    pub entries: BTreeMap<String, TenantMigrationProgress>,
    /// Versions recorded on the Tenants.
    pub recorded: BTreeMap<String, Option<i64>>,
}

/// Counts of a [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Selected tenants.
    pub total: usize,
    /// At the target version.
    pub succeeded: usize,
    /// Failed or blocked.
    pub failed: usize,
    /// Not migrated yet.
    pub pending: usize,
    /// Being migrated.
    pub running: usize,
    /// Left alone on purpose.
    pub skipped: usize,
}

pub(crate) fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

impl Progress {
    /// Sets a tenant's state, with an entry (or without: `message` None removes it).
    pub fn set(&mut self, name: &str, state: TenantMigrationState, message: Option<String>) {
        self.states.insert(name.to_string(), state);
        match message {
            Some(m) => {
                let from = self.recorded.get(name).copied().flatten();
                self.entries.insert(
                    name.to_string(),
                    TenantMigrationProgress {
                        name: name.to_string(),
                        from_version: from,
                        to_version: None,
                        state,
                        message: Some(bounded(&m)),
                        duration_ms: None,
                        finished_at: None,
                    },
                );
            }
            None => {
                self.entries.remove(name);
            }
        }
    }

    /// Records that a tenant started.
    pub fn started(&mut self, name: &str) {
        self.set(
            name,
            TenantMigrationState::Running,
            Some("migrating".into()),
        );
    }

    /// Records a finished tenant.
    pub fn finished(&mut self, o: &TenantOutcome, at: Timestamp) {
        let state = match o.kind {
            OutcomeKind::Succeeded => TenantMigrationState::Succeeded,
            OutcomeKind::Failed => TenantMigrationState::Failed,
            OutcomeKind::Blocked => TenantMigrationState::Blocked,
            OutcomeKind::Retry => TenantMigrationState::Pending,
        };
        let message = match o.kind {
            OutcomeKind::Retry => format!("retrying: {}", o.message),
            _ => o.message.clone(),
        };
        self.states.insert(o.name.clone(), state);
        self.entries.insert(
            o.name.clone(),
            TenantMigrationProgress {
                name: o.name.clone(),
                from_version: o.from_version,
                to_version: o.to_version,
                state,
                message: Some(bounded(&message)),
                duration_ms: Some(i64::try_from(o.duration.as_millis()).unwrap_or(i64::MAX)),
                finished_at: Some(Time(at)),
            },
        );
    }

    /// Counts over every selected tenant.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.states.len(),
            ..Counts::default()
        };
        for s in self.states.values() {
            match s {
                TenantMigrationState::Succeeded => c.succeeded += 1,
                TenantMigrationState::Failed | TenantMigrationState::Blocked => c.failed += 1,
                TenantMigrationState::Pending => c.pending += 1,
                TenantMigrationState::Running => c.running += 1,
                TenantMigrationState::Skipped => c.skipped += 1,
            }
        }
        c
    }

    /// The bounded entry list: every failed, blocked and running tenant, plus the
    /// [`MAX_LISTED_TENANTS`] most recently finished others (unfinished ones last), sorted by
    /// name; and how many selected tenants are not listed.
    pub fn bounded_entries(&self) -> (Vec<TenantMigrationProgress>, usize) {
        let mut keep = Vec::new();
        let mut others = Vec::new();
        for (name, e) in &self.entries {
            if !self.states.contains_key(name) {
                continue;
            }
            match e.state {
                TenantMigrationState::Failed
                | TenantMigrationState::Blocked
                | TenantMigrationState::Running => keep.push(e.clone()),
                _ => others.push(e.clone()),
            }
        }
        others.sort_by(|a, b| {
            let ta = a.finished_at.as_ref().map(|t| t.0);
            let tb = b.finished_at.as_ref().map(|t| t.0);
            tb.cmp(&ta).then_with(|| a.name.cmp(&b.name))
        });
        others.truncate(MAX_LISTED_TENANTS);
        keep.extend(others);
        keep.sort_by(|a, b| a.name.cmp(&b.name));
        let omitted = self.states.len().saturating_sub(keep.len());
        (keep, omitted)
    }
}

pub(crate) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

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
    /// Some pending tenants are not Ready.
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

/// Renders the status from the previous one, the progress and the verdict. Times and condition
/// transition times are kept from `prev` when nothing changed, so that an unchanged rollout
/// renders an identical status (and is not written).
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
    let completed_at = if !terminal {
        None
    } else if same_revision && prev.phase == verdict.phase && prev.completed_at.is_some() {
        prev.completed_at.clone()
    } else {
        Some(Time(now))
    };
    let phase = verdict.phase;
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
