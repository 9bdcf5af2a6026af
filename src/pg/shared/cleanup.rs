//! Removing a `shared` tenant: [`unregister_tenant`] withdraws its access (group memberships and
//! mappings; its rows are kept), [`delete_tenant_rows`] deletes its rows in short batches,
//! referencing tables first. Global rows (`tenant_id IS NULL`) are never touched.

use tracing::{debug, info};

use super::apply::exec;
use super::layout::{SharedLayout, check_tenant_roles, validate_tenant_id};
use super::observe::{deletion_catalog, role_states};
use super::plan::{delete_statement, deletion_order};
use super::sql::{delete_role_mappings_sql, delete_tenant_mappings_sql};
use crate::error::Result;
use crate::naming::Ident;
use crate::pg::{PgAdmin, advisory_xact_lock, ddl};

/// Withdraws a shared tenant's access: revokes the group membership of both roles and removes
/// their mappings (from then on their sessions see no rows and may touch no table, even sessions
/// that are already open). Rows are kept (see [`delete_tenant_rows`]); the roles are left for the
/// caller to drop. Idempotent: missing roles, memberships or mappings are fine.
pub async fn unregister_tenant(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary_role: &Ident,
) -> Result<()> {
    use sqlx::Connection;
    check_tenant_roles(layout, tenant_role, secondary_role)?;
    let roles = [tenant_role.as_str(), secondary_role.as_str()];
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    let states = role_states(&mut tx, layout, &roles).await?;
    let mut changed = false;
    for ident in [tenant_role, secondary_role] {
        if states
            .iter()
            .any(|s| s.role == ident.as_str() && s.group_member)
        {
            exec(&mut tx, format!("REVOKE {} FROM {}", layout.tenants, ident)).await?;
            changed = true;
        }
    }
    let sql = delete_role_mappings_sql(layout);
    let r = sqlx::query(ddl(sql))
        .persistent(false)
        .bind(&roles[..])
        .execute(&mut *tx)
        .await;
    match r {
        Ok(done) => changed |= done.rows_affected() > 0,
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) =>
        {
            // No layout: nothing is mapped. The transaction is aborted, nothing to commit.
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    if changed {
        tx.commit().await?;
        info!(role = tenant_role.as_str(), "shared tenant unregistered");
    } else {
        tx.rollback().await?;
    }
    Ok(())
}

/// Deletes every row of `tenant_id` from every tenant-scoped table of the layout (including
/// `saas_tenants`, keyed by `id`), in batches of `batch_size` rows, each batch its own statement
/// (short transactions, bounded locks and WAL bursts). Tables are processed referencing tables
/// first, so `ON DELETE RESTRICT` references (`ai_agents.created_by`) never block and cascades
/// have nothing left to do. Then the tenant's mappings are removed.
///
/// Batches use the primary key (`DELETE … WHERE (pk) IN (SELECT pk … WHERE tenant_id = $1 LIMIT
/// n)`), or `ctid` for a plain table without one; a partitioned table without a primary key is
/// deleted from in one statement. Global rows (`tenant_id IS NULL`) are never touched.
///
/// Call [`unregister_tenant`] first so that the tenant cannot write while its rows are deleted.
/// Idempotent: returns the number of rows deleted by this call (0 the second time; 0 where the
/// layout does not exist).
pub async fn delete_tenant_rows(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_id: &str,
    batch_size: u32,
) -> Result<u64> {
    validate_tenant_id(tenant_id)?;
    let batch = i64::from(batch_size.max(1));
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let catalog = deletion_catalog(&mut conn, layout).await?;
    let names: Vec<String> = catalog.tables.iter().map(|t| t.name.clone()).collect();
    let order = deletion_order(&names, &catalog.edges);
    let s = &layout.schema;
    let mut total: u64 = 0;
    for name in order {
        let Some(table) = catalog.tables.iter().find(|t| t.name == name) else {
            continue;
        };
        let (sql, batched) = delete_statement(layout, table)?;
        let mut deleted_here: u64 = 0;
        loop {
            let mut q = sqlx::query(ddl(sql.clone())).bind(tenant_id);
            if batched {
                q = q.bind(batch);
            }
            let n = q.execute(&mut *conn).await?.rows_affected();
            deleted_here += n;
            if !batched || n < batch.unsigned_abs() {
                break;
            }
        }
        if deleted_here > 0 {
            debug!(table = %table.name, rows = deleted_here, "deleted shared tenant rows");
        }
        total += deleted_here;
    }
    let sql = delete_tenant_mappings_sql(layout);
    let r = sqlx::query(ddl(sql))
        .persistent(false)
        .bind(tenant_id)
        .execute(&mut *conn)
        .await;
    match r {
        Ok(_) => {}
        // No layout on this server (a move's target rolled back before it was set up): nothing
        // was there to delete.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) =>
        {
            return Ok(total);
        }
        Err(e) => return Err(e.into()),
    }
    info!(
        schema = s.as_str(),
        rows = total,
        "shared tenant rows deleted"
    );
    Ok(total)
}
