//! The warm pool: tenant homes built ahead of time, claimed by new Tenants.
//!
//! A server may keep a few unclaimed entries of each kind ready (`spec.warmPool` of a
//! DatabaseServer, `--warm-pool-schemas` / `--warm-pool-databases` for the default server):
//! - a **schema** entry is a schema `tenantdb_pool_<16 hex>` in the shared database, owned by a role
//!   of the same name (`NOLOGIN`, no password, marked), holding the baseline at the current
//!   migration set and this month's partitions — built on a session logged in as that role (a
//!   one-time password, reset at once: never as the admin);
//! - a **database** entry is a database `tenantdb_pool_<16 hex>`, a copy of the template database
//!   ([`super::template`]), owned by the admin and closed to `PUBLIC`.
//!
//! Both hold this month's and the next `--partition-months-ahead` (at least one) partitions: a
//! database entry's are created in it as the template's owner role, like a schema entry's as its
//! role. Names have exactly the shape `tenantdb_pool_<16 hex>`, and everything the pool creates
//! is marked with the shared database it serves (the *scope*: two servers declared on one cluster
//! with different shared databases never touch each other's entries). A finished entry is marked
//! with its scope, the migration set's fingerprint and the month it was built in
//! (`tenantdb.io/pool=<scope>/<fp>@<YYYY-MM>`); entries of this month and the last are claimable
//! (the last month's still hold this month's partition; they are claimed first, and the claimer
//! adds the furthest month ahead they lack). A new Tenant claims one in a single
//! transaction: under a per-entry advisory lock, a schema entry is renamed to the tenant's schema,
//! its objects are handed to the tenant role (`REASSIGN OWNED`, which rewrites their ACLs too), its
//! role dropped and the schema marked as the tenant's; a database entry is renamed and given to the
//! tenant role, unmarked, and then completed like a template copy (its objects handed over inside
//! it, then marked; a crash in between is completed by the plan's `MarkDatabase`). Nothing of an
//! unclaimed entry can log in: the schema's role has no password and no `LOGIN`; a database entry
//! is closed to connections (`ALLOW_CONNECTIONS false`, no `PUBLIC` rights). A claim takes only
//! what a tenant cannot forge: a schema owned by a `NOLOGIN` role carrying the pool's role mark
//! (only a `CREATEROLE` admin can comment on a role), a database owned by the admin and closed to
//! connections.
//!
//! The pool is refilled in the background ([`PgAdmin::fill_pool`], one filler per server under a
//! session advisory lock): it first sweeps what a crash left (an entry without its mark, a pool
//! role without its schema), entries of an earlier migration set or month, and entries beyond the
//! wanted size, then builds the missing ones.

use sqlx::{Connection, Row};
use tracing::{info, warn};

use super::{PgAdmin, ddl};
use crate::error::{Error, Result};
use crate::migrate::MigrationSet;
use crate::naming::{Ident, quote_literal};

/// Prefix of pool entries' names (schemas, their roles, databases).
pub const POOL_PREFIX: &str = "tenantdb_pool_";

/// The regular expression of pool entries' names (schemas, their roles, databases).
const POOL_RE: &str = "^tenantdb_pool_[0-9a-f]{16}$";

/// Prefix of the comment marking a pool entry's role as the operator's (then the scope).
const ROLE_MARK_PREFIX: &str = "tenantdb.io/pool@";

/// Prefix of a finished entry's mark (then the scope, `/`, fingerprint, `@`, month).
const MARK_PREFIX: &str = "tenantdb.io/pool=";

/// Prefix of the mark of a database entry being built (then the scope).
const BUILDING_PREFIX: &str = "tenantdb.io/pool-building@";

/// Session-level advisory lock: one filler per server at a time ("tnt_pool").
const FILL_LOCK: i64 = 0x746e_745f_706f_6f6c;

/// How many entries a server keeps ready, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmPool {
    /// Unclaimed schemas (for `schema` tenants).
    pub schemas: u32,
    /// Unclaimed databases (for `database` tenants).
    pub databases: u32,
}

impl WarmPool {
    /// Whether the pool is off for both kinds.
    pub fn is_empty(&self) -> bool {
        self.schemas == 0 && self.databases == 0
    }
}

/// The kinds of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A schema in the shared database.
    Schema,
    /// A dedicated database.
    Database,
}

impl Kind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Schema => "schema",
            Kind::Database => "database",
        }
    }
}

/// What a fill did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filled {
    /// Entries built now (schemas, databases).
    pub built: (u32, u32),
    /// Entries or leftovers dropped by the sweep.
    pub swept: u32,
    /// Ready entries after the fill (schemas, databases).
    pub ready: (u32, u32),
    /// Another session held the fill lock: nothing was looked at.
    pub skipped: bool,
}

/// A month (`YYYY-MM`, UTC): this one (`back = 0`) or the one before (`back = 1`).
fn month(back: i32) -> String {
    let d = crate::partitions::today();
    let (mut y, mut m) = (i32::from(d.year()), i32::from(d.month()) - back);
    while m < 1 {
        m += 12;
        y -= 1;
    }
    format!("{y:04}-{m:02}")
}

/// The mark of an entry of `scope` (the shared database) finished now for the migration set with
/// fingerprint `fp`.
pub fn mark(scope: &str, fp: &str) -> String {
    format!("{MARK_PREFIX}{scope}/{fp}@{}", month(0))
}

/// The marks a claim accepts: entries built this month or the last (which hold this month's
/// partition: entries are built with at least one month ahead).
pub fn claimable(scope: &str, fp: &str) -> [String; 2] {
    [
        format!("{MARK_PREFIX}{scope}/{fp}@{}", month(0)),
        format!("{MARK_PREFIX}{scope}/{fp}@{}", month(1)),
    ]
}

fn role_mark(scope: &str) -> String {
    format!("{ROLE_MARK_PREFIX}{scope}")
}

fn lit(s: &str) -> Result<String> {
    quote_literal(s).ok_or_else(|| Error::Internal("unquotable literal".into()))
}

fn entry_name() -> Result<Ident> {
    let hex: String = (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    Ident::new(&format!("{POOL_PREFIX}{hex}"))
        .map_err(|e| Error::Internal(format!("pool entry name: {e}")))
}

/// A database error code, if any.
fn code_of(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.to_string())
}

/// The claim's target exists already (another process's claim for the same Tenant): no other
/// entry can be renamed onto it either.
fn target_exists(e: &sqlx::Error) -> bool {
    matches!(code_of(e).as_deref(), Some("42P04" | "42P06"))
}

/// The advisory key of one entry (held for the claim's or the sweep's transaction).
const ENTRY_KEY_SQL: &str =
    "SELECT pg_try_advisory_xact_lock(hashtextextended('tenantdb_pool:' || $1, 0))";

/// Takes `entry`'s advisory lock for `tx`'s lifetime without waiting: false when another
/// claim or sweep holds it (the caller skips the entry).
async fn try_entry_lock(tx: &mut sqlx::PgConnection, entry: &Ident) -> Result<bool> {
    Ok(sqlx::query_scalar(ENTRY_KEY_SQL)
        .bind(entry.as_str())
        .fetch_one(tx)
        .await?)
}

/// Schema entries of a scope that a claim may take: the name's shape, owned by the marked
/// `NOLOGIN` role of the same name, with one of the marks `$2` (`$1`: the role mark).
/// An entry whose role has rights or objects in another database (granted by a tenant there:
/// its drop would fail) is not one: the sweep clears it.
const SCHEMA_ENTRIES: &str = "SELECT n.nspname::text FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner \
     WHERE n.nspname ~ '^tenantdb_pool_[0-9a-f]{16}$' AND r.rolname = n.nspname AND NOT r.rolcanlogin \
       AND shobj_description(r.oid, 'pg_authid') = $1 AND obj_description(n.oid, 'pg_namespace') = ANY($2) \
       AND NOT EXISTS (SELECT 1 FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid \
                         AND d.dbid NOT IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())))";

/// Database entries a claim may take: the name's shape, the admin's, closed to connections, with
/// one of the marks `$1`.
const DATABASE_ENTRIES: &str = "SELECT datname::text FROM pg_database \
     WHERE datname ~ '^tenantdb_pool_[0-9a-f]{16}$' AND NOT datallowconn \
       AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
       AND shobj_description(oid, 'pg_database') = ANY($1)";

impl PgAdmin {
    /// The scope of this server's pool: its shared database's name.
    fn pool_scope(&self) -> String {
        self.settings.shared_database.as_str().to_string()
    }

    /// Claims a schema entry for a new `schema` tenant: renamed to `schema`, its objects handed
    /// to `role`, its role dropped, the schema marked with `marker` — one transaction. `None`
    /// when no entry of `fp` is ready, else whether the entry was built this month (with all the
    /// partitions a tenant of this month gets). An entry that cannot be claimed is skipped with a
    /// warning.
    pub async fn claim_schema(
        &self,
        fp: &str,
        schema: &Ident,
        role: &Ident,
        marker: &str,
    ) -> Result<Option<bool>> {
        let pool = self.shared_pool().await?;
        let scope = self.pool_scope();
        let marks = claimable(&scope, fp).to_vec();
        let role_mark = role_mark(&scope);
        let candidates: Vec<String> = sqlx::query_scalar(ddl(format!(
            "{SCHEMA_ENTRIES} ORDER BY obj_description(n.oid, 'pg_namespace'), 1 LIMIT 16"
        )))
        .bind(&role_mark)
        .bind(&marks)
        .fetch_all(pool)
        .await?;
        let claimed = claim_first(
            pool,
            candidates,
            &format!(
                "SELECT obj_description(n.oid, 'pg_namespace') FROM pg_namespace n WHERE n.nspname IN ({SCHEMA_ENTRIES} AND n.nspname = $3)"
            ),
            Some(&role_mark),
            &marks,
            Kind::Schema,
            |entry| {
                Ok(format!(
                    "ALTER SCHEMA {entry} RENAME TO {schema}; REASSIGN OWNED BY {entry} TO {role}; DROP OWNED BY {entry}; DROP ROLE {entry}; COMMENT ON SCHEMA {schema} IS {}",
                    lit(marker)?
                ))
            },
        )
        .await?;
        Ok(claimed.map(|(entry, this_month)| {
            info!(
                entry = entry.as_str(),
                schema = schema.as_str(),
                "schema claimed from the warm pool"
            );
            this_month
        }))
    }

    /// Claims a database entry for a new `database` tenant: renamed to `database`, opened to
    /// connections, owned by `role` with `connection_limit`, unmarked (the caller hands its
    /// objects over and marks it; a crash in between is completed by `MarkDatabase`). `None`
    /// when none of `fp` is ready, else whether the entry was built this month.
    pub async fn claim_database(
        &self,
        fp: &str,
        database: &Ident,
        role: &Ident,
        connection_limit: i32,
    ) -> Result<Option<bool>> {
        let pool = self.admin()?;
        let marks = claimable(&self.pool_scope(), fp).to_vec();
        let candidates: Vec<String> = sqlx::query_scalar(ddl(format!(
            "{DATABASE_ENTRIES} ORDER BY shobj_description(oid, 'pg_database'), 1 LIMIT 16"
        )))
        .bind(&marks)
        .fetch_all(pool)
        .await?;
        let claimed = claim_first(
            pool,
            candidates,
            &format!(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname IN ({DATABASE_ENTRIES} AND datname = $2)"
            ),
            None,
            &marks,
            Kind::Database,
            |entry| {
                Ok(format!(
                    "ALTER DATABASE {entry} RENAME TO {database}; ALTER DATABASE {database} ALLOW_CONNECTIONS true; ALTER DATABASE {database} OWNER TO {role}; ALTER DATABASE {database} CONNECTION LIMIT {connection_limit}; COMMENT ON DATABASE {database} IS NULL"
                ))
            },
        )
        .await?;
        Ok(claimed.map(|(entry, this_month)| {
            info!(
                entry = entry.as_str(),
                database = database.as_str(),
                "database claimed from the warm pool"
            );
            this_month
        }))
    }

    /// Claimable entries of the migration set with fingerprint `fp`: (schemas, databases).
    pub async fn pool_ready(&self, fp: &str) -> Result<(u32, u32)> {
        let scope = self.pool_scope();
        let marks = claimable(&scope, fp).to_vec();
        let schemas: i64 =
            sqlx::query_scalar(ddl(format!("SELECT count(*) FROM ({SCHEMA_ENTRIES}) e")))
                .bind(role_mark(&scope))
                .bind(&marks)
                .fetch_one(self.shared_pool().await?)
                .await?;
        let databases: i64 =
            sqlx::query_scalar(ddl(format!("SELECT count(*) FROM ({DATABASE_ENTRIES}) e")))
                .bind(&marks)
                .fetch_one(self.admin()?)
                .await?;
        Ok((schemas as u32, databases as u32))
    }

    /// Sweeps and refills the pool to `want` entries of the migration set `set` (one filler per
    /// scope at a time: another operator's fill in progress makes this one return at once).
    pub async fn fill_pool(
        &self,
        set: &MigrationSet,
        want: WarmPool,
        months_ahead: u32,
    ) -> Result<Filled> {
        let mut filled = Filled::default();
        let scope = self.pool_scope();
        if want.is_empty() {
            // Nothing wanted: only a pool turned off is emptied (no shared database created, no
            // lock taken when there is none). Every schema entry has its marked role.
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname ~ $1 AND shobj_description(oid, 'pg_authid') = $2) \
                     OR EXISTS (SELECT 1 FROM pg_database WHERE datname ~ $1 AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) AND (shobj_description(oid, 'pg_database') LIKE $3 OR shobj_description(oid, 'pg_database') = $4 OR (shobj_description(oid, 'pg_database') IS NULL AND NOT datallowconn)))",
            )
            .bind(POOL_RE)
            .bind(role_mark(&scope))
            .bind(format!("{MARK_PREFIX}{scope}/%"))
            .bind(format!("{BUILDING_PREFIX}{scope}"))
            .fetch_one(self.admin()?)
            .await?;
            if !any {
                return Ok(filled);
            }
        } else if set.migrations().is_empty() {
            return Ok(filled);
        }
        crate::fence::check()?;
        // The lock on a session of its own in the shared database (the scope): a crashed
        // filler's lock goes with its session.
        self.shared_pool().await?;
        let mut lock = self
            .connect_to(&self.settings.shared_database.clone())
            .await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(FILL_LOCK)
            .fetch_one(&mut lock)
            .await?;
        if !got {
            let _ = lock.close().await;
            filled.skipped = true;
            return Ok(filled);
        }
        let result = self.fill_locked(set, want, months_ahead, &mut filled).await;
        let _ = lock.close().await;
        result.map(|()| filled)
    }

    async fn fill_locked(
        &self,
        set: &MigrationSet,
        want: WarmPool,
        months_ahead: u32,
        filled: &mut Filled,
    ) -> Result<()> {
        // The template is the tenants' (their `--partition-months-ahead`); an entry holds at least
        // one month ahead, so that one of last month still holds this month's partition.
        let template_ahead = months_ahead;
        let months_ahead = months_ahead.max(1);
        let fp = super::template::fingerprint(set);
        let scope = self.pool_scope();
        let keep = claimable(&scope, &fp);
        filled.swept += self.sweep_schemas(&keep, want.schemas).await?;
        filled.swept += self.sweep_databases(&keep, want.databases).await?;
        let (mut schemas, mut databases) = self.pool_ready(&fp).await?;
        let current = mark(&scope, &fp);
        // The two kinds independently: a schema entry refused (its baseline would not survive
        // the rename) is not tried again for this migration set, and does not stop the databases.
        let refused = self
            .pool_refused
            .lock()
            .ok()
            .is_some_and(|r| r.as_deref() == Some(fp.as_str()));
        let mut failure = None;
        while schemas < want.schemas && !refused {
            crate::fence::check()?;
            match self.build_schema_entry(set, &current, months_ahead).await {
                Ok(()) => {
                    schemas += 1;
                    filled.built.0 += 1;
                }
                Err(e) => {
                    if matches!(e, Error::Conflict(_))
                        && let Ok(mut r) = self.pool_refused.lock()
                    {
                        *r = Some(fp.clone());
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        if databases < want.databases {
            match self.ensure_template(set, template_ahead).await? {
                Some(template) => {
                    while databases < want.databases {
                        crate::fence::check()?;
                        self.build_database_entry(&template, &current, months_ahead)
                            .await?;
                        databases += 1;
                        filled.built.1 += 1;
                    }
                }
                None => warn!("no template database: the warm pool's databases are not built"),
            }
        }
        filled.ready = (schemas, databases);
        if let Some(e) = failure {
            return Err(e);
        }
        if filled.built != (0, 0) || filled.swept > 0 {
            info!(
                built_schemas = filled.built.0,
                built_databases = filled.built.1,
                swept = filled.swept,
                ready_schemas = schemas,
                ready_databases = databases,
                "warm pool filled"
            );
        }
        Ok(())
    }

    /// Drops this scope's pool schemas that are not claimable with one of `keep` (cut short,
    /// another migration set, too old), those beyond `wanted`, and this scope's pool roles whose
    /// schema is gone. An entry that cannot be dropped is left with a warning.
    async fn sweep_schemas(&self, keep: &[String; 2], wanted: u32) -> Result<u32> {
        let shared = self.shared_pool().await?;
        let role_mark = role_mark(&self.pool_scope());
        // Entries: schemas owned by the marked pool role of their name (newest marks kept first).
        let rows = sqlx::query(
            "SELECT n.nspname::text AS name, obj_description(n.oid, 'pg_namespace') AS mark, \
                    ARRAY(SELECT DISTINCT db.datname::text FROM pg_shdepend d JOIN pg_database db ON db.oid = d.dbid \
                           WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid AND db.datname <> current_database()) AS elsewhere \
               FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner \
              WHERE n.nspname ~ $1 AND r.rolname = n.nspname AND shobj_description(r.oid, 'pg_authid') = $2 ORDER BY 2 DESC NULLS LAST, 1",
        )
        .bind(POOL_RE)
        .bind(&role_mark)
        .fetch_all(shared)
        .await?;
        let mut kept = 0u32;
        let mut swept = 0u32;
        for row in rows {
            let name: String = row.try_get("name")?;
            let m: Option<String> = row.try_get("mark")?;
            let elsewhere: Vec<String> = row.try_get("elsewhere")?;
            if m.as_ref().is_some_and(|m| keep.contains(m)) && kept < wanted && elsewhere.is_empty()
            {
                kept += 1;
                continue;
            }
            let Ok(entry) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            // Rights a tenant granted the role in its own database would stop the drop: revoked
            // there first (the admin acts for the role as a member).
            for db in &elsewhere {
                let Ok(db) = Ident::existing(db) else {
                    warn!(entry = %name, database = %db, "warm pool role's rights elsewhere: a database name the operator does not quote");
                    continue;
                };
                if let Err(e) = self
                    .in_database(&db, &format!("DROP OWNED BY {entry}"))
                    .await
                {
                    warn!(entry = %name, database = db.as_str(), error = %e, "warm pool role's rights elsewhere not dropped");
                }
            }
            let mut tx = shared.begin().await?;
            if !try_entry_lock(&mut tx, &entry).await? {
                continue;
            }
            match sqlx::raw_sql(ddl(format!(
                "DROP SCHEMA IF EXISTS {entry} CASCADE; DROP OWNED BY {entry}; DROP ROLE IF EXISTS {entry}"
            )))
            .execute(&mut *tx)
            .await
            {
                Ok(_) => {
                    tx.commit().await?;
                    swept += 1;
                }
                Err(e) => warn!(entry = %name, error = %e, "warm pool schema not dropped"),
            }
        }
        // This scope's marked pool roles without their schema (a build cut short before it).
        let orphans: Vec<String> = sqlx::query_scalar(
            "SELECT r.rolname::text FROM pg_roles r WHERE r.rolname ~ $1 AND shobj_description(r.oid, 'pg_authid') = $2 AND NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = r.rolname)",
        )
        .bind(POOL_RE)
        .bind(&role_mark)
        .fetch_all(shared)
        .await?;
        for name in orphans {
            let Ok(role) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            match sqlx::raw_sql(ddl(format!(
                "DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"
            )))
            .execute(shared)
            .await
            {
                Ok(_) => swept += 1,
                Err(e) => warn!(role = %name, error = %e, "warm pool role not dropped"),
            }
        }
        Ok(swept)
    }

    /// Drops this scope's pool databases (the admin's, of the entries' name shape) not claimable
    /// with one of `keep` (a build cut short: its building mark, or no mark at all while still
    /// closed to connections), and those beyond `wanted`.
    async fn sweep_databases(&self, keep: &[String; 2], wanted: u32) -> Result<u32> {
        let admin = self.admin()?;
        let scope = self.pool_scope();
        let rows = sqlx::query(
            "SELECT datname::text AS name, shobj_description(oid, 'pg_database') AS mark FROM pg_database \
              WHERE datname ~ $1 AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) \
                AND (shobj_description(oid, 'pg_database') LIKE $2 OR shobj_description(oid, 'pg_database') = $3 \
                     OR (shobj_description(oid, 'pg_database') IS NULL AND NOT datallowconn)) \
              ORDER BY 2 DESC NULLS LAST, 1",
        )
        .bind(POOL_RE)
        .bind(format!("{MARK_PREFIX}{scope}/%"))
        .bind(format!("{BUILDING_PREFIX}{scope}"))
        .fetch_all(admin)
        .await?;
        let mut kept = 0u32;
        let mut swept = 0u32;
        // The entries' locks are taken on a connection of their own (in the admin's database,
        // as the claims take them): the admin pool may have a single connection, which the
        // drops need.
        let mut locks: Option<sqlx::PgConnection> = None;
        for row in rows {
            let name: String = row.try_get("name")?;
            let m: Option<String> = row.try_get("mark")?;
            if m.as_ref().is_some_and(|m| keep.contains(m)) && kept < wanted {
                kept += 1;
                continue;
            }
            let Ok(entry) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            if locks.is_none() {
                locks = Some(self.connect_maintenance().await?);
            }
            let Some(lc) = locks.as_mut() else {
                continue;
            };
            // Under the entry's lock: not while a claim of it is in flight (a claim renames it,
            // so a committed claim leaves nothing of this name).
            let mut tx = lc.begin().await?;
            if !try_entry_lock(&mut tx, &entry).await? {
                continue;
            }
            // DROP DATABASE cannot run in a transaction: the lock's transaction stays open
            // around it (on its own connection).
            match sqlx::raw_sql(ddl(format!("DROP DATABASE IF EXISTS {entry} WITH (FORCE)")))
                .execute(admin)
                .await
            {
                Ok(_) => swept += 1,
                Err(e) => warn!(database = %name, error = %e, "warm pool database not dropped"),
            }
            tx.rollback().await?;
        }
        if let Some(lc) = locks {
            let _ = lc.close().await;
        }
        Ok(swept)
    }
}

/// The claim shared by both kinds: the first of `candidates` whose lock is free and that is still
/// claimable (`recheck`, bound with `role_mark` when given, the claimable `marks` and the entry,
/// answers its mark) is claimed with `claim`'s SQL in the lock's transaction. An entry whose claim
/// fails is skipped with a warning; a target that exists already ends the search. The entry and
/// whether it was built this month (`marks[0]`).
async fn claim_first(
    pool: &sqlx::PgPool,
    candidates: Vec<String>,
    recheck: &str,
    role_mark: Option<&str>,
    marks: &[String],
    kind: Kind,
    claim: impl Fn(&Ident) -> Result<String>,
) -> Result<Option<(Ident, bool)>> {
    for name in candidates {
        let Ok(entry) = Ident::new(&name) else {
            continue;
        };
        crate::fence::check()?;
        let mut tx = pool.begin().await?;
        if !try_entry_lock(&mut tx, &entry).await? {
            continue;
        }
        // Claimed and committed by another process between the list and the lock?
        let still: Option<String> = match role_mark {
            Some(r) => {
                sqlx::query_scalar(ddl(recheck.to_string()))
                    .bind(r)
                    .bind(marks)
                    .bind(entry.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query_scalar(ddl(recheck.to_string()))
                    .bind(marks)
                    .bind(entry.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        if still.is_none() {
            continue;
        }
        let sql = claim(&entry)?;
        crate::fence::check()?;
        match sqlx::raw_sql(ddl(sql)).execute(&mut *tx).await {
            Ok(_) => {}
            Err(e) if target_exists(&e) => return Err(e.into()),
            Err(e) => {
                warn!(entry = entry.as_str(), kind = kind.label(), error = %e, "warm pool entry not claimable; trying the next");
                continue;
            }
        }
        crate::fence::check()?;
        tx.commit().await?;
        let this_month = still.as_deref() == marks.first().map(String::as_str);
        return Ok(Some((entry, this_month)));
    }
    Ok(None)
}

mod build;
pub(in crate::pg) use build::partitions_of;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_name_the_scope_the_set_and_the_month() {
        let m = mark("shared", "abc123");
        assert!(m.starts_with("tenantdb.io/pool=shared/abc123@20"), "{m}");
        assert_eq!(m.len(), "tenantdb.io/pool=shared/abc123@YYYY-MM".len());
        let [this, last] = claimable("shared", "abc123");
        assert_eq!(this, m);
        assert_ne!(last, m);
        assert!(last.starts_with("tenantdb.io/pool=shared/abc123@20"));
    }

    #[test]
    fn the_last_month_wraps_the_year() {
        for back in 0..24 {
            let m = month(back);
            let (y, mm) = m.split_once('-').unwrap();
            assert_eq!(y.len(), 4);
            assert!((1..=12).contains(&mm.parse::<i32>().unwrap()), "{m}");
        }
        assert_ne!(month(0), month(1));
        assert_eq!(
            month(0)[..4].parse::<i32>().unwrap() - 1,
            month(12)[..4].parse::<i32>().unwrap()
        );
    }

    #[test]
    fn entry_names_match_the_shape_the_sweep_and_claims_require() {
        let re = POOL_RE.trim_start_matches('^').trim_end_matches('$');
        assert_eq!(re, "tenantdb_pool_[0-9a-f]{16}");
        let n = entry_name().unwrap();
        let hex = n.as_str().strip_prefix(POOL_PREFIX).unwrap();
        assert!(
            hex.len() == 16
                && hex
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(SCHEMA_ENTRIES.contains(POOL_RE) && DATABASE_ENTRIES.contains(POOL_RE));
    }

    #[test]
    fn entry_names_are_valid_identifiers_with_the_prefix() {
        let a = entry_name().unwrap();
        let b = entry_name().unwrap();
        assert!(a.as_str().starts_with(POOL_PREFIX));
        assert_eq!(a.as_str().len(), POOL_PREFIX.len() + 16);
        assert_ne!(a, b);
    }
}
