//! Verdicts, status rendering, selector validation, ConfigMap sets and the runtime's wiring.

use super::*;
use crate::controller::migration::status::settled_since;

#[test]
fn verdicts() {
    let base = VerdictInput {
        target_version: 5,
        failure_budget: 1,
        ..Default::default()
    };
    let counts = |succeeded, failed, pending, running| Counts {
        total: succeeded + failed + pending + running,
        succeeded,
        failed,
        pending,
        running,
        skipped: 0,
    };
    let v = verdict(&VerdictInput {
        counts: counts(3, 0, 0, 0),
        ..base.clone()
    });
    assert_eq!((v.phase, v.reason), (MigrationPhase::Succeeded, "Complete"));
    let v = verdict(&VerdictInput {
        counts: counts(3, 1, 0, 0),
        ..base.clone()
    });
    assert_eq!(v.phase, MigrationPhase::Succeeded);
    let v = verdict(&VerdictInput {
        counts: counts(3, 2, 4, 0),
        ..base.clone()
    });
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Failed, "FailureBudgetExceeded")
    );
    let v = verdict(&VerdictInput {
        counts: counts(3, 2, 0, 0),
        dry_run: true,
        ..base.clone()
    });
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Succeeded, "DryRunComplete")
    );
    let v = verdict(&VerdictInput {
        counts: counts(3, 0, 4, 0),
        paused: true,
        ..base.clone()
    });
    assert_eq!(v.phase, MigrationPhase::Paused);
    let v = verdict(&VerdictInput {
        counts: counts(3, 0, 4, 0),
        waiting_for_tenants: true,
        ..base.clone()
    });
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Running, "WaitingForTenants")
    );
    let v = verdict(&VerdictInput {
        counts: counts(0, 0, 0, 0),
        ..base.clone()
    });
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Succeeded, "NoMatchingTenants")
    );
    let v = verdict(&VerdictInput {
        counts: counts(0, 0, 0, 0),
        missing_tenant: Some("x".into()),
        ..base.clone()
    });
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Pending, "TenantNotFound")
    );
    let v = verdict(&VerdictInput {
        counts: counts(1, 1, 3, 0),
        canary_failed: true,
        failure_budget: 10,
        ..base
    });
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Failed, "CanaryFailed")
    );
}

/// Progress with one tenant, `a`, Succeeded.
fn one_succeeded() -> Progress {
    let mut p = Progress::default();
    p.states.insert("a".into(), TenantMigrationState::Succeeded);
    p.entries
        .insert("a".into(), entry("a", TenantMigrationState::Succeeded, 10));
    p
}

/// The first status of revision `rev` (generation 1, target 3).
fn first_status(p: &Progress, v: &Verdict, now: Timestamp) -> TenantMigrationStatus {
    render_status(
        &TenantMigrationStatus::default(),
        false,
        "rev",
        Some(1),
        3,
        p,
        v,
        &[],
        false,
        now,
    )
}

#[test]
fn rendering_is_stable() {
    let p = one_succeeded();
    let v = verdict(&VerdictInput {
        counts: p.counts(),
        target_version: 3,
        ..Default::default()
    });
    let t0 = Timestamp::from_second(100).unwrap();
    let t1 = Timestamp::from_second(200).unwrap();
    let s1 = first_status(&p, &v, t0);
    assert_eq!(s1.phase, MigrationPhase::Succeeded);
    assert_eq!(s1.completed_at, Some(Time(t0)));
    let s2 = render_status(&s1, true, "rev", Some(1), 3, &p, &v, &[], false, t1);
    assert_eq!(s1, s2, "an unchanged rollout renders the same status");
    let s3 = render_status(&s1, false, "rev2", Some(2), 3, &p, &v, &[], false, t1);
    assert_eq!(s3.started_at, Some(Time(t1)));
}

/// A settled rollout that catches a new tenant up keeps its `completedAt` through the pass
/// (phase Running) and after it (Succeeded again): the settled state and the line between new and
/// old tenants survive the catch-up.
#[test]
fn a_catch_up_pass_keeps_the_completion_time() {
    let mut p = one_succeeded();
    let done = VerdictInput {
        counts: p.counts(),
        target_version: 3,
        ..Default::default()
    };
    let t0 = Timestamp::from_second(100).unwrap();
    let t1 = Timestamp::from_second(200).unwrap();
    let t2 = Timestamp::from_second(300).unwrap();
    let s1 = first_status(&p, &verdict(&done), t0);
    assert!(settled_since(&s1, true).is_some());
    assert!(
        settled_since(&s1, false).is_none(),
        "a new revision is not settled"
    );
    p.states.insert("b".into(), TenantMigrationState::Running);
    let catching_up = VerdictInput {
        counts: p.counts(),
        settled: true,
        pass_running: true,
        ..done.clone()
    };
    let v = verdict(&catching_up);
    assert_eq!(v.phase, MigrationPhase::Running);
    assert_eq!(v.reason, "CatchingUp");
    let s2 = render_status(&s1, true, "rev", Some(1), 3, &p, &v, &[], false, t1);
    assert_eq!(s2.completed_at, Some(Time(t0)), "kept while catching up");
    assert!(
        settled_since(&s2, true) == Some(t0),
        "still settled during the catch-up pass"
    );
    p.states.insert("b".into(), TenantMigrationState::Succeeded);
    let after = VerdictInput {
        counts: p.counts(),
        settled: true,
        ..done
    };
    let s3 = render_status(
        &s2,
        true,
        "rev",
        Some(1),
        3,
        &p,
        &verdict(&after),
        &[],
        false,
        t2,
    );
    assert_eq!(s3.phase, MigrationPhase::Succeeded);
    assert_eq!(
        s3.completed_at,
        Some(Time(t0)),
        "the original completion time"
    );
}

/// A catch-up pass that fails past the budget makes the rollout `Failed` but keeps the settled
/// line (`settledAt`): existing tenants stay left alone, and once the failing tenant is gone the
/// rollout is `Succeeded` again with the same line (a new `completedAt`). A new revision drops it.
#[test]
fn a_failed_catch_up_keeps_the_settled_line() {
    let mut p = one_succeeded();
    let done = VerdictInput {
        counts: p.counts(),
        target_version: 3,
        ..Default::default()
    };
    let t = |s| Timestamp::from_second(s).unwrap();
    let s1 = first_status(&p, &verdict(&done), t(100));
    assert_eq!(s1.settled_at, Some(Time(t(100))));
    assert_eq!(settled_since(&s1, true), Some(t(100)));
    p.states.insert("new".into(), TenantMigrationState::Failed);
    let failing = VerdictInput {
        counts: p.counts(),
        settled: true,
        ..done.clone()
    };
    let v = verdict(&failing);
    assert_eq!(
        (v.phase, v.reason),
        (MigrationPhase::Failed, "FailureBudgetExceeded")
    );
    let render = |prev: &TenantMigrationStatus, p: &Progress, v: &Verdict, now, rev| {
        let same = prev.revision.as_deref() == Some(rev);
        render_status(prev, same, rev, Some(1), 3, p, v, &[], false, now)
    };
    let s2 = render(&s1, &p, &v, t(200), "rev");
    assert_eq!(s2.phase, MigrationPhase::Failed);
    assert_eq!(s2.completed_at, Some(Time(t(200))), "when it failed");
    assert_eq!(
        settled_since(&s2, true),
        Some(t(100)),
        "still settled since the first completion: tenants created before stay alone"
    );
    let s3 = render(&s2, &p, &v, t(250), "rev");
    assert_eq!(
        s3, s2,
        "an unchanged failed rollout renders the same status"
    );
    p.states.remove("new");
    let cleared = VerdictInput {
        counts: p.counts(),
        settled: true,
        ..done.clone()
    };
    let v = verdict(&cleared);
    assert_eq!(v.phase, MigrationPhase::Succeeded);
    let s4 = render(&s3, &p, &v, t(300), "rev");
    assert_eq!(s4.settled_at, Some(Time(t(100))), "the same line");
    assert_eq!(s4.completed_at, Some(Time(t(300))), "succeeded again now");
    // Failed, then a pass (another new tenant waited behind the budget), then Succeeded: no
    // `completedAt` while the pass runs, a new one after it.
    p.states
        .insert("newer".into(), TenantMigrationState::Running);
    let passing = VerdictInput {
        counts: p.counts(),
        settled: true,
        pass_running: true,
        ..cleared.clone()
    };
    let v_pass = verdict(&passing);
    assert_eq!(v_pass.phase, MigrationPhase::Running);
    let s3b = render(&s3, &p, &v_pass, t(260), "rev");
    assert_eq!(s3b.completed_at, None, "running again after Failed");
    assert_eq!(s3b.settled_at, Some(Time(t(100))));
    p.states
        .insert("newer".into(), TenantMigrationState::Succeeded);
    let v_done = verdict(&VerdictInput {
        counts: p.counts(),
        ..cleared.clone()
    });
    assert_eq!(v_done.phase, MigrationPhase::Succeeded);
    let s3c = render(&s3b, &p, &v_done, t(270), "rev");
    assert_eq!(
        s3c.completed_at,
        Some(Time(t(270))),
        "a Succeeded status has one"
    );
    assert_eq!(s3c.settled_at, Some(Time(t(100))));
    let s5 = render(&s4, &p, &v, t(400), "rev2");
    assert_eq!(
        s5.settled_at,
        Some(Time(t(400))),
        "a new revision, a new line"
    );
    // A status written before `settledAt` existed: its `completedAt` unless it failed.
    let legacy = TenantMigrationStatus {
        settled_at: None,
        ..s1.clone()
    };
    assert_eq!(settled_since(&legacy, true), Some(t(100)));
    let legacy_failed = TenantMigrationStatus {
        phase: MigrationPhase::Failed,
        ..legacy
    };
    assert_eq!(settled_since(&legacy_failed, true), None);
}

#[test]
fn selectors_are_validated() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    let ok = LabelSelector {
        match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "env".into(),
            operator: "In".into(),
            values: Some(vec!["prod".into()]),
        }]),
    };
    let s = parse_selector(&ok).unwrap();
    assert_eq!(s.to_string(), "tier=gold,env in (prod)");
    for bad in [
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec![]),
            }]),
            ..Default::default()
        },
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        },
        LabelSelector {
            match_labels: Some([("a b".to_string(), "x".to_string())].into()),
            ..Default::default()
        },
        LabelSelector {
            match_labels: Some([("a".to_string(), "x,y=z".to_string())].into()),
            ..Default::default()
        },
    ] {
        assert!(parse_selector(&bad).is_err(), "{bad:?}");
    }
    assert!(
        parse_selector(&LabelSelector::default())
            .unwrap()
            .selects_all()
    );
}

#[test]
fn configmap_sets_merge_and_conflict() {
    let bundled =
        MigrationSet::from_files([("1_a.up.sql".to_string(), "create table a();".to_string())])
            .unwrap();
    let data: BTreeMap<String, String> = [
        ("2_b.up.sql".to_string(), "create table b();".to_string()),
        ("README".to_string(), "x".to_string()),
    ]
    .into();
    let set = build_set(&bundled, Some(("cm", &data))).unwrap();
    assert_eq!(set.latest_version(), Some(2));
    let clash: BTreeMap<String, String> = [(
        "1_a.up.sql".to_string(),
        "create table other();".to_string(),
    )]
    .into();
    let e = build_set(&bundled, Some(("cm", &clash))).unwrap_err();
    assert!(
        e.contains("conflicts") && e.contains("duplicate migration version 1"),
        "{e}"
    );
    assert_ne!(set_fingerprint(&set), set_fingerprint(&bundled));
    // A file that would commit the engine's transaction half-way is refused before anything runs.
    let commits: BTreeMap<String, String> = [
        (
            "2_b.down.sql".to_string(),
            "drop table b; commit;".to_string(),
        ),
        ("2_b.up.sql".to_string(), "create table b();".to_string()),
    ]
    .into();
    let e = build_set(&bundled, Some(("cm", &commits))).unwrap_err();
    assert!(
        e.contains("2_b.down.sql") && e.contains("COMMIT") && e.contains("transaction control"),
        "{e}"
    );
}

/// The bundled baseline passes the transaction-control check the operator applies to ConfigMaps.
#[test]
fn the_bundled_set_has_no_transaction_control() {
    MigrationSet::bundled()
        .refuse_transaction_control()
        .unwrap();
}

/// The exact wiring proposed for `runtime.rs::run_controllers` type-checks and is spawnable.
#[allow(dead_code)]
pub(super) fn runtime_wiring_compiles(
    ctx: Arc<Context>,
    concurrency: u16,
    ready: watch::Sender<bool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    async fn run_controllers(
        ctx: Arc<Context>,
        concurrency: u16,
        ready: watch::Sender<bool>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) {
        use futures::FutureExt;
        let shutdown = shutdown.shared();
        tokio::join!(
            crate::controller::tenant::run(ctx.clone(), concurrency, ready, shutdown.clone()),
            crate::controller::migration::run(ctx, concurrency, shutdown),
        );
    }
    drop(tokio::spawn(run_controllers(
        ctx,
        concurrency,
        ready,
        shutdown,
    )));
}

#[test]
fn step_descriptions_are_bounded() {
    let steps: Vec<PlannedStep> = (1..100)
        .map(|v| PlannedStep {
            version: v,
            name: format!("migration_number_{v}"),
            direction: migrate::Direction::Up,
        })
        .collect();
    let d = describe_steps(&steps);
    assert!(d.len() < MAX_MESSAGE, "{}", d.len());
    assert!(d.starts_with("up 1 migration_number_1, up 2"));
    assert!(d.contains("more)"));
}
