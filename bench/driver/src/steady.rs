//! Scenario 2, steady state: `N` schema Tenants made Ready (no migrations), then one resync
//! period measured with every Tenant resyncing, health-checked and measured once per period:
//! reconciles, API server requests and writes, SQL statements (pg_stat_statements),
//! transactions, operator CPU and RSS. [`measure_window`] is the measurement itself; the scale
//! scenario (`scale.rs`) repeats it at 1k / 5k / 10k.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use tenantdb_testkit::localpg::LocalPgOptions;

use crate::cli::Cfg;
use crate::common::{CONCURRENCY, NS, log, round, stats_json, tenant_name};
use crate::env::{Env, cpu_seconds, machine_cpu, metric_sum, rss_mib};
use crate::floor;

/// PostgreSQL with `pg_stat_statements` (every statement, nested ones too).
pub fn pg_options() -> LocalPgOptions {
    LocalPgOptions {
        settings: vec![
            (
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            ),
            ("pg_stat_statements.max".into(), "10000".into()),
            ("pg_stat_statements.track".into(), "all".into()),
        ],
        ..Default::default()
    }
}

/// The operator's flags: resync, health and usage intervals all `r` seconds.
pub fn operator_args(r: u64) -> Vec<String> {
    let rs = r.to_string();
    vec![
        "--concurrency".into(),
        CONCURRENCY.to_string(),
        "--resync-seconds".into(),
        rs.clone(),
        "--health-interval-seconds".into(),
        rs.clone(),
        "--usage-interval-seconds".into(),
        rs,
    ]
}

pub async fn steady_state(cfg: &Cfg) -> Result<Value> {
    let n = cfg.steady_tenants;
    let r = cfg.resync_seconds;
    log(format!("steady state: {n} tenants, resync {r} s"));
    let mut env = Env::start(cfg, "steady", pg_options()).await?;
    floor::psql_exec(&env.pg, "postgres", "CREATE EXTENSION pg_stat_statements").await?;
    let names: Vec<String> = (1..=n).map(tenant_name).collect();
    let spec = json!({"isolation": "schema", "deletionPolicy": "Retain", "autoMigrate": false});
    env.ensure_namespace(NS).await?;
    let t0 = Instant::now();
    env.spawn_operator(&cfg.operator, &operator_args(r))?;
    let pid = env.operator_pid.unwrap();
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    // Created while the operator runs (in batches of 16 concurrent requests).
    env.create_tenants(NS, &names, &spec, 16).await?;
    let mut not_ready_note = Value::Null;
    if let Err(e) = env
        .tracker
        .wait(Duration::from_secs(600), "all tenants Ready", |r, _| r >= n)
        .await
    {
        log(format!("  WARNING: {e}; measuring anyway"));
        not_ready_note = json!(e.to_string());
    }
    let ready_count = env.tracker.counts().0;
    let provision_s = env
        .tracker
        .last_ready()
        .unwrap()
        .duration_since(t0)
        .as_secs_f64();
    log(format!(
        "  {n} tenants Ready in {provision_s:.1} s; measuring one resync period"
    ));
    // Let the provisioning burst end (the last status writes, events) before the window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut out = measure_window(&env, pid, n, r).await?;
    env.stop_operator().await;
    out["tenants_ready_at_window_start"] = json!(ready_count);
    out["not_all_ready"] = not_ready_note;
    out["provisioning_s"] = json!(round(provision_s, 2));
    Ok(out)
}

/// One resync period of `r` seconds measured on a running operator (`pid`) with `n` Tenants:
/// reconciles, health checks, DDL steps and errors from its `/metrics`, SQL statements from
/// `pg_stat_statements` (reset at the start; the driver's own queries excluded), transactions,
/// API server requests and writes, operator CPU and RSS. Per-reconcile figures are normalized
/// by the reconciles in the window (resyncs are jittered, so it is not exactly `n`).
pub async fn measure_window(env: &Env, pid: u32, n: usize, r: u64) -> Result<Value> {
    let metrics0 = env.metrics().await?;
    let xact0 = transactions(env).await?;
    floor::psql_exec(&env.pg, "postgres", "SELECT pg_stat_statements_reset()").await?;
    let stats0 = env.api.stats();
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let (mbusy0, mtotal0) = machine_cpu();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(r)).await;
    let window = w0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
    let (mbusy1, mtotal1) = machine_cpu();
    let stats = env.api.stats().since(&stats0);
    let metrics1 = env.metrics().await?;
    let statements: f64 = floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'",
    )
    .await?
    .parse()
    .unwrap_or(0.0);
    let top = floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT sum(calls) || ' | ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' GROUP BY query ORDER BY sum(calls) DESC LIMIT 8",
    )
    .await?;
    let xact1 = transactions(env).await?;
    let delta = |name: &str, labels: &[&str]| {
        metric_sum(&metrics1, name, labels) - metric_sum(&metrics0, name, labels)
    };
    let reconciles = delta("tenantdb_reconciles_total", &["controller=\"tenant\""]);
    let health = delta("tenantdb_health_checks_total", &[]);
    let unchanged = delta("tenantdb_reconciles_unchanged_total", &[]);
    let steps = delta("tenantdb_provisioning_steps_total", &[]);
    let deferred = delta("tenantdb_resyncs_deferred_total", &[]);
    let errors = delta("tenantdb_reconcile_errors_total", &[]);
    let cpu = cpu1 - cpu0;
    let (rss, hwm) = rss_mib(pid).unwrap_or((0.0, 0.0));
    // Normalize to one resync of every tenant (a pass = N reconciles).
    let passes = if reconciles > 0.0 {
        reconciles / n as f64
    } else {
        f64::NAN
    };
    Ok(json!({
        "tenants": n,
        "isolation": "schema",
        "auto_migrate": false,
        "resync_seconds": r,
        "health_and_usage_interval_seconds": r,
        "window_s": round(window, 2),
        "reconciles_in_window": reconciles,
        "reconciles_skipped_unchanged_in_window": unchanged,
        "health_checks_in_window": health,
        "ddl_steps_in_window": steps,
        "reconcile_errors_in_window": errors,
        "resyncs_deferred_in_window": deferred,
        "resync_passes_in_window": round(passes, 3),
        "sql_statements": statements,
        "sql_statements_per_reconcile": round(statements / reconciles.max(1.0), 2),
        "transactions": xact1 - xact0,
        "top_statements": top.lines().collect::<Vec<_>>(),
        "api": stats_json(&stats),
        "api_writes": stats.writes("*", None),
        "api_status_writes": stats.writes("tenants", Some("status")),
        "api_requests_per_reconcile": round(stats.total() as f64 / reconciles.max(1.0), 2),
        "operator_cpu_s": round(cpu, 3),
        "operator_cpu_s_per_pass": round(cpu / passes, 3),
        "operator_cpu_ms_per_reconcile": round(cpu * 1000.0 / reconciles.max(1.0), 3),
        "operator_cpu_share_of_one_core": round(cpu / window, 4),
        "machine_cpu_busy_share": round((mbusy1 - mbusy0) / (mtotal1 - mtotal0), 4),
        "operator_rss_mib": round(rss, 1),
        "operator_peak_rss_mib": round(hwm, 1),
    }))
}

async fn transactions(env: &Env) -> Result<f64> {
    Ok(floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database",
    )
    .await?
    .parse()
    .unwrap_or(0.0))
}
