//! The Tenant reconciler.
//!
//! One reconcile of a Tenant is a short pipeline of named stages, each in its own module with
//! typed input and output ([`provision`] reads as the list):
//!
//! ```text
//! validate::spec ─► credentials::read ─► observe ─► validate::explicit_names ─► credentials::rotate
//!   ─► usage::measure ─► steps::apply (plan + apply) ─► schema::migrate ─► usage::after_provisioning
//!   ─► mongo::provision ─► credentials::write_secret ─► report::provision_events ─► health::check
//!   ─► statistics::collect
//! ```
//!
//! then [`apply`] turns the [`Outcome`] (or the error) into status and Events (`report`), and
//! [`cleanup`](cleanup::cleanup) carries out the deletion policy behind the finalizer. Admission
//! (`--max-tenants`) comes first (`validate`).

mod cleanup;
mod credentials;
mod cutover;
mod health;
mod in_flight;
mod legacy_names;
mod mongo;
mod moving;
mod moving_mongo;
mod place;
mod report;
mod schema;
mod statistics;
mod steps;
mod test_points;
mod usage;
mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Context, MetaFacts, facts_hash, object_key, object_key_for};
use crate::crd::{DatabaseServer, Tenant, TenantPhase};
use crate::error::{Error, Result};
use crate::identity::Resolved;
use crate::pg::plan::Step;
use crate::rotation;
use crate::secret;
use crate::status::types;
use cleanup::cleanup;
use credentials::{Creds, status_secret_name};
use health::{health_after_failure, health_recheck};
use mongo::cleanup_mongo;
use report::{
    CAPACITY_RECHECK, base_status, failed_status, ready_status, waiting_status, write_status,
};
use validate::{Spec, check_tenant_limit};

pub(crate) use in_flight::moving_by_status;
pub use place::{ServerUsage, usage_by_server};
pub(crate) use place::{candidates_of, move_of, usage_on};

/// Finalizer guarding cleanup.
pub const FINALIZER: &str = "tenantdb.io/cleanup";
const CONTROLLER: &str = "tenant";

/// Starts the Tenant controller and runs it until shutdown. `ready` is set once the caches sync.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let tenants: Api<Tenant> = Api::all(ctx.client().clone());
    let secrets: Api<Secret> = Api::all(ctx.client().clone());
    // Secrets map to the Tenants that own them (like `owns`), and a change of one unsettles its
    // Tenant so that the reconcile does the full work (e.g. re-creates a deleted Secret).
    let secret_ctx = ctx.clone();
    let server_ctx = ctx.clone();
    // The cache holds every Tenant; what the operator never reads is dropped before it is cached.
    let (reader, writer) = kube::runtime::reflector::store();
    let tenant_stream = watcher(tenants, watcher::Config::default().any_semantic())
        .modify(super::prune_for_cache)
        .reflect(writer)
        .applied_objects();
    // Tenants another controller queues (a drained server's, see `Context::wake_tenant`).
    let wakes = ctx
        .take_tenant_wakes()
        .map_or_else(|| futures::stream::pending().boxed(), |rx| rx.boxed());
    let controller = Controller::for_stream(tenant_stream, reader)
        .reconcile_on(wakes)
        .watches(
            secrets,
            watcher::Config::default()
                .labels(&format!(
                    "{}={}",
                    secret::MANAGED_BY_LABEL,
                    secret::MANAGED_BY
                ))
                .any_semantic(),
            move |s: Secret| owning_tenants(&s, &secret_ctx),
        )
        .watches_stream(
            // Spec changes only (generation): a drain being set starts the moves of the tenants
            // on that server now, not at their next health check.
            watcher(
                Api::<DatabaseServer>::all(ctx.client().clone()),
                watcher::Config::default().any_semantic(),
            )
            .touched_objects()
            .predicate_filter(predicates::generation, Default::default()),
            move |ds: DatabaseServer| tenants_of_draining(&ds, &server_ctx),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    ctx.set_tenant_store(store.clone());
    let ctx_synced = ctx.clone();
    tokio::spawn(async move {
        // `Store::wait_until_ready` is backed by a oneshot receiver that remembers only the last
        // waker, and the controller's own applier waits on it too: a second waiter may never be
        // woken. Re-polling on a short interval sidesteps that (the value is memoized once sent).
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    info!("tenant cache synced");
                    ctx_synced.mark_tenant_cache_synced();
                    if ready.send(true).is_err() {
                        warn!("readiness receiver gone");
                    }
                    return;
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "tenant cache never synced");
                    return;
                }
                Err(_) => continue,
            }
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(tenant = %obj.name, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile loop error"),
            }
        })
        .await;
}

/// The Tenants placed on a DatabaseServer that is being drained (its engine's part), unsettled so
/// that their next reconcile starts (or waits for) their move.
fn tenants_of_draining(ds: &DatabaseServer, ctx: &Context) -> Vec<ObjectRef<Tenant>> {
    let name = ds.name_any();
    if ds.meta().deletion_timestamp.is_some() {
        return Vec::new();
    }
    // The registry takes the new spec (drain, cordon, labels, capacity) now: the Tenants'
    // reconciles triggered here may run before the DatabaseServer controller's.
    let facts = crate::controller::server::facts_of(ds);
    match ds.spec.engine {
        crate::crd::Engine::Postgres if ctx.servers().default_name() != Some(name.as_str()) => {
            if let Some(s) = ctx.servers().get(&name) {
                s.set_spec_facts(facts);
            }
        }
        crate::crd::Engine::Mongodb
            if ctx.mongo_servers().default_name() != Some(name.as_str()) =>
        {
            if let Some(s) = ctx.mongo_servers().get(&name) {
                crate::servers::Registered::set_spec_facts(s.as_ref(), facts);
            }
        }
        _ => {}
    }
    if ds.spec.drain.is_none() {
        return Vec::new();
    }
    unsettle_placed_on(ctx, ds.spec.engine, &name)
}

/// The Tenants whose `engine` part is recorded on the server `name` (from the Tenant cache, none
/// before it synced), each unsettled so that its next reconcile does the full work — a drain
/// starts their moves — and touched: a reconcile of it running now (which decided before the
/// drain) must not settle it when it ends, or its move would wait for its resync.
pub(crate) fn unsettle_placed_on(
    ctx: &Context,
    engine: crate::crd::Engine,
    name: &str,
) -> Vec<ObjectRef<Tenant>> {
    let Some(store) = ctx.synced_tenant_store() else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|t| place::recorded_on(t, engine) == Some(name))
        .map(|t| {
            let key = object_key(t.as_ref());
            ctx.unsettle(&key);
            ctx.touch(&key);
            ObjectRef::from_obj(t.as_ref())
        })
        .collect()
}

/// The Tenants owning a Secret (by owner reference), touched so their next reconcile looks at it.
fn owning_tenants(s: &Secret, ctx: &Context) -> Vec<ObjectRef<Tenant>> {
    let ns = s.namespace().unwrap_or_default();
    let api_version = Tenant::api_version(&());
    s.owner_references()
        .iter()
        .filter(|o| o.kind == "Tenant" && o.api_version == api_version)
        .map(|o| {
            ctx.touch(&object_key_for::<Tenant>(&ns, &o.name));
            ObjectRef::new(&o.name).within(&ns)
        })
        .collect()
}

/// One reconcile of one Tenant.
pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", controller = CONTROLLER, tenant = %tenant.name_any(), namespace = %tenant.namespace().unwrap_or_default());
    let started = Instant::now();
    let ns = tenant.namespace().unwrap_or_default();
    let api: Api<Tenant> = Api::namespaced(ctx.client().clone(), &ns);
    // Until every DatabaseServer was looked at once, a Tenant's server may not be known yet (nor
    // where a Tenant without recorded placement lives): wait, without reporting anything.
    if !ctx.servers().is_synced() {
        debug!("waiting for the database servers to be loaded");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // A deleting Tenant whose cleanup failed waits out its backoff here, before the finalizer
    // helper (which removes the finalizer whenever cleanup returns Ok).
    if tenant.meta().deletion_timestamp.is_some()
        && let Some(wait) = ctx
            .backoff()
            .hold(&object_key(tenant.as_ref()), facts_hash(tenant.as_ref()))
    {
        debug!(?wait, "backing off after a failed cleanup");
        return Ok(Action::requeue(wait));
    }
    let ctx2 = ctx.clone();
    let result = finalizer(&api, FINALIZER, tenant.clone(), |event| async move {
        debug!("reconcile started");
        match event {
            FinalizerEvent::Apply(t) => apply(t, ctx2).await,
            FinalizerEvent::Cleanup(t) => cleanup(t, ctx2).await,
        }
    })
    .instrument(span)
    .await;
    let result = result.map_err(super::finalizer_error);
    // (Backoff is reset by the paths that succeeded, not here: a reconcile that only waited out
    // its backoff returns Ok too.)
    if let Err(e) = &result {
        warn!(tenant = %tenant.name_any(), namespace = %ns, category = e.category(), error = %e, "reconcile failed")
    }
    ctx.metrics().observe_reconcile(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(|e| e.category()),
    );
    result
}

/// Transient errors: per-object exponential backoff with jitter and a cap, held against early
/// triggers for unchanged facts ([`crate::controller::Backoff::hold`]).
pub fn error_policy(tenant: Arc<Tenant>, _err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff().next_delay_for(
        &object_key(tenant.as_ref()),
        facts_hash(tenant.as_ref()),
        ctx.settings().backoff_base,
        ctx.settings().backoff_max,
    );
    Action::requeue(delay)
}

/// Whether this reconcile of `tenant` is a routine resync: Ready, its current spec already
/// handled, and no rotation requested since. (Repairs of drift found by a routine resync still
/// happen in it; only admission is bounded.)
fn is_routine_resync(tenant: &Tenant) -> bool {
    let Some(st) = tenant.status.as_ref() else {
        return false;
    };
    let requested = tenant
        .annotations()
        .get(rotation::ROTATE_ANNOTATION)
        .map(String::as_str);
    let handled = st
        .credentials
        .as_ref()
        .and_then(|c| c.rotation_token.as_deref());
    st.phase == TenantPhase::Ready
        && st.observed_generation.is_some()
        && st.observed_generation == tenant.meta().generation
        && tenant.meta().deletion_timestamp.is_none()
        && (requested.is_none() || requested == handled)
}

/// Provision or repair. Errors are reported in status here (the error policy cannot write) and
/// then returned so the controller backs off; invalid specs wait for a change instead.
async fn apply(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    // The cache can hand us the very object version our last status write was based on (the
    // watch event of that write has not arrived yet). Working from it would recompute conditions
    // from stale state and write again; wait for the cache instead.
    let key = object_key(tenant.as_ref());
    if ctx.is_stale(&key, tenant.meta().resource_version.as_deref()) {
        debug!("cached object predates our last status write; requeueing");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    // A settled Tenant (last reconcile complete and healthy) whose spec, labels, annotations and
    // finalizers did not change needs nothing before its resync: the trigger was a status write
    // (the TenantMigration controller's schemaVersion, our own write's watch event). A change of
    // its Secret, even during this reconcile, prevents the skip (`touch`, see `run`); errors and
    // unhealthy results never settle.
    let facts = MetaFacts::of(tenant.as_ref());
    let touches = ctx.touches(&key);
    // Its health is still checked on the health interval, by a light pass (one Secret read and
    // one login); only a result that changes the status leads to the full reconcile.
    if let Some(wait) = ctx.settled_wait(&key, &facts) {
        let health_wait = health::due_in(&ctx, &key);
        if !health_wait.is_zero() || !health::settled_check(&tenant, &ctx).await {
            debug!("settled and unchanged; next pass at the resync or the health check");
            ctx.metrics().reconcile_unchanged(CONTROLLER);
            let health_wait = match health_wait {
                Duration::ZERO => ctx.settings().health_interval,
                d => d,
            };
            return Ok(Action::requeue(wait.min(health_wait)));
        }
        debug!("health changed; full reconcile");
    }
    ctx.unsettle(&key);
    // After a failure, triggers that change nothing of the Tenant (its own status write, a watch
    // event of its Secret, another controller's write) wait out the backoff instead of retrying
    // at once: every retry is spaced exponentially, whatever triggers it.
    if let Some(wait) = ctx.backoff().hold(&key, facts_hash(tenant.as_ref())) {
        debug!(?wait, "backing off after a failure");
        ctx.metrics().reconcile_unchanged(CONTROLLER);
        return Ok(Action::requeue(wait));
    }
    // Routine resyncs share a bounded number of slots; new and changed Tenants never wait for them.
    let _resync_permit = if is_routine_resync(&tenant) {
        match ctx.admit_resync() {
            Some(p) => Some(p),
            None => {
                ctx.metrics().resync_deferred(CONTROLLER);
                return Ok(Action::requeue(ctx.deferred_resync_delay()));
            }
        }
    } else {
        None
    };
    // A move to another server, when spec.placement asks for one (before provisioning: the
    // tenant is provisioned where the move leaves it).
    let (tenant, recheck) = match moving::step(&tenant, &ctx).await? {
        moving::Next::Proceed(t) => (t, None),
        moving::Next::Recheck(t, d) => (t, Some(d)),
        moving::Next::Requeue(d) => return Ok(Action::requeue(d)),
    };
    // The same for the MongoDB database (spec.placement.mongodb).
    let (tenant, recheck) = match moving_mongo::step(&tenant, &ctx).await? {
        moving::Next::Proceed(t) => (t, recheck),
        moving::Next::Recheck(t, d) => (t, Some(recheck.map_or(d, |r| r.min(d)))),
        moving::Next::Requeue(d) => return Ok(Action::requeue(d)),
    };
    // Admission under --max-tenants, before anything is created.
    let provisioned = match check_tenant_limit(&tenant, &ctx) {
        Ok(true) => provision(&tenant, &ctx).await,
        // The count is unknown until the Tenant cache has synced: look again in a moment.
        Ok(false) => return Ok(Action::requeue(Duration::from_millis(500))),
        Err(e) => Err(e),
    };
    match provisioned {
        Ok(outcome) => {
            ctx.backoff().reset(&key);
            let mut status = ready_status(&tenant, &outcome);
            statistics::piggyback(
                &tenant,
                &ctx,
                &key,
                &mut status,
                outcome.fresh_statistics.clone(),
            );
            let before = tenant
                .status
                .as_ref()
                .map(|s| crate::status::is_true(&s.conditions, types::QUOTA_EXCEEDED));
            let now_exceeded = crate::status::is_true(&status.conditions, types::QUOTA_EXCEEDED);
            let unhealthy = status.health.as_ref().is_some_and(|h| !h.healthy);
            let was_unhealthy = tenant
                .status
                .as_ref()
                .and_then(|s| s.health.as_ref())
                .is_some_and(|h| !h.healthy);
            let first_provisioning = tenant
                .status
                .as_ref()
                .is_none_or(|s| s.phase != TenantPhase::Ready && s.usage.is_none());
            let usage = status.usage.clone();
            let moving = [status.move_.as_ref(), status.mongodb_move.as_ref()]
                .into_iter()
                .flatten()
                .any(|m| !m.phase.is_terminal());
            if let Err(e) = write_status(&tenant, &ctx, status).await {
                // The status could not be written (e.g. the installed CRD lacks a field it
                // carries): say why where users look, then retry with backoff.
                let failed = failed_status(&tenant, &e, None, None);
                if let Ok(true) = write_status(&tenant, &ctx, failed).await {
                    ctx.event(
                        tenant.as_ref(),
                        EventType::Warning,
                        e.category(),
                        "Reconcile",
                        e.to_string(),
                    )
                    .await;
                }
                return Err(e);
            }
            if now_exceeded && before != Some(true) {
                // Over quota right after provisioning: the quota is smaller than the empty tenant
                // of its mode (accepted, but it starts read-only: say so plainly).
                let note = match usage.filter(|_| first_provisioning) {
                    Some(u) => format!(
                        "quotas.storage ({} bytes) is smaller than this tenant needs when empty ({} bytes for isolation {}): it starts read-only",
                        u.storage_limit_bytes.unwrap_or_default(),
                        u.storage_bytes,
                        tenant.spec.isolation.as_str()
                    ),
                    None => "storage quota exhausted: writes disabled".into(),
                };
                ctx.event(
                    tenant.as_ref(),
                    EventType::Warning,
                    "QuotaExceeded",
                    "Quota",
                    note,
                )
                .await;
                if first_provisioning {
                    ctx.event(
                        tenant.as_ref(),
                        EventType::Warning,
                        "QuotaBelowEmptyTenant",
                        "Quota",
                        "quotas.storage is smaller than this tenant needs when empty: raise it, or the tenant stays read-only".into(),
                    )
                    .await;
                }
            } else if !now_exceeded && before == Some(true) {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Normal,
                    "QuotaRestored",
                    "Quota",
                    "storage below quota again: writes enabled".into(),
                )
                .await;
            }
            if unhealthy && !was_unhealthy {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Warning,
                    "HealthCheckFailed",
                    "HealthCheck",
                    "login with the tenant's credentials failed".into(),
                )
                .await;
            }
            if unhealthy {
                // Check again soon so recovery clears Degraded quickly (at most every
                // `health_recheck`, so this is no hot loop).
                return Ok(Action::requeue(health_recheck(&ctx)));
            }
            if moving || recheck.is_some() {
                // A move in progress (or waiting for a drain's slot) is followed closely and
                // never settles.
                return Ok(Action::requeue(recheck.unwrap_or(moving::POLL)));
            }
            // Complete and healthy: settled until the resync, looked at again for its health
            // check before that (see the settled branch above).
            let resync = ctx.settings().jittered_resync();
            ctx.settle(&key, facts, touches, resync);
            Ok(Action::requeue(resync.min(ctx.settings().health_interval)))
        }
        Err(e @ (Error::Capacity(_) | Error::Unschedulable(_))) => {
            ctx.backoff().reset(&key);
            // Not an error of this Tenant: it waits (phase Pending, no Warning storm) and is looked
            // at again shortly, so it is placed as soon as room appears.
            let status = waiting_status(&tenant, &e);
            if write_status(&tenant, &ctx, status).await? {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Normal,
                    e.category(),
                    "Admit",
                    e.to_string(),
                )
                .await;
            }
            Ok(Action::requeue(CAPACITY_RECHECK))
        }
        Err(e) if e.is_permanent() => {
            ctx.backoff().reset(&key);
            // A Tenant that cannot be provisioned does not hold a place it never used (if it
            // created anything, its markers find it again).
            if place::recorded(&tenant).is_none() {
                ctx.servers().release(&key);
            }
            // The tenant's logins are checked even though the reconcile stopped early: a tenant
            // whose credentials fail is never left reported healthy.
            let health = health_after_failure(&tenant, &ctx).await;
            let status = failed_status(&tenant, &e, None, health);
            let changed = write_status(&tenant, &ctx, status).await?;
            if changed {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Warning,
                    e.category(),
                    "Reconcile",
                    e.to_string(),
                )
                .await;
            }
            // Nothing will change until the spec (or, for conflicts, the other owner) does; a
            // provisioned tenant is still looked at on its health interval.
            let recheck = ctx.settings().resync.min(ctx.settings().health_interval);
            Ok(match e {
                Error::Conflict(_) => Action::requeue(recheck),
                _ if status_secret_name(&tenant).is_some() => Action::requeue(recheck),
                _ => Action::await_change(),
            })
        }
        Err(e) => {
            let health = health_after_failure(&tenant, &ctx).await;
            let status = failed_status(&tenant, &e, None, health);
            if let Ok(true) = write_status(&tenant, &ctx, status).await {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Warning,
                    e.category(),
                    "Reconcile",
                    e.to_string(),
                )
                .await;
            }
            Err(e)
        }
    }
}

/// What provisioning found and did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Resolved names.
    pub resolved: Resolved,
    /// Steps applied this time (empty when already converged).
    pub steps: Vec<Step>,
    /// Schema version after migrations, if migrations ran or were known.
    pub schema_version: Option<i64>,
    /// Storage usage to report.
    pub usage: Option<crate::crd::UsageStatus>,
    /// Health to report.
    pub health: Option<crate::crd::HealthStatus>,
    /// Credential state to report.
    pub credentials: crate::crd::CredentialStatus,
    /// Writes withdrawn because of the storage quota.
    pub read_only: bool,
    /// MongoDB state, when enabled.
    pub mongo: Option<crate::crd::MongoStatus>,
    /// Statistics to report.
    pub statistics: Option<crate::crd::StatisticsStatus>,
    /// Statistics just measured (reported with any status write, see [`statistics::piggyback`]).
    pub fresh_statistics: Option<crate::crd::StatisticsStatus>,
    /// Where the tenant is placed.
    pub placement: crate::crd::PlacementStatus,
    /// Why `spec.placement` no longer allows the server the tenant is on, when it does not.
    pub placement_mismatch: Option<String>,
}

/// Provision or repair one Tenant: the pipeline of stages (see the module documentation).
async fn provision(tenant: &Tenant, ctx: &Context) -> Result<Outcome> {
    let tenant = legacy_names::with_names_of_an_older_operator(tenant, ctx).await?;
    let tenant = tenant.as_ref();
    // The spec is valid before the tenant takes a place on a server (names do not depend on it).
    // (Without a default server, after placement only: some checks depend on the server's
    // shared database.)
    if let Some(default) = ctx.servers().default_server() {
        validate::spec(tenant, ctx, default)?;
    }
    let server = place::place(tenant, ctx).await?;
    let mongo_server = place::place_mongo(tenant, ctx).await?;
    let mut spec = validate::spec(tenant, ctx, server)?;
    spec.mongo = mongo_server;
    let secret = credentials::read(tenant, ctx, &spec).await?;
    let observed = spec
        .server
        .pg()
        .observe(&spec.resolved.names, &secret.candidate)
        .await?;
    validate::explicit_names(tenant, ctx, &spec, &observed)?;
    let creds = credentials::rotate(tenant, &spec, secret, observed).await?;
    let usage = usage::measure(tenant, ctx, &spec).await?;
    let applied = steps::apply(tenant, ctx, &spec, &creds, &usage).await?;
    let schema_version = schema::migrate(tenant, ctx, &spec, &creds, &applied).await?;
    let usage = usage::after_provisioning(tenant, ctx, &spec, &applied, usage).await?;
    let mongo = mongo::provision(tenant, ctx, &spec, &creds, &usage).await?;
    credentials::write_secret(tenant, ctx, &spec, &creds, mongo.as_ref()).await?;
    report::provision_events(tenant, ctx, &spec, &creds, &applied).await;
    let health = health::check(tenant, ctx, &spec, &creds, mongo.as_ref()).await;
    let statistics = statistics::collect(tenant, ctx, &spec).await;
    let placement_mismatch = place::mismatch(tenant, ctx, &spec.server);
    Ok(Outcome {
        placement: crate::crd::PlacementStatus {
            postgres: Some(spec.server.name().to_string()),
            mongodb: mongo
                .as_ref()
                .and(spec.mongo.as_ref())
                .map(|m| m.name().to_string()),
        },
        placement_mismatch,
        statistics: statistics.report,
        fresh_statistics: statistics.fresh,
        resolved: spec.resolved,
        steps: applied.steps,
        schema_version,
        mongo: mongo.map(|m| m.status),
        usage: Some(usage.status),
        health,
        credentials: creds.status,
        read_only: usage.read_only,
    })
}

/// A reference for triggering reconciles of one Tenant (used by other controllers).
pub fn tenant_ref(namespace: &str, name: &str) -> ObjectRef<Tenant> {
    ObjectRef::new(name).within(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DeletionPolicy, Isolation, TenantSpec, TenantStatus};
    use k8s_openapi::jiff::Timestamp;

    fn tenant(name: &str, isolation: Isolation, db: Option<&str>) -> Tenant {
        let mut t = Tenant::new(
            name,
            TenantSpec {
                isolation,
                deletion_policy: DeletionPolicy::Retain,
                database_name: db.map(String::from),
                credentials: Default::default(),
                auto_migrate: None,
                quotas: None,
                mongodb: None,
                placement: None,
            },
        );
        t.metadata.namespace = Some("team-a".into());
        t
    }

    #[test]
    fn only_ready_handled_unrotated_tenants_are_routine_resyncs() {
        let mut t = tenant("acme", Isolation::Schema, None);
        assert!(!is_routine_resync(&t), "no status yet: new");
        t.metadata.generation = Some(3);
        t.status = Some(TenantStatus {
            phase: TenantPhase::Ready,
            observed_generation: Some(3),
            ..Default::default()
        });
        assert!(is_routine_resync(&t));
        // Spec changed since the last reconcile.
        t.metadata.generation = Some(4);
        assert!(!is_routine_resync(&t));
        t.metadata.generation = Some(3);
        // Not Ready (provisioning, failed, degraded retries).
        for phase in [
            TenantPhase::Pending,
            TenantPhase::Provisioning,
            TenantPhase::Failed,
        ] {
            t.status.as_mut().unwrap().phase = phase;
            assert!(!is_routine_resync(&t));
        }
        t.status.as_mut().unwrap().phase = TenantPhase::Ready;
        // A rotation request not handled yet.
        t.metadata.annotations = Some(
            [(rotation::ROTATE_ANNOTATION.to_string(), "r1".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(!is_routine_resync(&t));
        t.status.as_mut().unwrap().credentials = Some(crate::crd::CredentialStatus {
            rotation_token: Some("r1".into()),
            ..Default::default()
        });
        assert!(is_routine_resync(&t), "request already handled");
        // Being deleted.
        t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        assert!(!is_routine_resync(&t));
    }
}
