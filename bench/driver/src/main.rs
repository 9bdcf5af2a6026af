//! tenantdb benchmark driver (issue #9). Run through `bench/run.sh`; see `bench/README.md`.
//!
//! Scenarios, all in one run: provisioning vs. a psql floor, steady state of Ready tenants,
//! operator memory vs. number of Tenants, fleet migration vs. a psql floor, single-tenant
//! time-to-Ready, new Tenants under resync saturation, placement over several servers (issue
//! 16), online moves between servers (issue 17). Writes `results.json` and `summary.md` into the
//! output directory after every scenario. One module per scenario; this file runs the ones
//! selected (`--only`) in order.

mod admission;
mod cli;
mod common;
mod env;
mod fleet;
mod floor;
mod guard;
mod memory;
mod moves;
mod peers;
mod placement;
mod provisioning;
mod report;
mod scale;
mod steady;
mod ttr;

use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};
use tenantdb::crd::Isolation;

use common::round;

#[tokio::main]
async fn main() -> Result<()> {
    let cfg = match cli::parse_args()? {
        cli::Command::Run(cfg) => *cfg,
        cli::Command::RenderOnly(out) => {
            // Re-renders summary.md from an existing results.json (no scenario runs).
            let r: Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
            let summary = report::summary(&r);
            std::fs::write(out.join("summary.md"), &summary)?;
            print!("{summary}");
            return Ok(());
        }
        cli::Command::Compare {
            baseline,
            current,
            factor,
        } => {
            let read = |p: &std::path::Path| -> Result<Value> {
                Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
            };
            let (b, c) = (read(&baseline)?, read(&current)?);
            let figures = guard::figures(&b, &c);
            let (table, ok) = guard::report(&figures, factor);
            println!(
                "Regression guard: {} (committed, rev {}) vs {} (this run, rev {})\n",
                baseline.display(),
                b["git_revision"],
                current.display(),
                c["git_revision"]
            );
            print!("{table}");
            if figures.is_empty() {
                anyhow::bail!("nothing to compare");
            }
            if !ok {
                anyhow::bail!(
                    "gross performance regression (more than {factor}× the committed figure)"
                );
            }
            return Ok(());
        }
    };
    std::fs::create_dir_all(&cfg.out)?;
    std::fs::create_dir_all(&cfg.work)?;
    let started = Instant::now();
    let mut results = report::header(&cfg);
    report::keep_previous(&cfg, &mut results);
    let write = |results: &Value| report::write(&cfg.out, results);

    if cfg.runs("provisioning") || cfg.runs("fleet") {
        let st = report::stamp();
        let mut prov = Vec::new();
        let largest = *cfg.prov_schema.iter().max().unwrap();
        let mut kept = None;
        for &n in &cfg.prov_schema {
            if !cfg.runs("provisioning") && n != largest {
                continue;
            }
            let (r, env) = provisioning::provisioning(
                &cfg,
                Isolation::Schema,
                n,
                n == largest,
                cfg.runs("provisioning"),
                &[],
            )
            .await?;
            if cfg.runs("provisioning") {
                prov.push(r);
            }
            if env.is_some() {
                kept = env;
            }
            if cfg.runs("provisioning") {
                results["provisioning"] = json!(prov);
                report::put_run(&mut results, "provisioning", st.clone());
                write(&results)?;
            }
        }
        if cfg.runs("fleet")
            && let Some(env) = kept
        {
            let st = report::stamp();
            results["fleet_migration"] = fleet::fleet(&cfg, env, largest).await?;
            report::put_run(&mut results, "fleet_migration", st);
            write(&results)?;
        }
    }
    if cfg.runs("provisioning") || cfg.runs("provisioning-database") {
        let st = report::stamp();
        // The operator replaying the baseline into empty databases (templates off), then as
        // shipped (copies of the template database), then the psql floor of the replay.
        let (replay, _) = provisioning::provisioning(
            &cfg,
            Isolation::Database,
            cfg.prov_database,
            false,
            false,
            &["--database-templates", "false"],
        )
        .await?;
        let (mut r, _) = provisioning::provisioning(
            &cfg,
            Isolation::Database,
            cfg.prov_database,
            false,
            true,
            &[],
        )
        .await?;
        if let (Some(t), Some(rp)) = (r["operator_s"].as_f64(), replay["operator_s"].as_f64()) {
            r["operator_replay_s"] = json!(rp);
            r["operator_replay_cpu_s"] = replay["operator_cpu_s"].clone();
            r["ratio_vs_replay"] = json!(common::round(t / rp, 2));
        }
        let mut prov: Vec<Value> = results["provisioning"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|x| x["isolation"] != json!("database"))
            .collect();
        prov.push(r);
        results["provisioning"] = json!(prov);
        report::put_run(&mut results, "provisioning-database", st);
        write(&results)?;
    }
    if cfg.runs("steady") {
        let st = report::stamp();
        results["steady_state"] = steady::steady_state(&cfg).await?;
        report::put_run(&mut results, "steady_state", st);
        write(&results)?;
    }
    if cfg.runs("memory") {
        let st = report::stamp();
        results["memory"] = memory::memory(&cfg).await?;
        report::put_run(&mut results, "memory", st);
        write(&results)?;
    }
    if cfg.runs("scale") {
        let st = report::stamp();
        results["scale"] = scale::scale(&cfg).await?;
        report::put_run(&mut results, "scale", st);
        write(&results)?;
    }
    if cfg.runs("ttr") {
        let st = report::stamp();
        results["time_to_ready"] = ttr::time_to_ready(&cfg).await?;
        report::put_run(&mut results, "time_to_ready", st);
        write(&results)?;
    }
    if cfg.runs("admission") {
        let st = report::stamp();
        results["admission"] = admission::admission(&cfg).await?;
        report::put_run(&mut results, "admission", st);
        write(&results)?;
    }
    if cfg.runs("placement") {
        let st = report::stamp();
        results["placement"] = placement::placement(&cfg).await?;
        report::put_run(&mut results, "placement", st);
        write(&results)?;
    }
    if cfg.runs("moves") {
        let st = report::stamp();
        results["moves"] = moves::moves(&cfg).await?;
        report::put_run(&mut results, "moves", st);
        write(&results)?;
    }
    results["duration_s"] = json!(round(started.elapsed().as_secs_f64(), 1));
    write(&results)?;
    print!("{}", report::summary(&results));
    // BENCH_KEEP_WORK=1 keeps the work directory (operator logs, floor SQL) for inspection.
    if std::env::var_os("BENCH_KEEP_WORK").is_none() {
        let _ = std::fs::remove_dir_all(&cfg.work);
    }
    Ok(())
}
