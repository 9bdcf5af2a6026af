//! Scenario 2c, scale: Ready `schema` Tenants (no migrations: the baseline is off to keep the
//! set-up time reasonable; a Ready tenant's steady-state cost does not depend on its tables) grown
//! in steps, 1k → 5k → 10k in a full run. At each step the operator is restarted with a resync
//! period that grows with N (30 s per 1,000 Tenants: 300 s at 10,000, the shipped default), so
//! every step resyncs, health-checks and measures the same number of Tenants per second and the
//! figures show what N itself costs. Per step: the restart's first pass over the Tenants already
//! there, the provisioning of the new ones, then one resync period measured exactly as in the
//! steady-state scenario ([`measure_window`]). Then a least-squares line per figure (slope per
//! 1,000 Tenants, intercept, r²).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cli::Cfg;
use crate::common::{NS, log, round, tenant_name};
use crate::env::{Env, metric_sum};
use crate::floor;
use crate::steady::{measure_window, operator_args, pg_options};

/// Resync (and health, usage) seconds per 1,000 Tenants: the shipped default (300 s) at 10,000.
const SECONDS_PER_1000: usize = 30;
/// The shortest resync period of a step (quick runs).
const MIN_RESYNC: u64 = 5;

/// The figures a line is fitted to, with their labels in summary.md.
pub const FITTED: [(&str, &str); 7] = [
    ("api_status_writes", "API status writes in the window"),
    (
        "sql_statements_per_reconcile",
        "SQL statements per reconcile",
    ),
    ("api_requests_per_reconcile", "API requests per reconcile"),
    (
        "operator_cpu_ms_per_reconcile",
        "operator CPU per reconcile (ms)",
    ),
    ("operator_rss_mib", "operator RSS (MiB)"),
    (
        "restart_pass_s",
        "restart: first pass over existing Tenants (s)",
    ),
    (
        "machine_cpu_busy_share",
        "machine CPU busy in the window (share)",
    ),
];

pub fn resync_for(n: usize) -> u64 {
    ((n * SECONDS_PER_1000 / 1000) as u64).max(MIN_RESYNC)
}

pub async fn scale(cfg: &Cfg) -> Result<Value> {
    log(format!(
        "scale: Ready schema tenants in steps {:?}, resync {SECONDS_PER_1000} s per 1,000",
        cfg.scale_steps
    ));
    let mut env = Env::start(cfg, "scale", pg_options()).await?;
    floor::psql_exec(&env.pg, "postgres", "CREATE EXTENSION pg_stat_statements").await?;
    env.ensure_namespace(NS).await?;
    let spec = json!({"isolation": "schema", "deletionPolicy": "Retain", "autoMigrate": false});
    let mut have = 0usize;
    let mut points = Vec::new();
    for &target in &cfg.scale_steps {
        let r = resync_for(target);
        env.stop_operator().await;
        let started = Instant::now();
        env.spawn_operator(&cfg.operator, &operator_args(r))?;
        let pid = env.operator_pid.unwrap();
        env.wait_operator_ready(Duration::from_secs(120)).await?;
        // The restart's first pass: every Tenant already there reconciled once.
        let restart_pass_s = if have > 0 {
            wait_reconciled(&env, have, Duration::from_secs(900)).await?;
            Some(started.elapsed().as_secs_f64())
        } else {
            None
        };
        let names: Vec<String> = (have + 1..=target).map(tenant_name).collect();
        let t0 = Instant::now();
        env.create_tenants(NS, &names, &spec, 16).await?;
        if let Err(e) = env
            .tracker
            .wait(
                Duration::from_secs(1800),
                "all tenants Ready",
                |ready, _| ready >= target,
            )
            .await
        {
            bail!("{e}\n{}", env.operator_log_tail(30));
        }
        let provision_s = t0.elapsed().as_secs_f64();
        log(format!(
            "  {target} Ready ({} new in {provision_s:.1} s; restart pass {}); measuring {r} s",
            target - have,
            restart_pass_s.map_or("-".into(), |s| format!("{s:.1} s")),
        ));
        // Let the provisioning burst end (the last status writes, events) before the window.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut p = measure_window(&env, pid, target, r).await?;
        p["new_tenants"] = json!(target - have);
        p["provisioning_new_s"] = json!(round(provision_s, 1));
        p["provisioning_per_s"] = json!(round((target - have) as f64 / provision_s, 1));
        p["restart_pass_s"] = restart_pass_s.map_or(Value::Null, |s| json!(round(s, 1)));
        log(format!(
            "    status writes {}, SQL/reconcile {}, CPU/reconcile {} ms, RSS {} MiB, deferred {}",
            p["api_status_writes"],
            p["sql_statements_per_reconcile"],
            p["operator_cpu_ms_per_reconcile"],
            p["operator_rss_mib"],
            p["resyncs_deferred_in_window"],
        ));
        points.push(p);
        have = target;
    }
    env.stop_operator().await;
    let fits: Value = FITTED
        .iter()
        .map(|(k, _)| ((*k).to_string(), fit(&points, k)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Ok(json!({
        "method": format!(
            "schema Tenants, autoMigrate false (baseline off for set-up time); the operator restarted at each step with resync, health and usage intervals of {SECONDS_PER_1000} s per 1,000 Tenants (300 s, the shipped default, at 10,000); one resync period measured per step"
        ),
        "steps": cfg.scale_steps,
        "points": points,
        "fits": fits,
    }))
}

/// Waits until the operator's Tenant controller has reconciled at least `n` times.
async fn wait_reconciled(env: &Env, n: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let m = env.metrics().await?;
        let done = metric_sum(&m, "tenantdb_reconciles_total", &["controller=\"tenant\""]);
        if done >= n as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("restart: {done} of {n} Tenants reconciled after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Least-squares line `y = a + b·N` through the points' `(tenants, key)`: slope per 1,000
/// Tenants, intercept, r², and the points used (a step without the figure is left out).
pub fn fit(points: &[Value], key: &str) -> Value {
    let xy: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| Some((p["tenants"].as_f64()?, p[key].as_f64()?)))
        .filter(|(_, y)| y.is_finite())
        .collect();
    if xy.len() < 2 {
        return Value::Null;
    }
    let n = xy.len() as f64;
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = xy.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx == 0.0 {
        return Value::Null;
    }
    let b = sxy / sxx;
    let a = my - b * mx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    json!({
        "slope_per_1000": round(b * 1000.0, 4),
        "intercept": round(a, 3),
        "r2": round(r2, 4),
        "points": xy.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_line() {
        let pts: Vec<Value> = [(1000.0, 3.0), (5000.0, 5.0), (10000.0, 7.5)]
            .iter()
            .map(|(n, y)| json!({"tenants": n, "y": y}))
            .collect();
        let f = fit(&pts, "y");
        assert!((f["slope_per_1000"].as_f64().unwrap() - 0.5).abs() < 1e-9);
        assert!((f["intercept"].as_f64().unwrap() - 2.5).abs() < 1e-9);
        assert!((f["r2"].as_f64().unwrap() - 1.0).abs() < 1e-9);
        // A missing figure drops the point; fewer than two points fit nothing.
        let pts = vec![json!({"tenants": 1, "y": 2}), json!({"tenants": 2})];
        assert!(fit(&pts, "y").is_null());
    }

    #[test]
    fn resync_grows_with_n() {
        assert_eq!(resync_for(1000), 30);
        assert_eq!(resync_for(10000), 300);
        assert_eq!(resync_for(20), MIN_RESYNC);
    }
}
