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
