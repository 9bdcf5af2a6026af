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
        let role_ours = observed
            .role
            .as_ref()
            .map(|r| r.comment.as_deref() == Some(marker));
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
        let secondary_ours = observed
            .secondary
            .as_ref()
            .map(|r| r.comment.as_deref() == Some(marker));
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

    /// Ends a role's sessions, drops what it still owns or was granted in the databases it could
    /// reach, then the role.
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
        let mut tx = self.admin()?.begin().await?;
        sqlx::raw_sql(ddl(format!("DROP OWNED BY {role}")))
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
}
