use super::*;
use crate::pg::stats::{RoleSessions, RoleStatements, StatementFigures};

fn counters(commit: i64, rollback: i64) -> DatabaseCounters {
    DatabaseCounters {
        xact_commit: commit,
        xact_rollback: rollback,
        deadlocks: 0,
        temp_bytes: 0,
        blks_hit: 95,
        blks_read: 5,
    }
}

fn snapshot(statements: std::result::Result<HashMap<String, RoleStatements>, String>) -> Snapshot {
    let mut sessions = HashMap::new();
    sessions.insert(
        "t_a".to_string(),
        RoleSessions {
            active: 1,
            idle: 2,
            idle_in_transaction: 0,
            other: 0,
        },
    );
    sessions.insert(
        "t_a_b".to_string(),
        RoleSessions {
            active: 0,
            idle: 1,
            idle_in_transaction: 1,
            other: 0,
        },
    );
    sessions.insert(
        "other".to_string(),
        RoleSessions {
            active: 7,
            ..Default::default()
        },
    );
    let mut databases = HashMap::new();
    databases.insert("db_a".to_string(), counters(120, 6));
    let mut rates = HashMap::new();
    rates.insert(
        "db_a".to_string(),
        DatabaseRates {
            commits_per_minute: 60,
            rollbacks_per_minute: 3,
        },
    );
    Snapshot {
        taken_at: Instant::now(),
        measured_at: Timestamp::now().to_string(),
        figures: ServerFigures {
            sessions,
            databases,
            statements,
        },
        rates,
        slow_threshold_ms: 500,
    }
}

fn keys(db: Option<&str>) -> TenantKeys<'_> {
    TenantKeys {
        roles: ["t_a", "t_a_b"],
        dedicated_database: db,
        connection_limit: Some(10),
    }
}

fn slow(id: &str, mean: i64) -> StatementFigures {
    StatementFigures {
        query_id: id.into(),
        calls: 2,
        mean_ms: mean,
        query: format!("select pg_sleep($1) -- {id}"),
    }
}

#[test]
fn rates_per_minute_and_resets() {
    let r = rates(
        Some(&counters(100, 10)),
        &counters(160, 13),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!((r.commits_per_minute, r.rollbacks_per_minute), (120, 6));
    assert!(rates(None, &counters(1, 1), Duration::from_secs(30)).is_none());
    assert!(
        rates(
            Some(&counters(100, 10)),
            &counters(5, 10),
            Duration::from_secs(30)
        )
        .is_none()
    );
    assert!(rates(Some(&counters(1, 1)), &counters(2, 2), Duration::ZERO).is_none());
}

#[test]
fn attribution_sums_both_login_roles_and_only_theirs() {
    let mut by_role = HashMap::new();
    by_role.insert(
        "t_a".to_string(),
        RoleStatements {
            slow: 2,
            slowest: vec![slow("1", 900), slow("2", 600)],
        },
    );
    by_role.insert(
        "t_a_b".to_string(),
        RoleStatements {
            slow: 1,
            slowest: vec![slow("3", 700)],
        },
    );
    by_role.insert(
        "other".to_string(),
        RoleStatements {
            slow: 9,
            slowest: vec![slow("9", 99_000)],
        },
    );
    let snap = snapshot(Ok(by_role));
    let s = attribute(&snap, &keys(Some("db_a")), None);
    assert_eq!(s.connections.total, 5);
    assert_eq!(s.connections.active, 1);
    assert_eq!(s.connections.idle, 3);
    assert_eq!(s.connections.idle_in_transaction, 1);
    assert_eq!(s.connections.limit, Some(10));
    let t = s.transactions.unwrap();
    assert_eq!(t.commits_per_minute, 60);
    assert_eq!(t.cache_hit_percent, Some(95));
    let st = s.statements.unwrap();
    assert!(st.available);
    assert_eq!(st.slow, 3);
    let ids: Vec<&str> = st.slowest.iter().map(|x| x.query_id.as_str()).collect();
    assert_eq!(ids, ["1", "3", "2"]);
    // A schema tenant: no per-database transactions.
    assert!(attribute(&snap, &keys(None), None).transactions.is_none());
}

#[test]
fn missing_extension_is_said_in_status() {
    let snap = snapshot(Err(
        "pg_stat_statements is not in shared_preload_libraries".into()
    ));
    let st = attribute(&snap, &keys(None), None).statements.unwrap();
    assert!(!st.available);
    assert!(st.reason.unwrap().contains("shared_preload_libraries"));
    assert_eq!(st.slow, 0);
}

#[test]
fn small_changes_are_not_reported_large_ones_are() {
    let snap = snapshot(Ok(HashMap::new()));
    let base = attribute(&snap, &keys(Some("db_a")), None);
    let mut same = base.clone();
    same.measured_at = Some("2030-01-01T00:00:00Z".into());
    assert!(!changed_meaningfully(&base, &same));
    // One more connection (5 → 6) is noise; 5 → 8 (≥ 80 % of the limit 10) is not.
    let mut c = base.clone();
    c.connections.total = 6;
    assert!(!changed_meaningfully(&base, &c));
    c.connections.total = 8;
    assert!(changed_meaningfully(&base, &c));
    // Commit rate 60 → 65 or → 100 is a busy tenant's wandering, 60 → 140 (more than doubled)
    // is not; 10 → 30 is too small to matter; a new deadlock always counts.
    let mut t = base.clone();
    t.transactions.as_mut().unwrap().commits_per_minute = 65;
    assert!(!changed_meaningfully(&base, &t));
    t.transactions.as_mut().unwrap().commits_per_minute = 100;
    assert!(!changed_meaningfully(&base, &t));
    t.transactions.as_mut().unwrap().commits_per_minute = 140;
    assert!(changed_meaningfully(&base, &t));
    let mut quiet = base.clone();
    quiet.transactions.as_mut().unwrap().commits_per_minute = 10;
    let mut t = quiet.clone();
    t.transactions.as_mut().unwrap().commits_per_minute = 30;
    assert!(!changed_meaningfully(&quiet, &t));
    let mut d = base.clone();
    d.transactions.as_mut().unwrap().deadlocks = 1;
    assert!(changed_meaningfully(&base, &d));
    // A new slow statement counts.
    let mut s = base.clone();
    s.statements.as_mut().unwrap().slow = 1;
    assert!(changed_meaningfully(&base, &s));
}

#[test]
fn settle_keeps_the_reported_object_until_it_is_stale() {
    let snap = snapshot(Ok(HashMap::new()));
    let reported = attribute(&snap, &keys(None), None);
    let mut now = reported.clone();
    now.measured_at = Some(Timestamp::now().to_string());
    now.connections.total = 6;
    let kept = settle(Some(&reported), now.clone(), Duration::from_secs(3600));
    assert_eq!(kept, reported, "noise keeps the reported object");
    let mut old = reported.clone();
    old.measured_at = Some("2020-01-01T00:00:00Z".into());
    let refreshed = settle(Some(&old), now.clone(), Duration::from_secs(3600));
    assert_eq!(refreshed, now, "a stale report is refreshed");
    assert_eq!(settle(None, now.clone(), Duration::from_secs(1)), now);
}
