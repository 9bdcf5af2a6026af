//! Shared test fixtures: one throwaway PostgreSQL cluster per test binary.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::localpg::LocalPg;
use tenantdb::naming::{Ident, TenantNames, tenant_names};
use tenantdb::pg::{PgAdmin, PgSettings};

/// The cluster of this test binary (started on first use; stopped by its reaper at exit).
pub fn pg() -> &'static LocalPg {
    static PG: OnceLock<LocalPg> = OnceLock::new();
    PG.get_or_init(|| LocalPg::start().expect("start throwaway PostgreSQL"))
}

pub fn admin() -> Arc<PgAdmin> {
    Arc::new(
        PgAdmin::new(PgSettings {
            admin_url: pg().admin_url(),
            shared_database: Ident::new("tenantdb_shared").unwrap(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    )
}

pub fn names(ns: &str, name: &str, isolation: tenantdb::crd::Isolation) -> TenantNames {
    tenant_names(
        "tenant_",
        ns,
        name,
        isolation,
        None,
        &Ident::new("tenantdb_shared").unwrap(),
    )
    .unwrap()
}

/// A tenant's desired state with a fresh password and no quotas ([`Desired::simple`]).
///
/// [`Desired::simple`]: tenantdb::pg::plan::Desired::simple
pub fn desired(
    ns: &str,
    name: &str,
    isolation: tenantdb::crd::Isolation,
) -> tenantdb::pg::plan::Desired {
    tenantdb::pg::plan::Desired::simple(
        names(ns, name, isolation),
        tenantdb::scram::generate_password(),
    )
}

/// The plan of one more reconcile (empty when converged).
pub async fn replan(
    admin: &PgAdmin,
    d: &tenantdb::pg::plan::Desired,
) -> Vec<tenantdb::pg::plan::Step> {
    let observed = admin.observe(&d.names, &d.password).await.expect("observe");
    tenantdb::pg::plan::plan(d, &observed).expect("plan")
}

/// Connects as `user` with `password` over TCP (SCRAM).
pub async fn connect_as(
    db: &str,
    user: &str,
    password: &str,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(pg().port())
        .database(db)
        .username(user)
        .password(password)
        .connect()
        .await
}

/// Observes, plans and applies `desired` (one reconcile's PostgreSQL part); returns the steps.
pub async fn provision(
    admin: &PgAdmin,
    desired: &tenantdb::pg::plan::Desired,
) -> Vec<tenantdb::pg::plan::Step> {
    let observed = admin
        .observe(&desired.names, &desired.password)
        .await
        .expect("observe");
    let steps = tenantdb::pg::plan::plan(desired, &observed).expect("plan");
    admin.apply(desired, &steps).await.expect("apply");
    steps
}

/// Migrates the tenant to the latest version of `set` and keeps `months_ahead` partitions ahead of
/// this month's, logged in as the tenant, as the operator does after provisioning; returns the
/// number of migration steps that ran and the partitions created.
pub async fn migrate_as_tenant(
    admin: &PgAdmin,
    d: &tenantdb::pg::plan::Desired,
    set: &tenantdb::migrate::MigrationSet,
    months_ahead: u32,
) -> (usize, Vec<String>) {
    let n = &d.names;
    let mut s = admin
        .login(
            &n.database,
            &tenantdb::pg::session::Credentials::new(n.role.clone(), d.password.clone()),
            None,
        )
        .await
        .expect("login as the tenant");
    let target = tenantdb::migrate::MigrationTarget {
        schema: n.schema.as_str(),
        owner_role: n.role.as_str(),
        lock_key: tenantdb::identity::lock_key(n),
    };
    let report = tenantdb::migrate::migrate(&mut s, set, &target, set.latest_version(), false)
        .await
        .expect("migrate");
    let parts = tenantdb::partitions::maintain(
        &mut s,
        n.schema.as_str(),
        n.role.as_str(),
        tenantdb::partitions::today(),
        months_ahead,
        None,
    )
    .await
    .expect("partition maintenance");
    s.close().await;
    (report.applied.len(), parts.created)
}
