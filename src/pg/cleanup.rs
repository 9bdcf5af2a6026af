//! Cleanup: [`PgAdmin::cleanup`] drops what a Tenant created (database or schema, then its roles),
//! skipping anything whose ownership marker is not the Tenant's. Rows of `shared` tenants are
//! removed beforehand by [`shared::delete_tenant_rows`](super::shared::delete_tenant_rows).

use super::{PgAdmin, ddl};
use crate::error::Result;
use crate::naming::{Ident, TenantNames};

/// What [`PgAdmin::cleanup`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CleanupReport {
    /// Objects dropped (descriptions).
    pub dropped: Vec<String>,
    /// Objects left alone because they were not ours.
    pub skipped: Vec<String>,
}

impl PgAdmin {
    /// Drops what the Tenant created (database or schema, then the role), skipping anything whose
    /// ownership marker is not this Tenant's. Idempotent: already-gone objects are success.
    pub async fn cleanup(&self, names: &TenantNames) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let marker = names.owner_marker.as_str();
        // The password does not matter for cleanup.
        let observed = self.observe(names, "").await?;
        let ours = |r: &Option<super::plan::ObservedRole>| {
            r.as_ref().map(|r| r.comment.as_deref() == Some(marker))
        };
        let (role_ours, secondary_ours) = (ours(&observed.role), ours(&observed.secondary));
        // An admin that is not a superuser drops the database, ends the sessions and drops what
        // the roles own only as their member: given back first if it was lost (a role made by
        // another admin or an older operator; see `Step::GrantRoleToAdmin`).
        for (role, r, is_ours) in [
            (&names.role, &observed.role, role_ours),
            (&names.secondary_role, &observed.secondary, secondary_ours),
        ] {
            if is_ours == Some(true) && r.as_ref().and_then(|r| r.admin_member) == Some(false) {
                crate::fence::check()?;
                sqlx::raw_sql(ddl(super::plan::grant_to_admin(role)))
                    .execute(self.admin()?)
                    .await?;
            }
        }
        if names.dedicated_database {
            if let Some(db) = &observed.database {
                let ours = db.comment.as_deref() == Some(marker)
                    || (db.comment.is_none() && db.owner == names.role.as_str());
                if ours {
                    // FORCE terminates the tenant's sessions first (PostgreSQL 13+).
                    sqlx::raw_sql(ddl(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        names.database
                    )))
                    .execute(self.admin()?)
                    .await?;
                    report
                        .dropped
                        .push(format!("database {}", names.database.as_str()));
                } else {
                    report.skipped.push(format!(
                        "database {} (not managed by this Tenant)",
                        names.database.as_str()
                    ));
                }
            }
        } else if names.rls {
            // Shared tables: rows are removed by `shared::delete_tenant_rows` beforehand.
        } else if let Some(schema) = &observed.schema {
            if schema.comment.as_deref() == Some(marker) {
                let pool = self.shared_pool().await?;
                sqlx::raw_sql(ddl(format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    names.schema
                )))
                .execute(pool)
                .await?;
                report
                    .dropped
                    .push(format!("schema {}", names.schema.as_str()));
            } else {
                report.skipped.push(format!(
                    "schema {} (not managed by this Tenant)",
                    names.schema.as_str()
                ));
            }
        }
        for (role, is_ours) in [
            (&names.secondary_role, secondary_ours),
            (&names.role, role_ours),
        ] {
            match is_ours {
                Some(true) => {
                    self.drop_role(role, names).await?;
                    report.dropped.push(format!("role {}", role.as_str()));
                }
                Some(false) => report.skipped.push(format!(
                    "role {} (not managed by this Tenant)",
                    role.as_str()
                )),
                None => {}
            }
        }
        Ok(report)
    }

    /// Ends a role's sessions, drops what it still owns or was granted in every database, hands a
    /// database it still owns (emptied of its objects) to the admin, then drops the role.
    async fn drop_role(&self, role: &Ident, names: &TenantNames) -> Result<()> {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()")
            .bind(role.as_str())
            .execute(self.admin()?)
            .await?;
        if !names.dedicated_database {
            let pool = self.shared_pool().await?;
            sqlx::raw_sql(ddl(format!("DROP OWNED BY {role}")))
                .execute(pool)
                .await?;
        }
        self.drop_leftovers(role).await?;
        let mut tx = self.admin()?.begin().await?;
        // First what it owns here; then only shared objects are left to hand over: a database the
        // role still owns (kept by an earlier `Retain` deletion, before the Tenant came back with
        // another isolation), its objects dropped above. `DROP ROLE` would refuse it.
        sqlx::raw_sql(ddl(format!(
            "DROP OWNED BY {role}; REASSIGN OWNED BY {role} TO CURRENT_USER"
        )))
        .execute(&mut *tx)
        .await?;
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!("DROP ROLE IF EXISTS {role}")))
            .execute(&mut *tx)
            .await?;
        crate::fence::check()?;
        tx.commit().await?;
        Ok(())
    }

    /// Objects the role owns in databases other than the one it is being deleted from — left by an
    /// earlier `Retain` deletion of a Tenant that came back with another isolation (a schema in
    /// the shared database, tables in a kept database) — are dropped with it (`DROP OWNED`, which
    /// also removes its privileges there), as `Delete` asks: `DROP ROLE` refuses a role that owns
    /// objects, and the Tenant would stay `Deleting` forever. Never handed to the admin: a
    /// tenant-written function or view owned by a superuser would run with its rights.
    async fn drop_leftovers(&self, role: &Ident) -> Result<()> {
        let databases: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT d.datname::text FROM pg_catalog.pg_shdepend s \
             JOIN pg_catalog.pg_database d ON d.oid = s.dbid \
             WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass \
               AND s.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1) \
               AND d.datname <> current_database() AND d.datallowconn ORDER BY 1",
        )
        .bind(role.as_str())
        .fetch_all(self.admin()?)
        .await?;
        for db in databases {
            let Ok(db) = Ident::existing(&db) else {
                tracing::warn!(role = role.as_str(), database = %db, "role owns objects in a database with an unusual name; not dropped");
                continue;
            };
            let mut conn = self.connect_to(&db).await?;
            crate::fence::check()?;
            sqlx::raw_sql(ddl(format!("DROP OWNED BY {role}")))
                .execute(&mut conn)
                .await?;
            tracing::info!(
                role = role.as_str(),
                database = db.as_str(),
                "dropped what the deleted role still owned here"
            );
        }
        Ok(())
    }
}
