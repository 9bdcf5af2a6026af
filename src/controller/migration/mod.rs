//! The TenantMigration controller: rolls a versioned schema migration out to one Tenant or a fleet
//! of Tenants, with bounded parallelism, a failure budget, canaries, pause, rollback, dry runs and
//! per-tenant status. User documentation: `docs/tenantmigration.md`.
//!
//! # Layers
//!
//! - [`migrate_tenant`]: one tenant, one [`migrate::migrate`] call (one transaction under the
//!   tenant's advisory lock), classified into a [`TenantOutcome`];
//! - [`Rollout`]: the rollout logic (parallelism, canary gate, failure budget, pause/stop), generic
//!   over a [`TenantMigrator`] and free of Kubernetes, so that it is tested against a real
//!   PostgreSQL without an API server (`tests/tenant_migration_pg.rs`);
//! - [`run`] / [`reconcile`]: the Kubernetes controller: resolves the spec and the Tenant set, runs
//!   a [`Rollout`] for the tenants not yet at the target version, records `status.schemaVersion` on
//!   each migrated Tenant and reports progress in the TenantMigration's status (batched writes).
//!
//! # Bookkeeping across reconciles
//!
//! Status lists are bounded, so "which tenants are done" is not read from the TenantMigration's
//! status: a tenant is done when its Tenant's `status.schemaVersion` equals the target version
//! (the engine is idempotent: a stale schemaVersion only costs a no-op migration). Failed and
//! blocked tenants are always listed in status and are not retried within a revision.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::{debug, info};

use super::{Context, object_key};
use crate::crd::{Tenant, TenantMigration};
use crate::error::{Error, Result};

mod canary;
mod classify;
mod kube_migrator;
mod pass;
mod progress;
mod reconcile;
mod report;
mod rollout;
mod select;
mod spec;
mod status;
mod task;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_moving;
mod trigger;
mod verdict;

use kube_migrator::KubeMigrator;
pub use kube_migrator::record_schema_version;
pub use progress::*;
pub use reconcile::reconcile;
pub use rollout::*;
pub use spec::*;
pub use status::{invalid_status, render_status};
pub use task::{PassResult, Rollouts};
pub use trigger::TenantTrigger;
pub use verdict::{Verdict, VerdictInput, verdict};
/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "tenantmigration";
/// Field manager of the `status.schemaVersion` writes on Tenants (server-side apply of that one
/// field, next to the Tenant controller's apply of the whole status).
pub const TENANT_FIELD_MANAGER: &str = "tenantdb-migration";
/// Changing this annotation's value starts a new revision: failed tenants are retried.
pub const RETRY_ANNOTATION: &str = "tenantdb.io/retry";
/// Number of tenants listed in status besides failed, blocked and running ones.
pub const MAX_LISTED_TENANTS: usize = 50;
/// Failed and blocked tenants listed in status with their message, versions and times (the most
/// recently finished); the others are listed by name and state only.
pub const MAX_DETAILED_PROBLEMS: usize = 100;
/// Longest per-tenant message kept in status.
const MAX_MESSAGE: usize = 300;

/// Condition types of a TenantMigration.
pub mod conditions {
    /// The rollout is moving (True), or stopped: paused, complete or failed (False).
    pub const PROGRESSING: &str = "Progressing";
    /// Every selected tenant is at the target version.
    pub const COMPLETE: &str = "Complete";
    /// The rollout stopped because of failures, a failed canary or an invalid spec.
    pub const FAILED: &str = "Failed";
}

// ---------------------------------------------------------------------------------------------
// Kubernetes controller
// ---------------------------------------------------------------------------------------------

/// State shared by the reconciles of the TenantMigration controller.
struct State {
    ctx: Arc<Context>,
    store: Store<TenantMigration>,
    shutdown: watch::Receiver<bool>,
    rollouts: Arc<Rollouts>,
    trigger: Arc<TenantTrigger>,
}

/// Starts the TenantMigration controller and runs it until `shutdown` resolves. Reconciles are
/// triggered by TenantMigration changes, by changes of the Tenants they select, by the end of a
/// rollout pass ([`Rollouts`]) and by the resync interval. On shutdown, running passes start no
/// new tenant, let running ones finish, write their status and return.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let migrations: Api<TenantMigration> = Api::all(ctx.client().clone());
    let tenants: Api<Tenant> = Api::all(ctx.client().clone());
    let controller = Controller::new(migrations, watcher::Config::default().any_semantic());
    let store = controller.store();
    let mapper_store = store.clone();
    let trigger = Arc::new(TenantTrigger::default());
    let mapper_trigger = trigger.clone();
    let mut graceful = stop_rx.clone();
    let (rollouts, pass_ended) = Rollouts::new(
        ctx.settings().max_concurrent_rollouts,
        Duration::from_secs(1),
    );
    let controller = controller
        .reconcile_on(pass_ended)
        .watches(
            tenants,
            watcher::Config::default().any_semantic(),
            move |t: Tenant| mapper_trigger.migrations_for(&mapper_store, &t),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(async move {
            let _ = graceful.wait_for(|v| *v).await;
        });
    // TenantMigrations have no finalizer, so no reconcile sees their deletion: bookkeeping of
    // deleted ones (remembered status, backoff, phase gauge) is pruned against the cache.
    {
        let (ctx, store, mut stop) = (ctx.clone(), store.clone(), stop_rx.clone());
        let (rollouts, prune_trigger) = (rollouts.clone(), trigger.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PRUNE_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => prune_deleted(&ctx, &store, &prune_trigger, &rollouts),
                    _ = stop.wait_for(|v| *v) => break,
                }
            }
        });
    }
    let state = Arc::new(State {
        ctx,
        store,
        shutdown: stop_rx,
        rollouts: rollouts.clone(),
        trigger,
    });
    info!("tenantmigration controller started");
    controller
        .run(reconcile_entry, error_policy, state)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(tenantmigration = %obj.name, "reconciled"),
                Err(e) => debug!(error = %e, "tenantmigration reconcile loop error"),
            }
        })
        .await;
    // Passes see the shutdown too: they finish their running tenants and write their status.
    rollouts.join().await;
}

/// How often bookkeeping of deleted TenantMigrations is pruned.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// Forgets per-object state of TenantMigrations that are no longer in the cache, and the
/// remembered facts of Tenants that are gone.
fn prune_deleted(
    ctx: &Context,
    store: &Store<TenantMigration>,
    trigger: &TenantTrigger,
    rollouts: &Rollouts,
) {
    if let Some(tenants) = ctx.synced_tenant_store() {
        let live: HashSet<String> = tenants
            .state()
            .iter()
            .map(|t| object_key(t.as_ref()))
            .collect();
        trigger.retain(|k| live.contains(k));
    }
    let kind = TenantMigration::kind(&());
    let live: std::collections::HashSet<String> = store
        .state()
        .iter()
        .map(|m| object_key(m.as_ref()))
        .collect();
    rollouts.retain(|k| live.contains(k));
    for key in ctx.remembered_keys(&kind) {
        if !live.contains(&key) {
            debug!(%key, "forgetting a deleted TenantMigration");
            ctx.forget(&key);
        }
    }
}

async fn reconcile_entry(tm: Arc<TenantMigration>, state: Arc<State>) -> Result<Action> {
    reconcile(
        tm,
        &state.ctx,
        &state.store,
        &state.shutdown,
        &state.rollouts,
        &state.trigger,
    )
    .await
}

/// Errors: the backoff already set by the reconcile (a pass with transient problems), else a new
/// exponential delay held against early triggers.
fn error_policy(tm: Arc<TenantMigration>, _err: &Error, state: Arc<State>) -> Action {
    let ctx = &state.ctx;
    let key = object_key(tm.as_ref());
    let facts = super::facts_hash(tm.as_ref());
    Action::requeue(ctx.backoff().hold(&key, facts).unwrap_or_else(|| {
        ctx.backoff().next_delay_for(
            &key,
            facts,
            ctx.settings().backoff_base,
            ctx.settings().backoff_max,
        )
    }))
}
