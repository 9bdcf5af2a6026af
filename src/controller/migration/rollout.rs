//! One tenant's migration ([`migrate_tenant`]) and the Kubernetes-free [`Rollout`] engine
//! (parallelism, canary gate, failure budget, pause/stop).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::*;
use crate::error::first_line;
use crate::identity::lock_key;
use crate::migrate::{self, MigrateError, MigrationSet, MigrationTarget, PlannedStep};
use crate::naming::TenantNames;
use crate::pg::PgAdmin;
use crate::pg::session::Credentials;

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
    /// The database server the tenant lives on (`None`: the migrator's default).
    pub server: Option<String>,
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
            server: None,
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
    /// Not migrated now, on purpose: the tenant started moving to another server (or moved)
    /// since the pass was planned. It waits for a later pass; neither a failure nor a transient
    /// problem (no backoff, nothing against the failure budget).
    Deferred,
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
    pub(crate) fn error(
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
pub(crate) fn bounded(s: &str) -> String {
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

pub(crate) fn version_text(v: Option<i64>) -> String {
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
    lock_timeout: Option<Duration>,
) -> TenantOutcome {
    migrate_tenant_on(pg, set, tenant, target_version, dry_run, lock_timeout, None).await
}

/// [`migrate_tenant`] on `session` when one is given: a session already logged in as the tenant
/// with its credentials (opened ahead, see [`TenantMigrator::prefetch`]); else it logs in.
pub(crate) async fn migrate_tenant_on(
    pg: &PgAdmin,
    set: &MigrationSet,
    tenant: &RolloutTenant,
    target_version: i64,
    dry_run: bool,
    lock_timeout: Option<Duration>,
    session: Option<crate::pg::session::TenantSession>,
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
    let login = match session {
        Some(s) => Ok(s),
        None => pg.login(&tenant.names.database, creds, lock_timeout).await,
    };
    let mut conn = match login {
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

    /// A hint that `tenant` is probably the next to start: the migrator may begin reading what
    /// it needs (the Kubernetes migrator: the credentials Secret) while the running tenants
    /// migrate. A hint may go unused (a pause, a halt, another tenant's server slot freeing
    /// first); [`TenantMigrator::flush`] drops what is left.
    fn prefetch(&self, _tenant: &RolloutTenant) {}

    /// Waits for work the migrator does after a tenant's outcome, off the rollout's critical path
    /// (the Kubernetes migrator's `status.schemaVersion` writes). Called once before
    /// [`Rollout::run`] returns.
    fn flush(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The PostgreSQL migrator: [`migrate_tenant`] with a fixed set, target and mode.
#[derive(Debug, Clone)]
pub struct PgMigrator {
    /// Admin access to the default server (tenants without a server); `None` without one.
    pub pg: Option<Arc<PgAdmin>>,
    /// The servers tenants with a server name live on (`None`: all on `pg`).
    pub servers: Option<Arc<crate::servers::Registry>>,
    /// The migration set.
    pub set: Arc<MigrationSet>,
    /// Version every tenant is brought to.
    pub target_version: i64,
    /// Plan only.
    pub dry_run: bool,
    /// Bound on each lock wait of a migration (`--migration-lock-timeout-seconds`; `None`: none).
    pub lock_timeout: Option<Duration>,
}

impl PgMigrator {
    /// Admin access to the server `tenant` lives on; `Err` is the message when that server is
    /// not known (yet).
    pub(crate) fn admin_for(&self, tenant: &RolloutTenant) -> Result<Arc<PgAdmin>, String> {
        match (&tenant.server, &self.servers) {
            (Some(name), Some(servers)) => servers
                .get(name)
                .map(|s| s.pg().clone())
                .ok_or_else(|| format!("database server {name} is not known (yet)")),
            _ => self
                .pg
                .clone()
                .ok_or_else(|| "not placed on a database server (yet)".to_string()),
        }
    }

    /// Migrates `tenant` on `session` when one is given (see [`migrate_tenant_on`]).
    pub(crate) async fn migrate_on(
        &self,
        tenant: &RolloutTenant,
        session: Option<crate::pg::session::TenantSession>,
    ) -> TenantOutcome {
        let pg = match self.admin_for(tenant) {
            Ok(pg) => pg,
            Err(message) => {
                return TenantOutcome::error(
                    tenant,
                    OutcomeKind::Retry,
                    "server",
                    message,
                    Duration::ZERO,
                );
            }
        };
        migrate_tenant_on(
            &pg,
            &self.set,
            tenant,
            self.target_version,
            self.dry_run,
            self.lock_timeout,
            session,
        )
        .await
    }
}

impl TenantMigrator for PgMigrator {
    async fn migrate(&self, tenant: &RolloutTenant) -> TenantOutcome {
        self.migrate_on(tenant, None).await
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
    /// Tenants of one database server migrated at once (`None`: only `max_parallel` applies).
    pub max_parallel_per_server: Option<usize>,
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
            max_parallel_per_server: None,
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
    /// Too many transient errors (database unreachable?), or a canary hit one or was deferred
    /// (it started moving).
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
    /// Highest number of tenants of one server migrated at the same time.
    pub peak_running_per_server: usize,
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
        // Running tenants per server, for `max_parallel_per_server`.
        let mut task_servers: HashMap<tokio::task::Id, Option<String>> = HashMap::new();
        let mut running_on: HashMap<Option<String>, usize> = HashMap::new();
        let per_server = cfg.max_parallel_per_server.map(|l| l.max(1));
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
                // The first tenant whose server has a free slot (canaries: strictly in order).
                let next = match per_server {
                    None => Some(0),
                    Some(_) if in_canary_phase => Some(0).filter(|_| {
                        queue.front().is_some_and(|t| {
                            per_server
                                .is_none_or(|l| running_on.get(&t.server).copied().unwrap_or(0) < l)
                        })
                    }),
                    Some(l) => queue
                        .iter()
                        .position(|t| running_on.get(&t.server).copied().unwrap_or(0) < l),
                };
                let Some(tenant) = next.and_then(|i| queue.remove(i)) else {
                    break;
                };
                let on = running_on.entry(tenant.server.clone()).or_default();
                *on += 1;
                summary.peak_running_per_server = summary.peak_running_per_server.max(*on);
                let server = tenant.server.clone();
                if in_canary_phase {
                    canaries_to_start -= 1;
                    canary_names.insert(tenant.name.clone());
                }
                send(RolloutEvent::Started(tenant.name.clone()));
                let name = tenant.name.clone();
                let migrator = self.migrator.clone();
                let handle = tasks.spawn(async move { migrator.migrate(&tenant).await });
                task_names.insert(handle.id(), name);
                task_servers.insert(handle.id(), server);
                summary.peak_running = summary.peak_running.max(tasks.len());
            }
            // The tenant that starts when a slot frees: its credentials are read meanwhile (at
            // maxParallel 1 the Secret read leaves the critical path). Not during the canary
            // phase (the fleet may never start) nor once halted.
            if summary.halted.is_none()
                && !in_canary_phase
                && let Some(next) = queue.front()
            {
                self.migrator.prefetch(next);
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(e) => e.id(),
            };
            if let Some(server) = task_servers.remove(&id)
                && let Some(n) = running_on.get_mut(&server)
            {
                *n = n.saturating_sub(1);
            }
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
                OutcomeKind::Succeeded | OutcomeKind::Deferred => {}
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
                    // A transient problem or a deferred (moving) canary: the fleet waits for the
                    // canaries of a later pass.
                    summary.halted.get_or_insert(HaltReason::Unavailable);
                }
            }
        }
        self.migrator.flush().await;
        if summary.halted.is_none() && cfg.enforce_budget && failures > cfg.failure_budget {
            summary.halted = Some(HaltReason::FailureBudgetExceeded);
        }
        summary.not_started = queue.into_iter().map(|t| t.name).collect();
        summary
    }
}
