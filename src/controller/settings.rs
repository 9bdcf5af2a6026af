//! Operator-wide settings of the controllers.

use std::time::Duration;

use rand::Rng;

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
    /// Name of the default server (`--database-url`).
    pub default_server: String,
    /// The operator's namespace (where every DatabaseServer's admin Secret is read).
    pub operator_namespace: String,
    /// How often each DatabaseServer is probed.
    pub server_probe_interval: Duration,
    /// Whether this process runs under leader election (a new leader ends the other instances'
    /// sessions on every server it registers, as it does on the default server at start).
    pub leader_election: bool,
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
    /// Bound on each lock wait of a TenantMigration's migration (`None`: no bound).
    pub migration_lock_timeout: Option<Duration>,
    /// Monthly partitions older than this many months are detached and dropped (`None` = keep).
    pub partition_retention_months: Option<u32>,
    /// Statements whose mean execution time is above this many milliseconds count as slow.
    pub slow_statement_ms: i64,
    /// Create `database` tenants from a template database holding the baseline
    /// ([`crate::pg::template`]) instead of replaying its DDL.
    pub database_templates: bool,
    /// The default server's warm pool ([`crate::pg::warm`]; DatabaseServers have `spec.warmPool`).
    pub warm_pool: crate::pg::warm::WarmPool,
    /// What every PostgreSQL server's admin pools are built with (the default server's and each
    /// DatabaseServer's).
    pub pg_pools: PgPools,
}

/// The settings of the PostgreSQL admin pools, from the flags (`--shared-database`,
/// `--pool-size`, `--connect-timeout-seconds`): the same for every server, whether or not the
/// operator has a default server (`--database-url`).
#[derive(Debug, Clone)]
pub struct PgPools {
    /// Shared database of `schema`/`shared` tenants on servers that do not name their own.
    pub shared_database: String,
    /// Max connections of each admin pool.
    pub pool_size: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// The identity in the `application_name` of the sessions (the Lease holder identity, or
    /// the instance name).
    pub identity: String,
}

impl Default for PgPools {
    fn default() -> Self {
        Self {
            shared_database: "tenantdb_shared".into(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            identity: "tenantdb".into(),
        }
    }
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
            default_server: "default".into(),
            operator_namespace: "default".into(),
            server_probe_interval: Duration::from_secs(10),
            leader_election: false,
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
            migration_lock_timeout: Some(Duration::from_secs(10)),
            partition_retention_months: None,
            slow_statement_ms: 500,
            database_templates: true,
            warm_pool: crate::pg::warm::WarmPool::default(),
            pg_pools: PgPools::default(),
        }
    }
}
