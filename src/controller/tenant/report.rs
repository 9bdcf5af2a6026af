//! Stage `report`: status (server-side apply, skipped when unchanged) and Events.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::super::{Context, object_key};
use super::*;
use crate::crd::{Tenant, TenantPhase, TenantStatus};
use crate::error::{Error, Result};
use crate::identity::Resolved;
use crate::pg::plan::Step;
use crate::rotation;
use crate::status::{Cond, merge_conditions, types};

/// Events of a provisioning pass: the rotation, and what was created or repaired.
pub(super) async fn provision_events(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    creds: &Creds,
    applied: &super::steps::Applied,
) {
    let names = &spec.resolved.names;
    if let Some(t) = &creds.trigger {
        ctx.event(
            tenant,
            EventType::Normal,
            "CredentialsRotated",
            "Rotate",
            format!(
                "credentials moved to role {} ({}); previous role valid until {}",
                creds.active.role(names).as_str(),
                match t {
                    rotation::Trigger::OnDemand(_) => "on demand",
                    rotation::Trigger::Periodic => "rotateAfter elapsed",
                    rotation::Trigger::SecretDeleted => "the Secret was deleted",
                },
                creds.status.previous_valid_until.as_deref().unwrap_or("-")
            ),
        )
        .await;
    }
    let other_steps: Vec<&Step> = applied
        .steps
        .iter()
        .filter(|s| !super::credentials::is_rotation_step(s))
        .collect();
    if !other_steps.is_empty() {
        let was_ready = tenant.status.as_ref().map(|s| s.phase) == Some(TenantPhase::Ready);
        let what = other_steps
            .iter()
            .map(|s| s.describe(&applied.desired))
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
}

pub(super) fn base_status(tenant: &Tenant) -> TenantStatus {
    tenant.status.clone().unwrap_or_default()
}

pub(super) fn provisioning_status(tenant: &Tenant, r: &Resolved, server: &str) -> TenantStatus {
    let mut s = base_status(tenant);
    // Recorded before the first object is created (the markers find it anyway if this is lost).
    s.placement.get_or_insert_default().postgres = Some(server.to_string());
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

pub(super) fn ready_status(tenant: &Tenant, o: &Outcome) -> TenantStatus {
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
    s.mongodb = o.mongo.clone().map(Box::new);
    s.statistics = o.statistics.clone().map(Box::new);
    s.placement = Some(o.placement.clone());
    let moving = s.move_.as_ref().filter(|m| !m.phase.is_terminal());
    let placed = match (&o.placement_mismatch, moving) {
        (_, Some(m)) => Cond::new(
            types::PLACED,
            true,
            "Moving",
            format!(
                "moving from server {} to {} ({:?}): {}",
                m.from,
                m.to,
                m.phase,
                m.message.as_deref().unwrap_or_default()
            ),
        ),
        (Some(why), None) => {
            // Why the move does not happen, when one was refused.
            let note = s
                .move_
                .as_ref()
                .filter(|m| m.phase == crate::crd::MovePhase::RolledBack)
                .and_then(|m| m.message.as_deref())
                .map(|n| format!(" (last move: {n})"))
                .unwrap_or_default();
            Cond::new(
                types::PLACED,
                true,
                "PlacementNotApplied",
                format!("{why}{note}"),
            )
        }
        (None, None) => Cond::new(
            types::PLACED,
            true,
            "Placed",
            format!(
                "on server {}",
                o.placement.postgres.as_deref().unwrap_or_default()
            ),
        ),
    };
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
            placed,
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
pub(super) const CAPACITY_RECHECK: Duration = Duration::from_secs(10);

/// Status of a Tenant that waits for capacity (`--max-tenants`): Pending, not Ready, not Degraded.
pub(super) fn waiting_status(tenant: &Tenant, e: &Error) -> TenantStatus {
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

pub(super) fn failed_status(
    tenant: &Tenant,
    e: &Error,
    phase: Option<TenantPhase>,
    health: Option<crate::crd::HealthStatus>,
) -> TenantStatus {
    let mut s = base_status(tenant);
    let generation = tenant.meta().generation;
    let reason = e.category();
    let message = crate::error::first_line(&e.to_string());
    s.phase = phase.unwrap_or(TenantPhase::Failed);
    s.observed_generation = generation;
    if health.is_some() {
        s.health = health;
    }
    let unhealthy = s.health.as_ref().filter(|h| !h.healthy);
    let mut conds = vec![Cond::new(types::READY, false, reason, message.clone())];
    if let Some(h) = unhealthy.filter(|_| e.is_permanent()) {
        conds.push(Cond::new(
            types::DEGRADED,
            true,
            "HealthCheckFailed",
            format!(
                "login with the tenant's credentials failed: {} (and: {message})",
                h.message
            ),
        ));
        if s.conditions.iter().all(|c| c.type_ != types::PROVISIONED) {
            conds.push(Cond::new(types::PROVISIONED, false, reason, message));
        }
    } else if e.is_permanent() {
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

/// What this process knows better than the cached object, laid over a status to write or
/// compare: the schema version it last migrated the tenant to (the cached object may predate the
/// TenantMigration controller's patch of it) and the baseline migrations a re-created schema
/// still needs (they outlive a restart in status; cleared once complete).
pub(super) fn overlay_known(ctx: &Context, key: &str, status: &mut TenantStatus) {
    status.schema_version = ctx.schema_version_or(key, status.schema_version);
    status.baseline_due = ctx.baseline_due_or(key, status.baseline_due);
}

/// Writes status with server-side apply, unless it equals the current status. Returns whether a
/// write happened.
pub(super) async fn write_status(
    tenant: &Tenant,
    ctx: &Context,
    mut status: TenantStatus,
) -> Result<bool> {
    let key = object_key(tenant);
    overlay_known(ctx, &key, &mut status);
    // The placement this process made is recorded with any status it writes (a failure status
    // built from the object as it was before must not erase it).
    if status
        .placement
        .as_ref()
        .and_then(|p| p.postgres.as_ref())
        .is_none()
        && let Some(server) = ctx.servers().reservation(&key)
    {
        status.placement.get_or_insert_default().postgres = Some(server);
    }
    let phase = match status.phase {
        TenantPhase::Pending => "Pending",
        TenantPhase::Provisioning => "Provisioning",
        TenantPhase::Ready => "Ready",
        TenantPhase::Failed => "Failed",
        TenantPhase::Deleting => "Deleting",
    };
    ctx.metrics().set_phase(&key, Some(phase));
    ctx.metrics()
        .fleet
        .set(&key, Some(fleet_facts(tenant, &status, phase)));
    // Equal to the cached status: nothing to write, unless a write of ours in this reconcile
    // superseded the cached object (the baseline due written before a re-creation, then cleared):
    // then only what was last written counts (below).
    if tenant.status.as_ref() == Some(&status)
        && !ctx.is_stale(&key, tenant.meta().resource_version.as_deref())
    {
        return Ok(false);
    }
    let hash = status_hash(&status, tenant.meta().generation);
    if ctx.already_written(&key, hash) {
        return Ok(false);
    }
    super::test_points::armed_pause_point("tenant-status-write", || {
        format!("{key} generation {:?}", tenant.meta().generation)
    })
    .await;
    let mut written = apply_status(tenant, ctx, &status).await?;
    let mut hash = hash;
    // A schemaVersion recorded while this write was in flight (a TenantMigration migrated the
    // tenant meanwhile): its own patch may have landed before this write, which carried the older
    // version — written once more, so that the newer version stays. (One recorded after this
    // write returned is patched after it.)
    let now = ctx.schema_version_or(&key, status.schema_version);
    if now != status.schema_version {
        status.schema_version = now;
        hash = status_hash(&status, tenant.meta().generation);
        written = apply_status(tenant, ctx, &status).await?;
    }
    ctx.record_status_write(
        &key,
        Some(hash),
        tenant.meta().resource_version.clone(),
        written,
    );
    Ok(true)
}

/// Server-side applies `status` (the whole of it, the Tenant controller's field manager); the
/// written object's resourceVersion.
async fn apply_status(
    tenant: &Tenant,
    ctx: &Context,
    status: &TenantStatus,
) -> Result<Option<String>> {
    let ns = tenant.namespace().unwrap_or_default();
    let api: Api<Tenant> = Api::namespaced(ctx.client().clone(), &ns);
    let patch = json!({
        "apiVersion": Tenant::api_version(&()),
        "kind": Tenant::kind(&()),
        "metadata": { "name": tenant.name_any(), "namespace": ns },
        "status": status,
    });
    let written = api
        .patch_status(
            &tenant.name_any(),
            &PatchParams::apply(&format!("{}-status", ctx.settings().field_manager)).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.metrics().status_written(CONTROLLER);
    Ok(written.meta().resource_version.clone())
}

/// What the fleet gauges count of this tenant (from the status being reported).
fn fleet_facts(
    tenant: &Tenant,
    status: &TenantStatus,
    phase: &'static str,
) -> crate::metrics::TenantFacts {
    let conns = status.statistics.as_ref().map(|s| &s.connections);
    crate::metrics::TenantFacts {
        namespace: tenant.namespace().unwrap_or_default(),
        name: tenant.name_any(),
        server: status
            .placement
            .as_ref()
            .and_then(|p| p.postgres.clone())
            .unwrap_or_else(|| crate::statistics::DEFAULT_SERVER.into()),
        isolation: tenant.spec.isolation.as_str(),
        phase,
        storage_bytes: status.usage.as_ref().map(|u| u.storage_bytes),
        storage_limit: status.usage.as_ref().and_then(|u| u.storage_limit_bytes),
        connections: conns.map_or([0; 4], |c| {
            let other = c.total - c.active - c.idle - c.idle_in_transaction;
            [c.active, c.idle, c.idle_in_transaction, other.max(0)].map(i64::from)
        }),
        connection_limit: conns.and_then(|c| c.limit),
        unhealthy: status.health.as_ref().is_some_and(|h| !h.healthy),
    }
}

/// Hash of a status (and the generation it was computed for).
pub(super) fn status_hash(status: &TenantStatus, generation: Option<i64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(status)
        .unwrap_or_default()
        .hash(&mut h);
    generation.hash(&mut h);
    h.finish()
}
