//! Reliability: the bad-input corpus (issue #9). Data: `testkit/src/bad_inputs.rs`.
//!
//! Every case (exactly [`EXPECTED_CASES`]) is either refused by the API server (422 Invalid / 400
//! strict decoding, with a message naming the field by its whole path) or ends with a clear
//! condition (Ready=False, reason InvalidSpec/Conflict, non-empty message, phase Failed) and a
//! Warning Event. Nothing hostile is executed: the throwaway server runs with
//! `log_statement = 'all'`; its log must not contain any hostile marker (cases the operator refuses
//! carry one too: their own name, which any statement for them would contain), any statement on a
//! refused name (quoted or unquoted), or any `ERROR`; no role, database or schema of the shared
//! database beyond the expected ones appears. A healthy canary Tenant created first stays Ready
//! throughout (sampled continuously) and its credentials keep working.

use tenantdb_testkit::bad_inputs;
use tenantdb_testkit::e2e;
use tenantdb_testkit::reliability;
use tenantdb_testkit::sql_scan;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bad_inputs::{Case, Expect, creation_cases};
use e2e::{Env, wait_for};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use reliability::{condition, is_ready, op_tail, warning_events_for};
use serde_json::{Value, json};
use sqlx::Executor;
use tenantdb::crd::{Tenant, TenantPhase};

const T: Duration = Duration::from_secs(60);

/// Cases in the corpus: 59 at creation (`bad_inputs::creation_cases`), 5 conflicts, 5 updates,
/// 1 unknown field pruned.
const EXPECTED_CASES: usize = 72;

fn dyn_api(env: &Env, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), ns, &ApiResource::erase::<Tenant>(&()))
}

fn tenant_obj(ns: &str, name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

/// Creates a Tenant from raw JSON (wrong types included); `strict` uses fieldValidation=Strict.
async fn create_raw(
    env: &Env,
    ns: &str,
    name: &str,
    spec: &Value,
    strict: bool,
) -> Result<(), kube::Error> {
    env.ensure_namespace(ns).await;
    let api = dyn_api(env, ns);
    let obj = tenant_obj(ns, name, spec);
    if strict {
        api.patch(
            name,
            &PatchParams::apply("reliability-bad-input").validation_strict(),
            &Patch::Apply(&obj),
        )
        .await
        .map(|_| ())
    } else {
        let d: DynamicObject = serde_json::from_value(obj).unwrap();
        api.create(&PostParams::default(), &d).await.map(|_| ())
    }
}

fn api_error(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => (0, other.to_string()),
    }
}

/// Asserts a refused request: the expected code and a message naming the field.
fn assert_rejected(id: &str, r: Result<(), kube::Error>, code: u16, field: &str) {
    let e = match r {
        Ok(()) => panic!("{id}: accepted by the API, expected {code} mentioning {field}"),
        Err(e) => e,
    };
    let (got, msg) = api_error(&e);
    assert_eq!(got, code, "{id}: status code ({msg})");
    // The message names the field by its whole path (`spec.quotas.storage`, `metadata.name`).
    assert!(
        field.starts_with("spec.") || field.starts_with("metadata."),
        "{id}: {field} is not a whole path"
    );
    assert!(
        msg.contains(field),
        "{id}: message does not name {field}: {msg}"
    );
}

/// Waits for Ready=False with `reason`, a message, phase Failed, and a Warning Event.
async fn assert_condition(env: &Env, id: &str, ns: &str, name: &str, reason: &str) -> String {
    // Long names get Events with a generated name (see `long_tenant_names_get_events`).
    let expect_event = true;
    let t = wait_for(T, &format!("{id}: Ready=False/{reason}"), || async {
        let t = env.tenants(ns).get(name).await.ok()?;
        let ok = t.status.as_ref().is_some_and(|s| s.phase == TenantPhase::Failed)
            && matches!(condition(&t, "Ready"), Some((s, r, m)) if s == "False" && r == reason && !m.trim().is_empty());
        ok.then_some(t)
    })
    .await
    .unwrap_or_else(|e| {
        let t = futures::executor::block_on(env.tenants(ns).get_opt(name)).ok().flatten();
        panic!("{e}; status: {:?}{}", t.and_then(|t| t.status), op_tail(env))
    });
    if expect_event {
        wait_for(T, &format!("{id}: Warning Event {reason}"), || async {
            (!warning_events_for(env, ns, name, reason).await.is_empty()).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)));
    }
    condition(&t, "Ready").unwrap().2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_corpus_is_refused_without_side_effects() {
    let started = std::time::Instant::now();
    // `--explicit-names any`: the corpus's explicit names are refused for what they are (syntax,
    // reserved, conflicts with marked objects), not for the namespace policy, which is tested in
    // tests/e2e_names.rs.
    let env = Env::start_with(&["--explicit-names", "any"]).await;

    // A healthy canary first, sampled in the background for the whole test.
    env.create_tenant(
        "canary",
        "canary",
        json!({"isolation": "schema", "quotas": {"maxConnections": 5}}),
    )
    .await;
    env.create_tenant("canary", "canary-db", json!({"isolation": "database"}))
        .await;
    let canary = env.wait_ready("canary", "canary", T).await;
    env.wait_ready("canary", "canary-db", T).await;
    let canary_since = canary
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    let stop = Arc::new(AtomicBool::new(false));
    let not_ready = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let api = env.tenants("canary");
        let (stop, not_ready, samples) = (stop.clone(), not_ready.clone(), samples.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for n in ["canary", "canary-db"] {
                    if let Ok(t) = api.get(n).await {
                        samples.fetch_add(1, Ordering::Relaxed);
                        if !is_ready(&t) {
                            not_ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Pre-existing objects that are not tenantdb's (created before statement logging starts).
    let admin = env.admin_pool().await;
    admin.execute("CREATE DATABASE legacy_app").await.unwrap();
    admin
        .execute("CREATE ROLE legacy_role NOLOGIN")
        .await
        .unwrap();
    env.ensure_namespace("bad").await;
    let foreign: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "taken-secret", "namespace": "bad"},
        "stringData": {"password": "not-yours"},
    }))
    .unwrap();
    env.secrets("bad")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    reliability::log_all_statements(&env).await;
    let log_mark = env.pg.log().len();

    // 1. Creation-time corpus.
    let cases = creation_cases();
    let mut n_cases = 0;
    let mut operator_refused: Vec<(Case, &'static str)> = vec![];
    for c in &cases {
        let r = create_raw(&env, c.ns, &c.name, &c.spec, c.strict).await;
        match c.expect {
            Expect::Rejected { code, field } => assert_rejected(c.id, r, code, field),
            Expect::Condition { reason } => {
                r.unwrap_or_else(|e| {
                    panic!(
                        "{}: refused by the API, expected the operator to refuse it: {e}",
                        c.id
                    )
                });
                operator_refused.push((c.clone(), reason));
            }
        }
        n_cases += 1;
    }
    for (c, reason) in &operator_refused {
        let msg = assert_condition(&env, c.id, c.ns, &c.name, reason).await;
        eprintln!("{}: {reason}: {msg}", c.id);
    }

    // 2. Conflicts with existing objects and between Tenants.
    env.create_tenant(
        "ns-a",
        "first",
        json!({"isolation": "database", "databaseName": "same_db", "deletionPolicy": "Delete"}),
    )
    .await;
    env.wait_ready("ns-a", "first", T).await;
    let conflicts = [
        (
            "conflict-same-databasename",
            "ns-b",
            "second",
            json!({"isolation": "database", "databaseName": "same_db"}),
        ),
        (
            "conflict-same-schema-name",
            "ns-c",
            "third",
            json!({"isolation": "schema", "databaseName": "same_db"}),
        ),
        (
            "conflict-foreign-secret",
            "bad",
            "secret-taken",
            json!({"isolation": "schema", "credentials": {"secretName": "taken-secret"}}),
        ),
        (
            "conflict-unmanaged-database",
            "bad",
            "legacy-db",
            json!({"isolation": "database", "databaseName": "legacy_app"}),
        ),
        (
            "conflict-unmanaged-role",
            "bad",
            "legacy-role",
            json!({"isolation": "schema", "databaseName": "legacy_role"}),
        ),
    ];
    for (id, ns, name, spec) in &conflicts {
        env.create_tenant(ns, name, spec.clone()).await;
        let msg = assert_condition(&env, id, ns, name, "Conflict").await;
        eprintln!("{id}: Conflict: {msg}");
        n_cases += 1;
    }
    // The foreign Secret is untouched.
    let s = env.secrets("bad").get("taken-secret").await.unwrap();
    assert_eq!(
        tenantdb::secret::read_key(&s, "password").as_deref(),
        Some("not-yours")
    );
    assert!(
        s.metadata.owner_references.unwrap_or_default().is_empty(),
        "foreign Secret adopted"
    );

    // 3. Update-time: immutability (CEL), adding/removing databaseName.
    env.create_tenant("bad", "mutable", json!({"isolation": "schema"}))
        .await;
    env.create_tenant(
        "bad",
        "named",
        json!({"isolation": "database", "databaseName": "named_db"}),
    )
    .await;
    env.wait_ready("bad", "mutable", T).await;
    env.wait_ready("bad", "named", T).await;
    let updates = [
        (
            "update-isolation",
            "mutable",
            json!({"spec": {"isolation": "database"}}),
            "spec.isolation",
        ),
        (
            "update-add-databasename",
            "mutable",
            json!({"spec": {"databaseName": "added_later"}}),
            "spec.databaseName",
        ),
        (
            "update-remove-databasename",
            "named",
            json!({"spec": {"databaseName": null}}),
            "spec.databaseName",
        ),
        (
            "update-change-databasename",
            "named",
            json!({"spec": {"databaseName": "renamed_db"}}),
            "spec.databaseName",
        ),
        (
            "update-isolation-database-to-schema",
            "named",
            json!({"spec": {"isolation": "schema"}}),
            "spec.isolation",
        ),
    ];
    for (id, name, patch, field) in &updates {
        let r = env
            .tenants("bad")
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ());
        assert_rejected(id, r, 422, field);
        n_cases += 1;
    }
    env.wait_ready("bad", "mutable", T).await;
    env.wait_ready("bad", "named", T).await;

    // 4. Unknown field with the default (Warn) validation: pruned, stored without it, provisioned.
    create_raw(
        &env,
        "bad",
        "unknown-pruned",
        &json!({"isolation": "schema", "superuser": true, "quotas": {"bypassRls": true}}),
        false,
    )
    .await
    .unwrap();
    let t = env.wait_ready("bad", "unknown-pruned", T).await;
    let raw = serde_json::to_value(&t.spec).unwrap();
    assert!(raw.get("superuser").is_none(), "unknown field kept: {raw}");
    n_cases += 1;
    eprintln!("{n_cases} bad-input cases checked");
    assert_eq!(
        n_cases, EXPECTED_CASES,
        "every case of the corpus is checked, no more, no less"
    );
    let mut ids: BTreeSet<&str> = cases.iter().map(|c| c.id).collect();
    ids.extend(conflicts.iter().map(|c| c.0));
    ids.extend(updates.iter().map(|u| u.0));
    ids.insert("unknown-pruned");
    assert_eq!(ids.len(), n_cases, "case ids are unique");

    // 5. Nothing hostile reached PostgreSQL or the operator.
    let pg_log = env.pg.log()[log_mark..].to_string();
    let op_log = env.operator_log();
    let mut markers = 0;
    for c in &cases {
        let Some(h) = &c.hostile else { continue };
        markers += 1;
        // The marker as written and as a derived identifier would spell it.
        let ident = h.replace(['-', '.'], "_");
        for form in [h.as_str(), ident.as_str()] {
            assert!(
                !pg_log.contains(form),
                "{}: hostile text {form:?} reached PostgreSQL",
                c.id
            );
        }
        // The operator necessarily reads what it refuses itself; what the API refused never
        // reaches it.
        if matches!(c.expect, Expect::Rejected { .. }) {
            assert!(
                !op_log.contains(h.as_str()),
                "{}: hostile text {h:?} reached the operator",
                c.id
            );
        }
    }
    let refused_by_operator = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Condition { .. }))
        .count();
    assert!(
        cases
            .iter()
            .filter(|c| matches!(c.expect, Expect::Condition { .. }))
            .all(|c| c.hostile.is_some()),
        "every operator-refused case carries a marker"
    );
    assert!(markers > refused_by_operator, "{markers} markers");
    // Names the operator refused never appear as identifiers in a statement, quoted or not (the
    // operator double-quotes identifiers and binds names it looks up as parameters). Unquoted, a
    // name is an identifier where a keyword that takes one comes right before it (`ROLE x`,
    // `DATABASE x`, `TO x`, …); the operator's own `rolname = current_user` is an expression.
    let statements = sql_scan::logged_statements(&pg_log);
    assert!(
        statements.len() > 20,
        "statement logging: {}",
        statements.len()
    );
    const TAKES_IDENTIFIER: &[&str] = &[
        "ROLE",
        "USER",
        "DATABASE",
        "SCHEMA",
        "AUTHORIZATION",
        "TO",
        "FROM",
        "BY",
        "EXISTS",
        "IN",
        "GRANT",
        "REVOKE",
        "OWNED",
        "TABLE",
        "ON",
    ];
    for ident in [
        "current_user",
        "session_user",
        "none",
        "all",
        "legacy_app",
        "legacy_role",
        "added_later",
        "renamed_db",
    ] {
        let quoted = format!("\"{ident}\"");
        let hit = statements.iter().find(|st| st.contains(&quoted));
        assert!(
            hit.is_none(),
            "statement on refused name {quoted} executed: {hit:?}"
        );
        for st in &statements {
            let t = sql_scan::scan(st).unwrap_or_else(|e| panic!("{e}"));
            for w in t.bare.windows(2) {
                assert!(
                    !(w[1] == ident
                        && TAKES_IDENTIFIER.contains(&w[0].to_ascii_uppercase().as_str())),
                    "statement on refused name {ident} (unquoted) executed: {st}"
                );
            }
        }
    }
    // No statement failed: a statement the operator should not have run shows up here too.
    let errors: Vec<&str> = pg_log
        .lines()
        .filter(|l| l.contains("ERROR:") || l.contains("FATAL:"))
        .collect();
    assert!(
        errors.is_empty(),
        "unexpected errors in the PostgreSQL log:\n{}",
        errors.join("\n")
    );
    assert!(
        pg_log.contains("statement:"),
        "statement logging is not active"
    );

    // 6. Catalogs: only the expected tenantdb objects; nothing else created.
    let expected_owners: BTreeSet<String> = [
        "canary/canary",
        "canary/canary-db",
        "ns-a/first",
        "bad/mutable",
        "bad/named",
        "bad/unknown-pruned",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let objs = reliability::tenantdb_objects(&env).await;
    for o in &objs {
        let owner = o.owner.clone().unwrap_or_default();
        assert!(
            expected_owners.contains(&owner),
            "unexpected tenantdb object: {o:?}"
        );
    }
    let (roles, dbs, schemas) = reliability::all_catalog_names(&env).await;
    let tenant_schemas: BTreeSet<String> = objs
        .iter()
        .filter(|o| o.kind == "schema")
        .map(|o| o.name.clone())
        .collect();
    for sc in &schemas {
        assert!(
            sc == "public" || tenant_schemas.contains(sc),
            "unexpected schema {sc} in the shared database"
        );
    }
    // The schema tenants of this test have their schemas (and nothing else does).
    assert_eq!(
        tenant_schemas.len(),
        3,
        "schemas of canary, mutable and unknown-pruned: {tenant_schemas:?}"
    );
    let tenant_roles: BTreeSet<String> = objs
        .iter()
        .filter(|o| o.kind == "role")
        .map(|o| o.name.clone())
        .collect();
    let tenant_dbs: BTreeSet<String> = objs
        .iter()
        .filter(|o| o.kind == "database")
        .map(|o| o.name.clone())
        .collect();
    for r in &roles {
        assert!(
            // The operator's own group for CONNECT on the shared database.
            r == "postgres"
                || r == "legacy_role"
                || r == "tenantdb_shared_connect"
                // The role template databases are built as (docs/security.md).
                || r == "tenantdb_template_owner"
                || tenant_roles.contains(r),
            "unexpected role {r}"
        );
    }
    for d in &dbs {
        assert!(
            [
                "postgres",
                "template0",
                "template1",
                "tenantdb_shared",
                "legacy_app"
            ]
            .contains(&d.as_str())
                // The template database of `database` tenants (docs/operations.md).
                || d.starts_with("tenantdb_tpl_")
                || tenant_dbs.contains(d),
            "unexpected database {d}"
        );
    }
    // same_db still belongs to the first Tenant.
    let (owner, comment): (String, Option<String>) = sqlx::query_as(
        "SELECT pg_get_userbyid(datdba)::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'same_db'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(
        (owner.as_str(), comment.as_deref()),
        ("same_db", Some("tenantdb.io/owner=ns-a/first"))
    );
    let legacy: Option<String> = sqlx::query_scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'legacy_app'")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(legacy, None, "legacy_app was marked by the operator");

    // 7. The canary was never disturbed.
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    assert!(samples.load(Ordering::Relaxed) > 10, "canary not sampled");
    assert_eq!(
        not_ready.load(Ordering::Relaxed),
        0,
        "the canary was not Ready at some point"
    );
    let canary = env.tenants("canary").get("canary").await.unwrap();
    let since = canary
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    assert_eq!(since, canary_since, "canary Ready condition transitioned");
    for s in ["canary-db", "canary-db-db"] {
        let mut c = env
            .connect_with_secret("canary", s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        c.execute("SELECT 1").await.unwrap();
    }
    eprintln!(
        "reliability_bad_input: {n_cases} cases in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// TenantMigration with a broken SQL file: must fail with a clear condition and leave the tenant at
/// its last good version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_migration_with_broken_sql_fails_cleanly() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use tenantdb::crd::TenantMigration;
    let env = Env::start().await;
    env.create_tenant("mig", "acme", json!({"isolation": "schema"}))
        .await;
    let t = env.wait_ready("mig", "acme", T).await;
    let before = t.status.unwrap().schema_version.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "broken", "namespace": "mig"},
        "data": {"29990101000001_broken.up.sql": "CREATE TABLE ok_part (id int);\nTHIS IS NOT SQL;"},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), "mig")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let m: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "broken", "namespace": "mig"},
        "spec": {"target": {"tenant": "acme"}, "source": {"configMap": {"name": "broken"}}},
    }))
    .unwrap();
    let api: Api<TenantMigration> = Api::namespaced(env.client.clone(), "mig");
    api.create(&PostParams::default(), &m).await.unwrap();
    let m = wait_for(T, "TenantMigration Failed", || async {
        let m = api.get("broken").await.ok()?;
        (m.status.as_ref()?.phase == tenantdb::crd::MigrationPhase::Failed).then_some(m)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    let st = m.status.unwrap();
    let failed = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed condition");
    assert_eq!(failed.status, "True");
    assert!(!failed.message.is_empty());
    let entry = st
        .tenants
        .iter()
        .find(|e| e.name == "acme")
        .expect("per-tenant entry");
    assert!(
        entry
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("syntax"),
        "{entry:?}"
    );
    let t = env.tenants("mig").get("acme").await.unwrap();
    assert_eq!(
        t.status.unwrap().schema_version,
        Some(before),
        "tenant moved off its last good version"
    );
    let mut c = env.connect_with_secret("mig", "acme-db").await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'ok_part'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0, "half of the broken migration was applied");
}

/// Regression test (was a bug): kube-runtime's Recorder names an Event `<object name>.<16 hex>`,
/// which exceeds the 253-byte limit for very long Tenant names; the operator now publishes those
/// Events under a generated name, so the user still gets the Warning Event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_tenant_names_get_events() {
    let env = Env::start().await;
    // 251 bytes: a valid name; the default Secret name `<name>-db` is too long → InvalidSpec.
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(59)
    );
    env.create_tenant("long", &name, json!({"isolation": "schema"}))
        .await;
    wait_for(T, "Warning Event for the long-named Tenant", || async {
        (!warning_events_for(&env, "long", &name, "InvalidSpec")
            .await
            .is_empty())
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
}
