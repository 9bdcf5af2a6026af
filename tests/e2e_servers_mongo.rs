//! MongoDB DatabaseServers through the real binary, the emulator (with the chart's RBAC) and two
//! SecantusDB stand-ins, without `--mongodb-uri`: tenants' MongoDB databases are placed by
//! capacity (never overshot by concurrent reconciles, placed as soon as room appears), recorded in
//! `status.placement.mongodb` and written to the Secret with their server's endpoint; a Tenant
//! whose status was lost is found on the server whose ownership registry names its database; the
//! deletion of a server holding tenants is refused; an unreachable server is refused with a reason
//! while the tenants on the other stay Ready.

use tenantdb_testkit::e2e;
use tenantdb_testkit::localmongo::{self, LocalMongo};
use tenantdb_testkit::mongo;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, tail, wait_for};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tenantdb::crd::{DatabaseServer, Tenant, TenantPhase};

const T: Duration = Duration::from_secs(180);

/// Starts `n` SecantusDB stand-ins (with auth). `None` (after the SKIPPED line, a failure in CI)
/// when the stand-in is not installed: this test needs two servers, which one
/// `TENANTDB_TEST_MONGO_URI` cannot give.
async fn stand_ins(test: &str, n: usize) -> Option<Vec<LocalMongo>> {
    let Some(bin) = localmongo::find_secantus() else {
        mongo::skip(&format!(
            "SKIPPED (no MongoDB stand-in): {test}: install it with `scripts/mongo-standin.sh install` or set TENANTDB_SECANTUS_BIN"
        ));
        return None;
    };
    let starts = (0..n).map(|_| {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || LocalMongo::start(&bin))
    });
    let started = futures::future::join_all(starts).await;
    Some(
        started
            .into_iter()
            .map(|r| r.unwrap().expect("SecantusDB stand-in"))
            .collect(),
    )
}

fn log_tail(env: &Env) -> String {
    let log = env.operator_log();
    let important: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("\"level\":\"DEBUG\""))
        .collect();
    tail(&important.join("\n"), 60)
}

fn servers(env: &Env) -> Api<DatabaseServer> {
    Api::all(env.client.clone())
}

fn condition<'a>(
    conds: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conds.iter().find(|c| c.type_ == type_)
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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(env)))
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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));

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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));

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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
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
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
    let left = databases(&ms[0]).await;
    for db in &m0_dbs {
        assert!(!left.contains(db), "{db} dropped: {left:?}");
    }
}
