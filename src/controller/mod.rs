//! Controllers and their shared context.

pub mod migration;
pub mod tenant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use rand::Rng;
use tracing::warn;

use crate::metrics::Metrics;
use crate::migrate::MigrationSet;
use crate::pg::PgAdmin;

/// Operator-wide settings that shape reconciles.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// Prefix of derived PostgreSQL names (default `tenant_`).
    pub name_prefix: String,
    /// Which explicit names a namespace may claim (`--explicit-names`).
    pub explicit_names: crate::naming::ExplicitNames,
    /// Host written to credentials Secrets (default: the admin URL's host).
    pub tenant_host: Option<String>,
    /// Port written to credentials Secrets (default: the admin URL's port).
    pub tenant_port: Option<u16>,
    /// How often a Ready object is looked at again (drift repair).
    pub resync: Duration,
    /// First retry delay after a transient error.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// Operator-wide quota defaults.
    pub quota_defaults: crate::quota::QuotaDefaults,
    /// Maximum number of provisioned Tenants (the seed's `maxTenants`); `None` = unlimited.
    pub max_tenants: Option<usize>,
    /// Minimum time between storage measurements of one tenant.
    pub usage_interval: Duration,
    /// Minimum time between health checks of one tenant.
    pub health_interval: Duration,
    /// Health checks running at once.
    pub health_concurrency: usize,
    /// Routine resyncs of Ready, unchanged objects running at once (see [`Context::admit_resync`]).
    pub max_concurrent_resyncs: usize,
    /// TenantMigration rollout passes running at once (each migrates up to its `maxParallel`
    /// tenants at a time); they run in the background, outside the controller's reconcile slots.
    pub max_concurrent_rollouts: usize,
    /// Unchanged usage/health results are re-reported in status at most this often.
    pub status_report_interval: Duration,
    /// Minimum time between partition maintenance runs of one tenant.
    pub partition_interval: Duration,
    /// Monthly partitions kept ahead of the current month.
    pub partition_months_ahead: u32,
    /// Monthly partitions older than this many months are detached and dropped (`None` = keep).
    pub partition_retention_months: Option<u32>,
}

impl OperatorSettings {
    /// The resync interval with ±10 % jitter, so that tenants created together do not resync together.
    pub fn jittered_resync(&self) -> Duration {
        self.resync.mul_f64(rand::rng().random_range(0.9..1.1))
    }
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self {
            name_prefix: "tenant_".into(),
            explicit_names: crate::naming::ExplicitNames::Namespace,
            tenant_host: None,
            tenant_port: None,
            resync: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            field_manager: "tenantdb".into(),
            quota_defaults: Default::default(),
            max_tenants: None,
            usage_interval: Duration::from_secs(300),
            health_interval: Duration::from_secs(300),
            health_concurrency: 4,
            max_concurrent_resyncs: 4,
            max_concurrent_rollouts: 8,
            status_report_interval: Duration::from_secs(3600),
            partition_interval: Duration::from_secs(6 * 3600),
            partition_months_ahead: 2,
            partition_retention_months: None,
        }
    }
}

/// Per-object consecutive failures, for exponential backoff that holds however a reconcile is
/// triggered.
///
/// kube-runtime runs a reconcile as soon as any trigger arrives (a watch event of the object, of
/// an object it watches, its own status write), even when the error policy asked for a later
/// requeue. So the delay is also recorded here, with the facts of the object it was computed for
/// ([`Backoff::next_delay_for`]), and [`Backoff::hold`] tells a reconcile that arrives earlier,
/// for unchanged facts, to wait instead of retrying (a changed spec is retried at once).
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, Failing>>,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    count: u32,
    retry_at: Instant,
    facts: u64,
}

impl Backoff {
    /// Records a failure and returns the delay before the next attempt: base·2^(n-1), capped,
    /// with ±20 % jitter so that many objects failing together do not retry in lockstep.
    pub fn next_delay(&self, key: &str, base: Duration, max: Duration) -> Duration {
        self.next_delay_for(key, 0, base, max)
    }

    /// [`Backoff::next_delay`] for an object whose reconcile depends on `facts` (a hash of its
    /// generation, labels, annotations, …): [`Backoff::hold`] keeps reconciles with the same facts
    /// from retrying before the delay is over.
    pub fn next_delay_for(&self, key: &str, facts: u64, base: Duration, max: Duration) -> Duration {
        let Ok(mut m) = self.failures.lock() else {
            return base;
        };
        let n = m.get(key).map_or(0, |f| f.count).saturating_add(1);
        let exp = base.saturating_mul(1u32 << (n - 1).min(20));
        let capped = exp.min(max);
        let jitter = rand::rng().random_range(0.8..1.2);
        let delay = capped.mul_f64(jitter).min(max);
        m.insert(
            key.to_string(),
            Failing {
                count: n,
                retry_at: Instant::now() + delay,
                facts,
            },
        );
        delay
    }

    /// How long a reconcile of `key` with `facts` must still wait after the last failure (`None`:
    /// go ahead — no failure recorded, the delay is over, or the facts changed).
    pub fn hold(&self, key: &str, facts: u64) -> Option<Duration> {
        let now = Instant::now();
        let f = self.failures.lock().ok()?.get(key).copied()?;
        (f.facts == facts && f.retry_at > now).then(|| f.retry_at - now)
    }

    /// Forgets failures of an object after a success.
    pub fn reset(&self, key: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(key);
        }
    }

    /// Current consecutive failures.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|f| f.count))
            .unwrap_or(0)
    }
}

/// A hash of what a reconcile of `obj` depends on besides the outside world (see [`MetaFacts`]):
/// the key [`Backoff::hold`] compares.
pub fn facts_hash<K: Resource>(obj: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let f = MetaFacts::of(obj);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        f.uid,
        f.generation,
        f.deleting,
        f.finalizers,
        f.labels,
        f.annotations,
    )
        .hash(&mut h);
    h.finish()
}

/// Per-object values kept in memory by key (`kind/namespace/name`). A poisoned lock reads as
/// empty: this is a cache, never the source of truth.
#[derive(Debug)]
pub struct Memo<V>(Mutex<HashMap<String, V>>);

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Memo(Mutex::new(HashMap::new()))
    }
}

impl<V: Clone> Memo<V> {
    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<V> {
        self.0.lock().ok().and_then(|m| m.get(key).cloned())
    }

    /// Sets the value for `key`.
    pub fn set(&self, key: &str, value: V) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key.to_string(), value);
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }

    /// Runs `f` on the whole map.
    pub fn with<R>(&self, f: impl FnOnce(&HashMap<String, V>) -> R) -> Option<R> {
        self.0.lock().ok().map(|m| f(&m))
    }

    /// Keeps only the entries whose key `keep` accepts.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| keep(k));
        }
    }
}

/// Resource versions of one object that our own status writes have superseded.
#[derive(Clone, Debug, Default)]
pub struct Superseded {
    /// Versions older than our latest write (bounded; oldest dropped first).
    superseded: std::collections::VecDeque<String>,
    /// The version our latest write produced.
    latest: Option<String>,
}

impl Superseded {
    /// At most this many versions are remembered per object.
    const CAP: usize = 8;

    fn record(&mut self, base: Option<String>, written: Option<String>) {
        let older = [base, self.latest.take()];
        for v in older.into_iter().flatten() {
            if written.as_ref() != Some(&v) && !self.superseded.contains(&v) {
                self.superseded.push_back(v);
            }
        }
        while self.superseded.len() > Self::CAP {
            self.superseded.pop_front();
        }
        self.latest = written;
    }
}

/// The parts of an object its reconcile depends on besides the outside world: the spec (through
/// `generation`), labels and annotations (requests such as rotation), finalizers and deletion.
/// Not the status: that is the controllers' output (and another controller's `schemaVersion`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaFacts {
    uid: Option<String>,
    generation: Option<i64>,
    deleting: bool,
    finalizers: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
}

impl MetaFacts {
    /// The facts of `obj`.
    pub fn of<K: Resource>(obj: &K) -> Self {
        let m = obj.meta();
        MetaFacts {
            uid: m.uid.clone(),
            generation: m.generation,
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
        }
    }
}

/// A settled object: the facts its last complete, healthy reconcile saw, and when that reconcile
/// asked to be run again (the resync).
#[derive(Clone, Debug)]
pub struct Settled {
    facts: MetaFacts,
    due: Instant,
    /// How often an owned object had changed when that reconcile started.
    touches: u64,
}

impl Settled {
    /// How long a reconcile triggered at `now` for an object with `facts`, whose owned objects
    /// have changed `touches` times, can wait: until the due time when the object is settled with
    /// the same facts and no owned object changed since, `None` (reconcile now) otherwise.
    pub fn wait(&self, facts: &MetaFacts, touches: u64, now: Instant) -> Option<Duration> {
        (self.facts == *facts && self.touches == touches && now < self.due).then(|| self.due - now)
    }
}

/// Everything a reconcile needs; shared by all reconciles of a controller.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// PostgreSQL admin access.
    pub pg: Arc<PgAdmin>,
    /// Settings.
    pub settings: OperatorSettings,
    /// Event recorder.
    pub recorder: Recorder,
    /// This instance's name (Events' reporting instance).
    pub instance: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Failure counts.
    pub backoff: Backoff,
    /// The migration set bundled with the operator.
    pub migrations: Arc<MigrationSet>,
    /// MongoDB admin access, when configured.
    pub mongo: Option<Arc<crate::mongo::MongoAdmin>>,
    /// Host and port written to Secrets for MongoDB.
    pub mongo_endpoint: Option<(String, u16)>,
    /// When the shared (row-level security) layout was last ensured, and its schema version.
    pub shared_layout: tokio::sync::Mutex<Option<(Instant, Option<i64>)>>,
    /// The Tenant controller's cache (set when the controller starts).
    pub tenant_store: std::sync::OnceLock<kube::runtime::reflector::Store<crate::crd::Tenant>>,
    /// Set once the Tenant cache has synced (its initial list is complete).
    pub tenant_cache_synced: std::sync::atomic::AtomicBool,
    /// Bounds concurrent health checks.
    pub health_permits: tokio::sync::Semaphore,
    /// Bounds concurrent routine resyncs.
    resync_permits: tokio::sync::Semaphore,
    usage: Memo<(Instant, i64)>,
    health: Memo<(Instant, crate::crd::HealthStatus)>,
    reported_usage: Memo<crate::crd::UsageStatus>,
    written: Memo<u64>,
    stale_rv: Memo<Superseded>,
    migration_written: Memo<crate::crd::TenantMigrationStatus>,
    partitions: Memo<Instant>,
    schema_versions: Memo<Option<i64>>,
    settled: Memo<Settled>,
    touches: Memo<u64>,
    /// Tenants admitted under `--max-tenants` (see [`Context::admit_tenant`]).
    admitted: Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Builds a context.
    pub fn new(
        client: Client,
        pg: Arc<PgAdmin>,
        settings: OperatorSettings,
        metrics: Arc<Metrics>,
        migrations: Arc<MigrationSet>,
        instance: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: "tenantdb".into(),
            instance: Some(instance.to_string()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            instance: instance.to_string(),
            client,
            pg,
            health_permits: tokio::sync::Semaphore::new(settings.health_concurrency.max(1)),
            resync_permits: tokio::sync::Semaphore::new(settings.max_concurrent_resyncs.max(1)),
            settings,
            metrics,
            backoff: Backoff::default(),
            migrations,
            tenant_store: std::sync::OnceLock::new(),
            tenant_cache_synced: std::sync::atomic::AtomicBool::new(false),
            shared_layout: tokio::sync::Mutex::new(None),
            mongo: None,
            mongo_endpoint: None,
            usage: Memo::default(),
            health: Memo::default(),
            reported_usage: Memo::default(),
            written: Memo::default(),
            stale_rv: Memo::default(),
            migration_written: Memo::default(),
            partitions: Memo::default(),
            schema_versions: Memo::default(),
            settled: Memo::default(),
            touches: Memo::default(),
            admitted: Mutex::new(std::collections::HashSet::new()),
        }
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
        let Ok(mut admitted) = self.admitted.lock() else {
            return false;
        };
        if admitted.contains(key) {
            return true;
        }
        let mut taken: std::collections::HashSet<String> = provisioned.into_iter().collect();
        if taken.contains(key) {
            admitted.insert(key.to_string());
            return true;
        }
        taken.extend(admitted.iter().cloned());
        if taken.len() >= max {
            return false;
        }
        admitted.insert(key.to_string());
        true
    }

    /// When a tenant's partitions were last maintained.
    pub fn partition_cache(&self, key: &str) -> Option<Instant> {
        self.partitions.get(key)
    }

    /// Records a partition maintenance run.
    pub fn set_partition_cache(&self, key: &str) {
        self.partitions.set(key, Instant::now());
    }

    /// Last storage measurement of a tenant.
    pub fn usage_cache(&self, key: &str) -> Option<(Instant, i64)> {
        self.usage.get(key)
    }

    /// Records a storage measurement (and the operator-wide storage gauge).
    pub fn set_usage_cache(&self, key: &str, bytes: i64) {
        self.usage.set(key, (Instant::now(), bytes));
        self.update_storage_gauge();
    }

    fn update_storage_gauge(&self) {
        if let Some(sum) = self.usage.with(|m| m.values().map(|(_, b)| *b).sum()) {
            self.metrics.storage_bytes.set(sum);
        }
    }

    /// The last health result of a tenant and when it was taken (in memory: the status in the
    /// reconciler's cache may be stale and must not erase a result).
    pub fn health_cache(&self, key: &str) -> Option<(Instant, crate::crd::HealthStatus)> {
        self.health.get(key)
    }

    /// Records a health result.
    pub fn set_health_cache(&self, key: &str, result: crate::crd::HealthStatus) {
        self.health.set(key, (Instant::now(), result));
    }

    /// The usage object last reported for a tenant.
    pub fn reported_usage(&self, key: &str) -> Option<crate::crd::UsageStatus> {
        self.reported_usage.get(key)
    }

    /// Records the usage object reported for a tenant.
    pub fn set_reported_usage(&self, key: &str, usage: crate::crd::UsageStatus) {
        self.reported_usage.set(key, usage);
    }

    /// Whether `hash` is the status this process last wrote for the object (so a reconcile that
    /// runs on a cached object older than that write does not write the same status again).
    pub fn already_written(&self, key: &str, hash: u64) -> bool {
        self.written.get(key) == Some(hash)
    }

    /// Remembers the hash of the status written for an object.
    pub fn set_written(&self, key: &str, hash: u64) {
        self.written.set(key, hash);
    }

    /// Whether the cached object (at `resource_version`) predates a status write of ours: it is
    /// the version a write was based on, or the result of an earlier write that a later one
    /// superseded (a reconcile that writes `Provisioning` and then `Ready` produces two versions;
    /// the cache may deliver the first before the second).
    pub fn is_stale(&self, key: &str, resource_version: Option<&str>) -> bool {
        resource_version.is_some_and(|rv| {
            self.stale_rv
                .get(key)
                .is_some_and(|s| s.superseded.iter().any(|v| v == rv))
        })
    }

    /// Records a status write that was based on `base` and produced `written`. A no-op write
    /// (`written == base`: no watch event will come) marks nothing stale.
    pub fn record_status_write(&self, key: &str, base: Option<String>, written: Option<String>) {
        let mut s = self.stale_rv.get(key).unwrap_or_default();
        s.record(base, written);
        self.stale_rv.set(key, s);
    }

    /// The last TenantMigration status this process wrote (the cache may not have it yet).
    pub fn migration_status(&self, key: &str) -> Option<crate::crd::TenantMigrationStatus> {
        self.migration_written.get(key)
    }

    /// Records a written TenantMigration status.
    pub fn set_migration_status(&self, key: &str, status: crate::crd::TenantMigrationStatus) {
        self.migration_written.set(key, status);
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

    /// Keys of objects of `kind` this process keeps state for (written status, stale versions,
    /// phase gauge).
    pub fn remembered_keys(&self, kind: &str) -> Vec<String> {
        let prefix = format!("{kind}/");
        let mut keys: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut collect = |k: &String| {
            if k.starts_with(&prefix) {
                keys.insert(k.clone());
            }
        };
        self.migration_written
            .with(|m| m.keys().for_each(&mut collect));
        self.stale_rv.with(|m| m.keys().for_each(&mut collect));
        self.written.with(|m| m.keys().for_each(&mut collect));
        for k in self.metrics.phase_keys() {
            collect(&k);
        }
        keys.into_iter().collect()
    }

    /// Records the schema version this process last brought a Tenant's database to (migrations by
    /// either controller). Status writes use it over the cached object's `schemaVersion`, which
    /// may predate the write that recorded it.
    pub fn set_schema_version(&self, key: &str, version: Option<i64>) {
        self.schema_versions.set(key, version);
    }

    /// A Tenant's schema version: the one recorded by [`Context::set_schema_version`] if any,
    /// else `cached` (from the cached object's status).
    pub fn schema_version_or(&self, key: &str, cached: Option<i64>) -> Option<i64> {
        self.schema_versions.get(key).unwrap_or(cached)
    }

    /// The Tenant cache, once it has synced (`None` before: callers list from the API instead).
    pub fn synced_tenant_store(
        &self,
    ) -> Option<&kube::runtime::reflector::Store<crate::crd::Tenant>> {
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
        self.settled.set(
            key,
            Settled {
                facts,
                due: Instant::now() + after,
                touches,
            },
        );
    }

    /// Makes the next reconcile of `key` do the full work.
    pub fn unsettle(&self, key: &str) {
        self.settled.remove(key);
    }

    /// Notes that an object owned by `key` changed: the next reconcile of `key` does the full
    /// work, even if a reconcile running now (which may not have seen the change) settles it.
    pub fn touch(&self, key: &str) {
        let n = self.touches(key);
        self.touches.set(key, n.wrapping_add(1));
    }

    /// How often objects owned by `key` changed (see [`Context::touch`]).
    pub fn touches(&self, key: &str) -> u64 {
        self.touches.get(key).unwrap_or(0)
    }

    /// How long a reconcile of `key` with `facts` may wait (see [`Settled::wait`]).
    pub fn settled_wait(&self, key: &str, facts: &MetaFacts) -> Option<Duration> {
        let touches = self.touches(key);
        self.settled
            .get(key)
            .and_then(|s| s.wait(facts, touches, Instant::now()))
    }

    /// Forgets per-object bookkeeping (object deleted).
    pub fn forget(&self, key: &str) {
        self.settled.remove(key);
        self.touches.remove(key);
        self.usage.remove(key);
        // The tenant's MongoDB measurement is kept under its own key.
        self.usage.remove(&format!("{key}/mongodb"));
        self.update_storage_gauge();
        self.health.remove(key);
        self.reported_usage.remove(key);
        self.written.remove(key);
        self.stale_rv.remove(key);
        self.partitions.remove(key);
        self.schema_versions.remove(key);
        self.migration_written.remove(key);
        if let Ok(mut a) = self.admitted.lock() {
            a.remove(key);
        }
        self.backoff.reset(key);
        self.metrics.set_phase(key, None);
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
        let note = bounded_note(note);
        // kube-runtime names Events `<object name>.<16 hex>`: past 253 bytes the API refuses them,
        // so Events of very long-named objects get a generated name instead (no series merging).
        if obj.meta().name.as_ref().is_some_and(|n| n.len() > 200) {
            self.event_generated_name(obj, type_, reason, action, note)
                .await;
            return;
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            warn!(error = %e, name = %obj.meta().name.clone().unwrap_or_default(), "failed to publish event");
        }
    }
}

impl Context {
    async fn event_generated_name<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        use k8s_openapi::api::events::v1::Event as K8sEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let ev = K8sEvent {
            metadata: kube::api::ObjectMeta {
                generate_name: Some("tenantdb-".into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            regarding: Some(obj.object_ref(&())),
            reporting_controller: Some("tenantdb".into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let api: kube::Api<K8sEvent> = kube::Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&Default::default(), &ev).await {
            warn!(error = %e, "failed to publish event");
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

/// `kind/namespace/name` key for per-object bookkeeping.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    object_key_for::<K>(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

/// [`object_key`] of the object `namespace/name` of kind `K`.
pub fn object_key_for<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", K::kind(&()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_notes_stay_under_the_events_api_limit() {
        assert_eq!(bounded_note("short".into()), "short");
        for n in [1023, 1024, 5000] {
            for unit in ["a", "é", "漢"] {
                let note = bounded_note(unit.repeat(n));
                assert!(note.len() <= MAX_EVENT_NOTE, "{} bytes", note.len());
            }
        }
        assert!(bounded_note("x".repeat(2000)).ends_with('…'));
    }

    #[test]
    fn a_settled_object_waits_for_its_resync_unless_its_facts_change() {
        let t: crate::crd::Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "generation": 2,
                         "finalizers": ["tenantdb.io/cleanup"]},
            "spec": {"isolation": "schema"},
            "status": {"phase": "Ready", "schemaVersion": 7},
        }))
        .unwrap();
        let now = Instant::now();
        let settled = Settled {
            facts: MetaFacts::of(&t),
            due: now + Duration::from_secs(30),
            touches: 4,
        };
        let waits = |t: &crate::crd::Tenant, at: Instant| settled.wait(&MetaFacts::of(t), 4, at);
        assert_eq!(waits(&t, now), Some(Duration::from_secs(30)));
        // An owned object (the Secret) changed since that reconcile started: reconcile.
        assert_eq!(settled.wait(&MetaFacts::of(&t), 5, now), None);
        // Status changes (another controller's schemaVersion, health, usage) are not facts.
        let mut migrated = t.clone();
        if let Some(st) = migrated.status.as_mut() {
            st.schema_version = Some(8);
        }
        assert!(waits(&migrated, now).is_some());
        // Due: reconcile.
        assert_eq!(waits(&t, now + Duration::from_secs(31)), None);
        // Spec, annotations (rotation requests), labels, finalizers, deletion, uid: reconcile.
        let mut spec = t.clone();
        spec.metadata.generation = Some(3);
        let mut rotate = t.clone();
        rotate.metadata.annotations = Some([("tenantdb.io/rotate".into(), "1".into())].into());
        let mut labels = t.clone();
        labels.metadata.labels = Some([("tier".into(), "gold".into())].into());
        let mut fins = t.clone();
        fins.metadata.finalizers = None;
        let mut deleting = t.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let mut recreated = t.clone();
        recreated.metadata.uid = Some("u2".into());
        for changed in [spec, rotate, labels, fins, deleting, recreated] {
            assert_eq!(waits(&changed, now), None, "{:?}", changed.metadata);
        }
    }

    #[test]
    fn every_version_before_our_latest_write_is_stale() {
        let memo = Memo::default();
        memo.set("k", Superseded::default());
        let ctx_check = |memo: &Memo<Superseded>, rv: &str| {
            memo.get("k")
                .is_some_and(|s| s.superseded.iter().any(|v| v == rv))
        };
        // One reconcile based on v1 writes Provisioning (v2) and then Ready (v3).
        let mut s = memo.get("k").unwrap_or_default();
        s.record(Some("1".into()), Some("2".into()));
        s.record(Some("1".into()), Some("3".into()));
        memo.set("k", s);
        assert!(ctx_check(&memo, "1"));
        assert!(
            ctx_check(&memo, "2"),
            "the intermediate write is superseded"
        );
        assert!(!ctx_check(&memo, "3"), "our latest write is current");
        assert!(!ctx_check(&memo, "4"), "newer versions are current");
        // A no-op write (nothing changed, no watch event will come) makes nothing stale.
        let mut noop = Superseded::default();
        noop.record(Some("7".into()), Some("7".into()));
        assert!(noop.superseded.is_empty());
        // Bounded.
        let mut s = memo.get("k").unwrap_or_default();
        for i in 10..40 {
            s.record(Some(i.to_string()), Some((i + 1000).to_string()));
        }
        assert!(s.superseded.len() <= Superseded::CAP);
        assert_eq!(s.latest.as_deref(), Some("1039"));
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let b = Backoff::default();
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let d1 = b.next_delay("k", base, max);
        assert!(d1 >= Duration::from_millis(800) && d1 <= Duration::from_millis(1200));
        let d2 = b.next_delay("k", base, max);
        assert!(d2 >= Duration::from_millis(1600) && d2 <= Duration::from_millis(2400));
        for _ in 0..30 {
            assert!(b.next_delay("k", base, max) <= max);
        }
        assert_eq!(b.failures("k"), 32);
        b.reset("k");
        assert_eq!(b.failures("k"), 0);
        assert!(b.next_delay("k", base, max) <= Duration::from_millis(1200));
    }

    #[test]
    fn backoff_holds_early_triggers_unless_the_facts_change() {
        let b = Backoff::default();
        assert_eq!(b.hold("k", 7), None, "no failure: go");
        let d = b.next_delay_for("k", 7, Duration::from_secs(10), Duration::from_secs(60));
        let held = b.hold("k", 7).expect("an early trigger waits");
        assert!(held <= d && held > Duration::from_secs(5));
        assert_eq!(b.hold("k", 8), None, "changed facts: retry at once");
        b.next_delay_for("j", 1, Duration::from_millis(1), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5)); // let the 1 ms delay pass
        assert_eq!(b.hold("j", 1), None, "delay over");
        b.reset("k");
        assert_eq!(b.hold("k", 7), None);
    }
}
