//! One reconcile of one TenantMigration: spec, Tenants, classification, canary, rollout, status.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::SelectorExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use super::super::tenant::resolve;
use super::super::{Context, facts_hash, object_key};
use super::*;
use crate::crd::{
    MigrationPhase, Tenant, TenantMigration, TenantMigrationProgress, TenantMigrationState,
    TenantMigrationStatus, TenantPhase,
};
use crate::error::{Error, Result, first_line};

/// One reconcile of one TenantMigration (public for tests that drive it without the controller
/// loop): resolves the spec and the Tenants, classifies them, starts a rollout pass in the
/// background when there is work ([`Rollouts`]), and writes the status and Events of the
/// verdict. `store` is the controller's cache of TenantMigrations (superseding migrations,
/// pause/spec-change/deletion detection); `shutdown` stops passes from starting tenants.
pub async fn reconcile(
    tm: Arc<TenantMigration>,
    ctx: &Arc<Context>,
    store: &Store<TenantMigration>,
    shutdown: &watch::Receiver<bool>,
    rollouts: &Arc<Rollouts>,
) -> Result<Action> {
    let started = Instant::now();
    let span = info_span!("reconcile", controller = CONTROLLER, tenantmigration = %tm.name_any(), namespace = %tm.namespace().unwrap_or_default());
    let result = reconcile_inner(&tm, ctx, store, shutdown, rollouts)
        .instrument(span)
        .await;
    // (The backoff is reset where a reconcile ends without transient problems, not here: a
    // reconcile that waits out its backoff returns Ok too.)
    if let Err(e) = &result {
        warn!(tenantmigration = %tm.name_any(), category = e.category(), error = %e, "reconcile failed")
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
pub(crate) fn rollout_tenant(
    t: &Tenant,
    res: super::super::tenant::Resolved,
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
pub(crate) enum Class {
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

pub(crate) struct Reconciler {
    pub(crate) tm: Arc<TenantMigration>,
    pub(crate) ctx: Arc<Context>,
    pub(crate) ns: String,
    pub(crate) generation: Option<i64>,
    pub(crate) prev: TenantMigrationStatus,
    pub(crate) written: TenantMigrationStatus,
}

impl Reconciler {
    async fn write(&mut self, status: TenantMigrationStatus) -> Result<bool> {
        self.ctx.metrics.set_phase(
            &object_key(self.tm.as_ref()),
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
            &object_key(self.tm.as_ref()),
            self.tm.meta().resource_version.clone(),
            written.meta().resource_version.clone(),
        );
        self.ctx
            .set_migration_status(&object_key(self.tm.as_ref()), status.clone());
        self.written = status;
        Ok(true)
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx
            .event(self.tm.as_ref(), type_, reason, "Migrate", note)
            .await;
    }
}

/// Whether another, newer non-dry-run TenantMigration of the namespace selects this tenant: a
/// settled migration leaves new tenants to the newest one (no fights between old migrations).
pub(crate) fn superseded_by(
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

pub(crate) async fn reconcile_inner(
    tm_arc: &Arc<TenantMigration>,
    ctx: &Arc<Context>,
    store: &Store<TenantMigration>,
    shutdown: &watch::Receiver<bool>,
    rollouts: &Arc<Rollouts>,
) -> Result<Action> {
    let tm: &TenantMigration = tm_arc;
    let key = object_key(tm);
    if tm.meta().deletion_timestamp.is_some() {
        ctx.metrics.set_phase(&key, None);
        return Ok(Action::await_change());
    }
    // The cached object predates a status write of ours (informer lag): computing the status
    // again from it would write a stale view back; wait for the cache instead.
    // A pass of this TenantMigration is running in the background: it writes the status, and
    // triggers a reconcile when it ends.
    if rollouts.is_running(&key) {
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let finished = rollouts.take_finished(&key);
    // The cached object predates a status write of ours (informer lag): computing the status
    // again from it would write a stale view back; wait for the cache instead. (A pass result
    // taken above is put back for the next try.)
    if ctx.is_stale(&key, tm.meta().resource_version.as_deref()) {
        debug!("cached TenantMigration predates our last status write; requeueing");
        if let Some(f) = finished {
            rollouts.put_back(&key, f);
        }
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
        tm: tm_arc.clone(),
        ctx: ctx.clone(),
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
        pass_running: false,
    };
    let blocked_by_budget = !dry_run && failures > budget;
    let runnable = !work.is_empty() && !paused && !canary_failed && !blocked_by_budget;

    // 5. The rollout: a pass in the background (see `task`), after the backoff of the last
    // pass's transient problems.
    let finished_transient = finished.as_ref().and_then(|f| f.transient.clone());
    let facts = facts_hash(tm);
    if let Some(t) = &finished_transient {
        // The pass that just ended hit a transient problem: the next one waits for the backoff,
        // however often this TenantMigration is triggered in between (its own status writes,
        // Tenant events).
        let delay = ctx.backoff.next_delay_for(
            &key,
            facts,
            ctx.settings.backoff_base,
            ctx.settings.backoff_max,
        );
        debug!(?delay, transient = %t, "next rollout pass after the backoff");
    }
    let hold = ctx.backoff.hold(&key, facts);
    let slot = if runnable && hold.is_none() {
        rollouts.try_slot()
    } else {
        None
    };
    if let Some(slot) = slot {
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
        let pass = Pass {
            rollout: Rollout::new(config, migrator),
            work,
            store: store.clone(),
            shutdown: shutdown.clone(),
            flush_interval: rollouts.flush_interval,
            same_revision,
            revision: r.revision.clone(),
            target,
            progress,
            input,
            canary_tenants,
            canary_passed,
            canary_pending,
        };
        rollouts.start(key, ObjectRef::from_obj(tm), slot, pass.run(rec));
        return Ok(Action::requeue(ctx.settings.resync));
    }
    let transient = finished_transient.or_else(|| {
        (runnable && hold.is_some())
            .then(|| "waiting for the backoff after transient errors".to_string())
    });

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
    if runnable && slot_missing(hold, &transient) {
        // Every pass slot is taken by other TenantMigrations: look again shortly.
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    match (transient, hold) {
        // Retried after the backoff (reconciles in between return here as well).
        (Some(_), Some(wait)) => Ok(Action::requeue(wait)),
        (Some(t), None) => Err(Error::DatabaseUnavailable(t)),
        (None, _) => {
            ctx.backoff.reset(&key);
            Ok(Action::requeue(ctx.settings.resync))
        }
    }
}

/// Whether work was runnable but no pass started only for lack of a free slot.
fn slot_missing(hold: Option<Duration>, transient: &Option<String>) -> bool {
    hold.is_none() && transient.is_none()
}

/// One pass of a rollout, run as a background task ([`Rollouts::start`]): migrates `work`,
/// writes progress in batches, and reports how it ended.
pub(crate) struct Pass<M: TenantMigrator> {
    rollout: Rollout<M>,
    work: Vec<RolloutTenant>,
    store: Store<TenantMigration>,
    shutdown: watch::Receiver<bool>,
    flush_interval: Duration,
    same_revision: bool,
    revision: String,
    target: i64,
    progress: Progress,
    input: VerdictInput,
    canary_tenants: Vec<String>,
    canary_passed: bool,
    canary_pending: bool,
}

impl<M: TenantMigrator> Pass<M> {
    async fn run(self, mut rec: Reconciler) -> PassResult {
        let Pass {
            rollout,
            work,
            store,
            shutdown,
            flush_interval,
            same_revision,
            revision,
            target,
            mut progress,
            mut input,
            canary_tenants,
            mut canary_passed,
            canary_pending,
        } = self;
        let oref = ObjectRef::from_obj(rec.tm.as_ref());
        let generation = rec.generation;
        // Checked before each tenant starts: deleted → stop; new generation → stop (or pause);
        // shutdown → stop.
        let control = || {
            if *shutdown.borrow() {
                return Control::Stop;
            }
            match store.get(&oref) {
                // Deleted (TenantMigrations have no finalizer: gone from the cache means gone).
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
        let prev = rec.prev.clone();
        input.pass_running = true;
        let render = |progress: &Progress, input: &mut VerdictInput, canary_passed: bool| {
            input.counts = progress.counts();
            input.canary_pending = canary_pending && !canary_passed;
            render_status(
                &prev,
                same_revision,
                &revision,
                generation,
                target,
                progress,
                &verdict(input),
                &canary_tenants,
                canary_passed,
                now_seconds(),
            )
        };
        let summary = loop {
            tokio::select! {
                summary = &mut run => break summary,
                Some(ev) = rx.recv() => {
                    let flush_now = handle_event(&mut rec, &mut progress, &ev, &mut canary_passed, &canary_tenants).await;
                    dirty = true;
                    if flush_now {
                        let status = render(&progress, &mut input, canary_passed);
                        if let Err(e) = rec.write(status).await { warn!(error = %e, "progress status write failed"); }
                        dirty = false;
                    }
                }
                _ = ticker.tick() => {
                    if dirty {
                        let status = render(&progress, &mut input, canary_passed);
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
        // The last progress, so the reconcile that follows sees every finished tenant.
        let status = render(&progress, &mut input, canary_passed);
        if let Err(e) = rec.write(status).await {
            warn!(error = %e, "progress status write failed");
        }
        let transient = summary
            .outcomes
            .iter()
            .find(|o| o.kind == OutcomeKind::Retry)
            .map(|o| format!("tenant {}: {}", o.name, o.message));
        info!(
            tenants = summary.outcomes.len(),
            succeeded = summary.count(OutcomeKind::Succeeded),
            failed = summary.count(OutcomeKind::Failed) + summary.count(OutcomeKind::Blocked),
            retry = summary.count(OutcomeKind::Retry),
            halted = ?summary.halted,
            "rollout pass done"
        );
        PassResult {
            transient,
            tenants: summary.outcomes.len(),
        }
    }
}

/// Applies one rollout event to the progress; returns whether status should be written now.
pub(crate) async fn handle_event(
    rec: &mut Reconciler,
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
