//! The regression guard (`bench/run.sh --check`, run by CI): a quick run's figures against the
//! committed quick results. Only gross regressions fail (default: 3× worse than the committed
//! figure, after a floor that keeps tiny baselines from turning noise into failures); every
//! compared figure is printed, both values side by side.

use serde_json::Value;

/// One compared figure (lower is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Where it comes from, e.g. `provisioning schema N=10: operator / psql ×8`.
    pub name: String,
    /// The committed value.
    pub baseline: f64,
    /// This run's value.
    pub current: f64,
    /// Values up to this count as equal to it (noise floor).
    pub floor: f64,
}

impl Figure {
    /// Whether this run is more than `factor` times worse than the committed value.
    pub fn regressed(&self, factor: f64) -> bool {
        self.current > factor * self.baseline.max(self.floor)
    }
}

/// The noise floor of the operator / psql ratios: ratios up to it count as equal to it, so a
/// ratio fails only above 3 × 2 = 6 when its committed value is small. The psql floor of a quick
/// run (3–10 tenants) is a second or less and varies up to 2.5× between runs on the 2-core
/// machine (CI, 2026-12-04: the ×8 floor of the same 5 tenants took 0.45 s, the committed run
/// 1.11 s, with the operator at 2.1 s and 1.7 s: the ratio went 1.49 → 4.62 without any change
/// to provisioning). A gross regression of the operator still shows.
const RATIO_NOISE: f64 = 2.0;

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The figures both runs have, in a stable order. Missing scenarios are skipped (a run with
/// `--only` compares what it ran).
pub fn figures(baseline: &Value, current: &Value) -> Vec<Figure> {
    let mut out = Vec::new();
    // Which scenarios this run has at all (a run with `--only` compares what it ran).
    let current_ran = |name: &str| {
        let key = if name.starts_with("provisioning") {
            "provisioning"
        } else if name.starts_with("fleet") {
            "fleet_migration"
        } else if name.starts_with("steady") {
            "steady_state"
        } else {
            "memory"
        };
        !current[key].is_null()
    };
    let mut push = |name: String, b: Option<f64>, c: Option<f64>, floor: f64| {
        match (b, c) {
            (Some(baseline), Some(current)) => out.push(Figure {
                name,
                baseline,
                current,
                floor,
            }),
            // A figure the committed run has and this one lost (a scenario that stopped
            // producing it) is a regression too.
            (Some(baseline), None) if current_ran(&name) => out.push(Figure {
                name,
                baseline,
                current: f64::INFINITY,
                floor,
            }),
            _ => {}
        }
    };
    // Provisioning: the operator against psql with the same parallelism.
    let prov = |r: &Value, iso: &str, n: &Value| {
        r["provisioning"].as_array().and_then(|rows| {
            rows.iter()
                .find(|x| x["isolation"] == iso && &x["tenants"] == n)
                .and_then(|x| num(&x["ratio_vs_parallel"]))
        })
    };
    for row in baseline["provisioning"].as_array().into_iter().flatten() {
        let iso = row["isolation"].as_str().unwrap_or_default();
        push(
            format!(
                "provisioning {iso} N={}: operator / psql ×8",
                row["tenants"]
            ),
            prov(baseline, iso, &row["tenants"]),
            prov(current, iso, &row["tenants"]),
            RATIO_NOISE,
        );
    }
    // Fleet migration: the operator against psql, per maxParallel.
    let fleet = |r: &Value, p: &Value| {
        r["fleet_migration"]["rows"].as_array().and_then(|rows| {
            rows.iter()
                .find(|x| &x["max_parallel"] == p)
                .and_then(|x| num(&x["ratio"]))
        })
    };
    for row in baseline["fleet_migration"]["rows"]
        .as_array()
        .into_iter()
        .flatten()
    {
        push(
            format!(
                "fleet migration maxParallel {}: operator / psql",
                row["max_parallel"]
            ),
            fleet(baseline, &row["max_parallel"]),
            fleet(current, &row["max_parallel"]),
            RATIO_NOISE,
        );
    }
    // Steady state: work per reconcile, and status writes (none expected).
    for (key, what, floor) in [
        (
            "sql_statements_per_reconcile",
            "SQL statements per reconcile",
            1.0,
        ),
        (
            "api_requests_per_reconcile",
            "API requests per reconcile",
            1.0,
        ),
        ("api_status_writes", "status writes in the window", 3.0),
    ] {
        push(
            format!("steady state: {what}"),
            num(&baseline["steady_state"][key]),
            num(&current["steady_state"][key]),
            floor,
        );
    }
    push(
        "memory: RSS per cached Tenant (KiB)".into(),
        num(&baseline["memory"]["rss_kib_per_tenant"]),
        num(&current["memory"]["rss_kib_per_tenant"]),
        5.0,
    );
    out
}

/// The comparison as a Markdown table plus the verdict line; `true` when nothing regressed.
pub fn report(figures: &[Figure], factor: f64) -> (String, bool) {
    let mut s = format!(
        "| figure (lower is better) | committed | this run | verdict (fails above {factor}×) |\n|---|---|---|---|\n"
    );
    let mut ok = true;
    for f in figures {
        let bad = f.regressed(factor);
        ok &= !bad;
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            f.name,
            f.baseline,
            f.current,
            if bad { "**REGRESSED**" } else { "ok" }
        ));
    }
    s.push_str(&format!(
        "\n{} figures compared: {}\n",
        figures.len(),
        if ok {
            "no gross regression"
        } else {
            "GROSS REGRESSION"
        }
    ));
    (s, ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(prov_ratio: f64, fleet_ratio: f64, writes: i64) -> Value {
        json!({
            "provisioning": [
                {"isolation": "schema", "tenants": 10, "ratio_vs_parallel": prov_ratio},
                {"isolation": "database", "tenants": 3, "ratio_vs_parallel": 0.3},
            ],
            "fleet_migration": {"rows": [{"max_parallel": 1, "ratio": fleet_ratio}]},
            "steady_state": {"sql_statements_per_reconcile": 2.1, "api_requests_per_reconcile": 1.0, "api_status_writes": writes},
            "memory": {"rss_kib_per_tenant": 15.0},
        })
    }

    #[test]
    fn only_gross_regressions_fail() {
        let base = run(1.0, 2.0, 0);
        let figs = figures(&base, &run(1.4, 5.9, 2));
        assert_eq!(figs.len(), 7, "{figs:#?}");
        assert!(report(&figs, 3.0).1, "noise and 2.95× pass");
        let figs = figures(&base, &run(1.0, 6.1, 0));
        let (table, ok) = report(&figs, 3.0);
        assert!(!ok);
        assert!(
            table.contains(
                "| fleet migration maxParallel 1: operator / psql | 2 | 6.1 | **REGRESSED** |"
            ),
            "{table}"
        );
        // A baseline of 0 status writes: a few are noise, ten are not.
        assert!(report(&figures(&base, &run(1.0, 2.0, 9)), 3.0).1);
        assert!(!report(&figures(&base, &run(1.0, 2.0, 10)), 3.0).1);
    }

    #[test]
    fn a_small_ratio_moved_by_the_floor_noise_alone_passes() {
        // CI, 2026-12-04: provisioning N=5 went 1.49 → 4.62 because the psql floor ran faster.
        let base = run(1.49, 2.0, 0);
        assert!(report(&figures(&base, &run(4.62, 2.0, 0)), 3.0).1);
        // A gross regression still fails.
        assert!(!report(&figures(&base, &run(6.5, 2.0, 0)), 3.0).1);
    }

    #[test]
    fn a_figure_lost_by_a_scenario_that_ran_fails() {
        let base = run(1.0, 2.0, 0);
        let mut cur = run(1.0, 2.0, 0);
        cur["fleet_migration"]["rows"][0]["ratio"] = Value::Null;
        let figs = figures(&base, &cur);
        assert_eq!(figs.len(), 7);
        assert!(!report(&figs, 3.0).1, "a lost figure is a regression");
    }

    #[test]
    fn scenarios_missing_from_either_run_are_skipped() {
        let base = run(1.0, 2.0, 0);
        let mut cur = run(1.0, 2.0, 0);
        cur["fleet_migration"] = Value::Null;
        cur["memory"] = Value::Null;
        let figs = figures(&base, &cur);
        assert_eq!(figs.len(), 5);
        assert!(figs.iter().all(|f| !f.name.starts_with("fleet")));
    }
}
