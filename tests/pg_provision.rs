//! Apply and cleanup layer against a real PostgreSQL 15 cluster: both isolation modes, login with
//! the generated password, cross-tenant denial, idempotency, drift repair, deletion policies.

use tenantdb_testkit::fixtures as common;

use std::sync::Arc;
use std::time::Duration;

use common::{admin, connect_as, desired, names, pg, provision, replan};
use sqlx::{Connection, Executor, Row};
use tenantdb::crd::Isolation;
use tenantdb::naming::Ident;
use tenantdb::pg::plan::{Slot, Step, plan};
use tenantdb::pg::{PgAdmin, PgSettings};
use tenantdb::scram::generate_password;

#[tokio::test]
async fn database_isolation_end_to_end() {
    let admin = admin();
    let a = desired("iso-db", "alpha", Isolation::Database);
    let b = desired("iso-db", "beta", Isolation::Database);
    assert!(!provision(&admin, &a).await.is_empty());
    provision(&admin, &b).await;
    // Second reconcile is a no-op.
    assert!(replan(&admin, &a).await.is_empty());

    // The tenant logs in with its password and owns its database.
    let mut ca = connect_as(
        a.names.database.as_str(),
        a.names.role.as_str(),
        &a.password,
    )
    .await
    .expect("tenant login");
    ca.execute("CREATE TABLE notes (id int primary key, body text)")
        .await
        .unwrap();
    ca.execute("INSERT INTO notes VALUES (1, 'hello')")
        .await
        .unwrap();
    let sp: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&mut ca)
        .await
        .unwrap();
    assert_eq!(sp, "public");

    // Wrong password is refused.
    assert!(
        connect_as(a.names.database.as_str(), a.names.role.as_str(), "wrong")
            .await
            .is_err()
    );
    // A cannot connect to B's database.
    let err = connect_as(
        b.names.database.as_str(),
        a.names.role.as_str(),
        &a.password,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    // A cannot create databases or roles.
    assert!(ca.execute("CREATE DATABASE evil").await.is_err());
    assert!(ca.execute("CREATE ROLE evil").await.is_err());

    // Role attributes are least privilege.
    let row = sqlx::query("SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(a.names.role.as_str())
        .fetch_one(admin.admin_pool())
        .await
        .unwrap();
    assert!(
        !row.get::<bool, _>(0)
            && !row.get::<bool, _>(1)
            && !row.get::<bool, _>(2)
            && !row.get::<bool, _>(3)
    );
    assert!(row.get::<bool, _>(4));
    drop(ca);

    // Delete: database and role are gone; B untouched.
    let report = admin.cleanup(&a.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2, "{report:?}");
    let gone: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(a.names.database.as_str())
        .fetch_one(admin.admin_pool())
        .await
        .unwrap();
    assert_eq!(gone, 0);
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(a.names.role.as_str())
        .fetch_one(admin.admin_pool())
        .await
        .unwrap();
    assert_eq!(roles, 0);
    // Idempotent: cleaning up again is success with nothing dropped.
    assert!(admin.cleanup(&a.names).await.unwrap().dropped.is_empty());
    assert!(replan(&admin, &b).await.is_empty());
    connect_as(
        b.names.database.as_str(),
        b.names.role.as_str(),
        &b.password,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn schema_isolation_end_to_end() {
    let admin = admin();
    let a = desired("iso-schema", "alpha", Isolation::Schema);
    let b = desired("iso-schema", "beta", Isolation::Schema);
    provision(&admin, &a).await;
    provision(&admin, &b).await;
    assert!(replan(&admin, &a).await.is_empty());
    assert!(replan(&admin, &b).await.is_empty());

    let db = a.names.database.as_str();
    let mut cb = connect_as(db, b.names.role.as_str(), &b.password)
        .await
        .unwrap();
    cb.execute("CREATE TABLE secrets (id int, v text)")
        .await
        .unwrap();
    cb.execute("INSERT INTO secrets VALUES (1, 'b-only')")
        .await
        .unwrap();
    let schema_of: String = sqlx::query_scalar(
        "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'secrets'",
    )
    .fetch_one(&mut cb)
    .await
    .unwrap();
    assert_eq!(
        schema_of,
        b.names.schema.as_str(),
        "unqualified tables land in the tenant schema"
    );

    let mut ca = connect_as(db, a.names.role.as_str(), &a.password)
        .await
        .unwrap();
    ca.execute("CREATE TABLE mine (id int)").await.unwrap();
    let q = format!("SELECT * FROM {}.secrets", b.names.schema);
    let err = ca.execute(sqlx::AssertSqlSafe(q)).await.unwrap_err();
    assert!(
        err.to_string().contains("permission denied for schema"),
        "{err}"
    );
    let q = format!("CREATE TABLE {}.planted (id int)", b.names.schema);
    assert!(ca.execute(sqlx::AssertSqlSafe(q)).await.is_err());
    // Nothing in the shared database's public schema either.
    assert!(
        ca.execute("CREATE TABLE public.planted (id int)")
            .await
            .is_err()
    );
    // Changing search_path does not help: privileges, not paths, protect the schema.
    let q = format!("SET search_path TO {}", b.names.schema);
    ca.execute(sqlx::AssertSqlSafe(q)).await.unwrap();
    assert!(ca.execute("SELECT * FROM secrets").await.is_err());
    drop(ca);

    // Delete A: its schema and role go, B's data stays.
    let report = admin.cleanup(&a.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2, "{report:?}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets")
        .fetch_one(&mut cb)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(admin.cleanup(&a.names).await.unwrap().dropped.is_empty());
}

#[tokio::test]
async fn drift_is_repaired_and_password_follows_the_secret() {
    let admin = admin();
    let mut a = desired("drift", "alpha", Isolation::Schema);
    provision(&admin, &a).await;
    let pool = admin.admin_pool();
    // Out-of-band damage: password changed, superuser granted, search_path removed.
    let role = a.names.role.clone();
    pool.execute(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {role} PASSWORD 'changed-by-hand' CREATEDB"
    )))
    .await
    .unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE {role} IN DATABASE tenantdb_shared RESET search_path"
    )))
    .await
    .unwrap();
    let steps = replan(&admin, &a).await;
    assert_eq!(
        steps,
        vec![
            Step::ResetRoleAttributes(Slot::Primary),
            Step::SetPassword(Slot::Primary),
            Step::SetSearchPath(Slot::Primary)
        ]
    );
    admin.apply(&a, &steps).await.unwrap();
    assert!(replan(&admin, &a).await.is_empty());
    connect_as("tenantdb_shared", role.as_str(), &a.password)
        .await
        .unwrap();

    // Schema dropped by hand is recreated.
    let shared = admin.shared_pool().await.unwrap();
    shared
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            a.names.schema
        )))
        .await
        .unwrap();
    assert_eq!(replan(&admin, &a).await, vec![Step::CreateSchema]);
    provision(&admin, &a).await;

    // A new password (Secret recreated) is pushed to the role.
    a.password = generate_password();
    assert_eq!(
        replan(&admin, &a).await,
        vec![Step::SetPassword(Slot::Primary)]
    );
    provision(&admin, &a).await;
    connect_as("tenantdb_shared", role.as_str(), &a.password)
        .await
        .unwrap();

    // Role dropped by hand (with the schema it owns) is recreated.
    admin.cleanup(&a.names).await.unwrap();
    provision(&admin, &a).await;
    assert!(replan(&admin, &a).await.is_empty());
    connect_as("tenantdb_shared", role.as_str(), &a.password)
        .await
        .unwrap();
}

#[tokio::test]
async fn foreign_objects_are_never_touched() {
    let admin = admin();
    let a = desired("foreign", "alpha", Isolation::Database);
    let pool = admin.admin_pool();
    // Someone else's role with the same name.
    pool.execute(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {} LOGIN",
        a.names.role
    )))
    .await
    .unwrap();
    let observed = admin.observe(&a.names, &a.password).await.unwrap();
    assert!(
        plan(&a, &observed).is_err(),
        "foreign role must be a conflict"
    );
    let report = admin.cleanup(&a.names).await.unwrap();
    assert!(report.dropped.is_empty());
    assert_eq!(report.skipped.len(), 1);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = $1")
        .bind(a.names.role.as_str())
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(still, 1);
}

#[tokio::test]
async fn cleanup_copes_with_connected_sessions_and_owned_objects() {
    let admin = admin();
    let a = desired("busy", "alpha", Isolation::Database);
    provision(&admin, &a).await;
    let mut c = connect_as(
        a.names.database.as_str(),
        a.names.role.as_str(),
        &a.password,
    )
    .await
    .unwrap();
    c.execute("CREATE TABLE t (id int)").await.unwrap();
    // Session still open while the tenant is deleted.
    let report = admin.cleanup(&a.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2);
    assert!(
        c.execute("SELECT 1").await.is_err(),
        "session was terminated"
    );

    let s = desired("busy", "beta", Isolation::Schema);
    provision(&admin, &s).await;
    let mut c = connect_as("tenantdb_shared", s.names.role.as_str(), &s.password)
        .await
        .unwrap();
    c.execute("CREATE TABLE t (id int)").await.unwrap();
    c.execute("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'")
        .await
        .unwrap();
    let report = admin.cleanup(&s.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2, "{report:?}");
}

/// With `log_statement = 'all'` the server log holds this tenant's `CREATE ROLE` and `ALTER ROLE …
/// PASSWORD` statements, each with a SCRAM-SHA-256 verifier (4096 iterations) and never the
/// password. Setting the same password twice stores two different verifiers (fresh salt).
#[tokio::test]
async fn server_logs_never_contain_the_password() {
    let setup = admin();
    let pool = setup.admin_pool();
    pool.execute("ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    pool.execute("SELECT pg_reload_conf()").await.unwrap();
    // The reload is asynchronous: wait until a new session sees it. The PgAdmin below connects
    // only after that (its pools are lazy), so every statement it sends is logged.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect_as("postgres", "postgres", pg().superuser_password())
            .await
            .unwrap();
        let v: String = sqlx::query_scalar("SHOW log_statement")
            .fetch_one(&mut c)
            .await
            .unwrap();
        if v == "all" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log_statement not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = admin();
    let a = desired("logs", "alpha", Isolation::Database);
    provision(&admin, &a).await;
    let role = a.names.role.as_str();
    let verifier_of = |pool: sqlx::PgPool| async move {
        let v: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(role)
            .fetch_one(&pool)
            .await
            .unwrap();
        v
    };
    let first = verifier_of(admin.admin_pool().clone()).await;
    // The same password again: a new verifier.
    admin
        .apply(&a, &[Step::SetPassword(Slot::Primary)])
        .await
        .unwrap();
    let second = verifier_of(admin.admin_pool().clone()).await;
    pool.execute("ALTER SYSTEM RESET log_statement")
        .await
        .unwrap();
    pool.execute("SELECT pg_reload_conf()").await.unwrap();
    for v in [&first, &second] {
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(tenantdb::scram::matches(&a.password, v));
    }
    assert_ne!(first, second, "two verifiers of one password differ (salt)");
    let log = common::pg().log();
    for (what, prefix) in [
        (
            "CREATE ROLE",
            format!("CREATE ROLE \"{role}\" LOGIN PASSWORD '"),
        ),
        ("ALTER ROLE", format!("ALTER ROLE \"{role}\" PASSWORD '")),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&prefix))
            .unwrap_or_else(|| panic!("{what} of {role} not in the server log"));
        assert!(
            line.contains(&format!("{prefix}SCRAM-SHA-256$4096:")),
            "{what} sent something else than a verifier: {line}"
        );
    }
    // The logged verifiers are the stored ones.
    assert!(log.contains(&first) && log.contains(&second));
    assert!(
        !log.contains(&a.password),
        "plaintext password reached the server log"
    );
}

#[tokio::test]
async fn rotation_keeps_old_credentials_for_the_grace_period_only() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let admin = admin();
    let mut d = desired("rotate", "alpha", Isolation::Schema);
    provision(&admin, &d).await;
    let db = "tenantdb_shared";
    let old_pw = d.password.clone();
    let primary = d.names.role.as_str().to_string();
    let secondary = d.names.secondary_role.as_str().to_string();
    let mut held = connect_as(db, &primary, &old_pw).await.unwrap();
    held.execute("CREATE TABLE before_rotation (id int)")
        .await
        .unwrap();

    // Rotate to the secondary slot with a 3 s grace period.
    let until = Timestamp::now()
        .checked_add(SignedDuration::from_secs(3))
        .unwrap();
    d.active = Slot::Secondary;
    d.password = generate_password();
    d.previous_valid_until = Some(until);
    let steps = provision(&admin, &d).await;
    assert!(steps.contains(&Step::CreateSecondary), "{steps:?}");
    assert!(
        steps.contains(&Step::ExpireLogin(Slot::Primary)),
        "{steps:?}"
    );
    assert!(replan(&admin, &d).await.is_empty(), "rotation converges");

    // New credentials work and act as the owner role; old ones still work during the grace period.
    let mut fresh = connect_as(db, &secondary, &d.password)
        .await
        .expect("new credentials");
    fresh
        .execute("CREATE TABLE after_rotation (id int)")
        .await
        .unwrap();
    fresh
        .execute("INSERT INTO before_rotation VALUES (1)")
        .await
        .unwrap();
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = 'after_rotation'",
    )
    .fetch_one(&mut fresh)
    .await
    .unwrap();
    assert_eq!(
        owner, primary,
        "objects created with rotated credentials belong to the tenant role"
    );
    connect_as(db, &primary, &old_pw)
        .await
        .expect("old password within grace period");

    // After the grace period PostgreSQL refuses the old password; the held connection keeps working.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if connect_as(db, &primary, &old_pw).await.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old password still accepted after grace"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    held.execute("SELECT 1")
        .await
        .expect("connection opened before rotation keeps working");
    // The operator then disables the old slot.
    d.previous_valid_until = None;
    assert_eq!(
        replan(&admin, &d).await,
        vec![Step::DisableLogin(Slot::Primary)]
    );
    provision(&admin, &d).await;
    assert!(replan(&admin, &d).await.is_empty());

    // Rotating back to the primary slot re-enables it with a new password.
    let b_pw = d.password.clone();
    d.active = Slot::Primary;
    d.password = generate_password();
    d.previous_valid_until = Some(
        Timestamp::now()
            .checked_add(SignedDuration::from_secs(3600))
            .unwrap(),
    );
    provision(&admin, &d).await;
    connect_as(db, &primary, &d.password)
        .await
        .expect("primary back with new password");
    connect_as(db, &secondary, &b_pw)
        .await
        .expect("secondary within its grace period");
    assert!(
        connect_as(db, &primary, &old_pw).await.is_err(),
        "first password never comes back"
    );

    // Cleanup drops both login roles.
    drop((held, fresh));
    let report = admin.cleanup(&d.names).await.unwrap();
    assert_eq!(report.dropped.len(), 3, "{report:?}");
}

#[tokio::test]
async fn quotas_are_enforced_by_role_settings() {
    use tenantdb::quota::EffectiveQuotas;
    let admin = admin();
    let mut d = desired("quota", "alpha", Isolation::Database);
    d.quotas = EffectiveQuotas {
        connection_limit: 3,
        statement_timeout_ms: Some(1500),
        idle_in_transaction_timeout_ms: Some(60_000),
        storage_bytes: Some(1),
    };
    provision(&admin, &d).await;
    assert!(replan(&admin, &d).await.is_empty());
    let db = d.names.database.as_str().to_string();
    let role = d.names.role.as_str().to_string();
    let mut c = connect_as(&db, &role, &d.password).await.unwrap();
    let st: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(st, "1500ms");
    let err = c.execute("SELECT pg_sleep(3)").await.unwrap_err();
    assert!(err.to_string().contains("statement timeout"), "{err}");
    c.execute("CREATE TABLE t (id int)").await.unwrap();
    let limits: (i32, i32) = sqlx::query_as("SELECT (SELECT rolconnlimit FROM pg_roles WHERE rolname = $1), (SELECT datconnlimit FROM pg_database WHERE datname = $2)")
        .bind(&role)
        .bind(&db)
        .fetch_one(admin.admin_pool())
        .await
        .unwrap();
    assert_eq!(limits, (3, 3));
    // Connection limit: the 4th concurrent session is refused.
    let c2 = connect_as(&db, &role, &d.password).await.unwrap();
    let c3 = connect_as(&db, &role, &d.password).await.unwrap();
    let err = connect_as(&db, &role, &d.password).await.unwrap_err();
    assert!(err.to_string().contains("too many connections"), "{err}");
    drop((c2, c3));

    // Storage is measured; over quota the tenant turns read-only and its sessions are ended.
    let used = admin.storage_bytes(&d.names).await.unwrap();
    assert!(used > 1_000_000, "a fresh database is several MB: {used}");
    d.read_only = true;
    let steps = provision(&admin, &d).await;
    assert!(
        steps.contains(&Step::TerminateSessions(Slot::Primary)),
        "{steps:?}"
    );
    assert!(c.execute("SELECT 1").await.is_err(), "old session ended");
    let mut c = connect_as(&db, &role, &d.password).await.unwrap();
    let err = c.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
    assert!(err.to_string().contains("read-only transaction"), "{err}");
    // Documented way to free space: an explicit read-write transaction.
    c.execute("BEGIN READ WRITE; DELETE FROM t; COMMIT")
        .await
        .unwrap();
    // Below quota again: writes come back, and the session opened while read-only (a pooled
    // connection would refuse writes until recycled) is ended.
    d.read_only = false;
    provision(&admin, &d).await;
    assert!(
        c.execute("SELECT 1").await.is_err(),
        "read-only session ended"
    );
    let mut c = connect_as(&db, &role, &d.password).await.unwrap();
    c.execute("INSERT INTO t VALUES (1)").await.unwrap();
    assert!(replan(&admin, &d).await.is_empty());

    // Schema mode measurement counts only the tenant's relations.
    let s = desired("quota", "beta", Isolation::Schema);
    provision(&admin, &s).await;
    let empty = admin.storage_bytes(&s.names).await.unwrap();
    let mut cs = connect_as("tenantdb_shared", s.names.role.as_str(), &s.password)
        .await
        .unwrap();
    cs.execute("CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 5000) g").await.unwrap();
    let after = admin.storage_bytes(&s.names).await.unwrap();
    assert!(after > empty + 500_000, "{empty} -> {after}");
}

/// A pooled shared-database connection handed back by `TenantConnection::close` carries no
/// session state from what ran on it (role, session authorization, settings, temporary tables),
/// and one left in a broken transaction is not reused.
#[tokio::test]
async fn pooled_tenant_connections_are_reset_before_reuse() {
    let admin = Arc::new(
        PgAdmin::new(PgSettings {
            admin_url: pg().admin_url(),
            shared_database: Ident::new("tenantdb_shared").unwrap(),
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    );
    let n = names("reset", "acme", Isolation::Schema);
    let mut c = admin.tenant_connection(&n).await.unwrap();
    let clean = who(&mut c).await;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE ROLE reset_probe NOLOGIN; \
         SET ROLE reset_probe; SET search_path TO pg_temp, public; SET application_name = 'dirty'; \
         RESET ROLE; CREATE TEMP TABLE leftover (id int); SET ROLE reset_probe",
    )
    .execute(&mut *c)
    .await
    .unwrap();
    assert_eq!(who(&mut c).await.0, "reset_probe");
    c.close().await;

    // Pool of one: the same backend, back to its clean state.
    let mut c = admin.tenant_connection(&n).await.unwrap();
    let again: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(again, pid, "the pooled connection was reused");
    assert_eq!(who(&mut c).await, clean);

    // A connection whose session cannot be reset (aborted transaction block) is not reused.
    sqlx::raw_sql("BEGIN; SELECT 1/0")
        .execute(&mut *c)
        .await
        .unwrap_err();
    c.close().await;
    let mut c = admin.tenant_connection(&n).await.unwrap();
    let third: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_ne!(third, pid, "a broken connection went back to the pool");
    assert_eq!(who(&mut c).await, clean);
    sqlx::raw_sql("DROP ROLE reset_probe")
        .execute(&mut *c)
        .await
        .unwrap();
    c.close().await;
}

async fn who(c: &mut sqlx::PgConnection) -> (String, String, String, i64) {
    sqlx::query_as(
        "SELECT current_user::text, current_setting('search_path'), current_setting('application_name'), \
         (SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND pg_table_is_visible(oid))",
    )
    .fetch_one(c)
    .await
    .unwrap()
}

/// A tenant owns its dedicated database and may set its defaults: with
/// `ALTER DATABASE … SET search_path = public, pg_catalog` its own `public.hashtext(text)` or
/// `public.set_config(text, text, boolean)` would win over pg_catalog's in an admin session's
/// unqualified calls (the catalog stamp and fingerprint of a move, the replication login's setup)
/// and run as the admin. Admin sessions pin `search_path` in the startup packet, which wins.
#[tokio::test]
async fn a_tenants_database_settings_cannot_hijack_an_admin_session() {
    let admin = admin();
    let d = desired("hostile", "trapper", Isolation::Database);
    provision(&admin, &d).await;
    let (db, role) = (d.names.database.as_str(), d.names.role.as_str());
    let mut t = connect_as(db, role, &d.password).await.unwrap();
    let traps = format!(
        "CREATE TABLE public.trap (who text); \
         CREATE FUNCTION public.hashtext(text) RETURNS integer LANGUAGE sql \
           AS $$ INSERT INTO public.trap VALUES (current_user) RETURNING 0 $$; \
         CREATE FUNCTION public.set_config(text, text, boolean) RETURNS text LANGUAGE sql \
           AS $$ INSERT INTO public.trap VALUES (current_user); \
                 SELECT pg_catalog.set_config($1, $2, $3) $$; \
         ALTER DATABASE \"{db}\" SET search_path = public, pg_catalog"
    );
    t.execute(sqlx::AssertSqlSafe(traps)).await.unwrap();
    t.close().await.unwrap();
    // The trap is real: an admin session that takes the database's default runs it as the admin.
    let mut t = sqlx::PgConnection::connect(&pg().url(db)).await.unwrap();
    sqlx::query("SELECT hashtext('x')")
        .execute(&mut t)
        .await
        .unwrap();
    let sprung: Vec<String> = sqlx::query_scalar("SELECT who FROM public.trap")
        .fetch_all(&mut t)
        .await
        .unwrap();
    assert!(
        !sprung.is_empty(),
        "the trap resolves with the database's path"
    );
    sqlx::query("DELETE FROM public.trap")
        .execute(&mut t)
        .await
        .unwrap();

    // The admin's sessions in the tenant's database: the stamp calls hashtext, the fingerprint
    // set_config, both unqualified.
    let mut a = admin.connect_to(&d.names.database).await.unwrap();
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!(path, "pg_catalog,pg_temp");
    tenantdb::pg::catalog_stamp::stamp(&mut a).await.unwrap();
    tenantdb::pg::fingerprint::fingerprint(&mut a, tenantdb::pg::fingerprint::Scope::Database)
        .await
        .unwrap();
    let as_admin: Vec<String> = sqlx::query_scalar("SELECT who FROM public.trap")
        .fetch_all(&mut a)
        .await
        .unwrap();
    assert_eq!(
        as_admin,
        Vec::<String>::new(),
        "a tenant's function ran as the admin"
    );
    a.close().await.unwrap();
    t.close().await.unwrap();
}
