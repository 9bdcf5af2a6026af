//! Template databases: `database` tenants are created with `CREATE DATABASE … TEMPLATE` from a
//! database that already holds the baseline at the current version, instead of replaying its DDL.
//!
//! One template per server, migration set, month and months ahead
//! (`tenantdb_tpl_<fingerprint>_<YYYYMM>_<months ahead>`, the fingerprint being the hash of every
//! migration's version and checksum). It is built once: created owned by the
//! `tenantdb_template_owner` role (`NOLOGIN`, no rights anywhere else), migrated on a
//! session logged in as that role (one-time password, as the `shared` layout owner: never as a
//! superuser), given this month's and the next `--partition-months-ahead` monthly partitions (the
//! ones a tenant provisioned this month gets: a copy needs no partition maintenance, and a copy
//! holds exactly what a tenant whose baseline was replayed holds), then handed to the admin,
//! marked `IS_TEMPLATE`, closed to connections and commented with its fingerprint, month and
//! months ahead (the mark of a finished build). The first tenant of a new month builds that
//! month's template; the last month's is dropped then. A clone's objects are handed to the tenant
//! role with `REASSIGN OWNED` inside the clone (the template itself, owned by the admin, is not
//! touched), so a cloned tenant owns exactly what a DDL-provisioned one owns — the migration
//! history comes along. Templates of earlier migration sets, months or months ahead are dropped.

use k8s_openapi::jiff::civil::Date;
use sha2::{Digest, Sha256};
use sqlx::{ConnectOptions, Connection};
use tracing::{info, warn};

use super::{PgAdmin, ddl};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationSet, MigrationTarget};
use crate::naming::{Ident, quote_literal};

/// The role owning a template's objects while it is built (`NOLOGIN` otherwise).
pub const TEMPLATE_OWNER: &str = "tenantdb_template_owner";

/// Prefix of template database names.
pub const TEMPLATE_PREFIX: &str = "tenantdb_tpl_";

/// Comment prefix marking a finished template.
const MARK_PREFIX: &str = "tenantdb.io/template=";

/// Comment marking the build role as the operator's.
const OWNER_MARK: &str = "tenantdb.io/template-owner";

/// How long after a failed build tenants are created from `template0` before the next try.
const RETRY_FAILED_BUILD: std::time::Duration = std::time::Duration::from_secs(300);

/// What this process knows of its template (see [`PgAdmin::ensure_template`]).
#[derive(Debug, Default)]
pub(crate) struct TemplateState {
    /// The finished template found or built for the migration set.
    built: Option<Ident>,
    /// When the last build failed.
    failed_at: Option<std::time::Instant>,
}

/// Session-level advisory lock serializing template builds ("tnt_tmpl").
const TEMPLATE_LOCK: i64 = 0x746e_745f_746d_706c;

/// Hash of the migration set: versions and checksums, in order (12 hex digits).
pub fn fingerprint(set: &MigrationSet) -> String {
    let mut h = Sha256::new();
    for m in set.migrations() {
        h.update(m.version.to_be_bytes());
        h.update(m.checksum.as_bytes());
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The template database's name for a migration set, the month of `day` and `months_ahead`
/// partitions ahead of it: `tenantdb_tpl_<fingerprint>_<YYYYMM>_<months ahead>`.
fn name_of(set: &MigrationSet, day: Date, months_ahead: u32) -> Result<Ident> {
    Ident::new(&format!(
        "{TEMPLATE_PREFIX}{}_{:04}{:02}_{months_ahead}",
        fingerprint(set),
        day.year(),
        day.month()
    ))
    .map_err(|e| Error::Internal(format!("template name: {e}")))
}

/// The mark of a finished template: `tenantdb.io/template=<fingerprint>@<YYYY-MM>+<months ahead>`
/// (the same facts as its name, which a tenant cannot forge: only the admin comments on a
/// database it does not own).
fn mark_of(set: &MigrationSet, day: Date, months_ahead: u32) -> String {
    format!(
        "{MARK_PREFIX}{}@{:04}-{:02}+{months_ahead}",
        fingerprint(set),
        day.year(),
        day.month()
    )
}

/// The template database's name for a migration set this month (UTC) with `months_ahead`
/// partitions ahead: a copy of it holds what a tenant provisioned now gets.
pub fn template_name(set: &MigrationSet, months_ahead: u32) -> Result<Ident> {
    name_of(set, crate::partitions::today(), months_ahead)
}

fn lit(s: &str) -> Result<String> {
    quote_literal(s).ok_or_else(|| Error::Internal("unquotable literal".into()))
}

impl PgAdmin {
    /// The finished template for `set` this month, with this month's and the next
    /// `months_ahead` partitions, built now if missing (once per process, migration set and
    /// month; concurrent callers wait for the one build). `None` for an empty set.
    pub async fn ensure_template(
        &self,
        set: &MigrationSet,
        months_ahead: u32,
    ) -> Result<Option<Ident>> {
        if set.migrations().is_empty() {
            return Ok(None);
        }
        // The month is read once: the name, the mark and the partitions are of the same one.
        let day = crate::partitions::today();
        let name = name_of(set, day, months_ahead)?;
        let mark = mark_of(set, day, months_ahead);
        let mut state = self.template.lock().await;
        if state.built.as_ref() == Some(&name) {
            return Ok(Some(name));
        }
        // A build that failed is not retried for every tenant: they use template0 meanwhile.
        if state
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_FAILED_BUILD)
        {
            return Ok(None);
        }
        if self.template_finished(&name, &mark).await? {
            state.built = Some(name.clone());
            return Ok(Some(name));
        }
        crate::fence::check()?;
        // The build lock on a session of its own (the admin pool may have a single connection,
        // which the build needs): operators sharing the server build one template at a time, and
        // a crashed builder's lock goes with its session.
        let mut lock = self.connect_maintenance().await?;
        // Another operator's build (or a stuck session of one) is waited for a bounded time:
        // tenants are created from template0 meanwhile.
        sqlx::raw_sql("SET lock_timeout = '60s'")
            .execute(&mut lock)
            .await?;
        if let Err(e) = sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut lock)
            .await
        {
            let _ = lock.close().await;
            warn!(error = %e, "template build lock not obtained; creating from template0 meanwhile");
            return Ok(None);
        }
        let result = self
            .build_template(set, &name, &mark, (day, months_ahead))
            .await;
        let _ = lock.close().await;
        match result {
            Ok(()) => {
                state.built = Some(name.clone());
                state.failed_at = None;
                Ok(Some(name))
            }
            Err(e) => {
                state.failed_at = Some(std::time::Instant::now());
                Err(e)
            }
        }
    }

    async fn template_finished(&self, name: &Ident, mark: &str) -> Result<bool> {
        let row: Option<(bool, Option<String>)> = sqlx::query_as(
            "SELECT datistemplate, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        )
        .bind(name.as_str())
        .fetch_optional(self.admin()?)
        .await?;
        Ok(matches!(row, Some((true, Some(c))) if c == mark))
    }

    async fn build_template(
        &self,
        set: &MigrationSet,
        name: &Ident,
        mark: &str,
        (day, months_ahead): (Date, u32),
    ) -> Result<()> {
        if self.template_finished(name, mark).await? {
            return Ok(());
        }
        let pool = self.admin()?;
        let owner = template_owner()?;
        // A build cut short earlier (no mark) is thrown away (a template must be unmarked as
        // one before it can be dropped).
        let existing: Option<(bool, Option<String>)> = sqlx::query_as(
            "SELECT datistemplate, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        )
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?;
        if let Some((_, Some(c))) = &existing
            && !c.starts_with(MARK_PREFIX)
        {
            return Err(Error::Conflict(format!(
                "database {} exists and is not a template of the operator ({c}): template databases are off until it is removed",
                name.as_str()
            )));
        }
        if existing.is_some_and(|(t, _)| t) {
            sqlx::raw_sql(ddl(format!("ALTER DATABASE {name} WITH IS_TEMPLATE false")))
                .execute(pool)
                .await?;
        }
        sqlx::raw_sql(ddl(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(pool)
            .await?;
        let role: Option<Option<String>> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(TEMPLATE_OWNER)
        .fetch_optional(pool)
        .await?;
        match role {
            None => {
                sqlx::raw_sql(ddl(format!(
                    "CREATE ROLE {owner} NOLOGIN; COMMENT ON ROLE {owner} IS {}",
                    lit(OWNER_MARK)?
                )))
                .execute(pool)
                .await?;
            }
            Some(Some(c)) if c == OWNER_MARK => {}
            Some(_) => {
                return Err(Error::Conflict(format!(
                    "role {TEMPLATE_OWNER} exists and is not the operator's template role (no {OWNER_MARK} comment): template databases are off until it is removed"
                )));
            }
        }
        // A non-superuser admin (CREATEROLE) acts for the role only as a member: the clones'
        // REASSIGN OWNED needs it.
        sqlx::raw_sql(ddl(format!(
            "DO $$ BEGIN IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'GRANT {owner} TO ' || quote_ident(current_user); END IF; END $$"
        )))
        .execute(pool)
        .await?;
        // The database stays the admin's (the owner role never owns a shared object, so the
        // `REASSIGN OWNED` in a clone touches nothing outside it); the owner role may connect and
        // create in `public` for the build only.
        sqlx::raw_sql(ddl(format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
        )))
        .execute(pool)
        .await?;
        sqlx::raw_sql(ddl(format!(
            "REVOKE ALL ON DATABASE {name} FROM PUBLIC; GRANT CONNECT ON DATABASE {name} TO {owner}"
        )))
        .execute(pool)
        .await?;
        self.in_database(name, &format!("GRANT CREATE ON SCHEMA public TO {owner}"))
            .await?;
        let started = std::time::Instant::now();
        let mut session = self.owner_session(&owner, name).await?;
        let target = MigrationTarget {
            schema: "public",
            owner_role: TEMPLATE_OWNER,
            // Not TEMPLATE_LOCK: this process holds that one on another session.
            lock_key: TEMPLATE_LOCK + 1,
        };
        let report =
            match migrate::migrate(&mut session, set, &target, set.latest_version(), false).await {
                Ok(r) => super::warm::partitions_of(&mut session, "public", months_ahead, day)
                    .await
                    .map(|()| r),
                Err(e) => Err(e.into()),
            };
        session.close().await;
        let report = report?;
        self.in_database(
            name,
            &format!("REVOKE CREATE ON SCHEMA public FROM {owner}"),
        )
        .await?;
        // Compacted and frozen once here rather than in every copy: the replay leaves dead
        // catalog rows that each `CREATE DATABASE … TEMPLATE` would copy block by block, and a
        // frozen copy gives autovacuum no anti-wraparound work in each tenant database later.
        // The admin owns the database, which lets it vacuum every table in it (shared catalogs
        // are skipped with a warning when it is not a superuser: not logged, on this session).
        self.in_database_each(
            name,
            &["SET client_min_messages = error", "VACUUM (FULL, FREEZE)"],
        )
        .await?;
        sqlx::raw_sql(ddl(format!(
            "REVOKE CONNECT ON DATABASE {name} FROM {owner}; ALTER DATABASE {name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false; COMMENT ON DATABASE {name} IS {}",
            lit(mark)?
        )))
        .execute(pool)
        .await?;
        info!(
            template = name.as_str(),
            version = ?report.to,
            took_ms = started.elapsed().as_millis() as u64,
            "template database built"
        );
        self.drop_other_templates(name).await;
        Ok(())
    }

    /// A one-off admin connection to the maintenance database (the admin URL's).
    pub(super) async fn connect_maintenance(&self) -> Result<sqlx::PgConnection> {
        crate::fence::check()?;
        let opts = self.options.clone();
        let conn = tokio::time::timeout(self.settings.connect_timeout, opts.connect())
            .await
            .map_err(|_| {
                Error::unavailable("timed out connecting to the maintenance database")
            })??;
        Ok(conn)
    }

    /// Runs `sql` on a one-off admin connection to `database`.
    pub(super) async fn in_database(&self, database: &Ident, sql: &str) -> Result<()> {
        self.in_database_each(database, &[sql]).await
    }

    /// Runs each of `statements` on its own, in order, on one one-off admin connection to
    /// `database` (session settings carry over; each runs outside a transaction block, as
    /// `VACUUM` must).
    async fn in_database_each(&self, database: &Ident, statements: &[&str]) -> Result<()> {
        let mut conn = self.connect_to(database).await?;
        let mut r = Ok(());
        for sql in statements {
            r = sqlx::raw_sql(ddl(sql.to_string()))
                .execute(&mut conn)
                .await
                .map(|_| ());
            if r.is_err() {
                break;
            }
        }
        let _ = conn.close().await;
        Ok(r?)
    }

    /// Drops the templates of earlier migration sets (best effort).
    async fn drop_other_templates(&self, keep: &Ident) {
        let Ok(pool) = self.admin() else { return };
        let old: Vec<String> = match sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'tenantdb\\_tpl\\_%' AND datname <> $1 AND shobj_description(oid, 'pg_database') LIKE 'tenantdb.io/template=%'",
        )
        .bind(keep.as_str())
        .fetch_all(pool)
        .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "could not list old template databases");
                return;
            }
        };
        for db in old {
            let Ok(db) = Ident::new(&db) else { continue };
            // Two statements, two messages: DROP DATABASE cannot run in the implicit
            // transaction of a multi-statement query.
            let mut r = sqlx::raw_sql(ddl(format!("ALTER DATABASE {db} WITH IS_TEMPLATE false")))
                .execute(pool)
                .await;
            if r.is_ok() {
                r = sqlx::raw_sql(ddl(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
                    .execute(pool)
                    .await;
            }
            match r {
                Ok(_) => info!(template = db.as_str(), "old template database dropped"),
                Err(e) => {
                    warn!(template = db.as_str(), error = %e, "old template database not dropped")
                }
            }
        }
    }

    /// Inside a dedicated database cloned from a template: the template owner's objects go to the
    /// tenant role (`REASSIGN OWNED`, which also rewrites their ACLs). Harmless where that role
    /// owns nothing (a database created from `template0`, or adopted twice).
    pub async fn adopt_template_objects(&self, database: &Ident, role: &Ident) -> Result<()> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(TEMPLATE_OWNER)
                .fetch_one(self.admin()?)
                .await?;
        if !exists {
            return Ok(());
        }
        let owner = template_owner()?;
        self.in_database(database, &format!("REASSIGN OWNED BY {owner} TO {role}"))
            .await
    }

    /// Forgets the template `name` when it is the one found or built (it went missing or could
    /// not be used): tenants are created from template0 for a while, then
    /// [`PgAdmin::ensure_template`] looks again. A copy of an older template that failed (last
    /// month's, dropped when this month's was built) leaves the current one alone.
    pub async fn forget_template(&self, name: &Ident) {
        let mut state = self.template.lock().await;
        if state.built.as_ref() == Some(name) {
            state.built = None;
            state.failed_at = Some(std::time::Instant::now());
        }
    }
}

fn template_owner() -> Result<Ident> {
    Ident::new(TEMPLATE_OWNER).map_err(|e| Error::Internal(format!("template owner: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::Migration;

    fn set() -> MigrationSet {
        MigrationSet::new(vec![Migration::new(1, "one", "SELECT 1", None)]).unwrap()
    }

    #[test]
    fn name_and_mark_carry_the_same_month_and_months_ahead() {
        let day = Date::new(2026, 12, 31).unwrap();
        let fp = fingerprint(&set());
        let name = name_of(&set(), day, 2).unwrap();
        assert_eq!(name.as_str(), format!("tenantdb_tpl_{fp}_202612_2"));
        assert_eq!(
            mark_of(&set(), day, 2),
            format!("tenantdb.io/template={fp}@2026-12+2")
        );
        let next = Date::new(2027, 1, 1).unwrap();
        assert_eq!(
            name_of(&set(), next, 2).unwrap().as_str(),
            format!("tenantdb_tpl_{fp}_202701_2")
        );
        assert_ne!(name, name_of(&set(), day, 3).unwrap());
        // The longest it gets (months ahead is a u32) is still a valid identifier.
        assert!(name_of(&set(), day, u32::MAX).is_ok());
    }
}
