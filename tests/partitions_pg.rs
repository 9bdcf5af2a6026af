//! Monthly partition maintenance against a real PostgreSQL 15 (one throwaway cluster shared by the
//! tests of this binary; each test works in its own role + schema with the baseline applied).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jiff::civil::date;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tenantdb::migrate::{self, MigrationSet, MigrationTarget};
use tenantdb::partitions::{self, PARTITIONED_TABLES};
use tenantdb_testkit::localpg::LocalPg;

fn pg() -> &'static LocalPg {
    static PG: OnceLock<LocalPg> = OnceLock::new();
    PG.get_or_init(|| LocalPg::start().expect("start PostgreSQL"))
}

async fn connect() -> PgConnection {
    PgConnection::connect(&pg().admin_url()).await.unwrap()
}

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Role + schema `name` with the baseline applied and one tenant row `t1`.
async fn tenant(conn: &mut PgConnection, name: &'static str, baseline: bool) {
    exec(
        conn,
        &format!("CREATE ROLE {name} NOLOGIN; CREATE SCHEMA {name} AUTHORIZATION {name};"),
    )
    .await;
    if baseline {
        let target = MigrationTarget {
            schema: name,
            owner_role: name,
            lock_key: name.len() as i64,
        };
        migrate::migrate(conn, &MigrationSet::bundled(), &target, None, false)
            .await
            .unwrap();
        exec(
            conn,
            &format!(
                "INSERT INTO {name}.saas_tenants (id, tenant_code, tenant_name) VALUES ('t1', 't1', 'T1')"
            ),
        )
        .await;
    }
}

/// partition name -> (parent, bound expression, owner)
async fn partitions_of(
    conn: &mut PgConnection,
    schema: &str,
) -> BTreeMap<String, (String, String, String)> {
    sqlx::query(
        "SELECT c.relname::text AS part, p.relname::text AS parent, \
         pg_get_expr(c.relpartbound, c.oid) AS bound, pg_get_userbyid(c.relowner)::text AS owner \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get("part"), (r.get("parent"), r.get("bound"), r.get("owner"))))
    .collect()
}

async fn count_in(conn: &mut PgConnection, schema: &str, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.{table}"
    )))
    .fetch_one(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn maintain_creates_months_and_is_idempotent() {
    let mut conn = connect().await;
    let s = "part_create";
    tenant(&mut conn, s, true).await;
    let report = partitions::maintain(&mut conn, s, s, date(2025, 11, 20), 2, Some(6))
        .await
        .unwrap();
    assert_eq!(report.created.len(), 9, "{report:?}");
    assert!(report.dropped.is_empty());
    assert_eq!(report.rows_moved, 0);
    assert!(report.skipped_tables.is_empty());

    let parts = partitions_of(&mut conn, s).await;
    assert_eq!(parts.len(), 12, "9 monthly + 3 default: {parts:?}");
    assert!(
        parts.values().all(|(_, _, owner)| owner == s),
        "owned by the tenant role"
    );
    let (parent, bound, _) = &parts["saas_unified_audit_logs_p202512"];
    assert_eq!(parent, "saas_unified_audit_logs");
    // UTC month bounds, whatever the session time zone
    exec(&mut conn, "SET TimeZone = 'UTC'").await;
    let bound_utc: String = sqlx::query_scalar(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'saas_unified_audit_logs_p202512'",
    )
    .bind(s)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        bound_utc, "FOR VALUES FROM ('2025-12-01 00:00:00+00') TO ('2026-01-01 00:00:00+00')",
        "{bound}"
    );
    let (_, bound, _) = &parts["saas_usage_statistics_p202601"];
    assert_eq!(bound, "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')");

    // rows route by UTC month: 2025-12-01 07:00 in Shanghai is still November in UTC
    exec(&mut conn, "SET TimeZone = 'Asia/Shanghai'").await;
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {s}.saas_unified_audit_logs (tenant_id, log_type, module, action, created_at) VALUES
             ('t1', 'operation', 'ai', 'create', '2025-12-01 07:00:00+08'),
             ('t1', 'operation', 'ai', 'create', '2025-12-01 08:00:00+08')"
        ),
    )
    .await;
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_audit_logs_p202511").await,
        1
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_audit_logs_p202512").await,
        1
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_audit_logs_default").await,
        0
    );

    // the FK, indexes and trigger of the parent apply to the new partitions
    let idx: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'saas_unified_alerts_p202601'",
    )
    .bind(s)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(idx, 8, "pkey + 7 indexes");

    // idempotent
    let again = partitions::maintain(&mut conn, s, s, date(2025, 11, 20), 2, Some(6))
        .await
        .unwrap();
    assert_eq!(again, partitions::PartitionReport::default());
    let names_after: Vec<String> = partitions_of(&mut conn, s).await.into_keys().collect();
    assert_eq!(names_after, parts.into_keys().collect::<Vec<_>>());
}

#[tokio::test]
async fn maintain_drops_expired_months_only() {
    let mut conn = connect().await;
    let s = "part_retention";
    tenant(&mut conn, s, true).await;
    // January .. April 2025 exist
    partitions::maintain(&mut conn, s, s, date(2025, 1, 10), 3, None)
        .await
        .unwrap();
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {s}.saas_usage_statistics (tenant_id, usage_date, metric_type) VALUES
             ('t1', '2025-01-15', 'api_calls'), ('t1', '2025-04-15', 'api_calls'), ('t1', '2019-01-01', 'api_calls');
             CREATE TABLE {s}.saas_usage_statistics_manual PARTITION OF {s}.saas_usage_statistics
             FOR VALUES FROM ('2020-01-01') TO ('2020-02-01');"
        ),
    )
    .await;
    // June 2025, keep 2 previous months: Jan..Mar go (upper bound <= 2025-04-01), Apr stays
    let report = partitions::maintain(&mut conn, s, s, date(2025, 6, 3), 0, Some(2))
        .await
        .unwrap();
    let mut dropped = report.dropped.clone();
    dropped.sort();
    assert_eq!(dropped.len(), 9, "{dropped:?}");
    assert!(dropped.contains(&"saas_usage_statistics_p202501".to_string()));
    assert!(!dropped.iter().any(|d| d.ends_with("202504")));
    assert_eq!(
        report.created.len(),
        3,
        "June (May is never created): {report:?}"
    );
    let parts = partitions_of(&mut conn, s).await;
    assert!(parts.contains_key("saas_usage_statistics_default"));
    assert!(
        parts.contains_key("saas_usage_statistics_manual"),
        "foreign names untouched"
    );
    assert!(parts.contains_key("saas_usage_statistics_p202504"));
    assert!(!parts.contains_key("saas_usage_statistics_p202501"));
    // the expired tables are gone (dropped, not just detached)
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname LIKE '%\\_p20250_' AND c.relname ~ '_p20250[123]$'",
    )
    .bind(s)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(leftovers, 0);
    // the April row and the default partition's row survive; January's is gone with its month
    assert_eq!(count_in(&mut conn, s, "saas_usage_statistics").await, 2);
    assert_eq!(
        count_in(&mut conn, s, "saas_usage_statistics_default").await,
        1
    );
    // idempotent
    let again = partitions::maintain(&mut conn, s, s, date(2025, 6, 3), 0, Some(2))
        .await
        .unwrap();
    assert!(
        again.created.is_empty() && again.dropped.is_empty(),
        "{again:?}"
    );
}

#[tokio::test]
async fn rows_in_the_default_partition_are_moved() {
    let mut conn = connect().await;
    let s = "part_default_rows";
    tenant(&mut conn, s, true).await;
    exec(&mut conn, &format!("SET search_path TO {s}")).await;
    exec(
        &mut conn,
        "INSERT INTO saas_users (id, tenant_id, username) VALUES ('u1', 't1', 'alice');
         INSERT INTO saas_unified_alerts (tenant_id, source_type, source_module, alert_code, alert_title,
             alert_message, alert_level, alert_category, created_at, acknowledged_by) VALUES
           ('t1', 'system', 'wework', 'HB', 'h', 'm', 'warning', 'heartbeat_timeout', '2025-08-03 10:00+00', 'u1'),
           ('t1', 'system', 'wework', 'HB', 'h', 'm', 'warning', 'heartbeat_timeout', '2025-09-30 23:59:59+00', NULL),
           ('t1', 'system', 'wework', 'HB', 'h', 'm', 'warning', 'heartbeat_timeout', '2024-01-01 00:00+00', NULL);
         INSERT INTO saas_usage_statistics (tenant_id, usage_date, metric_type) VALUES ('t1', '2025-08-31', 'api_calls');",
    )
    .await;
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_alerts_default").await,
        3
    );

    let report = partitions::maintain(&mut conn, s, s, date(2025, 8, 15), 1, None)
        .await
        .unwrap();
    assert_eq!(report.created.len(), 6);
    assert_eq!(report.rows_moved, 3, "{report:?}");
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_alerts_p202508").await,
        1
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_alerts_p202509").await,
        1
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_unified_alerts_default").await,
        1,
        "2024 row stays"
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_usage_statistics_p202508").await,
        1
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_usage_statistics_default").await,
        0
    );

    // the default partition is attached again as DEFAULT, with its indexes, FKs and trigger
    let defaults: Vec<String> = sqlx::query_scalar(
        "SELECT d.relname::text FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid \
         JOIN pg_class d ON d.oid = pt.partdefid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 ORDER BY 1",
    )
    .bind(s)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        defaults,
        [
            "saas_unified_alerts_default",
            "saas_unified_audit_logs_default",
            "saas_usage_statistics_default"
        ]
    );
    let fk_on_default: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'saas_unified_alerts_default' AND co.contype = 'f' AND co.conparentid <> 0",
    )
    .bind(s)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(fk_on_default, 3);
    // an ON DELETE SET NULL FK still works through the moved rows
    exec(&mut conn, "DELETE FROM saas_users WHERE id = 'u1'").await;
    let acked: i64 = sqlx::query_scalar("SELECT count(acknowledged_by) FROM saas_unified_alerts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 0);
    // new rows of the moved months land in their partitions, unknown months in the default
    exec(
        &mut conn,
        "INSERT INTO saas_usage_statistics (tenant_id, usage_date, metric_type) VALUES
           ('t1', '2025-08-01', 'x'), ('t1', '2031-01-01', 'x')",
    )
    .await;
    assert_eq!(
        count_in(&mut conn, s, "saas_usage_statistics_p202508").await,
        2
    );
    assert_eq!(
        count_in(&mut conn, s, "saas_usage_statistics_default").await,
        1
    );

    let again = partitions::maintain(&mut conn, s, s, date(2025, 8, 15), 1, None)
        .await
        .unwrap();
    assert_eq!(again, partitions::PartitionReport::default());
}

#[tokio::test]
async fn maintain_skips_schemas_without_the_baseline() {
    let mut conn = connect().await;
    let s = "part_empty";
    tenant(&mut conn, s, false).await;
    let report = partitions::maintain(&mut conn, s, s, date(2025, 1, 1), 1, Some(1))
        .await
        .unwrap();
    assert_eq!(
        report.skipped_tables,
        PARTITIONED_TABLES
            .iter()
            .map(|t| t.table)
            .collect::<Vec<_>>()
    );
    assert!(report.created.is_empty());
    let e = partitions::maintain(&mut conn, "Bad", s, date(2025, 1, 1), 1, None)
        .await
        .unwrap_err();
    assert_eq!(e.category(), "invalid_identifier");
}

#[tokio::test]
async fn concurrent_maintenance_is_safe() {
    let mut admin = connect().await;
    let s = "part_race";
    tenant(&mut admin, s, true).await;
    let mut c1 = connect().await;
    let mut c2 = connect().await;
    let (r1, r2) = tokio::join!(
        partitions::maintain(&mut c1, s, s, date(2025, 3, 1), 3, Some(12)),
        partitions::maintain(&mut c2, s, s, date(2025, 3, 1), 3, Some(12)),
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.created.len() + r2.created.len(), 12, "{r1:?} {r2:?}");
    assert_eq!(partitions_of(&mut admin, s).await.len(), 15);
}
