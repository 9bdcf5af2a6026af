//! Limits through the real binary: `--max-tenants` is never overshot by concurrent reconciles;
//! Tenant names of 64–253 characters (valid Kubernetes names) get a working Secret with valid
//! labels; Event notes stay under the Events API's 1 KiB; a re-created schema whose first
//! migration failed (the tenant's connection limit taken) is migrated by a later reconcile, also
//! of another operator process (`status.baselineDue`).

use tenantdb_testkit::e2e;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, tail, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use tenantdb::crd::{Tenant, TenantPhase};

const T: Duration = Duration::from_secs(120);

fn tenant(ns: &str, name: &str, spec: serde_json::Value) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

fn reason(t: &Tenant, type_: &str) -> Option<String> {
    tenantdb::status::find(&t.status.as_ref()?.conditions, type_).map(|c| c.reason.to_string())
}

/// Tenant roles in PostgreSQL (what was really provisioned).
async fn tenant_roles(env: &Env) -> i64 {
    let pool = env.admin_pool().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenant\\_limits\\_%' AND rolname NOT LIKE '%\\_b'",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tenants_is_never_overshot_by_concurrent_reconciles() {
    let env = Env::start_with(&["--max-tenants", "10", "--concurrency", "8"]).await;
    let ns = "limits";
    env.ensure_namespace(ns).await;
    // 30 at once (creates concurrently, so the reconciles race).
    let api = env.tenants(ns);
    let creates = (0..30).map(|i| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &tenant(ns, &format!("m{i:02}"), json!({"isolation": "schema", "autoMigrate": false, "deletionPolicy": "Delete"})),
            )
            .await
            .unwrap()
        }
    });
    futures::future::join_all(creates).await;
    // Every Tenant ends up either Ready or waiting with the limit's reason.
    let (ready, waiting) = wait_for(T, "30 tenants Ready or waiting", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let ready: Vec<String> = list
            .items
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|s| s.phase == TenantPhase::Ready)
            })
            .map(|t| t.metadata.name.clone().unwrap())
            .collect();
        let waiting = list
            .items
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|s| s.phase == TenantPhase::Pending)
                    && reason(t, "Ready").as_deref() == Some("TenantLimitReached")
            })
            .count();
        // Settled: every Tenant is either provisioned or says it waits for the limit.
        (ready.len() + waiting == 30).then_some((ready, waiting))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(
        ready.len(),
        10,
        "exactly the limit is provisioned: {ready:?}"
    );
    assert_eq!(waiting, 20);
    assert_eq!(tenant_roles(&env).await, 10, "no role beyond the limit");
    let waiter = api.get("m29").await.unwrap();
    if !ready.contains(&"m29".to_string()) {
        let msg = waiter
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .message
            .clone();
        assert!(msg.contains("--max-tenants"), "{msg}");
        assert_eq!(reason(&waiter, "Degraded").as_deref(), Some("AsExpected"));
    }
    // Room appears: one of the waiting Tenants is provisioned, still never more than 10.
    api.delete(&ready[0], &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone(ns, &ready[0], T).await;
    wait_for(T, "a waiting tenant takes the freed place", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let n = list
            .items
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|s| s.phase == TenantPhase::Ready)
            })
            .count();
        (n == 10).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(tenant_roles(&env).await, 10);
}

/// More reconcile slots than places: the first wave of reconciles all run at once, before any
/// of them has written a status — only the admission lock keeps them from overshooting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tenants_below_the_concurrency_is_not_overshot_by_the_first_wave() {
    let env = Env::start_with(&["--max-tenants", "3", "--concurrency", "8"]).await;
    let ns = "limits";
    env.ensure_namespace(ns).await;
    let api = env.tenants(ns);
    let creates = (0..12).map(|i| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &tenant(
                    ns,
                    &format!("w{i:02}"),
                    json!({"isolation": "schema", "autoMigrate": false}),
                ),
            )
            .await
            .unwrap()
        }
    });
    futures::future::join_all(creates).await;
    let ready = wait_for(T, "12 tenants Ready or waiting", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .is_some_and(|s| s.phase == TenantPhase::Ready)
            })
            .count();
        let waiting = list
            .items
            .iter()
            .filter(|t| reason(t, "Ready").as_deref() == Some("TenantLimitReached"))
            .count();
        (ready + waiting == 12).then_some(ready)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(ready, 3);
    assert_eq!(tenant_roles(&env).await, 3, "no role beyond the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_get_a_working_secret_and_event_notes_stay_under_1kib() {
    // A migration whose error message is long: the MigrationFailed Event must still be published.
    let dir = std::env::temp_dir().join(format!("tenantdb-long-error-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("1_long_error.up.sql"),
        format!(
            "DO $$ BEGIN RAISE EXCEPTION '{}'; END $$;",
            "x".repeat(3000)
        ),
    )
    .unwrap();
    let failing_dir = dir.display().to_string();
    let env = Env::start().await;
    let ns = "longnames";
    env.ensure_namespace(ns).await;
    // 1. Names of 64 and 253 characters (DNS-1123 subdomains).
    let long64 = format!("{}.{}", "a".repeat(60), "bcd");
    let long253 = format!(
        "{}.{}.{}.{}",
        "b".repeat(62),
        "c".repeat(63),
        "d".repeat(63),
        "e".repeat(62)
    );
    assert_eq!(long253.len(), 253);
    for name in [&long64, &long253] {
        env.tenants(ns)
            .create(
                &PostParams::default(),
                &tenant(ns, name, json!({"isolation": "schema", "credentials": {"secretName": "s-".to_string() + &name[..10]}})),
            )
            .await
            .unwrap();
    }
    for name in [&long64, &long253] {
        env.wait_ready(ns, name, T).await;
        let secret = format!("s-{}", &name[..10]);
        let s = env.secrets(ns).get(&secret).await.unwrap();
        let labels: BTreeMap<String, String> = s.metadata.labels.clone().unwrap();
        for (k, v) in &labels {
            assert!(v.len() <= 63, "label {k}={v} longer than 63");
        }
        assert_eq!(
            s.metadata.annotations.as_ref().unwrap()["tenantdb.io/tenant"],
            **name,
            "the full name is in the annotation"
        );
        let mut c = env.connect_with_secret(ns, &secret).await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
    drop(env);

    // 2. A long error: the Warning Event is published with a note under 1 KiB.
    let env = Env::start_with(&["--migrations-dir", &failing_dir]).await;
    env.ensure_namespace(ns).await;
    env.create_tenant(ns, "long-error", json!({"isolation": "schema"}))
        .await;
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    let ev = wait_for(T, "MigrationFailed event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("MigrationFailed"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    let note = ev.note.unwrap_or_default();
    assert!(note.len() < 1024, "note of {} bytes", note.len());
    assert!(note.ends_with('…') && note.contains("xxxx"), "{note}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tenant that drops its own schema gets it back with its baseline, even when the first
/// attempt to migrate the re-created schema fails (here: the tenant's connection limit is taken)
/// and the operator is restarted before a later one: the due migrations are in the Tenant's
/// status (`baselineDue`) before the schema is re-created, and a later reconcile, of the new
/// process too, migrates it instead of trusting the recorded version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_schema_is_migrated_after_a_failed_first_attempt_and_a_restart() {
    let mut env = Env::start_with(&["--resync-seconds", "2"]).await;
    let ns = "recreate";
    env.ensure_namespace(ns).await;
    env.create_tenant(
        ns,
        "acme",
        json!({"isolation": "schema", "deletionPolicy": "Delete", "quotas": {"maxConnections": 1}}),
    )
    .await;
    let t = env.wait_ready(ns, "acme", T).await;
    let version = t.status.as_ref().and_then(|s| s.schema_version);
    assert!(version.is_some());
    assert_eq!(t.status.as_ref().and_then(|s| s.baseline_due), None);
    let schema = t.status.and_then(|s| s.schema).unwrap();
    let shared = shared_pool(&env).await;
    let tables = || table_count(&shared, &schema);
    assert!(tables().await > 0, "the baseline is in the schema");
    // The tenant's one connection drops the schema and stays open: the operator can re-create
    // the schema (as the admin) but not log in as the tenant to migrate it.
    let mut hold = wait_for(T, "a tenant connection", || async {
        env.connect_with_secret(ns, "acme-db").await.ok()
    })
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut hold)
    .await
    .unwrap();
    wait_for(
        T,
        "the schema re-created, its migration refused",
        || async {
            let back: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(&schema)
                    .fetch_one(&shared)
                    .await
                    .ok()?;
            (back && env.operator_log().contains("too many connections for role")).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(
        tables().await,
        0,
        "nothing migrated while the limit is taken"
    );
    assert_eq!(
        baseline_due(&env, ns).await,
        version,
        "recorded before the re-creation"
    );
    // Restarted while the migrations are due: the new process knows only the status.
    env.kill_operator().await;
    env.start_operator();
    drop(hold);
    wait_migrated_back(&env, ns, &shared, &schema, "the re-created schema migrated").await;
    let t = env.tenants(ns).get("acme").await.unwrap();
    assert_eq!(t.status.and_then(|s| s.schema_version), version);
    assert_eq!(env.operator_starts(), 2);
}

/// The due migrations of a re-created schema are in the Tenant's status before the schema is
/// re-created: an operator that dies right after the re-creation (`TENANTDB_TEST_EXIT_AT=
/// baseline-due`, before the migrations) is followed by one that migrates the schema. And once
/// they complete, `baselineDue` is cleared at once, not at the next resync (the default 300 s
/// here): the cleared status equals the cached one, from before the due was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_recreated_just_before_the_operator_died_is_migrated_by_the_next_one() {
    let exit_at = vec![(
        "TENANTDB_TEST_EXIT_AT".to_string(),
        "baseline-due".to_string(),
    )];
    let mut env = Env::start_configured(e2e::EnvOptions {
        operator_env: exit_at,
        ..Default::default()
    })
    .await;
    let ns = "recreate-exit";
    env.ensure_namespace(ns).await;
    env.create_tenant(
        ns,
        "acme",
        json!({"isolation": "schema", "deletionPolicy": "Delete"}),
    )
    .await;
    let t = env.wait_ready(ns, "acme", T).await;
    let version = t.status.as_ref().and_then(|s| s.schema_version);
    assert!(version.is_some());
    let schema = t.status.and_then(|s| s.schema).unwrap();
    let shared = shared_pool(&env).await;
    let tables = || table_count(&shared, &schema);
    drop_schema_and_poke(&env, ns, &schema, 1).await;
    let op = env.operator.as_mut().unwrap();
    let exit = wait_for(T, "the operator exits at baseline-due", || {
        let s = op.try_wait().ok().flatten();
        async move { s }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(40)));
    assert_eq!(exit.code(), Some(86), "{exit:?}");
    assert_eq!(tables().await, 0, "re-created, not migrated");
    assert_eq!(
        baseline_due(&env, ns).await,
        version,
        "recorded before the re-creation"
    );
    env.operator_env.clear();
    env.start_operator();
    wait_migrated_back(
        &env,
        ns,
        &shared,
        &schema,
        "the re-created schema migrated by the next operator",
    )
    .await;
    // Again with the operator running: migrated at the first attempt, and the due cleared long
    // before the resync.
    let baseline = tables().await;
    drop_schema_and_poke(&env, ns, &schema, 2).await;
    let r = wait_for(
        Duration::from_secs(60),
        "re-created, migrated, baselineDue cleared",
        || async {
            (tables().await == baseline && baseline_due(&env, ns).await.is_none()).then_some(())
        },
    )
    .await;
    if let Err(e) = r {
        panic!(
            "{e}\n{}\ntables {} (before {baseline}), due {:?}",
            tail(&env.operator_log(), 30),
            tables().await,
            baseline_due(&env, ns).await
        )
    }
    let t = env.tenants(ns).get("acme").await.unwrap();
    assert_eq!(t.status.and_then(|s| s.schema_version), version);
}

/// The tenant drops its own schema; an annotation (`n`) makes the operator look at once.
async fn drop_schema_and_poke(env: &Env, ns: &str, schema: &str, n: u32) {
    let mut c = env.connect_with_secret(ns, "acme-db").await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    env.tenants(ns)
        .patch(
            "acme",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"test/poke": n.to_string()}}}),
            ),
        )
        .await
        .unwrap();
}

/// A pool on the default server's shared database, as the admin.
async fn shared_pool(env: &Env) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap()
}

/// The number of tables (partitions included) in `schema`.
async fn table_count(shared: &sqlx::PgPool, schema: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(schema)
        .fetch_one(shared)
        .await
        .unwrap()
}

/// Tenant `acme`'s `status.baselineDue`.
async fn baseline_due(env: &Env, ns: &str) -> Option<i64> {
    let t = env.tenants(ns).get("acme").await.unwrap();
    t.status.and_then(|s| s.baseline_due)
}

/// Waits until the re-created `schema` has tables again (`what`), then until tenant `acme`'s
/// `status.baselineDue` is cleared.
async fn wait_migrated_back(env: &Env, ns: &str, shared: &sqlx::PgPool, schema: &str, what: &str) {
    wait_for(T, what, || async {
        (table_count(shared, schema).await > 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    wait_for(T, "baselineDue cleared", || async {
        baseline_due(env, ns).await.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
}
