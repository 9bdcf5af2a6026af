//! The per-schema history table [`HISTORY_TABLE`]: where a tenant's migrations run
//! ([`MigrationTarget`]), the table's SQL (create, record a step, remove a step) and reading it
//! ([`status`]).

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::error::{MigrateError, db_err};
use super::ident::quote_identifier;
use super::planner::AppliedMigration;

/// Name of the per-schema history table.
pub const HISTORY_TABLE: &str = "tenantdb_schema_migrations";

/// Where a migration runs.
#[derive(Debug, Clone, Copy)]
pub struct MigrationTarget<'a> {
    /// Schema holding the tenant's tables and the history table (validated identifier).
    pub schema: &'a str,
    /// Role the migration runs as (`SET LOCAL ROLE`): it owns the schema and the created objects.
    pub owner_role: &'a str,
    /// Per-tenant advisory lock key (`pg_advisory_xact_lock`).
    pub lock_key: i64,
}

/// Whether the history table exists in `schema`.
pub(super) async fn history_exists(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<bool, MigrateError> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r')",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_one(conn)
    .await
    .map_err(db_err("reading the catalog"))
}

/// The query reading the history table of `quoted_schema` (already quoted), oldest first; its
/// rows are decoded by [`decode_history`] (binary or text format).
pub(super) fn read_history_sql(quoted_schema: &str) -> String {
    format!(
        "SELECT version, name, checksum, \
         (extract(epoch FROM applied_at) * 1000000)::bigint AS applied_us, execution_ms \
         FROM {quoted_schema}.{HISTORY_TABLE} ORDER BY version"
    )
}

/// The rows of the history table of `quoted_schema`, oldest first (the table must exist).
pub(super) async fn read_history(
    conn: &mut PgConnection,
    quoted_schema: &str,
) -> Result<Vec<AppliedMigration>, MigrateError> {
    let rows = sqlx::query(AssertSqlSafe(read_history_sql(quoted_schema)))
        .persistent(false)
        .fetch_all(conn)
        .await
        .map_err(db_err("reading the migration history"))?;
    decode_history(&rows)
}

/// Decodes the rows of [`read_history_sql`].
pub(super) fn decode_history(rows: &[PgRow]) -> Result<Vec<AppliedMigration>, MigrateError> {
    let get_err = || db_err("decoding the migration history");
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let applied_us: i64 = row.try_get("applied_us").map_err(get_err())?;
        out.push(AppliedMigration {
            version: row.try_get("version").map_err(get_err())?,
            name: row.try_get("name").map_err(get_err())?,
            checksum: row.try_get("checksum").map_err(get_err())?,
            applied_at: jiff::Timestamp::from_microsecond(applied_us).map_err(|e| {
                MigrateError::Database {
                    operation: "decoding the migration history",
                    message: e.to_string(),
                    source: None,
                }
            })?,
            execution_ms: row.try_get("execution_ms").map_err(get_err())?,
        });
    }
    Ok(out)
}

/// The rows of the history table, oldest first; empty if the table does not exist. Reads as the
/// connection's user (no role change, no lock).
pub async fn status(
    conn: &mut PgConnection,
    target: &MigrationTarget<'_>,
) -> Result<Vec<AppliedMigration>, MigrateError> {
    let quoted_schema = quote_identifier(target.schema)?;
    quote_identifier(target.owner_role)?;
    if !history_exists(conn, target.schema).await? {
        return Ok(Vec::new());
    }
    read_history(conn, &quoted_schema).await
}

/// `CREATE TABLE IF NOT EXISTS` of the history table in `quoted_schema` (already quoted).
pub(super) fn create_table_sql(quoted_schema: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {quoted_schema}.{HISTORY_TABLE} (\
         version bigint PRIMARY KEY, \
         name text NOT NULL, \
         checksum text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now(), \
         execution_ms bigint NOT NULL)"
    )
}
