//! Online move of a `shared` tenant (its rows in the row-level security layout's tables) between
//! two PostgreSQL servers with `wal_level=logical`, through the real binary and the emulator:
//!
//! - a writer inserts sequence-numbered audit-log rows (a partitioned table) through the Secret's
//!   credentials and updates its `saas_tenants` row, reconnecting and re-reading the Secret on
//!   error; afterwards every acknowledged row is on the target exactly once, and the last
//!   acknowledged update is there;
//! - another shared tenant on the source updates and deletes its own rows all through the move
//!   without a single error (the row filter's column must be in the replica identity of every
//!   published table, for every tenant's `UPDATE`/`DELETE`; the move sets `REPLICA IDENTITY FULL`
//!   while its publication exists, and sets it back after);
//! - a second shared tenant moves at the same time (two publications of the layout at once);
//! - the source has a past month's partition the target lacks (with a row of the mover): the
//!   catalog comparison leaves partitions out;
//! - a shared tenant already on the target keeps its rows, untouched, and no row of the tenant
//!   that stays reaches the target (the row filter);
//! - the moved tenant's rows, registration and roles are gone from the source, the other tenant's
//!   rows are there; no subscription, publication, replication slot or move role is left; the
//!   source's layout tables have their default replica identity again;
//! - a move back, cancelled while it copies, leaves nothing of the tenant on the server it was
//!   going to (rows, registration, roles) and the tenant writes where it is.

use tenantdb_testkit::e2e;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Env, EnvOptions, wait_for};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantdb::crd::MovePhase;
use tenantdb::pg::shared::tenant_id;
use tenantdb_testkit::localpg::LocalPg;
use tenantdb_testkit::moves::{layout_rows, leftovers, move_of, on, place, wait_moved};

const T: Duration = Duration::from_secs(240);
const NS: &str = "rls-moves";
fn logical() -> Vec<(String, String)> {
    vec![("wal_level".into(), "logical".into())]
}

async fn admin(pg: &LocalPg, db: &str) -> PgConnection {
    PgConnection::connect(&pg.url(db)).await.unwrap()
}

/// A session with the credentials the tenant's Secret holds now.
async fn tenant_conn(env: &Env, name: &str) -> Option<PgConnection> {
    tenantdb_testkit::moves::tenant_conn(&env.secrets(NS), name).await
}

/// The tenant's row count per tenant-scoped table on a server (as the admin).
async fn rows_of(pg: &LocalPg, db: &str, tid: &str) -> BTreeMap<String, i64> {
    let mut c = admin(pg, db).await;
    layout_rows(&mut c, tid).await
}

/// What the moving tenant's writer saw.
#[derive(Default)]
struct Writes {
    /// Numbers of the acknowledged audit-log inserts.
    acked: Vec<i64>,
    /// The last acknowledged `saas_tenants.tenant_name`.
    name: Option<String>,
}

/// Inserts `target_id = n` rows (n = 1, 2, …) into the audit log and, every 10th, renames its
/// tenant row, through the Secret's credentials. After an error it reconnects with the Secret as
/// it is then and looks whether `n` had committed before trying it again.
async fn write(env: &Env, stop: &AtomicBool, writes: &Mutex<Writes>) {
    let mut n = 1i64;
    let mut conn: Option<PgConnection> = None;
    let mut unsure = false;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = tenant_conn(env, "r").await;
            if conn.is_none() {
                // Pacing between attempts, not a wait for a state.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if unsure {
            let had: Result<i64, _> = sqlx::query_scalar(
                "SELECT count(*) FROM saas_unified_audit_logs WHERE target_id = $1::text",
            )
            .bind(n)
            .fetch_one(&mut *c)
            .await;
            match had {
                Ok(1) => {
                    writes.lock().unwrap().acked.push(n);
                    n += 1;
                }
                Ok(_) => {}
                Err(_) => {
                    conn = None;
                    continue;
                }
            }
            unsure = false;
            continue;
        }
        let r = sqlx::query(
            "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, target_id) \
             VALUES (tenantdb_current_tenant(), 'operation', 'move', 'create', $1::text)",
        )
        .bind(n)
        .execute(&mut *c)
        .await;
        if r.is_err() {
            unsure = true;
            conn = None;
            continue;
        }
        writes.lock().unwrap().acked.push(n);
        if n % 10 == 0 {
            let name = format!("r{n}");
            let r = sqlx::query("UPDATE saas_tenants SET tenant_name = $1")
                .bind(&name)
                .execute(&mut *c)
                .await;
            match r {
                Ok(done) if done.rows_affected() == 1 => writes.lock().unwrap().name = Some(name),
                _ => conn = None,
            }
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The tenant that stays: updates its row and inserts and deletes audit-log rows on the source
/// all through the move, on one session; returns how many rounds it made and every error.
async fn churn(env: &Env, stop: &AtomicBool) -> (u64, Vec<String>) {
    let mut c = tenant_conn(env, "stay").await.unwrap();
    let (mut rounds, mut errors) = (0u64, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let r = sqlx::raw_sql(
            "UPDATE saas_tenants SET tenant_name = 'stay ' || now()::text; \
             INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) \
               VALUES (tenantdb_current_tenant(), 'operation', 'churn', 'create'); \
             DELETE FROM saas_unified_audit_logs WHERE module = 'churn'",
        )
        .execute(&mut c)
        .await;
        match r {
            Ok(_) => rounds += 1,
            Err(e) => errors.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (rounds, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_tenant_moves_online_without_losing_writes() {
    let env = Env::start_configured(EnvOptions {
        extra_args: vec!["--server-probe-seconds".into(), "1".into()],
        pg_settings: logical(),
        ..Default::default()
    })
    .await;
    // Room for two copies at once on b (each takes an apply worker and two table
    // synchronisation workers; PostgreSQL's default of 4 has room for one), so that the two moves
    // below copy together.
    let mut b_settings = logical();
    b_settings.push(("max_logical_replication_workers".into(), "8".into()));
    let b = env.add_logical_server("b", &b_settings).await;
    env.create_tenant(
        NS,
        "r",
        json!({"isolation": "shared", "deletionPolicy": "Delete"}),
    )
    .await;
    for n in ["r2", "stay"] {
        env.create_tenant(
            NS,
            n,
            json!({"isolation": "shared", "deletionPolicy": "Delete"}),
        )
        .await;
    }
    env.create_tenant(
        NS,
        "there",
        json!({"isolation": "shared", "deletionPolicy": "Delete", "placement": {"server": "b"}}),
    )
    .await;
    for (n, server) in [
        ("r", "default"),
        ("r2", "default"),
        ("stay", "default"),
        ("there", "b"),
    ] {
        let t = env.wait_ready(NS, n, T).await;
        assert_eq!(on(&t).as_deref(), Some(server), "{n}");
    }
    let shared = env.secret_value(NS, "r-db", "database").await.unwrap();
    let (r_id, r2_id, stay_id, there_id) = (
        tenant_id(NS, "r"),
        tenant_id(NS, "r2"),
        tenant_id(NS, "stay"),
        tenant_id(NS, "there"),
    );
    // A past month's partition only the source has (its layout is older than b's): the catalog
    // comparison must not count it, and its rows land in b's DEFAULT partition.
    sqlx::raw_sql(
        "SET ROLE tenantdb_rls_owner; \
         CREATE TABLE tenantdb_rls.saas_unified_audit_logs_p202001 PARTITION OF \
           tenantdb_rls.saas_unified_audit_logs FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')",
    )
    .execute(&mut admin(&env.pg, &shared).await)
    .await
    .unwrap();
    // Each tenant's own row and some audit-log rows (the target's tenant with the same values).
    for (n, rows) in [("r", 300), ("r2", 120), ("stay", 50), ("there", 300)] {
        let mut c = tenant_conn(&env, n).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), '{n}', '{n}'); \
             INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, target_name) \
               SELECT tenantdb_current_tenant(), 'operation', 'seed', 'create', 'seed ' || g FROM generate_series(1, {rows}) g"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let mut c = tenant_conn(&env, "r").await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, created_at) \
           VALUES (tenantdb_current_tenant(), 'operation', 'old', 'create', '2020-01-15')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let r2_before = rows_of(&env.pg, &shared, &r2_id).await;
    let there_before = rows_of(&b, &shared, &there_id).await;
    let stay_before = rows_of(&env.pg, &shared, &stay_id).await;
    assert_eq!(there_before.get("saas_unified_audit_logs"), Some(&300));

    let stop = AtomicBool::new(false);
    let writes = Arc::new(Mutex::new(Writes::default()));
    let scenario = async {
        wait_for(T, "200 writes before the move", || async {
            (writes.lock().unwrap().acked.len() >= 200).then_some(())
        })
        .await
        .unwrap();
        // r2 moves at the same time: two publications of the layout at once, one dropped while
        // the other still needs the tables' identity.
        for n in ["r", "r2"] {
            place(&env, NS, n, json!({"server": "b"})).await;
        }
        let mut done = Vec::new();
        for n in ["r", "r2"] {
            done.push(wait_moved(&env, NS, n, "b", T).await);
        }
        let t = done.swap_remove(0);
        let at_move = writes.lock().unwrap().acked.len();
        wait_for(T, "100 writes on the target", || async {
            (writes.lock().unwrap().acked.len() >= at_move + 100).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
        stop.store(true, Ordering::Relaxed);
        move_of(&t).unwrap()
    };
    let (m, (), (rounds, churn_errors)) =
        tokio::join!(scenario, write(&env, &stop, &writes), churn(&env, &stop));
    println!(
        "move {} -> {}: write freeze {:?} ms, {:?} bytes, {} attempt(s); the other tenant made {rounds} update rounds",
        m.from, m.to, m.write_freeze_ms, m.bytes, m.attempts
    );
    assert!(m.write_freeze_ms.is_some_and(|f| f < 10_000), "{m:?}");
    assert!(
        churn_errors.is_empty(),
        "the other tenant's writes on the source failed during the move: {:?}",
        &churn_errors[..churn_errors.len().min(3)]
    );
    assert!(rounds > 10, "the other tenant wrote only {rounds} times");

    // Every acknowledged row on b exactly once, the last acknowledged rename there.
    let (acked, last_name) = {
        let w = writes.lock().unwrap();
        (w.acked.clone(), w.name.clone())
    };
    let mut d = admin(&b, &shared).await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT target_id FROM tenantdb_rls.saas_unified_audit_logs WHERE tenant_id = $1 AND module = 'move'",
    )
    .bind(&r_id)
    .fetch_all(&mut d)
    .await
    .unwrap();
    let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
    for a in &actions {
        *counts.entry(a.parse().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "rows twice on b: {twice:?}");
    let lost: Vec<&i64> = acked.iter().filter(|n| !counts.contains_key(n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged rows lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    let name: String =
        sqlx::query_scalar("SELECT tenant_name FROM tenantdb_rls.saas_tenants WHERE id = $1")
            .bind(&r_id)
            .fetch_one(&mut d)
            .await
            .unwrap();
    assert_eq!(Some(name), last_name);
    println!("{} acknowledged rows, all on the target once", acked.len());
    // Seen through the tenant's own session on b: its rows only.
    let mut rc = tenant_conn(&env, "r").await.unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM saas_unified_audit_logs")
        .fetch_one(&mut rc)
        .await
        .unwrap();
    assert_eq!(seen, 300 + 1 + actions.len() as i64);
    // The other mover's rows arrived whole and left the source.
    assert_eq!(rows_of(&b, &shared, &r2_id).await, r2_before);
    assert_eq!(rows_of(&env.pg, &shared, &r2_id).await, BTreeMap::new());

    // The target's own tenant untouched; nothing of r on the source, the other tenant's rows
    // there; no move object anywhere, the default replica identity back.
    assert_eq!(rows_of(&b, &shared, &there_id).await, there_before);
    assert_eq!(
        rows_of(&b, &shared, &stay_id).await,
        BTreeMap::new(),
        "the other tenant's rows reached the target"
    );
    assert_eq!(rows_of(&env.pg, &shared, &r_id).await, BTreeMap::new());
    let stay_after = rows_of(&env.pg, &shared, &stay_id).await;
    assert_eq!(
        stay_after, stay_before,
        "the other tenant's rows on the source"
    );
    let mut a = admin(&env.pg, &shared).await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT 'mapping ' || role_name FROM tenantdb_rls.tenantdb_tenant_roles WHERE tenant_id = $1 \
         UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_rls\\_moves\\_r\\_%'",
    )
    .bind(&r_id)
    .fetch_all(&mut a)
    .await
    .unwrap();
    assert!(left.is_empty(), "left of r on the source: {left:?}");
    assert_eq!(leftovers(&env.pg, &[&shared]).await, Vec::<String>::new());
    assert_eq!(leftovers(&b, &[&shared]).await, Vec::<String>::new());

    // A move back, cancelled while it copies (the table copies held on the target): rolled back,
    // nothing of r left on default (rows, registration, roles), r writes on b, and b's tables
    // have their default replica identity again.
    e2e::hold_table_copies(&env.pg, true).await;
    let api = env.tenants(NS);
    let placed =
        |server: &'static str| Patch::Merge(json!({"spec": {"placement": {"server": server}}}));
    api.patch("r", &PatchParams::default(), &placed("default"))
        .await
        .unwrap();
    wait_for(T, "r's move back copying", || async {
        let m = move_of(&api.get("r").await.ok()?)?;
        (m.phase == MovePhase::Copying && m.to == "default").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(
        leftovers(&b, &[&shared])
            .await
            .iter()
            .any(|l| l.starts_with("replica identity ")),
        "the source's layout tables while its publication exists: {:?}",
        leftovers(&b, &[&shared]).await
    );
    api.patch("r", &PatchParams::default(), &placed("b"))
        .await
        .unwrap();
    e2e::hold_table_copies(&env.pg, false).await;
    let t = wait_for(T, "r's move back rolled back", || async {
        let t = api.get("r").await.ok()?;
        let m = move_of(&t)?;
        (m.phase.is_terminal() && m.to == "default").then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let m = move_of(&t).unwrap();
    assert_eq!(m.phase, MovePhase::RolledBack, "{m:?}");
    let t = env.wait_ready(NS, "r", T).await;
    assert_eq!(on(&t).as_deref(), Some("b"));
    assert_eq!(rows_of(&env.pg, &shared, &r_id).await, BTreeMap::new());
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT 'mapping ' || role_name FROM tenantdb_rls.tenantdb_tenant_roles WHERE tenant_id = $1 \
         UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_rls\\_moves\\_r\\_%'",
    )
    .bind(&r_id)
    .fetch_all(&mut admin(&env.pg, &shared).await)
    .await
    .unwrap();
    assert!(
        left.is_empty(),
        "left of r's cancelled copy on default: {left:?}"
    );
    let mut rc = tenant_conn(&env, "r").await.unwrap();
    let n: i64 = sqlx::query_scalar(
        "WITH i AS (INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) \
           VALUES (tenantdb_current_tenant(), 'operation', 'after', 'create') RETURNING 1) \
         SELECT count(*) FROM i",
    )
    .fetch_one(&mut rc)
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(leftovers(&env.pg, &[&shared]).await, Vec::<String>::new());
    assert_eq!(leftovers(&b, &[&shared]).await, Vec::<String>::new());
}
