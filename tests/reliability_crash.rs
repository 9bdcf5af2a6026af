//! Reliability: crash consistency (issues #9, #14).
//!
//! The operator is SIGKILLed at random points (seeded RNG, seed printed; replay with
//! `TENANTDB_RELIABILITY_SEED`) while 100 Tenants (database, schema and shared isolation,
//! deletionPolicy Delete) provision, while a credential rotation of some of them and a
//! TenantMigration of others run, and restarted immediately each time. What was in flight at
//! each kill is recorded and printed: the reconciles the killed process had started and not
//! finished, its last step, and what PostgreSQL logged about the dropped connections ("unexpected
//! EOF on client connection with an open transaction" = a transaction rolled back by the kill).
//!
//! Afterwards every Tenant is Ready, at the schema version it should have (the migration's for its
//! targets, the bundled latest for the others), every Secret's password logs in, rotated Tenants
//! moved to their `_b` role exactly once (the previous role still in its grace period), tenants
//! of one kind have the same tables (no half-applied migration), and the PostgreSQL catalogs hold
//! exactly one role (plus possibly its `_b` rotation role) and one database or schema per Tenant —
//! no orphans, nothing unmarked. Then everything is deleted while the operator is killed exactly
//! the planned number of times (kill points are tied to the number of Tenants still there), and
//! the catalogs and the shared tables end up free of tenant objects and rows.
//!
//! CI: 100 tenants, concurrency 8, 10 kills while provisioning, 4 while deleting.
//! `TENANTDB_RELIABILITY_LONG=1`: 300 tenants, 30 + 10 kills.

use tenantdb_testkit::e2e;
use tenantdb_testkit::reliability;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{Env, wait_for};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reliability::{Obj, count_messages, is_ready, log_lines, op_tail, tenantdb_objects};
use serde_json::{Value, json};
use tenantdb::crd::{MigrationPhase, TenantMigration};

const NAMESPACES: [&str; 2] = ["crash-a", "crash-b"];
/// The TenantMigration of the workload: its targets carry this label.
const GOLD: (&str, &str) = ("tier", "gold");
const ROTATION_TOKEN: &str = "crash-1";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Iso {
    Database,
    Schema,
    Shared,
}

impl Iso {
    fn as_str(self) -> &'static str {
        match self {
            Iso::Database => "database",
            Iso::Schema => "schema",
            Iso::Shared => "shared",
        }
    }
}

/// Tenant `i`: namespace, name, isolation (¼ database, ½ schema, ¼ shared) and whether the
/// TenantMigration targets it (every fifth non-shared tenant).
fn tenant_id(i: usize) -> (&'static str, String, Iso, bool) {
    let ns = NAMESPACES[i % 2];
    let iso = match i % 4 {
        0 => Iso::Database,
        3 => Iso::Shared,
        _ => Iso::Schema,
    };
    (
        ns,
        format!("t{i:03}"),
        iso,
        i.is_multiple_of(5) && iso != Iso::Shared,
    )
}

/// Log messages that mark provisioning/deletion progress (any of them counts as "work happened").
const PROGRESS: &[&str] = &[
    "applying",
    "migrations applied",
    "credentials secret written",
    "reconcile started",
    "rotating credentials",
    "rollout pass done",
];

/// What was in flight when the operator was killed.
struct Kill {
    phase: &'static str,
    /// Reconciles the killed process had started and not finished (tenant names), with the last
    /// thing it logged for each.
    in_flight: BTreeMap<String, String>,
    /// The last progress line of the killed process.
    last_step: String,
    /// Length of the PostgreSQL log when the kill was sent.
    pg_log_at: usize,
    /// PostgreSQL's lines about the connections the kill dropped (filled in later).
    pg: Vec<String>,
}

fn message(v: &Value) -> &str {
    v.get("message").and_then(Value::as_str).unwrap_or_default()
}

fn tenant_of(v: &Value) -> Option<String> {
    if let Some(t) = v.get("tenant").and_then(Value::as_str) {
        return Some(t.to_string());
    }
    v.get("spans")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().rev().find_map(|s| s.get("tenant")?.as_str()))
        .map(str::to_string)
}

fn describe(v: &Value) -> String {
    let mut s = message(v).to_string();
    for k in ["step", "from", "to", "tenantmigration", "secret"] {
        if let Some(x) = v.get(k) {
            s.push_str(&format!(
                " {k}={}",
                x.as_str().map(str::to_string).unwrap_or(x.to_string())
            ));
        }
    }
    if let Some(t) = tenant_of(v) {
        s.push_str(&format!(" [{t}]"));
    }
    s
}

/// The reconciles of one process's log that started and did not finish, with the last line each
/// logged; and the last progress line overall.
fn in_flight(log: &str) -> (BTreeMap<String, String>, String) {
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    let mut last = String::from("(nothing yet)");
    for v in log_lines(log) {
        let msg = message(&v);
        let Some(t) = tenant_of(&v) else {
            if PROGRESS.contains(&msg) {
                last = describe(&v);
            }
            continue;
        };
        match msg {
            "reconciled" | "reconcile failed" => {
                open.remove(&t);
            }
            _ => {
                if msg == "reconcile started" || open.contains_key(&t) {
                    open.insert(t, describe(&v));
                }
            }
        }
        if PROGRESS.contains(&msg) {
            last = describe(&v);
        }
    }
    (open, last)
}

/// PostgreSQL log lines that show a client connection dropped by a kill.
fn dropped_connection_lines(pg_log: &str) -> Vec<String> {
    pg_log
        .lines()
        .filter(|l| {
            l.contains("unexpected EOF on client connection")
                || l.contains("terminating connection")
                || l.contains("could not receive data from client")
        })
        .map(str::to_string)
        .collect()
}

struct Killer {
    rng: StdRng,
    kills: Vec<Kill>,
    /// Where the current operator process's log starts.
    log_start: usize,
}

impl Killer {
    /// SIGKILLs the operator and starts it again, recording what was in flight.
    async fn kill(&mut self, env: &mut Env, phase: &'static str) {
        let pg_log_at = env.pg.log().len();
        env.kill_operator().await;
        let log = env.operator_log();
        let (in_flight, last_step) = in_flight(&log[self.log_start..]);
        self.kills.push(Kill {
            phase,
            in_flight,
            last_step,
            pg_log_at,
            pg: vec![],
        });
        self.log_start = log.len();
        env.start_operator();
    }

    /// Waits for 1–12 more progress lines and a random extra delay, then kills. Returns false
    /// (no kill) when `done` became true first.
    async fn kill_at_random_point(
        &mut self,
        env: &mut Env,
        phase: &'static str,
        done: impl AsyncFn(&Env) -> bool,
    ) -> bool {
        let min_progress = self.rng.random_range(1..=12usize);
        let extra = Duration::from_millis(self.rng.random_range(0..700));
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
        if done(env).await {
            return false;
        }
        self.kill(env, phase).await;
        true
    }

    /// Fills in what PostgreSQL logged after each kill (up to the next kill).
    fn attribute_pg_lines(&mut self, pg_log: &str) {
        let ends: Vec<usize> = self
            .kills
            .iter()
            .skip(1)
            .map(|k| k.pg_log_at)
            .chain([pg_log.len()])
            .collect();
        for (k, end) in self.kills.iter_mut().zip(ends) {
            k.pg = dropped_connection_lines(&pg_log[k.pg_log_at.min(end)..end]);
        }
    }

    fn report(&self) -> String {
        let mut out = String::new();
        for (i, k) in self.kills.iter().enumerate() {
            let rolled_back =
                k.pg.iter()
                    .filter(|l| l.contains("with an open transaction"))
                    .count();
            out.push_str(&format!(
                "kill {i:2} ({}): {} reconciles in flight {:?}; last step: {}; PostgreSQL: {} dropped connections, {rolled_back} open transactions rolled back\n",
                k.phase,
                k.in_flight.len(),
                k.in_flight.keys().take(6).collect::<Vec<_>>(),
                k.last_step,
                k.pg.len(),
            ));
        }
        out
    }
}

async fn tenants_left(env: &Env) -> Option<usize> {
    let mut left = 0;
    for ns in NAMESPACES {
        left += env
            .tenants(ns)
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .len();
    }
    Some(left)
}

async fn ready_names(env: &Env) -> Vec<(String, String)> {
    let mut out = vec![];
    for ns in NAMESPACES {
        if let Ok(l) = env.tenants(ns).list(&ListParams::default()).await {
            for t in l.items.iter().filter(|t| is_ready(t)) {
                out.push((ns.to_string(), t.metadata.name.clone().unwrap()));
            }
        }
    }
    out.sort();
    out
}

async fn all_ready(env: &Env, n: usize) -> bool {
    ready_names(env).await.len() == n
}

/// The migration of the workload: one table on top of the bundled set.
async fn create_migration(env: &Env, version: i64) {
    for ns in NAMESPACES {
        let mut data = serde_json::Map::new();
        data.insert(
            format!("{version}_crash_marks.up.sql"),
            json!("CREATE TABLE crash_marks (id int PRIMARY KEY);"),
        );
        data.insert(
            format!("{version}_crash_marks.down.sql"),
            json!("DROP TABLE crash_marks;"),
        );
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "crash-marks", "namespace": ns},
            "data": data,
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(env.client.clone(), ns)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let tm: TenantMigration = serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
            "metadata": {"name": "crash-marks", "namespace": ns},
            "spec": {
                "target": {"selector": {"matchLabels": {GOLD.0: GOLD.1}}},
                "source": {"configMap": {"name": "crash-marks"}},
                "strategy": {"maxParallel": 4},
            },
        }))
        .unwrap();
        Api::<TenantMigration>::namespaced(env.client.clone(), ns)
            .create(&PostParams::default(), &tm)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_provisioning_and_deletion_leaves_no_orphans() {
    let started = Instant::now();
    let long = reliability::long_mode();
    let (n, kills, delete_kills) = if long { (300, 30, 10) } else { (100, 10, 4) };
    let seed = reliability::seed("reliability_crash");
    let mut env = Env::start_with(&["--concurrency", "8"]).await;
    let mut killer = Killer {
        rng: StdRng::seed_from_u64(seed),
        kills: vec![],
        log_start: 0,
    };
    let bundled = tenantdb::runtime::load_migrations(None)
        .unwrap()
        .latest_version()
        .unwrap();
    let migrated = bundled + 1;

    // Create all Tenants (16 requests in flight).
    futures::stream::iter(0..n)
        .map(|i| {
            let env = &env;
            async move {
                let (ns, name, iso, gold) = tenant_id(i);
                env.ensure_namespace(ns).await;
                let labels = if gold {
                    json!({GOLD.0: GOLD.1})
                } else {
                    json!({})
                };
                let t: tenantdb::crd::Tenant = serde_json::from_value(json!({
                    "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"isolation": iso.as_str(), "deletionPolicy": "Delete"},
                }))
                .unwrap();
                env.tenants(ns)
                    .create(&PostParams::default(), &t)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    // Kill while provisioning; a third of the way in, rotate the credentials of the first eight
    // Ready tenants; half-way, start the TenantMigration.
    let mut rotated: Vec<(String, String)> = vec![];
    let mut done_kills = 0;
    while done_kills < kills {
        if done_kills == kills / 3 && rotated.is_empty() {
            let ready = wait_for(Duration::from_secs(120), "8 Ready tenants", || async {
                let r = ready_names(&env).await;
                (r.len() >= 8).then_some(r)
            })
            .await
            .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
            rotated = ready.into_iter().take(8).collect();
            for (ns, name) in &rotated {
                env.tenants(ns)
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": ROTATION_TOKEN}}})),
                    )
                    .await
                    .unwrap();
            }
        }
        if done_kills == kills / 2 {
            create_migration(&env, migrated).await;
        }
        if !killer
            .kill_at_random_point(&mut env, "provisioning", async |e| all_ready(e, n).await)
            .await
        {
            break;
        }
        done_kills += 1;
    }
    eprintln!(
        "provisioning: {done_kills} kills after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        done_kills, kills,
        "every tenant was Ready after only {done_kills} of {kills} kills: the kills did not hit provisioning (seed {seed})"
    );
    assert!(
        !rotated.is_empty() && kills / 2 < done_kills,
        "the rotation and the migration start before the last kill"
    );

    // The migration completes in both namespaces.
    for ns in NAMESPACES {
        let api: Api<TenantMigration> = Api::namespaced(env.client.clone(), ns);
        let gold = (0..n)
            .filter(|&i| tenant_id(i).0 == ns && tenant_id(i).3)
            .count() as i32;
        let last = std::sync::Mutex::new(None);
        wait_for(
            Duration::from_secs(240),
            "TenantMigration Succeeded",
            || async {
                let tm = api.get("crash-marks").await.ok()?;
                let st = tm.status?;
                let done = st.phase == MigrationPhase::Succeeded
                    && st.succeeded == gold
                    && st.total == gold;
                *last.lock().unwrap() = Some(st);
                done.then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{ns}: {e} ({gold} targets): {:#?} (seed {seed}){}",
                last.lock().unwrap(),
                op_tail(&env)
            )
        });
    }

    // Everything converges.
    let mut expected: BTreeSet<Obj> = BTreeSet::new();
    let mut roles_b: BTreeSet<String> = BTreeSet::new();
    let mut table_counts: BTreeMap<(Iso, bool), BTreeMap<i64, Vec<String>>> = BTreeMap::new();
    for i in 0..n {
        let (ns, name, iso, gold) = tenant_id(i);
        let mut t = env.wait_ready(ns, &name, Duration::from_secs(240)).await;
        let is_rotated = rotated.contains(&(ns.to_string(), name.clone()));
        if is_rotated {
            // A Tenant stays Ready while its rotation request waits for its turn after a restart
            // (100 Tenants are reconciled again): wait for the request to be handled.
            t = wait_for(Duration::from_secs(240), "the rotation handled", || async {
                let t = env.tenants(ns).get(&name).await.ok()?;
                let token = t
                    .status
                    .as_ref()?
                    .credentials
                    .as_ref()?
                    .rotation_token
                    .clone();
                (is_ready(&t) && token.as_deref() == Some(ROTATION_TOKEN)).then_some(t)
            })
            .await
            .unwrap_or_else(|e| panic!("{ns}/{name}: {e} (seed {seed}){}", op_tail(&env)));
        }
        let st = t.status.clone().unwrap();
        if iso != Iso::Shared {
            let want = if gold { migrated } else { bundled };
            assert_eq!(
                st.schema_version,
                Some(want),
                "{ns}/{name}: schema version after crashes (seed {seed})"
            );
        }
        let owner = Some(format!("{ns}/{name}"));
        let role = st.role.clone().unwrap();
        expected.insert(Obj {
            kind: "role",
            name: role.clone(),
            owner: owner.clone(),
        });
        roles_b.insert(format!("{role}_b"));
        match iso {
            Iso::Database => {
                expected.insert(Obj {
                    kind: "database",
                    name: st.database.clone().unwrap(),
                    owner,
                });
            }
            Iso::Schema => {
                expected.insert(Obj {
                    kind: "schema",
                    name: st.schema.clone().unwrap(),
                    owner,
                });
            }
            Iso::Shared => {}
        }
        // Rotated exactly once: the Secret moved to the `_b` role under this request, and the
        // previous role is in its grace period; everyone else is still on the first role.
        let secret = format!("{name}-db");
        let user = env.secret_value(ns, &secret, "username").await.unwrap();
        let want_user = if is_rotated {
            format!("{role}_b")
        } else {
            role.clone()
        };
        assert_eq!(
            user, want_user,
            "{ns}/{name}: Secret user after crashes (rotated: {is_rotated}) (seed {seed})"
        );
        assert_eq!(
            st.credentials.as_ref().map(|c| c.active_user.as_str()),
            Some(want_user.as_str()),
            "{ns}/{name}: status.credentials.activeUser"
        );
        if is_rotated {
            let s = env.secrets(ns).get(&secret).await.unwrap();
            assert_eq!(
                tenantdb::secret::annotation(&s, tenantdb::secret::ROTATION_TOKEN_ANNOTATION)
                    .as_deref(),
                Some(ROTATION_TOKEN),
                "{ns}/{name}"
            );
            let pool = env.admin_pool().await;
            let (can_login, in_grace): (bool, bool) = sqlx::query_as(
                "SELECT rolcanlogin, rolvaliduntil > now() FROM pg_roles WHERE rolname = $1",
            )
            .bind(&role)
            .fetch_one(&pool)
            .await
            .unwrap();
            pool.close().await;
            assert!(
                can_login && in_grace,
                "{ns}/{name}: the previous role {role} must still log in during its grace period"
            );
        }
        // The password in the Secret logs in; every tenant of one kind has the same tables (no
        // half-applied migration survived a kill).
        let mut c = env
            .connect_with_secret(ns, &secret)
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
            .entry((iso, gold))
            .or_default()
            .entry(tables)
            .or_default()
            .push(format!("{ns}/{name}"));
    }
    for ((iso, gold), counts) in &table_counts {
        assert_eq!(
            counts.len(),
            1,
            "{iso:?} tenants (migration target: {gold}) differ in their number of tables (partial migrations?): {:?}",
            counts
                .iter()
                .map(|(k, v)| (k, v.len(), v.iter().take(5).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        );
    }
    let count_of = |k: (Iso, bool)| *table_counts[&k].keys().next().unwrap();
    assert_eq!(
        count_of((Iso::Schema, true)),
        count_of((Iso::Schema, false)) + 1,
        "the migration adds exactly one table"
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
    let shared_n = (0..n).filter(|&i| tenant_id(i).2 == Iso::Shared).count() as i64;
    assert_eq!(
        shared_rows(&env, "tenantdb_rls.tenantdb_tenant_roles").await,
        shared_n * 2,
        "shared layout: one mapping row per login role (role and `_b`) of each shared tenant"
    );
    eprintln!(
        "provisioned {n} tenants with {done_kills} kills, catalogs consistent ({} objects), {:.1}s",
        actual.len(),
        started.elapsed().as_secs_f64()
    );

    // Delete everything while killing the operator at planned points: when the number of Tenants
    // still there drops to each of `delete_kills` random thresholds between 85 % and 15 % of them,
    // so every kill lands while deletion is under way.
    let del_started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let env = &env;
            async move {
                let (ns, name, _, _) = tenant_id(i);
                env.delete_tenant(ns, &name).await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut thresholds: Vec<usize> = (0..delete_kills)
        .map(|_| (n as f64 * killer.rng.random_range(0.15..0.85)) as usize)
        .collect();
    thresholds.sort_unstable_by(|a, b| b.cmp(a));
    let mut del_kills = 0;
    for threshold in &thresholds {
        let left = wait_for(
            Duration::from_secs(120),
            &format!("at most {threshold} Tenants left"),
            || async { tenants_left(&env).await.filter(|&l| l <= *threshold) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e} (seed {seed}){}", op_tail(&env)));
        assert!(
            left > 0,
            "deletion finished before kill {} of {delete_kills} (seed {seed})",
            del_kills + 1
        );
        let extra = Duration::from_millis(killer.rng.random_range(0..300));
        tokio::time::sleep(extra).await;
        killer.kill(&mut env, "deletion").await;
        del_kills += 1;
    }
    wait_for(Duration::from_secs(240), "every Tenant deleted", || async {
        (tenants_left(&env).await == Some(0)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e} (seed {seed}){}", op_tail(&env)));
    eprintln!(
        "deletion: {del_kills} kills (thresholds {thresholds:?} Tenants left), all gone after {:.1}s",
        del_started.elapsed().as_secs_f64()
    );
    assert_eq!(
        del_kills, delete_kills,
        "kills during deletion (seed {seed})"
    );

    // What each kill interrupted.
    killer.attribute_pg_lines(&env.pg.log());
    let report = killer.report();
    eprintln!("{report}");
    for phase in ["provisioning", "deletion"] {
        let (mut hit, mut total) = (0, 0);
        for k in killer.kills.iter().filter(|k| k.phase == phase) {
            total += 1;
            hit += usize::from(!k.in_flight.is_empty());
        }
        assert!(
            hit > 0,
            "no {phase} kill found a reconcile in flight ({total} kills, seed {seed}):\n{report}"
        );
    }
    assert!(
        killer
            .kills
            .iter()
            .any(|k| k.pg.iter().any(|l| l.contains("with an open transaction"))),
        "no kill interrupted an open PostgreSQL transaction (seed {seed}):\n{report}"
    );

    let left = tenantdb_objects(&env).await;
    assert!(
        left.is_empty(),
        "tenantdb objects left after deleting every Tenant with deletionPolicy Delete (seed {seed}):\n{left:#?}{}",
        op_tail(&env)
    );
    assert_eq!(
        shared_rows(&env, "tenantdb_rls.tenantdb_tenant_roles").await,
        0,
        "shared layout: mapping rows left"
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

/// Rows of a table in the shared database (as the superuser: row-level security does not apply).
async fn shared_rows(env: &Env, table: &str) -> i64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url("tenantdb_shared"))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}
