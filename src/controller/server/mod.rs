//! The DatabaseServer reconciler: one reconcile is
//!
//! ```text
//! connect (admin Secret → connection, registered) ─► probe (version) ─► count (tenants placed,
//!   storage, connections) ─► update_status
//! ```
//!
//! repeated every `--server-probe-seconds`, and a finalizer that refuses the deletion of a server
//! still holding tenants.

mod connect;
mod duplicate;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use super::Context;
use crate::crd::{DatabaseServer, DatabaseServerStatus, Engine};
use crate::error::{Error, Result};
use crate::servers::Facts;
use crate::status::{Cond, merge_conditions, types};

/// Finalizer refusing the deletion of a server that holds tenants.
pub const FINALIZER: &str = "tenantdb.io/server";
const CONTROLLER: &str = "databaseserver";
/// How long the operator waits for the DatabaseServer cache before it places on the default
/// server alone.
const LIST_PATIENCE: Duration = Duration::from_secs(10);

/// Starts the DatabaseServer controller and runs it until shutdown. Marks the server registry
/// synced once every DatabaseServer listed at start-up has been reconciled once.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<DatabaseServer> = Api::all(ctx.client().clone());
    let controller = Controller::new(api, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(4))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let ctx_synced = ctx.clone();
    tokio::spawn(async move {
        // The DatabaseServers cannot be listed (CRD not installed, RBAC of an older chart):
        // after this long, the operator goes on with the default server alone.
        let give_up = std::time::Instant::now() + LIST_PATIENCE;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => {
                    warn!(
                        "the DatabaseServer cache never synced; placing on the default server only"
                    );
                    ctx_synced.servers().mark_synced();
                    return;
                }
                Err(_) if std::time::Instant::now() > give_up => {
                    warn!(
                        "DatabaseServers cannot be listed (is the CRD installed and the chart's RBAC current?); placing on the default server only until they can"
                    );
                    ctx_synced.servers().mark_synced();
                    return;
                }
                Err(_) => {}
            }
        }
        // Every server in the cache looked at once (registered, or found unusable): a tenant
        // whose placement was lost is then looked for on all of them before it could be placed
        // anew. (A server deleted meanwhile no longer counts.)
        loop {
            let pending = store
                .state()
                .iter()
                .filter(|d| !ctx_synced.servers().was_seen(&d.name_any()))
                .count();
            if pending == 0 {
                info!(servers = store.state().len(), "database servers loaded");
                ctx_synced.servers().mark_synced();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "database server reconcile loop error");
            }
        })
        .await;
}

/// One reconcile of one DatabaseServer.
pub async fn reconcile(ds: Arc<DatabaseServer>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", controller = CONTROLLER, server = %ds.name_any());
    let started = std::time::Instant::now();
    let api: Api<DatabaseServer> = Api::all(ctx.client().clone());
    let ctx2 = ctx.clone();
    let result = finalizer(&api, FINALIZER, ds.clone(), |event| async move {
        match event {
            FinalizerEvent::Apply(d) => apply(d, ctx2).await,
            FinalizerEvent::Cleanup(d) => cleanup(d, ctx2).await,
        }
    })
    .instrument(span)
    .await;
    let result = result.map_err(super::finalizer_error);
    ctx.metrics().observe_reconcile(
        CONTROLLER,
        started.elapsed(),
        result.as_ref().err().map(|e| e.category()),
    );
    result
}

/// Errors: looked at again on the probe interval (the probe is the retry).
pub fn error_policy(_ds: Arc<DatabaseServer>, _err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.settings().server_probe_interval)
}

/// What one pass found (stage outputs, for `update_status`).
struct Observed {
    /// `Ok(version)`, or why the server cannot be used.
    probe: std::result::Result<String, (String, String)>,
    tenants: i64,
    storage_bytes: i64,
    connections: i64,
    schedulable: Option<String>,
    /// PostgreSQL: `wal_level`, when the probe read it.
    wal_level: Option<String>,
    /// While draining: tenants still placed on the server, and of those, moving away.
    draining: Option<(i64, i64)>,
    /// Whether `schedulable` says it is another server's cluster.
    duplicate: bool,
}

async fn apply(ds: Arc<DatabaseServer>, ctx: Arc<Context>) -> Result<Action> {
    let name = ds.name_any();
    let mut wal_level = None;
    let mut duplicate = None;
    // The `--default-server` name is reserved for both engines' default servers, whether or not
    // the operator has them (as the chart refuses it): Tenants record it.
    let reserved = ctx.settings().default_server == name;
    let probe = if reserved {
        Err((
            "NameReserved".to_string(),
            format!(
                "{name} is the name of the operator's default server (--default-server): choose another name"
            ),
        ))
    } else {
        let facts = facts_of(&ds);
        let probed = match ds.spec.engine {
            Engine::Postgres => match connect::register(&ds, &ctx, facts).await {
                Ok(server) => {
                    let p = server.probe().await;
                    if p.is_ok() {
                        wal_level = crate::moves::sql::wal_level(server.pg()).await.ok();
                        duplicate = duplicate::postgres(&ctx, &server).await;
                        server.set_duplicate_of(duplicate.clone());
                    }
                    Ok(p)
                }
                Err(e) => Err(e),
            },
            Engine::Mongodb => match connect::register_mongo(&ds, &ctx, facts).await {
                Ok(server) => {
                    let p = server.probe().await;
                    if p.is_ok() {
                        duplicate = duplicate::mongodb(&ctx, &server).await;
                        server.set_duplicate_of(duplicate.clone());
                    }
                    Ok(p)
                }
                Err(e) => Err(e),
            },
        };
        match probed {
            Ok(p) => p.map_err(|e| ("Unreachable".to_string(), e)),
            Err(e) => Err((e.category().to_string(), e.to_string())),
        }
    };
    // Looked at once (registered or found unusable): placement may rely on the registry.
    ctx.servers().mark_seen(&name);
    if reserved || ctx.synced_tenant_store().is_none() {
        // Not a server of this operator (or its tenants not counted yet): no counts to report.
        let observed = Observed {
            probe,
            tenants: 0,
            storage_bytes: 0,
            connections: 0,
            schedulable: Some(if reserved {
                "not used: the name of the default server".to_string()
            } else {
                "counting the tenants placed on it".to_string()
            }),
            wal_level,
            draining: None,
            duplicate: false,
        };
        update_status(&ds, &ctx, &observed, None).await?;
        return Ok(Action::requeue(ctx.settings().server_probe_interval));
    }
    let (tenants, storage_bytes, connections, schedulable) =
        match crate::controller::tenant::candidates_of(&ctx, ds.spec.engine, None)
            .into_iter()
            .find(|c| c.name == name)
        {
            Some(c) => {
                let why = crate::servers::placement::choose(
                    Some(&crate::crd::ServerChoice {
                        server: Some(name.clone()),
                        selector: None,
                    }),
                    // Room for a tenant with one connection at least.
                    crate::servers::placement::Need {
                        connections: (ds.spec.engine == Engine::Postgres).then_some(1),
                    },
                    std::slice::from_ref(&c),
                )
                .err()
                .map(|u| u.to_string());
                (
                    c.tenants,
                    c.storage_bytes,
                    c.connections,
                    duplicate.as_ref().map(|d| d.message.clone()).or(why),
                )
            }
            None => (0, 0, 0, Some("not registered".to_string())),
        };
    let draining = ds
        .spec
        .drain
        .as_ref()
        .map(|_| (tenants, moving_from(&ctx, ds.spec.engine, &name)));
    if draining.is_some() {
        unsettle_placed(&ctx, &ds);
    }
    let observed = Observed {
        probe,
        tenants,
        storage_bytes,
        connections,
        schedulable,
        wal_level,
        draining,
        duplicate: duplicate.is_some(),
    };
    update_status(&ds, &ctx, &observed, None).await?;
    Ok(Action::requeue(ctx.settings().server_probe_interval))
}

/// Makes every Tenant placed on the draining server `ds` (its engine's part) do a full reconcile
/// at its next pass, and queues that pass once per generation of `ds` (every pass of this
/// controller while draining would otherwise queue every tenant again; queued at all because the
/// tenant controller's watch of DatabaseServers may have seen the drain before the registry had
/// it, and a reconcile then found nothing to do): a drain starts their moves.
fn unsettle_placed(ctx: &Context, ds: &DatabaseServer) {
    let (engine, name) = (ds.spec.engine, ds.name_any());
    let placed = crate::controller::tenant::unsettle_placed_on(ctx, engine, &name);
    if ctx.first_drain_pass(
        &format!("{}/{name}", engine.as_str()),
        ds.metadata.uid.as_deref(),
        ds.metadata.generation,
    ) {
        for t in placed {
            ctx.wake_tenant(t);
        }
    }
}

/// Tenants whose move (of their part on `engine`) away from the server `name` is in progress
/// (by their status in the Tenant cache).
fn moving_from(ctx: &Context, engine: Engine, name: &str) -> i64 {
    let moving = crate::controller::tenant::moving_by_status(ctx, engine, name);
    i64::try_from(moving.len()).unwrap_or(i64::MAX)
}

/// Labels, capacity and cordon of a DatabaseServer, as placement uses them.
pub(crate) fn facts_of(ds: &DatabaseServer) -> Facts {
    let c = &ds.spec.capacity;
    Facts {
        labels: ds.labels().clone(),
        max_tenants: c.max_tenants,
        max_storage: c
            .max_storage
            .as_deref()
            .and_then(crate::quota::parse_quantity),
        max_connections: c.max_connections,
        // Draining: no new tenants either.
        cordoned: ds.spec.cordoned || ds.spec.drain.is_some(),
        draining: ds
            .spec
            .drain
            .as_ref()
            .map(|d| d.max_concurrent_moves.max(1)),
        generation: ds.metadata.generation,
        uid: ds.metadata.uid.clone(),
        probe: None,
        created: ds
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        duplicate_of: None,
        warm_pool: ds
            .spec
            .warm_pool
            .as_ref()
            .map(|w| crate::pg::warm::WarmPool {
                schemas: w.schemas.unwrap_or(0).max(0) as u32,
                databases: w.databases.unwrap_or(0).max(0) as u32,
            })
            .unwrap_or_default(),
    }
}

/// Deletion: refused while tenants are placed on the server (the finalizer stays; the
/// `DeletionBlocked` condition says how many); then the server is forgotten.
async fn cleanup(ds: Arc<DatabaseServer>, ctx: Arc<Context>) -> Result<Action> {
    let name = ds.name_any();
    if ctx.settings().default_server == name {
        // Never a server of this operator (NameReserved): nothing to keep it for, and the
        // default server it is named like is left alone.
        ctx.servers().mark_seen(&name);
        return Ok(Action::await_change());
    }
    // After a restart a deleting server is registered here, so that the tenants still on it
    // keep working until they are gone (an unusable configuration is only noted).
    // (An error is recorded by `register`; the deletion check below does not need the server.)
    let cordoned = Facts {
        cordoned: true,
        ..facts_of(&ds)
    };
    match ds.spec.engine {
        Engine::Postgres if ctx.servers().get(&name).is_none() => {
            let _ = connect::register(&ds, &ctx, cordoned.clone()).await;
        }
        Engine::Mongodb if ctx.mongo_servers().get(&name).is_none() => {
            let _ = connect::register_mongo(&ds, &ctx, cordoned.clone()).await;
        }
        _ => {}
    }
    ctx.servers().mark_seen(&name);
    if ctx.synced_tenant_store().is_none() {
        return Err(Error::unavailable(
            "waiting for the Tenant cache before deciding whether the server is empty",
        ));
    }
    // Under the placement lock: no placement decided before the cordon lands here after the count.
    // Being deleted: no new tenants (as if cordoned), whatever the spec says.
    let engine = ds.spec.engine;
    let (_deciding, probe) = match engine {
        Engine::Postgres => {
            let lock = ctx.servers().deciding().lock().await;
            let server = ctx.servers().get(&name);
            if let Some(s) = &server {
                s.set_spec_facts(cordoned);
            }
            (lock, server.and_then(|s| s.facts().probe))
        }
        Engine::Mongodb => {
            let lock = ctx.mongo_servers().deciding().lock().await;
            let server = ctx.mongo_servers().get(&name);
            if let Some(s) = &server {
                s.set_spec_facts(cordoned);
            }
            (lock, server.and_then(|s| s.facts().probe))
        }
    };
    // Counted from the Tenants themselves (recorded placement or this process's placements),
    // whether or not the server is registered.
    let placed = crate::controller::tenant::usage_on(&ctx, engine, &name);
    let held = placed.tenants;
    if held > 0 {
        let message = format!(
            "{held} tenant(s) are placed on this server: delete or move them first (the DatabaseServer is kept until then)"
        );
        let observed = Observed {
            probe: probe
                .unwrap_or_else(|| Err("not probed".into()))
                .map_err(|e| ("Unreachable".to_string(), e)),
            tenants: held,
            storage_bytes: placed.storage_bytes,
            connections: placed.connections,
            schedulable: Some("being deleted".into()),
            wal_level: None,
            draining: None,
            duplicate: false,
        };
        if update_status(&ds, &ctx, &observed, Some(&message)).await? {
            ctx.event(
                ds.as_ref(),
                EventType::Warning,
                "DeletionBlocked",
                "Delete",
                message.clone(),
            )
            .await;
        }
        return Err(Error::Conflict(message));
    }
    match engine {
        Engine::Postgres => ctx.servers().remove(&name),
        Engine::Mongodb => ctx.mongo_servers().remove(&name),
    }
    info!(server = %name, "database server removed");
    Ok(Action::await_change())
}

/// Writes the status when it changed (`lastProbe` alone does not make a write). Returns whether
/// it wrote.
async fn update_status(
    ds: &DatabaseServer,
    ctx: &Context,
    o: &Observed,
    blocked: Option<&str>,
) -> Result<bool> {
    let prev = ds.status.clone().unwrap_or_default();
    let generation = ds.meta().generation;
    let (ready, version) = match &o.probe {
        Ok(v) => (
            Cond::new(
                types::READY,
                true,
                "Reachable",
                match ds.spec.engine {
                    Engine::Postgres => format!("PostgreSQL {v}"),
                    Engine::Mongodb => format!("MongoDB {v}"),
                },
            ),
            Some(v.clone()),
        ),
        Err((reason, message)) => (
            Cond::new(
                types::READY,
                false,
                reason,
                crate::error::first_line(message),
            ),
            prev.version.clone(),
        ),
    };
    let schedulable = match &o.schedulable {
        None => Cond::new(
            types::SCHEDULABLE,
            true,
            "HasRoom",
            "new tenants can be placed",
        ),
        Some(why) => Cond::new(
            types::SCHEDULABLE,
            false,
            if o.duplicate {
                "DuplicateCluster"
            } else if ds.spec.cordoned
                || ds.spec.drain.is_some()
                || ds.meta().deletion_timestamp.is_some()
            {
                "Cordoned"
            } else {
                "NoRoom"
            },
            why.clone(),
        ),
    };
    let mut conds = vec![ready, schedulable];
    if let Some((left, moving)) = o.draining {
        conds.push(if left == 0 {
            Cond::new(
                types::DRAINED,
                true,
                "Drained",
                "no tenant is placed on this server",
            )
        } else {
            Cond::new(
                types::DRAINED,
                false,
                "Draining",
                format!("{left} tenant(s) left on this server, {moving} moving away"),
            )
        });
    }
    if let Some(w) = &o.wal_level {
        conds.push(if w == "logical" {
            Cond::new(
                types::LOGICAL_REPLICATION,
                true,
                "WalLevelLogical",
                "wal_level=logical: tenants can be moved off this server",
            )
        } else {
            Cond::new(
                types::LOGICAL_REPLICATION,
                false,
                "WalLevelTooLow",
                format!(
                    "wal_level={w}: tenants cannot be moved off this server until wal_level=logical (a restart)"
                ),
            )
        });
    }
    if let Some(m) = blocked {
        conds.push(Cond::new(types::DELETION_BLOCKED, true, "TenantsPlaced", m));
    }
    let status = DatabaseServerStatus {
        observed_generation: generation,
        conditions: merge_conditions(&prev.conditions, &conds, generation, Timestamp::now()),
        reachable: o.probe.is_ok(),
        wal_level: o.wal_level.clone().or(prev.wal_level.clone()),
        version,
        tenants: o.tenants,
        storage_bytes: o.storage_bytes,
        connections_reserved: o.connections,
        last_probe: prev.last_probe.clone(),
    };
    if ds.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    let status = DatabaseServerStatus {
        last_probe: Some(Timestamp::now().to_string()),
        ..status
    };
    let api: Api<DatabaseServer> = Api::all(ctx.client().clone());
    let patch = json!({
        "apiVersion": DatabaseServer::api_version(&()),
        "kind": DatabaseServer::kind(&()),
        "metadata": { "name": ds.name_any() },
        "status": status,
    });
    if let Err(e) = api
        .patch_status(
            &ds.name_any(),
            &PatchParams::apply(&format!("{}-status", ctx.settings().field_manager)).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        warn!(server = %ds.name_any(), error = %e, "could not write the DatabaseServer status");
        return Err(e.into());
    }
    ctx.metrics().status_written(CONTROLLER);
    Ok(true)
}
