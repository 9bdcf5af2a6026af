//! End-to-end with MongoDB: the operator (with `--mongodb-uri`) gives a Tenant a MongoDB database
//! and a scoped user next to its PostgreSQL home, writes the Mongo keys into the credentials
//! Secret, reports `MongoProvisioned`, and drops both on deletion (policy Delete).
//! Runs against the SecantusDB stand-in (or `TENANTDB_TEST_MONGO_URI`); skipped without either.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/mongo.rs"]
#[allow(dead_code)]
mod mongo;

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
