//! End-to-end TenantMigration: the real `tenantdb` binary (Tenant and TenantMigration
//! controllers) against the API server emulator and a real PostgreSQL.
//!
//! No fixed sleeps for state: every wait polls with a deadline (one measurement window checks that
//! nothing flaps).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;
use tenantdb::crd::{MigrationPhase, TenantMigration, TenantMigrationState};
use tenantdb_testkit::e2e::{self, Env, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_migration_catch_up_dry_run_and_rollback() {
    let env = Env::start_with(&["--resync-seconds", "2"]).await;
    let gold: Vec<String> = (0..6).map(|i| format!("gold-{i}")).collect();
    for (i, name) in gold.iter().enumerate() {
        let iso = if i % 3 == 0 { "database" } else { "schema" };
        create_tenant(&env, name, json!({"tier": "gold"}), iso).await;
    }
    create_tenant(&env, "bronze", json!({"tier": "bronze"}), "schema").await;
    for name in gold.iter().chain(["bronze".to_string()].iter()) {
        env.wait_ready(NS, name, T).await;
        assert_eq!(
            schema_version(&env, name).await,
            Some(BUNDLED_LATEST),
            "{name}: provisioning migrated to the bundled latest"
        );
    }
    assert_binary_runs_migration_controller(&env).await;

    // A ConfigMap adding version 8 on top of the bundled set.
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "flags-v8", "namespace": NS},
        "data": {
            "20250101000008_flags.up.sql": "CREATE TABLE tm_flags (id int PRIMARY KEY, name text NOT NULL);",
            "20250101000008_flags.down.sql": "DROP TABLE tm_flags;",
            "README.md": "not a migration: ignored",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    // 1. Fleet migration to v8 by label, one canary, three at a time.
    create_migration(
        &env,
        "gold-v8",
        json!({
            "target": {"selector": {"matchLabels": {"tier": "gold"}}},
            "source": {"configMap": {"name": "flags-v8"}},
            "strategy": {"maxParallel": 3, "canary": 1},
        }),
    )
    .await;
    let tm = wait_migration(&env, "gold-v8", "Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
    })
    .await;
    let st = tm.status.clone().unwrap();
    assert_eq!(
        (st.total, st.succeeded, st.failed, st.pending, st.running),
        (6, 6, 0, 0, 0),
        "{st:#?}"
    );
    assert_eq!(st.target_version, Some(V8));
    assert!(st.canary_passed);
    assert_eq!(st.canary_tenants, ["gold-0"]);
    assert!(st.started_at.is_some() && st.completed_at.is_some());
    assert_eq!(st.tenants.len(), 6);
    for e in &st.tenants {
        assert_eq!(e.state, TenantMigrationState::Succeeded, "{e:?}");
        assert_eq!(
            (e.from_version, e.to_version),
            (Some(BUNDLED_LATEST), Some(V8)),
            "{e:?}"
        );
        assert_eq!(e.message.as_deref(), Some("ran up 20250101000008 flags"));
    }
    for c in ["Complete", "Progressing", "Failed"] {
        let cond = st
            .conditions
            .iter()
            .find(|x| x.type_ == c)
            .unwrap_or_else(|| panic!("{c} missing"));
        assert_eq!(cond.observed_generation, tm.metadata.generation);
        assert_eq!(
            cond.status,
            if c == "Complete" { "True" } else { "False" },
            "{cond:?}"
        );
    }
    for name in &gold {
        assert_eq!(schema_version(&env, name).await, Some(V8), "{name}");
        assert!(has_flags_table(&env, name).await, "{name}");
    }
    assert_eq!(
        schema_version(&env, "bronze").await,
        Some(BUNDLED_LATEST),
        "not selected"
    );
    assert!(!has_flags_table(&env, "bronze").await);
    // `Completed` is published after the status write that concludes Succeeded: wait for it.
    wait_events(
        &env,
        "gold-v8",
        &["RolloutStarted", "CanaryPassed", "Completed"],
    )
    .await;

    // 2. No flapping: the Tenant controller (resync every 2 s) keeps schemaVersion; neither
    // controller writes anything while idle.
    let before = env.api.stats();
    tokio::time::sleep(Duration::from_secs(5)).await; // a measurement window, not a wait for state
    let delta = env.api.stats().since(&before);
    for name in &gold {
        assert_eq!(schema_version(&env, name).await, Some(V8), "{name} flapped");
    }
    assert_eq!(
        delta.writes("tenants", Some("status")),
        0,
        "idle tenants were written: {:?}",
        delta.to_json()
    );
    assert_eq!(
        delta.writes("tenantmigrations", Some("status")),
        0,
        "idle migration status written: {:?}",
        delta.to_json()
    );

    // 3. A new matching Tenant is brought to the Succeeded migration's version.
    create_tenant(&env, "gold-6", json!({"tier": "gold"}), "schema").await;
    env.wait_ready(NS, "gold-6", T).await;
    wait_schema_version(&env, "gold-6", V8).await;
    assert!(has_flags_table(&env, "gold-6").await);
    // The pass that catches the new tenant up writes 7/7 while it is still finishing (phase
    // Running, reason Finishing); the reconcile after the pass concludes Succeeded. Wait for that.
    let tm = wait_migration(&env, "gold-v8", "counts the new tenant, Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
            && tm
                .status
                .as_ref()
                .is_some_and(|s| s.total == 7 && s.succeeded == 7)
    })
    .await;
    let entry = tm
        .status
        .as_ref()
        .and_then(|s| s.tenants.iter().find(|e| e.name == "gold-6").cloned());
    assert!(
        entry
            .as_ref()
            .is_some_and(|e| e.state == TenantMigrationState::Succeeded
                && (e.from_version, e.to_version) == (Some(BUNDLED_LATEST), Some(V8))),
        "gold-6's entry: {entry:?}"
    );

    // 3b. A newer single-tenant rollback of gold-1, then another new gold tenant: gold-v8's
    // catch-up pass migrates gold-7 and leaves gold-1 to the newer migration, during that pass
    // and after it (the settled state survives the pass that catches a new tenant up).
    create_migration(
        &env,
        "gold-1-back",
        json!({
            "target": {"tenant": "gold-1"},
            "source": {"configMap": {"name": "flags-v8"}},
            "targetVersion": BUNDLED_LATEST,
        }),
    )
    .await;
    wait_migration(&env, "gold-1-back", "Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
    })
    .await;
    assert_eq!(schema_version(&env, "gold-1").await, Some(BUNDLED_LATEST));
    create_tenant(&env, "gold-7", json!({"tier": "gold"}), "schema").await;
    env.wait_ready(NS, "gold-7", T).await;
    wait_schema_version(&env, "gold-7", V8).await;
    let tm = wait_migration(
        &env,
        "gold-v8",
        "gold-7 caught up, gold-1 left to gold-1-back",
        |tm| {
            phase(tm) == Some(MigrationPhase::Succeeded)
                && tm.status.as_ref().is_some_and(|s| {
                    (s.total, s.succeeded, s.skipped, s.running, s.pending) == (8, 7, 1, 0, 0)
                })
        },
    )
    .await;
    let entry = tm
        .status
        .as_ref()
        .and_then(|s| s.tenants.iter().find(|e| e.name == "gold-1").cloned());
    assert!(
        entry
            .as_ref()
            .is_some_and(|e| e.state == TenantMigrationState::Skipped
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("gold-1-back"))),
        "gold-1's entry: {entry:?}"
    );
    assert_eq!(
        schema_version(&env, "gold-1").await,
        Some(BUNDLED_LATEST),
        "the catch-up of gold-7 moved gold-1 back to version 8"
    );
    // 3c. A catch-up that fails keeps the line between new and existing tenants (`settledAt`).
    // With gold-1-back deleted, gold-1 has no newer owner: gold-v8 leaves it alone only because
    // it predates the line. gold-8 already has the table v8 creates (made with its own login
    // while it was not selected), then is labelled gold: its catch-up fails and gold-v8 is
    // Failed (budget 0). Once gold-8 is deleted gold-v8 is Succeeded again with the same line,
    // and gold-1 was not moved back to version 8 (it was, when a Failed phase dropped the line).
    let line = tm.status.as_ref().and_then(|s| s.settled_at.clone());
    assert!(line.is_some(), "a settled rollout has a settledAt");
    migrations(&env)
        .delete("gold-1-back", &Default::default())
        .await
        .unwrap();
    create_tenant(&env, "gold-8", json!({"tier": "silver"}), "schema").await;
    env.wait_ready(NS, "gold-8", T).await;
    let mut c = env.connect_with_secret(NS, "gold-8-db").await.unwrap();
    sqlx::query("CREATE TABLE tm_flags (id int)")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    env.tenants(NS)
        .patch(
            "gold-8",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gold"}}})),
        )
        .await
        .unwrap();
    let tm = wait_migration(&env, "gold-v8", "Failed on gold-8", |tm| {
        phase(tm) == Some(MigrationPhase::Failed)
    })
    .await;
    let st = tm.status.clone().unwrap();
    let entry = st.tenants.iter().find(|e| e.name == "gold-8");
    assert!(
        entry.is_some_and(|e| matches!(
            e.state,
            TenantMigrationState::Failed | TenantMigrationState::Blocked
        )),
        "gold-8's entry: {entry:?}"
    );
    assert_eq!(st.settled_at, line, "the line survives the failed catch-up");
    env.tenants(NS)
        .delete("gold-8", &Default::default())
        .await
        .unwrap();
    let tm = wait_migration(
        &env,
        "gold-v8",
        "Succeeded again without gold-8, gold-1 left alone",
        |tm| {
            phase(tm) == Some(MigrationPhase::Succeeded)
                && tm
                    .status
                    .as_ref()
                    .is_some_and(|s| (s.total, s.succeeded, s.skipped, s.failed) == (8, 7, 1, 0))
        },
    )
    .await;
    assert_eq!(tm.status.and_then(|s| s.settled_at), line, "the same line");
    assert_eq!(
        schema_version(&env, "gold-1").await,
        Some(BUNDLED_LATEST),
        "gold-1 predates gold-v8's line: left alone after the failed catch-up"
    );
    let gold: Vec<String> = gold
        .into_iter()
        .chain(["gold-6".to_string(), "gold-7".to_string()])
        .collect();

    // 4. A dry run of the rollback on one tenant: the plan is reported, nothing changes.
    create_migration(
        &env,
        "gold-0-dry",
        json!({
            "target": {"tenant": "gold-0"},
            "source": {"configMap": {"name": "flags-v8"}},
            "targetVersion": BUNDLED_LATEST,
            "dryRun": true,
        }),
    )
    .await;
    let tm = wait_migration(&env, "gold-0-dry", "Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
    })
    .await;
    let st = tm.status.unwrap();
    assert_eq!((st.total, st.succeeded), (1, 1));
    let e = &st.tenants[0];
    assert_eq!(e.name, "gold-0");
    assert_eq!(
        e.message.as_deref(),
        Some("dry run: would run down 20250101000008 flags")
    );
    assert_eq!(
        (e.from_version, e.to_version),
        (Some(V8), Some(BUNDLED_LATEST))
    );
    assert_eq!(schema_version(&env, "gold-0").await, Some(V8));
    assert!(has_flags_table(&env, "gold-0").await);

    // 5. Roll the fleet back to the bundled latest.
    create_migration(
        &env,
        "gold-rollback",
        json!({
            "target": {"selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}]}},
            "source": {"configMap": {"name": "flags-v8"}},
            "targetVersion": BUNDLED_LATEST,
            "strategy": {"maxParallel": 4, "failureBudget": 0},
        }),
    )
    .await;
    let tm = wait_migration(&env, "gold-rollback", "Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
    })
    .await;
    let st = tm.status.unwrap();
    assert_eq!((st.total, st.succeeded, st.failed), (8, 8, 0), "{st:#?}");
    for name in &gold {
        assert_eq!(
            schema_version(&env, name).await,
            Some(BUNDLED_LATEST),
            "{name}"
        );
        assert!(!has_flags_table(&env, name).await, "{name}");
    }
    // The older, settled gold-v8 leaves the rolled-back tenants alone (no ping-pong).
    let tm = wait_migration(
        &env,
        "gold-v8",
        "tenants skipped after the rollback",
        |tm| {
            phase(tm) == Some(MigrationPhase::Succeeded)
                && tm.status.as_ref().is_some_and(|s| s.skipped == 8)
        },
    )
    .await;
    assert_eq!(
        tm.status.map(|s| (s.total, s.running, s.pending)),
        Some((8, 0, 0))
    );
    let before = env.api.stats();
    tokio::time::sleep(Duration::from_secs(3)).await; // a measurement window
    for name in &gold {
        assert_eq!(
            schema_version(&env, name).await,
            Some(BUNDLED_LATEST),
            "{name} was migrated again"
        );
    }
    let delta = env.api.stats().since(&before);
    assert_eq!(
        delta.writes("tenants", Some("status")),
        0,
        "{:?}",
        delta.to_json()
    );

    // 6. An invalid spec (missing ConfigMap): Failed with a clear condition and a Warning event.
    create_migration(
        &env,
        "broken",
        json!({"target": {"tenant": "gold-1"}, "source": {"configMap": {"name": "nope"}}}),
    )
    .await;
    let tm = wait_migration(&env, "broken", "InvalidSpec", |tm| {
        phase(tm) == Some(MigrationPhase::Failed)
    })
    .await;
    let cond = tm
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("True", "InvalidSpec")
    );
    assert!(
        cond.message.contains("ConfigMap nope not found"),
        "{}",
        cond.message
    );
    wait_events(&env, "broken", &["InvalidSpec"]).await;

    // The API server rejects a target with both a tenant and a selector (CEL rule).
    let both: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "both", "namespace": NS},
        "spec": {"target": {"tenant": "gold-1", "selector": {}}},
    }))
    .unwrap();
    let err = migrations(&env)
        .create(&PostParams::default(), &both)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("exactly one of target.tenant and target.selector"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_failure_budget_and_resume_with_a_larger_budget() {
    let env = Env::start_with(&["--resync-seconds", "2"]).await;
    // Sorted by name, the failing tenant comes first.
    for name in ["bad-0", "ok-0", "ok-1"] {
        create_tenant(&env, name, json!({"app": "billing"}), "schema").await;
    }
    for name in ["bad-0", "ok-0", "ok-1"] {
        env.wait_ready(NS, name, T).await;
    }
    assert_binary_runs_migration_controller(&env).await;
    // Fails for the tenant whose role name contains "_bad_"; slow enough (0.6 s per tenant) for
    // progress to be reported while the rollout runs.
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "v8", "namespace": NS},
        "data": {
            "20250101000008_guarded.up.sql": "SELECT pg_sleep(0.6);\nDO $$ BEGIN IF current_user LIKE '%\\_bad\\_%' THEN RAISE EXCEPTION 'boom: bad tenant'; END IF; END $$;\nCREATE TABLE tm_flags (id int);",
            "20250101000008_guarded.down.sql": "DROP TABLE tm_flags;",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    create_migration(
        &env,
        "billing-v8",
        json!({
            "target": {"selector": {"matchLabels": {"app": "billing"}}},
            "source": {"configMap": {"name": "v8"}},
            "strategy": {"maxParallel": 1, "failureBudget": 0, "paused": true},
        }),
    )
    .await;
    let tm = wait_migration(&env, "billing-v8", "Paused", |tm| {
        phase(tm) == Some(MigrationPhase::Paused)
    })
    .await;
    assert_eq!(tm.status.as_ref().unwrap().pending, 3);
    for name in ["bad-0", "ok-0", "ok-1"] {
        assert_eq!(
            schema_version(&env, name).await,
            Some(BUNDLED_LATEST),
            "paused: {name} untouched"
        );
    }

    // Resume: the first tenant fails and the budget (0) stops the rollout.
    migrations(&env)
        .patch(
            "billing-v8",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"strategy": {"paused": false}}})),
        )
        .await
        .unwrap();
    let tm = wait_migration(&env, "billing-v8", "Failed", |tm| {
        phase(tm) == Some(MigrationPhase::Failed)
    })
    .await;
    let st = tm.status.unwrap();
    assert_eq!(
        (st.total, st.succeeded, st.failed, st.pending),
        (3, 0, 1, 2),
        "{st:#?}"
    );
    let failed = st.tenants.iter().find(|e| e.name == "bad-0").unwrap();
    assert_eq!(failed.state, TenantMigrationState::Failed);
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("boom: bad tenant"),
        "{failed:?}"
    );
    let cond = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("True", "FailureBudgetExceeded")
    );
    for name in ["bad-0", "ok-0", "ok-1"] {
        assert_eq!(
            schema_version(&env, name).await,
            Some(BUNDLED_LATEST),
            "{name}"
        );
    }
    // The Event is published after the status write that concludes Failed: wait for it.
    wait_events(&env, "billing-v8", &["FailureBudgetExceeded"]).await;

    // A larger budget continues the same rollout (same revision): the failed tenant is not
    // retried, the others are migrated one at a time, with progress reported meanwhile.
    let revision = st.revision.clone();
    migrations(&env)
        .patch(
            "billing-v8",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"strategy": {"failureBudget": 1}}})),
        )
        .await
        .unwrap();
    wait_migration(&env, "billing-v8", "progress while running", |tm| {
        tm.status
            .as_ref()
            .is_some_and(|s| s.phase == MigrationPhase::Running && s.running == 1)
    })
    .await;
    let tm = wait_migration(&env, "billing-v8", "Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
    })
    .await;
    let st = tm.status.unwrap();
    assert_eq!(st.revision, revision);
    assert_eq!((st.total, st.succeeded, st.failed), (3, 2, 1), "{st:#?}");
    let cond = st.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "WithinFailureBudget")
    );
    assert_eq!(schema_version(&env, "bad-0").await, Some(BUNDLED_LATEST));
    assert!(!has_flags_table(&env, "bad-0").await);
    for name in ["ok-0", "ok-1"] {
        assert_eq!(schema_version(&env, name).await, Some(V8), "{name}");
        assert!(has_flags_table(&env, name).await);
    }
}

/// A Tenant status write computed before a TenantMigration migrated the tenant, and sent after the
/// migration recorded the new `schemaVersion`, must not leave the older version in place: the
/// write carries the version it computed, and a settled Tenant writes no status again before its
/// resync (300 s here). The write is held at the operator's `tenant-status-write` pause point
/// (tests/README.md) while the migration runs and records its version, then let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_in_flight_during_a_migration_keeps_the_newer_schema_version() {
    use tenantdb_testkit::pause::Pause;
    let pause = Pause::new("tenant-status-write");
    let env = Env::start_configured(e2e::EnvOptions {
        operator_env: pause.vars(),
        ..Default::default()
    })
    .await;
    create_tenant(&env, "late", json!({"tier": "late"}), "schema").await;
    env.wait_ready(NS, "late", T).await;
    assert_eq!(schema_version(&env, "late").await, Some(BUNDLED_LATEST));
    assert_binary_runs_migration_controller(&env).await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "late-v8", "namespace": NS},
        "data": {"20250101000008_flags.up.sql": "CREATE TABLE tm_flags (id int PRIMARY KEY);"},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    // A spec change: the reconcile's status write (the new observedGeneration) waits at the pause
    // point, computed with the version before the migration.
    pause.arm();
    let generation = env
        .tenants(NS)
        .patch(
            "late",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quotas": {"statementTimeout": "45s"}}})),
        )
        .await
        .unwrap()
        .metadata
        .generation;
    pause.reached(&env, T).await;
    assert_eq!(
        pause.reached_text(),
        format!("tenant-status-write Tenant/{NS}/late generation {generation:?}"),
        "the write held is the spec change's"
    );

    // Meanwhile the migration runs and records V8 on the Tenant.
    create_migration(
        &env,
        "late-v8",
        json!({"target": {"tenant": "late"}, "source": {"configMap": {"name": "late-v8"}}}),
    )
    .await;
    wait_migration(&env, "late-v8", "Succeeded", |tm| {
        phase(tm) == Some(MigrationPhase::Succeeded)
    })
    .await;
    wait_schema_version(&env, "late", V8).await;
    assert!(has_flags_table(&env, "late").await);

    // The held write goes: once it has landed (its observedGeneration), the Tenant says V8.
    pause.release();
    let api = env.tenants(NS);
    let landed = wait_for(T, "the held status write landed", || {
        let api = api.clone();
        async move {
            let t = api.get("late").await.ok()?;
            let s = t.status?;
            (s.observed_generation == generation).then_some(s.schema_version)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(40)));
    let log = env.operator_log();
    assert!(
        log.contains("pause point reached"),
        "the write was held:\n{}",
        env.important_log_tail(40)
    );
    if landed != Some(V8) {
        // Written back at once when the fix works; a few seconds at most.
        wait_for(
            Duration::from_secs(20),
            "schemaVersion back at V8 after the held write",
            || async { (schema_version(&env, "late").await == Some(V8)).then_some(()) },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}: the held write left schemaVersion {landed:?}\n{}",
                env.important_log_tail(40)
            )
        });
    }
}
