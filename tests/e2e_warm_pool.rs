//! The warm pool through the operator binary (emulated API server, real PostgreSQL 15):
//! - new `schema` and `database` Tenants claim ready entries (`tenantdb_warm_pool_claims_total`,
//!   `tenantdb_databases_created_total{source="pool"}`), report the latest schema version, work
//!   through their Secret, and the pool refills; deleted Tenants take their (claimed) homes with
//!   them and leave the pool alone;
//! - `kill -9` of the operator at random points while it fills the pool and Tenants claim from it
//!   (seeded; replay with `TENANTDB_RELIABILITY_SEED`): afterwards every Tenant is Ready and owns
//!   its home, the pool holds exactly the wanted entries, each finished and unclaimed, no pool
//!   role exists without its schema and no pool role owns anything in a Tenant's home.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tenantdb_testkit::e2e::{Env, wait_for};
use tenantdb_testkit::localpg::LocalPg;
use tenantdb_testkit::reliability::{count_messages, op_tail, seed};

const POOL_ARGS: &[&str] = &["--warm-pool-schemas", "3", "--warm-pool-databases", "2"];

/// The pool's entries as the catalogs show them: (schema entries, their marks), (database
/// entries, their marks), pool roles.
#[derive(Debug)]
struct PoolState {
    schemas: Vec<(String, Option<String>)>,
    databases: Vec<(String, Option<String>)>,
    roles: Vec<(String, bool, bool)>,
}

async fn pool_state(env: &Env) -> PoolState {
    pool_state_of(&env.pg).await
}

async fn pool_state_of(pg: &LocalPg) -> PoolState {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.admin_url())
        .await
        .unwrap();
    let shared_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tenantdb_shared')",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    let databases: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE 'tenantdb\\_pool\\_%' ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let roles: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname LIKE 'tenantdb\\_pool\\_%' ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    admin.close().await;
    let mut schemas: Vec<(String, Option<String>)> = Vec::new();
    if shared_exists {
        let shared = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg.url("tenantdb_shared"))
            .await
            .unwrap();
        schemas = sqlx::query_as(
            "SELECT nspname::text, obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname LIKE 'tenantdb\\_pool\\_%' ORDER BY 1",
        )
        .fetch_all(&shared)
        .await
        .unwrap();
        shared.close().await;
    }
    PoolState {
        schemas,
        databases,
        roles,
    }
}

/// Whether the pool holds exactly `schemas` and `databases` finished entries and nothing else.
fn pool_is(p: &PoolState, schemas: usize, databases: usize) -> bool {
    let marked = |v: &[(String, Option<String>)]| {
        v.iter().all(|(_, m)| {
            m.as_deref()
                .is_some_and(|m| m.starts_with("tenantdb.io/pool="))
        })
    };
    p.schemas.len() == schemas
        && p.databases.len() == databases
        && marked(&p.schemas)
        && marked(&p.databases)
        && p.roles.len() == schemas
        && p.roles
            .iter()
            .all(|(_, login, password)| !login && !password)
}

async fn wait_pool(env: &Env, schemas: usize, databases: usize, timeout: Duration) -> PoolState {
    wait_for(timeout, "the warm pool filled", || async {
        let p = pool_state(env).await;
        pool_is(&p, schemas, databases).then_some(p)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)))
}

/// Objects in a Tenant's home owned by anyone but its role (a claim not handed over).
async fn foreign_owned(env: &Env, database: &str, schema: &str, role: &str) -> i64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url(database))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1 AND pg_get_userbyid(relowner) <> $2",
    )
    .bind(schema)
    .bind(role)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    n
}

/// Where a Ready Tenant lives: (database, schema, role) from its Secret.
async fn home(env: &Env, ns: &str, name: &str) -> (String, String, String) {
    let t = env.tenants(ns).get(name).await.unwrap();
    let secret = t
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| format!("{name}-db"));
    let v = env
        .secret_values(ns, &secret, &["database", "username"])
        .await
        .unwrap();
    let mut c = env.connect_with_secret(ns, &secret).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut c)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenantdb_schema_migrations")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(n > 3, "{ns}/{name}: the baseline's history in its home");
    let _ = sqlx::Connection::close(c).await;
    (v[0].clone(), schema, v[1].clone())
}

#[tokio::test]
async fn new_tenants_claim_from_the_pool_which_refills() {
    let env = Env::start_with(POOL_ARGS).await;
    wait_pool(&env, 3, 2, Duration::from_secs(120)).await;
    env.ensure_namespace("warm").await;
    for i in 0..3 {
        env.create_tenant(
            "warm",
            &format!("s{i}"),
            json!({"isolation": "schema", "deletionPolicy": "Delete"}),
        )
        .await;
    }
    for i in 0..2 {
        env.create_tenant(
            "warm",
            &format!("d{i}"),
            json!({"isolation": "database", "deletionPolicy": "Delete"}),
        )
        .await;
    }
    let latest = tenantdb::migrate::MigrationSet::bundled().latest_version();
    for name in ["s0", "s1", "s2", "d0", "d1"] {
        let t = env.wait_ready("warm", name, Duration::from_secs(60)).await;
        assert_eq!(
            t.status.as_ref().and_then(|s| s.schema_version),
            latest,
            "{name}"
        );
        let (db, schema, role) = home(&env, "warm", name).await;
        assert_eq!(foreign_owned(&env, &db, &schema, &role).await, 0, "{name}");
    }
    let claims = |kind: &'static str| {
        let env = &env;
        async move {
            env.metric(&format!(
                "tenantdb_warm_pool_claims_total{{server=\"default\",kind=\"{kind}\"}}"
            ))
            .await
        }
    };
    assert_eq!(claims("schema").await, 3.0, "{}", op_tail(&env));
    assert_eq!(claims("database").await, 2.0);
    assert_eq!(
        env.metric("tenantdb_databases_created_total{source=\"pool\"}")
            .await,
        2.0
    );
    // Refilled in the background.
    let refilled = wait_pool(&env, 3, 2, Duration::from_secs(120)).await;
    let entries: BTreeSet<String> = refilled
        .schemas
        .iter()
        .chain(&refilled.databases)
        .map(|(n, _)| n.clone())
        .collect();
    // Deleting the Tenants drops their homes, not the pool.
    for name in ["s0", "s1", "s2", "d0", "d1"] {
        env.delete_tenant("warm", name).await;
    }
    for name in ["s0", "s1", "s2", "d0", "d1"] {
        env.wait_gone("warm", name, Duration::from_secs(60)).await;
    }
    let after = pool_state(&env).await;
    assert!(pool_is(&after, 3, 2), "{after:?}");
    let still: BTreeSet<String> = after
        .schemas
        .iter()
        .chain(&after.databases)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(entries, still, "the pool's entries untouched by deletions");
    let left = tenantdb_testkit::reliability::tenantdb_objects(&env).await;
    assert!(left.is_empty(), "nothing of the deleted Tenants: {left:?}");
}

#[tokio::test]
async fn a_database_server_keeps_its_own_pool_and_none_while_cordoned() {
    let env = Env::start().await;
    let pg = tokio::task::spawn_blocking(|| LocalPg::start_with(Default::default()))
        .await
        .unwrap()
        .unwrap();
    env.add_database_server("pg-b", &pg, json!({})).await;
    let servers: kube::Api<tenantdb::crd::DatabaseServer> = kube::Api::all(env.client.clone());
    let patch = |spec: serde_json::Value| {
        let servers = servers.clone();
        async move {
            servers
                .patch(
                    "pg-b",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({ "spec": spec })),
                )
                .await
                .unwrap();
        }
    };
    patch(json!({"warmPool": {"schemas": 2}})).await;
    let wait_on = |schemas: usize| {
        let pg = &pg;
        let env = &env;
        async move {
            wait_for(Duration::from_secs(120), "pg-b's pool", || async {
                let p = pool_state_of(pg).await;
                pool_is(&p, schemas, 0).then_some(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)));
        }
    };
    wait_on(2).await;
    // The default server keeps none.
    let default = pool_state(&env).await;
    assert!(pool_is(&default, 0, 0), "{default:?}");
    env.ensure_namespace("warm").await;
    env.create_tenant(
        "warm",
        "placed",
        json!({"isolation": "schema", "placement": {"server": "pg-b"}}),
    )
    .await;
    env.wait_ready("warm", "placed", Duration::from_secs(60))
        .await;
    assert_eq!(
        env.metric("tenantdb_warm_pool_claims_total{server=\"pg-b\",kind=\"schema\"}")
            .await,
        1.0
    );
    wait_on(2).await;
    // Cordoned: it takes no new tenants, so it keeps no pool; its tenant stays.
    patch(json!({"cordoned": true})).await;
    wait_on(0).await;
    env.wait_ready("warm", "placed", Duration::from_secs(60))
        .await;
    let mut c = env.connect_with_secret("warm", "placed-db").await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenantdb_schema_migrations")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(n > 3);
    let _ = sqlx::Connection::close(c).await;
}

/// Progress worth killing in: pool builds, claims, provisioning steps.
const PROGRESS: &[&str] = &[
    "warm pool schema built",
    "warm pool database built",
    "schema claimed from the warm pool",
    "database claimed from the warm pool",
    "applying",
    "logged in as the owner role for its schema maintenance",
];

/// A pool entry's builder logged in (the schema entry's role, or the template's owner for a
/// database entry's partitions and the template).
const BUILDING: &[&str] = &["logged in as the owner role for its schema maintenance"];

/// Whether the process whose log is `log` was killed inside a build: its last builder login
/// is not followed by that entry's "built" line.
fn killed_in_build(log: &str) -> bool {
    let login = log.rfind("logged in as the owner role");
    let built = log
        .rfind("warm pool schema built")
        .max(log.rfind("warm pool database built"))
        .max(log.rfind("template database built"));
    match (login, built) {
        (Some(l), Some(b)) => l > b,
        (Some(_), None) => true,
        _ => false,
    }
}

#[tokio::test]
async fn kill_9_while_filling_and_claiming_leaks_nothing() {
    let mut rng = StdRng::seed_from_u64(seed("warm_pool_kill"));
    let mut env = Env::start_with(POOL_ARGS).await;
    env.ensure_namespace("warm").await;
    let mut live: Vec<String> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut kills = 0;
    let mut in_build = 0;
    let mut process_start = 0;
    for round in 0..12 {
        // One or two new Tenants, sometimes a deletion.
        for k in 0..rng.random_range(1..=2) {
            let name = format!("t{round}x{k}");
            let isolation = if rng.random_bool(0.6) {
                "schema"
            } else {
                "database"
            };
            env.create_tenant(
                "warm",
                &name,
                json!({"isolation": isolation, "deletionPolicy": "Delete"}),
            )
            .await;
            live.push(name);
        }
        if live.len() > 3 && rng.random_bool(0.3) {
            let victim = live.remove(rng.random_range(0..live.len() - 2));
            env.delete_tenant("warm", &victim).await;
            deleted.push(victim);
        }
        let log_start = env.operator_log().len();
        if round % 2 == 0 {
            // Into a build: right after the next entry's builder logged in (as the entry's role,
            // or the template's owner for a database entry's partitions), before its mark.
            let base = count_messages(&env.operator_log()[log_start..], BUILDING);
            let deadline = Instant::now() + Duration::from_secs(10);
            while count_messages(&env.operator_log()[log_start..], BUILDING) == base
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            // Kill after 1–6 more progress lines (or, when all is settled, after 5 s: a kill at
            // rest is one of the points too), plus a random delay inside whatever runs then.
            let want = rng.random_range(1..=6usize);
            let base = count_messages(&env.operator_log(), PROGRESS);
            let deadline = Instant::now() + Duration::from_secs(5);
            while count_messages(&env.operator_log(), PROGRESS) < base + want
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        }
        env.kill_operator().await;
        kills += 1;
        if killed_in_build(&env.operator_log()[process_start..]) {
            in_build += 1;
        }
        process_start = env.operator_log().len();
        env.start_operator();
    }
    // The kills that matter: inside a build (an entry left without its mark for the sweep).
    assert!(
        in_build >= 3,
        "only {in_build} of {kills} kills landed inside a build of an entry"
    );
    for name in &live {
        env.wait_ready("warm", name, Duration::from_secs(120)).await;
        let (db, schema, role) = home(&env, "warm", name).await;
        assert_eq!(
            foreign_owned(&env, &db, &schema, &role).await,
            0,
            "{name}: its home is its own"
        );
    }
    for name in &deleted {
        env.wait_gone("warm", name, Duration::from_secs(120)).await;
    }
    let p = wait_pool(&env, 3, 2, Duration::from_secs(180)).await;
    eprintln!(
        "after {kills} kills ({in_build} inside a build): {} Tenants Ready, {} deleted, pool {:?}",
        live.len(),
        deleted.len(),
        (p.schemas.len(), p.databases.len())
    );
    // Nothing of the deleted Tenants, nothing unowned.
    let objects = tenantdb_testkit::reliability::tenantdb_objects(&env).await;
    let owners: BTreeSet<String> = objects.iter().filter_map(|o| o.owner.clone()).collect();
    let expected: BTreeSet<String> = live.iter().map(|n| format!("warm/{n}")).collect();
    assert!(
        objects.iter().all(|o| o.owner.is_some()),
        "orphans: {objects:?}"
    );
    assert_eq!(owners, expected, "objects of exactly the live Tenants");
}
