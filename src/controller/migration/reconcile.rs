//! One reconcile of one TenantMigration, as a short pipeline of named stages:
//!
//! ```text
//! guards (deleted, pass running, stale cache) ─► report::Reconciler::load ─► spec::resolve_spec
//!   ─► select::tenants ─► classify::classify ─► canary::gate ─► start a pass (pass::Pass)
//!   or verdict::verdict ─► status::render_status ─► report (status + Events)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{Instrument, debug, info_span, warn};

use super::super::{Context, facts_hash, object_key};
use super::pass::Pass;
use super::report::Reconciler;
use super::*;
use crate::crd::{MigrationPhase, Tenant, TenantMigration, TenantMigrationProgress};
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
    trigger: &TenantTrigger,
) -> Result<Action> {
    // Tenants are migrated on their own servers: wait until every DatabaseServer was loaded.
    if !ctx.servers().is_synced() {
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    let started = Instant::now();
    let span = info_span!("reconcile", controller = CONTROLLER, tenantmigration = %tm.name_any(), namespace = %tm.namespace().unwrap_or_default());
    let result = reconcile_inner(&tm, ctx, store, shutdown, rollouts, trigger)
        .instrument(span)
        .await;
    // (The backoff is reset where a reconcile ends without transient problems, not here: a
    // reconcile that waits out its backoff returns Ok too.)
    if let Err(e) = &result {
        warn!(tenantmigration = %tm.name_any(), category = e.category(), error = %e, "reconcile failed")
    }
    ctx.metrics().observe_reconcile(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(|e| e.category()),
    );
    result
}

/// The tenants among `tenants` that another, newer non-dry-run TenantMigration of the namespace
/// selects, with the newest one's name: `tm` leaves them to it (no fights between migrations).
/// The newer migrations are looked up once, not once per tenant.
pub(crate) fn superseded(
    store: &Store<TenantMigration>,
    tm: &TenantMigration,
    tenants: &[Tenant],
) -> BTreeMap<String, String> {
    let mine = age_key(tm);
    let newer: Vec<Arc<TenantMigration>> = others_in_namespace(store, tm)
        .filter(|m| !m.spec.dry_run && age_key(m) > mine)
        .collect();
    if newer.is_empty() {
        return BTreeMap::new();
    }
    tenants
        .iter()
        .filter_map(|t| {
            newer
                .iter()
                .filter(|m| targets(m, t))
                .map(|m| m.name_any())
                .max()
                .map(|other| (t.name_any(), other))
        })
        .collect()
}

/// The other TenantMigrations of `tm`'s namespace in the cache, not being deleted.
fn others_in_namespace<'a>(
    store: &Store<TenantMigration>,
    tm: &'a TenantMigration,
) -> impl Iterator<Item = Arc<TenantMigration>> + 'a {
    store.state().into_iter().filter(move |m| {
        m.namespace() == tm.namespace()
            && m.meta().uid != tm.meta().uid
            && m.meta().deletion_timestamp.is_none()
    })
}

/// Whether a newer non-dry-run TenantMigration selecting `tenant` explains a move of its
/// version to `to`: it is running, or its target is `to`. (A tenant changed otherwise — by hand,
/// a restore — is news to the older rollouts; see `trigger`.)
pub(crate) fn newer_heading_to(
    store: &Store<TenantMigration>,
    tm: &TenantMigration,
    tenant: &Tenant,
    to: Option<i64>,
) -> bool {
    let mine = age_key(tm);
    others_in_namespace(store, tm).any(|m| {
        !m.spec.dry_run
            && age_key(&m) > mine
            && targets(&m, tenant)
            && m.status.as_ref().is_some_and(|s| {
                s.phase == MigrationPhase::Running || (to.is_some() && s.target_version == to)
            })
    })
}

/// The order of TenantMigrations in a namespace: a later key is the newer TenantMigration.
fn age_key(m: &TenantMigration) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (
        m.meta().creation_timestamp.as_ref().map(|t| t.0),
        m.name_any(),
    )
}

/// The older, completed TenantMigrations of the namespace that select one of `tenants` (which
/// the pass of the newer `tm` just moved to another version). Tenants leaving a completed
/// rollout's target for a newer rollout do not trigger it one by one (`trigger`); it is
/// reconciled once when the newer pass ended, and lists them as left to the newer one.
pub(crate) fn superseded_completed(
    store: &Store<TenantMigration>,
    tm: &TenantMigration,
    tenants: &[Tenant],
) -> Vec<ObjectRef<TenantMigration>> {
    if tm.spec.dry_run {
        return Vec::new();
    }
    let mine = age_key(tm);
    others_in_namespace(store, tm)
        .filter(|m| {
            age_key(m) < mine
                && m.status.as_ref().map(|s| s.phase) == Some(MigrationPhase::Succeeded)
                && tenants.iter().any(|t| targets(m, t))
        })
        .map(|m| ObjectRef::from_obj(m.as_ref()))
        .collect()
}

/// [`superseded_completed`] for the Tenants `tm` selects in the Tenant cache now (at the end of
/// its pass; none before the cache has synced).
fn older_to_wake(
    store: &Store<TenantMigration>,
    ctx: &Context,
    tm: &TenantMigration,
) -> Vec<ObjectRef<TenantMigration>> {
    let selected: Vec<Tenant> = ctx
        .synced_tenant_store()
        .map(|s| {
            s.state()
                .iter()
                .filter(|t| t.namespace() == tm.namespace() && targets(tm, t))
                .map(|t| (**t).clone())
                .collect()
        })
        .unwrap_or_default();
    superseded_completed(store, tm, &selected)
}

/// The reconcile after its guards: each stage returns early when it decides the outcome.
pub(crate) async fn reconcile_inner(
    tm_arc: &Arc<TenantMigration>,
    ctx: &Arc<Context>,
    store: &Store<TenantMigration>,
    shutdown: &watch::Receiver<bool>,
    rollouts: &Arc<Rollouts>,
    trigger: &TenantTrigger,
) -> Result<Action> {
    let tm: &TenantMigration = tm_arc;
    let key = object_key(tm);
    if tm.meta().deletion_timestamp.is_some() {
        ctx.metrics().set_phase(&key, None);
        return Ok(Action::await_change());
    }
    // A pass of this TenantMigration is running in the background: it writes the status, and
    // triggers a reconcile when it ends.
    if rollouts.is_running(&key) {
        return Ok(Action::requeue(ctx.settings().resync));
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
    let mut rec = Reconciler::load(tm_arc, ctx, &ns);
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
    let settled_at = super::status::settled_since(&rec.prev, same_revision);
    let settled = settled_at.is_some();
    if dry_run && settled {
        ctx.metrics().set_phase(&key, Some("migration_Succeeded"));
        return Ok(Action::requeue(ctx.settings().resync));
    }

    // 2. The Tenants, 3. classified.
    let tenants = select::tenants(ctx, &ns, &r).await?;
    let prev_entries: BTreeMap<String, TenantMigrationProgress> = if same_revision {
        rec.prev
            .tenants
            .iter()
            .map(|e| (e.name.clone(), e.clone()))
            .collect()
    } else {
        BTreeMap::new()
    };
    // The newest TenantMigration selecting a tenant owns it: an older one, settled or not (a new
    // revision of it, a retry), leaves it alone instead of moving it back and forth.
    let newer = superseded(store, tm, &tenants);
    // Tenants live on several servers: each is migrated on its own (names resolved with its
    // server's shared database).
    // (Without a default server, `--database-url` unset, tenants not placed yet wait.)
    let default_pg = ctx.servers().default_server().map(|s| s.pg().clone());
    let default_shared = crate::naming::Ident::new(&ctx.settings().pg_pools.shared_database)?;
    let server_shared: BTreeMap<String, crate::naming::Ident> = ctx
        .servers()
        .all()
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                s.pg().settings().shared_database.clone(),
            )
        })
        .collect();
    let classify::Classified {
        progress,
        work,
        failed,
        done,
        waiting,
    } = classify::classify(
        &tenants,
        &classify::Input {
            prev_entries: &prev_entries,
            dry_run,
            target,
            settled_at,
            newer: &newer,
            name_prefix: &ctx.settings().name_prefix,
            shared_database: &default_shared,
            servers: &server_shared,
            default_server: ctx.servers().default_name(),
        },
    );

    // A tenant waits (not Ready, moving) or is missing, but this controller's Tenant watch saw it
    // otherwise than the cache read above (see `TenantTrigger::differs_from_cache`): its event
    // will not trigger again, so look again shortly rather than at the resync.
    let cache_lags = cache_lags(
        trigger,
        &ns,
        &tenants,
        &waiting,
        r.tenant.as_deref(),
        r.selector.as_ref(),
    );

    // 4. Canaries (not for dry runs).
    let (gate, work) = canary::gate(
        &canary::Input {
            canary,
            dry_run,
            same_revision,
            prev_canary_tenants: &rec.prev.canary_tenants,
            prev_canary_passed: rec.prev.canary_passed,
            // A canary left to a newer TenantMigration will not run here: it does not gate.
            selected: tenants
                .iter()
                .filter_map(|t| t.metadata.name.as_deref())
                .filter(|n| !newer.contains_key(*n))
                .collect::<HashSet<&str>>(),
            failed: &failed,
            done: &done,
        },
        work,
    );
    if gate.just_passed {
        rec.event(
            EventType::Normal,
            "CanaryPassed",
            format!(
                "canary tenants {} are at version {target}: releasing the fleet",
                gate.canary_tenants.join(", ")
            ),
        )
        .await;
    }

    let failures = progress.counts().failed;
    let mut input = VerdictInput {
        counts: progress.counts(),
        failure_budget: budget,
        dry_run,
        canary_failed: gate.failed,
        canary_pending: gate.pending,
        paused,
        settled,
        retrying: false,
        waiting_for_tenants: !waiting.is_empty(),
        missing_tenant: r.tenant.clone().filter(|_| tenants.is_empty()),
        target_version: target,
        pass_running: false,
    };
    let blocked_by_budget = !dry_run && failures > budget;
    let runnable = !work.is_empty() && !paused && !gate.failed && !blocked_by_budget;

    // 5. The rollout: a pass in the background (see `task`), after the backoff of the last
    // pass's transient problems.
    let finished_transient = finished.as_ref().and_then(|f| f.transient.clone());
    let facts = facts_hash(tm);
    if let Some(t) = &finished_transient {
        // The pass that just ended hit a transient problem: the next one waits for the backoff,
        // however often this TenantMigration is triggered in between (its own status writes,
        // Tenant events).
        let delay = ctx.backoff().next_delay_for(
            &key,
            facts,
            ctx.settings().backoff_base,
            ctx.settings().backoff_max,
        );
        debug!(?delay, transient = %t, "next rollout pass after the backoff");
    }
    let hold = ctx.backoff().hold(&key, facts);
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
                pg: default_pg.clone(),
                servers: Some(ctx.servers().clone()),
                set: r.set.clone(),
                target_version: target,
                dry_run,
                lock_timeout: ctx.settings().migration_lock_timeout,
            },
            tenants: Api::namespaced(ctx.client().clone(), &ns),
            secrets: Api::namespaced(ctx.client().clone(), &ns),
            ctx: ctx.clone(),
            namespace: ns.clone(),
            recording: Default::default(),
            prefetched: Default::default(),
        });
        let config = RolloutConfig {
            max_parallel,
            failure_budget: budget,
            failures_so_far: failures,
            canaries: gate.canaries_in_run,
            enforce_budget: !dry_run,
            max_transient: max_parallel,
            max_parallel_per_server: spec
                .strategy
                .max_parallel_per_server
                .and_then(|n| usize::try_from(n.clamp(1, 64)).ok()),
        };
        let canaries_release_fleet = gate.run_can_release_fleet();
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
            canary_tenants: gate.canary_tenants,
            canary_passed: gate.passed,
            canary_pending: gate.pending,
            canaries_release_fleet,
        };
        // When the pass ends it moved tenants off the targets of older, completed rollouts:
        // those are reconciled once then, even if this TenantMigration was deleted meanwhile.
        let older = {
            let (store, ctx, tm) = (store.clone(), ctx.clone(), tm_arc.clone());
            move || older_to_wake(&store, &ctx, &tm)
        };
        rollouts.start(key, ObjectRef::from_obj(tm), slot, pass.run(rec), older);
        return Ok(Action::requeue(ctx.settings().resync));
    }
    let transient = finished_transient.or_else(|| {
        (runnable && hold.is_some())
            .then(|| "waiting for the backoff after transient errors".to_string())
    });

    // 6. Verdict, status and Events.
    input.counts = progress.counts();
    input.canary_pending = gate.pending && !gate.passed && !gate.failed;
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
        &gate.canary_tenants,
        gate.passed,
        now_seconds(),
    );
    let prev_phase = same_revision.then_some(rec.prev.phase);
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
        (Some(t), None) => Err(Error::unavailable(t)),
        (None, _) if cache_lags => {
            ctx.backoff().reset(&key);
            debug!("the Tenant cache lags behind a Tenant event: looking again shortly");
            Ok(Action::requeue(CACHE_LAG_RETRY))
        }
        (None, _) => {
            ctx.backoff().reset(&key);
            Ok(Action::requeue(ctx.settings().resync))
        }
    }
}

/// How soon a reconcile that read a Tenant cache lagging behind a Tenant event looks again.
const CACHE_LAG_RETRY: Duration = Duration::from_millis(500);

/// Whether a tenant the verdict waits for (`waiting`, names in `ns`), the one named tenant
/// missing from `tenants`, or a tenant whose labels `selector` matches as the watch saw them but
/// that is missing from `tenants`, was seen otherwise by the Tenant watch that triggers reconciles
/// than by the cache `tenants` come from.
pub(crate) fn cache_lags(
    trigger: &TenantTrigger,
    ns: &str,
    tenants: &[Tenant],
    waiting: &[String],
    named: Option<&str>,
    selector: Option<&kube::core::Selector>,
) -> bool {
    let key = |name: &str| super::super::object_key_for::<Tenant>(ns, name);
    let waiting: HashSet<&str> = waiting.iter().map(String::as_str).collect();
    let waiting_lags = tenants
        .iter()
        .filter(|t| waiting.contains(t.metadata.name.as_deref().unwrap_or_default()))
        .any(|t| trigger.differs_from_cache(&key(&t.name_any()), Some(t)));
    let missing_lags = named
        .filter(|n| {
            !tenants
                .iter()
                .any(|t| t.metadata.name.as_deref() == Some(n))
        })
        .is_some_and(|n| trigger.differs_from_cache(&key(n), None));
    let newly_selected = selector.is_some_and(|sel| {
        let have: HashSet<&str> = tenants
            .iter()
            .filter_map(|t| t.metadata.name.as_deref())
            .collect();
        trigger
            .seen_selected(ns, sel)
            .iter()
            .any(|n| !have.contains(n.as_str()))
    });
    waiting_lags || missing_lags || newly_selected
}

/// Whether work was runnable but no pass started only for lack of a free slot.
fn slot_missing(hold: Option<Duration>, transient: &Option<String>) -> bool {
    hold.is_none() && transient.is_none()
}
