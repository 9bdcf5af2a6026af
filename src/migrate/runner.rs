//! The runner: [`migrate`] brings one tenant's schema to a target version in one transaction
//! (advisory lock, role and search_path, plan, steps with their history rows, a guard that
//! catches a migration leaving the engine's transaction or role), or computes the plan only
//! (dry run) and rolls back. The steps are described in the module documentation of
//! [`crate::migrate`].

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection, Row};

use super::error::{MigrateError, bookkeeping_err, db_err, lock_err, sql_err};
use super::history::{
    HISTORY_TABLE, MigrationTarget, create_table_sql, decode_history, read_history_sql,
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

/// The settings every migration file is parsed with, as [`super::lexer`] reads it: set by the
/// opening and again after each file (in [`record_sql`]), so that neither a default the tenant
/// gave its own role nor a `SET` in one file changes how the next one is parsed (PostgreSQL
/// parses a whole file with the values in force when it arrives).
const PARSE_SETTINGS: [(&str, &str); 2] = [
    ("standard_conforming_strings", "on"),
    ("client_encoding", "UTF8"),
];

/// [`PARSE_SETTINGS`] as `SET LOCAL` statements (the opening).
fn set_parse_settings() -> String {
    PARSE_SETTINGS
        .iter()
        .map(|(name, value)| format!("SET LOCAL {name} = '{value}'; "))
        .collect()
}

/// [`PARSE_SETTINGS`] as `set_config` calls local to the transaction, select-list items named
/// after the setting (the statement recording a file).
fn reset_parse_settings() -> String {
    PARSE_SETTINGS
        .iter()
        .map(|(name, value)| {
            format!(", pg_catalog.set_config('{name}', '{value}', true) AS {name}")
        })
        .collect()
}

/// The opening of the transaction, one simple-query message (one round trip): `BEGIN`, read-write
/// and no statement timeout (schema changes are the operator's work, not the tenant application's,
/// so neither its read-only switch (storage quota) nor its statement timeout applies), the
/// [`PARSE_SETTINGS`], the advisory lock, role, search_path and guard, and whether the history
/// table exists. Only the validated, quoted schema and role (`[a-z0-9_]` inside their double
/// quotes: no quote or dollar sign) and the integer lock key are formatted into it.
fn opening_sql(quoted_schema: &str, quoted_role: &str, lock_key: i64) -> String {
    format!(
        "BEGIN; SET TRANSACTION READ WRITE; SET LOCAL statement_timeout = 0; {} \
         SELECT pg_catalog.pg_advisory_xact_lock({lock_key}) AS locked; \
         SET LOCAL ROLE {quoted_role}; SET LOCAL search_path TO {quoted_schema}; \
         SET LOCAL {GUARD_SETTING} = 'on'; \
         SELECT pg_catalog.to_regclass('{quoted_schema}.{HISTORY_TABLE}') IS NOT NULL AS has_history",
        set_parse_settings()
    )
}

/// Opens the transaction and returns the history's rows: the opening ([`opening_sql`]), then
/// either the history read or, when the table is missing (a tenant never migrated), its creation
/// (an empty history; rolled back with the rest on a dry run or a failure, and a missing schema
/// fails here, for a dry run too). No DDL for a tenant that has a history, no statement that
/// fails on the server, and no procedural code: a `DO` block deciding the same on the server
/// saved this exchange but made every new backend load and compile PL/pgSQL (0.7 ms per fresh
/// backend, `pgbench -C`; bench/README.md finding 14), and a database without PL/pgSQL refused it.
async fn open(
    conn: &mut PgConnection,
    quoted_schema: &str,
    quoted_role: &str,
    lock_key: i64,
) -> Result<Vec<sqlx::postgres::PgRow>, MigrateError> {
    let opening = sqlx::raw_sql(AssertSqlSafe(opening_sql(
        quoted_schema,
        quoted_role,
        lock_key,
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| {
        if is_lock_failure(&e) {
            lock_err(lock_key)(e)
        } else {
            db_err("starting the migration transaction")(e)
        }
    })?;
    // The lock's row comes first; the last row says whether the history table exists.
    let has_history = opening
        .iter()
        .rev()
        .find_map(|r| r.try_get::<bool, _>("has_history").ok())
        .ok_or_else(|| MigrateError::Database {
            operation: "starting the migration transaction",
            message: "the opening returned no history check".to_string(),
            source: None,
        })?;
    if has_history {
        sqlx::raw_sql(AssertSqlSafe(read_history_sql(quoted_schema)))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err("reading the migration history"))
    } else {
        sqlx::raw_sql(AssertSqlSafe(create_table_sql(quoted_schema)))
            .execute(&mut *conn)
            .await
            .map_err(db_err("creating the migration history table"))?;
        Ok(Vec::new())
    }
}

/// The guard alone (whether the transaction and role are still the engine's), asked when a step's
/// history write failed: a migration that ended the transaction (which may have taken a new
/// history table with it) or changed to a role without rights on the table is reported as that,
/// not as the failed write it caused.
async fn guard_now(conn: &mut PgConnection) -> Option<(bool, String)> {
    let row = sqlx::raw_sql(AssertSqlSafe(format!(
        "SELECT coalesce(pg_catalog.current_setting('{GUARD_SETTING}', true), '') = 'on' AS guard, \
         current_user::text AS role"
    )))
    .fetch_one(&mut *conn)
    .await
    .ok()?;
    Some((row.try_get("guard").ok()?, row.try_get("role").ok()?))
}

/// The guard of a step, in the statement that records it (one statement, so one exchange with the
/// server): `g` says whether the transaction and role are still the engine's, and sets the
/// [`PARSE_SETTINGS`] again for the next file; the history row is written or removed only if
/// they are. `$1` is the owner role, `$2` the version; for an up step
/// `$3` name, `$4` checksum, `$5` execution_ms.
fn record_sql(quoted_schema: &str, direction: Direction) -> String {
    let write = match direction {
        Direction::Up => format!(
            "INSERT INTO {quoted_schema}.{HISTORY_TABLE} (version, name, checksum, execution_ms) \
             SELECT $2, $3, $4, $5 FROM g WHERE g.guard AND g.role = $1 RETURNING version"
        ),
        Direction::Down => format!(
            "DELETE FROM {quoted_schema}.{HISTORY_TABLE} WHERE version = $2 \
             AND EXISTS (SELECT 1 FROM g WHERE g.guard AND g.role = $1) RETURNING version"
        ),
    };
    format!(
        "WITH g AS (SELECT coalesce(pg_catalog.current_setting('{GUARD_SETTING}', true), '') = 'on' AS guard, \
         current_user::text AS role{}), w AS ({write}) \
         SELECT g.*, (SELECT count(*) FROM w) AS written FROM g",
        reset_parse_settings()
    )
}

/// Fails if the step left the engine's transaction or role (`guard`, `role` as [`record_sql`]
/// read them).
fn check_guard(
    guard: bool,
    role: &str,
    owner_role: &str,
    version: i64,
) -> Result<(), MigrateError> {
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

/// Runs the migration transaction up to (not including) its end, which [`migrate`] decides. The
/// exchanges with the server: the opening ([`opening_sql`]), then per step its SQL and its
/// guarded history write ([`record_sql`]).
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
    let history = open(conn, quoted_schema, quoted_role, target.lock_key).await?;
    let applied = decode_history(&history)?;
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
        // The migration's text alone in its message: nothing of the engine's is parsed with it.
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(sql_err(m.version))?;
        let elapsed_ms = i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (what, record) = match step.direction {
            Direction::Up => (
                "recording it in the history table",
                sqlx::query(AssertSqlSafe(record_sql(quoted_schema, Direction::Up)))
                    .bind(target.owner_role)
                    .bind(m.version)
                    .bind(&m.name)
                    .bind(&m.checksum)
                    .bind(elapsed_ms),
            ),
            Direction::Down => (
                "removing its record from the history table",
                sqlx::query(AssertSqlSafe(record_sql(quoted_schema, Direction::Down)))
                    .bind(target.owner_role)
                    .bind(m.version),
            ),
        };
        let row = match record.persistent(false).fetch_one(&mut *conn).await {
            Ok(row) => row,
            Err(e) => {
                if let Some((guard, role)) = guard_now(conn).await {
                    check_guard(guard, &role, target.owner_role, m.version)?;
                }
                return Err(bookkeeping_err(m.version, what)(e));
            }
        };
        let guard: bool = row.try_get("guard").unwrap_or(false);
        let role: String = row.try_get("role").unwrap_or_default();
        check_guard(guard, &role, target.owner_role, m.version)?;
        let written: i64 = row.try_get("written").unwrap_or(0);
        if written != 1 {
            return Err(MigrateError::Sql {
                version: m.version,
                message: format!("{what} failed after the migration ran: {written} rows written"),
                source: None,
            });
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

/// Whether `e` is the advisory lock not being granted (lock or statement timeout, deadlock) rather
/// than another failure of the opening.
fn is_lock_failure(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| matches!(c.as_ref(), "55P03" | "40P01" | "57014"))
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
    if conn.is_in_transaction() {
        return Err(MigrateError::Database {
            operation: "starting the migration transaction",
            message:
                "the connection is already in a transaction (the engine begins and ends its own)"
                    .to_string(),
            source: None,
        });
    }
    // Before BEGIN: a fenced process sends nothing (and has nothing to roll back).
    crate::fence::check()?;
    let job = Job {
        set,
        target,
        quoted_schema: &quoted_schema,
        quoted_role: &quoted_role,
        target_version,
        dry_run,
        started,
    };
    // BEGIN is the opening's first statement; COMMIT or ROLLBACK ends it here.
    let outcome = run_in_transaction(conn, &job).await;
    // No commit once leadership is in doubt: the transaction rolls back instead.
    let outcome = match (outcome, crate::fence::check()) {
        (Ok(Outcome::Commit(_)), Err(fenced)) => Err(MigrateError::Fenced(fenced)),
        (other, _) => other,
    };
    match outcome {
        Ok(Outcome::Commit(mut report)) => {
            sqlx::raw_sql("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(db_err("committing"))?;
            report.duration = started.elapsed();
            Ok(report)
        }
        Ok(Outcome::Rollback(mut report)) => {
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut *conn)
                .await
                .map_err(db_err("rolling back"))?;
            report.duration = started.elapsed();
            Ok(report)
        }
        Err(e) => {
            if let Err(rollback) = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await {
                tracing::warn!(error = %rollback, "rollback after a failed migration failed");
            }
            tracing::warn!(schema = target.schema, error = %e, category = e.category(), "migration failed");
            Err(e)
        }
    }
}
