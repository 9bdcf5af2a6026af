//! Reliability: a PostgreSQL outage during provisioning (issue #9).
//!
//! PostgreSQL is stopped for 30 s while ~20 Tenants provision. Every Tenant that was not Ready when
//! the server went away reports `Degraded=True` with reason `DatabaseUnavailable` and a clear
//! message; the operator keeps running and does not hot-loop (reconcile attempts per tenant during
//! the outage are bounded by the exponential backoff); once the server is back every Tenant
//! converges to Ready, `Degraded` clears and the credentials work.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/reliability.rs"]
mod reliability;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::{Env, wait_for};
use kube::api::ListParams;
use reliability::{condition, count_messages, is_ready, op_tail, reconcile_starts};
use serde_json::json;

const NS: &str = "outage";

/// Backoff of the harness (`tests/support/e2e.rs`): base 200 ms, cap 5 s, jitter ×0.8–1.2.
const BASE_MS: f64 = 200.0;
const CAP_MS: f64 = 5000.0;

/// The most reconcile attempts a backoff schedule can fit in `window` (shortest delays: every delay
/// at its lowest jitter, ×0.8), plus `extra` reconciles triggered by watch events (the first failure's
/// status write, the Provisioning status write, a Secret event) rather than by the backoff timer.
fn max_attempts(window: Duration, extra: usize) -> usize {
    let mut t = 0.0;
    let mut n = 1; // the attempt at the start of the window
    let mut delay = BASE_MS;
    while t <= window.as_millis() as f64 {
        t += (delay.min(CAP_MS)) * 0.8;
        n += 1;
        delay *= 2.0;
    }
    n + extra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_degrades_without_hot_loop_and_recovers() {
    let started = Instant::now();
    let outage = if reliability::long_mode() {
        Duration::from_secs(90)
    } else {
        Duration::from_secs(30)
    };
    let n = if reliability::long_mode() { 60 } else { 20 };
    // Concurrency >= tenants: with fewer slots than tenants, tenants starve during an outage (see
    // the ignored `outage_starves_tenants_beyond_concurrency` below, a known bug).
    let conc = n.to_string();
    let mut env =
        Env::start_with(&["--concurrency", &conc, "--connect-timeout-seconds", "2"]).await;
    // Warm-up: the shared database and the admin pools exist before the outage (an operator that
    // starts during an outage is a different case: schema tenants then queue behind the shared
    // database's initialization, see tests/README.md).
    env.create_tenant(NS, "warm-s", json!({"isolation": "schema"}))
        .await;
    env.create_tenant(NS, "warm-d", json!({"isolation": "database"}))
        .await;
    env.wait_ready(NS, "warm-s", Duration::from_secs(60)).await;
    env.wait_ready(NS, "warm-d", Duration::from_secs(60)).await;
    let applying_before = count_messages(&env.operator_log(), &["applying"]);
    for i in 0..n {
        let iso = if i % 2 == 0 { "schema" } else { "database" };
        env.create_tenant(
            NS,
            &format!("t{i:02}"),
            json!({"isolation": iso, "deletionPolicy": "Delete"}),
        )
        .await;
    }
    // Stop PostgreSQL once provisioning is under way (some objects created, most tenants not Ready).
    wait_for(Duration::from_secs(60), "provisioning under way", || {
        let log = env.operator_log();
        async move { (count_messages(&log, &["applying"]) >= applying_before + 3).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    let pg_stop = Instant::now();
    env.pg.stop_server().expect("stop PostgreSQL");
    let mark = env.operator_log().len();
    let api = env.tenants(NS);
    let ready_at_stop: BTreeSet<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|t| is_ready(t))
        .map(|t| t.metadata.name.clone().unwrap())
        .collect();
    eprintln!(
        "PostgreSQL stopped; {} of {n} tenants were Ready",
        ready_at_stop.len()
    );
    assert!(
        ready_at_stop.len() < 2 + n / 2,
        "the outage should hit provisioning, but {} tenants were already Ready",
        ready_at_stop.len()
    );

    // Every tenant that was not Ready reports Degraded=True / DatabaseUnavailable with a message.
    let degraded_deadline = outage
        .saturating_sub(pg_stop.elapsed())
        .saturating_sub(Duration::from_secs(2));
    match wait_for(degraded_deadline, "not-Ready tenants Degraded/DatabaseUnavailable", || {
        let api = api.clone();
        let ready_at_stop = ready_at_stop.clone();
        async move {
            let l = api.list(&ListParams::default()).await.ok()?;
            l.items
                .iter()
                .filter(|t| !ready_at_stop.contains(t.metadata.name.as_deref().unwrap()))
                .all(|t| {
                    matches!(condition(t, "Degraded"), Some((s, r, _)) if s == "True" && r == "DatabaseUnavailable")
                        && matches!(condition(t, "Ready"), Some((s, r, _)) if s == "False" && r == "DatabaseUnavailable")
                })
                .then_some(())
        }
    })
    .await
    {
        Ok(()) => {}
        Err(e) => {
            let l = api.list(&ListParams::default()).await.unwrap();
            let states: Vec<String> = l
                .items
                .iter()
                .map(|t| {
                    format!(
                        "{}: Ready={:?} Degraded={:?}",
                        t.metadata.name.as_deref().unwrap(),
                        condition(t, "Ready"),
                        condition(t, "Degraded")
                    )
                })
                .collect();
            let starts = reconcile_starts(&env.operator_log()[mark..]);
            panic!(
                "{e}\nstates:\n{}\nreconcile attempts since the stop: {starts:?}{}",
                states.join("\n"),
                op_tail(&env)
            );
        }
    }
    for t in api.list(&ListParams::default()).await.unwrap().items {
        if ready_at_stop.contains(t.metadata.name.as_deref().unwrap()) {
            continue;
        }
        let (_, _, msg) = condition(&t, "Degraded").unwrap();
        let lower = msg.to_lowercase();
        assert!(
            lower.contains("database unavailable") && lower.contains("retrying"),
            "{}: Degraded message should say what is wrong and that it retries: {msg:?}",
            t.metadata.name.unwrap()
        );
        assert!(
            !msg.contains(env.pg.superuser_password()),
            "admin password in the condition message"
        );
    }

    // Measure for the rest of the outage (a fixed window: we measure that nothing storms).
    let remaining = outage.saturating_sub(pg_stop.elapsed());
    tokio::time::sleep(remaining).await;
    let window = pg_stop.elapsed();
    let during = env.operator_log()[mark..].to_string();
    let starts = reconcile_starts(&during);
    // Tenants whose provisioning was in flight when the stop came may have one attempt more.
    let bound = max_attempts(window, 3);
    let total: usize = starts.values().sum();
    eprintln!(
        "outage window {:.1}s: {total} reconcile attempts over {} tenants, max per tenant {} (bound {bound}); per tenant: {:?}",
        window.as_secs_f64(),
        starts.len(),
        starts.values().max().copied().unwrap_or(0),
        starts.values().collect::<Vec<_>>()
    );
    for ((ns, name), k) in &starts {
        assert!(
            *k <= bound,
            "{ns}/{name} was reconciled {k} times during a {:.0}s outage (backoff base 200ms, cap 5s allows at most {bound}): hot loop?\n{}",
            window.as_secs_f64(),
            e2e::tail(&during, 30)
        );
    }
    // And it kept retrying (no give-up): every not-Ready tenant was attempted at least 3 times.
    for i in 0..n {
        let name = format!("t{i:02}");
        if ready_at_stop.contains(&name) {
            continue;
        }
        let k = starts
            .get(&(NS.to_string(), name.clone()))
            .copied()
            .unwrap_or(0);
        assert!(
            k >= 3,
            "{name} was retried only {k} times during the outage\n{}",
            op_tail(&env)
        );
    }
    assert!(
        env.operator.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the operator exited during the outage{}",
        op_tail(&env)
    );
    assert!(
        !during.contains("panicked"),
        "panic during the outage:\n{during}"
    );

    // Recovery.
    tokio::task::block_in_place(|| env.pg.start_server()).expect("restart PostgreSQL");
    let back = Instant::now();
    for i in 0..n {
        let name = format!("t{i:02}");
        let t = env.wait_ready(NS, &name, Duration::from_secs(120)).await;
        let (s, r, _) = condition(&t, "Degraded").expect("Degraded condition");
        assert_eq!(
            (s.as_str(), r.as_str()),
            ("False", "AsExpected"),
            "{name}: Degraded must clear"
        );
        env.connect_with_secret(NS, &format!("{name}-db"))
            .await
            .unwrap_or_else(|e| panic!("{name}: credentials after recovery: {e}"));
    }
    eprintln!(
        "all {n} tenants Ready {:.1}s after PostgreSQL came back; test took {:.1}s",
        back.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // Recovery is bounded by the backoff cap, not by the outage length.
    assert!(
        back.elapsed() < Duration::from_secs(90),
        "recovery took {:?}",
        back.elapsed()
    );
}

/// Regression test (was a bug): during an outage every failing reconcile held a concurrency slot
/// for one or more admin-pool acquire timeouts (`--connect-timeout-seconds`; sqlx retries the refused
/// connection until the timeout), and kube-runtime takes the next due object from a HashSet (not in
/// FIFO order), so the same few Tenants are retried again and again while the others are never
/// attempted: with 12 Tenants and `--concurrency 2` most of them have no status at all long after
/// PostgreSQL went away, instead of `Degraded=True / DatabaseUnavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_starves_tenants_beyond_concurrency() {
    let env = Env::start_with(&["--concurrency", "2", "--connect-timeout-seconds", "2"]).await;
    // The shared database exists and the operator is warmed up before the outage.
    env.create_tenant(NS, "warm", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(NS, "warm", Duration::from_secs(60)).await;
    env.pg.stop_server().expect("stop PostgreSQL");
    for i in 0..12 {
        env.create_tenant(NS, &format!("s{i:02}"), json!({"isolation": "schema"}))
            .await;
    }
    let api = env.tenants(NS);
    let r = wait_for(Duration::from_secs(20), "every new tenant Degraded/DatabaseUnavailable", || {
        let api = api.clone();
        async move {
            let l = api.list(&ListParams::default()).await.ok()?;
            let missing: Vec<String> = l
                .items
                .iter()
                .filter(|t| t.metadata.name.as_deref() != Some("warm"))
                .filter(|t| !matches!(condition(t, "Degraded"), Some((s, r, _)) if s == "True" && r == "DatabaseUnavailable"))
                .map(|t| t.metadata.name.clone().unwrap())
                .collect();
            missing.is_empty().then_some(())
        }
    })
    .await;
    let l = api.list(&ListParams::default()).await.unwrap();
    let without: Vec<String> = l
        .items
        .iter()
        .filter(|t| t.status.is_none())
        .map(|t| t.metadata.name.clone().unwrap())
        .collect();
    let starts = reconcile_starts(&env.operator_log());
    tokio::task::block_in_place(|| env.pg.start_server()).unwrap();
    r.unwrap_or_else(|e| {
        panic!(
            "{e}: tenants without any status after 20 s of outage: {without:?}; reconcile attempts: {starts:?}"
        )
    });
}
