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
//! A finished entry is marked with a comment naming the migration set's fingerprint and the month
//! it was built in (`tenantdb.io/pool=<fp>@<YYYY-MM>`). A new Tenant claims one in a single
//! transaction: under a per-entry advisory lock, a schema entry is renamed to the tenant's schema,
//! its objects are handed to the tenant role (`REASSIGN OWNED`, which rewrites their ACLs too), its
//! role dropped and the schema marked as the tenant's; a database entry is renamed and given to the
//! tenant role, unmarked, and then completed like a template copy (its objects handed over inside
//! it, then marked; a crash in between is completed by the plan's `MarkDatabase`). Nothing of an
//! unclaimed entry can log in: the schema's role has no password and no `LOGIN`, nobody but the
//! admin may connect to a database entry.
//!
//! The pool is refilled in the background ([`PgAdmin::fill_pool`], one filler per server under a
//! session advisory lock): it first sweeps what a crash left (an entry without its mark, a pool
//! role without its schema), entries of an earlier migration set or month, and entries beyond the
//! wanted size, then builds the missing ones.

use k8s_openapi::jiff::Timestamp;
use sqlx::{Connection, Row};
use tracing::{info, warn};

use super::{PgAdmin, ddl};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationSet, MigrationTarget};
use crate::naming::{Ident, quote_literal};

/// Prefix of pool entries' names (schemas, their roles, databases).
pub const POOL_PREFIX: &str = "tenantdb_pool_";

/// The `LIKE` pattern of pool entries' names.
const POOL_LIKE: &str = "tenantdb\\_pool\\_%";

/// Comment marking a pool entry's role as the operator's.
const ROLE_MARK: &str = "tenantdb.io/pool";

/// Prefix of a finished entry's mark.
const MARK_PREFIX: &str = "tenantdb.io/pool=";

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
}

/// The month a mark names (`YYYY-MM`, UTC).
fn this_month() -> String {
    let d = Timestamp::now()
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .date();
    format!("{:04}-{:02}", d.year(), d.month())
}

/// The mark of an entry finished now for the migration set with fingerprint `fp`: entries are
/// claimable while the set and the month are the same (a month's partitions are in it).
pub fn mark(fp: &str) -> String {
    format!("{MARK_PREFIX}{fp}@{}", this_month())
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

/// Another claimer's race on the same entry (it went away, is in use, or its row was updated
/// concurrently): try the next entry.
fn lost_race(e: &sqlx::Error) -> bool {
    matches!(
        code_of(e).as_deref(),
        Some("3D000" | "3F000" | "55006" | "40001" | "40P01" | "XX000" | "42P04")
    )
}

/// The advisory key of one entry (held for the claim's transaction).
const ENTRY_KEY_SQL: &str =
    "SELECT pg_try_advisory_xact_lock(hashtextextended('tenantdb_pool:' || $1, 0))";

impl PgAdmin {
    /// Claims a schema entry for a new `schema` tenant: renamed to `schema`, its objects handed
    /// to `role`, its role dropped, the schema marked with `marker` — one transaction. `false`
    /// when no entry of `fp` (this month) is ready.
    pub async fn claim_schema(
        &self,
        fp: &str,
        schema: &Ident,
        role: &Ident,
        marker: &str,
    ) -> Result<bool> {
        let pool = self.shared_pool().await?;
        let like = format!("{MARK_PREFIX}{fp}@{}", this_month());
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT n.nspname::text FROM pg_namespace n WHERE n.nspname LIKE $1 AND obj_description(n.oid, 'pg_namespace') = $2 AND pg_get_userbyid(n.nspowner) = n.nspname ORDER BY n.nspname LIMIT 16",
        )
        .bind(POOL_LIKE)
        .bind(&like)
        .fetch_all(pool)
        .await?;
        for name in candidates {
            let Ok(entry) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            let mut tx = pool.begin().await?;
            let locked: bool = sqlx::query_scalar(ENTRY_KEY_SQL)
                .bind(entry.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                continue;
            }
            // Claimed and committed by another process between the list and the lock?
            let still: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1 AND obj_description(oid, 'pg_namespace') = $2",
            )
            .bind(entry.as_str())
            .bind(&like)
            .fetch_optional(&mut *tx)
            .await?;
            if still.is_none() {
                continue;
            }
            let sql = format!(
                "ALTER SCHEMA {entry} RENAME TO {schema}; REASSIGN OWNED BY {entry} TO {role}; DROP OWNED BY {entry}; DROP ROLE {entry}; COMMENT ON SCHEMA {schema} IS {}",
                lit(marker)?
            );
            crate::fence::check()?;
            match sqlx::raw_sql(ddl(sql)).execute(&mut *tx).await {
                Ok(_) => {}
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
            crate::fence::check()?;
            tx.commit().await?;
            info!(
                entry = entry.as_str(),
                schema = schema.as_str(),
                "schema claimed from the warm pool"
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Claims a database entry for a new `database` tenant: renamed to `database`, owned by
    /// `role` with `connection_limit`, unmarked (the caller hands its objects over and marks it;
    /// a crash in between is completed by `MarkDatabase`). `false` when none of `fp` is ready.
    pub async fn claim_database(
        &self,
        fp: &str,
        database: &Ident,
        role: &Ident,
        connection_limit: i32,
    ) -> Result<bool> {
        let pool = self.admin()?;
        let like = format!("{MARK_PREFIX}{fp}@{}", this_month());
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1 AND shobj_description(oid, 'pg_database') = $2 ORDER BY datname LIMIT 16",
        )
        .bind(POOL_LIKE)
        .bind(&like)
        .fetch_all(pool)
        .await?;
        for name in candidates {
            let Ok(entry) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            let mut tx = pool.begin().await?;
            let locked: bool = sqlx::query_scalar(ENTRY_KEY_SQL)
                .bind(entry.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
                continue;
            }
            let still: Option<i32> = sqlx::query_scalar(
                "SELECT 1 FROM pg_database WHERE datname = $1 AND shobj_description(oid, 'pg_database') = $2",
            )
            .bind(entry.as_str())
            .bind(&like)
            .fetch_optional(&mut *tx)
            .await?;
            if still.is_none() {
                continue;
            }
            let sql = format!(
                "ALTER DATABASE {entry} RENAME TO {database}; ALTER DATABASE {database} OWNER TO {role}; ALTER DATABASE {database} CONNECTION LIMIT {connection_limit}; COMMENT ON DATABASE {database} IS NULL"
            );
            crate::fence::check()?;
            match sqlx::raw_sql(ddl(sql)).execute(&mut *tx).await {
                Ok(_) => {}
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(e.into()),
            }
            crate::fence::check()?;
            tx.commit().await?;
            info!(
                entry = entry.as_str(),
                database = database.as_str(),
                "database claimed from the warm pool"
            );
            return Ok(true);
        }
        Ok(false)
    }

    /// Ready (claimable) entries of the migration set with fingerprint `fp`: (schemas, databases).
    pub async fn pool_ready(&self, fp: &str) -> Result<(u32, u32)> {
        let like = format!("{MARK_PREFIX}{fp}@{}", this_month());
        let schemas: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_namespace n WHERE n.nspname LIKE $1 AND obj_description(n.oid, 'pg_namespace') = $2",
        )
        .bind(POOL_LIKE)
        .bind(&like)
        .fetch_one(self.shared_pool().await?)
        .await?;
        let databases: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1 AND shobj_description(oid, 'pg_database') = $2",
        )
        .bind(POOL_LIKE)
        .bind(&like)
        .fetch_one(self.admin()?)
        .await?;
        Ok((schemas as u32, databases as u32))
    }

    /// Sweeps and refills the pool to `want` entries of the migration set `set` (one filler per
    /// server at a time: another operator's fill in progress makes this one return at once).
    pub async fn fill_pool(
        &self,
        set: &MigrationSet,
        want: WarmPool,
        months_ahead: u32,
    ) -> Result<Filled> {
        let mut filled = Filled::default();
        if want.is_empty() {
            // Nothing wanted: only a pool turned off is emptied (no shared database created, no
            // lock taken when there is none). Every schema entry has its marked role.
            let any: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname LIKE $1 AND shobj_description(oid, 'pg_authid') = $2) OR EXISTS (SELECT 1 FROM pg_database WHERE datname LIKE $1)",
            )
            .bind(POOL_LIKE)
            .bind(ROLE_MARK)
            .fetch_one(self.admin()?)
            .await?;
            if !any {
                return Ok(filled);
            }
        } else if set.migrations().is_empty() {
            return Ok(filled);
        }
        crate::fence::check()?;
        let mut lock = self
            .connect_to(&self.settings.shared_database.clone())
            .await;
        if lock.is_err() {
            // The shared database may not exist yet.
            self.shared_pool().await?;
            lock = self
                .connect_to(&self.settings.shared_database.clone())
                .await;
        }
        let mut lock = lock?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(FILL_LOCK)
            .fetch_one(&mut lock)
            .await?;
        if !got {
            let _ = lock.close().await;
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
        let fp = super::template::fingerprint(set);
        let current = mark(&fp);
        filled.swept += self.sweep_schemas(&current, want.schemas).await?;
        filled.swept += self.sweep_databases(&current, want.databases).await?;
        let (mut schemas, mut databases) = self.pool_ready(&fp).await?;
        while schemas < want.schemas {
            crate::fence::check()?;
            self.build_schema_entry(set, &current, months_ahead).await?;
            schemas += 1;
            filled.built.0 += 1;
        }
        if databases < want.databases {
            match self.ensure_template(set).await? {
                Some(template) => {
                    while databases < want.databases {
                        crate::fence::check()?;
                        self.build_database_entry(&template, &current).await?;
                        databases += 1;
                        filled.built.1 += 1;
                    }
                }
                None => warn!("no template database: the warm pool's databases are not built"),
            }
        }
        filled.ready = (schemas, databases);
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

    /// Drops pool schemas that are not claimable with `current` (cut short, earlier set or
    /// month), those beyond `keep`, and pool roles whose schema is gone.
    async fn sweep_schemas(&self, current: &str, keep: u32) -> Result<u32> {
        let shared = self.shared_pool().await?;
        // Entries: schemas owned by the marked pool role of their name.
        let rows = sqlx::query(
            "SELECT n.nspname::text AS name, obj_description(n.oid, 'pg_namespace') AS mark FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname LIKE $1 AND r.rolname = n.nspname AND shobj_description(r.oid, 'pg_authid') = $2 ORDER BY n.nspname",
        )
        .bind(POOL_LIKE)
        .bind(ROLE_MARK)
        .fetch_all(shared)
        .await?;
        let mut kept = 0u32;
        let mut swept = 0u32;
        for row in rows {
            let name: String = row.try_get("name")?;
            let m: Option<String> = row.try_get("mark")?;
            if m.as_deref() == Some(current) && kept < keep {
                kept += 1;
                continue;
            }
            let Ok(entry) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            let mut tx = shared.begin().await?;
            let locked: bool = sqlx::query_scalar(ENTRY_KEY_SQL)
                .bind(entry.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if !locked {
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
                // Claimed meanwhile.
                Err(e) if lost_race(&e) || code_of(&e).as_deref() == Some("42704") => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Marked pool roles without their schema (a build cut short before the schema existed).
        let orphans: Vec<String> = sqlx::query_scalar(
            "SELECT r.rolname::text FROM pg_roles r WHERE r.rolname LIKE $1 AND shobj_description(r.oid, 'pg_authid') = $2 AND NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = r.rolname)",
        )
        .bind(POOL_LIKE)
        .bind(ROLE_MARK)
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
                Err(e) if code_of(&e).as_deref() == Some("42704") => {}
                Err(e) => warn!(role = %name, error = %e, "pool role not dropped"),
            }
        }
        Ok(swept)
    }

    /// Drops pool databases not claimable with `current` and those beyond `keep`. A pool-named
    /// database without a comment is a build cut short only when the admin owns it.
    async fn sweep_databases(&self, current: &str, keep: u32) -> Result<u32> {
        let admin = self.admin()?;
        let rows = sqlx::query(
            "SELECT datname::text AS name, shobj_description(oid, 'pg_database') AS mark FROM pg_database WHERE datname LIKE $1 AND (shobj_description(oid, 'pg_database') LIKE 'tenantdb.io/pool=%' OR (shobj_description(oid, 'pg_database') IS NULL AND datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user))) ORDER BY datname",
        )
        .bind(POOL_LIKE)
        .fetch_all(admin)
        .await?;
        let mut kept = 0u32;
        let mut swept = 0u32;
        for row in rows {
            let name: String = row.try_get("name")?;
            let m: Option<String> = row.try_get("mark")?;
            if m.as_deref() == Some(current) && kept < keep {
                kept += 1;
                continue;
            }
            let Ok(entry) = Ident::new(&name) else {
                continue;
            };
            crate::fence::check()?;
            match sqlx::raw_sql(ddl(format!("DROP DATABASE IF EXISTS {entry} WITH (FORCE)")))
                .execute(admin)
                .await
            {
                Ok(_) => swept += 1,
                Err(e) => warn!(database = %name, error = %e, "pool database not dropped"),
            }
        }
        Ok(swept)
    }

    /// Builds one schema entry: its role, the schema, the baseline and this month's partitions
    /// (as that role), then the mark.
    async fn build_schema_entry(
        &self,
        set: &MigrationSet,
        current: &str,
        months_ahead: u32,
    ) -> Result<()> {
        let entry = entry_name()?;
        let shared_db = self.settings.shared_database.clone();
        let group = crate::naming::connect_group_of(&shared_db)?;
        let shared = self.shared_pool().await?;
        let admin = self.admin()?;
        let started = std::time::Instant::now();
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!(
            "CREATE ROLE {entry} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS; COMMENT ON ROLE {entry} IS {}; GRANT {group} TO {entry}",
            lit(ROLE_MARK)?
        )))
        .execute(admin)
        .await?;
        // A non-superuser admin (CREATEROLE) acts for the role only as a member.
        sqlx::raw_sql(ddl(format!(
            "DO $$ BEGIN IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'GRANT {entry} TO ' || quote_ident(current_user); END IF; END $$"
        )))
        .execute(admin)
        .await?;
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!("CREATE SCHEMA {entry} AUTHORIZATION {entry}")))
            .execute(shared)
            .await?;
        let mut session = self.owner_session(&entry, &shared_db).await?;
        let target = MigrationTarget {
            schema: entry.as_str(),
            owner_role: entry.as_str(),
            lock_key: FILL_LOCK + 1,
        };
        let report =
            migrate::migrate(&mut session, set, &target, set.latest_version(), false).await;
        let partitions = match &report {
            Ok(_) => {
                let today = Timestamp::now()
                    .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
                    .date();
                Some(
                    crate::partitions::maintain(
                        &mut session,
                        entry.as_str(),
                        entry.as_str(),
                        today,
                        months_ahead,
                        None,
                    )
                    .await,
                )
            }
            Err(_) => None,
        };
        session.close().await;
        report?;
        if let Some(p) = partitions {
            p?;
        }
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!("REVOKE {group} FROM {entry}")))
            .execute(admin)
            .await?;
        sqlx::raw_sql(ddl(format!(
            "COMMENT ON SCHEMA {entry} IS {}",
            lit(current)?
        )))
        .execute(shared)
        .await?;
        info!(
            entry = entry.as_str(),
            took_ms = started.elapsed().as_millis() as u64,
            "warm pool schema built"
        );
        Ok(())
    }

    /// Builds one database entry: a copy of `template`, closed to `PUBLIC`, then the mark.
    async fn build_database_entry(&self, template: &Ident, current: &str) -> Result<()> {
        let entry = entry_name()?;
        let admin = self.admin()?;
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!(
            "CREATE DATABASE {entry} TEMPLATE {template} ENCODING 'UTF8'"
        )))
        .execute(admin)
        .await?;
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!(
            "REVOKE ALL ON DATABASE {entry} FROM PUBLIC; COMMENT ON DATABASE {entry} IS {}",
            lit(current)?
        )))
        .execute(admin)
        .await?;
        info!(entry = entry.as_str(), "warm pool database built");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_name_the_set_and_the_month() {
        let m = mark("abc123");
        assert!(m.starts_with("tenantdb.io/pool=abc123@20"), "{m}");
        assert_eq!(m.len(), "tenantdb.io/pool=abc123@YYYY-MM".len());
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
