//! PostgreSQL side of tenant provisioning: observe (catalog reads, `observe.rs`), apply
//! (idempotent DDL, `apply.rs`) and cleanup (`cleanup.rs`), all methods of [`PgAdmin`], which
//! this module defines with its pools, the shared database's set-up, usage and health checks. The
//! pure part lives in [`plan`]; the `shared` (row-level security) layout in [`shared`].

mod apply;
pub mod catalog_stamp;
pub use apply::Provisioned;
mod cleanup;
pub mod fingerprint;
pub mod login;
mod observe;
pub mod plan;
#[cfg(test)]
mod quoting_tests;
pub mod session;
pub mod shared;
pub mod stats;
pub mod template;
pub mod warm;

pub use cleanup::CleanupReport;
pub use session::TenantSession;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::OnceCell;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames};

/// Connection settings for the PostgreSQL server tenants live on.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// Admin URL (superuser, or a role with CREATEROLE and CREATEDB), pointing at a maintenance database.
    pub admin_url: String,
    /// Database that holds the schemas of `schema`-isolated tenants.
    pub shared_database: Ident,
    /// Max connections of each admin pool.
    pub pool_size: u32,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

/// `application_name` prefix of every session of the operator.
pub const APPLICATION_PREFIX: &str = "tenantdb:";

/// The `application_name` of an instance's sessions, `kind` being `admin`, `tenant` or `health`
/// (at most 63 bytes, PostgreSQL's limit: a long instance name is cut).
pub fn application_name(instance: &str, kind: &str) -> String {
    let mut inst: String = instance.chars().filter(|c| c.is_ascii_graphic()).collect();
    let room = 63 - APPLICATION_PREFIX.len() - 1 - kind.len();
    inst.truncate(room);
    format!("{APPLICATION_PREFIX}{inst}:{kind}")
}

/// Admin access to one PostgreSQL server: a small pool on the maintenance database, a lazily
/// created pool on the shared database, and one-off connections to dedicated tenant databases.
#[derive(Debug)]
pub struct PgAdmin {
    options: PgConnectOptions,
    admin: PgPool,
    shared: OnceCell<PgPool>,
    settings: PgSettings,
    can_read_verifiers: OnceCell<bool>,
    /// When the server was last found unreachable: while set, operations first probe the port
    /// (fast failure instead of every reconcile waiting a pool timeout).
    down_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// This operator instance (see [`PgAdmin::for_instance`]).
    instance: String,
    /// The template database this process built or found for its migration set.
    template: tokio::sync::Mutex<template::TemplateState>,
    /// The migration set (fingerprint) whose baseline the warm pool refused to build as schema
    /// entries ([`warm`]): not tried again until the set changes.
    pool_refused: std::sync::Mutex<Option<String>>,
    /// The admin password (for [`PgAdmin::admin_login`]).
    password: Option<String>,
    /// The CA certificate file of the server's TLS (for [`PgAdmin::admin_login`]).
    root_cert: Option<std::path::PathBuf>,
}

/// Advisory lock key serializing the shared database's privilege set-up ("tnt_shrd").
const SHARED_SETUP_LOCK: i64 = 0x746e_745f_7368_7264;

/// A connection inside a tenant's database: a one-off connection for a dedicated database (never
/// pooled), a pooled one for the shared database. Derefs to [`PgConnection`].
pub enum TenantConnection {
    /// One-off connection to a dedicated database; closed by [`TenantConnection::close`].
    Dedicated(PgConnection),
    /// Connection from the shared database's pool.
    Shared(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl std::ops::Deref for TenantConnection {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        match self {
            TenantConnection::Dedicated(c) => c,
            TenantConnection::Shared(c) => c,
        }
    }
}

impl std::ops::DerefMut for TenantConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            TenantConnection::Dedicated(c) => c,
            TenantConnection::Shared(c) => c,
        }
    }
}

impl TenantConnection {
    /// Closes a one-off connection cleanly. A pooled one goes back to its pool after its session
    /// state is reset (settings, role, session authorization, temporary tables: SQL run on it,
    /// e.g. a migration file, may have changed them); if that fails (e.g. a transaction left
    /// open or aborted) the connection is closed instead of being reused.
    pub async fn close(self) {
        match self {
            TenantConnection::Dedicated(c) => {
                let _ = c.close().await;
            }
            TenantConnection::Shared(mut c) => {
                let reset = sqlx::raw_sql(
                    "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; DISCARD TEMP",
                )
                .execute(&mut *c)
                .await;
                if reset.is_err() {
                    debug!("pooled connection not reusable after use; closing it");
                    let _ = c.detach().close().await;
                }
            }
        }
    }
}

impl PgAdmin {
    /// Builds the pools (lazily: no connection is made until first use, so the operator starts
    /// even while the database is down), for the instance `tenantdb`.
    pub fn new(settings: PgSettings) -> Result<Self> {
        Self::for_instance(settings, "tenantdb")
    }

    /// [`PgAdmin::new`] for an operator instance (its leader-election identity): part of the
    /// `application_name` of every session it opens (`tenantdb:<instance>:…`), so a new leader can
    /// end the sessions of an old one ([`PgAdmin::end_other_instances`]) and logs tell instances
    /// apart.
    pub fn for_instance(settings: PgSettings, instance: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(&settings.admin_url).map_err(|e| {
            Error::Config(format!(
                "invalid PostgreSQL admin URL: {}",
                redact(&e.to_string())
            ))
        })?;
        let password = login::url_password(&settings.admin_url);
        let root_cert = login::url_param(&settings.admin_url, "sslrootcert").map(Into::into);
        Ok(Self::with_options(settings, options, instance)
            .with_password(password)
            .with_root_cert(root_cert))
    }

    /// Remembers the admin password for [`PgAdmin::admin_login`] (the connect options do not give it
    /// back).
    pub fn with_password(mut self, password: Option<String>) -> Self {
        self.password = password;
        self
    }

    /// Remembers the CA certificate file the connect options verify the server against, for
    /// [`PgAdmin::admin_login`] (the connect options do not give it back).
    pub fn with_root_cert(mut self, root_cert: Option<std::path::PathBuf>) -> Self {
        self.root_cert = root_cert;
        self
    }

    /// How tools and other servers log in here as the admin.
    pub fn admin_login(&self) -> login::AdminLogin {
        login::AdminLogin::of(
            &self.options,
            self.password.clone(),
            self.root_cert.as_deref(),
        )
    }

    /// [`PgAdmin::for_instance`] with connect options built by the caller (a DatabaseServer's
    /// endpoint, credentials and TLS); `settings.admin_url` is not read.
    pub fn with_options(settings: PgSettings, options: PgConnectOptions, instance: &str) -> Self {
        let options = options
            // Statements can carry SCRAM verifiers: never log statement text.
            .disable_statement_logging()
            .application_name(&application_name(instance, "admin"));
        let admin = pool(&settings, options.clone());
        Self {
            options,
            admin,
            shared: OnceCell::new(),
            settings,
            can_read_verifiers: OnceCell::new(),
            down_since: std::sync::Mutex::new(None),
            instance: instance.to_string(),
            template: tokio::sync::Mutex::new(Default::default()),
            pool_refused: std::sync::Mutex::new(None),
            password: None,
            root_cert: None,
        }
    }

    /// Probes the server: a session of the admin pool reads the server's version (`15.8`).
    /// Fails with the cause (connection refused, authentication, timeout) when it cannot.
    pub async fn server_version(&self) -> Result<String> {
        let version: String = tokio::time::timeout(
            self.settings.connect_timeout + Duration::from_secs(1),
            sqlx::query_scalar("SELECT current_setting('server_version')").fetch_one(self.admin()?),
        )
        .await
        .map_err(|_| Error::unavailable("probe timed out".to_string()))??;
        Ok(version)
    }

    /// The operator instance this access belongs to (its sessions' `application_name`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Records that the server answered (a probe succeeded): operations stop probing the port
    /// first.
    pub fn mark_reachable(&self) {
        if let Ok(mut d) = self.down_since.lock() {
            *d = None;
        }
    }

    /// Whether the server was last found unreachable (and not found reachable since).
    pub fn is_down(&self) -> bool {
        self.down_since.lock().map(|d| d.is_some()).unwrap_or(false)
    }

    /// The admin pool on the maintenance database, unfenced: for tests and tools. The operator's
    /// own code goes through the fenced [`PgAdmin::admin`].
    pub fn admin_pool(&self) -> &PgPool {
        &self.admin
    }

    /// The admin pool, if this replica may act ([`crate::fence::check`]): every use of the admin
    /// pool by the operator passes here.
    pub(crate) fn admin(&self) -> Result<&PgPool> {
        crate::fence::check()?;
        Ok(&self.admin)
    }

    /// Host and port clients should use, as configured in the admin URL.
    pub fn server_address(&self) -> (String, u16) {
        (self.options.get_host().to_string(), self.options.get_port())
    }

    /// Settings in use.
    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// Connect options for another database on the same server.
    pub fn options_for(&self, database: &Ident) -> PgConnectOptions {
        self.options.clone().database(database.as_str())
    }

    /// A one-off admin connection to `database` (dedicated tenant databases are not pooled:
    /// thousands of tenants must not hold thousands of idle connections), with its `search_path`
    /// pinned (see [`pinned`]): the tenant owns a dedicated database and can set its defaults.
    pub async fn connect_to(&self, database: &Ident) -> Result<PgConnection> {
        crate::fence::check()?;
        let opts = pinned(self.options_for(database));
        let conn = tokio::time::timeout(self.settings.connect_timeout, opts.connect())
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "timed out connecting to database {}",
                    database.as_str()
                ))
            })??;
        Ok(conn)
    }

    /// A connection inside the tenant's database (see [`TenantConnection`]).
    pub async fn tenant_connection(&self, names: &TenantNames) -> Result<TenantConnection> {
        if names.dedicated_database {
            Ok(TenantConnection::Dedicated(
                self.connect_to(&names.database).await?,
            ))
        } else {
            Ok(TenantConnection::Shared(
                self.shared_pool().await?.acquire().await?,
            ))
        }
    }

    /// Pool on the shared database; creates and locks down the shared database on first use.
    pub async fn shared_pool(&self) -> Result<&PgPool> {
        crate::fence::check()?;
        self.shared
            .get_or_try_init(|| async {
                self.ensure_shared_database().await?;
                let p = pool(
                    &self.settings,
                    pinned(self.options_for(&self.settings.shared_database)),
                );
                // Nobody but the operator may create or see objects in the shared database's public
                // schema (serialized like the database privileges: concurrent REVOKEs collide).
                let mut tx = p.begin().await?;
                advisory_xact_lock(&mut tx, SHARED_SETUP_LOCK).await?;
                sqlx::raw_sql("REVOKE ALL ON SCHEMA public FROM PUBLIC")
                    .execute(&mut *tx)
                    .await?;
                // Large objects live in pg_largeobject, outside every tenant's schema: a tenant
                // of this database could store any amount there past its storage quota. Nobody
                // but the admin creates them here (an admin that is not a superuser cannot revoke
                // on pg_catalog's functions: PostgreSQL warns and changes nothing).
                sqlx::raw_sql(
                    "REVOKE EXECUTE ON FUNCTION pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid), \
                     pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lo_import(text), \
                     pg_catalog.lo_import(text, oid) FROM PUBLIC",
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, Error>(p)
            })
            .await
    }

    async fn ensure_shared_database(&self) -> Result<()> {
        let db = &self.settings.shared_database;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(db.as_str())
                .fetch_optional(self.admin()?)
                .await?;
        if exists.is_none() {
            info!(database = db.as_str(), "creating shared database");
            let r = sqlx::raw_sql(ddl(format!(
                "CREATE DATABASE {db} TEMPLATE template0 ENCODING 'UTF8'"
            )))
            .execute(self.admin()?)
            .await;
            if let Err(e) = r {
                // Another operator replica may have raced us: only "already exists" is fine.
                let dup = matches!(&e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("42P04") | Some("23505")));
                if !dup {
                    return Err(e.into());
                }
            }
        }
        // Privileges and the CONNECT group, serialized across sessions (operator replicas during a
        // hand-over, tools): concurrent GRANT/REVOKE on one database fail with "tuple concurrently
        // updated". Each statement is idempotent.
        let group = crate::naming::connect_group_of(db)?;
        let mut tx = self.admin()?.begin().await?;
        advisory_xact_lock(&mut tx, SHARED_SETUP_LOCK).await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_roles WHERE rolname = $1")
            .bind(group.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            // The group whose members may connect (tenant roles of the shared database).
            sqlx::raw_sql(ddl(format!(
                "CREATE ROLE {group} NOLOGIN NOINHERIT; COMMENT ON ROLE {group} IS 'tenantdb.io/shared-connect'"
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::raw_sql(ddl(format!(
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {group}"
        )))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Storage used by a tenant: `pg_database_size` for a dedicated database, else the sum of
    /// `pg_total_relation_size` of the schema's tables, materialized views and their indexes/TOAST.
    pub async fn storage_bytes(&self, names: &TenantNames) -> Result<i64> {
        if names.dedicated_database {
            let v: Option<i64> = sqlx::query_scalar(
                "SELECT pg_database_size(oid) FROM pg_database WHERE datname = $1",
            )
            .bind(names.database.as_str())
            .fetch_optional(self.admin()?)
            .await?;
            Ok(v.unwrap_or(0))
        } else {
            let pool = self.shared_pool().await?;
            let v: Option<i64> = sqlx::query_scalar(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
            )
            .bind(names.schema.as_str())
            .fetch_optional(pool)
            .await?;
            Ok(v.unwrap_or(0))
        }
    }

    /// Logs in as the tenant with its credentials and runs `SELECT 1` (one-off connection, closed
    /// afterwards: no per-tenant pools are kept).
    pub async fn check_login(&self, database: &Ident, user: &Ident, password: &str) -> Result<()> {
        crate::fence::check()?;
        let opts = self
            .options_for(database)
            .username(user.as_str())
            .password(password)
            .application_name(&application_name(&self.instance, "health"));
        let mut conn = tokio::time::timeout(self.settings.connect_timeout, opts.connect())
            .await
            .map_err(|_| Error::unavailable("health check timed out"))?
            .map_err(|e| match Error::from(e) {
                // Never echo connection details; the category and first line are enough.
                Error::Database { message, source }
                | Error::DatabaseUnavailable { message, source } => {
                    Error::DatabaseUnavailable { message, source }
                }
                other => other,
            })?;
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        let _ = conn.close().await;
        if one == 1 {
            Ok(())
        } else {
            Err(Error::Internal("SELECT 1 returned something else".into()))
        }
    }

    /// Ends the sessions of every other tenantdb instance on this server (a new leader, before it
    /// acts: whatever an old leader still had in flight is cut off at the database, not only by
    /// its own fence). Returns how many were ended. Needs a superuser admin (or
    /// `pg_signal_backend`); without it nothing is ended and a warning is logged.
    pub async fn end_other_instances(&self) -> Result<u64> {
        let mine = application_name(&self.instance, "");
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND starts_with(application_name, $1) \
               AND NOT starts_with(application_name, $2)",
        )
        .bind(APPLICATION_PREFIX)
        .bind(mine)
        .fetch_all(self.admin()?)
        .await?;
        Ok(ended.into_iter().filter(|b| *b).count() as u64)
    }

    /// Closes the pools (leadership lost: open connections are closed as they come back).
    pub async fn close(&self) {
        if let Some(p) = self.shared.get() {
            p.close().await;
        }
        self.admin.close().await;
    }

    /// Checks that the server answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.admin()?.acquire().await?;
        conn.ping().await?;
        Ok(())
    }
}

/// Takes a transaction-scoped advisory lock (`pg_advisory_xact_lock`) on `conn`, which must be
/// inside a transaction: released at commit or rollback.
pub async fn advisory_xact_lock(conn: &mut PgConnection, key: i64) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks SQL text as audited. Only text assembled from [`Ident`]s (validated, quoted identifiers),
/// [`crate::naming::quote_literal`] of operator-generated values and fixed keywords may pass through
/// here; user-supplied values are always bound as parameters instead.
pub fn ddl(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// Admin connect options with `search_path` pinned to `pg_catalog, pg_temp` in the startup
/// packet. A client's setting wins over the database's and the role's defaults, so a tenant that
/// owns its database (`ALTER DATABASE … SET search_path = public, pg_catalog`) or a schema named
/// like the admin (`"$user"`) cannot make an admin session's unqualified function or operator
/// (`set_config`, `hashtext`, `=`, …) resolve to one of its own, which would run as the admin.
/// For every admin session inside a tenant's or the shared database; the maintenance database's
/// pool (no tenant objects, `pg_stat_statements` found unqualified) keeps the server's default.
fn pinned(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("search_path", "pg_catalog,pg_temp")])
}

fn pool(settings: &PgSettings, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.pool_size)
        .min_connections(0)
        .acquire_timeout(settings.connect_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_lazy_with(options)
}

/// Removes a password from a URL-ish string before it reaches a log or error message.
pub fn redact(s: &str) -> String {
    // postgres://user:password@host → postgres://user:***@host
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', ' ', '?', '\n']).unwrap_or(tail.len());
        let authority = &tail[..end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***{}", &authority[at..])),
                None => out.push_str(authority),
            }
        } else {
            out.push_str(authority);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact("bad url postgres://admin:hunter2@db:5432/postgres?x=1"),
            "bad url postgres://admin:***@db:5432/postgres?x=1"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
