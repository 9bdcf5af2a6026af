//! Cut-overs that cannot finish: resumed without their subscription, or failing while writes are
//! frozen; both roll back and give the logins back.

use super::*;
use k8s_openapi::jiff::Timestamp;
use tenantdb_testkit::pause::Pause;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_resumed_without_its_subscription_rolls_back_at_once() {
    let started = Instant::now();
    let exit_at = vec![(
        "TENANTDB_TEST_EXIT_AT".to_string(),
        "move-subscription-dropped".to_string(),
    )];
    let mut env = Env::start_configured(options(exit_at)).await;
    let b = env.add_logical_server("b", &[]).await;
    let db = json!({"isolation": "database", "deletionPolicy": "Delete"});
    let graced = json!({"isolation": "database", "deletionPolicy": "Delete",
                        "credentials": {"gracePeriod": "1h"}});
    env.create_tenant(NS, "r", graced).await;
    env.create_tenant(NS, "x", db).await;
    for (name, rows) in [("r", 100), ("x", 200_000)] {
        env.wait_ready(NS, name, T).await;
        tables(&env, name, rows).await;
    }
    let r_db = env.secret_value(NS, "r-db", "database").await.unwrap();
    let r_role = env.secret_value(NS, "r-db", "username").await.unwrap();
    // r in a rotation's grace period: both of its roles log in.
    env.rotate(NS, "r", "r1", T).await;
    assert_eq!(logins(&env.pg, &r_role).await, [true, true]);

    // The operator exits right after the cut-over dropped the subscription.
    place(&env, "r", "b").await;
    exits_at_fail_point(&mut env, "move-subscription-dropped").await;
    let t = tenant(&env, "r").await.unwrap();
    let m = move_of(&t).unwrap();
    assert_eq!(
        (m.phase, on(&t).as_deref()),
        (MovePhase::CuttingOver, Some("default")),
        "{m:?}"
    );
    let can_login = logins(&env.pg, &r_role).await;
    assert!(
        !can_login.is_empty() && can_login.iter().all(|l| !l),
        "the source is fenced: {can_login:?}"
    );
    let mut bb = admin(&b, "postgres").await;
    let subs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_subscription")
        .fetch_one(&mut bb)
        .await
        .unwrap();
    assert_eq!(subs, 0, "the subscription is dropped");

    // Restarted without the fail point: rolled back at once, the source serves again.
    env.operator_env.clear();
    env.start_operator();
    let restarted = Instant::now();
    let (_, m) = wait_move(&env, "r", "RolledBack", T, |_, m| m.phase.is_terminal()).await;
    let rolled_back = restarted.elapsed();
    println!(
        "r: {:?} {:.1} s after the restart: {}",
        m.phase,
        rolled_back.as_secs_f64(),
        m.message.as_deref().unwrap_or_default()
    );
    // No cut-over attempted again: it would fence the source and wait 10 s for a slot nobody
    // follows, three times.
    assert_eq!((m.phase, m.attempts), (MovePhase::RolledBack, 0), "{m:?}");
    assert!(
        m.message
            .as_deref()
            .is_some_and(|s| s.contains("no longer exists on the target")),
        "{m:?}"
    );
    assert!(rolled_back < Duration::from_secs(10), "{rolled_back:?}");
    writes_through_its_secret(&env, "r").await;
    // Both roles recorded before the fence log in on the source again: the grace period goes on
    // (provisioning alone gives back only the active role's login).
    assert_eq!(
        logins(&env.pg, &r_role).await,
        [true, true],
        "the previous ({r_role}) and the active role log in on the source again"
    );
    assert!(
        !database_exists(&b, &r_db).await,
        "r's copy on b is dropped"
    );
    place(&env, "r", "default").await;

    // A cancelled move, asked for again, starts again at once.
    place(&env, "x", "b").await;
    let (_, first) = wait_move(&env, "x", "started", T, |_, m| {
        matches!(m.phase, MovePhase::Preparing | MovePhase::Copying)
    })
    .await;
    place(&env, "x", "default").await;
    let (t, m) = wait_move(&env, "x", "cancelled", T, |_, m| m.phase.is_terminal()).await;
    assert_eq!(
        (m.phase, on(&t).as_deref()),
        (MovePhase::RolledBack, Some("default")),
        "{m:?}"
    );
    assert!(
        m.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("cancelled: "),
        "{m:?}"
    );
    place(&env, "x", "b").await;
    let asked = Instant::now();
    wait_move(
        &env,
        "x",
        "a new move started (not after the 60 s pause of a failed one)",
        Duration::from_secs(20),
        |_, m| m.started_at.is_some() && m.started_at != first.started_at,
    )
    .await;
    println!(
        "x: started again {:.1} s after the placement asked again",
        asked.elapsed().as_secs_f64()
    );
    // Its replication slot dropped by hand while it copies: rolled back (it would wait in
    // `Copying` for ever, its lag unknown).
    let (t, m) = wait_move(&env, "x", "Copying again", T, |_, m| {
        m.phase == MovePhase::Copying
    })
    .await;
    let started_at = m.started_at.clone().unwrap();
    let slot = tenantdb::moves::object_name(&tenantdb::controller::object_key(&t), &started_at)
        .unwrap()
        .as_str()
        .to_string();
    wait_for(T, "the slot dropped by hand", || async {
        let mut a = admin(&env.pg, "postgres").await;
        sqlx::query(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
              WHERE slot_name = $1 AND active_pid IS NOT NULL",
        )
        .bind(&slot)
        .execute(&mut a)
        .await
        .ok()?;
        let _ = sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(&slot)
            .execute(&mut a)
            .await;
        let left: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1")
                .bind(&slot)
                .fetch_optional(&mut a)
                .await
                .ok()?;
        left.is_none().then_some(())
    })
    .await
    .unwrap();
    let (t, m) = wait_move(&env, "x", "rolled back", Duration::from_secs(30), |_, m| {
        m.phase.is_terminal()
    })
    .await;
    assert_eq!(
        (m.phase, on(&t).as_deref()),
        (MovePhase::RolledBack, Some("default")),
        "{m:?}"
    );
    assert!(
        m.message
            .as_deref()
            .is_some_and(|s| s.contains("no longer exists on the source")),
        "{m:?}"
    );
    place(&env, "x", "default").await;
    for (server, pg) in [("default", &env.pg), ("b", &b)] {
        assert_eq!(
            leftovers(pg).await,
            Vec::<String>::new(),
            "left on {server}"
        );
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_failing_while_frozen_gives_the_logins_back_and_rolls_back() {
    let fail_at = vec![(
        "TENANTDB_TEST_FAIL_AT".to_string(),
        "move-frozen".to_string(),
    )];
    let env = Env::start_configured(options(fail_at)).await;
    let b = env.add_logical_server("b", &[]).await;
    database_tenants_with_tables(&env, &["f"]).await;
    let f_db = env.secret_value(NS, "f-db", "database").await.unwrap();

    // Every cut-over fails after the freeze with an error the server would repeat: each attempt
    // gives the source its logins back and counts; the third rolls the move back.
    place(&env, "f", "b").await;
    let (t, m) = wait_move(&env, "f", "rolled back", T, |_, m| m.phase.is_terminal()).await;
    println!(
        "f: {:?} after {} attempts: {}",
        m.phase,
        m.attempts,
        m.message.as_deref().unwrap_or_default()
    );
    assert_eq!(
        (m.phase, m.attempts, on(&t).as_deref()),
        (MovePhase::RolledBack, 3, Some("default")),
        "{m:?}"
    );
    assert!(
        m.message
            .as_deref()
            .is_some_and(|s| s.contains("cut-over attempt 3 undone") && s.contains("move-frozen")),
        "{m:?}"
    );
    writes_through_its_secret(&env, "f").await;
    assert!(
        !database_exists(&b, &f_db).await,
        "f's copy on b is dropped"
    );
    let (left_a, left_b) = (leftovers(&env.pg).await, leftovers(&b).await);
    assert!(
        left_a
            .iter()
            .chain(&left_b)
            .all(|l| !l.contains("tenantdb_mv_")),
        "left behind: {left_a:?} {left_b:?}"
    );
}

/// `rolcanlogin` of the tenant's roles (`role` and its rotation role) on `pg`.
async fn logins(pg: &LocalPg, role: &str) -> Vec<bool> {
    let mut a = admin(pg, "postgres").await;
    let l = sqlx::query_scalar(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1 OR rolname = $1 || '_b' ORDER BY rolname",
    )
    .bind(role)
    .fetch_all(&mut a)
    .await
    .unwrap();
    let _ = a.close().await;
    l
}

/// A `database` tenant `name` with 100 rows in its tables, rotated once with a grace period of
/// 1 h (both roles log in): its previous role, its active role, and the rotation's status.
async fn rotated_database_tenant(
    env: &Env,
    name: &str,
) -> (String, String, tenantdb::crd::CredentialStatus) {
    env.create_tenant(
        NS,
        name,
        json!({"isolation": "database", "deletionPolicy": "Delete",
               "credentials": {"gracePeriod": "1h"}}),
    )
    .await;
    env.wait_ready(NS, name, T).await;
    tables(env, name, 100).await;
    let secret = format!("{name}-db");
    let role = env.secret_value(NS, &secret, "username").await.unwrap();
    let creds = env.rotate(NS, name, "r1", T).await;
    let user = env.secret_value(NS, &secret, "username").await.unwrap();
    (role, user, creds)
}

/// Waits until the operator process exits at its fail point (code 86).
async fn exits_at_fail_point(env: &mut Env, point: &str) {
    let op = env.operator.as_mut().unwrap();
    let exit = wait_for(T, &format!("the operator exits at {point}"), || {
        let s = op.try_wait().ok().flatten();
        async move { s }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    assert_eq!(exit.code(), Some(86), "{exit:?}");
}

/// A cut-over interrupted right after its fence is resumed on the fenced source with the logins
/// recorded before the fence (`status.move.loginRoles`): at the commit point both roles of a
/// rotation in its grace period log in on the target, the previous one until the same end.
/// (A cut-over that read the logins from the fenced source enabled none on the target — found
/// by `reliability_moves`; the next version waited for provisioning on the source, which gives
/// back only the active role's login, and the grace period ended with the move.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_resumed_on_a_fenced_source_gives_the_target_its_logins() {
    let exit_at = |p: &str| vec![("TENANTDB_TEST_EXIT_AT".to_string(), p.to_string())];
    let mut env = Env::start_configured(options(exit_at("move-fenced"))).await;
    let b = env.add_logical_server("b", &[]).await;
    // A rotation in its grace period: the previous role logs in until `previousValidUntil`.
    let (role, user, creds) = rotated_database_tenant(&env, "f").await;
    let until = creds.previous_valid_until.expect("previousValidUntil");
    let until = until.parse::<Timestamp>().unwrap().as_second();
    assert_eq!(
        user,
        format!("{role}_b"),
        "the Secret names the rotated role"
    );
    assert_eq!(logins(&env.pg, &role).await, [true, true], "both log in");

    // The operator stops right after the cut-over fenced the source (before it could undo it).
    place(&env, "f", "b").await;
    exits_at_fail_point(&mut env, "move-fenced").await;
    let m = move_of(&tenant(&env, "f").await.unwrap()).unwrap();
    assert_eq!(m.phase, MovePhase::CuttingOver, "{m:?}");
    assert_eq!(
        m.login_roles,
        Some(vec![role.clone(), user.clone()]),
        "recorded before the fence"
    );
    let fenced = logins(&env.pg, &role).await;
    assert_eq!(fenced, [false, false], "the source is fenced");

    // Restarted: the cut-over goes on with the recorded logins; the process stops again right
    // after it recorded the commit point, before the pass provisions the tenant on the target.
    // Both roles must log in there by then: the cut-over itself enabled them.
    env.operator_env = exit_at("move-cut-over");
    env.start_operator();
    exits_at_fail_point(&mut env, "move-cut-over").await;
    let t = tenant(&env, "f").await.unwrap();
    let m = move_of(&t).unwrap();
    assert_eq!(
        (m.phase, on(&t).as_deref(), m.attempts),
        (MovePhase::CleaningUp, Some("b"), 1),
        "{m:?}"
    );
    assert_eq!(
        logins(&b, &role).await,
        [true, true],
        "the active ({user}) and the previous role ({role}) log in on the target at the commit point"
    );
    let valid_until = tenantdb_testkit::moves::valid_until(&b, &role).await;
    assert!(
        valid_until.is_some_and(|v| (v - until).abs() <= 1),
        "the previous role's grace period ends as on the source: {valid_until:?}, {until}"
    );
    assert_eq!(
        logins(&env.pg, &role).await,
        [false, false],
        "the source stays fenced"
    );

    // Without fail points: completed, the tenant writes through its Secret on its new home, and
    // the grace period is still reported.
    env.operator_env.clear();
    env.start_operator();
    let (t, m) = wait_move(&env, "f", "Completed", T, |_, m| m.phase.is_terminal()).await;
    assert_eq!(
        (m.phase, on(&t).as_deref()),
        (MovePhase::Completed, Some("b")),
        "{m:?}"
    );
    writes_through_its_secret(&env, "f").await;
    let creds = tenant(&env, "f").await.unwrap().status.unwrap().credentials;
    assert_eq!(
        creds.and_then(|c| c.previous_user),
        Some(role.clone()),
        "status.credentials still reports the grace period"
    );
    assert_eq!(
        logins(&b, &role).await,
        [true, true],
        "after provisioning on b"
    );
}

/// A cut-over interrupted right after its fence whose resumed attempts fail before their fence
/// (`TENANTDB_TEST_FAIL_AT=move-prepare-roles`, as with the target refusing): the failed attempt
/// gives the fenced source its recorded logins back before the pass's provisioning there (which
/// gives back only the active role's), so both roles of the rotation in its grace period log in
/// on the source again, the next attempt records both, and when the move completes both log in
/// on the target. (Without the logins given back, the source had only the active role's login
/// back, the next attempt recorded just that one, and the previous role's grace period ended with
/// the move.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_cut_over_failing_before_its_fence_gives_the_logins_back() {
    let var = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let mut env = Env::start_configured(options(var("TENANTDB_TEST_EXIT_AT", "move-fenced"))).await;
    let b = env.add_logical_server("b", &[]).await;
    let (role, user, _) = rotated_database_tenant(&env, "h").await;
    let both = Some(vec![role.clone(), user.clone()]);
    place(&env, "h", "b").await;
    exits_at_fail_point(&mut env, "move-fenced").await;
    assert_eq!(logins(&env.pg, &role).await, [false, false], "fenced");

    // Resumed, failing before its fence: both roles log in on the source again, then the next
    // attempt fails the same way.
    env.operator_env = var("TENANTDB_TEST_FAIL_AT", "move-prepare-roles");
    env.start_operator();
    wait_for(T, "both roles log in on the source again", || async {
        (logins(&env.pg, &role).await == [true, true]).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    let failed = || {
        env.operator_log()
            .matches("fail point move-prepare-roles reached")
            .count()
    };
    let seen = failed();
    wait_for(T, "an attempt after the logins came back", || async {
        (failed() > seen).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    env.kill_operator().await;
    let m = move_of(&tenant(&env, "h").await.unwrap()).unwrap();
    assert_eq!(
        (m.phase, m.login_roles.clone()),
        (MovePhase::CuttingOver, both),
        "both recorded: {m:?}"
    );

    env.operator_env.clear();
    env.start_operator();
    let (t, m) = wait_move(&env, "h", "Completed", T, |_, m| m.phase.is_terminal()).await;
    assert_eq!(
        (m.phase, on(&t).as_deref()),
        (MovePhase::Completed, Some("b")),
        "{m:?}"
    );
    assert_eq!(
        logins(&b, &role).await,
        [true, true],
        "the active ({user}) and the previous role ({role}) log in on the target"
    );
    writes_through_its_secret(&env, "h").await;
}

/// Cancelling a move in `CuttingOver` (placed back on its source) while no cut-over is under way:
/// - `k`: every pass's cut-over fails before its fence (`TENANTDB_TEST_FAIL_AT=move-prepare-roles`,
///   as with the target unreachable: not an attempt, the phase stays `CuttingOver`);
/// - `m`: the operator stopped right after the fence (`TENANTDB_TEST_EXIT_AT=move-fenced`) with a
///   rotation in its grace period, the source fenced; placed back while it is down.
///
/// Both roll back (attempts 0, the message says cancelled), nothing of the moves is left, and
/// each tenant writes on its source — `m` with both roles of its rotation logging in there again
/// (the logins recorded before the fence). (With cancellation stopping at `Copying`, as before,
/// `k` stayed in `CuttingOver` until the test timed out; without the logins given back on
/// cancelling, `m`'s previous role stayed off on the source.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_in_cutting_over_is_cancelled_between_cut_overs() {
    let var = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let mut env =
        Env::start_configured(options(var("TENANTDB_TEST_FAIL_AT", "move-prepare-roles"))).await;
    let b = env.add_logical_server("b", &[]).await;
    database_tenants_with_tables(&env, &["k"]).await;
    place(&env, "k", "b").await;
    wait_move(&env, "k", "failing in CuttingOver", T, |_, m| {
        m.phase == MovePhase::CuttingOver
            && m.message
                .as_deref()
                .is_some_and(|s| s.contains("move-prepare-roles"))
    })
    .await;
    place(&env, "k", "default").await;
    cancelled_from_cutting_over(&env, &b, "k").await;

    // m: the operator stops right after the fence.
    env.kill_operator().await;
    env.operator_env = var("TENANTDB_TEST_EXIT_AT", "move-fenced");
    env.start_operator();
    let (role, _, _) = rotated_database_tenant(&env, "m").await;
    place(&env, "m", "b").await;
    exits_at_fail_point(&mut env, "move-fenced").await;
    assert_eq!(logins(&env.pg, &role).await, [false, false], "fenced");
    place(&env, "m", "default").await;
    env.operator_env.clear();
    env.start_operator();
    cancelled_from_cutting_over(&env, &b, "m").await;
    assert_eq!(
        logins(&env.pg, &role).await,
        [true, true],
        "both roles of the rotation log in on the source again"
    );
}

/// `name`'s move was cancelled in `CuttingOver`: rolled back with no attempt counted (see
/// [`rolled_back_clean`]).
async fn cancelled_from_cutting_over(env: &Env, b: &LocalPg, name: &str) {
    let m = rolled_back_clean(env, b, name, 0).await;
    assert!(
        m.message
            .as_deref()
            .is_some_and(|s| s.contains("cancelled")),
        "{m:?}"
    );
}

/// A cut-over interrupted right after its fence, resumed from a status without the logins recorded
/// before it (as an operator older than `status.move.loginRoles` wrote it): the fenced source's
/// logins cannot be read from the source, so the cut-over is refused (the move's message and the
/// log say why) until the pass's provisioning on the source gave the active role its login back;
/// then it goes on, and the move completes with the tenant writing on the target. (A cut-over that
/// went on with the logins read from the fenced source — none — would leave no role logging in
/// on the target.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_resumed_on_a_fenced_source_without_a_record_waits_for_its_logins() {
    let mut env = Env::start_configured(options(vec![(
        "TENANTDB_TEST_EXIT_AT".to_string(),
        "move-fenced".to_string(),
    )]))
    .await;
    let b = env.add_logical_server("b", &[]).await;
    database_tenants_with_tables(&env, &["g"]).await;
    let role = env.secret_value(NS, "g-db", "username").await.unwrap();

    place(&env, "g", "b").await;
    exits_at_fail_point(&mut env, "move-fenced").await;
    let m = move_of(&tenant(&env, "g").await.unwrap()).unwrap();
    assert_eq!(
        (m.phase, m.login_roles.clone()),
        (MovePhase::CuttingOver, Some(vec![role.clone()])),
        "{m:?}"
    );
    assert_eq!(
        logins(&env.pg, &role).await,
        [false],
        "the source is fenced"
    );
    // The status as an older operator wrote it: no record of the logins.
    env.tenants(NS)
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"move": {"loginRoles": null}}})),
        )
        .await
        .unwrap();
    let m = move_of(&tenant(&env, "g").await.unwrap()).unwrap();
    assert_eq!(m.login_roles, None, "{m:?}");

    env.operator_env.clear();
    env.start_operator();
    let (t, m) = wait_move(&env, "g", "Completed", T, |_, m| m.phase.is_terminal()).await;
    assert_eq!(
        (m.phase, on(&t).as_deref()),
        (MovePhase::Completed, Some("b")),
        "{m:?}"
    );
    let log = std::fs::read_to_string(&env.log_path).unwrap();
    assert!(
        log.contains("still fenced by an interrupted cut-over"),
        "the resumed cut-over was refused until the source's logins came back\n{}",
        env.important_log_tail(60)
    );
    writes_through_its_secret(&env, "g").await;
    assert_eq!(logins(&b, &role).await, [true], "the tenant logs in on b");
}

/// The move of `name` rolled back after three attempts, the first undone inside its freeze by the
/// catalog check naming `index` (see [`rolled_back_clean`]).
async fn rolled_back_by_the_catalog_check(env: &Env, b: &LocalPg, name: &str, index: &str) {
    rolled_back_clean(env, b, name, 3).await;
    let log = env.operator_log();
    assert!(
        log.lines().any(|l| l.contains("cut-over undone")
            && l.contains("the schema changed after the catalogs were compared")
            && l.contains(index)),
        "the first attempt was undone inside its freeze, naming the index:\n{}",
        env.important_log_tail(60)
    );
}

/// The move of `name` rolled back after `attempts` attempts: the tenant writes on its source, its
/// copy on `b` is gone and so is every replication object of the move.
async fn rolled_back_clean(env: &Env, b: &LocalPg, name: &str, attempts: i32) -> MoveStatus {
    let db = env
        .secret_value(NS, &format!("{name}-db"), "database")
        .await
        .unwrap();
    let (t, m) = wait_move(env, name, "rolled back", T, |_, m| m.phase.is_terminal()).await;
    assert_eq!(
        (m.phase, m.attempts, on(&t).as_deref()),
        (MovePhase::RolledBack, attempts, Some("default")),
        "{m:?}"
    );
    writes_through_its_secret(env, name).await;
    assert!(
        !database_exists(b, &db).await,
        "{name}'s copy on b is dropped"
    );
    let user = env
        .secret_value(NS, &format!("{name}-db"), "username")
        .await
        .unwrap();
    let role = user.strip_suffix("_b").unwrap_or(&user);
    assert!(
        logins(b, role).await.is_empty(),
        "{name}'s roles on b are dropped"
    );
    let (left_a, left_b) = (leftovers(&env.pg).await, leftovers(b).await);
    assert!(
        left_a
            .iter()
            .chain(&left_b)
            .all(|l| !l.contains("tenantdb_mv_")),
        "left behind: {left_a:?} {left_b:?}"
    );
    m
}

/// DDL of the tenant's own in the moment between the cut-over's catalog comparison and its write
/// freeze (the cut-over paused there: `TENANTDB_TEST_PAUSE_AT=move-compared`): the stamps taken
/// inside the freeze moved, the comparison redone there finds the index on the source only, and
/// the cut-over is undone (the log says `the schema changed after the catalogs were compared`);
/// the later attempts find it before their freeze; the third rolls the move back, and the tenant
/// writes on its source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_just_before_the_write_freeze_is_found_inside_it() {
    let pause = Pause::new("move-compared");
    let env = Env::start_configured(options(pause.vars())).await;
    let b = env.add_logical_server("b", &[]).await;
    database_tenants_with_tables(&env, &["p"]).await;

    place(&env, "p", "b").await;
    pause.reached(&env, T).await;
    // The tenant logs in still (the freeze has not begun) and makes an index of its own.
    let mut c = tenant_conn(&env, "p")
        .await
        .expect("tenant login before the freeze");
    sqlx::raw_sql("CREATE INDEX big_pad ON big (pad)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    pause.release();
    rolled_back_by_the_catalog_check(&env, &b, "p", "big_pad").await;
}

/// What happens inside the write freeze after the row counts (the cut-over paused there:
/// `TENANTDB_TEST_PAUSE_AT=move-counted`; the tenant cannot log in, so the admin stands in for a
/// session that slipped past the fence): `nextval`s of the tenant's sequence are on the target
/// (the sequences are copied last), and an index created there is found by the catalog stamps
/// taken after the second catch-up — the cut-over is undone, the third attempt rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_and_ddl_late_in_the_write_freeze_are_seen() {
    let pause = Pause::new("move-counted");
    let env = Env::start_configured(options(pause.vars())).await;
    let b = env.add_logical_server("b", &[]).await;
    database_tenants_with_tables(&env, &["q", "r"]).await;

    // q: five `nextval`s inside the freeze, after the counts.
    let q_db = env.secret_value(NS, "q-db", "database").await.unwrap();
    place(&env, "q", "b").await;
    pause.reached(&env, T).await;
    let mut a = admin(&env.pg, &q_db).await;
    let last: i64 =
        sqlx::query_scalar("SELECT max(nextval('writes_id_seq')) FROM generate_series(1, 5)")
            .fetch_one(&mut a)
            .await
            .unwrap();
    a.close().await.unwrap();
    pause.release();
    let (t, m) = wait_move(&env, "q", "completed", T, |_, m| m.phase.is_terminal()).await;
    assert_eq!(
        (m.phase, m.attempts, on(&t).as_deref()),
        (MovePhase::Completed, 1, Some("b")),
        "{m:?}"
    );
    let mut bq = admin(&b, &q_db).await;
    let (on_b, called): (i64, bool) =
        sqlx::query_as("SELECT last_value, is_called FROM writes_id_seq")
            .fetch_one(&mut bq)
            .await
            .unwrap();
    bq.close().await.unwrap();
    assert_eq!(
        (on_b, called),
        (last, true),
        "the target's sequence after the move"
    );

    // r: an index inside the freeze, after the counts.
    pause.clear();
    let r_db = env.secret_value(NS, "r-db", "database").await.unwrap();
    place(&env, "r", "b").await;
    pause.reached(&env, T).await;
    let mut a = admin(&env.pg, &r_db).await;
    sqlx::raw_sql("CREATE INDEX big_pad_late ON big (pad)")
        .execute(&mut a)
        .await
        .unwrap();
    a.close().await.unwrap();
    pause.release();
    rolled_back_by_the_catalog_check(&env, &b, "r", "big_pad_late").await;
}
