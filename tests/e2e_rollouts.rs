//! TenantMigration rollouts through the real binary: a long rollout runs in the background (it
//! holds no controller slot: with `--concurrency 1` another TenantMigration and new Tenants still
//! progress), deleting a TenantMigration stops its rollout, and a migration that breaks the
//! engine's bookkeeping (or a ConfigMap file with a NUL byte) fails that tenant once instead of
//! being retried as a transient error (no retry storm). The next tenant of a rollout is logged in
//! ahead while one migrates, and that session is closed when the rollout stops. A tenant whose
//! application keeps holding a lock the migration needs goes last in each later pass, so a
//! one-at-a-time rollout migrates the others meanwhile.
//!
//! The operator runs with an empty `--migrations-dir` (no baseline: provisioning 60 tenants is
//! quick) and the TenantMigrations bring their own files.

use tenantdb_testkit::e2e;

use std::time::{Duration, Instant};

use e2e::{Env, tail, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tenantdb::crd::{MigrationPhase, TenantMigration, TenantMigrationState};

const T: Duration = Duration::from_secs(120);
const NS: &str = "rollouts";

fn empty_migrations_dir() -> tempdir::Dir {
    tempdir::Dir::new("tenantdb-empty-migrations")
}

/// A minimal temporary directory (removed on drop).
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn config_map(env: &Env, name: &str, files: serde_json::Value) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": files,
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

fn migrations(env: &Env) -> Api<TenantMigration> {
    env.migrations(NS)
}

async fn create_migration(env: &Env, name: &str, spec: serde_json::Value) {
    env.create_migration(NS, name, spec).await
}

/// A `schema` Tenant `name` labelled `tier: <tier>`.
async fn create_in_tier(env: &Env, name: &str, tier: &str) {
    let t: tenantdb::crd::Tenant = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "namespace": NS, "labels": {"tier": tier}},
        "spec": {"isolation": "schema"},
    }))
    .unwrap();
    env.tenants(NS)
        .create(&PostParams::default(), &t)
        .await
        .unwrap();
}

/// A ConfigMap `tier` with one migration file of `sql`, and a TenantMigration `tier` applying it
/// to the Tenants labelled `tier: <tier>`, one at a time.
async fn serial_rollout(env: &Env, tier: &str, sql: &str) {
    config_map(env, tier, json!({format!("1_{tier}.up.sql"): sql})).await;
    create_migration(
        env,
        tier,
        json!({
            "target": {"selector": {"matchLabels": {"tier": tier}}},
            "source": {"configMap": {"name": tier}},
            "strategy": {"maxParallel": 1},
        }),
    )
    .await;
}

async fn status(env: &Env, name: &str) -> Option<tenantdb::crd::TenantMigrationStatus> {
    migrations(env).get_opt(name).await.ok().flatten()?.status
}

/// Tenants whose schema holds `table` (counted by the superuser: what really happened).
async fn migrated_in_shared(env: &Env, table: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = $1 AND c.relkind = 'r'",
    )
    .bind(table)
    .fetch_one(&mut c)
    .await
    .unwrap()
}

/// The users of the operator's tenant sessions (logged in as a tenant's role): those running a
/// statement, those idle.
async fn tenant_sessions(env: &Env) -> (Vec<String>, Vec<String>) {
    let pool = env.admin_pool().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT usename::text, state FROM pg_stat_activity \
         WHERE application_name LIKE '%:tenant' AND state IN ('active', 'idle')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let of = |st: &str| -> Vec<String> {
        rows.iter()
            .filter(|(_, s)| s == st)
            .map(|(u, _)| u.clone())
            .collect()
    };
    (of("active"), of("idle"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_run_in_the_background_and_stop_when_deleted() {
    let dir = empty_migrations_dir();
    let dir_arg = dir.0.display().to_string();
    let env = Env::start_with(&[
        "--concurrency",
        "1",
        "--migrations-dir",
        &dir_arg,
        "--resync-seconds",
        "30",
    ])
    .await;
    env.ensure_namespace(NS).await;
    const N: usize = 60;
    for i in 0..N {
        create_in_tier(&env, &format!("t{i:02}"), "slow").await;
    }
    create_in_tier(&env, "fast-0", "fast").await;
    for i in 0..N {
        env.wait_ready(NS, &format!("t{i:02}"), T).await;
    }
    env.wait_ready(NS, "fast-0", T).await;

    config_map(
        &env,
        "fast",
        json!({"1_fast.up.sql": "CREATE TABLE fast_t (id int);"}),
    )
    .await;
    serial_rollout(
        &env,
        "slow",
        "SELECT pg_sleep(0.25); CREATE TABLE slow_t (id int);",
    )
    .await;
    // Under way: tenants migrated and the pass's progress written (the pass writes on its ticker,
    // so the first Running status can come a moment after the first tenants are done).
    wait_for(T, "the slow rollout under way", || async {
        let running = status(&env, "slow")
            .await
            .is_some_and(|s| s.phase == MigrationPhase::Running);
        (running && migrated_in_shared(&env, "slow_t").await >= 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    // 0. The next tenant is logged in ahead: while one tenant's migration sleeps, the next
    // tenant's session (its own role) is already open and idle.
    if let Err(e) = wait_for(
        T,
        "the next tenant logged in while one migrates",
        || async {
            let (active, idle) = tenant_sessions(&env).await;
            (active.len() == 1 && idle.iter().any(|u| !active.contains(u))).then_some(())
        },
    )
    .await
    {
        panic!("{e}: {:?}", tenant_sessions(&env).await);
    }

    // 1. With --concurrency 1 another TenantMigration completes while the slow one runs.
    create_migration(
        &env,
        "fast",
        json!({"target": {"tenant": "fast-0"}, "source": {"configMap": {"name": "fast"}}}),
    )
    .await;
    wait_for(T, "fast Succeeded", || async {
        (status(&env, "fast").await?.phase == MigrationPhase::Succeeded).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    let slow_done = migrated_in_shared(&env, "slow_t").await;
    assert!(
        (slow_done as usize) < N,
        "the fast TenantMigration finished while the slow one was still rolling out ({slow_done}/{N})"
    );
    assert_eq!(
        status(&env, "slow").await.map(|s| s.phase),
        Some(MigrationPhase::Running)
    );
    // 2. New Tenants progress too.
    env.create_tenant(NS, "new-0", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(NS, "new-0", T).await;
    assert!(
        (migrated_in_shared(&env, "slow_t").await as usize) < N,
        "a new Tenant became Ready while the rollout was still running"
    );

    // 3. Deleting the TenantMigration stops its rollout: at most the tenant in flight finishes.
    // (The other one goes first: the controller's cache is then empty, which a test-only
    // shortcut once took for "not cached yet, go on".)
    migrations(&env)
        .delete("fast", &DeleteParams::default())
        .await
        .unwrap();
    migrations(&env)
        .delete("slow", &DeleteParams::default())
        .await
        .unwrap();
    let at_delete = migrated_in_shared(&env, "slow_t").await;
    // Measurement window (a sleep is the point here): the count must stop moving.
    let mut last = at_delete;
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stable_since.elapsed() < Duration::from_secs(3) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = migrated_in_shared(&env, "slow_t").await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    assert!(
        last <= at_delete + 1,
        "tenants kept being migrated after the TenantMigration was deleted: {at_delete} at deletion, {last} after"
    );
    assert!((last as usize) < N, "the rollout ran to its end ({last})");
    // The session opened ahead for the tenant that never started is closed with the pass.
    if let Err(e) = wait_for(T, "no tenant session left open", || async {
        let (active, idle) = tenant_sessions(&env).await;
        (active.is_empty() && idle.is_empty()).then_some(())
    })
    .await
    {
        panic!("{e}: {:?}", tenant_sessions(&env).await);
    }
    eprintln!(
        "slow rollout: {slow_done} done when fast completed, {at_delete} at deletion, {last} in the end"
    );
}

/// The sum of a counter over its label values (`prefix` up to and including `{…` selectors).
async fn counter_sum(env: &Env, prefix: &str) -> f64 {
    let (code, body) = e2e::http_get(&env.http_addr().await, "/metrics").await;
    assert_eq!(code, 200, "GET /metrics: {body}");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bookkeeping_and_bad_files_fail_once_without_a_retry_storm() {
    let dir = empty_migrations_dir();
    let dir_arg = dir.0.display().to_string();
    // A short backoff base: a retry storm would show at once.
    let env = Env::start_with(&["--migrations-dir", &dir_arg, "--resync-seconds", "30"]).await;
    env.ensure_namespace(NS).await;
    env.create_tenant(NS, "victim", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(NS, "victim", T).await;
    config_map(
        &env,
        "drop-history",
        json!({"1_drop_history.up.sql": "CREATE TABLE x (id int); DROP TABLE tenantdb_schema_migrations;"}),
    )
    .await;
    config_map(
        &env,
        "nul",
        json!({"1_nul.up.sql": "CREATE TABLE y (id int);\u{0}"}),
    )
    .await;
    let reconciles = "tenantdb_reconciles_total{controller=\"tenantmigration\"";

    // 1. The migration drops the engine's history table: that tenant fails (its own SQL broke the
    // bookkeeping), it is not a transient error to retry.
    create_migration(
        &env,
        "drop-history",
        json!({"target": {"tenant": "victim"}, "source": {"configMap": {"name": "drop-history"}}}),
    )
    .await;
    let st = wait_for(T, "drop-history Failed", || async {
        let st = status(&env, "drop-history").await?;
        (st.phase == MigrationPhase::Failed).then_some(st)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    let entry = st.tenants.iter().find(|e| e.name == "victim").unwrap();
    assert_eq!(entry.state, TenantMigrationState::Failed, "{entry:?}");
    assert!(
        entry
            .message
            .as_deref()
            .is_some_and(|m| m.contains("history table") && m.contains("failed")),
        "{entry:?}"
    );
    assert_eq!(migrated_in_shared(&env, "x").await, 0, "rolled back");
    let before = counter_sum(&env, reconciles).await;
    // Measurement window: nothing should happen in it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let storm = counter_sum(&env, reconciles).await - before;
    assert!(
        storm <= 3.0,
        "a failed tenant is not retried: {storm} TenantMigration reconciles in 10 s"
    );
    migrations(&env)
        .delete("drop-history", &DeleteParams::default())
        .await
        .unwrap();

    // 2. A file with a NUL byte is refused as invalid, and looked at again only with the
    // exponential backoff (base 200 ms, cap 5 s in the test harness: at most ~8 in 10 s).
    create_migration(
        &env,
        "nul",
        json!({"target": {"tenant": "victim"}, "source": {"configMap": {"name": "nul"}}}),
    )
    .await;
    let st = wait_for(T, "nul Failed as invalid", || async {
        let st = status(&env, "nul").await?;
        (st.phase == MigrationPhase::Failed).then_some(st)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert!(
        st.message.as_deref().is_some_and(|m| m.contains("NUL")),
        "{st:#?}"
    );
    let before = counter_sum(&env, reconciles).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let storm = counter_sum(&env, reconciles).await - before;
    assert!(
        storm <= 10.0,
        "an invalid source is re-read with backoff: {storm} TenantMigration reconciles in 10 s"
    );
    assert_eq!(migrated_in_shared(&env, "y").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_ahead_is_not_held_through_a_long_migration() {
    let dir = empty_migrations_dir();
    let dir_arg = dir.0.display().to_string();
    let env = Env::start_with(&["--migrations-dir", &dir_arg, "--resync-seconds", "30"]).await;
    env.ensure_namespace(NS).await;
    for name in ["long-a", "long-b"] {
        create_in_tier(&env, name, "long").await;
    }
    for name in ["long-a", "long-b"] {
        env.wait_ready(NS, name, T).await;
    }
    serial_rollout(
        &env,
        "long",
        "SELECT pg_sleep(9); CREATE TABLE long_t (id int);",
    )
    .await;
    // The first tenant migrates (9 s) with the second one logged in ahead …
    let (first, second) = match wait_for(T, "the second tenant logged in ahead", || async {
        match tenant_sessions(&env).await {
            (active, idle) if active.len() == 1 && idle.len() == 1 && active[0] != idle[0] => {
                Some((active[0].clone(), idle[0].clone()))
            }
            _ => None,
        }
    })
    .await
    {
        Ok(users) => users,
        Err(e) => panic!("{e}: {:?}", tenant_sessions(&env).await),
    };
    // … and that idle session is closed after at most 5 s, while the first one still sleeps.
    if let Err(e) = wait_for(T, "the session opened ahead closed", || async {
        let pool = env.admin_pool().await;
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT usename::text, wait_event::text FROM pg_stat_activity \
             WHERE application_name LIKE '%:tenant'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let first_sleeps = rows
            .iter()
            .any(|(u, w)| *u == first && w.as_deref() == Some("PgSleep"));
        let second_open = rows.iter().any(|(u, _)| *u == second);
        (first_sleeps && !second_open).then_some(())
    })
    .await
    {
        panic!("{e}: {:?}", tenant_sessions(&env).await);
    }
    // The second tenant logs in itself when its turn comes: both migrated.
    wait_for(T, "long Succeeded", || async {
        (status(&env, "long").await?.phase == MigrationPhase::Succeeded).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(migrated_in_shared(&env, "long_t").await, 2);
}

/// A tenant whose application holds a lock the migration needs, on every attempt, does not hold
/// up a one-at-a-time rollout (`maxParallel: 1` stops a pass at its first transient error): it is
/// retried after the others, which are migrated meanwhile, and itself once the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_lock_stays_held_does_not_hold_up_the_rollout() {
    use sqlx::Executor;
    let dir = empty_migrations_dir();
    let dir_arg = dir.0.display().to_string();
    let env = Env::start_with(&[
        "--migrations-dir",
        &dir_arg,
        "--migration-lock-timeout-seconds",
        "1",
    ])
    .await;
    env.ensure_namespace(NS).await;
    let names = ["busy-a", "busy-b", "busy-c"];
    for n in names {
        create_in_tier(&env, n, "busy").await;
    }
    for n in names {
        env.wait_ready(NS, n, T).await;
    }
    // busy-a's application: a transaction holding a lock `ALTER TABLE` conflicts with.
    let mut app = env.connect_with_secret(NS, "busy-a-db").await.unwrap();
    app.execute("CREATE TABLE hold (id int)").await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE hold IN ACCESS SHARE MODE")
        .execute(&mut app)
        .await
        .unwrap();
    serial_rollout(
        &env,
        "busy",
        "ALTER TABLE IF EXISTS hold ADD COLUMN note text;\nCREATE TABLE busy_done (id int);",
    )
    .await;
    let state_of = |s: &tenantdb::crd::TenantMigrationStatus, n: &str| {
        s.tenants
            .iter()
            .find(|e| e.name == n)
            .map(|e| (e.state, e.message.clone().unwrap_or_default()))
    };
    wait_for(T, "busy-b and busy-c migrated, busy-a retrying", || async {
        let s = status(&env, "busy").await?;
        let (a, a_msg) = state_of(&s, "busy-a")?;
        let others = ["busy-b", "busy-c"]
            .iter()
            .all(|n| state_of(&s, n).is_some_and(|(st, _)| st == TenantMigrationState::Succeeded));
        (others && a == TenantMigrationState::Pending && a_msg.contains("lock")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(migrated_in_shared(&env, "busy_done").await, 2);
    // The lock is released: busy-a is migrated by a later pass.
    sqlx::raw_sql("COMMIT").execute(&mut app).await.unwrap();
    wait_for(T, "busy Succeeded", || async {
        (status(&env, "busy").await?.phase == MigrationPhase::Succeeded).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(migrated_in_shared(&env, "busy_done").await, 3);
}
