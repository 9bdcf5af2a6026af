//! Reliability: crash consistency (issue #9).
//!
//! The operator is SIGKILLed at random points (seeded RNG, seed printed; replay with
//! `TENANTDB_RELIABILITY_SEED`) while 100 Tenants (schema and database isolation, deletionPolicy
//! Delete) provision, and restarted immediately each time. Afterwards every Tenant is Ready, at the
//! latest schema version, every Secret's password logs in, and the PostgreSQL catalogs hold exactly
//! one role (plus possibly its `_b` rotation role) and one database or schema per Tenant — no
//! orphans, nothing unmarked. Then everything is deleted while the operator is killed a few more
//! times, and the catalogs end up free of tenantdb objects.
//!
//! CI: 100 tenants, concurrency 8, >= 10 kills while provisioning, 4 while deleting.
//! `TENANTDB_RELIABILITY_LONG=1`: 300 tenants, 30 + 10 kills.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/reliability.rs"]
mod reliability;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{Env, wait_for};
use futures::StreamExt;
use kube::api::ListParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reliability::{Obj, count_messages, is_ready, op_tail, tenantdb_objects};
use serde_json::json;

const NAMESPACES: [&str; 2] = ["crash-a", "crash-b"];

fn tenant_id(i: usize) -> (&'static str, String, &'static str) {
    let ns = NAMESPACES[i % 2];
    let iso = if i.is_multiple_of(3) {
        "database"
    } else {
        "schema"
    };
    (ns, format!("t{i:03}"), iso)
}

/// Log messages that mark provisioning/deletion progress (any of them counts as "work happened").
const PROGRESS: &[&str] = &[
    "applying",
    "migrations applied",
    "credentials secret written",
    "reconcile started",
];

/// Kills and restarts the operator once, after `min_progress` more progress lines and a random
/// extra delay. Returns false when `done` became true before the kill point was reached.
async fn kill_at_random_point(
    env: &mut Env,
    rng: &mut StdRng,
    done: impl AsyncFn(&Env) -> bool,
) -> bool {
    let min_progress = rng.random_range(1..=12usize);
    let extra = Duration::from_millis(rng.random_range(0..700));
    let base = count_messages(&env.operator_log(), PROGRESS);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if count_messages(&env.operator_log(), PROGRESS) >= base + min_progress {
            break;
        }
        if done(env).await {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "no progress for 60 s after a restart{}",
            op_tail(env)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A random extra delay moves the kill point inside whatever step is running.
    tokio::time::sleep(extra).await;
    env.kill_operator().await;
    env.start_operator();
    true
}

async fn all_ready(env: &Env, n: usize) -> bool {
    let mut ready = 0;
    for ns in NAMESPACES {
        if let Ok(l) = env.tenants(ns).list(&ListParams::default()).await {
            ready += l.items.iter().filter(|t| is_ready(t)).count();
        }
    }
    ready == n
}

async fn all_gone(env: &Env) -> bool {
    let mut left = 0;
    for ns in NAMESPACES {
        match env.tenants(ns).list(&ListParams::default()).await {
            Ok(l) => left += l.items.len(),
            Err(_) => return false,
        }
    }
    left == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_provisioning_and_deletion_leaves_no_orphans() {
    let started = Instant::now();
    let long = reliability::long_mode();
    let (n, kills, delete_kills) = if long { (300, 30, 10) } else { (100, 10, 4) };
    let seed = reliability::seed("reliability_crash");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut env = Env::start_with(&["--concurrency", "8"]).await;

    // Create all Tenants (16 requests in flight).
    futures::stream::iter(0..n)
        .map(|i| {
            let env = &env;
            async move {
                let (ns, name, iso) = tenant_id(i);
                env.create_tenant(
                    ns,
                    &name,
                    json!({"isolation": iso, "deletionPolicy": "Delete"}),
                )
                .await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let mut done_kills = 0;
    while done_kills < kills {
        if !kill_at_random_point(&mut env, &mut rng, async |e| all_ready(e, n).await).await {
            break;
        }
        done_kills += 1;
    }
    eprintln!(
        "provisioning: {done_kills} kills after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        done_kills >= kills,
        "every tenant was Ready after only {done_kills} kills: the kills did not hit provisioning (seed {seed})"
    );

    // Everything converges.
    let latest = tenantdb::runtime::load_migrations(None)
        .unwrap()
        .latest_version();
    let mut expected: BTreeSet<Obj> = BTreeSet::new();
    let mut roles_b: BTreeSet<String> = BTreeSet::new();
    let mut table_counts: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for i in 0..n {
        let (ns, name, iso) = tenant_id(i);
        let t = env.wait_ready(ns, &name, Duration::from_secs(240)).await;
        let st = t.status.clone().unwrap();
        assert_eq!(
            st.schema_version, latest,
            "{ns}/{name}: schema version after crashes (seed {seed})"
        );
        let owner = Some(format!("{ns}/{name}"));
        let role = st.role.clone().unwrap();
        expected.insert(Obj {
            kind: "role",
            name: role.clone(),
            owner: owner.clone(),
        });
        roles_b.insert(format!("{role}_b"));
        if iso == "database" {
            expected.insert(Obj {
                kind: "database",
                name: st.database.clone().unwrap(),
                owner,
            });
        } else {
            expected.insert(Obj {
                kind: "schema",
                name: st.schema.clone().unwrap(),
                owner,
            });
        }
        // The password in the Secret logs in; the baseline tables are all there (no half-applied
        // migration survived a kill).
        let mut c = env
            .connect_with_secret(ns, &format!("{name}-db"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{ns}/{name}: Secret password does not log in: {e} (seed {seed}){}",
                    op_tail(&env)
                )
            });
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        table_counts
            .entry(tables)
            .or_default()
            .push(format!("{ns}/{name}"));
    }
    assert_eq!(
        table_counts.len(),
        1,
        "tenants differ in their number of baseline tables (partial migrations?): {:?}",
        table_counts
            .iter()
            .map(|(k, v)| (k, v.len(), v.iter().take(5).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    );
    let mut secrets = 0;
    for ns in NAMESPACES {
        secrets += env
            .secrets(ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
    }
    assert_eq!(secrets, n, "one Secret per Tenant");

    // Catalogs: exactly the expected objects, plus at most the `_b` rotation role of a Tenant.
    let actual = tenantdb_objects(&env).await;
    let unexpected: Vec<&Obj> = actual
        .iter()
        .filter(|o| !expected.contains(o))
        .filter(|o| {
            !(o.kind == "role"
                && roles_b.contains(&o.name)
                && o.owner.as_deref().is_some_and(|w| {
                    o.name.starts_with(&tenantdb::naming::derived_base(
                        "tenant_",
                        w.split('/').next().unwrap(),
                        w.split('/').nth(1).unwrap(),
                    ))
                }))
        })
        .collect();
    let missing: Vec<&Obj> = expected.iter().filter(|o| !actual.contains(o)).collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "catalogs do not match the Tenants (seed {seed}):\n orphaned/unmarked: {unexpected:#?}\n missing: {missing:#?}"
    );
    eprintln!(
        "provisioned {n} tenants with {done_kills} kills, catalogs consistent ({} objects), {:.1}s",
        actual.len(),
        started.elapsed().as_secs_f64()
    );

    // Delete everything while killing the operator a few more times.
    let del_started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let env = &env;
            async move {
                let (ns, name, _) = tenant_id(i);
                env.delete_tenant(ns, &name).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut del_kills = 0;
    while del_kills < delete_kills {
        if !kill_at_random_point(&mut env, &mut rng, async |e| all_gone(e).await).await {
            break;
        }
        del_kills += 1;
    }
    wait_for(Duration::from_secs(240), "every Tenant deleted", || async {
        all_gone(&env).await.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e} (seed {seed}){}", op_tail(&env)));
    eprintln!(
        "deletion: {del_kills} kills, all gone after {:.1}s",
        del_started.elapsed().as_secs_f64()
    );
    assert!(
        del_kills >= 1,
        "no kill hit the deletion phase (seed {seed})"
    );
    let left = tenantdb_objects(&env).await;
    assert!(
        left.is_empty(),
        "tenantdb objects left after deleting every Tenant with deletionPolicy Delete (seed {seed}):\n{left:#?}{}",
        op_tail(&env)
    );
    // Owned Secrets are garbage-collected with their Tenants.
    wait_for(Duration::from_secs(30), "Secrets collected", || async {
        let mut k = 0;
        for ns in NAMESPACES {
            k += env
                .secrets(ns)
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .len();
        }
        (k == 0).then_some(())
    })
    .await
    .unwrap();
    eprintln!(
        "reliability_crash: {n} tenants, {done_kills}+{del_kills} kills, {:.1}s total (seed {seed})",
        started.elapsed().as_secs_f64()
    );
}
