//! Verdicts, status rendering, selector validation, ConfigMap sets and the runtime's wiring.

use super::*;

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
    let s2 = render_status(&s1, true, false, "rev", Some(1), 3, &p, &v, &[], false, t1);
    assert_eq!(s1, s2, "an unchanged rollout renders the same status");
    let s3 = render_status(
        &s1,
        false,
        false,
        "rev2",
        Some(2),
        3,
        &p,
        &v,
        &[],
        false,
        t1,
    );
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
    assert!(crate::controller::migration::status::settled(&s1, true));
    assert!(
        !crate::controller::migration::status::settled(&s1, false),
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
    let s2 = render_status(&s1, true, true, "rev", Some(1), 3, &p, &v, &[], false, t1);
    assert_eq!(s2.completed_at, Some(Time(t0)), "kept while catching up");
    assert!(
        crate::controller::migration::status::settled(&s2, true),
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
