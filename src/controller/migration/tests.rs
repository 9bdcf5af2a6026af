//! Unit tests of the TenantMigration controller.
use super::super::{Context, object_key_for};
use super::*;
use crate::crd::Isolation;
use crate::crd::{
    MigrationPhase, Tenant, TenantMigration, TenantMigrationProgress, TenantMigrationState,
    TenantMigrationStatus,
};
use crate::migrate;
use crate::migrate::{MigrationSet, PlannedStep};
use crate::naming::{Ident, tenant_names};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

fn rt(name: &str) -> RolloutTenant {
    let shared = Ident::new("tenantdb_shared").unwrap();
    RolloutTenant::new(
        name,
        tenant_names("tenant_", "ns", name, Isolation::Schema, None, &shared).unwrap(),
    )
}

/// Fails tenants whose name is in `fail`, blocks those in `block`, counts concurrency.
struct Fake {
    fail: Vec<&'static str>,
    block: Vec<&'static str>,
    running: AtomicUsize,
    peak: AtomicUsize,
    order: Mutex<Vec<String>>,
    /// The tenants hinted with `prefetch`, and whether each was hinted before it started.
    hints: Mutex<Vec<String>>,
    hinted_before_start: Mutex<Vec<(String, bool)>>,
}

impl Fake {
    fn new(fail: Vec<&'static str>, block: Vec<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            fail,
            block,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            order: Mutex::new(vec![]),
            hints: Mutex::new(vec![]),
            hinted_before_start: Mutex::new(vec![]),
        })
    }
}

impl TenantMigrator for Fake {
    fn prefetch(&self, t: &RolloutTenant) {
        self.hints.lock().unwrap().push(t.name.clone());
    }

    async fn migrate(&self, t: &RolloutTenant) -> TenantOutcome {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.order.lock().unwrap().push(t.name.clone());
        let hinted = self.hints.lock().unwrap().contains(&t.name);
        self.hinted_before_start
            .lock()
            .unwrap()
            .push((t.name.clone(), hinted));
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let kind = if self.fail.contains(&t.name.as_str()) {
            OutcomeKind::Failed
        } else if self.block.contains(&t.name.as_str()) {
            OutcomeKind::Blocked
        } else {
            OutcomeKind::Succeeded
        };
        TenantOutcome {
            name: t.name.clone(),
            kind,
            from_version: Some(1),
            to_version: Some(2),
            steps: vec![],
            message: String::new(),
            category: None,
            duration: Duration::ZERO,
        }
    }
}

fn tenant_obj(name: &str, tier: &str, status: serde_json::Value) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                     "generation": 1, "labels": {"tier": tier}},
        "spec": {"isolation": "schema"},
        "status": status,
    }))
    .unwrap()
}

fn tm_obj(name: &str, target: serde_json::Value) -> TenantMigration {
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"target": target},
    }))
    .unwrap()
}

/// The names of the TenantMigrations `trigger` triggers for this event of `t`, sorted.
fn fired(
    trigger: &TenantTrigger,
    store: &kube::runtime::reflector::Store<TenantMigration>,
    t: &Tenant,
) -> Vec<String> {
    let mut v: Vec<String> = trigger
        .migrations_for(store, t)
        .into_iter()
        .map(|r| r.name)
        .collect();
    v.sort();
    v
}

#[test]
fn tenant_events_trigger_migrations_only_when_rollout_facts_change() {
    let (store, mut writer) = kube::runtime::reflector::store::<TenantMigration>();
    for tm in [
        tm_obj(
            "gold",
            json!({"selector": {"matchLabels": {"tier": "gold"}}}),
        ),
        tm_obj(
            "silver",
            json!({"selector": {"matchLabels": {"tier": "silver"}}}),
        ),
        tm_obj("one", json!({"tenant": "a"})),
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(tm));
    }
    let trigger = TenantTrigger::default();
    let fire = |t: &Tenant| fired(&trigger, &store, t);
    let ready = json!({"phase": "Ready", "schemaVersion": 7, "usage": {"storageBytes": 1}});
    let a = tenant_obj("a", "gold", ready.clone());
    // First sight: the selecting TenantMigrations.
    assert_eq!(fire(&a), ["gold", "one"]);
    // The same facts again (a resync, a re-list): nothing.
    assert!(fire(&a).is_empty());
    // A routine status write (usage, health, a condition message): nothing.
    let mut usage = ready.clone();
    usage["usage"]["storageBytes"] = json!(4096);
    usage["health"] = json!({"healthy": true});
    assert!(fire(&tenant_obj("a", "gold", usage)).is_empty());
    // What a rollout reads: schemaVersion, readiness, generation, deletion.
    let mut migrated = ready.clone();
    migrated["schemaVersion"] = json!(8);
    assert_eq!(
        fire(&tenant_obj("a", "gold", migrated.clone())),
        ["gold", "one"]
    );
    let mut failed = migrated.clone();
    failed["phase"] = json!("Failed");
    assert_eq!(fire(&tenant_obj("a", "gold", failed)), ["gold", "one"]);
    let mut spec_change = tenant_obj("a", "gold", migrated.clone());
    spec_change.metadata.generation = Some(2);
    assert_eq!(fire(&spec_change), ["gold", "one"]);
    let mut deleting = spec_change.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    assert_eq!(fire(&deleting), ["gold", "one"]);
    // A label change triggers the migration that selected the old labels, too.
    let mut moved = spec_change.clone();
    moved.metadata.labels = Some([("tier".to_string(), "silver".to_string())].into());
    assert_eq!(fire(&moved), ["gold", "one", "silver"]);
    assert!(fire(&moved).is_empty());
    // A recreated Tenant of the same name (new uid) is a change.
    let mut recreated = moved.clone();
    recreated.metadata.uid = Some("uid-a-2".into());
    assert_eq!(fire(&recreated), ["one", "silver"]);
    // Other namespaces and non-selected Tenants trigger nothing.
    let mut elsewhere = tenant_obj("b", "gold", ready.clone());
    elsewhere.metadata.namespace = Some("other".into());
    assert!(fire(&elsewhere).is_empty());
    assert!(fire(&tenant_obj("c", "bronze", ready)).is_empty());
    // Gone Tenants are forgotten.
    assert_eq!(trigger.len(), 3);
    let keep = object_key_for::<Tenant>("ns", "a");
    trigger.retain(|k| k == keep);
    assert_eq!(trigger.len(), 1);
}

#[test]
fn schema_version_moves_trigger_only_the_rollouts_they_concern() {
    let (store, mut writer) = kube::runtime::reflector::store::<TenantMigration>();
    let with_status = |name: &str, status: serde_json::Value| {
        let mut tm = tm_obj(name, json!({"selector": {"matchLabels": {"tier": "gold"}}}));
        tm.metadata.uid = Some(name.to_string());
        tm.status = Some(serde_json::from_value(status).unwrap());
        tm
    };
    for tm in [
        with_status("done9", json!({"targetVersion": 9, "phase": "Succeeded"})),
        with_status("done10", json!({"targetVersion": 10, "phase": "Succeeded"})),
        with_status(
            "running10",
            json!({"targetVersion": 10, "phase": "Running"}),
        ),
        {
            let mut fresh = tm_obj("fresh", json!({"tenant": "a"}));
            fresh.metadata.uid = Some("fresh".into());
            fresh
        },
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(tm));
    }
    let trigger = TenantTrigger::default();
    let fire = |t: &Tenant| fired(&trigger, &store, t);
    let at = |v: i64| tenant_obj("a", "gold", json!({"phase": "Ready", "schemaVersion": v}));
    assert_eq!(fire(&at(8)), ["done10", "done9", "fresh", "running10"]);
    // 8 → 9: done9's target reached (its pass reported it); done10 completed and 8, 9 are both
    // not its target: neither is triggered. A running rollout and one without status are.
    assert_eq!(fire(&at(9)), ["fresh", "running10"]);
    // 9 → 10: leaving done9's target for the newer rollouts selecting the tenant (done10,
    // running10, fresh: newer by name here, none has a creation time) is not news to done9 (the
    // newer pass triggers it once when it ends); reaching 10 is not news to the rollouts to 10.
    // (Leaving a completed target without a newer rollout: the next test.)
    assert_eq!(fire(&at(10)), ["fresh"]);
    // 10 → 8 (a rollback elsewhere): news to the running rollout to 10; not to done9 (neither
    // is its target), nor to done10 (newer rollouts select the tenant).
    assert_eq!(fire(&at(8)), ["fresh", "running10"]);
    // A version move together with another change (here: Ready again) is news to every one.
    let failed = tenant_obj("a", "gold", json!({"phase": "Failed", "schemaVersion": 8}));
    fire(&failed);
    assert_eq!(fire(&at(9)), ["done10", "done9", "fresh", "running10"]);
}

/// A TenantMigration of `tm_obj` created at `second`, with a status.
fn aged(name: &str, second: i64, status: serde_json::Value) -> TenantMigration {
    let mut tm = tm_obj(name, json!({"selector": {"matchLabels": {"tier": "gold"}}}));
    tm.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
    ));
    tm.metadata.uid = Some(name.to_string());
    tm.status = Some(serde_json::from_value(status).unwrap());
    tm
}

#[test]
fn leaving_a_completed_target_is_news_only_without_a_newer_rollout() {
    let (store, mut writer) = kube::runtime::reflector::store::<TenantMigration>();
    // z9 is the newest by name but the oldest by creation time: creation time decides.
    writer.apply_watcher_event(&watcher::Event::Apply(aged(
        "z9",
        100,
        json!({"targetVersion": 9, "phase": "Succeeded"}),
    )));
    let trigger = TenantTrigger::default();
    let fire = |t: &Tenant| fired(&trigger, &store, t);
    let at = |v: i64| tenant_obj("a", "gold", json!({"phase": "Ready", "schemaVersion": v}));
    assert_eq!(fire(&at(9)), ["z9"]);
    // No newer rollout selects the tenant: leaving z9's target is news to z9 (drift to report).
    assert_eq!(fire(&at(10)), ["z9"]);
    fire(&at(9));
    // A newer rollout to 10 selects it: the tenant leaves for it, z9 is not triggered per tenant.
    let newer = aged("a10", 200, json!({"targetVersion": 10, "phase": "Running"}));
    writer.apply_watcher_event(&watcher::Event::Apply(newer.clone()));
    assert_eq!(fire(&at(10)), Vec::<String>::new());
    // Back at 9: z9's target reached (not news to it); news to the newer running rollout.
    assert_eq!(fire(&at(9)), ["a10"]);
    // The newer one failed (not running) with target 10: a tenant leaving 9 for 10 is its
    // doing, not news to z9; leaving 9 for 12 (by hand, a restore) is news to z9.
    let mut failed = newer.clone();
    failed.status =
        Some(serde_json::from_value(json!({"targetVersion": 10, "phase": "Failed"})).unwrap());
    writer.apply_watcher_event(&watcher::Event::Apply(failed));
    assert_eq!(fire(&at(10)), Vec::<String>::new());
    fire(&at(9));
    assert_eq!(fire(&at(12)), ["a10", "z9"]);
    fire(&at(9));
    writer.apply_watcher_event(&watcher::Event::Apply(newer.clone()));

    // When the newer rollout's pass ends, it triggers the older completed ones selecting its
    // tenants once (and neither itself, nor newer, nor unfinished, nor deleted ones, nor any for
    // a dry run).
    let newest = aged(
        "b11",
        300,
        json!({"targetVersion": 11, "phase": "Succeeded"}),
    );
    let older_running = aged("c8", 50, json!({"targetVersion": 8, "phase": "Running"}));
    let mut older_deleted = aged("d7", 60, json!({"targetVersion": 7, "phase": "Succeeded"}));
    older_deleted.metadata.deletion_timestamp = newest.metadata.creation_timestamp.clone();
    let mut other_ns = aged("e6", 70, json!({"targetVersion": 6, "phase": "Succeeded"}));
    other_ns.metadata.namespace = Some("other".into());
    for tm in [newest, older_running, older_deleted, other_ns] {
        writer.apply_watcher_event(&watcher::Event::Apply(tm));
    }
    let woken = |tm: &TenantMigration, tenants: &[Tenant]| {
        let mut v: Vec<String> = super::reconcile::superseded_completed(&store, tm, tenants)
            .into_iter()
            .map(|r| r.name)
            .collect();
        v.sort();
        v
    };
    assert_eq!(woken(&newer, &[at(10)]), ["z9"]);
    assert!(woken(&newer, &[tenant_obj("x", "silver", json!({}))]).is_empty());
    let mut dry = newer.clone();
    dry.spec.dry_run = true;
    assert!(woken(&dry, &[at(10)]).is_empty());
}

fn names(n: usize) -> Vec<RolloutTenant> {
    (0..n).map(|i| rt(&format!("t{i:02}"))).collect()
}

#[tokio::test]
async fn the_next_tenant_is_hinted_while_the_running_ones_migrate() {
    let fake = Fake::new(vec![], vec![]);
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 1,
            ..Default::default()
        },
        fake.clone(),
    );
    r.run(names(4), || Control::Continue, None).await;
    // Each tenant after the first was hinted once, before it started.
    assert_eq!(*fake.hints.lock().unwrap(), ["t01", "t02", "t03"]);
    let started = fake.hinted_before_start.lock().unwrap().clone();
    assert_eq!(
        started,
        [("t00", false), ("t01", true), ("t02", true), ("t03", true)]
            .map(|(n, h)| (n.to_string(), h))
    );

    // Not during the canary phase (the fleet may never start), nor once halted.
    let fake = Fake::new(vec!["t02"], vec![]);
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 1,
            canaries: 2,
            enforce_budget: true,
            failure_budget: 0,
            ..Default::default()
        },
        fake.clone(),
    );
    let s = r.run(names(6), || Control::Continue, None).await;
    assert_eq!(s.halted, Some(HaltReason::FailureBudgetExceeded));
    // t00, t01: canaries (no hints); t02 starts and fails with t03 hinted; then halted.
    assert_eq!(*fake.hints.lock().unwrap(), ["t03"]);
}

#[tokio::test]
async fn parallelism_is_bounded() {
    let fake = Fake::new(vec![], vec![]);
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 3,
            ..Default::default()
        },
        fake.clone(),
    );
    let s = r.run(names(12), || Control::Continue, None).await;
    assert_eq!(s.count(OutcomeKind::Succeeded), 12);
    assert!(fake.peak.load(Ordering::SeqCst) <= 3);
    assert!(
        s.peak_running <= 3 && s.peak_running >= 2,
        "{}",
        s.peak_running
    );
    assert!(s.halted.is_none() && s.not_started.is_empty());
}

/// Counts, per server, how many tenants run at once (independently of the rollout's summary).
#[derive(Default)]
struct ByServer {
    running: Mutex<std::collections::HashMap<Option<String>, usize>>,
    peak: Mutex<std::collections::HashMap<Option<String>, usize>>,
    total_peak: AtomicUsize,
    total: AtomicUsize,
}

impl TenantMigrator for ByServer {
    async fn migrate(&self, t: &RolloutTenant) -> TenantOutcome {
        {
            let mut running = self.running.lock().unwrap();
            let n = running.entry(t.server.clone()).or_default();
            *n += 1;
            let mut peak = self.peak.lock().unwrap();
            let p = peak.entry(t.server.clone()).or_default();
            *p = (*p).max(*n);
        }
        let now = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        self.total_peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.total.fetch_sub(1, Ordering::SeqCst);
        *self.running.lock().unwrap().get_mut(&t.server).unwrap() -= 1;
        TenantOutcome {
            name: t.name.clone(),
            kind: OutcomeKind::Succeeded,
            from_version: Some(1),
            to_version: Some(2),
            steps: vec![],
            message: String::new(),
            category: None,
            duration: Duration::ZERO,
        }
    }
}

#[tokio::test]
async fn parallelism_per_server_is_bounded() {
    // 8 tenants on a, 2 on b, 2 on c: at most 2 of one server at once, 5 in all.
    let tenants: Vec<RolloutTenant> = (0..12)
        .map(|i| {
            let server = match i {
                0..8 => "a",
                8..10 => "b",
                _ => "c",
            };
            RolloutTenant {
                server: Some(server.into()),
                ..rt(&format!("t{i:02}"))
            }
        })
        .collect();
    let fake = Arc::new(ByServer::default());
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 5,
            max_parallel_per_server: Some(2),
            ..Default::default()
        },
        fake.clone(),
    );
    let s = r.run(tenants, || Control::Continue, None).await;
    assert_eq!(s.count(OutcomeKind::Succeeded), 12);
    let peak = fake.peak.lock().unwrap().clone();
    for server in ["a", "b", "c"] {
        let p = peak[&Some(server.to_string())];
        assert!(p <= 2, "server {server}: {p} at once");
    }
    assert_eq!(peak[&Some("a".to_string())], 2, "a's slots were used");
    assert!(fake.total_peak.load(Ordering::SeqCst) <= 5);
    // b's and c's tenants did not wait behind a's (they are later in the list).
    assert!(s.peak_running > 2, "{}", s.peak_running);
    assert_eq!(s.peak_running_per_server, 2);
}

#[tokio::test]
async fn failure_budget_stops_new_starts() {
    let fake = Fake::new(vec!["t01", "t03"], vec![]);
    let r = Rollout::new(
        RolloutConfig {
            failure_budget: 1,
            ..Default::default()
        },
        fake.clone(),
    );
    let s = r.run(names(8), || Control::Continue, None).await;
    assert_eq!(s.halted, Some(HaltReason::FailureBudgetExceeded));
    assert_eq!(s.outcomes.len(), 4);
    assert_eq!(s.not_started, ["t04", "t05", "t06", "t07"]);
    // Blocked counts as failed; budget ignored for dry runs.
    let fake = Fake::new(vec![], vec!["t00"]);
    let r = Rollout::new(RolloutConfig::default(), fake.clone());
    assert_eq!(
        r.run(names(3), || Control::Continue, None)
            .await
            .outcomes
            .len(),
        1
    );
    let r = Rollout::new(
        RolloutConfig {
            enforce_budget: false,
            ..Default::default()
        },
        fake,
    );
    assert_eq!(
        r.run(names(3), || Control::Continue, None)
            .await
            .outcomes
            .len(),
        3
    );
}

#[tokio::test]
async fn canaries_gate_the_fleet() {
    let fake = Fake::new(vec![], vec![]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 4,
            canaries: 2,
            failure_budget: 10,
            ..Default::default()
        },
        fake.clone(),
    );
    let s = r.run(names(6), || Control::Continue, Some(&tx)).await;
    assert!(s.canary_passed);
    let mut evs = vec![];
    while let Ok(e) = rx.try_recv() {
        evs.push(e);
    }
    let pos = evs
        .iter()
        .position(|e| *e == RolloutEvent::CanaryPassed)
        .unwrap();
    let started_before: Vec<_> = evs[..pos]
        .iter()
        .filter_map(|e| match e {
            RolloutEvent::Started(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(started_before, ["t00", "t01"]);

    let fake = Fake::new(vec!["t01"], vec![]);
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 4,
            canaries: 2,
            failure_budget: 10,
            ..Default::default()
        },
        fake.clone(),
    );
    let s = r.run(names(6), || Control::Continue, None).await;
    assert_eq!(s.halted, Some(HaltReason::CanaryFailed));
    assert_eq!(s.outcomes.len(), 2);
    assert_eq!(s.not_started.len(), 4);
}

#[tokio::test]
async fn pause_lets_running_finish() {
    let fake = Fake::new(vec![], vec![]);
    let calls = AtomicUsize::new(0);
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 2,
            ..Default::default()
        },
        fake,
    );
    let s = r
        .run(
            names(10),
            || {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Control::Continue
                } else {
                    Control::Pause
                }
            },
            None,
        )
        .await;
    assert_eq!(s.halted, Some(HaltReason::Paused));
    assert_eq!(s.outcomes.len(), 3);
    assert_eq!(s.not_started.len(), 7);
}

fn entry(name: &str, state: TenantMigrationState, second: i64) -> TenantMigrationProgress {
    TenantMigrationProgress {
        name: name.into(),
        state,
        finished_at: Some(Time(Timestamp::from_second(second).unwrap())),
        ..Default::default()
    }
}

#[test]
fn entries_are_bounded() {
    let mut p = Progress::default();
    for i in 0..200 {
        let name = format!("t{i:03}");
        let state = if i % 50 == 7 {
            TenantMigrationState::Failed
        } else {
            TenantMigrationState::Succeeded
        };
        p.states.insert(name.clone(), state);
        p.entries
            .insert(name.clone(), entry(&name, state, 1_000 + i));
    }
    // An entry of a tenant that is no longer selected is dropped.
    p.entries.insert(
        "gone".into(),
        entry("gone", TenantMigrationState::Failed, 5),
    );
    let (list, omitted) = p.bounded_entries();
    assert_eq!(list.len(), 4 + MAX_LISTED_TENANTS);
    assert_eq!(omitted, 200 - list.len());
    assert_eq!(
        list.iter()
            .filter(|e| e.state == TenantMigrationState::Failed)
            .count(),
        4
    );
    assert!(list.iter().any(|e| e.name == "t199"));
    assert!(!list.iter().any(|e| e.name == "t100"));
    assert!(list.windows(2).all(|w| w[0].name < w[1].name));
    let c = p.counts();
    assert_eq!((c.total, c.succeeded, c.failed), (200, 196, 4));
}

/// A dry run that finds checksum drift on every tenant of a 10k fleet (names of 63 characters,
/// a DNS label's limit): each stays listed as blocked (so it is not planned again within the
/// revision), with the details of the latest ones only, and the status stays below etcd's
/// 1.5 MiB object limit.
#[test]
fn ten_thousand_blocked_tenants_fit_in_one_object() {
    let mut p = Progress::default();
    let long = "checksum drift: ".to_string() + &"x".repeat(400);
    let name = |i: usize| format!("{}-{i:05}", "t".repeat(57));
    for i in 0..10_000 {
        p.set(&name(i), TenantMigrationState::Blocked, Some(long.clone()));
    }
    // The latest failures (with a time) keep their details, whatever their names.
    for i in 9_990..10_000 {
        if let Some(e) = p.entries.get_mut(&name(i)) {
            e.finished_at = Some(Time(Timestamp::from_second(1_000 + i as i64).unwrap()));
        }
    }
    let (list, omitted) = p.bounded_entries();
    assert!(
        list[9_990..].iter().all(|e| e.message.is_some()),
        "the latest failures keep their details"
    );
    assert_eq!((list.len(), omitted), (10_000, 0));
    assert!(
        list.iter()
            .all(|e| e.state == TenantMigrationState::Blocked)
    );
    let detailed = list.iter().filter(|e| e.message.is_some()).count();
    assert_eq!(detailed, MAX_DETAILED_PROBLEMS);
    assert!(
        list[..MAX_DETAILED_PROBLEMS - 10]
            .iter()
            .all(|e| e.message.is_some())
    );
    let status = crate::crd::TenantMigrationStatus {
        tenants: list,
        ..Default::default()
    };
    let bytes = serde_json::to_vec(&status).unwrap().len();
    assert!(bytes < 3 * 512 * 1024, "{bytes} bytes");
}

mod rendering;
