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

mod changes;
mod ownership;
