//! MongoDB DatabaseServers through the real binary, the emulator (with the chart's RBAC) and two
//! SecantusDB stand-ins, without `--mongodb-uri`: tenants' MongoDB databases are placed by
//! capacity (never overshot by concurrent reconciles, placed as soon as room appears), recorded in
//! `status.placement.mongodb` and written to the Secret with their server's endpoint; a Tenant
//! whose status was lost is found on the server whose ownership registry names its database; the
//! deletion of a server holding tenants is refused; an unreachable server is refused with a reason
//! while the tenants on the other stay Ready; one deployment declared twice takes no new tenants
//! under its second name and a tenant on it is found once.

use tenantdb::status::find as condition;
use tenantdb_testkit::e2e;
use tenantdb_testkit::localmongo::LocalMongo;
use tenantdb_testkit::mongo;
use tenantdb_testkit::mongo::stand_ins;
use tenantdb_testkit::mongo_writer::numbers_on;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, wait_for};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tenantdb::crd::{DatabaseServer, Tenant, TenantPhase};

const T: Duration = Duration::from_secs(180);

fn servers(env: &Env) -> Api<DatabaseServer> {
    Api::all(env.client.clone())
}

fn mongo_on(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.placement.as_ref()?.mongodb.clone()
}

fn database_of(t: &Tenant) -> String {
    t.status
        .as_ref()
        .and_then(|s| s.mongodb.as_ref())
        .map(|m| m.database.clone())
        .expect("status.mongodb")
}

/// The databases a stand-in holds.
async fn databases(m: &LocalMongo) -> Vec<String> {
    let client = mongo::connect(&m.admin_uri()).await.unwrap();
    let dbs = client.list_database_names().await.unwrap();
    client.shutdown().await;
    dbs
}

async fn wait_server(env: &Env, name: &str, ready: bool) -> DatabaseServer {
    let want = if ready { "True" } else { "False" };
    wait_for(
        T,
        &format!("DatabaseServer {name} Ready={want}"),
        || async {
            let ds = servers(env).get(name).await.ok()?;
            let st = ds.status.as_ref()?;
            (condition(&st.conditions, "Ready")?.status == want).then_some(ds)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)))
}

/// Per MongoDB server, the Ready tenants on it; and the messages of the Unschedulable ones.
/// `None` while any tenant is neither.
async fn census(api: &Api<Tenant>) -> Option<(BTreeMap<String, Vec<String>>, Vec<String>)> {
    let list = api.list(&ListParams::default()).await.ok()?;
    let mut on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut waiting = Vec::new();
    for t in &list.items {
        let st = t.status.as_ref()?;
        let ready = condition(&st.conditions, "Ready")?;
        match st.phase {
            TenantPhase::Ready => on
                .entry(mongo_on(t)?)
                .or_default()
                .push(t.metadata.name.clone()?),
            TenantPhase::Pending if ready.reason == "Unschedulable" => {
                waiting.push(ready.message.clone())
            }
            _ => return None,
        }
    }
    Some((on, waiting))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_databases_are_placed_by_capacity_found_again_and_kept() {
    let test = "mongodb_databases_are_placed_by_capacity_found_again_and_kept";
    let Some(mut ms) = stand_ins(test, 2).await else {
        return;
    };
    let mut env = Env::start_with(&[
        "--concurrency",
        "8",
        "--server-probe-seconds",
        "1",
        "--health-interval-seconds",
        "2",
    ])
    .await;
    for (i, m) in ms.iter().enumerate() {
        env.add_mongo_database_server(&format!("m-{i}"), m, json!({"maxTenants": 2}))
            .await;
    }
    for i in 0..2 {
        let ds = wait_server(&env, &format!("m-{i}"), true).await;
        let st = ds.status.unwrap();
        assert!(st.version.is_some(), "{st:?}");
        let ready = condition(&st.conditions, "Ready").unwrap();
        assert!(ready.message.starts_with("MongoDB "), "{ready:?}");
    }

    // Five Tenants at once for four places: two per server, one waits saying why.
    let ns = "mongoplace";
    env.ensure_namespace(ns).await;
    let api = env.tenants(ns);
    let creates = (0..5).map(|i| {
        let api = api.clone();
        async move {
            let t: Tenant = serde_json::from_value(json!({
                "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": format!("t{i}"), "namespace": ns},
                "spec": {"isolation": "schema", "deletionPolicy": "Delete",
                         "placement": {"mongodb": {"selector": {"matchLabels": {"tier": "standard"}}}}},
            }))
            .unwrap();
            api.create(&PostParams::default(), &t).await.unwrap()
        }
    });
    futures::future::join_all(creates).await;
    let (on, waiting) = wait_for(T, "4 Ready and 1 Unschedulable", || async {
        let (on, waiting) = census(&api).await?;
        (on.values().map(Vec::len).sum::<usize>() == 4 && waiting.len() == 1)
            .then_some((on, waiting))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(
        on.iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect::<Vec<_>>(),
        vec![("m-0", 2), ("m-1", 2)],
        "{on:?}"
    );
    assert!(
        waiting[0].contains("MongoDB")
            && waiting[0].contains("m-0: maxTenants reached (2/2)")
            && waiting[0].contains("m-1: maxTenants reached (2/2)"),
        "{waiting:?}"
    );

    // Each database is on its server (and only there); the Secret names that server.
    for (i, m) in ms.iter().enumerate() {
        let here = databases(m).await;
        let other = databases(&ms[1 - i]).await;
        for n in &on[&format!("m-{i}")] {
            let t = api.get(n).await.unwrap();
            let db = database_of(&t);
            assert!(here.contains(&db), "{db} on m-{i}: {here:?}");
            assert!(!other.contains(&db), "{db} not on the other: {other:?}");
            assert_eq!(
                env.secret_value(ns, &format!("{n}-db"), "mongodbPort")
                    .await,
                Some(m.port().to_string()),
                "{n}"
            );
            // The tenant logs in there with its Secret.
            let uri = env
                .secret_value(ns, &format!("{n}-db"), "mongodbUri")
                .await
                .unwrap();
            let client = mongo::connect(&uri).await.unwrap();
            client
                .database(&db)
                .list_collection_names()
                .await
                .expect("tenant lists its collections on its server");
        }
    }
    wait_for(T, "DatabaseServer status tenants = 2", || async {
        let list = servers(&env).list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|d| {
                d.status.as_ref().is_some_and(|s| {
                    s.tenants == 2
                        && condition(&s.conditions, "Schedulable")
                            .is_some_and(|c| c.reason == "NoRoom")
                })
            })
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));

    // Room appears on m-1: the waiting tenant is placed there; the deleted one's database is gone.
    let gone = on["m-1"][0].clone();
    let gone_db = database_of(&api.get(&gone).await.unwrap());
    env.delete_tenant(ns, &gone).await;
    env.wait_gone(ns, &gone, T).await;
    let (on, _) = wait_for(T, "4 Ready, none waiting", || async {
        let (on, waiting) = census(&api).await?;
        (on.values().map(Vec::len).sum::<usize>() == 4 && waiting.is_empty())
            .then_some((on, waiting))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(on["m-1"].len(), 2, "{on:?}");
    assert!(!databases(&ms[1]).await.contains(&gone_db));

    // A status lost while the operator was down: found on m-1 again, same password, no copy on
    // m-0 (which, given room, a new placement would choose: 2/10 against m-1's 1/2).
    servers(&env)
        .patch(
            "m-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"capacity": {"maxTenants": 10}}})),
        )
        .await
        .unwrap();
    let lost = on["m-1"][0].clone();
    let before = api.get(&lost).await.unwrap();
    let password = env
        .secret_value(ns, &format!("{lost}-db"), "mongodbPassword")
        .await;
    env.kill_operator().await;
    let mut t = api.get(&lost).await.unwrap();
    t.status = Some(Default::default());
    api.replace_status(&lost, &PostParams::default(), &t)
        .await
        .unwrap();
    env.start_operator();
    wait_for(T, &format!("{lost} placed again"), || async {
        let t = api.get(&lost).await.ok()?;
        (t.status.as_ref()?.phase == TenantPhase::Ready && mongo_on(&t).as_deref() == Some("m-1"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(
        env.secret_value(ns, &format!("{lost}-db"), "mongodbPassword")
            .await,
        password
    );
    assert!(!databases(&ms[0]).await.contains(&database_of(&before)));

    // Deleting m-0, which holds two tenants, is refused; it stays, cordoned.
    servers(&env)
        .delete("m-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(T, "m-0 DeletionBlocked", || async {
        let st = servers(&env).get("m-0").await.ok()?.status?;
        let c = condition(&st.conditions, "DeletionBlocked")?;
        (c.status == "True" && c.message.starts_with("2 tenant(s)")).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));

    // m-1 stops: it is reported unreachable and refused with the reason; m-0's tenants stay Ready.
    ms[1].stop_server();
    let ds = wait_server(&env, "m-1", false).await;
    assert_eq!(
        condition(&ds.status.unwrap().conditions, "Ready")
            .unwrap()
            .reason,
        "Unreachable"
    );
    env.create_tenant(
        ns,
        "late",
        json!({"isolation": "schema", "placement": {"mongodb": {"selector": {"matchLabels": {"tier": "standard"}}}}}),
    )
    .await;
    let why = wait_for(T, "late Unschedulable", || async {
        let st = api.get("late").await.ok()?.status?;
        let c = condition(&st.conditions, "Ready")?;
        (c.reason == "Unschedulable").then(|| c.message.clone())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(
        why.contains("m-0: cordoned") && why.contains("m-1: not ready"),
        "{why}"
    );
    for n in &on["m-0"] {
        let t = api.get(n).await.unwrap();
        assert_eq!(t.status.unwrap().phase, TenantPhase::Ready, "{n}");
    }

    // m-0's tenants deleted: their databases are dropped and m-0 goes.
    let m0_dbs: Vec<String> = {
        let mut v = Vec::new();
        for n in &on["m-0"] {
            v.push(database_of(&api.get(n).await.unwrap()));
        }
        v
    };
    env.delete_tenant(ns, "late").await;
    for n in &on["m-0"] {
        env.delete_tenant(ns, n).await;
        env.wait_gone(ns, n, T).await;
    }
    wait_for(T, "m-0 deleted", || async {
        servers(&env)
            .get_opt("m-0")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let left = databases(&ms[0]).await;
    for db in &m0_dbs {
        assert!(!left.contains(db), "{db} dropped: {left:?}");
    }
}

/// One MongoDB deployment declared as two DatabaseServers: the younger name reports
/// `Schedulable=False/DuplicateCluster` naming the older and takes no tenants (placement and a
/// move to it refused, the data untouched); a tenant whose status was lost is found on the older
/// name, not refused as registered on two servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mongodb_deployment_under_two_names_takes_no_new_tenants() {
    use tenantdb::mongo::{MongoAdmin, MongoSettings};
    let test = "one_mongodb_deployment_under_two_names_takes_no_new_tenants";
    let Some(ms) = stand_ins(test, 2).await else {
        return;
    };
    // The identity: one per deployment, the same through two admins (asked at once), stable.
    let admin = |m: &LocalMongo| {
        MongoAdmin::with_bundled_migrations(MongoSettings::new(m.admin_uri())).unwrap()
    };
    let (a, b, c) = (admin(&ms[0]), admin(&ms[0]), admin(&ms[1]));
    let (ia, ib) = tokio::join!(a.deployment_identity(), b.deployment_identity());
    let (ia, ib) = (ia.unwrap(), ib.unwrap());
    assert_eq!(ia, ib);
    assert_eq!(a.deployment_identity().await.unwrap(), ia);
    assert_ne!(c.deployment_identity().await.unwrap(), ia);

    let mut env = Env::start_with(&["--server-probe-seconds", "1"]).await;
    env.add_mongo_database_server("d-0", &ms[0], json!({}))
        .await;
    env.add_mongo_database_server("d-1", &ms[1], json!({}))
        .await;
    for n in ["d-0", "d-1"] {
        wait_server(&env, n, true).await;
    }
    // Created after d-0: d-alias is the second name.
    env.add_mongo_database_server("d-alias", &ms[0], json!({}))
        .await;
    let schedulable = |name: &'static str| {
        let env = &env;
        async move {
            let st = servers(env).get(name).await.ok()?.status?;
            let c = condition(&st.conditions, "Schedulable")?;
            Some((c.status.clone(), c.reason.clone(), c.message.clone()))
        }
    };
    let (_, _, message) = wait_for(T, "d-alias DuplicateCluster", || async {
        schedulable("d-alias")
            .await
            .filter(|(s, r, _)| s == "False" && r == "DuplicateCluster")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(
        message.contains("the same MongoDB deployment as server d-0"),
        "{message}"
    );
    for n in ["d-0", "d-1"] {
        wait_for(T, &format!("{n} HasRoom"), || async {
            schedulable(n)
                .await
                .filter(|(s, r, _)| s == "True" && r == "HasRoom")
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    }

    let ns = "mongoalias";
    env.ensure_namespace(ns).await;
    let api = env.tenants(ns);
    for (name, server) in [("x", "d-0"), ("y", "d-alias")] {
        let t: Tenant = serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"isolation": "schema", "deletionPolicy": "Delete",
                     "placement": {"mongodb": {"server": server}}},
        }))
        .unwrap();
        api.create(&PostParams::default(), &t).await.unwrap();
    }
    wait_for(T, "x Ready on d-0, y Unschedulable", || async {
        let (on, waiting) = census(&api).await?;
        (on.get("d-0").map(Vec::len) == Some(1)
            && waiting.len() == 1
            && waiting[0].contains("same MongoDB deployment"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let db = database_of(&api.get("x").await.unwrap());

    // A move of x to the second name: refused before it starts; x stays, its database too.
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": "d-alias"}}}})),
    )
    .await
    .unwrap();
    let m = wait_for(T, "x's move refused", || async {
        let m = api.get("x").await.ok()?.status?.mongodb_move?;
        (m.phase == tenantdb::crd::MovePhase::RolledBack).then_some(m)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(m.started_at.is_none(), "{m:?}");
    assert!(
        m.message
            .as_deref()
            .is_some_and(|s| s.contains("same MongoDB deployment")),
        "{m:?}"
    );
    assert!(databases(&ms[0]).await.contains(&db));
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": "d-0"}}}})),
    )
    .await
    .unwrap();

    // x's status lost while the operator was down: its registry entry is on both names; found on
    // d-0, the same database, not a Conflict.
    env.kill_operator().await;
    let mut t = api.get("x").await.unwrap();
    t.status = Some(Default::default());
    api.replace_status("x", &PostParams::default(), &t)
        .await
        .unwrap();
    env.start_operator();
    let t = wait_for(T, "x found again on d-0", || async {
        let t = api.get("x").await.ok()?;
        (t.status.as_ref()?.phase == TenantPhase::Ready && mongo_on(&t).as_deref() == Some("d-0"))
            .then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(database_of(&t), db);
    assert!(databases(&ms[0]).await.contains(&db));
    assert!(!databases(&ms[1]).await.contains(&db));

    // With detection off (a fail point), the move's own guards refuse a move to the second name
    // before anything is copied; the database stays, with its documents.
    let uri = env.secret_value(ns, "x-db", "mongodbUri").await.unwrap();
    let client = mongo::connect(&uri).await.unwrap();
    let notes = client
        .database(&db)
        .collection::<mongodb::bson::Document>("notes");
    notes
        .insert_many((0..100).map(|i| mongodb::bson::doc! {"n": i}))
        .await
        .unwrap();
    env.kill_operator().await;
    env.operator_env
        .push(("TENANTDB_TEST_FAIL_AT".into(), "duplicate-detection".into()));
    env.start_operator();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": "d-alias"}}}})),
    )
    .await
    .unwrap();
    let m = wait_for(T, "x's move refused by its own guard", || async {
        let m = api.get("x").await.ok()?.status?.mongodb_move?;
        m.message
            .as_deref()
            .is_some_and(|s| s.contains("servers d-0 and d-alias are the same MongoDB deployment"))
            .then_some(m)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    // (Refused at the start, or — when an identity could not be read there in time — before
    // the copy: either way rolled back with nothing copied.)
    assert_eq!(m.phase, tenantdb::crd::MovePhase::RolledBack, "{m:?}");
    assert_eq!(m.attempts, 0, "{m:?}");
    assert_eq!(
        notes.count_documents(mongodb::bson::doc! {}).await.unwrap(),
        100
    );
    client.shutdown().await;
    let t = api.get("x").await.unwrap();
    assert_eq!(mongo_on(&t).as_deref(), Some("d-0"));
}

mod moves;
