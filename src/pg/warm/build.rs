//! Building the warm pool's entries ([`super`]): a schema entry as its own role, a database
//! entry as a copy of the template with its partitions, and the check that a baseline survives
//! the claim's rename.

use sqlx::Connection;
use tracing::info;

use super::{BUILDING_PREFIX, FILL_LOCK, entry_name, lit, role_mark};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationSet, MigrationTarget};
use crate::naming::Ident;
use crate::pg::{PgAdmin, ddl};

impl PgAdmin {
    /// Builds one schema entry: its role, the schema, the baseline and the partitions (as that
    /// role), then the mark. A baseline that would not survive the rename (default privileges of
    /// the role, the schema's name in a function) is refused: no entry is marked.
    pub(super) async fn build_schema_entry(
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
        // One batch (one transaction): a non-superuser admin (CREATEROLE) acts for the role only
        // as a member, so the membership comes with the role (a crash cannot leave a role the
        // sweep could not drop).
        sqlx::raw_sql(ddl(format!(
            "CREATE ROLE {entry} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS; COMMENT ON ROLE {entry} IS {}; GRANT {group} TO {entry}; \
             DO $$ BEGIN IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN EXECUTE 'GRANT {entry} TO ' || quote_ident(current_user); END IF; END $$",
            lit(&role_mark(&self.pool_scope()))?
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
        let built = async {
            migrate::migrate(&mut session, set, &target, set.latest_version(), false).await?;
            partitions(&mut session, entry.as_str(), months_ahead).await?;
            relocatable(&mut session, &entry).await
        }
        .await;
        session.close().await;
        built?;
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

    /// Builds one database entry: a copy of `template` closed to connections and to `PUBLIC`,
    /// opened to the template's owner role alone for its partitions (marked as being built
    /// meanwhile), closed again, then the mark.
    pub(super) async fn build_database_entry(
        &self,
        template: &Ident,
        current: &str,
        months_ahead: u32,
    ) -> Result<()> {
        let entry = entry_name()?;
        let admin = self.admin()?;
        let owner = Ident::new(crate::pg::template::TEMPLATE_OWNER)
            .map_err(|e| Error::Internal(format!("template owner: {e}")))?;
        let started = std::time::Instant::now();
        crate::fence::check()?;
        // Unmarked and closed between its creation and its building mark, as a crash leaves
        // one: the entry's key, held meanwhile (the sweeps try it), keeps another scope's sweep
        // from taking it for such a leftover.
        let mut key = self.connect_maintenance().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtextextended('tenantdb_pool:' || $1, 0))")
            .bind(entry.as_str())
            .execute(&mut key)
            .await?;
        let created = async {
            sqlx::raw_sql(ddl(format!(
                "CREATE DATABASE {entry} TEMPLATE {template} ENCODING 'UTF8' ALLOW_CONNECTIONS false"
            )))
            .execute(admin)
            .await?;
            crate::fence::check()?;
            sqlx::raw_sql(ddl(format!(
                "COMMENT ON DATABASE {entry} IS {}; REVOKE ALL ON DATABASE {entry} FROM PUBLIC; GRANT CONNECT ON DATABASE {entry} TO {owner}; ALTER DATABASE {entry} ALLOW_CONNECTIONS true",
                lit(&format!("{BUILDING_PREFIX}{}", self.pool_scope()))?
            )))
            .execute(admin)
            .await?;
            Ok::<(), Error>(())
        }
        .await;
        let _ = key.close().await;
        created?;
        // The role may create in `public` for the partitions only (as for the template's build).
        self.in_database(&entry, &format!("GRANT CREATE ON SCHEMA public TO {owner}"))
            .await?;
        let mut session = self.owner_session(&owner, &entry).await?;
        let built = partitions(&mut session, "public", months_ahead).await;
        session.close().await;
        built?;
        crate::fence::check()?;
        self.in_database(
            &entry,
            &format!("REVOKE CREATE ON SCHEMA public FROM {owner}"),
        )
        .await?;
        sqlx::raw_sql(ddl(format!(
            "REVOKE CONNECT ON DATABASE {entry} FROM {owner}; ALTER DATABASE {entry} ALLOW_CONNECTIONS false; COMMENT ON DATABASE {entry} IS {}",
            lit(current)?
        )))
        .execute(admin)
        .await?;
        info!(
            entry = entry.as_str(),
            took_ms = started.elapsed().as_millis() as u64,
            "warm pool database built"
        );
        Ok(())
    }
}

/// This month's and the next `months_ahead` partitions of the baseline's partitioned tables in
/// `schema`, as the session's role (which owns them).
async fn partitions(
    session: &mut crate::pg::session::TenantSession,
    schema: &str,
    months_ahead: u32,
) -> Result<()> {
    partitions_of(session, schema, months_ahead, crate::partitions::today()).await
}

/// [`partitions`] for the month of `today`.
pub(in crate::pg) async fn partitions_of(
    session: &mut crate::pg::session::TenantSession,
    schema: &str,
    months_ahead: u32,
    today: k8s_openapi::jiff::civil::Date,
) -> Result<()> {
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut **session)
        .await?;
    crate::partitions::maintain(session, schema, &role, today, months_ahead, None).await?;
    Ok(())
}

/// Refuses a schema entry whose baseline would not survive the claim's rename and hand-over:
/// default privileges of its role (`REASSIGN OWNED` does not move them, `DROP OWNED` drops them),
/// the entry's name in a function's body or settings, or its role named elsewhere than as an
/// owner or in an ACL (a policy's roles: `DROP OWNED` would remove it from the policy).
async fn relocatable(session: &mut crate::pg::session::TenantSession, entry: &Ident) -> Result<()> {
    let (acls, functions, other): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_default_acl WHERE defaclrole = (SELECT oid FROM pg_roles WHERE rolname = $1)), \
                (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                  WHERE n.nspname = $1 AND (strpos(p.prosrc, $1) > 0 OR strpos(array_to_string(p.proconfig, ','), $1) > 0)), \
                (SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass \
                  AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1) AND deptype NOT IN ('o', 'a'))",
    )
    .bind(entry.as_str())
    .fetch_one(&mut **session)
    .await?;
    if acls > 0 || functions > 0 || other > 0 {
        return Err(Error::Conflict(format!(
            "the baseline cannot be built ahead in the warm pool: {acls} default privilege(s) of its role, {functions} function(s) naming its schema, {other} other reference(s) to its role (e.g. a policy TO CURRENT_USER): they would not follow the claim; keep the pool off for this migration set"
        )));
    }
    Ok(())
}
