//! Scenario 3, fleet migration: one new migration (`ALTER TABLE … ADD COLUMN`, `CREATE INDEX`)
//! rolled out across the Tenants the largest provisioning run left behind, through a
//! TenantMigration custom resource for each `maxParallel`, against the next migration of the
//! same shape run by psql with the same parallelism, and by the peers a user would script instead
//! (`dbmate`, `sqlx migrate run`: [`crate::peers`]). If no TenantMigration controller answers,
//! the migration engine is driven directly (mode `engine`).

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};
use tenantdb::crd::{Isolation, TenantMigration};
use tenantdb::migrate::{Migration, MigrationSet, MigrationTarget};
use tenantdb_testkit::localpg::LocalPg;

use crate::cli::Cfg;
use crate::common::{CONCURRENCY, NS, log, round, stats_json, tenant_name};
use crate::env::{Env, cpu_seconds, metric_sum};
use crate::floor;
use crate::peers;

fn fleet_migration(k: usize) -> Migration {
    let v = 20_260_101_000_000 + k as i64;
    let col = format!("bench_note_{k}");
    Migration::new(
        v,
        format!("bench_fleet_{k}"),
        peers::up_sql(&col),
        Some(peers::down_sql(&col)),
    )
}

fn tm_resource() -> ApiResource {
    ApiResource::erase::<TenantMigration>(&())
}

/// A floor's wall time in seconds: every tenant's file rendered by `render` for migration `m`
/// into the work directory `dir`, run with `p` psql processes (with `passfile`, logging in as the
/// tenants it names); at maxParallel 1 the first tenant's file is kept as `sample` in the output.
async fn floor_run(
    env: &Env,
    cfg: &Cfg,
    tenants: &[tenantdb::naming::TenantNames],
    p: usize,
    (render, m): (
        fn(&tenantdb::naming::TenantNames, &Migration) -> String,
        &Migration,
    ),
    (sample, dir): (&str, &str),
    passfile: Option<&std::path::Path>,
) -> Result<f64> {
    let contents = tenants
        .iter()
        .enumerate()
        .map(|(i, nm)| (tenant_name(i + 1), render(nm, m)))
        .collect();
    if p == 1 {
        std::fs::write(cfg.out.join(sample), render(&tenants[0], m))?;
    }
    let files = floor::write_files(&cfg.work.join(dir), contents)?;
    Ok(
        floor::run_psql_as(&env.pg, floor::SHARED_DB, &files, p, passfile)
            .await?
            .as_secs_f64(),
    )
}

/// A `PGPASSFILE` (mode 0600, in the work directory) with the superuser's password and every
/// tenant's login from its credentials Secret, for the login floor (set-up, not timed).
async fn write_passfile(
    env: &Env,
    cfg: &Cfg,
    tenants: &[tenantdb::naming::TenantNames],
) -> Result<std::path::PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), NS);
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let (host, port) = (env.pg.host(), env.pg.port());
    let mut lines = format!(
        "{host}:{port}:*:postgres:{}\n",
        escape(env.pg.superuser_password())
    );
    for (i, t) in tenants.iter().enumerate() {
        let s = secrets.get(&format!("{}-db", tenant_name(i + 1))).await?;
        let get = |k: &str| {
            tenantdb::secret::read_key(&s, k)
                .ok_or_else(|| anyhow!("Secret of tenant {} has no {k}", i + 1))
        };
        let user = get("username")?;
        if user != t.role.as_str() {
            bail!(
                "the Secret of tenant {} names {user}, not {}",
                i + 1,
                t.role.as_str()
            );
        }
        lines.push_str(&format!(
            "{host}:{port}:{}:{user}:{}\n",
            t.database.as_str(),
            escape(&get("password")?)
        ));
    }
    let path = cfg.work.join("fleet-login-floor.pgpass");
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(lines.as_bytes())?;
    Ok(path)
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

pub async fn fleet(cfg: &Cfg, mut env: Env, n: usize) -> Result<Value> {
    log(format!("fleet migration over {n} tenants"));
    // Per maxParallel: the operator's migration, the psql floor's, the login floor's.
    let extra: Vec<Migration> = (1..=cfg.fleet_parallel.len() * 3)
        .map(fleet_migration)
        .collect();
    let set = MigrationSet::bundled().merge(MigrationSet::new(extra.clone())?)?;
    let tenants: Vec<_> = (1..=n)
        .map(|i| floor::names_for(NS, &tenant_name(i), Isolation::Schema))
        .collect();
    let schemas: Vec<String> = tenants
        .iter()
        .map(|t| t.schema.as_str().to_string())
        .collect();
    // The peers' history tables and one dummy migration per tenant, before the operator starts.
    let peer_tools = peers::find(&cfg.work).await;
    peers::warm_up(&env.pg, &peer_tools, &schemas).await?;
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
    let passfile = write_passfile(&env, cfg, &tenants).await?;
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
    for (run, &p) in cfg.fleet_parallel.iter().enumerate() {
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
        // Floor: the next migration, same shape, with psql; then the login floor: the one after,
        // psql logged in as each tenant (\connect per tenant).
        k += 2;
        let floor_s = floor_run(
            &env,
            cfg,
            &tenants,
            p,
            (floor::migration_sql, &extra[k - 2]),
            ("floor-sample-migration.sql", "fleet-floor-sql"),
            None,
        )
        .await?;
        log(format!("  floor psql x{p}: {floor_s:.2} s"));
        let login_s = floor_run(
            &env,
            cfg,
            &tenants,
            p,
            (floor::migration_sql_as_tenant, &extra[k - 1]),
            ("floor-sample-migration-login.sql", "fleet-login-floor-sql"),
            Some(&passfile),
        )
        .await?;
        log(format!("  login floor psql x{p}: {login_s:.2} s"));
        // Peers: their next migration of the same shape, one process per tenant, p at a time.
        let mut peer_s = Vec::new();
        for peer in &peer_tools {
            peer_s.push(peers::timed_run(&env.pg, peer, &schemas, run + 1, p).await?);
        }
        let mut row = json!({
            "max_parallel": p,
            "operator_s": round(op_s, 3),
            "floor_s": round(floor_s, 3),
            "ratio": round(op_s / floor_s, 2),
            "operator_ms_per_tenant": round(op_s * 1000.0 / n as f64, 2),
            "floor_ms_per_tenant": round(floor_s * 1000.0 / n as f64, 2),
            "login_floor_s": round(login_s, 3),
            "login_ratio": round(op_s / login_s, 2),
            "login_floor_ms_per_tenant": round(login_s * 1000.0 / n as f64, 2),
            "operator_cpu_s": round(cpu1 - cpu0, 2),
            "tenants_succeeded": counts.0,
            "tenants_skipped": counts.1,
            "api": stats_json(&api),
        });
        for (peer, s) in peer_tools.iter().zip(peer_s) {
            peers::add_to_row(&mut row, peer.tool.key(), op_s, s, n);
        }
        rows.push(row);
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
        "migration": "ALTER TABLE saas_users ADD COLUMN …; CREATE INDEX … (one per run; the floor applies the next one of the same shape, the login floor the one after)",
        "login_floor_note": "psql (one process per lane, files dealt round-robin like the floor) \\connect-ing to each tenant as its login role with the password of its Secret (PGPASSFILE), then the floor's transaction without SET LOCAL ROLE: what running a migration as the tenant costs at least (a backend and a SCRAM login per tenant); the operator runs every tenant's migration on such a login (least privilege in execution), the floor on one superuser session",
        "last_version": last,
        "tenants_with_last_migration": check.parse::<i64>().unwrap_or(-1),
        "peers": peers::describe(&peer_tools),
        "peers_note": "one process per tenant, p at a time (tokio::process, no shell), as the superuser, on the tenant's schema (search_path in the URL; the tool's history table in that schema); each run applies the peer's next migration of the same shape (its own column); one untimed warm-up run per tenant and peer first (history table + a dummy migration); every tenant checked for the column and index afterwards",
        "rows": rows,
    }))
}
