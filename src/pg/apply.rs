//! Apply: [`PgAdmin::apply`] runs the planned [`Step`]s (idempotent DDL), each transactional step
//! in its own transaction, fenced so that only the leader writes.

use tracing::debug;

use super::plan::{Desired, Scope, Step};
use super::{PgAdmin, ddl};
use crate::error::{Error, Result};

/// What [`PgAdmin::apply`] did besides the steps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Provisioned {
    /// The schema or dedicated database was claimed from the warm pool ([`super::warm`]): it
    /// holds the baseline at the latest version and this month's partitions.
    pub claimed: bool,
    /// The claimed entry was built this month: it also holds every partition ahead a tenant
    /// gets (one of last month's lacks the furthest month ahead).
    pub claimed_this_month: bool,
}

impl PgAdmin {
    /// Applies planned steps in order. Each transactional step runs in its own transaction, so a
    /// failure leaves earlier steps done and the next reconcile continues from there.
    pub async fn apply(&self, desired: &Desired, steps: &[Step]) -> Result<Provisioned> {
        let mut done = Provisioned::default();
        if steps.is_empty() {
            return Ok(done);
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
            if *step == Step::CreateSchema
                && desired.pool.is_some()
                && let Some(fresh) = self.claim_pool_schema(desired).await?
            {
                done.claimed = true;
                done.claimed_this_month = fresh;
                continue;
            }
            match step {
                Step::CreateDatabase if desired.template.is_some() => {
                    let claimed =
                        self.create_from_template(desired, &stmts)
                            .await
                            .map_err(|e| match e {
                                e @ Error::Database { .. } => e.context(step.describe(desired)),
                                other => other,
                            })?;
                    done.claimed = claimed.is_some();
                    done.claimed_this_month = claimed == Some(true);
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
        Ok(done)
    }

    /// [`Step::CreateSchema`] from the warm pool: `None` when no entry is ready (the schema is
    /// then created empty and the baseline replayed) or the claim failed (logged), else whether
    /// the entry was built this month.
    async fn claim_pool_schema(&self, desired: &Desired) -> Result<Option<bool>> {
        let Some(fp) = desired.pool.as_deref() else {
            return Ok(None);
        };
        let n = &desired.names;
        match self
            .claim_schema(fp, &n.schema, &n.role, &n.owner_marker)
            .await
        {
            Ok(claimed) => Ok(claimed),
            Err(e @ Error::LeadershipLost(_)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "warm pool claim failed; creating the schema");
                Ok(None)
            }
        }
    }

    /// `CREATE DATABASE … TEMPLATE <template>`, then the copied objects to the tenant role, then
    /// the mark (so a crash before the hand-over is completed by [`Step::MarkDatabase`]). A clone
    /// that cannot be handed over is dropped again and the template forgotten: the next attempt
    /// looks for it again (or uses template0 after a failed build).
    /// A database entry of the warm pool ([`super::warm`]) replaces the `CREATE DATABASE` when one
    /// is ready (`Some(built this month)` returned); the rest is the same.
    async fn create_from_template(
        &self,
        desired: &Desired,
        stmts: &[String],
    ) -> Result<Option<bool>> {
        let (create, rest) = stmts
            .split_first()
            .ok_or_else(|| Error::Internal("CreateDatabase renders no statement".into()))?;
        let pool = self.admin()?;
        let n = &desired.names;
        let claimed = match desired.pool.as_deref() {
            Some(fp) => match self
                .claim_database(fp, &n.database, &n.role, desired.quotas.connection_limit)
                .await
            {
                Ok(c) => c,
                Err(e @ Error::LeadershipLost(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "warm pool claim failed; copying the template");
                    None
                }
            },
            None => None,
        };
        crate::fence::check()?;
        if claimed.is_none()
            && let Err(e) = sqlx::raw_sql(ddl(create.clone())).execute(pool).await
        {
            // The template dropped behind our back (3D000) or open (55006): set it aside.
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            if matches!(code.as_deref(), Some("3D000" | "55006"))
                && let Some(t) = &desired.template
            {
                self.forget_template(t).await;
            }
            return Err(e.into());
        }
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
            if let Some(t) = &desired.template {
                self.forget_template(t).await;
            }
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
        Ok(claimed)
    }
}
