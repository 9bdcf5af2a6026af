//! Reliability: `kill -9` of the operator in the middle of MongoDB moves (the MongoDB twin of
//! `reliability_moves.rs`).
//!
//! Two SecantusDB stand-ins are the MongoDB DatabaseServers `mv-0` and `mv-1`. Four Tenants keep
//! their MongoDB database on `mv-0`, each with documents of its own; an application inserts
//! sequence-numbered documents into one of them through its Secret the whole time (re-reading the
//! Secret after an error, see `mongo_writer`). All four are moved to the other server while the
//! operator is SIGKILLed at random points and started again (seeded RNG, seed printed; replay with
//! `TENANTDB_RELIABILITY_SEED`): after each restart, once a move made persisted progress, a random
//! 50–900 ms more, at most 4 kills a round; then back, and so on until at least 10 kills hit a
//! move in flight (16 rounds at most). While the operator is down after each kill:
//!
//! - never two writable homes: for every Tenant, at most one server has its user with `readWrite`;
//! - a server other than the Tenant's recorded home holds its database, user or registry entry
//!   only while its move is in flight (`Copying`, `CleaningUp`, `RollingBack`).
//!
//! After each round (operator running), every move is `Completed` (the Tenant where its placement
//! says) or `RolledBack` (on its source), and the Tenant is Ready; its home holds its documents,
//! its user with `readWrite` and its registry entry, and every insert acknowledged so far exactly
//! once; the other server holds nothing of it; the Secret names the home.

use tenantdb_testkit::e2e;
use tenantdb_testkit::localmongo::LocalMongo;
use tenantdb_testkit::mongo;
use tenantdb_testkit::mongo::stand_ins;
use tenantdb_testkit::mongo_writer::{SeqWriter, Written, numbers_on};
use tenantdb_testkit::move_killer::{MoveKiller, progress};
use tenantdb_testkit::reliability;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::{Env, tail, wait_for};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mongodb::bson::{Document, doc};
use reliability::is_ready;
use serde_json::json;
use tenantdb::crd::{DatabaseServer, MovePhase, MoveStatus, Tenant};
use tenantdb::mongo::{REGISTRY_COLLECTION, REGISTRY_DATABASE, TENANT_ROLE};

const NS: &str = "rmongomoves";
/// The Tenants and the documents of their own.
const TENANTS: [(&str, i64); 4] = [("w", 300), ("a", 3000), ("b", 1500), ("c", 800)];
/// The Tenant the application writes to.
const WRITER: &str = "w";
/// Kills that must hit a move in flight.
const KILLS: usize = 10;
/// Kills per round at most.
const KILLS_PER_ROUND: usize = 4;
/// Rounds under kills at most.
const ROUNDS: usize = 16;
const SERVERS: [&str; 2] = ["mv-0", "mv-1"];
const T: Duration = Duration::from_secs(180);

fn move_of(t: &Tenant) -> Option<MoveStatus> {
    t.status.as_ref()?.mongodb_move.as_deref().cloned()
}

/// The server the Tenant's MongoDB database is recorded on.
fn home(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.placement.as_ref()?.mongodb.clone()
}

fn wanted(t: &Tenant) -> Option<&str> {
    t.spec
        .placement
        .as_ref()?
        .mongodb
        .as_ref()?
        .server
        .as_deref()
}

fn database_of(t: &Tenant) -> Option<String> {
    Some(t.status.as_ref()?.mongodb.as_ref()?.database.clone())
}

fn other(server: &str) -> &'static str {
    if server == SERVERS[0] {
        SERVERS[1]
    } else {
        SERVERS[0]
    }
}

/// What one server holds of one tenant database.
#[derive(Debug, Default, Clone, PartialEq)]
struct Held {
    /// The database exists, with this many `notes`.
    notes: Option<u64>,
    /// The roles of the users defined in it, on it.
    roles: Vec<String>,
    /// The ownership registry has an entry for it.
    registered: bool,
}

impl Held {
    fn writable(&self) -> bool {
        self.roles.iter().any(|r| r == TENANT_ROLE)
    }
}

async fn held(m: &LocalMongo, db: &str) -> Held {
    let c = mongo::connect(&m.admin_uri()).await.unwrap();
    let exists = c
        .list_database_names()
        .await
        .unwrap()
        .iter()
        .any(|d| d == db);
    let notes = if exists {
        Some(
            c.database(db)
                .collection::<Document>("notes")
                .count_documents(doc! {})
                .await
                .unwrap(),
        )
    } else {
        None
    };
    let users = c
        .database(db)
        .run_command(doc! {"usersInfo": 1})
        .await
        .unwrap();
    let mut roles = vec![];
    for u in users.get_array("users").cloned().unwrap_or_default() {
        let Some(u) = u.as_document() else { continue };
        for r in u.get_array("roles").cloned().unwrap_or_default() {
            if let Some(r) = r.as_document()
                && r.get_str("db").ok() == Some(db)
            {
                roles.push(r.get_str("role").unwrap_or_default().to_string());
            }
        }
    }
    let registered = c
        .database(REGISTRY_DATABASE)
        .collection::<Document>(REGISTRY_COLLECTION)
        .count_documents(doc! {"_id": db})
        .await
        .unwrap()
        > 0;
    c.shutdown().await;
    Held {
        notes,
        roles,
        registered,
    }
}

struct Servers(Vec<LocalMongo>);

impl Servers {
    fn get(&self, name: &str) -> &LocalMongo {
        &self.0[SERVERS.iter().position(|s| *s == name).unwrap()]
    }
}

fn log_tail(env: &Env) -> String {
    format!("\n--- operator log ---\n{}", tail(&env.operator_log(), 40))
}

/// The invariants that hold at every instant, checked while the operator is down.
async fn check_while_down(tenants: &[Tenant], servers: &Servers, seed: u64) {
    for t in tenants {
        let name = t.metadata.name.clone().unwrap_or_default();
        let (Some(db), Some(home)) = (database_of(t), home(t)) else {
            continue;
        };
        let in_flight = move_of(t).is_some_and(|m| !m.phase.is_terminal());
        let here = held(servers.get(&home), &db).await;
        let there = held(servers.get(other(&home)), &db).await;
        assert!(
            !(here.writable() && there.writable()),
            "{name}: writable on both servers: {here:?} / {there:?} (seed {seed})"
        );
        assert!(
            in_flight || there == Held::default(),
            "{name} (home {home}, no move in flight: {:?}) has something on {}: {there:?} (seed {seed})",
            move_of(t),
            other(&home)
        );
    }
}

/// Moves every Tenant to the other server (from where it is) and waits until each move is over
/// and the Tenant Ready: where its placement says, or rolled back (a move started in this round;
/// a rolled-back move is retried after a minute, so the next round may wait for it). Returns
/// (completed, rolled back).
async fn move_all(
    env: &mut Env,
    round: usize,
    killer: Option<&mut MoveKiller>,
    servers: &Servers,
    seed: u64,
) -> (Vec<String>, Vec<String>) {
    let api = env.tenants(NS);
    let mut before: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (name, _) in TENANTS {
        let t = api.get(name).await.unwrap();
        before.insert(name.into(), move_of(&t).and_then(|m| m.started_at));
        let to = other(&home(&t).unwrap());
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"placement": {"mongodb": {"server": to}}}})),
        )
        .await
        .unwrap();
    }
    let over = async |env: &Env| -> Option<(Vec<String>, Vec<String>)> {
        let (mut completed, mut rolled_back) = (vec![], vec![]);
        for (name, _) in TENANTS {
            let t = env.tenants(NS).get(name).await.ok()?;
            let m = move_of(&t);
            if !is_ready(&t) || m.as_ref().is_some_and(|m| !m.phase.is_terminal()) {
                return None;
            }
            let started = m.as_ref().and_then(|m| m.started_at.clone());
            let new = started.is_some() && started != before[name];
            if new && m.is_some_and(|m| m.phase == MovePhase::RolledBack) {
                rolled_back.push(name.to_string());
            } else if home(&t).as_deref() == wanted(&t) {
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
                    async |tenants| check_while_down(tenants, servers, seed).await,
                )
                .await
        {
            kills += 1;
        }
    }
    let r = match wait_for(T, &format!("round {round}: every move over"), || over(env)).await {
        Ok(r) => r,
        Err(e) => panic!(
            "{e}\n{:#?}{}",
            progress(env, NS, move_of).await,
            log_tail(env)
        ),
    };
    eprintln!("round {round}: completed {:?}, rolled back {:?}", r.0, r.1);
    r
}

/// After a round (every move over, the operator running): each Tenant's home holds its documents,
/// its writable user and registry entry, the writer's acknowledged inserts exactly once; the other
/// server nothing of it; the Secret names the home.
async fn check_settled(env: &Env, servers: &Servers, written: &Written, seed: u64) {
    let api = env.tenants(NS);
    for (name, docs) in TENANTS {
        let t = api.get(name).await.unwrap();
        let (db, home) = (database_of(&t).unwrap(), home(&t).unwrap());
        let here = held(servers.get(&home), &db).await;
        let there = held(servers.get(other(&home)), &db).await;
        assert_eq!(
            here,
            Held {
                notes: Some(docs as u64),
                roles: vec![TENANT_ROLE.to_string()],
                registered: true,
            },
            "{name} on {home} (seed {seed})"
        );
        assert_eq!(
            there,
            Held::default(),
            "{name} (on {home}) left on {} (seed {seed})",
            other(&home)
        );
        let port = servers.get(&home).port().to_string();
        let secret_port = wait_for(T, &format!("{name}'s Secret names {home}"), || async {
            let p = env
                .secret_value(NS, &format!("{name}-db"), "mongodbPort")
                .await?;
            (p == port).then_some(p)
        })
        .await
        .unwrap_or_else(|e| panic!("{e} (seed {seed}){}", log_tail(env)));
        assert_eq!(secret_port, port);
        if name == WRITER {
            let on_home = numbers_on(&servers.get(&home).admin_uri(), &db, "seq").await;
            written
                .check(&on_home)
                .assert_exactly_once(written, &format!("on {home}, seed {seed}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_mongodb_moves_completes_or_rolls_back_each() {
    let test = "kill_9_during_mongodb_moves_completes_or_rolls_back_each";
    let started = Instant::now();
    let seed = reliability::seed("reliability_moves_mongo");
    let Some(ms) = stand_ins(test, 2).await else {
        return;
    };
    let servers = Servers(ms);
    let mut env = Env::start_with(&["--server-probe-seconds", "1"]).await;
    for name in SERVERS {
        env.add_mongo_database_server(name, servers.get(name), json!({}))
            .await;
    }
    for name in SERVERS {
        wait_for(T, &format!("DatabaseServer {name} Ready"), || async {
            let ds = Api::<DatabaseServer>::all(env.client.clone())
                .get(name)
                .await
                .ok()?;
            let ready = ds
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "True").then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}{}", log_tail(&env)));
    }
    env.ensure_namespace(NS).await;
    let api = env.tenants(NS);
    for (name, _) in TENANTS {
        let t: Tenant = serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"isolation": "schema", "deletionPolicy": "Delete",
                     "placement": {"mongodb": {"server": SERVERS[0]}}},
        }))
        .unwrap();
        api.create(&PostParams::default(), &t).await.unwrap();
    }
    for (name, docs) in TENANTS {
        let t = wait_for(T, &format!("{name} Ready on {}", SERVERS[0]), || async {
            let t = api.get(name).await.ok()?;
            (is_ready(&t) && home(&t).as_deref() == Some(SERVERS[0])).then_some(t)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}{}", log_tail(&env)));
        let uri = env
            .secret_value(NS, &format!("{name}-db"), "mongodbUri")
            .await
            .unwrap();
        let client = mongo::connect(&uri).await.unwrap();
        let notes: Vec<Document> = (0..docs)
            .map(|i| doc! {"n": i, "body": format!("note {i} of {name}")})
            .collect();
        client
            .database(&database_of(&t).unwrap())
            .collection::<Document>("notes")
            .insert_many(notes)
            .await
            .unwrap();
        client.shutdown().await;
    }
    let writer_db = database_of(&api.get(WRITER).await.unwrap()).unwrap();
    let writer = SeqWriter::start(
        env.secrets(NS),
        &format!("{WRITER}-db"),
        &writer_db,
        "seq",
        true,
    );
    wait_for(T, "the writer's first inserts", || async {
        (writer.written().acked.len() >= 20).then_some(())
    })
    .await
    .unwrap();

    // (A move of these tenants takes 1–3 s; a rolled-back move is tried again after a minute.)
    let mut killer = MoveKiller::new(
        &env,
        NS,
        move_of,
        seed,
        50..=900,
        Duration::from_secs(150),
        started,
    )
    .await;
    eprintln!("[reliability_moves_mongo] seed {seed}");
    let mut round = 0;
    let (mut completed, mut rolled_back) = (0, 0);
    while killer.in_move() < KILLS && round < ROUNDS {
        round += 1;
        let (c, r) = move_all(&mut env, round, Some(&mut killer), &servers, seed).await;
        completed += c.len();
        rolled_back += r.len();
        check_settled(&env, &servers, &writer.written(), seed).await;
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
    assert!(completed > 0, "no move completed under kills (seed {seed})");

    // Once more without kills: every move completes; the writer goes on at its final home.
    round += 1;
    let (c, r) = move_all(&mut env, round, None, &servers, seed).await;
    assert!(
        r.is_empty() && !c.is_empty(),
        "moves without kills: completed {c:?}, rolled back {r:?} (seed {seed})"
    );
    let at = writer.written().acked.len();
    wait_for(T, "20 more inserts at the final home", || async {
        (writer.written().acked.len() >= at + 20).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", log_tail(&env)));
    let written = writer.stop().await;
    check_settled(&env, &servers, &written, seed).await;
    eprintln!(
        "{} acknowledged inserts ({} refused), all on the final home once; {:.1}s",
        written.acked.len(),
        written.refused,
        started.elapsed().as_secs_f64()
    );
}
