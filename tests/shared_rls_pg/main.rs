//! Isolation mode `shared` (row-level security) against a real PostgreSQL 15: the full isolation
//! matrix between tenants, escape attempts, the rotation role, batched deletion, idempotence (no
//! DDL when up to date, checked with an event trigger and catalog `xmin`s), drift repair, and
//! tables added by later migrations. Each test uses its own layout schema in the shared database.

use tenantdb_testkit::fixtures as common;

use common::{admin, connect_as};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use tenantdb::migrate::MigrationSet;
use tenantdb::naming::{Ident, connect_group_of, quote_literal};
use tenantdb::pg::PgAdmin;
use tenantdb::pg::shared::{
    self, MAPPING_TABLE, POLICY_OPERATOR, POLICY_TENANT, SharedLayout, ensure_layout,
    ensure_policies, observe_tenant, register_tenant, unregister_tenant,
};
use tenantdb::scram::generate_password;

const SHARED_DB: &str = "tenantdb_shared";

struct Tenant {
    role: Ident,
    secondary: Ident,
    password: String,
    id: String,
}

fn layout_for(schema: &str) -> SharedLayout {
    SharedLayout::for_schema(Ident::new(schema).unwrap()).unwrap()
}

/// The bundled layout migrated into `schema` of the shared database, and that database's pool.
async fn migrated_layout(admin: &PgAdmin, schema: &str) -> (SharedLayout, PgPool) {
    let layout = layout_for(schema);
    ensure_layout(admin, &layout, &MigrationSet::bundled())
        .await
        .unwrap();
    let pool = admin.shared_pool().await.unwrap().clone();
    (layout, pool)
}

async fn run(pool: &PgPool, sql: String) {
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Creates the two login roles of a tenant the way the Tenant plan does (least privilege, the
/// rotation role a member of the primary acting as it, CONNECT and search_path on the shared db).
async fn create_tenant(admin: &PgAdmin, layout: &SharedLayout, base: &str, ns: &str) -> Tenant {
    admin.shared_pool().await.unwrap();
    let pool = admin.admin_pool();
    let password = generate_password();
    let pw = quote_literal(&password).unwrap();
    let role = Ident::new(base).unwrap();
    let secondary = Ident::new(&format!("{base}_b")).unwrap();
    const LEAST: &str = "NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS";
    run(
        pool,
        format!("CREATE ROLE {role} LOGIN PASSWORD {pw} {LEAST}"),
    )
    .await;
    run(
        pool,
        format!("CREATE ROLE {secondary} LOGIN PASSWORD {pw} {LEAST} IN ROLE {role}"),
    )
    .await;
    run(
        pool,
        format!(
            "ALTER ROLE {secondary} SET role = {}",
            quote_literal(base).unwrap()
        ),
    )
    .await;
    // CONNECT through membership in the shared database's connect group, as the plan does: a
    // `GRANT CONNECT ON DATABASE` per role updates the database's catalog row and collides ("tuple
    // concurrently updated") with the other tests' set-up of the same database.
    let group = connect_group_of(&Ident::new(SHARED_DB).unwrap()).unwrap();
    for r in [&role, &secondary] {
        run(pool, format!("GRANT {group} TO {r}")).await;
        run(
            pool,
            format!(
                "ALTER ROLE {r} IN DATABASE {SHARED_DB} SET search_path TO {}",
                layout.schema
            ),
        )
        .await;
    }
    Tenant {
        role,
        secondary,
        password,
        id: shared::tenant_id(ns, base),
    }
}

async fn login(t: &Tenant) -> PgConnection {
    connect_as(SHARED_DB, t.role.as_str(), &t.password)
        .await
        .expect("tenant login")
}

async fn exec(c: &mut PgConnection, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
        .map(|r| r.rows_affected())
}

async fn scalar_i64(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The statement must fail with `insufficient_privilege` (42501): permission denied, must be
/// owner, or a row-level security violation.
#[track_caller]
fn assert_denied(r: Result<u64, sqlx::Error>, what: &str) {
    match r {
        Ok(n) => panic!("{what}: succeeded ({n} rows)"),
        Err(e) => {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            assert_eq!(code.as_deref(), Some("42501"), "{what}: {e}");
        }
    }
}

/// Tenant-scoped tables (parents, not partitions) and their key column, as the admin sees them.
async fn scoped_tables(pool: &PgPool, layout: &SharedLayout) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT c.relname::text, CASE WHEN c.relname = 'saas_tenants' THEN 'id' ELSE 'tenant_id' END \
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND p.polname = $2 AND NOT c.relispartition ORDER BY 1",
    )
    .bind(layout.schema.as_str())
    .bind(POLICY_TENANT)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Rows of `tenant_id` in every tenant-scoped table (admin view: superuser, bypasses RLS).
async fn rows_of(pool: &PgPool, layout: &SharedLayout, tenant_id: &str) -> i64 {
    let mut total = 0;
    for (t, k) in scoped_tables(pool, layout).await {
        let sql = format!("SELECT count(*) FROM {}.{t} WHERE {k} = $1", layout.schema);
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(tenant_id)
            .fetch_one(pool)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// As the tenant: its saas_tenants row, users, an agent, audit log rows (partitioned table) and a
/// tenant config.
async fn seed_rows(c: &mut PgConnection, t: &Tenant, tag: &str) {
    let id = &t.id;
    for sql in [
        format!(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{id}', 'code-{tag}', 'Tenant {tag}')"
        ),
        format!(
            "INSERT INTO saas_users (id, tenant_id, username) VALUES \
             ('{tag}-u1', '{id}', '{tag}-alice'), ('{tag}-u2', '{id}', '{tag}-bob'), ('{tag}-u3', '{id}', '{tag}-carol')"
        ),
        format!(
            "INSERT INTO ai_agents (tenant_id, agent_name, config, created_by) VALUES \
             ('{id}', '{tag}-bot', '{{}}', '{tag}-u1'), ('{id}', '{tag}-bot2', '{{}}', '{tag}-u2')"
        ),
        format!(
            "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) \
             SELECT '{id}', 'operation', 'ai', 'create' FROM generate_series(1, 5)"
        ),
        format!(
            "INSERT INTO saas_unified_configs (tenant_id, config_scope, config_category, config_key, config_value) \
             VALUES ('{id}', 'tenant', 'ui', 'theme', '\"{tag}\"')"
        ),
    ] {
        exec(c, &sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn tenants_are_isolated_in_every_table_and_cannot_escape() {
    let admin = admin();
    let layout = layout_for("tenantdb_rls");
    let set = MigrationSet::bundled();
    let version = ensure_layout(&admin, &layout, &set).await.unwrap();
    assert_eq!(version, set.latest_version());
    let shared_pool = admin.shared_pool().await.unwrap().clone();

    let a = create_tenant(&admin, &layout, "rls_a", "team-x").await;
    let b = create_tenant(&admin, &layout, "rls_b", "team-x").await;
    let c = create_tenant(&admin, &layout, "rls_c", "team-y").await;
    for t in [&a, &b, &c] {
        assert!(
            !observe_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
                .await
                .unwrap()
        );
        register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
            .await
            .unwrap();
        register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
            .await
            .unwrap();
        assert!(
            observe_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
                .await
                .unwrap()
        );
    }
    // A role cannot be remapped to another tenant.
    let e = register_tenant(&admin, &layout, &a.role, &a.secondary, &b.id)
        .await
        .unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");

    // Every tenant-scoped table, partitions included, has ENABLE + FORCE RLS.
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> $2 \
           AND c.relname <> 'tenantdb_schema_migrations' \
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
    .bind(layout.schema.as_str())
    .bind(MAPPING_TABLE)
    .fetch_all(&shared_pool)
    .await
    .unwrap();
    assert!(unprotected.is_empty(), "{unprotected:?}");
    let tables = scoped_tables(&shared_pool, &layout).await;
    assert!(tables.len() >= 29, "{tables:?}");

    let mut ca = login(&a).await;
    let mut cb = login(&b).await;
    seed_rows(&mut ca, &a, "a").await;
    seed_rows(&mut cb, &b, "b").await;
    // A global configuration row (tenant_id NULL), written by the operator side.
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {}.saas_unified_configs (tenant_id, config_scope, config_category, config_key, config_value) \
         VALUES (NULL, 'global', 'system', 'maintenance', 'false')",
        layout.schema
    )))
    .execute(&shared_pool)
    .await
    .unwrap();
    let b_rows = rows_of(&shared_pool, &layout, &b.id).await;
    let a_rows = rows_of(&shared_pool, &layout, &a.id).await;
    assert_eq!(a_rows, 1 + 3 + 2 + 5 + 1);
    assert_eq!(b_rows, a_rows);

    let current: String = sqlx::query_scalar("SELECT tenantdb_current_tenant()::text")
        .fetch_one(&mut ca)
        .await
        .unwrap();
    assert_eq!(current, a.id);

    // SELECT: in every tenant-scoped table A sees only its own rows (and global config rows).
    for (t, k) in &tables {
        let foreign = scalar_i64(
            &mut ca,
            &format!(
                "SELECT count(*) FROM {t} WHERE {k} IS DISTINCT FROM '{}'",
                a.id
            ),
        )
        .await;
        let expected = if t == "saas_unified_configs" { 1 } else { 0 };
        assert_eq!(foreign, expected, "A sees foreign rows in {t}");
        let of_b = scalar_i64(
            &mut ca,
            &format!("SELECT count(*) FROM {t} WHERE {k} = '{}'", b.id),
        )
        .await;
        assert_eq!(of_b, 0, "A sees B's rows in {t}");
    }
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM saas_users").await,
        3
    );
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM saas_unified_audit_logs").await,
        5
    );
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM saas_unified_configs").await,
        2
    );
    // Lookups by B's primary keys find nothing.
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM saas_users WHERE id = 'b-u1'").await,
        0
    );

    // UPDATE / DELETE of B's rows affect nothing.
    let bid = &b.id;
    for sql in [
        format!("UPDATE saas_users SET username = 'pwned' WHERE tenant_id = '{bid}'"),
        "UPDATE saas_users SET username = 'pwned' WHERE id = 'b-u1'".to_string(),
        format!("UPDATE ai_agents SET agent_name = 'pwned' WHERE tenant_id = '{bid}'"),
        format!("UPDATE saas_unified_audit_logs SET module = 'pwned' WHERE tenant_id = '{bid}'"),
        format!("UPDATE saas_tenants SET tenant_name = 'pwned' WHERE id = '{bid}'"),
        format!("DELETE FROM saas_unified_configs WHERE tenant_id = '{bid}' OR tenant_id IS NULL"),
        "UPDATE saas_unified_configs SET config_value = 'true' WHERE tenant_id IS NULL".to_string(),
        format!("DELETE FROM saas_unified_audit_logs WHERE tenant_id = '{bid}'"),
        format!("DELETE FROM ai_agents WHERE tenant_id = '{bid}'"),
        format!("DELETE FROM saas_tenants WHERE id = '{bid}'"),
    ] {
        assert_eq!(exec(&mut ca, &sql).await.unwrap(), 0, "{sql}");
    }
    // An unqualified DELETE only reaches A's own rows.
    exec(&mut ca, "BEGIN").await.unwrap();
    assert_eq!(exec(&mut ca, "DELETE FROM ai_agents").await.unwrap(), 2);
    exec(&mut ca, "ROLLBACK").await.unwrap();

    // INSERT / UPDATE into B's tenant: WITH CHECK violations.
    for sql in [
        format!("INSERT INTO saas_users (tenant_id, username) VALUES ('{bid}', 'mole')"),
        format!("INSERT INTO ai_agents (tenant_id, agent_name, config, created_by) VALUES ('{bid}', 'x', '{{}}', 'b-u1')"),
        format!("INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) VALUES ('{bid}', 'operation', 'ai', 'create')"),
        format!(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{}', 'evil', 'evil')",
            shared::tenant_id("elsewhere", "evil")
        ),
        "INSERT INTO saas_unified_configs (tenant_id, config_scope, config_category, config_key, config_value) \
         VALUES (NULL, 'global', 'system', 'evil', 'true')"
            .to_string(),
        format!("UPDATE saas_users SET tenant_id = '{bid}' WHERE id = 'a-u3'"),
        format!("UPDATE saas_unified_audit_logs SET tenant_id = '{bid}'"),
    ] {
        assert_denied(exec(&mut ca, &sql).await, &sql);
    }

    // Foreign keys cannot point at another tenant's rows (FK checks bypass RLS; the restrictive
    // reference policies do not), and a missing id fails the same way (no existence oracle).
    for sql in [
        format!(
            "INSERT INTO ai_agents (tenant_id, agent_name, config, created_by) VALUES ('{}', 'x', '{{}}', 'b-u1')",
            a.id
        ),
        format!(
            "INSERT INTO ai_agents (tenant_id, agent_name, config, created_by) VALUES ('{}', 'x', '{{}}', 'nobody')",
            a.id
        ),
        "UPDATE ai_agents SET created_by = 'b-u1'".to_string(),
        format!(
            "INSERT INTO saas_user_sessions (tenant_id, user_id, session_token_hash, expires_at) VALUES ('{}', 'b-u2', 'h', now())",
            a.id
        ),
    ] {
        assert_denied(exec(&mut ca, &sql).await, &sql);
    }
    exec(
        &mut ca,
        "UPDATE ai_agents SET created_by = 'a-u3' WHERE agent_name = 'a-bot'",
    )
    .await
    .unwrap();

    // Partitions cannot be read or written directly.
    for sql in [
        "SELECT count(*) FROM saas_unified_audit_logs_default",
        "SELECT count(*) FROM saas_usage_statistics_default",
        "DELETE FROM saas_unified_alerts_default",
    ] {
        assert_denied(exec(&mut ca, sql).await, sql);
    }

    // Session variables change nothing: the tenant comes from session_user.
    for setting in ["app.tenant_id", "tenantdb.tenant_id", "app.anything"] {
        exec(&mut ca, &format!("SET {setting} = '{bid}'"))
            .await
            .unwrap();
        assert_eq!(
            scalar_i64(
                &mut ca,
                &format!("SELECT count(*) FROM saas_users WHERE tenant_id = '{bid}'")
            )
            .await,
            0,
            "{setting}"
        );
    }
    // Role switches: to another tenant, to the owner, session authorization: refused.
    for sql in [
        format!("SET ROLE {}", b.role),
        format!("SET ROLE {}", b.secondary),
        format!("SET ROLE {}", layout.owner),
        format!("SET SESSION AUTHORIZATION {}", b.role),
        "SET SESSION AUTHORIZATION postgres".to_string(),
    ] {
        assert_denied(exec(&mut ca, &sql).await, &sql);
    }
    // SET ROLE to the group role works (A is a member) but still shows A's rows only.
    exec(&mut ca, &format!("SET ROLE {}", layout.tenants))
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM saas_users").await,
        3
    );
    exec(&mut ca, "RESET ROLE").await.unwrap();
    exec(&mut ca, "RESET SESSION AUTHORIZATION").await.unwrap();
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM saas_users").await,
        3
    );
    // row_security = off makes queries on RLS tables fail instead of leaking.
    exec(&mut ca, "SET row_security = off").await.unwrap();
    assert_denied(
        exec(&mut ca, "SELECT * FROM saas_users").await,
        "row_security off",
    );
    exec(&mut ca, "RESET row_security").await.unwrap();

    // No DDL on tables and policies, no TRUNCATE, nothing created.
    for sql in [
        "ALTER TABLE saas_users DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE saas_users NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE saas_unified_audit_logs_default DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenantdb_tenant_isolation ON saas_users",
        "ALTER POLICY tenantdb_tenant_isolation ON saas_users USING (true)",
        "CREATE POLICY open ON saas_users USING (true)",
        "TRUNCATE saas_users",
        "TRUNCATE saas_unified_audit_logs",
        "DROP TABLE ai_agents",
        "ALTER TABLE saas_users OWNER TO rls_a",
        "CREATE TRIGGER t BEFORE INSERT ON saas_users FOR EACH ROW EXECUTE FUNCTION tenantdb_set_updated_at()",
        "CREATE TABLE evil (id int)",
        "CREATE TEMP TABLE evil (id int)",
        "CREATE FUNCTION evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE VIEW evil AS SELECT * FROM saas_users",
    ] {
        assert_denied(exec(&mut ca, sql).await, sql);
    }
    // The mapping cannot be read or changed, group membership cannot be handed out.
    for sql in [
        format!("SELECT * FROM {MAPPING_TABLE}"),
        format!(
            "INSERT INTO {MAPPING_TABLE} (role_name, tenant_id) VALUES ('rls_c', '{}')",
            a.id
        ),
        format!("UPDATE {MAPPING_TABLE} SET tenant_id = '{bid}'"),
        format!("DELETE FROM {MAPPING_TABLE}"),
        format!("GRANT {} TO {}", layout.tenants, c.role),
        format!("GRANT {} TO {}", b.role, c.role),
        format!(
            "CREATE OR REPLACE FUNCTION tenantdb_current_tenant() RETURNS varchar LANGUAGE sql AS $$SELECT '{bid}'::varchar$$"
        ),
        format!(
            "ALTER FUNCTION tenantdb_current_tenant() OWNER TO {}",
            a.role
        ),
    ] {
        assert_denied(exec(&mut ca, &sql).await, &sql);
    }

    // PostgreSQL 15 lets a session whose session_user is A grant A's own membership. Handing A's
    // role to C still does not give C A's rows: the tenant comes from session_user.
    if exec(&mut ca, &format!("GRANT {} TO {}", a.role, c.role))
        .await
        .is_ok()
    {
        let mut cc = login(&c).await;
        exec(&mut cc, &format!("SET ROLE {}", a.role))
            .await
            .unwrap();
        assert_eq!(
            scalar_i64(&mut cc, "SELECT count(*) FROM saas_users").await,
            0
        );
        assert_denied(
            exec(
                &mut cc,
                &format!(
                    "INSERT INTO saas_users (tenant_id, username) VALUES ('{}', 'x')",
                    a.id
                ),
            )
            .await,
            "C acting as A inserts into A",
        );
        drop(cc);
        exec(&mut ca, &format!("REVOKE {} FROM {}", a.role, c.role))
            .await
            .unwrap();
    }

    // The rotation role logs in, acts as A, and sees exactly A's rows, even after RESET ROLE.
    let mut cab = connect_as(SHARED_DB, a.secondary.as_str(), &a.password)
        .await
        .unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut cab)
        .await
        .unwrap();
    assert_eq!(who, a.role.as_str());
    assert_eq!(
        scalar_i64(&mut cab, "SELECT count(*) FROM saas_users").await,
        3
    );
    assert_eq!(
        scalar_i64(
            &mut cab,
            &format!(
                "SELECT count(*) FROM saas_users WHERE tenant_id <> '{}'",
                a.id
            )
        )
        .await,
        0
    );
    exec(&mut cab, "INSERT INTO saas_users (id, tenant_id, username) VALUES ('a-u4', tenantdb_current_tenant(), 'a-dave')")
        .await
        .unwrap();
    assert_denied(
        exec(
            &mut cab,
            &format!("INSERT INTO saas_users (tenant_id, username) VALUES ('{bid}', 'x')"),
        )
        .await,
        "secondary inserts into B",
    );
    exec(&mut cab, "RESET ROLE").await.unwrap();
    assert_eq!(
        scalar_i64(&mut cab, "SELECT count(*) FROM saas_users").await,
        4
    );
    assert_denied(
        exec(&mut cab, &format!("SET ROLE {}", b.role)).await,
        "secondary SET ROLE B",
    );
    drop(cab);

    // C has no rows: it sees only the global config row.
    let mut cc = login(&c).await;
    assert_eq!(
        scalar_i64(&mut cc, "SELECT count(*) FROM saas_users").await,
        0
    );
    assert_eq!(
        scalar_i64(&mut cc, "SELECT count(*) FROM saas_unified_configs").await,
        1
    );
    assert_eq!(
        scalar_i64(&mut cc, "SELECT count(*) FROM saas_unified_audit_logs").await,
        0
    );
    drop(cc);

    // B still sees all of its rows, untouched.
    assert_eq!(
        scalar_i64(&mut cb, "SELECT count(*) FROM saas_users").await,
        3
    );
    assert_eq!(rows_of(&shared_pool, &layout, &b.id).await, b_rows);

    // Deletion: withdraw access, delete A's rows in small batches, then the roles.
    unregister_tenant(&admin, &layout, &a.role, &a.secondary)
        .await
        .unwrap();
    assert!(
        !observe_tenant(&admin, &layout, &a.role, &a.secondary, &a.id)
            .await
            .unwrap()
    );
    assert_denied(
        exec(&mut ca, "SELECT count(*) FROM saas_users").await,
        "after unregister",
    );
    drop(ca);
    let a_rows = rows_of(&shared_pool, &layout, &a.id).await;
    assert_eq!(a_rows, 1 + 4 + 2 + 5 + 1);
    let deleted = shared::delete_tenant_rows(&admin, &layout, &a.id, 2)
        .await
        .unwrap();
    assert_eq!(deleted, a_rows as u64);
    assert_eq!(rows_of(&shared_pool, &layout, &a.id).await, 0);
    assert_eq!(rows_of(&shared_pool, &layout, &b.id).await, b_rows);
    assert_eq!(
        shared::delete_tenant_rows(&admin, &layout, &a.id, 2)
            .await
            .unwrap(),
        0
    );
    let global: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.saas_unified_configs WHERE tenant_id IS NULL",
        layout.schema
    )))
    .fetch_one(&shared_pool)
    .await
    .unwrap();
    assert_eq!(global, 1, "global rows are not a tenant's");
    unregister_tenant(&admin, &layout, &a.role, &a.secondary)
        .await
        .unwrap();
    for r in [&a.secondary, &a.role] {
        run(&shared_pool, format!("DROP OWNED BY {r}")).await;
        run(admin.admin_pool(), format!("DROP OWNED BY {r}")).await;
        run(admin.admin_pool(), format!("DROP ROLE {r}")).await;
    }
    // B is unaffected and still works.
    assert_eq!(
        scalar_i64(&mut cb, "SELECT count(*) FROM saas_users").await,
        3
    );
    assert!(
        observe_tenant(&admin, &layout, &b.role, &b.secondary, &b.id)
            .await
            .unwrap()
    );
}

mod layout;
mod replication;
mod storage;
