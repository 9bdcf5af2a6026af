//! Per-tenant statistics through the real binary, against a real PostgreSQL with (and without)
//! `pg_stat_statements`: connections by state and the limit, transactions of a dedicated
//! database, slow statements normalised without their parameters; one statistics query per
//! server and interval whatever the number of tenants; no status writes while nothing changes;
//! the bounded fleet metrics and the opt-in per-tenant series.

use tenantdb_testkit::e2e;

use std::time::Duration;

use e2e::{Env, EnvOptions, wait_for};
use serde_json::json;
use sqlx::{Connection, Executor};
use tenantdb::crd::{StatisticsStatus, Tenant};
use tenantdb::statistics::MIN_RATE_WINDOW;

const T: Duration = Duration::from_secs(120);
const NS: &str = "stats";

const FLAGS: [&str; 12] = [
    "--usage-interval-seconds",
    "1",
    "--resync-seconds",
    "2",
    // Health checks (a login and a commit each) at the default interval, i.e. not during the
    // test: with one a second the operator's own checks were the busiest writer in the tenant's
    // database, and their cadence under load moved its commit rate enough to be reported while
    // the test held everything else still. Without them nobody commits there once the test's
    // sessions are set up.
    "--health-interval-seconds",
    "300",
    "--slow-statement-ms",
    "200",
    "--tenant-metrics-top",
    "3",
    "--tenant-metrics-by",
    "connections",
];

async fn start(preload: bool) -> Env {
    // Autovacuum off: a worker's visit to a freshly provisioned database (its login and a
    // transaction per table it analyzes) commits there on the launcher's schedule, while the
    // quiet window below needs a database nobody writes to.
    let mut pg_settings = vec![("autovacuum".to_string(), "off".to_string())];
    if preload {
        pg_settings.push((
            "shared_preload_libraries".to_string(),
            "pg_stat_statements".to_string(),
        ));
    }
    let env = Env::start_configured(EnvOptions {
        extra_args: FLAGS.iter().map(|s| s.to_string()).collect(),
        pg_settings,
        ..Default::default()
    })
    .await;
    env.ensure_namespace(NS).await;
    env
}

async fn statistics(env: &Env, name: &str) -> Option<StatisticsStatus> {
    let t: Tenant = env.tenants(NS).get(name).await.ok()?;
    t.status?.statistics.map(|s| *s)
}

/// Waits until the tenant's reported statistics satisfy `ok`.
async fn wait_statistics(
    env: &Env,
    name: &str,
    what: &str,
    ok: impl Fn(&StatisticsStatus) -> bool,
) -> StatisticsStatus {
    let r = wait_for(T, what, || async {
        statistics(env, name).await.filter(|s| ok(s))
    })
    .await;
    match r {
        Ok(s) => s,
        Err(e) => panic!("{e}\nlast statistics: {:#?}", statistics(env, name).await),
    }
}

/// Executions of the operator's statistics statement so far (from pg_stat_statements itself).
async fn statistics_queries(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements WHERE query LIKE '%FROM pg_stat_activity WHERE usename IS NOT NULL%'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_are_per_tenant_cheap_and_quiet() {
    let env = start(true).await;
    env.create_tenant(
        NS,
        "busy",
        json!({"isolation": "database", "quotas": {"maxConnections": 10}}),
    )
    .await;
    for i in 0..6 {
        env.create_tenant(NS, &format!("idle-{i}"), json!({"isolation": "schema"}))
            .await;
    }
    let busy = env.wait_ready(NS, "busy", T).await;
    for i in 0..6 {
        env.wait_ready(NS, &format!("idle-{i}"), T).await;
    }
    let secret = busy.status.unwrap().secret_name.unwrap();
    // Each tenant's bundled migrations ran as its own role, so they are its statements; under
    // load their DDL can take longer than the slow threshold (CI once saw 2 slow ones for an
    // idle schema tenant). What follows is about the sessions below only.
    let pool = env.admin_pool().await;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&pool)
        .await
        .unwrap();

    // Three sessions as the tenant: one idle in a transaction, one that ran a slow statement
    // (twice, with a literal the normalised text must not carry), one idle.
    let mut in_tx = env.connect_with_secret(NS, &secret).await.unwrap();
    in_tx.execute("BEGIN").await.unwrap();
    in_tx.execute("SELECT 1").await.unwrap();
    let mut slow = env.connect_with_secret(NS, &secret).await.unwrap();
    for _ in 0..2 {
        slow.execute("SELECT pg_sleep(0.3141)").await.unwrap();
    }
    let idle = env.connect_with_secret(NS, &secret).await.unwrap();
    // The last commit in busy's database until the end of the quiet window.
    let last_commit = std::time::Instant::now();

    let s = wait_statistics(&env, "busy", "busy's statistics", |s| {
        s.connections.total == 3
            && s.statements.as_ref().is_some_and(|st| st.slow >= 1)
            && s.transactions.is_some()
    })
    .await;
    assert_eq!(s.connections.idle_in_transaction, 1, "{s:#?}");
    assert_eq!(s.connections.limit, Some(10));
    let st = s.statements.as_ref().unwrap();
    assert!(st.available && st.reason.is_none(), "{st:#?}");
    assert_eq!(st.slow_threshold_ms, 200);
    let top = &st.slowest[0];
    assert!(top.query.contains("pg_sleep"), "{top:#?}");
    assert!(
        !top.query.contains("0.3141"),
        "parameters must not be reported: {top:#?}"
    );
    assert!(top.calls >= 2 && top.mean_ms >= 300, "{top:#?}");
    let tx = s.transactions.as_ref().unwrap();
    assert!(matches!(tx.cache_hit_percent, Some(0..=100)), "{tx:#?}");

    // A schema tenant: its own (no) sessions, no per-database transactions, same statement
    // source, none of busy's slow statements. A state: idle-0 reports the reset (its migrations'
    // statements gone) when it next reconciles; were busy's statements counted as its own, this
    // would never hold.
    let other = wait_statistics(&env, "idle-0", "idle-0's statistics after the reset", |s| {
        s.statements.as_ref().is_some_and(|st| st.slow == 0)
    })
    .await;
    assert_eq!(other.connections.total, 0);
    assert!(other.transactions.is_none());
    assert!(
        other.statements.as_ref().is_some_and(|st| st.available),
        "{other:#?}"
    );

    // Bounded fleet metrics and the opt-in per-tenant series (top 3 by connections: busy first).
    for (series, want) in [
        (
            "tenantdb_tenants{server=\"default\",isolation=\"schema\",phase=\"Ready\"}",
            6.0,
        ),
        (
            "tenantdb_tenants{server=\"default\",isolation=\"database\",phase=\"Ready\"}",
            1.0,
        ),
        (
            "tenantdb_server_connections{server=\"default\",state=\"idle_in_transaction\"}",
            1.0,
        ),
        (
            "tenantdb_tenant_connections{namespace=\"stats\",tenant=\"busy\"}",
            3.0,
        ),
        (
            "tenantdb_tenant_connection_limit{namespace=\"stats\",tenant=\"busy\"}",
            10.0,
        ),
        (
            "tenantdb_server_up{server=\"default\",engine=\"postgres\"}",
            1.0,
        ),
        ("tenantdb_statements_available{server=\"default\"}", 1.0),
        ("tenantdb_leader", 1.0),
    ] {
        assert_eq!(env.metric(series).await, want, "{series}");
    }
    assert!(
        env.metric("tenantdb_slow_statements{server=\"default\"}")
            .await
            >= 1.0
    );
    let (_, body) = e2e::http_get(&env.http_addr().await, "/metrics").await;
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("tenantdb_tenant_connections{"))
            .count(),
        3,
        "per-tenant series are capped at --tenant-metrics-top"
    );

    // Cheap: one statistics statement per interval for the whole server, not one per tenant.
    // Seven tenants resync every 2 s with a usage interval of 1 s: over a 6 s window, per-tenant
    // queries would be ~21; one per interval is at most ~7.
    let before = statistics_queries(&pool).await;
    let window = Duration::from_secs(6);
    tokio::time::sleep(window).await; // a measurement window, not a wait for a state
    let ran = statistics_queries(&pool).await - before;
    assert!(
        (1..=8).contains(&ran),
        "{ran} statistics statements in {window:?} for 7 tenants"
    );

    // Quiet: with nothing changing (the same three sessions), no status writes. The commit rate
    // is reported per window of at least MIN_RATE_WINDOW, and re-reported only when it doubles
    // or halves by at least 30/min. Two windows after the last commit the windows holding the
    // test's sessions are closed; then the reported rate must come down to that of a database
    // nobody writes to (a state: under load the status write that says so can come late — CI
    // once read the previous window's 35/min at this point), after which an idle database's
    // windows (0/min) are no news.
    let windows = MIN_RATE_WINDOW * 2 + Duration::from_secs(4);
    tokio::time::sleep_until((last_commit + windows).into()).await;
    wait_statistics(
        &env,
        "busy",
        "busy's reported commit rate down to idle",
        |s| {
            s.transactions
                .as_ref()
                .is_some_and(|t| t.commits_per_minute <= 30)
        },
    )
    .await;
    let commits = || async {
        let c: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname LIKE 'tenant_stats_busy%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        c
    };
    let c0 = commits().await;
    // Status writes in the window, counted two ways. The API server counts a request when it
    // arrives (before it is applied), so the write the wait above saw is counted before `w0`.
    // The operator's own counter (`tenantdb_status_writes_total`) is incremented only when the
    // response reaches it: it is read once it agrees with the API server's count of the
    // operator's Tenant status writes (no response in flight), at both ends of the window.
    let settled_counter = || async {
        wait_for(
            T,
            "the operator's status-write counter to agree with the API server's count",
            || async {
                let seen = env
                    .api
                    .stats()
                    .of_user(e2e::OPERATOR_USER)
                    .writes("tenants", Some("status"));
                let m = env
                    .metric("tenantdb_status_writes_total{controller=\"tenant\"}")
                    .await;
                (m == seen as f64).then_some(m)
            },
        )
        .await
        .unwrap()
    };
    let m0 = settled_counter().await;
    let w0 = env.api.stats();
    let snap = |env: &Env| {
        let api = env.tenants(NS);
        async move {
            api.list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|t| {
                    let n = t.metadata.name.clone().unwrap();
                    (n, serde_json::to_string_pretty(&t.status).unwrap())
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        }
    };
    let before = snap(&env).await;
    tokio::time::sleep(window).await; // a measurement window: several resyncs and intervals
    let window_stats = env.api.stats().since(&w0);
    let w1 = window_stats.writes("tenants", Some("status"));
    let m1 = settled_counter().await;
    let after = snap(&env).await;
    if w1 != 0 {
        for (k, v) in &after {
            if before.get(k) != Some(v) {
                // Only the lines that differ: a whole status is longer than CI logs keep.
                let (b, a) = (before[k].lines(), v.lines());
                for (x, y) in b.zip(a).filter(|(x, y)| x != y) {
                    eprintln!("CHANGED {k}: {x} -> {y}");
                }
            }
        }
    }
    assert_eq!(
        commits().await,
        c0,
        "a commit in busy's database during the quiet window: the window was not quiet"
    );
    assert_eq!(
        w1,
        0,
        "status writes while nothing changed: {}",
        window_stats.to_json()
    );
    assert_eq!(
        m1, m0,
        "the operator counted status writes in the quiet window"
    );

    // A meaningful change is reported: the transaction ends, the sessions close.
    in_tx.execute("COMMIT").await.unwrap();
    in_tx.close().await.unwrap();
    slow.close().await.unwrap();
    idle.close().await.unwrap();
    wait_statistics(&env, "busy", "busy's sessions gone", |s| {
        s.connections.total == 0 && s.connections.idle_in_transaction == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pg_stat_statements_status_says_why() {
    let env = start(false).await;
    env.create_tenant(NS, "plain", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(NS, "plain", T).await;
    let s = wait_statistics(&env, "plain", "statement statistics reported", |s| {
        s.statements.is_some()
    })
    .await;
    let st = s.statements.unwrap();
    assert!(!st.available);
    assert!(
        st.reason
            .as_deref()
            .is_some_and(|r| r.contains("shared_preload_libraries")),
        "{st:#?}"
    );
    assert_eq!(
        env.metric("tenantdb_statements_available{server=\"default\"}")
            .await,
        0.0
    );
    // Not opted in: no per-tenant series at all beyond the top 3 (here: one tenant).
    assert_eq!(
        env.metric("tenantdb_tenant_connections{namespace=\"stats\",tenant=\"plain\"}")
            .await,
        0.0
    );
}
