//! Helpers of the move tests (e2e_moves, e2e_moves_shared, e2e_moves_interplay,
//! reliability_moves): where a Tenant is and its move, starting a move and waiting for it, the
//! operator's move objects left on a server, and a `shared` tenant's rows in the layout.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantdb::crd::{MovePhase, MoveStatus, Tenant, TenantPhase};

use crate::e2e::{Env, wait_for};
use crate::localpg::LocalPg;

/// The layout schema of `shared` tenants (`pg::shared::DEFAULT_SCHEMA`).
pub const LAYOUT_SCHEMA: &str = "tenantdb_rls";

/// A session with the credentials the Tenant's Secret `<name>-db` holds now, read in one GET (a
/// rotation between separate reads could pair one role with the other's password); `None` when
/// there is no such Secret or no login within 5 s.
pub async fn tenant_conn(secrets: &Api<Secret>, name: &str) -> Option<PgConnection> {
    let s = secrets.get_opt(&format!("{name}-db")).await.ok()??;
    let key = |k: &str| tenantdb::secret::read_key(&s, k);
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host(&key("host")?)
        .port(key("port")?.parse().ok()?)
        .username(&key("username")?)
        .password(&key("password")?)
        .database(&key("database")?);
    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&opts))
        .await
        .ok()?
        .ok()
}

/// `rolvaliduntil` of a role on a server (seconds since the epoch; `None`: no limit or no role).
pub async fn valid_until(pg: &LocalPg, role: &str) -> Option<i64> {
    let mut c = PgConnection::connect(&pg.url("postgres")).await.unwrap();
    let v: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_authid WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    v.flatten()
}

/// The Tenant's move status, if any.
pub fn move_of(t: &Tenant) -> Option<MoveStatus> {
    t.status.as_ref()?.move_.as_deref().cloned()
}

/// The server holding the Tenant's PostgreSQL part (`status.placement.postgres`).
pub fn on(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.placement.as_ref()?.postgres.clone()
}

/// Sets the Tenant's `spec.placement` (a move when the server changes).
pub async fn place(env: &Env, ns: &str, name: &str, placement: serde_json::Value) {
    env.tenants(ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"placement": placement}})),
        )
        .await
        .unwrap();
}

/// Waits until the Tenant's move is `Completed` and it is Ready on `to`; panics with its move
/// status and the operator's log tail otherwise.
pub async fn wait_moved(env: &Env, ns: &str, name: &str, to: &str, timeout: Duration) -> Tenant {
    let last = std::sync::Mutex::new(None);
    wait_for(timeout, &format!("{ns}/{name} moved to {to}"), || async {
        let t = env.tenants(ns).get(name).await.ok()?;
        let m = move_of(&t);
        *last.lock().unwrap() = m.clone();
        (m?.phase == MovePhase::Completed
            && on(&t).as_deref() == Some(to)
            && t.status.as_ref()?.phase == TenantPhase::Ready)
            .then_some(t)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{name}'s move: {:?}\n{}",
            last.lock().unwrap(),
            env.important_log_tail(60)
        )
    })
}

/// The operator's move objects left on a server: replication slots, subscriptions and roles of
/// moves, and in each of `dbs` that exists the moves' publications and layout tables whose
/// replica identity is not the default.
pub async fn leftovers(pg: &LocalPg, dbs: &[&str]) -> Vec<String> {
    let mut c = PgConnection::connect(&pg.url("postgres")).await.unwrap();
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE slot_name LIKE 'tenantdb\\_mv\\_%' \
         UNION ALL SELECT 'subscription ' || subname FROM pg_subscription WHERE subname LIKE 'tenantdb\\_mv\\_%' \
         UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname LIKE 'tenantdb\\_mv\\_%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for db in dbs {
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(db)
                .fetch_optional(&mut c)
                .await
                .unwrap();
        if exists.is_none() {
            continue;
        }
        let mut d = PgConnection::connect(&pg.url(db)).await.unwrap();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT 'publication ' || pubname FROM pg_publication WHERE pubname LIKE 'tenantdb\\_mv\\_%' \
             UNION ALL SELECT 'replica identity ' || c.relname || '=' || c.relreplident::text \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relreplident <> 'd'",
        )
        .bind(LAYOUT_SCHEMA)
        .fetch_all(&mut d)
        .await
        .unwrap();
        out.extend(found);
        let _ = d.close().await;
    }
    let _ = c.close().await;
    out
}

/// A `shared` tenant's rows per tenant-scoped table of the layout in the connected database
/// (tables without any left out; empty without the layout): `tenant_id` columns and
/// `saas_tenants.id`, partitions counted with their roots.
pub async fn layout_rows(c: &mut PgConnection, tid: &str) -> BTreeMap<String, i64> {
    let layout: bool = sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL")
        .bind(LAYOUT_SCHEMA)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    if !layout {
        return out;
    }
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, CASE WHEN c.relname = 'saas_tenants' THEN 'id' ELSE 'tenant_id' END \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
            AND (c.relname = 'saas_tenants' OR EXISTS (SELECT 1 FROM pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped))",
    )
    .bind(LAYOUT_SCHEMA)
    .fetch_all(&mut *c)
    .await
    .unwrap();
    for (t, key) in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {LAYOUT_SCHEMA}.{t} WHERE {key} = $1"
        )))
        .bind(tid)
        .fetch_one(&mut *c)
        .await
        .unwrap();
        if n > 0 {
            out.insert(t, n);
        }
    }
    out
}
