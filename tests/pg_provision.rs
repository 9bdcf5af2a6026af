//! Apply and cleanup layer against a real PostgreSQL 15 cluster: both isolation modes, login with
//! the generated password, cross-tenant denial, idempotency, drift repair, deletion policies.

mod common;

use common::{admin, connect_as, names};
use sqlx::{Executor, Row};
use tenantdb::crd::Isolation;
use tenantdb::pg::PgAdmin;
use tenantdb::pg::plan::{Desired, Step, plan};
use tenantdb::scram::generate_password;

async fn provision(admin: &PgAdmin, desired: &Desired) -> Vec<Step> {
    let observed = admin.observe(&desired.names, &desired.password).await.unwrap();
    let steps = plan(desired, &observed).unwrap();
    admin.apply(desired, &steps).await.unwrap();
    steps
}

fn desired(ns: &str, name: &str, iso: Isolation) -> Desired {
    Desired {
        names: names(ns, name, iso),
        password: generate_password(),
        connection_limit: -1,
    }
}

async fn replan(admin: &PgAdmin, d: &Desired) -> Vec<Step> {
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    plan(d, &observed).unwrap()
}

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
    let mut ca = connect_as(a.names.database.as_str(), a.names.role.as_str(), &a.password)
        .await
        .expect("tenant login");
    ca.execute("CREATE TABLE notes (id int primary key, body text)").await.unwrap();
    ca.execute("INSERT INTO notes VALUES (1, 'hello')").await.unwrap();
    let sp: String = sqlx::query_scalar("SHOW search_path").fetch_one(&mut ca).await.unwrap();
    assert_eq!(sp, "public");

    // Wrong password is refused.
    assert!(connect_as(a.names.database.as_str(), a.names.role.as_str(), "wrong").await.is_err());
    // A cannot connect to B's database.
    let err = connect_as(b.names.database.as_str(), a.names.role.as_str(), &a.password)
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
    assert!(!row.get::<bool, _>(0) && !row.get::<bool, _>(1) && !row.get::<bool, _>(2) && !row.get::<bool, _>(3));
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
    connect_as(b.names.database.as_str(), b.names.role.as_str(), &b.password).await.unwrap();
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
    let mut cb = connect_as(db, b.names.role.as_str(), &b.password).await.unwrap();
    cb.execute("CREATE TABLE secrets (id int, v text)").await.unwrap();
    cb.execute("INSERT INTO secrets VALUES (1, 'b-only')").await.unwrap();
    let schema_of: String = sqlx::query_scalar("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'secrets'")
        .fetch_one(&mut cb)
        .await
        .unwrap();
    assert_eq!(schema_of, b.names.schema.as_str(), "unqualified tables land in the tenant schema");

    let mut ca = connect_as(db, a.names.role.as_str(), &a.password).await.unwrap();
    ca.execute("CREATE TABLE mine (id int)").await.unwrap();
    let q = format!("SELECT * FROM {}.secrets", b.names.schema);
    let err = ca.execute(sqlx::AssertSqlSafe(q)).await.unwrap_err();
    assert!(err.to_string().contains("permission denied for schema"), "{err}");
    let q = format!("CREATE TABLE {}.planted (id int)", b.names.schema);
    assert!(ca.execute(sqlx::AssertSqlSafe(q)).await.is_err());
    // Nothing in the shared database's public schema either.
    assert!(ca.execute("CREATE TABLE public.planted (id int)").await.is_err());
    // Changing search_path does not help: privileges, not paths, protect the schema.
    let q = format!("SET search_path TO {}", b.names.schema);
    ca.execute(sqlx::AssertSqlSafe(q)).await.unwrap();
    assert!(ca.execute("SELECT * FROM secrets").await.is_err());
    drop(ca);

    // Delete A: its schema and role go, B's data stays.
    let report = admin.cleanup(&a.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2, "{report:?}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM secrets").fetch_one(&mut cb).await.unwrap();
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
    pool.execute(sqlx::AssertSqlSafe(format!("ALTER ROLE {role} PASSWORD 'changed-by-hand' CREATEDB"))).await.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!("ALTER ROLE {role} IN DATABASE tenantdb_shared RESET search_path"))).await.unwrap();
    let steps = replan(&admin, &a).await;
    assert_eq!(steps, vec![Step::ResetRoleAttributes, Step::SetPassword, Step::SetSearchPath]);
    admin.apply(&a, &steps).await.unwrap();
    assert!(replan(&admin, &a).await.is_empty());
    connect_as("tenantdb_shared", role.as_str(), &a.password).await.unwrap();

    // Schema dropped by hand is recreated.
    let shared = admin.shared_pool().await.unwrap();
    shared.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", a.names.schema))).await.unwrap();
    assert_eq!(replan(&admin, &a).await, vec![Step::CreateSchema]);
    provision(&admin, &a).await;

    // A new password (Secret recreated) is pushed to the role.
    a.password = generate_password();
    assert_eq!(replan(&admin, &a).await, vec![Step::SetPassword]);
    provision(&admin, &a).await;
    connect_as("tenantdb_shared", role.as_str(), &a.password).await.unwrap();

    // Role dropped by hand (with the schema it owns) is recreated.
    admin.cleanup(&a.names).await.unwrap();
    provision(&admin, &a).await;
    assert!(replan(&admin, &a).await.is_empty());
    connect_as("tenantdb_shared", role.as_str(), &a.password).await.unwrap();
}

#[tokio::test]
async fn foreign_objects_are_never_touched() {
    let admin = admin();
    let a = desired("foreign", "alpha", Isolation::Database);
    let pool = admin.admin_pool();
    // Someone else's role with the same name.
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE ROLE {} LOGIN", a.names.role))).await.unwrap();
    let observed = admin.observe(&a.names, &a.password).await.unwrap();
    assert!(plan(&a, &observed).is_err(), "foreign role must be a conflict");
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
    let mut c = connect_as(a.names.database.as_str(), a.names.role.as_str(), &a.password).await.unwrap();
    c.execute("CREATE TABLE t (id int)").await.unwrap();
    // Session still open while the tenant is deleted.
    let report = admin.cleanup(&a.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2);
    assert!(c.execute("SELECT 1").await.is_err(), "session was terminated");

    let s = desired("busy", "beta", Isolation::Schema);
    provision(&admin, &s).await;
    let mut c = connect_as("tenantdb_shared", s.names.role.as_str(), &s.password).await.unwrap();
    c.execute("CREATE TABLE t (id int)").await.unwrap();
    c.execute("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'").await.unwrap();
    let report = admin.cleanup(&s.names).await.unwrap();
    assert_eq!(report.dropped.len(), 2, "{report:?}");
}

#[tokio::test]
async fn server_logs_never_contain_the_password() {
    let admin = admin();
    let shared = admin.admin_pool();
    shared.execute("ALTER SYSTEM SET log_statement = 'all'").await.unwrap();
    shared.execute("SELECT pg_reload_conf()").await.unwrap();
    let a = desired("logs", "alpha", Isolation::Database);
    provision(&admin, &a).await;
    shared.execute("ALTER SYSTEM RESET log_statement").await.unwrap();
    shared.execute("SELECT pg_reload_conf()").await.unwrap();
    let log = common::pg().log();
    assert!(log.contains("CREATE ROLE"), "statement logging was on");
    assert!(log.contains("SCRAM-SHA-256$4096:"), "only the verifier is sent");
    assert!(!log.contains(&a.password), "plaintext password reached the server log");
}
