//! The database servers tenants are placed on, one [`Registry`] per engine: PostgreSQL servers
//! ([`Server`]: the operator's default server from `--database-url`, and one per postgres
//! `DatabaseServer`, each with its own admin pools, statistics collector and shared-layout state)
//! and MongoDB servers ([`MongoServer`]: the default one from `--mongodb-uri`, and one per mongodb
//! `DatabaseServer`); and the pure placement algorithm ([`placement`]).

pub mod placement;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::crd::Engine;
use crate::mongo::MongoAdmin;
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
    /// `cordoned` (or draining).
    pub cordoned: bool,
    /// `drain.maxConcurrentMoves`, when the server is being drained.
    pub draining: Option<i32>,
    /// The `metadata.generation` of the DatabaseServer these spec facts were taken from: facts
    /// of an older generation of the same object (`uid`) never replace newer ones (two watches of
    /// DatabaseServers, the tenant controller's and the server controller's, each write them from
    /// their own copy). Labels do not change the generation: a late write of the same generation
    /// can bring back old labels until the next pass of the server controller.
    pub generation: Option<i64>,
    /// The `metadata.uid` of that DatabaseServer (one re-created under the same name starts at
    /// generation 1 again).
    pub uid: Option<String>,
    /// The last probe: `Ok(version)` or `Err(reason)`; `None` before the first.
    pub probe: Option<Result<String, String>>,
    /// When its DatabaseServer was created (RFC 3339); `None` for the default server.
    pub created: Option<String>,
    /// `warmPool`: unclaimed tenant homes kept ready (the default server's come from the flags).
    pub warm_pool: crate::pg::warm::WarmPool,
    /// Why it takes no new tenants although it is reachable: it is another server's PostgreSQL
    /// cluster or MongoDB deployment under a second name (kept, like the probe, when the spec
    /// facts are replaced).
    pub duplicate_of: Option<Duplicate>,
}

/// A server that is another (older, or the default) server's cluster or deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// The server that keeps the tenants (the default server, or the oldest DatabaseServer).
    pub of: String,
    /// The `Schedulable` message naming it.
    pub message: String,
}

/// A server found holding a tenant (see [`one_per_cluster`]).
#[derive(Debug, Clone)]
pub struct Found<K> {
    /// The server's name.
    pub name: String,
    /// When its DatabaseServer was created (`None`: the default server).
    pub created: Option<String>,
    /// Whether it is the default server.
    pub is_default: bool,
    /// Which cluster (and, for PostgreSQL, which shared database) it is; `None`: unknown now.
    pub key: Option<K>,
}

/// Which of the servers `found` holding one tenant to keep: of several names of one cluster
/// (equal `key`s) only the one that keeps the tenants (the default server, else the oldest
/// DatabaseServer, then by name); servers whose key is unknown are all kept. Indices into
/// `found`, in order.
pub fn one_per_cluster<K: PartialEq>(found: &[Found<K>]) -> Vec<usize> {
    let rank = |f: &Found<K>| (!f.is_default, f.created.clone(), f.name.clone());
    (0..found.len())
        .filter(|&i| {
            let me = &found[i];
            let Some(key) = &me.key else {
                return true;
            };
            !found
                .iter()
                .any(|o| o.key.as_ref() == Some(key) && rank(o) < rank(me))
        })
        .collect()
}

/// Whether the spec facts `new` were taken from an older generation of the same DatabaseServer
/// than `current` (facts without a generation, the default server's, are never older; those of
/// another object of the same name never are).
fn is_older(new: &Facts, current: &Facts) -> bool {
    new.uid.is_some()
        && new.uid == current.uid
        && matches!((new.generation, current.generation), (Some(n), Some(c)) if n < c)
}

/// A server's [`Facts`], shared by its reconciles.
#[derive(Debug, Default)]
struct FactsCell(Mutex<Facts>);

impl FactsCell {
    fn get(&self) -> Facts {
        self.0.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn set_spec(&self, mut facts: Facts) {
        if let Ok(mut f) = self.0.lock() {
            if is_older(&facts, &f) {
                return;
            }
            facts.probe = f.probe.take();
            facts.duplicate_of = f.duplicate_of.take();
            *f = facts;
        }
    }

    fn set_probe(&self, probe: Result<String, String>) {
        if let Ok(mut f) = self.0.lock() {
            f.probe = Some(probe);
        }
    }

    fn set_duplicate_of(&self, why: Option<Duplicate>) {
        if let Ok(mut f) = self.0.lock() {
            f.duplicate_of = why;
        }
    }
}

/// What a registry needs of a server: its name, its facts, and what its connection was built
/// from.
pub trait Registered: Send + Sync {
    /// The server's name (its DatabaseServer's, or the default server's).
    fn name(&self) -> &str;
    /// Current facts.
    fn facts(&self) -> Facts;
    /// Replaces the facts from the spec, keeping the last probe; facts of an older generation
    /// than the current ones are ignored.
    fn set_spec_facts(&self, facts: Facts);
    /// Records a probe result.
    fn set_probe(&self, probe: Result<String, String>);
    /// What the connection was built from (hashed): a change replaces the entry.
    fn config_hash(&self) -> u64;
    /// Whether the server is known to be down between probes (connections failing).
    fn is_down(&self) -> bool {
        false
    }
}

/// One PostgreSQL server tenants can live on.
pub struct Server {
    name: String,
    engine: Engine,
    pg: Arc<PgAdmin>,
    tenant_endpoint: (String, u16),
    statistics: crate::statistics::Collector,
    shared_layout: tokio::sync::Mutex<Option<(Instant, Option<i64>)>>,
    facts: FactsCell,
    /// Hash of what the connection was built from (endpoint, credentials, TLS): a change
    /// replaces the server's entry.
    config_hash: u64,
    /// Which cluster it is (`moves::sql::cluster_identity`) and when that was read (or last
    /// tried): compared with the other servers' at each probe without asking each of them.
    identity: IdentityCell<ClusterIdentity>,
    /// Whether the warm pool's filler must look at this server although it wants no entries
    /// (until a round with nothing wanted succeeded: a pool turned off is emptied once).
    pool_seen: std::sync::atomic::AtomicBool,
}

/// `system_identifier` and postmaster start time of a PostgreSQL cluster.
pub type ClusterIdentity = (String, String);

/// How long a server's recorded identity is used before it is read again (a restart changes
/// it; a DatabaseServer's own probe reads it every time).
const IDENTITY_FRESH: Duration = Duration::from_secs(30);

/// Which cluster (or deployment) a server is, as last read, and when that was read or last
/// tried; shared by PostgreSQL and MongoDB servers.
#[derive(Debug)]
struct IdentityCell<T>(Mutex<Option<(Instant, Option<T>)>>);

impl<T> Default for IdentityCell<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T: Clone> IdentityCell<T> {
    /// Records a read (`None`: it failed) and answers the identity to use: a failed read keeps
    /// (and answers) the last one known, stamped now, so that it is tried again only once that
    /// is no longer fresh (an unreachable server does not slow every probe).
    fn record(&self, read: Option<T>) -> Option<T> {
        let Ok(mut m) = self.0.lock() else {
            return read;
        };
        let kept = read.or_else(|| m.as_ref().and_then(|(_, i)| i.clone()));
        *m = Some((Instant::now(), kept.clone()));
        kept
    }

    /// The recorded identity while it is fresh (`Some(None)`: the last try found none); `None`
    /// when it must be read again.
    fn fresh(&self) -> Option<Option<T>> {
        self.0.lock().ok().and_then(|m| {
            m.as_ref()
                .filter(|(at, _)| at.elapsed() < IDENTITY_FRESH)
                .map(|(_, i)| i.clone())
        })
    }
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
            facts: FactsCell::default(),
            config_hash,
            identity: IdentityCell::default(),
            pool_seen: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Whether the warm pool's filler still looks at this server when it wants no entries.
    pub fn pool_seen(&self) -> bool {
        self.pool_seen.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// See [`Server::pool_seen`].
    pub fn set_pool_seen(&self, seen: bool) {
        self.pool_seen
            .store(seen, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reads which cluster this is now and records it (the last identity known if it cannot be
    /// read).
    pub async fn read_identity(&self) -> Option<ClusterIdentity> {
        let id = tokio::time::timeout(
            Duration::from_secs(5),
            crate::moves::sql::cluster_identity(&self.pg),
        )
        .await
        .ok()
        .and_then(|r| r.ok());
        self.identity.record(id)
    }

    /// Which cluster this is: the recorded identity while fresh, else read now.
    pub async fn identity(&self) -> Option<ClusterIdentity> {
        match self.identity.fresh() {
            Some(id) => id,
            None => self.read_identity().await,
        }
    }

    /// The server's name (its DatabaseServer's, or the default server's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current facts.
    pub fn facts(&self) -> Facts {
        self.facts.get()
    }

    /// Replaces the facts from the spec, keeping the last probe; facts of an older generation
    /// than the current ones are ignored.
    pub fn set_spec_facts(&self, facts: Facts) {
        self.facts.set_spec(facts);
    }

    /// Records a probe result.
    pub fn set_probe(&self, probe: Result<String, String>) {
        self.facts.set_probe(probe);
    }

    /// Records that the server is (`Some(why)`) or is not another server's cluster.
    pub fn set_duplicate_of(&self, why: Option<Duplicate>) {
        self.facts.set_duplicate_of(why);
    }

    /// What the connection was built from (hashed).
    pub fn config_hash(&self) -> u64 {
        self.config_hash
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

impl Registered for Server {
    fn name(&self) -> &str {
        &self.name
    }
    fn facts(&self) -> Facts {
        self.facts.get()
    }
    fn set_spec_facts(&self, facts: Facts) {
        self.facts.set_spec(facts);
    }
    fn set_probe(&self, probe: Result<String, String>) {
        self.facts.set_probe(probe);
    }
    fn config_hash(&self) -> u64 {
        self.config_hash
    }
    fn is_down(&self) -> bool {
        self.pg.is_down()
    }
}

/// One MongoDB server tenants' MongoDB databases can live on.
pub struct MongoServer {
    name: String,
    admin: Arc<MongoAdmin>,
    tenant_endpoint: (String, u16),
    facts: FactsCell,
    config_hash: u64,
    /// Which deployment it is (the identity its registry records) and when that was read (or
    /// last tried), as for PostgreSQL servers.
    identity: IdentityCell<String>,
}

impl std::fmt::Debug for MongoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoServer")
            .field("name", &self.name)
            .field("tenant_endpoint", &self.tenant_endpoint)
            .finish_non_exhaustive()
    }
}

impl MongoServer {
    /// A MongoDB server named `name`, reached through `admin`; `tenant_endpoint` is written to
    /// tenants' Secrets.
    pub fn new(
        name: &str,
        admin: Arc<MongoAdmin>,
        tenant_endpoint: (String, u16),
        config_hash: u64,
    ) -> Self {
        Self {
            name: name.to_string(),
            admin,
            tenant_endpoint,
            facts: FactsCell::default(),
            config_hash,
            identity: IdentityCell::default(),
        }
    }

    /// Reads which deployment this is now (at most 5 s), without falling back on what was
    /// recorded: for decisions that drop data. Records a successful read.
    pub async fn read_identity_now(&self) -> crate::error::Result<String> {
        let id = tokio::time::timeout(Duration::from_secs(5), self.admin.deployment_identity())
            .await
            .map_err(|_| {
                crate::error::Error::unavailable(format!(
                    "MongoDB server {}: reading its deployment identity timed out",
                    self.name
                ))
            })??;
        self.identity.record(Some(id.clone()));
        Ok(id)
    }

    /// Reads which deployment this is now (`MongoAdmin::deployment_identity`, at most 5 s) and
    /// records it; a failed read answers (and keeps) the last one known.
    pub async fn read_identity(&self) -> Option<String> {
        let id = tokio::time::timeout(Duration::from_secs(5), self.admin.deployment_identity())
            .await
            .ok()
            .and_then(|r| r.ok());
        self.identity.record(id)
    }

    /// Which deployment this is: the recorded identity while fresh, else read now.
    pub async fn identity(&self) -> Option<String> {
        match self.identity.fresh() {
            Some(id) => id,
            None => self.read_identity().await,
        }
    }

    /// The server's name (its DatabaseServer's, or the default server's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current facts.
    pub fn facts(&self) -> Facts {
        self.facts.get()
    }

    /// Replaces the facts from the spec, keeping the last probe; facts of an older generation
    /// than the current ones are ignored.
    pub fn set_spec_facts(&self, facts: Facts) {
        self.facts.set_spec(facts);
    }

    /// Records a probe result.
    pub fn set_probe(&self, probe: Result<String, String>) {
        self.facts.set_probe(probe);
    }

    /// Records that the server is (`Some(why)`) or is not another server's deployment.
    pub fn set_duplicate_of(&self, why: Option<Duplicate>) {
        self.facts.set_duplicate_of(why);
    }

    /// What the connection was built from (hashed).
    pub fn config_hash(&self) -> u64 {
        self.config_hash
    }

    /// MongoDB admin access.
    pub fn admin(&self) -> &Arc<MongoAdmin> {
        &self.admin
    }

    /// Host and port written to tenants' Secrets.
    pub fn tenant_endpoint(&self) -> &(String, u16) {
        &self.tenant_endpoint
    }

    /// Probes the server now (`buildInfo` with the admin credentials) and records the result.
    pub async fn probe(&self) -> Result<String, String> {
        let r = self.admin.server_version().await.map_err(|e| e.to_string());
        self.set_probe(r.clone());
        r
    }
}

impl Registered for MongoServer {
    fn name(&self) -> &str {
        &self.name
    }
    fn facts(&self) -> Facts {
        self.facts.get()
    }
    fn set_spec_facts(&self, facts: Facts) {
        self.facts.set_spec(facts);
    }
    fn set_probe(&self, probe: Result<String, String>) {
        self.facts.set_probe(probe);
    }
    fn config_hash(&self) -> u64 {
        self.config_hash
    }
}

/// All servers of one engine, by name, and the placements being made.
#[derive(Debug)]
pub struct Registry<S = Server> {
    servers: RwLock<BTreeMap<String, Arc<S>>>,
    default: Option<String>,
    /// Tenant key → server name: placements made by this process (counted against capacity
    /// before the Tenant's status records them).
    reservations: Mutex<HashMap<String, String>>,
    /// Serializes placement decisions (capacity is never overshot by concurrent reconciles).
    deciding: tokio::sync::Mutex<()>,
    synced: std::sync::atomic::AtomicBool,
    /// DatabaseServers reconciled at least once.
    seen: Mutex<std::collections::HashSet<String>>,
    /// DatabaseServers that exist but cannot be used (admin Secret missing, invalid TLS
    /// settings): they may hold tenants nobody can look for now.
    unusable: Mutex<std::collections::BTreeMap<String, String>>,
    /// Tenant key → the server it is moving away from: moves this process started and has not
    /// seen end (counted against a drain's `maxConcurrentMoves` before the status says so).
    moving: Mutex<HashMap<String, (String, String)>>,
}

impl<S> Default for Registry<S> {
    fn default() -> Self {
        Self {
            servers: RwLock::default(),
            default: None,
            reservations: Mutex::default(),
            deciding: tokio::sync::Mutex::default(),
            synced: std::sync::atomic::AtomicBool::default(),
            seen: Mutex::default(),
            unusable: Mutex::default(),
            moving: Mutex::default(),
        }
    }
}

impl<S: Registered> Registry<S> {
    /// A registry holding the default server (if any).
    pub fn new(default: Option<Arc<S>>) -> Self {
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
    pub fn default_server(&self) -> Option<Arc<S>> {
        self.default.as_deref().and_then(|n| self.get(n))
    }

    /// A server by name.
    pub fn get(&self, name: &str) -> Option<Arc<S>> {
        self.servers.read().ok()?.get(name).cloned()
    }

    /// All servers, in name order.
    pub fn all(&self) -> Vec<Arc<S>> {
        self.servers
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether there is any server (the default one, or a DatabaseServer's).
    pub fn has_any(&self) -> bool {
        self.servers.read().is_ok_and(|m| !m.is_empty())
    }

    /// Adds or replaces a server. The default server's name cannot be taken.
    pub fn insert(&self, server: Arc<S>) -> bool {
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

    /// Records that the tenant `key` started moving from `from` to `to`.
    pub fn start_move(&self, key: &str, from: &str, to: &str) {
        if let Ok(mut m) = self.moving.lock() {
            m.insert(key.to_string(), (from.to_string(), to.to_string()));
        }
    }

    /// Moves this process started and has not seen end: tenant key → (source, target).
    pub fn moving(&self) -> HashMap<String, (String, String)> {
        self.moving.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Moves this process started and has not seen end: tenant key → target.
    pub fn moving_to(&self) -> HashMap<String, String> {
        self.moving
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, (_, to))| (k.clone(), to.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records that the tenant `key`'s move ended.
    pub fn end_move(&self, key: &str) {
        if let Ok(mut m) = self.moving.lock() {
            m.remove(key);
        }
    }

    /// Tenants this process started moving away from `from` (and has not seen end).
    pub fn moving_from(&self, from: &str) -> std::collections::HashSet<String> {
        self.moving
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, (f, _))| f.as_str() == from)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// All reservations: tenant key → server.
    pub fn reservations(&self) -> HashMap<String, String> {
        self.reservations
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::{Facts, FactsCell, Found, one_per_cluster};

    #[test]
    fn spec_facts_of_an_older_generation_never_replace_newer_ones() {
        let cell = FactsCell::default();
        let of = |generation: Option<i64>, draining: Option<i32>| Facts {
            generation,
            uid: generation.map(|_| "u1".to_string()),
            draining,
            cordoned: draining.is_some(),
            ..Facts::default()
        };
        cell.set_probe(Ok("15".into()));
        cell.set_spec(of(Some(2), Some(1)));
        // A reconcile that read generation 1 before the drain writes after the mapper did.
        cell.set_spec(of(Some(1), None));
        assert_eq!(
            cell.get().draining,
            Some(1),
            "the drain was undone by older facts"
        );
        assert_eq!(cell.get().generation, Some(2));
        // The same generation again, and a newer one, replace them; the probe is kept.
        cell.set_spec(of(Some(2), Some(3)));
        assert_eq!(cell.get().draining, Some(3));
        cell.set_spec(of(Some(3), None));
        assert_eq!((cell.get().draining, cell.get().cordoned), (None, false));
        assert_eq!(cell.get().probe, Some(Ok("15".into())));
        // A DatabaseServer re-created under the same name starts at generation 1 again.
        cell.set_spec(Facts {
            generation: Some(1),
            uid: Some("u2".into()),
            draining: Some(2),
            ..Facts::default()
        });
        assert_eq!(
            cell.get().draining,
            Some(2),
            "a new object's facts were refused"
        );
        // Facts without a generation (the default server's) always apply.
        cell.set_spec(of(None, Some(1)));
        assert_eq!(cell.get().draining, Some(1));
    }

    fn found(name: &str, created: Option<&str>, key: Option<u8>) -> Found<u8> {
        Found {
            name: name.into(),
            created: created.map(str::to_string),
            is_default: created.is_none(),
            key,
        }
    }

    #[test]
    fn one_name_per_cluster_is_kept() {
        let (t1, t2) = (Some("2026-01-01T00:00:00Z"), Some("2026-02-01T00:00:00Z"));
        // Two names of cluster 1: the older keeps it; cluster 2 and an unknown one stay.
        let f = [
            found("b", t2, Some(1)),
            found("a", t1, Some(1)),
            found("c", t1, Some(2)),
            found("d", t2, None),
        ];
        assert_eq!(one_per_cluster(&f), vec![1, 2, 3]);
        // The default server keeps its cluster whatever the DatabaseServer's age.
        let f = [found("a", t1, Some(1)), found("default", None, Some(1))];
        assert_eq!(one_per_cluster(&f), vec![1]);
        // Created together: by name.
        let f = [found("y", t1, Some(1)), found("x", t1, Some(1))];
        assert_eq!(one_per_cluster(&f), vec![1]);
        // Unknown keys are never merged.
        let f = [found("a", t1, None), found("b", t2, None)];
        assert_eq!(one_per_cluster(&f), vec![0, 1]);
    }
}
