//! The per-schema history table [`HISTORY_TABLE`]: where a tenant's migrations run
//! ([`MigrationTarget`]), the table's SQL (create, record a step, remove a step) and reading it
//! ([`status`]).

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

/// The rows of the history table of `quoted_schema`, oldest first (the table must exist).
pub(super) async fn read_history(
    conn: &mut PgConnection,
    quoted_schema: &str,
) -> Result<Vec<AppliedMigration>, MigrateError> {
    let sql = format!(
        "SELECT version, name, checksum, \
         (extract(epoch FROM applied_at) * 1000000)::bigint AS applied_us, execution_ms \
         FROM {quoted_schema}.{HISTORY_TABLE} ORDER BY version"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .fetch_all(conn)
        .await
        .map_err(db_err("reading the migration history"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let get_err = db_err("decoding the migration history");
        let applied_us: i64 = row.try_get("applied_us").map_err(get_err)?;
        out.push(AppliedMigration {
            version: row
                .try_get("version")
                .map_err(db_err("decoding the migration history"))?,
            name: row
                .try_get("name")
                .map_err(db_err("decoding the migration history"))?,
            checksum: row
                .try_get("checksum")
                .map_err(db_err("decoding the migration history"))?,
            applied_at: jiff::Timestamp::from_microsecond(applied_us).map_err(|e| {
                MigrateError::Database {
                    operation: "decoding the migration history",
                    message: e.to_string(),
                    source: None,
                }
            })?,
            execution_ms: row
                .try_get("execution_ms")
                .map_err(db_err("decoding the migration history"))?,
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

/// The statement recording an applied up step (`$1` version, `$2` name, `$3` checksum, `$4`
/// execution_ms).
pub(super) fn insert_sql(quoted_schema: &str) -> String {
    format!(
        "INSERT INTO {quoted_schema}.{HISTORY_TABLE} (version, name, checksum, execution_ms) \
         VALUES ($1, $2, $3, $4)"
    )
}

/// The statement removing the record of a reverted step (`$1` version).
pub(super) fn delete_sql(quoted_schema: &str) -> String {
    format!("DELETE FROM {quoted_schema}.{HISTORY_TABLE} WHERE version = $1")
}
