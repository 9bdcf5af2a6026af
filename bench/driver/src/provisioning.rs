//! Scenario 1, provisioning: `N` Tenants created, then the operator started; the time until all
//! are Ready is compared with the same SQL (rendered by the operator's own planner, see
//! [`crate::floor`]) run by psql, sequentially and with the operator's parallelism, on fresh
//! clusters. The largest schema-isolation run keeps its environment for the fleet scenario.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tenantdb::crd::Isolation;
use tenantdb::migrate::MigrationSet;
use tenantdb_testkit::localpg::LocalPgOptions;

use crate::cli::Cfg;
use crate::common::{
    CONCURRENCY, NS, isolation_str, log, round, start_pg, stats_json, tenant_name,
};
use crate::env::{Env, cpu_seconds, metric_sum, rss_mib};
use crate::floor;

/// Provisions `n` Tenants with the operator, then the same SQL with psql (sequential and with
/// the operator's parallelism) on fresh clusters. Returns the result and, if `keep`, the
/// environment (operator stopped) for the fleet-migration scenario.
pub async fn provisioning(
    cfg: &Cfg,
    isolation: Isolation,
    n: usize,
    keep: bool,
    floors: bool,
    extra_args: &[&str],
) -> Result<(Value, Option<Env>)> {
    let label = format!("prov-{}-{n}", isolation_str(isolation));
    log(format!(
        "provisioning: {n} {} tenants (operator)",
        isolation_str(isolation)
    ));
    let mut env = Env::start(cfg, &label, LocalPgOptions::default()).await?;
    let names: Vec<String> = (1..=n).map(tenant_name).collect();
    let spec = json!({"isolation": isolation_str(isolation), "deletionPolicy": "Retain"});
    env.create_tenants(NS, &names, &spec, 16).await?;
    let before = env.api.stats();
    let t0 = Instant::now();
    let mut args = vec!["--concurrency".to_string(), CONCURRENCY.to_string()];
    args.extend(extra_args.iter().map(|a| a.to_string()));
    env.spawn_operator(&cfg.operator, &args)?;
    let pid = env.operator_pid.unwrap();
    if let Err(e) = env
        .tracker
        .wait(Duration::from_secs(1800), "all tenants Ready", |r, _| {
            r >= n
        })
        .await
    {
        bail!("{e}\n{}", env.operator_log_tail(30));
    }
    let operator_s = env
        .tracker
        .last_ready()
        .unwrap()
        .duration_since(t0)
        .as_secs_f64();
    let op_cpu = cpu_seconds(pid).unwrap_or(0.0);
    let op_rss = rss_mib(pid).map(|r| r.1).unwrap_or(0.0);
    let api = env.api.stats().since(&before);
    let metrics = env.metrics().await.unwrap_or_default();
    let reconcile_errors = metric_sum(
        &metrics,
        "tenantdb_reconcile_errors_total",
        &["controller=\"tenant\""],
    );
    let concurrent_update_errors = std::fs::read_to_string(env.dir.join("operator.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("reconcile failed") && l.contains("tuple concurrently updated"))
        .count();
    let first = floor::names_for(NS, &names[0], isolation);
    let op_objects = floor::object_count(&env.pg, &first).await?;
    env.stop_operator().await;
    log(format!("  operator: {operator_s:.2} s"));
    let templates = metric_sum(
        &metrics,
        "tenantdb_databases_created_total",
        &["source=\"template\""],
    );
    if !floors {
        return Ok((
            json!({
                "operator_s": round(operator_s, 3),
                "operator_cpu_s": round(op_cpu, 2),
                "databases_from_template": templates,
            }),
            keep.then_some(env),
        ));
    }

    // Floor: the same SQL with psql.
    let set = MigrationSet::bundled();
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let contents: Vec<(String, String)> = names
        .iter()
        .map(|name| {
            let nm = floor::names_for(NS, name, isolation);
            (
                name.clone(),
                floor::provisioning_sql(&nm, &set, true, today),
            )
        })
        .collect();
    std::fs::write(
        cfg.out.join(format!(
            "floor-sample-provisioning-{}.sql",
            isolation_str(isolation)
        )),
        &contents[0].1,
    )?;
    let files = floor::write_files(&cfg.work.join(format!("{label}-floor-sql")), contents)?;
    let db = if isolation == Isolation::Database {
        "postgres"
    } else {
        floor::SHARED_DB
    };
    let mut floor_results = Vec::new();
    let mut floor_objects = -1;
    for parallel in [1, CONCURRENCY] {
        let pg = start_pg(LocalPgOptions::default()).await?;
        if isolation == Isolation::Schema {
            floor::prepare_shared(&pg).await?;
        }
        log(format!("  floor: psql x{parallel}"));
        let d = floor::run_psql(&pg, db, &files, parallel).await?;
        floor_objects = floor::object_count(&pg, &first).await?;
        log(format!("  floor x{parallel}: {:.2} s", d.as_secs_f64()));
        floor_results.push(d.as_secs_f64());
    }
    let (seq, par) = (floor_results[0], floor_results[1]);
    let result = json!({
        "isolation": isolation_str(isolation),
        "tenants": n,
        "operator_concurrency": CONCURRENCY,
        "operator_s": round(operator_s, 3),
        "operator_tenants_per_s": round(n as f64 / operator_s, 2),
        "operator_cpu_s": round(op_cpu, 2),
        "operator_peak_rss_mib": round(op_rss, 1),
        "operator_reconcile_errors": reconcile_errors,
        "operator_tuple_concurrently_updated_errors": concurrent_update_errors,
        "floor_sequential_s": round(seq, 3),
        "floor_parallel_s": round(par, 3),
        "floor_parallelism": CONCURRENCY,
        "ratio_vs_sequential": round(operator_s / seq, 2),
        "ratio_vs_parallel": round(operator_s / par, 2),
        "objects_per_tenant_operator": op_objects,
        "databases_from_template": templates,
        "objects_per_tenant_floor": floor_objects,
        "api": stats_json(&api),
        "api_writes_per_tenant": round(api.writes("*", None) as f64 / n as f64, 2),
    });
    let _ = std::fs::remove_dir_all(cfg.work.join(format!("{label}-floor-sql")));
    Ok((result, keep.then_some(env)))
}
