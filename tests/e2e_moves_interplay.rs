//! Moves next to other operations, through the real binary, the emulator and two throwaway
//! clusters with `wal_level=logical` (like `e2e_moves.rs`). Three tenants move to server `b` at
//! once; the target's `max_sync_workers_per_subscription` is 0 until the test lets the copies go
//! on, so the moves stay in `Copying` exactly as long as the scenarios need (no timing luck):
//!
//! - `mig` (schema, `retainSource`): a TenantMigration created while it moves **waits for the
//!   move** (the tenant listed as pending with the move in its message, nothing applied on the
//!   source), and once the move completed it is applied **on the new server**: the tenant's
//!   `schemaVersion` and the table on `b`, none on the retained (fenced) source copy;
//! - `rot` (database): a credential rotation in the middle of its move; before the cut-over the
//!   old password (grace period) and the new one log in on the source, afterwards both on the
//!   target, whose `VALID UNTIL` of the old role is the status's end of the grace period, and the
//!   Secret names the target;
//! - `trg` (database): a table with an `ENABLE ALWAYS` trigger (made with the tenant's own
//!   credentials): the move is refused and rolled back with a message naming the trigger, the
//!   tenant stays Ready on its source, nothing of it on the target, and no replication object is
//!   left on either server.
//!
//! Then, each on its own pair of clusters: a rotation's grace period going on after a move; a
//! tenant function the replication would run as a superuser (refused); and the tenant's own DDL
//! during `Copying` (an index created on the source: found by the cut-over's catalog comparison,
//! rolled back after three attempts naming the index).

use tenantdb_testkit::e2e;

use std::time::Duration;

use e2e::{Env, EnvOptions, hold_table_copies, tail, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde_json::json;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tenantdb::crd::{
    MigrationPhase, MovePhase, Tenant, TenantMigration, TenantMigrationState, TenantPhase,
};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};
use tenantdb_testkit::moves::{leftovers, move_of, on, place};

const T: Duration = Duration::from_secs(120);
const NS: &str = "interplay";
const BUNDLED_LATEST: i64 = 20250101000007;
const V8: i64 = 20250101000008;

fn logical() -> Vec<(String, String)> {
    vec![("wal_level".into(), "logical".into())]
}

fn log_tail(env: &Env) -> String {
    let log = env.operator_log();
    let important: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("\"level\":\"DEBUG\""))
        .collect();
    tail(&important.join("\n"), 60)
}

async fn admin(pg: &LocalPg, db: &str) -> PgConnection {
    PgConnection::connect(&pg.url(db)).await.unwrap()
}

/// A login with a password on `pg`.
async fn login(pg: &LocalPg, db: &str, user: &str, password: &str) -> Result<(), sqlx::Error> {
    let c = sqlx::postgres::PgConnectOptions::new()
        .host(pg.host())
        .port(pg.port())
        .database(db)
        .username(user)
        .password(password)
        .connect()
        .await?;
    c.close().await
}

/// Waits until the tenant's move is in `phase` (and, for `Completed`, the tenant Ready on `b`).
async fn wait_move(env: &Env, name: &str, phase: MovePhase) -> Tenant {
    wait_for(T, &format!("{name}'s move in phase {phase:?}"), || async {
        let t = env.tenants(NS).get(name).await.ok()?;
        let m = move_of(&t)?;
        let done = m.phase != MovePhase::Completed
            || (on(&t).as_deref() == Some("b") && t.status.as_ref()?.phase == TenantPhase::Ready);
        (m.phase == phase && done).then_some(t)
    })
    .await
    .unwrap_or_else(|e| {
        let now = futures::executor::block_on(env.tenants(NS).get(name)).ok();
        panic!(
            "{e}\nmove now: {:?}\n{}",
            now.as_ref().and_then(move_of),
            log_tail(env)
        )
    })
}

/// Waits until the TenantMigration's status (of its current generation) satisfies `pred`.
async fn wait_migration(
    env: &Env,
    what: &str,
    pred: impl Fn(&TenantMigration) -> bool,
) -> TenantMigration {
    env.wait_migration(NS, "mig-v8", what, T, pred).await
}

/// Whether `schema.table` exists in database `db` of `pg`.
async fn has_table(pg: &LocalPg, db: &str, schema: &str, table: &str) -> bool {
    let mut c = admin(pg, db).await;
    sqlx::query_scalar("SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL")
        .bind(schema)
        .bind(table)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

/// The operator with the default server and server `b` (both `wal_level=logical`), `b` ready to
/// take tenants.
async fn start() -> (Env, LocalPg) {
    let (env, b) = tokio::join!(
        Env::start_configured(EnvOptions {
            extra_args: vec![
                "--server-probe-seconds".into(),
                "1".into(),
                "--health-interval-seconds".into(),
                "2".into(),
            ],
            pg_settings: logical(),
            ..Default::default()
        }),
        tokio::task::spawn_blocking(|| {
            let mut settings = logical();
            // Two moves copy at once (an apply worker each, sync workers once released).
            settings.push(("max_logical_replication_workers".into(), "8".into()));
            settings.push(("max_worker_processes".into(), "16".into()));
            LocalPg::start_with(LocalPgOptions {
                settings,
                ..Default::default()
            })
        })
    );
    let b = b.unwrap().expect("second cluster");
    env.add_database_server("b", &b, json!({})).await;
    wait_for(T, "b reports LogicalReplication=True", || async {
        let ds = Api::<tenantdb::crd::DatabaseServer>::all(env.client.clone())
            .get("b")
            .await
            .ok()?;
        ds.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "LogicalReplication" && c.status == "True")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
    (env, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_with_a_migration_a_rotation_and_a_replica_trigger() {
    let started = std::time::Instant::now();
    let (env, b) = start().await;
    for (name, spec) in [
        (
            "mig",
            json!({"isolation": "schema", "deletionPolicy": "Delete"}),
        ),
        (
            "rot",
            json!({"isolation": "database", "deletionPolicy": "Delete",
                   "credentials": {"gracePeriod": "1h"}}),
        ),
        (
            "trg",
            json!({"isolation": "database", "deletionPolicy": "Delete"}),
        ),
    ] {
        env.create_tenant(NS, name, spec).await;
    }
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "moved-v8", "namespace": NS},
        "data": {
            "20250101000008_moved.up.sql": "CREATE TABLE tm_moved (id int PRIMARY KEY, note text NOT NULL DEFAULT '');",
            "20250101000008_moved.down.sql": "DROP TABLE tm_moved;",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let mut ready = Vec::new();
    for n in ["mig", "rot", "trg"] {
        let t = env.wait_ready(NS, n, T).await;
        assert_eq!(on(&t).as_deref(), Some("default"), "{n}");
        assert_eq!(
            t.status.as_ref().unwrap().schema_version,
            Some(BUNDLED_LATEST)
        );
        ready.push(t);
    }
    let mig_schema = ready[0].status.as_ref().unwrap().schema.clone().unwrap();
    let trg_role = ready[2].status.as_ref().unwrap().role.clone().unwrap();
    let shared_a = env.secret_value(NS, "mig-db", "database").await.unwrap();
    let rot_db = env.secret_value(NS, "rot-db", "database").await.unwrap();
    let trg_db = env.secret_value(NS, "trg-db", "database").await.unwrap();
    let user1 = env.secret_values(NS, "rot-db", &["username", "password"]);
    let [user1, pw1]: [String; 2] = user1.await.unwrap().try_into().unwrap();

    // trg's own trigger, fired on the subscriber too (ENABLE ALWAYS).
    let mut c = env.connect_with_secret(NS, "trg-db").await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE audited (id int PRIMARY KEY, note text); \
         CREATE FUNCTION audited_touch() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$; \
         CREATE TRIGGER audit_always BEFORE INSERT ON audited FOR EACH ROW EXECUTE FUNCTION audited_touch(); \
         ALTER TABLE audited ENABLE ALWAYS TRIGGER audit_always; \
         INSERT INTO audited (id) VALUES (1)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();

    // The three move to b; b copies nothing until released.
    hold_table_copies(&b, true).await;
    place(
        &env,
        NS,
        "mig",
        json!({"server": "b", "retainSource": true}),
    )
    .await;
    place(&env, NS, "rot", json!({"server": "b"})).await;
    place(&env, NS, "trg", json!({"server": "b"})).await;
    wait_move(&env, "mig", MovePhase::Copying).await;
    wait_move(&env, "rot", MovePhase::Copying).await;
    println!("[{:>5.1?}] mig and rot copying", started.elapsed());

    // (a) A TenantMigration while mig moves: it waits for the move.
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "mig-v8", "namespace": NS},
        "spec": {"target": {"tenant": "mig"}, "source": {"configMap": {"name": "moved-v8"}}},
    }))
    .unwrap();
    Api::<TenantMigration>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &tm)
        .await
        .unwrap();
    let waiting = |tm: &TenantMigration| {
        let Some(st) = tm.status.as_ref() else {
            return false;
        };
        assert!(
            st.phase != MigrationPhase::Succeeded,
            "the TenantMigration did not wait: it was applied while mig was moving (on the source, \
             default): {st:#?}"
        );
        st.phase == MigrationPhase::Running
            && st.target_version == Some(V8)
            && st.failed == 0
            && st.tenants.iter().any(|e| {
                e.name == "mig"
                    && e.state == TenantMigrationState::Pending
                    && e.message.as_deref().is_some_and(|m| {
                        m.contains("waiting for the Tenant's move from server default to b")
                    })
            })
    };
    wait_migration(
        &env,
        "the TenantMigration lists mig as waiting for its move (Running, pending, not failed)",
        waiting,
    )
    .await;
    println!(
        "[{:>5.1?}] the migration waits for mig's move",
        started.elapsed()
    );

    // (b) rot rotates in the middle of its move: both passwords work on the source.
    let creds = env.rotate(NS, "rot", "r1", T).await;
    let v = env.secret_values(NS, "rot-db", &["username", "password"]);
    let [user2, pw2]: [String; 2] = v.await.unwrap().try_into().unwrap();
    assert_ne!(user2, user1, "the rotation moved to the other login role");
    assert_eq!(creds.active_user, user2);
    assert_eq!(creds.previous_user.as_deref(), Some(user1.as_str()));
    login(&env.pg, &rot_db, &user1, &pw1)
        .await
        .expect("the old password (grace period) logs in on the source during the move");
    login(&env.pg, &rot_db, &user2, &pw2)
        .await
        .expect("the new password logs in on the source during the move");
    assert_eq!(
        move_of(&env.tenants(NS).get("rot").await.unwrap()).map(|m| m.phase),
        Some(MovePhase::Copying),
        "the rotation happened in the middle of the move"
    );

    // (c) trg's move is refused because of its trigger, and rolled back.
    let t = wait_for(T, "trg's move refused (or copying)", || async {
        let t = env.tenants(NS).get("trg").await.ok()?;
        let m = move_of(&t)?;
        matches!(m.phase, MovePhase::RolledBack | MovePhase::Copying).then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
    let m = move_of(&t).unwrap();
    assert_eq!(
        m.phase,
        MovePhase::RolledBack,
        "the move of trg, which has an ENABLE ALWAYS trigger, was not refused: {m:?}"
    );
    let msg = m.message.clone().unwrap_or_default();
    assert!(
        msg.contains("public.audited: audit_always") && msg.contains("ALWAYS"),
        "the rolled-back move of trg names its ENABLE ALWAYS trigger: {m:?}"
    );

    // Still waiting, and nothing applied on the source while mig moves.
    let tm = wait_migration(&env, "the TenantMigration still waits", waiting).await;
    assert!(
        !has_table(&env.pg, &shared_a, &mig_schema, "tm_moved").await,
        "the migration ran on the source (default) while mig was moving: {:#?}",
        tm.status
    );
    let mig = env.tenants(NS).get("mig").await.unwrap();
    assert_eq!(
        mig.status.as_ref().unwrap().schema_version,
        Some(BUNDLED_LATEST),
        "mig's schemaVersion changed while it was moving"
    );
    assert!(move_of(&mig).is_some_and(|m| m.phase == MovePhase::Copying));

    // The copies go on: both moves complete.
    hold_table_copies(&b, false).await;
    let mig = wait_move(&env, "mig", MovePhase::Completed).await;
    let rot = wait_move(&env, "rot", MovePhase::Completed).await;
    println!("[{:>5.1?}] mig and rot on b", started.elapsed());
    for t in [&mig, &rot] {
        println!(
            "{}: write freeze {:?} ms, {} attempt(s)",
            t.metadata.name.as_deref().unwrap_or_default(),
            move_of(t).unwrap().write_freeze_ms,
            move_of(t).unwrap().attempts
        );
    }

    // (a) The migration applied after the move, on b; not on the source copy.
    let tm = wait_migration(&env, "the TenantMigration Succeeded after the move", |tm| {
        tm.status
            .as_ref()
            .is_some_and(|s| s.phase == MigrationPhase::Succeeded)
    })
    .await;
    let st = tm.status.unwrap();
    assert_eq!((st.total, st.succeeded, st.failed), (1, 1, 0), "{st:#?}");
    let e = st.tenants.iter().find(|e| e.name == "mig").unwrap();
    assert_eq!(
        (e.state, e.from_version, e.to_version),
        (
            TenantMigrationState::Succeeded,
            Some(BUNDLED_LATEST),
            Some(V8)
        ),
        "{e:?}"
    );
    wait_for(T, "mig's schemaVersion is V8", || async {
        let t = env.tenants(NS).get("mig").await.ok()?;
        (t.status?.schema_version == Some(V8)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
    let shared_b = env.secret_value(NS, "mig-db", "database").await.unwrap();
    assert_eq!(
        env.secret_value(NS, "mig-db", "port").await,
        Some(b.port().to_string())
    );
    assert!(
        has_table(&b, &shared_b, &mig_schema, "tm_moved").await,
        "the migration is not applied on the target b"
    );
    let mut c = env.connect_with_secret(NS, "mig-db").await.unwrap();
    let seen: bool = sqlx::query_scalar("SELECT to_regclass('tm_moved') IS NOT NULL")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(
        seen,
        "mig does not see tm_moved with its Secret's credentials"
    );
    c.close().await.unwrap();
    let mut a = admin(&env.pg, &shared_a).await;
    let retained: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind(&mig_schema)
        .fetch_optional(&mut a)
        .await
        .unwrap();
    assert!(retained.is_some(), "mig's source copy is retained");
    assert!(
        !has_table(&env.pg, &shared_a, &mig_schema, "tm_moved").await,
        "the migration was applied on the source copy (default) as well"
    );

    // (b) Both passwords log in on the target; the grace period goes on there.
    assert_eq!(
        env.secret_value(NS, "rot-db", "port").await,
        Some(b.port().to_string()),
        "rot's Secret names b"
    );
    let v = env.secret_values(NS, "rot-db", &["username", "password"]);
    assert_eq!(v.await.unwrap(), [user2.clone(), pw2.clone()]);
    login(&b, &rot_db, &user2, &pw2)
        .await
        .expect("the new password logs in on the target after the move");

    // (c) trg: Ready on its source, nothing of it on b.
    let mut bb = admin(&b, "postgres").await;
    let t = env.wait_ready(NS, "trg", T).await;
    assert_eq!(on(&t).as_deref(), Some("default"));
    assert_eq!(
        env.secret_value(NS, "trg-db", "port").await,
        Some(env.pg.port().to_string())
    );
    env.connect_with_secret(NS, "trg-db")
        .await
        .expect("trg logs in on its source");
    let trg_on_b: Vec<String> = sqlx::query_scalar(
        "SELECT 'database ' || datname FROM pg_database WHERE datname = $1 \
         UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname IN ($2, $2 || '_b')",
    )
    .bind(&trg_db)
    .bind(&trg_role)
    .fetch_all(&mut bb)
    .await
    .unwrap();
    assert!(
        trg_on_b.is_empty(),
        "trg's refused move left {trg_on_b:?} on b"
    );

    // No replication object of any of the moves is left.
    assert_eq!(
        leftovers(&env.pg, &[&shared_a, &rot_db, &trg_db]).await,
        Vec::<String>::new(),
        "on the source"
    );
    assert_eq!(
        leftovers(&b, &[&shared_b, &rot_db]).await,
        Vec::<String>::new(),
        "on the target"
    );

    println!("[{:>5.1?}] done", started.elapsed());
}

/// A move during a rotation's grace period keeps that grace period on the target: the previous
/// password logs in there until its end, `VALID UNTIL` as on the source, and
/// `status.credentials.previousUser` stays (the move copies `rolvaliduntil`; without it the
/// Tenant controller found no running grace period on the target and disabled the previous login
/// role at the cut-over: this test failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotations_grace_period_goes_on_after_a_move() {
    let (env, b) = start().await;
    env.create_tenant(
        NS,
        "grace",
        json!({"isolation": "database", "deletionPolicy": "Delete",
               "credentials": {"gracePeriod": "1h"}}),
    )
    .await;
    env.wait_ready(NS, "grace", T).await;
    let db = env.secret_value(NS, "grace-db", "database").await.unwrap();
    let v = env.secret_values(NS, "grace-db", &["username", "password"]);
    let [user1, pw1]: [String; 2] = v.await.unwrap().try_into().unwrap();
    let creds = env.rotate(NS, "grace", "r1", T).await;
    login(&env.pg, &db, &user1, &pw1)
        .await
        .expect("the previous password logs in on the source within its grace period");
    place(&env, NS, "grace", json!({"server": "b"})).await;
    let t = wait_move(&env, "grace", MovePhase::Completed).await;
    let after = t.status.unwrap().credentials;
    login(&b, &db, &user1, &pw1).await.unwrap_or_else(|e| {
        panic!(
            "the previous password (grace period) does not log in on the target after the move: \
             {e}\nstatus.credentials now: {after:?}"
        )
    });
    let until = creds
        .previous_valid_until
        .as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|t| t.as_second())
        .expect("previousValidUntil");
    let on_b = tenantdb_testkit::moves::valid_until(&b, &user1).await;
    assert!(
        on_b.is_some_and(|v| (v - until).abs() <= 1),
        "VALID UNTIL of {user1} on the target: {on_b:?}, the grace period ends at {until}"
    );
    assert_eq!(
        after.and_then(|c| c.previous_user),
        Some(user1),
        "status.credentials still reports the grace period"
    );
}

/// A tenant whose CHECK constraint and expression index call a function of its own is not moved:
/// on PostgreSQL 15 the target's replication workers run as a superuser and would run that
/// function for every copied row. The function here tries to make the tenant's role a superuser
/// when it runs as one; the move is refused before anything is copied, the role is no superuser
/// on either server, the tenant stays Ready on its source, nothing is left on `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_function_the_replication_would_run_as_a_superuser_is_refused() {
    let (env, b) = start().await;
    env.create_tenant(
        NS,
        "chk",
        json!({"isolation": "schema", "deletionPolicy": "Delete"}),
    )
    .await;
    let t = env.wait_ready(NS, "chk", T).await;
    let role = t.status.as_ref().unwrap().role.clone().unwrap();
    let schema = t.status.as_ref().unwrap().schema.clone().unwrap();
    let mut c = env.connect_with_secret(NS, "chk-db").await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION esc(id int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN \
           IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN \
             EXECUTE 'ALTER ROLE {role} SUPERUSER'; END IF; RETURN true; END $$; \
         CREATE TABLE guarded (id int PRIMARY KEY CHECK (esc(id))); \
         CREATE INDEX guarded_esc ON guarded ((esc(id))); \
         INSERT INTO guarded VALUES (1), (2)"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    place(&env, NS, "chk", json!({"server": "b"})).await;
    let t = wait_for(T, "chk's move refused (or copying)", || async {
        let t = env.tenants(NS).get("chk").await.ok()?;
        let m = move_of(&t)?;
        matches!(m.phase, MovePhase::RolledBack | MovePhase::Copying).then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env)));
    let m = move_of(&t).unwrap();
    assert_eq!(m.phase, MovePhase::RolledBack, "not refused: {m:?}");
    let msg = m.message.clone().unwrap_or_default();
    assert!(
        msg.contains("guarded") && msg.contains("esc(integer)") && msg.contains("superuser"),
        "the refusal names the constraint or index and the function: {m:?}"
    );
    for (what, pg) in [("source", &env.pg), ("b", &b)] {
        let mut a = admin(pg, "postgres").await;
        let sup: Option<bool> =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
                .bind(&role)
                .fetch_optional(&mut a)
                .await
                .unwrap();
        assert_ne!(sup, Some(true), "{role} became a superuser on {what}");
    }
    let t = env.wait_ready(NS, "chk", T).await;
    assert_eq!(on(&t).as_deref(), Some("default"));
    let mut bb = admin(&b, "tenantdb_shared").await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = $1 \
         UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname IN ($2, $2 || '_b')",
    )
    .bind(&schema)
    .bind(&role)
    .fetch_all(&mut bb)
    .await
    .unwrap_or_default();
    assert!(left.is_empty(), "chk's refused move left {left:?} on b");
}

/// DDL of the tenant itself while it moves (logical replication does not carry DDL): an index
/// created on the source during `Copying` (a column would stop the table's copy instead: the move
/// then waits in `Copying`, docs/moves.md). The cut-over compares the catalogs before its write
/// freeze, finds the index on the source only, and tries again; the third attempt rolls the move
/// back with a message naming the index. The tenant stays on its source and writes there, and
/// nothing of the move is left on either server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_own_ddl_during_a_move_is_found_and_the_move_rolled_back() {
    let (env, b) = start().await;
    env.create_tenant(
        NS,
        "ddl",
        json!({"isolation": "database", "deletionPolicy": "Delete"}),
    )
    .await;
    env.wait_ready(NS, "ddl", T).await;
    let db = env.secret_value(NS, "ddl-db", "database").await.unwrap();
    let mut c = env.connect_with_secret(NS, "ddl-db").await.unwrap();
    sqlx::raw_sql("CREATE TABLE own (id int PRIMARY KEY); INSERT INTO own VALUES (1), (2)")
        .execute(&mut c)
        .await
        .unwrap();
    // The move stays in `Copying` until the copies are let go: the DDL lands in the middle of it.
    hold_table_copies(&b, true).await;
    place(&env, NS, "ddl", json!({"server": "b"})).await;
    wait_move(&env, "ddl", MovePhase::Copying).await;
    sqlx::raw_sql("CREATE INDEX own_id_desc ON own (id DESC)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    hold_table_copies(&b, false).await;
    let t = wait_move(&env, "ddl", MovePhase::RolledBack).await;
    let m = move_of(&t).unwrap();
    let msg = m.message.clone().unwrap_or_default();
    assert!(
        msg.contains("the schema changed during the move") && msg.contains("own_id_desc"),
        "the roll-back names the index: {m:?}"
    );
    assert_eq!(m.attempts, 3, "{m:?}");
    let t = env.wait_ready(NS, "ddl", T).await;
    assert_eq!(on(&t).as_deref(), Some("default"));
    let mut c = env.connect_with_secret(NS, "ddl-db").await.unwrap();
    sqlx::raw_sql("INSERT INTO own VALUES (3)")
        .execute(&mut c)
        .await
        .expect("the tenant writes on its source after the roll-back");
    c.close().await.unwrap();
    for (what, pg) in [("source", &env.pg), ("b", &b)] {
        let left = leftovers(pg, &[db.as_str()]).await;
        assert!(left.is_empty(), "left on {what}: {left:?}");
    }
}
