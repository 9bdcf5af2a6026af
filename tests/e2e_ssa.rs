//! End-to-end behaviour that only a real server-side apply implementation (field ownership per
//! manager, removal of fields a manager stops applying, schema errors for undeclared fields) and
//! an asynchronous garbage collector can show. Each of these passed silently against the old,
//! merge-only emulator while being wrong on a real cluster.
//!
//! - Turning MongoDB off removes the `mongodb*` keys of the Secret and `status.mongodb`.
//! - The end of a rotation's grace period removes `status.credentials.previousUser`.
//! - The TenantMigration controller's `status.schemaVersion` and the Tenant controller's status
//!   coexist under their two managers.
//! - An operator newer than the installed CRD reports a clear error (condition, Event) instead of
//!   silently losing the fields the CRD does not know.
//! - Deleting a Tenant and re-creating it at once (garbage collection still pending) converges to
//!   Ready with a new Secret, without a permanent Conflict.

use tenantdb_testkit::e2e;
use tenantdb_testkit::mongo;

use std::time::Duration;

use e2e::{Env, EnvOptions, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenantdb::crd::{MigrationPhase, Tenant, TenantMigration};

const T: Duration = Duration::from_secs(90);

fn mongo_args(m: &mongo::MongoServer) -> Vec<String> {
    vec![
        "--mongodb-uri".into(),
        m.admin_uri.clone(),
        "--mongodb-host".into(),
        m.host.clone(),
        "--mongodb-port".into(),
        m.port.to_string(),
    ]
}

fn require_mongo(test: &str) -> &'static mongo::MongoServer {
    mongo::server(test).unwrap_or_else(|| {
        panic!("{test} needs MongoDB: scripts/mongo-standin.sh install, or TENANTDB_TEST_MONGO_URI")
    })
}

/// The managedFields entries of an object as JSON.
fn managed_fields(t: &Tenant) -> Vec<Value> {
    serde_json::to_value(&t.metadata.managed_fields)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_mongodb_off_removes_its_secret_keys_and_status() {
    let m = require_mongo("turning_mongodb_off_removes_its_secret_keys_and_status");
    let env = Env::start_configured(EnvOptions {
        extra_args: mongo_args(m),
        ..Default::default()
    })
    .await;
    env.create_tenant("docs", "acme", json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready("docs", "acme", T).await;
    assert!(t.status.unwrap().mongodb.is_some(), "status.mongodb set");
    let keys = |s: k8s_openapi::api::core::v1::Secret| -> Vec<String> {
        s.data.unwrap_or_default().into_keys().collect()
    };
    let before = keys(env.secrets("docs").get("acme-db").await.unwrap());
    assert!(
        before.iter().any(|k| k.starts_with("mongodb")),
        "{before:?}"
    );

    env.tenants("docs")
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mongodb": {"enabled": false}}})),
        )
        .await
        .unwrap();
    wait_for(T, "mongodb keys and status.mongodb removed", || async {
        let t = env.tenants("docs").get("acme").await.ok()?;
        let s = env.secrets("docs").get("acme-db").await.ok()?;
        let st = t.status.clone()?;
        let gone = st.mongodb.is_none()
            && !keys(s).iter().any(|k| k.starts_with("mongodb"))
            && st.observed_generation == t.metadata.generation;
        gone.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    // PostgreSQL credentials are untouched.
    let after = keys(env.secrets("docs").get("acme-db").await.unwrap());
    for k in ["username", "password", "uri"] {
        assert!(after.iter().any(|x| x == k), "{k} kept: {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_grace_period_removes_the_previous_user_from_status() {
    let env = Env::start_with(&["--resync-seconds", "1"]).await;
    env.create_tenant(
        "rot",
        "acme",
        json!({"isolation": "schema", "credentials": {"gracePeriod": "3s"}}),
    )
    .await;
    env.wait_ready("rot", "acme", T).await;
    env.tenants("rot")
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
        )
        .await
        .unwrap();
    let previous = wait_for(T, "previousUser reported", || async {
        let t = env.tenants("rot").get("acme").await.ok()?;
        t.status?.credentials?.previous_user
    })
    .await
    .unwrap();
    assert!(!previous.is_empty());
    wait_for(
        Duration::from_secs(60),
        "previousUser and previousValidUntil removed",
        || async {
            let t = env.tenants("rot").get("acme").await.ok()?;
            let c = t.status?.credentials?;
            (c.previous_user.is_none() && c.previous_valid_until.is_none()).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_version_and_the_tenant_status_have_their_own_managers() {
    let env = Env::start_with(&["--resync-seconds", "2"]).await;
    env.create_tenant("fleet", "acme", json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready("fleet", "acme", T).await;
    let bundled = t
        .status
        .unwrap()
        .schema_version
        .expect("migrated at provisioning");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "flags-v8", "namespace": "fleet"},
        "data": {
            "20250101000008_flags.up.sql": "CREATE TABLE tm_flags (id int PRIMARY KEY);",
            "20250101000008_flags.down.sql": "DROP TABLE tm_flags;",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), "fleet")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), "fleet");
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "to-v8", "namespace": "fleet"},
        "spec": {"target": {"tenant": "acme"}, "source": {"configMap": {"name": "flags-v8"}}},
    }))
    .unwrap();
    tms.create(&PostParams::default(), &tm).await.unwrap();
    wait_for(T, "TenantMigration Succeeded", || async {
        let tm = tms.get("to-v8").await.ok()?;
        (tm.status?.phase == MigrationPhase::Succeeded).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    let v8 = 20250101000008;
    assert!(v8 > bundled);
    // A Tenant controller status write after the migration (a rotation changes its status).
    env.tenants("fleet")
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
        )
        .await
        .unwrap();
    let t = wait_for(T, "rotation reported with schemaVersion kept", || async {
        let t = env.tenants("fleet").get("acme").await.ok()?;
        let st = t.status.clone()?;
        let rotated = st.credentials.as_ref()?.rotation_token.as_deref() == Some("r1");
        (rotated && st.schema_version == Some(v8)).then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    let mf = managed_fields(&t);
    let entry = |manager: &str| {
        mf.iter()
            .find(|e| {
                e["manager"] == manager && e["operation"] == "Apply" && e["subresource"] == "status"
            })
            .cloned()
            .unwrap_or_else(|| panic!("no Apply entry of {manager} on status: {mf:#?}"))
    };
    let migration = entry(tenantdb::controller::migration::TENANT_FIELD_MANAGER);
    assert_eq!(
        migration["fieldsV1"],
        json!({"f:status": {"f:schemaVersion": {}}}),
        "the TenantMigration controller owns exactly schemaVersion"
    );
    let controller = entry("tenantdb-status");
    let owned = &controller["fieldsV1"]["f:status"];
    for f in ["f:phase", "f:conditions", "f:credentials"] {
        assert!(
            owned.get(f).is_some(),
            "tenantdb-status owns {f}: {owned:#}"
        );
    }
    assert!(
        owned["f:conditions"]
            .get("k:{\"type\":\"Ready\"}")
            .is_some(),
        "conditions are tracked per type: {owned:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_newer_than_the_installed_crd_reports_a_clear_error() {
    let m = require_mongo("an_operator_newer_than_the_installed_crd_reports_a_clear_error");
    // The Tenant CRD of a release before MongoDB support: no status.mongodb.
    let crds: Vec<Value> = tenantdb::crd::all_crds()
        .into_iter()
        .map(|(_, crd)| {
            let mut v = serde_json::to_value(&crd).unwrap();
            if v["spec"]["names"]["kind"] == "Tenant" {
                let status = &mut v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
                    ["status"]["properties"];
                assert!(status.as_object_mut().unwrap().remove("mongodb").is_some());
            }
            v
        })
        .collect();
    let env = Env::start_configured(EnvOptions {
        extra_args: mongo_args(m),
        crds: Some(crds),
        ..Default::default()
    })
    .await;
    env.create_tenant("old", "acme", json!({"isolation": "schema"}))
        .await;
    let reason = "CrdOutdated";
    let cond = wait_for(
        T,
        "a Ready=False condition naming the outdated CRD",
        || async {
            let t = env.tenants("old").get("acme").await.ok()?;
            let c = t
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready" && c.status == "False" && c.reason == reason)?;
            Some(c)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    assert!(
        cond.message.contains(".status.mongodb") && cond.message.contains("CRD"),
        "{}",
        cond.message
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), "old");
    wait_for(T, "a Warning Event naming the outdated CRD", || async {
        let evs = events.list(&ListParams::default()).await.ok()?;
        evs.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason) && e.type_.as_deref() == Some("Warning"))
    })
    .await
    .unwrap();
    // Never Ready with the MongoDB status silently dropped.
    let t = env.tenants("old").get("acme").await.unwrap();
    assert!(
        !t.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_recreate_converges_while_garbage_collection_is_pending() {
    let env = Env::start_configured(EnvOptions {
        gc_delay: Some(Duration::from_secs(3)),
        extra_args: vec!["--resync-seconds".into(), "2".into()],
        ..Default::default()
    })
    .await;
    let spec = json!({"isolation": "schema", "deletionPolicy": "Delete"});
    env.create_tenant("gc", "acme", spec.clone()).await;
    env.wait_ready("gc", "acme", T).await;
    let first = env.secrets("gc").get("acme-db").await.unwrap();
    env.delete_tenant("gc", "acme").await;
    env.wait_gone("gc", "acme", T).await;
    // Re-created at once: the old Secret (controlled by the deleted Tenant) is still there.
    env.create_tenant("gc", "acme", spec).await;
    assert!(
        env.secrets("gc")
            .get_opt("acme-db")
            .await
            .unwrap()
            .is_some_and(|s| s.uid() == first.uid()),
        "garbage collection is still pending"
    );
    let t = env.wait_ready("gc", "acme", T).await;
    let second = env.secrets("gc").get("acme-db").await.unwrap();
    assert_ne!(second.uid(), first.uid(), "a new Secret");
    let owners: Vec<(&str, Option<bool>)> = second
        .owner_references()
        .iter()
        .map(|o| (o.uid.as_str(), o.controller))
        .collect();
    assert_eq!(
        owners,
        vec![(t.metadata.uid.as_deref().unwrap(), Some(true))],
        "owned by the new Tenant only"
    );
    let ready = t
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    env.connect_with_secret("gc", "acme-db")
        .await
        .expect("the new Secret's credentials work");
}
