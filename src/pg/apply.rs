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
}
