//! Scenario 6, placement (issue 16): multi-server placement.
//!
//! (a) **Fleet**: `N` `schema` Tenants with `spec.placement.selector` (`tier=standard`) through the
//! real operator binary, on one DatabaseServer and spread over three (each a throwaway PostgreSQL
//! cluster of the same kind; the operator's `--database-url` default server is a fourth, idle
//! cluster in both runs, so both runs take the same code path). The operator is started and every
//! DatabaseServer is Ready before the Tenants are created; the time runs from the first create to
//! the last Tenant seen Ready. The spread comes from `status.placement.postgres` and is checked
//! against `pg_roles` on every cluster. Ratio = 3 servers / 1 server (below 1: spreading is faster).
//!
//! (b) **Decision CPU**, in this process: [`tenantdb::servers::placement::choose`] over 10 and 100
//! fake candidates, and the aggregation the operator's `candidates()` does before each decision
//! (crate-private, so re-done here with the same public pieces: the reflector store's `state()`,
//! `Registry::reservations()`, `object_key`, `quota::effective`), over 1,000 and 10,000 fake Ready
//! Tenants.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::reflector::store::{Store, Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tenantdb::crd::{DatabaseServer, Isolation, ServerChoice, Tenant};
use tenantdb::quota::QuotaDefaults;
use tenantdb::servers::Registry;
use tenantdb::servers::placement::{Candidate, Need, choose};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

use crate::cli::Cfg;
use crate::common::{CONCURRENCY, NS, log, percentile, round, start_pg, stats_json, tenant_name};
use crate::env::{Env, cpu_seconds, machine_cpu, metric_sum, rss_mib};
use crate::floor;

/// The operator's namespace (admin Secrets of the DatabaseServers live here), as in the e2e tests.
pub(crate) const OPERATOR_NS: &str = tenantdb_testkit::cluster::OPERATOR_NAMESPACE;
/// `capacity.maxTenants` of every DatabaseServer: above N, so it never refuses, but set, because
/// placement picks the least utilised server and a server without any limit has utilisation 0
/// (without a limit every tenant would go to the first server by name).
const MAX_TENANTS: i64 = 1000;

pub async fn placement(cfg: &Cfg) -> Result<Value> {
    let n = cfg.placement_tenants;
    log("placement: decision CPU micro-benchmark (10/100 servers, 1k/10k tenants)");
    let quick = cfg.quick;
    let (decision, aggregation, unlimited_note) =
        tokio::task::spawn_blocking(move || micro(quick)).await?;

    let mut rows = Vec::new();
    for servers in [1usize, 3] {
        rows.push(fleet(cfg, servers, n).await?);
    }
    let ratio = match (
        rows[0]["all_ready_s"].as_f64(),
        rows[1]["all_ready_s"].as_f64(),
    ) {
        (Some(one), Some(three)) if one > 0.0 => json!(round(three / one, 2)),
        _ => Value::Null,
    };
    Ok(json!({
        "tenants": n,
        "isolation": "schema",
        "operator_concurrency": CONCURRENCY,
        "placement": "selector matchLabels tier=standard",
        "capacity_max_tenants": MAX_TENANTS,
        "one_server_setup": "one DatabaseServer (pg-1, its own cluster) selected by the same selector; the default server (--database-url) is an idle cluster in both runs",
        "method": "operator started, every DatabaseServer Ready, then N Tenants created (16 concurrent requests); time from the first create to the last Tenant seen Ready",
        "rows": rows,
        "ratio_3_vs_1": ratio,
        "decision": decision,
        "aggregation": aggregation,
        "unlimited_servers_note": unlimited_note,
    }))
}

// --- (a) the fleet through the operator ------------------------------------------------------

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Admin Secret (operator namespace) and DatabaseServer `name` for the cluster `pg`.
pub(crate) async fn add_server(env: &Env, name: &str, pg: &LocalPg) -> Result<()> {
    env.ensure_namespace(OPERATOR_NS).await?;
    let [secret, ds] = tenantdb_testkit::cluster::database_server_manifests(
        name,
        pg,
        json!({"maxTenants": MAX_TENANTS}),
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), OPERATOR_NS);
    let secret: Secret = serde_json::from_value(secret)?;
    secrets.create(&PostParams::default(), &secret).await?;
    let ds: DatabaseServer = serde_json::from_value(ds)?;
    Api::<DatabaseServer>::all(env.client.clone())
        .create(&PostParams::default(), &ds)
        .await?;
    Ok(())
}

/// Registers the DatabaseServers (`add_server`), starts the operator (`--concurrency`,
/// `--operator-namespace`) and waits until it and every server are Ready; the operator's pid.
/// The namespace `NS` exists by then.
pub(crate) async fn start_operator_with_servers(
    env: &mut Env,
    cfg: &Cfg,
    servers: &[(String, &LocalPg)],
) -> Result<u32> {
    for (name, pg) in servers {
        add_server(env, name, pg).await?;
    }
    env.ensure_namespace(NS).await?;
    env.spawn_operator(
        &cfg.operator,
        &[
            "--concurrency".into(),
            CONCURRENCY.to_string(),
            "--operator-namespace".into(),
            OPERATOR_NS.into(),
        ],
    )?;
    let pid = env
        .operator_pid
        .ok_or_else(|| anyhow::anyhow!("operator not started"))?;
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    let names: Vec<String> = servers.iter().map(|(n, _)| n.clone()).collect();
    wait_servers_ready(env, &names, Duration::from_secs(60)).await?;
    Ok(pid)
}

/// Waits until every DatabaseServer in `names` has `Ready=True`.
pub(crate) async fn wait_servers_ready(
    env: &Env,
    names: &[String],
    timeout: Duration,
) -> Result<()> {
    let api: Api<DatabaseServer> = Api::all(env.client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let mut ready = 0;
        for name in names {
            let ok = api
                .get_opt(name)
                .await?
                .and_then(|d| d.status)
                .is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                });
            ready += usize::from(ok);
        }
        if ready == names.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "DatabaseServers not Ready after {timeout:?} ({ready}/{})\n{}",
                names.len(),
                env.operator_log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which of `roles` exist on the cluster `pg`.
async fn roles_present(
    pg: &LocalPg,
    roles: &[String],
) -> Result<std::collections::HashSet<String>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.admin_url())
        .await?;
    let found: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind(roles)
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    Ok(found.into_iter().collect())
}

/// WARN and ERROR lines of the operator's JSON log: counts per level, and the distinct messages
/// (message + error field) with their count and one full sample line (truncated).
pub(crate) fn log_problems(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    let mut distinct: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let level = v["level"].as_str().unwrap_or_default();
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        *levels.entry(level.to_string()).or_default() += 1;
        let mut key = format!("{level} {}", v["message"].as_str().unwrap_or_default());
        if let Some(e) = v["error"].as_str() {
            // Tenant names and numbers vary: keep the first 160 characters of the error.
            key.push_str(" | ");
            key.push_str(&e.chars().take(160).collect::<String>());
        }
        let e = distinct
            .entry(key)
            .or_insert_with(|| (0, line.chars().take(700).collect()));
        e.0 += 1;
    }
    let mut top: Vec<(String, (usize, String))> = distinct.into_iter().collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1.0));
    json!({
        "warn": levels.get("WARN").copied().unwrap_or(0),
        "error": levels.get("ERROR").copied().unwrap_or(0),
        "distinct": top.iter().take(15).map(|(k, (c, sample))| json!({"count": c, "key": k, "sample": sample})).collect::<Vec<_>>(),
    })
}

/// Provisions `n` schema Tenants over `servers` DatabaseServers and returns the row.
async fn fleet(cfg: &Cfg, servers: usize, n: usize) -> Result<Value> {
    log(format!(
        "placement: {n} schema tenants on {servers} DatabaseServer(s) (operator)"
    ));
    let load_before = loadavg();
    let mut env = Env::start(
        cfg,
        &format!("placement-{servers}"),
        LocalPgOptions::default(),
    )
    .await?;
    let mut pgs = Vec::new();
    for _ in 0..servers {
        pgs.push(start_pg(LocalPgOptions::default()).await?);
    }
    let server_names: Vec<String> = (1..=servers).map(|i| format!("pg-{i}")).collect();
    let named: Vec<(String, &LocalPg)> = server_names.iter().cloned().zip(&pgs).collect();
    let pid = start_operator_with_servers(&mut env, cfg, &named).await?;

    let names: Vec<String> = (1..=n).map(tenant_name).collect();
    let spec = json!({
        "isolation": "schema",
        "deletionPolicy": "Retain",
        "placement": {"selector": {"matchLabels": {"tier": "standard"}}},
    });
    let before = env.api.stats();
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let (busy0, total0) = machine_cpu();
    let t0 = Instant::now();
    env.create_tenants(NS, &names, &spec, 16).await?;
    let create_s = t0.elapsed().as_secs_f64();
    if let Err(e) = env
        .tracker
        .wait(Duration::from_secs(1800), "all tenants Ready", |r, _| {
            r >= n
        })
        .await
    {
        bail!("{e}\n{}", env.operator_log_tail(40));
    }
    let all_ready_s = env
        .tracker
        .last_ready()
        .unwrap()
        .duration_since(t0)
        .as_secs_f64();
    let (busy1, total1) = machine_cpu();
    let op_cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let op_rss = rss_mib(pid).map(|r| r.1).unwrap_or(0.0);
    let api = env.api.stats().since(&before);
    let load_after = loadavg();
    let mut per_tenant: Vec<f64> = names
        .iter()
        .filter_map(|name| env.tracker.get(&format!("{NS}/{name}")))
        .filter_map(|s| s.ready_at)
        .map(|at| at.duration_since(t0).as_secs_f64())
        .collect();
    per_tenant.sort_by(|a, b| a.partial_cmp(b).unwrap());
    log(format!("  all Ready: {all_ready_s:.2} s"));

    // Spread: status.placement.postgres, checked against pg_roles on every cluster.
    let tenants: Api<Tenant> = Api::namespaced(env.client.clone(), NS);
    let list = tenants.list(&ListParams::default()).await?;
    let mut placed: HashMap<String, String> = HashMap::new();
    let mut spread: BTreeMap<String, usize> = BTreeMap::new();
    for t in &list.items {
        let on = t
            .status
            .as_ref()
            .and_then(|s| s.placement.as_ref())
            .and_then(|p| p.postgres.clone())
            .unwrap_or_else(|| "(none)".into());
        *spread.entry(on.clone()).or_default() += 1;
        placed.insert(t.metadata.name.clone().unwrap_or_default(), on);
    }
    let role_of: HashMap<String, String> = names
        .iter()
        .map(|name| {
            let r = floor::names_for(NS, name, Isolation::Schema)
                .role
                .as_str()
                .to_string();
            (name.clone(), r)
        })
        .collect();
    let all_roles: Vec<String> = role_of.values().cloned().collect();
    let mut roles_per_cluster: BTreeMap<String, usize> = BTreeMap::new();
    let mut mismatches = 0usize;
    let mut present_by_cluster = Vec::new();
    for (name, pg) in server_names.iter().zip(&pgs) {
        let present = roles_present(pg, &all_roles).await?;
        roles_per_cluster.insert(name.clone(), present.len());
        present_by_cluster.push((name.clone(), present));
    }
    let default_roles = roles_present(&env.pg, &all_roles).await?.len();
    for name in &names {
        let role = &role_of[name];
        let on = placed.get(name).map(String::as_str).unwrap_or("(none)");
        for (cluster, present) in &present_by_cluster {
            // The role must be on the cluster its status names, and only there.
            if present.contains(role) != (cluster == on) {
                mismatches += 1;
            }
        }
    }
    // The DatabaseServers' own count (written on their probe interval, 10 s by default).
    let ds_api: Api<DatabaseServer> = Api::all(env.client.clone());
    let mut server_status: BTreeMap<String, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        server_status.clear();
        for name in &server_names {
            let t = ds_api
                .get(name)
                .await?
                .status
                .map(|s| s.tenants)
                .unwrap_or(-1);
            server_status.insert(name.clone(), t);
        }
        if server_status.values().sum::<i64>() == n as i64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = env.metrics().await.unwrap_or_default();
    let reconcile_errors = metric_sum(
        &metrics,
        "tenantdb_reconcile_errors_total",
        &["controller=\"tenant\""],
    );
    env.stop_operator().await;
    let problems = log_problems(&env.dir.join("operator.log"));
    log(format!(
        "  spread (status): {spread:?}; roles per cluster: {roles_per_cluster:?}; mismatches {mismatches}; log WARN {} ERROR {}",
        problems["warn"], problems["error"]
    ));
    drop(pgs);
    let spread_text = server_names
        .iter()
        .map(|s| spread.get(s).copied().unwrap_or(0).to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    Ok(json!({
        "servers": servers,
        "tenants": n,
        "create_s": round(create_s, 2),
        "all_ready_s": round(all_ready_s, 3),
        "tenants_per_s": round(n as f64 / all_ready_s, 2),
        "ready_p50_s": round(percentile(&per_tenant, 50.0), 2),
        "ready_p90_s": round(percentile(&per_tenant, 90.0), 2),
        "spread": spread,
        "spread_text": spread_text,
        "pg_roles_per_cluster": roles_per_cluster,
        "pg_roles_on_default_server": default_roles,
        "placement_role_mismatches": mismatches,
        "server_status_tenants": server_status,
        "operator_cpu_s": round(op_cpu, 2),
        "operator_cpu_ms_per_tenant": round(op_cpu * 1000.0 / n as f64, 2),
        "operator_peak_rss_mib": round(op_rss, 1),
        "machine_cpu_busy_share": round((busy1 - busy0) / (total1 - total0).max(1e-9), 3),
        "operator_reconcile_errors": reconcile_errors,
        "operator_log": problems,
        "api": stats_json(&api),
        "api_writes_per_tenant": round(api.writes("*", None) as f64 / n as f64, 2),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }))
}

// --- (b) the decision itself, in this process ------------------------------------------------

/// A small deterministic PRNG (xorshift64*), so the fake fleet is the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const GIB: i64 = 1 << 30;
const MIB: i64 = 1 << 20;

/// `count` fake servers as placement sees them: 80 % `tier=standard` (the rest `premium`), two
/// regions, capacity 500 tenants / 500 GiB / 10,000 connections, 0–450 tenants each using 20–200
/// MiB and 20 connections; every 10th cordoned, every 20th not Ready. `full`: every server at
/// its `maxTenants`.
fn fake_servers(count: usize, full: bool) -> Vec<Candidate> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ count as u64);
    (0..count)
        .map(|i| {
            let tenants = if full { 500 } else { rng.below(451) as i64 };
            // 20-200 MiB per tenant on average.
            let storage = tenants * (20 + rng.below(181) as i64) * MIB;
            let labels: BTreeMap<String, String> = [
                (
                    "tier".to_string(),
                    if i % 5 == 4 { "premium" } else { "standard" }.to_string(),
                ),
                (
                    "topology.kubernetes.io/region".to_string(),
                    if i % 2 == 0 { "eu-west-1" } else { "us-east-1" }.to_string(),
                ),
            ]
            .into();
            let ready = i % 20 != 19;
            Candidate {
                name: format!("pg-{i:03}"),
                labels,
                ready,
                not_ready_reason: (!ready).then(|| "connection refused".to_string()),
                cordoned: i % 10 == 9,
                cordon_reason: None,
                default: i == 0,
                max_tenants: Some(500),
                max_storage: Some(500 * GIB),
                max_connections: Some(10_000),
                tenants,
                storage_bytes: storage,
                connections: tenants * 20,
            }
        })
        .collect()
}

fn selector_standard() -> ServerChoice {
    serde_json::from_value(json!({"selector": {"matchLabels": {"tier": "standard"}}}))
        .expect("placement")
}

/// Times `batches` batches of `per_batch` calls of `f`; per-call nanoseconds of each batch,
/// sorted.
fn time_batches(batches: usize, per_batch: usize, mut f: impl FnMut()) -> Vec<f64> {
    // Warm-up.
    for _ in 0..per_batch {
        f();
    }
    let mut out: Vec<f64> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

/// A fake Ready Tenant as the operator's cache holds it (status as a provisioned schema tenant
/// has it), placed on `server`; every other one has quotas (maxConnections 20, statementTimeout
/// 30s, storage 5Gi), the others none.
fn fake_tenant(i: usize, server: &str, storage: i64) -> Tenant {
    let name = format!("t{i:05}");
    let ns = format!("team-{:02}", i % 40);
    let role = format!("tenant_{ns}_{name}_{:08x}", i * 2_654_435_761 % (1 << 32));
    let cond = |t: &str, s: &str, r: &str| {
        json!({"type": t, "status": s, "reason": r, "message": "", "observedGeneration": 1,
               "lastTransitionTime": "2026-12-03T02:59:20Z"})
    };
    let mut spec = json!({
        "isolation": "schema",
        "deletionPolicy": "Delete",
        "placement": {"selector": {"matchLabels": {"tier": "standard"}}},
    });
    if i.is_multiple_of(2) {
        spec["quotas"] = json!({"maxConnections": 20, "statementTimeout": "30s", "storage": "5Gi"});
    }
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("00000000-0000-0000-0000-{i:012}"),
            "generation": 1, "resourceVersion": format!("{}", 1000 + i),
            "finalizers": ["tenantdb.io/finalizer"],
            "labels": {"tenantdb.io/tier": "standard"},
        },
        "spec": spec,
        "status": {
            "phase": "Ready",
            "observedGeneration": 1,
            "conditions": [cond("Ready", "True", "Provisioned"), cond("Provisioned", "True", "Provisioned"), cond("Degraded", "False", "Healthy")],
            "database": "tenantdb_shared",
            "schema": role,
            "role": role,
            "secretName": format!("{name}-db"),
            "schemaVersion": 20250101000007i64,
            "usage": {"storageBytes": storage, "readOnly": false, "measuredAt": "2026-12-03T03:00:00Z"},
            "health": {"healthy": true, "lastChecked": "2026-12-03T03:00:00Z", "latencyMs": 10, "message": "ok"},
            "credentials": {"activeUser": role},
            "placement": {"postgres": server},
        },
    }))
    .expect("fake tenant")
}

/// What `candidates()` (src/controller/tenant/place.rs) does: the Tenant cache's `state()`, a
/// copy of the reservations, the operator's own aggregation
/// (`tenantdb::controller::tenant::usage_by_server`: per Tenant its key, its server, storage and
/// effective connection limit, summed per server), then one Candidate per server (labels and
/// capacity copied). Not re-done: the registry's server list and each server's facts/`is_down`
/// (a lock and an atomic per server).
fn aggregate(
    store: &Store<Tenant>,
    registry: &Registry,
    servers: &[Candidate],
    defaults: &QuotaDefaults,
    except: Option<&str>,
) -> Vec<Candidate> {
    let tenants = store.state();
    let usage = tenantdb::controller::tenant::usage_by_server(
        tenants.iter().map(|t| t.as_ref()),
        tenantdb::crd::Engine::Postgres,
        &registry.reservations(),
        defaults,
        except,
    );
    servers
        .iter()
        .map(|s| {
            let u = usage.get(&s.name).copied().unwrap_or_default();
            Candidate {
                labels: s.labels.clone(),
                name: s.name.clone(),
                not_ready_reason: s.not_ready_reason.clone(),
                tenants: u.tenants,
                storage_bytes: u.storage_bytes,
                connections: u.connections,
                ..s.clone()
            }
        })
        .collect()
}

fn stats_row(sorted_ns: &[f64]) -> Value {
    json!({
        "median_ns": round(percentile(sorted_ns, 50.0), 1),
        "p10_ns": round(percentile(sorted_ns, 10.0), 1),
        "p90_ns": round(percentile(sorted_ns, 90.0), 1),
    })
}

/// The micro-benchmarks: (decision rows, aggregation rows, note on servers without limits).
fn micro(quick: bool) -> (Value, Value, Value) {
    let batches = if quick { 51 } else { 301 };
    let placement = selector_standard();
    let need = Need {
        connections: Some(20),
    };
    let mut decision_rows = Vec::new();
    for count in [10usize, 100] {
        let per_batch = if count == 10 { 2000 } else { 200 };
        let room = fake_servers(count, false);
        let full = fake_servers(count, true);
        let by_name: ServerChoice =
            serde_json::from_value(json!({"server": format!("pg-{:03}", count / 2)})).unwrap();
        for (case, cands, p) in [
            (
                "selector tier=standard, servers with room",
                &room,
                &placement,
            ),
            (
                "selector tier=standard, every server full (all refused, reasons formatted)",
                &full,
                &placement,
            ),
            ("by name (spec.placement.server)", &room, &by_name),
        ] {
            let ns = time_batches(batches, per_batch, || {
                let r = choose(Some(black_box(p)), need, black_box(cands));
                black_box(r.map(|c| c.name.len()).unwrap_or(0));
            });
            let mut row = stats_row(&ns);
            row["servers"] = json!(count);
            row["case"] = json!(case);
            row["calls"] = json!(batches * per_batch);
            decision_rows.push(row);
        }
    }

    // Aggregation over fake Tenant caches.
    let defaults = QuotaDefaults::default();
    let mut aggregation_rows = Vec::new();
    for tenants in [1000usize, 10_000] {
        for server_count in [10usize, 100] {
            let servers = fake_servers(server_count, false);
            let mut rng = Rng(tenants as u64 * 31 + server_count as u64);
            let mut writer: Writer<Tenant> = Writer::default();
            let fake: Vec<Tenant> = (0..tenants)
                .map(|i| {
                    let on = &servers[rng.below(server_count as u64) as usize].name;
                    fake_tenant(i, on, 20 * MIB + rng.below(180) as i64 * MIB)
                })
                .collect();
            for t in &fake {
                writer.apply_watcher_event(&watcher::Event::Apply(t.clone()));
            }
            let store = writer.as_reader();
            let except = tenantdb::controller::object_key(&fake[0]);
            for reserved in [false, true] {
                let registry = Registry::new(None);
                if reserved {
                    for t in &fake {
                        let on = t.status.as_ref().unwrap().placement.as_ref().unwrap();
                        registry.reserve(
                            &tenantdb::controller::object_key(t),
                            on.postgres.as_deref().unwrap(),
                        );
                    }
                }
                let iterations = match (quick, tenants) {
                    (true, 1000) => 51,
                    (true, _) => 11,
                    (false, 1000) => 301,
                    (false, _) => 101,
                };
                let agg = time_batches(iterations, 1, || {
                    let c = aggregate(&store, &registry, &servers, &defaults, Some(&except));
                    black_box(c.len());
                });
                let decision = time_batches(iterations, 1, || {
                    let c = aggregate(&store, &registry, &servers, &defaults, Some(&except));
                    let chosen = choose(Some(&placement), need, &c).map(|c| c.name.len());
                    black_box(chosen.unwrap_or(0));
                });
                let check = aggregate(&store, &registry, &servers, &defaults, Some(&except));
                let counted: i64 = check.iter().map(|c| c.tenants).sum();
                assert_eq!(
                    counted as usize,
                    tenants - 1,
                    "aggregation counts every tenant"
                );
                aggregation_rows.push(json!({
                    "tenants": tenants,
                    "servers": server_count,
                    "reservations": if reserved { tenants } else { 0 },
                    "iterations": iterations,
                    "aggregation_median_us": round(percentile(&agg, 50.0) / 1000.0, 1),
                    "aggregation_p10_us": round(percentile(&agg, 10.0) / 1000.0, 1),
                    "aggregation_p90_us": round(percentile(&agg, 90.0) / 1000.0, 1),
                    "aggregation_ns_per_tenant": round(percentile(&agg, 50.0) / tenants as f64, 1),
                    "decision_median_us": round(percentile(&decision, 50.0) / 1000.0, 1),
                }));
            }
        }
    }

    // Servers without any capacity limit have utilisation 0: ties, broken by name.
    let mut unlimited = fake_servers(3, false);
    for c in &mut unlimited {
        c.max_tenants = None;
        c.max_storage = None;
        c.max_connections = None;
        c.ready = true;
        c.cordoned = false;
        c.labels.insert("tier".into(), "standard".into());
    }
    let mut picks: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..100 {
        let c = choose(Some(&placement), need, &unlimited).expect("a server");
        *picks.entry(c.name.clone()).or_default() += 1;
        let name = c.name.clone();
        if let Some(u) = unlimited.iter_mut().find(|u| u.name == name) {
            u.tenants += 1;
        }
    }
    let note = json!({
        "servers": 3,
        "placed": 100,
        "picks": picks,
        "note": "three Ready servers without capacity limits, 100 placements in a row (each counted): choose() returns the first by name every time (utilisation 0 everywhere)",
    });
    (
        json!({
            "method": "tenantdb::servers::placement::choose(Some(&placement), Need { connections: Some(20) }, &candidates) in this process (release build), fake candidates: 80 % tier=standard, 2 regions, capacity 500 tenants / 500 GiB / 10,000 connections, 0-450 tenants each, every 10th cordoned, every 20th not Ready; per-call time of batches of calls (2,000 calls per batch at 10 servers, 200 at 100), median / p10 / p90 over the batches",
            "rows": decision_rows,
        }),
        json!({
            "method": "the work of candidates() (src/controller/tenant/place.rs, crate-private) re-done with the public pieces: kube reflector Store<Tenant>::state() over N fake Ready schema Tenants (full status, half with quotas), Registry::reservations() (a copy of the map: empty after a restart, one entry per Tenant this process placed), per Tenant object_key + the server from status.placement.postgres (or the reservation) + usage.storageBytes + quota::effective(); one Candidate per server; except = one Tenant, as place() passes. Not included: Registry::all() and each server's facts() lock. decision = aggregation + choose(), what place() does under its lock",
            "rows": aggregation_rows,
        }),
        note,
    )
}
