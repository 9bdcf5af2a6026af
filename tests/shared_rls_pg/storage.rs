//! Per-tenant storage estimates of shared tables (partitioned and plain).

use super::*;

/// `shared` tenants: storage is estimated per tenant as its rows' share of every tenant-scoped
/// table (heap, indexes, TOAST, partitions). A tenant with no rows uses nothing, the estimates of
/// all tenants never exceed the tables' size, a big tenant is measured as big whether or not the
/// statistics are current, and deleting its rows brings its usage down.
#[tokio::test]
async fn storage_is_estimated_per_tenant_from_its_share_of_the_rows() {
    let admin = admin();
    let (layout, pool) = migrated_layout(&admin, "tenantdb_rls_usage").await;
    let big = create_tenant(&admin, &layout, "usage_big", "usage").await;
    let small = create_tenant(&admin, &layout, "usage_small", "usage").await;
    let none = create_tenant(&admin, &layout, "usage_none", "usage").await;
    for t in [&big, &small, &none] {
        register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
            .await
            .unwrap();
    }
    let estimate = |t: &Tenant| {
        let (admin, layout, id) = (&admin, &layout, t.id.clone());
        async move {
            shared::tenant_storage_bytes(admin, layout, &id)
                .await
                .unwrap()
        }
    };
    assert_eq!(estimate(&big).await, 0, "no rows yet");

    let mut cb = login(&big).await;
    let mut cs = login(&small).await;
    seed_rows(&mut cb, &big, "big").await;
    seed_rows(&mut cs, &small, "small").await;
    // ~2 KB of JSON per audit row: 4,000 rows for the big tenant, 40 for the small one.
    for (c, n) in [(&mut cb, 4000), (&mut cs, 40)] {
        exec(
            c,
            &format!(
                "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, change_data) \
                 SELECT tenantdb_current_tenant(), 'operation', 'ai', 'update', \
                        jsonb_build_object('blob', (SELECT string_agg(md5(g::text || ':' || i::text), '') FROM generate_series(1, 64) AS i)) \
                 FROM generate_series(1, {n}) AS g"
            ),
        )
        .await
        .unwrap();
    }
    let s = &layout.schema;
    let raw_big: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT sum(pg_column_size(l.*))::bigint FROM {s}.saas_unified_audit_logs l WHERE tenant_id = $1"
    )))
    .bind(&big.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let tables_total: i64 = sqlx::query_scalar(
        "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r'",
    )
    .bind(s.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();

    // Before and after ANALYZE (statistics missing, then current): the same picture.
    for stats in ["never analyzed", "analyzed"] {
        let (b, sm, n) = (
            estimate(&big).await,
            estimate(&small).await,
            estimate(&none).await,
        );
        eprintln!("{stats}: big={b} small={sm} none={n} raw_big={raw_big} tables={tables_total}");
        assert_eq!(n, 0, "{stats}: a tenant without rows uses nothing");
        assert!(
            b >= raw_big,
            "{stats}: big {b} < its raw row bytes {raw_big}"
        );
        assert!(b > 20 * sm, "{stats}: big {b} vs small {sm}");
        assert!(sm > 0, "{stats}: small tenant has rows");
        assert!(
            b + sm <= tables_total,
            "{stats}: estimates {b} + {sm} exceed the tables ({tables_total})"
        );
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ANALYZE {s}.saas_unified_audit_logs"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }

    // Deleting the big tenant's audit rows (and vacuuming) brings its estimate down.
    let before = estimate(&big).await;
    exec(&mut cb, "DELETE FROM saas_unified_audit_logs")
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "VACUUM (ANALYZE) {s}.saas_unified_audit_logs"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let after = estimate(&big).await;
    assert!(after * 10 < before, "after delete {after} vs {before}");
    // Hostile ids are refused before any SQL runs.
    assert!(
        shared::tenant_storage_bytes(&admin, &layout, "x'; DROP TABLE y; --")
            .await
            .is_err()
    );
}

/// Rows in tables that are not partitioned count too. `pg_partition_tree()` returns no row for a
/// plain table, so summing its leaves measured every plain table (`saas_tenants`, `saas_users`,
/// …) as 0 bytes: a tenant's rows there were free (found by `tests/quoting_pg.rs`).
#[tokio::test]
async fn storage_counts_rows_in_plain_tables() {
    let admin = admin();
    let (layout, _) = migrated_layout(&admin, "tenantdb_rls_plain").await;
    let t = create_tenant(&admin, &layout, "plain_rows", "plain").await;
    register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
        .await
        .unwrap();
    let mut c = login(&t).await;
    exec(
        &mut c,
        &format!(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{}', 'plain', 'Plain')",
            t.id
        ),
    )
    .await
    .unwrap();
    exec(
        &mut c,
        &format!(
            "INSERT INTO saas_users (id, tenant_id, username) \
             SELECT 'plain-' || g, '{}', 'user-' || g FROM generate_series(1, 200) AS g",
            t.id
        ),
    )
    .await
    .unwrap();
    // The tenant owns every row of both tables: its share is their whole size.
    let pool = admin.shared_pool().await.unwrap().clone();
    let tables: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT (pg_total_relation_size('{s}.saas_tenants') + pg_total_relation_size('{s}.saas_users'))::bigint",
        s = layout.schema.as_str()
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    let estimate = shared::tenant_storage_bytes(&admin, &layout, &t.id)
        .await
        .unwrap();
    assert!(tables > 0);
    assert_eq!(
        estimate, tables,
        "the tenant's rows in plain tables must be measured"
    );
}
