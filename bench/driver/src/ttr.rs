//! Scenario 4, single-tenant time to Ready: Tenants created one at a time against an idle
//! operator (full baseline migrations), per isolation mode; create → Ready as seen by a watch,
//! after one uncounted warm-up Tenant. Percentiles are nearest-rank.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tenantdb::crd::Isolation;
use tenantdb_testkit::localpg::LocalPgOptions;

use crate::cli::Cfg;
use crate::common::{CONCURRENCY, NS, isolation_str, log, percentile, round, tenant_name};
use crate::env::{Env, metric_sum};

pub async fn time_to_ready(cfg: &Cfg) -> Result<Value> {
    log(format!(
        "time to Ready: {} tenants per isolation mode, one at a time, built and from the warm pool",
        cfg.ttr_samples
    ));
    let mut env = Env::start(cfg, "ttr", LocalPgOptions::default()).await?;
    env.ensure_namespace(NS).await?;
    let mut rows = Vec::new();
    let mut i = 0;
    // Built: the schema's baseline replayed, the database copied from the template.
    env.spawn_operator(
        &cfg.operator,
        &["--concurrency".into(), CONCURRENCY.to_string()],
    )?;
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    measure(cfg, &env, &mut i, "built", &mut rows).await?;
    env.stop_operator().await;
    // The warm pool: as many entries as samples (+ the warm-up), filled before the first
    // create, so the pool is never empty while measured (its refill runs meanwhile).
    let size = (cfg.ttr_samples + 2).to_string();
    env.spawn_operator(
        &cfg.operator,
        &[
            "--concurrency".into(),
            CONCURRENCY.to_string(),
            "--warm-pool-schemas".into(),
            size.clone(),
            "--warm-pool-databases".into(),
            size.clone(),
        ],
    )?;
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    let filled_by = Instant::now() + Duration::from_secs(600);
    loop {
        let m = env.metrics().await?;
        let ready = |kind: &str| {
            metric_sum(
                &m,
                "tenantdb_warm_pool_ready",
                &[&format!("kind=\"{kind}\"")],
            )
        };
        if ready("schema") >= (cfg.ttr_samples + 2) as f64
            && ready("database") >= (cfg.ttr_samples + 2) as f64
        {
            break;
        }
        if Instant::now() > filled_by {
            bail!(
                "warm pool not filled in 600 s\n{}",
                env.operator_log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    measure(cfg, &env, &mut i, "warm pool", &mut rows).await?;
    let m = env.metrics().await?;
    let claims = |kind: &str| {
        metric_sum(
            &m,
            "tenantdb_warm_pool_claims_total",
            &[&format!("kind=\"{kind}\"")],
        )
    };
    for r in rows.iter_mut() {
        if r["source"] == "warm pool" {
            let kind = r["isolation"].as_str().unwrap_or_default().to_string();
            r["claimed"] = json!(claims(&kind));
        }
    }
    env.stop_operator().await;
    Ok(json!({"auto_migrate": true, "rows": rows}))
}

/// One series per isolation mode: Tenants created one at a time, after an uncounted warm-up.
async fn measure(
    cfg: &Cfg,
    env: &Env,
    i: &mut usize,
    source: &str,
    rows: &mut Vec<Value>,
) -> Result<()> {
    for isolation in [Isolation::Schema, Isolation::Database] {
        let spec = json!({"isolation": isolation_str(isolation), "deletionPolicy": "Retain"});
        let mut samples = Vec::new();
        // One warm-up tenant (first use of the shared database, pools) not counted.
        for s in 0..=cfg.ttr_samples {
            *i += 1;
            let name = tenant_name(*i);
            let key = format!("{NS}/{name}");
            let t0 = Instant::now();
            env.create_tenants(NS, std::slice::from_ref(&name), &spec, 1)
                .await?;
            let at = match env.tracker.wait_ready(&key, Duration::from_secs(120)).await {
                Ok(at) => at,
                Err(e) => bail!("{e}\n{}", env.operator_log_tail(30)),
            };
            if s > 0 {
                samples.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
        }
        let mut sorted = samples.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        log(format!(
            "  {} ({source}): p50 {:.0} ms, p99 {:.0} ms",
            isolation_str(isolation),
            percentile(&sorted, 50.0),
            percentile(&sorted, 99.0)
        ));
        rows.push(json!({
            "isolation": isolation_str(isolation),
            "source": source,
            "samples": sorted.len(),
            "p50_ms": round(percentile(&sorted, 50.0), 1),
            "p90_ms": round(percentile(&sorted, 90.0), 1),
            "p99_ms": round(percentile(&sorted, 99.0), 1),
            "mean_ms": round(mean, 1),
            "min_ms": round(sorted[0], 1),
            "max_ms": round(*sorted.last().unwrap(), 1),
            "samples_ms": samples.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
        }));
    }
    Ok(())
}
