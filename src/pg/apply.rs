//! Apply: [`PgAdmin::apply`] runs the planned [`Step`]s (idempotent DDL), each transactional step
//! in its own transaction, fenced so that only the leader writes.

use tracing::debug;

use super::plan::{Desired, Scope, Step};
use super::{PgAdmin, ddl};
use crate::error::{Error, Result};

impl PgAdmin {
    /// Applies planned steps in order. Each transactional step runs in its own transaction, so a
    /// failure leaves earlier steps done and the next reconcile continues from there.
    pub async fn apply(&self, desired: &Desired, steps: &[Step]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let needs_verifier = steps.iter().any(|s| {
            matches!(
                s,
                Step::CreateRole | Step::CreateSecondary | Step::SetPassword(_)
            )
        });
        let verifier = if needs_verifier {
            crate::scram::verifier(&desired.password)
                .ok_or_else(|| Error::Internal("could not compute password verifier".into()))?
        } else {
            String::new()
        };
        for step in steps {
            let stmts = step.sql(desired, &verifier).ok_or_else(|| {
                Error::Internal(format!("cannot render SQL for: {}", step.describe(desired)))
            })?;
            debug!(step = %step.describe(desired), "applying");
            match step {
                Step::CreateDatabase if desired.template.is_some() => {
                    self.create_from_template(desired, &stmts)
                        .await
                        .map_err(|e| match e {
                            e @ Error::Database { .. } => e.context(step.describe(desired)),
                            other => other,
                        })?;
                    continue;
                }
                // The recovery of a crash between CREATE DATABASE and its mark: objects copied
                // from a template may not have been handed over yet.
                Step::MarkDatabase if desired.names.dedicated_database => {
                    self.adopt_template_objects(&desired.names.database, &desired.names.role)
                        .await?;
                }
                _ => {}
            }
            let pool = match step.scope() {
                Scope::Cluster => self.admin()?,
                Scope::TenantDatabase => self.shared_pool().await?,
            };
            let result = if step.transactional() {
                let mut tx = pool.begin().await?;
                for s in &stmts {
                    crate::fence::check()?;
                    sqlx::raw_sql(ddl(s.clone())).execute(&mut *tx).await?;
                }
                crate::fence::check()?;
                tx.commit().await
            } else {
                let mut conn = pool.acquire().await?;
                let mut r = Ok(());
                for s in &stmts {
                    crate::fence::check()?;
                    if let Err(e) = sqlx::raw_sql(ddl(s.clone())).execute(&mut *conn).await {
                        r = Err(e);
                        break;
                    }
                }
                r
            };
            result.map_err(|e| {
                let err = Error::from(e);
                match err {
                    e @ Error::Database { .. } => e.context(step.describe(desired)),
                    other => other,
                }
            })?;
        }
        Ok(())
    }

    /// `CREATE DATABASE … TEMPLATE <template>`, then the copied objects to the tenant role, then
    /// the mark (so a crash before the hand-over is completed by [`Step::MarkDatabase`]). A clone
    /// that cannot be handed over is dropped again and the template forgotten: the next attempt
    /// looks for it again (or uses template0 after a failed build).
    async fn create_from_template(&self, desired: &Desired, stmts: &[String]) -> Result<()> {
        let (create, rest) = stmts
            .split_first()
            .ok_or_else(|| Error::Internal("CreateDatabase renders no statement".into()))?;
        let pool = self.admin()?;
        crate::fence::check()?;
        if let Err(e) = sqlx::raw_sql(ddl(create.clone())).execute(pool).await {
            // The template dropped behind our back (3D000) or open (55006): set it aside.
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            if matches!(code.as_deref(), Some("3D000" | "55006")) {
                self.forget_template().await;
            }
            return Err(e.into());
        }
        let n = &desired.names;
        // Nobody but the tenant connects to the copy from now on (the plan's
        // RevokePublicOnDatabase follows too; this closes the window before the hand-over).
        crate::fence::check()?;
        sqlx::raw_sql(ddl(format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            n.database
        )))
        .execute(pool)
        .await?;
        if let Err(e) = self.adopt_template_objects(&n.database, &n.role).await {
            self.forget_template().await;
            // Only the leader drops the copy it just made (a deposed one leaves it to the next
            // reconcile's MarkDatabase, which completes the hand-over).
            if crate::fence::check().is_ok() {
                let _ = sqlx::raw_sql(ddl(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    n.database
                )))
                .execute(pool)
                .await;
            }
            return Err(e);
        }
        for s in rest {
            crate::fence::check()?;
            sqlx::raw_sql(ddl(s.clone())).execute(pool).await?;
        }
        Ok(())
    }
}
