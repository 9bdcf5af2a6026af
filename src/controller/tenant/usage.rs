//! Stage `usage`: storage measurement against the quota.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::super::Context;
use super::*;
use crate::crd::{Tenant, TenantStatus};
use crate::error::{Error, Result};
use crate::pg::plan::{Desired, Step, plan};

/// Storage of a tenant as measured (stage `usage`).
pub(super) struct Usage {
    /// What status reports.
    pub(super) status: crate::crd::UsageStatus,
    /// Over the storage quota: writes withdrawn.
    pub(super) read_only: bool,
    /// The MongoDB part (bytes), when the tenant has MongoDB.
    pub(super) mongo_bytes: Option<i64>,
}

/// Stage `usage`: storage measured at most every usage interval (PostgreSQL: the database's or
/// schema's size, or for `shared` tenants their rows' share of the shared tables; plus MongoDB),
/// read-only at 100 % of the quota.
pub(super) async fn measure(tenant: &Tenant, ctx: &Context, spec: &Spec) -> Result<Usage> {
    let mongo_bytes = super::mongo::storage_bytes(tenant, ctx, spec).await?;
    let status = tenant.status.clone().unwrap_or_default();
    let measured = measure_usage(
        ctx,
        spec,
        &status,
        shared_tenant(tenant, spec).as_deref(),
        mongo_bytes.unwrap_or(0),
    )
    .await?;
    let read_only = crate::quota::over_quota(measured.storage_bytes, spec.quotas.storage_bytes);
    Ok(Usage {
        status: measured,
        read_only,
        mongo_bytes,
    })
}

/// Stage `usage` again for a brand-new tenant, once its baseline exists: its first Ready status
/// reports its real size, and a quota smaller than the empty tenant takes effect at once
/// (read-only from the start) instead of a resync later.
pub(super) async fn after_provisioning(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    applied: &super::steps::Applied,
    usage: Usage,
) -> Result<Usage> {
    if !applied.steps.contains(&Step::CreateRole) || spec.quotas.storage_bytes.is_none() {
        return Ok(usage);
    }
    ctx.invalidate_usage(&spec.key);
    let status = tenant.status.clone().unwrap_or_default();
    let measured = measure_usage(
        ctx,
        spec,
        &status,
        shared_tenant(tenant, spec).as_deref(),
        usage.mongo_bytes.unwrap_or(0),
    )
    .await?;
    let now_over = crate::quota::over_quota(measured.storage_bytes, spec.quotas.storage_bytes);
    if now_over && !usage.read_only {
        let ro = Desired {
            read_only: true,
            // Set by the apply just before, if it was new.
            new_password: false,
            ..applied.desired.clone()
        };
        let observed = spec
            .server
            .pg()
            .observe(&spec.resolved.names, &ro.password)
            .await?;
        let more = plan(&ro, &observed).map_err(|c| Error::Conflict(c.0))?;
        spec.server.pg().apply(&ro, &more).await?;
    }
    Ok(Usage {
        status: measured,
        read_only: usage.read_only || now_over,
        mongo_bytes: usage.mongo_bytes,
    })
}

/// The tenant id of a `shared` tenant (its rows' key), `None` for the other modes.
fn shared_tenant(tenant: &Tenant, spec: &Spec) -> Option<String> {
    spec.resolved
        .names
        .rls
        .then(|| crate::pg::shared::tenant_id(&spec.namespace, &tenant.name_any()))
}

/// Measures storage unless a recent measurement is cached; falls back to the last reported value.
pub(super) async fn measure_usage(
    ctx: &Context,
    spec: &Spec,
    status: &TenantStatus,
    shared_tenant: Option<&str>,
    mongo_bytes: i64,
) -> Result<crate::crd::UsageStatus> {
    let (server, key, names) = (&spec.server, spec.key.as_str(), &spec.resolved.names);
    let limit = spec.quotas.storage_bytes;
    let cached = ctx.usage_cache(key);
    let pg_bytes = match cached {
        Some((at, bytes)) if at.elapsed() < ctx.settings().usage_interval => bytes,
        _ => {
            let bytes = match shared_tenant {
                Some(tid) => {
                    let layout = crate::pg::shared::SharedLayout::defaults()?;
                    crate::pg::shared::tenant_storage_bytes(server.pg(), &layout, tid).await?
                }
                None => server.pg().storage_bytes(names).await?,
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
                    > ctx.settings().status_report_interval.as_secs()
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
