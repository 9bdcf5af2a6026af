//! Unit tests of how a TenantMigration treats a tenant that is moving to another server: it waits
//! for the move (listed as pending, not a failure, no backoff) and is migrated on the server the
//! Tenant is on once the move ended. End to end: `tests/e2e_moves_interplay.rs`.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::watcher;
use serde_json::json;

use super::classify::{self, Input};
use super::*;
use crate::crd::{Isolation, Tenant, TenantMigration, TenantMigrationState};
use crate::naming::{Ident, tenant_names};

/// A Ready `schema` Tenant at version 7, with `extra` merged into its status.
fn tenant(name: &str, extra: serde_json::Value) -> Tenant {
    let mut status = json!({"phase": "Ready", "schemaVersion": 7});
    for (k, v) in extra.as_object().unwrap() {
        status[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                     "generation": 1, "labels": {"tier": "gold"}},
        "spec": {"isolation": "schema"},
        "status": status,
    }))
    .unwrap()
}

fn moving(phase: &str, to_on: &str) -> serde_json::Value {
    json!({
        "move": {"phase": phase, "from": "default", "to": "b", "startedAt": "2025-01-01T00:00:00Z"},
        "placement": {"postgres": to_on},
    })
}

fn classified(tenants: &[Tenant], dry_run: bool) -> classify::Classified {
    let shared = Ident::new("tenantdb_shared").unwrap();
    let servers: BTreeMap<String, Ident> = [
        ("default".to_string(), shared.clone()),
        ("b".to_string(), Ident::new("shared_on_b").unwrap()),
    ]
    .into();
    classify::classify(
        tenants,
        &Input {
            prev_entries: &BTreeMap::new(),
            dry_run,
            target: 8,
            settled_at: None,
            newer: &BTreeMap::new(),
            name_prefix: "tenant_",
            shared_database: &shared,
            servers: &servers,
            default_server: Some("default"),
        },
    )
}

#[test]
fn a_moving_tenant_waits_and_is_migrated_on_its_new_server_after_the_move() {
    let tenants = vec![
        tenant("copying", moving("Copying", "default")),
        tenant("cleaning", moving("CleaningUp", "b")),
        tenant("undoing", moving("RollingBack", "default")),
        tenant("moved", {
            let mut m = moving("Completed", "b");
            m["move"]["finishedAt"] = json!("2025-01-01T00:01:00Z");
            m
        }),
        tenant("rolled-back", moving("RolledBack", "default")),
        // A move that could not start (`not started: …`) has no startedAt: nothing to wait for.
        tenant(
            "not-started",
            json!({"move": {"phase": "Preparing", "from": "default", "to": ""}}),
        ),
        tenant("at-target", {
            let mut m = moving("Copying", "default");
            m["schemaVersion"] = json!(8);
            m
        }),
    ];
    let c = classified(&tenants, false);
    let work: BTreeMap<&str, Option<&str>> = c
        .work
        .iter()
        .map(|w| (w.name.as_str(), w.server.as_deref()))
        .collect();
    assert_eq!(
        work,
        [
            ("moved", Some("b")),
            ("not-started", Some("default")),
            ("rolled-back", Some("default")),
        ]
        .into(),
        "only tenants without a move in progress are migrated, each on the server it is on"
    );
    // The moved tenant's names are resolved with its new server's shared database.
    let moved = c.work.iter().find(|w| w.name == "moved").unwrap();
    assert_eq!(moved.names.database.as_str(), "shared_on_b");
    for name in ["copying", "cleaning", "undoing"] {
        assert_eq!(c.progress.states[name], TenantMigrationState::Pending);
        let msg = c.progress.entries[name].message.clone().unwrap();
        assert!(
            msg.contains("waiting for the Tenant's move from server default to b"),
            "{name}: {msg}"
        );
    }
    assert_eq!(
        c.waiting,
        ["copying", "cleaning", "undoing"],
        "the verdict says it waits for tenants"
    );
    assert!(c.failed.is_empty(), "waiting is not a failure");
    assert!(
        c.done.contains("at-target"),
        "a tenant at the target is done"
    );
    let counts = c.progress.counts();
    assert_eq!((counts.pending, counts.failed), (6, 0), "{counts:?}");
    // A dry run does not plan a moving tenant either.
    let c = classified(&tenants[..1], true);
    assert!(c.work.is_empty());
    assert_eq!(c.progress.states["copying"], TenantMigrationState::Pending);
}

#[test]
fn a_pass_defers_a_tenant_that_started_moving_or_moved_since_it_was_planned() {
    let d = |t: &Tenant, planned| classify::deferral(t, planned, Some("default"));
    assert_eq!(d(&tenant("a", json!({})), Some("default")), None);
    let copying = tenant("a", moving("Copying", "default"));
    assert!(
        d(&copying, Some("default"))
            .unwrap()
            .contains("move from server default to b")
    );
    let moved = tenant("a", moving("Completed", "b"));
    assert!(
        d(&moved, Some("default"))
            .unwrap()
            .contains("moved from server default to b")
    );
    assert_eq!(d(&moved, Some("b")), None, "planned on its new server");
}

#[test]
fn a_move_starting_or_ending_triggers_the_migrations_of_the_tenant() {
    let (store, mut writer) = kube::runtime::reflector::store::<TenantMigration>();
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "one", "namespace": "ns"},
        "spec": {"target": {"tenant": "a"}},
    }))
    .unwrap();
    writer.apply_watcher_event(&watcher::Event::Apply(tm));
    let trigger = TenantTrigger::default();
    let fire = |t: &Tenant| trigger.migrations_for(&store, t).len();
    assert_eq!(fire(&tenant("a", json!({}))), 1);
    assert_eq!(
        fire(&tenant("a", moving("Preparing", "default"))),
        1,
        "started"
    );
    // Its phase and lag change: nothing a rollout reads.
    assert_eq!(fire(&tenant("a", moving("Copying", "default"))), 0);
    let mut lag = moving("Copying", "default");
    lag["move"]["lagBytes"] = json!(4096);
    assert_eq!(fire(&tenant("a", lag)), 0);
    // The commit point names the new server, the move's end lets the tenant be migrated.
    assert_eq!(fire(&tenant("a", moving("CleaningUp", "b"))), 1);
    assert_eq!(fire(&tenant("a", moving("Completed", "b"))), 1, "ended");
}

/// Defers tenants whose name is in `defer`, succeeds the others.
struct Deferring {
    defer: Vec<&'static str>,
}

impl TenantMigrator for Deferring {
    async fn migrate(&self, t: &RolloutTenant) -> TenantOutcome {
        if self.defer.contains(&t.name.as_str()) {
            return TenantOutcome::error(
                t,
                OutcomeKind::Deferred,
                "moving",
                "waiting for the Tenant's move".into(),
                Duration::ZERO,
            );
        }
        TenantOutcome {
            name: t.name.clone(),
            kind: OutcomeKind::Succeeded,
            from_version: Some(7),
            to_version: Some(8),
            steps: vec![],
            message: "ran up 8 x".into(),
            category: None,
            duration: Duration::ZERO,
        }
    }
}

fn rollout_tenants(n: usize) -> Vec<RolloutTenant> {
    let shared = Ident::new("tenantdb_shared").unwrap();
    (0..n)
        .map(|i| {
            let name = format!("t{i}");
            let names =
                tenant_names("tenant_", "ns", &name, Isolation::Schema, None, &shared).unwrap();
            RolloutTenant::new(name, names)
        })
        .collect()
}

#[tokio::test]
async fn deferred_tenants_are_neither_failures_nor_transient_errors() {
    // No failure budget and one transient error would halt: deferrals do neither.
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 2,
            failure_budget: 0,
            max_transient: 1,
            ..Default::default()
        },
        Arc::new(Deferring {
            defer: vec!["t0", "t2"],
        }),
    );
    let s = r.run(rollout_tenants(5), || Control::Continue, None).await;
    assert_eq!(s.halted, None);
    assert!(s.not_started.is_empty());
    assert_eq!(
        (
            s.count(OutcomeKind::Deferred),
            s.count(OutcomeKind::Succeeded)
        ),
        (2, 3)
    );
    // The deferred tenant is pending in status, with the reason.
    let mut p = Progress::default();
    p.finished(s.outcome("t0").unwrap(), progress::now_seconds());
    assert_eq!(p.states["t0"], TenantMigrationState::Pending);
    assert_eq!(p.counts().failed, 0);
    assert!(p.entries["t0"].message.as_deref().unwrap().contains("move"));

    // A deferred canary does not release the fleet.
    let r = Rollout::new(
        RolloutConfig {
            max_parallel: 4,
            canaries: 1,
            failure_budget: 10,
            ..Default::default()
        },
        Arc::new(Deferring { defer: vec!["t0"] }),
    );
    let s = r.run(rollout_tenants(4), || Control::Continue, None).await;
    assert!(!s.canary_passed);
    assert_eq!(s.outcomes.len(), 1, "{:?}", s.outcomes);
    assert_eq!(s.not_started, ["t1", "t2", "t3"]);
}

/// The Tenant watch that triggers reconciles and the Tenant cache they read are two streams: a
/// reconcile triggered by a Tenant becoming Ready (or its move ending, or its creation) can read
/// the Tenant as it was. The trigger remembered the event and fires no more, so the reconcile must
/// look again shortly (seen in CI: a tenant pending for minutes after a kill -9, its rollout
/// waiting for the resync).
#[test]
fn a_tenant_event_the_cache_has_not_seen_yet_is_looked_at_again_shortly() {
    use super::reconcile::cache_lags;
    fn lags(
        trigger: &TenantTrigger,
        ns: &str,
        tenants: &[Tenant],
        waiting: &[String],
        named: Option<&str>,
    ) -> bool {
        cache_lags(trigger, ns, tenants, waiting, named, None)
    }
    let (store, _writer) = kube::runtime::reflector::store::<TenantMigration>();
    let trigger = TenantTrigger::default();
    let provisioning = tenant("a", json!({"phase": "Provisioning", "schemaVersion": null}));
    let ready = tenant("a", json!({}));
    let waiting = vec!["a".to_string()];

    // Nothing seen by the watch yet: the event is still to come and will trigger.
    assert!(!lags(
        &trigger,
        "ns",
        std::slice::from_ref(&provisioning),
        &waiting,
        None
    ));
    // The watch saw it Ready, the cache still has it provisioning.
    trigger.migrations_for(&store, &ready);
    assert!(lags(
        &trigger,
        "ns",
        std::slice::from_ref(&provisioning),
        &waiting,
        None
    ));
    // The cache caught up (its schemaVersion, overlaid from this process's records, is not compared).
    let mut overlaid = ready.clone();
    overlaid.status.as_mut().unwrap().schema_version = Some(9);
    assert!(!lags(&trigger, "ns", &[overlaid], &waiting, None));
    // Only tenants the verdict waits for are looked at.
    assert!(!lags(
        &trigger,
        "ns",
        std::slice::from_ref(&provisioning),
        &[],
        None
    ));

    // A move ended (the watch) while the cache still has it copying.
    let copying = tenant("b", moving("Copying", "default"));
    trigger.migrations_for(&store, &tenant("b", moving("Completed", "b")));
    assert!(lags(&trigger, "ns", &[copying], &["b".to_string()], None));

    // A named tenant the watch saw created but the cache does not have yet; and one being deleted.
    trigger.migrations_for(&store, &tenant("c", json!({})));
    assert!(lags(&trigger, "ns", &[], &[], Some("c")));
    assert!(
        !lags(&trigger, "other", &[], &[], Some("c")),
        "another namespace"
    );
    let mut deleting = tenant("d", json!({}));
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    trigger.migrations_for(&store, &deleting);
    assert!(!lags(&trigger, "ns", &[], &[], Some("d")));

    // A label change makes a Tenant selected (the watch), the cache still has the old labels.
    let gold: kube::core::Selector =
        kube::core::Expression::Equal("tier".into(), "gold".into()).into();
    let silver: kube::core::Selector =
        kube::core::Expression::Equal("tier".into(), "silver".into()).into();
    let in_cache = [
        tenant("a", json!({})),
        tenant("b", json!({})),
        tenant("c", json!({})),
    ];
    assert!(
        cache_lags(&trigger, "ns", &in_cache[..2], &[], None, Some(&gold)),
        "c (tier gold to the watch) is missing from the selection"
    );
    assert!(!cache_lags(
        &trigger,
        "ns",
        &in_cache,
        &[],
        None,
        Some(&gold)
    ));
    assert!(!cache_lags(&trigger, "ns", &[], &[], None, Some(&silver)));
}
