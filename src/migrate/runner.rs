//! The runner: [`migrate`] brings one tenant's schema to a target version in one transaction
//! (advisory lock, role and search_path, plan, steps with their history rows, a guard that
//! catches a migration leaving the engine's transaction or role), or computes the plan only
//! (dry run) and rolls back. The steps are described in the module documentation of
//! [`crate::migrate`].

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use super::error::{MigrateError, bookkeeping_err, db_err, lock_err, sql_err};
use super::history::{
    MigrationTarget, create_table_sql, delete_sql, history_exists, insert_sql, read_history,
};
use super::ident::quote_identifier;
use super::planner::{Direction, MigrationPlan, plan};
use super::set::MigrationSet;

/// Result of [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Highest applied version before the call.
    pub from: Option<i64>,
    /// Highest applied version after the call (equal to `from` for a dry run).
    pub to: Option<i64>,
    /// Steps executed, in order (empty for a dry run or when up to date).
    pub applied: Vec<(i64, Direction)>,
    /// Wall time of the call, lock wait included.
    pub duration: Duration,
    /// The plan that was computed (for a dry run: what would be executed).
    pub plan: MigrationPlan,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Transaction-local marker set at the start of [`migrate`]; a migration that commits or rolls
/// back the transaction loses it.
const GUARD_SETTING: &str = "tenantdb.migration_guard";

/// Fails if the step left the engine's transaction or role.
async fn check_guard(
    conn: &mut PgConnection,
    owner_role: &str,
    version: i64,
) -> Result<(), MigrateError> {
    let row = sqlx::query(
        "SELECT coalesce(current_setting($1, true), '') = 'on' AS guard, current_user::text AS role",
    )
    .bind(GUARD_SETTING)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql_err(version))?;
    let guard: bool = row.try_get("guard").unwrap_or(false);
    let role: String = row.try_get("role").unwrap_or_default();
    if !guard {
        return Err(MigrateError::Sql {
            version,
            message: "the migration ended the migration transaction (transaction control statements are not allowed)".to_string(),
            source: None,
        });
    }
    if role != owner_role {
        return Err(MigrateError::Sql {
            version,
            message: format!(
                "the migration changed the role to {role:?} (role changes are not allowed)"
            ),
            source: None,
        });
    }
    Ok(())
}

/// What to do with the transaction after [`run_in_transaction`].
enum Outcome {
    Commit(MigrationReport),
    Rollback(MigrationReport),
}

/// Inputs of one [`migrate`] call.
struct Job<'a> {
    set: &'a MigrationSet,
    target: &'a MigrationTarget<'a>,
    quoted_schema: &'a str,
    quoted_role: &'a str,
    target_version: Option<i64>,
    dry_run: bool,
    started: Instant,
}

async fn run_in_transaction(
    conn: &mut PgConnection,
    job: &Job<'_>,
) -> Result<Outcome, MigrateError> {
    let Job {
        set,
        target,
        quoted_schema,
        quoted_role,
        target_version,
        dry_run,
        started,
    } = *job;
    // First statement of the transaction (SET TRANSACTION must precede any query): schema changes
    // are the operator's work, not the tenant application's, so neither its read-only switch
    // (storage quota) nor its statement timeout applies.
    crate::fence::check()?;
    sqlx::raw_sql("SET TRANSACTION READ WRITE; SET LOCAL statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .map_err(db_err("starting the migration transaction"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(target.lock_key)
        .execute(&mut *conn)
        .await
        .map_err(lock_err(target.lock_key))?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL ROLE {quoted_role}; SET LOCAL search_path TO {quoted_schema}"
    )))
    .execute(&mut *conn)
    .await
    .map_err(db_err("setting role and search_path"))?;
    sqlx::query("SELECT set_config($1, 'on', true)")
        .bind(GUARD_SETTING)
        .execute(&mut *conn)
        .await
        .map_err(db_err("setting the migration guard"))?;

    let exists = history_exists(conn, target.schema).await?;
    let applied = if exists {
        read_history(conn, quoted_schema).await?
    } else {
        Vec::new()
    };
    let plan = plan(set, &applied, target_version)?;
    let mut report = MigrationReport {
        from: plan.from,
        to: plan.from,
        applied: Vec::new(),
        duration: Duration::ZERO,
        plan: plan.clone(),
        dry_run,
    };
    if dry_run {
        report.duration = started.elapsed();
        return Ok(Outcome::Rollback(report));
    }
    if exists && plan.is_empty() {
        report.duration = started.elapsed();
        return Ok(Outcome::Commit(report));
    }
    if !exists {
        sqlx::raw_sql(AssertSqlSafe(create_table_sql(quoted_schema)))
            .execute(&mut *conn)
            .await
            .map_err(db_err("creating the migration history table"))?;
    }
    let insert = insert_sql(quoted_schema);
    let delete = delete_sql(quoted_schema);
    for step in &plan.steps {
        let Some(m) = set.get(step.version) else {
            return Err(MigrateError::UnknownApplied {
                version: step.version,
            });
        };
        let sql = match step.direction {
            Direction::Up => m.up_sql.as_str(),
            Direction::Down => m
                .down_sql
                .as_deref()
                .ok_or(MigrateError::MissingDown { version: m.version })?,
        };
        crate::fence::check()?;
        let t0 = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(sql_err(m.version))?;
        check_guard(conn, target.owner_role, m.version).await?;
        let elapsed_ms = i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX);
        match step.direction {
            Direction::Up => {
                sqlx::query(AssertSqlSafe(insert.as_str()))
                    .persistent(false)
                    .bind(m.version)
                    .bind(&m.name)
                    .bind(&m.checksum)
                    .bind(elapsed_ms)
                    .execute(&mut *conn)
                    .await
                    .map_err(bookkeeping_err(
                        m.version,
                        "recording it in the history table",
                    ))?;
            }
            Direction::Down => {
                sqlx::query(AssertSqlSafe(delete.as_str()))
                    .persistent(false)
                    .bind(m.version)
                    .execute(&mut *conn)
                    .await
                    .map_err(bookkeeping_err(
                        m.version,
                        "removing its record from the history table",
                    ))?;
            }
        }
        tracing::info!(
            schema = target.schema,
            version = m.version,
            name = %m.name,
            direction = %step.direction,
            elapsed_ms,
            "migration step done"
        );
        report.applied.push((m.version, step.direction));
    }
    report.to = plan.to;
    report.duration = started.elapsed();
    Ok(Outcome::Commit(report))
}

/// Brings `target`'s schema to `target_version` (`None`: latest; `Some(0)`: revert everything) in
/// one transaction; see the module documentation. With `dry_run`, only the plan is computed
/// (returned in [`MigrationReport::plan`]) and nothing is executed.
pub async fn migrate(
    conn: &mut PgConnection,
    set: &MigrationSet,
    target: &MigrationTarget<'_>,
    target_version: Option<i64>,
    dry_run: bool,
) -> Result<MigrationReport, MigrateError> {
    let started = Instant::now();
    let quoted_schema = quote_identifier(target.schema)?;
    let quoted_role = quote_identifier(target.owner_role)?;
    let mut tx = conn
        .begin()
        .await
        .map_err(db_err("beginning a transaction"))?;
    let job = Job {
        set,
        target,
        quoted_schema: &quoted_schema,
        quoted_role: &quoted_role,
        target_version,
        dry_run,
        started,
    };
    let outcome = run_in_transaction(&mut tx, &job).await;
    // No commit once leadership is in doubt: the transaction rolls back instead.
    let outcome = match (outcome, crate::fence::check()) {
        (Ok(Outcome::Commit(_)), Err(fenced)) => Err(MigrateError::Fenced(fenced)),
        (other, _) => other,
    };
    match outcome {
        Ok(Outcome::Commit(mut report)) => {
            tx.commit().await.map_err(db_err("committing"))?;
            report.duration = started.elapsed();
            Ok(report)
        }
        Ok(Outcome::Rollback(mut report)) => {
            tx.rollback().await.map_err(db_err("rolling back"))?;
            report.duration = started.elapsed();
            Ok(report)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback after a failed migration failed");
            }
            tracing::warn!(schema = target.schema, error = %e, category = e.category(), "migration failed");
            Err(e)
        }
    }
}
