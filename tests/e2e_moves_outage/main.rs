//! Online moves through server outages and an interrupted cut-over, through the real binary, the
//! emulator and throwaway clusters with `wal_level=logical`.
//!
//! - `a_30s_outage_of_the_target_or_the_source_during_copying`: two `database` tenants move at
//!   once, each under a writer that inserts sequence-numbered rows through its Secret (reconnecting
//!   and re-reading the Secret on error). While one move is `Copying` (default → `b`) its target
//!   is stopped for 30 s: the tenant keeps taking writes on its source, and `status.move.message`
//!   and the `Placed` condition say that target server `b` is unreachable. While the other is
//!   `Copying` (`c` → default) its source is stopped for 30 s: the message says that source server
//!   `c` is unreachable and that the tenant is unavailable until it is back. Once the servers are
//!   back both moves complete; every acknowledged row is on the tenant's new home exactly once,
//!   the Secret names it, the source copy is gone, and no replication slot (of the move or of a
//!   table synchronisation), subscription or publication is left on any server.
//! - `a_cut_over_resumed_without_its_subscription_rolls_back_at_once`: the operator exits (a
//!   test-only fail point, `TENANTDB_TEST_EXIT_AT=move-subscription-dropped`) right after a
//!   cut-over dropped the subscription, before the commit point: the source is fenced, the status
//!   says `CuttingOver`. The restarted operator rolls the move back at once (not after three
//!   10 s catch-up waits) and the tenant logs in and writes on its source again. Then a move
//!   cancelled by changing the placement back is started again at once when the placement asks
//!   for it again (the 60 s pause after a failed move does not apply to a cancelled one).
//! - `a_cut_over_resumed_on_a_fenced_source_gives_the_target_its_logins`: the operator exits right
//!   after a cut-over fenced the source (`move-fenced`); restarted, it exits again right after the
//!   resumed cut-over recorded the commit point (`move-cut-over`), before the pass provisions the
//!   target: the tenant's login is on on the target already (a cut-over that read the logins from
//!   the fenced source enabled none). Then the move completes and the tenant writes on `b`.
//! - `a_cut_over_resumed_on_a_fenced_source_without_a_record_waits_for_its_logins`: the same
//!   interruption after the fence, resumed from a status without `status.move.loginRoles` (as an
//!   older operator wrote it): refused (the log says why) until provisioning gave the source its
//!   active role's login back, then the move completes and the tenant writes on `b`.
//! - `a_cut_over_failing_while_frozen_gives_the_logins_back_and_rolls_back`: every cut-over fails
//!   after the write freeze (`TENANTDB_TEST_FAIL_AT=move-frozen`, an error the server would repeat):
//!   each attempt gives the source its logins back and counts, the third rolls the move back, and
//!   the tenant writes on its source.
//! - `ddl_just_before_the_write_freeze_is_found_inside_it`: the cut-over paused between its
//!   catalog comparison and its freeze (`TENANTDB_TEST_PAUSE_AT=move-compared`) while the tenant
//!   creates an index on its source: the stamps taken inside the freeze moved, the comparison
//!   redone there finds the index, the attempt is undone; the third rolls the move back.
//! - `sequences_and_ddl_late_in_the_write_freeze_are_seen`: paused inside the freeze after the row
//!   counts (`move-counted`), the admin standing in for a session that slipped past the fence:
//!   `nextval`s there are on the target after the move; an index created there is found by the
//!   stamps taken after the second catch-up, and the move rolls back.
//! - `a_move_to_the_same_cluster_under_another_name_is_refused`: the default server's cluster
//!   declared again as DatabaseServer `alias`; a move to `alias` is refused before it starts and
//!   the tenant's data stays.

use tenantdb_testkit::e2e;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::{Env, EnvOptions, hold_table_copies, wait_for};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantdb::crd::{MovePhase, MoveStatus, Tenant, TenantPhase};
use tenantdb_testkit::localpg::LocalPg;

const T: Duration = Duration::from_secs(240);
/// How long a server is stopped.
const OUTAGE: Duration = Duration::from_secs(30);
const NS: &str = "mvout";

fn logical() -> Vec<(String, String)> {
    vec![("wal_level".into(), "logical".into())]
}

fn options(env: Vec<(String, String)>) -> EnvOptions {
    EnvOptions {
        extra_args: [
            "--server-probe-seconds",
            "1",
            "--health-interval-seconds",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        pg_settings: logical(),
        operator_env: env,
        ..Default::default()
    }
}

/// A connection with the credentials the tenant's Secret holds now.
async fn tenant_conn(env: &Env, name: &str) -> Option<PgConnection> {
    tenantdb_testkit::moves::tenant_conn(&env.secrets(NS), name).await
}

async fn tenant(env: &Env, name: &str) -> Option<Tenant> {
    env.tenants(NS).get(name).await.ok()
}

fn move_of(t: &Tenant) -> Option<MoveStatus> {
    t.status.as_ref()?.move_.as_deref().cloned()
}

fn on(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.placement.as_ref()?.postgres.clone()
}

fn condition(t: &Tenant, type_: &str) -> Option<String> {
    let c = t
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some(format!("{}/{}: {}", c.status, c.reason, c.message))
}

/// A move refused before it started: `RolledBack`, never started, the tenant still on the default
/// server, and the message saying `why` (printed with `label`).
fn assert_refused_on_default(label: &str, t: &Tenant, m: &MoveStatus, why: &str) {
    println!(
        "{label}: {:?}: {}",
        m.phase,
        m.message.as_deref().unwrap_or_default()
    );
    assert_eq!(
        (m.phase, m.started_at.as_deref(), on(t).as_deref()),
        (MovePhase::RolledBack, None, Some("default")),
        "{m:?}"
    );
    assert!(
        m.message.as_deref().is_some_and(|s| s.contains(why)),
        "{m:?}"
    );
}

async fn place(env: &Env, name: &str, server: &str) {
    env.tenants(NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"placement": {"server": server}}})),
        )
        .await
        .unwrap();
}

/// Waits until the tenant's move is in `phase` (and passes `also`).
async fn wait_move(
    env: &Env,
    name: &str,
    what: &str,
    timeout: Duration,
    also: impl Fn(&Tenant, &MoveStatus) -> bool,
) -> (Tenant, MoveStatus) {
    wait_for(timeout, &format!("{name}: {what}"), || async {
        let t = tenant(env, name).await?;
        let m = move_of(&t)?;
        also(&t, &m).then_some((t, m))
    })
    .await
    .unwrap_or_else(|e| {
        panic!("{e}\n{}", env.important_log_tail(60));
    })
}

async fn admin(pg: &LocalPg, db: &str) -> PgConnection {
    PgConnection::connect(&pg.url(db)).await.unwrap()
}

/// Every replication slot (a move's, or a table synchronisation's), subscription, and publication
/// of any database on the server.
async fn leftovers(pg: &LocalPg) -> Vec<String> {
    let mut c = admin(pg, "postgres").await;
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT 'slot ' || slot_name FROM pg_replication_slots \
         UNION ALL SELECT 'subscription ' || subname FROM pg_subscription",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let dbs: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for db in dbs {
        let Ok(mut d) = PgConnection::connect(&pg.url(&db)).await else {
            continue; // dropped meanwhile
        };
        let pubs: Vec<String> = sqlx::query_scalar(
            "SELECT 'publication ' || pubname || ' in ' || current_database() FROM pg_publication",
        )
        .fetch_all(&mut d)
        .await
        .unwrap();
        out.extend(pubs);
    }
    out
}

async fn database_exists(pg: &LocalPg, db: &str) -> bool {
    let mut c = admin(pg, "postgres").await;
    sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(db)
        .fetch_optional(&mut c)
        .await
        .unwrap()
        .is_some()
}

/// Acknowledged writes of one tenant's writer: `n` and when.
#[derive(Default)]
struct Acks(Mutex<Vec<(i64, Instant)>>);

impl Acks {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn since(&self, from: Instant, to: Instant) -> usize {
        let a = self.0.lock().unwrap();
        a.iter().filter(|(_, at)| *at >= from && *at < to).count()
    }
    fn numbers(&self) -> Vec<i64> {
        self.0.lock().unwrap().iter().map(|(n, _)| *n).collect()
    }
}

/// Inserts n = 1, 2, … into `writes` through the Secret's credentials until `stop`; on an error
/// it reconnects with the Secret as it is then and tries the same n again (a duplicate n means it
/// had committed).
async fn write(env: &Env, name: &str, stop: &AtomicBool, acks: &Acks) {
    let mut n = 1i64;
    let mut conn: Option<PgConnection> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = tenant_conn(env, name).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let r = sqlx::query("INSERT INTO writes (n) VALUES ($1)")
            .bind(n)
            .execute(&mut *c)
            .await;
        match r {
            Ok(_) => {}
            Err(sqlx::Error::Database(d)) if d.constraint() == Some("writes_n_key") => {}
            Err(_) => {
                conn = None;
                continue;
            }
        }
        acks.0.lock().unwrap().push((n, Instant::now()));
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (10 s at most) until `name` takes a write through its Secret (on its home) again.
async fn writes_through_its_secret(env: &Env, name: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{name} writes on its source"),
        || async {
            let mut c = tenant_conn(env, name).await?;
            sqlx::query("INSERT INTO writes (n) VALUES (1)")
                .execute(&mut c)
                .await
                .ok()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
}

/// The tenant's own tables: `writes` for the writer, and `big` (enough rows that the initial copy
/// takes a moment).
/// `database` tenants (`deletionPolicy: Delete`), all created, then each Ready with the tables of
/// [`tables`] (100 rows).
async fn database_tenants_with_tables(env: &Env, names: &[&str]) {
    for name in names {
        env.create_tenant(
            NS,
            name,
            json!({"isolation": "database", "deletionPolicy": "Delete"}),
        )
        .await;
    }
    for name in names {
        env.wait_ready(NS, name, T).await;
        tables(env, name, 100).await;
    }
}

async fn tables(env: &Env, name: &str, rows: i64) {
    let mut c = tenant_conn(env, name).await.expect("tenant login");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE writes (id bigserial PRIMARY KEY, n bigint NOT NULL UNIQUE); \
         CREATE TABLE big (id bigint PRIMARY KEY, pad text); \
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, {rows}) g"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
}

/// A server stopped during a move, and what the tenant shows meanwhile.
struct Outage<'a> {
    /// The server stopped.
    down: &'a LocalPg,
    /// The move's target (its table copies held until the outage is over).
    target: &'a LocalPg,
    /// In `status.move.message`.
    message: &'a str,
    /// A condition of the Tenant: its type, what it begins with (`status/reason: message`), and
    /// what it contains.
    condition: (&'a str, &'a str, String),
    /// Whether the tenant keeps taking writes (on its source).
    served: bool,
}

/// Moves `name` to `to`, stops a server for [`OUTAGE`] once the move is `Copying`, checks what the
/// move and the tenant say meanwhile and, if the tenant is served, that it keeps taking writes on
/// its source; returns the completed move.
async fn move_through_outage(
    env: &Env,
    name: &str,
    to: &str,
    outage: Outage<'_>,
    acks: &Acks,
) -> MoveStatus {
    let Outage {
        down,
        target,
        message: expect,
        condition: (type_, shown, contains),
        served,
    } = outage;
    // The target copies nothing until the outage is over: the server goes down while the move
    // is in `Copying`, however fast the copy would be.
    hold_table_copies(target, true).await;
    place(env, name, to).await;
    wait_move(env, name, "Copying", T, |_, m| {
        m.phase == MovePhase::Copying
    })
    .await;
    let stopped = Instant::now();
    tokio::task::block_in_place(|| down.stop_server()).expect("stop the server");
    let acked_at_stop = acks.count();
    let (t, m) = wait_move(env, name, expect, OUTAGE, |_, m| {
        m.message.as_deref().is_some_and(|s| s.contains(expect))
    })
    .await;
    println!(
        "{name}, {:.1} s into the outage: move {:?}: {}\n  Placed: {:?}\n  Ready: {:?}\n  Degraded: {:?}",
        stopped.elapsed().as_secs_f64(),
        m.phase,
        m.message.as_deref().unwrap_or_default(),
        condition(&t, "Placed"),
        condition(&t, "Ready"),
        condition(&t, "Degraded"),
    );
    assert!(m.phase <= MovePhase::CuttingOver, "{m:?}");
    assert_ne!(on(&t).as_deref(), Some(to), "not cut over while down");
    let c = wait_for(OUTAGE, &format!("{name}: {type_} {shown}…"), || async {
        condition(&tenant(env, name).await?, type_)
            .filter(|c| c.starts_with(shown) && c.contains(&contains))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    println!(
        "{name}, {:.1} s into the outage: {type_}: {c}",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        stopped.elapsed() < OUTAGE,
        "{name}: shown during the outage"
    );
    // The outage lasts its full length (a deliberate duration, not a wait for a state).
    tokio::time::sleep_until((stopped + OUTAGE).into()).await;
    let t = tenant(env, name).await.unwrap();
    let m = move_of(&t).unwrap();
    assert!(
        m.message.as_deref().is_some_and(|s| s.contains(expect))
            && m.phase <= MovePhase::CuttingOver,
        "at the end of the outage: {m:?}"
    );
    let late = acks.since(stopped + OUTAGE - Duration::from_secs(10), stopped + OUTAGE);
    println!(
        "{name}: {} writes acknowledged during the outage, {late} in its last 10 s",
        acks.count() - acked_at_stop,
    );
    if served {
        assert!(
            late >= 10,
            "{name} is served on its source while {to} is down"
        );
    }
    tokio::task::block_in_place(|| down.start_server()).expect("start the server again");
    hold_table_copies(target, false).await;
    let back = Instant::now();
    let (_, m) = wait_move(env, name, "Completed, Ready on the target", T, |t, m| {
        m.phase.is_terminal()
            && t.status
                .as_ref()
                .is_some_and(|s| s.phase == TenantPhase::Ready)
    })
    .await;
    assert_eq!(m.phase, MovePhase::Completed, "{m:?}");
    println!(
        "{name}: completed {:.1} s after the server came back: write freeze {:?} ms, {} attempt(s)",
        back.elapsed().as_secs_f64(),
        m.write_freeze_ms,
        m.attempts
    );
    let at_move = acks.count();
    wait_for(
        T,
        &format!("{name}: 100 writes on its new home"),
        || async { (acks.count() >= at_move + 100).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    m
}

/// Every acknowledged write of `name` is on `home` exactly once.
async fn all_acknowledged_on(env: &Env, name: &str, home: &LocalPg, acks: &Acks) {
    let db = env
        .secret_value(NS, &format!("{name}-db"), "database")
        .await
        .unwrap();
    let mut d = admin(home, &db).await;
    let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM writes ORDER BY n")
        .fetch_all(&mut d)
        .await
        .unwrap();
    let have: BTreeSet<i64> = rows.iter().copied().collect();
    assert_eq!(have.len(), rows.len(), "{name}: no row twice");
    let acked = acks.numbers();
    let lost: Vec<&i64> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{name}: {} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(
        env.secret_value(NS, &format!("{name}-db"), "port").await,
        Some(home.port().to_string()),
        "{name}: the Secret names its new home"
    );
    println!(
        "{name}: {} acknowledged writes, all on its new home",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_of_the_target_or_the_source_during_copying() {
    let started = Instant::now();
    let env = Env::start_configured(options(vec![])).await;
    let (b, c) = tokio::join!(
        env.add_logical_server("b", &[]),
        env.add_logical_server("c", &[])
    );
    // `t` loses its target while copying, `s` its source.
    let db = json!({"isolation": "database", "deletionPolicy": "Delete"});
    env.create_tenant(NS, "t", db.clone()).await;
    let mut on_c = db.clone();
    on_c["placement"] = json!({"server": "c"});
    env.create_tenant(NS, "s", on_c).await;
    for (name, server) in [("t", "default"), ("s", "c")] {
        let t = env.wait_ready(NS, name, T).await;
        assert_eq!(on(&t).as_deref(), Some(server));
        tables(&env, name, 150_000).await;
    }
    let t_db = env.secret_value(NS, "t-db", "database").await.unwrap();
    let s_db = env.secret_value(NS, "s-db", "database").await.unwrap();
    println!("set up in {:.1} s", started.elapsed().as_secs_f64());

    let stop = AtomicBool::new(false);
    let (t_acks, s_acks) = (Acks::default(), Acks::default());
    let scenario = async {
        wait_for(T, "100 writes each before the moves", || async {
            (t_acks.count() >= 100 && s_acks.count() >= 100).then_some(())
        })
        .await
        .unwrap();
        let moves = tokio::join!(
            move_through_outage(
                &env,
                "t",
                "b",
                Outage {
                    down: &b,
                    target: &b,
                    message: "target server b is unreachable",
                    condition: (
                        "Placed",
                        "True/Moving: moving from server default to b (",
                        "target server b is unreachable".into(),
                    ),
                    served: true,
                },
                &t_acks
            ),
            move_through_outage(
                &env,
                "s",
                "default",
                Outage {
                    down: &c,
                    target: &env.pg,
                    message: "source server c is unreachable",
                    condition: (
                        "Degraded",
                        "True/DatabaseUnavailable: ",
                        format!("127.0.0.1:{}", c.port()),
                    ),
                    served: false,
                },
                &s_acks
            ),
        );
        stop.store(true, Ordering::Relaxed);
        moves
    };
    let (_, _, _) = tokio::join!(
        scenario,
        write(&env, "t", &stop, &t_acks),
        write(&env, "s", &stop, &s_acks)
    );

    all_acknowledged_on(&env, "t", &b, &t_acks).await;
    all_acknowledged_on(&env, "s", &env.pg, &s_acks).await;
    assert!(
        !database_exists(&env.pg, &t_db).await,
        "t's source copy is dropped"
    );
    assert!(
        !database_exists(&c, &s_db).await,
        "s's source copy is dropped"
    );
    for (server, pg) in [("default", &env.pg), ("b", &b), ("c", &c)] {
        assert_eq!(
            leftovers(pg).await,
            Vec::<String>::new(),
            "left on {server}"
        );
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}

mod cut_over;
mod refusals;
