//! Stage `migrate`: schema migrations (as the tenant) and partition maintenance.

use std::time::Instant;

use kube::ResourceExt;
use tracing::info;

use super::super::Context;
use super::*;
use crate::crd::Tenant;
use crate::error::Result;
use crate::identity::lock_key;
use crate::migrate::{self, MigrationTarget};
use crate::naming::{Ident, TenantNames};
use crate::servers::Server;

/// Stage `migrate`: the baseline migrations at provisioning (no version recorded yet) or when the
/// schema was just (re)created, on a session logged in as the tenant; for `shared` tenants the
/// layout (migrated with it) and the tenant's registration in it; then the monthly partitions.
/// Returns the schema version to report.
pub(super) async fn migrate(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    creds: &Creds,
    applied: &super::steps::Applied,
) -> Result<Option<i64>> {
    let names = &spec.resolved.names;
    let status = tenant.status.clone().unwrap_or_default();
    let recorded = ctx.schema_version_or(&spec.key, status.schema_version);
    // Set by `steps::apply` when its plan (re)created the schema or database (and recorded in
    // status before it did), kept until the migrations below complete.
    let due = ctx.baseline_due_or(&spec.key, status.baseline_due);
    let login = Login {
        user: creds.active.role(names),
        password: &creds.password,
    };
    let mut schema_version = recorded;
    if let Some(v) = applied.layout_version {
        // Shared tables: migrations and partitions belong to the layout, not the tenant.
        schema_version = v;
        let tid = crate::pg::shared::tenant_id(&spec.namespace, &tenant.name_any());
        let layout = crate::pg::shared::SharedLayout::defaults()?;
        let (r, b) = (&names.role, &names.secondary_role);
        if !crate::pg::shared::observe_tenant(spec.server.pg(), &layout, r, b, &tid).await? {
            crate::pg::shared::register_tenant(spec.server.pg(), &layout, r, b, &tid).await?;
            info!(tenant_id = %tid, "registered in the shared row-level security layout");
        }
    } else if applied.claimed || applied.from_template {
        // Claimed from the warm pool or copied from this month's template database: the baseline
        // at the latest version and this month's partitions are in it (built as their own role,
        // handed to the tenant's); an entry of last month lacks the furthest month ahead, which
        // the maintenance below adds. No login as the tenant is needed for either.
        schema_version = ctx.migrations().latest_version();
        ctx.set_schema_version(&spec.key, schema_version);
        ctx.set_baseline_due(&spec.key, None);
        if applied.claimed_this_month || applied.from_template {
            ctx.set_partition_cache(&spec.key);
        }
    } else if spec.resolved.auto_migrate && (recorded.is_none() || due.is_some()) {
        // A (re)created schema gets back the version it had; until its migrations complete,
        // later reconciles keep trying (a failure here is often transient: the connection
        // limit, a timeout).
        let target = baseline_target(due, recorded, ctx.migrations().latest_version());
        if recorded.is_some() {
            // A re-created schema or database, its due migrations in status (tests: as if the
            // process were killed before they ran).
            super::test_points::fail_point("baseline-due");
        }
        schema_version = run_migrations(ctx, &spec.server, names, &login, target).await?;
        ctx.set_schema_version(&spec.key, schema_version);
        ctx.set_baseline_due(&spec.key, None);
        // Its partitioned tables are new and have no partitions: maintained now, whenever the
        // schema's partitions were last maintained.
        ctx.forget_partition_cache(&spec.key);
    }
    // Monthly partitions of the baseline's partitioned tables, kept ahead (at most every
    // partition interval).
    if schema_version.is_some() && !names.rls {
        maintain_partitions(ctx, &spec.server, &spec.key, names, &login).await?;
    }
    Ok(schema_version)
}

/// The version the baseline migrations of a new or re-created schema bring it to: the due one,
/// never below the recorded one (a TenantMigration may have moved the recorded version past the
/// due one meanwhile: going down would run down migrations on a schema that never had them),
/// else the latest.
fn baseline_target(due: Option<i64>, recorded: Option<i64>, latest: Option<i64>) -> Option<i64> {
    due.max(recorded).or(latest)
}

/// The credentials a tenant session logs in with: the active slot's role and the Secret's password.
pub(super) struct Login<'a> {
    pub(super) user: &'a Ident,
    pub(super) password: &'a str,
}

/// Creates the current and next months' partitions and drops those past the retention, on a
/// session logged in as the tenant. Skipped when done recently (in-memory; after a restart it runs
/// once per tenant and issues no DDL when nothing is missing).
pub(super) async fn maintain_partitions(
    ctx: &Context,
    server: &Server,
    key: &str,
    names: &TenantNames,
    login: &Login<'_>,
) -> Result<()> {
    if ctx
        .partition_cache(key)
        .is_some_and(|at| at.elapsed() < ctx.settings().partition_interval)
    {
        return Ok(());
    }
    let today = crate::partitions::today();
    let ahead = ctx.settings().partition_months_ahead;
    let retention = ctx.settings().partition_retention_months;
    let mut conn = server
        .pg()
        .tenant_session(&names.database, login.user, login.password)
        .await?;
    let report = crate::partitions::maintain(
        &mut conn,
        names.schema.as_str(),
        names.role.as_str(),
        today,
        ahead,
        retention,
    )
    .await;
    conn.close().await;
    let report = report?;
    if !report.created.is_empty() || !report.dropped.is_empty() {
        info!(created = ?report.created, dropped = ?report.dropped, rows_moved = report.rows_moved, "partitions maintained");
    }
    ctx.set_partition_cache(key);
    Ok(())
}

/// Creates or repairs the shared row-level security layout (roles, schema, baseline migrations,
/// policies) and keeps its partitions ahead. Serialized, and re-checked at most every resync.
pub(super) async fn ensure_shared_layout(ctx: &Context, server: &Server) -> Result<Option<i64>> {
    let mut guard = server.shared_layout().lock().await;
    if let Some((at, version)) = *guard
        && at.elapsed() < ctx.settings().resync
    {
        return Ok(version);
    }
    let layout = crate::pg::shared::SharedLayout::defaults()?;
    let version = crate::pg::shared::ensure_layout(server.pg(), &layout, ctx.migrations()).await?;
    if version.is_some() {
        let today = crate::partitions::today();
        // As the layout's owner (logged in with a one-time password), not as the admin.
        let mut conn = server
            .pg()
            .owner_session(&layout.owner, &server.pg().settings().shared_database)
            .await?;
        let report = crate::partitions::maintain(
            &mut conn,
            layout.schema.as_str(),
            layout.owner.as_str(),
            today,
            ctx.settings().partition_months_ahead,
            ctx.settings().partition_retention_months,
        )
        .await;
        conn.close().await;
        let report = report?;
        if !report.created.is_empty() {
            // New partitions need their row-level security too.
            crate::pg::shared::ensure_policies(server.pg(), &layout).await?;
        }
        // And, while a shared tenant moves off this server, `REPLICA IDENTITY FULL`; after the
        // last move the default again (when a move's own reset failed). Best effort: a table
        // lock not had within the lock timeout must not fail the tenants' provisioning (tried
        // again at the next repair).
        if let Err(e) =
            crate::pg::shared::replication::sync_replica_identity(server.pg(), &layout).await
        {
            tracing::warn!(error = %e, "the shared layout's replica identity is set later");
        }
    }
    *guard = Some((Instant::now(), version));
    Ok(version)
}

/// Applies the bundled migrations to the tenant's schema on a session logged in as the tenant
/// (never on the admin session: see `migrate`'s "Who runs the SQL").
pub(super) async fn run_migrations(
    ctx: &Context,
    server: &Server,
    names: &TenantNames,
    login: &Login<'_>,
    target: Option<i64>,
) -> Result<Option<i64>> {
    if ctx.migrations().migrations().is_empty() {
        return Ok(None);
    }
    let mt = MigrationTarget {
        schema: names.schema.as_str(),
        owner_role: names.role.as_str(),
        lock_key: lock_key(names),
    };
    let mut conn = server
        .pg()
        .tenant_session(&names.database, login.user, login.password)
        .await?;
    let report = migrate::migrate(&mut conn, ctx.migrations(), &mt, target, false).await;
    conn.close().await;
    let report = report?;
    if !report.applied.is_empty() {
        info!(from = ?report.from, to = ?report.to, steps = report.applied.len(), "migrations applied");
    }
    Ok(report.to)
}

#[cfg(test)]
mod tests {
    use super::baseline_target;

    #[test]
    fn the_baseline_goes_to_the_due_version_and_never_down() {
        assert_eq!(baseline_target(None, None, Some(7)), Some(7), "new: latest");
        assert_eq!(baseline_target(Some(5), Some(5), Some(7)), Some(5), "back");
        assert_eq!(
            baseline_target(Some(5), Some(6), Some(7)),
            Some(6),
            "not down"
        );
        assert_eq!(baseline_target(Some(5), None, Some(7)), Some(5));
        assert_eq!(baseline_target(None, None, None), None, "no migrations");
    }
}
