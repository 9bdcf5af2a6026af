//! The migration engine and the baseline migrations against a real PostgreSQL 15
//! (`tenantdb_testkit::localpg::LocalPg`, one throwaway cluster shared by the tests of this binary; each
//! test works in its own role + schema).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tenantdb::migrate::{
    self, Direction, HISTORY_TABLE, MigrateError, MigrationSet, MigrationTarget,
};
use tenantdb_testkit::localpg::LocalPg;

/// Last version of the baseline data model. Later migrations are not part of these tests'
/// expectations: the tests use [`baseline`], the bundled set cut at this version.
const LATEST: i64 = 20250101000007;

/// The bundled migrations up to the baseline.
fn baseline() -> MigrationSet {
    MigrationSet::new(
        MigrationSet::bundled()
            .migrations()
            .iter()
            .filter(|m| m.version <= LATEST)
            .cloned()
            .collect(),
    )
    .unwrap()
}

const SEED_TABLES: &[&str] = &[
    // identity core
    "saas_tenants",
    "saas_users",
    "saas_roles",
    "saas_permissions",
    "saas_user_roles",
    "saas_role_permissions",
    // security audit
    "saas_api_keys",
    "saas_user_sessions",
    "saas_unified_audit_logs",
    "saas_login_attempts",
    // system management
    "saas_unified_configs",
    "saas_tenant_quotas",
    "saas_usage_statistics",
    "saas_files",
    "saas_notifications",
    // operations
    "saas_unified_alerts",
    "saas_monitor_rules",
    "saas_system_metrics",
    "saas_health_checks",
    // business modules
    "ai_agents",
    "ai_platforms",
    "ai_conversations",
    "ai_messages",
    "ai_knowledge_bases",
    "wework_accounts",
    "wework_messages",
    "wework_conversations",
    "health_patients",
    "health_records",
];

fn pg() -> &'static LocalPg {
    static PG: OnceLock<LocalPg> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = LocalPg::start().expect("start PostgreSQL");
        // A DDL log (per schema) to prove that an up-to-date migrate runs no DDL at all.
        let setup = r#"
            CREATE TABLE public.ddl_events (id bigserial PRIMARY KEY, tag text, schema_name text);
            CREATE FUNCTION public.log_ddl() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, public AS $$
            DECLARE r record;
            BEGIN
                FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
                    INSERT INTO public.ddl_events (tag, schema_name) VALUES (r.command_tag, r.schema_name);
                END LOOP;
            END $$;
            CREATE FUNCTION public.log_drop() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog, public AS $$
            DECLARE r record;
            BEGIN
                FOR r IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
                    INSERT INTO public.ddl_events (tag, schema_name) VALUES ('DROP ' || r.object_type, r.schema_name);
                END LOOP;
            END $$;
            CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION public.log_ddl();
            CREATE EVENT TRIGGER log_drop ON sql_drop EXECUTE FUNCTION public.log_drop();
        "#;
        let out = std::process::Command::new("psql")
            .arg(pg.admin_url())
            .args(["-v", "ON_ERROR_STOP=1", "-qc", setup])
            .output()
            .expect("psql");
        assert!(out.status.success(), "{out:?}");
        pg
    })
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

/// Error code of a statement that must fail.
async fn exec_err(conn: &mut PgConnection, sql: &str) -> String {
    let e = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .expect_err(sql);
    e.as_database_error()
        .and_then(|d| d.code().map(|c| c.to_string()))
        .unwrap_or_else(|| panic!("{sql}: {e}"))
}

/// FNV-1a of the name: a per-tenant advisory lock key.
fn lock_key(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// A NOLOGIN role and a schema it owns, both named `name`.
async fn tenant(conn: &mut PgConnection, name: &str) -> MigrationTarget<'static> {
    exec(
        conn,
        &format!("CREATE ROLE {name} NOLOGIN; CREATE SCHEMA {name} AUTHORIZATION {name};"),
    )
    .await;
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    MigrationTarget {
        schema: name,
        owner_role: name,
        lock_key: lock_key(name),
    }
}

async fn tables(conn: &mut PgConnection, schema: &str) -> BTreeSet<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// (oid, name, kind) of every object in the schema: relations, functions, types, constraints.
async fn objects(conn: &mut PgConnection, schema: &str) -> Vec<(i64, String)> {
    sqlx::query(
        "SELECT c.oid::bigint AS oid, c.relkind::text || ':' || c.relname AS name FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
         UNION ALL SELECT p.oid::bigint, 'f:' || p.proname FROM pg_proc p \
           JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 \
         UNION ALL SELECT t.oid::bigint, 't:' || t.typname FROM pg_type t \
           JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 \
         UNION ALL SELECT co.oid::bigint, 'c:' || co.conname FROM pg_constraint co \
           JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = $1 \
         ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get("oid"), r.get("name")))
    .collect()
}

async fn ddl_count(conn: &mut PgConnection, schema: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.ddl_events WHERE schema_name = $1")
        .bind(schema)
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn versions(conn: &mut PgConnection, target: &MigrationTarget<'_>) -> Vec<i64> {
    migrate::status(conn, target)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.version)
        .collect()
}

fn bundled_versions() -> Vec<i64> {
    baseline().migrations().iter().map(|m| m.version).collect()
}

#[tokio::test]
async fn baseline_creates_the_seed_tables_and_constraints() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_baseline").await;
    let report = migrate::migrate(&mut conn, &baseline(), &t, None, false)
        .await
        .unwrap();
    assert_eq!((report.from, report.to), (None, Some(LATEST)));
    assert_eq!(report.applied.len(), 7);
    assert!(report.applied.iter().all(|(_, d)| *d == Direction::Up));
    assert_eq!(versions(&mut conn, &t).await, bundled_versions());

    // exactly the seed's tables (+ the history table)
    let mut expected: BTreeSet<String> = SEED_TABLES.iter().map(|s| s.to_string()).collect();
    assert_eq!(expected.len(), 29);
    expected.insert(HISTORY_TABLE.to_string());
    assert_eq!(tables(&mut conn, t.schema).await, expected);

    // everything is owned by the tenant role, nothing is schema-qualified elsewhere
    let foreign_owner: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND pg_get_userbyid(c.relowner) <> $1",
    )
    .bind(t.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(foreign_owner, 0);
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relname LIKE 'saas\\_%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(leaked, 0);

    // every table carries tenant_id (saas_tenants: id); only saas_unified_configs' is nullable
    let tenant_cols: Vec<(String, bool)> = sqlx::query(
        "SELECT c.relname::text AS t, a.attnotnull AS nn FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .bind(t.schema)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get("t"), r.get("nn")))
    .collect();
    assert_eq!(tenant_cols.len(), 28, "{tenant_cols:?}");
    for (table, not_null) in &tenant_cols {
        assert_eq!(*not_null, table != "saas_unified_configs", "{table}");
    }

    // primary keys, including the partition keys
    let pk = |table: &'static str| {
        let schema = t.schema;
        async move {
            let mut c = connect().await;
            sqlx::query_scalar::<_, String>(
                "SELECT pg_get_constraintdef(co.oid) FROM pg_constraint co \
                 JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND co.contype = 'p'",
            )
            .bind(schema)
            .bind(table)
            .fetch_one(&mut c)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        pk("saas_unified_audit_logs").await,
        "PRIMARY KEY (id, created_at)"
    );
    assert_eq!(
        pk("saas_unified_alerts").await,
        "PRIMARY KEY (id, created_at)"
    );
    assert_eq!(
        pk("saas_usage_statistics").await,
        "PRIMARY KEY (id, usage_date)"
    );
    assert_eq!(pk("saas_users").await, "PRIMARY KEY (id)");

    // partitioning: RANGE on the right column, DEFAULT partition only
    let parts: Vec<(String, String, String)> = sqlx::query(
        "SELECT p.relname::text AS parent, pg_get_partkeydef(p.oid) AS key, c.relname::text AS part \
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = $1 \
         AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' ORDER BY 1",
    )
    .bind(t.schema)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|r| (r.get("parent"), r.get("key"), r.get("part")))
    .collect();
    assert_eq!(
        parts,
        [
            (
                "saas_unified_alerts".into(),
                "RANGE (created_at)".into(),
                "saas_unified_alerts_default".into()
            ),
            (
                "saas_unified_audit_logs".into(),
                "RANGE (created_at)".into(),
                "saas_unified_audit_logs_default".into()
            ),
            (
                "saas_usage_statistics".into(),
                "RANGE (usage_date)".into(),
                "saas_usage_statistics_default".into()
            ),
        ]
    );
    let partition_count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relispartition AND c.relkind = 'r'",
    )
    .bind(t.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        partition_count, 3,
        "no monthly partitions are created by migrations"
    );

    // foreign keys: present where enforced, absent where logical
    let fks: BTreeSet<String> = sqlx::query_scalar(
        "SELECT c.relname || '.' || a.attname FROM pg_constraint co \
         JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = co.conkey[1] \
         WHERE n.nspname = $1 AND co.contype = 'f' AND co.conparentid = 0",
    )
    .bind(t.schema)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    for present in [
        "saas_users.tenant_id",
        "saas_user_roles.user_id",
        "saas_user_roles.role_id",
        "saas_role_permissions.role_id",
        "saas_role_permissions.permission_id",
        "saas_unified_audit_logs.tenant_id",
        "saas_unified_configs.tenant_id",
        "saas_unified_configs.user_id",
        "saas_unified_configs.parent_config_id",
        "saas_unified_alerts.acknowledged_by",
        "saas_unified_alerts.resolved_by",
        "ai_agents.created_by",
        "ai_conversations.agent_id",
        "ai_messages.conversation_id",
        "wework_messages.account_id",
        "wework_messages.conversation_id",
        "health_records.patient_id",
    ] {
        assert!(fks.contains(present), "missing FK {present}");
    }
    for absent in [
        "saas_unified_audit_logs.operator_id",
        "saas_unified_audit_logs.target_id",
        "saas_unified_audit_logs.session_id",
        "saas_login_attempts.user_id",
        "saas_usage_statistics.user_id",
        "saas_health_checks.target_id",
        "saas_system_metrics.source_id",
        "ai_messages.platform_id",
        "saas_files.biz_id",
    ] {
        assert!(!fks.contains(absent), "unexpected FK {absent}");
    }
    // every table but saas_tenants has its tenant FK
    for table in SEED_TABLES.iter().filter(|t| **t != "saas_tenants") {
        assert!(
            fks.contains(&format!("{table}.tenant_id")),
            "{table}.tenant_id"
        );
    }

    // constraint and index names are unique in the schema and prefixed with their table
    let bad_names: Vec<String> = sqlx::query_scalar(
        "SELECT co.conname::text FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND NOT c.relispartition \
         AND c.relname <> $2 AND position(c.relname::text IN co.conname) = 0",
    )
    .bind(t.schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(bad_names.is_empty(), "{bad_names:?}");
    let bad_indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND tablename NOT LIKE '%\\_default' \
         AND tablename <> $2 AND position(tablename::text IN indexname) = 0",
    )
    .bind(t.schema)
    .bind(HISTORY_TABLE)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(bad_indexes.is_empty(), "{bad_indexes:?}");

    // CHECKs, FKs, logical references, at work
    exec(&mut conn, &format!("SET search_path TO {}", t.schema)).await;
    exec(
        &mut conn,
        "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('t1', 't1', 'Tenant 1');
         INSERT INTO saas_users (id, tenant_id, username) VALUES ('u1', 't1', 'alice');",
    )
    .await;
    assert_eq!(
        exec_err(&mut conn, "INSERT INTO saas_tenant_quotas (tenant_id, quota_type, max_quota, current_usage) VALUES ('t1', 'users', 10, 11)").await,
        "23514"
    );
    exec(&mut conn, "INSERT INTO saas_tenant_quotas (tenant_id, quota_type, max_quota, current_usage) VALUES ('t1', 'users', 10, 10)").await;
    assert_eq!(
        exec_err(&mut conn, "INSERT INTO wework_accounts (tenant_id, account_name, health_score) VALUES ('t1', 'a', 101)").await,
        "23514"
    );
    assert_eq!(
        exec_err(&mut conn, "INSERT INTO wework_accounts (tenant_id, account_name, status) VALUES ('t1', 'a', 'SLEEPING')").await,
        "23514"
    );
    assert_eq!(
        exec_err(
            &mut conn,
            "INSERT INTO saas_users (tenant_id, username, status) VALUES ('t1', 'bob', 'deleted')"
        )
        .await,
        "23514"
    );
    assert_eq!(
        exec_err(&mut conn, "INSERT INTO ai_agents (tenant_id, agent_name, config, created_by) VALUES ('t1', 'a', '{}', 'nobody')").await,
        "23503"
    );
    assert_eq!(
        exec_err(
            &mut conn,
            "INSERT INTO saas_users (tenant_id, username) VALUES ('no-such-tenant', 'x')"
        )
        .await,
        "23503"
    );
    // logical references accept anything
    exec(
        &mut conn,
        "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, operator_id, target_id)
         VALUES ('t1', 'operation', 'ai', 'create', 'deleted-user', 'gone-object')",
    )
    .await;
    // soft-deleted users free their username; live duplicates are refused
    assert_eq!(
        exec_err(
            &mut conn,
            "INSERT INTO saas_users (tenant_id, username) VALUES ('t1', 'alice')"
        )
        .await,
        "23505"
    );
    exec(
        &mut conn,
        "UPDATE saas_users SET deleted_at = now() WHERE id = 'u1';
         INSERT INTO saas_users (tenant_id, username) VALUES ('t1', 'alice');",
    )
    .await;
    // the usage statistics upsert key treats NULL module/user as equal
    exec(
        &mut conn,
        "INSERT INTO saas_usage_statistics (tenant_id, usage_date, metric_type, usage_count) VALUES ('t1', '2025-03-02', 'api_calls', 1)
         ON CONFLICT (tenant_id, usage_date, metric_type, module, user_id) DO UPDATE SET usage_count = saas_usage_statistics.usage_count + 1;
         INSERT INTO saas_usage_statistics (tenant_id, usage_date, metric_type, usage_count) VALUES ('t1', '2025-03-02', 'api_calls', 1)
         ON CONFLICT (tenant_id, usage_date, metric_type, module, user_id) DO UPDATE SET usage_count = saas_usage_statistics.usage_count + 1;",
    )
    .await;
    let count: i64 = sqlx::query_scalar("SELECT usage_count FROM saas_usage_statistics")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 2);
    // deleting the tenant cascades everywhere
    exec(&mut conn, "DELETE FROM saas_tenants").await;
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM saas_users) + (SELECT count(*) FROM saas_unified_audit_logs) \
         + (SELECT count(*) FROM saas_usage_statistics) + (SELECT count(*) FROM saas_tenant_quotas)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 0);

    // comments kept (Chinese)
    let comment: Option<String> = sqlx::query_scalar(
        "SELECT obj_description(format('%I.%I', $1::text, 'saas_unified_audit_logs')::regclass, 'pg_class')",
    )
    .bind(t.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(comment.unwrap_or_default().starts_with("统一审计日志表"));
}

#[tokio::test]
async fn unified_configs_partial_unique_indexes() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_configs").await;
    migrate::migrate(&mut conn, &baseline(), &t, None, false)
        .await
        .unwrap();
    exec(&mut conn, &format!("SET search_path TO {}", t.schema)).await;
    exec(
        &mut conn,
        "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('t1', 't1', 'T1'), ('t2', 't2', 'T2');
         INSERT INTO saas_users (id, tenant_id, username) VALUES ('u1', 't1', 'a'), ('u2', 't1', 'b');",
    )
    .await;
    let ins = |tenant: &str, user: &str, scope: &str| {
        format!(
            "INSERT INTO saas_unified_configs (tenant_id, user_id, config_scope, config_category, config_key, config_value) \
             VALUES ({tenant}, {user}, '{scope}', 'ui', 'theme', '\"dark\"')"
        )
    };
    // global: one row per key
    exec(&mut conn, &ins("NULL", "NULL", "global")).await;
    assert_eq!(
        exec_err(&mut conn, &ins("NULL", "NULL", "global")).await,
        "23505"
    );
    // tenant: one row per (tenant, key), independent of the global row and of other tenants
    exec(&mut conn, &ins("'t1'", "NULL", "tenant")).await;
    exec(&mut conn, &ins("'t2'", "NULL", "tenant")).await;
    assert_eq!(
        exec_err(&mut conn, &ins("'t1'", "NULL", "tenant")).await,
        "23505"
    );
    // user: one row per (tenant, user, key), independent of the tenant row and of other users
    exec(&mut conn, &ins("'t1'", "'u1'", "user")).await;
    exec(&mut conn, &ins("'t1'", "'u2'", "user")).await;
    assert_eq!(
        exec_err(&mut conn, &ins("'t1'", "'u1'", "user")).await,
        "23505"
    );
    // scope and ids must agree; a user row needs its tenant
    assert_eq!(
        exec_err(&mut conn, &ins("NULL", "'u1'", "user")).await,
        "23514"
    );
    assert_eq!(
        exec_err(&mut conn, &ins("'t1'", "NULL", "global")).await,
        "23514"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM saas_unified_configs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, 5);
}

#[tokio::test]
async fn updated_at_trigger_works() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_trigger").await;
    migrate::migrate(&mut conn, &baseline(), &t, None, false)
        .await
        .unwrap();
    exec(&mut conn, &format!("SET search_path TO {}", t.schema)).await;
    exec(
        &mut conn,
        "INSERT INTO saas_tenants (id, tenant_code, tenant_name, created_at, updated_at)
         VALUES ('t1', 't1', 'T1', '2020-01-01', '2020-01-01')",
    )
    .await;
    let updated_at = |c: &'static str| {
        let schema = t.schema;
        async move {
            let mut conn = connect().await;
            exec(&mut conn, &format!("SET search_path TO {schema}")).await;
            exec(&mut conn, c).await;
            sqlx::query_scalar::<_, bool>("SELECT updated_at > '2021-01-01' FROM saas_tenants")
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    };
    // a no-op update does not bump (MySQL semantics)
    assert!(!updated_at("UPDATE saas_tenants SET tenant_name = tenant_name").await);
    // an explicit updated_at wins
    assert!(
        !updated_at("UPDATE saas_tenants SET tenant_name = 'x', updated_at = '2020-06-01'").await
    );
    // a real change bumps it
    assert!(updated_at("UPDATE saas_tenants SET tenant_name = 'y'").await);
    // also through a partitioned table (trigger cloned onto partitions)
    exec(
        &mut conn,
        "INSERT INTO saas_unified_alerts (tenant_id, source_type, source_module, alert_code, alert_title,
            alert_message, alert_level, alert_category, created_at, updated_at)
         VALUES ('t1', 'system', 'wework', 'HB', 'heartbeat', 'm', 'warning', 'heartbeat_timeout', '2020-01-01', '2020-01-01');
         UPDATE saas_unified_alerts SET status = 'acknowledged';",
    )
    .await;
    let bumped: bool =
        sqlx::query_scalar("SELECT updated_at > '2021-01-01' FROM saas_unified_alerts")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(bumped);
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND NOT c.relispartition AND tg.tgname LIKE 'trg\\_%\\_updated\\_at'",
    )
    .bind(t.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let with_updated_at: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND NOT c.relispartition AND c.relkind IN ('r', 'p') AND a.attname = 'updated_at'",
    )
    .bind(t.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(triggers, with_updated_at);
}

mod lifecycle;
