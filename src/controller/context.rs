//! The context shared by all reconciles of the controllers: clients, settings, and the per-object
//! state ([`Objects`]). Built once ([`Context::new`]); its fields are private.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use kube::Resource;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use rand::Rng;
use tracing::warn;

use super::settings::OperatorSettings;
use super::state::{Backoff, MetaFacts, Objects, Settled};
use crate::crd::{HealthStatus, Tenant, TenantMigrationStatus, UsageStatus};
use crate::metrics::Metrics;
use crate::migrate::MigrationSet;

/// Everything a reconcile needs; shared by all reconciles of both controllers.
pub struct Context {
    client: Client,
    servers: Arc<crate::servers::Registry>,
    settings: OperatorSettings,
    recorder: super::events::EventRecorder,
    metrics: Arc<Metrics>,
    migrations: Arc<MigrationSet>,
    mongo_servers: Arc<crate::servers::Registry<crate::servers::MongoServer>>,
    tenant_store: std::sync::OnceLock<Store<Tenant>>,
    tenant_cache_synced: std::sync::atomic::AtomicBool,
    health_permits: tokio::sync::Semaphore,
    resync_permits: tokio::sync::Semaphore,
    objects: Objects,
    warm: tokio::sync::Notify,
    /// Tenants to reconcile now (see [`Context::wake_tenant`]); the receiver is taken once by
    /// the tenant controller.
    tenant_wakes: futures::channel::mpsc::UnboundedSender<ObjectRef<Tenant>>,
    tenant_wakes_rx:
        std::sync::Mutex<Option<futures::channel::mpsc::UnboundedReceiver<ObjectRef<Tenant>>>>,
    /// Per draining server (`engine/name`): the DatabaseServer (uid, generation) whose drain
    /// already queued its tenants.
    drains_woken: FirstPass,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Builds the context. `servers`: the PostgreSQL servers (the default one, and those of
    /// DatabaseServers as they are loaded); `mongo_servers`: the MongoDB servers (the default one
    /// when the operator has `--mongodb-uri`, and those of mongodb DatabaseServers).
    pub fn new(
        client: Client,
        servers: Arc<crate::servers::Registry>,
        mongo_servers: Arc<crate::servers::Registry<crate::servers::MongoServer>>,
        settings: OperatorSettings,
        metrics: Arc<Metrics>,
        migrations: Arc<MigrationSet>,
        instance: &str,
    ) -> Self {
        let (tenant_wakes, rx) = futures::channel::mpsc::unbounded();
        Self {
            tenant_wakes,
            tenant_wakes_rx: std::sync::Mutex::new(Some(rx)),
            drains_woken: FirstPass::default(),
            recorder: super::events::EventRecorder::new(client.clone(), "tenantdb", instance),
            client,
            servers,
            health_permits: tokio::sync::Semaphore::new(settings.health_concurrency.max(1)),
            resync_permits: tokio::sync::Semaphore::new(settings.max_concurrent_resyncs.max(1)),
            settings,
            metrics,
            migrations,
            mongo_servers,
            tenant_store: std::sync::OnceLock::new(),
            tenant_cache_synced: std::sync::atomic::AtomicBool::new(false),
            objects: Objects::default(),
            warm: tokio::sync::Notify::new(),
        }
    }

    /// Queues a reconcile of the Tenant `obj` (another controller found it has work: its server
    /// is being drained); nothing until the tenant controller took the queue
    /// ([`Context::take_tenant_wakes`]), so that it never grows where none runs.
    pub fn wake_tenant(&self, obj: ObjectRef<Tenant>) {
        let taken = self.tenant_wakes_rx.lock().is_ok_and(|r| r.is_none());
        if taken {
            let _ = self.tenant_wakes.unbounded_send(obj);
        }
    }

    /// Whether this is the first pass over the drain of the DatabaseServer `server` (`engine/name`)
    /// at this `uid` and `generation` (then it is recorded); `true` when either is unknown.
    pub fn first_drain_pass(
        &self,
        server: &str,
        uid: Option<&str>,
        generation: Option<i64>,
    ) -> bool {
        self.drains_woken.first(server, uid, generation)
    }

    /// The stream of [`Context::wake_tenant`]s, for the tenant controller's `reconcile_on`
    /// (`None` after the first call).
    pub fn take_tenant_wakes(
        &self,
    ) -> Option<futures::channel::mpsc::UnboundedReceiver<ObjectRef<Tenant>>> {
        self.tenant_wakes_rx.lock().ok().and_then(|mut r| r.take())
    }

    /// Wakes the warm pool's filler ([`crate::controller::warm`]): an entry was claimed.
    pub fn warm_notify(&self) -> &tokio::sync::Notify {
        &self.warm
    }

    /// Kubernetes client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The PostgreSQL servers.
    pub fn servers(&self) -> &Arc<crate::servers::Registry> {
        &self.servers
    }

    /// Settings.
    pub fn settings(&self) -> &OperatorSettings {
        &self.settings
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A server's statistics snapshot (one query per usage interval for all its tenants).
    pub async fn statistics(
        &self,
        server: &crate::servers::Server,
    ) -> Option<Arc<crate::statistics::Snapshot>> {
        server
            .statistics()
            .snapshot(server.pg(), &self.metrics)
            .await
    }

    /// The operator's migration set (bundled or `--migrations-dir`).
    pub fn migrations(&self) -> &Arc<MigrationSet> {
        &self.migrations
    }

    /// The MongoDB servers.
    pub fn mongo_servers(&self) -> &Arc<crate::servers::Registry<crate::servers::MongoServer>> {
        &self.mongo_servers
    }

    /// Per-object backoff.
    pub fn backoff(&self) -> Backoff<'_> {
        Backoff(&self.objects)
    }

    /// Bounds concurrent health checks.
    pub fn health_permits(&self) -> &tokio::sync::Semaphore {
        &self.health_permits
    }

    /// Sets the Tenant controller's cache (once, when the controller starts).
    pub fn set_tenant_store(&self, store: Store<Tenant>) {
        let _ = self.tenant_store.set(store);
    }

    /// Marks the Tenant cache as synced (its initial list is complete).
    pub fn mark_tenant_cache_synced(&self) {
        self.tenant_cache_synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Admission under `--max-tenants`: whether the Tenant `key` may be provisioned, given the
    /// keys of the Tenants the cache shows provisioned. Decided under one lock, and a Tenant that
    /// is admitted is counted from then on (before its status says `Provisioned`), so concurrent
    /// reconciles never admit more than `max` together. An admitted Tenant keeps its place until
    /// it is forgotten (deleted).
    pub fn admit_tenant(
        &self,
        key: &str,
        max: usize,
        provisioned: impl IntoIterator<Item = String>,
    ) -> bool {
        let mut taken: std::collections::HashSet<String> = provisioned.into_iter().collect();
        self.objects.with_all_mut(|m| {
            if m.get(key).is_some_and(|s| s.admitted) || taken.contains(key) {
                m.entry(key.to_string()).or_default().admitted = true;
                return true;
            }
            taken.extend(m.iter().filter(|(_, s)| s.admitted).map(|(k, _)| k.clone()));
            if taken.len() >= max {
                return false;
            }
            m.entry(key.to_string()).or_default().admitted = true;
            true
        })
    }

    /// When a tenant's partitions were last maintained.
    pub fn partition_cache(&self, key: &str) -> Option<Instant> {
        self.objects.read(key, |s| s.partitions).flatten()
    }

    /// Records a partition maintenance run.
    pub fn set_partition_cache(&self, key: &str) {
        self.objects
            .update(key, |s| s.partitions = Some(Instant::now()));
    }

    /// Forgets the last partition maintenance run: the next reconcile maintains them.
    pub fn forget_partition_cache(&self, key: &str) {
        self.objects.update(key, |s| s.partitions = None);
    }

    /// Last storage measurement of a tenant's PostgreSQL side.
    pub fn usage_cache(&self, key: &str) -> Option<(Instant, i64)> {
        self.objects.read(key, |s| s.usage).flatten()
    }

    /// Forgets a tenant's last storage measurement (the next one is taken at once).
    pub fn invalidate_usage(&self, key: &str) {
        self.objects.update(key, |s| s.usage = None);
    }

    /// Records a storage measurement (and the operator-wide storage gauge).
    pub fn set_usage_cache(&self, key: &str, bytes: i64) {
        self.objects
            .update(key, |s| s.usage = Some((Instant::now(), bytes)));
        self.update_storage_gauge();
    }

    /// Last storage measurement of a tenant's MongoDB database.
    pub fn mongo_usage_cache(&self, key: &str) -> Option<(Instant, i64)> {
        self.objects.read(key, |s| s.mongo_usage).flatten()
    }

    /// Records a MongoDB storage measurement (and the storage gauge).
    pub fn set_mongo_usage_cache(&self, key: &str, bytes: i64) {
        self.objects
            .update(key, |s| s.mongo_usage = Some((Instant::now(), bytes)));
        self.update_storage_gauge();
    }

    fn update_storage_gauge(&self) {
        let sum: i64 = self.objects.with_all(|m| {
            m.values()
                .map(|s| s.usage.map_or(0, |u| u.1) + s.mongo_usage.map_or(0, |u| u.1))
                .sum()
        });
        self.metrics.storage_bytes.set(sum);
    }

    /// The last health result of a tenant and when it was taken (in memory: the status in the
    /// reconciler's cache may be stale and must not erase a result).
    pub fn health_cache(&self, key: &str) -> Option<(Instant, HealthStatus)> {
        self.objects.read(key, |s| s.health.clone()).flatten()
    }

    /// Records a health result.
    pub fn set_health_cache(&self, key: &str, result: HealthStatus) {
        self.objects
            .update(key, |s| s.health = Some((Instant::now(), result)));
    }

    /// The usage object last reported for a tenant.
    pub fn reported_usage(&self, key: &str) -> Option<UsageStatus> {
        self.objects
            .read(key, |s| s.reported_usage.clone())
            .flatten()
    }

    /// Records the usage object reported for a tenant.
    pub fn set_reported_usage(&self, key: &str, usage: UsageStatus) {
        self.objects.update(key, |s| s.reported_usage = Some(usage));
    }

    /// The last `dbStats` figures of a tenant's MongoDB database.
    pub fn mongo_statistics(&self, key: &str) -> Option<crate::crd::MongoStatistics> {
        self.objects
            .read(key, |s| s.mongo_statistics.as_deref().cloned())
            .flatten()
    }

    /// Records `dbStats` figures of a tenant's MongoDB database.
    pub fn set_mongo_statistics(&self, key: &str, stats: crate::crd::MongoStatistics) {
        self.objects
            .update(key, |s| s.mongo_statistics = Some(Box::new(stats)));
    }

    /// The statistics object last reported for a tenant.
    pub fn reported_statistics(&self, key: &str) -> Option<crate::crd::StatisticsStatus> {
        self.objects
            .read(key, |s| s.reported_statistics.as_deref().cloned())
            .flatten()
    }

    /// Records the statistics object reported for a tenant.
    pub fn set_reported_statistics(&self, key: &str, stats: crate::crd::StatisticsStatus) {
        self.objects
            .update(key, |s| s.reported_statistics = Some(Box::new(stats)));
    }

    /// Whether `hash` is the status this process last wrote for the object (so a reconcile that
    /// runs on a cached object older than that write does not write the same status again).
    pub fn already_written(&self, key: &str, hash: u64) -> bool {
        self.objects
            .read(key, |s| s.guard.already_written(hash))
            .unwrap_or(false)
    }

    /// Whether the cached object (at `resource_version`) predates a status write of ours: it is
    /// the version a write was based on, or the result of an earlier write that a later one
    /// superseded (a reconcile that writes `Provisioning` and then `Ready` produces two versions;
    /// the cache may deliver the first before the second).
    pub fn is_stale(&self, key: &str, resource_version: Option<&str>) -> bool {
        self.objects
            .read(key, |s| s.guard.is_stale(resource_version))
            .unwrap_or(false)
    }

    /// Records a status write of status `hash` (if known) that was based on `base` and produced
    /// `written`.
    pub fn record_status_write(
        &self,
        key: &str,
        hash: Option<u64>,
        base: Option<String>,
        written: Option<String>,
    ) {
        self.objects
            .update(key, |s| s.guard.record(hash, base, written));
    }

    /// The TenantMigration status this process last wrote.
    pub fn migration_status(&self, key: &str) -> Option<TenantMigrationStatus> {
        self.objects
            .read(key, |s| s.migration_status.as_deref().cloned())
            .flatten()
    }

    /// Records the TenantMigration status written.
    pub fn set_migration_status(&self, key: &str, status: TenantMigrationStatus) {
        self.objects
            .update(key, |s| s.migration_status = Some(Box::new(status)));
    }

    /// Admission of a routine resync (a Ready object whose spec was already handled). Returns a
    /// permit to hold for the reconcile, or `None` when `max_concurrent_resyncs` resyncs are
    /// already running: the caller defers (requeues after [`Context::deferred_resync_delay`]).
    /// Without this, at saturation the scheduler hands out slots in due order and resyncs that
    /// are always overdue starve new Tenants; with it, the remaining slots serve them.
    pub fn admit_resync(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.resync_permits.try_acquire().ok()
    }

    /// When a deferred resync is tried again: a tenth of the resync interval (at least 1 s,
    /// at most 30 s), ±50 % jitter so deferred resyncs do not come back together.
    pub fn deferred_resync_delay(&self) -> Duration {
        let base =
            (self.settings.resync / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
        base.mul_f64(rand::rng().random_range(0.5..1.5))
    }

    /// Keys of objects of `kind` this process keeps state for (incl. the phase gauge).
    pub fn remembered_keys(&self, kind: &str) -> Vec<String> {
        let prefix = format!("{kind}/");
        let mut keys: std::collections::BTreeSet<String> =
            self.objects.keys_with_prefix(&prefix).into_iter().collect();
        keys.extend(
            self.metrics
                .phase_keys()
                .into_iter()
                .filter(|k| k.starts_with(&prefix)),
        );
        keys.into_iter().collect()
    }

    /// Records the schema version this process last brought a Tenant's database to (migrations by
    /// either controller). Status writes use it over the cached object's `schemaVersion`, which
    /// may predate the write that recorded it.
    pub fn set_schema_version(&self, key: &str, version: Option<i64>) {
        self.objects
            .update(key, |s| s.schema_version = Some(version));
    }

    /// The version a (re)created schema or database still has to be migrated to, if its
    /// migrations have not completed yet: what this process recorded, else `persisted` (the
    /// Tenant's `status.baselineDue`; see [`crate::controller::state::ObjectState::baseline_due`]).
    pub fn baseline_due_or(&self, key: &str, persisted: Option<i64>) -> Option<i64> {
        self.objects
            .read(key, |s| s.baseline_due)
            .flatten()
            .unwrap_or(persisted)
    }

    /// Records that the tenant's migrations are due to a version (`Some`) or complete (`None`)
    /// ([`Context::baseline_due_or`]).
    pub fn set_baseline_due(&self, key: &str, due: Option<i64>) {
        self.objects.update(key, |s| s.baseline_due = Some(due));
    }

    /// A Tenant's schema version: the one recorded by [`Context::set_schema_version`] if any,
    /// else `cached` (from the cached object's status).
    pub fn schema_version_or(&self, key: &str, cached: Option<i64>) -> Option<i64> {
        self.objects
            .read(key, |s| s.schema_version)
            .flatten()
            .unwrap_or(cached)
    }

    /// The Tenant cache, once it has synced (`None` before: callers list from the API instead).
    pub fn synced_tenant_store(&self) -> Option<&Store<Tenant>> {
        if self
            .tenant_cache_synced
            .load(std::sync::atomic::Ordering::Acquire)
        {
            self.tenant_store.get()
        } else {
            None
        }
    }

    /// Records that the object `key` is settled: its reconcile with `facts`, started when its
    /// owned objects had changed `touches` times ([`Context::touches`]), completed healthy and
    /// asked to run again after `after`. Until then, triggers that change none of its facts
    /// (another controller's status write, the watch event of our own write) skip the work.
    pub fn settle(&self, key: &str, facts: MetaFacts, touches: u64, after: Duration) {
        self.objects.update(key, |s| {
            s.settled = Some(Settled::new(facts, Instant::now() + after, touches))
        });
    }

    /// Makes the next reconcile of `key` do the full work.
    pub fn unsettle(&self, key: &str) {
        self.objects.update(key, |s| s.settled = None);
    }

    /// Notes that an object owned by `key` changed: the next reconcile of `key` does the full
    /// work, even if a reconcile running now (which may not have seen the change) settles it.
    pub fn touch(&self, key: &str) {
        self.objects
            .update(key, |s| s.touches = s.touches.wrapping_add(1));
    }

    /// How often objects owned by `key` changed (see [`Context::touch`]).
    pub fn touches(&self, key: &str) -> u64 {
        self.objects.read(key, |s| s.touches).unwrap_or(0)
    }

    /// How long a reconcile of `key` with `facts` may wait (see [`Settled::wait`]).
    pub fn settled_wait(&self, key: &str, facts: &MetaFacts) -> Option<Duration> {
        self.objects
            .read(key, |s| {
                s.settled
                    .as_ref()
                    .and_then(|st| st.wait(facts, s.touches, Instant::now()))
            })
            .flatten()
    }

    /// Forgets everything about an object (deleted): one removal, plus its phase gauge entry
    /// and its part of the storage gauge.
    pub fn forget(&self, key: &str) {
        self.objects.forget(key);
        self.servers.release(key);
        // A Tenant deleted while moving: its moves no longer count against a drain's limit,
        // placement or the room of other moves.
        self.servers.end_move(key);
        self.mongo_servers().end_move(key);
        self.update_storage_gauge();
        self.metrics.set_phase(key, None);
        self.metrics.fleet.set(key, None);
    }

    /// Publishes a Kubernetes Event on `obj`; failures to publish are logged, never fatal.
    pub async fn event<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let ev = super::events::Publish {
            type_,
            reason,
            action,
            note: bounded_note(note),
        };
        if let Err(e) = self.recorder.publish(ev, &obj.object_ref(&())).await {
            warn!(error = %e, name = %obj.meta().name.clone().unwrap_or_default(), "failed to publish event");
        }
    }
}

/// Longest Event note the Events API accepts (`note` must be shorter than 1 KiB).
pub const MAX_EVENT_NOTE: usize = 1023;

/// An Event note within [`MAX_EVENT_NOTE`] bytes: longer notes (an error message of a migration,
/// a list of steps) are cut at a character boundary and end with `…`; the reason is separate and
/// always kept.
pub fn bounded_note(note: String) -> String {
    if note.len() <= MAX_EVENT_NOTE {
        return note;
    }
    let mut end = MAX_EVENT_NOTE - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

/// Which object version (uid, generation) was last seen per key: [`FirstPass::first`].
#[derive(Debug, Default)]
struct FirstPass(std::sync::Mutex<std::collections::HashMap<String, (String, i64)>>);

impl FirstPass {
    /// Whether `key` is seen at this `uid` and `generation` for the first time (then recorded);
    /// `true` when either is unknown.
    fn first(&self, key: &str, uid: Option<&str>, generation: Option<i64>) -> bool {
        let (Some(uid), Some(generation)) = (uid, generation) else {
            return true;
        };
        let Ok(mut seen) = self.0.lock() else {
            return true;
        };
        let now = (uid.to_string(), generation);
        if seen.get(key) == Some(&now) {
            return false;
        }
        seen.insert(key.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::FirstPass;

    #[test]
    fn a_drain_queues_its_tenants_once_per_generation() {
        let p = FirstPass::default();
        assert!(p.first("mongodb/mv-0", Some("u1"), Some(2)));
        assert!(
            !p.first("mongodb/mv-0", Some("u1"), Some(2)),
            "again at the same generation"
        );
        assert!(
            p.first("postgres/mv-0", Some("u3"), Some(2)),
            "another server"
        );
        assert!(
            p.first("mongodb/mv-0", Some("u1"), Some(3)),
            "a new generation"
        );
        assert!(p.first("mongodb/mv-0", Some("u2"), Some(3)), "re-created");
        assert!(p.first("mongodb/mv-0", None, Some(3)), "unknown uid");
        assert!(p.first("mongodb/mv-0", None, Some(3)), "unknown uid, again");
    }
}
