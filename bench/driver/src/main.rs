//! tenantdb benchmark driver (issue #9). Run through `bench/run.sh`; see `bench/README.md`.
//!
//! Scenarios, all in one run: provisioning vs. a psql floor, steady state of Ready tenants,
//! operator memory vs. number of Tenants, fleet migration vs. a psql floor, single-tenant
//! time-to-Ready. Writes `results.json` and `summary.md` into the output directory.

mod env;
mod floor;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};
use tenantdb::crd::{Isolation, TenantMigration};
use tenantdb::migrate::{Migration, MigrationSet, MigrationTarget};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

use env::{Env, cpu_seconds, machine_cpu, metric_sum, rss_mib};

const NS: &str = "bench";
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
struct Cfg {
    quick: bool,
    out: PathBuf,
    work: PathBuf,
    operator: PathBuf,
    only: Option<Vec<String>>,
    prov_schema: Vec<usize>,
    prov_database: usize,
    steady_tenants: usize,
    resync_seconds: u64,
    memory_steps: Vec<usize>,
    fleet_parallel: Vec<usize>,
    ttr_samples: usize,
    /// Admission scenario: Ready tenants resyncing in the background, and new tenants created.
    admission_background: usize,
    admission_new: usize,
}

fn parse_args() -> Result<Cfg> {
    let mut quick = false;
    let mut out = PathBuf::from("bench/results");
    let mut work = PathBuf::from("bench/work");
    let mut operator = PathBuf::from("target/release/tenantdb");
    let mut only = None;
    let mut render_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(args.next().context("--out DIR")?),
            "--work" => work = PathBuf::from(args.next().context("--work DIR")?),
            "--operator" => operator = PathBuf::from(args.next().context("--operator BIN")?),
            "--render-only" => render_only = true,
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only a,b")?
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if render_only {
        // Re-renders summary.md from an existing results.json (no scenario runs).
        let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json"))?)?;
        std::fs::write(out.join("summary.md"), summary(&r))?;
        print!("{}", summary(&r));
        std::process::exit(0);
    }
    let operator = std::fs::canonicalize(&operator)
        .with_context(|| format!("operator binary {}", operator.display()))?;
    Ok(if quick {
        Cfg {
            quick,
            out,
            work,
            operator,
            only,
            prov_schema: vec![5, 10],
            prov_database: 3,
            steady_tenants: 50,
            resync_seconds: 5,
            memory_steps: vec![100, 300, 600],
            fleet_parallel: vec![1, 4, 8],
            ttr_samples: 3,
            admission_background: 60,
            admission_new: 10,
        }
    } else {
        Cfg {
            quick,
            out,
            work,
            operator,
            only,
            prov_schema: vec![100, 500],
            prov_database: 50,
            // BENCH_STEADY_TENANTS overrides (see README: with resync 30 s this machine saturates
            // at about 1,270 schema tenants).
            steady_tenants: std::env::var("BENCH_STEADY_TENANTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000),
            resync_seconds: 30,
            memory_steps: vec![1000, 5000, 10000],
            fleet_parallel: vec![1, 4, 8],
            ttr_samples: 30,
            admission_background: std::env::var("BENCH_ADMISSION_TENANTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(600),
            admission_new: 50,
        }
    })
}

impl Cfg {
    fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }
}

fn log(msg: impl AsRef<str>) {
    eprintln!(
        "[bench {}] {}",
        jiff::Zoned::now().strftime("%H:%M:%S"),
        msg.as_ref()
    );
}

fn tenant_name(i: usize) -> String {
    format!("t{i:05}")
}

fn isolation_str(i: Isolation) -> &'static str {
    match i {
        Isolation::Database => "database",
        Isolation::Schema => "schema",
        // Other modes (added after this driver) are not benchmarked.
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

async fn start_pg(opts: LocalPgOptions) -> Result<LocalPg> {
    Ok(tokio::task::spawn_blocking(move || LocalPg::start_with(opts)).await??)
}

fn stats_json(s: &tenantdb_apiserver::Stats) -> Value {
    json!({
        "requests": s.total(),
        "writes": s.writes("*", None),
        "tenant_status_writes": s.writes("tenants", Some("status")),
        "tenant_writes": s.writes("tenants", Some("")),
        "secret_writes": s.writes("secrets", None),
        "event_writes": s.writes("events", None),
        "detail": s.to_json()["requests"].clone(),
    })
}

// ------------------------------------------------------------------------------------------------
// 1. Provisioning
// ------------------------------------------------------------------------------------------------

/// Provisions `n` Tenants with the operator, then the same SQL with psql (sequential and with
/// the operator's parallelism) on fresh clusters. Returns the result and, if `keep`, the
/// environment (operator stopped) for the fleet-migration scenario.
async fn provisioning(
    cfg: &Cfg,
    isolation: Isolation,
    n: usize,
    keep: bool,
    floors: bool,
) -> Result<(Value, Option<Env>)> {
    let label = format!("prov-{}-{n}", isolation_str(isolation));
    log(format!(
        "provisioning: {n} {} tenants (operator)",
        isolation_str(isolation)
    ));
    let mut env = Env::start(&cfg.work, &label, LocalPgOptions::default()).await?;
    let names: Vec<String> = (1..=n).map(tenant_name).collect();
    let spec = json!({"isolation": isolation_str(isolation), "deletionPolicy": "Retain"});
    env.create_tenants(NS, &names, &spec, 16).await?;
    let before = env.api.stats();
    let t0 = Instant::now();
    env.spawn_operator(
        &cfg.operator,
        &["--concurrency".into(), CONCURRENCY.to_string()],
    )?;
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
    if !floors {
        return Ok((Value::Null, keep.then_some(env)));
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
        "objects_per_tenant_floor": floor_objects,
        "api": stats_json(&api),
        "api_writes_per_tenant": round(api.writes("*", None) as f64 / n as f64, 2),
    });
    let _ = std::fs::remove_dir_all(cfg.work.join(format!("{label}-floor-sql")));
    Ok((result, keep.then_some(env)))
}

// ------------------------------------------------------------------------------------------------
// 3. Fleet migration
// ------------------------------------------------------------------------------------------------

fn fleet_migration(k: usize) -> Migration {
    let v = 20_260_101_000_000 + k as i64;
    Migration::new(
        v,
        format!("bench_fleet_{k}"),
        format!(
            "ALTER TABLE saas_users ADD COLUMN bench_note_{k} text;\nCREATE INDEX saas_users_bench_note_{k}_idx ON saas_users (bench_note_{k});\n"
        ),
        Some(format!(
            "DROP INDEX saas_users_bench_note_{k}_idx;\nALTER TABLE saas_users DROP COLUMN bench_note_{k};\n"
        )),
    )
}

fn tm_resource() -> ApiResource {
    ApiResource::erase::<TenantMigration>(&())
}

/// Creates a TenantMigration and waits for it to finish. `Ok(None)`: no controller answered.
async fn run_tenant_migration(
    env: &Env,
    name: &str,
    version: i64,
    parallel: usize,
    n: usize,
    probe: bool,
) -> Result<Option<(f64, i64, i64)>> {
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), NS, &tm_resource());
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "TenantMigration",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "target": {"selector": {}},
            "source": {"configMap": {"name": "bench-fleet"}},
            "targetVersion": version,
            "strategy": {"maxParallel": parallel},
        },
    }))?;
    let t0 = Instant::now();
    api.create(&PostParams::default(), &obj).await?;
    let mut seen_status = false;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let o = api.get(name).await?;
        let st = o.data.get("status").cloned().unwrap_or(Value::Null);
        let phase = st.get("phase").and_then(Value::as_str).unwrap_or("");
        if st.get("revision").is_some() || st.get("total").is_some_and(|t| t.as_i64() > Some(0)) {
            seen_status = true;
        }
        let succeeded = st.get("succeeded").and_then(Value::as_i64).unwrap_or(0);
        let skipped = st.get("skipped").and_then(Value::as_i64).unwrap_or(0);
        if phase == "Succeeded" {
            if (succeeded + skipped) as usize != n {
                log(format!(
                    "  {name}: Succeeded with {succeeded} succeeded, {skipped} skipped of {n}"
                ));
            }
            return Ok(Some((t0.elapsed().as_secs_f64(), succeeded, skipped)));
        }
        if phase == "Failed" {
            bail!("TenantMigration {name} failed: {st}");
        }
        if probe && !seen_status && t0.elapsed() > Duration::from_secs(20) {
            return Ok(None);
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!("TenantMigration {name} did not finish: {st}");
        }
    }
}

/// Migrates every tenant with the engine directly (`tenantdb::migrate::migrate`), `parallel`
/// connections at once.
async fn engine_migrate(
    pg: &LocalPg,
    set: &MigrationSet,
    tenants: &[tenantdb::naming::TenantNames],
    version: i64,
    parallel: usize,
) -> Result<f64> {
    let url = pg.url(floor::SHARED_DB);
    let t0 = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(tenants.to_vec()));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let queue = queue.clone();
        let set = set.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(names) = next else { break };
                let target = MigrationTarget {
                    schema: names.schema.as_str(),
                    owner_role: names.role.as_str(),
                    lock_key: tenantdb::identity::lock_key(&names),
                };
                tenantdb::migrate::migrate(&mut conn, &set, &target, Some(version), false)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(t0.elapsed().as_secs_f64())
}

async fn fleet(cfg: &Cfg, mut env: Env, n: usize) -> Result<Value> {
    log(format!("fleet migration over {n} tenants"));
    let extra: Vec<Migration> = (1..=cfg.fleet_parallel.len() * 2)
        .map(fleet_migration)
        .collect();
    let set = MigrationSet::bundled().merge(MigrationSet::new(extra.clone())?)?;
    let tenants: Vec<_> = (1..=n)
        .map(|i| floor::names_for(NS, &tenant_name(i), Isolation::Schema))
        .collect();
    // ConfigMap source for the CRD path.
    let cm_api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), NS);
    let mut data = serde_json::Map::new();
    for m in &extra {
        data.insert(format!("{}_{}.up.sql", m.version, m.name), json!(m.up_sql));
        data.insert(
            format!("{}_{}.down.sql", m.version, m.name),
            json!(m.down_sql.clone().unwrap()),
        );
    }
    cm_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "bench-fleet", "namespace": NS},
                "data": data,
            }))?,
        )
        .await?;
    env.spawn_operator(
        &cfg.operator,
        &["--concurrency".into(), CONCURRENCY.to_string()],
    )?;
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    // A restarted operator reconciles every Tenant once (no DDL, but a health check and a storage
    // measurement each): let that pass end first. Deferred resyncs (admission) and skipped
    // reconciles of settled Tenants are counted in reconciles_total too but did no work, so they
    // do not count here.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let m = env.metrics().await?;
        let done = metric_sum(&m, "tenantdb_reconciles_total", &["controller=\"tenant\""])
            - metric_sum(
                &m,
                "tenantdb_resyncs_deferred_total",
                &["controller=\"tenant\""],
            )
            - metric_sum(
                &m,
                "tenantdb_reconciles_unchanged_total",
                &["controller=\"tenant\""],
            );
        if done >= n as f64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut mode = "crd";
    let mut rows = Vec::new();
    let mut k = 0;
    for &p in &cfg.fleet_parallel {
        k += 1;
        let m_op = &extra[k - 1];
        let before = env.api.stats();
        let cpu0 = env.operator_pid.and_then(cpu_seconds).unwrap_or(0.0);
        let mut counts = (n as i64, 0);
        let op_s = if mode == "crd" {
            match run_tenant_migration(&env, &format!("fleet-{k}"), m_op.version, p, n, k == 1)
                .await?
            {
                Some((s, ok, skipped)) => {
                    counts = (ok, skipped);
                    s
                }
                None => {
                    log(
                        "  no TenantMigration controller answered: measuring the migration engine directly",
                    );
                    mode = "engine";
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(env.client.clone(), NS, &tm_resource());
                    let _ = api.delete("fleet-1", &Default::default()).await;
                    engine_migrate(&env.pg, &set, &tenants, m_op.version, p).await?
                }
            }
        } else {
            engine_migrate(&env.pg, &set, &tenants, m_op.version, p).await?
        };
        let cpu1 = env.operator_pid.and_then(cpu_seconds).unwrap_or(0.0);
        let api = env.api.stats().since(&before);
        log(format!("  {mode} maxParallel {p}: {op_s:.2} s"));
        // Floor: the next migration, same shape, with psql.
        k += 1;
        let m_floor = &extra[k - 1];
        let contents = tenants
            .iter()
            .enumerate()
            .map(|(i, nm)| (tenant_name(i + 1), floor::migration_sql(nm, m_floor)))
            .collect();
        if p == 1 {
            std::fs::write(
                cfg.out.join("floor-sample-migration.sql"),
                floor::migration_sql(&tenants[0], m_floor),
            )?;
        }
        let dir = cfg.work.join("fleet-floor-sql");
        let files = floor::write_files(&dir, contents)?;
        let floor_s = floor::run_psql(&env.pg, floor::SHARED_DB, &files, p)
            .await?
            .as_secs_f64();
        log(format!("  floor psql x{p}: {floor_s:.2} s"));
        rows.push(json!({
            "max_parallel": p,
            "operator_s": round(op_s, 3),
            "floor_s": round(floor_s, 3),
            "ratio": round(op_s / floor_s, 2),
            "operator_ms_per_tenant": round(op_s * 1000.0 / n as f64, 2),
            "floor_ms_per_tenant": round(floor_s * 1000.0 / n as f64, 2),
            "operator_cpu_s": round(cpu1 - cpu0, 2),
            "tenants_succeeded": counts.0,
            "tenants_skipped": counts.1,
            "api": stats_json(&api),
        }));
    }
    // Check: every tenant has the last migration recorded.
    let last = extra.last().unwrap().version;
    let check = floor::psql_exec(
        &env.pg,
        floor::SHARED_DB,
        &format!(
            "SELECT count(*) FROM pg_namespace n WHERE n.nspname LIKE 'tenant_bench_%' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'saas_users_bench_note_{}_idx')",
            extra.len()
        ),
    )
    .await?;
    env.stop_operator().await;
    Ok(json!({
        "tenants": n,
        "mode": mode,
        "mode_note": if mode == "crd" {
            "TenantMigration custom resources handled by the operator (ConfigMap source), create → phase Succeeded, polled every 100 ms"
        } else {
            "no TenantMigration controller was running in the operator: the migration engine (tenantdb::migrate::migrate) was driven directly with N parallel connections"
        },
        "migration": "ALTER TABLE saas_users ADD COLUMN …; CREATE INDEX … (one per run; the floor applies the next one of the same shape)",
        "last_version": last,
        "tenants_with_last_migration": check.parse::<i64>().unwrap_or(-1),
        "rows": rows,
    }))
}

// ------------------------------------------------------------------------------------------------
// 2. Steady state and memory
// ------------------------------------------------------------------------------------------------

async fn steady_state(cfg: &Cfg) -> Result<Value> {
    let n = cfg.steady_tenants;
    let r = cfg.resync_seconds;
    log(format!("steady state: {n} tenants, resync {r} s"));
    let opts = LocalPgOptions {
        settings: vec![
            (
                "shared_preload_libraries".into(),
                "pg_stat_statements".into(),
            ),
            ("pg_stat_statements.max".into(), "10000".into()),
            ("pg_stat_statements.track".into(), "all".into()),
        ],
        ..Default::default()
    };
    let mut env = Env::start(&cfg.work, "steady", opts).await?;
    floor::psql_exec(&env.pg, "postgres", "CREATE EXTENSION pg_stat_statements").await?;
    let names: Vec<String> = (1..=n).map(tenant_name).collect();
    let spec = json!({"isolation": "schema", "deletionPolicy": "Retain", "autoMigrate": false});
    env.ensure_namespace(NS).await?;
    let t0 = Instant::now();
    let rs = r.to_string();
    env.spawn_operator(
        &cfg.operator,
        &[
            "--concurrency".into(),
            CONCURRENCY.to_string(),
            "--resync-seconds".into(),
            rs.clone(),
            "--health-interval-seconds".into(),
            rs.clone(),
            "--usage-interval-seconds".into(),
            rs.clone(),
        ],
    )?;
    let pid = env.operator_pid.unwrap();
    env.wait_operator_ready(Duration::from_secs(60)).await?;
    // Created while the operator runs (in batches of 16 concurrent requests).
    env.create_tenants(NS, &names, &spec, 16).await?;
    let mut not_ready_note = Value::Null;
    if let Err(e) = env
        .tracker
        .wait(Duration::from_secs(600), "all tenants Ready", |r, _| r >= n)
        .await
    {
        log(format!("  WARNING: {e}; measuring anyway"));
        not_ready_note = json!(e.to_string());
    }
    let ready_count = env.tracker.counts().0;
    let provision_s = env
        .tracker
        .last_ready()
        .unwrap()
        .duration_since(t0)
        .as_secs_f64();
    log(format!(
        "  {n} tenants Ready in {provision_s:.1} s; measuring one resync period"
    ));
    // Let the provisioning burst end (the last status writes, events) before the window.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let metrics0 = env.metrics().await?;
    let xact0: f64 = floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database",
    )
    .await?
    .parse()
    .unwrap_or(0.0);
    floor::psql_exec(&env.pg, "postgres", "SELECT pg_stat_statements_reset()").await?;
    let stats0 = env.api.stats();
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let (mbusy0, mtotal0) = machine_cpu();
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(r)).await;
    let window = w0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
    let (mbusy1, mtotal1) = machine_cpu();
    let stats = env.api.stats().since(&stats0);
    let metrics1 = env.metrics().await?;
    let statements: f64 = floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'",
    )
    .await?
    .parse()
    .unwrap_or(0.0);
    let top = floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT sum(calls) || ' | ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' GROUP BY query ORDER BY sum(calls) DESC LIMIT 8",
    )
    .await?;
    let xact1: f64 = floor::psql_exec(
        &env.pg,
        "postgres",
        "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database",
    )
    .await?
    .parse()
    .unwrap_or(0.0);
    let reconciles = metric_sum(
        &metrics1,
        "tenantdb_reconciles_total",
        &["controller=\"tenant\""],
    ) - metric_sum(
        &metrics0,
        "tenantdb_reconciles_total",
        &["controller=\"tenant\""],
    );
    let health = metric_sum(&metrics1, "tenantdb_health_checks_total", &[])
        - metric_sum(&metrics0, "tenantdb_health_checks_total", &[]);
    let unchanged = metric_sum(&metrics1, "tenantdb_reconciles_unchanged_total", &[])
        - metric_sum(&metrics0, "tenantdb_reconciles_unchanged_total", &[]);
    let steps = metric_sum(&metrics1, "tenantdb_provisioning_steps_total", &[])
        - metric_sum(&metrics0, "tenantdb_provisioning_steps_total", &[]);
    let errors = metric_sum(&metrics1, "tenantdb_reconcile_errors_total", &[])
        - metric_sum(&metrics0, "tenantdb_reconcile_errors_total", &[]);
    let cpu = cpu1 - cpu0;
    let (rss, hwm) = rss_mib(pid).unwrap_or((0.0, 0.0));
    // Normalize to one resync of every tenant (a pass = N reconciles).
    let passes = if reconciles > 0.0 {
        reconciles / n as f64
    } else {
        f64::NAN
    };
    env.stop_operator().await;
    Ok(json!({
        "tenants": n,
        "tenants_ready_at_window_start": ready_count,
        "not_all_ready": not_ready_note,
        "isolation": "schema",
        "auto_migrate": false,
        "resync_seconds": r,
        "health_and_usage_interval_seconds": r,
        "provisioning_s": round(provision_s, 2),
        "window_s": round(window, 2),
        "reconciles_in_window": reconciles,
        "reconciles_skipped_unchanged_in_window": unchanged,
        "health_checks_in_window": health,
        "ddl_steps_in_window": steps,
        "reconcile_errors_in_window": errors,
        "resync_passes_in_window": round(passes, 3),
        "sql_statements": statements,
        "sql_statements_per_reconcile": round(statements / reconciles.max(1.0), 2),
        "transactions": xact1 - xact0,
        "top_statements": top.lines().collect::<Vec<_>>(),
        "api": stats_json(&stats),
        "api_writes": stats.writes("*", None),
        "api_status_writes": stats.writes("tenants", Some("status")),
        "api_requests_per_reconcile": round(stats.total() as f64 / reconciles.max(1.0), 2),
        "operator_cpu_s": round(cpu, 3),
        "operator_cpu_s_per_pass": round(cpu / passes, 3),
        "operator_cpu_ms_per_reconcile": round(cpu * 1000.0 / reconciles.max(1.0), 3),
        "operator_cpu_share_of_one_core": round(cpu / window, 4),
        "machine_cpu_busy_share": round((mbusy1 - mbusy0) / (mtotal1 - mtotal0), 4),
        "operator_rss_mib": round(rss, 1),
        "operator_peak_rss_mib": round(hwm, 1),
    }))
}

async fn memory(cfg: &Cfg) -> Result<Value> {
    log("memory: operator RSS vs. number of Tenants (invalid spec, no PostgreSQL work)");
    let mut env = Env::start(&cfg.work, "memory", LocalPgOptions::default()).await?;
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

// ------------------------------------------------------------------------------------------------
// 4. Single-tenant time-to-Ready
// ------------------------------------------------------------------------------------------------

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest-rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn time_to_ready(cfg: &Cfg) -> Result<Value> {
    log(format!(
        "time to Ready: {} tenants per isolation mode, one at a time",
        cfg.ttr_samples
    ));
    let mut env = Env::start(&cfg.work, "ttr", LocalPgOptions::default()).await?;
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

/// Admission under resync saturation: `B` Ready tenants resync every 2 s (health and usage
/// every 2 s too), far more than the machine can do; then `K` new Tenants are created. Measured
/// per variant: time until all `K` are Ready, per-tenant time-to-Ready, and the background's
/// resync throughput. Variants: the default bounded resync admission, and
/// `--max-concurrent-resyncs 0` (resyncs may take every reconcile slot, the behaviour before).
async fn admission(cfg: &Cfg) -> Result<Value> {
    let (b, k) = (cfg.admission_background, cfg.admission_new);
    let interval = "2".to_string();
    let mut rows = Vec::new();
    for (variant, extra) in [
        ("bounded (default: concurrency / 2)", None),
        ("unbounded (--max-concurrent-resyncs 0)", Some("0")),
    ] {
        log(format!(
            "admission: {b} Ready tenants resyncing every {interval} s, then {k} new; {variant}"
        ));
        let mut env = Env::start(&cfg.work, "admission", LocalPgOptions::default()).await?;
        env.ensure_namespace(NS).await?;
        let spec = json!({"isolation": "schema", "deletionPolicy": "Retain", "autoMigrate": false});
        // 1. The background tenants, provisioned with default intervals.
        env.spawn_operator(
            &cfg.operator,
            &["--concurrency".into(), CONCURRENCY.to_string()],
        )?;
        env.wait_operator_ready(Duration::from_secs(60)).await?;
        let names: Vec<String> = (1..=b).map(tenant_name).collect();
        env.create_tenants(NS, &names, &spec, 16).await?;
        env.tracker
            .wait(
                Duration::from_secs(900),
                "background tenants Ready",
                |r, _| r >= b,
            )
            .await?;
        env.stop_operator().await;
        // 2. Aggressive resyncs: every tenant every 2 s with a health check (tenant login) and a
        //    storage measurement each time.
        let mut args: Vec<String> = vec![
            "--concurrency".into(),
            CONCURRENCY.to_string(),
            "--resync-seconds".into(),
            interval.clone(),
            "--health-interval-seconds".into(),
            interval.clone(),
            "--usage-interval-seconds".into(),
            interval.clone(),
        ];
        if let Some(x) = extra {
            args.push("--max-concurrent-resyncs".into());
            args.push(x.into());
        }
        env.spawn_operator(&cfg.operator, &args)?;
        let pid = env.operator_pid.unwrap();
        env.wait_operator_ready(Duration::from_secs(60)).await?;
        // Let the startup pass and a few resync rounds saturate the machine.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let metrics0 = env.metrics().await?;
        let (mbusy0, mtotal0) = machine_cpu();
        let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
        // 3. The new tenants.
        let new: Vec<String> = (b + 1..=b + k).map(tenant_name).collect();
        let t0 = Instant::now();
        env.create_tenants(NS, &new, &spec, 16).await?;
        let timeout = Duration::from_secs(if cfg.quick { 120 } else { 300 });
        let done = env
            .tracker
            .wait(timeout, "new tenants Ready", |r, _| r >= b + k)
            .await;
        let elapsed = t0.elapsed().as_secs_f64();
        let (mbusy1, mtotal1) = machine_cpu();
        let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
        let metrics1 = env.metrics().await?;
        let mut ttr: Vec<f64> = new
            .iter()
            .filter_map(|n| env.tracker.get(&format!("{NS}/{n}"))?.ready_at)
            .map(|at| at.duration_since(t0).as_secs_f64())
            .collect();
        ttr.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let ready_new = ttr.len();
        let delta =
            |name: &str| metric_sum(&metrics1, name, &[]) - metric_sum(&metrics0, name, &[]);
        let reconciles = metric_sum(
            &metrics1,
            "tenantdb_reconciles_total",
            &["controller=\"tenant\""],
        ) - metric_sum(
            &metrics0,
            "tenantdb_reconciles_total",
            &["controller=\"tenant\""],
        );
        let deferred = delta("tenantdb_resyncs_deferred_total");
        let health = delta("tenantdb_health_checks_total");
        let p = |q: f64| {
            if ttr.is_empty() {
                Value::Null
            } else {
                json!(round(percentile(&ttr, q), 2))
            }
        };
        log(format!(
            "  {ready_new}/{k} new Ready in {elapsed:.1} s (p50 {}, p99 {}); background: {:.0} health checks/s, {deferred} resyncs deferred",
            f(&p(50.0)),
            f(&p(99.0)),
            health / elapsed
        ));
        rows.push(json!({
            "variant": variant,
            "max_concurrent_resyncs": extra.unwrap_or("default"),
            "all_new_ready": done.is_ok(),
            "new_ready": ready_new,
            "all_new_ready_s": if done.is_ok() { json!(round(elapsed, 2)) } else { Value::Null },
            "window_s": round(elapsed, 2),
            "new_p50_s": p(50.0),
            "new_p90_s": p(90.0),
            "new_p99_s": p(99.0),
            "reconciles_per_s": round(reconciles / elapsed, 1),
            "resyncs_deferred": deferred,
            "health_checks_per_s": round(health / elapsed, 1),
            "operator_cpu_s": round(cpu1 - cpu0, 2),
            "machine_cpu_busy_share": round((mbusy1 - mbusy0) / (mtotal1 - mtotal0), 3),
        }));
        env.stop_operator().await;
    }
    let ratio = match (
        rows[1]["all_new_ready_s"].as_f64(),
        rows[0]["all_new_ready_s"].as_f64(),
    ) {
        (Some(u), Some(bd)) if bd > 0.0 => json!(round(u / bd, 2)),
        _ => Value::Null,
    };
    Ok(json!({
        "background_tenants": b,
        "new_tenants": k,
        "interval_s": 2,
        "concurrency": CONCURRENCY,
        "unbounded_over_bounded_all_ready": ratio,
        "rows": rows,
    }))
}

// ------------------------------------------------------------------------------------------------

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

#[tokio::main]
async fn main() -> Result<()> {
    let cfg = parse_args()?;
    std::fs::create_dir_all(&cfg.out)?;
    std::fs::create_dir_all(&cfg.work)?;
    let started = Instant::now();
    let mut results = json!({
        "quick": cfg.quick,
        "started_at": jiff::Timestamp::now().to_string(),
        "git_revision": sh("git rev-parse --short HEAD"),
        "git_dirty": !sh("git status --porcelain -- src apiserver migrations Cargo.toml Cargo.lock").is_empty(),
        "machine": machine(),
        "operator_binary": cfg.operator.display().to_string(),
    });
    // A partial run (--only) updates the scenarios it runs in an existing results.json.
    if cfg.only.is_some()
        && let Ok(old) = std::fs::read_to_string(cfg.out.join("results.json"))
        && let Ok(Value::Object(old)) = serde_json::from_str::<Value>(&old)
    {
        for (k, v) in old {
            if results.get(&k).is_none() {
                results[k] = v;
            }
        }
    }
    let write = |results: &Value| -> Result<()> {
        std::fs::write(
            cfg.out.join("results.json"),
            serde_json::to_string_pretty(results)? + "\n",
        )?;
        std::fs::write(cfg.out.join("summary.md"), summary(results))?;
        Ok(())
    };

    if cfg.runs("provisioning") || cfg.runs("fleet") {
        let mut prov = Vec::new();
        let largest = *cfg.prov_schema.iter().max().unwrap();
        let mut kept = None;
        for &n in &cfg.prov_schema {
            if !cfg.runs("provisioning") && n != largest {
                continue;
            }
            let (r, env) = provisioning(
                &cfg,
                Isolation::Schema,
                n,
                n == largest,
                cfg.runs("provisioning"),
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
                write(&results)?;
            }
        }
        if cfg.runs("fleet")
            && let Some(env) = kept
        {
            results["fleet_migration"] = fleet(&cfg, env, largest).await?;
            write(&results)?;
        }
    }
    if cfg.runs("provisioning") || cfg.runs("provisioning-database") {
        let (r, _) =
            provisioning(&cfg, Isolation::Database, cfg.prov_database, false, true).await?;
        let mut prov: Vec<Value> = results["provisioning"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|x| x["isolation"] != json!("database"))
            .collect();
        prov.push(r);
        results["provisioning"] = json!(prov);
        write(&results)?;
    }
    if cfg.runs("steady") {
        results["steady_state"] = steady_state(&cfg).await?;
        write(&results)?;
    }
    if cfg.runs("memory") {
        results["memory"] = memory(&cfg).await?;
        write(&results)?;
    }
    if cfg.runs("ttr") {
        results["time_to_ready"] = time_to_ready(&cfg).await?;
        write(&results)?;
    }
    if cfg.runs("admission") {
        results["admission"] = admission(&cfg).await?;
        write(&results)?;
    }
    results["duration_s"] = json!(round(started.elapsed().as_secs_f64(), 1));
    write(&results)?;
    print!("{}", summary(&results));
    // BENCH_KEEP_WORK=1 keeps the work directory (operator logs, floor SQL) for inspection.
    if std::env::var_os("BENCH_KEEP_WORK").is_none() {
        let _ = std::fs::remove_dir_all(&cfg.work);
    }
    Ok(())
}

/// Markdown table rows: one per element of `rows`, the values of `cols` in order, the column at
/// index `bold` (the headline ratio or time) in bold.
fn table_rows(rows: &Value, cols: &[&str], bold: Option<usize>) -> String {
    let mut out = String::new();
    for x in rows.as_array().into_iter().flatten() {
        let cells: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = f(&x[*c]);
                if Some(i) == bold {
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

fn f(v: &Value) -> String {
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
fn summary(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    s.push_str(&format!(
        "# tenantdb benchmark results{}\n\n{} · {} cores · {} GiB · {} · operator rev {}{}\n\n",
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
    ));
    if let Some(rows) = r["provisioning"].as_array() {
        s.push_str("## 1. Provisioning (all Tenants created → all Ready) vs. psql floor\n\n");
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
        s.push('\n');
    }
    let st = &r["steady_state"];
    if st.is_object() {
        s.push_str(&format!(
            "## 2. Steady state: {} Ready tenants, one resync period ({} s; health/usage interval {} s)\n\n",
            f(&st["tenants"]), f(&st["resync_seconds"]), f(&st["health_and_usage_interval_seconds"])
        ));
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
        s.push_str("## 2b. Operator memory vs. number of Tenants\n\n| Tenants | RSS (MiB) | peak RSS (MiB) |\n|---|---|---|\n");
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
    let fl = &r["fleet_migration"];
    if fl.is_object() {
        s.push_str(&format!(
            "## 3. Fleet migration: one new migration across {} tenants (mode: {})\n\n{}.\n\n| maxParallel | operator (s) | floor psql (s) | operator / floor | operator ms/tenant | floor ms/tenant |\n|---|---|---|---|---|---|\n",
            f(&fl["tenants"]), f(&fl["mode"]), f(&fl["mode_note"])
        ));
        s.push_str(&table_rows(
            &fl["rows"],
            &[
                "max_parallel",
                "operator_s",
                "floor_s",
                "ratio",
                "operator_ms_per_tenant",
                "floor_ms_per_tenant",
            ],
            Some(3),
        ));
        s.push('\n');
    }
    let ttr = &r["time_to_ready"];
    if ttr.is_object() {
        s.push_str("## 4. Single-tenant time to Ready (create → Ready seen by a watch; full baseline)\n\n| isolation | samples | p50 (ms) | p90 (ms) | p99 (ms) | mean (ms) | min (ms) | max (ms) |\n|---|---|---|---|---|---|---|---|\n");
        s.push_str(&table_rows(
            &ttr["rows"],
            &[
                "isolation",
                "samples",
                "p50_ms",
                "p90_ms",
                "p99_ms",
                "mean_ms",
                "min_ms",
                "max_ms",
            ],
            None,
        ));
        s.push('\n');
    }
    let ad = &r["admission"];
    if ad.is_object() {
        s.push_str(&format!(
            "## 5. New Tenants under resync saturation: {} Ready tenants resyncing every {} s (health + usage each time), then {} new Tenants\n\n| resync admission | all new Ready (s) | new p50 (s) | new p90 (s) | new p99 (s) | new Ready | reconciles/s | health checks/s | resyncs deferred | machine busy |\n|---|---|---|---|---|---|---|---|---|---|\n",
            f(&ad["background_tenants"]), f(&ad["interval_s"]), f(&ad["new_tenants"])
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
            Some(1),
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
    if let Some(d) = r["duration_s"].as_f64() {
        s.push_str(&format!("Total benchmark time: {d:.0} s.\n"));
    }
    s
}
