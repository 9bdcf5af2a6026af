//! End-to-end: what README.md promises about the running operator, through the real binary
//! against the API server emulator and a throwaway PostgreSQL (issue #14): the health check and
//! its `Degraded` condition (failure and recovery), the health, storage and error metrics,
//! `/readyz` on a standby, graceful shutdown on SIGTERM (in-flight work finishes, then the Lease is
//! released so a standby takes over at once) and the `Retain` deletion policy for `schema` tenants.
//!
//! No fixed sleeps for state: waits poll with deadlines; the fixed windows measure that something
//! does not happen and say so.

use tenantdb_testkit::e2e;
use tenantdb_testkit::ops;

use std::time::{Duration, Instant};

use e2e::{Env, tail, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::json;
use sqlx::{Connection, Executor};
use tenantdb::crd::Tenant;

const T: Duration = Duration::from_secs(90);

use tenantdb_testkit::reliability::condition;

fn degraded(t: &Tenant) -> Option<bool> {
    condition(t, "Degraded").map(|(s, _, _)| s == "True")
}

/// Holds every connection the tenant's role may open (`maxConnections: 1`): the operator's login
/// as the tenant then fails with "too many connections for role" — a health failure the
/// reconcile cannot repair (nothing about the role is wrong).
async fn exhaust_connections(env: &Env, ns: &str, name: &str) -> sqlx::PgConnection {
    // The operator's own health check may hold the one slot for a moment.
    let c = wait_for(
        Duration::from_secs(10),
        "the tenant's one connection",
        || async {
            env.connect_with_secret(ns, &format!("{name}-db"))
                .await
                .ok()
        },
    )
    .await
    .unwrap();
    let second = env.connect_with_secret(ns, &format!("{name}-db")).await;
    assert!(
        second
            .as_ref()
            .is_err_and(|e| e.to_string().contains("too many connections")),
        "the connection limit of 1 must refuse a second session: {:?}",
        second.map(|_| ())
    );
    c
}

/// A Tenant whose health check fails (its login is refused) gets `Degraded=True` with reason
/// `HealthCheckFailed`, `health.healthy = false` with the cause, and a Warning Event, while it
/// stays Ready (its objects are fine); once the login works again `Degraded` clears at the next
/// health recheck. The health metrics count both outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_failure_degrades_and_recovery_clears_it() {
    let env = Env::start_with(&["--resync-seconds", "2", "--health-interval-seconds", "1"]).await;
    let ns = "health";
    env.create_tenant(
        ns,
        "h",
        json!({"isolation": "schema", "quotas": {"maxConnections": 1}}),
    )
    .await;
    env.wait_ready(ns, "h", T).await;
    let api = env.tenants(ns);
    // Healthy first. (The operator's own session as the tenant — baseline migration, partition
    // maintenance — counts against the limit of 1 while it ends, so the very first check may
    // fail; the recheck a second later passes.)
    wait_for(
        Duration::from_secs(20),
        "healthy, Degraded=False",
        || async {
            let t = api.get("h").await.ok()?;
            (degraded(&t) == Some(false) && t.status?.health?.healthy).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    let addr = ops::http_addr(&env.operator_log()).unwrap();

    let held = exhaust_connections(&env, ns, "h").await;
    let broken = Instant::now();
    let t = wait_for(Duration::from_secs(20), "Degraded=True/HealthCheckFailed", || async {
        let t = api.get("h").await.ok()?;
        matches!(condition(&t, "Degraded"), Some((s, r, _)) if s == "True" && r == "HealthCheckFailed")
            .then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    eprintln!(
        "Degraded {:.1}s after the login broke",
        broken.elapsed().as_secs_f64()
    );
    let (_, _, msg) = condition(&t, "Degraded").unwrap();
    assert!(msg.contains("too many connections"), "{msg}");
    let health = t.status.as_ref().unwrap().health.clone().unwrap();
    assert!(!health.healthy, "{health:?}");
    assert!(
        health.message.contains("too many connections"),
        "{health:?}"
    );
    assert!(
        matches!(condition(&t, "Ready"), Some((s, _, _)) if s == "True"),
        "the tenant's objects are fine: still Ready"
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    wait_for(T, "HealthCheckFailed Warning Event", || async {
        let l = events.list(&ListParams::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("HealthCheckFailed")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("h")
            })
            .then_some(())
    })
    .await
    .unwrap();
    // While it stays broken it is checked again and again (every recheck: the health interval,
    // 1 s here), not only at its resync: two more failed checks within 10 s.
    let unhealthy_now = |body: &str| {
        ops::metric(body, "tenantdb_health_checks_total{result=\"unhealthy\"}").unwrap_or(0.0)
    };
    let at_degraded = unhealthy_now(&ops::metrics(&addr).await);
    wait_for(Duration::from_secs(10), "two more failed health checks", || {
        let addr = addr.clone();
        async move { (unhealthy_now(&ops::metrics(&addr).await) >= at_degraded + 2.0).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 20)));
    let body = ops::metrics(&addr).await;
    let healthy = ops::metric(&body, "tenantdb_health_checks_total{result=\"healthy\"}");
    let unhealthy = ops::metric(&body, "tenantdb_health_checks_total{result=\"unhealthy\"}");
    assert!(
        healthy.unwrap_or(0.0) >= 1.0 && unhealthy.unwrap_or(0.0) >= 1.0,
        "health check counters: healthy {healthy:?}, unhealthy {unhealthy:?}"
    );
    // One latency observation per health check. The counter and the histogram are two updates,
    // so a scrape may fall between them while checks go on (every second): wait for a scrape
    // where they agree rather than compare this one.
    let agree = |body: &str| {
        let checks = ops::metric(body, "tenantdb_health_check_duration_seconds_count");
        let results = ops::metric_sum(body, "tenantdb_health_checks_total");
        (checks == Some(results), checks, results)
    };
    if let Err(e) = wait_for(
        Duration::from_secs(10),
        "one latency observation per health check",
        || {
            let addr = addr.clone();
            async move { agree(&ops::metrics(&addr).await).0.then_some(()) }
        },
    )
    .await
    {
        panic!(
            "{e}: (agree, latency count, healthy + unhealthy) {:?}",
            agree(&ops::metrics(&addr).await)
        );
    }

    // Recovery: the login works again; Degraded clears at the next recheck (the health interval,
    // 1 s here) — well within 10 s.
    drop(held);
    let fixed = Instant::now();
    let t = wait_for(Duration::from_secs(10), "Degraded cleared", || async {
        let t = api.get("h").await.ok()?;
        matches!(condition(&t, "Degraded"), Some((s, r, _)) if s == "False" && r == "AsExpected")
            .then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    eprintln!(
        "Degraded cleared {:.1}s after the login worked again",
        fixed.elapsed().as_secs_f64()
    );
    assert!(t.status.unwrap().health.unwrap().healthy);
    let body = ops::metrics(&addr).await;
    assert!(
        ops::metric(&body, "tenantdb_health_checks_total{result=\"healthy\"}").unwrap()
            > healthy.unwrap(),
        "the recovering check is counted healthy"
    );
}

/// `--health-interval-seconds` is the health check's cadence even when a Tenant is settled (its
/// resync far away): a login that breaks is reported within the interval (plus a margin), not at
/// the next resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_checked_on_its_interval_while_the_tenant_is_settled() {
    let env = Env::start_with(&["--resync-seconds", "300", "--health-interval-seconds", "2"]).await;
    let ns = "interval";
    env.create_tenant(
        ns,
        "quiet",
        json!({"isolation": "schema", "quotas": {"maxConnections": 1}}),
    )
    .await;
    env.wait_ready(ns, "quiet", T).await;
    let _held = exhaust_connections(&env, ns, "quiet").await;
    let api = env.tenants(ns);
    // Interval 2 s, ±jitter, plus the reconcile and status write: 10 s.
    wait_for(Duration::from_secs(10), "Degraded=True within the health interval", || async {
        let t = api.get("quiet").await.ok()?;
        matches!(condition(&t, "Degraded"), Some((s, r, _)) if s == "True" && r == "HealthCheckFailed")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
}

/// `tenantdb_storage_bytes` is the sum of the tenants' measured storage; a deleted tenant's share
/// leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_metric_is_the_sum_of_the_tenants() {
    let env = Env::start_with(&["--resync-seconds", "1", "--usage-interval-seconds", "1"]).await;
    let ns = "storage";
    env.create_tenant(
        ns,
        "big",
        json!({"isolation": "database", "deletionPolicy": "Delete"}),
    )
    .await;
    env.create_tenant(
        ns,
        "small",
        json!({"isolation": "schema", "deletionPolicy": "Delete"}),
    )
    .await;
    for name in ["big", "small"] {
        env.wait_ready(ns, name, T).await;
    }
    let addr = ops::http_addr(&env.operator_log()).unwrap();
    let api = env.tenants(ns);
    let bytes_of = |name: &'static str| {
        let api = api.clone();
        async move {
            api.get(name)
                .await
                .ok()?
                .status?
                .usage
                .map(|u| u.storage_bytes as f64)
        }
    };
    // Status keeps a reported size unless it moved by more than 5 %: compare within 5 %.
    let close = |a: f64, b: f64| (a - b).abs() <= 0.05 * b.max(1.0);
    let sum = wait_for(T, "storage gauge = sum of the tenants' usage", || async {
        let (b, s) = (bytes_of("big").await?, bytes_of("small").await?);
        let g = ops::metric(&ops::metrics(&addr).await, "tenantdb_storage_bytes")?;
        (b > 0.0 && s > 0.0 && close(g, b + s)).then_some((g, b, s))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 20)));
    eprintln!(
        "tenantdb_storage_bytes {} = big {} + small {}",
        sum.0, sum.1, sum.2
    );
    env.delete_tenant(ns, "big").await;
    env.wait_gone(ns, "big", T).await;
    wait_for(T, "storage gauge = the remaining tenant", || async {
        let s = bytes_of("small").await?;
        let g = ops::metric(&ops::metrics(&addr).await, "tenantdb_storage_bytes")?;
        close(g, s).then_some(())
    })
    .await
    .unwrap();
}

/// The Lease's holder.
async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("tenantdb-leader")
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Two instances with leader election: a leader (the harness's operator) and a standby (instance
/// name `standby`). Returns the standby process, its log path and its HTTP address once the leader
/// holds the Lease.
async fn leader_and_standby(env: &Env) -> (tokio::process::Child, std::path::PathBuf, String) {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), e2e::OPERATOR_NAMESPACE);
    let leader = wait_for(T, "the first instance leads", || holder(&leases))
        .await
        .unwrap();
    assert!(leader.starts_with("tenantdb-"), "{leader}");
    let standby_log = env.dir.join("standby.log");
    let standby = env.spawn_operator(&standby_log, &["--instance", "standby"]);
    let addr = ops::wait_http_addr(&standby_log).await;
    (standby, standby_log, addr)
}

/// A standby serves `/healthz` and is ready (`/readyz` 200, so rolling updates proceed) without
/// reconciling. On SIGTERM the leader finishes the reconcile it is in (a migration blocked on a
/// lock the test holds) before it exits, exits cleanly, and releases the Lease: the standby takes
/// over at once instead of after the Lease expires. Events carry the publishing instance's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_then_releases_the_lease_to_a_ready_standby() {
    let mut env = Env::start_with(&[
        "--leader-election",
        "--lease-duration-seconds",
        "20",
        "--lease-retry-seconds",
        "1",
    ])
    .await;
    let ns = "shutdown";
    env.create_tenant(ns, "warm", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(ns, "warm", T).await;
    let (mut standby, standby_log, standby_addr) = leader_and_standby(&env).await;
    let leader_addr = ops::wait_http_addr(&env.log_path).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), e2e::OPERATOR_NAMESPACE);
    let leader = holder(&leases).await.unwrap();

    // The standby is live and ready, and does not reconcile.
    wait_for(T, "standby /readyz 200", || async {
        (ops::http_get(&standby_addr, "/readyz").await.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&standby_log).unwrap_or_default()
        )
    });
    assert_eq!(ops::http_get(&standby_addr, "/healthz").await.0, 200);
    assert_eq!(ops::http_get(&leader_addr, "/readyz").await.0, 200);
    let standby_text = std::fs::read_to_string(&standby_log).unwrap();
    assert!(standby_text.contains("standing by"), "{standby_text}");
    assert!(!standby_text.contains("reconcile started"));

    // In-flight work: the next tenant's baseline migration waits for an advisory lock we hold.
    let shared_db = tenantdb::naming::Ident::new("tenantdb_shared").unwrap();
    let names = tenantdb::naming::tenant_names(
        "tenant_",
        ns,
        "inflight",
        tenantdb::crd::Isolation::Schema,
        None,
        &shared_db,
    )
    .unwrap();
    let key = tenantdb::identity::lock_key(&names);
    let mut blocker = sqlx::PgConnection::connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut blocker)
        .await
        .unwrap();
    env.create_tenant(ns, "inflight", json!({"isolation": "schema"}))
        .await;
    let pool = env.admin_pool().await;
    wait_for(T, "the migration waiting for the lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));

    let mark = env.operator_log().len();
    let pid = env.operator.as_ref().unwrap().id().unwrap();
    ops::sigterm(pid);
    // A measurement window (2 s): the leader waits for its in-flight reconcile; it neither exits
    // nor gives up the Lease meanwhile.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        assert!(
            env.operator.as_mut().unwrap().try_wait().unwrap().is_none(),
            "the leader exited with a reconcile in flight\n{}",
            tail(&env.operator_log(), 20)
        );
        assert_eq!(holder(&leases).await.as_deref(), Some(leader.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut blocker)
        .await
        .unwrap();
    let status = tokio::time::timeout(
        Duration::from_secs(40),
        env.operator.as_mut().unwrap().wait(),
    )
    .await
    .expect("the leader exits after its in-flight work")
    .unwrap();
    let exited = Instant::now();
    assert!(status.success(), "exit status {status:?}");
    let log = env.operator_log()[mark..].to_string();
    let finished = ops::lines_with(&log, "migrations applied");
    assert!(
        !finished.is_empty(),
        "the in-flight migration was finished by the leader after SIGTERM:\n{log}"
    );
    assert!(log.contains("lease released"), "{log}");
    assert!(!log.contains("did not stop within"), "{log}");
    // No session of the old leader is left behind in PostgreSQL, nothing open in a transaction.
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 0, "sessions idle in a transaction after the shutdown");

    // The standby takes over at once (the Lease was released; it would expire only after 20 s).
    let took = match wait_for(
        Duration::from_secs(8),
        "the standby holds the Lease",
        || async {
            holder(&leases)
                .await
                .filter(|h| h.starts_with("standby-"))
                .map(|_| exited.elapsed())
        },
    )
    .await
    {
        Ok(t) => t,
        Err(e) => panic!("{e}: holder {:?}", holder(&leases).await),
    };
    eprintln!(
        "standby took over {:.1}s after the leader exited",
        took.as_secs_f64()
    );
    let t = env.wait_ready(ns, "inflight", T).await;
    assert!(t.status.unwrap().schema_version.is_some());
    env.create_tenant(ns, "after", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(ns, "after", T).await;
    // Events name the instance that published them (`--instance`, `POD_NAME` in a cluster).
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    let instances = |name: &'static str| {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .filter(|e| e.reason.as_deref() == Some("Provisioned"))
                .filter_map(|e| e.reporting_instance)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        instances("after").await,
        ["standby"],
        "Provisioned by the new leader"
    );
    assert_eq!(
        instances("warm").await,
        ["tenantdb"],
        "Provisioned by the first leader"
    );
    let _ = standby.kill().await;
    pool.close().await;
}

/// While a leader drains its in-flight work on SIGTERM, it keeps the Lease (renewing it): a
/// standby must not become a second leader before the first has stopped, even when the drain takes
/// longer than the Lease duration.
/// (It failed before the leader kept renewing while draining: the standby took over 5 s after
/// SIGTERM with a 4 s Lease.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_held_while_shutdown_drains_in_flight_work() {
    // The shortest Lease the operator accepts with a 1 s retry (margin 3 s + 2 × retry).
    let mut env = Env::start_with(&[
        "--leader-election",
        "--lease-duration-seconds",
        "5",
        "--lease-retry-seconds",
        "1",
    ])
    .await;
    let ns = "drain";
    env.create_tenant(ns, "warm", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(ns, "warm", T).await;
    let (mut standby, _, _) = leader_and_standby(&env).await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), e2e::OPERATOR_NAMESPACE);
    let shared_db = tenantdb::naming::Ident::new("tenantdb_shared").unwrap();
    let names = tenantdb::naming::tenant_names(
        "tenant_",
        ns,
        "slow",
        tenantdb::crd::Isolation::Schema,
        None,
        &shared_db,
    )
    .unwrap();
    let key = tenantdb::identity::lock_key(&names);
    let mut blocker = sqlx::PgConnection::connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut blocker)
        .await
        .unwrap();
    env.create_tenant(ns, "slow", json!({"isolation": "schema"}))
        .await;
    let pool = env.admin_pool().await;
    wait_for(T, "the migration waiting for the lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await
    .unwrap();
    ops::sigterm(env.operator.as_ref().unwrap().id().unwrap());
    // A measurement window (8 s, longer than the Lease duration) while the leader drains.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(8) {
        let h = holder(&leases).await;
        assert!(
            !h.as_deref().is_some_and(|h| h.starts_with("standby-")),
            "the standby became leader {:.1}s after SIGTERM while the old leader was still draining",
            window.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocker.close().await.unwrap();
    let _ = env.operator.as_mut().unwrap().wait().await;
    let _ = standby.kill().await;
    pool.close().await;
}

/// `deletionPolicy: Retain` for a `schema` tenant: deleting the Tenant keeps its schema (marked as
/// its own), its data and its role (a Retained Event says so) — while a `Delete` neighbour is
/// dropped — and a Tenant created again under the same name takes its schema back, data included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_a_schema_tenants_schema_data_and_role() {
    let env = Env::start().await;
    let ns = "retain";
    env.create_tenant(ns, "keep", json!({"isolation": "schema"}))
        .await;
    env.create_tenant(
        ns,
        "drop",
        json!({"isolation": "schema", "deletionPolicy": "Delete"}),
    )
    .await;
    let mut schemas = vec![];
    for name in ["keep", "drop"] {
        let t = env.wait_ready(ns, name, T).await;
        let st = t.status.unwrap();
        schemas.push((st.schema.unwrap(), st.role.unwrap()));
        let mut c = env
            .connect_with_secret(ns, &format!("{name}-db"))
            .await
            .unwrap();
        c.execute(sqlx::AssertSqlSafe(format!(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{name}', '{name}', 'kept row')"
        )))
        .await
        .unwrap();
    }
    let (keep_schema, keep_role) = schemas[0].clone();
    let (drop_schema, drop_role) = schemas[1].clone();
    env.delete_tenant(ns, "keep").await;
    env.delete_tenant(ns, "drop").await;
    env.wait_gone(ns, "keep", T).await;
    env.wait_gone(ns, "drop", T).await;

    let shared = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap();
    let schema_marker = |schema: String| {
        let shared = shared.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
            )
            .bind(schema)
            .fetch_optional(&shared)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        schema_marker(keep_schema.clone()).await,
        Some(Some(format!("tenantdb.io/owner={ns}/keep"))),
        "the retained schema is still there, marked as the Tenant's"
    );
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{keep_schema}\".saas_tenants WHERE id = 'keep'"
    )))
    .fetch_one(&shared)
    .await
    .unwrap();
    assert_eq!(rows, 1, "the retained data");
    let pool = env.admin_pool().await;
    let role_exists = |role: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            )
            .bind(role)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(role_exists(keep_role.clone()).await, "the retained role");
    assert_eq!(schema_marker(drop_schema).await, None, "Delete drops");
    assert!(!role_exists(drop_role).await, "Delete drops the role");
    let events: Api<Event> = Api::namespaced(env.client.clone(), ns);
    let retained = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("Retained")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("keep")
        });
    assert!(retained, "a Retained Event");

    // Created again: the Tenant takes its schema back (its Secret was garbage-collected, so a new
    // password is set) and sees its old row.
    env.create_tenant(ns, "keep", json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready(ns, "keep", T).await;
    assert_eq!(
        t.status.unwrap().schema.as_deref(),
        Some(keep_schema.as_str())
    );
    let mut c = env.connect_with_secret(ns, "keep-db").await.unwrap();
    let name: String =
        sqlx::query_scalar("SELECT tenant_name::text FROM saas_tenants WHERE id = 'keep'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!(name, "kept row");
    shared.close().await;
    pool.close().await;
}
