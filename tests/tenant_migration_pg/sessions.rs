//! The tenant's own session during a migration: its application's locks (lock timeout,
//! deadlocks, both retried) and the settings a file is parsed with.

use super::*;

/// A migration waiting for a lock the tenant's application holds gives up after the lock
/// timeout (a transient outcome, retried later) instead of queueing its exclusive lock, which
/// would block every query of the tenant behind it; nothing is recorded, and once the lock is
/// free the same migration runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_behind_an_application_lock_gives_up_and_retries() {
    let admin = admin();
    let set = set();
    let t = provision(&admin, "tm-locks", "busy", Isolation::Schema).await;
    migrate_to(&admin, &set, &t, 1).await;
    // The application: a transaction holding a lock that `ALTER TABLE` (v2) conflicts with.
    let mut app = conn(&admin, &t).await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE \"{}\".items IN ACCESS SHARE MODE",
        t.names.schema.as_str()
    )))
    .execute(&mut app)
    .await
    .unwrap();
    let m = Arc::new(PgMigrator {
        lock_timeout: Some(Duration::from_millis(300)),
        ..(*migrator(&admin, set.clone(), 2, false)).clone()
    });
    let started = std::time::Instant::now();
    let o = tokio::time::timeout(Duration::from_secs(30), m.migrate(&t))
        .await
        .expect("the migration waited on the lock without a bound");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    retried_until_the_app_commits(&admin, &m, &t, &o, "lock", &mut app).await;
}

/// `o` is a retry (its message naming `why`) that recorded nothing; once the application commits,
/// the next attempt succeeds.
async fn retried_until_the_app_commits(
    admin: &PgAdmin,
    m: &PgMigrator,
    t: &RolloutTenant,
    o: &TenantOutcome,
    why: &str,
    app: &mut PgConnection,
) {
    assert_eq!(o.kind, OutcomeKind::Retry, "{o:?}");
    assert!(o.message.contains(why), "{o:?}");
    assert_eq!(history(admin, t).await, [1], "nothing recorded");
    sqlx::raw_sql("COMMIT").execute(app).await.unwrap();
    let o = m.migrate(t).await;
    assert_eq!(o.kind, OutcomeKind::Succeeded, "{o:?}");
    assert_eq!(history(admin, t).await, [1, 2]);
}

/// A deadlock between a migration and the application (SQLSTATE 40P01): PostgreSQL ends one of
/// the two; when it is the migration, the tenant is retried later (not failed, nothing recorded)
/// and the retry succeeds once the application is done.
///
/// The order is made certain, not timed: the migration holds `down_log` and stops at an advisory
/// lock the test holds; the application (holding `items`) then queues for `down_log`; released,
/// the migration asks for `items` and waits last, so its own deadlock check (1 s, the server
/// default; the application's is 60 s) finds the cycle and ends the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_ended_by_a_deadlock_is_retried() {
    let admin = admin();
    const GATE: i64 = 4_040_001;
    let set = Arc::new(set_with(
        2,
        &[(
            "2_add_note.up.sql",
            "LOCK TABLE down_log IN ACCESS EXCLUSIVE MODE;\n\
             SELECT pg_advisory_xact_lock(4040001); -- GATE\n\
             ALTER TABLE items ADD COLUMN note text;",
        )],
    ));
    let t = provision(&admin, "tm-deadlock", "busy", Isolation::Schema).await;
    migrate_to(&admin, &set, &t, 1).await;
    let schema = t.names.schema.as_str().to_string();
    let mut gate = conn(&admin, &t).await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(GATE)
        .execute(&mut gate)
        .await
        .unwrap();
    let mut app = conn(&admin, &t).await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET deadlock_timeout = '60s'; BEGIN; LOCK TABLE \"{schema}\".items IN ACCESS SHARE MODE"
    )))
    .execute(&mut app)
    .await
    .unwrap();
    let m = migrator(&admin, set.clone(), 2, false);
    let run = tokio::spawn({
        let (m, t) = (m.clone(), t.clone());
        async move { m.migrate(&t).await }
    });
    let mut watch = conn(&admin, &t).await;
    let waiting =
        |what: String| format!("SELECT count(*) FROM pg_locks l WHERE NOT l.granted AND {what}");
    let mut wait_for_lock = async |sql: String| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()))
            .fetch_one(&mut watch)
            .await
            .unwrap()
            == 0
        {
            assert!(std::time::Instant::now() < deadline, "never waited: {sql}");
            tokio::task::yield_now().await;
        }
    };
    // The migration holds `down_log` and waits at the gate.
    wait_for_lock(waiting(format!(
        "l.locktype = 'advisory' AND l.objid = {GATE}"
    )))
    .await;
    let down_log = format!("l.relation = '\"{schema}\".down_log'::regclass");
    let app_lock = tokio::spawn(async move {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "LOCK TABLE \"{schema}\".down_log IN ACCESS SHARE MODE"
        )))
        .execute(&mut app)
        .await
        .unwrap();
        app
    });
    // The application queues for `down_log`; then the gate opens.
    wait_for_lock(waiting(down_log)).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(GATE)
        .execute(&mut gate)
        .await
        .unwrap();
    let o = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the deadlock was never resolved")
        .unwrap();
    let mut app = app_lock.await.unwrap();
    retried_until_the_app_commits(&admin, &m, &t, &o, "deadlock", &mut app).await;
}

/// A tenant may give its own role `standard_conforming_strings = off`, and a file may `SET` it
/// (or `client_encoding`) for the files after it; each file is still parsed with it on, as the
/// transaction-control pre-check reads it: `'\''` is not one string with a quote in it, the
/// `COMMIT` after it never runs, and nothing of the migration is committed (a syntax error).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neither_a_role_default_nor_a_file_changes_how_migration_strings_parse() {
    let admin = admin();
    const PAYLOAD: &str = "CREATE TABLE leaked (id int); SELECT '\\''; COMMIT; SELECT '';";
    let by_default = Arc::new(set_with(2, &[("2_add_note.up.sql", PAYLOAD)]));
    let unset = "SET standard_conforming_strings = off; ALTER TABLE items ADD COLUMN note text;";
    let by_file = Arc::new(set_with(
        3,
        &[
            ("2_add_note.up.sql", unset),
            ("3_qty_index.up.sql", PAYLOAD),
        ],
    ));
    assert_eq!(migrate::lexer::transaction_control(PAYLOAD), None);
    for (name, set, v) in [("role", by_default, 2), ("file", by_file, 3)] {
        let t = provision(&admin, "tm-scs", name, Isolation::Schema).await;
        migrate_to(&admin, &set, &t, 1).await;
        let mut c = conn(&admin, &t).await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER ROLE \"{}\" SET standard_conforming_strings = off",
            t.names.role.as_str()
        )))
        .execute(&mut c)
        .await
        .unwrap();
        let o = migrator(&admin, set, v, false).migrate(&t).await;
        assert_eq!(o.kind, OutcomeKind::Failed, "{name}: {o:?}");
        assert_eq!(count(&admin, &t, TABLE, "leaked").await, 0, "{name}: {o:?}");
        assert_eq!(history(&admin, &t).await, [1], "{name}");
    }
}
