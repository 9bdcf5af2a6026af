//! Helpers shared by the reliability suite (`tests/reliability_*.rs`): PostgreSQL catalog snapshots of
//! the objects tenantdb owns, statement logging on the throwaway server, condition/event helpers,
//! operator-log parsing, seeded randomness, and the API calls the operator's ServiceAccount made
//! (from the emulator's authorization log: every RBAC check, so an apply that creates its object
//! counts as `patch` and `create`, exactly as kube-apiserver authorizes it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::Value;
use sqlx::Executor;
use tenantdb::crd::Tenant;

use crate::e2e::{Env, tail};

/// Ownership marker prefix the operator writes as COMMENT on every object it creates.
pub const MARKER_PREFIX: &str = "tenantdb.io/owner=";
/// Prefix of derived names (the operator's default `--name-prefix`).
pub const NAME_PREFIX: &str = "tenant_";

/// `true` when the long variants are requested (`TENANTDB_RELIABILITY_LONG=1`).
pub fn long_mode() -> bool {
    std::env::var("TENANTDB_RELIABILITY_LONG").is_ok_and(|v| v == "1" || v == "true")
}

/// The seed of this run: `TENANTDB_RELIABILITY_SEED` if set, else derived from the clock. Printed so
/// that a failing run can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("TENANTDB_RELIABILITY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("[{test}] seed = {s} (replay with TENANTDB_RELIABILITY_SEED={s})");
    s
}

/// One PostgreSQL object that carries a tenantdb marker or a derived-looking name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Obj {
    pub kind: &'static str,
    pub name: String,
    /// `ns/name` from the marker, or None when there is no (tenantdb) marker.
    pub owner: Option<String>,
}

/// Every role, database and schema (in the shared database) that is tenantdb's: marked with the
/// ownership comment, or named with the derived-name prefix (an unmarked one is an orphan).
pub async fn tenantdb_objects(env: &Env) -> BTreeSet<Obj> {
    let pool = env.admin_pool().await;
    let mut out = BTreeSet::new();
    let owner =
        |c: Option<String>| c.and_then(|c| c.strip_prefix(MARKER_PREFIX).map(str::to_string));
    let roles: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
         WHERE rolname LIKE 'tenant\\_%' OR shobj_description(oid, 'pg_authid') LIKE 'tenantdb.io/owner=%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (n, c) in roles {
        out.insert(Obj {
            kind: "role",
            name: n,
            owner: owner(c),
        });
    }
    let dbs: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE datname LIKE 'tenant\\_%' OR shobj_description(oid, 'pg_database') LIKE 'tenantdb.io/owner=%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (n, c) in dbs {
        out.insert(Obj {
            kind: "database",
            name: n,
            owner: owner(c),
        });
    }
    let shared_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tenantdb_shared')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    if shared_exists {
        let shared = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&env.pg.url("tenantdb_shared"))
            .await
            .unwrap();
        let schemas: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT nspname::text, obj_description(oid, 'pg_namespace') FROM pg_namespace \
             WHERE nspname LIKE 'tenant\\_%' OR obj_description(oid, 'pg_namespace') LIKE 'tenantdb.io/owner=%'",
        )
        .fetch_all(&shared)
        .await
        .unwrap();
        for (n, c) in schemas {
            out.insert(Obj {
                kind: "schema",
                name: n,
                owner: owner(c),
            });
        }
        shared.close().await;
    }
    out
}

/// All non-system role names, all database names, and all schema names of the shared database.
pub async fn all_catalog_names(
    env: &Env,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let pool = env.admin_pool().await;
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let dbs: Vec<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let shared = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url("tenantdb_shared"))
        .await;
    let schemas: Vec<String> = match shared {
        Ok(p) => {
            let v = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
            )
            .fetch_all(&p)
            .await
            .unwrap();
            p.close().await;
            v
        }
        Err(_) => vec![],
    };
    (
        roles.into_iter().collect(),
        dbs.into_iter().collect(),
        schemas.into_iter().collect(),
    )
}

/// Turns on `log_statement = 'all'` (ALTER SYSTEM + reload) so the server log shows every statement.
pub async fn log_all_statements(env: &Env) {
    log_settings(env, &[("log_statement", "all")]).await;
}

/// [`log_all_statements`] with the database of each line in the server log (`db=<name> `).
pub async fn log_all_statements_with_database(env: &Env) {
    log_settings(
        env,
        &[
            ("log_statement", "all"),
            ("log_line_prefix", "%m [%p] db=%d "),
        ],
    )
    .await;
}

/// Sets server settings with ALTER SYSTEM and reloads; returns once a new session sees them.
async fn log_settings(env: &Env, settings: &[(&'static str, &'static str)]) {
    let pool = env.admin_pool().await;
    for (name, value) in settings {
        pool.execute(sqlx::AssertSqlSafe(format!(
            "ALTER SYSTEM SET {name} = '{value}'"
        )))
        .await
        .unwrap();
    }
    pool.execute("SELECT pg_reload_conf()").await.unwrap();
    // The reload is asynchronous: wait until a new session sees the settings.
    crate::e2e::wait_for(Duration::from_secs(10), "log settings reloaded", || {
        let url = env.pg.admin_url();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.ok()?;
            for (name, value) in settings {
                let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                    .fetch_one(&mut c)
                    .await
                    .ok()?;
                if v != *value {
                    return None;
                }
            }
            Some(())
        }
    })
    .await
    .unwrap();
    pool.close().await;
}

/// The condition `type_` of a Tenant, if any: (status, reason, message).
pub fn condition(t: &Tenant, type_: &str) -> Option<(String, String, String)> {
    let c = tenantdb::status::find(&t.status.as_ref()?.conditions, type_)?;
    Some((
        c.status.to_string(),
        c.reason.to_string(),
        c.message.clone(),
    ))
}

/// Whether the Tenant is Ready (phase, condition and observedGeneration).
pub fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.phase == tenantdb::crd::TenantPhase::Ready
            && s.observed_generation == t.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// events.k8s.io/v1 Events of a namespace.
pub async fn events(env: &Env, ns: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Warning Events regarding one object with one reason.
pub async fn warning_events_for(env: &Env, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    events(env, ns)
        .await
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// Parsed JSON log lines of the operator (non-JSON lines are skipped).
pub fn log_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

use crate::ops::{message, span_field};

/// Number of `reconcile started` lines per (namespace, tenant) in a log segment.
pub fn reconcile_starts(log: &str) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for v in log_lines(log) {
        if message(&v) == Some("reconcile started")
            && let Some(t) = span_field(&v, "tenant")
        {
            let ns = span_field(&v, "namespace").unwrap_or_default().to_string();
            *m.entry((ns, t.to_string())).or_insert(0) += 1;
        }
    }
    m
}

/// Lines whose message is one of `messages` (to watch provisioning progress).
pub fn count_messages(log: &str, messages: &[&str]) -> usize {
    log_lines(log)
        .iter()
        .filter(|v| message(v).is_some_and(|m| messages.contains(&m)))
        .count()
}

/// The operator log tail for assertion messages.
pub fn op_tail(env: &Env) -> String {
    format!(
        "\n--- operator log tail ---\n{}",
        tail(&env.operator_log(), 40)
    )
}

/// Login with explicit credentials.
pub async fn login(
    env: &Env,
    database: &str,
    user: &str,
    password: &str,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(env.pg.port())
        .database(database)
        .username(user)
        .password(password)
        .connect()
        .await
}

// ---------------------------------------------------------------------------------------------
// The operator's API calls
// ---------------------------------------------------------------------------------------------

/// One authorization the operator needed: (verb, group, resource, subresource), Kubernetes-style.
pub type ApiCall = (String, String, String, String);

/// Every (verb, group, resource, subresource) RBAC checked for the operator's ServiceAccount, with
/// whether it was allowed (a denied one means the chart lacks a grant the operator needs).
pub fn operator_calls(env: &Env) -> BTreeMap<ApiCall, bool> {
    let mut out: BTreeMap<ApiCall, bool> = BTreeMap::new();
    for c in env.operator_authorizations() {
        if !c.resource_request {
            continue;
        }
        let key = (c.verb, c.group, c.resource, c.subresource);
        let allowed = out.get(&key).copied().unwrap_or(true) && c.allowed;
        out.insert(key, allowed);
    }
    out
}

pub use crate::http::http_addr as operator_http_addr;

pub use crate::http::http_get;
