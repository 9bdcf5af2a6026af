//! Stage `mongo`: the tenant's MongoDB database and user (ownership registry first).

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::super::Context;
use super::*;
use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::naming::TenantNames;
use crate::secret::{self};

/// Result of MongoDB provisioning.
pub(super) struct MongoResult {
    pub(super) status: crate::crd::MongoStatus,
    pub(super) secret_data: std::collections::BTreeMap<String, String>,
}

/// Whether MongoDB is enabled for this tenant: `spec.mongodb.enabled`; unset, when the operator
/// has a default MongoDB server (`--mongodb-uri`), the Tenant has `spec.placement.mongodb`, or its
/// status records a MongoDB server. (MongoDB DatabaseServers alone do not give every tenant a
/// MongoDB database.)
pub(super) fn mongo_enabled(tenant: &Tenant, ctx: &Context) -> Result<bool> {
    let requested = tenant.spec.mongodb.as_deref().and_then(|m| m.enabled);
    let by_default = ctx.mongo_servers().default_server().is_some()
        || tenant
            .spec
            .placement
            .as_ref()
            .is_some_and(|p| p.mongodb.is_some())
        || super::place::recorded_on(tenant, crate::crd::Engine::Mongodb).is_some();
    match requested {
        Some(false) => Ok(false),
        None => Ok(by_default),
        Some(true) if ctx.mongo_servers().has_any() || by_default => Ok(true),
        Some(true) if !ctx.servers().is_synced() => Err(Error::Unschedulable(
            "waiting for the DatabaseServers to be loaded".into(),
        )),
        Some(true) => Err(Error::InvalidSpec(
            "spec.mongodb.enabled is true but the operator has no MongoDB server (--mongodb-uri or a mongodb DatabaseServer)".into(),
        )),
    }
}

pub(super) fn mongo_names(
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
/// measurement is used — this process's, else the one in `status.mongodb.storageBytes` (after a
/// restart), never 0: an outage must not lift a storage quota's read-only switch. The MongoDB
/// step reports the outage later in the same reconcile, after PostgreSQL has been reconciled.
pub(super) async fn storage_bytes(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
) -> Result<Option<i64>> {
    let (key, names) = (spec.key.as_str(), &spec.resolved.names);
    let Some(server) = &spec.mongo else {
        return Ok(None);
    };
    let admin = server.admin();
    let cached = ctx.mongo_usage_cache(key);
    if let Some((at, b)) = cached
        && at.elapsed() < ctx.settings().usage_interval
    {
        return Ok(Some(b));
    }
    let mnames = mongo_names(tenant, names)?;
    match admin.db_stats(&mnames.database).await {
        Ok(stats) => {
            let b = i64::try_from(stats.total_bytes()).unwrap_or(i64::MAX);
            ctx.set_mongo_usage_cache(key, b);
            ctx.metrics().server_probed(server.name(), "mongodb", true);
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            ctx.set_mongo_statistics(
                key,
                crate::crd::MongoStatistics {
                    collections: n(stats.collections),
                    objects: n(stats.objects),
                    data_bytes: n(stats.data_size),
                    index_bytes: n(stats.index_size),
                },
            );
            Ok(Some(b))
        }
        Err(e) => {
            ctx.metrics().server_probed(server.name(), "mongodb", false);
            warn!(error = %e, "MongoDB storage not measured; using the last measurement");
            let reported = tenant
                .status
                .as_ref()
                .and_then(|s| s.mongodb.as_ref())
                .and_then(|m| m.storage_bytes);
            Ok(Some(last_measurement(cached.map(|(_, b)| b), reported)))
        }
    }
}

/// The storage to count while MongoDB cannot be measured: this process's last measurement, else
/// the one reported in status (after a restart), else 0 (never measured).
fn last_measurement(cached: Option<i64>, reported: Option<i64>) -> i64 {
    cached.or(reported).unwrap_or(0)
}

/// Stage `mongo`: the tenant's MongoDB database, scoped user, collections, validators and indexes
/// (when enabled), with the password of the Secret the credentials came from.
pub(super) async fn provision(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    creds: &Creds,
    usage: &super::usage::Usage,
) -> Result<Option<MongoResult>> {
    let Some(server) = &spec.mongo else {
        return Ok(None);
    };
    provision_mongo(
        tenant,
        ctx,
        server,
        &spec.resolved.names,
        creds.secret.source(),
        usage.read_only,
        usage.mongo_bytes.unwrap_or(0),
    )
    .await
}

async fn provision_mongo(
    tenant: &Tenant,
    ctx: &Context,
    server: &crate::servers::MongoServer,
    names: &TenantNames,
    existing_secret: Option<&Secret>,
    read_only: bool,
    bytes: i64,
) -> Result<Option<MongoResult>> {
    let admin = server.admin();
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
    let (host, port) = server.tenant_endpoint().clone();
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

/// Drops the tenant's MongoDB database and user (deletion policy Delete), when enabled, on the
/// server it is placed on (or, placement lost, the one whose ownership registry names it).
pub(super) async fn cleanup_mongo(
    tenant: &Tenant,
    ctx: &Context,
    names: &TenantNames,
) -> Result<Option<crate::mongo::MongoCleanup>> {
    if !mongo_enabled(tenant, ctx).unwrap_or(false) {
        return Ok(None);
    }
    let server = match super::place::placed_mongo(tenant, ctx)? {
        Some(s) => s,
        None => match super::place::rediscover_mongo(tenant, ctx).await? {
            Some(s) => s,
            None => return Ok(None),
        },
    };
    let admin = server.admin();
    let m = mongo_names(tenant, names)?;
    // The Secret's MongoDB password is only used to recognise a database created before the
    // ownership registry (see `MongoTenant::adopt_unmarked`).
    let ns = tenant.namespace().unwrap_or_default();
    let secret_name = tenant
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| format!("{}-db", tenant.name_any()));
    let password = Api::<Secret>::namespaced(ctx.client().clone(), &ns)
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
pub(super) fn mongo_tenant(
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

#[cfg(test)]
mod tests {
    /// After a restart (nothing cached) an outage keeps counting what status last reported, so
    /// the PostgreSQL read-only switch of a tenant over its quota because of MongoDB stays on.
    #[test]
    fn an_outage_counts_the_last_known_size() {
        assert_eq!(super::last_measurement(Some(5), Some(9)), 5);
        assert_eq!(super::last_measurement(None, Some(9)), 9);
        assert_eq!(super::last_measurement(None, None), 0);
    }
}
