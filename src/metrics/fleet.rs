//! Fleet gauges: tenants by server, isolation and phase; tenants near or over their quotas;
//! unhealthy tenants; connections of tenant roles — derived at scrape time from one small record
//! per tenant, so their label sets stay bounded whatever the number of tenants. Per-tenant series
//! are opt-in and capped (`--tenant-metrics-top`).

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A quota counts as "near" from this share of the limit on.
pub const NEAR_QUOTA: f64 = 0.8;

/// What the fleet gauges need to know of one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantFacts {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The database server holding it (`default` while there is one server).
    pub server: String,
    /// `database`, `schema` or `shared`.
    pub isolation: &'static str,
    /// Phase name.
    pub phase: &'static str,
    /// Measured storage, bytes.
    pub storage_bytes: Option<i64>,
    /// Storage quota, bytes.
    pub storage_limit: Option<i64>,
    /// Sessions by state: active, idle, idle in transaction, other.
    pub connections: [i64; 4],
    /// Connection limit.
    pub connection_limit: Option<i32>,
    /// The last health check failed.
    pub unhealthy: bool,
}

impl TenantFacts {
    fn connections_total(&self) -> i64 {
        self.connections.iter().sum()
    }
}

/// Which dimension picks the top N tenants that get per-tenant series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TopBy {
    /// Largest storage first.
    #[default]
    Storage,
    /// Most connections first.
    Connections,
}

/// `server`, `isolation`, `phase`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantsLabels {
    /// Database server.
    pub server: String,
    /// Isolation mode.
    pub isolation: String,
    /// Phase.
    pub phase: String,
}

/// `server`, `resource`, `level`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuotaLabels {
    /// Database server.
    pub server: String,
    /// `storage` or `connections`.
    pub resource: String,
    /// `near` (≥ 80 %, < 100 %) or `over` (≥ 100 %).
    pub level: String,
}

/// `server`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// Database server.
    pub server: String,
}

/// `server`, `state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// Database server.
    pub server: String,
    /// `active`, `idle`, `idle_in_transaction`, `other`.
    pub state: String,
}

/// `namespace`, `tenant` (opt-in series only).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// Namespace.
    pub namespace: String,
    /// Tenant name.
    pub tenant: String,
}

const STATES: [&str; 4] = ["active", "idle", "idle_in_transaction", "other"];

/// The fleet gauges and the per-tenant records they are derived from.
pub struct Fleet {
    /// Boxed: a map's empty buckets are the size of its value (the map at most doubles).
    facts: Mutex<HashMap<String, Box<TenantFacts>>>,
    top: usize,
    by: TopBy,
    tenants: Family<TenantsLabels, Gauge>,
    quota: Family<QuotaLabels, Gauge>,
    unhealthy: Family<ServerLabels, Gauge>,
    connections: Family<ConnectionLabels, Gauge>,
    tenant_storage: Family<TenantLabels, Gauge>,
    tenant_storage_limit: Family<TenantLabels, Gauge>,
    tenant_connections: Family<TenantLabels, Gauge>,
    tenant_connection_limit: Family<TenantLabels, Gauge>,
}

impl Fleet {
    /// Registers the fleet gauges (and, when `top` > 0, the per-tenant ones).
    pub fn register(registry: &mut Registry, top: usize, by: TopBy) -> Fleet {
        let f = Fleet {
            facts: Mutex::new(HashMap::new()),
            top,
            by,
            tenants: Family::default(),
            quota: Family::default(),
            unhealthy: Family::default(),
            connections: Family::default(),
            tenant_storage: Family::default(),
            tenant_storage_limit: Family::default(),
            tenant_connections: Family::default(),
            tenant_connection_limit: Family::default(),
        };
        registry.register(
            "tenants",
            "Tenants by database server, isolation mode and phase",
            f.tenants.clone(),
        );
        registry.register(
            "tenants_quota",
            "Tenants at or above 80 % (level near) or 100 % (level over) of a quota, by server and resource",
            f.quota.clone(),
        );
        registry.register(
            "tenants_unhealthy",
            "Tenants whose last health check failed, by server",
            f.unhealthy.clone(),
        );
        registry.register(
            "server_connections",
            "Sessions of tenant login roles by server and state (the operator's own sessions excluded)",
            f.connections.clone(),
        );
        if top > 0 {
            registry.register(
                "tenant_storage_bytes",
                "Measured storage of a tenant (opt-in: top N tenants only)",
                f.tenant_storage.clone(),
            );
            registry.register(
                "tenant_storage_limit_bytes",
                "Storage quota of a tenant (opt-in: top N tenants with a quota only)",
                f.tenant_storage_limit.clone(),
            );
            registry.register(
                "tenant_connections",
                "Sessions of a tenant's login roles (opt-in: top N tenants only)",
                f.tenant_connections.clone(),
            );
            registry.register(
                "tenant_connection_limit",
                "Connection limit of a tenant (opt-in: top N tenants with a limit only)",
                f.tenant_connection_limit.clone(),
            );
        }
        f
    }

    /// Records (or, with `None`, forgets) one tenant.
    pub fn set(&self, key: &str, facts: Option<TenantFacts>) {
        let Ok(mut m) = self.facts.lock() else {
            return;
        };
        match facts {
            Some(f) => {
                m.insert(key.to_string(), Box::new(f));
            }
            None => {
                m.remove(key);
            }
        }
    }

    /// Recomputes every fleet gauge from the records (called before each scrape: O(tenants)).
    pub fn refresh(&self) {
        let Ok(m) = self.facts.lock() else {
            return;
        };
        self.tenants.clear();
        self.quota.clear();
        self.unhealthy.clear();
        self.connections.clear();
        for f in m.values() {
            self.tenants
                .get_or_create(&TenantsLabels {
                    server: f.server.clone(),
                    isolation: f.isolation.into(),
                    phase: f.phase.into(),
                })
                .inc();
            let server = ServerLabels {
                server: f.server.clone(),
            };
            self.unhealthy
                .get_or_create(&server)
                .inc_by(i64::from(f.unhealthy));
            for (resource, used, limit) in [
                ("storage", f.storage_bytes, f.storage_limit),
                (
                    "connections",
                    Some(f.connections_total()),
                    f.connection_limit.map(i64::from),
                ),
            ] {
                for level in ["near", "over"] {
                    let g = self.quota.get_or_create(&QuotaLabels {
                        server: f.server.clone(),
                        resource: resource.into(),
                        level: level.into(),
                    });
                    if quota_level(used, limit) == Some(level) {
                        g.inc();
                    }
                }
            }
            for (i, state) in STATES.iter().enumerate() {
                self.connections
                    .get_or_create(&ConnectionLabels {
                        server: f.server.clone(),
                        state: (*state).into(),
                    })
                    .inc_by(f.connections[i]);
            }
        }
        if self.top > 0 {
            self.refresh_top(&m);
        }
    }

    fn refresh_top(&self, m: &HashMap<String, Box<TenantFacts>>) {
        self.tenant_storage.clear();
        self.tenant_storage_limit.clear();
        self.tenant_connections.clear();
        self.tenant_connection_limit.clear();
        for f in top_n(m.values().map(|f| &**f), self.top, self.by) {
            let l = TenantLabels {
                namespace: f.namespace.clone(),
                tenant: f.name.clone(),
            };
            self.tenant_storage
                .get_or_create(&l)
                .set(f.storage_bytes.unwrap_or(0));
            if let Some(limit) = f.storage_limit {
                self.tenant_storage_limit.get_or_create(&l).set(limit);
            }
            self.tenant_connections
                .get_or_create(&l)
                .set(f.connections_total());
            if let Some(limit) = f.connection_limit {
                self.tenant_connection_limit
                    .get_or_create(&l)
                    .set(i64::from(limit));
            }
        }
    }
}

/// `near` from 80 % to below 100 % of the limit, `over` from 100 %; `None` below or without a limit.
pub fn quota_level(used: Option<i64>, limit: Option<i64>) -> Option<&'static str> {
    let (used, limit) = (used?, limit?);
    if limit <= 0 {
        return None;
    }
    if used >= limit {
        Some("over")
    } else if used as f64 >= limit as f64 * NEAR_QUOTA {
        Some("near")
    } else {
        None
    }
}

/// The `n` tenants first by `by` (ties: namespace, then name, so the set is stable).
pub fn top_n<'a>(
    all: impl Iterator<Item = &'a TenantFacts>,
    n: usize,
    by: TopBy,
) -> Vec<&'a TenantFacts> {
    let mut v: Vec<&TenantFacts> = all.collect();
    let key = |f: &TenantFacts| match by {
        TopBy::Storage => f.storage_bytes.unwrap_or(0),
        TopBy::Connections => f.connections_total(),
    };
    v.sort_by(|a, b| {
        key(b)
            .cmp(&key(a))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(name: &str, storage: i64, limit: Option<i64>, conns: i64) -> TenantFacts {
        TenantFacts {
            namespace: "ns".into(),
            name: name.into(),
            server: "default".into(),
            isolation: "schema",
            phase: "Ready",
            storage_bytes: Some(storage),
            storage_limit: limit,
            connections: [conns, 0, 0, 0],
            connection_limit: Some(10),
            unhealthy: false,
        }
    }

    #[test]
    fn levels_and_top_n() {
        assert_eq!(quota_level(Some(79), Some(100)), None);
        assert_eq!(quota_level(Some(80), Some(100)), Some("near"));
        assert_eq!(quota_level(Some(100), Some(100)), Some("over"));
        assert_eq!(quota_level(Some(100), None), None);
        let all = [
            facts("a", 5, None, 9),
            facts("b", 50, None, 1),
            facts("c", 50, None, 2),
        ];
        let top: Vec<&str> = top_n(all.iter(), 2, TopBy::Storage)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(top, ["b", "c"]);
        let top: Vec<&str> = top_n(all.iter(), 1, TopBy::Connections)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(top, ["a"]);
    }

    #[test]
    fn gauges_are_bounded_and_capped() {
        let mut r = Registry::with_prefix("tenantdb");
        let fleet = Fleet::register(&mut r, 2, TopBy::Storage);
        for i in 0..50 {
            fleet.set(
                &format!("tenant/ns/t{i}"),
                Some(facts(
                    &format!("t{i}"),
                    i,
                    Some(50),
                    i64::from(i % 11 == 0) * 9,
                )),
            );
        }
        fleet.set("tenant/ns/t49", None);
        fleet.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        // 40..49 are ≥ 80 % of 50 (49 forgotten): 9 near.
        assert!(
            text.contains(
                "tenantdb_tenants_quota{server=\"default\",resource=\"storage\",level=\"near\"} 9"
            ),
            "{text}"
        );
        assert!(text.contains(
            "tenantdb_tenants{server=\"default\",isolation=\"schema\",phase=\"Ready\"} 49"
        ));
        // t0, t11, t22, t33, t44 have 9 of 10 connections: near their limit.
        assert!(text.contains(
            "tenantdb_tenants_quota{server=\"default\",resource=\"connections\",level=\"near\"} 5"
        ));
        assert_eq!(text.matches("tenantdb_tenant_storage_bytes{").count(), 2);
        assert!(text.contains("tenantdb_tenant_storage_bytes{namespace=\"ns\",tenant=\"t48\"} 48"));
    }
}
