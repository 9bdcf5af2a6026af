//! A move's publication of a shared tenant's rows and the layout's replica identity: `FULL` while
//! the publication exists, `DEFAULT` again once it is dropped. A drop whose reset cannot get a
//! table's lock in time fails (the move's step is retried) when no other shared tenant is
//! registered — nothing else would ever reset it — and leaves it to the layout's repair when one
//! is (its open transactions must not hold the move up).

use super::*;
use sqlx::Connection;
use tenantdb::pg::shared::replication::{
    drop_publication, ensure_publication, row_counts, sync_replica_identity,
};

/// The moved tenant's id (not registered here: the test is about the others).
const MOVED: &str = "repl-moved";

/// The layout's relations with `REPLICA IDENTITY FULL`.
async fn full_tables(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relreplident = 'f' ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn publications(pool: &PgPool, name: &Ident) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_publication WHERE pubname = $1")
        .bind(name.as_str())
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn dropping_a_moves_publication_sets_the_identity_back_or_fails() {
    let admin = admin();
    let (layout, pool) = migrated_layout(&admin, "tenantdb_rls_repl").await;
    let s = layout.schema.as_str();
    assert!(full_tables(&pool, s).await.is_empty());
    let name = Ident::new("tenantdb_mv_0123456789abcdef").unwrap();
    let mut c = PgConnection::connect(&common::pg().url(SHARED_DB))
        .await
        .unwrap();
    ensure_publication(&mut c, &layout, &name, MOVED)
        .await
        .unwrap();
    let full = full_tables(&pool, s).await;
    assert!(
        full.len() >= 5,
        "FULL while the publication exists: {full:?}"
    );
    assert_eq!(publications(&pool, &name).await, 1);

    // Another session holds a lock on one of the tables (an open transaction that read it): the
    // reset's `ALTER TABLE` waits at most its lock timeout for it, then the drop fails.
    let locked = full.last().unwrap().clone();
    let mut holder = PgConnection::connect(&common::pg().url(SHARED_DB))
        .await
        .unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "LOCK TABLE {s}.{locked} IN ACCESS SHARE MODE"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let e = drop_publication(&mut c, &layout, &name, MOVED)
        .await
        .expect_err("the identity could not be set back: the drop must fail, to be retried");
    assert!(e.to_string().contains("replica identity"), "{e}");
    assert_eq!(
        publications(&pool, &name).await,
        0,
        "the publication is gone"
    );
    assert!(
        full_tables(&pool, s).await.contains(&locked),
        "the locked table is still FULL"
    );

    // Retried once the lock is gone: the publication's drop is a no-op, the identity is reset.
    tx.rollback().await.unwrap();
    drop_publication(&mut c, &layout, &name, MOVED)
        .await
        .unwrap();
    assert_eq!(full_tables(&pool, s).await, Vec::<String>::new());

    // With another shared tenant registered on the server (the moved one's own registration does
    // not count), the same lock leaves the reset to the layout's repair: the drop succeeds.
    let other = create_tenant(&admin, &layout, "repl_other", "repl").await;
    register_tenant(&admin, &layout, &other.role, &other.secondary, &other.id)
        .await
        .unwrap();
    ensure_publication(&mut c, &layout, &name, MOVED)
        .await
        .unwrap();
    assert!(!full_tables(&pool, s).await.is_empty());
    let mut tx = holder.begin().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "LOCK TABLE {s}.{locked} IN ACCESS SHARE MODE"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    drop_publication(&mut c, &layout, &name, MOVED)
        .await
        .expect("another tenant's repair resets the identity: the drop goes on");
    assert_eq!(publications(&pool, &name).await, 0);
    assert!(full_tables(&pool, s).await.contains(&locked));
    tx.rollback().await.unwrap();
    sync_replica_identity(&admin, &layout).await.unwrap();
    assert_eq!(full_tables(&pool, s).await, Vec::<String>::new());
    let _ = holder.close().await;
    let _ = c.close().await;
}

/// The cut-over's row counts of a shared tenant (one statement for every layout table): each
/// table's rows of that tenant and no other's, every tenant-scoped table present.
#[tokio::test]
async fn a_shared_tenants_row_counts_are_its_rows_in_every_table() {
    let admin = admin();
    let (layout, pool) = migrated_layout(&admin, "tenantdb_rls_counts").await;
    let a = create_tenant(&admin, &layout, "counts_a", "counts").await;
    let b = create_tenant(&admin, &layout, "counts_b", "counts").await;
    for (t, tag) in [(&a, "a"), (&b, "b")] {
        register_tenant(&admin, &layout, &t.role, &t.secondary, &t.id)
            .await
            .unwrap();
        let mut c = login(t).await;
        seed_rows(&mut c, t, tag).await;
        let _ = c.close().await;
    }
    // `b` has one more audit log row: a count that mixed the tenants up would show it.
    let mut c = login(&b).await;
    exec(
        &mut c,
        "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) \
         VALUES (tenantdb_current_tenant(), 'operation', 'ai', 'create')",
    )
    .await
    .unwrap();
    let _ = c.close().await;

    let mut c = PgConnection::connect(&common::pg().url(SHARED_DB))
        .await
        .unwrap();
    let counts = row_counts(&mut c, &layout, &a.id).await.unwrap();
    let s = layout.schema.as_str();
    let tables: Vec<String> = scoped_tables(&pool, &layout)
        .await
        .into_iter()
        .map(|(t, _)| format!("{s}.{t}"))
        .collect();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        tables,
        "every tenant-scoped table"
    );
    for (table, n) in [
        ("saas_tenants", 1),
        ("saas_users", 3),
        ("ai_agents", 2),
        ("saas_unified_audit_logs", 5),
        ("saas_unified_configs", 1),
    ] {
        assert_eq!(counts.get(&format!("{s}.{table}")), Some(&n), "{table}");
    }
    assert_eq!(
        counts.values().sum::<i64>(),
        rows_of(&pool, &layout, &a.id).await,
        "nothing else counted"
    );
    let of_b = row_counts(&mut c, &layout, &b.id).await.unwrap();
    assert_eq!(of_b.get(&format!("{s}.saas_unified_audit_logs")), Some(&6));
    let _ = c.close().await;
}
