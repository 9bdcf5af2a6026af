//! Reliability: no password leaks (issue #14). A workload over all three isolation modes (with
//! MongoDB when the stand-in or `TENANTDB_TEST_MONGO_URI` is available): create, rotate, a Secret
//! deleted by hand (new password), a Secret renamed, an invalid spec, a TenantMigration, health
//! checks and usage measurements, delete. Every password the operator ever generated (PostgreSQL
//! and MongoDB, before and after rotation) and the admin passwords are then searched — as plain
//! text, base64 (any alignment, as inside an encoded URI) and as `Debug`/JSON byte lists and hex —
//! in the operator's log, the PostgreSQL server log (`log_statement = 'all'`, active before the
//! operator opened its first connection), Tenant and TenantMigration status, Events (both APIs)
//! and `/metrics`. Each search has a positive control: the text searched holds what a leak would
//! sit next to (each tenant role's `PASSWORD 'SCRAM-SHA-256$…'` statement, the tenants' names,
//! the metrics), and the encodings are checked against the Secret's own base64.
//!
//! The stored verifiers are checked too: SCRAM-SHA-256, 4096 iterations, a 16-byte salt, matching
//! the Secret's password, and different salts (so different verifiers) for every role.

use tenantdb_testkit::e2e;
use tenantdb_testkit::mongo;
use tenantdb_testkit::reliability;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use e2e::{Env, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use reliability::{http_get, op_tail, operator_http_addr};
use serde_json::json;
use tenantdb::crd::{MigrationPhase, TenantMigration};

const T: Duration = Duration::from_secs(60);
const NS: &str = "leak";

/// The forms in which a password could leak: plain, base64 at each of the three byte alignments
/// (the part that does not depend on neighbouring bytes), `Debug` and JSON byte lists, hex.
fn leak_forms(pw: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![("plain", pw.to_string())];
    for (k, name) in [(0, "base64"), (1, "base64+1"), (2, "base64+2")] {
        let mut bytes = vec![b'x'; k];
        bytes.extend_from_slice(pw.as_bytes());
        let enc = B64.encode(&bytes);
        // Drop the group holding the prefix and the last group (padding, next bytes).
        let start = if k == 0 { 0 } else { 4 };
        let core = &enc[start..enc.len() - 4];
        v.push((name, core.to_string()));
    }
    let bytes: Vec<String> = pw.bytes().map(|b| b.to_string()).collect();
    v.push(("debug bytes", bytes.join(", ")));
    v.push(("json bytes", bytes.join(",")));
    v.push((
        "hex",
        pw.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
    ));
    v
}

#[test]
fn leak_forms_find_a_password_inside_encoded_text() {
    let pw = "Zk3J8qLmN0pQrS2tUvWxYz4AbCdEfGh1";
    let uri = format!("postgres://u:{pw}@h:5432/db");
    for prefix in ["", "a", "ab", "abc"] {
        let text = B64.encode(format!("{prefix}{uri}"));
        assert!(
            leak_forms(pw)
                .iter()
                .any(|(_, f)| f.len() >= 32 && text.contains(f.as_str())),
            "base64 with prefix {prefix:?} not found"
        );
    }
    let debug = format!("{:?}", pw.as_bytes());
    assert!(
        leak_forms(pw)
            .iter()
            .any(|(_, f)| debug.contains(f.as_str()))
    );
    let json = serde_json::to_string(&pw.as_bytes()).unwrap();
    assert!(
        leak_forms(pw)
            .iter()
            .any(|(_, f)| json.contains(f.as_str()))
    );
}

async fn current_passwords(env: &Env, secret: &str, keys: &[&str]) -> Vec<String> {
    let mut v = vec![];
    for k in keys {
        let p = env.secret_value(NS, secret, k).await;
        v.push(p.unwrap_or_else(|| panic!("Secret {secret} has no {k}")));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_in_any_form_anywhere_the_operator_writes() {
    let server = mongo::server("no_password_in_any_form_anywhere_the_operator_writes (MongoDB)");
    let mut args: Vec<String> = [
        "--resync-seconds",
        "2",
        "--health-interval-seconds",
        "1",
        "--usage-interval-seconds",
        "1",
    ]
    .map(String::from)
    .to_vec();
    if let Some(s) = server {
        args.extend([
            "--mongodb-uri".into(),
            s.admin_uri.clone(),
            "--mongodb-host".into(),
            s.host.clone(),
            "--mongodb-port".into(),
            s.port.to_string(),
        ]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = Env::start_with(&argv).await;
    // Statement logging on before the operator opens any connection: stop it, turn logging on and
    // wait until a new session sees it, start it again (all its sessions are new).
    env.kill_operator().await;
    reliability::log_all_statements(&env).await;
    let pg_mark = env.pg.log().len();
    let op_mark = env.operator_log().len();
    env.start_operator();

    let mut passwords: Vec<String> = vec![env.pg.superuser_password().to_string()];
    if let Some(s) = server
        && !s.root_password.is_empty()
    {
        passwords.push(s.root_password.clone());
    }
    let keys: &[&str] = if server.is_some() {
        &["password", "mongodbPassword"]
    } else {
        &["password"]
    };
    let tenants = [
        ("alpha", "schema"),
        ("beta", "database"),
        ("gamma", "shared"),
    ];
    for (name, iso) in tenants {
        env.create_tenant(
            NS,
            name,
            json!({"isolation": iso, "deletionPolicy": "Delete", "credentials": {"gracePeriod": "2s"}}),
        )
        .await;
    }
    env.create_tenant(
        NS,
        "broken",
        json!({"isolation": "database", "databaseName": "none"}),
    )
    .await;
    for (name, _) in tenants {
        env.wait_ready(NS, name, T).await;
        passwords.extend(current_passwords(&env, &format!("{name}-db"), keys).await);
    }
    // The encodings searched for are the ones Kubernetes uses: the Secret's base64 is one of them.
    let s = env.secrets(NS).get("alpha-db").await.unwrap();
    let encoded = serde_json::to_value(&s).unwrap()["data"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let pw = env.secret_value(NS, "alpha-db", "password").await.unwrap();
    assert!(
        leak_forms(&pw)
            .iter()
            .any(|(_, f)| encoded.contains(f.as_str())),
        "the Secret's base64 ({encoded}) is not among the searched forms"
    );

    // Rotate all three.
    for (name, _) in tenants {
        let secret = format!("{name}-db");
        let old = env.secret_value(NS, &secret, "password").await.unwrap();
        env.tenants(NS)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
            )
            .await
            .unwrap();
        wait_for(T, &format!("{name} rotated"), || async {
            let p = env.secret_value(NS, &secret, "password").await?;
            (p != old).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
        passwords.extend(current_passwords(&env, &secret, keys).await);
    }
    // A Secret deleted by hand: a new password.
    let old = env.secret_value(NS, "beta-db", "password").await.unwrap();
    env.secrets(NS)
        .delete("beta-db", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(T, "beta's Secret re-created", || async {
        let p = env.secret_value(NS, "beta-db", "password").await?;
        (p != old).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    passwords.extend(current_passwords(&env, "beta-db", keys).await);
    // A Secret renamed.
    env.tenants(NS)
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"secretName": "alpha-creds"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "alpha's old Secret removed", || async {
        env.secrets(NS)
            .get_opt("alpha-db")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    env.wait_ready(NS, "alpha", T).await;
    wait_for(T, "alpha's status names the new Secret", || async {
        let st = env.tenants(NS).get("alpha").await.ok()?.status?;
        (st.secret_name.as_deref() == Some("alpha-creds")).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        let st = futures::executor::block_on(env.tenants(NS).get("alpha"))
            .ok()
            .and_then(|t| t.status);
        panic!("{e}: {st:#?}{}", op_tail(&env))
    });
    // A renamed Secret keeps its credentials (applications using it keep working): no new
    // password to collect.
    let renamed = current_passwords(&env, "alpha-creds", keys).await;
    assert!(
        renamed.iter().all(|p| passwords.contains(p)),
        "the renamed Secret kept alpha's passwords"
    );
    // A TenantMigration over alpha and beta.
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "leak-migration", "namespace": NS},
        "data": {"29990101000001_leak.up.sql": "CREATE TABLE leak_probe (id int);"},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "leak", "namespace": NS},
        "spec": {"target": {"tenant": "alpha"}, "source": {"configMap": {"name": "leak-migration"}}},
    }))
    .unwrap();
    let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), NS);
    tms.create(&PostParams::default(), &tm).await.unwrap();
    wait_for(T, "TenantMigration Succeeded", || async {
        let tm = tms.get("leak").await.ok()?;
        (tm.status?.phase == MigrationPhase::Succeeded).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    // Health checks and usage measured for every tenant (the health check logs in with the
    // Secret's password).
    for (name, _) in tenants {
        wait_for(T, &format!("{name}: health and usage reported"), || async {
            let st = env.tenants(NS).get(name).await.ok()?.status?;
            (st.health?.healthy && st.usage.is_some()).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    }

    // Stored verifiers: SCRAM-SHA-256, 4096 iterations, 16-byte salts, all different, matching.
    let admin = env.admin_pool().await;
    let mut salts = BTreeSet::new();
    let mut roles = vec![];
    for (name, _) in tenants {
        let st = env.tenants(NS).get(name).await.unwrap().status.unwrap();
        let role = st.role.unwrap();
        let secret = st.secret_name.unwrap();
        let creds = env
            .secret_values(NS, &secret, &["username", "password"])
            .await
            .unwrap_or_else(|| panic!("{name}: no credentials in Secret {secret}"));
        let (user, pw) = (creds[0].clone(), creds[1].clone());
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT rolname::text, rolpassword FROM pg_authid WHERE rolname IN ($1, $1 || '_b')",
        )
        .bind(&role)
        .fetch_all(&admin)
        .await
        .unwrap();
        for (r, verifier) in rows {
            let Some(v) = verifier else { continue };
            let rest = v
                .strip_prefix("SCRAM-SHA-256$4096:")
                .unwrap_or_else(|| panic!("{r}: not SCRAM-SHA-256 with 4096 iterations: {v}"));
            let salt = B64.decode(rest.split('$').next().unwrap()).unwrap();
            assert_eq!(salt.len(), 16, "{r}: salt length");
            assert!(salts.insert(salt), "{r}: salt reused");
            if r == user {
                assert!(
                    tenantdb::scram::matches(&pw, &v),
                    "{r}: verifier does not match the Secret"
                );
            }
        }
        roles.push(role);
    }
    assert!(
        salts.len() >= 6,
        "both login roles of each tenant have a verifier"
    );

    // What the operator reported, captured before deletion.
    let addr = wait_for(T, "operator http address", || async {
        operator_http_addr(&env.operator_log()[op_mark..])
    })
    .await
    .unwrap();
    let (code, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("tenantdb_reconciles_total"), "{metrics}");
    let mut status = String::new();
    for t in env
        .tenants(NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        status.push_str(&serde_json::to_string(&t.status).unwrap());
    }
    let tm_status =
        serde_json::to_string(&tms.list(&ListParams::default()).await.unwrap().items).unwrap();
    for name in ["alpha", "beta", "gamma"] {
        assert!(
            status.contains(name) || status.contains(&format!("{name}-")),
            "{status}"
        );
    }
    assert!(tm_status.contains("\"alpha\""), "{tm_status}");

    for (name, _) in tenants {
        env.delete_tenant(NS, name).await;
    }
    env.delete_tenant(NS, "broken").await;
    for name in ["alpha", "beta", "gamma", "broken"] {
        env.wait_gone(NS, name, T).await;
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(env.client.clone());
    let mut event_text =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap();
    let core: Api<CoreEvent> = Api::all(env.client.clone());
    event_text.push_str(
        &serde_json::to_string(&core.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    assert!(event_text.contains("CredentialsRotated"), "events captured");
    let pg_log = env.pg.log()[pg_mark..].to_string();
    let op_log = env.operator_log()[op_mark..].to_string();

    // Positive controls: the PostgreSQL log holds each login role's password statement (with the
    // verifier), the operator log holds each tenant's reconciles.
    for role in &roles {
        for r in [role.clone(), format!("{role}_b")] {
            let quoted = format!("\"{r}\"");
            let hit = pg_log.lines().any(|l| {
                l.contains(&quoted)
                    && l.contains("PASSWORD 'SCRAM-SHA-256$4096:")
                    && (l.contains("CREATE ROLE") || l.contains("ALTER ROLE"))
            });
            assert!(hit, "no password statement for {r} in the PostgreSQL log");
        }
    }
    for name in ["alpha", "beta", "gamma"] {
        assert!(
            op_log.contains(&format!("\"{name}\"")),
            "{name} not in the operator log"
        );
    }

    let places = [
        ("operator log", &op_log),
        ("PostgreSQL log", &pg_log),
        ("Tenant status", &status),
        ("TenantMigration status", &tm_status),
        ("Events", &event_text),
        ("/metrics", &metrics),
    ];
    let distinct: BTreeSet<&String> = passwords.iter().collect();
    assert!(
        distinct.len() >= if server.is_some() { 13 } else { 7 },
        "passwords collected: {}",
        distinct.len()
    );
    let mut leaks = vec![];
    for (i, pw) in distinct.iter().enumerate() {
        assert!(pw.len() >= 16, "password #{i} is short");
        for (form, needle) in leak_forms(pw) {
            for (place, text) in &places {
                if text.contains(needle.as_str()) {
                    leaks.push(format!("password #{i} as {form} in {place}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "password leaks:\n{}", leaks.join("\n"));
    eprintln!(
        "{} passwords × {} forms × {} places searched",
        distinct.len(),
        leak_forms(env.pg.superuser_password()).len(),
        places.len()
    );
}
