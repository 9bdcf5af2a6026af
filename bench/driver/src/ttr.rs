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
use crate::env::Env;

pub async fn time_to_ready(cfg: &Cfg) -> Result<Value> {
    log(format!(
        "time to Ready: {} tenants per isolation mode, one at a time",
        cfg.ttr_samples
    ));
    let mut env = Env::start(cfg, "ttr", LocalPgOptions::default()).await?;
    env.ensure_namespace(NS).await?;
    env.spawn_operator(
        &cfg.operator,
        &["--concurrency".into(), CONCURRENCY.to_string()],
    )?;
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    let mut rows = Vec::new();
    let mut i = 0;
    for isolation in [Isolation::Schema, Isolation::Database] {
        let spec = json!({"isolation": isolation_str(isolation), "deletionPolicy": "Retain"});
        let mut samples = Vec::new();
        // One warm-up tenant (first use of the shared database, pools) not counted.
        for s in 0..=cfg.ttr_samples {
            i += 1;
            let name = tenant_name(i);
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
            "  {}: p50 {:.0} ms, p99 {:.0} ms",
            isolation_str(isolation),
            percentile(&sorted, 50.0),
            percentile(&sorted, 99.0)
        ));
        rows.push(json!({
            "isolation": isolation_str(isolation),
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
    env.stop_operator().await;
    Ok(json!({"auto_migrate": true, "rows": rows}))
}
