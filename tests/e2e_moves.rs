//! Online moves of tenants between PostgreSQL servers through the real binary, the emulator and
//! two throwaway clusters with `wal_level=logical`: a `database` tenant moved while a writer
//! inserts sequence-numbered rows through the Secret's credentials (reconnecting and re-reading
//! the Secret on error) loses no acknowledged write and has none twice, its serial column goes on
//! without collisions on the target (sequences copied), the Secret names the target, the source
//! copy is dropped, and no subscription, publication or replication slot is left; a `schema`
//! tenant with objects it created itself moves in the same run; a move is cancelled by changing
//! the placement back.

use tenantdb_testkit::e2e;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::{Env, EnvOptions, wait_for};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantdb::crd::{MovePhase, Tenant};
use tenantdb_testkit::localpg::LocalPg;
use tenantdb_testkit::moves::{leftovers, move_of, on, place, wait_moved};

const T: Duration = Duration::from_secs(240);

fn logical() -> Vec<(String, String)> {
    vec![("wal_level".into(), "logical".into())]
}

/// A connection with the credentials the tenant's Secret holds now.
async fn tenant_conn(env: &Env, ns: &str, name: &str) -> Option<PgConnection> {
    tenantdb_testkit::moves::tenant_conn(&env.secrets(ns), name).await
}

async fn admin(pg: &LocalPg, db: &str) -> PgConnection {
    PgConnection::connect(&pg.url(db)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_move_online_without_losing_writes() {
    let env = Env::start_configured(EnvOptions {
        extra_args: vec![
            "--server-probe-seconds".into(),
            "1".into(),
            "--health-interval-seconds".into(),
            "2".into(),
        ],
        pg_settings: logical(),
        ..Default::default()
    })
    .await;
    let b = env.add_logical_server("b", &logical()).await;
    let ns = "moves";
    env.create_tenant(
        ns,
        "w",
        json!({"isolation": "database", "deletionPolicy": "Delete"}),
    )
    .await;
    env.create_tenant(
        ns,
        "s",
        json!({"isolation": "schema", "deletionPolicy": "Delete"}),
    )
    .await;
    for n in ["w", "s"] {
        let t = env.wait_ready(ns, n, T).await;
        assert_eq!(on(&t).as_deref(), Some("default"));
    }
    let w_db = env.secret_value(ns, "w-db", "database").await.unwrap();
    let s_schema = env
        .tenants(ns)
        .get("s")
        .await
        .unwrap()
        .status
        .unwrap()
        .schema
        .unwrap();
    let shared = env.secret_value(ns, "s-db", "database").await.unwrap();

    // Objects the tenants create themselves (not the bundled migrations).
    let mut c = tenant_conn(&env, ns, "w").await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE writes (id bigserial PRIMARY KEY, n bigint NOT NULL UNIQUE, at timestamptz DEFAULT now()); \
         CREATE INDEX writes_at ON writes (at); COMMENT ON TABLE writes IS 'the writer''s rows'",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let mut c = tenant_conn(&env, ns, "s").await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path = {s_schema}; CREATE TABLE notes (id serial PRIMARY KEY, body text CHECK (body <> '')); \
         INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 500) g; \
         CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM notes'"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();

    // The writer: n = 1, 2, … through the Secret's credentials; on error it reconnects with the
    // Secret as it is then and tries the same n again (a duplicate n means it had committed).
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
        let env_client = env.client.clone();
        let _ = env_client;
        let env = &env;
        async move {
            let mut n = 1i64;
            let mut conn: Option<PgConnection> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = tenant_conn(env, ns, "w").await;
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match sqlx::query("INSERT INTO writes (n) VALUES ($1)")
                    .bind(n)
                    .execute(&mut *c)
                    .await
                {
                    Ok(_) => {
                        acked.lock().unwrap().push(n);
                        n += 1;
                    }
                    Err(sqlx::Error::Database(d)) if d.constraint() == Some("writes_n_key") => {
                        // Committed before the connection was lost.
                        acked.lock().unwrap().push(n);
                        n += 1;
                    }
                    Err(e) => {
                        if let sqlx::Error::Database(d) = &e
                            && d.constraint() == Some("writes_pkey")
                        {
                            errors.lock().unwrap().push(format!("id collision: {e}"));
                        }
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let scenario = async {
        wait_for(T, "200 writes before the move", || async {
            (acked.lock().unwrap().len() >= 200).then_some(())
        })
        .await
        .unwrap();
        // Both move to b.
        for n in ["w", "s"] {
            place(&env, ns, n, json!({"server": "b"})).await;
        }
        let mut moves = Vec::new();
        for n in ["w", "s"] {
            let t = wait_moved(&env, ns, n, "b", T).await;
            moves.push(move_of(&t).unwrap());
        }
        let at_move = acked.lock().unwrap().len();
        wait_for(T, "100 writes on the target", || async {
            (acked.lock().unwrap().len() >= at_move + 100).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
        stop.store(true, Ordering::Relaxed);
        moves
    };
    let (moves, ()) = tokio::join!(scenario, writer);
    for m in &moves {
        println!(
            "move {} -> {}: write freeze {:?} ms, {:?} bytes, {} attempt(s)",
            m.from, m.to, m.write_freeze_ms, m.bytes, m.attempts
        );
        assert!(m.write_freeze_ms.is_some_and(|f| f < 10_000), "{m:?}");
    }
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );

    // Every acknowledged write is on b exactly once (n is unique there), none is lost.
    let acked: Vec<i64> = acked.lock().unwrap().clone();
    let mut d = admin(&b, &w_db).await;
    let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM writes ORDER BY n")
        .fetch_all(&mut d)
        .await
        .unwrap();
    let have: BTreeSet<i64> = rows.iter().copied().collect();
    assert_eq!(have.len(), rows.len(), "no row twice");
    let lost: Vec<&i64> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    println!("{} acknowledged writes, all on the target", acked.len());
    // The schema tenant's own objects and rows came along.
    let mut sd = admin(&b, &shared).await;
    let notes: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {s_schema}.notes WHERE EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'note_count')"
    )))
    .fetch_one(&mut sd)
    .await
    .unwrap();
    assert_eq!(notes, 500);
    // The Secret names b; nothing of the tenants is left on the source, nothing of the moves anywhere.
    assert_eq!(
        env.secret_value(ns, "w-db", "port").await,
        Some(b.port().to_string())
    );
    let mut a = admin(&env.pg, "postgres").await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname = $1 \
         UNION ALL SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenant\\_moves\\_%'",
    )
    .bind(&w_db)
    .fetch_all(&mut a)
    .await
    .unwrap();
    assert!(left.is_empty(), "left on the source: {left:?}");
    let mut sa = admin(&env.pg, &shared).await;
    let schema_left: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_namespace WHERE nspname = $1")
            .bind(&s_schema)
            .fetch_optional(&mut sa)
            .await
            .unwrap();
    assert!(schema_left.is_none(), "schema left on the source");
    assert_eq!(leftovers(&env.pg, &[&shared]).await, Vec::<String>::new());
    assert_eq!(leftovers(&b, &[&w_db, &shared]).await, Vec::<String>::new());

    // A move cancelled before its cut-over: back to the source, nothing left on the target.
    env.create_tenant(
        ns,
        "c",
        json!({"isolation": "database", "deletionPolicy": "Delete"}),
    )
    .await;
    env.wait_ready(ns, "c", T).await;
    let c_db = env.secret_value(ns, "c-db", "database").await.unwrap();
    let mut cc = tenant_conn(&env, ns, "c").await.unwrap();
    // Enough rows that the copy takes a moment.
    sqlx::raw_sql(
        "CREATE TABLE big (id bigint PRIMARY KEY, pad text); \
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g",
    )
    .execute(&mut cc)
    .await
    .unwrap();
    cc.close().await.unwrap();
    let api: Api<Tenant> = env.tenants(ns);
    // The copy is held on b (no table synchronisation workers) so that the move is seen copying.
    e2e::hold_table_copies(&b, true).await;
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"server": "b"}}})),
    )
    .await
    .unwrap();
    wait_for(T, "c's move copying", || async {
        let m = move_of(&api.get("c").await.ok()?)?;
        (m.phase == MovePhase::Copying).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    // The subscription logs in to the source as the move's replication login, not as the admin:
    // no admin password in b's catalog; the login replicates and reads the tenant's tables only.
    let conninfo: String = sqlx::query_scalar(
        "SELECT subconninfo FROM pg_subscription WHERE subname LIKE 'tenantdb\\_mv\\_%'",
    )
    .fetch_one(&mut admin(&b, "postgres").await)
    .await
    .unwrap();
    let user = conninfo
        .split_whitespace()
        .find_map(|p| p.strip_prefix("user="))
        .unwrap_or_default()
        .trim_matches('\'')
        .to_string();
    assert!(
        user.starts_with("tenantdb_mv_") && user.ends_with("_repl"),
        "the subscription logs in as {user:?}"
    );
    let admin_password = env.pg.superuser_password().to_string();
    assert!(
        !conninfo.contains(&admin_password),
        "the admin password is in the target's pg_subscription"
    );
    let (replication, bypassrls, superuser, createrole, createdb, member_of): (
        bool,
        bool,
        bool,
        bool,
        bool,
        Vec<String>,
    ) = sqlx::query_as(
        "SELECT r.rolreplication, r.rolbypassrls, r.rolsuper, r.rolcreaterole, r.rolcreatedb, \
                ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                       WHERE m.member = r.oid ORDER BY 1) \
           FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(&user)
    .fetch_one(&mut admin(&env.pg, "postgres").await)
    .await
    .unwrap();
    assert!(
        replication && bypassrls && !superuser && !createrole && !createdb && member_of.is_empty(),
        "the replication login on the source: replication {replication}, bypassrls {bypassrls}, \
         superuser {superuser}, createrole {createrole}, createdb {createdb}, member of {member_of:?}"
    );
    // It reads the tenant's tables and writes nothing (not a member of the tenant's role: the
    // write freeze fences only the tenant's logins).
    let (select, insert, delete): (bool, bool, bool) = sqlx::query_as(
        "SELECT has_table_privilege($1, 'public.big', 'SELECT'), \
                has_table_privilege($1, 'public.big', 'INSERT'), \
                has_table_privilege($1, 'public.big', 'DELETE')",
    )
    .bind(&user)
    .fetch_one(&mut admin(&env.pg, &c_db).await)
    .await
    .unwrap();
    assert!(
        select && !insert && !delete,
        "the replication login on c's table: select {select}, insert {insert}, delete {delete}"
    );
    e2e::hold_table_copies(&b, false).await;
    api.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"placement": {"server": "default"}}})),
    )
    .await
    .unwrap();
    let t = wait_for(T, "c's move rolled back", || async {
        let t = api.get("c").await.ok()?;
        let m = move_of(&t)?;
        (m.phase == MovePhase::RolledBack || m.phase == MovePhase::Completed).then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let m = move_of(&t).unwrap();
    assert_eq!(m.phase, MovePhase::RolledBack, "{m:?}");
    assert!(
        m.message
            .as_deref()
            .unwrap_or_default()
            .contains("cancelled"),
        "{m:?}"
    );
    let t = env.wait_ready(ns, "c", T).await;
    assert_eq!(on(&t).as_deref(), Some("default"));
    assert!(
        tenant_conn(&env, ns, "c").await.is_some(),
        "c logs in on the source"
    );
    let mut bb = admin(&b, "postgres").await;
    let on_b: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&c_db)
        .fetch_optional(&mut bb)
        .await
        .unwrap();
    assert!(on_b.is_none(), "the cancelled copy is gone from the target");
    assert_eq!(leftovers(&env.pg, &[&c_db]).await, Vec::<String>::new());
    assert_eq!(leftovers(&b, &[]).await, Vec::<String>::new());
}
