//! End-to-end: specs the operator refuses (`InvalidSpec`) and names another Tenant owns
//! (`Conflict`) get a clear condition and a Warning Event without a retry storm, and recover: a
//! spec fix brings an `InvalidSpec` Tenant to Ready, a `Conflict` clears when the other owner goes
//! away. The real `tenantdb` binary against the API server emulator and a real PostgreSQL.

use tenantdb_testkit::e2e;

use std::time::Duration;

use e2e::{Env, wait_for};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tenantdb::crd::TenantPhase;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_and_conflicts_get_a_clear_condition_without_retry_storm() {
    // Conflicts are looked at again at the resync (the other owner may go away).
    // `--explicit-names any`: explicit names shared across namespaces, where only the ownership
    // markers keep Tenants apart (the default policy refuses them earlier: tests/e2e_names.rs).
    let env = Env::start_with(&["--resync-seconds", "2", "--explicit-names", "any"]).await;
    // Passes the schema, but names the operator's shared database.
    env.create_tenant(
        "bad",
        "clash",
        json!({"isolation": "database", "databaseName": "tenantdb_shared"}),
    )
    .await;
    // Passes the schema, refused by the operator, and fixable (databaseName is immutable).
    env.create_tenant(
        "bad",
        "fixable",
        json!({"isolation": "schema", "quotas": {"storage": "0"}}),
    )
    .await;
    // The operator's own names, whatever the explicit-name policy: a template database, a warm
    // pool entry (a claim would rename one onto the Tenant).
    env.create_tenant(
        "bad",
        "templated",
        json!({"isolation": "database", "databaseName": "tenantdb_tpl_0123456789ab"}),
    )
    .await;
    env.create_tenant(
        "bad",
        "pooled",
        json!({"isolation": "schema", "databaseName": "tenantdb_pool_0123456789abcdef"}),
    )
    .await;
    // A periodic rotation that would cut the previous credentials off within their grace period.
    env.create_tenant(
        "bad",
        "rotating",
        json!({"isolation": "schema", "credentials": {"rotateAfter": "30min"}}),
    )
    .await;
    // Two Tenants mapping to the same database name.
    env.create_tenant(
        "ns-a",
        "first",
        json!({"isolation": "database", "databaseName": "same_db", "deletionPolicy": "Delete"}),
    )
    .await;
    env.wait_ready("ns-a", "first", T).await;
    env.create_tenant(
        "ns-b",
        "second",
        json!({"isolation": "database", "databaseName": "same_db"}),
    )
    .await;

    for (ns, name, reason) in [
        ("bad", "clash", "InvalidSpec"),
        ("bad", "fixable", "InvalidSpec"),
        ("bad", "templated", "InvalidSpec"),
        ("bad", "pooled", "InvalidSpec"),
        ("bad", "rotating", "InvalidSpec"),
        ("ns-b", "second", "Conflict"),
    ] {
        let t = wait_for(T, &format!("{name} {reason}"), || async {
            let t = env.tenants(ns).get(name).await.ok()?;
            let ok = t.status.as_ref().is_some_and(|s| {
                s.phase == TenantPhase::Failed
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == reason)
            });
            ok.then_some(t)
        })
        .await
        .unwrap();
        let msg = &t
            .status
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .message
            .clone();
        assert!(!msg.is_empty());
        if name == "rotating" {
            assert!(
                msg.contains("rotateAfter (1800s) must not be shorter than gracePeriod (3600s"),
                "{name}: {msg}"
            );
        }
        if name == "templated" || name == "pooled" {
            assert!(
                msg.contains("is reserved for the operator's"),
                "{name}: {msg}"
            );
        }
        let evs: Api<Event> = Api::namespaced(env.client.clone(), ns);
        wait_for(T, "warning event", || async {
            let l = evs.list(&ListParams::default()).await.ok()?;
            l.items
                .iter()
                .any(|e| {
                    e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason)
                })
                .then_some(())
        })
        .await
        .unwrap();
    }
    // The first tenant is unaffected and its database is not touched by the second.
    env.connect_with_secret("ns-a", "first-db")
        .await
        .expect("first still works");

    // No retry storm: over a quiet period the invalid Tenant's status is not rewritten.
    let before = env.api.stats();
    let mark = env.operator_log().len();
    // A measurement window, not a wait for state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let delta = env.api.stats().since(&before);
    let log = env.operator_log();
    assert_eq!(
        delta.writes("tenants", Some("status")),
        0,
        "{}",
        &log[mark..]
    );
    let reconciles = log[mark..]
        .lines()
        .filter(|l| l.contains("reconcile started") && l.contains("\"clash\""))
        .count();
    // At most the one follow-up reconcile triggered by its own status write (late under load).
    assert!(
        reconciles <= 1,
        "invalid spec was retried {reconciles} times"
    );

    // Fixing the spec recovers from InvalidSpec: Ready, with working credentials.
    env.tenants("bad")
        .patch(
            "fixable",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"quotas": {"storage": "1Gi"}}})),
        )
        .await
        .expect("the fix is accepted");
    let t = env.wait_ready("bad", "fixable", T).await;
    assert_eq!(t.status.unwrap().phase, TenantPhase::Ready);
    env.connect_with_secret("bad", "fixable-db")
        .await
        .expect("fixed tenant logs in");
    // The immutable field cannot be "fixed": the API refuses, the Tenant stays InvalidSpec.
    let refused = env
        .tenants("bad")
        .patch(
            "clash",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"databaseName": null}})),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422),
        "{refused:?}"
    );

    // The other owner goes away: the conflicting Tenant recovers on its own (at the resync) and
    // takes the name over.
    env.delete_tenant("ns-a", "first").await;
    env.wait_gone("ns-a", "first", T).await;
    env.wait_ready("ns-b", "second", T).await;
    env.connect_with_secret("ns-b", "second-db")
        .await
        .expect("second logs in to same_db");
    let pool = env.admin_pool().await;
    let comment: Option<String> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'same_db'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(comment.as_deref(), Some("tenantdb.io/owner=ns-b/second"));
}
