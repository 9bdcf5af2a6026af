//! End-to-end with MongoDB: the operator (with `--mongodb-uri`) gives a Tenant a MongoDB database
//! and a scoped user next to its PostgreSQL home, writes the Mongo keys into the credentials
//! Secret, reports `MongoProvisioned`, and drops both on deletion (policy Delete).
//! Runs against the SecantusDB stand-in (or `TENANTDB_TEST_MONGO_URI`); skipped without either.

use tenantdb_testkit::e2e;
use tenantdb_testkit::mongo;

use std::time::Duration;

use e2e::{Env, wait_for};
use mongodb::bson::doc;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_gets_a_mongodb_database_and_loses_it_on_delete() {
    let Some(server) = mongo::server("tenant_gets_a_mongodb_database_and_loses_it_on_delete")
    else {
        return;
    };
    let env = Env::start_with(&[
        "--mongodb-uri",
        &server.admin_uri,
        "--mongodb-host",
        &server.host,
        "--mongodb-port",
        &server.port.to_string(),
    ])
    .await;
    env.create_tenant(
        "docs",
        "acme",
        json!({"isolation": "schema", "deletionPolicy": "Delete"}),
    )
    .await;
    env.create_tenant(
        "docs",
        "nomongo",
        json!({"isolation": "schema", "mongodb": {"enabled": false}}),
    )
    .await;
    let t = env.wait_ready("docs", "acme", T).await;
    let st = t.status.unwrap();
    let m = st.mongodb.clone().expect("status.mongodb");
    assert!(m.version.is_some(), "Mongo migrations applied: {m:?}");
    let cond = st
        .conditions
        .iter()
        .find(|c| c.type_ == "MongoProvisioned")
        .unwrap();
    assert_eq!(cond.status, "True", "{cond:?}");

    // The Secret's mongodbUri logs in as the tenant user, which can use its own database.
    let uri = env
        .secret_value("docs", "acme-db", "mongodbUri")
        .await
        .expect("mongodbUri key");
    let client = mongo::connect(&uri).await.unwrap();
    let db = client.database(&m.database);
    let names = db
        .list_collection_names()
        .await
        .expect("tenant can list its collections");
    assert!(names.iter().any(|n| n == "ai_conversations"), "{names:?}");
    // The mongodb password is not the PostgreSQL one.
    assert_ne!(
        env.secret_value("docs", "acme-db", "mongodbPassword").await,
        env.secret_value("docs", "acme-db", "password").await
    );
    // Opted-out tenant has no Mongo keys.
    env.wait_ready("docs", "nomongo", T).await;
    assert!(
        env.secret_value("docs", "nomongo-db", "mongodbUri")
            .await
            .is_none()
    );

    // Delete: database and user are dropped.
    env.delete_tenant("docs", "acme").await;
    env.wait_gone("docs", "acme", T).await;
    let admin = mongo::connect(&server.admin_uri).await.unwrap();
    wait_for(T, "Mongo database dropped", || async {
        let dbs = admin.list_database_names().await.ok()?;
        (!dbs.contains(&m.database)).then_some(())
    })
    .await
    .unwrap();
    let users = admin
        .database(&m.database)
        .run_command(doc! {"usersInfo": m.user.clone()})
        .await
        .unwrap();
    assert!(
        users
            .get_array("users")
            .map(|u| u.is_empty())
            .unwrap_or(true),
        "{users:?}"
    );
}

fn user_roles(info: &mongodb::bson::Document) -> Vec<String> {
    info.get_array("users")
        .ok()
        .and_then(|u| u.first())
        .and_then(|u| u.as_document())
        .and_then(|u| u.get_array("roles").ok())
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_document()?.get_str("role").ok().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// MongoDB data counts against `quotas.storage`: a tenant whose documents push it over the quota
/// turns read-only in both stores (PostgreSQL `default_transaction_read_only`, MongoDB role
/// `read`), and raising the quota gives `readWrite` back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_data_counts_against_the_storage_quota() {
    let Some(server) = mongo::server("mongodb_data_counts_against_the_storage_quota") else {
        return;
    };
    let env = Env::start_with(&[
        "--mongodb-uri",
        &server.admin_uri,
        "--mongodb-host",
        &server.host,
        "--mongodb-port",
        &server.port.to_string(),
        "--resync-seconds",
        "1",
        "--usage-interval-seconds",
        "1",
    ])
    .await;
    // No PostgreSQL tables (autoMigrate off): PostgreSQL uses ~0 bytes, MongoDB decides.
    env.create_tenant(
        "mq",
        "bulky",
        json!({"isolation": "schema", "autoMigrate": false, "quotas": {"storage": "512Ki"}}),
    )
    .await;
    let t = env.wait_ready("mq", "bulky", T).await;
    let st = t.status.unwrap();
    let m = st.mongodb.clone().expect("status.mongodb");
    let usage = st.usage.clone().unwrap();
    assert!(!usage.read_only, "{usage:?}");
    let admin = mongo::connect(&server.admin_uri).await.unwrap();
    let info = || async {
        admin
            .database(&m.database)
            .run_command(doc! {"usersInfo": m.user.clone()})
            .await
            .unwrap()
    };
    assert_eq!(user_roles(&info().await), ["readWrite"]);

    // ~1 MiB of documents.
    let docs: Vec<mongodb::bson::Document> = (0..256)
        .map(|i| doc! {"tenant_id": "bulky", "i": i, "blob": format!("{i:0>4096}")})
        .collect();
    admin
        .database(&m.database)
        .collection::<mongodb::bson::Document>("bulk_import")
        .insert_many(docs)
        .await
        .unwrap();

    let t = wait_for(T, "QuotaExceeded from MongoDB data", || async {
        let t = env.tenants("mq").get("bulky").await.ok()?;
        let st = t.status.as_ref()?;
        let c = st.conditions.iter().find(|c| c.type_ == "QuotaExceeded")?;
        (c.status == "True").then_some(t)
    })
    .await
    .unwrap();
    let st = t.status.unwrap();
    let usage = st.usage.unwrap();
    let mongo_bytes = st.mongodb.unwrap().storage_bytes.unwrap_or(0);
    assert!(
        usage.read_only && mongo_bytes >= 512 * 1024 && usage.storage_bytes >= mongo_bytes,
        "{usage:?} mongo={mongo_bytes}"
    );
    wait_for(T, "MongoDB role read", || async {
        (user_roles(&info().await) == ["read"]).then_some(())
    })
    .await
    .unwrap();
    let mut c = env.connect_with_secret("mq", "bulky-db").await.unwrap();
    let err = sqlx::Executor::execute(&mut c, "CREATE TABLE t (id int)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(c);

    env.tenants("mq")
        .patch(
            "bulky",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"quotas": {"storage": "1Gi"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "MongoDB role readWrite again", || async {
        (user_roles(&info().await) == ["readWrite"]).then_some(())
    })
    .await
    .unwrap();
}
