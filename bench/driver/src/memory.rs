//! Scenario 2b, operator memory vs. number of Tenants: Tenants with a spec the operator rejects
//! at validation (no PostgreSQL work) are added in steps; the operator's RSS after each step and
//! the slope in KiB per Tenant are reported.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tenantdb_testkit::localpg::LocalPgOptions;

use crate::cli::Cfg;
use crate::common::{CONCURRENCY, NS, log, round, tenant_name};
use crate::env::{Env, cpu_seconds, rss_mib};

pub async fn memory(cfg: &Cfg) -> Result<Value> {
    log("memory: operator RSS vs. number of Tenants (invalid spec, no PostgreSQL work)");
    let mut env = Env::start(cfg, "memory", LocalPgOptions::default()).await?;
    env.ensure_namespace(NS).await?;
    env.spawn_operator(
        &cfg.operator,
        &["--concurrency".into(), CONCURRENCY.to_string()],
    )?;
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    let pid = env.operator_pid.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss0, _) = rss_mib(pid).unwrap_or((0.0, 0.0));
    let mut points = vec![json!({"tenants": 0, "rss_mib": round(rss0, 1)})];
    // Rejected at validation: databaseName is the operator's shared database.
    let spec = json!({"isolation": "database", "databaseName": "tenantdb_shared", "deletionPolicy": "Retain"});
    let mut have = 0;
    for &target in &cfg.memory_steps {
        let names: Vec<String> = (have + 1..=target).map(tenant_name).collect();
        let t0 = Instant::now();
        env.create_tenants(NS, &names, &spec, 32).await?;
        if let Err(e) = env
            .tracker
            .wait(Duration::from_secs(1800), "all tenants Failed", |_, f| {
                f >= target
            })
            .await
        {
            bail!("{e}\n{}", env.operator_log_tail(30));
        }
        let took = t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss, hwm) = rss_mib(pid).unwrap_or((0.0, 0.0));
        log(format!(
            "  {target} tenants: RSS {rss:.1} MiB (peak {hwm:.1})"
        ));
        points.push(json!({
            "tenants": target,
            "rss_mib": round(rss, 1),
            "peak_rss_mib": round(hwm, 1),
            "create_and_reconcile_s": round(took, 1),
        }));
        have = target;
    }
    let cpu = cpu_seconds(pid).unwrap_or(0.0);
    env.stop_operator().await;
    let first = &points[1];
    let last = points.last().unwrap();
    let slope_kib = (last["rss_mib"].as_f64().unwrap() - first["rss_mib"].as_f64().unwrap())
        * 1024.0
        / (last["tenants"].as_f64().unwrap() - first["tenants"].as_f64().unwrap()).max(1.0);
    Ok(json!({
        "method": "Tenants with an invalid spec (isolation database, databaseName = the shared database): the operator caches, reconciles (finalizer, Failed status, Event) and rejects them without any PostgreSQL work",
        "points": points,
        "rss_kib_per_tenant": round(slope_kib, 2),
        "operator_cpu_s_total": round(cpu, 2),
    }))
}
