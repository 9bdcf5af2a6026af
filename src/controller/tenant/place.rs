//! Stage `place` (first of the pipeline): the PostgreSQL server the tenant lives on.
//!
//! 1. The server its status records (`status.placement.postgres`), or the one this process
//!    placed it on before its status said so.
//! 2. Otherwise the server that holds its ownership markers (its login role, marked as its own):
//!    a Tenant whose status was lost (restored without status, wiped, or from a version before
//!    placement) is found where it is, never provisioned a second time elsewhere. While a server
//!    that may hold it is unreachable, a Tenant that was provisioned before (its credentials
//!    Secret exists) waits instead.
//! 3. Otherwise a new placement ([`crate::servers::placement::choose`]), decided under one lock
//!    and counted at once, so concurrent reconciles never overshoot a server's capacity.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use tracing::{debug, info};

use super::super::{Context, object_key};
use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::servers::Server;
use crate::servers::placement::{self, Candidate, Need};

/// The server the Tenant's status records, if any.
pub(super) fn recorded(tenant: &Tenant) -> Option<&str> {
    tenant
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .and_then(|p| p.postgres.as_deref())
}

/// The server a Tenant already lives on (recorded, or placed by this process), without placing
/// it: for cleanup, health and migrations. `None`: not placed (yet).
pub(crate) fn placed_server(tenant: &Tenant, ctx: &Context) -> Result<Option<Arc<Server>>> {
    let name = match recorded(tenant) {
        Some(n) => n.to_string(),
        None => match ctx.servers().reservation(&object_key(tenant)) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    ctx.servers()
        .get(&name)
        .map(Some)
        .ok_or_else(|| unknown_server(&name))
}

/// The server a provisioned Tenant lives on, for the paths that only look (health after a
/// failure): its placement, or for a Tenant of a version before placement (status without one),
/// the default server. `None` when unknown.
pub(super) fn home(tenant: &Tenant, ctx: &Context) -> Option<Arc<Server>> {
    match placed_server(tenant, ctx) {
        Ok(Some(s)) => Some(s),
        Ok(None) => ctx.servers().default_server(),
        Err(_) => None,
    }
}

fn unknown_server(name: &str) -> Error {
    Error::unavailable(format!(
        "database server {name} holding this tenant is not known (its DatabaseServer is missing or not loaded yet)"
    ))
}

/// Stage `place`: the server for this reconcile (see the module documentation).
pub(super) async fn place(tenant: &Tenant, ctx: &Context) -> Result<Arc<Server>> {
    if let Some(server) = placed_server(tenant, ctx)? {
        return Ok(server);
    }
    let servers = ctx.servers();
    if !servers.is_synced() {
        return Err(Error::Unschedulable(
            "waiting for the DatabaseServers to be loaded".into(),
        ));
    }
    if ctx.synced_tenant_store().is_none() {
        return Err(Error::Unschedulable(
            "waiting for the Tenant cache (placements are counted from it)".into(),
        ));
    }
    let key = object_key(tenant);
    if let Some(server) = rediscover(tenant, ctx).await? {
        info!(server = %server.name(), "tenant found on the server holding its ownership markers");
        servers.reserve(&key, server.name());
        return Ok(server);
    }
    let quotas =
        crate::quota::effective(tenant.spec.quotas.as_ref(), &ctx.settings().quota_defaults)
            .map_err(Error::InvalidSpec)?;
    let need = Need {
        connections: (quotas.connection_limit >= 0).then_some(i64::from(quotas.connection_limit)),
    };
    let _deciding = servers.deciding().lock().await;
    let candidates = candidates(ctx, Some(&key));
    let chosen = placement::choose(tenant.spec.placement.as_ref(), need, &candidates)
        .map_err(|u| Error::Unschedulable(u.to_string()))?;
    let server = servers
        .get(&chosen.name)
        .ok_or_else(|| unknown_server(&chosen.name))?;
    servers.reserve(&key, server.name());
    info!(server = %server.name(), "tenant placed");
    Ok(server)
}

/// Why the Tenant's `spec.placement` does not allow the server it is on (changed after it was
/// placed: moving a tenant is not supported yet), if it does not.
pub(super) fn mismatch(tenant: &Tenant, ctx: &Context, server: &Server) -> Option<String> {
    // Only the name, labels and default flag matter here (no usage: this runs every reconcile).
    let default = ctx.servers().default_name();
    let c = Candidate {
        name: server.name().to_string(),
        labels: server.facts().labels,
        ready: true,
        not_ready_reason: None,
        cordoned: false,
        default: default == Some(server.name()),
        max_tenants: None,
        max_storage: None,
        max_connections: None,
        tenants: 0,
        storage_bytes: 0,
        connections: 0,
    };
    (!placement::allows(tenant.spec.placement.as_ref(), &c, default.is_some())).then(|| {
        format!(
            "spec.placement no longer allows server {}, where the tenant is: it stays there (moving a placed tenant is not supported yet)",
            server.name()
        )
    })
}

/// The server holding the tenant's ownership markers, if one does. Found on two: a conflict
/// (never resolved by guessing).
pub(super) async fn rediscover(tenant: &Tenant, ctx: &Context) -> Result<Option<Arc<Server>>> {
    // (The login role's name does not depend on the server's shared database.)
    let resolved = crate::identity::resolve(
        tenant,
        &ctx.settings().name_prefix,
        &default_shared_database(ctx)?,
    )?;
    let mut found = Vec::new();
    let mut unreachable = Vec::new();
    for server in ctx.servers().all() {
        // A server whose last probe failed is not asked (a pool timeout per placement); it may
        // hold the tenant, though.
        if matches!(server.facts().probe, Some(Err(_))) {
            unreachable.push(server.name().to_string());
            continue;
        }
        match server.pg().holds_tenant(&resolved.names).await {
            Ok(true) => found.push(server),
            Ok(false) => {}
            Err(e) => {
                debug!(server = %server.name(), error = %e, "cannot look for the tenant on this server");
                unreachable.push(server.name().to_string());
            }
        }
    }
    match found.len() {
        0 => {}
        1 => return Ok(found.pop()),
        _ => {
            let names: Vec<&str> = found.iter().map(|s| s.name()).collect();
            return Err(Error::Conflict(format!(
                "the tenant's objects exist on more than one server ({}): resolve by hand",
                names.join(", ")
            )));
        }
    }
    unreachable.extend(ctx.servers().unusable().into_iter().map(|(n, _)| n));
    if !unreachable.is_empty() {
        let ns = tenant.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(ctx.client().clone(), &ns);
        if secrets.get_opt(&resolved.secret_name).await?.is_some() {
            return Err(Error::unavailable(format!(
                "the tenant was provisioned before but its placement is not recorded, and server(s) {} that may hold it are unreachable: waiting for them",
                unreachable.join(", ")
            )));
        }
    }
    Ok(None)
}

/// The default server's shared database (for names that do not depend on it).
pub(super) fn default_shared_database(ctx: &Context) -> Result<crate::naming::Ident> {
    match ctx.servers().default_server() {
        Some(s) => Ok(s.pg().settings().shared_database.clone()),
        None => Ok(crate::naming::Ident::new("tenantdb_shared")?),
    }
}

/// What the Tenants placed on one server use: how many, their measured storage, their
/// connection limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerUsage {
    /// Tenants placed on it.
    pub tenants: i64,
    /// Their `status.usage.storageBytes`.
    pub storage_bytes: i64,
    /// Their effective connection limits (an unlimited tenant counts 0).
    pub connections: i64,
}

/// Per server, what the `tenants` placed on it use. A Tenant is on the server its status records,
/// else the one `reservations` (this process's placements, by Tenant key) names; `except` (a
/// Tenant key) is not counted. The one aggregation behind placement, the DatabaseServer status
/// and its deletion check (pure; the bench driver measures it).
pub fn usage_by_server<'a>(
    tenants: impl IntoIterator<Item = &'a Tenant>,
    reservations: &std::collections::HashMap<String, String>,
    defaults: &crate::quota::QuotaDefaults,
    except: Option<&str>,
) -> std::collections::HashMap<String, ServerUsage> {
    let mut usage: std::collections::HashMap<String, ServerUsage> = Default::default();
    for t in tenants {
        let key = object_key(t);
        if except == Some(key.as_str()) {
            continue;
        }
        let Some(on) = recorded(t).or_else(|| reservations.get(&key).map(String::as_str)) else {
            continue;
        };
        let e = usage.entry(on.to_string()).or_default();
        e.tenants += 1;
        e.storage_bytes += t
            .status
            .as_ref()
            .and_then(|s| s.usage.as_ref())
            .map_or(0, |u| u.storage_bytes);
        e.connections += crate::quota::effective(t.spec.quotas.as_ref(), defaults)
            .map_or(0, |q| i64::from(q.connection_limit.max(0)));
    }
    usage
}

/// What the Tenants of the (synced) Tenant cache placed on each server use.
fn usage_of_fleet(
    ctx: &Context,
    except: Option<&str>,
) -> std::collections::HashMap<String, ServerUsage> {
    let Some(store) = ctx.synced_tenant_store() else {
        return Default::default();
    };
    let tenants = store.state();
    usage_by_server(
        tenants.iter().map(|t| t.as_ref()),
        &ctx.servers().reservations(),
        &ctx.settings().quota_defaults,
        except,
    )
}

/// What the Tenants placed on the server `name` (recorded in status, or placed by this process)
/// use, from the Tenant cache: also for a server that is not registered.
pub(crate) fn usage_on(ctx: &Context, name: &str) -> ServerUsage {
    usage_of_fleet(ctx, None)
        .get(name)
        .copied()
        .unwrap_or_default()
}

/// Every server as placement sees it: facts, and what the Tenants placed on it use (from the
/// Tenant cache and this process's placements; `except` is not counted).
pub(crate) fn candidates(ctx: &Context, except: Option<&str>) -> Vec<Candidate> {
    let servers = ctx.servers();
    let usage = usage_of_fleet(ctx, except);
    servers
        .all()
        .into_iter()
        .map(|s| {
            let f = s.facts();
            let default = servers.default_name() == Some(s.name());
            let (ready, reason) = match &f.probe {
                // The default server is not probed and never refused as unreachable: Tenants
                // without placement have no other server (as before DatabaseServers, an outage
                // shows as DatabaseUnavailable on them, not as Unschedulable).
                None if default => (true, None),
                Some(Ok(_)) => (!s.pg().is_down(), None),
                Some(Err(e)) => (false, Some(e.clone())),
                None => (false, None),
            };
            let u = usage.get(s.name()).copied().unwrap_or_default();
            Candidate {
                name: s.name().to_string(),
                labels: f.labels,
                ready,
                not_ready_reason: reason.or_else(|| (!ready).then(|| "unreachable".to_string())),
                cordoned: f.cordoned,
                default,
                max_tenants: f.max_tenants,
                max_storage: f.max_storage,
                max_connections: f.max_connections,
                tenants: u.tenants,
                storage_bytes: u.storage_bytes,
                connections: u.connections,
            }
        })
        .collect()
}
