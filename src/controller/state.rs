//! Per-object state kept in memory by the controllers: **one map**, one entry per object
//! ([`ObjectState`]), so forgetting an object is one removal and a new piece of state cannot be
//! forgotten on deletion. Nothing here is the source of truth: it saves work (caches), spaces
//! retries (backoff) and guards status writes against a lagging cache ([`StatusGuard`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;
use rand::Rng;

use crate::crd::{HealthStatus, TenantMigrationStatus, UsageStatus};

/// Everything this process remembers about one object (`kind/namespace/name`).
#[derive(Debug, Default, Clone)]
pub struct ObjectState {
    /// Last PostgreSQL storage measurement (when, bytes).
    pub usage: Option<(Instant, i64)>,
    /// Last MongoDB storage measurement (when, bytes).
    pub mongo_usage: Option<(Instant, i64)>,
    /// Last health result (when, result).
    pub health: Option<(Instant, HealthStatus)>,
    /// The usage object last reported in status.
    pub reported_usage: Option<UsageStatus>,
    /// The last `dbStats` figures of the tenant's MongoDB database.
    pub mongo_statistics: Option<Box<crate::crd::MongoStatistics>>,
    /// The statistics object last reported in status.
    pub reported_statistics: Option<Box<crate::crd::StatisticsStatus>>,
    /// The status-write guard (what was written, which cached versions are stale).
    pub guard: StatusGuard,
    /// The TenantMigration status last written.
    pub migration_status: Option<Box<TenantMigrationStatus>>,
    /// When the tenant's partitions were last maintained.
    pub partitions: Option<Instant>,
    /// The schema version this process last brought the tenant to.
    pub schema_version: Option<Option<i64>>,
    /// Whether the tenant's schema or database was (re)created and its migrations to a version
    /// have not completed yet (`Some(Some(version))`: the next reconcile runs them again, else the
    /// recorded version would vouch for an empty schema) or have (`Some(None)`). `None`: not
    /// known in this process; the Tenant's `status.baselineDue` says (it outlives a restart).
    pub baseline_due: Option<Option<i64>>,
    /// Settled: its last reconcile completed healthy (see [`Settled`]).
    pub settled: Option<Settled>,
    /// How often objects it owns (its Secret) changed.
    pub touches: u64,
    /// Admitted under `--max-tenants`.
    pub admitted: bool,
    /// Consecutive failures and the backoff they imposed.
    pub failing: Option<Failing>,
}

/// The per-object state of all objects of a controller process. Entries are boxed and the
/// larger fields that most objects lack are boxed too: a map of 10,000 Tenants would otherwise
/// hold ~1 KiB in every bucket, used or not (bench/README.md, scenario 2c).
#[derive(Debug, Default)]
pub struct Objects(Mutex<HashMap<String, Box<ObjectState>>>);

impl Objects {
    /// Runs `f` on the state of `key` (created empty if missing). A poisoned lock (a panic while
    /// holding it) is recovered: this is a cache, never the source of truth.
    pub fn update<R>(&self, key: &str, f: impl FnOnce(&mut ObjectState) -> R) -> R {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(key.to_string()).or_default())
    }

    /// Reads the state of `key` (`None` when nothing is remembered).
    pub fn read<R>(&self, key: &str, f: impl FnOnce(&ObjectState) -> R) -> Option<R> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key).map(|s| f(s))
    }

    /// Forgets an object: one removal.
    pub fn forget(&self, key: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(key);
    }

    /// Runs `f` on the whole map (e.g. sums, admission counts).
    pub fn with_all<R>(&self, f: impl FnOnce(&HashMap<String, Box<ObjectState>>) -> R) -> R {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&m)
    }

    /// Runs `f` on the whole map, mutably (e.g. admission under one lock).
    pub fn with_all_mut<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, Box<ObjectState>>) -> R,
    ) -> R {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut m)
    }

    /// Keys of remembered objects starting with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.with_all(|m| {
            m.keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        })
    }
}

/// Consecutive failures of an object and the retry time they imposed (see [`Backoff`]).
#[derive(Debug, Clone, Copy)]
pub struct Failing {
    count: u32,
    retry_at: Instant,
    facts: u64,
}

/// Exponential backoff per object, held however a reconcile is triggered.
///
/// kube-runtime runs a reconcile as soon as any trigger arrives (a watch event of the object, of
/// an object it watches, its own status write), even when the error policy asked for a later
/// requeue. So the delay is also recorded here, with the facts of the object it was computed for
/// ([`Backoff::next_delay_for`]), and [`Backoff::hold`] tells a reconcile that arrives earlier,
/// for unchanged facts, to wait instead of retrying (a changed spec is retried at once).
#[derive(Debug, Clone, Copy)]
pub struct Backoff<'a>(pub(super) &'a Objects);

impl Backoff<'_> {
    /// Records a failure and returns the delay before the next attempt: base·2^(n-1), capped,
    /// with ±20 % jitter so that many objects failing together do not retry in lockstep.
    pub fn next_delay(&self, key: &str, base: Duration, max: Duration) -> Duration {
        self.next_delay_for(key, 0, base, max)
    }

    /// [`Backoff::next_delay`] for an object whose reconcile depends on `facts` (a hash of its
    /// generation, labels, annotations, …): [`Backoff::hold`] keeps reconciles with the same facts
    /// from retrying before the delay is over.
    pub fn next_delay_for(&self, key: &str, facts: u64, base: Duration, max: Duration) -> Duration {
        self.0.update(key, |s| {
            let n = s.failing.map_or(0, |f| f.count).saturating_add(1);
            let exp = base.saturating_mul(1u32 << (n - 1).min(20));
            let capped = exp.min(max);
            let jitter = rand::rng().random_range(0.8..1.2);
            let delay = capped.mul_f64(jitter).min(max);
            s.failing = Some(Failing {
                count: n,
                retry_at: Instant::now() + delay,
                facts,
            });
            delay
        })
    }

    /// How long a reconcile of `key` with `facts` must still wait after the last failure (`None`:
    /// go ahead — no failure recorded, the delay is over, or the facts changed).
    pub fn hold(&self, key: &str, facts: u64) -> Option<Duration> {
        let now = Instant::now();
        let f = self.0.read(key, |s| s.failing).flatten()?;
        (f.facts == facts && f.retry_at > now).then(|| f.retry_at - now)
    }

    /// Forgets failures of an object after a success.
    pub fn reset(&self, key: &str) {
        self.0.update(key, |s| s.failing = None);
    }

    /// Current consecutive failures.
    pub fn failures(&self, key: &str) -> u32 {
        self.0
            .read(key, |s| s.failing.map_or(0, |f| f.count))
            .unwrap_or(0)
    }
}

/// The status-write guard of one object, used by both controllers: the hash of the status this
/// process last wrote (a reconcile running on a cached object older than that write does not
/// write the same status again) and the resource versions our writes superseded (a cached object
/// at such a version is stale: computing status from it would write an older view back).
#[derive(Clone, Debug, Default)]
pub struct StatusGuard {
    written: Option<u64>,
    versions: Superseded,
}

impl StatusGuard {
    /// Whether `hash` is the status last written.
    pub fn already_written(&self, hash: u64) -> bool {
        self.written == Some(hash)
    }

    /// Whether a cached object at `resource_version` predates one of our writes.
    pub fn is_stale(&self, resource_version: Option<&str>) -> bool {
        resource_version.is_some_and(|rv| self.versions.superseded.iter().any(|v| v == rv))
    }

    /// Records a write of status `hash` (if known) that was based on `base` and produced
    /// `written`. A no-op write (`written == base`: no watch event will come) marks nothing stale.
    pub fn record(&mut self, hash: Option<u64>, base: Option<String>, written: Option<String>) {
        if hash.is_some() {
            self.written = hash;
        }
        self.versions.record(base, written);
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
    /// A settled object with `facts`, due again at `due`, whose owned objects had changed
    /// `touches` times.
    pub fn new(facts: MetaFacts, due: Instant, touches: u64) -> Self {
        Settled {
            facts,
            due,
            touches,
        }
    }

    /// How long a reconcile triggered at `now` for an object with `facts`, whose owned objects
    /// have changed `touches` times, can wait: until the due time when the object is settled with
    /// the same facts and no owned object changed since, `None` (reconcile now) otherwise.
    pub fn wait(&self, facts: &MetaFacts, touches: u64, now: Instant) -> Option<Duration> {
        (self.facts == *facts && self.touches == touches && now < self.due).then(|| self.due - now)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let settled = Settled::new(MetaFacts::of(&t), now + Duration::from_secs(30), 4);
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
        let mut g = StatusGuard::default();
        // One reconcile based on v1 writes Provisioning (v2) and then Ready (v3).
        g.record(Some(11), Some("1".into()), Some("2".into()));
        g.record(Some(12), Some("1".into()), Some("3".into()));
        assert!(g.is_stale(Some("1")));
        assert!(
            g.is_stale(Some("2")),
            "the intermediate write is superseded"
        );
        assert!(!g.is_stale(Some("3")), "our latest write is current");
        assert!(!g.is_stale(Some("4")), "newer versions are current");
        assert!(!g.is_stale(None));
        assert!(g.already_written(12) && !g.already_written(11));
        // A write without a known hash keeps the last hash.
        g.record(None, Some("3".into()), Some("5".into()));
        assert!(g.already_written(12));
        // A no-op write (nothing changed, no watch event will come) makes nothing stale.
        let mut noop = StatusGuard::default();
        noop.record(None, Some("7".into()), Some("7".into()));
        assert!(!noop.is_stale(Some("7")));
        // Bounded.
        for i in 10..40 {
            g.record(None, Some(i.to_string()), Some((i + 1000).to_string()));
        }
        assert!(g.versions.superseded.len() <= Superseded::CAP);
        assert_eq!(g.versions.latest.as_deref(), Some("1039"));
        assert!(!g.is_stale(Some("1039")) && g.is_stale(Some("1038")));
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let objects = Objects::default();
        let b = Backoff(&objects);
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
        let objects = Objects::default();
        let b = Backoff(&objects);
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
