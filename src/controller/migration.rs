//! The TenantMigration controller: rolls a versioned schema migration out to one Tenant or a fleet
//! of Tenants, with bounded parallelism, a failure budget, canaries, pause, rollback, dry runs and
//! per-tenant status. User documentation: `docs/tenantmigration.md`.
//!
//! # Layers
//!
//! - [`migrate_tenant`]: one tenant, one [`migrate::migrate`] call (one transaction under the
//!   tenant's advisory lock), classified into a [`TenantOutcome`];
//! - [`Rollout`]: the rollout logic (parallelism, canary gate, failure budget, pause/stop), generic
//!   over a [`TenantMigrator`] and free of Kubernetes, so that it is tested against a real
//!   PostgreSQL without an API server (`tests/tenant_migration_pg.rs`);
//! - [`run`] / [`reconcile`]: the Kubernetes controller: resolves the spec and the Tenant set, runs
//!   a [`Rollout`] for the tenants not yet at the target version, records `status.schemaVersion` on
//!   each migrated Tenant and reports progress in the TenantMigration's status (batched writes).
//!
//! # Bookkeeping across reconciles
//!
//! Status lists are bounded, so "which tenants are done" is not read from the TenantMigration's
//! status: a tenant is done when its Tenant's `status.schemaVersion` equals the target version
//! (the engine is idempotent: a stale schemaVersion only costs a no-op migration). Failed and
//! blocked tenants are always listed in status and are not retried within a revision.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, info_span, warn};

use super::tenant::{lock_key, resolve};
use super::{Context, object_key, object_key_for};
use crate::crd::{
    MigrationPhase, Tenant, TenantMigration, TenantMigrationProgress, TenantMigrationState,
    TenantMigrationStatus, TenantPhase,
};
use crate::error::{Error, Result, first_line};
use crate::migrate::{self, MigrateError, MigrationSet, MigrationTarget, PlannedStep};
use crate::naming::TenantNames;
use crate::pg::PgAdmin;
use crate::pg::session::Credentials;
use crate::status::{Cond, merge_conditions};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "tenantmigration";
/// Field manager of the `status.schemaVersion` writes on Tenants (server-side apply of that one
/// field, next to the Tenant controller's apply of the whole status).
pub const TENANT_FIELD_MANAGER: &str = "tenantdb-migration";
/// Changing this annotation's value starts a new revision: failed tenants are retried.
pub const RETRY_ANNOTATION: &str = "tenantdb.io/retry";
/// Number of tenants listed in status besides failed, blocked and running ones.
pub const MAX_LISTED_TENANTS: usize = 50;
/// Longest per-tenant message kept in status.
const MAX_MESSAGE: usize = 300;

/// Condition types of a TenantMigration.
pub mod conditions {
    /// The rollout is moving (True), or stopped: paused, complete or failed (False).
    pub const PROGRESSING: &str = "Progressing";
    /// Every selected tenant is at the target version.
    pub const COMPLETE: &str = "Complete";
    /// The rollout stopped because of failures, a failed canary or an invalid spec.
    pub const FAILED: &str = "Failed";
}

// ---------------------------------------------------------------------------------------------
// One tenant
// ---------------------------------------------------------------------------------------------

/// One tenant handed to a [`Rollout`].
#[derive(Debug, Clone)]
pub struct RolloutTenant {
    /// Tenant name (unique within a rollout).
    pub name: String,
    /// Where the tenant's schema lives.
    pub names: TenantNames,
    /// Per-tenant advisory lock key (the same one Tenant provisioning uses).
    pub lock_key: i64,
    /// The version the Tenant's status records (`status.schemaVersion`), if known.
    pub recorded_version: Option<i64>,
    /// Name of the tenant's credentials Secret (read by the controller's migrator).
    pub secret_name: Option<String>,
    /// The login the migration runs as (the tenant's own role; see [`migrate_tenant`]). Filled
    /// from the Secret by the controller's migrator, or set directly by callers that know it.
    pub credentials: Option<Credentials>,
}

impl RolloutTenant {
    /// A tenant with its lock key derived like the Tenant controller's ([`lock_key`]).
    pub fn new(name: impl Into<String>, names: TenantNames) -> Self {
        let lock_key = lock_key(&names);
        Self {
            name: name.into(),
            names,
            lock_key,
            recorded_version: None,
            secret_name: None,
            credentials: None,
        }
    }

    /// The same tenant, logging in with `credentials`.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }
}

/// How one tenant's migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// At the target version (dry run: the plan was computed).
    Succeeded,
    /// A migration failed (SQL error, missing down migration, …); the tenant is unchanged.
    Failed,
    /// The tenant's history does not match the set (checksum drift, unknown or out-of-order
    /// versions): nothing was run.
    Blocked,
    /// A transient problem (connection, lock timeout): retried later, not counted as a failure.
    Retry,
}

/// Result of one tenant's migration.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantOutcome {
    /// Tenant name.
    pub name: String,
    /// How it ended.
    pub kind: OutcomeKind,
    /// Version before (for errors: the version the Tenant records).
    pub from_version: Option<i64>,
    /// Version after (for a dry run: the version the plan leads to; for errors: unchanged).
    pub to_version: Option<i64>,
    /// Steps executed, or for a dry run the steps that would run.
    pub steps: Vec<PlannedStep>,
    /// Human-readable summary: steps, or the first line of the error.
    pub message: String,
    /// Error category ([`MigrateError::category`] or `connect`), if it failed.
    pub category: Option<&'static str>,
    /// Wall time, lock wait included.
    pub duration: Duration,
}

impl TenantOutcome {
    fn error(
        tenant: &RolloutTenant,
        kind: OutcomeKind,
        category: &'static str,
        message: String,
        duration: Duration,
    ) -> Self {
        Self {
            name: tenant.name.clone(),
            kind,
            from_version: tenant.recorded_version,
            to_version: tenant.recorded_version,
            steps: Vec::new(),
            message: bounded(&message),
            category: Some(category),
            duration,
        }
    }
}

/// Bounds a message to one line of at most [`MAX_MESSAGE`] bytes.
fn bounded(s: &str) -> String {
    let line = first_line(s);
    if line.len() <= MAX_MESSAGE {
        return line;
    }
    let mut end = MAX_MESSAGE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// `up 2 add_note, up 3 qty_index` (bounded).
pub fn describe_steps(steps: &[PlannedStep]) -> String {
    let mut out = String::new();
    for (i, s) in steps.iter().enumerate() {
        let part = format!("{} {} {}", s.direction, s.version, s.name);
        if out.len() + part.len() + 2 > MAX_MESSAGE - 40 {
            out.push_str(&format!(", … (+{} more)", steps.len() - i));
            break;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(&part);
    }
    out
}

fn version_text(v: Option<i64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// Whether an engine error means "the history does not match the set" (nothing can run until a
/// human looks), as opposed to a migration that failed.
pub fn is_blocking(e: &MigrateError) -> bool {
    matches!(
        e,
        MigrateError::ChecksumDrift { .. }
            | MigrateError::UnknownApplied { .. }
            | MigrateError::OutOfOrder { .. }
    )
}

/// Migrates one tenant to `target_version` on a fresh session **logged in as the tenant** with
/// its [`RolloutTenant::credentials`] (one transaction under the tenant's advisory lock; see
/// [`migrate::migrate`]) and classifies the result. The migration's SQL — which a namespace user
/// can write, through a ConfigMap — never runs on the operator's admin session: it has exactly
/// the rights the tenant's application has. Never fails: every error is reported in the outcome.
///
/// A session of its own per tenant (never a pool shared with anyone), so that a rollout with
/// `maxParallel` up to 64 never starves the pool the Tenant controller provisions with.
pub async fn migrate_tenant(
    pg: &PgAdmin,
    set: &MigrationSet,
    tenant: &RolloutTenant,
    target_version: i64,
    dry_run: bool,
) -> TenantOutcome {
    let started = Instant::now();
    let target = MigrationTarget {
        schema: tenant.names.schema.as_str(),
        owner_role: tenant.names.role.as_str(),
        lock_key: tenant.lock_key,
    };
    let Some(creds) = tenant.credentials.as_ref() else {
        return TenantOutcome::error(
            tenant,
            OutcomeKind::Retry,
            "credentials",
            "no credentials to log in as the tenant with".to_string(),
            started.elapsed(),
        );
    };
    let mut conn = match pg.login(&tenant.names.database, creds).await {
        Ok(c) => c,
        Err(e) => {
            // A login role with more than tenant rights is a configuration problem, not an
            // outage: the tenant fails (and counts against the budget) instead of retrying.
            let kind = if e.is_permanent() {
                OutcomeKind::Failed
            } else {
                OutcomeKind::Retry
            };
            return TenantOutcome::error(tenant, kind, "connect", e.to_string(), started.elapsed());
        }
    };
    let result = migrate::migrate(&mut conn, set, &target, Some(target_version), dry_run).await;
    conn.close().await;
    match result {
        Ok(report) => {
            let steps = report.plan.steps.clone();
            let message = match (dry_run, steps.is_empty()) {
                (true, true) => format!(
                    "dry run: nothing to do (at version {})",
                    version_text(report.from)
                ),
                (true, false) => format!("dry run: would run {}", describe_steps(&steps)),
                (false, true) => format!("already at version {}", version_text(report.to)),
                (false, false) => format!("ran {}", describe_steps(&steps)),
            };
            TenantOutcome {
                name: tenant.name.clone(),
                kind: OutcomeKind::Succeeded,
                from_version: report.from,
                to_version: if dry_run { report.plan.to } else { report.to },
                steps,
                message: bounded(&message),
                category: None,
                duration: report.duration,
            }
        }
        Err(e) => {
            let kind = if e.is_transient() {
                OutcomeKind::Retry
            } else if is_blocking(&e) {
                OutcomeKind::Blocked
            } else {
                OutcomeKind::Failed
            };
            TenantOutcome::error(tenant, kind, e.category(), e.to_string(), started.elapsed())
        }
    }
}

/// Runs one tenant's migration for a [`Rollout`].
pub trait TenantMigrator: Send + Sync + 'static {
    /// Migrates one tenant. Errors are reported in the outcome, never as a panic.
    fn migrate(&self, tenant: &RolloutTenant) -> impl Future<Output = TenantOutcome> + Send;
}

/// The PostgreSQL migrator: [`migrate_tenant`] with a fixed set, target and mode.
#[derive(Debug, Clone)]
pub struct PgMigrator {
    /// Admin access.
    pub pg: Arc<PgAdmin>,
    /// The migration set.
    pub set: Arc<MigrationSet>,
    /// Version every tenant is brought to.
    pub target_version: i64,
    /// Plan only.
    pub dry_run: bool,
}

impl TenantMigrator for PgMigrator {
    async fn migrate(&self, tenant: &RolloutTenant) -> TenantOutcome {
        migrate_tenant(
            &self.pg,
            &self.set,
            tenant,
            self.target_version,
            self.dry_run,
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Rollout (no Kubernetes)
// ---------------------------------------------------------------------------------------------

/// Rollout parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutConfig {
    /// Tenants migrated at once (at least 1).
    pub max_parallel: usize,
    /// Failures tolerated: no new tenant starts once failures exceed it.
    pub failure_budget: usize,
    /// Failures (failed + blocked) recorded before this run.
    pub failures_so_far: usize,
    /// Number of canaries at the head of the tenant list: they run first, alone, and the others
    /// start only if every canary succeeded.
    pub canaries: usize,
    /// Whether the failure budget applies (not for dry runs).
    pub enforce_budget: bool,
    /// No new tenant starts after this many transient errors in this run (at least 1).
    pub max_transient: usize,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            max_parallel: 1,
            failure_budget: 0,
            failures_so_far: 0,
            canaries: 0,
            enforce_budget: true,
            max_transient: 1,
        }
    }
}

/// What the rollout should do before starting the next tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Continue,
    /// Start nothing new (`strategy.paused`); running tenants finish.
    Pause,
    /// Start nothing new (spec changed, object deleted, operator shutting down).
    Stop,
}

/// Progress reported while a rollout runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RolloutEvent {
    /// A tenant's migration started.
    Started(String),
    /// A tenant's migration finished.
    Finished(TenantOutcome),
    /// Every canary succeeded; the rest of the fleet is released.
    CanaryPassed,
}

/// Why a rollout stopped starting tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltReason {
    /// More failures than the failure budget.
    FailureBudgetExceeded,
    /// A canary failed or is blocked.
    CanaryFailed,
    /// Paused by [`Control::Pause`].
    Paused,
    /// Stopped by [`Control::Stop`].
    Stopped,
    /// Too many transient errors (database unreachable?), or a canary hit one.
    Unavailable,
}

/// Result of [`Rollout::run`].
#[derive(Debug, Clone, Default)]
pub struct RolloutSummary {
    /// Outcomes in completion order.
    pub outcomes: Vec<TenantOutcome>,
    /// Tenants never started, in list order.
    pub not_started: Vec<String>,
    /// Why the rollout stopped early, if it did.
    pub halted: Option<HaltReason>,
    /// Whether the canaries of this run all succeeded (false when there were none).
    pub canary_passed: bool,
    /// Highest number of tenants migrated at the same time.
    pub peak_running: usize,
}

impl RolloutSummary {
    /// The outcome of one tenant.
    pub fn outcome(&self, name: &str) -> Option<&TenantOutcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }

    /// Number of outcomes of a kind.
    pub fn count(&self, kind: OutcomeKind) -> usize {
        self.outcomes.iter().filter(|o| o.kind == kind).count()
    }
}

/// The rollout of one migration over a list of tenants; see [`Rollout::run`].
#[derive(Debug)]
pub struct Rollout<M> {
    config: RolloutConfig,
    migrator: Arc<M>,
}

impl<M: TenantMigrator> Rollout<M> {
    /// A rollout with these parameters and this migrator.
    pub fn new(config: RolloutConfig, migrator: Arc<M>) -> Self {
        Self { config, migrator }
    }

    /// Migrates `tenants` in list order: at most `max_parallel` at once (each in its own task),
    /// the first `canaries` alone and gating the rest, no new start once failures exceed the
    /// budget or `control` says pause/stop. Waits for every started tenant before returning.
    pub async fn run(
        &self,
        tenants: Vec<RolloutTenant>,
        control: impl Fn() -> Control,
        events: Option<&mpsc::UnboundedSender<RolloutEvent>>,
    ) -> RolloutSummary {
        let cfg = &self.config;
        let max_parallel = cfg.max_parallel.max(1);
        let max_transient = cfg.max_transient.max(1);
        let send = |ev: RolloutEvent| {
            if let Some(tx) = events {
                let _ = tx.send(ev);
            }
        };
        let mut queue: VecDeque<RolloutTenant> = tenants.into();
        let canary_total = cfg.canaries.min(queue.len());
        let mut canaries_to_start = canary_total;
        let mut canary_names: HashSet<String> = HashSet::new();
        let mut canary_kinds: Vec<OutcomeKind> = Vec::new();
        let mut in_canary_phase = canary_total > 0;
        let mut failures = cfg.failures_so_far;
        let mut transient = 0usize;
        let mut tasks: JoinSet<TenantOutcome> = JoinSet::new();
        let mut task_names: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut summary = RolloutSummary::default();

        loop {
            while summary.halted.is_none() && tasks.len() < max_parallel && !queue.is_empty() {
                if in_canary_phase && canaries_to_start == 0 {
                    break; // wait for the canaries
                }
                if cfg.enforce_budget && failures > cfg.failure_budget {
                    summary.halted = Some(HaltReason::FailureBudgetExceeded);
                    break;
                }
                if transient >= max_transient {
                    summary.halted = Some(HaltReason::Unavailable);
                    break;
                }
                match control() {
                    Control::Continue => {}
                    Control::Pause => {
                        summary.halted = Some(HaltReason::Paused);
                        break;
                    }
                    Control::Stop => {
                        summary.halted = Some(HaltReason::Stopped);
                        break;
                    }
                }
                let Some(tenant) = queue.pop_front() else {
                    break;
                };
                if in_canary_phase {
                    canaries_to_start -= 1;
                    canary_names.insert(tenant.name.clone());
                }
                send(RolloutEvent::Started(tenant.name.clone()));
                let name = tenant.name.clone();
                let migrator = self.migrator.clone();
                let handle = tasks.spawn(async move { migrator.migrate(&tenant).await });
                task_names.insert(handle.id(), name);
                summary.peak_running = summary.peak_running.max(tasks.len());
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let outcome = match joined {
                Ok((id, outcome)) => {
                    task_names.remove(&id);
                    outcome
                }
                Err(e) => {
                    let name = task_names.remove(&e.id()).unwrap_or_default();
                    TenantOutcome {
                        name,
                        kind: OutcomeKind::Failed,
                        from_version: None,
                        to_version: None,
                        steps: Vec::new(),
                        message: bounded(&format!("migration task failed: {e}")),
                        category: Some("internal"),
                        duration: Duration::ZERO,
                    }
                }
            };
            match outcome.kind {
                OutcomeKind::Failed | OutcomeKind::Blocked => failures += 1,
                OutcomeKind::Retry => transient += 1,
                OutcomeKind::Succeeded => {}
            }
            if canary_names.contains(&outcome.name) {
                canary_kinds.push(outcome.kind);
            }
            send(RolloutEvent::Finished(outcome.clone()));
            summary.outcomes.push(outcome);
            if in_canary_phase && canaries_to_start == 0 && canary_kinds.len() == canary_total {
                in_canary_phase = false;
                if canary_kinds.iter().all(|k| *k == OutcomeKind::Succeeded) {
                    summary.canary_passed = true;
                    send(RolloutEvent::CanaryPassed);
                } else if canary_kinds
                    .iter()
                    .any(|k| matches!(k, OutcomeKind::Failed | OutcomeKind::Blocked))
                {
                    summary.halted.get_or_insert(HaltReason::CanaryFailed);
                } else {
                    summary.halted.get_or_insert(HaltReason::Unavailable);
                }
            }
        }
        if summary.halted.is_none() && cfg.enforce_budget && failures > cfg.failure_budget {
            summary.halted = Some(HaltReason::FailureBudgetExceeded);
        }
        summary.not_started = queue.into_iter().map(|t| t.name).collect();
        summary
    }
}

// ---------------------------------------------------------------------------------------------
// Spec resolution (pure apart from reading the ConfigMap)
// ---------------------------------------------------------------------------------------------

/// A validated TenantMigration spec.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    /// `target.tenant`.
    pub tenant: Option<String>,
    /// `target.selector`, parsed.
    pub selector: Option<Selector>,
    /// The migration set (bundled, merged with the ConfigMap's).
    pub set: Arc<MigrationSet>,
    /// Resolved target version.
    pub target_version: i64,
    /// Fingerprint of what is rolled out (see [`revision`]).
    pub revision: String,
}

/// Why a spec cannot be resolved.
#[derive(Debug)]
pub struct SpecError {
    /// The error (always [`Error::InvalidSpec`] or a transient Kubernetes error).
    pub error: Error,
    /// Whether the problem is in the ConfigMap (which is not watched: looked at again on resync).
    pub in_source: bool,
}

fn invalid(msg: String, in_source: bool) -> SpecError {
    SpecError {
        error: Error::InvalidSpec(msg),
        in_source,
    }
}

fn valid_label_part(s: &str, allow_slash: bool) -> bool {
    !s.is_empty()
        && s.len() <= 317
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.')
                || (allow_slash && b == b'/')
        })
}

/// Validates and parses a label selector: operators, non-empty value lists, label syntax.
pub fn parse_selector(ls: &LabelSelector) -> std::result::Result<Selector, String> {
    for (k, v) in ls.match_labels.iter().flatten() {
        if !valid_label_part(k, true) || !(v.is_empty() || valid_label_part(v, false)) {
            return Err(format!("invalid matchLabels entry {k:?}: {v:?}"));
        }
    }
    for r in ls.match_expressions.iter().flatten() {
        if !valid_label_part(&r.key, true) {
            return Err(format!("invalid matchExpressions key {:?}", r.key));
        }
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(format!(
                        "matchExpressions {} {} needs at least one value",
                        r.key, r.operator
                    ));
                }
                if let Some(bad) = values.iter().find(|v| !valid_label_part(v, false)) {
                    return Err(format!("invalid matchExpressions value {bad:?}"));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(format!(
                        "matchExpressions {} {} takes no values",
                        r.key, r.operator
                    ));
                }
            }
            other => return Err(format!("unknown matchExpressions operator {other:?}")),
        }
    }
    Selector::try_from(ls.clone()).map_err(|e| e.to_string())
}

/// Whether a TenantMigration's target selects this Tenant (same namespace assumed).
pub fn targets(tm: &TenantMigration, tenant: &Tenant) -> bool {
    targets_labels(tm, &tenant.name_any(), tenant.labels())
}

/// Whether a TenantMigration's target selects a Tenant with this name and these labels.
fn targets_labels(tm: &TenantMigration, name: &str, labels: &BTreeMap<String, String>) -> bool {
    if let Some(target) = &tm.spec.target.tenant {
        return target == name;
    }
    match &tm.spec.target.selector {
        Some(ls) => parse_selector(ls).is_ok_and(|s| s.matches(labels)),
        None => false,
    }
}

/// Stable fingerprint of a migration set: versions, names, up and down checksums.
pub fn set_fingerprint(set: &MigrationSet) -> String {
    let mut h = Sha256::new();
    for m in set.migrations() {
        h.update(m.version.to_be_bytes());
        h.update(m.name.as_bytes());
        h.update([0]);
        h.update(m.checksum.as_bytes());
        h.update(
            m.down_sql
                .as_deref()
                .map(migrate::checksum)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
    }
    hex16(&h.finalize())
}

fn hex16(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Fingerprint of what a TenantMigration rolls out: target, migration set, target version, dry
/// run and the retry annotation. Strategy fields are not part of it: changing them continues the
/// current rollout.
pub fn revision(tm: &TenantMigration, set: &MigrationSet, target_version: i64) -> String {
    let mut h = Sha256::new();
    h.update(
        serde_json::to_string(&tm.spec.target)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update([0]);
    h.update(set_fingerprint(set).as_bytes());
    h.update(target_version.to_be_bytes());
    h.update([u8::from(tm.spec.dry_run)]);
    h.update(
        tm.annotations()
            .get(RETRY_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("")
            .as_bytes(),
    );
    hex16(&h.finalize())
}

/// Builds the migration set of a spec: the bundled set, merged with the ConfigMap's files.
pub fn build_set(
    bundled: &MigrationSet,
    config_map: Option<(&str, &BTreeMap<String, String>)>,
) -> std::result::Result<MigrationSet, String> {
    let Some((name, data)) = config_map else {
        return Ok(bundled.clone());
    };
    let extra = MigrationSet::from_files(data.iter().map(|(k, v)| (k.clone(), v.clone())))
        .map_err(|e| format!("ConfigMap {name}: {e}"))?;
    bundled
        .clone()
        .merge(extra)
        .map_err(|e| format!("ConfigMap {name} conflicts with the bundled migrations: {e}"))
}

async fn resolve_spec(
    tm: &TenantMigration,
    ctx: &Context,
    ns: &str,
) -> std::result::Result<ResolvedSpec, SpecError> {
    let spec = &tm.spec;
    let (tenant, selector) = match (&spec.target.tenant, &spec.target.selector) {
        (Some(t), None) if !t.is_empty() => (Some(t.clone()), None),
        (None, Some(ls)) => {
            let s =
                parse_selector(ls).map_err(|e| invalid(format!("target.selector: {e}"), false))?;
            (None, Some(s))
        }
        _ => {
            return Err(invalid(
                "exactly one of target.tenant and target.selector must be set".into(),
                false,
            ));
        }
    };
    let set = match &spec.source.config_map {
        None => build_set(&ctx.migrations, None),
        Some(cm) => {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
            let found = api.get_opt(&cm.name).await.map_err(|e| SpecError {
                error: Error::from(e),
                in_source: true,
            })?;
            let Some(found) = found else {
                return Err(invalid(format!("ConfigMap {} not found", cm.name), true));
            };
            let data = found.data.unwrap_or_default();
            build_set(&ctx.migrations, Some((&cm.name, &data)))
        }
    }
    .map_err(|e| invalid(e, true))?;
    let Some(latest) = set.latest_version() else {
        return Err(invalid("the migration set is empty".into(), true));
    };
    let target_version = spec.target_version.unwrap_or(latest);
    if set.get(target_version).is_none() {
        return Err(invalid(
            format!(
                "targetVersion {target_version} is not a version of the migration set (latest is {latest})"
            ),
            spec.source.config_map.is_some(),
        ));
    }
    let revision = revision(tm, &set, target_version);
    Ok(ResolvedSpec {
        tenant,
        selector,
        set: Arc::new(set),
        target_version,
        revision,
    })
}

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

fn now_seconds() -> Timestamp {
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

fn to_i32(n: usize) -> i32 {
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
}

/// Decides phase, reason and message (pure).
pub fn verdict(v: &VerdictInput) -> Verdict {
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

// ---------------------------------------------------------------------------------------------
// Kubernetes controller
// ---------------------------------------------------------------------------------------------

/// State shared by the reconciles of the TenantMigration controller.
struct State {
    ctx: Arc<Context>,
    store: Store<TenantMigration>,
    shutdown: watch::Receiver<bool>,
    flush_interval: Duration,
}

/// The migrator used by the controller: the tenant's credentials from its Secret, PostgreSQL as
/// the tenant, then `status.schemaVersion` on the Tenant.
struct KubeMigrator {
    pg: PgMigrator,
    tenants: Api<Tenant>,
    secrets: Api<k8s_openapi::api::core::v1::Secret>,
    ctx: Arc<Context>,
    namespace: String,
}

impl KubeMigrator {
    /// The login of the tenant's credentials Secret (read from the API: the controller keeps no
    /// cache of Secrets).
    async fn credentials(&self, tenant: &RolloutTenant) -> Result<Credentials> {
        let name = tenant.secret_name.as_deref().ok_or_else(|| {
            Error::Internal(format!(
                "tenant {} has no credentials Secret name",
                tenant.name
            ))
        })?;
        let secret = self.secrets.get_opt(name).await?.ok_or_else(|| {
            Error::DatabaseUnavailable(format!(
                "credentials Secret {name} not found (the Tenant controller writes it)"
            ))
        })?;
        Credentials::for_tenant(
            &tenant.names,
            crate::secret::read_key(&secret, "username").as_deref(),
            crate::secret::read_key(&secret, "password").as_deref(),
        )
    }
}

impl TenantMigrator for KubeMigrator {
    async fn migrate(&self, tenant: &RolloutTenant) -> TenantOutcome {
        let mut with_login;
        let tenant = if tenant.credentials.is_some() {
            tenant
        } else {
            match self.credentials(tenant).await {
                Ok(c) => {
                    with_login = tenant.clone();
                    with_login.credentials = Some(c);
                    &with_login
                }
                Err(e) => {
                    let kind = if e.is_permanent() {
                        OutcomeKind::Failed
                    } else {
                        OutcomeKind::Retry
                    };
                    return TenantOutcome::error(
                        tenant,
                        kind,
                        "credentials",
                        e.to_string(),
                        Duration::ZERO,
                    );
                }
            }
        };
        let mut outcome = self.pg.migrate(tenant).await;
        if outcome.kind != OutcomeKind::Succeeded || self.pg.dry_run {
            return outcome;
        }
        // The database is at `to_version` now: the Tenant controller must not write an older
        // schemaVersion from a cache that has not seen the patch below yet.
        let key = object_key_for::<Tenant>(&self.namespace, &tenant.name);
        self.ctx.set_schema_version(&key, outcome.to_version);
        if outcome.to_version != tenant.recorded_version
            && let Err(e) =
                record_schema_version(&self.tenants, &tenant.name, outcome.to_version).await
        {
            outcome.kind = OutcomeKind::Retry;
            outcome.category = Some("KubernetesError");
            outcome.message = bounded(&format!(
                "migrated to version {} but recording status.schemaVersion failed: {e}",
                version_text(outcome.to_version)
            ));
        }
        outcome
    }
}

/// Server-side applies `status.schemaVersion` (only that field) on a Tenant, with the
/// [`TENANT_FIELD_MANAGER`] field manager. The Tenant controller's apply of its whole status
/// carries `schemaVersion` over from the observed status, so the two do not fight.
pub async fn record_schema_version(
    api: &Api<Tenant>,
    name: &str,
    version: Option<i64>,
) -> Result<()> {
    let patch = json!({
        "apiVersion": Tenant::api_version(&()),
        "kind": Tenant::kind(&()),
        "metadata": { "name": name },
        "status": { "schemaVersion": version },
    });
    api.patch_status(
        name,
        &PatchParams::apply(TENANT_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// What a rollout reads of a Tenant (see the classification in `reconcile`): a change of anything
/// else — a health or usage status write, a condition message — cannot change a TenantMigration's
/// plan or progress.
#[derive(Clone, Debug, PartialEq)]
struct TenantFacts {
    uid: Option<String>,
    generation: Option<i64>,
    labels: BTreeMap<String, String>,
    deleting: bool,
    ready: bool,
    schema_version: Option<i64>,
}

impl TenantFacts {
    fn of(t: &Tenant) -> Self {
        let status = t.status.as_ref();
        TenantFacts {
            uid: t.metadata.uid.clone(),
            generation: t.metadata.generation,
            labels: t.labels().clone(),
            deleting: t.metadata.deletion_timestamp.is_some(),
            ready: status.map(|s| s.phase) == Some(TenantPhase::Ready),
            schema_version: status.and_then(|s| s.schema_version),
        }
    }
}

/// Decides which TenantMigrations a Tenant event triggers (the mapper of the Tenant watch; reads
/// the TenantMigration cache, no API call). It remembers per Tenant the [`TenantFacts`] of the last
/// event, so that routine Tenant status writes across a fleet do not re-classify every settled
/// fleet migration that selects them (O(N) each, O(N²) per resync period). When a Tenant's labels
/// change, the TenantMigrations that selected the old labels are triggered as well, so their counts
/// drop the Tenant without waiting for a resync.
#[derive(Default)]
pub struct TenantTrigger {
    seen: super::Memo<TenantFacts>,
}

impl TenantTrigger {
    /// The TenantMigrations to reconcile for this event of `tenant`: none when nothing a rollout
    /// reads changed since the previous event.
    pub fn migrations_for(
        &self,
        store: &Store<TenantMigration>,
        tenant: &Tenant,
    ) -> Vec<ObjectRef<TenantMigration>> {
        let key = object_key(tenant);
        let now = TenantFacts::of(tenant);
        let before = self.seen.get(&key);
        if before.as_ref() == Some(&now) {
            return Vec::new();
        }
        let old_labels = before.map(|b| b.labels).filter(|l| *l != now.labels);
        self.seen.set(&key, now);
        let (ns, name) = (tenant.namespace(), tenant.name_any());
        store
            .state()
            .into_iter()
            .filter(|m| {
                m.namespace() == ns
                    && (targets(m, tenant)
                        || old_labels
                            .as_ref()
                            .is_some_and(|l| targets_labels(m, &name, l)))
            })
            .map(|m| ObjectRef::from_obj(m.as_ref()))
            .collect()
    }

    /// Forgets Tenants that are gone (`live` answers for an [`object_key`]).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.seen.retain(live);
    }

    /// How many Tenants are remembered.
    pub fn len(&self) -> usize {
        self.seen.with(|m| m.len()).unwrap_or_default()
    }

    /// Whether no Tenant is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Starts the TenantMigration controller and runs it until `shutdown` resolves. Reconciles are
/// triggered by TenantMigration changes, by changes of the Tenants they select, and by the resync
/// interval. On shutdown, running rollouts start no new tenant, let running ones finish, write
/// their status and return.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let migrations: Api<TenantMigration> = Api::all(ctx.client.clone());
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    let controller = Controller::new(migrations, watcher::Config::default().any_semantic());
    let store = controller.store();
    let mapper_store = store.clone();
    let trigger = Arc::new(TenantTrigger::default());
    let mapper_trigger = trigger.clone();
    let mut graceful = stop_rx.clone();
    let controller = controller
        .watches(
            tenants,
            watcher::Config::default().any_semantic(),
            move |t: Tenant| mapper_trigger.migrations_for(&mapper_store, &t),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move {
            let _ = graceful.wait_for(|v| *v).await;
        });
    // TenantMigrations have no finalizer, so no reconcile sees their deletion: bookkeeping of
    // deleted ones (remembered status, backoff, phase gauge) is pruned against the cache.
    {
        let (ctx, store, mut stop) = (ctx.clone(), store.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => prune_deleted(&ctx, &store, &trigger),
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        });
    }
    let state = Arc::new(State {
        ctx,
        store,
        shutdown: stop_rx,
        flush_interval: Duration::from_secs(1),
    });
    info!("tenantmigration controller started");
    controller
        .run(reconcile_entry, error_policy, state)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(tenantmigration = %obj.name, "reconciled"),
                Err(e) => debug!(error = %e, "tenantmigration reconcile loop error"),
            }
        })
        .await;
}

/// How often bookkeeping of deleted TenantMigrations is pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Forgets per-object state of TenantMigrations that are no longer in the cache, and the
/// remembered facts of Tenants that are gone.
fn prune_deleted(ctx: &Context, store: &Store<TenantMigration>, trigger: &TenantTrigger) {
    if let Some(tenants) = ctx.synced_tenant_store() {
        let live: HashSet<String> = tenants
            .state()
            .iter()
            .map(|t| object_key(t.as_ref()))
            .collect();
        trigger.retain(|k| live.contains(k));
    }
    let kind = TenantMigration::kind(&());
    let live: std::collections::HashSet<String> = store
        .state()
        .iter()
        .map(|m| object_key(m.as_ref()))
        .collect();
    for key in ctx.remembered_keys(&kind) {
        if !live.contains(&key) {
            debug!(%key, "forgetting a deleted TenantMigration");
            ctx.forget(&key);
        }
    }
}

async fn reconcile_entry(tm: Arc<TenantMigration>, state: Arc<State>) -> Result<Action> {
    reconcile(
        tm,
        &state.ctx,
        &state.store,
        &state.shutdown,
        state.flush_interval,
    )
    .await
}

fn error_policy(tm: Arc<TenantMigration>, _err: &Error, state: Arc<State>) -> Action {
    let ctx = &state.ctx;
    Action::requeue(ctx.backoff.next_delay(
        &object_key(tm.as_ref()),
        ctx.settings.backoff_base,
        ctx.settings.backoff_max,
    ))
}

/// One reconcile of one TenantMigration (public for tests that drive it without the controller
/// loop): resolves the spec and the Tenants, runs the rollout, writes status. `store` is the
/// controller's cache of TenantMigrations (superseding migrations, pause/spec-change detection);
/// `shutdown` stops starting tenants; status is written at most every `flush_interval` while
/// tenants are being migrated.
pub async fn reconcile(
    tm: Arc<TenantMigration>,
    ctx: &Arc<Context>,
    store: &Store<TenantMigration>,
    shutdown: &watch::Receiver<bool>,
    flush_interval: Duration,
) -> Result<Action> {
    let started = Instant::now();
    let span = info_span!("reconcile", controller = CONTROLLER, tenantmigration = %tm.name_any(), namespace = %tm.namespace().unwrap_or_default());
    let result = reconcile_inner(&tm, ctx, store, shutdown, flush_interval)
        .instrument(span)
        .await;
    let key = object_key(tm.as_ref());
    match &result {
        Ok(_) => ctx.backoff.reset(&key),
        Err(e) => {
            warn!(tenantmigration = %tm.name_any(), category = e.category(), error = %e, "reconcile failed")
        }
    }
    ctx.metrics.observe_reconcile(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(|e| e.category()),
    );
    result
}

/// The rollout entry of a selected Tenant: its names, recorded version and credentials Secret
/// (the one its status names, else the one its spec asks for).
fn rollout_tenant(
    t: &Tenant,
    res: super::tenant::Resolved,
    recorded: Option<i64>,
) -> RolloutTenant {
    let secret = t
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or(res.secret_name);
    RolloutTenant {
        recorded_version: recorded,
        secret_name: Some(secret),
        ..RolloutTenant::new(t.name_any(), res.names)
    }
}

/// How one selected tenant is handled by this reconcile.
#[derive(Debug)]
enum Class {
    /// At the target version (or planned, for a listed dry-run entry).
    Done,
    /// Failed or blocked earlier in this revision.
    Failed,
    /// Not Ready yet.
    NotReady,
    /// Left alone (settled migration, tenant changed afterwards or superseded).
    Skipped(String),
    /// To migrate.
    Work(Box<RolloutTenant>),
}

struct Reconciler<'a> {
    tm: &'a TenantMigration,
    ctx: &'a Arc<Context>,
    ns: String,
    generation: Option<i64>,
    prev: TenantMigrationStatus,
    written: TenantMigrationStatus,
}

impl Reconciler<'_> {
    async fn write(&mut self, status: TenantMigrationStatus) -> Result<bool> {
        self.ctx.metrics.set_phase(
            &object_key(self.tm),
            Some(&format!("migration_{}", status.phase.as_str())),
        );
        if status == self.written {
            return Ok(false);
        }
        let api: Api<TenantMigration> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let mut body = serde_json::to_value(&status).map_err(|e| Error::Internal(e.to_string()))?;
        // Explicit nulls: optional fields that are unset now are removed, not left behind.
        if let Some(obj) = body.as_object_mut() {
            for key in [
                "observedGeneration",
                "message",
                "revision",
                "targetVersion",
                "startedAt",
                "completedAt",
            ] {
                obj.entry(key).or_insert(serde_json::Value::Null);
            }
            for key in ["conditions", "canaryTenants"] {
                obj.entry(key).or_insert(json!([]));
            }
        }
        let patch = json!({
            "apiVersion": TenantMigration::api_version(&()),
            "kind": TenantMigration::kind(&()),
            "metadata": { "name": self.tm.name_any(), "namespace": self.ns },
            "status": body,
        });
        let written = api
            .patch_status(
                &self.tm.name_any(),
                &PatchParams::apply(&format!("{}-status", self.ctx.settings.field_manager)).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.ctx.metrics.status_written(CONTROLLER);
        self.ctx.record_status_write(
            &object_key(self.tm),
            self.tm.meta().resource_version.clone(),
            written.meta().resource_version.clone(),
        );
        self.ctx
            .set_migration_status(&object_key(self.tm), status.clone());
        self.written = status;
        Ok(true)
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx
            .event(self.tm, type_, reason, "Migrate", note)
            .await;
    }
}

/// Whether another, newer non-dry-run TenantMigration of the namespace selects this tenant: a
/// settled migration leaves new tenants to the newest one (no fights between old migrations).
fn superseded_by(
    store: &Store<TenantMigration>,
    tm: &TenantMigration,
    tenant: &Tenant,
) -> Option<String> {
    let key = |m: &TenantMigration| {
        (
            m.meta().creation_timestamp.as_ref().map(|t| t.0),
            m.name_any(),
        )
    };
    let mine = key(tm);
    store
        .state()
        .into_iter()
        .filter(|m| {
            m.namespace() == tm.namespace()
                && m.meta().uid != tm.meta().uid
                && !m.spec.dry_run
                && m.meta().deletion_timestamp.is_none()
                && key(m) > mine
                && targets(m, tenant)
        })
        .map(|m| m.name_any())
        .max()
}

async fn reconcile_inner(
    tm: &TenantMigration,
    ctx: &Arc<Context>,
    store: &Store<TenantMigration>,
    shutdown: &watch::Receiver<bool>,
    flush_interval: Duration,
) -> Result<Action> {
    let key = object_key(tm);
    if tm.meta().deletion_timestamp.is_some() {
        ctx.metrics.set_phase(&key, None);
        return Ok(Action::await_change());
    }
    // The cached object predates a status write of ours (informer lag): computing the status
    // again from it would write a stale view back; wait for the cache instead.
    if ctx.is_stale(&key, tm.meta().resource_version.as_deref()) {
        debug!("cached TenantMigration predates our last status write; requeueing");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let ns = tm
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("TenantMigration has no namespace".into()))?;
    let mut prev = tm.status.clone().unwrap_or_default();
    // The cache can lag behind our own batched status writes: entries written for this revision
    // but missing from the cached object are taken from memory, so a tenant counted as done keeps
    // its entry.
    if let Some(mem) = ctx.migration_status(&object_key(tm))
        && mem.revision.is_some()
        && mem.revision == prev.revision
    {
        for e in mem.tenants {
            if !prev.tenants.iter().any(|p| p.name == e.name) {
                prev.tenants.push(e);
            }
        }
        prev.tenants.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let mut rec = Reconciler {
        tm,
        ctx,
        ns: ns.clone(),
        generation: tm.meta().generation,
        written: prev.clone(),
        prev,
    };
    let spec = &tm.spec;
    let dry_run = spec.dry_run;
    let budget = usize::try_from(spec.strategy.failure_budget.max(0)).unwrap_or(0);
    let max_parallel = usize::try_from(spec.strategy.max_parallel.clamp(1, 64)).unwrap_or(1);
    let canary = usize::try_from(spec.strategy.canary.clamp(0, 100)).unwrap_or(0);
    let paused = spec.strategy.paused;

    // 1. The spec.
    let r = match resolve_spec(tm, ctx, &ns).await {
        Ok(r) => r,
        Err(SpecError { error, in_source }) if error.is_permanent() => {
            let message = first_line(&error.to_string());
            let status = invalid_status(&rec.prev, rec.generation, &message, now_seconds());
            if rec.write(status).await? {
                rec.event(EventType::Warning, "InvalidSpec", message).await;
            }
            // The ConfigMap is not watched (a cluster-wide ConfigMap watch is too costly): a
            // source problem is looked at again with the shared exponential backoff (the error
            // goes to the error policy). Other fields only change with the spec: wait for it.
            return if in_source {
                Err(error)
            } else {
                Ok(Action::await_change())
            };
        }
        Err(SpecError { error, .. }) => return Err(error),
    };
    let target = r.target_version;
    let same_revision = rec.prev.revision.as_deref() == Some(r.revision.as_str());
    let settled = same_revision
        && rec.prev.phase == MigrationPhase::Succeeded
        && rec.prev.completed_at.is_some();
    if dry_run && settled {
        ctx.metrics.set_phase(&key, Some("migration_Succeeded"));
        return Ok(Action::requeue(ctx.settings.resync));
    }

    // 2. The Tenants.
    // From the Tenant cache once it has synced (no API list per reconcile: a settled fleet
    // migration is reconciled on every change of a Tenant it selects); from the API before.
    let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), &ns);
    let mut tenants: Vec<Tenant> = match (ctx.synced_tenant_store(), &r.tenant, &r.selector) {
        (Some(store), Some(name), _) => store
            .get(&ObjectRef::new(name).within(&ns))
            .map(|t| (*t).clone())
            .into_iter()
            .collect(),
        (Some(store), None, Some(sel)) => store
            .state()
            .iter()
            .filter(|t| t.namespace().as_deref() == Some(ns.as_str()) && sel.matches(t.labels()))
            .map(|t| (**t).clone())
            .collect(),
        (None, Some(name), _) => api.get_opt(name).await?.into_iter().collect(),
        (None, None, Some(sel)) => api
            .list(&ListParams::default().labels_from(sel))
            .await?
            .items
            .into_iter()
            .filter(|t| sel.matches(t.labels()))
            .collect(),
        (_, None, None) => Vec::new(),
    };
    tenants.retain(|t| t.meta().deletion_timestamp.is_none());
    // The cache may predate a schemaVersion this process recorded (see `Context::schema_version`).
    for t in &mut tenants {
        let key = object_key(t);
        if let Some(st) = t.status.as_mut() {
            st.schema_version = ctx.schema_version_or(&key, st.schema_version);
        }
    }
    tenants.sort_by_key(|t| t.name_any());

    // 3. Classify them.
    let prev_entries: BTreeMap<String, TenantMigrationProgress> = if same_revision {
        rec.prev
            .tenants
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect()
    } else {
        BTreeMap::new()
    };
    let completed_at = rec.prev.completed_at.as_ref().map(|t| t.0);
    let shared = &ctx.pg.settings().shared_database;
    let mut progress = Progress::default();
    let mut work: Vec<RolloutTenant> = Vec::new();
    let mut failed_names: HashSet<String> = HashSet::new();
    let mut done_names: HashSet<String> = HashSet::new();
    let mut waiting = false;
    for t in &tenants {
        let name = t.name_any();
        let recorded = t.status.as_ref().and_then(|s| s.schema_version);
        progress.recorded.insert(name.clone(), recorded);
        let prev_entry = prev_entries.get(&name);
        let ready = t.status.as_ref().map(|s| s.phase) == Some(TenantPhase::Ready);
        let class = if let Some(e) = prev_entry.filter(|e| {
            matches!(
                e.state,
                TenantMigrationState::Failed | TenantMigrationState::Blocked
            )
        }) {
            progress.entries.insert(name.clone(), e.clone());
            Class::Failed
        } else if t.spec.isolation == crate::crd::Isolation::Shared {
            // Shared (row-level security) tenants have no schema of their own: the shared layout
            // is migrated once by the Tenant controller (docs/shared-isolation.md).
            Class::Skipped(
                "isolation shared: the shared tables are migrated with the shared layout".into(),
            )
        } else if !ready {
            Class::NotReady
        } else if dry_run {
            match prev_entry.filter(|e| e.state == TenantMigrationState::Succeeded) {
                Some(e) => {
                    progress.entries.insert(name.clone(), e.clone());
                    Class::Done
                }
                None => match resolve(t, &ctx.settings.name_prefix, shared) {
                    Ok(res) => Class::Work(Box::new(rollout_tenant(t, res, recorded))),
                    Err(e) => Class::Skipped(format!("cannot resolve the Tenant's names: {e}")),
                },
            }
        } else if recorded == Some(target) {
            if let Some(e) = prev_entry.filter(|e| e.state == TenantMigrationState::Succeeded) {
                progress.entries.insert(name.clone(), e.clone());
            }
            Class::Done
        } else if settled {
            let created = t.meta().creation_timestamp.as_ref().map(|c| c.0);
            let new_tenant = matches!((created, completed_at), (Some(c), Some(done)) if c >= done);
            let newer = superseded_by(store, tm, t);
            match (new_tenant, newer) {
                (true, None) => match resolve(t, &ctx.settings.name_prefix, shared) {
                    Ok(res) => Class::Work(Box::new(rollout_tenant(t, res, recorded))),
                    Err(e) => Class::Skipped(format!("cannot resolve the Tenant's names: {e}")),
                },
                (_, Some(other)) => Class::Skipped(format!(
                    "at version {}: left to the newer TenantMigration {other}",
                    version_text(recorded)
                )),
                (false, None) => Class::Skipped(format!(
                    "at version {}: changed after this migration completed (not a new Tenant)",
                    version_text(recorded)
                )),
            }
        } else {
            match resolve(t, &ctx.settings.name_prefix, shared) {
                Ok(res) => Class::Work(Box::new(rollout_tenant(t, res, recorded))),
                Err(e) => Class::Skipped(format!("cannot resolve the Tenant's names: {e}")),
            }
        };
        match class {
            Class::Done => {
                progress
                    .states
                    .insert(name.clone(), TenantMigrationState::Succeeded);
                done_names.insert(name);
            }
            Class::Failed => {
                let state = prev_entry
                    .map(|e| e.state)
                    .unwrap_or(TenantMigrationState::Failed);
                progress.states.insert(name.clone(), state);
                failed_names.insert(name);
            }
            Class::NotReady => {
                waiting = true;
                progress.set(
                    &name,
                    TenantMigrationState::Pending,
                    Some("waiting for the Tenant to be Ready".into()),
                );
            }
            Class::Skipped(msg) => progress.set(&name, TenantMigrationState::Skipped, Some(msg)),
            Class::Work(rt) => {
                progress.set(&name, TenantMigrationState::Pending, None);
                work.push(*rt);
            }
        }
    }

    // 4. Canaries (not for dry runs).
    let mut canary_tenants: Vec<String> = Vec::new();
    let mut canary_passed = false;
    let mut canary_failed = false;
    let mut canary_pending = false;
    let mut canaries_in_run = 0usize;
    if !dry_run && canary > 0 {
        canary_passed = same_revision && rec.prev.canary_passed;
        canary_tenants = if same_revision && !rec.prev.canary_tenants.is_empty() {
            rec.prev.canary_tenants.clone()
        } else {
            work.iter().take(canary).map(|t| t.name.clone()).collect()
        };
        if !canary_passed && !canary_tenants.is_empty() {
            let selected: HashSet<&String> = tenants
                .iter()
                .filter_map(|t| t.metadata.name.as_ref())
                .collect();
            let live: Vec<&String> = canary_tenants
                .iter()
                .filter(|n| selected.contains(n))
                .collect();
            canary_failed = live.iter().any(|n| failed_names.contains(*n));
            if !canary_failed && live.iter().all(|n| done_names.contains(*n)) {
                canary_passed = true;
                rec.event(
                    EventType::Normal,
                    "CanaryPassed",
                    format!(
                        "canary tenants {} are at version {target}: releasing the fleet",
                        canary_tenants.join(", ")
                    ),
                )
                .await;
            } else if !canary_failed {
                canary_pending = true;
                let names: HashSet<&String> = live.into_iter().collect();
                let (mut first, rest): (Vec<RolloutTenant>, Vec<RolloutTenant>) =
                    work.into_iter().partition(|t| names.contains(&t.name));
                canaries_in_run = first.len();
                // Canaries not Ready yet: nobody else may start.
                let all_canaries_startable = names
                    .iter()
                    .all(|n| done_names.contains(*n) || first.iter().any(|t| &&t.name == n));
                if all_canaries_startable {
                    first.extend(rest);
                }
                work = first;
            }
        } else if canary_tenants.is_empty() {
            canary_passed = true;
        }
    }

    let failures = progress.counts().failed;
    let mut input = VerdictInput {
        counts: progress.counts(),
        failure_budget: budget,
        dry_run,
        canary_failed,
        canary_pending,
        paused,
        settled,
        retrying: false,
        waiting_for_tenants: waiting,
        missing_tenant: r.tenant.clone().filter(|_| tenants.is_empty()),
        target_version: target,
    };
    let blocked_by_budget = !dry_run && failures > budget;
    let runnable = !work.is_empty() && !paused && !canary_failed && !blocked_by_budget;

    // 5. The rollout.
    let mut transient: Option<String> = None;
    if runnable {
        if rec.prev.started_at.is_none() || !same_revision {
            let what = if dry_run { "dry run of" } else { "migrating" };
            rec.event(
                EventType::Normal,
                "RolloutStarted",
                format!(
                    "{what} {} tenants to version {target} (maxParallel {max_parallel}, failureBudget {budget}, canary {canary})",
                    work.len()
                ),
            )
            .await;
        }
        let migrator = Arc::new(KubeMigrator {
            pg: PgMigrator {
                pg: ctx.pg.clone(),
                set: r.set.clone(),
                target_version: target,
                dry_run,
            },
            tenants: api.clone(),
            secrets: Api::namespaced(ctx.client.clone(), &ns),
            ctx: ctx.clone(),
            namespace: ns.clone(),
        });
        let config = RolloutConfig {
            max_parallel,
            failure_budget: budget,
            failures_so_far: failures,
            canaries: canaries_in_run,
            enforce_budget: !dry_run,
            max_transient: max_parallel,
        };
        let rollout = Rollout::new(config, migrator);
        let oref = ObjectRef::from_obj(tm);
        let generation = rec.generation;
        let control = || {
            if *shutdown.borrow() {
                return Control::Stop;
            }
            match store.get(&oref) {
                // Not in the cache (tests driving reconcile directly): follow the spec we have.
                None if store.state().is_empty() => Control::Continue,
                None => Control::Stop,
                Some(cur) if cur.meta().generation != generation => {
                    if cur.spec.strategy.paused {
                        Control::Pause
                    } else {
                        Control::Stop
                    }
                }
                Some(_) => Control::Continue,
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = rollout.run(work, control, Some(&tx));
        tokio::pin!(run);
        let mut ticker = tokio::time::interval(flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        let summary = loop {
            tokio::select! {
                summary = &mut run => break summary,
                Some(ev) = rx.recv() => {
                    let flush_now = handle_event(&mut rec, &mut progress, &ev, &mut canary_passed, &canary_tenants).await;
                    dirty = true;
                    if flush_now {
                        input.counts = progress.counts();
                        input.canary_pending = canary_pending && !canary_passed;
                        let status = render_status(&rec.prev, same_revision, &r.revision, rec.generation, target, &progress, &verdict(&input), &canary_tenants, canary_passed, now_seconds());
                        if let Err(e) = rec.write(status).await { warn!(error = %e, "progress status write failed"); }
                        dirty = false;
                    }
                }
                _ = ticker.tick() => {
                    if dirty {
                        input.counts = progress.counts();
                        input.canary_pending = canary_pending && !canary_passed;
                        let status = render_status(&rec.prev, same_revision, &r.revision, rec.generation, target, &progress, &verdict(&input), &canary_tenants, canary_passed, now_seconds());
                        if let Err(e) = rec.write(status).await { warn!(error = %e, "progress status write failed"); }
                        dirty = false;
                    }
                }
            }
        };
        while let Ok(ev) = rx.try_recv() {
            handle_event(
                &mut rec,
                &mut progress,
                &ev,
                &mut canary_passed,
                &canary_tenants,
            )
            .await;
        }
        if summary.halted == Some(HaltReason::CanaryFailed) {
            canary_failed = true;
        }
        if let Some(o) = summary
            .outcomes
            .iter()
            .find(|o| o.kind == OutcomeKind::Retry)
        {
            transient = Some(format!("tenant {}: {}", o.name, o.message));
        }
        info!(
            tenants = summary.outcomes.len(),
            succeeded = summary.count(OutcomeKind::Succeeded),
            failed = summary.count(OutcomeKind::Failed) + summary.count(OutcomeKind::Blocked),
            retry = summary.count(OutcomeKind::Retry),
            halted = ?summary.halted,
            "rollout pass done"
        );
    }

    // 6. Final status and events.
    input.counts = progress.counts();
    input.canary_failed = canary_failed;
    input.canary_pending = canary_pending && !canary_passed && !canary_failed;
    input.retrying = transient.is_some();
    let v = verdict(&input);
    let status = render_status(
        &rec.prev,
        same_revision,
        &r.revision,
        rec.generation,
        target,
        &progress,
        &v,
        &canary_tenants,
        canary_passed,
        now_seconds(),
    );
    let prev_phase = if same_revision {
        Some(rec.prev.phase)
    } else {
        None
    };
    rec.write(status).await?;
    if prev_phase != Some(v.phase) {
        match (v.phase, v.reason) {
            (MigrationPhase::Succeeded, _) => {
                rec.event(EventType::Normal, "Completed", v.message.clone())
                    .await
            }
            (MigrationPhase::Failed, reason) => {
                rec.event(EventType::Warning, reason, v.message.clone())
                    .await
            }
            (MigrationPhase::Paused, _) => {
                rec.event(EventType::Normal, "Paused", v.message.clone())
                    .await
            }
            _ => {}
        }
    }
    if let Some(t) = transient {
        return Err(Error::DatabaseUnavailable(t));
    }
    Ok(Action::requeue(ctx.settings.resync))
}

/// Applies one rollout event to the progress; returns whether status should be written now.
async fn handle_event(
    rec: &mut Reconciler<'_>,
    progress: &mut Progress,
    ev: &RolloutEvent,
    canary_passed: &mut bool,
    canary_tenants: &[String],
) -> bool {
    match ev {
        RolloutEvent::Started(name) => {
            progress.started(name);
            false
        }
        RolloutEvent::Finished(o) => {
            progress.finished(o, now_seconds());
            match o.kind {
                OutcomeKind::Failed | OutcomeKind::Blocked => {
                    let reason = if o.kind == OutcomeKind::Blocked {
                        "TenantBlocked"
                    } else {
                        "TenantFailed"
                    };
                    rec.event(
                        EventType::Warning,
                        reason,
                        format!("Tenant {}: {}", o.name, o.message),
                    )
                    .await;
                }
                OutcomeKind::Succeeded | OutcomeKind::Retry => {}
            }
            false
        }
        RolloutEvent::CanaryPassed => {
            *canary_passed = true;
            rec.event(
                EventType::Normal,
                "CanaryPassed",
                format!(
                    "canary tenants {} succeeded: releasing the fleet",
                    canary_tenants.join(", ")
                ),
            )
            .await;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Isolation;
    use crate::naming::{Ident, tenant_names};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rt(name: &str) -> RolloutTenant {
        let shared = Ident::new("tenantdb_shared").unwrap();
        RolloutTenant::new(
            name,
            tenant_names("tenant_", "ns", name, Isolation::Schema, None, &shared).unwrap(),
        )
    }

    /// Fails tenants whose name is in `fail`, blocks those in `block`, counts concurrency.
    struct Fake {
        fail: Vec<&'static str>,
        block: Vec<&'static str>,
        running: AtomicUsize,
        peak: AtomicUsize,
        order: Mutex<Vec<String>>,
    }

    impl Fake {
        fn new(fail: Vec<&'static str>, block: Vec<&'static str>) -> Arc<Self> {
            Arc::new(Self {
                fail,
                block,
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                order: Mutex::new(vec![]),
            })
        }
    }

    impl TenantMigrator for Fake {
        async fn migrate(&self, t: &RolloutTenant) -> TenantOutcome {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            self.order.lock().unwrap().push(t.name.clone());
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            let kind = if self.fail.contains(&t.name.as_str()) {
                OutcomeKind::Failed
            } else if self.block.contains(&t.name.as_str()) {
                OutcomeKind::Blocked
            } else {
                OutcomeKind::Succeeded
            };
            TenantOutcome {
                name: t.name.clone(),
                kind,
                from_version: Some(1),
                to_version: Some(2),
                steps: vec![],
                message: String::new(),
                category: None,
                duration: Duration::ZERO,
            }
        }
    }

    fn tenant_obj(name: &str, tier: &str, status: serde_json::Value) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                         "generation": 1, "labels": {"tier": tier}},
            "spec": {"isolation": "schema"},
            "status": status,
        }))
        .unwrap()
    }

    fn tm_obj(name: &str, target: serde_json::Value) -> TenantMigration {
        serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"target": target},
        }))
        .unwrap()
    }

    #[test]
    fn tenant_events_trigger_migrations_only_when_rollout_facts_change() {
        let (store, mut writer) = kube::runtime::reflector::store::<TenantMigration>();
        for tm in [
            tm_obj(
                "gold",
                json!({"selector": {"matchLabels": {"tier": "gold"}}}),
            ),
            tm_obj(
                "silver",
                json!({"selector": {"matchLabels": {"tier": "silver"}}}),
            ),
            tm_obj("one", json!({"tenant": "a"})),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(tm));
        }
        let trigger = TenantTrigger::default();
        let fire = |t: &Tenant| {
            let mut v: Vec<String> = trigger
                .migrations_for(&store, t)
                .into_iter()
                .map(|r| r.name)
                .collect();
            v.sort();
            v
        };
        let ready = json!({"phase": "Ready", "schemaVersion": 7, "usage": {"storageBytes": 1}});
        let a = tenant_obj("a", "gold", ready.clone());
        // First sight: the selecting TenantMigrations.
        assert_eq!(fire(&a), ["gold", "one"]);
        // The same facts again (a resync, a re-list): nothing.
        assert!(fire(&a).is_empty());
        // A routine status write (usage, health, a condition message): nothing.
        let mut usage = ready.clone();
        usage["usage"]["storageBytes"] = json!(4096);
        usage["health"] = json!({"healthy": true});
        assert!(fire(&tenant_obj("a", "gold", usage)).is_empty());
        // What a rollout reads: schemaVersion, readiness, generation, deletion.
        let mut migrated = ready.clone();
        migrated["schemaVersion"] = json!(8);
        assert_eq!(
            fire(&tenant_obj("a", "gold", migrated.clone())),
            ["gold", "one"]
        );
        let mut failed = migrated.clone();
        failed["phase"] = json!("Failed");
        assert_eq!(fire(&tenant_obj("a", "gold", failed)), ["gold", "one"]);
        let mut spec_change = tenant_obj("a", "gold", migrated.clone());
        spec_change.metadata.generation = Some(2);
        assert_eq!(fire(&spec_change), ["gold", "one"]);
        let mut deleting = spec_change.clone();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(fire(&deleting), ["gold", "one"]);
        // A label change triggers the migration that selected the old labels, too.
        let mut moved = spec_change.clone();
        moved.metadata.labels = Some([("tier".to_string(), "silver".to_string())].into());
        assert_eq!(fire(&moved), ["gold", "one", "silver"]);
        assert!(fire(&moved).is_empty());
        // A recreated Tenant of the same name (new uid) is a change.
        let mut recreated = moved.clone();
        recreated.metadata.uid = Some("uid-a-2".into());
        assert_eq!(fire(&recreated), ["one", "silver"]);
        // Other namespaces and non-selected Tenants trigger nothing.
        let mut elsewhere = tenant_obj("b", "gold", ready.clone());
        elsewhere.metadata.namespace = Some("other".into());
        assert!(fire(&elsewhere).is_empty());
        assert!(fire(&tenant_obj("c", "bronze", ready)).is_empty());
        // Gone Tenants are forgotten.
        assert_eq!(trigger.len(), 3);
        let keep = object_key_for::<Tenant>("ns", "a");
        trigger.retain(|k| k == keep);
        assert_eq!(trigger.len(), 1);
    }

    fn names(n: usize) -> Vec<RolloutTenant> {
        (0..n).map(|i| rt(&format!("t{i:02}"))).collect()
    }

    #[tokio::test]
    async fn parallelism_is_bounded() {
        let fake = Fake::new(vec![], vec![]);
        let r = Rollout::new(
            RolloutConfig {
                max_parallel: 3,
                ..Default::default()
            },
            fake.clone(),
        );
        let s = r.run(names(12), || Control::Continue, None).await;
        assert_eq!(s.count(OutcomeKind::Succeeded), 12);
        assert!(fake.peak.load(Ordering::SeqCst) <= 3);
        assert!(
            s.peak_running <= 3 && s.peak_running >= 2,
            "{}",
            s.peak_running
        );
        assert!(s.halted.is_none() && s.not_started.is_empty());
    }

    #[tokio::test]
    async fn failure_budget_stops_new_starts() {
        let fake = Fake::new(vec!["t01", "t03"], vec![]);
        let r = Rollout::new(
            RolloutConfig {
                failure_budget: 1,
                ..Default::default()
            },
            fake.clone(),
        );
        let s = r.run(names(8), || Control::Continue, None).await;
        assert_eq!(s.halted, Some(HaltReason::FailureBudgetExceeded));
        assert_eq!(s.outcomes.len(), 4);
        assert_eq!(s.not_started, ["t04", "t05", "t06", "t07"]);
        // Blocked counts as failed; budget ignored for dry runs.
        let fake = Fake::new(vec![], vec!["t00"]);
        let r = Rollout::new(RolloutConfig::default(), fake.clone());
        assert_eq!(
            r.run(names(3), || Control::Continue, None)
                .await
                .outcomes
                .len(),
            1
        );
        let r = Rollout::new(
            RolloutConfig {
                enforce_budget: false,
                ..Default::default()
            },
            fake,
        );
        assert_eq!(
            r.run(names(3), || Control::Continue, None)
                .await
                .outcomes
                .len(),
            3
        );
    }

    #[tokio::test]
    async fn canaries_gate_the_fleet() {
        let fake = Fake::new(vec![], vec![]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let r = Rollout::new(
            RolloutConfig {
                max_parallel: 4,
                canaries: 2,
                failure_budget: 10,
                ..Default::default()
            },
            fake.clone(),
        );
        let s = r.run(names(6), || Control::Continue, Some(&tx)).await;
        assert!(s.canary_passed);
        let mut evs = vec![];
        while let Ok(e) = rx.try_recv() {
            evs.push(e);
        }
        let pos = evs
            .iter()
            .position(|e| *e == RolloutEvent::CanaryPassed)
            .unwrap();
        let started_before: Vec<_> = evs[..pos]
            .iter()
            .filter_map(|e| match e {
                RolloutEvent::Started(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(started_before, ["t00", "t01"]);

        let fake = Fake::new(vec!["t01"], vec![]);
        let r = Rollout::new(
            RolloutConfig {
                max_parallel: 4,
                canaries: 2,
                failure_budget: 10,
                ..Default::default()
            },
            fake.clone(),
        );
        let s = r.run(names(6), || Control::Continue, None).await;
        assert_eq!(s.halted, Some(HaltReason::CanaryFailed));
        assert_eq!(s.outcomes.len(), 2);
        assert_eq!(s.not_started.len(), 4);
    }

    #[tokio::test]
    async fn pause_lets_running_finish() {
        let fake = Fake::new(vec![], vec![]);
        let calls = AtomicUsize::new(0);
        let r = Rollout::new(
            RolloutConfig {
                max_parallel: 2,
                ..Default::default()
            },
            fake,
        );
        let s = r
            .run(
                names(10),
                || {
                    if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                        Control::Continue
                    } else {
                        Control::Pause
                    }
                },
                None,
            )
            .await;
        assert_eq!(s.halted, Some(HaltReason::Paused));
        assert_eq!(s.outcomes.len(), 3);
        assert_eq!(s.not_started.len(), 7);
    }

    fn entry(name: &str, state: TenantMigrationState, second: i64) -> TenantMigrationProgress {
        TenantMigrationProgress {
            name: name.into(),
            state,
            finished_at: Some(Time(Timestamp::from_second(second).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn entries_are_bounded() {
        let mut p = Progress::default();
        for i in 0..200 {
            let name = format!("t{i:03}");
            let state = if i % 50 == 7 {
                TenantMigrationState::Failed
            } else {
                TenantMigrationState::Succeeded
            };
            p.states.insert(name.clone(), state);
            p.entries
                .insert(name.clone(), entry(&name, state, 1_000 + i));
        }
        // An entry of a tenant that is no longer selected is dropped.
        p.entries.insert(
            "gone".into(),
            entry("gone", TenantMigrationState::Failed, 5),
        );
        let (list, omitted) = p.bounded_entries();
        assert_eq!(list.len(), 4 + MAX_LISTED_TENANTS);
        assert_eq!(omitted, 200 - list.len());
        assert_eq!(
            list.iter()
                .filter(|e| e.state == TenantMigrationState::Failed)
                .count(),
            4
        );
        assert!(list.iter().any(|e| e.name == "t199"));
        assert!(!list.iter().any(|e| e.name == "t100"));
        assert!(list.windows(2).all(|w| w[0].name < w[1].name));
        let c = p.counts();
        assert_eq!((c.total, c.succeeded, c.failed), (200, 196, 4));
    }

    #[test]
    fn verdicts() {
        let base = VerdictInput {
            target_version: 5,
            failure_budget: 1,
            ..Default::default()
        };
        let counts = |succeeded, failed, pending, running| Counts {
            total: succeeded + failed + pending + running,
            succeeded,
            failed,
            pending,
            running,
            skipped: 0,
        };
        let v = verdict(&VerdictInput {
            counts: counts(3, 0, 0, 0),
            ..base.clone()
        });
        assert_eq!((v.phase, v.reason), (MigrationPhase::Succeeded, "Complete"));
        let v = verdict(&VerdictInput {
            counts: counts(3, 1, 0, 0),
            ..base.clone()
        });
        assert_eq!(v.phase, MigrationPhase::Succeeded);
        let v = verdict(&VerdictInput {
            counts: counts(3, 2, 4, 0),
            ..base.clone()
        });
        assert_eq!(
            (v.phase, v.reason),
            (MigrationPhase::Failed, "FailureBudgetExceeded")
        );
        let v = verdict(&VerdictInput {
            counts: counts(3, 2, 0, 0),
            dry_run: true,
            ..base.clone()
        });
        assert_eq!(
            (v.phase, v.reason),
            (MigrationPhase::Succeeded, "DryRunComplete")
        );
        let v = verdict(&VerdictInput {
            counts: counts(3, 0, 4, 0),
            paused: true,
            ..base.clone()
        });
        assert_eq!(v.phase, MigrationPhase::Paused);
        let v = verdict(&VerdictInput {
            counts: counts(3, 0, 4, 0),
            waiting_for_tenants: true,
            ..base.clone()
        });
        assert_eq!(
            (v.phase, v.reason),
            (MigrationPhase::Running, "WaitingForTenants")
        );
        let v = verdict(&VerdictInput {
            counts: counts(0, 0, 0, 0),
            ..base.clone()
        });
        assert_eq!(
            (v.phase, v.reason),
            (MigrationPhase::Succeeded, "NoMatchingTenants")
        );
        let v = verdict(&VerdictInput {
            counts: counts(0, 0, 0, 0),
            missing_tenant: Some("x".into()),
            ..base.clone()
        });
        assert_eq!(
            (v.phase, v.reason),
            (MigrationPhase::Pending, "TenantNotFound")
        );
        let v = verdict(&VerdictInput {
            counts: counts(1, 1, 3, 0),
            canary_failed: true,
            failure_budget: 10,
            ..base
        });
        assert_eq!(
            (v.phase, v.reason),
            (MigrationPhase::Failed, "CanaryFailed")
        );
    }

    #[test]
    fn rendering_is_stable() {
        let mut p = Progress::default();
        p.states.insert("a".into(), TenantMigrationState::Succeeded);
        p.entries
            .insert("a".into(), entry("a", TenantMigrationState::Succeeded, 10));
        let v = verdict(&VerdictInput {
            counts: p.counts(),
            target_version: 3,
            ..Default::default()
        });
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let s1 = render_status(
            &TenantMigrationStatus::default(),
            false,
            "rev",
            Some(1),
            3,
            &p,
            &v,
            &[],
            false,
            t0,
        );
        assert_eq!(s1.phase, MigrationPhase::Succeeded);
        assert_eq!(s1.completed_at, Some(Time(t0)));
        let s2 = render_status(&s1, true, "rev", Some(1), 3, &p, &v, &[], false, t1);
        assert_eq!(s1, s2, "an unchanged rollout renders the same status");
        let s3 = render_status(&s1, false, "rev2", Some(2), 3, &p, &v, &[], false, t1);
        assert_eq!(s3.started_at, Some(Time(t1)));
    }

    #[test]
    fn selectors_are_validated() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let ok = LabelSelector {
            match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["prod".into()]),
            }]),
        };
        let s = parse_selector(&ok).unwrap();
        assert_eq!(s.to_string(), "tier=gold,env in (prod)");
        for bad in [
            LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec![]),
                }]),
                ..Default::default()
            },
            LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Near".into(),
                    values: None,
                }]),
                ..Default::default()
            },
            LabelSelector {
                match_labels: Some([("a b".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            LabelSelector {
                match_labels: Some([("a".to_string(), "x,y=z".to_string())].into()),
                ..Default::default()
            },
        ] {
            assert!(parse_selector(&bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_selector(&LabelSelector::default())
                .unwrap()
                .selects_all()
        );
    }

    #[test]
    fn configmap_sets_merge_and_conflict() {
        let bundled =
            MigrationSet::from_files([("1_a.up.sql".to_string(), "create table a();".to_string())])
                .unwrap();
        let data: BTreeMap<String, String> = [
            ("2_b.up.sql".to_string(), "create table b();".to_string()),
            ("README".to_string(), "x".to_string()),
        ]
        .into();
        let set = build_set(&bundled, Some(("cm", &data))).unwrap();
        assert_eq!(set.latest_version(), Some(2));
        let clash: BTreeMap<String, String> = [(
            "1_a.up.sql".to_string(),
            "create table other();".to_string(),
        )]
        .into();
        let e = build_set(&bundled, Some(("cm", &clash))).unwrap_err();
        assert!(
            e.contains("conflicts") && e.contains("duplicate migration version 1"),
            "{e}"
        );
        assert_ne!(set_fingerprint(&set), set_fingerprint(&bundled));
    }

    /// The exact wiring proposed for `runtime.rs::run_controllers` type-checks and is spawnable.
    #[allow(dead_code)]
    fn runtime_wiring_compiles(
        ctx: Arc<Context>,
        concurrency: u16,
        ready: watch::Sender<bool>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) {
        async fn run_controllers(
            ctx: Arc<Context>,
            concurrency: u16,
            ready: watch::Sender<bool>,
            shutdown: impl Future<Output = ()> + Send + Sync + 'static,
        ) {
            use futures::FutureExt;
            let shutdown = shutdown.shared();
            tokio::join!(
                crate::controller::tenant::run(ctx.clone(), concurrency, ready, shutdown.clone()),
                crate::controller::migration::run(ctx, concurrency, shutdown),
            );
        }
        drop(tokio::spawn(run_controllers(
            ctx,
            concurrency,
            ready,
            shutdown,
        )));
    }

    #[test]
    fn step_descriptions_are_bounded() {
        let steps: Vec<PlannedStep> = (1..100)
            .map(|v| PlannedStep {
                version: v,
                name: format!("migration_number_{v}"),
                direction: migrate::Direction::Up,
            })
            .collect();
        let d = describe_steps(&steps);
        assert!(d.len() < MAX_MESSAGE, "{}", d.len());
        assert!(d.starts_with("up 1 migration_number_1, up 2"));
        assert!(d.contains("more)"));
    }
}
