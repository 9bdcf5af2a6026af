//! Storage accounting of `shared` tenants: [`tenant_storage_bytes`] estimates a tenant's share of
//! the shared tables (the tenant's rows counted exactly, the tables' rows from the planner
//! statistics), [`estimate_share`] is the pure arithmetic behind it.

use serde::Deserialize;

use super::layout::{SharedLayout, validate_tenant_id};
use super::sql::usage_catalog_sql;
use crate::error::Result;
use crate::migrate::quote_identifier;
use crate::pg::{PgAdmin, ddl};

/// One tenant-scoped table's contribution to a storage estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct TableShare {
    /// Rows of the tenant.
    pub tenant_rows: i64,
    /// Rows of all tenants (statistics or an exact count).
    pub total_rows: f64,
    /// Size of the table with its indexes, TOAST and partitions.
    pub bytes: i64,
}

/// The tenant's share of the tables' storage: each table's size in proportion to the tenant's
/// rows. Pure; see [`tenant_storage_bytes`].
pub fn estimate_share(tables: &[TableShare]) -> i64 {
    let total: f64 = tables
        .iter()
        .filter(|t| t.tenant_rows > 0 && t.bytes > 0)
        .map(|t| {
            // Statistics can lag behind (fewer rows than the tenant alone has): never more than
            // the whole table.
            let all = t.total_rows.max(t.tenant_rows as f64).max(1.0);
            t.bytes as f64 * (t.tenant_rows as f64 / all)
        })
        .sum();
    total.round() as i64
}

/// A tenant-scoped table in the usage catalog ([`usage_catalog_sql`]).
#[derive(Debug, Deserialize)]
struct UsageTable {
    name: String,
    key_column: String,
    bytes: i64,
    est_rows: f64,
    analyzed: bool,
}

/// Estimated storage of one `shared` tenant: for every tenant-scoped table (partitions
/// included), the table's total size (heap, indexes, TOAST) times the tenant's fraction of its
/// rows. The tenant's rows are counted exactly (one statement, index scans on the `tenant_id`
/// indexes); the table's rows come from the planner statistics (`reltuples`, kept current by
/// autovacuum), or from an exact count when a table has never been analyzed or its statistics
/// show fewer rows than the tenant has. Global rows (`tenant_id IS NULL`) count for nobody.
/// Runs as the operator's admin role (which the policies let see every row).
pub async fn tenant_storage_bytes(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_id: &str,
) -> Result<i64> {
    validate_tenant_id(tenant_id)?;
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let catalog: sqlx::types::Json<Vec<UsageTable>> =
        sqlx::query_scalar(ddl(usage_catalog_sql(layout)?))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
    let tables: Vec<UsageTable> = catalog.0.into_iter().filter(|t| t.bytes > 0).collect();
    if tables.is_empty() {
        return Ok(0);
    }
    let s = &layout.schema;
    let mut parts = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let name = quote_identifier(&t.name)?;
        let key = quote_identifier(&t.key_column)?;
        parts.push(format!(
            "SELECT {i}::int AS i, count(*)::bigint AS n FROM {s}.{name} WHERE {key} = $1"
        ));
    }
    let rows: Vec<(i32, i64)> = sqlx::query_as(ddl(parts.join(" UNION ALL ")))
        .persistent(false)
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut shares = Vec::with_capacity(tables.len());
    for (i, n) in rows {
        let Some(t) = usize::try_from(i).ok().and_then(|i| tables.get(i)) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        let total_rows = if t.analyzed && t.est_rows >= n as f64 {
            t.est_rows
        } else {
            let name = quote_identifier(&t.name)?;
            let exact: i64 =
                sqlx::query_scalar(ddl(format!("SELECT count(*)::bigint FROM {s}.{name}")))
                    .persistent(false)
                    .fetch_one(&mut *conn)
                    .await?;
            exact as f64
        };
        shares.push(TableShare {
            tenant_rows: n,
            total_rows,
            bytes: t.bytes,
        });
    }
    Ok(estimate_share(&shares))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_share_is_proportional_to_rows_and_bounded_by_the_table() {
        let t = |tenant_rows, total_rows, bytes| TableShare {
            tenant_rows,
            total_rows,
            bytes,
        };
        assert_eq!(estimate_share(&[]), 0);
        // A quarter of one table, all of another.
        assert_eq!(
            estimate_share(&[t(25, 100.0, 8192 * 4), t(10, 10.0, 16384)]),
            8192 + 16384
        );
        // Statistics lagging behind (0 or fewer rows than the tenant has): the whole table.
        assert_eq!(estimate_share(&[t(50, 0.0, 8192)]), 8192);
        assert_eq!(estimate_share(&[t(50, 20.0, 8192)]), 8192);
        // No rows of the tenant: nothing.
        assert_eq!(estimate_share(&[t(0, 1000.0, 1 << 20)]), 0);
    }
}
