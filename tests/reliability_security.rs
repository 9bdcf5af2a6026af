//! Reliability: security checks (issue #9).
//!
//! - No password (any Secret's, before and after rotation, nor the admin password) appears in the
//!   operator's log, in Events, in Tenant status, or in the PostgreSQL server log with
//!   `log_statement = 'all'`, after a workload of create, rotate, rename, a TenantMigration with a
//!   ConfigMap source, MongoDB provisioning and delete.
//! - RBAC: the operator runs as the chart's ServiceAccount against the chart's rendered RBAC, which
//!   the API server emulator enforces the way kube-apiserver does (an apply that creates its object
//!   is authorized as `create` too). Every authorization check of that workload is allowed, and
//!   every (verb, group, resource, subresource) the chart grants was checked (or is allow-listed
//!   with a reason): the chart grants nothing unused.
//! - The cross-tenant access matrix (all three isolation modes, every ordered pair) is in
//!   `tests/reliability_isolation.rs`.

use tenantdb_testkit::e2e;
use tenantdb_testkit::mongo;
use tenantdb_testkit::reliability;

use std::collections::BTreeSet;
use std::time::Duration;

use e2e::{Env, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use reliability::op_tail;
use serde_json::{Value, json};
use tenantdb::crd::{MigrationPhase, TenantMigration};

const T: Duration = Duration::from_secs(60);

async fn rotate(env: &Env, ns: &str, name: &str, token: &str) -> String {
    let old = env
        .secret_value(ns, &format!("{name}-db"), "password")
        .await
        .unwrap();
    env.tenants(ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": token}}})),
        )
        .await
        .unwrap();
    wait_for(T, &format!("{ns}/{name} rotated"), || async {
        let p = env
            .secret_value(ns, &format!("{name}-db"), "password")
            .await?;
        (p != old).then_some(p)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)))
}

// ---------------------------------------------------------------------------------------------
// Chart RBAC (the rendered chart, as installed)
// ---------------------------------------------------------------------------------------------

/// (verb, group, resource, subresource)
type Pair = (String, String, String, String);

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Every (verb, group, resource, subresource) the rendered ClusterRole/Role grant. Wildcards are
/// refused outright.
fn granted_pairs() -> BTreeSet<Pair> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(e2e::chart_manifests()).unwrap();
    let mut out = BTreeSet::new();
    let mut roles = 0;
    for d in docs {
        if !matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        roles += 1;
        for r in d["rules"].as_array().into_iter().flatten() {
            for g in strings(&r["apiGroups"]) {
                for res in strings(&r["resources"]) {
                    let (res, sub) = res.split_once('/').unwrap_or((res.as_str(), ""));
                    for v in strings(&r["verbs"]) {
                        assert!(
                            v != "*" && res != "*" && g != "*",
                            "wildcard in the chart's RBAC: {r}"
                        );
                        out.insert((v.clone(), g.clone(), res.to_string(), sub.to_string()));
                    }
                }
            }
        }
    }
    assert_eq!(roles, 2, "the chart renders one ClusterRole and one Role");
    out
}

/// Granted pairs the workload does not exercise, with the reason they are still needed.
const MAY_BE_UNOBSERVED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "patch",
        "events.k8s.io",
        "events",
        "",
        "kube-runtime's Recorder patches an Event only when the same Event repeats within its cache TTL (series)",
    ),
    (
        "get",
        "tenantdb.io",
        "tenants",
        "",
        "a TenantMigration naming one tenant reads it by name only while the Tenant cache has not synced yet (the cache answers afterwards)",
    ),
];

#[test]
fn chart_rbac_parses() {
    let g = granted_pairs();
    for want in [
        ("patch", "tenantdb.io", "tenants", "status"),
        ("create", "coordination.k8s.io", "leases", ""),
        // A server-side apply that creates the credentials Secret is authorized as `create`.
        ("create", "", "secrets", ""),
    ] {
        let want = (
            want.0.to_string(),
            want.1.to_string(),
            want.2.to_string(),
            want.3.to_string(),
        );
        assert!(g.contains(&want), "{want:?} not granted");
    }
}

/// Runs a workload with the operator (leader election on, MongoDB on): create, rotate, rename
/// the Secret, invalid spec, a TenantMigration of one tenant from a ConfigMap, delete. Returns
/// the Env, the passwords seen, and everything the operator reported (status, Events, PG log).
async fn workload() -> (Env, Vec<String>, String) {
    let mongo = mongo::server("reliability_security workload").expect(
        "the MongoDB stand-in (scripts/mongo-standin.sh install) or TENANTDB_TEST_MONGO_URI",
    );
    let port = mongo.port.to_string();
    let env = Env::start_with(&[
        "--leader-election",
        "--lease-duration-seconds",
        "3",
        "--lease-retry-seconds",
        "1",
        "--lease-clock-skew-seconds",
        "0",
        "--mongodb-uri",
        &mongo.admin_uri,
        "--mongodb-host",
        &mongo.host,
        "--mongodb-port",
        &port,
    ])
    .await;
    reliability::log_all_statements(&env).await;
    let pg_mark = env.pg.log().len();

    let mut passwords = vec![
        env.pg.superuser_password().to_string(),
        mongo.root_password.clone(),
    ];
    for (name, iso) in [("alpha", "schema"), ("beta", "database")] {
        env.create_tenant("sec", name, json!({"isolation": iso, "deletionPolicy": "Delete", "credentials": {"gracePeriod": "2s"}}))
            .await;
    }
    env.create_tenant(
        "sec",
        "broken",
        json!({"isolation": "database", "databaseName": "none"}),
    )
    .await;
    for name in ["alpha", "beta"] {
        env.wait_ready("sec", name, T).await;
        let secret = format!("{name}-db");
        passwords.push(env.secret_value("sec", &secret, "password").await.unwrap());
        passwords.push(
            env.secret_value("sec", &secret, "mongodbPassword")
                .await
                .expect("MongoDB credentials in the Secret"),
        );
    }
    for name in ["alpha", "beta"] {
        passwords.push(rotate(&env, "sec", name, "r1").await);
    }
    // Rename alpha's Secret: the operator writes the new one and deletes the old one.
    env.tenants("sec")
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"secretName": "alpha-creds"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "old Secret removed after rename", || async {
        env.secrets("sec")
            .get_opt("alpha-db")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    env.wait_ready("sec", "alpha", T).await;
    passwords.push(
        env.secret_value("sec", "alpha-creds", "password")
            .await
            .unwrap(),
    );
    // A TenantMigration of one tenant (by name) from a ConfigMap source.
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "flags-v8", "namespace": "sec"},
        "data": {
            "20250101000008_flags.up.sql": "CREATE TABLE tm_flags (id int PRIMARY KEY);",
            "20250101000008_flags.down.sql": "DROP TABLE tm_flags;",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), "sec")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), "sec");
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "alpha-v8", "namespace": "sec"},
        "spec": {"target": {"tenant": "alpha"}, "source": {"configMap": {"name": "flags-v8"}}},
    }))
    .unwrap();
    tms.create(&PostParams::default(), &tm).await.unwrap();
    wait_for(
        Duration::from_secs(90),
        "TenantMigration alpha-v8 Succeeded",
        || async {
            let tm = tms.get("alpha-v8").await.ok()?;
            (tm.status?.phase == MigrationPhase::Succeeded).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    // A second server, declared as a DatabaseServer (its admin Secret read, its status and
    // finalizer written), with a tenant placed on it: its admin password leaks nowhere either.
    let pg2 = tokio::task::spawn_blocking(tenantdb_testkit::localpg::LocalPg::start)
        .await
        .unwrap()
        .expect("a second throwaway PostgreSQL");
    passwords.push(pg2.superuser_password().to_string());
    env.add_database_server("sec-2", &pg2, json!({"maxTenants": 5}))
        .await;
    env.create_tenant(
        "sec",
        "gamma",
        json!({"isolation": "schema", "deletionPolicy": "Delete", "placement": {"server": "sec-2"}}),
    )
    .await;
    let gamma = env.wait_ready("sec", "gamma", T).await;
    assert_eq!(
        gamma.status.unwrap().placement.unwrap().postgres.as_deref(),
        Some("sec-2")
    );
    // Everything the operator reported, captured before deletion.
    let mut reported = String::new();
    for t in env
        .tenants("sec")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        reported.push_str(&serde_json::to_string(&t.status).unwrap());
    }
    reported.push_str(
        &serde_json::to_string(&tms.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    let servers: Api<tenantdb::crd::DatabaseServer> = Api::all(env.client.clone());
    reported.push_str(
        &serde_json::to_string(&servers.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    for name in ["alpha", "beta", "broken", "gamma"] {
        env.delete_tenant("sec", name).await;
    }
    for name in ["alpha", "beta", "broken", "gamma"] {
        env.wait_gone("sec", name, T).await;
    }
    drop(pg2);
    // Wait for at least one Lease renewal by the operator.
    wait_for(T, "a Lease renewal", || {
        let calls = reliability::operator_calls(&env);
        async move {
            calls
                .contains_key(&(
                    "update".into(),
                    "coordination.k8s.io".into(),
                    "leases".into(),
                    "".into(),
                ))
                .then_some(())
        }
    })
    .await
    .unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(env.client.clone());
    reported.push_str(
        &serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    let core: Api<CoreEvent> = Api::all(env.client.clone());
    reported.push_str(
        &serde_json::to_string(&core.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    reported.push_str("\n--- pg log ---\n");
    reported.push_str(&env.pg.log()[pg_mark..]);
    (env, passwords, reported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_leaks_and_rbac_matches_what_the_operator_uses() {
    let started = std::time::Instant::now();
    let (env, passwords, reported) = workload().await;
    assert!(
        reported.contains("statement:"),
        "statement logging not active"
    );
    let log = env.operator_log();
    for (i, pw) in passwords.iter().enumerate() {
        assert!(pw.len() >= 16, "password {i} is short");
        assert!(
            !log.contains(pw.as_str()),
            "password #{i} in the operator log"
        );
        let (status_events, pg_log) = reported.split_once("\n--- pg log ---\n").unwrap();
        assert!(
            !status_events.contains(pw.as_str()),
            "password #{i} in Tenant status or Events"
        );
        assert!(
            !pg_log.contains(pw.as_str()),
            "password #{i} in the PostgreSQL server log (log_statement = all)"
        );
    }

    // RBAC: the emulator enforced the chart's RBAC; nothing the operator needed was denied, and
    // what it was allowed is exactly within what the chart grants.
    let calls = reliability::operator_calls(&env);
    eprintln!("operator authorizations: {calls:#?}");
    let denied: Vec<_> = calls
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(c, _)| c)
        .collect();
    assert!(
        denied.is_empty(),
        "the operator needed API calls the chart does not grant: {denied:#?}{}",
        op_tail(&env)
    );
    let granted = granted_pairs();
    let outside: Vec<_> = calls.keys().filter(|c| !granted.contains(*c)).collect();
    assert!(
        outside.is_empty(),
        "allowed but not in the chart's grants: {outside:#?}"
    );
    eprintln!("security workload: {:.1}s", started.elapsed().as_secs_f64());
}

/// The chart grants nothing the operator does not use. (Regression: it used to grant `update` and
/// `create` verbs the operator never sends, and lacked `create` on Secrets although the operator
/// creates them by server-side apply, which kube-apiserver authorizes as `create`.) The workload
/// covers create, rotate, Secret rename, invalid spec, the TenantMigration controller (by name,
/// ConfigMap source), MongoDB, delete and leader election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_grants_nothing_the_operator_does_not_use() {
    let (env, _passwords, _reported) = workload().await;
    let observed: BTreeSet<Pair> = reliability::operator_calls(&env).into_keys().collect();
    let allowed: BTreeSet<Pair> = MAY_BE_UNOBSERVED
        .iter()
        .map(|(v, g, r, s, _)| (v.to_string(), g.to_string(), r.to_string(), s.to_string()))
        .collect();
    let unused: Vec<Pair> = granted_pairs()
        .into_iter()
        .filter(|p| !observed.contains(p) && !allowed.contains(p))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants API calls the operator never made and no allow-list entry explains: {unused:#?}"
    );
    // Every allow-list entry is still granted (no stale excuses).
    let granted = granted_pairs();
    for a in &allowed {
        assert!(
            granted.contains(a),
            "allow-listed but no longer granted: {a:?}"
        );
    }
}
