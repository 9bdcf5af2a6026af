//! End-to-end: credential rotation (on demand and periodic), quotas and health in status, leader
//! election with two operator instances, and no secrets in logs, Events or status.

use tenantdb_testkit::e2e;

use std::time::Duration;

use e2e::{Env, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use sqlx::Executor;

const T: Duration = Duration::from_secs(60);

/// Seconds since the epoch of an RFC 3339 timestamp from status.
fn epoch(ts: &str) -> i64 {
    ts.parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{ts}: {e}"))
        .as_second()
}

/// `rolvaliduntil` of a role in seconds since the epoch (None: no expiry).
async fn valid_until(env: &Env, role: &str) -> Option<i64> {
    let pool = env.admin_pool().await;
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT CASE WHEN rolvaliduntil = 'infinity' THEN NULL ELSE extract(epoch FROM rolvaliduntil)::bigint END \
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_one(&pool)
    .await
    .unwrap()
}

/// The credentials status once the rotation requested with `token` is reported (the Secret is
/// written before the status: a Ready status read right after the Secret changed can still be the
/// previous one).
async fn rotated(env: &Env, token: &str) -> tenantdb::crd::CredentialStatus {
    wait_for(T, &format!("rotation {token} in status"), || async {
        let t = env.tenants("rot").get("acme").await.ok()?;
        let creds = t.status?.credentials?;
        (creds.rotation_token.as_deref() == Some(token)).then_some(creds)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)))
}

/// Waits until the operator has logged three more reconciles.
async fn three_more_reconciles(env: &Env) {
    let from = env.operator_log().len();
    wait_for(T, "three more reconciles", || {
        let log = env.operator_log();
        let n = log[from.min(log.len())..].matches("\"reconciled\"").count();
        async move { (n >= 3).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_and_periodic_rotation_with_grace_period() {
    let env = Env::start_with(&["--resync-seconds", "1", "--health-interval-seconds", "1"]).await;
    // A grace period far longer than the test: "the old credentials still work" does not depend
    // on how fast this machine is. Its end is checked in PostgreSQL (VALID UNTIL) and, with a
    // short grace period, by waiting for the refusal below.
    env.create_tenant(
        "rot",
        "acme",
        json!({"isolation": "schema", "credentials": {"gracePeriod": "1h"}}),
    )
    .await;
    env.wait_ready("rot", "acme", T).await;
    let user1 = env
        .secret_value("rot", "acme-db", "username")
        .await
        .unwrap();
    let pw1 = env
        .secret_value("rot", "acme-db", "password")
        .await
        .unwrap();
    let mut held = env.connect_with_secret("rot", "acme-db").await.unwrap();
    held.execute("CREATE TABLE IF NOT EXISTS kept (id int)")
        .await
        .unwrap();
    let rotate = |token: &'static str| {
        let env = &env;
        async move {
            env.tenants("rot")
                .patch(
                    "acme",
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {"tenantdb.io/rotate": token}}}),
                    ),
                )
                .await
                .unwrap();
        }
    };

    // On demand: annotate.
    rotate("r1").await;
    let (user2, pw2) = wait_for(T, "rotated Secret", || async {
        let v = env
            .secret_values("rot", "acme-db", &["username", "password"])
            .await?;
        (v[1] != pw1).then(|| (v[0].clone(), v[1].clone()))
    })
    .await
    .unwrap();
    assert_ne!(user1, user2, "rotation moves to the other login role");
    env.connect_with_secret("rot", "acme-db")
        .await
        .expect("new credentials work");
    // The old password still works during the grace period, the held connection keeps working.
    let old_login = |pw: String, user: String| {
        let port = env.pg.port();
        async move {
            use sqlx::ConnectOptions;
            sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(port)
                .database("tenantdb_shared")
                .username(&user)
                .password(&pw)
                .connect()
                .await
        }
    };
    old_login(pw1.clone(), user1.clone())
        .await
        .expect("old credentials within grace period");
    let creds = rotated(&env, "r1").await;
    assert_eq!(creds.active_user, user2);
    assert_eq!(creds.previous_user.as_deref(), Some(user1.as_str()));
    assert_eq!(creds.rotation_token.as_deref(), Some("r1"));
    // The grace period ends one hour after the rotation, and PostgreSQL enforces exactly that.
    let rotated_at = epoch(creds.rotated_at.as_deref().unwrap());
    let until = epoch(creds.previous_valid_until.as_deref().unwrap());
    assert_eq!(until - rotated_at, 3600, "{creds:?}");
    let pg_until = valid_until(&env, &user1).await;
    assert!(
        pg_until.is_some_and(|v| (v - until).abs() <= 1),
        "VALID UNTIL of {user1}: {pg_until:?}, status says {until}"
    );

    // A short grace period and another rotation (back to the first role): the previous
    // credentials are refused once it is over, and not before.
    env.tenants("rot")
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"gracePeriod": "2s"}}})),
        )
        .await
        .unwrap();
    env.wait_ready("rot", "acme", T).await;
    rotate("r2").await;
    let pw3 = wait_for(T, "rotated back", || async {
        let v = env
            .secret_values("rot", "acme-db", &["username", "password"])
            .await?;
        (v[1] != pw2 && v[0] == user1).then(|| v[1].clone())
    })
    .await
    .unwrap();
    let creds = rotated(&env, "r2").await;
    assert_eq!(creds.active_user, user1);
    assert_eq!(creds.previous_user.as_deref(), Some(user2.as_str()));
    let until = epoch(creds.previous_valid_until.as_deref().unwrap());
    assert_eq!(
        until - epoch(creds.rotated_at.as_deref().unwrap()),
        2,
        "{creds:?}"
    );
    wait_for(Duration::from_secs(30), "old password refused", || async {
        old_login(pw2.clone(), user2.clone())
            .await
            .is_err()
            .then_some(())
    })
    .await
    .unwrap();
    let refused_at = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(
        refused_at >= until - 1,
        "refused at {refused_at}, before the end of the grace period {until}"
    );
    held.execute("SELECT 1")
        .await
        .expect("held connection survives the rotations");
    // The same annotation value does not rotate again (several resyncs later).
    three_more_reconciles(&env).await;
    let same = env
        .secret_value("rot", "acme-db", "password")
        .await
        .unwrap();
    assert_eq!(same, pw3);
    let seen = [pw1.clone(), pw2.clone(), pw3.clone()];
    let pw2 = pw3;

    // Periodic: rotateAfter 3s.
    env.tenants("rot")
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"credentials": {"rotateAfter": "3s", "gracePeriod": "2s"}}}),
            ),
        )
        .await
        .unwrap();
    wait_for(T, "periodic rotation", || async {
        let p = env.secret_value("rot", "acme-db", "password").await?;
        (p != pw2).then_some(())
    })
    .await
    .unwrap();
    wait_for(T, "rotated credentials log in", || async {
        env.connect_with_secret("rot", "acme-db")
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(env.client.clone(), "rot");
    let evs = events.list(&ListParams::default()).await.unwrap();
    assert!(
        evs.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("CredentialsRotated"))
    );

    // No password ever appears in the operator's log, in Events or in the Tenant's status.
    let log = env.operator_log();
    let status =
        serde_json::to_string(&env.tenants("rot").get("acme").await.unwrap().status).unwrap();
    let events =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
    for pw in seen
        .iter()
        .map(String::as_str)
        .chain([env.pg.superuser_password()])
    {
        assert!(!log.contains(pw), "password in operator log");
        assert!(!status.contains(pw), "password in status");
        assert!(!events.contains(pw), "password in events");
    }
}

/// A credentials Secret deleted by hand (or by a sync tool) while the tenant runs: the new
/// password goes to the other login role, and whoever still holds the deleted Secret's
/// credentials (pods started from it) keeps logging in for the grace period instead of being cut
/// off at once. A handled rotate annotation does not rotate once more afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_secret_is_a_rotation_with_a_grace_period() {
    let env = Env::start_with(&["--resync-seconds", "1"]).await;
    env.create_tenant(
        "gone",
        "acme",
        json!({"isolation": "database", "credentials": {"gracePeriod": "1h"}}),
    )
    .await;
    env.wait_ready("gone", "acme", T).await;
    // Rotated once on demand first: the token must survive the Secret's deletion.
    env.tenants("gone")
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "once"}}})),
        )
        .await
        .unwrap();
    let keys = ["database", "username", "password"];
    let old = wait_for(T, "rotated once", || async {
        let t = env.tenants("gone").get("acme").await.ok()?;
        let creds = t.status?.credentials?;
        let v = env.secret_values("gone", "acme-db", &keys).await?;
        (creds.rotation_token.as_deref() == Some("once") && creds.active_user == v[1]).then_some(v)
    })
    .await
    .unwrap();
    env.secrets("gone")
        .delete("acme-db", &DeleteParams::default())
        .await
        .unwrap();
    let new = wait_for(T, "Secret re-created", || async {
        let v = env.secret_values("gone", "acme-db", &keys).await?;
        (v[2] != old[2]).then_some(v)
    })
    .await
    .unwrap();
    assert_ne!(
        new[1], old[1],
        "the new password is on the other login role"
    );
    let login = |v: &[String]| {
        let (db, user, pw, port) = (v[0].clone(), v[1].clone(), v[2].clone(), env.pg.port());
        async move {
            use sqlx::ConnectOptions;
            sqlx::postgres::PgConnectOptions::new()
                .host("127.0.0.1")
                .port(port)
                .database(&db)
                .username(&user)
                .password(&pw)
                .connect()
                .await
        }
    };
    wait_for(T, "the new credentials log in", || async {
        login(&new).await.ok().map(|_| ())
    })
    .await
    .unwrap();
    login(&old)
        .await
        .expect("the deleted Secret's credentials work for the grace period");
    let creds = wait_for(T, "the rotation in status", || async {
        let c = env
            .tenants("gone")
            .get("acme")
            .await
            .ok()?
            .status?
            .credentials?;
        (c.active_user == new[1]).then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(creds.previous_user.as_deref(), Some(old[1].as_str()));
    assert_eq!(creds.rotation_token.as_deref(), Some("once"));
    let until = epoch(creds.previous_valid_until.as_deref().unwrap());
    assert_eq!(until - epoch(creds.rotated_at.as_deref().unwrap()), 3600);
    // Several resyncs later: no further rotation (the handled token was kept).
    three_more_reconciles(&env).await;
    let now = env.secret_values("gone", "acme-db", &keys).await.unwrap();
    assert_eq!(now, new, "rotated only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_health_and_usage_are_reported() {
    let env = Env::start_with(&[
        "--resync-seconds",
        "1",
        "--usage-interval-seconds",
        "1",
        "--health-interval-seconds",
        "1",
    ])
    .await;
    env.create_tenant(
        "q",
        "small",
        json!({"isolation": "database", "quotas": {"maxConnections": 5, "statementTimeout": "2s", "storage": "1Mi"}}),
    )
    .await;
    env.create_tenant(
        "q",
        "roomy",
        json!({"isolation": "schema", "quotas": {"storage": "1Gi"}}),
    )
    .await;
    env.wait_ready("q", "roomy", T).await;
    // A fresh database is several MB: over a 1Mi quota the tenant turns read-only.
    let t = wait_for(T, "QuotaExceeded", || async {
        let t = env.tenants("q").get("small").await.ok()?;
        let st = t.status.as_ref()?;
        let c = st.conditions.iter().find(|c| c.type_ == "QuotaExceeded")?;
        (c.status == "True").then_some(t)
    })
    .await
    .unwrap();
    let st = t.status.unwrap();
    let usage = st.usage.unwrap();
    assert!(
        usage.read_only && usage.percent.unwrap() >= 100,
        "{usage:?}"
    );
    let health = st.health.unwrap();
    assert!(health.healthy, "{health:?}");
    let mut c = env.connect_with_secret("q", "small-db").await.unwrap();
    let err = c.execute("CREATE TABLE t (id int)").await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    let st: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(st, "2s");
    let evs: Api<Event> = Api::namespaced(env.client.clone(), "q");
    wait_for(T, "QuotaExceeded warning", || async {
        let l = evs.list(&ListParams::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("QuotaExceeded")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await
    .unwrap();
    // Raising the quota restores writes.
    env.tenants("q")
        .patch(
            "small",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quotas": {"storage": "10Gi"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "writes restored", || async {
        let mut c = env.connect_with_secret("q", "small-db").await.ok()?;
        c.execute("CREATE TABLE IF NOT EXISTS t (id int)")
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .unwrap();
    let roomy = env.tenants("q").get("roomy").await.unwrap().status.unwrap();
    assert!(!roomy.usage.unwrap().read_only);

    // Drift the operator repairs: login disabled by hand. The next reconcile's plan enables it
    // again before that reconcile's health check runs, so this is repaired, not reported.
    let pool = env.admin_pool().await;
    let role = roomy.role.unwrap();
    pool.execute(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE \"{role}\" NOLOGIN"
    )))
    .await
    .unwrap();
    wait_for(T, "repaired login", || async {
        env.connect_with_secret("q", "roomy-db")
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .unwrap();

    // A broken login the operator cannot repair: pg_hba.conf rejects the tenant's role. The
    // health check (which logs in as the tenant) reports it: Degraded=True, health.healthy=false,
    // a Warning Event; once the rule is gone, Degraded clears.
    let hba: String = sqlx::query_scalar("SHOW hba_file")
        .fetch_one(&pool)
        .await
        .unwrap();
    let original = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all {role} 127.0.0.1/32 reject\n{original}"),
    )
    .unwrap();
    pool.execute("SELECT pg_reload_conf()").await.unwrap();
    let degraded = |want: bool| {
        let env = &env;
        async move {
            let st = env.tenants("q").get("roomy").await.ok()?.status?;
            let c = st.conditions.iter().find(|c| c.type_ == "Degraded")?;
            let h = st.health.clone()?;
            let ok = if want {
                c.status == "True"
                    && c.reason == "HealthCheckFailed"
                    && !c.message.is_empty()
                    && !h.healthy
            } else {
                c.status == "False" && h.healthy
            };
            ok.then_some((c.clone(), h))
        }
    };
    let (cond, health) = wait_for(T, "Degraded=True/HealthCheckFailed, healthy=false", || {
        degraded(true)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    assert!(!health.message.is_empty(), "{health:?}");
    eprintln!("degraded: {} / {}", cond.message, health.message);
    wait_for(T, "HealthCheckFailed warning", || async {
        let l = evs.list(&ListParams::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("HealthCheckFailed")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await
    .unwrap();
    std::fs::write(&hba, &original).unwrap();
    pool.execute("SELECT pg_reload_conf()").await.unwrap();
    wait_for(T, "Degraded=False, healthy=true", || degraded(false))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", e2e::tail(&env.operator_log(), 30)));
    env.connect_with_secret("q", "roomy-db")
        .await
        .expect("login works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let le = [
        "--leader-election",
        "--lease-duration-seconds",
        "3",
        "--lease-retry-seconds",
        "1",
        "--lease-clock-skew-seconds",
        "0",
    ];
    let mut env = Env::start_with(&le).await;
    let second_log = env.dir.join("second.log");
    let mut second = env.spawn_operator(&second_log, &[]);
    // The Lease lives in the operator's namespace: the chart's Role grants it only there.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), e2e::OPERATOR_NAMESPACE);
    let holder = wait_for(T, "a leader", || async {
        leases
            .get_opt("tenantdb-leader")
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await
    .unwrap();
    for i in 0..3 {
        env.create_tenant("le", &format!("t{i}"), json!({"isolation": "schema"}))
            .await;
    }
    for i in 0..3 {
        env.wait_ready("le", &format!("t{i}"), T).await;
    }
    let first_log = env.operator_log();
    let second_text = std::fs::read_to_string(&second_log).unwrap_or_default();
    let count = |s: &str| s.matches("reconcile started").count();
    let (leader_n, standby_n) = (count(&first_log), count(&second_text));
    assert!(
        (leader_n > 0) ^ (standby_n > 0),
        "exactly one instance reconciles (first {leader_n}, second {standby_n}; holder {holder})"
    );
    // Kill the leader without releasing the lease: the standby takes over after expiry.
    let first_leads = leader_n > 0;
    if first_leads {
        env.kill_operator().await;
    } else {
        let _ = second.kill().await;
    }
    wait_for(T, "new leader", || async {
        let h = leases
            .get_opt("tenantdb-leader")
            .await
            .ok()??
            .spec?
            .holder_identity?;
        (h != holder).then_some(())
    })
    .await
    .unwrap();
    env.create_tenant("le", "after", json!({"isolation": "schema"}))
        .await;
    env.wait_ready("le", "after", T).await;
    let _ = second.kill().await;
}

/// `shared` tenants are measured too (their rows' share of the shared tables): one that writes
/// past its quota turns read-only while a neighbour without rows is unaffected; raising the quota
/// restores writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tenant_over_its_storage_quota_turns_read_only() {
    let env = Env::start_with(&["--resync-seconds", "1", "--usage-interval-seconds", "1"]).await;
    for (name, storage) in [("heavy", "256Ki"), ("light", "256Ki")] {
        env.create_tenant(
            "sq",
            name,
            json!({"isolation": "shared", "quotas": {"storage": storage}}),
        )
        .await;
    }
    for name in ["heavy", "light"] {
        let t = env.wait_ready("sq", name, T).await;
        let usage = t.status.unwrap().usage.unwrap();
        assert_eq!(usage.storage_bytes, 0, "{name}: no rows yet: {usage:?}");
    }
    let mut c = env.connect_with_secret("sq", "heavy-db").await.unwrap();
    for sql in [
        "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), 'heavy', 'Heavy')",
        // ~2 KB of hard-to-compress JSON per row: ~1 MB in all.
        "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action, change_data) \
         SELECT tenantdb_current_tenant(), 'operation', 'ai', 'update', \
                jsonb_build_object('blob', (SELECT string_agg(md5(g::text || ':' || i::text), '') FROM generate_series(1, 64) AS i)) \
         FROM generate_series(1, 500) AS g",
    ] {
        c.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(c);
    let t = wait_for(T, "heavy QuotaExceeded", || async {
        let t = env.tenants("sq").get("heavy").await.ok()?;
        let st = t.status.as_ref()?;
        let c = st.conditions.iter().find(|c| c.type_ == "QuotaExceeded")?;
        (c.status == "True").then_some(t)
    })
    .await
    .unwrap();
    let usage = t.status.unwrap().usage.unwrap();
    assert!(
        usage.read_only && usage.storage_bytes >= 256 * 1024,
        "{usage:?}"
    );
    let mut c = env.connect_with_secret("sq", "heavy-db").await.unwrap();
    let err = c
        .execute("INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) VALUES (tenantdb_current_tenant(), 'operation', 'ai', 'create')")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(c);

    // The neighbour has no rows: nothing charged, still writable.
    let light = env
        .tenants("sq")
        .get("light")
        .await
        .unwrap()
        .status
        .unwrap();
    let usage = light.usage.unwrap();
    assert!(usage.storage_bytes == 0 && !usage.read_only, "{usage:?}");
    let mut c = env.connect_with_secret("sq", "light-db").await.unwrap();
    c.execute("INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), 'light', 'Light')")
        .await
        .unwrap();
    drop(c);

    // Raising the quota restores writes.
    env.tenants("sq")
        .patch(
            "heavy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quotas": {"storage": "1Gi"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "heavy writes restored", || async {
        let mut c = env.connect_with_secret("sq", "heavy-db").await.ok()?;
        c.execute("INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) VALUES (tenantdb_current_tenant(), 'operation', 'ai', 'create')")
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .unwrap();
}
