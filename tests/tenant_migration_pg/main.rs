//! TenantMigration rollouts against a real PostgreSQL 15 (`tenantdb_testkit::localpg::LocalPg`), without
//! Kubernetes: tenants are provisioned with `PgAdmin` (observe/plan/apply) and migrated by the
//! controller's [`Rollout`] with the real [`PgMigrator`].
//!
//! The migration set: v1 creates `items` (and `down_log`, where down migrations record that they
//! ran), v2 adds a column, v3 an index, v4 a table plus a CHECK constraint that fails on tenants
//! holding a row with `qty <= 0`.

use tenantdb_testkit::fixtures as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::names;
use sqlx::{AssertSqlSafe, PgConnection};
use tenantdb::controller::migration::{
    Control, HaltReason, OutcomeKind, PgMigrator, Rollout, RolloutConfig, RolloutSummary,
    RolloutTenant, TenantMigrator, TenantOutcome,
};
use tenantdb::crd::Isolation;
use tenantdb::migrate::{self, Direction, MigrationSet, MigrationTarget};
use tenantdb::pg::PgAdmin;
use tenantdb::pg::plan::{Desired, plan};
use tenantdb::pg::session::Credentials;
use tenantdb::scram::generate_password;

const FILES: &[(&str, &str)] = &[
    (
        "1_items.up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);\n\
         CREATE TABLE down_log (id serial PRIMARY KEY, version bigint NOT NULL);",
    ),
    ("1_items.down.sql", "DROP TABLE items; DROP TABLE down_log;"),
    (
        "2_add_note.up.sql",
        "ALTER TABLE items ADD COLUMN note text;",
    ),
    (
        "2_add_note.down.sql",
        "ALTER TABLE items DROP COLUMN note; INSERT INTO down_log (version) VALUES (2);",
    ),
    (
        "3_qty_index.up.sql",
        "CREATE INDEX items_qty ON items (qty);",
    ),
    (
        "3_qty_index.down.sql",
        "DROP INDEX items_qty; INSERT INTO down_log (version) VALUES (3);",
    ),
    (
        "4_audit_positive.up.sql",
        "CREATE TABLE audit (id int);\n\
         ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0);",
    ),
    (
        "4_audit_positive.down.sql",
        "ALTER TABLE items DROP CONSTRAINT qty_positive; DROP TABLE audit; \
         INSERT INTO down_log (version) VALUES (4);",
    ),
];

/// The cluster's admin access, with the shared database created once up front: concurrent first
/// uses of `PgAdmin::shared_pool` by several tests race on `CREATE DATABASE` (SQLSTATE 23505).
fn admin() -> Arc<PgAdmin> {
    static SHARED_DB: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    SHARED_DB.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { common::admin().shared_pool().await.map(|_| ()).unwrap() });
        })
        .join()
        .unwrap()
    });
    common::admin()
}

/// The migration files up to `max` version, with optional replacements.
fn set_with(max: i64, replace: &[(&str, &str)]) -> MigrationSet {
    MigrationSet::from_files(
        FILES
            .iter()
            .filter(|(f, _)| {
                let v: i64 = f.split('_').next().unwrap().parse().unwrap();
                v <= max
            })
            .filter(|(f, _)| !replace.iter().any(|(r, sql)| r == f && sql.is_empty()))
            .map(|(f, sql)| {
                let sql = replace
                    .iter()
                    .find(|(r, _)| r == f)
                    .map(|(_, s)| *s)
                    .unwrap_or(sql);
                (f.to_string(), sql.to_string())
            }),
    )
    .unwrap()
}

fn set() -> Arc<MigrationSet> {
    Arc::new(set_with(4, &[]))
}

/// Provisions a tenant's role and schema/database like the Tenant controller does.
async fn provision(admin: &PgAdmin, ns: &str, name: &str, iso: Isolation) -> RolloutTenant {
    let desired = Desired::simple(names(ns, name, iso), generate_password());
    let observed = admin
        .observe(&desired.names, &desired.password)
        .await
        .unwrap();
    let steps = plan(&desired, &observed).unwrap();
    admin.apply(&desired, &steps).await.unwrap();
    // The migrator logs in as the tenant (never on the admin session), like the controller does
    // with the credentials of the tenant's Secret.
    let creds = Credentials::new(desired.names.role.clone(), desired.password.clone());
    RolloutTenant::new(name, desired.names).with_credentials(creds)
}

async fn fleet(
    admin: &PgAdmin,
    ns: &str,
    n: usize,
    every_nth_database: usize,
) -> Vec<RolloutTenant> {
    let mut out = Vec::new();
    for i in 0..n {
        let iso = if every_nth_database > 0 && i % every_nth_database == 0 {
            Isolation::Database
        } else {
            Isolation::Schema
        };
        out.push(provision(admin, ns, &format!("t{i:02}"), iso).await);
    }
    out
}

async fn conn(admin: &PgAdmin, t: &RolloutTenant) -> PgConnection {
    admin.connect_to(&t.names.database).await.unwrap()
}

fn target(t: &RolloutTenant) -> MigrationTarget<'_> {
    MigrationTarget {
        schema: t.names.schema.as_str(),
        owner_role: t.names.role.as_str(),
        lock_key: t.lock_key,
    }
}

/// Versions in the tenant's history table.
async fn history(admin: &PgAdmin, t: &RolloutTenant) -> Vec<i64> {
    let mut c = conn(admin, t).await;
    migrate::status(&mut c, &target(t))
        .await
        .unwrap()
        .iter()
        .map(|a| a.version)
        .collect()
}

/// Migrates one tenant directly with the engine (test setup).
async fn migrate_to(admin: &PgAdmin, set: &MigrationSet, t: &RolloutTenant, v: i64) {
    let mut c = conn(admin, t).await;
    migrate::migrate(&mut c, set, &target(t), Some(v), false)
        .await
        .unwrap();
}

async fn count(admin: &PgAdmin, t: &RolloutTenant, sql: &'static str, name: &str) -> i64 {
    let mut c = conn(admin, t).await;
    sqlx::query_scalar(sql)
        .bind(t.names.schema.as_str())
        .bind(name)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

const TABLE: &str =
    "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2";
const COLUMN: &str = "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'items' AND column_name = $2";
const INDEX: &str = "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2";
const CONSTRAINT: &str = "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.conname = $2";

/// Inserts a row with `qty = 0`: migration 4's CHECK constraint fails on this tenant.
async fn poison(admin: &PgAdmin, t: &RolloutTenant) {
    let mut c = conn(admin, t).await;
    let sql = format!(
        "INSERT INTO \"{}\".items (id, qty) VALUES (1, 0)",
        t.names.schema.as_str()
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
}

fn migrator(
    admin: &Arc<PgAdmin>,
    set: Arc<MigrationSet>,
    v: i64,
    dry_run: bool,
) -> Arc<PgMigrator> {
    Arc::new(PgMigrator {
        pg: Some(admin.clone()),
        servers: None,
        set,
        target_version: v,
        dry_run,
        lock_timeout: None,
    })
}

async fn roll<M: TenantMigrator>(
    config: RolloutConfig,
    m: Arc<M>,
    tenants: &[RolloutTenant],
) -> RolloutSummary {
    Rollout::new(config, m)
        .run(tenants.to_vec(), || Control::Continue, None)
        .await
}

fn steps(o: &TenantOutcome) -> Vec<(i64, Direction)> {
    o.steps.iter().map(|s| (s.version, s.direction)).collect()
}

/// Wraps a migrator, counting how many tenants are migrated at once.
struct Counting<M> {
    inner: Arc<M>,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl<M: TenantMigrator> TenantMigrator for Counting<M> {
    async fn migrate(&self, t: &RolloutTenant) -> TenantOutcome {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        // Long enough for the rollout to start others meanwhile.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let o = self.inner.migrate(t).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        o
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forward_to_latest_on_twenty_tenants_with_bounded_parallelism() {
    let admin = admin();
    let tenants = fleet(&admin, "fwd", 20, 5).await;
    let counting = Arc::new(Counting {
        inner: migrator(&admin, set(), 4, false),
        running: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let config = RolloutConfig {
        max_parallel: 4,
        ..Default::default()
    };
    let s = roll(config, counting.clone(), &tenants).await;
    let peak = counting.peak.load(Ordering::SeqCst);
    assert!(peak <= 4, "peak concurrency {peak}");
    assert!(peak >= 2, "tenants were migrated in parallel (peak {peak})");
    assert!(s.peak_running <= 4);
    assert!(s.halted.is_none(), "{:?}", s.halted);
    assert_eq!(s.count(OutcomeKind::Succeeded), 20, "{:#?}", s.outcomes);
    for t in &tenants {
        assert_eq!(history(&admin, t).await, [1, 2, 3, 4], "{}", t.name);
        let o = s.outcome(&t.name).unwrap();
        assert_eq!((o.from_version, o.to_version), (None, Some(4)));
        assert_eq!(o.steps.len(), 4);
        assert_eq!(count(&admin, t, TABLE, "audit").await, 1);
    }
    // Idempotent: a second rollout runs nothing.
    let s = roll(
        RolloutConfig {
            max_parallel: 4,
            ..Default::default()
        },
        migrator(&admin, set(), 4, false),
        &tenants,
    )
    .await;
    assert!(
        s.outcomes
            .iter()
            .all(|o| o.kind == OutcomeKind::Succeeded && o.steps.is_empty())
    );
    assert!(
        s.outcomes[0].message.starts_with("already at version 4"),
        "{}",
        s.outcomes[0].message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_stop_at_the_budget_and_leave_tenants_at_their_last_good_version() {
    let admin = admin();
    let tenants = fleet(&admin, "budget", 10, 4).await;
    for t in &tenants {
        migrate_to(&admin, &set(), t, 3).await;
    }
    poison(&admin, &tenants[2]).await;
    poison(&admin, &tenants[5]).await;
    poison(&admin, &tenants[8]).await;
    let config = RolloutConfig {
        max_parallel: 1,
        failure_budget: 1,
        ..Default::default()
    };
    let s = roll(config, migrator(&admin, set(), 4, false), &tenants).await;
    assert_eq!(s.halted, Some(HaltReason::FailureBudgetExceeded));
    let started: Vec<&str> = s.outcomes.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(started, ["t00", "t01", "t02", "t03", "t04", "t05"]);
    assert_eq!(s.not_started, ["t06", "t07", "t08", "t09"]);
    for i in [2, 5] {
        let o = s.outcome(&tenants[i].name).unwrap();
        assert_eq!(o.kind, OutcomeKind::Failed);
        assert_eq!(o.category, Some("sql"));
        assert!(
            o.message.contains("migration 4 failed") && o.message.contains("qty_positive"),
            "{}",
            o.message
        );
    }
    for (i, t) in tenants.iter().enumerate() {
        let h = history(&admin, t).await;
        let migrated = matches!(i, 0 | 1 | 3 | 4);
        if migrated {
            assert_eq!(h, [1, 2, 3, 4], "{}", t.name);
            assert_eq!(count(&admin, t, TABLE, "audit").await, 1);
        } else {
            // Failed (2, 5) or never started (6..): last good version, and the failing DDL of
            // migration 4 (the table created before the failing statement) left nothing behind.
            assert_eq!(h, [1, 2, 3], "{}", t.name);
            assert_eq!(count(&admin, t, TABLE, "audit").await, 0, "{}", t.name);
            assert_eq!(count(&admin, t, CONSTRAINT, "qty_positive").await, 0);
            assert_eq!(count(&admin, t, INDEX, "items_qty").await, 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_runs_the_down_migrations_newest_first() {
    let admin = admin();
    let tenants = vec![
        provision(&admin, "rollback", "db", Isolation::Database).await,
        provision(&admin, "rollback", "schema", Isolation::Schema).await,
    ];
    for t in &tenants {
        migrate_to(&admin, &set(), t, 4).await;
    }
    let s = roll(
        RolloutConfig {
            max_parallel: 2,
            ..Default::default()
        },
        migrator(&admin, set(), 1, false),
        &tenants,
    )
    .await;
    for t in &tenants {
        let o = s.outcome(&t.name).unwrap();
        assert_eq!(o.kind, OutcomeKind::Succeeded, "{}", o.message);
        assert_eq!(
            steps(o),
            [
                (4, Direction::Down),
                (3, Direction::Down),
                (2, Direction::Down)
            ]
        );
        assert_eq!((o.from_version, o.to_version), (Some(4), Some(1)));
        assert_eq!(history(&admin, t).await, [1]);
        assert_eq!(count(&admin, t, COLUMN, "note").await, 0);
        assert_eq!(count(&admin, t, INDEX, "items_qty").await, 0);
        assert_eq!(count(&admin, t, TABLE, "audit").await, 0);
        // The downs ran in this order.
        let mut c = conn(&admin, t).await;
        let sql = format!(
            "SELECT version FROM \"{}\".down_log ORDER BY id",
            t.names.schema.as_str()
        );
        let order: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&mut c)
            .await
            .unwrap();
        assert_eq!(order, [4, 3, 2]);
    }

    // A missing down migration fails that tenant with a clear error; nothing is reverted.
    let t = provision(&admin, "rollback", "nodown", Isolation::Schema).await;
    migrate_to(&admin, &set(), &t, 3).await;
    let no_down = Arc::new(set_with(3, &[("3_qty_index.down.sql", "")]));
    let s = roll(
        RolloutConfig::default(),
        migrator(&admin, no_down, 1, false),
        std::slice::from_ref(&t),
    )
    .await;
    let o = s.outcome("nodown").unwrap();
    assert_eq!(o.kind, OutcomeKind::Failed);
    assert_eq!(o.category, Some("missing_down"));
    assert!(
        o.message.contains("migration 3 has no down migration"),
        "{}",
        o.message
    );
    assert_eq!(history(&admin, &t).await, [1, 2, 3]);
    assert_eq!(count(&admin, &t, COLUMN, "note").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checksum_drift_blocks_the_tenant_and_runs_nothing() {
    let admin = admin();
    let drifted = provision(&admin, "drift", "edited", Isolation::Schema).await;
    let clean = provision(&admin, "drift", "clean", Isolation::Database).await;
    migrate_to(&admin, &set(), &drifted, 2).await;
    migrate_to(&admin, &set(), &clean, 2).await;
    // Someone edited migration 2 after it was applied to `drifted`...
    let edited = Arc::new(set_with(
        4,
        &[(
            "2_add_note.up.sql",
            "ALTER TABLE items ADD COLUMN note text; -- edited",
        )],
    ));
    let s = roll(
        RolloutConfig {
            max_parallel: 2,
            failure_budget: 5,
            ..Default::default()
        },
        migrator(&admin, edited, 4, false),
        std::slice::from_ref(&drifted),
    )
    .await;
    let o = s.outcome("edited").unwrap();
    assert_eq!(o.kind, OutcomeKind::Blocked);
    assert_eq!(o.category, Some("checksum_drift"));
    assert!(
        o.message.contains("checksum drift in migration 2"),
        "{}",
        o.message
    );
    assert!(o.steps.is_empty());
    assert_eq!(history(&admin, &drifted).await, [1, 2]);
    assert_eq!(count(&admin, &drifted, INDEX, "items_qty").await, 0);
    assert_eq!(count(&admin, &drifted, TABLE, "audit").await, 0);
    // ...while the original set still migrates a clean tenant.
    let s = roll(
        RolloutConfig::default(),
        migrator(&admin, set(), 4, false),
        std::slice::from_ref(&clean),
    )
    .await;
    assert_eq!(s.outcome("clean").unwrap().kind, OutcomeKind::Succeeded);
    // A blocked tenant counts against the failure budget.
    let s = roll(
        RolloutConfig::default(),
        migrator(
            &admin,
            Arc::new(set_with(
                4,
                &[(
                    "2_add_note.up.sql",
                    "ALTER TABLE items ADD COLUMN note text; -- edited",
                )],
            )),
            4,
            false,
        ),
        &[drifted.clone(), clean.clone()],
    )
    .await;
    assert_eq!(s.halted, Some(HaltReason::FailureBudgetExceeded));
    assert_eq!(s.not_started, ["clean"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_changes_nothing_and_reports_the_steps() {
    let admin = admin();
    let tenants = fleet(&admin, "dry", 3, 3).await;
    for t in &tenants {
        migrate_to(&admin, &set(), t, 1).await;
    }
    poison(&admin, &tenants[1]).await;
    let mut before = Vec::new();
    for t in &tenants {
        let mut c = conn(&admin, t).await;
        let catalog: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 ORDER BY 1",
        )
        .bind(t.names.schema.as_str())
        .fetch_all(&mut c)
        .await
        .unwrap();
        before.push((catalog, history(&admin, t).await));
    }
    let s = roll(
        RolloutConfig {
            max_parallel: 3,
            enforce_budget: false,
            ..Default::default()
        },
        migrator(&admin, set(), 4, true),
        &tenants,
    )
    .await;
    for (i, t) in tenants.iter().enumerate() {
        let o = s.outcome(&t.name).unwrap();
        assert_eq!(o.kind, OutcomeKind::Succeeded, "{}", o.message);
        assert_eq!(
            steps(o),
            [(2, Direction::Up), (3, Direction::Up), (4, Direction::Up)]
        );
        assert_eq!((o.from_version, o.to_version), (Some(1), Some(4)));
        assert_eq!(
            o.message,
            "dry run: would run up 2 add_note, up 3 qty_index, up 4 audit_positive"
        );
        let mut c = conn(&admin, t).await;
        let catalog: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 ORDER BY 1",
        )
        .bind(t.names.schema.as_str())
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!((catalog, history(&admin, t).await), before[i], "{}", t.name);
        assert_eq!(count(&admin, t, COLUMN, "note").await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_migrations_of_one_tenant_serialize() {
    let admin = admin();
    let t = provision(&admin, "concurrent", "shared", Isolation::Schema).await;
    // A slow migration, so that the two rollouts really overlap.
    let slow = Arc::new(set_with(
        3,
        &[(
            "2_add_note.up.sql",
            "ALTER TABLE items ADD COLUMN note text; SELECT pg_sleep(0.4);",
        )],
    ));
    let a = Rollout::new(
        RolloutConfig::default(),
        migrator(&admin, slow.clone(), 3, false),
    );
    let b = Rollout::new(
        RolloutConfig::default(),
        migrator(&admin, slow.clone(), 3, false),
    );
    let (sa, sb) = tokio::join!(
        a.run(vec![t.clone()], || Control::Continue, None),
        b.run(vec![t.clone()], || Control::Continue, None)
    );
    let (oa, ob) = (sa.outcome("shared").unwrap(), sb.outcome("shared").unwrap());
    assert_eq!(
        (oa.kind, ob.kind),
        (OutcomeKind::Succeeded, OutcomeKind::Succeeded),
        "{} / {}",
        oa.message,
        ob.message
    );
    // One ran every step; the other waited for the lock and found nothing to do.
    let mut ran = [oa.steps.len(), ob.steps.len()];
    ran.sort();
    assert_eq!(ran, [0, 3]);
    let waited = if oa.steps.is_empty() { oa } else { ob };
    assert!(
        waited.duration >= Duration::from_millis(300),
        "{:?}",
        waited.duration
    );
    assert_eq!((waited.from_version, waited.to_version), (Some(3), Some(3)));
    assert_eq!(history(&admin, &t).await, [1, 2, 3]);
    assert_eq!(count(&admin, &t, COLUMN, "note").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_canary_stops_the_fleet() {
    let admin = admin();
    let tenants = fleet(&admin, "canary", 6, 0).await;
    for t in &tenants {
        migrate_to(&admin, &set(), t, 3).await;
    }
    poison(&admin, &tenants[1]).await;
    let config = RolloutConfig {
        max_parallel: 4,
        failure_budget: 10,
        canaries: 2,
        ..Default::default()
    };
    let s = roll(config, migrator(&admin, set(), 4, false), &tenants).await;
    assert_eq!(s.halted, Some(HaltReason::CanaryFailed));
    assert!(!s.canary_passed);
    assert_eq!(s.outcomes.len(), 2);
    assert_eq!(s.outcome("t00").unwrap().kind, OutcomeKind::Succeeded);
    assert_eq!(s.outcome("t01").unwrap().kind, OutcomeKind::Failed);
    assert_eq!(s.not_started, ["t02", "t03", "t04", "t05"]);
    assert_eq!(history(&admin, &tenants[0]).await, [1, 2, 3, 4]);
    for t in &tenants[1..] {
        assert_eq!(history(&admin, t).await, [1, 2, 3], "{}", t.name);
    }

    // Healthy canaries release the rest of the fleet.
    let healthy = fleet(&admin, "canary-ok", 5, 0).await;
    let s = roll(
        RolloutConfig {
            max_parallel: 4,
            canaries: 2,
            ..Default::default()
        },
        migrator(&admin, set(), 4, false),
        &healthy,
    )
    .await;
    assert!(s.canary_passed && s.halted.is_none());
    assert_eq!(s.count(OutcomeKind::Succeeded), 5);
}

mod sessions;
