//! The shared layout's upkeep: no DDL when it is up to date, drift repaired, policies on the tables
//! and partitions that later migrations add.

use super::*;

/// Fingerprint of every catalog row the layout consists of: any DDL changes an `xmin`.
pub(super) async fn catalog_fingerprint(pool: &PgPool, layout: &SharedLayout) -> String {
    let sql = format!(
        "SELECT string_agg(x, ',' ORDER BY x) FROM ( \
           SELECT 'c' || c.oid || ':' || c.xmin::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
           UNION ALL SELECT 'p' || p.oid || ':' || p.xmin::text FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
           UNION ALL SELECT 'f' || p.oid || ':' || p.xmin::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 \
           UNION ALL SELECT 'n' || n.oid || ':' || n.xmin::text FROM pg_namespace n WHERE n.nspname = $1 \
           UNION ALL SELECT 'r' || a.oid || ':' || a.xmin::text FROM pg_authid a WHERE a.rolname IN ($2, $3, 'idem_a', 'idem_a_b') \
           UNION ALL SELECT 'm' || m.roleid || '-' || m.member || ':' || m.xmin::text FROM pg_auth_members m \
             WHERE m.roleid IN (SELECT oid FROM pg_authid WHERE rolname IN ($2, $3, 'idem_a')) \
           UNION ALL SELECT 'd' || d.objoid || '/' || d.objsubid || ':' || d.xmin::text FROM pg_description d \
             JOIN pg_class c ON c.oid = d.objoid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
           UNION ALL SELECT 'k' || t.role_name || ':' || t.xmin::text FROM {}.{MAPPING_TABLE} t \
         ) s(x)",
        layout.schema
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(layout.schema.as_str())
        .bind(layout.owner.as_str())
        .bind(layout.tenants.as_str())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn layout_is_ddl_free_when_up_to_date_and_repairs_drift() {
    let admin = admin();
    let layout = layout_for("tenantdb_rls_idem");
    let set = MigrationSet::bundled();
    let v1 = ensure_layout(&admin, &layout, &set).await.unwrap();
    let pool = admin.shared_pool().await.unwrap().clone();
    let t = create_tenant(&admin, &layout, "idem_a", "idem").await;
    register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
        .await
        .unwrap();

    // Count DDL with an event trigger (database objects) and catalog xmins (roles, memberships).
    run(
        &pool,
        "CREATE TABLE IF NOT EXISTS public.tenantdb_test_ddl_log (tag text, query text)".into(),
    )
    .await;
    run(
        &pool,
        "CREATE OR REPLACE FUNCTION public.tenantdb_test_log_ddl() RETURNS event_trigger \
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS \
         $$BEGIN INSERT INTO public.tenantdb_test_ddl_log VALUES (tg_tag, current_query()); END$$"
            .into(),
    )
    .await;
    run(
        &pool,
        "CREATE EVENT TRIGGER tenantdb_test_ddl ON ddl_command_start \
         EXECUTE FUNCTION public.tenantdb_test_log_ddl()"
            .into(),
    )
    .await;
    let before = catalog_fingerprint(&pool, &layout).await;
    let v2 = ensure_layout(&admin, &layout, &set).await.unwrap();
    assert_eq!(ensure_policies(&admin, &layout).await.unwrap(), 0);
    register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
        .await
        .unwrap();
    assert!(
        observe_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
            .await
            .unwrap()
    );
    let after = catalog_fingerprint(&pool, &layout).await;
    run(&pool, "DROP EVENT TRIGGER tenantdb_test_ddl".into()).await;
    let logged: Vec<(String, String)> = sqlx::query_as(
        "SELECT tag, query FROM public.tenantdb_test_ddl_log WHERE query LIKE '%tenantdb_rls_idem%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(logged.is_empty(), "DDL issued: {logged:?}");
    assert_eq!(v1, v2);
    assert_eq!(before, after, "catalog rows changed");

    // Drift: RLS disabled, a policy dropped, one loosened, a foreign permissive policy, TRUNCATE
    // granted, PUBLIC on a partition and on a SECURITY DEFINER function, the function rewritten.
    let s = &layout.schema;
    let g = &layout.tenants;
    for sql in [
        format!("ALTER TABLE {s}.saas_users DISABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {s}.saas_users NO FORCE ROW LEVEL SECURITY"),
        format!("DROP POLICY {POLICY_TENANT} ON {s}.ai_agents"),
        format!("ALTER POLICY {POLICY_OPERATOR} ON {s}.saas_files USING (true)"),
        format!("ALTER POLICY {POLICY_TENANT} ON {s}.saas_roles TO {g}"),
        format!("CREATE POLICY leak ON {s}.saas_roles USING (true)"),
        format!("CREATE POLICY narrow ON {s}.saas_roles AS RESTRICTIVE USING (true)"),
        format!("GRANT TRUNCATE, REFERENCES, TRIGGER ON {s}.saas_users TO {g}"),
        format!("GRANT SELECT ON {s}.saas_unified_audit_logs_default TO PUBLIC"),
        format!("GRANT CREATE ON SCHEMA {s} TO PUBLIC"),
        format!("REVOKE DELETE ON {s}.saas_api_keys FROM {g}"),
        format!(
            "CREATE OR REPLACE FUNCTION {s}.tenantdb_current_tenant() RETURNS varchar LANGUAGE sql STABLE SECURITY DEFINER \
             SET search_path = pg_catalog, pg_temp AS $$SELECT NULL::varchar$$"
        ),
        format!("GRANT EXECUTE ON FUNCTION {s}.tenantdb_current_tenant() TO PUBLIC"),
    ] {
        run(&pool, sql).await;
    }
    assert_eq!(ensure_layout(&admin, &layout, &set).await.unwrap(), v1);
    assert_eq!(
        ensure_policies(&admin, &layout).await.unwrap(),
        0,
        "repaired in one pass"
    );
    let check = |sql: &str| {
        let sql = sql.replace("$S", s.as_str()).replace("$G", g.as_str());
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(AssertSqlSafe(sql.clone()))
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    assert!(check("SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = '$S.saas_users'::regclass").await);
    assert!(
        check("SELECT count(*) = 3 FROM pg_policy WHERE polrelid = '$S.saas_roles'::regclass")
            .await,
        "leak dropped, narrow kept"
    );
    assert!(check("SELECT NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = '$S.saas_roles'::regclass AND polname = 'leak')").await);
    assert!(check("SELECT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = '$S.ai_agents'::regclass AND polname = 'tenantdb_tenant_isolation')").await);
    assert!(check("SELECT pg_get_expr(polqual, polrelid) <> 'true' FROM pg_policy WHERE polrelid = '$S.saas_files'::regclass AND polname = 'tenantdb_operator_access'").await);
    assert!(check("SELECT polroles = '{0}' FROM pg_policy WHERE polrelid = '$S.saas_roles'::regclass AND polname = 'tenantdb_tenant_isolation'").await);
    assert!(check("SELECT NOT has_table_privilege('$G', '$S.saas_users', 'TRUNCATE') AND NOT has_table_privilege('$G', '$S.saas_users', 'REFERENCES') AND NOT has_table_privilege('$G', '$S.saas_users', 'TRIGGER')").await);
    assert!(
        check(
            "SELECT has_table_privilege('$G', '$S.saas_users', 'SELECT, INSERT, UPDATE, DELETE')"
        )
        .await
    );
    assert!(check("SELECT has_table_privilege('$G', '$S.saas_api_keys', 'DELETE')").await);
    assert!(check("SELECT relacl IS NULL OR NOT EXISTS (SELECT 1 FROM aclexplode(relacl) a WHERE a.grantee <> relowner) FROM pg_class WHERE oid = '$S.saas_unified_audit_logs_default'::regclass").await);
    assert!(check("SELECT NOT has_schema_privilege('idem_a', '$S', 'CREATE')").await);
    assert!(check("SELECT prosrc LIKE '%session_user%' FROM pg_proc WHERE oid = '$S.tenantdb_current_tenant()'::regprocedure").await);
    assert!(check("SELECT NOT EXISTS (SELECT 1 FROM pg_proc p, aclexplode(p.proacl) a WHERE p.oid = '$S.tenantdb_current_tenant()'::regprocedure AND a.grantee = 0)").await);
    // ...and the tenant works again.
    let mut c = login(&t).await;
    let me: String = sqlx::query_scalar("SELECT tenantdb_current_tenant()::text")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(me, t.id);
    assert_denied(
        exec(&mut c, "CREATE TABLE evil (id int)").await,
        "CREATE after repair",
    );

    // A Conflict for a schema that exists without the layout's marker.
    run(
        &pool,
        "CREATE SCHEMA IF NOT EXISTS tenantdb_rls_foreign".into(),
    )
    .await;
    let e = ensure_layout(&admin, &layout_for("tenantdb_rls_foreign"), &set)
        .await
        .unwrap_err();
    assert_eq!(e.category(), "Conflict", "{e}");
}

#[tokio::test]
async fn tables_from_later_migrations_and_new_partitions_get_policies() {
    let admin = admin();
    let layout = layout_for("tenantdb_rls_later");
    let base = MigrationSet::bundled();
    ensure_layout(&admin, &layout, &base).await.unwrap();
    let pool = admin.shared_pool().await.unwrap().clone();
    let a = create_tenant(&admin, &layout, "later_a", "later").await;
    let b = create_tenant(&admin, &layout, "later_b", "later").await;
    for t in [&a, &b] {
        register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
            .await
            .unwrap();
    }
    let extra = MigrationSet::from_files([(
        "99990101000001_tenant_notes.sql".to_string(),
        "CREATE TABLE tenant_notes (\
           id bigserial PRIMARY KEY, \
           tenant_id varchar(36) NOT NULL REFERENCES saas_tenants (id) ON DELETE CASCADE, \
           body text NOT NULL);\n\
         CREATE FUNCTION notes_count_all() RETURNS bigint LANGUAGE sql SECURITY DEFINER \
           SET search_path = pg_catalog AS $$SELECT count(*) FROM tenantdb_rls_later.tenant_notes$$;\n\
         CREATE TABLE plain_settings (k text PRIMARY KEY, v text);\n\
         GRANT SELECT ON plain_settings TO PUBLIC;\n"
            .to_string(),
    )])
    .unwrap();
    let set = base.clone().merge(extra).unwrap();
    assert_eq!(
        ensure_layout(&admin, &layout, &set).await.unwrap(),
        Some(99990101000001)
    );

    let s = &layout.schema;
    let (rls, force, policies): (bool, bool, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT relrowsecurity, relforcerowsecurity, (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid) \
         FROM pg_class c WHERE c.oid = '{s}.tenant_notes'::regclass"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(rls && force);
    assert_eq!(policies, 2);

    let mut ca = login(&a).await;
    let mut cb = login(&b).await;
    for (c, t, tag) in [(&mut ca, &a, "a"), (&mut cb, &b, "b")] {
        exec(c, &format!("INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{}', 'later-{tag}', '{tag}')", t.id))
            .await
            .unwrap();
        // bigserial: the sequence is usable by tenants.
        exec(
            c,
            &format!(
                "INSERT INTO tenant_notes (tenant_id, body) VALUES ('{}', 'n1'), ('{}', 'n2')",
                t.id, t.id
            ),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        scalar_i64(&mut ca, "SELECT count(*) FROM tenant_notes").await,
        2
    );
    assert_denied(
        exec(
            &mut ca,
            &format!(
                "INSERT INTO tenant_notes (tenant_id, body) VALUES ('{}', 'x')",
                b.id
            ),
        )
        .await,
        "insert into B's notes",
    );
    assert_eq!(
        exec(
            &mut ca,
            &format!("DELETE FROM tenant_notes WHERE tenant_id = '{}'", b.id)
        )
        .await
        .unwrap(),
        0
    );
    // Tables without tenant_id are not granted; PUBLIC grants made by migrations are revoked, and
    // so is PUBLIC's EXECUTE on SECURITY DEFINER functions written by migrations.
    assert_denied(
        exec(&mut ca, "SELECT * FROM plain_settings").await,
        "plain table",
    );
    assert_denied(
        exec(&mut ca, "SELECT notes_count_all()").await,
        "definer function",
    );
    // Even owner-run code (a SECURITY DEFINER function) stays within the caller's tenant.
    run(
        &pool,
        format!(
            "GRANT EXECUTE ON FUNCTION {s}.notes_count_all() TO {}",
            a.role
        ),
    )
    .await;
    assert_eq!(scalar_i64(&mut ca, "SELECT notes_count_all()").await, 2);
    assert!(
        ensure_policies(&admin, &layout).await.unwrap() > 0,
        "grant revoked"
    );
    assert_eq!(ensure_policies(&admin, &layout).await.unwrap(), 0);
    assert_denied(
        exec(&mut ca, "SELECT notes_count_all()").await,
        "definer function after repair",
    );

    // A partition created later (partition maintenance runs as the owner) gets RLS and policies;
    // tenants have no privileges on it before or after.
    run(
        &pool,
        format!(
            "SET ROLE {}; CREATE TABLE {s}.saas_unified_alerts_p209901 PARTITION OF {s}.saas_unified_alerts \
             FOR VALUES FROM ('2099-01-01 00:00:00+00') TO ('2099-02-01 00:00:00+00'); RESET ROLE",
            layout.owner
        ),
    )
    .await;
    assert_denied(
        exec(&mut ca, "SELECT * FROM saas_unified_alerts_p209901").await,
        "new partition",
    );
    assert!(ensure_policies(&admin, &layout).await.unwrap() > 0);
    assert_eq!(ensure_policies(&admin, &layout).await.unwrap(), 0);
    let (rls, force, policies): (bool, bool, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT relrowsecurity, relforcerowsecurity, (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid) \
         FROM pg_class c WHERE c.oid = '{s}.saas_unified_alerts_p209901'::regclass"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(rls && force);
    assert_eq!(policies, 2);
    assert_denied(
        exec(&mut ca, "SELECT * FROM saas_unified_alerts_p209901").await,
        "new partition",
    );

    // Deletion covers the new table too (and saas_tenants, keyed by id).
    unregister_tenant(&admin, &layout, &a.role, &a.secondary)
        .await
        .unwrap();
    assert_eq!(
        shared::delete_tenant_rows(&admin, &layout, &a.id, 1)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        scalar_i64(&mut cb, "SELECT count(*) FROM tenant_notes").await,
        2
    );
    let left: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT count(*) FROM {s}.tenant_notes"
    )))
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(left, 2);
}
