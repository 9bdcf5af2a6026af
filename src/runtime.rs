//! Operator process: configuration, HTTP endpoints (`/metrics`, `/healthz`, `/readyz`), controllers,
//! graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::{Context, OperatorSettings, tenant};
use crate::error::{Error, Result};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::migrate::MigrationSet;
use crate::naming::{Ident, validate_prefix};
use crate::pg::{PgAdmin, PgSettings};

/// Everything `tenantdb run` is configured with (flags or `TENANTDB_*` environment variables).
#[derive(Debug, Clone, clap::Args)]
pub struct RunConfig {
    /// PostgreSQL admin URL (superuser or CREATEROLE+CREATEDB) of the default server, e.g.
    /// postgres://postgres:…@pg:5432/postgres. Never logged. Optional: without it the operator
    /// has no default PostgreSQL server and places every tenant on the postgres DatabaseServers.
    #[arg(long, env = "TENANTDB_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database holding the schemas of `schema`-isolated tenants (created if missing).
    #[arg(
        long,
        env = "TENANTDB_SHARED_DATABASE",
        default_value = "tenantdb_shared"
    )]
    pub shared_database: String,
    /// Prefix of derived database/schema/role names.
    #[arg(long, env = "TENANTDB_NAME_PREFIX", default_value = "tenant_")]
    pub name_prefix: String,
    /// Which explicit names (`spec.databaseName`, `spec.mongodb.databaseName`) a namespace may
    /// claim: `namespace` (default: `<namespace>__<rest>` only, so no namespace can take another's
    /// names), `any` (any name without a derived name's shape) or `none`.
    #[arg(
        long,
        env = "TENANTDB_EXPLICIT_NAMES",
        value_enum,
        default_value_t = crate::naming::ExplicitNames::Namespace
    )]
    pub explicit_names: crate::naming::ExplicitNames,
    /// Host written to credentials Secrets (default: the admin URL's host).
    #[arg(long, env = "TENANTDB_TENANT_HOST")]
    pub tenant_host: Option<String>,
    /// Port written to credentials Secrets (default: the admin URL's port).
    #[arg(long, env = "TENANTDB_TENANT_PORT")]
    pub tenant_port: Option<u16>,
    /// Maximum Tenants reconciled at once.
    #[arg(long, env = "TENANTDB_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Seconds between resyncs of a Ready Tenant (drift repair).
    #[arg(long, env = "TENANTDB_RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Routine resyncs (Ready, unchanged Tenants) running at once; the other reconcile slots stay
    /// free for new, changed and failing Tenants. A resync that finds no free slot is deferred
    /// (requeued shortly after, counted in `tenantdb_resyncs_deferred_total`). Default: half of
    /// `--concurrency`; 0 = no separate limit.
    #[arg(long, env = "TENANTDB_MAX_CONCURRENT_RESYNCS")]
    pub max_concurrent_resyncs: Option<u16>,
    /// TenantMigration rollouts running at once (in the background: a long fleet rollout holds
    /// none of the `--concurrency` reconcile slots; each migrates up to its `maxParallel` tenants
    /// at a time). Further rollouts wait until one ends.
    #[arg(long, env = "TENANTDB_MAX_CONCURRENT_ROLLOUTS", default_value_t = 8)]
    pub max_concurrent_rollouts: u16,
    /// First retry delay after a transient error, in milliseconds.
    #[arg(long, env = "TENANTDB_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub backoff_base_ms: u64,
    /// Longest retry delay, in seconds.
    #[arg(long, env = "TENANTDB_BACKOFF_MAX_SECONDS", default_value_t = 300)]
    pub backoff_max_seconds: u64,
    /// Connections per admin pool.
    #[arg(long, env = "TENANTDB_POOL_SIZE", default_value_t = 8)]
    pub pool_size: u32,
    /// Seconds to wait for a PostgreSQL connection.
    #[arg(long, env = "TENANTDB_CONNECT_TIMEOUT_SECONDS", default_value_t = 5)]
    pub connect_timeout_seconds: u64,
    /// Address of the HTTP endpoints /metrics, /healthz, /readyz.
    #[arg(long, env = "TENANTDB_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Directory of migrations to use instead of the bundled baseline (sqlx file format).
    #[arg(long, env = "TENANTDB_MIGRATIONS_DIR")]
    pub migrations_dir: Option<PathBuf>,
    /// Default CONNECTION LIMIT for Tenants without `quotas.maxConnections`.
    #[arg(long, env = "TENANTDB_DEFAULT_MAX_CONNECTIONS")]
    pub default_max_connections: Option<i32>,
    /// Default `statement_timeout` (e.g. 30s) for Tenants without one.
    #[arg(long, env = "TENANTDB_DEFAULT_STATEMENT_TIMEOUT")]
    pub default_statement_timeout: Option<String>,
    /// Default `idle_in_transaction_session_timeout` (e.g. 5min).
    #[arg(long, env = "TENANTDB_DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT")]
    pub default_idle_in_transaction_timeout: Option<String>,
    /// Default storage quota (e.g. 10Gi) for Tenants without one.
    #[arg(long, env = "TENANTDB_DEFAULT_STORAGE")]
    pub default_storage: Option<String>,
    /// Maximum number of provisioned Tenants; further Tenants wait in phase Pending (reason
    /// TenantLimitReached) until one is deleted.
    #[arg(long, env = "TENANTDB_MAX_TENANTS")]
    pub max_tenants: Option<usize>,
    /// Seconds between storage measurements of a tenant.
    #[arg(long, env = "TENANTDB_USAGE_INTERVAL_SECONDS", default_value_t = 300)]
    pub usage_interval_seconds: u64,
    /// Seconds between health checks of a tenant (login with its own credentials + SELECT 1).
    #[arg(long, env = "TENANTDB_HEALTH_INTERVAL_SECONDS", default_value_t = 300)]
    pub health_interval_seconds: u64,
    /// Health checks running at once.
    #[arg(long, env = "TENANTDB_HEALTH_CONCURRENCY", default_value_t = 4)]
    pub health_concurrency: usize,
    /// Unchanged usage and health results are re-written to status at most this often (seconds).
    #[arg(
        long,
        env = "TENANTDB_STATUS_REPORT_INTERVAL_SECONDS",
        default_value_t = 3600
    )]
    pub status_report_interval_seconds: u64,
    /// MongoDB admin URI (root, or userAdminAnyDatabase + readWriteAnyDatabase + dbAdminAnyDatabase +
    /// clusterMonitor). When set,
    /// Tenants get a MongoDB database unless `spec.mongodb.enabled` is false. Never logged.
    #[arg(long, env = "TENANTDB_MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    /// MongoDB host written to Secrets (default: the admin URI's first host).
    #[arg(long, env = "TENANTDB_MONGODB_HOST")]
    pub mongodb_host: Option<String>,
    /// MongoDB port written to Secrets (default: the admin URI's port or 27017).
    #[arg(long, env = "TENANTDB_MONGODB_PORT")]
    pub mongodb_port: Option<u16>,
    /// Create `database` tenants with `CREATE DATABASE … TEMPLATE` from a template database that
    /// holds the baseline migrations and this month's partitions (built once per server, migration
    /// set and month, as a role without rights elsewhere) instead of replaying the baseline's DDL;
    /// `false`: from `template0`.
    #[arg(long, env = "TENANTDB_DATABASE_TEMPLATES", default_value_t = true, action = clap::ArgAction::Set)]
    pub database_templates: bool,
    /// Unclaimed schemas the default server keeps ready for new `schema` Tenants (the warm pool:
    /// the baseline already in them; DatabaseServers have `spec.warmPool`). 0: none.
    #[arg(long, env = "TENANTDB_WARM_POOL_SCHEMAS", default_value_t = 0)]
    pub warm_pool_schemas: u32,
    /// Unclaimed databases (copies of the template database) the default server keeps ready for
    /// new `database` Tenants. 0: none.
    #[arg(long, env = "TENANTDB_WARM_POOL_DATABASES", default_value_t = 0)]
    pub warm_pool_databases: u32,
    /// Run only while holding a Lease (for more than one replica).
    #[arg(long, env = "TENANTDB_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "TENANTDB_LEASE_NAME", default_value = "tenantdb-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's namespace).
    #[arg(long, env = "TENANTDB_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "TENANTDB_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds between renewals / acquisition attempts.
    #[arg(long, env = "TENANTDB_LEASE_RETRY_SECONDS", default_value_t = 2)]
    pub lease_retry_seconds: u64,
    /// Largest clock-rate difference between replicas over one lease duration, in seconds: the
    /// leader stops acting this much (plus one second) before its lease could expire.
    #[arg(long, env = "TENANTDB_LEASE_CLOCK_SKEW_SECONDS", default_value_t = 2)]
    pub lease_clock_skew_seconds: u64,
    /// Hours between partition maintenance runs of a tenant.
    #[arg(long, env = "TENANTDB_PARTITION_INTERVAL_HOURS", default_value_t = 6)]
    pub partition_interval_hours: u64,
    /// Monthly partitions created ahead of the current month.
    #[arg(long, env = "TENANTDB_PARTITION_MONTHS_AHEAD", default_value_t = 2)]
    pub partition_months_ahead: u32,
    /// Seconds a TenantMigration's migration waits for a lock (its `ALTER TABLE` behind a long
    /// transaction of the tenant's application) before giving up and retrying later (0: no
    /// bound). A queued exclusive lock blocks the tenant's queries while it waits.
    #[arg(
        long,
        env = "TENANTDB_MIGRATION_LOCK_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=2_147_483)
    )]
    pub migration_lock_timeout_seconds: u64,
    /// Detach and drop monthly partitions older than this many months (unset: keep all).
    #[arg(long, env = "TENANTDB_PARTITION_RETENTION_MONTHS")]
    pub partition_retention_months: Option<u32>,
    /// Statements whose mean execution time is above this many milliseconds count as slow
    /// (`status.statistics.statements`, `tenantdb_slow_statements`).
    #[arg(long, env = "TENANTDB_SLOW_STATEMENT_MS", default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..))]
    pub slow_statement_ms: i64,
    /// Per-tenant metric series (`tenantdb_tenant_*{namespace,tenant}`) for at most this many
    /// tenants, the first by `--tenant-metrics-by`. 0 (the default): none, so the number of series
    /// does not grow with the number of tenants.
    #[arg(long, env = "TENANTDB_TENANT_METRICS_TOP", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub tenant_metrics_top: u16,
    /// Which tenants get per-tenant series: the largest by storage or by connections.
    #[arg(long, env = "TENANTDB_TENANT_METRICS_BY", value_enum, default_value_t = crate::metrics::TopBy::Storage)]
    pub tenant_metrics_by: crate::metrics::TopBy,
    /// Name of this instance in Events (the pod name in a cluster).
    #[arg(long, env = "POD_NAME", default_value = "tenantdb")]
    pub instance: String,
    /// Name of the server `--database-url` points at: Tenants without `spec.placement` are
    /// placed on it, and Tenants of versions before DatabaseServers are found there. No
    /// DatabaseServer can take this name.
    #[arg(long, env = "TENANTDB_DEFAULT_SERVER", default_value = "default", value_parser = parse_server_name)]
    pub default_server: String,
    /// The operator's namespace: DatabaseServers' admin and CA Secrets are read here (only here).
    #[arg(long, env = "TENANTDB_OPERATOR_NAMESPACE", default_value = "default")]
    pub operator_namespace: String,
    /// Seconds between probes of each DatabaseServer (reachability, version, status).
    #[arg(long, env = "TENANTDB_SERVER_PROBE_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub server_probe_seconds: u64,
}

/// A server name: a DNS subdomain like a DatabaseServer's.
fn parse_server_name(s: &str) -> std::result::Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_string())
    } else {
        Err(
            "a server name is lower-case letters, digits, '-' and '.' (like a DatabaseServer's)"
                .into(),
        )
    }
}

/// The first host and port of a `mongodb://` URI (default port 27017). Never returns credentials.
pub fn first_host(uri: &str) -> (String, u16) {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let hosts = rest.split(['/', '?']).next().unwrap_or_default();
    let first = hosts.split(',').next().unwrap_or_default();
    match first.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || first.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().unwrap_or(27017),
        ),
        _ => (first.to_string(), 27017),
    }
}

impl RunConfig {
    /// Leader-election settings, if enabled.
    pub fn lease_config(&self) -> Option<LeaseConfig> {
        use rand::distr::{Alphanumeric, SampleString};
        self.leader_election.then(|| LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone(),
            identity: format!(
                "{}-{}",
                self.instance,
                Alphanumeric.sample_string(&mut rand::rng(), 6)
            ),
            lease_duration: Duration::from_secs(self.lease_duration_seconds.max(2)),
            retry_period: Duration::from_secs(self.lease_retry_seconds.max(1))
                .min(Duration::from_secs(self.lease_duration_seconds.max(2)) / 2),
            clock_skew: Duration::from_secs(self.lease_clock_skew_seconds),
        })
    }

    /// MongoDB admin access and the endpoint written to Secrets, if configured.
    pub fn mongo(&self) -> Result<Option<(crate::mongo::MongoAdmin, (String, u16))>> {
        let Some(uri) = &self.mongodb_uri else {
            return Ok(None);
        };
        let admin = crate::mongo::MongoAdmin::with_bundled_migrations(
            crate::mongo::MongoSettings::new(uri.clone()),
        )?;
        let (host, port) = first_host(uri);
        let endpoint = (
            self.mongodb_host.clone().unwrap_or(host),
            self.mongodb_port.unwrap_or(port),
        );
        Ok(Some((admin, endpoint)))
    }

    /// Validates the configuration and splits it into its parts.
    /// The PostgreSQL settings are `None` without `--database-url` (no default server).
    pub fn into_parts(self) -> Result<(Option<PgSettings>, OperatorSettings, Option<PathBuf>)> {
        validate_prefix(&self.name_prefix).map_err(|e| Error::Config(e.to_string()))?;
        let shared = Ident::new(&self.shared_database)
            .map_err(|e| Error::Config(format!("shared database: {e}")))?;
        if self.concurrency == 0 {
            return Err(Error::Config("concurrency must be at least 1".into()));
        }
        let pg_pools = crate::controller::settings::PgPools {
            shared_database: shared.as_str().to_string(),
            pool_size: self.pool_size.max(1),
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds.max(1)),
            identity: self.instance.clone(),
        };
        // Given but empty (an empty Secret key): refused, not read as "no default server" — the
        // tenants on that server would otherwise be placed anew elsewhere.
        if self
            .database_url
            .as_ref()
            .is_some_and(|u| u.trim().is_empty())
        {
            return Err(Error::Config(
                "--database-url (TENANTDB_DATABASE_URL) is empty: give the default server's admin URL, or leave it unset for no default server".into(),
            ));
        }
        let pg = self.database_url.map(|admin_url| PgSettings {
            admin_url,
            shared_database: shared,
            pool_size: pg_pools.pool_size,
            connect_timeout: pg_pools.connect_timeout,
        });
        let op = OperatorSettings {
            name_prefix: self.name_prefix,
            explicit_names: self.explicit_names,
            tenant_host: self.tenant_host,
            tenant_port: self.tenant_port,
            default_server: self.default_server,
            operator_namespace: self.operator_namespace,
            server_probe_interval: Duration::from_secs(self.server_probe_seconds.max(1)),
            leader_election: self.leader_election,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            backoff_base: Duration::from_millis(self.backoff_base_ms.max(10)),
            backoff_max: Duration::from_secs(self.backoff_max_seconds.max(1)),
            field_manager: "tenantdb".into(),
            quota_defaults: crate::quota::QuotaDefaults {
                max_connections: self.default_max_connections,
                statement_timeout: self.default_statement_timeout,
                idle_in_transaction_timeout: self.default_idle_in_transaction_timeout,
                storage: self.default_storage,
            },
            max_tenants: self.max_tenants,
            usage_interval: Duration::from_secs(self.usage_interval_seconds.max(1)),
            health_interval: Duration::from_secs(self.health_interval_seconds.max(1)),
            health_concurrency: self.health_concurrency.max(1),
            max_concurrent_resyncs: match self.max_concurrent_resyncs {
                None => usize::from(self.concurrency / 2).max(1),
                Some(0) => usize::from(self.concurrency).max(1),
                Some(n) => usize::from(n),
            },
            max_concurrent_rollouts: usize::from(self.max_concurrent_rollouts.max(1)),
            status_report_interval: Duration::from_secs(self.status_report_interval_seconds.max(1)),
            partition_interval: Duration::from_secs(self.partition_interval_hours.max(1) * 3600),
            partition_months_ahead: self.partition_months_ahead,
            migration_lock_timeout: (self.migration_lock_timeout_seconds > 0)
                .then(|| Duration::from_secs(self.migration_lock_timeout_seconds)),
            partition_retention_months: self.partition_retention_months,
            slow_statement_ms: self.slow_statement_ms,
            database_templates: self.database_templates,
            warm_pool: crate::pg::warm::WarmPool {
                schemas: self.warm_pool_schemas.min(100),
                databases: self.warm_pool_databases.min(100),
            },
            pg_pools,
        };
        // Defaults are validated once here rather than failing every Tenant.
        crate::quota::effective(None, &op.quota_defaults)
            .map_err(|e| Error::Config(format!("default quotas: {e}")))?;
        Ok((pg, op, self.migrations_dir))
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
}

async fn metrics_handler(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if *s.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

/// Serves the HTTP endpoints until `shutdown` resolves.
pub async fn serve_http(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Config(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!(error = %e, "http server stopped");
        }
    });
    Ok(local)
}

/// Loads the migration set: the directory if given, else the bundled baseline.
pub fn load_migrations(dir: Option<&std::path::Path>) -> Result<MigrationSet> {
    match dir {
        Some(d) => {
            let set = MigrationSet::load_dir(d)?;
            set.refuse_transaction_control()?;
            Ok(set)
        }
        None => Ok(MigrationSet::bundled()),
    }
}

/// Runs the operator until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: RunConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let http_addr = config.http_addr;
    let concurrency = config.concurrency;
    let instance = config.instance.clone();
    let lease = config.lease_config();
    if let Some(l) = &lease {
        l.validate().map_err(Error::Config)?;
    }
    // Sessions carry the instance's identity in their application_name (a new leader ends the
    // sessions of the others).
    let identity = lease
        .as_ref()
        .map_or_else(|| instance.clone(), |l| l.identity.clone());
    let mongo = config.mongo()?;
    let metrics = Arc::new(Metrics::with_tenant_series(
        usize::from(config.tenant_metrics_top),
        config.tenant_metrics_by,
    ));
    let (pg_settings, mut op_settings, migrations_dir) = config.into_parts()?;
    op_settings.pg_pools.identity = identity.clone();
    let migrations = Arc::new(load_migrations(migrations_dir.as_deref())?);
    let pg = match pg_settings {
        Some(settings) => Some(Arc::new(PgAdmin::for_instance(settings, &identity)?)),
        None => None,
    };
    let (ready_tx, ready_rx) = watch::channel(false);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_signal = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let local = serve_http(
        http_addr,
        metrics.clone(),
        ready_rx,
        stop_signal(stop_rx.clone()),
    )
    .await?;
    info!(addr = %local, "serving /metrics, /healthz, /readyz");
    tokio::pin!(shutdown);

    // Leader election: a standby serves probes (ready, so rolling updates proceed) and waits.
    let elector = lease.map(|cfg| LeaderElector::new(client.clone(), cfg));
    if let Some(le) = &elector {
        let _ = ready_tx.send(true);
        tokio::select! {
            _ = le.acquire() => {}
            _ = &mut shutdown => {
                info!("shutting down (standby)");
                let _ = stop_tx.send(true);
                return Ok(());
            }
        }
        let _ = ready_tx.send(false);
        // Whatever an earlier leader still has open on the database is ended before this one
        // acts (its own fence should have stopped it; this does not rely on it).
        match pg.as_ref().map(|pg| pg.end_other_instances()) {
            None => {}
            Some(ended) => match ended.await {
                Ok(0) => {}
                Ok(n) => info!(
                    sessions = n,
                    "ended the database sessions of other tenantdb instances"
                ),
                Err(e) => {
                    warn!(error = %e, "could not end the sessions of other tenantdb instances")
                }
            },
        }
    }

    if mongo.is_some() {
        info!("MongoDB provisioning enabled");
    }
    metrics.leader.set(1);
    // `--database-url` is the default PostgreSQL server; without it every tenant is placed on a
    // DatabaseServer.
    let default_server = pg.map(|pg| {
        let (host, port) = pg.server_address();
        Arc::new(crate::servers::Server::postgres(
            &op_settings.default_server,
            pg.clone(),
            (
                op_settings.tenant_host.clone().unwrap_or(host),
                op_settings.tenant_port.unwrap_or(port),
            ),
            op_settings.usage_interval,
            op_settings.slow_statement_ms,
            0,
        ))
    });
    if default_server.is_none() {
        info!("no --database-url: tenants are placed on postgres DatabaseServers only");
    }
    let servers = Arc::new(crate::servers::Registry::new(default_server));
    // `--mongodb-uri` is the default MongoDB server, named like the default PostgreSQL one.
    let mongo_servers = Arc::new(crate::servers::Registry::new(mongo.map(
        |(admin, endpoint)| {
            Arc::new(crate::servers::MongoServer::new(
                &op_settings.default_server,
                Arc::new(admin),
                endpoint,
                0,
            ))
        },
    )));
    let ctx = Arc::new(Context::new(
        client,
        servers,
        mongo_servers,
        op_settings,
        metrics.clone(),
        migrations,
        &instance,
    ));
    let mut controllers = tokio::spawn(run_controllers(
        ctx,
        concurrency,
        ready_tx,
        stop_signal(stop_rx.clone()),
    ));
    // Leadership lost: `hold` returns when another instance holds the Lease or the fence deadline
    // passed (renewals failing, or this process frozen).
    let lost = async {
        match &elector {
            Some(le) => le.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    let lose = |controllers: &tokio::task::JoinHandle<()>| {
        // No graceful drain: every in-flight statement and write is cut off now (the fence
        // already refuses new ones), and the process exits so that it restarts as a candidate.
        tracing::error!("leadership lost: cancelling all work and exiting");
        crate::fence::close();
        metrics.leader.set(0);
        controllers.abort();
        let _ = stop_tx.send(true);
        Err(Error::LeadershipLost(crate::fence::Fenced))
    };
    tokio::select! {
        _ = &mut shutdown => {}
        _ = &mut lost => return lose(&controllers),
    }
    info!("stopping controllers");
    let _ = stop_tx.send(true);
    // Keep renewing while the controllers drain, so their last writes stay inside the fence.
    tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(30), &mut controllers) => {
            if r.is_err() {
                warn!("controllers did not stop within 30s; cancelling them");
                controllers.abort();
            }
        }
        _ = &mut lost => return lose(&controllers),
    }
    if let Some(le) = &elector {
        le.release().await;
    }
    Ok(())
}

/// Runs every controller until `shutdown` resolves.
async fn run_controllers(
    ctx: Arc<Context>,
    concurrency: u16,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.shared();
    tokio::join!(
        tenant::run(ctx.clone(), concurrency, ready, shutdown.clone()),
        crate::controller::server::run(ctx.clone(), shutdown.clone()),
        crate::controller::warm::run(ctx.clone(), shutdown.clone()),
        crate::controller::migration::run(ctx, concurrency, shutdown),
    );
}

/// Resolves on Ctrl-C or SIGTERM (the signal Kubernetes sends before it kills a pod): the
/// shutdown trigger of [`run`] in the `tenantdb` binary, and of the local demo.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
