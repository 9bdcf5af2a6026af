//! Whose database is whose: listings filtered to the tenant's own, another tenant's registered
//! database never touched, an unregistered one adopted only when unambiguous.

use super::*;

#[tokio::test]
async fn tenant_list_databases_is_filtered_to_its_own() {
    let Some(s) = server("tenant_list_databases_is_filtered_to_its_own") else {
        return;
    };
    let a = admin(s);
    let ta = tenant("listdb_a");
    let tb = tenant("listdb_b");
    a.provision(&ta).await.unwrap();
    a.provision(&tb).await.unwrap();
    let c = tenant_client(s, &ta, &ta.password).await;
    let r = c.list_database_names().await;
    if s.is_real_mongod() {
        let names = r.unwrap();
        assert!(
            names.contains(&ta.database.as_str().to_string()),
            "{names:?}"
        );
        assert!(
            !names.contains(&tb.database.as_str().to_string()),
            "{names:?}"
        );
    } else {
        // The stand-in refuses listDatabases for a tenant user (mongod filters it to the user's
        // own databases): either way tenant B's database is not shown to tenant A.
        let e = r.expect_err("stand-in difference: listDatabases is refused for tenant users");
        assert_eq!(code(&e), Some(13), "Unauthorized expected: {e}");
        println!(
            "stand-in difference (checked): SecantusDB refuses listDatabases for a tenant user (13); mongod filters it"
        );
    }
    a.cleanup(&ta).await.unwrap();
    a.cleanup(&tb).await.unwrap();
}

/// Ownership: a second Tenant naming the same database (another namespace's attacker) gets a
/// `Conflict` and changes nothing — the owner's user keeps its password and role, its documents
/// stay, and the attacker's cleanup drops nothing. The registry is only writable by the admin.
#[tokio::test]
async fn a_database_registered_to_another_tenant_is_never_touched() {
    let Some(s) = server("a_database_registered_to_another_tenant_is_never_touched") else {
        return;
    };
    let a = admin(s);
    let victim = tenant("own_victim");
    a.provision(&victim).await.unwrap();
    let vc = tenant_client(s, &victim, &victim.password).await;
    vc.database(victim.database.as_str())
        .collection::<Document>("notes")
        .insert_one(doc! {"secret": "victim"})
        .await
        .unwrap();
    assert_eq!(
        a.registered_owner(&victim.database)
            .await
            .unwrap()
            .as_deref(),
        Some(victim.owner.as_str())
    );
    // The attacker: same database and user names, another owner, its own password.
    let mut attacker = victim.clone_for_test("tenantdb.io/owner=ns1/mattack");
    attacker.password = tenantdb::scram::generate_password();
    attacker.adopt_unmarked = true; // even claiming to have provisioned it does not help
    let e = a.provision(&attacker).await.unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
    let report = a.cleanup(&attacker).await.unwrap();
    assert!(
        !report.database_dropped && !report.user_dropped,
        "{report:?}"
    );
    assert!(report.skipped.is_some());
    // The victim still logs in with its own password and reads its document.
    let vc = tenant_client(s, &victim, &victim.password).await;
    let n = vc
        .database(victim.database.as_str())
        .collection::<Document>("notes")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(n, 1);
    // The attacker's password does not log in.
    let ac = tenant_client(s, &attacker, &attacker.password).await;
    assert!(
        ac.database(victim.database.as_str())
            .run_command(doc! {"ping": 1})
            .await
            .is_err()
    );
    // A tenant user cannot write the registry.
    let e = vc
        .database(tenantdb::mongo::REGISTRY_DATABASE)
        .collection::<Document>(tenantdb::mongo::REGISTRY_COLLECTION)
        .insert_one(doc! {"_id": "forged", "owner": "x"})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "{e}");
    a.cleanup(&victim).await.unwrap();
    assert_eq!(a.registered_owner(&victim.database).await.unwrap(), None);
}

/// Upgrade path: a database and user created before the registry are adopted only by the Tenant
/// whose status names them **and** whose Secret's password matches the user; anyone else gets a
/// `Conflict`.
#[tokio::test]
async fn an_unregistered_database_is_adopted_only_when_unambiguous() {
    let Some(s) = server("an_unregistered_database_is_adopted_only_when_unambiguous") else {
        return;
    };
    let a = admin(s);
    let t = tenant("legacy");
    // What an earlier version left: user and data, no registry entry.
    let raw = raw_admin(s).await;
    let db = raw.database(t.database.as_str());
    db.run_command(doc! {
        "createUser": &t.user, "pwd": &t.password,
        "roles": [{"role": "readWrite", "db": t.database.as_str()}],
        "mechanisms": ["SCRAM-SHA-256"],
    })
    .await
    .unwrap();
    db.collection::<Document>("legacy_docs")
        .insert_one(doc! {"x": 1})
        .await
        .unwrap();
    // Not claimed by the status: Conflict.
    let e = a.provision(&t).await.unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
    // Claimed by the status but with another password (another Tenant's Secret): Conflict.
    let mut wrong = t.clone_for_test(&t.owner);
    wrong.password = tenantdb::scram::generate_password();
    wrong.adopt_unmarked = true;
    let e = a.provision(&wrong).await.unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
    assert_eq!(a.registered_owner(&t.database).await.unwrap(), None);
    // The Tenant whose status and Secret match: adopted and registered.
    let mut owner = t.clone_for_test(&t.owner);
    owner.adopt_unmarked = true;
    a.provision(&owner).await.unwrap();
    assert_eq!(
        a.registered_owner(&t.database).await.unwrap().as_deref(),
        Some(t.owner.as_str())
    );
    a.cleanup(&owner).await.unwrap();
}
