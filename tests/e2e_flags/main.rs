//! End-to-end: the `tenantdb run` flags README.md promises, through the real binary against the
//! API server emulator and a throwaway PostgreSQL (issue #14): the `--default-*` quota defaults
//! (and `idleInTransactionTimeout` enforced by PostgreSQL), `--tenant-host`/`--tenant-port`,
//! `--migrations-dir`, `--status-report-interval-seconds`, `--max-concurrent-resyncs` and the
//! operator's own partition maintenance (`--partition-months-ahead`,
//! `--partition-retention-months`).
//!
//! No fixed sleeps for state: waits poll with deadlines; the fixed windows measure that something
//! does not happen (or how often it happens) and say so.

use tenantdb_testkit::e2e;
use tenantdb_testkit::ops;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::{Env, tail, wait_for};
use serde_json::json;
use sqlx::{Connection, Executor};

const T: Duration = Duration::from_secs(90);

async fn scalar_text(c: &mut sqlx::PgConnection, sql: &'static str) -> String {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

/// The tenant's role, database and schema from its status.
async fn names(env: &Env, ns: &str, name: &str) -> (String, String, String) {
    let st = env.tenants(ns).get(name).await.unwrap().status.unwrap();
    (st.role.unwrap(), st.database.unwrap(), st.schema.unwrap())
}

/// `--default-max-connections`, `--default-statement-timeout`,
/// `--default-idle-in-transaction-timeout` and `--default-storage` apply to Tenants that leave the
/// quota unset (role and database CONNECTION LIMIT, role settings, the storage limit in status);
/// a Tenant's own quotas win. `idleInTransactionTimeout` is enforced by PostgreSQL: a session
/// idle in a transaction is ended after the timeout, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_quotas_apply_to_tenants_without_their_own() {
    let env = Env::start_with(&[
        "--default-max-connections",
        "7",
        "--default-statement-timeout",
        "3s",
        "--default-idle-in-transaction-timeout",
        "1s",
        "--default-storage",
        "500Mi",
    ])
    .await;
    let ns = "defaults";
    env.create_tenant(ns, "plain-d", json!({"isolation": "database"}))
        .await;
    env.create_tenant(ns, "plain-s", json!({"isolation": "schema"}))
        .await;
    env.create_tenant(
        ns,
        "own",
        json!({"isolation": "schema", "quotas": {"maxConnections": 3, "statementTimeout": "9s",
               "idleInTransactionTimeout": "3s", "storage": "1Gi"}}),
    )
    .await;
    for name in ["plain-d", "plain-s", "own"] {
        env.wait_ready(ns, name, T).await;
    }
    let pool = env.admin_pool().await;
    let conn_limit = |role: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1")
                .bind(role)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (role_d, db_d, _) = names(&env, ns, "plain-d").await;
    let (role_s, _, _) = names(&env, ns, "plain-s").await;
    let (role_own, _, _) = names(&env, ns, "own").await;
    assert_eq!(conn_limit(role_d.clone()).await, 7, "default on the role");
    assert_eq!(conn_limit(role_s.clone()).await, 7);
    assert_eq!(conn_limit(role_own.clone()).await, 3, "own quota wins");
    let datconnlimit: i32 =
        sqlx::query_scalar("SELECT datconnlimit FROM pg_database WHERE datname = $1")
            .bind(&db_d)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(datconnlimit, 7, "default on the dedicated database");

    // The role settings, as the tenant's own sessions see them.
    for (name, st, idle) in [
        ("plain-d", "3s", "1s"),
        ("plain-s", "3s", "1s"),
        ("own", "9s", "3s"),
    ] {
        let mut c = env
            .connect_with_secret(ns, &format!("{name}-db"))
            .await
            .unwrap();
        assert_eq!(
            scalar_text(&mut c, "SHOW statement_timeout").await,
            st,
            "{name}"
        );
        assert_eq!(
            scalar_text(&mut c, "SHOW idle_in_transaction_session_timeout").await,
            idle,
            "{name}"
        );
    }
    // The storage limit reported in status.
    for (name, limit) in [
        ("plain-d", 500 * 1024 * 1024),
        ("plain-s", 500 * 1024 * 1024),
        ("own", 1024 * 1024 * 1024),
    ] {
        let t = env.tenants(ns).get(name).await.unwrap();
        let usage = t.status.unwrap().usage.unwrap();
        assert_eq!(usage.storage_limit_bytes, Some(limit), "{name}: {usage:?}");
    }

    // idleInTransactionTimeout in PostgreSQL: each tenant opens a transaction and goes idle; the
    // server ends the session after the tenant's timeout (1 s default, 3 s own), not before.
    let mut sessions = vec![];
    for (name, timeout) in [("plain-s", 1.0), ("own", 3.0)] {
        let mut c = env
            .connect_with_secret(ns, &format!("{name}-db"))
            .await
            .unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.execute("BEGIN").await.unwrap();
        c.execute("SELECT 1").await.unwrap();
        sessions.push((name, timeout, pid, c, Instant::now()));
    }
    for (name, timeout, pid, mut c, idle_since) in sessions {
        let ended = wait_for(
            Duration::from_secs(20),
            &format!("{name}: idle-in-transaction session ended"),
            || {
                let pool = pool.clone();
                async move {
                    let alive: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                    )
                    .bind(pid)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                    (!alive).then(|| idle_since.elapsed())
                }
            },
        )
        .await
        .unwrap();
        assert!(
            ended.as_secs_f64() >= timeout * 0.9,
            "{name}: the session ended after {ended:?}, before its {timeout}s idle-in-transaction timeout"
        );
        let e = c.execute("SELECT 1").await.unwrap_err();
        let text = e.to_string();
        let code = e
            .as_database_error()
            .and_then(|d| d.code().map(|c| c.to_string()));
        assert!(
            code.as_deref() == Some("25P03") || text.contains("idle-in-transaction"),
            "{name}: {text} ({code:?})"
        );
        eprintln!("{name}: idle in transaction, ended by PostgreSQL after {ended:?}");
    }
    pool.close().await;
}

/// Restarts the harness's operator with extra environment variables (the harness passes flags
/// only), logging to the same file.
async fn restart_with_env(env: &mut Env, vars: &[(&str, &str)]) {
    env.kill_operator().await;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&env.log_path)
        .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantdb"))
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--backoff-base-ms",
            "200",
        ])
        .args(["--backoff-max-seconds", "5"])
        .args(&env.extra_args)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("TENANTDB_DATABASE_URL", env.pg.admin_url())
        .env("RUST_LOG", "info,tenantdb=debug")
        .env("TENANTDB_LOG_FORMAT", "json")
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    env.operator = Some(child);
}

/// `--tenant-host` and `--tenant-port` are what the Secrets carry (`host`, `port`, `uri`), not the
/// admin URL's endpoint. The host comes from the environment (`TENANTDB_TENANT_HOST`), the port
/// from the flag: both ways of configuring work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_host_and_port_are_written_to_secrets() {
    let mut env = Env::start_with(&["--tenant-port", "6543"]).await;
    restart_with_env(
        &mut env,
        &[("TENANTDB_TENANT_HOST", "pg.tenants.example.internal")],
    )
    .await;
    env.create_tenant("endpoint", "acme", json!({"isolation": "schema"}))
        .await;
    env.create_tenant("endpoint", "solo", json!({"isolation": "database"}))
        .await;
    for name in ["acme", "solo"] {
        env.wait_ready("endpoint", name, T).await;
        let secret = format!("{name}-db");
        let get = |k: &'static str| env.secret_value("endpoint", &secret, k);
        assert_eq!(
            get("host").await.as_deref(),
            Some("pg.tenants.example.internal")
        );
        assert_eq!(get("port").await.as_deref(), Some("6543"));
        let uri = get("uri").await.unwrap();
        let db = get("database").await.unwrap();
        assert!(
            uri.contains(&format!("@pg.tenants.example.internal:6543/{db}")),
            "{name}: uri names another endpoint"
        );
        assert!(
            !uri.contains(&env.pg.port().to_string()),
            "{name}: the admin URL's port leaked into the uri"
        );
        // The credentials themselves are real: they log in at the actual server.
        let user = get("username").await.unwrap();
        let password = get("password").await.unwrap();
        let opts = sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(env.pg.port())
            .database(&db)
            .username(&user)
            .password(&password);
        sqlx::PgConnection::connect_with(&opts)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// `--migrations-dir` replaces the compiled-in baseline: tenants get exactly the directory's
/// migrations (files that are not `.sql` are ignored), `status.schemaVersion` is its latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_dir_replaces_the_bundled_baseline() {
    let dir = std::env::temp_dir().join(format!("tenantdb-e2e-migrations-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, sql) in [
        (
            "20300101000001_notes.up.sql",
            "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);",
        ),
        ("20300101000001_notes.down.sql", "DROP TABLE notes;"),
        (
            "20300101000002_tags.up.sql",
            "CREATE TABLE tags (name text PRIMARY KEY);",
        ),
        ("20300101000002_tags.down.sql", "DROP TABLE tags;"),
        ("README.md", "not a migration"),
    ] {
        std::fs::write(dir.join(file), sql).unwrap();
    }
    let env = Env::start_with(&["--migrations-dir", dir.to_str().unwrap()]).await;
    for (name, iso) in [("schema-t", "schema"), ("db-t", "database")] {
        env.create_tenant("custom", name, json!({"isolation": iso}))
            .await;
        let t = env.wait_ready("custom", name, T).await;
        assert_eq!(
            t.status.unwrap().schema_version,
            Some(20300101000002),
            "{name}: schemaVersion is the directory's latest"
        );
        let mut c = env
            .connect_with_secret("custom", &format!("{name}-db"))
            .await
            .unwrap();
        let tables: BTreeSet<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let expected: BTreeSet<String> = ["notes", "tags", "tenantdb_schema_migrations"]
            .map(String::from)
            .into();
        assert_eq!(
            tables, expected,
            "{name}: exactly the directory's tables, none of the bundled baseline"
        );
        c.execute("INSERT INTO notes VALUES (1, 'hello')")
            .await
            .unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--status-report-interval-seconds`: unchanged health and usage results are re-written at most
/// this often. With checks every second and a 4 s report interval, `health.lastChecked` and
/// `usage.measuredAt` move, but never by less than 4 s, and the status writes stay few.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_report_interval_limits_rewrites_of_unchanged_results() {
    let env = Env::start_with(&[
        "--resync-seconds",
        "1",
        "--health-interval-seconds",
        "1",
        "--usage-interval-seconds",
        "1",
        "--status-report-interval-seconds",
        "4",
    ])
    .await;
    env.create_tenant("report", "idle", json!({"isolation": "schema"}))
        .await;
    env.wait_ready("report", "idle", T).await;
    let api = env.tenants("report");
    // (reported at, reported value) of each distinct report.
    let mut checked: Vec<(String, String)> = vec![];
    let mut measured: Vec<(String, String)> = vec![];
    let mut statistics: Vec<Option<String>> = vec![];
    let before = env.api.stats();
    // A measurement window (18 s: three reports of each field even if one moves), sampled every
    // 100 ms: how often the results are re-reported.
    let window = Duration::from_secs(18);
    let start = Instant::now();
    while start.elapsed() < window {
        let st = api.get("idle").await.unwrap().status.unwrap();
        let h = st.health.unwrap();
        let u = st.usage.unwrap();
        let h = (
            h.last_checked.unwrap(),
            format!("{} {}", h.healthy, h.message),
        );
        let u = (
            u.measured_at.clone().unwrap(),
            format!("{} {:?} {}", u.storage_bytes, u.percent, u.read_only),
        );
        if checked.last() != Some(&h) {
            checked.push(h);
        }
        if measured.last() != Some(&u) {
            measured.push(u);
        }
        let stats_at = st.statistics.and_then(|s| s.measured_at);
        if stats_at.is_some() && statistics.last() != Some(&stats_at) {
            statistics.push(stats_at);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let writes = env
        .api
        .stats()
        .since(&before)
        .writes("tenants", Some("status"));
    for (what, values) in [
        ("health.lastChecked", &checked),
        ("usage.measuredAt", &measured),
    ] {
        // Gaps between re-reports of an unchanged result (a changed result is reported at once).
        let unchanged: Vec<f64> = values
            .windows(2)
            .filter(|w| w[0].1 == w[1].1)
            .map(|w| {
                let (a, b): (jiff::Timestamp, jiff::Timestamp) =
                    (w[0].0.parse().unwrap(), w[1].0.parse().unwrap());
                b.duration_since(a).as_secs_f64()
            })
            .collect();
        eprintln!("{what}: {values:?}; gaps between unchanged reports {unchanged:.2?}");
        assert!(
            unchanged.len() >= 2,
            "{what}: an unchanged result was not re-reported twice within {window:?} (checks every 1 s, report interval 4 s): {values:?}"
        );
        assert!(
            unchanged.iter().all(|g| *g >= 3.9),
            "{what}: an unchanged result re-reported more often than every 4 s: {unchanged:.2?}"
        );
    }
    // Statistics are there and refreshed, riding along with those re-reports (no writes of
    // their own).
    assert!(
        statistics.len() >= 2,
        "statistics not reported or never refreshed: {statistics:?}"
    );
    // Two fields, each re-reported at most every 4 s (they may land in one write or two).
    assert!(
        (2..=8).contains(&writes),
        "{writes} status writes in {window:?}"
    );
}

/// `--max-concurrent-resyncs`: with a limit of 1, routine resyncs that find the slot taken are
/// deferred (counted in `tenantdb_resyncs_deferred_total`) while a new Tenant is still provisioned
/// at once; with 0 (no separate limit) the same load defers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_resyncs_defers_routine_resyncs() {
    let flags = |limit: &str| -> Vec<String> {
        [
            "--resync-seconds",
            "1",
            "--concurrency",
            "4",
            "--pool-size",
            "1",
            "--max-concurrent-resyncs",
            limit,
        ]
        .map(String::from)
        .into()
    };
    let limit_1 = flags("1");
    let mut env = Env::start_with(&limit_1.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let ns = "resyncs";
    for i in 0..16 {
        env.create_tenant(ns, &format!("r{i:02}"), json!({"isolation": "schema"}))
            .await;
    }
    for i in 0..16 {
        env.wait_ready(ns, &format!("r{i:02}"), T).await;
    }
    let addr = ops::http_addr(&env.operator_log()).unwrap();
    let deferred = |body: &str| {
        ops::metric(
            body,
            "tenantdb_resyncs_deferred_total{controller=\"tenant\"}",
        )
        .unwrap_or(0.0)
    };
    let n = wait_for(Duration::from_secs(30), "a deferred resync", || {
        let addr = addr.clone();
        async move {
            let d = deferred(&ops::metrics(&addr).await);
            (d > 0.0).then_some(d)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    // A new Tenant does not wait for the resyncs.
    let created = Instant::now();
    env.create_tenant(ns, "newcomer", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(ns, "newcomer", Duration::from_secs(30))
        .await;
    eprintln!(
        "limit 1: {n} deferred resyncs; a new Tenant Ready in {:.1}s",
        created.elapsed().as_secs_f64()
    );

    // The same load without a separate limit: nothing is deferred (the controller never runs more
    // than --concurrency reconciles, so the resync slots are never all taken).
    env.kill_operator().await;
    env.extra_args = flags("0");
    env.start_operator();
    let start = env.operator_log().len();
    let addr = wait_for(T, "new http address", || {
        let log = env.operator_log()[start..].to_string();
        async move { ops::http_addr(&log) }
    })
    .await
    .unwrap();
    // The new process's first round (a full reconcile of each Tenant, partitions included) first;
    // then a measurement window: 8 s of resyncs (every Tenant up to eight times; at least two
    // rounds required, the machine may be busy).
    let reconciles_before = wait_for(T, "a first round of reconciles", || {
        let addr = addr.clone();
        async move {
            let (code, body) = ops::http_get(&addr, "/metrics").await;
            let n = ops::metric_sum(&body, "tenantdb_reconciles_total");
            (code == 200 && n >= 17.0).then_some(n)
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let body = ops::metrics(&addr).await;
    let reconciles = ops::metric_sum(&body, "tenantdb_reconciles_total") - reconciles_before;
    assert!(
        reconciles >= 34.0,
        "only {reconciles} reconciles of 17 Tenants in 8 s with a 1 s resync"
    );
    assert_eq!(
        deferred(&body),
        0.0,
        "--max-concurrent-resyncs 0 deferred resyncs"
    );
}

mod partitions;
mod runtime;
