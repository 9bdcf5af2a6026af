//! A MongoDB database moved to another server.

use super::*;

/// The collections of `db` on a server as the admin sees them: name → (options, index names,
/// document count).
pub(super) async fn contents(
    m: &LocalMongo,
    db: &str,
) -> BTreeMap<String, (mongodb::bson::Document, Vec<String>, u64)> {
    use futures::TryStreamExt;
    use mongodb::bson::{Document, doc};
    let client = mongo::connect(&m.admin_uri()).await.unwrap();
    let d = client.database(db);
    let specs: Vec<Document> = d
        .run_cursor_command(doc! {"listCollections": 1, "nameOnly": false})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for s in specs {
        let name = s.get_str("name").unwrap().to_string();
        let options = s.get_document("options").cloned().unwrap_or_default();
        let mut indexes: Vec<String> = d
            .run_cursor_command(doc! {"listIndexes": &name})
            .await
            .unwrap()
            .try_collect::<Vec<Document>>()
            .await
            .unwrap()
            .iter()
            .map(|i| i.get_str("name").unwrap().to_string())
            .collect();
        indexes.sort();
        let n = d
            .collection::<Document>(&name)
            .count_documents(doc! {})
            .await
            .unwrap();
        out.insert(name, (options, indexes, n));
    }
    client.shutdown().await;
    out
}

/// A tenant's MongoDB database moves to another MongoDB server when `spec.placement.mongodb`
/// changes: collections with their options (validators), indexes and documents arrive intact, the
/// Secret names the new server and the tenant writes there with the same password, the source
/// holds nothing of it, and the status reports the move (read-only window). A move nowhere (no
/// server allows it) is not started and says why; the tenant stays writable where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_database_moves_to_another_server() {
    use mongodb::bson::{Document, doc};
    let test = "a_mongodb_database_moves_to_another_server";
    let Some(ms) = stand_ins(test, 2).await else {
        return;
    };
    let env = Env::start_with(&["--server-probe-seconds", "1"]).await;
    for (i, m) in ms.iter().enumerate() {
        env.add_mongo_database_server(&format!("mv-{i}"), m, json!({}))
            .await;
    }
    for i in 0..2 {
        wait_server(&env, &format!("mv-{i}"), true).await;
    }
    let ns = "mongomove";
    env.ensure_namespace(ns).await;
    let api = env.tenants(ns);
    for name in ["a", "b"] {
        let t: Tenant = serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"isolation": "schema", "deletionPolicy": "Delete",
                     "placement": {"mongodb": {"server": "mv-0"}}},
        }))
        .unwrap();
        api.create(&PostParams::default(), &t).await.unwrap();
    }
    for name in ["a", "b"] {
        wait_for(T, &format!("{name} Ready on mv-0"), || async {
            let t = api.get(name).await.ok()?;
            (t.status.as_ref()?.phase == TenantPhase::Ready
                && mongo_on(&t).as_deref() == Some("mv-0"))
            .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    }
    // Data of the tenant's own: documents in a collection of the model (with its validator) and
    // in one it made, with an index of its own.
    let db = database_of(&api.get("a").await.unwrap());
    let uri = env.secret_value(ns, "a-db", "mongodbUri").await.unwrap();
    let client = mongo::connect(&uri).await.unwrap();
    let notes = client.database(&db).collection::<Document>("notes");
    let docs: Vec<Document> = (0..2500)
        .map(|i| doc! {"n": i, "body": format!("note {i}")})
        .collect();
    notes.insert_many(docs).await.unwrap();
    client
        .database(&db)
        .run_command(doc! {"createIndexes": "notes", "indexes": [{"key": {"n": 1}, "name": "by_n", "unique": true}]})
        .await
        .unwrap();
    client.shutdown().await;
    let before = contents(&ms[0], &db).await;
    assert!(
        before.values().any(|(o, _, _)| o.contains_key("validator")),
        "the model has a validated collection: {before:?}"
    );
    assert_eq!(before["notes"].2, 2500);

    // An application writes throughout the move (sequence-numbered inserts through the Secret,
    // re-read after every error; a login per insert: the stand-in applies the read-only role at
    // login, see tests/README.md).
    let writer = tenantdb_testkit::mongo_writer::SeqWriter::start(
        Api::namespaced(env.client.clone(), ns),
        "a-db",
        &db,
        "seq",
        true,
    );
    wait_for(T, "the writer writing on mv-0", || async {
        (writer.written().acked.len() >= 20).then_some(())
    })
    .await
    .unwrap();

    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": "mv-1"}}}})),
    )
    .await
    .unwrap();
    let t = wait_for(T, "a's MongoDB move Completed, Ready on mv-1", || async {
        let t = api.get("a").await.ok()?;
        let st = t.status.as_ref()?;
        let m = st.mongodb_move.as_ref()?;
        (m.phase == tenantdb::crd::MovePhase::Completed
            && st.phase == TenantPhase::Ready
            && mongo_on(&t).as_deref() == Some("mv-1"))
        .then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let m = t
        .status
        .as_ref()
        .unwrap()
        .mongodb_move
        .as_deref()
        .cloned()
        .unwrap();
    assert_eq!((m.from.as_str(), m.to.as_str()), ("mv-0", "mv-1"));
    assert!(
        m.write_freeze_ms.is_some() && m.finished_at.is_some(),
        "{m:?}"
    );
    assert!(
        m.message.as_deref().unwrap_or_default().contains("dropped"),
        "{m:?}"
    );
    // The writer moved over to mv-1 and goes on there; then every acknowledged insert is on mv-1
    // exactly once (the source was read-only from before the copy: nothing acknowledged there
    // after the copy began).
    let mv1_port = format!(":{}/", ms[1].port());
    wait_for(T, "the writer writing on mv-1", || async {
        let w = writer.written();
        (w.uri.contains(&mv1_port) && w.acked_since_switch >= 20).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let written = writer.stop().await;
    let seen = numbers_on(&ms[1].admin_uri(), &db, "seq").await;
    written
        .check(&seen)
        .assert_exactly_once(&written, "on mv-1");
    let mut after = contents(&ms[1], &db).await;
    after.remove("seq");
    assert_eq!(after, before, "the copy on mv-1 differs from the source");
    assert!(!databases(&ms[0]).await.contains(&db), "left on mv-0");
    let port = wait_for(T, "the Secret names mv-1", || async {
        let p = env.secret_value(ns, "a-db", "mongodbPort").await?;
        (p == ms[1].port().to_string()).then_some(p)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(port, ms[1].port().to_string());
    let uri2 = env.secret_value(ns, "a-db", "mongodbUri").await.unwrap();
    assert_eq!(
        mongo::uri_password(&uri2),
        mongo::uri_password(&uri),
        "same password"
    );
    let client = mongo::connect(&uri2).await.unwrap();
    client
        .database(&db)
        .collection::<Document>("notes")
        .insert_one(doc! {"n": 2500})
        .await
        .expect("the tenant writes on mv-1 (readWrite again)");
    let dup = client
        .database(&db)
        .collection::<Document>("notes")
        .insert_one(doc! {"n": 7})
        .await;
    assert!(dup.is_err(), "the unique index came along");
    client.shutdown().await;

    // Nowhere to go: not started, says why, b stays writable on mv-0.
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": "mv-missing"}}}})),
    )
    .await
    .unwrap();
    let m = wait_for(T, "b's MongoDB move not started", || async {
        let t = api.get("b").await.ok()?;
        let m = t.status.as_ref()?.mongodb_move.as_deref().cloned()?;
        (m.phase == tenantdb::crd::MovePhase::RolledBack).then_some(m)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(
        m.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("not started"),
        "{m:?}"
    );
    let b = api.get("b").await.unwrap();
    assert_eq!(mongo_on(&b).as_deref(), Some("mv-0"));
    let uri = env.secret_value(ns, "b-db", "mongodbUri").await.unwrap();
    let client = mongo::connect(&uri).await.unwrap();
    client
        .database(&database_of(&b))
        .collection::<Document>("notes")
        .insert_one(doc! {"n": 1})
        .await
        .expect("b writes on mv-0");
    client.shutdown().await;

    // Draining mv-0 (one move at a time): b, now allowed anywhere, and c move to mv-1; mv-0 says
    // Drained and holds neither database.
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": null}}}})),
    )
    .await
    .unwrap();
    let c: Tenant = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "c", "namespace": ns},
        "spec": {"isolation": "schema", "deletionPolicy": "Delete",
                 "placement": {"mongodb": {"server": "mv-0"}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &c).await.unwrap();
    wait_for(T, "c Ready on mv-0", || async {
        let t = api.get("c").await.ok()?;
        (t.status.as_ref()?.phase == TenantPhase::Ready && mongo_on(&t).as_deref() == Some("mv-0"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": null}}}})),
    )
    .await
    .unwrap();
    let dbs: Vec<String> = futures::future::join_all(["b", "c"].map(|n| {
        let api = api.clone();
        async move { database_of(&api.get(n).await.unwrap()) }
    }))
    .await;
    servers(&env)
        .patch(
            "mv-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"drain": {"maxConcurrentMoves": 1}}})),
        )
        .await
        .unwrap();
    wait_for(T, "mv-0 Drained, b and c on mv-1", || async {
        let ds = servers(&env).get("mv-0").await.ok()?;
        let drained = condition(&ds.status.as_ref()?.conditions, "Drained")?.status == "True";
        let mut on = Vec::new();
        for n in ["b", "c"] {
            let t = api.get(n).await.ok()?;
            on.push(mongo_on(&t)?);
            let st = t.status.as_ref()?;
            if st.phase != TenantPhase::Ready
                || st.mongodb_move.as_ref()?.phase != tenantdb::crd::MovePhase::Completed
            {
                return None;
            }
        }
        (drained && on.iter().all(|s| s == "mv-1")).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\nmv-0: {:?}\nb: {:?}\nc: {:?}",
            env.important_log_tail(60),
            futures::executor::block_on(servers(&env).get("mv-0"))
                .ok()
                .and_then(|d| d.status),
            futures::executor::block_on(api.get("b"))
                .ok()
                .map(|t| (t.spec.placement, t.status)),
            futures::executor::block_on(api.get("c"))
                .ok()
                .map(|t| (t.spec.placement, t.status)),
        )
    });
    let left = databases(&ms[0]).await;
    for db in &dbs {
        assert!(
            !left.contains(db),
            "{db} left on the drained mv-0: {left:?}"
        );
    }
    for n in ["b", "c"] {
        let m = api
            .get(n)
            .await
            .unwrap()
            .status
            .unwrap()
            .mongodb_move
            .unwrap();
        assert!(
            m.phase == tenantdb::crd::MovePhase::Completed
                && m.message.as_deref().unwrap_or_default().contains("dropped"),
            "{n}: {m:?}"
        );
    }
}
