//! DatabaseServers and placement through the real binary, the emulator (with the chart's RBAC)
//! and several throwaway PostgreSQL clusters: capacity never overshot by concurrent reconciles
//! and used as soon as room appears; rollouts across servers with a per-server limit; deletion of
//! a server holding tenants refused; a Tenant whose status was lost found where it is (also one
//! of a version before placement, on the default server); an unreachable server does not stop
//! the others; without `--database-url` every tenant is placed on a DatabaseServer.

use tenantdb::status::find as condition;
use tenantdb_testkit::e2e;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, tail, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tenantdb::crd::{DatabaseServer, Tenant, TenantMigration, TenantPhase};
use tenantdb_testkit::localpg::LocalPg;

const T: Duration = Duration::from_secs(180);

/// Starts `n` more PostgreSQL clusters.
async fn clusters(n: usize) -> Vec<LocalPg> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            tokio::task::spawn_blocking(LocalPg::start)
                .await
                .unwrap()
                .expect("throwaway PostgreSQL"),
        );
    }
    out
}

/// The admin Secret (in the operator's namespace) and the DatabaseServer of one cluster.
async fn add_server(env: &Env, name: &str, pg: &LocalPg, max_tenants: Option<i64>) {
    let capacity = match max_tenants {
        Some(m) => json!({"maxTenants": m}),
        None => json!({}),
    };
    env.add_database_server(name, pg, capacity).await;
}

fn servers(env: &Env) -> Api<DatabaseServer> {
    Api::all(env.client.clone())
}

fn tenant(ns: &str, name: &str, spec: serde_json::Value) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .unwrap()
}

fn standard() -> serde_json::Value {
    json!({"selector": {"matchLabels": {"tier": "standard"}}})
}

fn placed_on(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.placement.as_ref()?.postgres.clone()
}

/// Login roles of tenants of `prefix` on one cluster (what was really provisioned there).
async fn roles_on(pg: &LocalPg, prefix: &str) -> Vec<String> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.admin_url())
        .await
        .unwrap();
    let roles = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1 AND rolname NOT LIKE '%\\_b' \
         AND shobj_description(oid, 'pg_authid') LIKE 'tenantdb.io/owner=%' ORDER BY 1",
    )
    .bind(format!("tenant\\_{prefix}\\_%"))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    roles
}

async fn wait_server_ready(env: &Env, name: &str, ready: bool) {
    let want = if ready { "True" } else { "False" };
    wait_for(
        T,
        &format!("DatabaseServer {name} Ready={want}"),
        || async {
            let ds = servers(env).get(name).await.ok()?;
            let st = ds.status?;
            (condition(&st.conditions, "Ready")?.status == want).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_never_overshot_and_rollouts_span_servers() {
    let mut env = Env::start_with(&["--concurrency", "8", "--server-probe-seconds", "1"]).await;
    let pgs = clusters(3).await;
    for (i, pg) in pgs.iter().enumerate() {
        add_server(&env, &format!("pg-{i}"), pg, Some(10)).await;
    }
    for i in 0..3 {
        wait_server_ready(&env, &format!("pg-{i}"), true).await;
    }
    // The clusters run with wal_level=replica: tenants could not be moved off them, and the
    // servers say so.
    wait_for(T, "LogicalReplication=False on pg-0", || async {
        let st = servers(&env).get("pg-0").await.ok()?.status?;
        let c = condition(&st.conditions, "LogicalReplication")?;
        (c.status == "False"
            && c.reason == "WalLevelTooLow"
            && st.wal_level.as_deref() == Some("replica"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let ns = "capacity";
    env.ensure_namespace(ns).await;
    let api = env.tenants(ns);
    // 40 at once: the reconciles race for the 30 places.
    let creates = (0..40).map(|i| {
        let api = api.clone();
        async move {
            api.create(
                &PostParams::default(),
                &tenant(
                    ns,
                    &format!("c{i:02}"),
                    json!({"isolation": "schema", "deletionPolicy": "Delete", "placement": standard()}),
                ),
            )
            .await
            .unwrap()
        }
    });
    futures::future::join_all(creates).await;
    let (per_server, waiting) = wait_for(T, "30 Ready and 10 Unschedulable", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let mut per_server: BTreeMap<String, usize> = BTreeMap::new();
        let mut waiting = Vec::new();
        for t in &list.items {
            let st = t.status.as_ref()?;
            match st.phase {
                TenantPhase::Ready => *per_server.entry(placed_on(t)?).or_default() += 1,
                TenantPhase::Pending
                    if condition(&st.conditions, "Ready")?.reason == "Unschedulable" =>
                {
                    waiting.push(condition(&st.conditions, "Ready")?.message.clone())
                }
                _ => return None,
            }
        }
        (per_server.values().sum::<usize>() == 30 && waiting.len() == 10)
            .then_some((per_server, waiting))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(
        per_server,
        [
            ("pg-0".to_string(), 10),
            ("pg-1".to_string(), 10),
            ("pg-2".to_string(), 10)
        ]
        .into()
    );
    // The waiting Tenants say why each candidate refused.
    for m in &waiting {
        for s in ["pg-0", "pg-1", "pg-2"] {
            assert!(
                m.contains(&format!("{s}: maxTenants reached (10/10)")),
                "{m}"
            );
        }
    }
    // What the servers really hold: 10 tenant roles each, none on the default server.
    for pg in &pgs {
        assert_eq!(roles_on(pg, "capacity").await.len(), 10);
    }
    assert!(roles_on(&env.pg, "capacity").await.is_empty());
    // The servers' status counts them.
    wait_for(T, "DatabaseServer status tenants = 10", || async {
        let list = servers(&env).list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|d| d.status.as_ref().is_some_and(|s| s.tenants == 10))
            .then_some(())
    })
    .await
    .unwrap();

    // Room appears: pg-1 takes 15. Five more are placed there, and only there.
    servers(&env)
        .patch(
            "pg-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"capacity": {"maxTenants": 15}}})),
        )
        .await
        .unwrap();
    wait_for(T, "35 Ready", || async {
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
        (ready == 35).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(roles_on(&pgs[1], "capacity").await.len(), 15);
    assert_eq!(roles_on(&pgs[0], "capacity").await.len(), 10);
    assert_eq!(roles_on(&pgs[2], "capacity").await.len(), 10);

    // The five still waiting are deleted (a rollout waits for Tenants that are not Ready).
    let list = api.list(&ListParams::default()).await.unwrap();
    for t in list.items.iter().filter(|t| placed_on(t).is_none()) {
        api.delete(
            t.metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    }
    wait_for(T, "35 Tenants left", || async {
        (api.list(&ListParams::default()).await.ok()?.items.len() == 35).then_some(())
    })
    .await
    .unwrap();

    // A rollout across the three servers, at most one tenant of a server at a time (the limit
    // itself is proven by the rollout engine's unit test; here: tenants of every server are
    // migrated on their own server).
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "m100", "namespace": ns},
        "data": {"20991231000000_notes.up.sql": "CREATE TABLE notes (id bigint PRIMARY KEY, body text);"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), ns);
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "notes", "namespace": ns},
        "spec": {
            "target": {"selector": {}},
            "source": {"configMap": {"name": "m100"}},
            "strategy": {"maxParallel": 6, "maxParallelPerServer": 1},
        },
    }))
    .unwrap();
    tms.create(&PostParams::default(), &tm).await.unwrap();
    let done = wait_for(T, "the rollout to finish", || async {
        let tm = tms.get("notes").await.ok()?;
        let st = tm.status?;
        (st.phase == tenantdb::crd::MigrationPhase::Succeeded).then_some(st)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!((done.total, done.succeeded), (35, 35), "{done:?}");
    // Every server's tenants have the table.
    for pg in &pgs {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg.url("tenantdb_shared"))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'notes' AND schemaname LIKE 'tenant\\_capacity\\_%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(n >= 10, "notes on {n} schemas");
        assert_eq!(n, roles_on(pg, "capacity").await.len() as i64);
        pool.close().await;
    }
    let log = env.operator_log();
    assert!(!log.contains("\"level\":\"ERROR\""), "{}", tail(&log, 40));

    // A server that holds tenants cannot be deleted: the finalizer stays, the condition says why.
    servers(&env)
        .delete("pg-2", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(T, "pg-2 DeletionBlocked", || async {
        let ds = servers(&env).get("pg-2").await.ok()?;
        let st = ds.status?;
        let c = condition(&st.conditions, "DeletionBlocked")?;
        (c.status == "True" && c.message.contains("10 tenant(s)")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    // An operator restart does not let it go (the deleting server is not in the registry of the
    // new process until it connects it again), and its tenants stay Ready meanwhile.
    env.kill_operator().await;
    env.start_operator();
    wait_for(
        T,
        "the restarted operator to reconcile pg-2 again",
        || async {
            (env.operator_log()
                .matches("database servers loaded")
                .count()
                >= 2)
                .then_some(())
        },
    )
    .await
    .unwrap();
    wait_for(T, "pg-2 still blocked after the restart", || async {
        let ds = servers(&env).get("pg-2").await.ok()?;
        let st = ds.status?;
        let c = condition(&st.conditions, "DeletionBlocked")?;
        (c.status == "True" && st.conditions.iter().any(|c| c.type_ == "Ready")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    // Three more refused deletions of the new process (the probe interval is 1 s): still there.
    let refused = r#"tenantdb_reconciles_total{controller="databaseserver",result="error"}"#;
    wait_for(T, "3 refused deletions of pg-2", || async {
        (env.metric(refused).await >= 3.0).then_some(())
    })
    .await
    .unwrap();
    assert!(servers(&env).get_opt("pg-2").await.unwrap().is_some());
    // Its tenants deleted (policy Delete: their objects dropped), the server goes.
    let list = api.list(&ListParams::default()).await.unwrap();
    for t in list
        .items
        .iter()
        .filter(|t| placed_on(t).as_deref() == Some("pg-2"))
    {
        api.delete(
            t.metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    }
    wait_for(T, "pg-2 gone", || async {
        servers(&env)
            .get_opt("pg-2")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(roles_on(&pgs[2], "capacity").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_placements_are_found_and_an_unreachable_server_stops_only_its_tenants() {
    let mut env = Env::start_with(&[
        "--server-probe-seconds",
        "1",
        "--health-interval-seconds",
        "2",
    ])
    .await;
    let pgs = clusters(2).await;
    add_server(&env, "a", &pgs[0], None).await;
    add_server(&env, "b", &pgs[1], None).await;
    wait_server_ready(&env, "a", true).await;
    wait_server_ready(&env, "b", true).await;
    let ns = "lost";
    let api = env.tenants(ns);
    // One on the default server (no placement), one on each DatabaseServer.
    env.create_tenant(ns, "d", json!({"isolation": "database"}))
        .await;
    // x may go to a or b (both empty: a, by name).
    env.create_tenant(
        ns,
        "x",
        json!({"isolation": "schema", "placement": standard()}),
    )
    .await;
    env.create_tenant(
        ns,
        "y",
        json!({"isolation": "database", "placement": {"server": "b"}}),
    )
    .await;
    for n in ["d", "x", "y"] {
        env.wait_ready(ns, n, T).await;
    }
    let before: BTreeMap<String, (Option<String>, Option<String>)> = {
        let mut m = BTreeMap::new();
        for n in ["d", "x", "y"] {
            let t = api.get(n).await.unwrap();
            let pw = env.secret_value(ns, &format!("{n}-db"), "password").await;
            m.insert(n.to_string(), (placed_on(&t), pw));
        }
        m
    };
    assert_eq!(before["d"].0.as_deref(), Some("default"));
    assert_eq!(before["x"].0.as_deref(), Some("a"));
    assert_eq!(before["y"].0.as_deref(), Some("b"));

    // a is cordoned: a new placement of x would go to b. The operator stopped; the statuses lost (x, y: wiped; d: as a version before placement
    // wrote it, without `placement`). Started again, it finds each where it is.
    servers(&env)
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cordoned": true}})),
        )
        .await
        .unwrap();
    wait_for(T, "a not Schedulable", || async {
        let st = servers(&env).get("a").await.ok()?.status?;
        (condition(&st.conditions, "Schedulable")?.reason == "Cordoned").then_some(())
    })
    .await
    .unwrap();
    env.kill_operator().await;
    for n in ["x", "y"] {
        let mut t = api.get(n).await.unwrap();
        t.status = Some(Default::default());
        api.replace_status(n, &PostParams::default(), &t)
            .await
            .unwrap();
    }
    let mut d = api.get("d").await.unwrap();
    d.status.as_mut().unwrap().placement = None;
    api.replace_status("d", &PostParams::default(), &d)
        .await
        .unwrap();
    env.start_operator();
    // While the restarted operator loads its servers, no tenant is reported Failed.
    let failed = std::sync::Mutex::new(Vec::new());
    for n in ["d", "x", "y"] {
        let want = before[n].0.clone();
        wait_for(T, &format!("{n} placed again"), || async {
            let t = api.get(n).await.ok()?;
            if t.status
                .as_ref()
                .is_some_and(|s| s.phase == TenantPhase::Failed)
            {
                failed.lock().unwrap().push(n);
            }
            let ready = t.status.as_ref()?.phase == TenantPhase::Ready;
            (ready && placed_on(&t) == want).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
        // Same password: nothing was provisioned anew.
        assert_eq!(
            env.secret_value(ns, &format!("{n}-db"), "password").await,
            before[n].1,
            "{n}"
        );
    }
    assert!(
        failed.lock().unwrap().is_empty(),
        "reported Failed after the restart: {failed:?}"
    );
    // Each tenant's role exists on its server only (x not provisioned again on b).
    assert_eq!(roles_on(&pgs[0], "lost").await.len(), 1);
    assert_eq!(roles_on(&pgs[1], "lost").await.len(), 1);
    assert_eq!(roles_on(&env.pg, "lost").await.len(), 1);

    // Rotation per server: x's new password logs in through the endpoint its Secret names,
    // which is server a's.
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
    )
    .await
    .unwrap();
    let old = before["x"].1.clone();
    wait_for(T, "x rotated", || async {
        let p = env.secret_value(ns, "x-db", "password").await;
        (p != old).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(
        env.secret_value(ns, "x-db", "port").await,
        Some(pgs[0].port().to_string())
    );
    let conn = env.connect_with_secret(ns, "x-db").await;
    assert!(conn.is_ok(), "{conn:?}");

    // Server b stops. Its DatabaseServer says so; x (on a) and d stay Ready; a new Tenant that
    // may go to a or b is placed on a (uncordoned again).
    servers(&env)
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cordoned": false}})),
        )
        .await
        .unwrap();
    pgs[1].stop_server().unwrap();
    wait_server_ready(&env, "b", false).await;
    let z = "z";
    env.create_tenant(
        ns,
        z,
        json!({"isolation": "schema", "placement": standard()}),
    )
    .await;
    let zt = env.wait_ready(ns, z, T).await;
    assert_eq!(placed_on(&zt).as_deref(), Some("a"));
    for n in ["d", "x"] {
        let t = api.get(n).await.unwrap();
        assert_eq!(t.status.unwrap().phase, TenantPhase::Ready, "{n}");
    }
    // y's health says its server is down (it is not moved anywhere).
    let y = wait_for(T, "y Degraded", || async {
        let t = api.get("y").await.ok()?;
        let st = t.status?;
        (condition(&st.conditions, "Degraded")?.status == "True").then_some(st)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(y.placement.unwrap().postgres.as_deref(), Some("b"));
    assert!(
        roles_on(&pgs[0], "lost").await.len() == 2,
        "only x and z on a"
    );
    pgs[1].start_server().unwrap();
    wait_server_ready(&env, "b", true).await;
    env.wait_ready(ns, "y", T).await;
}

/// `--database-url` is optional: an operator without it has no default server and places every
/// Tenant (with or without `spec.placement`) on the postgres DatabaseServers, by capacity; the
/// tenants are provisioned there, their Secrets name their server, a rollout migrates them on
/// their servers, and a Tenant with no room waits naming each refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_server_tenants_are_placed_on_database_servers() {
    let env = Env::start_configured(e2e::EnvOptions {
        extra_args: vec!["--server-probe-seconds".into(), "1".into()],
        no_default_server: true,
        ..Default::default()
    })
    .await;
    let pgs = clusters(1).await;
    add_server(&env, "a", &env.pg, Some(2)).await;
    add_server(&env, "b", &pgs[0], Some(2)).await;
    for n in ["a", "b"] {
        wait_server_ready(&env, n, true).await;
    }
    let ns = "nodefault";
    env.ensure_namespace(ns).await;
    let api = env.tenants(ns);
    for i in 0..5 {
        let t = tenant(
            ns,
            &format!("t{i}"),
            json!({"isolation": if i % 2 == 0 { "schema" } else { "database" }, "deletionPolicy": "Delete"}),
        );
        api.create(&PostParams::default(), &t).await.unwrap();
    }
    let (on, waiting) = wait_for(T, "4 Ready and 1 Unschedulable", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let mut on: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut waiting = Vec::new();
        for t in &list.items {
            let st = t.status.as_ref()?;
            let ready = condition(&st.conditions, "Ready")?;
            match st.phase {
                TenantPhase::Ready => on
                    .entry(placed_on(t)?)
                    .or_default()
                    .push(t.metadata.name.clone()?),
                TenantPhase::Pending if ready.reason == "Unschedulable" => {
                    waiting.push((t.metadata.name.clone()?, ready.message.clone()))
                }
                _ => return None,
            }
        }
        (on.values().map(Vec::len).sum::<usize>() == 4 && waiting.len() == 1)
            .then_some((on, waiting))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(on.get("a").map(Vec::len), Some(2), "{on:?}");
    assert_eq!(on.get("b").map(Vec::len), Some(2), "{on:?}");
    let why = &waiting[0].1;
    assert!(
        why.contains("a: maxTenants reached (2/2)") && why.contains("b: maxTenants reached (2/2)"),
        "{why}"
    );
    // Provisioned where placed, the Secret naming that server.
    for (server, pg) in [("a", &env.pg), ("b", &pgs[0])] {
        assert_eq!(roles_on(pg, ns).await.len(), 2, "{server}");
        for n in &on[server] {
            assert_eq!(
                env.secret_value(ns, &format!("{n}-db"), "port").await,
                Some(pg.port().to_string()),
                "{n} on {server}"
            );
        }
    }

    // A rollout migrates each on its server (the waiting one deleted first: a rollout waits for
    // Tenants that are not Ready).
    api.delete(&waiting[0].0, &DeleteParams::default())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "m1", "namespace": ns},
        "data": {"20991231000000_notes.up.sql": "CREATE TABLE notes (id bigint PRIMARY KEY);"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), ns);
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "notes", "namespace": ns},
        "spec": {"target": {"selector": {}}, "source": {"configMap": {"name": "m1"}}},
    }))
    .unwrap();
    tms.create(&PostParams::default(), &tm).await.unwrap();
    let done = wait_for(T, "the rollout to finish", || async {
        let st = tms.get("notes").await.ok()?.status?;
        (st.phase == tenantdb::crd::MigrationPhase::Succeeded).then_some(st)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!((done.total, done.succeeded), (4, 4), "{done:?}");
    let log = env.operator_log();
    assert!(
        log.contains("no --database-url: tenants are placed on postgres DatabaseServers only"),
        "{}",
        tail(&log, 20)
    );
    assert!(!log.contains("\"level\":\"ERROR\""), "{}", tail(&log, 40));
}
