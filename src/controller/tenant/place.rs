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
//!
//! The tenant's MongoDB database is placed the same way among the MongoDB servers
//! ([`place_mongo`]; its ownership marker is the entry in the server's ownership registry).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use tracing::{debug, info};

use super::super::{Context, object_key};
use crate::crd::{Engine, MoveStatus, ServerChoice, Tenant};
use crate::error::{Error, Result};
use crate::quota::EffectiveQuotas;
use crate::servers::placement::{self, Candidate, Need};
use crate::servers::{MongoServer, Registered, Registry, Server};

/// The Tenant's quotas merged with the operator's defaults; a quota that does not parse is an
/// invalid spec. One place for the validate stage, placement and moves.
pub(super) fn effective_quotas(tenant: &Tenant, ctx: &Context) -> Result<EffectiveQuotas> {
    crate::quota::effective(
        tenant.spec.quotas.as_deref(),
        &ctx.settings().quota_defaults,
    )
    .map_err(Error::InvalidSpec)
}

/// What the Tenant asks of a PostgreSQL server: the placement it names (`spec.placement`'s
/// `server` or `selector`, if any) and the connections its quota reserves.
pub(super) fn postgres_request(
    tenant: &Tenant,
    ctx: &Context,
) -> Result<(Option<ServerChoice>, Need)> {
    let quotas = effective_quotas(tenant, ctx)?;
    let need = Need {
        connections: (quotas.connection_limit >= 0).then_some(i64::from(quotas.connection_limit)),
    };
    Ok((postgres_choice(tenant), need))
}

/// The placement `spec.placement` asks for the PostgreSQL part, if any.
fn postgres_choice(tenant: &Tenant) -> Option<ServerChoice> {
    tenant
        .spec
        .placement
        .as_deref()
        .map(crate::crd::Placement::postgres)
}

/// The PostgreSQL server the Tenant's status records, if any.
pub(super) fn recorded(tenant: &Tenant) -> Option<&str> {
    recorded_on(tenant, Engine::Postgres)
}

/// The server of `engine` the Tenant's status records, if any.
pub(super) fn recorded_on(tenant: &Tenant, engine: Engine) -> Option<&str> {
    let p = tenant.status.as_ref()?.placement.as_ref()?;
    match engine {
        Engine::Postgres => p.postgres.as_deref(),
        Engine::Mongodb => p.mongodb.as_deref(),
    }
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
    let (choice, need) = postgres_request(tenant, ctx)?;
    let _deciding = servers.deciding().lock().await;
    let candidates = candidates(ctx, Some(&key));
    let chosen = placement::choose(choice.as_ref(), need, &candidates)
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
    let choice = postgres_choice(tenant);
    mismatch_of(
        choice.as_ref(),
        server.name(),
        server.facts().labels,
        ctx.servers().default_name(),
    )
}

/// [`mismatch`] for the tenant's MongoDB database (`spec.placement.mongodb`).
pub(super) fn mismatch_mongo(
    tenant: &Tenant,
    ctx: &Context,
    server: &MongoServer,
) -> Option<String> {
    let choice = tenant
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.mongodb.as_ref());
    mismatch_of(
        choice,
        server.name(),
        server.facts().labels,
        ctx.mongo_servers().default_name(),
    )
}

fn mismatch_of(
    choice: Option<&crate::crd::ServerChoice>,
    name: &str,
    labels: std::collections::BTreeMap<String, String>,
    default: Option<&str>,
) -> Option<String> {
    // Only the name, labels and default flag matter here (no usage: this runs every reconcile).
    let c = Candidate {
        name: name.to_string(),
        labels,
        ready: true,
        not_ready_reason: None,
        cordoned: false,
        cordon_reason: None,
        default: default == Some(name),
        max_tenants: None,
        max_storage: None,
        max_connections: None,
        tenants: 0,
        storage_bytes: 0,
        connections: 0,
    };
    (!placement::allows(choice, &c, default.is_some()))
        .then(|| format!("spec.placement no longer allows server {name}, where the tenant is"))
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
    if found.len() > 1 {
        // (The login role is cluster-wide: every name of the cluster finds it. A `database`
        // tenant is the same tenant under each; a `schema`/`shared` one only under the names
        // with the same shared database.)
        let dedicated = tenant.spec.isolation == crate::crd::Isolation::Database;
        let mut keys = Vec::new();
        for s in &found {
            let shared =
                (!dedicated).then(|| s.pg().settings().shared_database.as_str().to_string());
            // (Read now; when that fails, the identity its last probe read.)
            keys.push(s.read_identity().await.map(|id| (id, shared)));
        }
        keep_one_per_cluster(&mut found, ctx.servers().default_name(), keys);
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

/// Of the servers found holding one tenant, keeps one name per cluster: several names of one
/// cluster (`DuplicateCluster`) all find its objects; it is found on the name that keeps the
/// tenants, not refused as being on several servers. `keys` are the servers' cluster identities
/// (PostgreSQL, for `schema` and `shared` tenants: with the shared database, so that such a
/// tenant is not switched to another shared database of the cluster — names with different
/// shared databases stay a `Conflict` for them).
fn keep_one_per_cluster<S: Registered, K: PartialEq>(
    found: &mut Vec<Arc<S>>,
    default: Option<&str>,
    keys: Vec<Option<K>>,
) {
    let described: Vec<crate::servers::Found<K>> = found
        .iter()
        .zip(keys)
        .map(|(s, key)| crate::servers::Found {
            name: s.name().to_string(),
            created: s.facts().created,
            is_default: default == Some(s.name()),
            key,
        })
        .collect();
    let keep = crate::servers::one_per_cluster(&described);
    let mut i = 0;
    found.retain(|_| {
        let k = keep.contains(&i);
        i += 1;
        k
    });
}

/// The candidates for a move's target away from `current`: every other server, those known to
/// be `current`'s cluster under another name (one is the other's `DuplicateCluster`, or both the
/// same server's) refused as such — a move between them is no move, so a drain of a duplicate
/// name moves its tenants to another cluster.
pub(crate) fn move_targets<S: Registered>(
    servers: &Registry<S>,
    candidates: Vec<Candidate>,
    current: &str,
) -> Vec<Candidate> {
    let root = |n: &str| {
        servers
            .get(n)
            .and_then(|s| s.facts().duplicate_of.map(|d| d.of))
            .unwrap_or_else(|| n.to_string())
    };
    let home = root(current);
    candidates
        .into_iter()
        .filter(|c| c.name != current)
        .map(|mut c| {
            if root(&c.name) == home && c.cordon_reason.is_none() {
                c.cordoned = true;
                c.cordon_reason = Some(format!(
                    "the same cluster as server {current}, where the tenant is"
                ));
            }
            c
        })
        .collect()
}

/// The default server's shared database (for names that do not depend on it).
pub(super) fn default_shared_database(ctx: &Context) -> Result<crate::naming::Ident> {
    match ctx.servers().default_server() {
        Some(s) => Ok(s.pg().settings().shared_database.clone()),
        None => Ok(crate::naming::Ident::new(
            &ctx.settings().pg_pools.shared_database,
        )?),
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

/// Per server of `engine`, what the `tenants` placed on it use. A Tenant is on the server its
/// status records, else the one `reservations` (this process's placements of that engine, by
/// Tenant key) names; `except` (a Tenant key) is not counted. Storage: PostgreSQL counts the
/// tenant's measured size without its MongoDB part, MongoDB that part; connections are
/// PostgreSQL's. The one aggregation behind placement, the DatabaseServer status and its deletion
/// check (pure; the bench driver measures it).
pub fn usage_by_server<'a>(
    tenants: impl IntoIterator<Item = &'a Tenant>,
    engine: Engine,
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
        let Some(on) =
            recorded_on(t, engine).or_else(|| reservations.get(&key).map(String::as_str))
        else {
            continue;
        };
        let status = t.status.as_ref();
        // The connections its quota reserves on a PostgreSQL server (parsed once per Tenant).
        let connections = match engine {
            Engine::Postgres => crate::quota::effective(t.spec.quotas.as_deref(), defaults)
                .map_or(0, |q| i64::from(q.connection_limit.max(0))),
            Engine::Mongodb => 0,
        };
        // A move in progress (before its commit point) also holds a place on its target.
        if let Some(m) = status.and_then(|s| move_of(s, engine))
            && m.started_at.is_some()
            && m.phase <= crate::crd::MovePhase::CuttingOver
            && !m.to.is_empty()
            && m.to != on
        {
            let e = usage.entry(m.to.clone()).or_default();
            e.tenants += 1;
            e.connections += connections;
        }
        let e = usage.entry(on.to_string()).or_default();
        e.tenants += 1;
        let mongo_bytes = status
            .and_then(|s| s.mongodb.as_ref())
            .and_then(|m| m.storage_bytes)
            .unwrap_or(0);
        match engine {
            Engine::Postgres => {
                let total = status
                    .and_then(|s| s.usage.as_ref())
                    .map_or(0, |u| u.storage_bytes);
                e.storage_bytes += (total - mongo_bytes).max(0);
                e.connections += connections;
            }
            Engine::Mongodb => e.storage_bytes += mongo_bytes,
        }
    }
    usage
}

/// What the Tenants of the (synced) Tenant cache placed on each server of `engine` use.
fn usage_of_fleet(
    ctx: &Context,
    engine: Engine,
    except: Option<&str>,
) -> std::collections::HashMap<String, ServerUsage> {
    let Some(store) = ctx.synced_tenant_store() else {
        return Default::default();
    };
    let tenants = store.state();
    let reservations = match engine {
        Engine::Postgres => ctx.servers().reservations(),
        Engine::Mongodb => ctx.mongo_servers().reservations(),
    };
    let mut usage = usage_by_server(
        tenants.iter().map(|t| t.as_ref()),
        engine,
        &reservations,
        &ctx.settings().quota_defaults,
        except,
    );
    // Moves this process started whose status (in the cache) does not show them yet.
    let moving_to = match engine {
        Engine::Postgres => ctx.servers().moving_to(),
        Engine::Mongodb => ctx.mongo_servers().moving_to(),
    };
    for (key, to) in moving_to {
        let shown = tenants.iter().any(|t| {
            object_key(t.as_ref()) == key
                && t.status
                    .as_ref()
                    .and_then(|s| move_of(s, engine))
                    .is_some_and(|m| m.started_at.is_some() && m.to == to)
        });
        if !shown && except != Some(key.as_str()) {
            usage.entry(to).or_default().tenants += 1;
        }
    }
    usage
}

/// The Tenant's last move of its part on `engine` (`status.move`, `status.mongodbMove`).
pub(crate) fn move_of(status: &crate::crd::TenantStatus, engine: Engine) -> Option<&MoveStatus> {
    match engine {
        Engine::Postgres => status.move_.as_deref(),
        Engine::Mongodb => status.mongodb_move.as_deref(),
    }
}

/// What the Tenants placed on the server `name` of `engine` (recorded in status, or placed by this
/// process) use, from the Tenant cache: also for a server that is not registered.
pub(crate) fn usage_on(ctx: &Context, engine: Engine, name: &str) -> ServerUsage {
    usage_of_fleet(ctx, engine, None)
        .get(name)
        .copied()
        .unwrap_or_default()
}

/// Every server of `engine` as placement sees it: facts, and what the Tenants placed on it use
/// (from the Tenant cache and this process's placements; `except` is not counted).
pub(crate) fn candidates_of(ctx: &Context, engine: Engine, except: Option<&str>) -> Vec<Candidate> {
    let usage = usage_of_fleet(ctx, engine, except);
    match engine {
        Engine::Postgres => candidates_in(ctx.servers(), &usage),
        Engine::Mongodb => candidates_in(ctx.mongo_servers(), &usage),
    }
}

/// The PostgreSQL servers as placement sees them (see [`candidates_of`]).
pub(crate) fn candidates(ctx: &Context, except: Option<&str>) -> Vec<Candidate> {
    candidates_of(ctx, Engine::Postgres, except)
}

fn candidates_in<S: Registered>(
    servers: &Registry<S>,
    usage: &std::collections::HashMap<String, ServerUsage>,
) -> Vec<Candidate> {
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
                Some(Ok(_)) => (!s.is_down(), None),
                Some(Err(e)) => (false, Some(e.clone())),
                None => (false, None),
            };
            let u = usage.get(s.name()).copied().unwrap_or_default();
            Candidate {
                name: s.name().to_string(),
                labels: f.labels,
                ready,
                not_ready_reason: reason.or_else(|| (!ready).then(|| "unreachable".to_string())),
                // Another server's cluster under a second name: no new tenants (not unready:
                // those placed on it before stay).
                cordoned: f.cordoned || f.duplicate_of.is_some(),
                cordon_reason: f.duplicate_of.map(|d| d.message).filter(|_| !f.cordoned),
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

/// The MongoDB server a Tenant's database already lives on (recorded, or placed by this
/// process), without placing it. `None`: not placed (yet).
pub(crate) fn placed_mongo(tenant: &Tenant, ctx: &Context) -> Result<Option<Arc<MongoServer>>> {
    let name = match recorded_on(tenant, Engine::Mongodb) {
        Some(n) => n.to_string(),
        None => match ctx.mongo_servers().reservation(&object_key(tenant)) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    ctx.mongo_servers()
        .get(&name)
        .map(Some)
        .ok_or_else(|| unknown_server(&name))
}

/// Stage `place` for the tenant's MongoDB database (when the tenant has MongoDB): the server its
/// status records or this process placed it on, else the one whose ownership registry names the
/// tenant's database as its own, else a new placement among the MongoDB servers
/// (`spec.placement.mongodb`), under the MongoDB registry's lock.
pub(super) async fn place_mongo(
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Option<Arc<MongoServer>>> {
    if !super::mongo::mongo_enabled(tenant, ctx)? {
        return Ok(None);
    }
    if let Some(server) = placed_mongo(tenant, ctx)? {
        return Ok(Some(server));
    }
    if !ctx.servers().is_synced() {
        return Err(Error::Unschedulable(
            "waiting for the DatabaseServers to be loaded".into(),
        ));
    }
    if ctx.synced_tenant_store().is_none() {
        return Err(Error::Unschedulable(
            "waiting for the Tenant cache (placements are counted from it)".into(),
        ));
    }
    let servers = ctx.mongo_servers();
    let key = object_key(tenant);
    if let Some(server) = rediscover_mongo(tenant, ctx).await? {
        info!(server = %server.name(), "tenant's MongoDB database found on the server whose registry names it");
        servers.reserve(&key, server.name());
        return Ok(Some(server));
    }
    let _deciding = servers.deciding().lock().await;
    let candidates = candidates_of(ctx, Engine::Mongodb, Some(&key));
    let choice = tenant
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.mongodb.as_ref());
    let chosen = placement::choose(choice, Need::default(), &candidates)
        .map_err(|u| Error::Unschedulable(format!("MongoDB: {u}")))?;
    let server = servers
        .get(&chosen.name)
        .ok_or_else(|| unknown_server(&chosen.name))?;
    servers.reserve(&key, server.name());
    info!(server = %server.name(), "tenant's MongoDB database placed");
    Ok(Some(server))
}

/// The MongoDB server whose ownership registry names the tenant's database as the tenant's, if
/// one does (see [`rediscover`]).
pub(super) async fn rediscover_mongo(
    tenant: &Tenant,
    ctx: &Context,
) -> Result<Option<Arc<MongoServer>>> {
    let resolved = crate::identity::resolve(
        tenant,
        &ctx.settings().name_prefix,
        &default_shared_database(ctx)?,
    )?;
    let mnames = super::mongo::mongo_names(tenant, &resolved.names)?;
    let marker = &resolved.names.owner_marker;
    let mut found = Vec::new();
    let mut unreachable = Vec::new();
    for server in ctx.mongo_servers().all() {
        if matches!(server.facts().probe, Some(Err(_))) {
            unreachable.push(server.name().to_string());
            continue;
        }
        match server.admin().registered_owner(&mnames.database).await {
            Ok(Some(owner)) if &owner == marker => found.push(server),
            Ok(_) => {}
            Err(e) => {
                debug!(server = %server.name(), error = %e, "cannot look for the tenant's MongoDB database on this server");
                unreachable.push(server.name().to_string());
            }
        }
    }
    if found.len() > 1 {
        let mut keys = Vec::new();
        for s in &found {
            keys.push(s.read_identity_now().await.ok());
        }
        keep_one_per_cluster(&mut found, ctx.mongo_servers().default_name(), keys);
    }
    match found.len() {
        0 => {}
        1 => return Ok(found.pop()),
        _ => {
            let names: Vec<&str> = found.iter().map(|s| s.name()).collect();
            return Err(Error::Conflict(format!(
                "the tenant's MongoDB database is registered on more than one server ({}): resolve by hand",
                names.join(", ")
            )));
        }
    }
    unreachable.extend(ctx.mongo_servers().unusable().into_iter().map(|(n, _)| n));
    if !unreachable.is_empty() {
        let ns = tenant.namespace().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(ctx.client().clone(), &ns);
        let had_mongo = secrets
            .get_opt(&resolved.secret_name)
            .await?
            .is_some_and(|s| crate::secret::read_key(&s, "mongodbDatabase").is_some());
        if had_mongo {
            return Err(Error::unavailable(format!(
                "the tenant's MongoDB database was provisioned before but its placement is not recorded, and MongoDB server(s) {} that may hold it are unreachable: waiting for them",
                unreachable.join(", ")
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant(name: &str, status: serde_json::Value) -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"isolation": "schema", "quotas": {"maxConnections": 5}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn usage_is_split_by_engine() {
        let tenants = [
            // Placed on both engines; 1000 bytes measured of which 300 are MongoDB's.
            tenant(
                "a",
                json!({"placement": {"postgres": "pg-1", "mongodb": "m-1"},
                       "usage": {"storageBytes": 1000, "percent": 0, "readOnly": false},
                       "mongodb": {"database": "d", "user": "u", "storageBytes": 300}}),
            ),
            // PostgreSQL only.
            tenant(
                "b",
                json!({"placement": {"postgres": "pg-1"},
                       "usage": {"storageBytes": 50, "percent": 0, "readOnly": false}}),
            ),
            // Not recorded: counted where this process placed it.
            tenant("c", json!({})),
            // Not placed anywhere.
            tenant("d", json!({})),
        ];
        let defaults = crate::quota::QuotaDefaults::default();
        let pg_res =
            std::collections::HashMap::from([("Tenant/ns/c".to_string(), "pg-2".to_string())]);
        let m_res =
            std::collections::HashMap::from([("Tenant/ns/c".to_string(), "m-1".to_string())]);
        let pg = usage_by_server(&tenants, Engine::Postgres, &pg_res, &defaults, None);
        assert_eq!(
            pg["pg-1"],
            ServerUsage {
                tenants: 2,
                storage_bytes: 750,
                connections: 10
            }
        );
        assert_eq!(pg["pg-2"].tenants, 1);
        assert_eq!(pg.len(), 2);
        let m = usage_by_server(&tenants, Engine::Mongodb, &m_res, &defaults, None);
        assert_eq!(
            m["m-1"],
            ServerUsage {
                tenants: 2,
                storage_bytes: 300,
                connections: 0
            }
        );
        assert_eq!(m.len(), 1);
        // `except` is not counted.
        let m = usage_by_server(
            &tenants,
            Engine::Mongodb,
            &m_res,
            &defaults,
            Some("Tenant/ns/a"),
        );
        assert_eq!(m["m-1"].tenants, 1);
    }
}
