//! Prometheus metrics. Label values are bounded: controller names, result, error categories and
//! phases are small fixed sets; no tenant names are used as labels.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub mod fleet;
use fleet::{Fleet, ServerLabels};
pub use fleet::{TenantFacts, TopBy};
use prometheus_client::registry::Registry;

/// `controller` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `tenant` or `tenantmigration`.
    pub controller: String,
}

/// `controller` + `result` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `tenant` or `tenantmigration`.
    pub controller: String,
    /// `success` or `error`.
    pub result: String,
}

/// `controller` + `category` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `tenant` or `tenantmigration`.
    pub controller: String,
    /// Error category (see `Error::category`).
    pub category: String,
}

/// `phase` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Phase name.
    pub phase: String,
}

/// `result` label of health checks.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    /// `healthy` or `unhealthy`.
    pub result: String,
}

/// `kind` label for SQL statements.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// Step kind (e.g. `CreateRole`).
    pub step: String,
}

/// `source` label of created dedicated databases.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DatabaseSourceLabels {
    /// `template` (a copy of the baseline's template database) or `template0` (empty, the
    /// baseline replayed).
    pub source: String,
}

/// `server` + `kind` labels of the warm pool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// The server's name.
    pub server: String,
    /// `schema` or `database`.
    pub kind: String,
}

/// `server` + `engine` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    /// Database server.
    pub server: String,
    /// `postgres` or `mongodb`.
    pub engine: String,
}

/// `version` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// The operator's version.
    pub version: String,
}

/// All metrics of one operator process.
pub struct Metrics {
    registry: Registry,
    /// Reconciles by controller and result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Reconcile errors by controller and category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration by controller.
    pub duration: Family<ControllerLabels, Histogram>,
    /// Objects by phase (Tenants; TenantMigrations use `migration_*` phases).
    pub phases: Family<PhaseLabels, Gauge>,
    /// Provisioning steps applied, by kind (drift repair shows up here).
    pub steps: Family<StepLabels, Counter>,
    /// Dedicated databases created, by source (template database or template0).
    pub databases_created: Family<DatabaseSourceLabels, Counter>,
    /// Status writes performed.
    pub status_writes: Family<ControllerLabels, Counter>,
    /// Routine resyncs deferred because `--max-concurrent-resyncs` were already running.
    pub resyncs_deferred: Family<ControllerLabels, Counter>,
    /// Reconciles of a settled object that nothing it depends on changed (skipped).
    pub reconciles_unchanged: Family<ControllerLabels, Counter>,
    /// Sum of measured storage of all tenants, in bytes.
    pub storage_bytes: Gauge,
    /// Health checks by result.
    pub health_checks: Family<HealthLabels, Counter>,
    /// Health check latency.
    pub health_latency: Histogram,
    /// Whether the last probe of a database server succeeded (1) or not (0).
    pub server_up: Family<EngineLabels, Gauge>,
    /// Slow normalised statements of tenant roles, by server.
    pub slow_statements: Family<ServerLabels, Gauge>,
    /// Whether `pg_stat_statements` can be read on a server.
    pub statements_available: Family<ServerLabels, Gauge>,
    /// 1 on the replica that acts (holds the lease, or runs without leader election).
    pub leader: Gauge,
    /// Unclaimed warm pool entries ready, by server and kind.
    pub warm_pool_ready: Family<PoolLabels, Gauge>,
    /// Warm pool entries claimed by new Tenants, by server and kind.
    pub warm_pool_claims: Family<PoolLabels, Counter>,
    /// Tenant migrations finished, by result.
    pub migration_tenants: Family<ResultOnlyLabels, Counter>,
    /// Tenants by server, isolation and phase; quota levels; unhealthy; connections.
    pub fleet: Fleet,
    phase_of: Mutex<HashMap<String, String>>,
}

/// `result` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultOnlyLabels {
    /// `succeeded` or `failed`.
    pub result: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `tenantdb` prefix, without per-tenant series.
    pub fn new() -> Self {
        Self::with_tenant_series(0, TopBy::Storage)
    }

    /// [`Metrics::new`] plus per-tenant series for the `top` tenants first by `by` (0: none).
    pub fn with_tenant_series(top: usize, by: TopBy) -> Self {
        let mut registry = Registry::with_prefix("tenantdb");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let phases = Family::<PhaseLabels, Gauge>::default();
        let steps = Family::<StepLabels, Counter>::default();
        let databases_created = Family::<DatabaseSourceLabels, Counter>::default();
        let status_writes = Family::<ControllerLabels, Counter>::default();
        let resyncs_deferred = Family::<ControllerLabels, Counter>::default();
        let reconciles_unchanged = Family::<ControllerLabels, Counter>::default();
        let storage_bytes = Gauge::default();
        let health_checks = Family::<HealthLabels, Counter>::default();
        let health_latency = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and category",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        registry.register("objects", "Objects by phase", phases.clone());
        registry.register(
            "provisioning_steps",
            "Provisioning steps applied, by step",
            steps.clone(),
        );
        registry.register(
            "databases_created",
            "Dedicated tenant databases created, by source (template: a copy of the baseline's template database; template0: the baseline replayed)",
            databases_created.clone(),
        );
        registry.register(
            "status_writes",
            "Status writes performed",
            status_writes.clone(),
        );
        registry.register(
            "resyncs_deferred",
            "Routine resyncs deferred (max concurrent resyncs reached); counted in reconciles too",
            resyncs_deferred.clone(),
        );
        registry.register(
            "reconciles_unchanged",
            "Reconciles skipped because the object is settled and nothing it depends on changed (e.g. another controller's status write); counted in reconciles too",
            reconciles_unchanged.clone(),
        );
        registry.register(
            "storage_bytes",
            "Measured storage of all tenants",
            storage_bytes.clone(),
        );
        registry.register(
            "health_checks",
            "Tenant health checks by result",
            health_checks.clone(),
        );
        registry.register(
            "health_check_duration_seconds",
            "Tenant login + SELECT 1 latency",
            health_latency.clone(),
        );
        let server_up = Family::<EngineLabels, Gauge>::default();
        let slow_statements = Family::<ServerLabels, Gauge>::default();
        let statements_available = Family::<ServerLabels, Gauge>::default();
        let leader = Gauge::default();
        let warm_pool_ready = Family::<PoolLabels, Gauge>::default();
        let warm_pool_claims = Family::<PoolLabels, Counter>::default();
        registry.register(
            "warm_pool_ready",
            "Unclaimed warm pool entries (schemas, databases) ready on a server",
            warm_pool_ready.clone(),
        );
        registry.register(
            "warm_pool_claims",
            "Warm pool entries claimed by new Tenants",
            warm_pool_claims.clone(),
        );
        let migration_tenants = Family::<ResultOnlyLabels, Counter>::default();
        let build_info = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "server_up",
            "Whether the last probe of a database server succeeded",
            server_up.clone(),
        );
        registry.register(
            "slow_statements",
            "Normalised statements of tenant roles whose mean time is over the slow threshold (pg_stat_statements)",
            slow_statements.clone(),
        );
        registry.register(
            "statements_available",
            "Whether pg_stat_statements can be read on a server",
            statements_available.clone(),
        );
        registry.register(
            "leader",
            "1 on the replica that acts (holds the leader lease or runs without election)",
            leader.clone(),
        );
        registry.register(
            "migration_tenants",
            "Tenant migrations (TenantMigration rollouts) finished, by result",
            migration_tenants.clone(),
        );
        registry.register("build_info", "The operator's version", build_info.clone());
        for result in ["succeeded", "failed"] {
            let _ = migration_tenants.get_or_create(&ResultOnlyLabels {
                result: result.into(),
            });
        }
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let fleet = Fleet::register(&mut registry, top, by);
        Self {
            registry,
            server_up,
            slow_statements,
            statements_available,
            leader,
            warm_pool_ready,
            warm_pool_claims,
            migration_tenants,
            fleet,
            reconciles,
            errors,
            duration,
            phases,
            steps,
            databases_created,
            status_writes,
            resyncs_deferred,
            reconciles_unchanged,
            storage_bytes,
            health_checks,
            health_latency,
            phase_of: Mutex::new(HashMap::new()),
        }
    }

    /// Records one reconcile.
    pub fn observe_reconcile(
        &self,
        controller: &str,
        took: Duration,
        error_category: Option<&str>,
    ) {
        let result = if error_category.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles
            .get_or_create(&ResultLabels {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
        if let Some(category) = error_category {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller: controller.into(),
                    category: category.into(),
                })
                .inc();
        }
        self.duration
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Keys of the objects counted in the phase gauge.
    pub fn phase_keys(&self) -> Vec<String> {
        self.phase_of
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Tracks the phase of one object (key: `kind/namespace/name`); `None` forgets it.
    pub fn set_phase(&self, key: &str, phase: Option<&str>) {
        let Ok(mut map) = self.phase_of.lock() else {
            return;
        };
        let old = match phase {
            Some(p) => map.insert(key.to_string(), p.to_string()),
            None => map.remove(key),
        };
        if old.as_deref() == phase {
            return;
        }
        if let Some(o) = old {
            self.phases.get_or_create(&PhaseLabels { phase: o }).dec();
        }
        if let Some(p) = phase {
            self.phases
                .get_or_create(&PhaseLabels { phase: p.into() })
                .inc();
        }
    }

    /// Records a health check.
    pub fn observe_health(&self, healthy: bool, took: Duration) {
        let result = if healthy { "healthy" } else { "unhealthy" };
        self.health_checks
            .get_or_create(&HealthLabels {
                result: result.into(),
            })
            .inc();
        self.health_latency.observe(took.as_secs_f64());
    }

    /// Counts a status write.
    pub fn status_written(&self, controller: &str) {
        self.status_writes
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }

    /// Counts a reconcile skipped because its object is settled and unchanged.
    pub fn reconcile_unchanged(&self, controller: &str) {
        self.reconciles_unchanged
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }

    /// Counts a deferred routine resync.
    pub fn resync_deferred(&self, controller: &str) {
        self.resyncs_deferred
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }

    /// Records a probe of a database server.
    pub fn server_probed(&self, server: &str, engine: &str, up: bool) {
        self.server_up
            .get_or_create(&EngineLabels {
                server: server.into(),
                engine: engine.into(),
            })
            .set(i64::from(up));
    }

    /// Records the statement figures of a server: `None` when `pg_stat_statements` is not readable.
    pub fn server_statements(&self, server: &str, slow: Option<i64>) {
        let l = ServerLabels {
            server: server.into(),
        };
        self.statements_available
            .get_or_create(&l)
            .set(i64::from(slow.is_some()));
        self.slow_statements
            .get_or_create(&l)
            .set(slow.unwrap_or(0));
    }

    /// Counts one tenant migration finished by a rollout.
    pub fn migration_tenant_finished(&self, succeeded: bool) {
        self.migration_tenants
            .get_or_create(&ResultOnlyLabels {
                result: if succeeded { "succeeded" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        self.fleet.refresh();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_move_between_buckets() {
        let m = Metrics::new();
        m.set_phase("tenant/ns/a", Some("Provisioning"));
        m.set_phase("tenant/ns/a", Some("Ready"));
        m.set_phase("tenant/ns/b", Some("Ready"));
        m.set_phase("tenant/ns/b", None);
        m.observe_reconcile(
            "tenant",
            Duration::from_millis(10),
            Some("DatabaseUnavailable"),
        );
        let text = m.encode();
        assert!(
            text.contains("tenantdb_objects{phase=\"Ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tenantdb_objects{phase=\"Provisioning\"} 0"),
            "{text}"
        );
        assert!(text.contains("category=\"DatabaseUnavailable\""), "{text}");
    }
}
