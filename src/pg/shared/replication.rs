//! The layout's part in moving one `shared` tenant's rows to another server with logical
//! replication (`crate::moves`): a publication of the tenant-scoped tables **with a row filter on
//! the tenant's key** (`tenant_id`, `id` of `saas_tenants`), published through their partition
//! roots, and the per-table row counts of one tenant.
//!
//! A row filter that is to hold for `UPDATE` and `DELETE` may only use columns of the table's
//! replica identity, and PostgreSQL checks that on **every** `UPDATE`/`DELETE` of a published
//! table — every tenant's, not only the moving one's (`cannot update table … column used in the
//! publication WHERE expression is not part of the replica identity`). The layout's tables are
//! keyed by `id` alone (the default replica identity), and `tenant_id` may be `NULL` (global rows),
//! so no index can serve: while a publication of a shared tenant exists, the tenant-scoped tables
//! and their partitions have `REPLICA IDENTITY FULL` (the whole old row is logged for updates and
//! deletes of every tenant of the server: more WAL during a move). It is set a table per
//! transaction before the publication (each `ALTER TABLE` holding its lock alone, waiting at most
//! 500 ms for it) and checked again in the transaction that creates it, and set back to
//! `DEFAULT` a table per transaction once no move's publication is left
//! ([`sync_replica_identity`], also run by the layout's repair after its partition maintenance:
//! partitions created during a move get `FULL` too). All take one advisory lock
//! ([`SharedLayout::move_lock_key`]) and a reset re-checks under it, so that a publication is
//! never created while its tables' identity is being set back.

use std::collections::BTreeMap;

use serde::Deserialize;
use sqlx::{Connection, PgConnection};
use tracing::warn;

use super::layout::{SharedLayout, lit, validate_tenant_id};
use super::sql::scoped_tables_sql;
use crate::error::{Error, Result};
use crate::migrate::quote_identifier;
use crate::naming::Ident;
use crate::pg::{PgAdmin, ddl};

/// How long the identity change may wait for each table lock before the step fails (retried
/// 5 s later): a long transaction of another tenant must not make every later statement on that
/// table queue behind the `ALTER TABLE` (its lock conflicts with every other).
const LOCK_TIMEOUT: &str = "500ms";

/// The moves' publications (`crate::moves::object_name`); a user's own publications in the
/// shared database do not keep the layout's identity `FULL`.
const MOVE_PUBLICATIONS: &str = "tenantdb\\_mv\\_%";

/// A tenant-scoped table of the layout that is not a partition.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ScopedTable {
    /// Table name (in the layout schema).
    pub name: String,
    /// `tenant_id`, or `id` for `saas_tenants`.
    pub key_column: String,
    /// Its leaf tables (itself when not partitioned).
    pub leaves: Vec<String>,
}

/// The tenant-scoped tables of the layout (not partitions).
pub async fn scoped_tables(
    conn: &mut PgConnection,
    layout: &SharedLayout,
) -> Result<Vec<ScopedTable>> {
    let sql = scoped_tables_sql(layout)?;
    let tables: sqlx::types::Json<Vec<ScopedTable>> = sqlx::query_scalar(ddl(sql))
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    Ok(tables.0)
}

/// The partitions of the layout's tables (names). A move's catalog comparison leaves them out:
/// partition maintenance creates months ahead and keeps past ones, so a server set up later has
/// fewer (the rows of a month without its partition land in the table's `DEFAULT` partition).
pub async fn partitions(conn: &mut PgConnection, layout: &SharedLayout) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relispartition AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .bind(layout.schema.as_str())
    .fetch_all(&mut *conn)
    .await?)
}

/// `CREATE PUBLICATION` of the tenant's rows: each table with its row filter, published through
/// its partition root (the root's filter then holds for every partition; on the target the rows
/// are routed to its own partitions). `TRUNCATE` is not published: row filters do not apply to
/// it, and the target's table holds other tenants' rows.
pub fn publication_sql(
    layout: &SharedLayout,
    name: &Ident,
    tables: &[ScopedTable],
    tenant_id: &str,
) -> Result<String> {
    validate_tenant_id(tenant_id)?;
    if tables.is_empty() {
        return Err(Error::Config(format!(
            "the shared schema {} has no tenant-scoped table to move",
            layout.schema.as_str()
        )));
    }
    let id = lit(tenant_id)?;
    let mut parts = Vec::with_capacity(tables.len());
    for t in tables {
        parts.push(format!(
            "{}.{} WHERE ({} = {id})",
            layout.schema,
            quote_identifier(&t.name)?,
            quote_identifier(&t.key_column)?
        ));
    }
    Ok(format!(
        "CREATE PUBLICATION {name} FOR TABLE {} \
         WITH (publish = 'insert, update, delete', publish_via_partition_root = true)",
        parts.join(", ")
    ))
}

/// `ALTER TABLE … REPLICA IDENTITY FULL` (or `DEFAULT`) for those of `relations` (name, current
/// `relreplident`) that are not so already; `None` when nothing is to change.
pub fn replica_identity_sql(
    layout: &SharedLayout,
    relations: &[(String, String)],
    full: bool,
) -> Result<Option<String>> {
    let (want, clause) = if full {
        ("f", "FULL")
    } else {
        ("d", "DEFAULT")
    };
    let mut out = Vec::new();
    for (name, current) in relations {
        // Set back what is `FULL` (outside moves the layout's tables have the default identity).
        let change = if full {
            current != want
        } else {
            current == "f"
        };
        if change {
            out.push(format!(
                "ALTER TABLE {}.{} REPLICA IDENTITY {clause}",
                layout.schema,
                quote_identifier(name)?
            ));
        }
    }
    Ok((!out.is_empty()).then(|| out.join("; ")))
}

/// The tables and leaves with their replica identity (`relreplident`).
async fn identities(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    tables: &[ScopedTable],
) -> Result<Vec<(String, String)>> {
    let names: Vec<String> = tables
        .iter()
        .flat_map(|t| std::iter::once(t.name.clone()).chain(t.leaves.iter().cloned()))
        .collect();
    Ok(sqlx::query_as(
        "SELECT c.relname::text, c.relreplident::text FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relname = ANY($2) ORDER BY 1",
    )
    .bind(layout.schema.as_str())
    .bind(names)
    .fetch_all(&mut *conn)
    .await?)
}

/// In a transaction holding the moves' lock: sets the identity of `tables` and their leaves (the
/// tenant-scoped tables, as read in that transaction) to `FULL` (`full`) or back to `DEFAULT`
/// (normally nothing: [`set_each`] ran first).
async fn set_identity(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    tables: &[ScopedTable],
    full: bool,
) -> Result<()> {
    let current = identities(conn, layout, tables).await?;
    if let Some(alter) = replica_identity_sql(layout, &current, full)? {
        sqlx::raw_sql(ddl(alter)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Whether a move's publication holds a table of the layout.
async fn moving(conn: &mut PgConnection, layout: &SharedLayout) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE schemaname = $1 AND pubname LIKE $2)",
    )
    .bind(layout.schema.as_str())
    .bind(MOVE_PUBLICATIONS)
    .fetch_one(&mut *conn)
    .await?)
}

/// Whether a publication that is not a move's filters rows of a layout table (it needs the
/// tables' identity as it is: left alone).
async fn others_filter(conn: &mut PgConnection, layout: &SharedLayout) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_publication_rel pr \
                          JOIN pg_publication p ON p.oid = pr.prpubid \
                          JOIN pg_class c ON c.oid = pr.prrelid \
                          JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND pr.prqual IS NOT NULL AND p.pubname NOT LIKE $2)",
    )
    .bind(layout.schema.as_str())
    .bind(MOVE_PUBLICATIONS)
    .fetch_one(&mut *conn)
    .await?)
}

/// Sets each tenant-scoped table and leaf whose identity differs to `FULL` (`full`) or back to
/// `DEFAULT`, **one table per transaction** (each holding its table's lock only for its own
/// `ALTER`, at most [`LOCK_TIMEOUT`] waiting for it), each under the moves' lock; a reset is
/// skipped once a move's publication exists again.
async fn set_each(conn: &mut PgConnection, layout: &SharedLayout, full: bool) -> Result<()> {
    let tables = scoped_tables(conn, layout).await?;
    let current = identities(conn, layout, &tables).await?;
    for rel in current {
        let Some(alter) = replica_identity_sql(layout, std::slice::from_ref(&rel), full)? else {
            continue;
        };
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(ddl(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")))
            .execute(&mut *tx)
            .await?;
        lock(&mut tx, layout).await?;
        if !full && moving(&mut tx, layout).await? {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::raw_sql(ddl(alter)).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn lock(conn: &mut PgConnection, layout: &SharedLayout) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(layout.move_lock_key())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates the move's publication of the tenant's rows unless it exists, with the tables'
/// replica identity `FULL` first (module documentation), in one transaction.
pub async fn ensure_publication(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    name: &Ident,
    tenant_id: &str,
) -> Result<()> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_publication WHERE pubname = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    // `FULL` first, a table at a time (harmless without a publication); then, in the
    // publication's transaction, whatever a concurrent reset set back.
    set_each(conn, layout, true).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(ddl(format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")))
        .execute(&mut *tx)
        .await?;
    lock(&mut tx, layout).await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_publication WHERE pubname = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_some() {
        tx.rollback().await?;
        return Ok(());
    }
    let tables = scoped_tables(&mut tx, layout).await?;
    let create = publication_sql(layout, name, &tables, tenant_id)?;
    set_identity(&mut tx, layout, &tables, true).await?;
    sqlx::raw_sql(ddl(create)).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Drops the move of `tenant_id`'s publication; then sets the tables' replica identity back when
/// it was the last. A reset that fails (a table's lock not had within [`LOCK_TIMEOUT`]) is left
/// to the layout's periodic repair while another shared tenant is registered on this server (its
/// reconciles run the repair: a busy tenant's open transaction does not hold the move up).
/// Without one nothing would ever repair it: the call fails, the publication dropped, and the
/// caller's step is retried until the identity is back (a second call drops nothing and resets;
/// only sessions of no tenant — a dump, autovacuum, an administrator — can hold such a lock).
pub async fn drop_publication(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    name: &Ident,
    tenant_id: &str,
) -> Result<()> {
    let mut tx = conn.begin().await?;
    lock(&mut tx, layout).await?;
    sqlx::raw_sql(ddl(format!("DROP PUBLICATION IF EXISTS {name}")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // (A table at a time, each re-checking that no move's publication exists again.)
    let Err(e) = sync_on(conn, layout).await else {
        return Ok(());
    };
    if others_registered(conn, layout, tenant_id)
        .await
        .unwrap_or(false)
    {
        warn!(error = %e, "the shared layout's replica identity is set back by its next repair");
        return Ok(());
    }
    Err(e.context("the shared layout's replica identity is not set back yet"))
}

/// Whether a shared tenant other than `tenant_id` is registered in the layout (its reconciles
/// run the layout's periodic repair on this server).
async fn others_registered(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    tenant_id: &str,
) -> Result<bool> {
    Ok(sqlx::query_scalar(ddl(format!(
        "SELECT EXISTS (SELECT 1 FROM {}.{} WHERE tenant_id IS DISTINCT FROM $1)",
        layout.schema,
        super::layout::MAPPING_TABLE
    )))
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// Makes the layout's replica identity match the moves in flight: `FULL` on every tenant-scoped
/// table and leaf (partitions created since included) while a move's publication holds a table of
/// the layout, `DEFAULT` again when none does (left as it is while a publication that is not a
/// move's filters rows of a layout table: it may need `FULL` itself). Run by the layout's repair after its partition
/// maintenance and after each move's publication is dropped.
pub async fn sync_replica_identity(admin: &PgAdmin, layout: &SharedLayout) -> Result<()> {
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    sync_on(&mut conn, layout).await
}

async fn sync_on(conn: &mut PgConnection, layout: &SharedLayout) -> Result<()> {
    let full = moving(conn, layout).await?;
    if !full && others_filter(conn, layout).await? {
        return Ok(());
    }
    set_each(conn, layout, full).await
}

/// The tenant's row count in every tenant-scoped table (partitions counted with their root), by
/// `schema.table`.
pub async fn row_counts(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    tenant_id: &str,
) -> Result<BTreeMap<String, i64>> {
    validate_tenant_id(tenant_id)?;
    let tables = scoped_tables(conn, layout).await?;
    let mut out = BTreeMap::new();
    let Some(sql) = row_counts_sql(layout, &tables)? else {
        return Ok(out);
    };
    // One statement for every table (inside the cut-over's write freeze: a round trip per table
    // cost ~0.3 ms each, on each server).
    let rows: Vec<(String, i64)> = sqlx::query_as(ddl(sql))
        .persistent(false)
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
    for (name, n) in rows {
        out.insert(format!("{}.{}", layout.schema.as_str(), name), n);
    }
    Ok(out)
}

/// The tenant's row count of every table in one statement (`$1`: its id, compared as text: one
/// parameter for key columns of any type; for `varchar` keys the cast keeps their indexes usable),
/// `None` without tables.
fn row_counts_sql(layout: &SharedLayout, tables: &[ScopedTable]) -> Result<Option<String>> {
    let mut parts = Vec::with_capacity(tables.len());
    for t in tables {
        parts.push(format!(
            "SELECT {}::text, count(*) FROM {}.{} WHERE {}::text = $1",
            lit(&t.name)?,
            layout.schema,
            quote_identifier(&t.name)?,
            quote_identifier(&t.key_column)?
        ));
    }
    Ok((!parts.is_empty()).then(|| parts.join(" UNION ALL ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, key: &str) -> ScopedTable {
        ScopedTable {
            name: name.into(),
            key_column: key.into(),
            leaves: vec![name.into()],
        }
    }

    #[test]
    fn the_row_counts_are_one_statement_filtered_on_each_tables_key() {
        let layout = SharedLayout::defaults().unwrap();
        assert_eq!(row_counts_sql(&layout, &[]).unwrap(), None);
        let sql = row_counts_sql(
            &layout,
            &[table("saas_a", "tenant_id"), table("saas_tenants", "id")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            sql,
            "SELECT 'saas_a'::text, count(*) FROM \"tenantdb_rls\".\"saas_a\" WHERE \"tenant_id\"::text = $1 \
             UNION ALL SELECT 'saas_tenants'::text, count(*) FROM \"tenantdb_rls\".\"saas_tenants\" WHERE \"id\"::text = $1"
        );
    }

    #[test]
    fn the_publication_filters_every_table_on_the_tenant_key() {
        let layout = SharedLayout::defaults().unwrap();
        let name = Ident::new("tenantdb_mv_0000000000000001").unwrap();
        let tid = super::super::tenant_id("ns", "a");
        let sql = publication_sql(
            &layout,
            &name,
            &[
                table("saas_tenants", "id"),
                table("saas_users", "tenant_id"),
            ],
            &tid,
        )
        .unwrap();
        assert_eq!(
            sql,
            format!(
                "CREATE PUBLICATION \"tenantdb_mv_0000000000000001\" FOR TABLE \
                 \"tenantdb_rls\".\"saas_tenants\" WHERE (\"id\" = '{tid}'), \
                 \"tenantdb_rls\".\"saas_users\" WHERE (\"tenant_id\" = '{tid}') \
                 WITH (publish = 'insert, update, delete', publish_via_partition_root = true)"
            )
        );
        assert!(publication_sql(&layout, &name, &[], &tid).is_err());
        assert!(publication_sql(&layout, &name, &[table("t", "tenant_id")], "x'; drop").is_err());
    }

    #[test]
    fn identity_changes_only_what_differs_and_sets_back_only_full() {
        let layout = SharedLayout::defaults().unwrap();
        let rels = vec![
            ("a".to_string(), "d".to_string()),
            ("b".to_string(), "f".to_string()),
            ("c".to_string(), "i".to_string()),
        ];
        assert_eq!(
            replica_identity_sql(&layout, &rels, true).unwrap().unwrap(),
            "ALTER TABLE \"tenantdb_rls\".\"a\" REPLICA IDENTITY FULL; \
             ALTER TABLE \"tenantdb_rls\".\"c\" REPLICA IDENTITY FULL"
        );
        assert_eq!(
            replica_identity_sql(&layout, &rels, false)
                .unwrap()
                .unwrap(),
            "ALTER TABLE \"tenantdb_rls\".\"b\" REPLICA IDENTITY DEFAULT"
        );
        let none = vec![("a".to_string(), "d".to_string())];
        assert_eq!(replica_identity_sql(&layout, &none, false).unwrap(), None);
    }
}
