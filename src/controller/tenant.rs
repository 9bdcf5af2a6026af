//! The Tenant reconciler: resolve -> validate -> plan (pure) -> apply (idempotent) -> report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::{Context, MetaFacts, facts_hash, object_key, object_key_for};
use crate::crd::{DeletionPolicy, Tenant, TenantPhase, TenantStatus};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationTarget};
use crate::naming::{Ident, TenantNames, tenant_names};
use crate::pg::plan::{Desired, Slot, Step, plan};
use crate::rotation;
use crate::secret::{self, Endpoint};
use crate::status::{Cond, merge_conditions, types};

/// Finalizer guarding cleanup.
pub const FINALIZER: &str = "tenantdb.io/cleanup";
const CONTROLLER: &str = "tenant";

/// Everything resolved from a Tenant before touching PostgreSQL.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// PostgreSQL names.
    pub names: TenantNames,
    /// Credentials Secret name.
    pub secret_name: String,
    /// Whether to apply the baseline migrations.
    pub auto_migrate: bool,
}

/// Resolve + validate: pure.
pub fn resolve(tenant: &Tenant, prefix: &str, shared_database: &Ident) -> Result<Resolved> {
    let name = tenant.name_any();
    let namespace = tenant
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("Tenant has no namespace".into()))?;
    let names = tenant_names(
        prefix,
        &namespace,
        &name,
        tenant.spec.isolation,
        tenant.spec.database_name.as_deref(),
        shared_database,
    )?;
    if tenant.spec.isolation == crate::crd::Isolation::Database
        && names.database == *shared_database
    {
        return Err(Error::InvalidSpec(format!(
            "databaseName {} is the operator's shared database",
            names.database.as_str()
        )));
    }
    let secret_name = tenant
        .spec
        .credentials
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-db"));
    if secret_name.len() > 253 {
        return Err(Error::InvalidSpec(
            "credentials.secretName is too long".into(),
        ));
    }
    Ok(Resolved {
        names,
        secret_name,
        auto_migrate: tenant.spec.auto_migrate.unwrap_or(true),
    })
}

/// A stable advisory-lock key for a tenant's schema (used by migrations).
pub fn lock_key(names: &TenantNames) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!(
        "tenantdb:{}/{}",
        names.database.as_str(),
        names.schema.as_str()
    ));
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// Starts the Tenant controller and runs it until shutdown. `ready` is set once the caches sync.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    ready: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let tenants: Api<Tenant> = Api::all(ctx.client.clone());
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    // Secrets map to the Tenants that own them (like `owns`), and a change of one unsettles its
    // Tenant so that the reconcile does the full work (e.g. re-creates a deleted Secret).
    let secret_ctx = ctx.clone();
    let controller = Controller::new(tenants, watcher::Config::default().any_semantic())
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
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let _ = ctx.tenant_store.set(store.clone());
    let ctx_synced = ctx.clone();
    tokio::spawn(async move {
        // `Store::wait_until_ready` is backed by a oneshot receiver that remembers only the last
        // waker, and the controller's own applier waits on it too: a second waiter may never be
        // woken. Re-polling on a short interval sidesteps that (the value is memoized once sent).
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    info!("tenant cache synced");
                    ctx_synced
                        .tenant_cache_synced
                        .store(true, std::sync::atomic::Ordering::Release);
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
    let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), &ns);
    // A deleting Tenant whose cleanup failed waits out its backoff here, before the finalizer
    // helper (which removes the finalizer whenever cleanup returns Ok).
    if tenant.meta().deletion_timestamp.is_some()
        && let Some(wait) = ctx
            .backoff
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
    let result = result.map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::from(e),
        other => Error::Internal(other.to_string()),
    });
    // (Backoff is reset by the paths that succeeded, not here: a reconcile that only waited out
    // its backoff returns Ok too.)
    if let Err(e) = &result {
        warn!(tenant = %tenant.name_any(), namespace = %ns, category = e.category(), error = %e, "reconcile failed")
    }
    ctx.metrics.observe_reconcile(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(|e| e.category()),
    );
    result
}

/// Transient errors: per-object exponential backoff with jitter and a cap, held against early
/// triggers for unchanged facts ([`crate::controller::Backoff::hold`]).
pub fn error_policy(tenant: Arc<Tenant>, _err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay_for(
        &object_key(tenant.as_ref()),
        facts_hash(tenant.as_ref()),
        ctx.settings.backoff_base,
        ctx.settings.backoff_max,
    );
    Action::requeue(delay)
}

fn endpoint(ctx: &Context) -> Endpoint {
    let (host, port) = ctx.pg.server_address();
    Endpoint {
        host: ctx.settings.tenant_host.clone().unwrap_or(host),
        port: ctx.settings.tenant_port.unwrap_or(port),
    }
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
    if let Some(wait) = ctx.settled_wait(&key, &facts) {
        debug!("settled and unchanged; next pass at the resync");
        ctx.metrics.reconcile_unchanged(CONTROLLER);
        return Ok(Action::requeue(wait));
    }
    ctx.unsettle(&key);
    // After a failure, triggers that change nothing of the Tenant (its own status write, a watch
    // event of its Secret, another controller's write) wait out the backoff instead of retrying
    // at once: every retry is spaced exponentially, whatever triggers it.
    if let Some(wait) = ctx.backoff.hold(&key, facts_hash(tenant.as_ref())) {
        debug!(?wait, "backing off after a failure");
        ctx.metrics.reconcile_unchanged(CONTROLLER);
        return Ok(Action::requeue(wait));
    }
    // Routine resyncs share a bounded number of slots; new and changed Tenants never wait for them.
    let _resync_permit = if is_routine_resync(&tenant) {
        match ctx.admit_resync() {
            Some(p) => Some(p),
            None => {
                ctx.metrics.resync_deferred(CONTROLLER);
                return Ok(Action::requeue(ctx.deferred_resync_delay()));
            }
        }
    } else {
        None
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
            ctx.backoff.reset(&key);
            let status = ready_status(&tenant, &outcome);
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
            write_status(&tenant, &ctx, status).await?;
            if now_exceeded && before != Some(true) {
                ctx.event(
                    tenant.as_ref(),
                    EventType::Warning,
                    "QuotaExceeded",
                    "Quota",
                    "storage quota exhausted: writes disabled".into(),
                )
                .await;
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
            // Complete and healthy: settled until the resync.
            let resync = ctx.settings.jittered_resync();
            ctx.settle(&key, facts, touches, resync);
            Ok(Action::requeue(resync))
        }
        Err(e @ Error::Capacity(_)) => {
            ctx.backoff.reset(&key);
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
            ctx.backoff.reset(&key);
            let status = failed_status(&tenant, &e, None);
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
            // Nothing will change until the spec (or, for conflicts, the other owner) does.
            Ok(match e {
                Error::Conflict(_) => Action::requeue(ctx.settings.resync),
                _ => Action::await_change(),
            })
        }
        Err(e) => {
            let status = failed_status(&tenant, &e, None);
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
}

/// Result of MongoDB provisioning.
struct MongoResult {
    status: crate::crd::MongoStatus,
    secret_data: std::collections::BTreeMap<String, String>,
}

/// Whether MongoDB is enabled for this tenant (default: when the operator has an admin URI).
fn mongo_enabled(tenant: &Tenant, ctx: &Context) -> Result<bool> {
    let requested = tenant.spec.mongodb.as_ref().and_then(|m| m.enabled);
    match (requested, ctx.mongo.is_some()) {
        (Some(true), false) => Err(Error::InvalidSpec(
            "spec.mongodb.enabled is true but the operator has no MongoDB admin URI".into(),
        )),
        (Some(false), _) | (None, false) => Ok(false),
        (_, true) => Ok(true),
    }
}

fn mongo_names(
    tenant: &Tenant,
    names: &TenantNames,
) -> Result<crate::mongo::names::MongoTenantNames> {
    let explicit = tenant
        .spec
        .mongodb
        .as_ref()
        .and_then(|m| m.database_name.as_deref());
    Ok(crate::mongo::names::tenant_mongo_names(
        names.role.as_str(),
        explicit,
    )?)
}

/// Size of the tenant's MongoDB database (`dbStats`: storage plus indexes), measured at most every
/// usage interval; `None` when the tenant has no MongoDB. When MongoDB cannot be reached the last
/// measurement is used (the MongoDB step reports the outage later in the same reconcile, after
/// PostgreSQL has been reconciled).
async fn mongo_storage_bytes(
    tenant: &Tenant,
    ctx: &Context,
    key: &str,
    names: &TenantNames,
) -> Result<Option<i64>> {
    if !mongo_enabled(tenant, ctx)? {
        return Ok(None);
    }
    let Some(admin) = ctx.mongo.as_ref() else {
        return Ok(None);
    };
    let mkey = format!("{key}/mongodb");
    let cached = ctx.usage_cache(&mkey);
    if let Some((at, b)) = cached
        && at.elapsed() < ctx.settings.usage_interval
    {
        return Ok(Some(b));
    }
    let mnames = mongo_names(tenant, names)?;
    match admin.db_stats(&mnames.database).await {
        Ok(stats) => {
            let b = i64::try_from(stats.total_bytes()).unwrap_or(i64::MAX);
            ctx.set_usage_cache(&mkey, b);
            Ok(Some(b))
        }
        Err(e) => {
            warn!(error = %e, "MongoDB storage not measured; using the last measurement");
            Ok(Some(cached.map(|(_, b)| b).unwrap_or(0)))
        }
    }
}

async fn provision_mongo(
    tenant: &Tenant,
    ctx: &Context,
    names: &TenantNames,
    existing_secret: Option<&Secret>,
    read_only: bool,
    bytes: i64,
) -> Result<Option<MongoResult>> {
    if !mongo_enabled(tenant, ctx)? {
        return Ok(None);
    }
    let Some(admin) = ctx.mongo.as_ref() else {
        return Ok(None);
    };
    let mnames = mongo_names(tenant, names)?;
    let password = existing_secret
        .and_then(|s| secret::read_key(s, "mongodbPassword"))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(crate::scram::generate_password);
    let mut mt = mongo_tenant(tenant, names, &mnames, password.clone());
    mt.up_to_version = tenant
        .spec
        .mongodb
        .as_ref()
        .and_then(|m| m.migration_version);
    mt.read_only = read_only;
    let outcome = admin.provision(&mt).await?;
    if outcome.changed() {
        info!(
            database = mnames.database.as_str(),
            steps = outcome.steps.len(),
            "MongoDB provisioned"
        );
        let what = if outcome.steps.is_empty() {
            "user updated".to_string()
        } else {
            outcome.steps.join(", ")
        };
        ctx.event(
            tenant,
            EventType::Normal,
            "MongoProvisioned",
            "Provision",
            format!("MongoDB: {what}"),
        )
        .await;
    }
    let previous = tenant.status.as_ref().and_then(|s| s.mongodb.as_ref());
    // Keep the reported size unless it moved by more than 5 % (no status writes for idle tenants).
    let storage_bytes = match previous.and_then(|p| p.storage_bytes) {
        Some(p) if (p - bytes).abs() as f64 <= p.max(1) as f64 * 0.05 => Some(p),
        _ => Some(bytes),
    };
    let (host, port) = ctx
        .mongo_endpoint
        .clone()
        .unwrap_or_else(|| ("localhost".into(), 27017));
    let db = mnames.database.as_str();
    let secret_data = std::collections::BTreeMap::from([
        ("mongodbHost".to_string(), host.clone()),
        ("mongodbPort".to_string(), port.to_string()),
        ("mongodbDatabase".to_string(), db.to_string()),
        ("mongodbUsername".to_string(), mnames.user.clone()),
        ("mongodbPassword".to_string(), password.clone()),
        (
            "mongodbUri".to_string(),
            crate::mongo::tenant_uri(&host, port, db, &mnames.user, &password),
        ),
    ]);
    Ok(Some(MongoResult {
        status: crate::crd::MongoStatus {
            database: db.to_string(),
            user: mnames.user.clone(),
            version: outcome.version,
            storage_bytes,
        },
        secret_data,
    }))
}

async fn provision(tenant: &Tenant, ctx: &Context) -> Result<Outcome> {
    let resolved = resolve(
        tenant,
        &ctx.settings.name_prefix,
        &ctx.pg.settings().shared_database,
    )?;
    let quotas = crate::quota::effective(tenant.spec.quotas.as_ref(), &ctx.settings.quota_defaults)
        .map_err(Error::InvalidSpec)?;
    let creds = &tenant.spec.credentials;
    let rotate_after = match &creds.rotate_after {
        Some(s) => Some(crate::quota::parse_duration(s).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "credentials.rotateAfter {s:?} is not a duration like 720h"
            ))
        })?),
        None => None,
    };
    let grace = match &creds.grace_period {
        Some(s) => crate::quota::parse_duration(s).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "credentials.gracePeriod {s:?} is not a duration like 1h"
            ))
        })?,
        None => rotation::DEFAULT_GRACE,
    };
    let ns = tenant
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("Tenant has no namespace".into()))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let key = object_key(tenant);
    let now = Timestamp::now();

    // The Secret's password is the source of truth; a new one is generated only when there is none,
    // or by a rotation.
    let existing_secret = secrets.get_opt(&resolved.secret_name).await?;
    if let Some(s) = &existing_secret
        && !secret::owned_by(s, tenant)
    {
        if !secret::adoptable(s, tenant) {
            return Err(Error::Conflict(format!(
                "Secret {} exists and is not owned by this Tenant",
                resolved.secret_name
            )));
        }
        // Written below with this Tenant as its owner.
        ctx.event(
            tenant,
            EventType::Normal,
            "SecretAdopted",
            "Provision",
            format!(
                "adopted the orphaned credentials Secret {} (its password is kept)",
                resolved.secret_name
            ),
        )
        .await;
    }
    let secret_password = existing_secret
        .as_ref()
        .and_then(|s| secret::read_key(s, "password"))
        .filter(|p| !p.is_empty());
    let secret_user = existing_secret
        .as_ref()
        .and_then(|s| secret::read_key(s, "username"));
    let mut active = Slot::of_user(&resolved.names, secret_user.as_deref());
    let mut password = secret_password
        .clone()
        .unwrap_or_else(crate::scram::generate_password);

    let observed = ctx.pg.observe(&resolved.names, &password).await?;

    // Explicit names follow the operator's policy (no namespace can claim another's names),
    // unless this Tenant's role already exists under that name, marked as its own (created
    // before the policy: kept).
    if let Some(violation) = explicit_name_violation(tenant, ctx, &ns)? {
        let marked_ours = observed
            .role
            .as_ref()
            .is_some_and(|r| r.comment.as_deref() == Some(resolved.names.owner_marker.as_str()));
        if !marked_ours {
            return Err(Error::InvalidSpec(violation));
        }
        debug!(%violation, "explicit name kept: it was provisioned before the name policy");
    }

    // Rotation: on demand (annotation) or periodic (rotateAfter).
    // Rotation bookkeeping lives on the Secret (read fresh from the API, never from a possibly
    // stale cache), so a rotation is never repeated for the same request.
    let status = tenant.status.clone().unwrap_or_default();
    let mut cred_status = status.credentials.clone().unwrap_or_default();
    let secret_ann = |k: &str| {
        existing_secret
            .as_ref()
            .and_then(|s| secret::annotation(s, k))
    };
    cred_status.rotation_token = secret_ann(secret::ROTATION_TOKEN_ANNOTATION);
    cred_status.rotated_at = secret_ann(secret::ROTATED_AT_ANNOTATION);
    let last_rotation = cred_status
        .rotated_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| tenant.meta().creation_timestamp.as_ref().map(|t| t.0));
    let trigger = rotation::should_rotate(
        &rotation::RotationInput {
            annotation: tenant
                .annotations()
                .get(rotation::ROTATE_ANNOTATION)
                .map(String::as_str),
            handled_token: cred_status.rotation_token.as_deref(),
            rotate_after,
            last_rotation,
            has_password: secret_password.is_some() && observed.role.is_some(),
        },
        now,
    );
    let mut previous_valid_until = observed
        .slot(active.other())
        .and_then(|r| rotation::running_grace(r.can_login, r.valid_until, now));
    let mut new_cred_status = cred_status.clone();
    if let Some(t) = &trigger {
        let old = active;
        active = rotation::next_slot(active);
        password = crate::scram::generate_password();
        previous_valid_until = rotation::grace_end(now, grace);
        new_cred_status.rotated_at = Some(now.to_string());
        new_cred_status.previous_user = Some(old.role(&resolved.names).as_str().to_string());
        new_cred_status.previous_valid_until = previous_valid_until.map(|t| t.to_string());
        if let rotation::Trigger::OnDemand(token) = t {
            new_cred_status.rotation_token = Some(token.clone());
        }
        info!(from = old.role(&resolved.names).as_str(), to = active.role(&resolved.names).as_str(), trigger = ?t, "rotating credentials");
    }
    if previous_valid_until.is_none() {
        new_cred_status.previous_user = None;
        new_cred_status.previous_valid_until = None;
    }
    new_cred_status.active_user = active.role(&resolved.names).as_str().to_string();
    // The password to compare with the active slot's verifier changed: observe again.
    let observed = if trigger.is_some() {
        ctx.pg.observe(&resolved.names, &password).await?
    } else {
        observed
    };

    // Storage: measured at most every usage interval; read-only at 100 %.
    // `shared` tenants are measured by their rows' share of the shared tables.
    let shared_tenant = resolved
        .names
        .rls
        .then(|| crate::pg::shared::tenant_id(&ns, &tenant.name_any()));
    // MongoDB counts against the same quota.
    let mongo_bytes = mongo_storage_bytes(tenant, ctx, &key, &resolved.names).await?;
    let usage = measure_usage(
        ctx,
        &key,
        &resolved.names,
        &status,
        quotas.storage_bytes,
        shared_tenant.as_deref(),
        mongo_bytes.unwrap_or(0),
    )
    .await?;
    let read_only = crate::quota::over_quota(usage.storage_bytes, quotas.storage_bytes);

    let desired = Desired {
        names: resolved.names.clone(),
        password,
        active,
        previous_valid_until,
        quotas,
        read_only,
    };
    let layout_version = if resolved.names.rls {
        Some(ensure_shared_layout(ctx).await?)
    } else {
        None
    };
    let steps = plan(&desired, &observed).map_err(|c| Error::Conflict(c.0))?;
    if !steps.is_empty() {
        let first_time = status.phase != TenantPhase::Ready;
        if first_time {
            let status = provisioning_status(tenant, &resolved);
            write_status(tenant, ctx, status).await?;
        }
        for s in &steps {
            info!(step = %s.describe(&desired), "applying");
            ctx.metrics
                .steps
                .get_or_create(&crate::metrics::StepLabels {
                    step: s.kind().to_string(),
                })
                .inc();
        }
        ctx.pg.apply(&desired, &steps).await?;
    }

    // Migrations: at provisioning (no version recorded yet) or when the schema was just (re)created.
    let recorded = ctx.schema_version_or(&key, status.schema_version);
    let recreated = steps
        .iter()
        .any(|s| matches!(s, Step::CreateSchema | Step::CreateDatabase));
    let mut schema_version = recorded;
    if let Some(v) = layout_version {
        // Shared tables: migrations and partitions belong to the layout, not the tenant.
        schema_version = v;
        let tid = crate::pg::shared::tenant_id(&ns, &tenant.name_any());
        let layout = crate::pg::shared::SharedLayout::defaults()?;
        let (r, b) = (&resolved.names.role, &resolved.names.secondary_role);
        if !crate::pg::shared::observe_tenant(&ctx.pg, &layout, r, b, &tid).await? {
            crate::pg::shared::register_tenant(&ctx.pg, &layout, r, b, &tid).await?;
            info!(tenant_id = %tid, "registered in the shared row-level security layout");
        }
    } else if resolved.auto_migrate && (recorded.is_none() || recreated) {
        let target = if recreated {
            recorded.or(ctx.migrations.latest_version())
        } else {
            ctx.migrations.latest_version()
        };
        let login = Login {
            user: active.role(&resolved.names),
            password: &desired.password,
        };
        schema_version = run_migrations(ctx, &resolved.names, &login, target).await?;
        ctx.set_schema_version(&key, schema_version);
    }

    // Monthly partitions of the baseline's partitioned tables, kept ahead (at most every partition interval).
    if schema_version.is_some() && !resolved.names.rls {
        let login = Login {
            user: active.role(&resolved.names),
            password: &desired.password,
        };
        maintain_partitions(ctx, &key, &resolved.names, &login).await?;
    }

    // MongoDB (optional): database, scoped user, collections, validators, indexes.
    let mongo = provision_mongo(
        tenant,
        ctx,
        &resolved.names,
        existing_secret.as_ref(),
        read_only,
        mongo_bytes.unwrap_or(0),
    )
    .await?;

    // Secret after the roles: if anything above failed, the next attempt reuses the same password.
    let active_user = active.role(&resolved.names);
    let mut data = secret::secret_data(
        &resolved.names,
        &endpoint(ctx),
        active_user,
        &desired.password,
    );
    if let Some(m) = &mongo {
        data.extend(m.secret_data.clone());
    }
    if resolved.names.rls {
        // Applications write this value into `tenant_id` (row-level security checks it).
        data.insert(
            "tenantId".to_string(),
            crate::pg::shared::tenant_id(&ns, &tenant.name_any()),
        );
    }
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(t) = &new_cred_status.rotation_token {
        annotations.insert(secret::ROTATION_TOKEN_ANNOTATION.to_string(), t.clone());
    }
    if let Some(t) = &new_cred_status.rotated_at {
        annotations.insert(secret::ROTATED_AT_ANNOTATION.to_string(), t.clone());
    }
    let want = secret::desired_secret(tenant, &resolved.secret_name, &data, annotations);
    let up_to_date = existing_secret
        .as_ref()
        .is_some_and(|s| secret::is_up_to_date(s, &want));
    if !up_to_date {
        secrets
            .patch(
                &resolved.secret_name,
                &PatchParams::apply(&ctx.settings.field_manager).force(),
                &Patch::Apply(&want),
            )
            .await?;
        info!(secret = %resolved.secret_name, user = active_user.as_str(), "credentials secret written");
    }
    // A renamed Secret: remove the old one if we own it.
    if let Some(old) = status.secret_name.clone()
        && old != resolved.secret_name
        && let Some(old_secret) = secrets.get_opt(&old).await?
        && secret::owned_by(&old_secret, tenant)
    {
        secrets.delete(&old, &DeleteParams::default()).await?;
    }

    if let Some(t) = &trigger {
        ctx.event(
            tenant,
            EventType::Normal,
            "CredentialsRotated",
            "Rotate",
            format!(
                "credentials moved to role {} ({}); previous role valid until {}",
                active_user.as_str(),
                match t {
                    rotation::Trigger::OnDemand(_) => "on demand",
                    rotation::Trigger::Periodic => "rotateAfter elapsed",
                },
                new_cred_status
                    .previous_valid_until
                    .as_deref()
                    .unwrap_or("-")
            ),
        )
        .await;
    }
    let other_steps: Vec<&Step> = steps.iter().filter(|s| !is_rotation_step(s)).collect();
    if !other_steps.is_empty() {
        let was_ready = status.phase == TenantPhase::Ready;
        let what = other_steps
            .iter()
            .map(|s| s.describe(&desired))
            .collect::<Vec<_>>()
            .join(", ");
        let (reason, note) = if was_ready {
            ("Repaired", format!("reconciled: {what}"))
        } else {
            ("Provisioned", format!("provisioned: {what}"))
        };
        ctx.event(tenant, EventType::Normal, reason, "Provision", note)
            .await;
    }

    // Health, checked with the tenant's own credentials at most every health interval.
    let mongo_login = mongo.as_ref().and_then(|m| {
        let uri = m.secret_data.get("mongodbUri")?.clone();
        let pw = m.secret_data.get("mongodbPassword")?.clone();
        let db = crate::mongo::names::MongoDbName::new(&m.status.database).ok()?;
        Some((uri, db, pw))
    });
    let health = check_health(
        ctx,
        &key,
        &resolved.names,
        active_user,
        &desired.password,
        mongo_login,
        status.health.as_ref(),
    )
    .await;

    Ok(Outcome {
        resolved,
        steps,
        schema_version,
        mongo: mongo.map(|m| m.status),
        usage: Some(usage),
        health,
        credentials: new_cred_status,
        read_only,
    })
}

fn is_rotation_step(s: &Step) -> bool {
    matches!(
        s,
        Step::CreateSecondary
            | Step::GrantMembership
            | Step::EnableLogin(_)
            | Step::ExpireLogin(_)
            | Step::DisableLogin(_)
            | Step::SetPassword(Slot::Secondary)
    ) || matches!(s, Step::SetRoleSetting(Slot::Secondary, "role", _))
        || matches!(s, Step::SetSearchPath(Slot::Secondary))
}

/// The credentials a tenant session logs in with: the active slot's role and the Secret's password.
struct Login<'a> {
    user: &'a Ident,
    password: &'a str,
}

/// Creates the current and next months' partitions and drops those past the retention, on a
/// session logged in as the tenant. Skipped when done recently (in-memory; after a restart it runs
/// once per tenant and issues no DDL when nothing is missing).
async fn maintain_partitions(
    ctx: &Context,
    key: &str,
    names: &TenantNames,
    login: &Login<'_>,
) -> Result<()> {
    if ctx
        .partition_cache(key)
        .is_some_and(|at| at.elapsed() < ctx.settings.partition_interval)
    {
        return Ok(());
    }
    let today = Timestamp::now()
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .date();
    let ahead = ctx.settings.partition_months_ahead;
    let retention = ctx.settings.partition_retention_months;
    let mut conn = ctx
        .pg
        .tenant_session(&names.database, login.user, login.password)
        .await?;
    let report = crate::partitions::maintain(
        &mut conn,
        names.schema.as_str(),
        names.role.as_str(),
        today,
        ahead,
        retention,
    )
    .await;
    conn.close().await;
    let report = report?;
    if !report.created.is_empty() || !report.dropped.is_empty() {
        info!(created = ?report.created, dropped = ?report.dropped, rows_moved = report.rows_moved, "partitions maintained");
    }
    ctx.set_partition_cache(key);
    Ok(())
}

/// Creates or repairs the shared row-level security layout (roles, schema, baseline migrations,
/// policies) and keeps its partitions ahead. Serialized, and re-checked at most every resync.
async fn ensure_shared_layout(ctx: &Context) -> Result<Option<i64>> {
    let mut guard = ctx.shared_layout.lock().await;
    if let Some((at, version)) = *guard
        && at.elapsed() < ctx.settings.resync
    {
        return Ok(version);
    }
    let layout = crate::pg::shared::SharedLayout::defaults()?;
    let version = crate::pg::shared::ensure_layout(&ctx.pg, &layout, &ctx.migrations).await?;
    if version.is_some() {
        let today = Timestamp::now()
            .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
            .date();
        // As the layout's owner (logged in with a one-time password), not as the admin.
        let mut conn = ctx
            .pg
            .owner_session(&layout.owner, &ctx.pg.settings().shared_database)
            .await?;
        let report = crate::partitions::maintain(
            &mut conn,
            layout.schema.as_str(),
            layout.owner.as_str(),
            today,
            ctx.settings.partition_months_ahead,
            ctx.settings.partition_retention_months,
        )
        .await;
        conn.close().await;
        let report = report?;
        if !report.created.is_empty() {
            // New partitions need their row-level security too.
            crate::pg::shared::ensure_policies(&ctx.pg, &layout).await?;
        }
    }
    *guard = Some((Instant::now(), version));
    Ok(version)
}

/// The first explicit name of the Tenant that the operator's `--explicit-names` policy refuses.
fn explicit_name_violation(tenant: &Tenant, ctx: &Context, ns: &str) -> Result<Option<String>> {
    let shared = &ctx.pg.settings().shared_database;
    let group = crate::naming::connect_group_of(shared)?;
    let layout = crate::pg::shared::SharedLayout::defaults()?;
    let reserved = [
        shared.as_str(),
        group.as_str(),
        layout.schema.as_str(),
        layout.owner.as_str(),
        layout.tenants.as_str(),
        crate::mongo::REGISTRY_DATABASE,
    ];
    let explicit = [
        ("spec.databaseName", tenant.spec.database_name.as_deref()),
        (
            "spec.mongodb.databaseName",
            tenant
                .spec
                .mongodb
                .as_ref()
                .and_then(|m| m.database_name.as_deref()),
        ),
    ];
    for (field, name) in explicit {
        if let Some(name) = name
            && let Err(e) = crate::naming::check_explicit_name(
                ctx.settings.explicit_names,
                ns,
                field,
                name,
                &reserved,
            )
        {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// Whether a Tenant counts against `--max-tenants`: provisioned, or provisioning started (its
/// status names its role) and not failed.
fn holds_a_place(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        crate::status::is_true(&s.conditions, types::PROVISIONED)
            || (s.role.is_some()
                && matches!(s.phase, TenantPhase::Provisioning | TenantPhase::Ready))
    })
}

/// Admission under the operator's `--max-tenants`: a Tenant already provisioned passes; a new
/// one is admitted only while fewer than `max` Tenants are provisioned or admitted
/// ([`Context::admit_tenant`], one lock, so concurrent reconciles never overshoot). `Ok(false)`:
/// the count is unknown until the Tenant cache has synced, ask again. Not admitted:
/// [`Error::Capacity`] (the Tenant waits in phase Pending and is looked at again shortly).
fn check_tenant_limit(tenant: &Tenant, ctx: &Context) -> Result<bool> {
    let Some(max) = ctx.settings.max_tenants else {
        return Ok(true);
    };
    let already = holds_a_place(tenant);
    let key = object_key(tenant);
    let Some(store) = ctx.synced_tenant_store() else {
        return Ok(false);
    };
    let provisioned = store
        .state()
        .iter()
        .filter(|t| holds_a_place(t))
        .map(|t| object_key(t.as_ref()))
        .collect::<Vec<_>>();
    if already || ctx.admit_tenant(&key, max, provisioned) {
        return Ok(true);
    }
    Err(Error::Capacity(format!(
        "the operator's maximum of {max} tenants (--max-tenants) is reached; this Tenant is provisioned as soon as another one is deleted"
    )))
}

/// Measures storage unless a recent measurement is cached; falls back to the last reported value.
async fn measure_usage(
    ctx: &Context,
    key: &str,
    names: &TenantNames,
    status: &TenantStatus,
    limit: Option<i64>,
    shared_tenant: Option<&str>,
    mongo_bytes: i64,
) -> Result<crate::crd::UsageStatus> {
    let cached = ctx.usage_cache(key);
    let pg_bytes = match cached {
        Some((at, bytes)) if at.elapsed() < ctx.settings.usage_interval => bytes,
        _ => {
            let bytes = match shared_tenant {
                Some(tid) => {
                    let layout = crate::pg::shared::SharedLayout::defaults()?;
                    crate::pg::shared::tenant_storage_bytes(&ctx.pg, &layout, tid).await?
                }
                None => ctx.pg.storage_bytes(names).await?,
            };
            ctx.set_usage_cache(key, bytes);
            bytes
        }
    };
    let bytes = pg_bytes.saturating_add(mongo_bytes);
    let percent = crate::quota::percent(bytes, limit);
    let read_only = crate::quota::over_quota(bytes, limit);
    // Keep the last reported object unless something a reader cares about changed, so that idle
    // tenants cause no status writes. (The in-memory copy covers a cached object older than the
    // last status write.)
    let remembered = ctx.reported_usage(key);
    if let Some(prev) = status.usage.as_ref().or(remembered.as_ref()) {
        let stale = prev
            .measured_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_none_or(|t| {
                Timestamp::now().duration_since(t).as_secs() as u64
                    > ctx.settings.status_report_interval.as_secs()
            });
        let drift =
            (prev.storage_bytes - bytes).abs() as f64 > (prev.storage_bytes.max(1) as f64) * 0.05;
        if !stale
            && !drift
            && prev.percent == percent
            && prev.read_only == read_only
            && prev.storage_limit_bytes == limit
        {
            let kept = prev.clone();
            ctx.set_reported_usage(key, kept.clone());
            return Ok(kept);
        }
    }
    let usage = crate::crd::UsageStatus {
        storage_bytes: bytes,
        storage_limit_bytes: limit,
        percent,
        read_only,
        measured_at: Some(Timestamp::now().to_string()),
    };
    ctx.set_reported_usage(key, usage.clone());
    Ok(usage)
}

/// When an unhealthy tenant is looked at again: at most 10 s, so that recovery clears Degraded
/// quickly without checking in a hot loop.
fn health_recheck(ctx: &Context) -> Duration {
    ctx.settings.health_interval.min(Duration::from_secs(10))
}

/// Logs in as the tenant and runs `SELECT 1`. Bounded by a semaphore; at most every health interval.
async fn check_health(
    ctx: &Context,
    key: &str,
    names: &TenantNames,
    user: &Ident,
    password: &str,
    mongo_login: Option<(String, crate::mongo::names::MongoDbName, String)>,
    previous: Option<&crate::crd::HealthStatus>,
) -> Option<crate::crd::HealthStatus> {
    let cached = ctx.health_cache(key);
    // A healthy result stands for the health interval; a failed one is re-checked on the next
    // reconcile (the reconcile of an unhealthy tenant is requeued after `health_recheck`), so a
    // recovered tenant clears Degraded as soon as it is reconciled.
    if let Some((at, result)) = &cached
        && result.healthy
        && at.elapsed() < ctx.settings.health_interval
    {
        return Some(result.clone());
    }
    let previous = previous.or(cached.as_ref().map(|(_, r)| r));
    let _permit = ctx.health_permits.acquire().await.ok()?;
    let started = Instant::now();
    let mut result = ctx.pg.check_login(&names.database, user, password).await;
    // MongoDB `ping` as the tenant user too, when the tenant has MongoDB.
    if result.is_ok()
        && let (Some((uri, db, pw)), Some(admin)) = (&mongo_login, ctx.mongo.as_ref())
    {
        result = admin.tenant_ping(uri, db, pw).await.map_err(|e| {
            Error::DatabaseUnavailable(format!(
                "MongoDB: {}",
                crate::error::first_line(&e.to_string())
            ))
        });
    }
    let latency = started.elapsed();
    let (healthy, message) = match result {
        Ok(()) if mongo_login.is_some() => (
            true,
            "login and SELECT 1 succeeded; MongoDB ping succeeded".to_string(),
        ),
        Ok(()) => (true, "login and SELECT 1 succeeded".to_string()),
        Err(e) => (false, crate::error::first_line(&e.to_string())),
    };
    ctx.metrics.observe_health(healthy, latency);
    let latency_ms = ((latency.as_millis() as i64 + 5) / 10) * 10;
    if let Some(prev) = previous {
        let fresh = prev
            .last_checked
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| {
                (Timestamp::now().duration_since(t).as_secs() as u64)
                    < ctx.settings.status_report_interval.as_secs()
            });
        if fresh && prev.healthy == healthy && prev.message == message {
            ctx.set_health_cache(key, prev.clone());
            return Some(prev.clone());
        }
    }
    let result = crate::crd::HealthStatus {
        healthy,
        last_checked: Some(Timestamp::now().to_string()),
        latency_ms: Some(latency_ms),
        message,
    };
    ctx.set_health_cache(key, result.clone());
    Some(result)
}

/// Applies the bundled migrations to the tenant's schema on a session logged in as the tenant
/// (never on the admin session: see `migrate`'s "Who runs the SQL").
async fn run_migrations(
    ctx: &Context,
    names: &TenantNames,
    login: &Login<'_>,
    target: Option<i64>,
) -> Result<Option<i64>> {
    if ctx.migrations.migrations().is_empty() {
        return Ok(None);
    }
    let mt = MigrationTarget {
        schema: names.schema.as_str(),
        owner_role: names.role.as_str(),
        lock_key: lock_key(names),
    };
    let mut conn = ctx
        .pg
        .tenant_session(&names.database, login.user, login.password)
        .await?;
    let report = migrate::migrate(&mut conn, &ctx.migrations, &mt, target, false).await;
    conn.close().await;
    let report = report?;
    if !report.applied.is_empty() {
        info!(from = ?report.from, to = ?report.to, steps = report.applied.len(), "migrations applied");
    }
    Ok(report.to)
}

fn base_status(tenant: &Tenant) -> TenantStatus {
    tenant.status.clone().unwrap_or_default()
}

fn provisioning_status(tenant: &Tenant, r: &Resolved) -> TenantStatus {
    let mut s = base_status(tenant);
    let generation = tenant.meta().generation;
    s.phase = TenantPhase::Provisioning;
    s.observed_generation = generation;
    s.database = Some(r.names.database.as_str().to_string());
    s.schema = Some(r.names.schema.as_str().to_string());
    s.role = Some(r.names.role.as_str().to_string());
    s.conditions = merge_conditions(
        &s.conditions,
        &[
            Cond::new(
                types::READY,
                false,
                "Provisioning",
                "creating database objects",
            ),
            Cond::new(
                types::PROVISIONED,
                false,
                "Provisioning",
                "creating database objects",
            ),
        ],
        generation,
        Timestamp::now(),
    );
    s
}

fn ready_status(tenant: &Tenant, o: &Outcome) -> TenantStatus {
    let mut s = base_status(tenant);
    let generation = tenant.meta().generation;
    let names = &o.resolved.names;
    s.phase = TenantPhase::Ready;
    s.observed_generation = generation;
    s.database = Some(names.database.as_str().to_string());
    s.schema = Some(names.schema.as_str().to_string());
    s.role = Some(names.role.as_str().to_string());
    s.secret_name = Some(o.resolved.secret_name.clone());
    s.schema_version = o.schema_version;
    s.usage = o.usage.clone();
    s.health = o.health.clone();
    s.credentials = Some(o.credentials.clone());
    s.mongodb = o.mongo.clone();
    let degraded = match &o.health {
        Some(h) if !h.healthy => Cond::new(
            types::DEGRADED,
            true,
            "HealthCheckFailed",
            format!("login with the tenant's credentials failed: {}", h.message),
        ),
        _ => Cond::new(types::DEGRADED, false, "AsExpected", "no problems"),
    };
    let quota = match &o.usage {
        Some(u) if o.read_only => Cond::new(
            types::QUOTA_EXCEEDED,
            true,
            "StorageQuotaExceeded",
            format!(
                "storage {} bytes of {} ({}%): writes are disabled (default_transaction_read_only{}) until usage drops below the quota or the quota is raised",
                u.storage_bytes,
                u.storage_limit_bytes.unwrap_or_default(),
                u.percent.unwrap_or_default(),
                if o.mongo.is_some() {
                    "; MongoDB role read"
                } else {
                    ""
                }
            ),
        ),
        _ => Cond::new(
            types::QUOTA_EXCEEDED,
            false,
            "WithinQuota",
            "storage within quota",
        ),
    };
    let what = if names.dedicated_database {
        format!(
            "database {} owned by role {}",
            names.database.as_str(),
            names.role.as_str()
        )
    } else {
        format!(
            "schema {} in database {} owned by role {}",
            names.schema.as_str(),
            names.database.as_str(),
            names.role.as_str()
        )
    };
    s.conditions = merge_conditions(
        &s.conditions,
        &[
            Cond::new(
                types::READY,
                true,
                "Ready",
                format!("{what}; credentials in Secret {}", o.resolved.secret_name),
            ),
            Cond::new(types::PROVISIONED, true, "Provisioned", what),
            degraded,
            quota,
            match &o.mongo {
                Some(m) => Cond::new(
                    types::MONGO_PROVISIONED,
                    true,
                    "MongoProvisioned",
                    format!(
                        "MongoDB database {} with user {}, migration version {}",
                        m.database,
                        m.user,
                        m.version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "-".into())
                    ),
                ),
                None => Cond::new(
                    types::MONGO_PROVISIONED,
                    false,
                    "Disabled",
                    "MongoDB is not enabled for this tenant",
                ),
            },
        ],
        generation,
        Timestamp::now(),
    );
    s
}

/// How often a Tenant waiting for capacity is looked at again.
const CAPACITY_RECHECK: Duration = Duration::from_secs(10);

/// Status of a Tenant that waits for capacity (`--max-tenants`): Pending, not Ready, not Degraded.
fn waiting_status(tenant: &Tenant, e: &Error) -> TenantStatus {
    let mut s = base_status(tenant);
    let generation = tenant.meta().generation;
    s.phase = TenantPhase::Pending;
    s.observed_generation = generation;
    let message = crate::error::first_line(&e.to_string());
    s.conditions = merge_conditions(
        &s.conditions,
        &[
            Cond::new(types::READY, false, e.category(), message.clone()),
            Cond::new(types::PROVISIONED, false, e.category(), message),
            Cond::new(types::DEGRADED, false, "AsExpected", "waiting for capacity"),
        ],
        generation,
        Timestamp::now(),
    );
    s
}

fn failed_status(tenant: &Tenant, e: &Error, phase: Option<TenantPhase>) -> TenantStatus {
    let mut s = base_status(tenant);
    let generation = tenant.meta().generation;
    let reason = e.category();
    let message = crate::error::first_line(&e.to_string());
    s.phase = phase.unwrap_or(TenantPhase::Failed);
    s.observed_generation = generation;
    let mut conds = vec![Cond::new(types::READY, false, reason, message.clone())];
    if e.is_permanent() {
        conds.push(Cond::new(
            types::DEGRADED,
            false,
            "AsExpected",
            "not retrying until the spec changes",
        ));
        if s.conditions.iter().all(|c| c.type_ != types::PROVISIONED) {
            conds.push(Cond::new(types::PROVISIONED, false, reason, message));
        }
    } else {
        conds.push(Cond::new(
            types::DEGRADED,
            true,
            reason,
            format!("{message} (retrying with backoff)"),
        ));
    }
    s.conditions = merge_conditions(&s.conditions, &conds, generation, Timestamp::now());
    s
}

/// Writes status with server-side apply, unless it equals the current status. Returns whether a
/// write happened.
async fn write_status(tenant: &Tenant, ctx: &Context, mut status: TenantStatus) -> Result<bool> {
    // schemaVersion: what this process last migrated the database to, when known (the cached
    // object may predate the TenantMigration controller's patch of it).
    status.schema_version = ctx.schema_version_or(&object_key(tenant), status.schema_version);
    ctx.metrics.set_phase(
        &object_key(tenant),
        Some(match status.phase {
            TenantPhase::Pending => "Pending",
            TenantPhase::Provisioning => "Provisioning",
            TenantPhase::Ready => "Ready",
            TenantPhase::Failed => "Failed",
            TenantPhase::Deleting => "Deleting",
        }),
    );
    if tenant.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let key = object_key(tenant);
    let hash = status_hash(&status, tenant.meta().generation);
    if ctx.already_written(&key, hash) {
        return Ok(false);
    }
    let ns = tenant.namespace().unwrap_or_default();
    let api: Api<Tenant> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": Tenant::api_version(&()),
        "kind": Tenant::kind(&()),
        "metadata": { "name": tenant.name_any(), "namespace": ns },
        "status": status,
    });
    let written = api
        .patch_status(
            &tenant.name_any(),
            &PatchParams::apply(&format!("{}-status", ctx.settings.field_manager)).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics.status_written(CONTROLLER);
    ctx.set_written(&key, hash);
    ctx.record_status_write(
        &key,
        tenant.meta().resource_version.clone(),
        written.meta().resource_version.clone(),
    );
    Ok(true)
}

/// Hash of a status (and the generation it was computed for).
fn status_hash(status: &TenantStatus, generation: Option<i64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(status)
        .unwrap_or_default()
        .hash(&mut h);
    generation.hash(&mut h);
    h.finish()
}

/// Carries out the deletion policy, then lets the finalizer go.
async fn cleanup(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let policy = tenant.spec.deletion_policy;
    let key = object_key(tenant.as_ref());
    if policy == DeletionPolicy::Retain {
        info!("deletion policy Retain: keeping database objects");
        ctx.event(
            tenant.as_ref(),
            EventType::Normal,
            "Retained",
            "Delete",
            "deletion policy Retain: database objects kept".into(),
        )
        .await;
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let resolved = match resolve(
        &tenant,
        &ctx.settings.name_prefix,
        &ctx.pg.settings().shared_database,
    ) {
        Ok(r) => r,
        Err(e) if e.is_permanent() => {
            // Nothing could have been created under an invalid name.
            warn!(error = %e, "nothing to clean up for an invalid spec");
            ctx.forget(&key);
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    if tenant.status.as_ref().map(|s| s.phase) != Some(TenantPhase::Deleting) {
        let mut s = base_status(&tenant);
        s.phase = TenantPhase::Deleting;
        s.conditions = merge_conditions(
            &s.conditions,
            &[Cond::new(
                types::READY,
                false,
                "Deleting",
                "deletion policy Delete: dropping database objects",
            )],
            tenant.meta().generation,
            Timestamp::now(),
        );
        // The object may already be on its way out; a failed status write must not block cleanup.
        if let Err(e) = write_status(&tenant, &ctx, s).await {
            debug!(error = %e, "could not write Deleting status");
        }
    }
    if resolved.names.rls {
        let rows = async {
            let layout = crate::pg::shared::SharedLayout::defaults()?;
            let (r, b) = (&resolved.names.role, &resolved.names.secondary_role);
            crate::pg::shared::unregister_tenant(&ctx.pg, &layout, r, b).await?;
            let tid = crate::pg::shared::tenant_id(
                &tenant.namespace().unwrap_or_default(),
                &tenant.name_any(),
            );
            crate::pg::shared::delete_tenant_rows(&ctx.pg, &layout, &tid, 1000).await
        };
        match rows.await {
            Ok(n) => info!(rows = n, "deleted the tenant's rows from the shared tables"),
            Err(e) => {
                let status = failed_status(&tenant, &e, Some(TenantPhase::Deleting));
                let _ = write_status(&tenant, &ctx, status).await;
                return Err(e);
            }
        }
    }
    let mongo_report = match cleanup_mongo(&tenant, &ctx, &resolved.names).await {
        Ok(r) => r,
        Err(e) => {
            let status = failed_status(&tenant, &e, Some(TenantPhase::Deleting));
            let _ = write_status(&tenant, &ctx, status).await;
            return Err(e);
        }
    };
    match ctx.pg.cleanup(&resolved.names).await {
        Ok(mut report) => {
            if let Some(m) = mongo_report {
                if m.database_dropped {
                    report.dropped.push("MongoDB database".into());
                }
                if m.user_dropped {
                    report.dropped.push("MongoDB user".into());
                }
                if let Some(why) = m.skipped {
                    report.skipped.push(why);
                }
            }
            for s in &report.skipped {
                warn!(object = %s, "not dropped: not managed by this Tenant");
            }
            ctx.event(
                tenant.as_ref(),
                EventType::Normal,
                "Deleted",
                "Delete",
                format!(
                    "dropped: {}",
                    if report.dropped.is_empty() {
                        "nothing (already gone)".to_string()
                    } else {
                        report.dropped.join(", ")
                    }
                ),
            )
            .await;
            ctx.forget(&key);
            Ok(Action::await_change())
        }
        Err(e) => {
            error!(error = %e, "cleanup failed");
            let status = failed_status(&tenant, &e, Some(TenantPhase::Deleting));
            let _ = write_status(&tenant, &ctx, status).await;
            Err(e)
        }
    }
}

/// Drops the tenant's MongoDB database and user (deletion policy Delete), when enabled.
async fn cleanup_mongo(
    tenant: &Tenant,
    ctx: &Context,
    names: &TenantNames,
) -> Result<Option<crate::mongo::MongoCleanup>> {
    if !mongo_enabled(tenant, ctx).unwrap_or(false) {
        return Ok(None);
    }
    let Some(admin) = ctx.mongo.as_ref() else {
        return Ok(None);
    };
    let m = mongo_names(tenant, names)?;
    // The Secret's MongoDB password is only used to recognise a database created before the
    // ownership registry (see `MongoTenant::adopt_unmarked`).
    let ns = tenant.namespace().unwrap_or_default();
    let secret_name = tenant
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| format!("{}-db", tenant.name_any()));
    let password = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&secret_name)
        .await?
        .filter(|s| secret::owned_by(s, tenant))
        .and_then(|s| secret::read_key(&s, "mongodbPassword"))
        .unwrap_or_default();
    let mt = mongo_tenant(tenant, names, &m, password);
    let report = admin.cleanup(&mt).await?;
    if let Some(why) = &report.skipped {
        warn!(%why, "MongoDB database not dropped: not this Tenant's");
    }
    Ok(Some(report))
}

/// The MongoDB side of a Tenant: names, password, owner marker, and whether an unregistered
/// database may be adopted (the Tenant's status says it provisioned exactly this database).
fn mongo_tenant(
    tenant: &Tenant,
    names: &TenantNames,
    mnames: &crate::mongo::names::MongoTenantNames,
    password: String,
) -> crate::mongo::MongoTenant {
    let mut mt = crate::mongo::MongoTenant::new(mnames, password, names.owner_marker.clone());
    mt.uid = tenant.meta().uid.clone();
    mt.adopt_unmarked = tenant
        .status
        .as_ref()
        .and_then(|s| s.mongodb.as_ref())
        .is_some_and(|m| m.database == mnames.database.as_str() && m.user == mnames.user);
    mt
}

/// A reference for triggering reconciles of one Tenant (used by other controllers).
pub fn tenant_ref(namespace: &str, name: &str) -> ObjectRef<Tenant> {
    ObjectRef::new(name).within(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{Isolation, TenantSpec};

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

    #[test]
    fn resolve_defaults() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let r = resolve(&tenant("acme", Isolation::Schema, None), "tenant_", &shared).unwrap();
        assert_eq!(r.secret_name, "acme-db");
        assert!(r.auto_migrate);
        assert!(r.names.schema.as_str().starts_with("tenant_team_a_acme_"));
    }

    #[test]
    fn resolve_rejects_hostile_and_reserved_names() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        for bad in [
            "x\"; drop role postgres; --",
            "template1",
            "postgres",
            "Ünïcode",
            &"a".repeat(64),
        ] {
            let e = resolve(
                &tenant("acme", Isolation::Database, Some(bad)),
                "tenant_",
                &shared,
            )
            .unwrap_err();
            assert_eq!(e.category(), "InvalidSpec", "{bad}");
            assert!(e.is_permanent());
        }
        let e = resolve(
            &tenant("acme", Isolation::Database, Some("tenantdb_shared")),
            "tenant_",
            &shared,
        )
        .unwrap_err();
        assert_eq!(e.category(), "InvalidSpec");
    }

    #[test]
    fn lock_keys_differ_per_tenant() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let a = resolve(&tenant("a", Isolation::Schema, None), "tenant_", &shared).unwrap();
        let b = resolve(&tenant("b", Isolation::Schema, None), "tenant_", &shared).unwrap();
        assert_ne!(lock_key(&a.names), lock_key(&b.names));
    }
}
