//! The run's output: the `results.json` header (machine, git revision, operator binary), the
//! merge with an existing `results.json` for a partial (`--only`) run, writing `results.json`
//! and `summary.md`, and the markdown summary rendered from the results (the format
//! `bench/README.md` documents and `bench/plot.py` reads the JSON of).

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cli::Cfg;
use crate::common::round;

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    let pg_bin = tenantdb_testkit::localpg::find_pg_bin()
        .map(|p| p.join("postgres").display().to_string())
        .unwrap_or_default();
    json!({
        "nproc": sh("nproc").parse::<i64>().unwrap_or(0),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        "memory_gib": round(sh("awk '/MemTotal/ {print $2}' /proc/meminfo").parse::<f64>().unwrap_or(0.0) / 1048576.0, 1),
        "kernel": sh("uname -r"),
        "postgres": sh(&format!("'{pg_bin}' --version")),
        "psql": sh("psql --version"),
        "rustc": sh("rustc --version"),
        "postgres_settings": "throwaway cluster (testkit/src/localpg.rs): fsync=off, synchronous_commit=off, full_page_writes=off, shared_buffers=64MB, max_connections=300",
    })
}

/// The head of `results.json`: run kind and start, git revision (and whether the operator's
/// sources have uncommitted changes), the machine, the operator binary.
pub fn header(cfg: &Cfg) -> Value {
    json!({
        "quick": cfg.quick,
        "started_at": jiff::Timestamp::now().to_string(),
        "git_revision": sh("git rev-parse --short HEAD"),
        "git_dirty": !sh("git status --porcelain -- src apiserver testkit migrations build.rs Cargo.toml Cargo.lock").is_empty(),
        "machine": machine(),
        "api_latency_ms": cfg.api_latency.as_millis(),
        "operator_binary": cfg.operator.display().to_string(),
    })
}

/// Which run produced a scenario's figures (stored under `runs.<scenario>` in `results.json` and
/// printed under each table): when the scenario started, the git revision, and the machine's load
/// average at that moment (a loaded machine slows every figure of the table).
pub fn stamp() -> Value {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = load.split_whitespace().map(|x| x.parse::<f64>().ok());
    json!({
        "started_at": jiff::Timestamp::now().to_string(),
        "git_revision": sh("git rev-parse --short HEAD"),
        "git_dirty": !sh("git status --porcelain -- src apiserver testkit migrations build.rs Cargo.toml Cargo.lock bench/driver/src").is_empty(),
        "loadavg_1m_at_start": it.next().flatten(),
        "loadavg_5m_at_start": it.next().flatten(),
    })
}

/// Records the run of `scenario` ([`stamp`]).
pub fn put_run(results: &mut Value, scenario: &str, stamp: Value) {
    if !results["runs"].is_object() {
        results["runs"] = json!({});
    }
    results["runs"][scenario] = stamp;
}

/// The line under a table naming its run.
fn run_line(r: &Value, scenario: &str) -> String {
    let st = &r["runs"][scenario];
    if !st.is_object() {
        return "Run: not recorded (a run before run stamps).\n\n".to_string();
    }
    format!(
        "Run: {} · rev {}{} · load average at start {} (1 min), {} (5 min) on {} cores.\n\n",
        f(&st["started_at"]),
        f(&st["git_revision"]),
        if st["git_dirty"] == json!(true) {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        f(&st["loadavg_1m_at_start"]),
        f(&st["loadavg_5m_at_start"]),
        f(&r["machine"]["nproc"]),
    )
}

/// A partial run (`--only`) updates the scenarios it runs in an existing `results.json`: every
/// key of the old file that `results` does not have yet is kept.
pub fn keep_previous(cfg: &Cfg, results: &mut Value) {
    if cfg.only.is_some()
        && let Ok(old) = std::fs::read_to_string(cfg.out.join("results.json"))
        && let Ok(Value::Object(old)) = serde_json::from_str::<Value>(&old)
    {
        for (k, v) in old {
            if k == "runs"
                && let Value::Object(runs) = v
            {
                for (scenario, st) in runs {
                    if results["runs"].get(&scenario).is_none() {
                        put_run(results, &scenario, st);
                    }
                }
                continue;
            }
            if results.get(&k).is_none() {
                results[k] = v;
            }
        }
    }
}

/// Writes `results.json` (pretty, trailing newline) and `summary.md` into `out`.
pub fn write(out: &Path, results: &Value) -> Result<()> {
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    std::fs::write(out.join("summary.md"), summary(results))?;
    Ok(())
}

/// Markdown table rows: one per element of `rows`, the values of `cols` in order, the column at
/// the indices in `bold` (the headline ratios or times) in bold.
fn table_rows(rows: &Value, cols: &[&str], bold: &[usize]) -> String {
    let mut out = String::new();
    for x in rows.as_array().into_iter().flatten() {
        let cells: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = f(&x[*c]);
                if bold.contains(&i) {
                    format!("**{v}**")
                } else {
                    v
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

pub fn f(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        }
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Markdown summary of the results (also printed at the end of a run).
pub fn summary(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    s.push_str(&format!(
        "# tenantdb benchmark results{}\n\n{} · {} cores · {} GiB · {} · operator rev {}{}{}\n\n",
        if r["quick"] == json!(true) {
            " (quick smoke run: tiny N, not representative)"
        } else {
            ""
        },
        f(&r["started_at"]),
        f(&m["nproc"]),
        f(&m["memory_gib"]),
        f(&m["postgres"]),
        f(&r["git_revision"]),
        if r["git_dirty"] == json!(true) {
            " (+ uncommitted changes)"
        } else {
            ""
        },
        match r["api_latency_ms"].as_u64() {
            Some(ms) if ms > 0 =>
                format!(" · emulated API latency {ms} ms per request and watch event"),
            _ => String::new(),
        },
    ));
    if let Some(rows) = r["provisioning"].as_array() {
        s.push_str("## 1. Provisioning (all Tenants created → all Ready) vs. psql floor\n\n");
        s.push_str(&run_line(r, "provisioning").replace("Run:", "Run (`schema` rows):"));
        s.push_str(&run_line(r, "provisioning-database").replace("Run:", "Run (`database` row):"));
        s.push_str("| isolation | N | operator (s) | floor psql sequential (s) | floor psql ×8 (s) | operator / sequential | operator / ×8 | tenants/s | API writes/tenant | operator CPU (s) | transient reconcile errors | objects/tenant op · floor |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for x in rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | **{}** | **{}** | {} | {} | {} | {} | {} · {} |\n",
                f(&x["isolation"]),
                f(&x["tenants"]),
                f(&x["operator_s"]),
                f(&x["floor_sequential_s"]),
                f(&x["floor_parallel_s"]),
                f(&x["ratio_vs_sequential"]),
                f(&x["ratio_vs_parallel"]),
                f(&x["operator_tenants_per_s"]),
                f(&x["api_writes_per_tenant"]),
                f(&x["operator_cpu_s"]),
                f(&x["operator_reconcile_errors"]),
                f(&x["objects_per_tenant_operator"]),
                f(&x["objects_per_tenant_floor"]),
            ));
        }
        for x in rows.iter().filter(|x| x["operator_replay_s"].is_number()) {
            s.push_str(&format!(
                "`database` tenants: {} of {} created as copies of the template database; the operator with `--database-templates false` (empty databases, baseline replayed as each tenant) took {} s in the same run: **{}×** of that, **{}×** of psql replaying the same DDL sequentially and **{}×** with ×8.\n",
                f(&x["databases_from_template"]),
                f(&x["tenants"]),
                f(&x["operator_replay_s"]),
                f(&x["ratio_vs_replay"]),
                f(&x["ratio_vs_sequential"]),
                f(&x["ratio_vs_parallel"]),
            ));
        }
        s.push('\n');
    }
    let st = &r["steady_state"];
    if st.is_object() {
        s.push_str(&format!(
            "## 2. Steady state: {} Ready tenants, one resync period ({} s; health/usage interval {} s)\n\n",
            f(&st["tenants"]), f(&st["resync_seconds"]), f(&st["health_and_usage_interval_seconds"])
        ));
        s.push_str(&run_line(r, "steady_state"));
        s.push_str("| metric | value |\n|---|---|\n");
        for (k, label) in [
            ("window_s", "window (s)"),
            ("reconciles_in_window", "reconciles in window"),
            (
                "reconciles_skipped_unchanged_in_window",
                "of which skipped (settled, unchanged)",
            ),
            ("resync_passes_in_window", "resync passes (reconciles / N)"),
            ("api_status_writes", "**API status writes**"),
            ("api_writes", "API writes (all resources)"),
            ("api_requests_per_reconcile", "API requests per reconcile"),
            ("sql_statements", "SQL statements (pg_stat_statements)"),
            (
                "sql_statements_per_reconcile",
                "SQL statements per reconcile",
            ),
            ("transactions", "PostgreSQL transactions"),
            ("ddl_steps_in_window", "DDL steps applied"),
            ("reconcile_errors_in_window", "reconcile errors"),
            ("health_checks_in_window", "health checks (tenant logins)"),
            ("operator_cpu_s", "operator CPU in window (s)"),
            (
                "operator_cpu_s_per_pass",
                "operator CPU per resync pass of all tenants (s)",
            ),
            (
                "operator_cpu_ms_per_reconcile",
                "operator CPU per reconcile (ms)",
            ),
            ("operator_rss_mib", "operator RSS (MiB)"),
            (
                "provisioning_s",
                "provisioning of the N tenants, no migrations (s)",
            ),
        ] {
            s.push_str(&format!("| {label} | {} |\n", f(&st[k])));
        }
        s.push_str("\nMost frequent statements in the window (calls | query):\n\n```\n");
        for l in st["top_statements"].as_array().into_iter().flatten() {
            s.push_str(&format!("{}\n", f(l)));
        }
        s.push_str("```\n\n");
    }
    let mem = &r["memory"];
    if mem.is_object() {
        s.push_str("## 2b. Operator memory vs. number of Tenants\n\n");
        s.push_str(&run_line(r, "memory"));
        s.push_str("| Tenants | RSS (MiB) | peak RSS (MiB) |\n|---|---|---|\n");
        for p in mem["points"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                f(&p["tenants"]),
                f(&p["rss_mib"]),
                f(&p["peak_rss_mib"])
            ));
        }
        s.push_str(&format!(
            "\nSlope: {} KiB per Tenant. Method: {}.\n\n",
            f(&mem["rss_kib_per_tenant"]),
            f(&mem["method"])
        ));
    }
    s.push_str(&scale_section(r));
    let fl = &r["fleet_migration"];
    if fl.is_object() {
        s.push_str(&format!(
            "## 3. Fleet migration: one new migration across {} tenants (mode: {})\n\n{}.\n\n",
            f(&fl["tenants"]),
            f(&fl["mode"]),
            f(&fl["mode_note"])
        ));
        s.push_str(&run_line(r, "fleet_migration"));
        if let Some(peers) = fl["peers"].as_object().filter(|p| !p.is_empty()) {
            let versions: Vec<String> = peers
                .iter()
                .map(|(k, v)| format!("{k}: `{}`", f(&v["version"])))
                .collect();
            s.push_str(&format!(
                "Peers ({}): {}.\n\n",
                versions.join(", "),
                f(&fl["peers_note"])
            ));
        }
        if fl["login_floor_note"].is_string() {
            s.push_str(&format!("Login floor: {}.\n\n", f(&fl["login_floor_note"])));
        }
        s.push_str("| maxParallel | tenantdb (s) | psql floor (s) | login floor (s) | dbmate (s) | sqlx-cli (s) | tenantdb / psql | tenantdb / login floor | tenantdb / dbmate | tenantdb / sqlx-cli | tenantdb ms/tenant | psql ms/tenant | login floor ms/tenant | dbmate ms/tenant | sqlx-cli ms/tenant |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        s.push_str(&table_rows(
            &fl["rows"],
            &[
                "max_parallel",
                "operator_s",
                "floor_s",
                "login_floor_s",
                "dbmate_s",
                "sqlx_s",
                "ratio",
                "login_ratio",
                "ratio_vs_dbmate",
                "ratio_vs_sqlx",
                "operator_ms_per_tenant",
                "floor_ms_per_tenant",
                "login_floor_ms_per_tenant",
                "dbmate_ms_per_tenant",
                "sqlx_ms_per_tenant",
            ],
            &[6, 7, 8, 9],
        ));
        s.push('\n');
    }
    let ttr = &r["time_to_ready"];
    if ttr.is_object() {
        s.push_str(
            "## 4. Single-tenant time to Ready (create → Ready seen by a watch; full baseline): built, and claimed from the warm pool\n\n",
        );
        s.push_str(&run_line(r, "time_to_ready"));
        s.push_str("| isolation | source | samples | claimed | p50 (ms) | p90 (ms) | p99 (ms) | mean (ms) | min (ms) | max (ms) |\n|---|---|---|---|---|---|---|---|---|---|\n");
        s.push_str(&table_rows(
            &ttr["rows"],
            &[
                "isolation",
                "source",
                "samples",
                "claimed",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "mean_ms",
                "min_ms",
                "max_ms",
            ],
            &[],
        ));
        s.push('\n');
    }
    let ad = &r["admission"];
    if ad.is_object() {
        s.push_str(&format!(
            "## 5. New Tenants under resync saturation: {} Ready tenants resyncing every {} s (health + usage each time), then {} new Tenants\n\n{}| resync admission | all new Ready (s) | new p50 (s) | new p90 (s) | new p99 (s) | new Ready | reconciles/s | health checks/s | resyncs deferred | machine busy |\n|---|---|---|---|---|---|---|---|---|---|\n",
            f(&ad["background_tenants"]), f(&ad["interval_s"]), f(&ad["new_tenants"]), run_line(r, "admission")
        ));
        s.push_str(&table_rows(
            &ad["rows"],
            &[
                "variant",
                "all_new_ready_s",
                "new_p50_s",
                "new_p90_s",
                "new_p99_s",
                "new_ready",
                "reconciles_per_s",
                "health_checks_per_s",
                "resyncs_deferred",
                "machine_cpu_busy_share",
            ],
            &[1],
        ));
        // When the unbounded variant did not get every new Tenant Ready within the window, the
        // ratio is a lower bound (window / bounded time).
        let rows = ad["rows"].as_array().cloned().unwrap_or_default();
        let ratio = match (rows.first(), rows.get(1)) {
            (Some(b), Some(u)) => match (
                b["all_new_ready_s"].as_f64(),
                u["all_new_ready_s"].as_f64(),
                u["window_s"].as_f64(),
            ) {
                (Some(b), Some(u), _) if b > 0.0 => format!("{:.1}", u / b),
                (Some(b), None, Some(w)) if b > 0.0 => format!(
                    "> {:.0} (unbounded: {} of {} new Tenants Ready after {w:.0} s)",
                    w / b,
                    f(&rows[1]["new_ready"]),
                    f(&ad["new_tenants"])
                ),
                _ => "–".into(),
            },
            _ => "–".into(),
        };
        s.push_str(&format!(
            "\nUnbounded / bounded (time until all new Tenants are Ready): **{ratio}**.\n\n"
        ));
    }
    let pl = &r["placement"];
    if pl.is_object() {
        s.push_str(&format!(
            "## 6. Placement: {} `schema` Tenants on 1 vs. 3 DatabaseServers (selector `tier=standard`, operator concurrency {})\n\n{}; 1 server: {}.\n\n",
            f(&pl["tenants"]),
            f(&pl["operator_concurrency"]),
            f(&pl["method"]),
            f(&pl["one_server_setup"]),
        ));
        s.push_str(&run_line(r, "placement"));
        s.push_str("| servers | all Ready (s) | tenants/s | p50 / p90 Ready (s) | spread (status) | pg_roles per cluster | mismatches | operator CPU (s) | CPU ms/tenant | machine busy | reconcile errors | log WARN · ERROR |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for x in pl["rows"].as_array().into_iter().flatten() {
            let roles: Vec<String> = x["pg_roles_per_cluster"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| f(v))
                .collect();
            s.push_str(&format!(
                "| {} | **{}** | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} · {} |\n",
                f(&x["servers"]),
                f(&x["all_ready_s"]),
                f(&x["tenants_per_s"]),
                f(&x["ready_p50_s"]),
                f(&x["ready_p90_s"]),
                f(&x["spread_text"]),
                roles.join(" / "),
                f(&x["placement_role_mismatches"]),
                f(&x["operator_cpu_s"]),
                f(&x["operator_cpu_ms_per_tenant"]),
                f(&x["machine_cpu_busy_share"]),
                f(&x["operator_reconcile_errors"]),
                f(&x["operator_log"]["warn"]),
                f(&x["operator_log"]["error"]),
            ));
        }
        s.push_str(&format!(
            "\n3 servers / 1 server (time to all Ready): **{}**.\n\n",
            f(&pl["ratio_3_vs_1"])
        ));
        s.push_str("Placement decision, `placement::choose` (ns per call):\n\n| servers | case | median | p10 | p90 |\n|---|---|---|---|---|\n");
        s.push_str(&table_rows(
            &pl["decision"]["rows"],
            &["servers", "case", "median_ns", "p10_ns", "p90_ns"],
            &[2],
        ));
        s.push_str("\nAggregation over the Tenant cache before each decision (as `candidates()`), µs per call:\n\n| tenants | servers | reservations | aggregation median | p10 | p90 | ns/tenant | aggregation + choose median |\n|---|---|---|---|---|---|---|---|\n");
        s.push_str(&table_rows(
            &pl["aggregation"]["rows"],
            &[
                "tenants",
                "servers",
                "reservations",
                "aggregation_median_us",
                "aggregation_p10_us",
                "aggregation_p90_us",
                "aggregation_ns_per_tenant",
                "decision_median_us",
            ],
            &[3],
        ));
        s.push_str(&format!(
            "\nMethod: {}. Aggregation: {}.\n\n",
            f(&pl["decision"]["method"]),
            f(&pl["aggregation"]["method"])
        ));
    }
    let mv = &r["moves"];
    if mv.is_object() {
        s.push_str(&format!(
            "## 7. Moves: one tenant per isolation mode moved to another server (logical replication), idle and under writes; target: write freeze under {} ms\n\n{}.\n\nWriter: {}.\n\n",
            f(&mv["target_freeze_ms"]),
            f(&mv["method"]),
            f(&mv["writer"]),
        ));
        s.push_str(&run_line(r, "moves"));
        s.push_str("| isolation | data (MiB) | home at start (MiB) | writer | move: startedAt → finishedAt (s) | Preparing / Copying / CuttingOver / CleaningUp (s) | **write freeze (ms)** | writer's longest gap (s) | acknowledged writes | lost | attempts | source copy left |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for x in mv["rows"].as_array().into_iter().flatten() {
            let w = &x["writer"];
            let writer = x["with_writer"] == json!(true);
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} / {} / {} / {} | **{}** | {} | {} | {} | {} | {} |\n",
                f(&isolation_of(x)),
                f(&x["data_mib"]),
                f(&x["move_mib"]),
                if writer { "writes" } else { "idle" },
                f(&x["move_total_s"]),
                f(&x["preparing_s"]),
                f(&x["copying_s"]),
                f(&x["cutting_over_s"]),
                f(&x["cleaning_up_s"]),
                f(&x["write_freeze_ms"]),
                f(&w["longest_gap_s"]),
                f(&w["acknowledged"]),
                f(&w["lost"]),
                f(&x["attempts"]),
                f(&x["source_home_left"]),
            ));
        }
        s.push_str("\nThe write freeze step by step (ms), from the operator's statements in both servers' logs:\n\n| isolation | data (MiB) | writer | window | fence | catch-up (polls) | row counts | sessions + second catch-up | catalog check (server time) | sequences | drop subscription | logins on |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for x in mv["rows"].as_array().into_iter().flatten() {
            let t = &x["freeze_timeline"];
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} ({}) | {} | {} | {} |\n",
                f(&isolation_of(x)),
                f(&x["data_mib"]),
                if x["with_writer"] == json!(true) {
                    "writes"
                } else {
                    "idle"
                },
                f(&t["window_ms"]),
                f(&t["fence_ms"]),
                f(&t["catch_up_ms"]),
                f(&t["catch_up_polls"]),
                f(&t["row_counts_ms"]),
                f(&t["sessions_and_second_catch_up_ms"]),
                f(&t["catalog_check_ms"]),
                f(&t["catalog_check_server_ms"]),
                f(&t["sequences_ms"]),
                f(&t["drop_subscription_ms"]),
                f(&t["unfence_ms"]),
            ));
        }
        s.push_str(&format!(
            "\nLongest write freeze {} ms: target (under {} ms) **{}**. Acknowledged writes lost: {}.\n\n",
            f(&mv["max_write_freeze_ms"]),
            f(&mv["target_freeze_ms"]),
            if mv["target_met"] == json!(true) {
                "met"
            } else {
                "not met"
            },
            f(&mv["writes_lost"]),
        ));
    }
    if let Some(d) = r["duration_s"].as_f64() {
        s.push_str(&format!("Total benchmark time: {d:.0} s.\n"));
    }
    s
}

/// A moves row's isolation mode (rows of runs before it was recorded moved `database` tenants).
fn isolation_of(row: &Value) -> Value {
    match &row["isolation"] {
        Value::Null => json!("database"),
        v => v.clone(),
    }
}

/// Scenario 2c: one row per step, then the fitted lines.
fn scale_section(r: &Value) -> String {
    let sc = &r["scale"];
    let mut s = String::new();
    if !sc.is_object() {
        return s;
    }
    s.push_str("## 2c. Scale: Ready Tenants at each step, one resync period each\n\n");
    s.push_str(&run_line(r, "scale"));
    s.push_str(&format!("Method: {}.\n\n", f(&sc["method"])));
    s.push_str("| Tenants | resync (s) | new Tenants Ready in (s) | restart pass (s) | reconciles | deferred | status writes | API writes | API req / reconcile | SQL / reconcile | health checks | operator CPU / reconcile (ms) | operator CPU share of a core | machine busy | RSS (MiB) | peak RSS (MiB) | errors |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for p in sc["points"].as_array().into_iter().flatten() {
        let row = [
            "tenants",
            "resync_seconds",
            "provisioning_new_s",
            "restart_pass_s",
            "reconciles_in_window",
            "resyncs_deferred_in_window",
            "api_status_writes",
            "api_writes",
            "api_requests_per_reconcile",
            "sql_statements_per_reconcile",
            "health_checks_in_window",
            "operator_cpu_ms_per_reconcile",
            "operator_cpu_share_of_one_core",
            "machine_cpu_busy_share",
            "operator_rss_mib",
            "operator_peak_rss_mib",
            "reconcile_errors_in_window",
        ]
        .map(|k| f(&p[k]));
        s.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    s.push_str("\nLinear fit y = a + b·N over the steps:\n\n| figure | slope b per 1,000 Tenants | intercept a | r² |\n|---|---|---|---|\n");
    for (k, label) in crate::scale::FITTED {
        let fit = &sc["fits"][k];
        s.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            f(&fit["slope_per_1000"]),
            f(&fit["intercept"]),
            f(&fit["r2"])
        ));
    }
    s.push('\n');
    s
}
