//! The schema copy of a move (`tenantdb::moves::copy::copy_schema`) between two real PostgreSQL
//! clusters, as the move's Preparing step runs it: the tenant's roles copied to the target, its
//! database or schema created there, then `pg_dump` of the source restored by the move's
//! unprivileged restore role — never by the admin.
//!
//! - A `database` tenant with objects it made itself (a table, a function, a trusted extension, a
//!   grant) and a `schema` tenant copy with equal catalog fingerprints; everything on the target
//!   is owned by the tenant's role (the extension too); the restore role is gone afterwards and
//!   holds no privilege on the shared database.
//! - A superuser-owned `SECURITY DEFINER` function planted in a tenant's database (what an admin
//!   restore would re-create as the superuser's on the target) makes the copy fail with a
//!   permission error: the restore can do only what the tenant's role can. The target holds no
//!   function of it and no restore role.
//! - A role named like the move's restore role or replication login without the move's marker
//!   blocks no clean-up (the drops leave it alone) and refuses the move (a conflict).
//! - The shared layout's repair leaves a move replication login's `USAGE`/`SELECT` alone (marked
//!   role only; an unmarked role of that name loses them).
//! - A restore whose input is cut short (the operator killed while writing it) commits nothing.
//! - The cut-over's fence (`tenantdb::moves::sql::fence`) returns only once the tenant's sessions
//!   have exited (a session with thousands of temporary tables takes a while), and the role can no
//!   longer log in.

use tenantdb_testkit::fixtures as common;

use std::sync::Arc;
use std::time::Duration;

use common::{admin, connect_as, names, provision};
use sqlx::{Connection, Executor, PgConnection};
use tenantdb::crd::Isolation;
use tenantdb::moves::copy::{
    RESTORE_ARGS, copy_schema, drop_restore_role, restore_role, transactional,
};
use tenantdb::moves::repl_login;
use tenantdb::moves::roles::Found;
use tenantdb::moves::sql::{self, Scope};
use tenantdb::naming::{Ident, TenantNames};
use tenantdb::pg::fingerprint::{self, Fingerprint};
use tenantdb::pg::plan::Desired;
use tenantdb::pg::{PgAdmin, PgSettings};
use tenantdb::scram::generate_password;
use tenantdb_testkit::localpg::LocalPg;

/// The target cluster of this binary (the source is the fixtures' cluster).
fn target_pg() -> &'static LocalPg {
    static PG: std::sync::OnceLock<LocalPg> = std::sync::OnceLock::new();
    PG.get_or_init(|| LocalPg::start().expect("start the target PostgreSQL"))
}

fn target_admin() -> Arc<PgAdmin> {
    Arc::new(
        PgAdmin::new(PgSettings {
            admin_url: target_pg().admin_url(),
            shared_database: Ident::new("tenantdb_shared").unwrap(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    )
}

/// The move's Preparing step up to and including the schema copy.
async fn prepare_and_copy(
    source: &PgAdmin,
    target: &PgAdmin,
    names: &TenantNames,
    move_name: &Ident,
) -> tenantdb::error::Result<()> {
    let roles = sql::read_roles(source, names).await?;
    sql::prepare_roles(target, names, &roles).await?;
    sql::prepare_database(target, names).await?;
    if !names.dedicated_database {
        target.shared_pool().await?;
    }
    let scope = Scope::of(names);
    copy_schema(
        source,
        &scope,
        target,
        &scope,
        names,
        &restore_role(move_name)?,
    )
    .await
}

/// A session of the tenant's role in its database (on the source).
async fn login(d: &Desired) -> Result<PgConnection, sqlx::Error> {
    connect_as(
        d.names.database.as_str(),
        d.names.role.as_str(),
        &d.password,
    )
    .await
}

async fn fingerprint_of(pg: &PgAdmin, names: &TenantNames) -> Fingerprint {
    let mut c = pg.connect_to(&names.database).await.unwrap();
    let scope = if names.dedicated_database {
        fingerprint::Scope::Database
    } else {
        fingerprint::Scope::Schema(names.schema.as_str())
    };
    let f = fingerprint::fingerprint(&mut c, scope).await.unwrap();
    let _ = c.close().await;
    f
}

async fn target_conn(db: &str) -> PgConnection {
    PgConnection::connect(&target_pg().url(db)).await.unwrap()
}

async fn role_exists(name: &str) -> bool {
    let mut c = target_conn("postgres").await;
    sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_optional(&mut c)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn tenant_objects_are_restored_by_an_unprivileged_role() {
    let (source, target) = (admin(), target_admin());
    let d = Desired::simple(
        names("mvcopy", "db", Isolation::Database),
        generate_password(),
    );
    provision(&source, &d).await;
    let s = Desired::simple(
        names("mvcopy", "sc", Isolation::Schema),
        generate_password(),
    );
    provision(&source, &s).await;
    let mut c = login(&d).await.unwrap();
    c.execute(
        "CREATE EXTENSION pgcrypto; \
         CREATE TABLE notes (id serial PRIMARY KEY, body text DEFAULT gen_random_uuid()::text); \
         CREATE INDEX notes_body ON notes ((lower(body))); \
         CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM notes'; \
         COMMENT ON TABLE notes IS 'the tenant''s own'",
    )
    .await
    .unwrap();
    let mut c = connect_as(
        s.names.database.as_str(),
        s.names.role.as_str(),
        &s.password,
    )
    .await
    .unwrap();
    c.execute("CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text)")
        .await
        .unwrap();

    let (nd, ns) = (
        Ident::new("tenantdb_mv_00000000000000d1").unwrap(),
        Ident::new("tenantdb_mv_00000000000000c1").unwrap(),
    );
    prepare_and_copy(&source, &target, &d.names, &nd)
        .await
        .unwrap();
    prepare_and_copy(&source, &target, &s.names, &ns)
        .await
        .unwrap();

    for n in [&d.names, &s.names] {
        let (a, b) = (
            fingerprint_of(&source, n).await,
            fingerprint_of(&target, n).await,
        );
        assert!(a == b, "{}: {:?}", n.role.as_str(), a.diff(&b, 10));
    }
    // Everything is the tenant's: the extension (created by the restore role) too.
    let mut t = target_conn(d.names.database.as_str()).await;
    let foreign: Vec<String> = sqlx::query_scalar(
        "SELECT 'extension ' || extname FROM pg_extension e WHERE extname <> 'plpgsql' \
           AND extowner <> (SELECT oid FROM pg_roles WHERE rolname = $1) \
         UNION ALL SELECT 'relation ' || relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = 'public' AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1) \
         UNION ALL SELECT 'function ' || proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
          WHERE n.nspname = 'public' AND p.proname = 'note_count' \
            AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)",
    )
    .bind(d.names.role.as_str())
    .fetch_all(&mut t)
    .await
    .unwrap();
    assert!(foreign.is_empty(), "not owned by the tenant: {foreign:?}");
    let mut t = target_conn("tenantdb_shared").await;
    let owner: String = sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1",
    )
    .bind(s.names.schema.as_str())
    .fetch_one(&mut t)
    .await
    .unwrap();
    assert_eq!(owner, s.names.role.as_str());
    for n in [&nd, &ns] {
        let r = restore_role(n).unwrap();
        assert!(!role_exists(r.as_str()).await, "{} left", r.as_str());
    }
    let create_grants: Vec<String> = sqlx::query_scalar(
        "SELECT a::text FROM pg_database, unnest(datacl) a WHERE datname = 'tenantdb_shared' AND a::text LIKE 'tenantdb\\_mv\\_%'",
    )
    .fetch_all(&mut t)
    .await
    .unwrap();
    assert!(create_grants.is_empty(), "{create_grants:?}");
}

#[tokio::test]
async fn a_superuser_object_in_the_dump_is_refused() {
    let (source, target) = (admin(), target_admin());
    let d = Desired::simple(
        names("mvcopy", "planted", Isolation::Database),
        generate_password(),
    );
    provision(&source, &d).await;
    let mut c = PgConnection::connect(&common::pg().url(d.names.database.as_str()))
        .await
        .unwrap();
    c.execute(
        "CREATE FUNCTION public.escalate() RETURNS text LANGUAGE sql SECURITY DEFINER \
         AS 'SELECT current_user::text'",
    )
    .await
    .unwrap();
    let name = Ident::new("tenantdb_mv_00000000000000e1").unwrap();
    let err = prepare_and_copy(&source, &target, &d.names, &name)
        .await
        .expect_err("a superuser-owned function must not be restored");
    let msg = err.to_string();
    assert!(
        msg.contains("restoring the schema on the target failed")
            && msg.contains("must be member of role"),
        "{msg}"
    );
    // The same every attempt: the move rolls back instead of retrying.
    assert!(err.is_permanent(), "{msg}");
    let mut t = target_conn(d.names.database.as_str()).await;
    let planted: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_proc WHERE proname = 'escalate'")
            .fetch_optional(&mut t)
            .await
            .unwrap();
    assert!(planted.is_none(), "the function reached the target");
    let r = restore_role(&name).unwrap();
    assert!(!role_exists(r.as_str()).await, "{} left", r.as_str());
}

/// A role named like one of a move's roles but without the move's marker is not the move's:
/// the clean-ups (roll-back, deletion, after a crash) leave it alone and go on instead of
/// failing, and the move refuses to create its role over it (a conflict, the role untouched).
#[tokio::test]
async fn a_role_named_like_a_move_role_is_left_alone_and_refuses_the_move() {
    let (source, target) = (admin(), target_admin());
    let d = Desired::simple(
        names("mvcopy", "squat", Isolation::Schema),
        generate_password(),
    );
    provision(&source, &d).await;
    let name = Ident::new("tenantdb_mv_00000000000000f1").unwrap();
    let (restore, repl) = (
        restore_role(&name).unwrap(),
        repl_login::role(&name).unwrap(),
    );
    let squat =
        |r: &Ident| format!("CREATE ROLE {r} NOLOGIN; COMMENT ON ROLE {r} IS 'someone else''s'");
    target_conn("postgres")
        .await
        .execute(sqlx::AssertSqlSafe(squat(&restore)))
        .await
        .unwrap();
    let mut s = PgConnection::connect(&common::pg().url("postgres"))
        .await
        .unwrap();
    s.execute(sqlx::AssertSqlSafe(squat(&repl))).await.unwrap();
    let scope = Scope::of(&d.names);

    // Clean-ups go on.
    let found = drop_restore_role(&target, &scope, &d.names, &restore)
        .await
        .expect("an unmarked restore-named role must not block a clean-up");
    assert_eq!(found, Found::NotOurs);
    let found = repl_login::drop(&source, &scope, &d.names, &repl)
        .await
        .expect("an unmarked replication-named role must not block a clean-up");
    assert_eq!(found, Found::NotOurs);

    // The move does not take them over.
    let err = prepare_and_copy(&source, &target, &d.names, &name)
        .await
        .expect_err("the restore role must not be created over someone else's");
    assert!(
        matches!(err, tenantdb::error::Error::Conflict(_))
            && err.to_string().contains(restore.as_str()),
        "{err}"
    );
    let err = repl_login::create(&source, &scope, &d.names, &repl)
        .await
        .expect_err("the replication login must not be created over someone else's");
    assert!(
        matches!(err, tenantdb::error::Error::Conflict(_))
            && err.to_string().contains(repl.as_str()),
        "{err}"
    );

    // Both untouched: still there, still without login, still someone else's.
    let untouched = "SELECT NOT rolcanlogin AND shobj_description(oid, 'pg_authid') = 'someone else''s' \
                       FROM pg_roles WHERE rolname = $1";
    let on_target: Option<bool> = sqlx::query_scalar(untouched)
        .bind(restore.as_str())
        .fetch_optional(&mut target_conn("postgres").await)
        .await
        .unwrap();
    let on_source: Option<bool> = sqlx::query_scalar(untouched)
        .bind(repl.as_str())
        .fetch_optional(&mut s)
        .await
        .unwrap();
    assert_eq!((on_target, on_source), (Some(true), Some(true)));
}

/// A shared tenant's move grants its replication login `USAGE` on the layout schema and `SELECT`
/// on its tables; the layout's repair (every resync, every operator start) takes privileges it
/// did not grant for drift and revokes them. The move's grants are left (its table copies would
/// fail on the source for as long as it runs), but only to a role of the move login's name that
/// carries its marker while the move's publication exists: the same grants to an unmarked role
/// of that name, or to a marked one whose publication is gone, are revoked.
#[tokio::test]
async fn the_layout_repair_leaves_a_moves_replication_grants_alone() {
    use tenantdb::pg::shared::{SharedLayout, ensure_layout, ensure_policies};
    let source = admin();
    let layout = SharedLayout::for_schema(Ident::new("tenantdb_rls_mvgrants").unwrap()).unwrap();
    ensure_layout(
        &source,
        &layout,
        &tenantdb::migrate::MigrationSet::bundled(),
    )
    .await
    .unwrap();
    // The move's login (its publication exists), one of a move that is over (no publication), an
    // unmarked one.
    let (ours, over, other) = (
        "tenantdb_mv_00000000000000a1_repl",
        "tenantdb_mv_00000000000000a3_repl",
        "tenantdb_mv_00000000000000a2_repl",
    );
    let mut c = PgConnection::connect(&common::pg().url("tenantdb_shared"))
        .await
        .unwrap();
    c.execute(
        "CREATE PUBLICATION tenantdb_mv_00000000000000a1 FOR TABLE tenantdb_rls_mvgrants.saas_tenants",
    )
    .await
    .unwrap();
    for (role, comment) in [
        (ours, "tenantdb.io/move-replication=ns/a"),
        (over, "tenantdb.io/move-replication=ns/b"),
        (other, "someone else's"),
    ] {
        c.execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {role} LOGIN REPLICATION BYPASSRLS; COMMENT ON ROLE {role} IS '{}'; \
             GRANT USAGE ON SCHEMA tenantdb_rls_mvgrants TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA tenantdb_rls_mvgrants TO {role}",
            comment.replace('\'', "''")
        )))
        .await
        .unwrap();
    }
    ensure_policies(&source, &layout).await.unwrap();
    let can = "SELECT has_schema_privilege($1, 'tenantdb_rls_mvgrants', 'USAGE') \
                  AND has_table_privilege($1, 'tenantdb_rls_mvgrants.saas_tenants', 'SELECT')";
    for (role, kept) in [(ours, true), (over, false), (other, false)] {
        let has: bool = sqlx::query_scalar(can)
            .bind(role)
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(has, kept, "{role}: grants kept {has}");
    }
    c.execute("DROP PUBLICATION tenantdb_mv_00000000000000a1")
        .await
        .unwrap();
}

/// A shared tenant's move rolled back before the target's layout was set up drops the tenant's
/// rows and registration there (`moving::drop_rows`): with no layout on the server that is
/// nothing, not an error (which would keep the move in `RollingBack` for good).
#[tokio::test]
async fn a_shared_tenants_rows_are_dropped_where_no_layout_exists() {
    use tenantdb::pg::shared::{SharedLayout, delete_tenant_rows, tenant_id, unregister_tenant};
    let target = target_admin();
    let layout = SharedLayout::for_schema(Ident::new("tenantdb_rls_absent").unwrap()).unwrap();
    let d = names("mvcopy", "nolayout", Isolation::Shared);
    unregister_tenant(&target, &layout, &d.role, &d.secondary_role)
        .await
        .unwrap();
    let n = delete_tenant_rows(&target, &layout, &tenant_id("mvcopy", "nolayout"), 1000)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// The cut-over's fence returns only once the tenant's sessions have exited, not when they were
/// signalled: a backend still on its way out could commit after the catch-up position is read.
/// The session here holds a few thousand temporary tables, so its exit takes a while.
#[tokio::test]
async fn the_fence_returns_once_the_sessions_have_exited() {
    let source = admin();
    let d = Desired::simple(
        names("mvcopy", "fenced", Isolation::Database),
        generate_password(),
    );
    provision(&source, &d).await;
    let mut c = login(&d).await.unwrap();
    c.execute(
        "DO $$ BEGIN FOR i IN 1..3000 LOOP \
           EXECUTE format('CREATE TEMP TABLE t%s (id int PRIMARY KEY, v text)', i); \
         END LOOP; END $$",
    )
    .await
    .unwrap();
    sql::fence(&source, &d.names).await.unwrap();
    let mut a = PgConnection::connect(&common::pg().url("postgres"))
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE usename = $1")
        .bind(d.names.role.as_str())
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!(left, 0, "a session of the tenant outlived the fence");
    assert!(login(&d).await.is_err(), "the fenced role can still log in");
    drop(c);
}

/// A session of the tenant that appears after the fence looked (a login that passed its check
/// just before `NOLOGIN` committed, simulated here by letting one in and fencing again without
/// terminating) is seen by the cut-over's last check.
#[tokio::test]
async fn a_login_that_slipped_past_the_fence_is_seen() {
    let source = admin();
    let d = Desired::simple(
        names("mvcopy", "slipped", Isolation::Database),
        generate_password(),
    );
    provision(&source, &d).await;
    sql::fence(&source, &d.names).await.unwrap();
    assert_eq!(sql::sessions(&source, &d.names).await.unwrap(), 0);
    let mut a = PgConnection::connect(&common::pg().url("postgres"))
        .await
        .unwrap();
    let role = d.names.role.as_str();
    let (on, off) = (
        format!("ALTER ROLE \"{role}\" LOGIN"),
        format!("ALTER ROLE \"{role}\" NOLOGIN"),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(on))
        .execute(&mut a)
        .await
        .unwrap();
    let late = login(&d).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(off))
        .execute(&mut a)
        .await
        .unwrap();
    assert_eq!(sql::sessions(&source, &d.names).await.unwrap(), 1);
    drop(late);
}

/// Runs the restore's `psql` (its options) on `script` against `db` of the target cluster.
async fn psql_restore(db: &str, script: &[u8]) -> std::process::ExitStatus {
    use tokio::io::AsyncWriteExt;
    let mut p = tokio::process::Command::new(tenantdb::moves::copy::tool("psql"))
        .args(RESTORE_ARGS)
        .arg("-d")
        .arg(target_pg().url(db))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut i = p.stdin.take().unwrap();
    i.write_all(script).await.unwrap();
    drop(i); // end of input, as when the operator that wrote it was killed
    p.wait().await.unwrap()
}

/// A restore whose input is cut short (the operator killed while writing it, psql living on)
/// commits nothing: the script is one transaction that only its last line commits. With
/// `--single-transaction` psql committed the first half at the end of its input.
#[tokio::test]
async fn a_restore_cut_short_commits_nothing() {
    let mut a = target_conn("postgres").await;
    for sql in [
        "DROP DATABASE IF EXISTS mvcopy_cut",
        "CREATE DATABASE mvcopy_cut",
    ] {
        a.execute(sql).await.unwrap();
    }
    let script = transactional(
        b"CREATE TABLE first_half (id int);\nCREATE TABLE second_half (id int);\n".to_vec(),
    );
    let second: &[u8] = b"CREATE TABLE second_half";
    let boundary = script
        .windows(second.len())
        .position(|w| w == second)
        .unwrap();
    let tables = || async {
        let mut c = target_conn("mvcopy_cut").await;
        sqlx::query_scalar::<_, String>(
            "SELECT relname::text FROM pg_class WHERE relname LIKE '%_half' ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    };
    // Cut between two statements, and in the middle of one (psql runs what it holds at the end
    // of its input).
    for cut in [boundary, boundary + 7] {
        psql_restore("mvcopy_cut", &script[..cut]).await;
        assert_eq!(
            tables().await,
            Vec::<String>::new(),
            "the script cut after {cut} bytes committed a part"
        );
    }
    assert!(psql_restore("mvcopy_cut", &script).await.success());
    assert_eq!(tables().await, ["first_half", "second_half"]);
}

/// The move's same-cluster guard (`tenantdb::moves::sql::same_cluster`): one cluster reached
/// twice is the same, two clusters are not.
#[tokio::test]
async fn one_cluster_under_two_names_is_told_apart_from_two_clusters() {
    let (source, target) = (admin(), target_admin());
    let again = admin();
    let same = sql::same_cluster(&source, "a", &again, "b").await.unwrap();
    assert!(
        same.as_deref()
            .is_some_and(|s| s.contains("servers a and b are the same PostgreSQL cluster")),
        "{same:?}"
    );
    let two = sql::same_cluster(&source, "a", &target, "c").await.unwrap();
    assert_eq!(two, None);
}
