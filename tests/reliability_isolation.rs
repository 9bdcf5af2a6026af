//! Cross-mode isolation matrix: two Tenants of each isolation mode (`database`, `schema`,
//! `shared`), provisioned by the real `tenantdb` binary, one of each mode on its rotated `_b` login
//! role. For every ordered pair (A, B) of different tenants — database↔schema, schema↔shared,
//! shared↔shared and every other combination, both ways — A's credentials (from its Secret) try
//! to reach B: connect to B's database, read, write and create objects in B's schema (for a
//! `shared` B: B's rows in the shared tables), see B through the catalogs (`pg_stat_activity`
//! query text, `pg_stats` values, `pg_database_size`), use client settings (`SET app.tenant_id`,
//! `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET search_path`) and call the row-level security
//! helper `tenantdb_current_tenant()`. Every attempt is refused (SQLSTATE 42501) or, for a
//! `shared` A on B's rows, sees and changes nothing; and every such check is preceded by the same
//! operation succeeding for B on its own objects, so a denial cannot come from a broken set-up.
//!
//! What is not a boundary and not asserted: object *names* in the catalogs (`pg_roles`,
//! `pg_database`, `pg_class` of a shared database) are readable by every PostgreSQL user.

use tenantdb_testkit::e2e;
use tenantdb_testkit::reliability;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, wait_for};
use kube::api::{Patch, PatchParams};
use reliability::{login, op_tail};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

const T: Duration = Duration::from_secs(60);
const NS: &str = "iso";
const SHARED_DB: &str = "tenantdb_shared";
const RLS: &str = "tenantdb_rls";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Database,
    Schema,
    Shared,
}

struct Who {
    name: &'static str,
    mode: Mode,
    /// Login role from the Secret (`<role>_b` once rotated).
    user: String,
    password: String,
    database: String,
    schema: String,
    /// Primary role.
    role: String,
    /// Login roles of this tenant that exist (primary and, if created, `_b`).
    roles: Vec<String>,
    /// Tenant id (`shared` only).
    tenant_id: Option<String>,
}

impl Who {
    fn secret_marker(&self) -> String {
        format!("secret-of-{}", self.name)
    }
}

async fn sql(c: &mut PgConnection, s: &str) -> Result<u64, sqlx::Error> {
    c.execute(AssertSqlSafe(s.to_string()))
        .await
        .map(|r| r.rows_affected())
}

async fn scalar_i64(c: &mut PgConnection, s: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(s.to_string()))
        .fetch_one(&mut *c)
        .await
}

async fn scalar_text(c: &mut PgConnection, s: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(s.to_string()))
        .fetch_one(&mut *c)
        .await
}

/// The result must be an `insufficient_privilege` error (permission denied, row-level security
/// violation).
#[track_caller]
fn denied<T: std::fmt::Debug>(what: &str, r: Result<T, sqlx::Error>) {
    match r {
        Ok(v) => panic!("{what}: allowed ({v:?})"),
        Err(sqlx::Error::Database(e)) => assert_eq!(
            e.code().as_deref(),
            Some("42501"),
            "{what}: failed, but not with insufficient_privilege: {}",
            e.message()
        ),
        Err(e) => panic!("{what}: unexpected error kind: {e}"),
    }
}

/// With `search_path` set to a schema A has no `USAGE` on, PostgreSQL leaves that schema out of
/// the path: it is not in `current_schemas()` and an unqualified name in it is not found.
async fn hidden(c: &mut PgConnection, schema: &str, what: &str, query: &str) {
    let path: Vec<String> = sqlx::query_scalar("SELECT unnest(current_schemas(false))::text")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    assert!(
        !path.iter().any(|p| p == schema),
        "{what}: {schema} in the effective path {path:?}"
    );
    match scalar_i64(c, query).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {}
        other => panic!("{what}: expected undefined_table, got {other:?}"),
    }
}

/// The owner's control operation must succeed.
#[track_caller]
fn allowed<T>(what: &str, r: Result<T, sqlx::Error>) -> T {
    r.unwrap_or_else(|e| panic!("owner control failed: {what}: {e}"))
}

async fn rotate(env: &Env, name: &str) {
    let secret = format!("{name}-db");
    let old = env.secret_value(NS, &secret, "password").await.unwrap();
    env.tenants(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
        )
        .await
        .unwrap();
    wait_for(T, &format!("{name} rotated"), || async {
        let p = env.secret_value(NS, &secret, "password").await?;
        (p != old).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)));
    wait_for(
        T,
        &format!("{name}: rotated credentials log in"),
        || async { env.connect_with_secret(NS, &secret).await.ok() },
    )
    .await
    .unwrap();
}

async fn home(env: &Env, w: &Who) -> PgConnection {
    login(env, &w.database, &w.user, &w.password)
        .await
        .unwrap_or_else(|e| panic!("{}: own login: {e}", w.name))
}

/// Puts a marker row in the tenant's own data and statistics on it.
async fn seed(env: &Env, w: &Who) {
    let mut c = home(env, w).await;
    let m = w.secret_marker();
    match w.mode {
        Mode::Shared => {
            allowed(
                "seed saas_tenants",
                sql(
                    &mut c,
                    &format!(
                        "INSERT INTO saas_tenants (id, tenant_code, tenant_name) \
                         VALUES (tenantdb_current_tenant(), '{m}', '{m}')"
                    ),
                )
                .await,
            );
        }
        Mode::Database | Mode::Schema => {
            let s = &w.schema;
            for q in [
                format!("CREATE TABLE \"{s}\".iso_probe (id int, secret text)"),
                format!(
                    "INSERT INTO \"{s}\".iso_probe SELECT g, '{m}' FROM generate_series(1, 50) g"
                ),
                format!("ANALYZE \"{s}\".iso_probe"),
            ] {
                allowed(&q, sql(&mut c, &q).await);
            }
        }
    }
    let _ = c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ordered_pair_of_tenants_across_all_three_modes_is_isolated() {
    let env = Env::start().await;
    let specs = [
        ("d-one", Mode::Database, "database"),
        ("d-two", Mode::Database, "database"),
        ("s-one", Mode::Schema, "schema"),
        ("s-two", Mode::Schema, "schema"),
        ("r-one", Mode::Shared, "shared"),
        ("r-two", Mode::Shared, "shared"),
    ];
    for (name, _, iso) in specs {
        env.create_tenant(
            NS,
            name,
            json!({"isolation": iso, "credentials": {"gracePeriod": "1s"}}),
        )
        .await;
    }
    for (name, _, _) in specs {
        env.wait_ready(NS, name, T).await;
    }
    // One tenant of each mode logs in with its rotation role: those credentials must be as
    // confined as the primary's.
    for name in ["d-one", "s-one", "r-one"] {
        rotate(&env, name).await;
    }
    let admin = env.admin_pool().await;
    let mut who = vec![];
    for (name, mode, _) in specs {
        let st = env.wait_ready(NS, name, T).await.status.unwrap();
        let secret = format!("{name}-db");
        let role = st.role.clone().unwrap();
        let roles: Vec<String> = sqlx::query_scalar(
            "SELECT rolname::text FROM pg_roles WHERE rolname IN ($1, $1 || '_b') ORDER BY 1",
        )
        .bind(&role)
        .fetch_all(&admin)
        .await
        .unwrap();
        let creds = env
            .secret_values(NS, &secret, &["username", "password"])
            .await
            .unwrap();
        who.push(Who {
            name,
            mode,
            user: creds[0].clone(),
            password: creds[1].clone(),
            database: st.database.unwrap(),
            schema: st.schema.unwrap(),
            role,
            roles,
            tenant_id: env.secret_value(NS, &secret, "tenantId").await,
        });
    }
    for w in &who {
        if ["d-one", "s-one", "r-one"].contains(&w.name) {
            assert_eq!(
                w.user,
                format!("{}_b", w.role),
                "{} uses its rotation role",
                w.name
            );
        }
        assert_eq!(w.tenant_id.is_some(), w.mode == Mode::Shared, "{}", w.name);
        seed(&env, w).await;
    }
    // Large objects live in the database's pg_largeobject, outside every tenant schema: in the
    // shared database they would escape the storage quota, so tenants there cannot create any.
    for w in who.iter().filter(|w| w.mode != Mode::Database) {
        let mut c = home(&env, w).await;
        for f in [
            "SELECT lo_from_bytea(0, 'x')",
            "SELECT lo_creat(-1)",
            "SELECT lo_create(0)",
        ] {
            denied(&format!("{}: {f}", w.name), sql(&mut c, f).await);
        }
        c.close().await.unwrap();
    }
    // Statistics on the shared tables exist (the admin sees them); tenants must not.
    let shared_admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url(SHARED_DB))
        .await
        .unwrap();
    shared_admin
        .execute("ANALYZE tenantdb_rls.saas_tenants")
        .await
        .unwrap();
    let stats: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'tenantdb_rls' AND tablename = 'saas_tenants'",
    )
    .fetch_one(&shared_admin)
    .await
    .unwrap();
    assert!(stats > 0, "no statistics on the shared tables");

    // One idle session per tenant whose last query carries its marker (pg_stat_activity).
    let mut witnesses = vec![];
    for w in &who {
        let mut c = home(&env, w).await;
        sql(&mut c, &format!("SELECT '{}-witness'", w.secret_marker()))
            .await
            .unwrap();
        witnesses.push(c);
    }

    let mut checks: BTreeMap<String, usize> = BTreeMap::new();
    for a in &who {
        for b in &who {
            if a.name == b.name {
                continue;
            }
            let tag = format!(
                "{} ({:?}, {}) → {} ({:?})",
                a.name, a.mode, a.user, b.name, b.mode
            );
            let n = pair(&env, a, b, &tag).await;
            checks.insert(format!("{} → {}", a.name, b.name), n);
        }
    }
    drop(witnesses);
    assert_eq!(checks.len(), 30, "every ordered pair of six tenants");
    for (pair, n) in &checks {
        assert!(*n >= 7, "{pair}: only {n} checks");
    }
    let total: usize = checks.values().sum();
    eprintln!(
        "cross-mode isolation: {total} checks over {} ordered pairs: {checks:#?}",
        checks.len()
    );
}

/// All checks of A against B; returns how many were made.
async fn pair(env: &Env, a: &Who, b: &Who, tag: &str) -> usize {
    let mut n = 0;
    let mut ca = home(env, a).await;
    let mut cb = home(env, b).await;

    // Connect.
    let own = login(env, &b.database, &b.user, &b.password).await;
    let _ = allowed(&format!("{tag}: {} logs in to its database", b.name), own)
        .close()
        .await;
    if a.database != b.database {
        denied(
            &format!("{tag}: CONNECT to {}", b.database),
            login(env, &b.database, &a.user, &a.password)
                .await
                .map(|_| ()),
        );
        n += 1;
    }

    // Roles: B's login roles and the superuser.
    let mut targets = b.roles.clone();
    targets.push("postgres".into());
    for target in &targets {
        if b.roles.contains(target) {
            // B's sessions may act as B's primary role (the rotation role does so by default).
            let q = format!("SET ROLE \"{}\"", b.role);
            allowed(&format!("{tag}: {} {q}", b.name), sql(&mut cb, &q).await);
            sql(&mut cb, "RESET ROLE").await.unwrap();
        }
        for q in [
            format!("SET ROLE \"{target}\""),
            format!("SET SESSION AUTHORIZATION \"{target}\""),
        ] {
            denied(&format!("{tag}: {q}"), sql(&mut ca, &q).await);
            n += 1;
        }
    }

    // Catalogs: B's session query text.
    let witness = format!("{}-witness", b.secret_marker());
    let q = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{witness}%' AND query NOT LIKE '%pg_stat_activity%'"
    );
    // (A rotation role's sessions act as the primary role, which has no privileges of the
    // rotation role: look as the login role itself.)
    sql(&mut cb, &format!("SET ROLE \"{}\"", b.user))
        .await
        .unwrap();
    assert_eq!(
        allowed(
            &format!("{tag}: {} sees its own session", b.name),
            scalar_i64(&mut cb, &q).await
        ),
        1,
        "{tag}: owner control: {} sees its witness session's query",
        b.name
    );
    sql(&mut cb, "RESET ROLE").await.unwrap();
    assert_eq!(
        scalar_i64(&mut ca, &q).await.unwrap(),
        0,
        "{tag}: B's query text visible in pg_stat_activity"
    );
    n += 1;

    if a.database != b.database {
        // Different databases: no statement of A can name B's objects; sizes need CONNECT.
        let q = format!("SELECT pg_database_size('{}')", b.database);
        allowed(
            &format!("{tag}: {} {q}", b.name),
            scalar_i64(&mut cb, &q).await,
        );
        denied(&format!("{tag}: {q}"), scalar_i64(&mut ca, &q).await);
        n += 1;
        close(ca, cb).await;
        return n;
    }

    // Same database (tenantdb_shared): B is `schema` or `shared`, A is `schema` or `shared`.
    let m = b.secret_marker();
    match b.mode {
        Mode::Database => unreachable!("a dedicated database is nobody else's"),
        Mode::Schema => {
            let s = &b.schema;
            for (what, q) in [
                ("read", format!("SELECT count(*) FROM \"{s}\".iso_probe")),
                (
                    "write",
                    format!("INSERT INTO \"{s}\".iso_probe VALUES (0, 'x')"),
                ),
                (
                    "create",
                    format!(
                        "CREATE TABLE \"{s}\".by_{} (id int)",
                        a.name.replace('-', "_")
                    ),
                ),
                (
                    "function",
                    format!(
                        "CREATE FUNCTION \"{s}\".f_{}() RETURNS int LANGUAGE sql AS 'SELECT 1'",
                        a.name.replace('-', "_")
                    ),
                ),
            ] {
                allowed(&format!("{tag}: {} {what}", b.name), sql(&mut cb, &q).await);
                denied(&format!("{tag}: {what}: {q}"), sql(&mut ca, &q).await);
                n += 1;
            }
            // search_path into B's schema does not make B's tables readable.
            for c in [&mut cb, &mut ca] {
                sql(c, &format!("SET search_path TO \"{s}\""))
                    .await
                    .unwrap();
            }
            let q = "SELECT count(*) FROM iso_probe";
            assert!(allowed(&format!("{tag}: owner {q}"), scalar_i64(&mut cb, q).await) > 0);
            hidden(&mut ca, s, &format!("{tag}: search_path {s}: {q}"), q).await;
            n += 1;
            // A client setting naming B changes nothing either.
            sql(&mut ca, &format!("SET app.tenant_id = '{}'", b.name))
                .await
                .unwrap();
            hidden(
                &mut ca,
                s,
                &format!("{tag}: app.tenant_id = {}: {q}", b.name),
                q,
            )
            .await;
            denied(
                &format!("{tag}: app.tenant_id = {}: qualified read", b.name),
                scalar_i64(&mut ca, &format!("SELECT count(*) FROM \"{s}\".iso_probe")).await,
            );
            n += 1;
            // Statistics of B's table: B sees its values, A sees nothing.
            let q = format!(
                "SELECT count(*) FROM pg_stats WHERE schemaname = '{s}' AND tablename = 'iso_probe'"
            );
            assert!(
                allowed(
                    &format!("{tag}: owner pg_stats"),
                    scalar_i64(&mut cb, &q).await
                ) > 0
            );
            assert_eq!(
                scalar_i64(&mut ca, &q).await.unwrap(),
                0,
                "{tag}: B's pg_stats visible"
            );
            n += 1;
        }
        Mode::Shared => {
            let bid = b.tenant_id.as_deref().unwrap();
            let rows = format!("SELECT count(*) FROM {RLS}.saas_tenants WHERE tenant_code = '{m}'");
            // Owner controls, then A.
            let own_rows = allowed(
                &format!("{tag}: owner read"),
                scalar_i64(&mut cb, &rows).await,
            );
            assert_eq!(own_rows, 1, "{tag}: owner control: B sees its row");
            let own_id =
                scalar_text(&mut cb, &format!("SELECT {RLS}.tenantdb_current_tenant()")).await;
            assert_eq!(
                allowed(&format!("{tag}: owner helper"), own_id).as_deref(),
                Some(bid)
            );
            let write_b = format!(
                "INSERT INTO {RLS}.saas_unified_audit_logs (tenant_id, log_type, module, action) \
                 VALUES ('{bid}', 'operation', 'ai', 'create')"
            );
            allowed(&format!("{tag}: owner write"), sql(&mut cb, &write_b).await);
            let update_b = format!(
                "UPDATE {RLS}.saas_tenants SET tenant_name = 'renamed' WHERE tenant_code = '{m}'"
            );
            assert_eq!(
                allowed(
                    &format!("{tag}: owner update"),
                    sql(&mut cb, &update_b).await
                ),
                1
            );
            // Setting app.tenant_id / search_path as B keeps B's view.
            sql(&mut cb, &format!("SET app.tenant_id = '{bid}'"))
                .await
                .unwrap();
            sql(&mut cb, &format!("SET search_path TO {RLS}"))
                .await
                .unwrap();
            assert_eq!(scalar_i64(&mut cb, &rows).await.unwrap(), 1);
            match a.mode {
                Mode::Shared => {
                    let aid = a.tenant_id.as_deref().unwrap();
                    // Read: B's rows are invisible, with and without client settings naming B.
                    assert_eq!(scalar_i64(&mut ca, &rows).await.unwrap(), 0, "{tag}: read");
                    n += 1;
                    for set in [
                        format!("SET app.tenant_id = '{bid}'"),
                        format!("SET search_path TO {RLS}"),
                    ] {
                        sql(&mut ca, &set).await.unwrap();
                        assert_eq!(
                            scalar_i64(&mut ca, &rows).await.unwrap(),
                            0,
                            "{tag}: read after {set}"
                        );
                        let id = scalar_text(&mut ca, "SELECT tenantdb_current_tenant()")
                            .await
                            .unwrap();
                        assert_eq!(id.as_deref(), Some(aid), "{tag}: helper after {set}");
                        n += 2;
                    }
                    // Write B's rows: refused by the policies; update/delete touch nothing.
                    denied(
                        &format!("{tag}: insert with B's id"),
                        sql(&mut ca, &write_b).await,
                    );
                    denied(
                        &format!("{tag}: insert B's tenant row"),
                        sql(
                            &mut ca,
                            &format!(
                                "INSERT INTO {RLS}.saas_tenants (id, tenant_code, tenant_name) \
                                 VALUES ('{bid}', 'dup', 'dup')"
                            ),
                        )
                        .await,
                    );
                    assert_eq!(sql(&mut ca, &update_b).await.unwrap(), 0, "{tag}: update");
                    let delete_b =
                        format!("DELETE FROM {RLS}.saas_tenants WHERE tenant_code = '{m}'");
                    assert_eq!(sql(&mut ca, &delete_b).await.unwrap(), 0, "{tag}: delete");
                    n += 4;
                }
                Mode::Schema => {
                    for (what, q) in [
                        ("read", rows.clone()),
                        ("write", write_b.clone()),
                        ("update", update_b.clone()),
                        (
                            "helper",
                            format!("SELECT {RLS}.tenantdb_current_tenant()::text"),
                        ),
                    ] {
                        denied(&format!("{tag}: {what}: {q}"), sql(&mut ca, &q).await);
                        n += 1;
                    }
                    sql(&mut ca, &format!("SET search_path TO {RLS}"))
                        .await
                        .unwrap();
                    sql(&mut ca, &format!("SET app.tenant_id = '{bid}'"))
                        .await
                        .unwrap();
                    hidden(
                        &mut ca,
                        RLS,
                        &format!("{tag}: search_path + app.tenant_id: read"),
                        "SELECT count(*) FROM saas_tenants",
                    )
                    .await;
                    n += 1;
                }
                Mode::Database => unreachable!(),
            }
            // Creating objects in the shared schema: nobody's, not even B's.
            let q = format!(
                "CREATE TABLE {RLS}.by_{} (id int)",
                a.name.replace('-', "_")
            );
            denied(
                &format!("{tag}: owner create in {RLS} (baseline)"),
                sql(&mut cb, &q).await,
            );
            denied(&format!("{tag}: create in {RLS}"), sql(&mut ca, &q).await);
            n += 1;
            // Statistics: the shared tables' values are not exposed to any tenant.
            let q = format!(
                "SELECT count(*) FROM pg_stats WHERE schemaname = '{RLS}' AND tablename = 'saas_tenants'"
            );
            assert_eq!(
                scalar_i64(&mut ca, &q).await.unwrap(),
                0,
                "{tag}: pg_stats of {RLS}"
            );
            n += 1;
        }
    }
    close(ca, cb).await;
    n
}

async fn close(a: PgConnection, b: PgConnection) {
    let _ = a.close().await;
    let _ = b.close().await;
}
