//! Monthly partitions kept ahead and expired ones dropped by the operator.

use super::*;

/// The partition names `<table>_pYYYYMM` of a schema (as the superuser).
pub(super) async fn partitions(pool: &sqlx::PgPool, schema: &str) -> BTreeSet<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname ~ '_p[0-9]{6}$'",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

pub(super) fn month_names(from: jiff::civil::Date, count: i32) -> Vec<String> {
    (0..count)
        .map(|k| {
            let d = from
                .first_of_month()
                .checked_add(jiff::Span::new().months(k))
                .unwrap();
            format!("{:04}{:02}", d.year(), d.month())
        })
        .collect()
}

/// The operator's own partition maintenance: at provisioning the current month and
/// `--partition-months-ahead` months get partitions (tenant schemas, dedicated databases and the
/// shared row-level security layout); it does not run on every reconcile (a partition dropped by
/// hand stays missing through many resyncs), and a new operator process runs it again: the missing
/// month comes back and a month past `--partition-retention-months` is dropped, with its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_keeps_monthly_partitions_ahead_and_drops_expired_ones() {
    let mut env = Env::start_with(&[
        "--resync-seconds",
        "1",
        "--partition-months-ahead",
        "3",
        "--partition-retention-months",
        "2",
    ])
    .await;
    let ns = "parts";
    env.create_tenant(ns, "pd", json!({"isolation": "database"}))
        .await;
    env.create_tenant(ns, "ps", json!({"isolation": "schema"}))
        .await;
    env.create_tenant(ns, "pz", json!({"isolation": "shared"}))
        .await;
    for name in ["pd", "ps", "pz"] {
        env.wait_ready(ns, name, T).await;
    }
    let today = tenantdb::partitions::today();
    let months = month_names(today, 4);
    let tables = [
        "saas_unified_audit_logs",
        "saas_unified_alerts",
        "saas_usage_statistics",
    ];
    let expected: BTreeSet<String> = tables
        .iter()
        .flat_map(|t| months.iter().map(move |m| format!("{t}_p{m}")))
        .collect();
    let (_, db_d, schema_d) = names(&env, ns, "pd").await;
    let (role_s, _, schema_s) = names(&env, ns, "ps").await;
    let db_pool = |db: String| {
        let url = env.pg.url(&db);
        async move {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await
                .unwrap()
        }
    };
    let dedicated = db_pool(db_d).await;
    let shared = db_pool("tenantdb_shared".into()).await;
    for (what, pool, schema) in [
        ("database tenant", &dedicated, schema_d.as_str()),
        ("schema tenant", &shared, schema_s.as_str()),
        ("shared layout", &shared, "tenantdb_rls"),
    ] {
        let got = wait_for(T, &format!("{what}: partitions"), || async {
            let p = partitions(pool, schema).await;
            expected.is_subset(&p).then_some(p)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: want {expected:?}"));
        assert_eq!(
            got, expected,
            "{what}: the current month and 3 ahead, nothing else"
        );
    }

    // Months move on (simulated): the last month ahead is missing, and an expired month (older
    // than the 2-month retention) with a row in it exists — both made as the tenant role.
    let last = format!("saas_unified_audit_logs_p{}", months[3]);
    let old = "saas_unified_audit_logs_p202001";
    let setup = [
        format!("SET ROLE \"{role_s}\""),
        format!(
            "INSERT INTO \"{schema_s}\".saas_tenants (id, tenant_code, tenant_name) VALUES ('t', 't', 'T')"
        ),
        format!("DROP TABLE \"{schema_s}\".\"{last}\""),
        format!(
            "CREATE TABLE \"{schema_s}\".\"{old}\" PARTITION OF \"{schema_s}\".saas_unified_audit_logs \
             FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00')"
        ),
        format!(
            "INSERT INTO \"{schema_s}\".saas_unified_audit_logs (tenant_id, log_type, module, action, created_at) \
             VALUES ('t', 'operation', 'ai', 'create', '2020-01-15 00:00:00+00')"
        ),
        "RESET ROLE".to_string(),
    ];
    let mut c = shared.acquire().await.unwrap();
    for sql in &setup {
        c.execute(sqlx::AssertSqlSafe(sql.clone()))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(c);
    // A measurement window: ~5 resyncs of the tenant; maintenance runs at most every
    // --partition-interval-hours (6 h), so nothing changes.
    let reconciles = |log: &str| ops::message_times(log, "reconcile started");
    let before = reconciles(&env.operator_log())
        .get(&(ns.to_string(), "ps".to_string()))
        .map_or(0, Vec::len);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = reconciles(&env.operator_log())
        .get(&(ns.to_string(), "ps".to_string()))
        .map_or(0, Vec::len);
    assert!(
        after >= before + 3,
        "the tenant was resynced ({before} → {after})"
    );
    let p = partitions(&shared, &schema_s).await;
    assert!(
        !p.contains(&last) && p.contains(old),
        "maintenance ran again within its interval: {p:?}"
    );

    // A new operator process maintains every tenant once: the missing month is back, the expired
    // one (and its row) gone.
    env.kill_operator().await;
    env.start_operator();
    let seen = std::sync::Mutex::new(BTreeSet::new());
    wait_for(T, "partitions maintained by the new process", || async {
        let p = partitions(&shared, &schema_s).await;
        let done = p == expected;
        *seen.lock().unwrap() = p;
        done.then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{}",
            seen.lock().unwrap(),
            tail(&env.operator_log(), 30)
        )
    });
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema_s}\".saas_unified_audit_logs"
    )))
    .fetch_one(&shared)
    .await
    .unwrap();
    assert_eq!(rows, 0, "the expired month's rows went with it");
    dedicated.close().await;
    shared.close().await;
}
