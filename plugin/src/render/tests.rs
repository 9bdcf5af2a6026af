//! Exact rendering of `status` for fixed Tenants and a fixed "now" (the end-to-end snapshots mask
//! times and sizes; these do not), including `status.statistics` as the operator writes it
//! (`/work/notes/contract.md` of issue 19) and its absence.

use super::*;
use crate::view::TenantView;
use serde_json::json;

fn now() -> Timestamp {
    "2026-12-02T12:00:00Z".parse().unwrap()
}

fn full() -> serde_json::Value {
    json!({
        "metadata": {"namespace": "team-a", "name": "crm", "labels": {"tier": "gold"}},
        "spec": {"isolation": "database", "quotas": {"maxConnections": 20, "storage": "64Mi"}},
        "status": {
            "phase": "Ready",
            "placement": {"postgres": "pg-eu-1"},
            "database": "tenant_team_a_crm_1a2b3c4d",
            "schema": "public",
            "role": "tenant_team_a_crm_1a2b3c4d",
            "secretName": "crm-db",
            "schemaVersion": 20250101000007_i64,
            "usage": {"storageBytes": 8_600_000, "storageLimitBytes": 67_108_864, "percent": 12,
                      "readOnly": false, "measuredAt": "2026-12-02T11:59:00Z"},
            "health": {"healthy": true, "lastChecked": "2026-12-02T11:58:00Z", "latencyMs": 10,
                       "message": "ok"},
            "credentials": {"activeUser": "tenant_team_a_crm_1a2b3c4d_b",
                            "rotatedAt": "2026-12-02T09:00:00Z",
                            "previousUser": "tenant_team_a_crm_1a2b3c4d",
                            "previousValidUntil": "2026-12-02T10:00:00Z"},
            "statistics": {
                "measuredAt": "2026-12-02T11:59:30Z",
                "connections": {"total": 3, "active": 1, "idle": 2, "idleInTransaction": 0, "limit": 20},
                "transactions": {"commitsPerMinute": 120, "rollbacksPerMinute": 1, "deadlocks": 0,
                                 "tempBytes": 0, "cacheHitPercent": 99},
                "statements": {"available": true, "slowThresholdMs": 500, "slow": 1,
                               "slowest": [{"queryId": "-4242", "calls": 7, "meanMs": 812,
                                            "query": "SELECT *\n  FROM orders WHERE id = $1"}]}
            },
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "all good"}
            ]
        }
    })
}

fn migration(state: &str) -> tenantdb::crd::TenantMigration {
    serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"namespace": "team-a", "name": "v8"},
        "spec": {"target": {"selector": {"matchLabels": {"tier": "gold"}}}},
        "status": {"phase": "Running", "tenants": [{"name": "crm", "state": state}]}
    }))
    .unwrap()
}

#[test]
fn one_tenant_with_statistics_and_a_running_migration() {
    let v = TenantView::from_json(&full(), &[migration("Running")]);
    assert_eq!(
        tenant(&v, now()),
        "\
Tenant          team-a/crm
Phase           Ready
Server          pg-eu-1
Isolation       database
Database        tenant_team_a_crm_1a2b3c4d
Schema          public
Login role      tenant_team_a_crm_1a2b3c4d
Credentials     Secret crm-db (active role tenant_team_a_crm_1a2b3c4d_b)
Schema version  20250101000007
Storage         [###-----------------]  12 %  8.2 MiB of 64.0 MiB
Connections     [###-----------------]  15 %  3 of 20 (active 1, idle 2, idle in transaction 0)
Transactions    commitsPerMinute=120, rollbacksPerMinute=1, deadlocks=0, tempBytes=0, cacheHitPercent=99
Statements      available=true, slowThresholdMs=500, slow=1
Statistics      measured 30s ago
Health          healthy, 10 ms, checked 2m ago
Last rotation   2026-12-02T09:00:00Z (3h ago); previous role tenant_team_a_crm_1a2b3c4d valid until 2026-12-02T10:00:00Z
Migrations      v8 (Running, this tenant Running)

Slowest statements:
  QUERY ID   CALLS   MEAN     QUERY
  -4242      7       812 ms   SELECT * FROM orders WHERE id = $1

Conditions:
  TYPE    STATUS   REASON   MESSAGE
  Ready   True     Ready    all good
"
    );
}

#[test]
fn without_statistics_the_fields_show_a_dash() {
    let mut t = full();
    let st = t.pointer_mut("/status").unwrap().as_object_mut().unwrap();
    st.remove("statistics");
    st.remove("placement");
    st.remove("health");
    let v = TenantView::from_json(&t, &[migration("Succeeded")]);
    let text = tenant(&v, now());
    assert!(text.contains("\nServer          default\n"), "{text}");
    assert!(
        text.contains("\nConnections     - of 20 (no statistics yet)\n"),
        "{text}"
    );
    assert!(
        text.contains("\nHealth          - (not checked yet)\n"),
        "{text}"
    );
    assert!(text.contains("\nMigrations      none running\n"), "{text}");
    assert!(
        !text.contains("Transactions") && !text.contains("Statements"),
        "{text}"
    );
}

#[test]
fn the_fleet_table() {
    let mut other = full();
    other["metadata"]["name"] = json!("web");
    other["spec"] = json!({"isolation": "shared"});
    let st = other
        .pointer_mut("/status")
        .unwrap()
        .as_object_mut()
        .unwrap();
    for k in ["statistics", "credentials", "placement"] {
        st.remove(k);
    }
    st.insert("phase".into(), json!("Provisioning"));
    st.insert("usage".into(), json!({"storageBytes": 512}));
    st.insert(
        "health".into(),
        json!({"healthy": false, "message": "login failed"}),
    );
    let views = [
        TenantView::from_json(&full(), &[migration("Pending")]),
        TenantView::from_json(&other, &[]),
    ];
    assert_eq!(
        fleet(&views, true, now()),
        "\
NAMESPACE   NAME   PHASE          SERVER    ISOLATION   VERSION          STORAGE                CONNECTIONS   HEALTH      ROTATED   MIGRATIONS
team-a      crm    Ready          pg-eu-1   database    20250101000007   8.2 MiB/64.0 MiB 12%   3/20          ok 10ms     3h ago    v8 (Running, this tenant Pending)
team-a      web    Provisioning   default   shared      20250101000007   512 B                  -             UNHEALTHY   never     -

2 tenants: 1 Provisioning, 1 Ready; 1 unhealthy
"
    );
    assert_eq!(fleet(&[], false, now()), "No Tenants found.\n");
}

#[test]
fn bytes_bars_and_ages() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    assert_eq!(bar(0), format!("[{}]", "-".repeat(20)));
    assert_eq!(bar(100), format!("[{}]", "#".repeat(20)));
    assert_eq!(bar(250), bar(100));
    assert_eq!(bar(1), format!("[#{}]", "-".repeat(19)));
    assert_eq!(ago("2026-12-02T11:59:59Z", now()), "1s ago");
    assert_eq!(ago("2026-11-30T12:00:00Z", now()), "2d ago");
    assert_eq!(ago("garbage", now()), "garbage");
}
