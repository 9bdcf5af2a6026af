//! What the plugin shows about a Tenant, read from its raw JSON (fields a newer operator writes —
//! `status.statistics`, `status.placement` — are picked up when present and shown as `-` when not),
//! and which TenantMigrations concern it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;
use tenantdb::crd::{TenantMigration, TenantMigrationState};

use crate::cluster::{opt_i64, opt_str, secret_name, str_at};

/// The server a Tenant lives on when its status names none (a Tenant of an operator version
/// before placement, or not placed yet: shown as the default server's usual name).
pub const DEFAULT_SERVER: &str = "default";

/// Storage use (`status.usage`).
#[derive(Debug, Clone, PartialEq)]
pub struct Storage {
    pub bytes: i64,
    pub limit: Option<i64>,
    pub percent: Option<i64>,
    pub read_only: bool,
}

/// Connections (`status.statistics.connections`; the limit falls back to the quota).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connections {
    pub total: Option<i64>,
    pub active: Option<i64>,
    pub idle: Option<i64>,
    pub idle_in_transaction: Option<i64>,
    pub limit: Option<i64>,
}

/// The last health check (`status.health`).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub healthy: bool,
    pub latency_ms: Option<i64>,
    pub last_checked: Option<String>,
    pub message: String,
}

/// A TenantMigration that lists this tenant as running or pending.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningMigration {
    pub name: String,
    pub phase: String,
    pub state: String,
}

/// One condition of the Tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// Everything `status` shows about one Tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantView {
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub server: String,
    pub isolation: String,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub role: Option<String>,
    pub secret: String,
    pub version: Option<i64>,
    pub storage: Option<Storage>,
    pub connections: Connections,
    pub health: Option<Health>,
    pub rotated_at: Option<String>,
    pub active_user: Option<String>,
    pub previous_user: Option<String>,
    pub previous_valid_until: Option<String>,
    pub statistics_measured_at: Option<String>,
    /// `status.statistics.transactions` as written (shown key by key).
    pub transactions: Option<Value>,
    /// `status.statistics.statements` as written.
    pub statements: Option<Value>,
    pub mongodb: Option<String>,
    pub conditions: Vec<Cond>,
    pub migrations: Vec<RunningMigration>,
}

impl TenantView {
    /// Reads a Tenant's JSON; `migrations` are the TenantMigrations of its namespace.
    pub fn from_json(t: &Value, migrations: &[TenantMigration]) -> TenantView {
        let namespace = str_at(t, "/metadata/namespace");
        let name = str_at(t, "/metadata/name");
        let storage = t.pointer("/status/usage").map(|u| Storage {
            bytes: opt_i64(u, "/storageBytes").unwrap_or(0),
            limit: opt_i64(u, "/storageLimitBytes"),
            percent: opt_i64(u, "/percent"),
            read_only: u.pointer("/readOnly").and_then(Value::as_bool) == Some(true),
        });
        let c = "/status/statistics/connections";
        let connections = Connections {
            total: opt_i64(t, &format!("{c}/total")),
            active: opt_i64(t, &format!("{c}/active")),
            idle: opt_i64(t, &format!("{c}/idle")),
            idle_in_transaction: opt_i64(t, &format!("{c}/idleInTransaction")),
            limit: opt_i64(t, &format!("{c}/limit"))
                .or_else(|| opt_i64(t, "/spec/quotas/maxConnections")),
        };
        let health = t.pointer("/status/health").map(|h| Health {
            healthy: h.pointer("/healthy").and_then(Value::as_bool) == Some(true),
            latency_ms: opt_i64(h, "/latencyMs"),
            last_checked: opt_str(h, "/lastChecked"),
            message: str_at(h, "/message"),
        });
        let conditions = t
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| Cond {
                        type_: str_at(c, "/type"),
                        status: str_at(c, "/status"),
                        reason: str_at(c, "/reason"),
                        message: str_at(c, "/message"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        TenantView {
            phase: opt_str(t, "/status/phase").unwrap_or_else(|| "Pending".to_string()),
            server: opt_str(t, "/status/placement/postgres")
                .unwrap_or_else(|| DEFAULT_SERVER.to_string()),
            isolation: opt_str(t, "/spec/isolation").unwrap_or_else(|| "-".to_string()),
            database: opt_str(t, "/status/database"),
            schema: opt_str(t, "/status/schema"),
            role: opt_str(t, "/status/role"),
            secret: secret_name(t),
            version: opt_i64(t, "/status/schemaVersion"),
            storage,
            connections,
            health,
            rotated_at: opt_str(t, "/status/credentials/rotatedAt"),
            active_user: opt_str(t, "/status/credentials/activeUser"),
            previous_user: opt_str(t, "/status/credentials/previousUser"),
            previous_valid_until: opt_str(t, "/status/credentials/previousValidUntil"),
            statistics_measured_at: opt_str(t, "/status/statistics/measuredAt"),
            transactions: t.pointer("/status/statistics/transactions").cloned(),
            statements: t.pointer("/status/statistics/statements").cloned(),
            mongodb: opt_str(t, "/status/mongodb/database"),
            conditions,
            migrations: running_migrations(&namespace, &name, migrations),
            namespace,
            name,
        }
    }
}

/// The TenantMigrations of `namespace` whose per-tenant status lists `tenant` as running or pending.
pub fn running_migrations(
    namespace: &str,
    tenant: &str,
    migrations: &[TenantMigration],
) -> Vec<RunningMigration> {
    migrations
        .iter()
        .filter(|m| m.metadata.namespace.as_deref() == Some(namespace))
        .filter_map(|m| {
            let st = m.status.as_ref()?;
            let p = st.tenants.iter().find(|p| p.name == tenant)?;
            matches!(
                p.state,
                TenantMigrationState::Running | TenantMigrationState::Pending
            )
            .then(|| RunningMigration {
                name: m.metadata.name.clone().unwrap_or_default(),
                phase: st.phase.as_str().to_string(),
                state: format!("{:?}", p.state),
            })
        })
        .collect()
}

/// Whether a TenantMigration concerns `tenant` (with these labels): it names it, its selector
/// matches it, or its status lists it.
pub fn targets(m: &TenantMigration, tenant: &str, labels: &BTreeMap<String, String>) -> bool {
    let target = &m.spec.target;
    target.tenant.as_deref() == Some(tenant)
        || target
            .selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, labels))
        || m.status
            .as_ref()
            .is_some_and(|s| s.tenants.iter().any(|p| p.name == tenant))
}

/// Kubernetes label selector semantics (`matchLabels` and `matchExpressions` with `In`, `NotIn`,
/// `Exists`, `DoesNotExist`; an unknown operator matches nothing).
pub fn selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = s
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_exprs = s.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

/// The labels of a Tenant's JSON.
pub fn labels_of(t: &Value) -> BTreeMap<String, String> {
    t.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_follow_kubernetes_semantics() {
        let l = labels(&[("tier", "gold"), ("region", "eu")]);
        let sel = |ml: &[(&str, &str)], ex: Vec<(&str, &str, &[&str])>| LabelSelector {
            match_labels: (!ml.is_empty()).then(|| labels(ml)),
            match_expressions: (!ex.is_empty()).then(|| {
                ex.into_iter()
                    .map(|(k, op, vs)| LabelSelectorRequirement {
                        key: k.into(),
                        operator: op.into(),
                        values: Some(vs.iter().map(|s| s.to_string()).collect()),
                    })
                    .collect()
            }),
        };
        assert!(selector_matches(&sel(&[], vec![]), &l));
        assert!(selector_matches(&sel(&[("tier", "gold")], vec![]), &l));
        assert!(!selector_matches(&sel(&[("tier", "silver")], vec![]), &l));
        assert!(selector_matches(
            &sel(&[], vec![("region", "In", &["eu", "us"])]),
            &l
        ));
        assert!(!selector_matches(
            &sel(&[], vec![("region", "NotIn", &["eu"])]),
            &l
        ));
        assert!(selector_matches(
            &sel(&[], vec![("x", "DoesNotExist", &[])]),
            &l
        ));
        assert!(!selector_matches(&sel(&[], vec![("x", "Exists", &[])]), &l));
        assert!(!selector_matches(
            &sel(&[], vec![("tier", "Gt", &["1"])]),
            &l
        ));
    }

    #[test]
    fn the_server_is_the_recorded_placement() {
        let t = serde_json::json!({
            "metadata": {"namespace": "a", "name": "crm"},
            "spec": {"isolation": "schema"},
            "status": {"phase": "Ready", "placement": {"postgres": "pg-eu-2"}}
        });
        assert_eq!(TenantView::from_json(&t, &[]).server, "pg-eu-2");
    }

    #[test]
    fn a_tenant_without_status_shows_defaults() {
        let t = serde_json::json!({
            "metadata": {"namespace": "a", "name": "crm"},
            "spec": {"isolation": "schema", "quotas": {"maxConnections": 7}}
        });
        let v = TenantView::from_json(&t, &[]);
        assert_eq!(v.phase, "Pending");
        assert_eq!(v.server, "default");
        assert_eq!(v.secret, "crm-db");
        assert_eq!(v.connections.limit, Some(7));
        assert_eq!(v.connections.total, None);
        assert!(v.storage.is_none() && v.health.is_none());
    }
}
