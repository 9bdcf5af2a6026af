//! Targets a move refuses: the same cluster under another name, a server without free replication
//! workers, a server whose workers another move's copy holds (until that copy is done).

use super::*;

/// One cluster declared twice (the default server and a DatabaseServer with its address): the
/// DatabaseServer says so and takes no new tenants, and a move between the two names is refused
/// before anything is created — restored onto itself, its roll-back would have dropped the
/// tenant's only database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_the_same_cluster_under_another_name_is_refused() {
    let env = Env::start_configured(options(Vec::new())).await;
    env.add_database_server("alias", &env.pg, json!({})).await;
    let servers: kube::Api<tenantdb::crd::DatabaseServer> = kube::Api::all(env.client.clone());
    // The second name takes no new tenants (its capacity would count the cluster twice).
    let c = wait_for(T, "server alias reports DuplicateCluster", || async {
        let st = servers.get("alias").await.ok()?.status?;
        let reachable = st.reachable;
        st.conditions
            .into_iter()
            .find(|c| c.type_ == "Schedulable" && c.reason == "DuplicateCluster" && reachable)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(c.status, "False", "{c:?}");
    assert!(
        c.message
            .contains("the same PostgreSQL cluster as server default"),
        "{c:?}"
    );
    env.create_tenant(NS, "same", json!({"isolation": "database"}))
        .await;
    env.wait_ready(NS, "same", T).await;
    tables(&env, "same", 100).await;

    place(&env, "same", "alias").await;
    let (t, m) = wait_move(&env, "same", "refused", T, |_, m| m.phase.is_terminal()).await;
    assert_refused_on_default("same", &t, &m, "the same PostgreSQL cluster");
    let mut c = tenant_conn(&env, "same").await.expect("the tenant logs in");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM big")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(rows, 100, "the tenant's data");
}

/// A target without room for a move's replication would take the subscription and never copy a
/// table: the move is not started, says which setting on which server, and the tenant stays where
/// it is, untouched. Three targets, each short of one thing: logical replication workers
/// (`max_logical_replication_workers = 1`: an apply worker but no table synchronisation worker),
/// background worker processes (`max_worker_processes = 2`: the launcher takes one), replication
/// origins (the target's `max_replication_slots = 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_free_replication_workers_is_not_moved_to() {
    let env = Env::start_configured(options(Vec::new())).await;
    let narrow = env
        .add_logical_server(
            "narrow",
            &[("max_logical_replication_workers".into(), "1".into())],
        )
        .await;
    let few_processes = env
        .add_logical_server(
            "few-processes",
            &[("max_worker_processes".into(), "2".into())],
        )
        .await;
    let few_origins = env
        .add_logical_server(
            "few-origins",
            &[("max_replication_slots".into(), "1".into())],
        )
        .await;
    env.create_tenant(NS, "room", json!({"isolation": "database"}))
        .await;
    env.wait_ready(NS, "room", T).await;
    tables(&env, "room", 100).await;

    for (server, why) in [
        (
            "narrow",
            "server narrow has 1 free logical replication workers (max_logical_replication_workers), a move needs 3 (1 + max_sync_workers_per_subscription 2)",
        ),
        (
            "few-processes",
            "server few-processes has 1 free background worker processes (max_worker_processes), a move needs 3 (1 + max_sync_workers_per_subscription 2)",
        ),
        (
            "few-origins",
            "server few-origins has 1 free replication origins (max_replication_slots), a move needs 3 (1 + max_sync_workers_per_subscription 2)",
        ),
    ] {
        place(&env, "room", server).await;
        let (t, m) = wait_move(
            &env,
            "room",
            &format!("refused or started ({server})"),
            T,
            |_, m| {
                m.started_at.is_some()
                    || (m.phase.is_terminal()
                        && m.message.as_deref().is_some_and(|s| s.contains(server)))
            },
        )
        .await;
        assert_refused_on_default(&format!("room → {server}"), &t, &m, why);
    }
    writes_through_its_secret(&env, "room").await;
    for pg in [&narrow, &few_processes, &few_origins, &env.pg] {
        assert_eq!(leftovers(pg).await, Vec::<String>::new());
    }
}

/// Two moves into one target: the second waits until the first one's copy is done instead of
/// sharing its table synchronisation workers (PostgreSQL retries a table that found no worker
/// only after `wal_retrieve_retry_interval`, 5 s: moves sharing a worker copied a table every
/// 5–10 s). The target has 3 logical replication workers and its copies are held
/// (`max_sync_workers_per_subscription = 0`: a move's copy takes 2 there, its apply worker and
/// one synchronisation worker): while the first copies, the second is not started and says why;
/// released, the first ends, then the second starts, and both end on the target — never both
/// copying. Without the copying move's workers kept for it, the second started at once (2 free).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_move_into_a_target_waits_for_the_first_ones_copy() {
    // Health checks at their default interval (300 s), not the file's 2 s: a check's new result
    // reconciles a settled tenant, which would start a move refused until the resync as well as
    // a held one. Here only the hold's own recheck (every 2 s) can start the second move in time.
    let env = Env::start_configured(EnvOptions {
        extra_args: vec!["--server-probe-seconds".into(), "1".into()],
        ..options(Vec::new())
    })
    .await;
    let c = env
        .add_logical_server(
            "c",
            &[("max_logical_replication_workers".into(), "3".into())],
        )
        .await;
    hold_table_copies(&c, true).await;
    database_tenants_with_tables(&env, &["first", "second"]).await;

    place(&env, "first", "c").await;
    // Copying, its tables recorded (none copied while the copies are held).
    let (_, m) = wait_move(
        &env,
        "first",
        "copying into c, its tables recorded",
        T,
        |_, m| m.phase == MovePhase::Copying && m.tables_total.is_some(),
    )
    .await;
    assert_eq!(m.tables_copied, Some(0), "{m:?}");
    assert!(m.tables_total.is_some_and(|t| t > 0), "{m:?}");
    place(&env, "second", "c").await;
    let (t, m) = wait_move(&env, "second", "held or started", T, |_, m| {
        m.started_at.is_some() || (m.phase.is_terminal() && m.to == "c")
    })
    .await;
    assert_refused_on_default(
        "second → c",
        &t,
        &m,
        "server c has 1 free logical replication workers (max_logical_replication_workers), \
         a move needs 2 (1 + max_sync_workers_per_subscription 1) with 1 other move(s) copying",
    );

    // Released: the first one's copy ends, then the second one's starts (looked at every 2 s:
    // with the copies released a move needs 3 there, so the second is held until the first's
    // subscription is gone, not only its copy). Within 90 s: a move refused instead of held
    // would wait for its tenant's resync (300 s).
    hold_table_copies(&c, false).await;
    let both_copying = AtomicBool::new(false);
    wait_for(Duration::from_secs(90), "both moved to c", || async {
        let (a, b) = (tenant(&env, "first").await?, tenant(&env, "second").await?);
        let (ma, mb) = (move_of(&a)?, move_of(&b)?);
        if ma.phase == MovePhase::Copying && mb.phase == MovePhase::Copying {
            both_copying.store(true, Ordering::Relaxed);
        }
        let done = |t: &Tenant, m: &MoveStatus| {
            m.phase == MovePhase::Completed
                && on(t).as_deref() == Some("c")
                && t.status.as_ref().map(|s| s.phase) == Some(TenantPhase::Ready)
        };
        (done(&a, &ma) && done(&b, &mb)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert!(
        !both_copying.load(Ordering::Relaxed),
        "two moves copied into c at once"
    );
    for name in ["first", "second"] {
        writes_through_its_secret(&env, name).await;
    }
    for pg in [&c, &env.pg] {
        assert_eq!(leftovers(pg).await, Vec::<String>::new());
    }
}
