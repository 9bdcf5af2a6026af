//! Catalog observation for the `shared` layout: the reads behind every decision (the layout's fixed
//! objects, the policy and deletion catalogs, a tenant's login roles and their mappings) and
//! [`observe_tenant`], the one-query check of a registered tenant. Reads only: nothing here
//! writes. The SQL is in `sql.rs`, the types the results decode into in `plan.rs`.

use std::collections::BTreeMap;

use sqlx::{PgConnection, Row};

use super::layout::{CURRENT_TENANT_FUNCTION, MAPPING_TABLE, SharedLayout};
use super::plan::{DeletionCatalog, LayoutState, PolicyCatalog};
use super::sql::{
    FUNCTION_CONFIG, LAYOUT_STATE_SQL, TENANT_STATE_SQL, current_tenant_function_body,
    deletion_catalog_sql, mappings_sql, policy_catalog_sql, tenant_registered_sql,
};
use crate::error::Result;
use crate::naming::Ident;
use crate::pg::{PgAdmin, ddl};

/// The state of the layout's fixed objects ([`LAYOUT_STATE_SQL`]); `function_marker` is the
/// expected comment of [`CURRENT_TENANT_FUNCTION`], `connect_group` the shared database's `CONNECT`
/// group.
pub(super) async fn layout_state(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    function_marker: &str,
    connect_group: &Ident,
) -> Result<LayoutState> {
    let row = sqlx::query(LAYOUT_STATE_SQL)
        .bind(layout.owner.as_str())
        .bind(layout.tenants.as_str())
        .bind(layout.schema.as_str())
        .bind(MAPPING_TABLE)
        .bind(CURRENT_TENANT_FUNCTION)
        .bind(function_marker)
        .bind(current_tenant_function_body(layout))
        .bind(FUNCTION_CONFIG)
        .bind(connect_group.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(LayoutState {
        owner_exists: row.try_get("owner_exists")?,
        owner_comment: row.try_get("owner_comment")?,
        owner_drift: row.try_get("owner_drift")?,
        group_exists: row.try_get("group_exists")?,
        group_comment: row.try_get("group_comment")?,
        group_drift: row.try_get("group_drift")?,
        admin_member: row.try_get("admin_member")?,
        owner_connect: row.try_get("owner_connect")?,
        schema_exists: row.try_get("schema_exists")?,
        schema_comment: row.try_get("schema_comment")?,
        schema_owner_ok: row.try_get("schema_owner_ok")?,
        group_usage: row.try_get("group_usage")?,
        mapping_exists: row.try_get("mapping_exists")?,
        mapping_owner_ok: row.try_get("mapping_owner_ok")?,
        function_exists: row.try_get("function_exists")?,
        function_owner_ok: row.try_get("function_owner_ok")?,
        function_ok: row.try_get("function_ok")?,
    })
}

/// The policy catalog of the layout schema ([`policy_catalog_sql`]).
pub(super) async fn policy_catalog(
    conn: &mut PgConnection,
    layout: &SharedLayout,
) -> Result<PolicyCatalog> {
    let sql = policy_catalog_sql(layout)?;
    let json: sqlx::types::Json<PolicyCatalog> = sqlx::query_scalar(ddl(sql))
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    Ok(json.0)
}

/// The deletion catalog of the layout schema ([`deletion_catalog_sql`]).
pub(super) async fn deletion_catalog(
    conn: &mut PgConnection,
    layout: &SharedLayout,
) -> Result<DeletionCatalog> {
    let sql = deletion_catalog_sql(layout)?;
    let catalog: sqlx::types::Json<DeletionCatalog> = sqlx::query_scalar(ddl(sql))
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    Ok(catalog.0)
}

/// A tenant login role as [`TENANT_STATE_SQL`] reports it.
pub(super) struct RoleState {
    pub(super) role: String,
    pub(super) privileged: bool,
    pub(super) owner_member: bool,
    pub(super) group_member: bool,
}

/// The states of the login roles `roles` that exist.
pub(super) async fn role_states(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    roles: &[&str],
) -> Result<Vec<RoleState>> {
    let rows = sqlx::query(TENANT_STATE_SQL)
        .bind(roles)
        .bind(layout.owner.as_str())
        .bind(layout.tenants.as_str())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RoleState {
                role: r.try_get("role")?,
                privileged: r.try_get("privileged")?,
                owner_member: r.try_get("owner_member")?,
                group_member: r.try_get("group_member")?,
            })
        })
        .collect()
}

/// The tenant ids the roles `roles` are mapped to, by role.
pub(super) async fn mappings(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    roles: &[&str],
) -> Result<BTreeMap<String, String>> {
    let sql = mappings_sql(layout);
    let rows: Vec<(String, String)> = sqlx::query_as(ddl(sql))
        .persistent(false)
        .bind(roles)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Whether the tenant is registered as `register_tenant` leaves it: both login roles mapped to
/// `tenant_id` and the primary a member of the group role. One query, no writes: a resync of a
/// Ready shared tenant that gets `true` has nothing to do. `false` if the layout does not exist.
pub async fn observe_tenant(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary_role: &Ident,
    tenant_id: &str,
) -> Result<bool> {
    let pool = admin.shared_pool().await?;
    let sql = tenant_registered_sql(layout);
    let roles = [tenant_role.as_str(), secondary_role.as_str()];
    let r = sqlx::query_scalar::<_, bool>(ddl(sql))
        .persistent(false)
        .bind(&roles[..])
        .bind(tenant_id)
        .bind(layout.tenants.as_str())
        .bind(tenant_role.as_str())
        .fetch_one(pool)
        .await;
    match r {
        Ok(v) => Ok(v),
        // undefined_table / invalid_schema_name: the layout does not exist (yet).
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}
