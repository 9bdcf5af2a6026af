//! MongoDB provisioning against a real MongoDB wire server: the SecantusDB stand-in started by
//! `tenantdb_testkit::mongo` (with `--auth`), or a real mongod from `TENANTDB_TEST_MONGO_URI`.
//! Without either, every test prints `SKIPPED (no MongoDB): …` and passes — or fails when
//! `TENANTDB_TEST_NO_SKIP=1` (CI). Behaviour in which the stand-in differs from mongod is checked
//! on mongod as it should be, and on the stand-in as the stand-in does it (the known difference is
//! pinned, so that tests/README.md stays true).
//!
//! See tests/README.md (MongoDB) for which behaviours are checked against the stand-in and which
//! only against a real mongod.

use tenantdb_testkit::mongo as mongo_support;

use std::path::Path;

use mongodb::Client;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::ErrorKind;
use tenantdb::mongo::{
    IndexSpec, MIGRATIONS_COLLECTION, MongoAdmin, MongoDbName, MongoMigrationSet, MongoSettings,
    MongoStep, MongoTenant, TENANT_READ_ONLY_ROLE, TENANT_ROLE, UserAction, error_code,
    tenant_mongo_names, tenant_uri,
};
use tenantdb::naming::derived_base;

use mongo_support::{MongoServer, connect, server, unique};

fn admin(s: &MongoServer) -> MongoAdmin {
    MongoAdmin::with_bundled_migrations(MongoSettings::new(&s.admin_uri)).unwrap()
}

fn admin_with(s: &MongoServer, set: MongoMigrationSet) -> MongoAdmin {
    MongoAdmin::new(MongoSettings::new(&s.admin_uri), set).unwrap()
}

fn tenant(name: &str) -> MongoTenant {
    let base = derived_base("tenant_", "mongo-tests", &unique(name));
    let names = tenant_mongo_names(&base, None).unwrap();
    MongoTenant::new(
        &names,
        tenantdb::scram::generate_password(),
        format!("tenantdb.io/owner=test/{}", names.database),
    )
}

async fn tenant_client(s: &MongoServer, t: &MongoTenant, password: &str) -> Client {
    let uri = tenant_uri(&s.host, s.port, t.database.as_str(), &t.user, password);
    connect(&uri).await.unwrap()
}

async fn raw_admin(s: &MongoServer) -> Client {
    connect(&s.admin_uri).await.unwrap()
}

/// A copy of the bundled migrations plus `extra` files, in a temporary directory.
fn bundled_plus(extra: &[(&str, &str)]) -> (tempdir::Dir, MongoMigrationSet) {
    let dir = tempdir::Dir::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/mongodb");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    for (f, t) in extra {
        std::fs::write(dir.path().join(f), t).unwrap();
    }
    let set = MongoMigrationSet::load_dir(dir.path()).unwrap();
    (dir, set)
}

mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            use rand::distr::{Alphanumeric, SampleString};
            let p = std::env::temp_dir().join(format!(
                "tenantdb-mongo-mig-{}",
                Alphanumeric.sample_string(&mut rand::rng(), 10)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn list_indexes(c: &Client, db: &str, coll: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    c.database(db)
        .run_cursor_command(doc! {"listIndexes": coll})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn collection_options(c: &Client, db: &str, coll: &str) -> Document {
    use futures::TryStreamExt;
    let specs: Vec<Document> = c
        .database(db)
        .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": coll}})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    specs
        .first()
        .unwrap_or_else(|| panic!("{db}.{coll} missing"))
        .get_document("options")
        .cloned()
        .unwrap_or_default()
}

fn code(r: &mongodb::error::Error) -> Option<i32> {
    error_code(r)
}

fn find_index<'a>(indexes: &'a [Document], name: &str) -> &'a Document {
    indexes
        .iter()
        .find(|i| i.get_str("name") == Ok(name))
        .unwrap_or_else(|| panic!("index {name} missing in {indexes:?}"))
}

fn num(d: &Document, k: &str) -> Option<f64> {
    match d.get(k)? {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(f) => Some(*f),
        _ => None,
    }
}

#[tokio::test]
async fn provision_creates_everything_and_second_run_is_a_noop() {
    let Some(s) = server("provision_creates_everything_and_second_run_is_a_noop") else {
        return;
    };
    let a = admin(s);
    a.ping().await.unwrap();
    let t = tenant("full");
    let latest = a.migrations().latest_version();

    let first = a.provision(&t).await.unwrap();
    assert_eq!(first.user, UserAction::Created);
    assert!(first.created_user());
    assert_eq!(first.version, latest);
    assert!(
        first
            .steps
            .contains(&"create collection ai_messages".to_string())
    );
    assert!(
        first
            .steps
            .contains(&"create index audit_events.created_at_ttl".to_string())
    );
    let all: Vec<i64> = a
        .migrations()
        .migrations()
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(first.recorded_versions, all);

    let c = raw_admin(s).await;
    let db = t.database.as_str();
    // Validators with level/action.
    let opts = collection_options(&c, db, "ai_messages").await;
    let schema = opts
        .get_document("validator")
        .unwrap()
        .get_document("$jsonSchema")
        .unwrap();
    let role_enum = schema
        .get_document("properties")
        .unwrap()
        .get_document("role")
        .unwrap()
        .get_array("enum")
        .unwrap();
    assert_eq!(role_enum.len(), 4);
    assert_eq!(opts.get_str("validationLevel").unwrap(), "strict");
    assert_eq!(opts.get_str("validationAction").unwrap(), "error");

    // Indexes: compound order, unique + partial, TTL.
    let idx = list_indexes(&c, db, "ai_messages").await;
    let conv = find_index(&idx, "tenant_conversation_created");
    let keys: Vec<&str> = conv
        .get_document("key")
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["tenant_id", "conversation_id", "created_at"]);
    let uniq = find_index(&idx, "tenant_client_message_unique");
    assert_eq!(uniq.get_bool("unique"), Ok(true));
    assert_eq!(
        uniq.get_document("partialFilterExpression").unwrap(),
        &doc! {"client_message_id": {"$exists": true}}
    );
    let audit = list_indexes(&c, db, "audit_events").await;
    let ttl = find_index(&audit, "created_at_ttl");
    assert_eq!(num(ttl, "expireAfterSeconds"), Some(15_552_000.0));
    let ww = list_indexes(&c, db, "wework_messages").await;
    assert_eq!(
        num(find_index(&ww, "expire_at_ttl"), "expireAfterSeconds"),
        Some(0.0)
    );
    let desc = find_index(&ww, "tenant_account_conversation_sent")
        .get_document("key")
        .unwrap();
    assert!(matches!(
        desc.get("sent_at"),
        Some(Bson::Int32(-1) | Bson::Int64(-1))
    ));

    // Migration records with checksums.
    let rows: Vec<Document> = {
        use futures::TryStreamExt;
        c.database(db)
            .collection::<Document>(MIGRATIONS_COLLECTION)
            .find(doc! {})
            .sort(doc! {"version": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(rows.len(), all.len());
    let m1 = &a.migrations().migrations()[0];
    assert_eq!(rows[0].get_str("checksum").unwrap(), m1.checksum);
    assert_eq!(rows[0].get_str("name").unwrap(), m1.name);
    assert!(rows[0].get_datetime("appliedAt").is_ok());

    // Observe sees the converged state.
    let observed = a.observe(&t.database, &t.user).await.unwrap();
    assert_eq!(observed.version(), latest);
    assert!(observed.user.is_some());
    assert!(!observed.collections.contains_key(MIGRATIONS_COLLECTION));

    // Second run: nothing to do, nothing written.
    let second = a.provision(&t).await.unwrap();
    assert!(!second.changed(), "{second:?}");
    assert_eq!(second.steps, Vec::<String>::new());
    assert_eq!(second.user, UserAction::Unchanged);
    let rows_after = c
        .database(db)
        .collection::<Document>(MIGRATIONS_COLLECTION)
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(rows_after as usize, all.len());

    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn auth_is_enforced_and_tenants_are_isolated() {
    let Some(s) = server("auth_is_enforced_and_tenants_are_isolated") else {
        return;
    };
    let a = admin(s);
    let ta = tenant("iso_a");
    let tb = tenant("iso_b");
    a.provision(&ta).await.unwrap();
    a.provision(&tb).await.unwrap();

    // The server really checks credentials: a wrong password is refused…
    let wrong = tenant_client(s, &ta, "not-the-password").await;
    let e = wrong
        .database(ta.database.as_str())
        .run_command(doc! {"ping": 1})
        .await
        .unwrap_err();
    assert!(
        matches!(*e.kind, ErrorKind::Authentication { .. }) || code(&e) == Some(18),
        "wrong password accepted? {e}"
    );
    // …and an unauthenticated client cannot list databases.
    let anon = connect(&format!("mongodb://{}:{}/", s.host, s.port))
        .await
        .unwrap();
    let e = anon
        .database("admin")
        .run_command(doc! {"listDatabases": 1})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "unauthenticated listDatabases: {e}");

    // Tenant A logs in with SCRAM-SHA-256 and reads/writes its own database.
    let ca = tenant_client(s, &ta, &ta.password).await;
    let convs = ca
        .database(ta.database.as_str())
        .collection::<Document>("ai_conversations");
    let now = DateTime::now();
    convs
        .insert_one(doc! {
            "tenant_id": "t-a", "agent_id": "agent-1", "status": "active",
            "created_at": now, "updated_at": now,
        })
        .await
        .unwrap();
    assert_eq!(convs.count_documents(doc! {}).await.unwrap(), 1);
    // Its own scratch collection works too (readWrite on its database).
    ca.database(ta.database.as_str())
        .collection::<Document>("scratch")
        .insert_one(doc! {"x": 1})
        .await
        .unwrap();

    // …but is denied on tenant B's database, for reads and writes.
    let b_convs = ca
        .database(tb.database.as_str())
        .collection::<Document>("ai_conversations");
    let e = b_convs.count_documents(doc! {}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "cross-tenant read: {e}");
    let e = b_convs.insert_one(doc! {"x": 1}).await.unwrap_err();
    assert_eq!(code(&e), Some(13), "cross-tenant write: {e}");
    // And cannot administer users.
    let e = ca
        .database(ta.database.as_str())
        .run_command(doc! {"createUser": "evil", "pwd": "x", "roles": []})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(13), "createUser as tenant: {e}");

    a.cleanup(&ta).await.unwrap();
    a.cleanup(&tb).await.unwrap();
}

#[tokio::test]
async fn validators_are_enforced() {
    let Some(s) = server("validators_are_enforced") else {
        return;
    };
    let a = admin(s);
    let t = tenant("valid");
    a.provision(&t).await.unwrap();
    let c = tenant_client(s, &t, &t.password).await;
    let db = c.database(t.database.as_str());
    let now = DateTime::now();

    let msgs = db.collection::<Document>("ai_messages");
    msgs.insert_one(doc! {
        "tenant_id": "t", "conversation_id": "c1", "role": "user",
        "content": "hi", "created_at": now,
    })
    .await
    .unwrap();
    // Enum violation.
    let e = msgs
        .insert_one(
            doc! {"tenant_id": "t", "conversation_id": "c1", "role": "robot", "created_at": now},
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    // Missing required field.
    let e = msgs
        .insert_one(doc! {"tenant_id": "t", "role": "user", "created_at": now})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");

    let audit = db.collection::<Document>("audit_events");
    audit
        .insert_one(doc! {
            "tenant_id": "t", "log_type": "security", "module": "system",
            "action": "login", "status": "success", "created_at": now,
        })
        .await
        .unwrap();
    let e = audit
        .insert_one(doc! {
            "tenant_id": "t", "log_type": "security", "module": "system",
            "action": "hack", "created_at": now,
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");
    // Wrong type for created_at.
    let e = audit
        .insert_one(doc! {
            "tenant_id": "t", "log_type": "system", "module": "m",
            "action": "read", "created_at": "yesterday",
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(121), "{e}");

    // Unique + partial index: duplicates with the key present are refused, absent ones are not.
    for _ in 0..2 {
        msgs.insert_one(
            doc! {"tenant_id": "t", "conversation_id": "c1", "role": "user", "created_at": now},
        )
        .await
        .unwrap();
    }
    let m = doc! {"tenant_id": "t", "conversation_id": "c1", "role": "user", "created_at": now, "client_message_id": "m-1"};
    msgs.insert_one(m.clone()).await.unwrap();
    let e = msgs.insert_one(m).await.unwrap_err();
    assert_eq!(code(&e), Some(11000), "{e}");

    let stats = a.db_stats(&t.database).await.unwrap();
    assert!(stats.objects >= 4, "{stats:?}");
    assert!(stats.data_size > 0, "{stats:?}");
    assert!(stats.collections >= 5, "{stats:?}");

    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn password_and_role_changes_are_reconciled() {
    let Some(s) = server("password_and_role_changes_are_reconciled") else {
        return;
    };
    let a = admin(s);
    let mut t = tenant("pw");
    a.provision(&t).await.unwrap();
    let old = t.password.clone();

    // Same password: nothing to do.
    assert_eq!(
        a.ensure_user(&t.database, &t.user, &old, TENANT_ROLE)
            .await
            .unwrap(),
        UserAction::Unchanged
    );

    // The Secret's password changed.
    t.password = tenantdb::scram::generate_password();
    let action = a
        .ensure_user(&t.database, &t.user, &t.password, TENANT_ROLE)
        .await
        .unwrap();
    assert_eq!(
        action,
        UserAction::Updated {
            roles: false,
            password: true
        }
    );
    let c_new = tenant_client(s, &t, &t.password).await;
    c_new
        .database(t.database.as_str())
        .collection::<Document>("scratch")
        .insert_one(doc! {"x": 1})
        .await
        .unwrap();
    let c_old = tenant_client(s, &t, &old).await;
    assert!(
        c_old
            .database(t.database.as_str())
            .run_command(doc! {"ping": 1})
            .await
            .is_err(),
        "old password still works"
    );
    assert_eq!(
        a.ensure_user(&t.database, &t.user, &t.password, TENANT_ROLE)
            .await
            .unwrap(),
        UserAction::Unchanged
    );

    // Someone granted an extra role: reset to exactly readWrite on the tenant database.
    let c = raw_admin(s).await;
    c.database(t.database.as_str())
        .run_command(doc! {"grantRolesToUser": &t.user, "roles": [{"role": "read", "db": "admin"}]})
        .await
        .unwrap();
    assert_eq!(
        a.ensure_user(&t.database, &t.user, &t.password, TENANT_ROLE)
            .await
            .unwrap(),
        UserAction::Updated {
            roles: true,
            password: false
        }
    );
    let info = c
        .database(t.database.as_str())
        .run_command(doc! {"usersInfo": &t.user})
        .await
        .unwrap();
    let users = info.get_array("users").unwrap();
    let Some(Bson::Document(u)) = users.first() else {
        panic!("{info:?}")
    };
    assert_eq!(
        u.get_array("roles").unwrap(),
        &vec![Bson::Document(
            doc! {"role": "readWrite", "db": t.database.as_str()}
        )]
    );

    // Explicit rotation.
    let third = tenantdb::scram::generate_password();
    a.set_password(&t.database, &t.user, &third).await.unwrap();
    tenant_client(s, &t, &third)
        .await
        .database(t.database.as_str())
        .run_command(doc! {"ping": 1})
        .await
        .unwrap();

    // Provision with the Secret's (now stale) password resets it again.
    let out = a.provision(&t).await.unwrap();
    assert_eq!(
        out.user,
        UserAction::Updated {
            roles: false,
            password: true
        }
    );
    assert!(out.steps.is_empty());

    a.cleanup(&t).await.unwrap();
}

async fn roles_of(c: &Client, t: &MongoTenant) -> Vec<Bson> {
    let info = c
        .database(t.database.as_str())
        .run_command(doc! {"usersInfo": &t.user})
        .await
        .unwrap();
    let users = info.get_array("users").unwrap();
    let Some(Bson::Document(u)) = users.first() else {
        panic!("{info:?}")
    };
    u.get_array("roles").unwrap().clone()
}

/// Over the storage quota the user has `read` on its database instead of `readWrite`, and back.
/// The role change is checked against any server; that writes are refused with `read` needs a
/// real mongod (the stand-in does not enforce roles).
#[tokio::test]
async fn over_quota_the_user_is_read_only_and_back() {
    let Some(s) = server("over_quota_the_user_is_read_only_and_back") else {
        return;
    };
    let a = admin(s);
    let mut t = tenant("ro");
    a.provision(&t).await.unwrap();
    let c = raw_admin(s).await;
    let role = |r: &str| vec![Bson::Document(doc! {"role": r, "db": t.database.as_str()})];
    assert_eq!(roles_of(&c, &t).await, role("readWrite"));
    let tc = tenant_client(s, &t, &t.password).await;
    let scratch = tc
        .database(t.database.as_str())
        .collection::<Document>("scratch");
    scratch.insert_one(doc! {"x": 1}).await.unwrap();

    t.read_only = true;
    let out = a.provision(&t).await.unwrap();
    assert_eq!(
        out.user,
        UserAction::Updated {
            roles: true,
            password: false
        }
    );
    assert_eq!(roles_of(&c, &t).await, role(TENANT_READ_ONLY_ROLE));
    assert_eq!(a.provision(&t).await.unwrap().user, UserAction::Unchanged);
    if s.is_real_mongod() {
        // The open connection is affected too (MongoDB invalidates the user cache).
        let e = scratch.insert_one(doc! {"x": 2}).await.unwrap_err();
        assert_eq!(code(&e), Some(13), "Unauthorized expected: {e}");
        assert_eq!(
            scratch.count_documents(doc! {}).await.unwrap(),
            1,
            "reads still work"
        );
    } else {
        // The stand-in's known difference, pinned so that tests/README.md stays true: it does not
        // enforce roles, so the write goes through. If a newer stand-in refuses it, this fails:
        // then check the refusal on both servers.
        scratch
            .insert_one(doc! {"x": 2})
            .await
            .expect("stand-in difference: role `read` does not stop writes on SecantusDB");
        println!(
            "stand-in difference (checked): role `read` does not stop writes on SecantusDB; a real mongod refuses them with 13"
        );
    }
    t.read_only = false;
    a.provision(&t).await.unwrap();
    assert_eq!(roles_of(&c, &t).await, role("readWrite"));
    scratch.insert_one(doc! {"x": 3}).await.unwrap();
    a.cleanup(&t).await.unwrap();
}

const V5_CHANGE: &str = r#"
description: test-only change
dropIndexes:
  - {collection: ai_messages, name: tenant_client_message_unique}
collections:
  - name: ai_messages
    validator:
      $jsonSchema:
        bsonType: object
        required: [tenant_id, conversation_id, role, created_at, model]
        properties:
          role: {enum: [system, user, assistant, tool]}
  - name: audit_events
    indexes:
      - name: created_at_ttl
        keys: {created_at: 1}
        expireAfterSeconds: 7776000
"#;

#[tokio::test]
async fn newer_versions_collmod_drop_and_redefine() {
    let Some(s) = server("newer_versions_collmod_drop_and_redefine") else {
        return;
    };
    let (_dir, set) = bundled_plus(&[("005_test_change.yaml", V5_CHANGE)]);
    let a = admin_with(s, set);
    let mut t = tenant("evolve");
    t.up_to_version = Some(4);
    let first = a.provision(&t).await.unwrap();
    assert_eq!(first.version, Some(4));

    t.up_to_version = None;
    let second = a.provision(&t).await.unwrap();
    assert_eq!(second.version, Some(5));
    assert_eq!(second.recorded_versions, vec![5]);
    assert_eq!(
        second.steps,
        [
            "update validator of ai_messages",
            "drop index ai_messages.tenant_client_message_unique",
            "drop index audit_events.created_at_ttl",
            "create index audit_events.created_at_ttl",
        ]
    );
    let c = raw_admin(s).await;
    let db = t.database.as_str();
    let idx = list_indexes(&c, db, "ai_messages").await;
    assert!(
        !idx.iter()
            .any(|i| i.get_str("name") == Ok("tenant_client_message_unique"))
    );
    assert!(
        idx.iter()
            .any(|i| i.get_str("name") == Ok("tenant_conversation_created"))
    );
    let ttl = list_indexes(&c, db, "audit_events").await;
    assert_eq!(
        num(find_index(&ttl, "created_at_ttl"), "expireAfterSeconds"),
        Some(7_776_000.0)
    );
    let opts = collection_options(&c, db, "ai_messages").await;
    let required = opts
        .get_document("validator")
        .unwrap()
        .get_document("$jsonSchema")
        .unwrap()
        .get_array("required")
        .unwrap();
    assert!(required.contains(&Bson::String("model".into())));
    // The new validator is enforced.
    let tc = tenant_client(s, &t, &t.password).await;
    let e = tc
        .database(db)
        .collection::<Document>("ai_messages")
        .insert_one(doc! {"tenant_id": "t", "conversation_id": "c", "role": "user", "created_at": DateTime::now()})
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(121));

    // Converged again.
    assert!(!a.provision(&t).await.unwrap().changed());

    // Lowering the target below what is applied is refused (no downgrades).
    t.up_to_version = Some(4);
    let e = a.provision(&t).await.unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
    assert!(e.to_string().contains("downgrades"), "{e}");

    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn checksum_drift_is_detected_before_any_write() {
    let Some(s) = server("checksum_drift_is_detected_before_any_write") else {
        return;
    };
    let a = admin(s);
    let t = tenant("drift");
    a.provision(&t).await.unwrap();

    // Version 1's file was edited after it was applied (a comment is enough).
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/mongodb/001_ai_conversations.yaml"),
    )
    .unwrap();
    let edited = format!("{original}\n# edited after release\n");
    let (_dir, set) = bundled_plus(&[("001_ai_conversations.yaml", &edited)]);
    let drifted = admin_with(s, set.clone());
    let e = drifted.provision(&t).await.unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
    assert!(e.to_string().contains("drift"), "{e}");
    assert!(e.to_string().contains("migration 1"), "{e}");
    // `apply` on its own checks too, before executing any step.
    let step = MongoStep::DropCollection {
        collection: "ai_messages".into(),
    };
    let e = drifted.apply(&t.database, &[step], &set).await.unwrap_err();
    assert!(e.to_string().contains("drift"), "{e}");
    let observed = a.observe(&t.database, &t.user).await.unwrap();
    assert!(observed.collections.contains_key("ai_messages"));

    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn apply_is_idempotent_when_steps_are_replayed() {
    let Some(s) = server("apply_is_idempotent_when_steps_are_replayed") else {
        return;
    };
    let a = admin(s);
    let t = tenant("replay");
    let set = a.migrations().clone();
    let desired = tenantdb::mongo::desired_state(&set, None);
    let steps = tenantdb::mongo::plan(&desired, &Default::default());
    a.apply(&t.database, &steps, &set).await.unwrap();
    // Replaying the same (now stale) plan succeeds: create collection/index tolerate "exists".
    let recorded = a.apply(&t.database, &steps, &set).await.unwrap();
    assert!(recorded.is_empty());
    // Dropping something already gone is fine as well.
    let gone = [
        MongoStep::DropIndex {
            collection: "ai_messages".into(),
            name: "no_such_index".into(),
        },
        MongoStep::DropCollection {
            collection: "no_such_collection".into(),
        },
    ];
    a.apply(&t.database, &gone, &set).await.unwrap();
    let observed = a.observe(&t.database, &t.user).await.unwrap();
    assert!(tenantdb::mongo::plan(&desired, &observed).is_empty());
    assert!(observed.user.is_none());
    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn cleanup_drops_database_and_user_idempotently() {
    let Some(s) = server("cleanup_drops_database_and_user_idempotently") else {
        return;
    };
    let a = admin(s);
    let t = tenant("gone");
    a.provision(&t).await.unwrap();
    let c = tenant_client(s, &t, &t.password).await;
    c.database(t.database.as_str())
        .collection::<Document>("scratch")
        .insert_one(doc! {"x": 1})
        .await
        .unwrap();

    let report = a.cleanup(&t).await.unwrap();
    assert!(report.database_dropped, "{report:?}");
    assert!(report.user_dropped, "{report:?}");
    let again = a.cleanup(&t).await.unwrap();
    assert!(!again.database_dropped && !again.user_dropped, "{again:?}");

    let observed = a.observe(&t.database, &t.user).await.unwrap();
    assert!(observed.collections.is_empty(), "{observed:?}");
    assert!(observed.user.is_none());
    assert!(observed.applied.is_empty());
    let fresh = tenant_client(s, &t, &t.password).await;
    assert!(
        fresh
            .database(t.database.as_str())
            .run_command(doc! {"ping": 1})
            .await
            .is_err(),
        "dropped user can still log in"
    );
    // Re-provisioning after cleanup starts from scratch.
    let out = a.provision(&t).await.unwrap();
    assert_eq!(out.user, UserAction::Created);
    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn admin_errors_are_mapped_without_secrets() {
    let Some(s) = server("admin_errors_are_mapped_without_secrets") else {
        return;
    };
    if s.root_password.is_empty() {
        mongo_support::skip(
            "SKIPPED (external server: no password in TENANTDB_TEST_MONGO_URI): admin_errors_are_mapped_without_secrets",
        );
        return;
    }
    let bad_uri = s.admin_uri.replace(&s.root_password, "WrongPassw0rd");
    let mut settings = MongoSettings::new(bad_uri);
    settings.server_selection_timeout = std::time::Duration::from_secs(3);
    let a = MongoAdmin::with_bundled_migrations(settings).unwrap();
    let dbg = format!("{a:?}");
    assert!(!dbg.contains("WrongPassw0rd"), "{dbg}");
    let e = a.ping().await.unwrap_err();
    assert_eq!(e.category(), "DatabaseUnavailable", "{e}");
    assert!(!e.to_string().contains("WrongPassw0rd"), "{e}");

    // A tenant password never shows up in an error, even when the command carrying it fails
    // (an empty role list for a reserved database name is refused by the name check first, so
    // make createUser fail on the server instead: the user already exists under other roles).
    let good = admin(s);
    let t = tenant("secret");
    good.provision(&t).await.unwrap();
    let db = MongoDbName::new(t.database.as_str()).unwrap();
    let e = good
        .set_password(&db, "no_such_user", "Sup3rSecretPw")
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("Sup3rSecretPw"), "{e}");
    good.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn index_definitions_round_trip_through_the_server() {
    let Some(s) = server("index_definitions_round_trip_through_the_server") else {
        return;
    };
    let a = admin(s);
    let t = tenant("roundtrip");
    a.provision(&t).await.unwrap();
    let c = raw_admin(s).await;
    let desired = tenantdb::mongo::desired_state(a.migrations(), None);
    for (coll, spec) in &desired.collections {
        let served = list_indexes(&c, t.database.as_str(), coll).await;
        for (name, want) in &spec.indexes {
            let got = IndexSpec::from_server(find_index(&served, name)).unwrap();
            assert!(
                want.same_definition(&got),
                "{coll}.{name}: {want:?} vs {got:?}"
            );
        }
    }
    a.cleanup(&t).await.unwrap();
}

#[tokio::test]
async fn ttl_monitor_expires_documents() {
    // Both the stand-in's TTL sweeper and mongod's TTL monitor run every 60 s: opt-in.
    if !mongo_support::slow_tests_enabled("ttl_monitor_expires_documents") {
        return;
    }
    let Some(s) = server("ttl_monitor_expires_documents") else {
        return;
    };
    let a = admin(s);
    let t = tenant("ttl");
    a.provision(&t).await.unwrap();
    let c = tenant_client(s, &t, &t.password).await;
    let ww = c
        .database(t.database.as_str())
        .collection::<Document>("wework_messages");
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1000);
    ww.insert_one(doc! {
        "tenant_id": "t", "account_id": "a", "conversation_id": "c", "msg_id": "m",
        "direction": "inbound", "msg_type": "text", "created_at": past, "expire_at": past,
    })
    .await
    .unwrap();
    ww.insert_one(doc! {
        "tenant_id": "t", "account_id": "a", "conversation_id": "c", "msg_id": "kept",
        "direction": "inbound", "msg_type": "text", "created_at": past,
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(150);
    while ww.count_documents(doc! {"msg_id": "m"}).await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "TTL monitor did not expire the document"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Without expire_at a message is kept.
    assert_eq!(
        ww.count_documents(doc! {"msg_id": "kept"}).await.unwrap(),
        1
    );
    a.cleanup(&t).await.unwrap();
}

// ---- Behaviour in which the stand-in differs from mongod: checked on mongod
// (TENANTDB_TEST_MONGO_URI) as it should be, and on the stand-in as the stand-in does it.

#[tokio::test]
async fn same_keys_under_another_name_is_a_conflict() {
    let Some(s) = server("same_keys_under_another_name_is_a_conflict") else {
        return;
    };
    let a = admin(s);
    let t = tenant("idxconflict");
    a.provision(&t).await.unwrap();
    let c = raw_admin(s).await;
    // An application replaced one of the tenant's indexes by its own, same keys, another name
    // (a database created by someone else is refused before any index: see the ownership tests).
    let db = c.database(t.database.as_str());
    db.run_command(doc! {"dropIndexes": "ai_messages", "index": "tenant_conversation_created"})
        .await
        .unwrap();
    db.run_command(doc! {"createIndexes": "ai_messages", "indexes": [
        {"key": {"tenant_id": 1, "conversation_id": 1, "created_at": 1}, "name": "app_made"}
    ]})
    .await
    .unwrap();
    // Both mongod and the stand-in refuse a second index with the same key pattern under another
    // name (IndexOptionsConflict, 85); the operator reports it as a Conflict.
    let e = a.provision(&t).await.unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
    assert!(e.to_string().contains("IndexOptionsConflict (85)"), "{e}");
    a.cleanup(&t).await.unwrap();
}

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
