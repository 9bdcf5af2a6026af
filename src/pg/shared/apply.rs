//! Applying the `shared` layout: [`ensure_layout`] (bootstrap of the fixed objects, migrations as
//! the owner role, then the policies), [`ensure_policies`] and [`register_tenant`]. Each change
//! runs in a transaction under the layout's advisory lock, after a catalog read (`observe.rs`) and
//! a pure plan (`plan.rs`) that say what is missing; when nothing is, no DDL is issued.

use sqlx::PgConnection;
use tracing::{debug, info};

use super::layout::{SharedLayout, check_tenant_roles, lit, validate_tenant_id};
use super::observe::{layout_state, mappings, policy_catalog, role_states};
use super::plan::{Stmt, bootstrap_statements, policy_statements};
use super::sql::{function_marker, insert_mappings_sql, policy_expr_hash_sql};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationSet, quote_identifier};
use crate::naming::Ident;
use crate::pg::{PgAdmin, advisory_xact_lock, ddl};

/// Runs one statement of the layout (fenced: only the leader writes).
pub(super) async fn exec(conn: &mut PgConnection, sql: String) -> Result<()> {
    crate::fence::check()?;
    debug!(sql = %sql, "shared layout DDL");
    sqlx::raw_sql(ddl(sql)).execute(&mut *conn).await?;
    Ok(())
}

/// Creates what is missing of the layout's fixed objects, in one transaction under the layout's
/// advisory lock. Returns the number of statements issued.
async fn bootstrap(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    connect_group: &Ident,
) -> Result<usize> {
    use sqlx::Connection;
    let fmarker = function_marker(layout);
    let mut tx = conn.begin().await?;
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    let st = layout_state(&mut tx, layout, &fmarker, connect_group).await?;
    if st.complete(layout) {
        tx.rollback().await?;
        return Ok(0);
    }
    let stmts = bootstrap_statements(layout, &st, connect_group, &fmarker)?;
    let n = stmts.len();
    for stmt in stmts {
        exec(&mut tx, stmt).await?;
    }
    tx.commit().await?;
    info!(
        schema = layout.schema.as_str(),
        statements = n,
        "shared layout bootstrapped"
    );
    Ok(n)
}

/// Creates or repairs the shared layout and brings it to the latest version of `set`: owner and
/// group roles, schema, mapping table and
/// [`CURRENT_TENANT_FUNCTION`](super::CURRENT_TENANT_FUNCTION) (as needed), then the migrations
/// (once, on a session **logged in as the owner role**, which is not a superuser and holds no
/// right over `schema`/`database` tenants: [`PgAdmin::owner_session`]), then [`ensure_policies`].
///
/// Idempotent and cheap when up to date: a few catalog reads, no DDL, no write. Safe to call
/// from several operator replicas (an advisory lock serializes the changes). Returns the schema's
/// migration version (`None` for an empty set).
///
/// Errors: [`Error::Conflict`] if the roles or the schema exist without this layout's marker,
/// [`Error::Migration`] for migration failures or drift.
pub async fn ensure_layout(
    admin: &PgAdmin,
    layout: &SharedLayout,
    set: &MigrationSet,
) -> Result<Option<i64>> {
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let fmarker = function_marker(layout);
    let connect_group = crate::naming::connect_group_of(&admin.settings().shared_database)?;
    let st = layout_state(&mut conn, layout, &fmarker, &connect_group).await?;
    if !st.complete(layout) {
        bootstrap(&mut conn, layout, &connect_group).await?;
    }
    let target = layout.migration_target();
    let applied = migrate::status(&mut conn, &target).await?;
    let plan = migrate::plan(set, &applied, None)?;
    let version = if plan.is_empty() {
        plan.to
    } else {
        let mut session = admin
            .owner_session(&layout.owner, &admin.settings().shared_database)
            .await?;
        let report = migrate::migrate(&mut session, set, &target, None, false).await;
        session.close().await;
        let report = report?;
        info!(
            schema = layout.schema.as_str(),
            from = ?report.from,
            to = ?report.to,
            steps = report.applied.len(),
            "shared layout migrated"
        );
        report.to
    };
    ensure_policies_on(&mut conn, layout).await?;
    Ok(version)
}

async fn ensure_policies_on(conn: &mut PgConnection, layout: &SharedLayout) -> Result<usize> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    // Deparsed policy expressions depend on search_path: pin it for the check and the marks.
    sqlx::raw_sql("SET LOCAL search_path TO pg_catalog, pg_temp")
        .execute(&mut *tx)
        .await?;
    let catalog = policy_catalog(&mut tx, layout).await?;
    if policy_statements(layout, &catalog)?.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    // Re-read under the lock: another replica may have done part of the work.
    let catalog = policy_catalog(&mut tx, layout).await?;
    let stmts = policy_statements(layout, &catalog)?;
    exec(&mut tx, format!("SET LOCAL ROLE {}", layout.owner)).await?;
    let n = stmts.len();
    for stmt in stmts {
        match stmt {
            Stmt::Sql(sql) => exec(&mut tx, sql).await?,
            Stmt::MarkPolicy {
                table,
                name,
                marker,
            } => {
                let sql = policy_expr_hash_sql();
                let hash: String = sqlx::query_scalar(ddl(sql))
                    .persistent(false)
                    .bind(layout.schema.as_str())
                    .bind(&table)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                let t = quote_identifier(&table)?;
                exec(
                    &mut tx,
                    format!(
                        "COMMENT ON POLICY {name} ON {}.{t} IS {}",
                        layout.schema,
                        lit(&format!("{marker}:{hash}"))?
                    ),
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    info!(
        schema = layout.schema.as_str(),
        statements = n,
        "row-level security policies and privileges updated"
    );
    Ok(n)
}

/// Puts row-level security and privileges in place on every tenant-scoped table of the layout
/// schema, discovered from the catalog (any table with a `tenant_id` column, and `saas_tenants`),
/// partitions included:
///
/// - `ENABLE` and `FORCE ROW LEVEL SECURITY`;
/// - the policies [`POLICY_TENANT`](super::POLICY_TENANT) and
///   [`POLICY_OPERATOR`](super::POLICY_OPERATOR) (plus
///   [`POLICY_GLOBAL_READ`](super::POLICY_GLOBAL_READ) on
///   [`GLOBAL_READ_TABLES`](super::GLOBAL_READ_TABLES)), recreated if they drifted (each carries a
///   versioned hash of its SQL as comment); other **permissive** policies are dropped (they would
///   widen access), restrictive ones are kept;
/// - `SELECT, INSERT, UPDATE, DELETE` for the group role on tables that are not partitions,
///   `USAGE` on sequences; every other privilege in the schema held by anyone but the owner
///   (including `PUBLIC`'s default `EXECUTE` on `SECURITY DEFINER` functions written by migrations)
///   is revoked.
///
/// Idempotent; one catalog query and no DDL when everything is in place. Run it after every
/// migration of the layout schema and after partition maintenance ([`ensure_layout`] does).
/// Returns the number of statements issued.
pub async fn ensure_policies(admin: &PgAdmin, layout: &SharedLayout) -> Result<usize> {
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    ensure_policies_on(&mut conn, layout).await
}

/// Registers a shared tenant: maps its login roles (`tenant_role`, the primary, and
/// `secondary_role`, the rotation role `<role>_b`) to `tenant_id` and makes the primary a member
/// of the layout's group role (which holds the table privileges; the rotation role inherits them
/// as a member of the primary). Both roles must exist (the lead's plan creates them, grants
/// `CONNECT` on the shared database and sets their `search_path` to the layout schema).
///
/// Idempotent; no write when already registered. Refuses ([`Error::Conflict`]) to map a role that
/// is already mapped to another tenant, or a role that is a superuser, has `BYPASSRLS` or is a
/// member of the owner role (any of which would defeat row-level security).
pub async fn register_tenant(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary_role: &Ident,
    tenant_id: &str,
) -> Result<()> {
    use sqlx::Connection;
    validate_tenant_id(tenant_id)?;
    check_tenant_roles(layout, tenant_role, secondary_role)?;
    let roles = [tenant_role.as_str(), secondary_role.as_str()];
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    let states = role_states(&mut tx, layout, &roles).await?;
    for role in roles {
        let Some(state) = states.iter().find(|s| s.role == role) else {
            return Err(Error::Internal(format!(
                "shared tenant role {role} does not exist (create the roles before registering)"
            )));
        };
        if state.privileged || state.owner_member {
            return Err(Error::Conflict(format!(
                "role {role} is a superuser, has BYPASSRLS or is a member of {}: it cannot be a shared tenant",
                layout.owner.as_str()
            )));
        }
    }
    let current = mappings(&mut tx, layout, &roles).await?;
    for (role, id) in &current {
        if id != tenant_id {
            return Err(Error::Conflict(format!(
                "role {role} is already mapped to another shared tenant"
            )));
        }
    }
    let mut changed = false;
    if current.len() < roles.len() {
        let sql = insert_mappings_sql(layout);
        sqlx::query(ddl(sql))
            .persistent(false)
            .bind(&roles[..])
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        changed = true;
    }
    let primary_member = states
        .iter()
        .any(|s| s.role == tenant_role.as_str() && s.group_member);
    if !primary_member {
        exec(
            &mut tx,
            format!("GRANT {} TO {}", layout.tenants, tenant_role),
        )
        .await?;
        changed = true;
    }
    if changed {
        tx.commit().await?;
        info!(role = tenant_role.as_str(), "shared tenant registered");
    } else {
        tx.rollback().await?;
    }
    Ok(())
}
