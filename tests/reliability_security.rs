//! Reliability: security checks (issue #9).
//!
//! - No password (any Secret's, before and after rotation, nor the admin password) appears in the
//!   operator's log, in Events, in Tenant status, or in the PostgreSQL server log with
//!   `log_statement = 'all'`, after a workload of create, rotate, rename, delete.
//! - RBAC: every (verb, group, resource, subresource) the operator sends during that workload
//!   (recorded by a proxy between the operator and the API server emulator, so the test's own
//!   requests do not count) is granted by the chart's ClusterRole/Role, and every granted pair was
//!   used (or is allow-listed with a reason).
//! - The cross-tenant access matrix (all three isolation modes, every ordered pair) is in
//!   `tests/reliability_isolation.rs`.

#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/reliability.rs"]
mod reliability;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::{Env, wait_for};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, ListParams, Patch, PatchParams};
use reliability::{RecordingProxy, op_tail};
use serde::Deserialize;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

async fn rotate(env: &Env, ns: &str, name: &str, token: &str) -> String {
    let old = env
        .secret_value(ns, &format!("{name}-db"), "password")
        .await
        .unwrap();
    env.tenants(ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": token}}})),
        )
        .await
        .unwrap();
    wait_for(T, &format!("{ns}/{name} rotated"), || async {
        let p = env
            .secret_value(ns, &format!("{name}-db"), "password")
            .await?;
        (p != old).then_some(p)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)))
}

// ---------------------------------------------------------------------------------------------
// Chart RBAC (parsed from the templates without helm)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
}

/// (verb, group, resource, subresource)
type Pair = (String, String, String, String);

/// The `rules:` blocks of a Helm template, with `{{ … }}` expressions replaced by a placeholder.
fn chart_rules(path: &str) -> Vec<Rule> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut rules = vec![];
    let mut block: Option<Vec<String>> = None;
    let flush = |b: &mut Option<Vec<String>>, rules: &mut Vec<Rule>| {
        if let Some(lines) = b.take() {
            let yaml = lines.join("\n");
            let parsed: Vec<Rule> = serde_saphyr::from_str(&yaml)
                .unwrap_or_else(|e| panic!("{path}: cannot parse rules block: {e}\n{yaml}"));
            rules.extend(parsed);
        }
    };
    for line in text.lines() {
        if line.trim_end() == "rules:" {
            flush(&mut block, &mut rules);
            block = Some(vec![]);
            continue;
        }
        if let Some(b) = block.as_mut() {
            let is_rule_line =
                line.starts_with(' ') || line.starts_with('-') && !line.starts_with("---");
            if is_rule_line && !line.trim_start().starts_with("{{") {
                let mut l = line.to_string();
                while let (Some(a), Some(z)) = (l.find("{{"), l.find("}}")) {
                    if z < a {
                        break;
                    }
                    l.replace_range(a..z + 2, "\"TEMPLATED\"");
                }
                if !l.trim_start().starts_with('#') {
                    b.push(l);
                }
            } else {
                flush(&mut block, &mut rules);
            }
        }
    }
    flush(&mut block, &mut rules);
    rules
}

fn granted_pairs() -> BTreeSet<Pair> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut out = BTreeSet::new();
    for f in [
        "charts/tenantdb/templates/clusterrole.yaml",
        "charts/tenantdb/templates/role.yaml",
    ] {
        let rules = chart_rules(&format!("{root}/{f}"));
        assert!(!rules.is_empty(), "{f}: no rules found");
        for r in rules {
            for g in &r.api_groups {
                for res in &r.resources {
                    let (res, sub) = res.split_once('/').unwrap_or((res.as_str(), ""));
                    for v in &r.verbs {
                        assert!(
                            v != "*" && res != "*" && g != "*",
                            "{f}: wildcard in RBAC: {r:?}"
                        );
                        out.insert((v.clone(), g.clone(), res.to_string(), sub.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Granted pairs the workload does not exercise, with the reason they are still needed.
const MAY_BE_UNOBSERVED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "get",
        "tenantdb.io",
        "tenants",
        "",
        "a TenantMigration with target.tenant reads that one Tenant by name (no TenantMigration in this workload)",
    ),
    (
        "patch",
        "events.k8s.io",
        "events",
        "",
        "kube-runtime's Recorder patches an Event only when the same Event repeats (series)",
    ),
    (
        "get",
        "tenantdb.io",
        "tenantmigrations",
        "",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "list",
        "tenantdb.io",
        "tenantmigrations",
        "",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "watch",
        "tenantdb.io",
        "tenantmigrations",
        "",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "patch",
        "tenantdb.io",
        "tenantmigrations",
        "",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "get",
        "tenantdb.io",
        "tenantmigrations",
        "status",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "patch",
        "tenantdb.io",
        "tenantmigrations",
        "status",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "update",
        "tenantdb.io",
        "tenantmigrations",
        "status",
        "TenantMigration controller: only sent when a TenantMigration exists (not part of this workload)",
    ),
    (
        "get",
        "",
        "configmaps",
        "",
        "TenantMigration ConfigMap sources: only read when a TenantMigration names one",
    ),
    (
        "list",
        "",
        "configmaps",
        "",
        "TenantMigration ConfigMap sources: only read when a TenantMigration names one",
    ),
    (
        "watch",
        "",
        "configmaps",
        "",
        "TenantMigration ConfigMap sources: only read when a TenantMigration names one",
    ),
];

#[test]
fn chart_rbac_parses() {
    let g = granted_pairs();
    assert!(g.contains(&(
        "patch".into(),
        "tenantdb.io".into(),
        "tenants".into(),
        "status".into()
    )));
    assert!(g.contains(&(
        "create".into(),
        "coordination.k8s.io".into(),
        "leases".into(),
        "".into()
    )));
}

/// Runs a workload (create, rotate, rename the Secret, invalid spec, delete) with the operator
/// behind a recording proxy and leader election on; returns the Env, the passwords seen and the
/// operator's API calls.
async fn workload() -> (
    Env,
    Vec<String>,
    BTreeMap<reliability::ApiCall, u64>,
    String,
) {
    let mut env = Env::start().await;
    // Restart the operator behind the proxy, with leader election (Lease in `default`).
    env.kill_operator().await;
    let proxy = RecordingProxy::start(env.api.addr()).await;
    let kc = env.dir.join("proxy-kubeconfig");
    reliability::write_kubeconfig_for(&kc, proxy.addr);
    env.kubeconfig = kc;
    env.extra_args.extend(
        [
            "--leader-election",
            "--lease-namespace",
            "default",
            "--lease-duration-seconds",
            "3",
            "--lease-retry-seconds",
            "1",
            "--lease-clock-skew-seconds",
            "0",
        ]
        .map(String::from),
    );
    env.start_operator();
    reliability::log_all_statements(&env).await;
    let pg_mark = env.pg.log().len();

    let mut passwords = vec![env.pg.superuser_password().to_string()];
    for (name, iso) in [("alpha", "schema"), ("beta", "database")] {
        env.create_tenant("sec", name, json!({"isolation": iso, "deletionPolicy": "Delete", "credentials": {"gracePeriod": "2s"}}))
            .await;
    }
    env.create_tenant(
        "sec",
        "broken",
        json!({"isolation": "database", "databaseName": "none"}),
    )
    .await;
    for name in ["alpha", "beta"] {
        env.wait_ready("sec", name, T).await;
        passwords.push(
            env.secret_value("sec", &format!("{name}-db"), "password")
                .await
                .unwrap(),
        );
    }
    for name in ["alpha", "beta"] {
        passwords.push(rotate(&env, "sec", name, "r1").await);
    }
    // Rename alpha's Secret: the operator writes the new one and deletes the old one.
    env.tenants("sec")
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"secretName": "alpha-creds"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "old Secret removed after rename", || async {
        env.secrets("sec")
            .get_opt("alpha-db")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(&env)));
    env.wait_ready("sec", "alpha", T).await;
    passwords.push(
        env.secret_value("sec", "alpha-creds", "password")
            .await
            .unwrap(),
    );
    // Everything the operator reported, captured before deletion.
    let mut reported = String::new();
    for t in env
        .tenants("sec")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        reported.push_str(&serde_json::to_string(&t.status).unwrap());
    }
    for name in ["alpha", "beta", "broken"] {
        env.delete_tenant("sec", name).await;
    }
    for name in ["alpha", "beta", "broken"] {
        env.wait_gone("sec", name, T).await;
    }
    // Wait for at least one Lease renewal by the operator.
    let calls = wait_for(T, "a Lease renewal", || {
        let s = proxy.snapshot();
        async move {
            s.contains_key(&(
                "update".into(),
                "coordination.k8s.io".into(),
                "leases".into(),
                "".into(),
            ))
            .then_some(s)
        }
    })
    .await
    .unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(env.client.clone());
    reported.push_str(
        &serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    let core: Api<CoreEvent> = Api::all(env.client.clone());
    reported.push_str(
        &serde_json::to_string(&core.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    reported.push_str("\n--- pg log ---\n");
    reported.push_str(&env.pg.log()[pg_mark..]);
    (env, passwords, calls, reported)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_leaks_and_rbac_matches_what_the_operator_uses() {
    let started = std::time::Instant::now();
    let (env, passwords, calls, reported) = workload().await;
    assert!(
        reported.contains("statement:"),
        "statement logging not active"
    );
    let log = env.operator_log();
    for (i, pw) in passwords.iter().enumerate() {
        assert!(pw.len() >= 16, "password {i} is short");
        assert!(
            !log.contains(pw.as_str()),
            "password #{i} in the operator log"
        );
        let (status_events, pg_log) = reported.split_once("\n--- pg log ---\n").unwrap();
        assert!(
            !status_events.contains(pw.as_str()),
            "password #{i} in Tenant status or Events"
        );
        assert!(
            !pg_log.contains(pw.as_str()),
            "password #{i} in the PostgreSQL server log (log_statement = all)"
        );
    }

    // RBAC: observed ⊆ granted.
    let granted = granted_pairs();
    let observed: BTreeSet<Pair> = calls
        .keys()
        .map(|(v, g, r, s)| (v.clone(), g.clone(), r.clone(), s.clone()))
        .collect();
    eprintln!("operator API calls: {:?}", calls);
    // The proxy saw the operator's traffic (and the emulator counted at least as much).
    let stats = env.api.stats();
    for (v, _g, r, s) in &observed {
        assert!(
            stats.count(v, r, Some(s)) > 0,
            "proxy saw {v} {r}/{s} but the emulator did not"
        );
    }
    let not_granted: Vec<&Pair> = observed.iter().filter(|p| !granted.contains(*p)).collect();
    assert!(
        not_granted.is_empty(),
        "the operator uses API calls the chart does not grant: {not_granted:#?}"
    );
    eprintln!("security workload: {:.1}s", started.elapsed().as_secs_f64());
}

/// The chart grants nothing the operator does not use. (Regression: it used to grant `update` and
/// `create` verbs the operator never sends: it patches finalizers with JSON patch and writes status
/// and Secrets with server-side apply.) The workload covers create, rotate, Secret rename, invalid
/// spec, delete and leader election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_grants_nothing_the_operator_does_not_use() {
    let (_env, _passwords, calls, _reported) = workload().await;
    let observed: BTreeSet<Pair> = calls
        .keys()
        .map(|(v, g, r, s)| (v.clone(), g.clone(), r.clone(), s.clone()))
        .collect();
    let allowed: BTreeSet<Pair> = MAY_BE_UNOBSERVED
        .iter()
        .map(|(v, g, r, s, _)| (v.to_string(), g.to_string(), r.to_string(), s.to_string()))
        .collect();
    let unused: Vec<Pair> = granted_pairs()
        .into_iter()
        .filter(|p| !observed.contains(p) && !allowed.contains(p))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants API calls the operator never made and no allow-list entry explains: {unused:#?}"
    );
}
