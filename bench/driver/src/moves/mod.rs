//! Scenario 7, moves (issue 17): online moves of a tenant's PostgreSQL part between servers.
//!
//! Per row, on fresh clusters: the default server (`--database-url`) and a DatabaseServer `b`,
//! both throwaway clusters with `wal_level=logical`; the real operator binary. One Tenant of the
//! isolation mode under test (`database`, `schema`, then `shared`; `BENCH_MOVES_ISOLATION`) is
//! provisioned on the default server and filled, through its Secret's credentials, with
//! 1,000-character rows (a table of its own; a `shared` tenant's rows go to the layout's audit
//! log) until its home (its database, or its schema's relations — the layout's for `shared`,
//! the only tenant on the server) has grown by the size under test (1 MiB and 100 MiB; `--quick`: 20 MiB). Then its `spec.placement` is patched to
//! `{server: b}` and the driver waits for `status.move.phase: Completed` (tenant Ready, placed on
//! `b`), watching the phases. Each size is moved idle and with a writer inserting through the
//! Secret during the whole move (one connection, one insert every ~5 ms; on an error it re-reads
//! the Secret and reconnects, as an application would, and as `tests/e2e_moves.rs` does).
//!
//! Reported: data size, the move's own times (`startedAt` → `finishedAt`, `writeFreezeMs`,
//! `bytes`, `attempts`), the phases as the driver's watch saw them, and for the writer its longest
//! gap between two acknowledged inserts (what the application saw, reconnecting included), its
//! acknowledged writes, and the check that every one of them is on the target (none lost). What
//! the freeze is made of comes from both servers' logs: the admin role (the operator's) logs every
//! statement with its duration (`log_min_duration_statement = 0` for that role only), and
//! [`freeze_timeline`] cuts the window from the fence to the target's logins into its steps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tenantdb::crd::{MovePhase, MoveStatus, Tenant};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

use crate::cli::Cfg;

mod timeline;
use crate::common::{CONCURRENCY, NS, log, round, start_pg};
use crate::env::{Env, cpu_seconds, machine_cpu, metric_sum};
use crate::placement::{OPERATOR_NS, loadavg, log_problems, start_operator_with_servers};
use timeline::freeze_timeline;

/// The moved Tenant (one per row, each row on fresh clusters).
const TENANT: &str = "moved";
/// The target DatabaseServer.
const TARGET: &str = "b";
/// The issue's target for the write freeze.
const TARGET_FREEZE_MS: i64 = 2000;
const MIB: i64 = 1 << 20;
/// Rough bytes per fill row on disk (1,000 characters, tuple header, line pointer, index entry):
/// the batch size is chosen from it, the size is measured.
const ROW_BYTES: i64 = 1200;
/// The writer's pause between two inserts.
const WRITER_PAUSE: Duration = Duration::from_millis(5);
/// The writer's pause after a failed connection attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// How long a move may take before the row fails.
const MOVE_TIMEOUT: Duration = Duration::from_secs(900);

pub async fn moves(cfg: &Cfg) -> Result<Value> {
    let mut rows = Vec::new();
    for isolation in &cfg.moves_isolation {
        for &mib in &cfg.moves_mib {
            for writer in [false, true] {
                rows.push(row(cfg, isolation, mib, writer).await?);
            }
        }
    }
    let freezes: Vec<i64> = rows
        .iter()
        .filter_map(|r| r["write_freeze_ms"].as_i64())
        .collect();
    let max_freeze = freezes.iter().copied().max();
    let met = freezes.len() == rows.len() && max_freeze.is_some_and(|f| f < TARGET_FREEZE_MS);
    let gaps: Vec<f64> = rows
        .iter()
        .filter_map(|r| r["writer"]["longest_gap_s"].as_f64())
        .collect();
    let lost: u64 = rows
        .iter()
        .filter_map(|r| r["writer"]["lost"].as_u64())
        .sum();
    Ok(json!({
        "isolation": cfg.moves_isolation,
        "sizes_mib": cfg.moves_mib,
        "target_freeze_ms": TARGET_FREEZE_MS,
        "target_met": met,
        "max_write_freeze_ms": max_freeze,
        "max_writer_gap_s": gaps.iter().copied().fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g)))),
        "writes_lost": lost,
        "method": "per row fresh clusters (default server and DatabaseServer b, wal_level=logical) and operator; one Tenant per isolation mode (database, schema, shared) on the default server filled through its Secret with 1,000-character rows until its home grew by the size (database: pg_database_size; schema: pg_total_relation_size of the schema's tables; shared: the same of the layout's tables, the tenant alone on the server, its rows in the audit log); spec.placement patched to {server: b}; waited for status.move.phase Completed (tenant Ready on b)",
        "writer": format!("one connection through the Secret's credentials, INSERT of n = 1, 2, … with a {} ms pause; on an error it re-reads the Secret and reconnects ({} ms between failed attempts) and retries the same n (a duplicate n means it had committed); from ~1 s before the patch until 100 writes and 1 s after Completed", WRITER_PAUSE.as_millis(), RECONNECT_PAUSE.as_millis()),
        "operator_args": format!("--concurrency {CONCURRENCY} --operator-namespace {OPERATOR_NS}"),
        "rows": rows,
    }))
}

fn logical() -> LocalPgOptions {
    LocalPgOptions {
        settings: vec![("wal_level".into(), "logical".into())],
        ..Default::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection with the credentials the tenant's Secret holds now, and the port it names.
async fn tenant_conn(secrets: &Api<Secret>) -> Result<(PgConnection, u16)> {
    let s = secrets.get(&format!("{TENANT}-db")).await?;
    let get = |k: &str| {
        tenantdb::secret::read_key(&s, k).ok_or_else(|| anyhow!("the Secret has no key {k}"))
    };
    let port: u16 = get("port")?.parse()?;
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host(&get("host")?)
        .port(port)
        .username(&get("username")?)
        .password(&get("password")?)
        .database(&get("database")?);
    let c = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&opts))
        .await
        .context("connecting timed out")??;
    Ok((c, port))
}

async fn admin(pg: &LocalPg, db: &str) -> Result<PgConnection> {
    Ok(PgConnection::connect(&pg.url(db)).await?)
}

/// The size of the tenant's home as the tenant sees it: its database, or the relations of its
/// schema (tables with their indexes and TOAST) for a `schema` tenant.
async fn home_size(c: &mut PgConnection, isolation: &str) -> Result<i64> {
    // A `shared` tenant's schema is the layout's (its search_path): the only tenant on the
    // server in this scenario, so what the layout's tables grow by is its data.
    let sql = if isolation != "database" {
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
          WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'm')"
    } else {
        "SELECT pg_database_size(current_database())"
    };
    Ok(sqlx::query_scalar(sql).fetch_one(c).await?)
}

/// What the tenant fills and writes: its own `fill` and `writes` tables, or for a `shared`
/// tenant the layout's audit log (`module` `fill` or `write`, `target_id` the number), where
/// its rows are told apart by its tenant id.
const SHARED_FILL: &str = "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, target_id, user_agent) \
     SELECT tenantdb_current_tenant(), 'operation', 'fill', 'create', g::text, repeat('x', 1000) FROM generate_series($1::bigint, $2::bigint) g";
const SHARED_WRITE: &str = "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, target_id) \
     VALUES (tenantdb_current_tenant(), 'operation', 'write', 'create', $1::bigint::text)";

/// The admin's query for the tenant's rows of one kind (`fill`, `writes`) on a server: the
/// table qualified with the tenant's schema, or the layout's audit log filtered by tenant id.
fn rows_sql(isolation: &str, schema_q: &str, tid: &str, kind: &str) -> Result<String> {
    Ok(if isolation == "shared" {
        let tid = tenantdb::naming::quote_literal(tid)
            .ok_or_else(|| anyhow!("unusable tenant id {tid:?}"))?;
        let module = if kind == "fill" { "fill" } else { "write" };
        format!(
            "SELECT target_id::bigint FROM {schema_q}.saas_unified_audit_logs WHERE tenant_id = {tid} AND module = '{module}'"
        )
    } else if kind == "fill" {
        format!("SELECT id FROM {schema_q}.fill")
    } else {
        format!("SELECT n FROM {schema_q}.writes")
    })
}

/// Fills the tenant's `fill` rows until its home grew by `target` bytes: (rows, growth).
async fn fill(c: &mut PgConnection, isolation: &str, target: i64) -> Result<(i64, i64)> {
    let base = home_size(c, isolation).await?;
    if isolation != "shared" {
        sqlx::raw_sql("CREATE TABLE fill (id bigint PRIMARY KEY, pad text NOT NULL)")
            .execute(&mut *c)
            .await?;
    }
    let insert = if isolation == "shared" {
        SHARED_FILL
    } else {
        "INSERT INTO fill SELECT g, repeat('x', 1000) FROM generate_series($1::bigint, $2::bigint) g"
    };
    let mut rows = 0i64;
    loop {
        let growth = home_size(c, isolation).await? - base;
        if growth >= target {
            return Ok((rows, growth));
        }
        let batch = ((target - growth) / ROW_BYTES).clamp(100, 20_000);
        sqlx::query(AssertSqlSafe(insert))
            .bind(rows + 1)
            .bind(rows + batch)
            .execute(&mut *c)
            .await?;
        rows += batch;
    }
}

// --- the writer ------------------------------------------------------------------------------

#[derive(Default)]
struct WriterLog {
    /// Acknowledged inserts: (n, when, port of the server).
    acked: Vec<(i64, Instant, u16)>,
    connects: usize,
    failed_connects: usize,
    failed_inserts: usize,
    /// Distinct error messages (first line, at most 8) with their count.
    errors: BTreeMap<String, usize>,
}

impl WriterLog {
    fn note(&mut self, e: &str) {
        let line = e.lines().next().unwrap_or_default().chars().take(200);
        let key: String = line.collect();
        if self.errors.len() < 8 || self.errors.contains_key(&key) {
            *self.errors.entry(key).or_default() += 1;
        }
    }
}

struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Inserts n = 1, 2, … into `writes` through the Secret's credentials until stopped; on an
    /// error, re-reads the Secret, reconnects and tries the same n again (a duplicate n means it
    /// had committed before the connection was lost).
    fn start(secrets: Api<Secret>, isolation: &str) -> Writer {
        // A `shared` tenant cannot add a unique key to the layout's table: a duplicate n (an
        // insert that had committed when its connection was lost) shows as `twice_on_target`.
        let insert = if isolation == "shared" {
            SHARED_WRITE
        } else {
            "INSERT INTO writes (n) VALUES ($1)"
        };
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let (s, l) = (stop.clone(), log.clone());
        let task = tokio::spawn(async move {
            let mut n = 1i64;
            let mut conn: Option<(PgConnection, u16)> = None;
            while !s.load(Ordering::Relaxed) {
                if conn.is_none() {
                    match tenant_conn(&secrets).await {
                        Ok(c) => {
                            lock(&l).connects += 1;
                            conn = Some(c);
                        }
                        Err(e) => {
                            {
                                let mut w = lock(&l);
                                w.failed_connects += 1;
                                w.note(&format!("connect: {e:#}"));
                            }
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            continue;
                        }
                    }
                }
                let Some((c, port)) = conn.as_mut() else {
                    continue;
                };
                let port = *port;
                let r = sqlx::query(AssertSqlSafe(insert))
                    .bind(n)
                    .execute(&mut *c)
                    .await;
                match r {
                    Ok(_) => {
                        lock(&l).acked.push((n, Instant::now(), port));
                        n += 1;
                    }
                    Err(sqlx::Error::Database(d)) if d.constraint() == Some("writes_n_key") => {
                        lock(&l).acked.push((n, Instant::now(), port));
                        n += 1;
                    }
                    Err(e) => {
                        {
                            let mut w = lock(&l);
                            w.failed_inserts += 1;
                            w.note(&format!("insert: {e}"));
                        }
                        conn = None;
                    }
                }
                tokio::time::sleep(WRITER_PAUSE).await;
            }
            if let Some((c, _)) = conn {
                let _ = c.close().await;
            }
        });
        Writer { stop, log, task }
    }

    fn acked(&self) -> usize {
        lock(&self.log).acked.len()
    }

    async fn stop(self) -> Result<WriterLog> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?;
        Ok(std::mem::take(&mut *lock(&self.log)))
    }
}

// --- watching the move -------------------------------------------------------------------------

#[derive(Default)]
struct Watched {
    /// Move phases in the order first seen, with when.
    phases: Vec<(String, Instant)>,
    last: Option<MoveStatus>,
    on: Option<String>,
    ready: bool,
}

fn phase_name(p: MovePhase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{p:?}"))
}

/// Watches the moved Tenant's status (every status write is an event of the emulator's watch).
fn watch_move(client: kube::Client) -> (Arc<Mutex<Watched>>, tokio::task::AbortHandle) {
    let state = Arc::new(Mutex::new(Watched::default()));
    let st = state.clone();
    let task = tokio::spawn(async move {
        let api: Api<Tenant> = Api::namespaced(client, NS);
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let t = match ev {
                Ok(watcher::Event::Apply(t)) | Ok(watcher::Event::InitApply(t)) => t,
                _ => continue,
            };
            if t.name_any() != TENANT {
                continue;
            }
            let Some(status) = t.status.as_ref() else {
                continue;
            };
            let mut w = lock(&st);
            w.on = status.placement.as_ref().and_then(|p| p.postgres.clone());
            w.ready = crate::env::is_ready(&t);
            if let Some(m) = status.move_.as_deref().cloned() {
                let name = phase_name(m.phase);
                if !w.phases.iter().any(|(p, _)| *p == name) {
                    w.phases.push((name, now));
                }
                w.last = Some(m);
            }
        }
    });
    (state, task.abort_handle())
}

fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

fn rfc3339_span_s(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let a: jiff::Timestamp = from?.parse().ok()?;
    let b: jiff::Timestamp = to?.parse().ok()?;
    Some(b.duration_since(a).as_secs_f64())
}

// --- one row ---------------------------------------------------------------------------------

async fn row(cfg: &Cfg, isolation: &str, mib: u64, with_writer: bool) -> Result<Value> {
    let kind = if with_writer { "writes" } else { "idle" };
    log(format!(
        "moves: {isolation} tenant of {mib} MiB, {kind}, default → {TARGET}"
    ));
    let load_before = loadavg();
    let mut env = Env::start(cfg, &format!("moves-{isolation}-{mib}-{kind}"), logical()).await?;
    let b = start_pg(logical()).await?;
    // Every statement of the admin role (the operator's) in the server logs, with its duration:
    // the freeze's timeline is read from them. New sessions only: before the operator starts.
    for pg in [&env.pg, &b] {
        let mut c = admin(pg, "postgres").await?;
        sqlx::raw_sql("ALTER ROLE CURRENT_USER SET log_min_duration_statement = 0")
            .execute(&mut c)
            .await?;
        let _ = c.close().await;
    }
    let pid = start_operator_with_servers(&mut env, cfg, &[(TARGET.to_string(), &b)]).await?;

    env.create_tenants(
        NS,
        &[TENANT.to_string()],
        &json!({"isolation": isolation, "deletionPolicy": "Delete"}),
        1,
    )
    .await?;
    if let Err(e) = env
        .tracker
        .wait_ready(&format!("{NS}/{TENANT}"), Duration::from_secs(120))
        .await
    {
        bail!("{e}\n{}", env.operator_log_tail(30));
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    let (mut c, source_port) = tenant_conn(&secrets).await?;
    let setup = if isolation == "shared" {
        // The audit log's rows reference the tenant's row.
        "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), 'bench', 'bench')"
    } else {
        "CREATE TABLE writes (id bigserial PRIMARY KEY, n bigint NOT NULL UNIQUE, at timestamptz DEFAULT now())"
    };
    sqlx::raw_sql(setup).execute(&mut c).await?;
    let t_fill = Instant::now();
    let (fill_rows, growth) = fill(&mut c, isolation, mib as i64 * MIB).await?;
    let fill_s = t_fill.elapsed().as_secs_f64();
    // Where the tables are: the tenant's database and its schema (`public` of its own database,
    // or its schema in the shared database); the admin's checks below qualify them.
    let (db, schema): (String, String) =
        sqlx::query_as("SELECT current_database()::text, current_schema()::text")
            .fetch_one(&mut c)
            .await?;
    // A `shared` tenant's id (its rows in the layout's tables carry it).
    let tid: String = if isolation == "shared" {
        sqlx::query_scalar("SELECT tenantdb_current_tenant()::text")
            .fetch_one(&mut c)
            .await?
    } else {
        String::new()
    };
    let schema_q = tenantdb::migrate::quote_identifier(&schema)?;
    let rows_of = |kind: &str| rows_sql(isolation, &schema_q, &tid, kind);
    let _ = c.close().await;
    log(format!(
        "  filled: {fill_rows} rows, +{:.1} MiB in {fill_s:.1} s",
        growth as f64 / MIB as f64
    ));

    let writer = with_writer.then(|| Writer::start(secrets.clone(), isolation));
    if let Some(w) = &writer {
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.acked() < 100 {
            if Instant::now() > deadline {
                bail!("the writer acknowledged no 100 writes in 30 s before the move");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let (watched, watch_task) = watch_move(env.client.clone());
    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let (busy0, total0) = machine_cpu();
    let tenants: Api<Tenant> = Api::namespaced(env.client.clone(), NS);
    let t_patch = Instant::now();
    tenants
        .patch(
            TENANT,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"placement": {"server": TARGET}}})),
        )
        .await?;
    let deadline = t_patch + MOVE_TIMEOUT;
    let (done_at, m) = loop {
        {
            let w = lock(&watched);
            if let Some(m) = &w.last {
                if m.phase == MovePhase::Completed && w.on.as_deref() == Some(TARGET) && w.ready {
                    break (Instant::now(), m.clone());
                }
                if m.phase == MovePhase::RolledBack {
                    let m = m.clone();
                    drop(w);
                    watch_task.abort();
                    bail!(
                        "the move was rolled back: {:?}\n{}",
                        m.message,
                        env.operator_log_tail(40)
                    );
                }
            }
        }
        if Instant::now() > deadline {
            let last = lock(&watched).last.clone();
            watch_task.abort();
            bail!(
                "no completed move after {MOVE_TIMEOUT:?} (last {last:?})\n{}",
                env.operator_log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (busy1, total1) = machine_cpu();
    let op_cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    // The writer goes on on the target for a moment (100 writes and 1 s at least).
    let writer_log = match writer {
        Some(w) => {
            let at_done = w.acked();
            let until = Instant::now() + Duration::from_secs(60);
            tokio::time::sleep(Duration::from_secs(1)).await;
            while w.acked() < at_done + 100 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(w.stop().await?)
        }
        None => None,
    };
    watch_task.abort();
    let phases: Vec<(String, f64)> = lock(&watched)
        .phases
        .iter()
        .map(|(p, at)| (p.clone(), round(secs(t_patch, *at), 3)))
        .collect();
    let seen = |p: &str| phases.iter().find(|(n, _)| n == p).map(|(_, s)| *s);
    let span = |a: &str, b: &str| match (seen(a), seen(b)) {
        (Some(x), Some(y)) => json!(round(y - x, 3)),
        _ => Value::Null,
    };
    let total_s = rfc3339_span_s(m.started_at.as_deref(), m.finished_at.as_deref());

    // Where the data is now: the Secret names b, the rows are on b, nothing left on the source.
    let target_port: Option<u16> = secrets
        .get(&format!("{TENANT}-db"))
        .await
        .ok()
        .and_then(|s| tenantdb::secret::read_key(&s, "port"))
        .and_then(|p| p.parse().ok());
    let mut tb = admin(&b, &db).await?;
    let fill_on_target: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM ({}) f",
        rows_of("fill")?
    )))
    .fetch_one(&mut tb)
    .await?;
    let writer_json = match &writer_log {
        Some(w) => {
            let on_target: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(rows_of("writes")?))
                .fetch_all(&mut tb)
                .await?;
            let have: BTreeSet<i64> = on_target.iter().copied().collect();
            let acked: BTreeSet<i64> = w.acked.iter().map(|(n, _, _)| *n).collect();
            let lost = acked.difference(&have).count();
            let unacked = have.difference(&acked).count();
            let twice = on_target.len() - have.len();
            let mut longest = (0.0f64, None::<Instant>);
            for pair in w.acked.windows(2) {
                let g = secs(pair[0].1, pair[1].1);
                if g > longest.0 {
                    longest = (g, Some(pair[0].1));
                }
            }
            let first_on_target = w
                .acked
                .iter()
                .find(|(_, _, port)| *port != source_port)
                .map(|(_, at, _)| round(secs(t_patch, *at), 3));
            let before = w.acked.iter().filter(|(_, at, _)| *at < t_patch).count();
            let during = w
                .acked
                .iter()
                .filter(|(_, at, _)| *at >= t_patch && *at <= done_at)
                .count();
            let span_s = match (w.acked.first(), w.acked.last()) {
                (Some(a), Some(z)) => secs(a.1, z.1),
                _ => 0.0,
            };
            log(format!(
                "  writer: {} acknowledged ({lost} lost), longest gap {:.3} s, {} failed inserts, {} failed connects",
                acked.len(),
                longest.0,
                w.failed_inserts,
                w.failed_connects
            ));
            json!({
                "acknowledged": acked.len(),
                "acknowledged_before_patch": before,
                "acknowledged_during_move": during,
                "writes_per_s": round(acked.len() as f64 / span_s.max(1e-9), 1),
                "on_target": have.len(),
                "lost": lost,
                "unacknowledged_on_target": unacked,
                "twice_on_target": twice,
                "longest_gap_s": round(longest.0, 3),
                "longest_gap_starts_s": longest.1.map(|at| round(secs(t_patch, at), 3)),
                "first_write_on_target_s": first_on_target,
                "connects": w.connects,
                "failed_connects": w.failed_connects,
                "failed_inserts": w.failed_inserts,
                "errors": w.errors,
            })
        }
        None => Value::Null,
    };
    let _ = tb.close().await;
    let timeline = freeze_timeline(&env.pg.log(), &b.log());
    let mut src = admin(&env.pg, "postgres").await?;
    let source_db_left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&db)
            .fetch_one(&mut src)
            .await?;
    // A schema tenant's home on the source: its schema in the shared database (which stays).
    let source_schema_left: Option<i64> = if isolation == "schema" && source_db_left > 0 {
        let mut sdb = admin(&env.pg, &db).await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(&schema)
            .fetch_one(&mut sdb)
            .await?;
        let _ = sdb.close().await;
        Some(n)
    } else {
        None
    };
    // A `shared` tenant's home on the source: its rows in the layout's tables.
    let source_rows_left: Option<i64> = if isolation == "shared" {
        let mut sdb = admin(&env.pg, &db).await?;
        let mut n = 0i64;
        for kind in ["fill", "writes"] {
            let sql = format!("SELECT count(*) FROM ({}) r", rows_of(kind)?);
            let k: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut sdb)
                .await?;
            n += k;
        }
        let _ = sdb.close().await;
        Some(n)
    } else {
        None
    };
    let slots_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'tenantdb\\_mv\\_%'",
    )
    .fetch_one(&mut src)
    .await?;
    let _ = src.close().await;
    let mut tgt = admin(&b, "postgres").await?;
    let subs_left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_subscription WHERE subname LIKE 'tenantdb\\_mv\\_%'",
    )
    .fetch_one(&mut tgt)
    .await?;
    let _ = tgt.close().await;

    let metrics = env.metrics().await.unwrap_or_default();
    let reconcile_errors = metric_sum(
        &metrics,
        "tenantdb_reconcile_errors_total",
        &["controller=\"tenant\""],
    );
    env.stop_operator().await;
    let problems = log_problems(&env.dir.join("operator.log"));
    let load_after = loadavg();
    let freeze = m.write_freeze_ms;
    log(format!(
        "  moved in {:.2} s (startedAt → finishedAt), write freeze {} ms, {} attempt(s); phases {phases:?}",
        total_s.unwrap_or(f64::NAN),
        freeze.map_or("?".into(), |f| f.to_string()),
        m.attempts
    ));
    if fill_on_target != fill_rows {
        log(format!(
            "  WARNING: {fill_on_target} fill rows on the target, {fill_rows} written"
        ));
    }
    let row = json!({
        "isolation": isolation,
        "size_mib": mib,
        "writer": if with_writer { writer_json } else { Value::Null },
        "with_writer": with_writer,
        "data_mib": round(growth as f64 / MIB as f64, 2),
        "fill_rows": fill_rows,
        "fill_s": round(fill_s, 2),
        "move_bytes": m.bytes,
        "move_mib": m.bytes.map(|b| round(b as f64 / MIB as f64, 1)),
        "move_total_s": total_s.map(|s| round(s, 3)),
        "patch_to_completed_s": round(secs(t_patch, done_at), 3),
        "write_freeze_ms": freeze,
        "freeze_under_target": freeze.is_some_and(|f| f < TARGET_FREEZE_MS),
        "attempts": m.attempts,
        "phases_seen_s": phases.iter().map(|(p, s)| json!([p, s])).collect::<Vec<_>>(),
        "preparing_s": span("Preparing", "Copying"),
        "copying_s": span("Copying", "CuttingOver"),
        "cutting_over_s": span("CuttingOver", "CleaningUp"),
        "cleaning_up_s": span("CleaningUp", "Completed"),
        "freeze_timeline": timeline,
        "fill_rows_on_target": fill_on_target,
        "secret_names_target": target_port == Some(b.port()),
        "source_database_left": source_db_left,
        "source_schema_left": source_schema_left,
        "source_rows_left": source_rows_left,
        "source_home_left": match isolation {
            "schema" => source_schema_left.unwrap_or(0) > 0,
            "shared" => source_rows_left.unwrap_or(0) > 0,
            _ => source_db_left > 0,
        },
        "replication_slots_left": slots_left,
        "subscriptions_left": subs_left,
        "message": m.message,
        "operator_cpu_s": round(op_cpu, 2),
        "machine_cpu_busy_share": round((busy1 - busy0) / (total1 - total0).max(1e-9), 3),
        "operator_reconcile_errors": reconcile_errors,
        "operator_log": problems,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    });
    drop(b);
    Ok(row)
}
