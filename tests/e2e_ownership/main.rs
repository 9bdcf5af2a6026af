//! Tenant against tenant, through the real binary (issue: MongoDB takeover, name squatting):
//!
//! - the default name policy (`--explicit-names namespace`) refuses every explicit name a
//!   namespace must not claim: another namespace's, a derived name (another Tenant's `_b`
//!   rotation role, a future Tenant's name), a MongoDB database of another Tenant;
//! - with `--explicit-names any` two namespaces may ask for the same MongoDB database: the
//!   ownership registry gives it to the first, the second gets a `Conflict` and changes nothing
//!   — the victim's user keeps its password, its documents stay, and deleting the attacker drops
//!   nothing of the victim's;
//! - `spec.mongodb.databaseName` cannot be added, changed or removed;
//! - a Tenant whose reconcile fails (a `Conflict`) and whose credentials stop working is
//!   reported unhealthy and `Degraded`, not left `healthy: true`;
//! - a password edited in the Secret is applied, with an Event; a storage quota smaller than the
//!   empty tenant is accepted and warned; renaming the Secret keeps the credentials;
//! - a derived name cut to fit carries a 16-digit hash, and a Tenant whose status records the
//!   8-digit cut name an older operator gave it keeps that name, also once re-created without
//!   its status, and its deletion drops the objects under that name.
//!
//! MongoDB parts run against the SecantusDB stand-in with `--auth` (or `TENANTDB_TEST_MONGO_URI`).

use tenantdb_testkit::e2e;
use tenantdb_testkit::mongo;

use std::time::Duration;

use e2e::{Env, tail, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mongodb::bson::{Document, doc};
use serde_json::json;
use sqlx::Executor;
use tenantdb::crd::{Tenant, TenantPhase};

const T: Duration = Duration::from_secs(90);

mod long_names;

use tenantdb_testkit::reliability::condition;

/// Waits until the Tenant's `Ready` condition has `reason`; returns its message.
async fn wait_reason(env: &Env, ns: &str, name: &str, reason: &str) -> String {
    wait_for(T, &format!("{ns}/{name} {reason}"), || async {
        let t = env.tenants(ns).get_opt(name).await.ok()??;
        let (_, r, m) = condition(&t, "Ready")?;
        (r == reason).then_some(m)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)))
}

async fn events(env: &Env, ns: &str, tenant: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(env.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(tenant))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

async fn pg_role_comment(env: &Env, role: &str) -> Option<String> {
    let pool = env.admin_pool().await;
    sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&pool)
    .await
    .unwrap()
    .flatten()
}

fn mongo_args(s: &mongo::MongoServer) -> Vec<String> {
    vec![
        "--mongodb-uri".into(),
        s.admin_uri.clone(),
        "--mongodb-host".into(),
        s.host.clone(),
        "--mongodb-port".into(),
        s.port.to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_name_policy_refuses_names_of_other_namespaces_and_derived_names() {
    let Some(server) = mongo::server(
        "the_default_name_policy_refuses_names_of_other_namespaces_and_derived_names",
    ) else {
        return;
    };
    let mut args = mongo_args(server);
    args.extend(["--resync-seconds".into(), "5".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = Env::start_with(&args).await;
    env.create_tenant("default", "tenant-1", json!({"isolation": "schema"}))
        .await;
    let t1 = env.wait_ready("default", "tenant-1", T).await;
    let role = t1.status.as_ref().unwrap().role.clone().unwrap();
    let mongo_db = t1
        .status
        .as_ref()
        .unwrap()
        .mongodb
        .clone()
        .unwrap()
        .database;
    let b_role = format!("{role}_b");
    let future = tenantdb::naming::derived_base("tenant_", "default", "not-yet-created");

    // Squatting attempts from namespace ns2: another Tenant's rotation role, a future Tenant's
    // name, another namespace's prefix, another Tenant's MongoDB database.
    for (name, spec, field) in [
        (
            "squat-b2",
            json!({"isolation": "schema", "databaseName": b_role}),
            "spec.databaseName",
        ),
        (
            "squat-future",
            json!({"isolation": "database", "databaseName": future}),
            "spec.databaseName",
        ),
        (
            "squat-prefix",
            json!({"isolation": "schema", "databaseName": "default__crm"}),
            "spec.databaseName",
        ),
        (
            "squat-mongo",
            json!({"isolation": "schema", "mongodb": {"databaseName": mongo_db}}),
            "spec.mongodb.databaseName",
        ),
    ] {
        env.create_tenant("ns2", name, spec).await;
        let msg = wait_reason(&env, "ns2", name, "InvalidSpec").await;
        assert!(msg.contains(field), "{name}: {msg}");
    }
    // Its own prefix is fine, in both stores.
    env.create_tenant(
        "ns2",
        "own",
        json!({"isolation": "schema", "databaseName": "ns2__crm", "mongodb": {"databaseName": "ns2__docs"}}),
    )
    .await;
    let own = env.wait_ready("ns2", "own", T).await;
    assert_eq!(
        own.status.as_ref().unwrap().role.as_deref(),
        Some("ns2__crm")
    );
    // Nothing of tenant-1 was touched (its `_b` role is created at its first rotation: nobody
    // else has made it); its rotation still works.
    assert_eq!(pg_role_comment(&env, &b_role).await, None);
    env.tenants("default")
        .patch(
            "tenant-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "tenant-1 rotated to its _b role", || async {
        let u = env
            .secret_value("default", "tenant-1-db", "username")
            .await?;
        (u == b_role).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    let mut c = env
        .connect_with_secret("default", "tenant-1-db")
        .await
        .unwrap();
    c.execute("SELECT 1").await.unwrap();
    assert_eq!(
        pg_role_comment(&env, &b_role).await.as_deref(),
        Some("tenantdb.io/owner=default/tenant-1")
    );

    // spec.mongodb.databaseName can be neither changed, nor removed, nor added (CEL).
    let api = env.tenants("ns2");
    for patch in [
        json!({"spec": {"mongodb": {"databaseName": "ns2__other"}}}),
        json!({"spec": {"mongodb": {"databaseName": null}}}),
        json!({"spec": {"mongodb": null}}),
    ] {
        let e = api
            .patch("own", &PatchParams::default(), &Patch::Merge(patch.clone()))
            .await
            .expect_err(&format!("{patch}"));
        assert!(
            matches!(&e, kube::Error::Api(s) if s.code == 422 && s.message.contains("mongodb")),
            "{patch}: {e}"
        );
    }
    env.create_tenant(
        "ns2",
        "nomongoname",
        json!({"isolation": "schema", "mongodb": {"enabled": false}}),
    )
    .await;
    let e = api
        .patch(
            "nomongoname",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mongodb": {"databaseName": "ns2__late"}}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 422), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_database_of_another_tenant_is_never_taken_over() {
    let Some(server) = mongo::server("a_mongodb_database_of_another_tenant_is_never_taken_over")
    else {
        return;
    };
    // `any`: both namespaces may ask for the same explicit name; only the registry decides.
    let mut args = mongo_args(server);
    args.extend([
        "--explicit-names".into(),
        "any".into(),
        "--health-interval-seconds".into(),
        "1".into(),
        "--resync-seconds".into(),
        "3".into(),
        // Unchanged health is re-reported this often: `lastChecked` moves.
        "--status-report-interval-seconds".into(),
        "2".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = Env::start_with(&args).await;
    env.create_tenant(
        "default",
        "mvictim",
        json!({"isolation": "schema", "mongodb": {"databaseName": "shared_docs"}}),
    )
    .await;
    env.wait_ready("default", "mvictim", T).await;
    let victim_uri = env
        .secret_value("default", "mvictim-db", "mongodbUri")
        .await
        .unwrap();
    let victim_pw = env
        .secret_value("default", "mvictim-db", "mongodbPassword")
        .await
        .unwrap();
    mongo::connect(&victim_uri)
        .await
        .unwrap()
        .database("shared_docs")
        .collection::<Document>("notes")
        .insert_one(doc! {"secret": "victim"})
        .await
        .unwrap();

    env.create_tenant(
        "ns1",
        "mattack",
        json!({"isolation": "schema", "deletionPolicy": "Delete", "mongodb": {"databaseName": "shared_docs"}}),
    )
    .await;
    let msg = wait_reason(&env, "ns1", "mattack", "Conflict").await;
    assert!(msg.contains("shared_docs"), "{msg}");
    // The attacker never got working MongoDB credentials for it.
    assert!(
        env.secret_value("ns1", "mattack-db", "mongodbUri")
            .await
            .is_none(),
        "the attacker's Secret has no MongoDB keys"
    );
    // Over several health checks of the victim: its password is unchanged and works.
    let before = env.tenants("default").get("mvictim").await.unwrap();
    let checked_before = before.status.unwrap().health.unwrap().last_checked;
    wait_for(T, "two more health checks of the victim", || async {
        let t = env.tenants("default").get("mvictim").await.ok()?;
        let h = t.status?.health?;
        (h.healthy && h.last_checked != checked_before).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(
        env.secret_value("default", "mvictim-db", "mongodbPassword")
            .await
            .unwrap(),
        victim_pw
    );
    let n = mongo::connect(&victim_uri)
        .await
        .unwrap()
        .database("shared_docs")
        .collection::<Document>("notes")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(n, 1);

    // Deleting the attacker (deletionPolicy Delete) drops nothing of the victim's.
    env.tenants("ns1")
        .delete("mattack", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_gone("ns1", "mattack", T).await;
    let n = mongo::connect(&victim_uri)
        .await
        .unwrap()
        .database("shared_docs")
        .collection::<Document>("notes")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(
        n, 1,
        "the victim's database survived the attacker's deletion"
    );
    let t = env.wait_ready("default", "mvictim", T).await;
    assert!(t.status.unwrap().health.unwrap().healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_credentials_and_quota_warnings() {
    let env = Env::start_with(&[
        "--health-interval-seconds",
        "1",
        "--resync-seconds",
        "3",
        "--usage-interval-seconds",
        "1",
    ])
    .await;
    let ns = "health";
    env.create_tenant(ns, "broken", json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready(ns, "broken", T).await;
    let role = t.status.unwrap().role.unwrap();

    // 1. The reconcile stops at a Conflict (its rotation role is marked as someone else's) and
    // its password no longer works: not healthy, Degraded.
    let pool = env.admin_pool().await;
    // (The `_b` role does not exist before the first rotation: someone else creates it.)
    pool.execute(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{role}_b\"; COMMENT ON ROLE \"{role}_b\" IS 'someone else'; \
         ALTER ROLE \"{role}\" PASSWORD 'changed-behind-its-back'"
    )))
    .await
    .unwrap();
    env.tenants(ns)
        .patch(
            "broken",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await
        .unwrap();
    let t = wait_for(T, "broken: Conflict and unhealthy", || async {
        let t = env.tenants(ns).get("broken").await.ok()?;
        let healthy = t.status.as_ref()?.health.as_ref()?.healthy;
        let ready = condition(&t, "Ready")?;
        (ready.1 == "Conflict" && !healthy).then_some(t)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    let degraded = condition(&t, "Degraded").unwrap();
    assert_eq!(
        (degraded.0.as_str(), degraded.1.as_str()),
        ("True", "HealthCheckFailed"),
        "{degraded:?}"
    );

    // 2. A password edited in the Secret is applied (the Secret is the source of truth).
    env.create_tenant(ns, "edited", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(ns, "edited", T).await;
    env.secrets(ns)
        .patch(
            "edited-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "a-password-set-by-hand-0123456789"}})),
        )
        .await
        .unwrap();
    let user = env.secret_value(ns, "edited-db", "username").await.unwrap();
    let db = env.secret_value(ns, "edited-db", "database").await.unwrap();
    wait_for(T, "the edited password logs in", || async {
        use sqlx::ConnectOptions;
        sqlx::postgres::PgConnectOptions::new()
            .host("127.0.0.1")
            .port(env.pg.port())
            .database(&db)
            .username(&user)
            .password("a-password-set-by-hand-0123456789")
            .connect()
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    wait_for(T, "PasswordApplied event", || async {
        events(&env, ns, "edited")
            .await
            .iter()
            .any(|(r, _)| r == "PasswordApplied")
            .then_some(())
    })
    .await
    .unwrap();

    // 3. A quota smaller than the empty tenant: accepted, read-only from the start, warned.
    env.create_tenant(
        ns,
        "tiny",
        json!({"isolation": "schema", "quotas": {"storage": "1Ki"}}),
    )
    .await;
    let t = env.wait_ready(ns, "tiny", T).await;
    assert_eq!(t.status.as_ref().unwrap().phase, TenantPhase::Ready);
    let (q, _, _) = condition(&t, "QuotaExceeded").unwrap();
    assert_eq!(q, "True");
    let (_, note) = wait_for(T, "QuotaBelowEmptyTenant event", || async {
        events(&env, ns, "tiny")
            .await
            .into_iter()
            .find(|(r, _)| r == "QuotaBelowEmptyTenant")
    })
    .await
    .unwrap();
    assert!(
        note.contains("smaller than this tenant needs when empty"),
        "{note}"
    );

    // 4. Renaming the Secret keeps the credentials (after a rotation, on the `_b` role).
    env.create_tenant(ns, "renamed", json!({"isolation": "schema"}))
        .await;
    env.wait_ready(ns, "renamed", T).await;
    env.tenants(ns)
        .patch(
            "renamed",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
        )
        .await
        .unwrap();
    let (user, password) = wait_for(T, "renamed rotated", || async {
        let u = env.secret_value(ns, "renamed-db", "username").await?;
        let p = env.secret_value(ns, "renamed-db", "password").await?;
        u.ends_with("_b").then_some((u, p))
    })
    .await
    .unwrap();
    env.tenants(ns)
        .patch(
            "renamed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"secretName": "renamed-creds"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "old Secret gone, new one written", || async {
        let old = env.secrets(ns).get_opt("renamed-db").await.ok()?;
        let new_user = env.secret_value(ns, "renamed-creds", "username").await?;
        (old.is_none() && !new_user.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 30)));
    assert_eq!(
        env.secret_value(ns, "renamed-creds", "username")
            .await
            .unwrap(),
        user
    );
    assert_eq!(
        env.secret_value(ns, "renamed-creds", "password")
            .await
            .unwrap(),
        password,
        "the password survives the rename"
    );
    let mut c = env.connect_with_secret(ns, "renamed-creds").await.unwrap();
    c.execute("SELECT 1").await.unwrap();
}

/// Property: for random pairs of Tenants in different namespaces with random explicit names
/// (with `--explicit-names any`, so collisions reach the ownership checks), no reconcile of the
/// second — nor its deletion with `deletionPolicy: Delete` — changes, adopts or drops an object
/// of the first: its role, database or schema, rows, MongoDB database, user and documents, and
/// its credentials keep working. The seed is printed (`TENANTDB_PROPERTY_SEED` replays it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_ever_changes_adopts_or_drops_another_tenants_objects() {
    use rand::{Rng, SeedableRng};
    let Some(server) =
        mongo::server("no_tenant_ever_changes_adopts_or_drops_another_tenants_objects")
    else {
        return;
    };
    let seed: u64 = std::env::var("TENANTDB_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("property seed: {seed} (TENANTDB_PROPERTY_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut args = mongo_args(server);
    args.extend([
        "--explicit-names".into(),
        "any".into(),
        "--resync-seconds".into(),
        "3".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = Env::start_with(&args).await;
    let pool = env.admin_pool().await;
    const WORDS: &[&str] = &["orders", "crm", "user", "billing", "docs"];
    let modes = ["database", "schema", "shared"];

    for trial in 0..8 {
        let (ns_a, ns_b) = (format!("pa{trial}"), format!("pb{trial}"));
        let iso_a = modes[rng.random_range(0..3)];
        let mut spec_a = json!({"isolation": iso_a, "deletionPolicy": "Delete"});
        if iso_a != "shared" && rng.random_bool(0.85) {
            spec_a["databaseName"] = json!(format!(
                "{}_{trial}",
                WORDS[rng.random_range(0..WORDS.len())]
            ));
        }
        if rng.random_bool(0.85) {
            spec_a["mongodb"] = json!({"databaseName": format!("m{}_{trial}", WORDS[rng.random_range(0..WORDS.len())])});
        }
        env.create_tenant(&ns_a, "a", spec_a.clone()).await;
        let a = env.wait_ready(&ns_a, "a", T).await;
        let st = a.status.clone().unwrap();
        let (role, db, schema) = (
            st.role.clone().unwrap(),
            st.database.clone().unwrap(),
            st.schema.clone().unwrap(),
        );
        let mdb = st.mongodb.clone().unwrap().database;
        // A's data: a row through its own credentials, a document through its Mongo user.
        let mut c = env.connect_with_secret(&ns_a, "a-db").await.unwrap();
        let tid = env
            .secret_value(&ns_a, "a-db", "tenantId")
            .await
            .unwrap_or_else(|| "t".into());
        c.execute(sqlx::AssertSqlSafe(format!(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{tid}', 'a{trial}', 'A')"
        )))
        .await
        .unwrap();
        let a_uri = env.secret_value(&ns_a, "a-db", "mongodbUri").await.unwrap();
        mongo::connect(&a_uri)
            .await
            .unwrap()
            .database(&mdb)
            .collection::<Document>("notes")
            .insert_one(doc! {"owner": "a"})
            .await
            .unwrap();

        // B asks for one of A's names (or a fresh one).
        let iso_b = modes[rng.random_range(0..3)];
        let pg_pick = [
            Some(role.clone()),
            Some(format!("{role}_b")),
            Some(db.clone()),
            Some(schema.clone()),
            Some(format!("fresh_{trial}")),
            None,
        ];
        let mongo_pick = [
            Some(mdb.clone()),
            Some(role.clone()),
            Some(format!("mfresh_{trial}")),
            None,
        ];
        let mut spec_b = json!({"isolation": iso_b, "deletionPolicy": "Delete"});
        if iso_b != "shared"
            && let Some(n) = pg_pick[rng.random_range(0..pg_pick.len())].clone()
        {
            spec_b["databaseName"] = json!(n);
        }
        if let Some(n) = mongo_pick[rng.random_range(0..mongo_pick.len())].clone() {
            spec_b["mongodb"] = json!({"databaseName": n});
        }
        let a_before = snapshot_a(&env, &pool, &ns_a, &role, &db, &mdb).await;
        env.ensure_namespace(&ns_b).await;
        let b: Tenant = serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "b", "namespace": ns_b},
            "spec": spec_b,
        }))
        .unwrap();
        if let Err(e) = env
            .tenants(&ns_b)
            .create(&kube::api::PostParams::default(), &b)
            .await
        {
            // Refused by the API (a reserved name such as `public`): nothing reaches the operator.
            assert!(matches!(&e, kube::Error::Api(s) if s.code == 422), "{e}");
            assert_eq!(
                a_before,
                snapshot_a(&env, &pool, &ns_a, &role, &db, &mdb).await
            );
            eprintln!("trial {trial}: B {spec_b} refused by the API");
            env.tenants(&ns_a)
                .delete("a", &DeleteParams::default())
                .await
                .unwrap();
            env.wait_gone(&ns_a, "a", T).await;
            continue;
        }
        // B settles: Ready, or refused (InvalidSpec / Conflict).
        let b_reason = wait_for(T, "b settled", || async {
            let t = env.tenants(&ns_b).get_opt("b").await.ok()??;
            let (status, reason, _) = condition(&t, "Ready")?;
            (status == "True" || ["InvalidSpec", "Conflict"].contains(&reason.as_str()))
                .then_some(reason)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "trial {trial} (seed {seed}): {e}\n{}",
                tail(&env.operator_log(), 30)
            )
        });
        // Let B's reconciles run a few times (resync 3 s): measurement window.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let a_mid = snapshot_a(&env, &pool, &ns_a, &role, &db, &mdb).await;
        assert_eq!(
            a_before, a_mid,
            "trial {trial} (seed {seed}): A {spec_a} changed by B {spec_b} ({b_reason})"
        );
        env.tenants(&ns_b)
            .delete("b", &DeleteParams::default())
            .await
            .unwrap();
        env.wait_gone(&ns_b, "b", T).await;
        let a_after = snapshot_a(&env, &pool, &ns_a, &role, &db, &mdb).await;
        assert_eq!(
            a_before, a_after,
            "trial {trial} (seed {seed}): A {spec_a} changed by deleting B {spec_b} ({b_reason})"
        );
        eprintln!("trial {trial}: A {spec_a} / B {spec_b}: B {b_reason}; A untouched");
        env.tenants(&ns_a)
            .delete("a", &DeleteParams::default())
            .await
            .unwrap();
        env.wait_gone(&ns_a, "a", T).await;
    }
}

/// What must not change of A: its roles (attributes, marker), its database and schema, its rows
/// (as the superuser), its MongoDB registry entry and documents, and whether its credentials
/// (PostgreSQL and MongoDB) log in.
async fn snapshot_a(
    env: &Env,
    pool: &sqlx::PgPool,
    ns: &str,
    role: &str,
    db: &str,
    mdb: &str,
) -> Vec<String> {
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s %s %s %s', rolname, rolcanlogin, rolsuper, shobj_description(oid, 'pg_authid')) \
         FROM pg_roles WHERE rolname IN ($1, $1 || '_b') ORDER BY 1",
    )
    .bind(role)
    .fetch_all(pool)
    .await
    .unwrap();
    out.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('db %s %s', datname, shobj_description(oid, 'pg_database')) FROM pg_database WHERE datname = $1",
        )
        .bind(db)
        .fetch_all(pool)
        .await
        .unwrap(),
    );
    let pg_ok = match env.connect_with_secret(ns, "a-db").await {
        Ok(mut c) => {
            let n: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM saas_tenants")
                .fetch_one(&mut c)
                .await;
            format!("pg login ok, rows {n:?}")
        }
        Err(e) => format!("pg login failed: {e}"),
    };
    out.push(pg_ok);
    let uri = env
        .secret_value(ns, "a-db", "mongodbUri")
        .await
        .unwrap_or_default();
    let mongo_ok = match mongo::connect(&uri).await {
        Ok(c) => format!(
            "mongo docs {:?}",
            c.database(mdb)
                .collection::<Document>("notes")
                .count_documents(doc! {})
                .await
                .map_err(|e| e.to_string())
        ),
        Err(e) => format!("mongo connect failed: {e}"),
    };
    out.push(mongo_ok);
    let server = mongo::server("snapshot").expect("mongo server");
    let admin = mongo::connect(&server.admin_uri).await.unwrap();
    let owner = admin
        .database(tenantdb::mongo::REGISTRY_DATABASE)
        .collection::<Document>(tenantdb::mongo::REGISTRY_COLLECTION)
        .find_one(doc! {"_id": mdb})
        .await
        .unwrap()
        .and_then(|d| d.get_str("owner").ok().map(String::from));
    out.push(format!("registry {mdb}: {owner:?}"));
    out
}
