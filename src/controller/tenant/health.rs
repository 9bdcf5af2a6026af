//! Stage `health`: a login as the tenant, also when a reconcile failed.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;

use super::super::{Context, object_key};
use super::*;
use crate::crd::Tenant;
use crate::error::Error;
use crate::identity::resolve;
use crate::naming::{Ident, TenantNames};
use crate::secret::{self};

/// Stage `health`: logs in as the tenant with the credentials just provisioned (PostgreSQL, and
/// MongoDB when the tenant has it), at most every health interval.
pub(super) async fn check(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    creds: &Creds,
    mongo: Option<&super::mongo::MongoResult>,
) -> Option<crate::crd::HealthStatus> {
    let mongo_login = mongo.and_then(|m| {
        let uri = m.secret_data.get("mongodbUri")?.clone();
        let pw = m.secret_data.get("mongodbPassword")?.clone();
        let db = crate::mongo::names::MongoDbName::new(&m.status.database).ok()?;
        Some((uri, db, pw))
    });
    let previous = tenant.status.as_ref().and_then(|s| s.health.clone());
    check_health(
        ctx,
        &spec.server,
        &spec.key,
        &spec.resolved.names,
        (creds.active.role(&spec.resolved.names), &creds.password),
        mongo_login.zip(spec.mongo.as_deref()),
        previous.as_ref(),
    )
    .await
}

/// When an unhealthy tenant is looked at again: at most 10 s, so that recovery clears Degraded
/// quickly without checking in a hot loop.
pub(super) fn health_recheck(ctx: &Context) -> Duration {
    ctx.settings().health_interval.min(Duration::from_secs(10))
}

/// Logs in as the tenant and runs `SELECT 1`. Bounded by a semaphore; at most every health interval.
pub(super) async fn check_health(
    ctx: &Context,
    server: &crate::servers::Server,
    key: &str,
    names: &TenantNames,
    (user, password): (&Ident, &str),
    mongo_login: Option<(
        (String, crate::mongo::names::MongoDbName, String),
        &crate::servers::MongoServer,
    )>,
    previous: Option<&crate::crd::HealthStatus>,
) -> Option<crate::crd::HealthStatus> {
    let cached = ctx.health_cache(key);
    // A healthy result stands for the health interval; a failed one is re-checked on the next
    // reconcile (the reconcile of an unhealthy tenant is requeued after `health_recheck`), so a
    // recovered tenant clears Degraded as soon as it is reconciled.
    if let Some((at, result)) = &cached
        && result.healthy
        && at.elapsed() < ctx.settings().health_interval
    {
        return Some(result.clone());
    }
    let previous = previous.or(cached.as_ref().map(|(_, r)| r));
    let _permit = ctx.health_permits().acquire().await.ok()?;
    let started = Instant::now();
    let mut result = server
        .pg()
        .check_login(&names.database, user, password)
        .await;
    // MongoDB `ping` as the tenant user too, when the tenant has MongoDB.
    if result.is_ok()
        && let Some(((uri, db, pw), mongo)) = &mongo_login
    {
        let admin = mongo.admin();
        result = admin.tenant_ping(uri, db, pw).await.map_err(|e| {
            Error::unavailable(format!(
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
    ctx.metrics().observe_health(healthy, latency);
    let latency_ms = ((latency.as_millis() as i64 + 5) / 10) * 10;
    if let Some(prev) = previous {
        let fresh = prev
            .last_checked
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| {
                (Timestamp::now().duration_since(t).as_secs() as u64)
                    < ctx.settings().status_report_interval.as_secs()
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

/// How long until the health of `key` is due again: zero when it is due or was never checked.
pub(super) fn due_in(ctx: &Context, key: &str) -> Duration {
    ctx.health_cache(key).map_or(Duration::ZERO, |(at, _)| {
        ctx.settings().health_interval.saturating_sub(at.elapsed())
    })
}

/// The health check of a settled Tenant between its resyncs (the light pass: one Secret read
/// and one login, no planning). Returns whether its status must be written, i.e. whether the
/// result differs from the health the status reports (a failed login, a recovery, or a healthy
/// result older than the status report interval): then the full reconcile runs.
pub(super) async fn settled_check(tenant: &Tenant, ctx: &Context) -> bool {
    let reported = tenant.status.as_ref().and_then(|s| s.health.as_ref());
    match health_after_failure(tenant, ctx).await {
        Some(result) => reported != Some(&result),
        // Nothing to check with (the Secret went missing or is not this Tenant's): the full
        // reconcile repairs it.
        None => true,
    }
}

/// The health of a Tenant whose reconcile failed or stopped early: a login with its Secret's
/// credentials (PostgreSQL, and MongoDB when the Secret has it), on the health interval like
/// every health check. `None` when there is nothing to check yet (never provisioned, no Secret,
/// a Secret that is not this Tenant's or names another role).
pub(super) async fn health_after_failure(
    tenant: &Tenant,
    ctx: &Context,
) -> Option<crate::crd::HealthStatus> {
    status_secret_name(tenant)?;
    let server = super::place::home(tenant, ctx)?;
    let resolved = resolve(
        tenant,
        &ctx.settings().name_prefix,
        &server.pg().settings().shared_database,
    )
    .ok()?;
    let ns = tenant.namespace()?;
    let name = status_secret_name(tenant).unwrap_or(&resolved.secret_name);
    let secret = Api::<Secret>::namespaced(ctx.client().clone(), &ns)
        .get_opt(name)
        .await
        .ok()??;
    if !secret::owned_by(&secret, tenant) {
        return None;
    }
    let creds = crate::pg::session::Credentials::for_tenant(
        &resolved.names,
        secret::read_key(&secret, "username").as_deref(),
        secret::read_key(&secret, "password").as_deref(),
    )
    .ok()?;
    let mongo_login = (|| {
        let uri = secret::read_key(&secret, "mongodbUri")?;
        let pw = secret::read_key(&secret, "mongodbPassword")?;
        let db = secret::read_key(&secret, "mongodbDatabase")?;
        Some((uri, crate::mongo::names::MongoDbName::new(&db).ok()?, pw))
    })();
    let previous = tenant.status.as_ref().and_then(|s| s.health.clone());
    let mongo_server = super::place::placed_mongo(tenant, ctx).ok().flatten();
    check_health(
        ctx,
        &server,
        &object_key(tenant),
        &resolved.names,
        (&creds.user, creds.password()),
        mongo_login.zip(mongo_server.as_deref()),
        previous.as_ref(),
    )
    .await
}
