//! The database servers tenants are placed on: the operator's default server (`--database-url`)
//! and one per `DatabaseServer` resource, each with its own admin pools, statistics collector
//! and shared-layout state ([`Server`]), kept in the [`Registry`]; and the pure placement
//! algorithm ([`placement`]).

pub mod placement;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::crd::Engine;
use crate::pg::PgAdmin;

/// What placement and status know of a server besides its connection: labels, capacity,
/// cordon, and the last probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The DatabaseServer's labels.
    pub labels: BTreeMap<String, String>,
    /// `capacity.maxTenants`.
    pub max_tenants: Option<i64>,
    /// `capacity.maxStorage` in bytes.
    pub max_storage: Option<i64>,
    /// `capacity.maxConnections`.
    pub max_connections: Option<i64>,
    /// `cordoned`.
    pub cordoned: bool,
    /// The last probe: `Ok(version)` or `Err(reason)`; `None` before the first.
    pub probe: Option<Result<String, String>>,
}

/// One PostgreSQL server tenants can live on.
pub struct Server {
    name: String,
    engine: Engine,
    pg: Arc<PgAdmin>,
    tenant_endpoint: (String, u16),
    statistics: crate::statistics::Collector,
    shared_layout: tokio::sync::Mutex<Option<(Instant, Option<i64>)>>,
    facts: Mutex<Facts>,
    /// Hash of what the connection was built from (endpoint, credentials, TLS): a change
    /// replaces the server's entry.
    config_hash: u64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("engine", &self.engine)
            .field("tenant_endpoint", &self.tenant_endpoint)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A PostgreSQL server named `name`, reached through `pg`; `tenant_endpoint` is written to
    /// tenants' Secrets.
    pub fn postgres(
        name: &str,
        pg: Arc<PgAdmin>,
        tenant_endpoint: (String, u16),
        usage_interval: Duration,
        slow_statement_ms: i64,
        config_hash: u64,
    ) -> Self {
        Self {
            name: name.to_string(),
            engine: Engine::Postgres,
            pg,
            tenant_endpoint,
            statistics: crate::statistics::Collector::new(name, usage_interval, slow_statement_ms),
            shared_layout: tokio::sync::Mutex::new(None),
            facts: Mutex::new(Facts::default()),
            config_hash,
        }
    }

    /// The server's name (its DatabaseServer's, or the default server's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// PostgreSQL admin access.
    pub fn pg(&self) -> &Arc<PgAdmin> {
        &self.pg
    }

    /// Host and port written to tenants' Secrets.
    pub fn tenant_endpoint(&self) -> &(String, u16) {
        &self.tenant_endpoint
    }

    /// The server's statistics collector (one snapshot per usage interval for all its tenants).
    pub fn statistics(&self) -> &crate::statistics::Collector {
        &self.statistics
    }

    /// The shared (row-level security) layout's last check on this server.
    pub fn shared_layout(&self) -> &tokio::sync::Mutex<Option<(Instant, Option<i64>)>> {
        &self.shared_layout
    }

    /// What the connection was built from (hashed).
    pub fn config_hash(&self) -> u64 {
        self.config_hash
    }

    /// Current facts.
    pub fn facts(&self) -> Facts {
        self.facts.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Replaces the facts from the spec, keeping the last probe.
    pub fn set_spec_facts(&self, mut facts: Facts) {
        if let Ok(mut f) = self.facts.lock() {
            facts.probe = f.probe.take();
            *f = facts;
        }
    }

    /// Records a probe result.
    pub fn set_probe(&self, probe: Result<String, String>) {
        if let Ok(mut f) = self.facts.lock() {
            f.probe = Some(probe);
        }
    }

    /// Probes the server now and records the result.
    pub async fn probe(&self) -> Result<String, String> {
        let r = self.pg.server_version().await.map_err(|e| e.to_string());
        if r.is_ok() {
            self.pg.mark_reachable();
        }
        self.set_probe(r.clone());
        r
    }
}

/// All servers, by name, and the placements being made.
#[derive(Debug, Default)]
pub struct Registry {
    servers: RwLock<BTreeMap<String, Arc<Server>>>,
    default: Option<String>,
    /// Tenant key → server name: placements made by this process (counted against capacity
    /// before the Tenant's status records them).
    reservations: Mutex<HashMap<String, String>>,
    /// Serializes placement decisions (capacity is never overshot by concurrent reconciles).
    deciding: tokio::sync::Mutex<()>,
    synced: std::sync::atomic::AtomicBool,
    /// DatabaseServers reconciled at least once.
    seen: Mutex<std::collections::HashSet<String>>,
    /// PostgreSQL DatabaseServers that exist but cannot be used (admin Secret missing, invalid
    /// TLS settings): they may hold tenants nobody can look for now.
    unusable: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Registry {
    /// A registry holding the default server (if any).
    pub fn new(default: Option<Arc<Server>>) -> Self {
        let mut servers = BTreeMap::new();
        let name = default.map(|s| {
            let n = s.name().to_string();
            servers.insert(n.clone(), s);
            n
        });
        Self {
            servers: RwLock::new(servers),
            default: name,
            ..Default::default()
        }
    }

    /// The default server's name (for Tenants without `spec.placement`).
    pub fn default_name(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The default server.
    pub fn default_server(&self) -> Option<Arc<Server>> {
        self.default.as_deref().and_then(|n| self.get(n))
    }

    /// A server by name.
    pub fn get(&self, name: &str) -> Option<Arc<Server>> {
        self.servers.read().ok()?.get(name).cloned()
    }

    /// All servers, in name order.
    pub fn all(&self) -> Vec<Arc<Server>> {
        self.servers
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds or replaces a server. The default server's name cannot be taken.
    pub fn insert(&self, server: Arc<Server>) -> bool {
        if self.default.as_deref() == Some(server.name()) {
            return false;
        }
        if let Ok(mut m) = self.servers.write() {
            m.insert(server.name().to_string(), server);
        }
        true
    }

    /// Removes a server (its DatabaseServer is gone).
    pub fn remove(&self, name: &str) {
        self.set_unusable(name, None);
        if self.default.as_deref() == Some(name) {
            return;
        }
        if let Ok(mut m) = self.servers.write() {
            m.remove(name);
        }
    }

    /// Whether the DatabaseServers have been listed once (placement waits for it: a server not
    /// loaded yet could be the one holding a tenant, or the one with room).
    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the DatabaseServers as listed.
    pub fn mark_synced(&self) {
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Records that the DatabaseServer `name` was reconciled (registered or refused).
    pub fn mark_seen(&self, name: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.insert(name.to_string());
        }
    }

    /// Whether the DatabaseServer `name` was reconciled at least once.
    pub fn was_seen(&self, name: &str) -> bool {
        self.seen.lock().is_ok_and(|s| s.contains(name))
    }

    /// Records that the PostgreSQL DatabaseServer `name` cannot be used (`Some(why)`), or can.
    pub fn set_unusable(&self, name: &str, why: Option<String>) {
        if let Ok(mut u) = self.unusable.lock() {
            match why {
                Some(w) => u.insert(name.to_string(), w),
                None => u.remove(name),
            };
        }
    }

    /// The PostgreSQL DatabaseServers that exist but cannot be used, with why.
    pub fn unusable(&self) -> Vec<(String, String)> {
        self.unusable
            .lock()
            .map(|u| u.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// The lock placement decisions are made under.
    pub fn deciding(&self) -> &tokio::sync::Mutex<()> {
        &self.deciding
    }

    /// The server this process placed the tenant `key` on.
    pub fn reservation(&self, key: &str) -> Option<String> {
        self.reservations.lock().ok()?.get(key).cloned()
    }

    /// Records that the tenant `key` is placed on `server`.
    pub fn reserve(&self, key: &str, server: &str) {
        if let Ok(mut r) = self.reservations.lock() {
            r.insert(key.to_string(), server.to_string());
        }
    }

    /// Forgets the tenant `key`'s reservation (deleted).
    pub fn release(&self, key: &str) {
        if let Ok(mut r) = self.reservations.lock() {
            r.remove(key);
        }
    }

    /// All reservations: tenant key → server.
    pub fn reservations(&self) -> HashMap<String, String> {
        self.reservations
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}
