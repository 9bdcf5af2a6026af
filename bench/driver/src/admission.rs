//! Scenario 5, new Tenants under resync saturation: Ready Tenants resyncing (with a health check
//! and a storage measurement) every 2 s, far more than the machine can do, then new Tenants
//! created; the default bounded resync admission against `--max-concurrent-resyncs 0`.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use tenantdb_testkit::localpg::LocalPgOptions;

use crate::cli::Cfg;
use crate::common::{CONCURRENCY, NS, log, percentile, round, tenant_name};
use crate::env::{Env, cpu_seconds, machine_cpu, metric_sum};
use crate::report::f;

/// Admission under resync saturation: `B` Ready tenants resync every 2 s (health and usage
/// every 2 s too), far more than the machine can do; then `K` new Tenants are created. Measured
/// per variant: time until all `K` are Ready, per-tenant time-to-Ready, and the background's
/// resync throughput. Variants: the default bounded resync admission, and
/// `--max-concurrent-resyncs 0` (resyncs may take every reconcile slot, the behaviour before).
pub async fn admission(cfg: &Cfg) -> Result<Value> {
    let (b, k) = (cfg.admission_background, cfg.admission_new);
    let interval = "2".to_string();
    let mut rows = Vec::new();
    for (variant, extra) in [
        ("bounded (default: concurrency / 2)", None),
        ("unbounded (--max-concurrent-resyncs 0)", Some("0")),
    ] {
        log(format!(
            "admission: {b} Ready tenants resyncing every {interval} s, then {k} new; {variant}"
        ));
        let mut env = Env::start(cfg, "admission", LocalPgOptions::default()).await?;
        env.ensure_namespace(NS).await?;
        let spec = json!({"isolation": "schema", "deletionPolicy": "Retain", "autoMigrate": false});
        // 1. The background tenants, provisioned with default intervals.
        env.spawn_operator(
            &cfg.operator,
            &["--concurrency".into(), CONCURRENCY.to_string()],
        )?;
        env.wait_operator_ready(Duration::from_secs(60)).await?;
        let names: Vec<String> = (1..=b).map(tenant_name).collect();
        env.create_tenants(NS, &names, &spec, 16).await?;
        env.tracker
            .wait(
                Duration::from_secs(900),
                "background tenants Ready",
                |r, _| r >= b,
            )
            .await?;
        env.stop_operator().await;
        // 2. Aggressive resyncs: every tenant every 2 s with a health check (tenant login) and a
        //    storage measurement each time.
        let mut args: Vec<String> = vec![
            "--concurrency".into(),
            CONCURRENCY.to_string(),
            "--resync-seconds".into(),
            interval.clone(),
            "--health-interval-seconds".into(),
            interval.clone(),
            "--usage-interval-seconds".into(),
            interval.clone(),
        ];
        if let Some(x) = extra {
            args.push("--max-concurrent-resyncs".into());
            args.push(x.into());
        }
        env.spawn_operator(&cfg.operator, &args)?;
        let pid = env.operator_pid.unwrap();
        env.wait_operator_ready(Duration::from_secs(60)).await?;
        // Let the startup pass and a few resync rounds saturate the machine.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let metrics0 = env.metrics().await?;
        let (mbusy0, mtotal0) = machine_cpu();
        let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
        // 3. The new tenants.
        let new: Vec<String> = (b + 1..=b + k).map(tenant_name).collect();
        let t0 = Instant::now();
        env.create_tenants(NS, &new, &spec, 16).await?;
        let timeout = Duration::from_secs(if cfg.quick { 120 } else { 300 });
        let done = env
            .tracker
            .wait(timeout, "new tenants Ready", |r, _| r >= b + k)
            .await;
        let elapsed = t0.elapsed().as_secs_f64();
        let (mbusy1, mtotal1) = machine_cpu();
        let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
        let metrics1 = env.metrics().await?;
        let mut ttr: Vec<f64> = new
            .iter()
            .filter_map(|n| env.tracker.get(&format!("{NS}/{n}"))?.ready_at)
            .map(|at| at.duration_since(t0).as_secs_f64())
            .collect();
        ttr.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let ready_new = ttr.len();
        let delta =
            |name: &str| metric_sum(&metrics1, name, &[]) - metric_sum(&metrics0, name, &[]);
        let reconciles = metric_sum(
            &metrics1,
            "tenantdb_reconciles_total",
            &["controller=\"tenant\""],
        ) - metric_sum(
            &metrics0,
            "tenantdb_reconciles_total",
            &["controller=\"tenant\""],
        );
        let deferred = delta("tenantdb_resyncs_deferred_total");
        let health = delta("tenantdb_health_checks_total");
        let p = |q: f64| {
            if ttr.is_empty() {
                Value::Null
            } else {
                json!(round(percentile(&ttr, q), 2))
            }
        };
        log(format!(
            "  {ready_new}/{k} new Ready in {elapsed:.1} s (p50 {}, p99 {}); background: {:.0} health checks/s, {deferred} resyncs deferred",
            f(&p(50.0)),
            f(&p(99.0)),
            health / elapsed
        ));
        rows.push(json!({
            "variant": variant,
            "max_concurrent_resyncs": extra.unwrap_or("default"),
            "all_new_ready": done.is_ok(),
            "new_ready": ready_new,
            "all_new_ready_s": if done.is_ok() { json!(round(elapsed, 2)) } else { Value::Null },
            "window_s": round(elapsed, 2),
            "new_p50_s": p(50.0),
            "new_p90_s": p(90.0),
            "new_p99_s": p(99.0),
            "reconciles_per_s": round(reconciles / elapsed, 1),
            "resyncs_deferred": deferred,
            "health_checks_per_s": round(health / elapsed, 1),
            "operator_cpu_s": round(cpu1 - cpu0, 2),
            "machine_cpu_busy_share": round((mbusy1 - mbusy0) / (mtotal1 - mtotal0), 3),
        }));
        env.stop_operator().await;
    }
    let ratio = match (
        rows[1]["all_new_ready_s"].as_f64(),
        rows[0]["all_new_ready_s"].as_f64(),
    ) {
        (Some(u), Some(bd)) if bd > 0.0 => json!(round(u / bd, 2)),
        _ => Value::Null,
    };
    Ok(json!({
        "background_tenants": b,
        "new_tenants": k,
        "interval_s": 2,
        "concurrency": CONCURRENCY,
        "unbounded_over_bounded_all_ready": ratio,
        "rows": rows,
    }))
}
