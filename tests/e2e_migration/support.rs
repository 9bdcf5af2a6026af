//! Helpers of the end-to-end TenantMigration tests: Tenants, TenantMigrations and waits on
//! their status, the tenants' schema versions and Events.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tenantdb::crd::{MigrationPhase, Tenant, TenantMigration};
use tenantdb_testkit::e2e::{Env, tail, wait_for};

pub(crate) const T: Duration = Duration::from_secs(90);
pub(crate) const BUNDLED_LATEST: i64 = 20250101000007;
pub(crate) const V8: i64 = 20250101000008;
pub(crate) const NS: &str = "fleet";

/// The operator binary runs the TenantMigration controller: it logs this line when it starts it,
/// right after the Tenant controller (whose tenants are Ready by now). No in-process stand-in.
pub(crate) async fn assert_binary_runs_migration_controller(env: &Env) {
    wait_for(
        Duration::from_secs(30),
        "\"tenantmigration controller started\" in the operator log",
        || {
            let log = env.operator_log();
            async move {
                log.contains("tenantmigration controller started")
                    .then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
}

pub(crate) async fn create_tenant(
    env: &Env,
    name: &str,
    labels: serde_json::Value,
    isolation: &str,
) {
    env.ensure_namespace(NS).await;
    let t: Tenant = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"isolation": isolation, "deletionPolicy": "Delete"},
    }))
    .unwrap();
    env.tenants(NS)
        .create(&PostParams::default(), &t)
        .await
        .unwrap();
}

pub(crate) fn migrations(env: &Env) -> Api<TenantMigration> {
    env.migrations(NS)
}

pub(crate) async fn create_migration(env: &Env, name: &str, spec: serde_json::Value) {
    env.create_migration(NS, name, spec).await
}

/// Waits until the TenantMigration's status (for its current generation) satisfies `pred`.
pub(crate) async fn wait_migration(
    env: &Env,
    name: &str,
    what: &str,
    pred: impl Fn(&TenantMigration) -> bool,
) -> TenantMigration {
    env.wait_migration(NS, name, what, T, pred).await
}

pub(crate) fn phase(tm: &TenantMigration) -> Option<MigrationPhase> {
    tm.status.as_ref().map(|s| s.phase)
}

pub(crate) async fn schema_version(env: &Env, name: &str) -> Option<i64> {
    env.tenants(NS).get(name).await.ok()?.status?.schema_version
}

pub(crate) async fn wait_schema_version(env: &Env, name: &str, v: i64) {
    wait_for(T, &format!("{name} at schema version {v}"), || async move {
        (schema_version(env, name).await == Some(v)).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- operator log tail ---\n{}",
            tail(&env.operator_log(), 30)
        )
    });
}

/// Whether the tenant's `tm_flags` table (migration v8) exists, seen with its own credentials.
pub(crate) async fn has_flags_table(env: &Env, tenant: &str) -> bool {
    let mut c = env
        .connect_with_secret(NS, &format!("{tenant}-db"))
        .await
        .unwrap();
    sqlx::query_scalar::<_, bool>("SELECT to_regclass('tm_flags') IS NOT NULL")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

pub(crate) async fn event_reasons(env: &Env, migration: &str) -> Vec<String> {
    let evs: Api<Event> = Api::namespaced(env.client.clone(), NS);
    evs.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(migration))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits until the TenantMigration's Events include every one of `reasons` (an Event is published
/// after the status write it reports, so it may come a moment after the status a test waited for).
pub(crate) async fn wait_events(env: &Env, migration: &str, reasons: &[&str]) {
    let what = format!("{migration}: events {reasons:?}");
    if let Err(e) = wait_for(T, &what, || async {
        let seen = event_reasons(env, migration).await;
        reasons
            .iter()
            .all(|r| seen.iter().any(|x| x == r))
            .then_some(())
    })
    .await
    {
        panic!("{e}: {:?}", event_reasons(env, migration).await);
    }
}
