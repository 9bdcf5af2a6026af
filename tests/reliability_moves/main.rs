//! Reliability: `kill -9` of the operator in the middle of online moves (the moves' crash test).
//!
//! Five Tenants (two `database`, two `schema`, one `shared`) with rows of their own live on the
//! default server
//! (`wal_level=logical`) next to a second cluster, the DatabaseServer `b`; a writer inserts
//! sequence-numbered rows into one of them through its Secret's credentials the whole time
//! (reconnecting with the Secret as it is then, retrying the same number after an error). All four
//! are moved to `b` while the operator is SIGKILLed at random points and started again (seeded
//! RNG, seed printed; replay with `TENANTDB_RELIABILITY_SEED`): after each restart, once the moves
//! made persisted progress, a random 100–1500 ms more, at most 5 kills a round. After the second
//! kill of the first round one move still before its cut-over is cancelled (placement back to its
//! source). Then all move back to the default server under kills, and so on until at least 10
//! kills hit a move in flight. While the operator is down after each kill:
//!
//! - never two writable homes: for every Tenant, at most one of the two servers has a login role
//!   of it with `rolcanlogin`;
//! - every replication slot, subscription, publication and move role on either server belongs to
//!   a move in flight in the Tenant set: named after it (`tenantdb_mv_…`, from the Tenant and the
//!   move's start in `status.move`), or a table synchronisation slot of its subscription.
//!
//! After each round (operator running), every move is `Completed` (the Tenant where its placement
//! says) or `RolledBack` (on its source), and the Tenant is Ready; its home holds its rows and every
//! write acknowledged so far, exactly once; the other server holds no role, database or schema of
//! it (marked, or of its names; for the shared Tenant no row keyed by its id); no replication
//! slot, subscription, publication or move role is left on either server, and the layout's tables
//! have their default replica identity. Finally the Tenants are moved back once without kills (completed moves are
//! reversed, a rolled-back one is started again by itself, nothing rolls back) and the writer's
//! acknowledged rows are all on its final home, none twice, no id reused.

use tenantdb_testkit::e2e;
use tenantdb_testkit::move_killer::{MoveKiller, progress};
use tenantdb_testkit::reliability;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::{Env, EnvOptions, tail, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use rand::Rng;
use reliability::is_ready;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantdb::crd::{MovePhase, Tenant};
use tenantdb_testkit::localpg::LocalPg;
use tenantdb_testkit::moves::{layout_rows, move_of, on, tenant_conn};

const NS: &str = "rmoves";
/// The Tenants: name, isolation, rows of their own.
const TENANTS: [(&str, &str, i64); 5] = [
    ("w", "database", 300),
    ("d", "database", 800),
    ("s1", "schema", 400),
    ("s2", "schema", 600),
    ("r", "shared", 500),
];
/// The Tenant the writer writes to.
const WRITER: &str = "w";
/// Kills that must hit a move in flight.
const KILLS: usize = 10;
/// Kills per round at most (the kills are spread over the moves both ways).
const KILLS_PER_ROUND: usize = 5;
/// Rounds (moves of all Tenants) under kills at most.
const ROUNDS: usize = 6;
const T: Duration = Duration::from_secs(180);

/// `wal_level=logical`, and logical replication workers for four subscriptions with their table
/// synchronisation at once (a move copies only with room for its whole copy, 1 +
/// `max_sync_workers_per_subscription`: docs/moves.md, requirements; with the default 4, one at
/// a time per server); and replication slots and WAL senders for each move's slot with its two
/// table synchronisation slots (before that rule, five moves at once from a source at the
/// default 10 stalled: seven idle synchronisation slots, no table copied for three minutes).
fn logical() -> Vec<(String, String)> {
    [
        ("wal_level", "logical"),
        ("max_logical_replication_workers", "12"),
        ("max_worker_processes", "20"),
        ("max_replication_slots", "20"),
        ("max_wal_senders", "20"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

fn marker(name: &str) -> String {
    format!("tenantdb.io/owner={NS}/{name}")
}

fn log_tail(env: &Env) -> String {
    format!(
        "\n--- operator log tail ---\n{}",
        env.important_log_tail(60)
    )
}

/// A cluster as the test reaches it: the superuser's URL without the database (the clusters stay
/// owned by `Env` and the test while the kills need `Env` mutably).
#[derive(Clone)]
struct Pg(String);

impl Pg {
    fn of(pg: &LocalPg) -> Self {
        Pg(pg.url(""))
    }

    fn url(&self, db: &str) -> String {
        format!("{}{db}", self.0)
    }
}

/// The two clusters by DatabaseServer name.
#[derive(Clone)]
struct Clusters {
    default: Pg,
    b: Pg,
}

impl Clusters {
    fn get(&self, server: &str) -> &Pg {
        match server {
            "default" => &self.default,
            "b" => &self.b,
            other => panic!("unknown server {other}"),
        }
    }

    fn other(server: &str) -> &'static str {
        if server == "b" { "default" } else { "b" }
    }

    fn all(&self) -> [(&'static str, &Pg); 2] {
        [("default", &self.default), ("b", &self.b)]
    }
}

async fn admin(pg: &Pg, db: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(&pg.url(db)).await
}

/// What a cluster holds of each Tenant (by ownership marker): its roles (with `rolcanlogin`), its
/// databases, its schemas (with the database they are in), and for a shared Tenant its rows in
/// the layout's tables (with its mappings).
#[derive(Debug, Default, Clone)]
struct Held {
    roles: Vec<(String, bool)>,
    databases: Vec<String>,
    schemas: Vec<(String, String)>,
    /// Rows of the layout's tables keyed by the Tenant's id (mappings included).
    rows: i64,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.roles.is_empty()
            && self.databases.is_empty()
            && self.schemas.is_empty()
            && self.rows == 0
    }

    fn can_login(&self) -> bool {
        self.roles.iter().any(|(_, l)| *l)
    }
}

async fn held(pg: &Pg) -> BTreeMap<String, Held> {
    let mut out: BTreeMap<String, Held> = BTreeMap::new();
    let mut c = admin(pg, "postgres").await.unwrap();
    let roles: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_authid'), rolname::text, rolcanlogin FROM pg_roles \
          WHERE shobj_description(oid, 'pg_authid') LIKE 'tenantdb.io/owner=%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for (m, r, l) in roles {
        out.entry(m).or_default().roles.push((r, l));
    }
    let dbs: Vec<(String, String)> = sqlx::query_as(
        "SELECT shobj_description(oid, 'pg_database'), datname::text FROM pg_database \
          WHERE shobj_description(oid, 'pg_database') LIKE 'tenantdb.io/owner=%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    for (m, d) in dbs {
        out.entry(m).or_default().databases.push(d);
    }
    let _ = c.close().await;
    for db in databases(pg).await {
        let Ok(mut d) = admin(pg, &db).await else {
            continue;
        };
        let schemas: Vec<(String, String)> = sqlx::query_as(
            "SELECT obj_description(oid, 'pg_namespace'), nspname::text FROM pg_namespace \
              WHERE obj_description(oid, 'pg_namespace') LIKE 'tenantdb.io/owner=%'",
        )
        .fetch_all(&mut d)
        .await
        .unwrap_or_default();
        for (m, s) in schemas {
            out.entry(m).or_default().schemas.push((db.clone(), s));
        }
        // A shared Tenant's rows: every table of the layout with a tenant key.
        for (name, isolation, _) in TENANTS {
            if isolation != "shared" {
                continue;
            }
            let n: i64 = layout_rows(&mut d, &tenantdb::pg::shared::tenant_id(NS, name))
                .await
                .values()
                .sum();
            if n > 0 {
                out.entry(marker(name)).or_default().rows += n;
            }
        }
        let _ = d.close().await;
    }
    out
}

/// Roles, databases and schemas (in any database) of these names on a cluster, marked or not.
async fn named(pg: &Pg, h: &Held) -> Vec<String> {
    let roles: Vec<String> = h.roles.iter().map(|(r, _)| r.clone()).collect();
    let schemas: Vec<String> = h.schemas.iter().map(|(_, s)| s.clone()).collect();
    let mut c = admin(pg, "postgres").await.unwrap();
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT 'role ' || rolname FROM pg_roles WHERE rolname = ANY($1) \
         UNION ALL SELECT 'database ' || datname FROM pg_database WHERE datname = ANY($2)",
    )
    .bind(&roles)
    .bind(&h.databases)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    for db in databases(pg).await {
        let Ok(mut d) = admin(pg, &db).await else {
            continue;
        };
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = ANY($1)",
        )
        .bind(&schemas)
        .fetch_all(&mut d)
        .await
        .unwrap_or_default();
        out.extend(found.into_iter().map(|f| format!("{f} (in {db})")));
        let _ = d.close().await;
    }
    out
}

/// The writer's record: acknowledged numbers and errors that must not happen.
#[derive(Default)]
struct Writes {
    acked: Mutex<Vec<i64>>,
    errors: Mutex<Vec<String>>,
}

/// Inserts n = 1, 2, … into the writer tenant's `writes` through the Secret's credentials; on an
/// error it reconnects with the Secret as it is then and tries the same n again (a duplicate n
/// means the earlier attempt had committed).
fn spawn_writer(
    secrets: Api<Secret>,
    stop: Arc<AtomicBool>,
    writes: Arc<Writes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 1i64;
        let mut conn: Option<PgConnection> = None;
        while !stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                conn = tenant_conn(&secrets, WRITER).await;
                if conn.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                sqlx::query("INSERT INTO writes (n) VALUES ($1)")
                    .bind(n)
                    .execute(&mut *c),
            )
            .await;
            match r {
                Ok(Ok(_)) => {
                    writes.acked.lock().unwrap().push(n);
                    n += 1;
                }
                Ok(Err(sqlx::Error::Database(d))) if d.constraint() == Some("writes_n_key") => {
                    // Committed before the connection was lost.
                    writes.acked.lock().unwrap().push(n);
                    n += 1;
                }
                Ok(Err(e)) => {
                    if let sqlx::Error::Database(d) = &e
                        && d.constraint() == Some("writes_pkey")
                    {
                        writes
                            .errors
                            .lock()
                            .unwrap()
                            .push(format!("id collision at n = {n}: {e}"));
                    }
                    conn = None;
                }
                Err(_) => conn = None,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The invariants that hold at every instant, checked while the operator is down.
async fn check_while_down(tenants: &[Tenant], clusters: &Clusters) {
    // Never two writable homes.
    let mut login: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (server, pg) in clusters.all() {
        for (m, h) in held(pg).await {
            if h.can_login() {
                login.entry(m).or_default().push(server);
            }
        }
    }
    for (m, servers) in &login {
        assert!(
            servers.len() <= 1,
            "two writable homes: {m} can log in on {servers:?}\n{tenants:#?}"
        );
    }
    // Replication objects only of moves in flight.
    let allowed = in_flight_objects(tenants);
    let subs = subscriptions(clusters).await;
    for (server, pg) in clusters.all() {
        let orphans: Vec<String> = replication_objects(pg, &subs)
            .await
            .into_iter()
            .filter(|(_, owner)| owner.as_ref().is_none_or(|o| !allowed.contains(o)))
            .map(|(o, _)| o)
            .collect();
        assert!(
            orphans.is_empty(),
            "move objects on {server} of no move in flight ({allowed:?}): {orphans:?}"
        );
    }
}

/// The server a Tenant's `spec.placement` names.
fn wanted(t: &Tenant) -> Option<&str> {
    t.spec.placement.as_deref()?.server.as_deref()
}

/// Patches every Tenant's placement to `server` and waits until each move is over and the Tenant
/// Ready: where its placement says (completed, or there already), or rolled back (a move started
/// in this round). In the first round, one move still before its cut-over is cancelled after the
/// second kill (the placement set back to its source: rolled back under kills, or, when it passed
/// the commit point meanwhile, moved back; a rolled-back one moves in the last round, a rolled-back
/// move being retried by itself). Returns (completed, rolled back), by the last move of each.
async fn move_all(
    env: &mut Env,
    clusters: &Clusters,
    server: &str,
    round: usize,
    killer: Option<&mut MoveKiller>,
    since: Instant,
) -> (Vec<String>, Vec<String>) {
    let api = env.tenants(NS);
    let mut before: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (name, _, _) in TENANTS {
        let t = api.get(name).await.unwrap();
        before.insert(name.into(), move_of(&t).and_then(|m| m.started_at));
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"placement": {"server": server}}})),
        )
        .await
        .unwrap();
    }
    let over = async |env: &Env| -> Option<(Vec<String>, Vec<String>)> {
        let (mut completed, mut rolled_back) = (vec![], vec![]);
        for (name, _, _) in TENANTS {
            let t = env.tenants(NS).get(name).await.ok()?;
            let m = move_of(&t);
            if !is_ready(&t) || m.as_ref().is_some_and(|m| !m.phase.is_terminal()) {
                return None;
            }
            let started = m.as_ref().and_then(|m| m.started_at.clone());
            let new = started.is_some() && started != before[name];
            let back = m.is_some_and(|m| m.phase == MovePhase::RolledBack);
            if new && back {
                rolled_back.push(name.to_string());
            } else if on(&t).as_deref() == wanted(&t) {
                if new {
                    completed.push(name.to_string());
                }
            } else {
                return None;
            }
        }
        Some((completed, rolled_back))
    };
    if let Some(killer) = killer {
        let mut kills = 0;
        while kills < KILLS_PER_ROUND
            && killer
                .kill_at_random_point(
                    env,
                    round,
                    async |e| over(e).await.is_some(),
                    async |tenants| check_while_down(tenants, clusters).await,
                )
                .await
        {
            kills += 1;
            if kills == 2 && round == 1 {
                let list = api.list(&Default::default()).await.unwrap().items;
                let early: Vec<(String, String)> = list
                    .iter()
                    .filter_map(|t| {
                        let m = move_of(t).filter(|m| m.phase <= MovePhase::Copying)?;
                        Some((t.metadata.name.clone()?, m.from))
                    })
                    .collect();
                if !early.is_empty() {
                    let (name, from) = &early[killer.rng.random_range(0..early.len())];
                    eprintln!("round {round}: cancelling {name}'s move (back to {from})");
                    api.patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"placement": {"server": from}}})),
                    )
                    .await
                    .unwrap();
                }
            }
        }
    }
    let r = match wait_for(
        T,
        &format!("round {round}: every move to {server} over"),
        || over(env),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => panic!(
            "{e}\n{:#?}\n{}{}",
            progress(env, NS, move_of).await,
            replication_state(clusters).await,
            log_tail(env)
        ),
    };
    eprintln!(
        "round {round} (to {server}): completed {:?}, rolled back {:?}; {:.1}s since the Tenants were Ready",
        r.0,
        r.1,
        since.elapsed().as_secs_f64()
    );
    r
}

/// After a round (every move over, the operator running): each Tenant's home holds its rows and
/// the writer's acknowledged rows exactly once, the other server nothing of it, and no move object
/// is left anywhere.
async fn check_settled(env: &Env, clusters: &Clusters, writes: &Writes, seed: u64) {
    let acked: Vec<i64> = writes.acked.lock().unwrap().clone();
    let api = env.tenants(NS);
    let held: BTreeMap<&str, BTreeMap<String, Held>> = BTreeMap::from([
        ("default", held(&clusters.default).await),
        ("b", held(&clusters.b).await),
    ]);
    for (name, isolation, rows) in TENANTS {
        let t = api.get(name).await.unwrap();
        let home = on(&t).expect("placed");
        let m = marker(name);
        let here = held[home.as_str()].get(&m).cloned().unwrap_or_default();
        let there = held[Clusters::other(&home)]
            .get(&m)
            .cloned()
            .unwrap_or_default();
        assert!(
            here.can_login()
                && match isolation {
                    "database" => here.databases.len() == 1,
                    "shared" => here.rows > 0,
                    _ => here.schemas.len() == 1,
                },
            "{name} on {home}: {here:?} (seed {seed})"
        );
        assert!(
            there.is_empty(),
            "{name} (on {home}) left on {}: {there:?} (seed {seed})",
            Clusters::other(&home)
        );
        // Nothing of its names either, marked or not.
        let unmarked = named(clusters.get(Clusters::other(&home)), &here).await;
        assert!(
            unmarked.is_empty(),
            "{name} (on {home}) left on {}: {unmarked:?} (seed {seed})",
            Clusters::other(&home)
        );
        let pg = clusters.get(&home);
        assert_eq!(
            items_on(pg, &here, name).await,
            Some(rows),
            "{name}: rows on {home} (seed {seed})"
        );
        if name == WRITER {
            let (rows, distinct) = writes_on(pg, &here).await;
            assert_eq!(
                distinct,
                rows.len(),
                "a write twice on {home} (seed {seed})"
            );
            let have: BTreeSet<i64> = rows.into_iter().collect();
            let lost: Vec<&i64> = acked.iter().filter(|n| !have.contains(n)).collect();
            assert!(
                lost.is_empty(),
                "{} acknowledged writes not on {home}: {:?} (seed {seed})",
                lost.len(),
                &lost[..lost.len().min(10)]
            );
        }
    }
    let subs = subscriptions(clusters).await;
    for (server, pg) in clusters.all() {
        let left = replication_objects(pg, &subs).await;
        assert!(
            left.is_empty(),
            "move objects left on {server}: {left:?} (seed {seed})"
        );
        // A shared Tenant's move sets its layout tables' replica identity back with its last
        // publication.
        let mut c = admin(pg, "tenantdb_shared").await.unwrap();
        let full: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = 'tenantdb_rls' AND c.relreplident = 'f'",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let _ = c.close().await;
        assert!(
            full.is_empty(),
            "REPLICA IDENTITY FULL left on {server}: {full:?} (seed {seed})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_moves_completes_or_rolls_back_each() {
    let started = Instant::now();
    let seed = reliability::seed("reliability_moves");
    let mut env = Env::start_configured(EnvOptions {
        extra_args: vec!["--server-probe-seconds".into(), "1".into()],
        pg_settings: logical(),
        ..Default::default()
    })
    .await;
    let b = env.add_logical_server("b", &logical()).await;
    for (name, isolation, _) in TENANTS {
        env.create_tenant(
            NS,
            name,
            json!({"isolation": isolation, "deletionPolicy": "Delete"}),
        )
        .await;
    }
    let secrets = env.secrets(NS);
    for (name, isolation, rows) in TENANTS {
        let t = env.wait_ready(NS, name, T).await;
        assert_eq!(on(&t).as_deref(), Some("default"));
        let mut c = tenant_conn(&secrets, name).await.expect("tenant login");
        if isolation == "shared" {
            // Its rows in the layout's tables (a partitioned one among them).
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), '{name}', '{name}'); \
                 INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, target_name) \
                   SELECT tenantdb_current_tenant(), 'operation', 'seed', 'create', 'row ' || g FROM generate_series(1, {rows}) g"
            )))
            .execute(&mut c)
            .await
            .unwrap();
            c.close().await.unwrap();
            continue;
        }
        let search_path = match isolation {
            "schema" => format!(
                "SET search_path = \"{}\"; ",
                t.status.as_ref().unwrap().schema.as_deref().unwrap()
            ),
            _ => String::new(),
        };
        let writes = if name == WRITER {
            "CREATE TABLE public.writes (id bigserial PRIMARY KEY, n bigint NOT NULL UNIQUE); "
        } else {
            ""
        };
        let items = if isolation == "database" {
            "public.items"
        } else {
            "items"
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "{search_path}{writes}CREATE TABLE {items} (id serial PRIMARY KEY, body text NOT NULL); \
             INSERT INTO {items} (body) SELECT 'row ' || g FROM generate_series(1, {rows}) g"
        )))
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let clusters = Clusters {
        default: Pg::of(&env.pg),
        b: Pg::of(&b),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(Writes::default());
    let writer = spawn_writer(secrets.clone(), stop.clone(), writes.clone());
    wait_for(T, "the writer's first writes", || async {
        (writes.acked.lock().unwrap().len() >= 20).then_some(())
    })
    .await
    .unwrap();

    let ready_at = Instant::now();
    eprintln!(
        "Tenants Ready with their rows after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut killer = MoveKiller::new(
        &env,
        NS,
        move_of,
        seed,
        100..=1500,
        Duration::from_secs(90),
        started,
    )
    .await;
    let mut server = "default";
    let mut round = 0;
    let (mut completed, mut rolled_back) = (0, 0);
    while killer.in_move() < KILLS && round < ROUNDS {
        round += 1;
        server = Clusters::other(server);
        let (c, r) = move_all(
            &mut env,
            &clusters,
            server,
            round,
            Some(&mut killer),
            ready_at,
        )
        .await;
        completed += c.len();
        rolled_back += r.len();
        check_settled(&env, &clusters, &writes, seed).await;
    }
    let (in_move, hit) = (killer.in_move(), killer.phases_hit());
    eprintln!(
        "{} kills in {round} rounds, {in_move} with a move in flight; phases at the kills: {hit:?}; \
         moves completed {completed}, rolled back {rolled_back}",
        killer.kills.len(),
    );
    assert!(
        in_move >= KILLS,
        "only {in_move} kills hit a move in flight (seed {seed})"
    );

    // Back once without kills: completed moves can be reversed.
    round += 1;
    server = Clusters::other(server);
    let (c, r) = move_all(&mut env, &clusters, server, round, None, ready_at).await;
    assert!(
        r.is_empty() && c.len() + rolled_back >= 1 && !c.is_empty(),
        "moves without kills: completed {c:?}, rolled back {r:?} (seed {seed})"
    );
    let at = writes.acked.lock().unwrap().len();
    wait_for(T, "50 more writes on the final home", || async {
        (writes.acked.lock().unwrap().len() >= at + 50).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", log_tail(&env)));
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    check_settled(&env, &clusters, &writes, seed).await;
    let errors = writes.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?} (seed {seed})");
    eprintln!(
        "{} acknowledged writes, all on the final home once; {:.1}s",
        writes.acked.lock().unwrap().len(),
        started.elapsed().as_secs_f64()
    );
}

mod inspect;
use inspect::*;
