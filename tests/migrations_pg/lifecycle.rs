//! The runner's lifecycle: idempotence, downs, dry runs, checksums, failures and lost connections,
//! the transaction and role a migration cannot leave, concurrency and input validation.

use super::*;

#[tokio::test]
async fn applying_twice_is_a_noop() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_twice").await;
    let set = baseline();
    migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap();
    let history = migrate::status(&mut conn, &t).await.unwrap();
    let xmins: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT xmin::text FROM {}.{HISTORY_TABLE} ORDER BY version",
        t.schema
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let before_objects = objects(&mut conn, t.schema).await;
    let before_ddl = ddl_count(&mut conn, t.schema).await;
    assert!(
        before_ddl > 100,
        "the event trigger sees the baseline DDL ({before_ddl})"
    );

    let report = migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap();
    assert!(report.applied.is_empty());
    assert!(report.plan.is_empty());
    assert_eq!((report.from, report.to), (Some(LATEST), Some(LATEST)));
    // explicit target = current version: also a no-op
    migrate::migrate(&mut conn, &set, &t, Some(LATEST), false)
        .await
        .unwrap();

    assert_eq!(ddl_count(&mut conn, t.schema).await, before_ddl, "no DDL");
    assert_eq!(objects(&mut conn, t.schema).await, before_objects);
    assert_eq!(migrate::status(&mut conn, &t).await.unwrap(), history);
    let xmins_after: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT xmin::text FROM {}.{HISTORY_TABLE} ORDER BY version",
        t.schema
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(xmins, xmins_after, "history rows untouched");
}

#[tokio::test]
async fn downs_return_the_schema_to_empty() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_downs").await;
    let set = baseline();
    migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap();

    // part way: back to the system management layer
    let report = migrate::migrate(&mut conn, &set, &t, Some(20250101000003), false)
        .await
        .unwrap();
    assert_eq!(
        report.applied,
        [
            (20250101000007, Direction::Down),
            (20250101000006, Direction::Down),
            (20250101000005, Direction::Down),
            (20250101000004, Direction::Down),
        ]
    );
    assert_eq!(report.to, Some(20250101000003));
    assert_eq!(tables(&mut conn, t.schema).await.len(), 15 + 1);

    // all the way down
    let report = migrate::migrate(&mut conn, &set, &t, Some(0), false)
        .await
        .unwrap();
    assert_eq!(report.applied.len(), 3);
    assert_eq!((report.from, report.to), (Some(20250101000003), None));
    let left: Vec<String> = objects(&mut conn, t.schema)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .filter(|n| !n.contains(HISTORY_TABLE))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(
        tables(&mut conn, t.schema).await,
        BTreeSet::from([HISTORY_TABLE.to_string()])
    );
    assert!(versions(&mut conn, &t).await.is_empty());

    // and up again
    let report = migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap();
    assert_eq!(report.applied.len(), 7);
    assert_eq!(tables(&mut conn, t.schema).await.len(), 30);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_dry").await;
    let set = baseline();
    let report = migrate::migrate(&mut conn, &set, &t, None, true)
        .await
        .unwrap();
    assert!(report.dry_run);
    assert!(report.applied.is_empty());
    assert_eq!((report.from, report.to), (None, None));
    assert_eq!(report.plan.steps.len(), 7);
    assert_eq!(report.plan.to, Some(LATEST));
    assert!(
        objects(&mut conn, t.schema).await.is_empty(),
        "not even the history table"
    );
    assert_eq!(ddl_count(&mut conn, t.schema).await, 0);

    migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap();
    let before = objects(&mut conn, t.schema).await;
    let ddl = ddl_count(&mut conn, t.schema).await;
    let report = migrate::migrate(&mut conn, &set, &t, Some(0), true)
        .await
        .unwrap();
    assert_eq!(report.plan.steps.len(), 7);
    assert!(
        report
            .plan
            .steps
            .iter()
            .all(|s| s.direction == Direction::Down)
    );
    assert_eq!(report.to, Some(LATEST));
    assert_eq!(objects(&mut conn, t.schema).await, before);
    assert_eq!(ddl_count(&mut conn, t.schema).await, ddl);
    assert_eq!(versions(&mut conn, &t).await.len(), 7);
}

#[tokio::test]
async fn checksum_drift_is_detected() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_drift").await;
    let set = MigrationSet::from_files([
        (
            "1_one.up.sql".to_string(),
            "CREATE TABLE one (id int);".to_string(),
        ),
        ("1_one.down.sql".to_string(), "DROP TABLE one;".to_string()),
        (
            "2_two.sql".to_string(),
            "CREATE TABLE two (id int);".to_string(),
        ),
    ])
    .unwrap();
    migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap();
    let edited = MigrationSet::from_files([
        (
            "1_one.up.sql".to_string(),
            "CREATE TABLE one (id bigint);".to_string(),
        ),
        ("1_one.down.sql".to_string(), "DROP TABLE one;".to_string()),
        (
            "2_two.sql".to_string(),
            "CREATE TABLE two (id int);".to_string(),
        ),
        (
            "3_three.sql".to_string(),
            "CREATE TABLE three (id int);".to_string(),
        ),
    ])
    .unwrap();
    let e = migrate::migrate(&mut conn, &edited, &t, None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MigrateError::ChecksumDrift { version: 1, .. }),
        "{e}"
    );
    assert_eq!(e.category(), "checksum_drift");
    // dry runs report drift too; nothing was applied
    assert!(
        migrate::migrate(&mut conn, &edited, &t, None, true)
            .await
            .is_err()
    );
    assert_eq!(versions(&mut conn, &t).await, [1, 2]);
    assert!(!tables(&mut conn, t.schema).await.contains("three"));

    // a history the set does not know (a newer operator migrated this schema)
    let older = MigrationSet::from_files([(
        "1_one.up.sql".to_string(),
        "CREATE TABLE one (id int);".to_string(),
    )])
    .unwrap();
    let e = migrate::migrate(&mut conn, &older, &t, None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MigrateError::UnknownApplied { version: 2 }),
        "{e}"
    );
    // rolling back past a migration without a down
    let e = migrate::migrate(&mut conn, &set, &t, Some(0), false)
        .await
        .unwrap_err();
    assert!(matches!(e, MigrateError::MissingDown { version: 2 }), "{e}");
    assert_eq!(versions(&mut conn, &t).await, [1, 2]);
}

#[tokio::test]
async fn failing_migration_rolls_back_entirely() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_fail").await;
    let base = baseline();
    migrate::migrate(&mut conn, &base, &t, None, false)
        .await
        .unwrap();
    let before = objects(&mut conn, t.schema).await;
    let ddl = ddl_count(&mut conn, t.schema).await;

    let bad = base
        .clone()
        .merge(
            MigrationSet::from_files([
                (
                    "20250201000001_good.sql".to_string(),
                    "CREATE TABLE extra_good (id int); ALTER TABLE saas_tenants ADD COLUMN extra text;"
                        .to_string(),
                ),
                (
                    "20250201000002_bad.sql".to_string(),
                    "CREATE TABLE extra_bad (id int);\nCREATE TABLE saas_tenants (id int);".to_string(),
                ),
            ])
            .unwrap(),
        )
        .unwrap();
    let e = migrate::migrate(&mut conn, &bad, &t, None, false)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "migration 20250201000002 failed: relation \"saas_tenants\" already exists"
    );
    assert_eq!(e.category(), "sql");
    // nothing of 20250201000001 nor 20250201000002 remains: still at the last good version
    assert_eq!(versions(&mut conn, &t).await.last(), Some(&LATEST));
    assert_eq!(objects(&mut conn, t.schema).await, before);
    let extra_col: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'extra'",
    )
    .bind(t.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(extra_col, 0);
    // the DDL log rows written inside the failed transaction are gone too
    assert_eq!(ddl_count(&mut conn, t.schema).await, ddl);

    // the connection is usable afterwards, and the good migration alone applies
    let good = base
        .merge(
            MigrationSet::from_files([(
                "20250201000001_good.sql".to_string(),
                "CREATE TABLE extra_good (id int); ALTER TABLE saas_tenants ADD COLUMN extra text;"
                    .to_string(),
            )])
            .unwrap(),
        )
        .unwrap();
    let report = migrate::migrate(&mut conn, &good, &t, None, false)
        .await
        .unwrap();
    assert_eq!(report.applied, [(20250201000001, Direction::Up)]);
}

/// The server ending the connection in the middle of a migration (failover, restart,
/// `pg_terminate_backend`) is not a failed migration: it is reported as `Unavailable` (transient,
/// retried; a TenantMigration does not count it against the failure budget) and nothing of the
/// interrupted transaction remains.
#[tokio::test]
async fn a_connection_lost_mid_migration_is_unavailable_not_a_failed_migration() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_lost").await;
    let base = baseline();
    migrate::migrate(&mut conn, &base, &t, None, false)
        .await
        .unwrap();
    let before = objects(&mut conn, t.schema).await;
    let slow = base
        .merge(
            MigrationSet::from_files([(
                "20250201000001_slow.sql".to_string(),
                "CREATE TABLE lost_half (id int); SELECT pg_sleep(30);".to_string(),
            )])
            .unwrap(),
        )
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let killer = tokio::spawn(async move {
        let mut other = connect().await;
        // Wait until the migration is inside its pg_sleep, then end the backend.
        for _ in 0..200 {
            let sleeping: bool = sqlx::query_scalar(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'",
            )
            .bind(pid)
            .fetch_one(&mut other)
            .await
            .unwrap();
            if sleeping {
                let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .fetch_one(&mut other)
                    .await
                    .unwrap();
                return ended;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    });
    let e = migrate::migrate(&mut conn, &slow, &t, None, false)
        .await
        .unwrap_err();
    assert!(killer.await.unwrap(), "the backend was terminated");
    assert!(
        matches!(&e, MigrateError::Unavailable { operation, .. } if operation == "running migration 20250201000001"),
        "{e:?}"
    );
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.category(), "unavailable");
    let reported = tenantdb::error::Error::from(e);
    assert_eq!(reported.category(), "DatabaseUnavailable");
    assert!(
        reported.to_string().starts_with(
            "database unavailable: running migration 20250201000001: terminating connection"
        ),
        "{reported}"
    );
    // Nothing of the interrupted migration remains.
    let mut conn = connect().await;
    assert_eq!(versions(&mut conn, &t).await.last(), Some(&LATEST));
    assert_eq!(objects(&mut conn, t.schema).await, before);
}

#[tokio::test]
async fn migrations_cannot_leave_the_transaction_or_role() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_escape").await;
    let set = MigrationSet::from_files([(
        "1_sneaky.sql".to_string(),
        "CREATE TABLE sneaky (id int); RESET ROLE;".to_string(),
    )])
    .unwrap();
    let e = migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap_err();
    assert!(matches!(e, MigrateError::Sql { version: 1, .. }), "{e}");
    assert!(e.to_string().contains("role"), "{e}");
    assert!(objects(&mut conn, t.schema).await.is_empty());

    let set = MigrationSet::from_files([(
        "1_commit.sql".to_string(),
        "CREATE TABLE committed (id int); COMMIT;".to_string(),
    )])
    .unwrap();
    let e = migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("ended the migration transaction"),
        "{e}"
    );
    // connection still usable
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);

    // On a fresh schema a ROLLBACK also takes the history table the engine just created with
    // it: still reported as leaving the transaction, not as the history write that then fails.
    let t = tenant(&mut conn, "mig_escape_fresh").await;
    let set = MigrationSet::from_files([(
        "1_rollback.sql".to_string(),
        "CREATE TABLE gone (id int); ROLLBACK;".to_string(),
    )])
    .unwrap();
    let e = migrate::migrate(&mut conn, &set, &t, None, false)
        .await
        .unwrap_err();
    assert!(matches!(e, MigrateError::Sql { version: 1, .. }), "{e}");
    assert!(
        e.to_string().contains("ended the migration transaction"),
        "{e}"
    );
    assert!(objects(&mut conn, t.schema).await.is_empty());
}

#[tokio::test]
async fn concurrent_migrations_serialize() {
    let mut admin = connect().await;
    let t = tenant(&mut admin, "mig_race").await;
    let set = baseline();
    let mut c1 = connect().await;
    let mut c2 = connect().await;
    let (r1, r2) = tokio::join!(
        migrate::migrate(&mut c1, &set, &t, None, false),
        migrate::migrate(&mut c2, &set, &t, None, false),
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let mut counts = [r1.applied.len(), r2.applied.len()];
    counts.sort();
    assert_eq!(counts, [0, 7], "applied once: {r1:?} / {r2:?}");
    assert_eq!(r1.to, Some(LATEST));
    assert_eq!(r2.to, Some(LATEST));
    assert_eq!(versions(&mut admin, &t).await, bundled_versions());
}

#[tokio::test]
async fn invalid_identifiers_are_rejected_before_any_sql() {
    let mut conn = connect().await;
    for (schema, role) in [
        ("Tenant", "t"),
        ("t", "x\"; DROP TABLE y; --"),
        ("a-b", "t"),
        ("", "t"),
    ] {
        let target = MigrationTarget {
            schema,
            owner_role: role,
            lock_key: 1,
        };
        let e = migrate::migrate(&mut conn, &baseline(), &target, None, false)
            .await
            .unwrap_err();
        assert_eq!(e.category(), "invalid_identifier", "{e}");
        assert_eq!(
            migrate::status(&mut conn, &target)
                .await
                .unwrap_err()
                .category(),
            "invalid_identifier"
        );
    }
}

#[tokio::test]
async fn load_dir_and_status_on_fresh_schema() {
    let mut conn = connect().await;
    let t = tenant(&mut conn, "mig_status").await;
    assert!(migrate::status(&mut conn, &t).await.unwrap().is_empty());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let set = MigrationSet::load_dir(&dir).unwrap();
    let report = migrate::migrate(&mut conn, &set, &t, Some(20250101000002), false)
        .await
        .unwrap();
    assert_eq!(report.applied.len(), 2);
    let status = migrate::status(&mut conn, &t).await.unwrap();
    assert_eq!(status.len(), 2);
    assert_eq!(status[0].name, "identity_core");
    assert_eq!(status[0].checksum, set.migrations()[0].checksum);
    // Measured in milliseconds: a step of this baseline takes well under a minute.
    assert!(
        (0..60_000).contains(&status[1].execution_ms),
        "{}",
        status[1].execution_ms
    );
    let age = jiff::Timestamp::now().duration_since(status[0].applied_at);
    assert!(age.as_secs() < 600, "{age:?}");
}

/// The opening runs no procedural code: in a database without PL/pgSQL (`DROP EXTENSION plpgsql`,
/// which some hardened set-ups do), a tenant's first migration (history table created) and the
/// ones after it (history read, a new step, an up-to-date no-op) work. A `DO` block in the opening
/// fails here with "language plpgsql does not exist".
#[tokio::test]
async fn migrations_need_no_plpgsql() {
    let mut admin = connect().await;
    exec(&mut admin, "CREATE DATABASE mig_noplpgsql").await;
    let mut conn = PgConnection::connect(&pg().url("mig_noplpgsql"))
        .await
        .unwrap();
    exec(&mut conn, "DROP EXTENSION plpgsql").await;
    let t = tenant(&mut conn, "mig_noplpgsql").await;
    let v1 = migrate::Migration::new(
        1,
        "items",
        "CREATE TABLE items (id bigint PRIMARY KEY)",
        None,
    );
    let v2 = migrate::Migration::new(
        2,
        "items_name",
        "ALTER TABLE items ADD COLUMN name text",
        None,
    );
    let first = MigrationSet::new(vec![v1.clone()]).unwrap();
    let both = MigrationSet::new(vec![v1, v2]).unwrap();

    let r = migrate::migrate(&mut conn, &first, &t, None, false)
        .await
        .unwrap();
    assert_eq!((r.from, r.to), (None, Some(1)));
    let r = migrate::migrate(&mut conn, &both, &t, None, false)
        .await
        .unwrap();
    assert_eq!((r.from, r.to, r.applied.len()), (Some(1), Some(2), 1));
    let r = migrate::migrate(&mut conn, &both, &t, None, false)
        .await
        .unwrap();
    assert!(r.applied.is_empty(), "{r:?}");
    assert_eq!(versions(&mut conn, &t).await, vec![1, 2]);
    let language: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_catalog.pg_language WHERE lanname = 'plpgsql'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(language, 0, "PL/pgSQL stayed absent");
}
