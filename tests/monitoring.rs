//! The chart's monitoring files (issue 19): the alert rules `charts/tenantdb/files/alerts.yaml`,
//! their promtool unit tests `alerts_test.yaml` and the Grafana dashboard `dashboard.json`.
//!
//! - `promtool check rules` and `promtool test rules` pass, and every alert has a case where it
//!   fires and one where it must not; every alert has a severity, summary, description and a
//!   runbook_url whose anchor is a heading of docs/operations.md;
//! - the chart's PrometheusRule carries exactly the groups of alerts.yaml, the dashboard ConfigMap
//!   exactly dashboard.json (`helm template`);
//! - every PromQL expression of the dashboard and the rules parses (promtool: one recording rule
//!   per expression in a scratch rule file; promtool 2.42 has no expression check of its own);
//! - every metric name they use is exposed by the real operator (`--tenant-metrics-top 5`, a
//!   Tenant with quotas, so the opt-in per-tenant families have series);
//! - a real Prometheus (Debian package `prometheus`) scrapes the operator every second and
//!   evaluates alerts.yaml: a tenant whose data grows past 80 % of its storage quota raises the
//!   storage-near-quota alerts (the fleet one and the per-tenant one naming it). The test's copy
//!   of the rules has every `for:` set to 0s so that it passes in seconds (the chart keeps its
//!   durations; promtool's unit tests cover them).
//!
//! A missing `promtool`, `prometheus` or `helm` fails these tests (no skip): `apt-get install
//! --no-install-recommends prometheus` (scripts/setup.sh), helm from scripts/chart-check.sh.
//! `PROMTOOL`, `PROMETHEUS` and `HELM` override the binaries.

use tenantdb_testkit::{e2e, ops};

#[path = "monitoring/prometheus.rs"]
mod prometheus;
#[path = "monitoring/promql.rs"]
mod promql;

use prometheus::Prometheus;
use promql::{metric_names, substitute};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{Env, tail, wait_for};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use sqlx::Executor;

const T: Duration = Duration::from_secs(90);

fn files() -> PathBuf {
    tenantdb_testkit::repo_root().join("charts/tenantdb/files")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tool(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs a tool; (success, stdout + stderr). A tool that cannot be started fails the test.
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {cmd:?}: {e}\npromtool and prometheus come with the Debian package: \
             apt-get install --no-install-recommends prometheus (scripts/setup.sh)"
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    run(Command::new(tool("PROMTOOL", "promtool"))
        .args(args)
        .current_dir(dir))
}

/// Every alerting rule of alerts.yaml (the rule objects).
fn alerts() -> Vec<Value> {
    let rules = yaml(&files().join("alerts.yaml"));
    let all: Vec<Value> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect();
    assert!(all.len() >= 11, "alerts.yaml lost rules: {}", all.len());
    all
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yaml"], &files());
    assert!(ok, "promtool check rules alerts.yaml:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yaml"], &files());
    assert!(ok, "promtool test rules alerts_test.yaml:\n{out}");
}

/// GitHub's anchor of a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_case_and_a_runbook() {
    let tests = yaml(&files().join("alerts_test.yaml"));
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for t in tests["tests"].as_array().expect("tests") {
        for case in t["alert_rule_test"].as_array().into_iter().flatten() {
            let name = str_of(case, "alertname").to_string();
            let expected = case["exp_alerts"].as_array().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let anchors: BTreeSet<String> = read(&tenantdb_testkit::repo_root().join("docs/operations.md"))
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| slug(h.trim_start_matches('#')))
        .collect();
    let names: BTreeSet<String> = alerts()
        .iter()
        .map(|a| str_of(a, "alert").to_string())
        .collect();
    let mut problems = Vec::new();
    for a in alerts() {
        let name = str_of(&a, "alert");
        if !fires.contains(name) {
            problems.push(format!("{name}: no test case where it fires"));
        }
        if !quiet.contains(name) {
            problems.push(format!("{name}: no test case where it must not fire"));
        }
        let severity = a["labels"]["severity"].as_str().unwrap_or("");
        if !["info", "warning", "critical"].contains(&severity) {
            problems.push(format!("{name}: severity {severity:?}"));
        }
        for key in ["summary", "description", "runbook_url"] {
            if a["annotations"][key].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        let url = a["annotations"]["runbook_url"].as_str().unwrap_or("");
        match url.split_once("/docs/operations.md#") {
            Some((_, anchor)) if anchors.contains(anchor) => {}
            _ => problems.push(format!(
                "{name}: runbook_url {url:?} is not a heading of docs/operations.md"
            )),
        }
    }
    for stale in fires.union(&quiet).filter(|n| !names.contains(*n)) {
        problems.push(format!("alerts_test.yaml tests an unknown alert {stale}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn helm_template(sets: &[&str]) -> Vec<Value> {
    let root = tenantdb_testkit::repo_root();
    let helm = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".tools/bin/helm"));
    let scratch =
        std::env::temp_dir().join(format!("tenantdb-monitoring-helm-{}", std::process::id()));
    let mut cmd = Command::new(&helm);
    cmd.args(["template", "tenantdb"])
        .arg(root.join("charts/tenantdb"))
        .args(["--namespace", "tenantdb-system"])
        .env("HELM_CACHE_HOME", scratch.join("cache"))
        .env("HELM_CONFIG_HOME", scratch.join("config"))
        .env("HELM_DATA_HOME", scratch.join("data"));
    for s in sets {
        cmd.args(["--set", s]);
    }
    let (ok, out) = run(&mut cmd);
    assert!(
        ok,
        "helm template {sets:?} (scripts/chart-check.sh installs helm):\n{out}"
    );
    let docs: Vec<Value> = serde_saphyr::from_multiple(&out).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_chart_ships_the_rule_file_and_the_dashboard_unchanged() {
    let rules = yaml(&files().join("alerts.yaml"));
    let groups = rules["groups"].as_array().unwrap();
    // Off by default.
    let default = helm_template(&[]);
    assert!(of_kind(&default, "PrometheusRule").is_empty());
    assert!(
        !default
            .iter()
            .any(|d| d["metadata"]["name"] == "tenantdb-dashboard")
    );
    // On: the groups of alerts.yaml, the fleet group only unless per-tenant alerts are asked for.
    let docs = helm_template(&[
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
        "monitoring.prometheusRule.namespace=monitoring",
    ]);
    let pr = of_kind(&docs, "PrometheusRule");
    assert_eq!(pr.len(), 1);
    assert_eq!(pr[0]["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pr[0]["metadata"]["namespace"], "monitoring");
    assert_eq!(
        pr[0]["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let fleet: Vec<Value> = groups
        .iter()
        .filter(|g| g["name"] != "tenantdb-per-tenant")
        .cloned()
        .collect();
    assert_eq!(pr[0]["spec"]["groups"], Value::Array(fleet));
    let docs = helm_template(&[
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.perTenantAlerts=true",
        "operator.tenantMetricsTop=5",
    ]);
    assert_eq!(
        of_kind(&docs, "PrometheusRule")[0]["spec"]["groups"],
        rules["groups"]
    );
    // Another runbook base: only the URLs change, anchors kept.
    let docs = helm_template(&[
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.runbookBaseUrl=https://wiki.example.com/ops",
    ]);
    let text = serde_json::to_string(&of_kind(&docs, "PrometheusRule")[0]["spec"]).unwrap();
    assert!(!text.contains("github.com"), "{text}");
    assert!(
        text.contains("https://wiki.example.com/ops#tenantdboperatordown"),
        "{text}"
    );
    // The dashboard ConfigMap: the sidecar label, the JSON as it is in the chart.
    let docs = helm_template(&["monitoring.dashboard.enabled=true"]);
    let cm = of_kind(&docs, "ConfigMap");
    let cm = cm
        .iter()
        .find(|c| c["metadata"]["name"] == "tenantdb-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(cm["data"]["tenantdb.json"].as_str().unwrap()).unwrap();
    let file: Value = serde_json::from_str(&read(&files().join("dashboard.json"))).unwrap();
    assert_eq!(shipped, file);
}

/// Every PromQL expression of the dashboard: (where, expression with Grafana's variables).
fn dashboard_exprs() -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&read(&files().join("dashboard.json"))).unwrap();
    let mut out = Vec::new();
    let vars = d["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            v["datasource"]["uid"], "${datasource}",
            "variable {}",
            v["name"]
        );
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap();
        // label_values(<selector>, <label>): the selector is the expression.
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.rsplit_once(','))
            .map_or(q, |(sel, _)| sel);
        out.push((format!("variable {}", v["name"]), inner.to_string()));
    }
    for name in ["server", "namespace", "tenant"] {
        assert!(
            vars.iter().any(|v| v["name"] == name),
            "no ${name} variable"
        );
    }
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {}",
                p["title"]
            );
            out.push((
                format!("panel {:?}", p["title"].as_str().unwrap_or("")),
                str_of(t, "expr").to_string(),
            ));
        }
        if p["type"] != "row" && p["type"] != "text" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {}",
                p["title"]
            );
        }
    }
    out
}

fn rule_exprs() -> Vec<(String, String)> {
    alerts()
        .iter()
        .map(|a| {
            (
                format!("alert {}", str_of(a, "alert")),
                str_of(a, "expr").to_string(),
            )
        })
        .collect()
}

/// `promtool check rules` on a scratch rule file with one recording rule per expression.
fn check_exprs(exprs: &[(String, String)]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!(
        "tenantdb-exprs-{}-{}",
        std::process::id(),
        exprs.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| json!({"record": format!("check:expr_{i}"), "expr": substitute(e)}))
        .collect();
    let file = dir.join("exprs.yaml");
    // JSON is YAML: no quoting questions.
    std::fs::write(
        &file,
        json!({"groups": [{"name": "exprs", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let (ok, out) = promtool(&["check", "rules", "exprs.yaml"], &dir);
    let _ = std::fs::remove_dir_all(&dir);
    if ok && out.contains(&format!("SUCCESS: {} rules found", exprs.len())) {
        return Ok(());
    }
    let listing: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, (w, e))| format!("  check:expr_{i} ({w}): {e}"))
        .collect();
    Err(format!("{out}\n{}", listing.join("\n")))
}

#[test]
fn every_promql_expression_of_the_dashboard_and_rules_parses() {
    let dash = dashboard_exprs();
    assert!(dash.len() >= 25, "dashboard expressions: {}", dash.len());
    let mut all = dash;
    all.extend(rule_exprs());
    check_exprs(&all).unwrap_or_else(|e| panic!("promtool check rules:\n{e}"));
    // The check can fail: a broken expression is reported.
    let broken = vec![(
        "broken".to_string(),
        "sum(rate(tenantdb_reconciles_total[$__rate_interval])".to_string(),
    )];
    assert!(
        check_exprs(&broken).is_err(),
        "promtool accepted an unbalanced parenthesis"
    );
}

/// Names a Prometheus scrape of the operator has: samples, plus what every declared family would
/// produce (a counter without increments still declares `<name>_total`).
fn exposed_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in body.lines() {
        if let Some(decl) = l.strip_prefix("# TYPE ") {
            let mut it = decl.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "info" => &["_info"],
                "histogram" | "summary" | "gaugehistogram" => &["_bucket", "_sum", "_count", ""],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            names.insert(l[..end].to_string());
        }
    }
    names
}

/// Names of the samples only (families with series).
fn sample_names(body: &str) -> BTreeSet<String> {
    let samples: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    exposed_names(&samples.join("\n"))
}

async fn metrics(addr: &str) -> String {
    let (code, resp) = e2e::http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "/metrics: {resp}");
    resp.split_once("\r\n\r\n")
        .map_or(resp.clone(), |(_, b)| b.to_string())
}

/// Names that are Prometheus's own, not the operator's.
const BUILTIN: &[&str] = &["up", "ALERTS", "ALERTS_FOR_STATE"];

/// Families that must have series here: a Tenant with quotas, `--tenant-metrics-top 5`, and a
/// Tenant whose reconciles failed (`DatabaseUnavailable`).
const WITH_SERIES: &[&str] = &[
    "tenantdb_tenants",
    "tenantdb_server_up",
    "tenantdb_leader",
    "tenantdb_build_info",
    "tenantdb_migration_tenants_total",
    "tenantdb_tenant_storage_bytes",
    "tenantdb_tenant_storage_limit_bytes",
    "tenantdb_tenant_connections",
    "tenantdb_tenant_connection_limit",
    "tenantdb_reconcile_errors_total",
];

/// Counters that prometheus-client leaves out of /metrics until their first increment, and that
/// this test cannot provoke cheaply: accepted when src/metrics.rs registers them by that name.
const NO_SERIES_UNTIL_USED: &[(&str, &str)] = &[
    (
        "tenantdb_reconciles_unchanged_total",
        "reconciles_unchanged",
    ),
    ("tenantdb_resyncs_deferred_total", "resyncs_deferred"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_dashboard_and_rules_is_exposed_by_the_operator() {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (w, e) in dashboard_exprs().into_iter().chain(rule_exprs()) {
        for n in metric_names(&e) {
            used.entry(n).or_default().insert(w.clone());
        }
    }
    assert!(used.len() >= 20, "metric names found: {:?}", used.keys());
    let env =
        Env::start_with(&["--tenant-metrics-top", "5", "--usage-interval-seconds", "1"]).await;
    env.create_tenant(
        "mon",
        "quota",
        json!({"isolation": "schema", "quotas": {"storage": "1Gi", "maxConnections": 10}}),
    )
    .await;
    env.wait_ready("mon", "quota", T).await;
    let addr = env.http_addr().await;
    // Reconcile errors have no series until one happens: a Tenant created while PostgreSQL is
    // stopped fails with DatabaseUnavailable (retried, so counted); then PostgreSQL comes back.
    tokio::task::block_in_place(|| env.pg.stop_server()).expect("stop PostgreSQL");
    env.create_tenant("mon", "outage", json!({"isolation": "schema"}))
        .await;
    let errors =
        r#"tenantdb_reconcile_errors_total{controller="tenant",category="DatabaseUnavailable"}"#;
    let counted = wait_for(T, "a DatabaseUnavailable reconcile error", || async {
        ops::metric(&metrics(&addr).await, errors).filter(|n| *n > 0.0)
    })
    .await;
    tokio::task::block_in_place(|| env.pg.start_server()).expect("restart PostgreSQL");
    counted.unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 20)));
    env.wait_ready("mon", "outage", T).await;
    // The per-tenant families have the tenant's series once it is measured.
    let got = wait_for(T, "every family with series", || async {
        let body = metrics(&addr).await;
        let samples = sample_names(&body);
        WITH_SERIES
            .iter()
            .all(|n| samples.contains(*n))
            .then_some(body)
    })
    .await;
    let body = match got {
        Ok(body) => body,
        Err(e) => {
            let body = metrics(&addr).await;
            let samples = sample_names(&body);
            let missing: Vec<_> = WITH_SERIES
                .iter()
                .filter(|n| !samples.contains(**n))
                .collect();
            panic!(
                "{e}: no series of {missing:?}\n{body}\n{}",
                tail(&env.operator_log(), 20)
            )
        }
    };
    assert_eq!(
        ops::metric(
            &body,
            r#"tenantdb_tenant_storage_limit_bytes{namespace="mon",tenant="quota"}"#
        ),
        Some(1073741824.0),
        "the quota of mon/quota:\n{body}"
    );
    let mut exposed = exposed_names(&body);
    let registered = read(&tenantdb_testkit::repo_root().join("src/metrics.rs"));
    for (name, registration) in NO_SERIES_UNTIL_USED {
        if registered.contains(&format!("\"{registration}\"")) {
            exposed.insert(name.to_string());
        }
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(n, _)| !exposed.contains(*n) && !BUILTIN.contains(&n.as_str()))
        .map(|(n, w)| {
            format!(
                "{n} (used by {})",
                w.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not exposed by the operator:\n{}\n--- /metrics ---\n{body}",
        missing.join("\n")
    );
}

/// alerts.yaml with every `for:` set to 0s (the e2e needs seconds, not the chart's minutes).
fn rules_without_for() -> String {
    let text = read(&files().join("alerts.yaml"));
    let mut n = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => {
                n += 1;
                format!("{}for: 0s", &l[..l.len() - l.trim_start().len()])
            }
            None => l.to_string(),
        })
        .collect();
    assert!(n >= 8, "for: lines rewritten: {n}");
    out.join("\n")
}

fn active<'a>(alerts: &'a [Value], name: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| {
            a["labels"]["alertname"] == name
                && ["pending", "firing"].contains(&a["state"].as_str().unwrap_or(""))
        })
        .collect()
}

/// The tenant's measured usage: (storage bytes, percent of the quota).
async fn usage(env: &Env, ns: &str, name: &str) -> Option<(i64, i32)> {
    let u = env.tenants(ns).get(name).await.ok()?.status?.usage?;
    Some((u.storage_bytes, u.percent.unwrap_or(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_the_storage_alert_when_a_tenant_nears_its_quota() {
    let env = Env::start_with(&[
        "--tenant-metrics-top",
        "5",
        "--usage-interval-seconds",
        "1",
        "--resync-seconds",
        "1",
    ])
    .await;
    let (ns, name) = ("mon", "acme");
    env.create_tenant(
        ns,
        name,
        json!({"isolation": "schema", "quotas": {"storage": "1Gi"}}),
    )
    .await;
    env.wait_ready(ns, name, T).await;
    let (empty, _) = wait_for(T, "first measurement", || usage(&env, ns, name))
        .await
        .unwrap();
    // A quota with 2 MiB of room: the empty tenant is well under 80 %.
    let quota = empty + 2 * 1024 * 1024;
    env.tenants(ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quotas": {"storage": quota.to_string()}}})),
        )
        .await
        .unwrap();
    wait_for(T, "the new quota in the operator's metrics", || async {
        let body = metrics(&env.http_addr().await).await;
        let series =
            format!(r#"tenantdb_tenant_storage_limit_bytes{{namespace="{ns}",tenant="{name}"}}"#);
        (ops::metric(&body, &series) == Some(quota as f64)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 20)));

    let prom = Prometheus::start(&env.http_addr().await, &rules_without_for()).await;
    // Quiet while under 80 %: once Prometheus has the tenant's series and has evaluated the rules
    // after that, no storage alert is active.
    let selector =
        format!(r#"tenantdb_tenant_storage_limit_bytes{{namespace="{ns}",tenant="{name}"}}"#);
    let got = wait_for(T, "the tenant's series in Prometheus", || async {
        prom.query(&selector).await.filter(|r| !r.is_empty())
    })
    .await;
    if let Err(e) = got {
        panic!("{e}\n{}", prom.diagnose().await)
    }
    let seen = jiff::Timestamp::now();
    for group in ["tenantdb", "tenantdb-per-tenant"] {
        let got = wait_for(T, &format!("rule group {group} evaluated"), || async {
            prom.last_evaluation(group).await.filter(|t| *t > seen)
        })
        .await;
        if let Err(e) = got {
            panic!("{e}\n{}", prom.diagnose().await)
        }
    }
    let (_, percent) = usage(&env, ns, name).await.unwrap();
    assert!(percent < 80, "the empty tenant is at {percent} % already");
    let alerts = prom.alerts().await.expect("/api/v1/alerts");
    for a in [
        "TenantdbTenantStorageNearQuota",
        "TenantdbTenantStorageNearQuotaByTenant",
    ] {
        assert!(
            active(&alerts, a).is_empty(),
            "{a} active at {percent} %: {alerts:#?}"
        );
    }

    // The tenant writes until the operator measures >= 80 % (chunks of ~8 % of the quota, each
    // waited for in status: it moves by more than the 5 % that status reports).
    let mut c = env
        .connect_with_secret(ns, &format!("{name}-db"))
        .await
        .unwrap();
    c.execute("CREATE TABLE filler (id bigserial PRIMARY KEY, blob text NOT NULL)")
        .await
        .unwrap();
    let rows = (quota / 12 / 2200).max(1);
    let mut last = usage(&env, ns, name).await.unwrap();
    for round in 0.. {
        if last.1 >= 80 {
            break;
        }
        assert!(round < 40, "still at {} % after {round} chunks", last.1);
        // ~2 KB of hard-to-compress text per row.
        sqlx::query(
            "INSERT INTO filler (blob) SELECT (SELECT string_agg(md5(g::text || ':' || i::text || random()::text), '') \
             FROM generate_series(1, 64) AS i) FROM generate_series(1, $1) AS g",
        )
        .bind(rows)
        .execute(&mut c)
        .await
        .unwrap();
        let before = last.0;
        last = wait_for(T, "the chunk measured", || async {
            usage(&env, ns, name).await.filter(|(b, _)| *b > before)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 20)));
    }
    let percent = last.1;
    eprintln!(
        "empty tenant {empty} B, quota {quota} B: now {} B = {percent} %",
        last.0
    );
    assert!(
        (80..100).contains(&percent),
        "the tenant is at {percent} % (wanted 80..100)"
    );
    drop(c);

    // Both storage alerts become active: the fleet one (per server) and the one naming the tenant.
    let got = wait_for(T, "storage-near-quota alerts pending or firing", || async {
        let alerts = prom.alerts().await?;
        let fleet = !active(&alerts, "TenantdbTenantStorageNearQuota").is_empty();
        let named = !active(&alerts, "TenantdbTenantStorageNearQuotaByTenant").is_empty();
        (fleet && named).then_some(alerts)
    })
    .await;
    let alerts = match got {
        Ok(alerts) => alerts,
        Err(e) => panic!(
            "{e} (tenant at {percent} %)\nactive: {:#?}\n{}\n--- operator ---\n{}",
            prom.alerts().await,
            prom.diagnose().await,
            tail(&env.operator_log(), 20)
        ),
    };
    let named = active(&alerts, "TenantdbTenantStorageNearQuotaByTenant");
    assert_eq!(named.len(), 1, "{named:#?}");
    assert_eq!(named[0]["labels"]["namespace"], ns);
    assert_eq!(named[0]["labels"]["tenant"], name);
    assert_eq!(named[0]["labels"]["severity"], "warning");
    let summary = named[0]["annotations"]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        format!("Tenant {ns}/{name} near its storage quota")
    );
    let fleet = active(&alerts, "TenantdbTenantStorageNearQuota");
    assert_eq!(fleet[0]["labels"]["server"], "default", "{fleet:#?}");
    assert_eq!(
        fleet[0]["value"]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok()),
        Some(1.0),
        "{fleet:#?}"
    );
    // Nothing that says the operator or its server is broken.
    for a in [
        "TenantdbOperatorDown",
        "TenantdbNoLeader",
        "TenantdbServerUnreachable",
        "TenantdbTenantStorageOverQuota",
    ] {
        assert!(active(&alerts, a).is_empty(), "{a} active: {alerts:#?}");
    }
}
