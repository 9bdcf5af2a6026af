//! Stages `plan` and `apply`: the desired PostgreSQL state, the pure plan, the idempotent apply.

use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::super::Context;
use super::*;
use crate::crd::{Tenant, TenantPhase};
use crate::error::{Error, Result};
use crate::pg::plan::{Desired, Step, plan};

/// What stage `apply` did.
pub(super) struct Applied {
    /// The desired state (names, password, slot, quotas, read-only).
    pub(super) desired: Desired,
    /// The steps applied (empty when converged).
    pub(super) steps: Vec<Step>,
    /// The shared layout's schema version, for `shared` tenants.
    pub(super) layout_version: Option<Option<i64>>,
    /// The schema or database was claimed from the warm pool: the baseline at the latest version
    /// and this month's partitions are in it.
    pub(super) claimed: bool,
    /// ... built this month: every partition ahead is in it too.
    pub(super) claimed_this_month: bool,
    /// The dedicated database was copied from this month's template database: the baseline at
    /// the latest version and every partition ahead are in it.
    pub(super) from_template: bool,
}

/// Stage `plan` + `apply`: the desired state, the pure plan against the observed catalogs, and the
/// idempotent apply (the shared layout first, for `shared` tenants). A tenant provisioned for the
/// first time reports `Provisioning` before its first step. A password edited in the Secret (or
/// changed in PostgreSQL behind the operator's back) is set from the Secret, with an Event.
pub(super) async fn apply(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    creds: &Creds,
    usage: &super::usage::Usage,
) -> Result<Applied> {
    let names = &spec.resolved.names;
    let desired = Desired {
        names: names.clone(),
        password: creds.password.clone(),
        active: creds.active,
        new_password: creds.trigger.is_some() || creds.secret.password.is_none(),
        previous_valid_until: creds.previous_valid_until,
        quotas: spec.quotas.clone(),
        read_only: usage.read_only,
        template: None,
        pool: None,
    };
    let layout_version = if names.rls {
        Some(super::schema::ensure_shared_layout(ctx, &spec.server).await?)
    } else {
        None
    };
    let steps = plan(&desired, &creds.observed).map_err(|c| Error::Conflict(c.0))?;
    // A schema or database re-created here (a version is recorded) must get its migrations back
    // even if a later step or the migration itself fails, or the process stops: remembered (and
    // recorded in status before anything is created, below) until `schema::migrate` completes
    // them; with `autoMigrate` off, until it is on again. (A new tenant, no version recorded, is
    // migrated anyway.)
    let persisted_due = tenant.status.as_ref().and_then(|s| s.baseline_due);
    let recorded = ctx.schema_version_or(
        &spec.key,
        tenant.status.as_ref().and_then(|s| s.schema_version),
    );
    if recorded.is_some()
        && steps
            .iter()
            .any(|s| matches!(s, Step::CreateSchema | Step::CreateDatabase))
    {
        ctx.set_baseline_due(&spec.key, recorded);
    }
    let mut desired = desired;
    if steps.contains(&Step::CreateDatabase) {
        desired.template = template_for(tenant, ctx, spec).await;
    }
    desired.pool = pool_for(tenant, ctx, spec, &desired, &steps);
    let mut claimed = false;
    let mut claimed_this_month = false;
    let mut from_template = false;
    if !steps.is_empty() {
        let first_time = tenant.status.as_ref().map(|s| s.phase) != Some(TenantPhase::Ready);
        if first_time {
            let status =
                super::report::provisioning_status(tenant, &spec.resolved, spec.server.name());
            super::report::write_status(tenant, ctx, status).await?;
        } else if ctx.baseline_due_or(&spec.key, persisted_due) != persisted_due {
            // A Ready tenant's schema or database is re-created: the due migrations go into its
            // status first (`write_status` takes them from the context).
            let status = super::report::base_status(tenant);
            super::report::write_status(tenant, ctx, status).await?;
        }
        for s in &steps {
            info!(step = %s.describe(&desired), "applying");
            ctx.metrics()
                .steps
                .get_or_create(&crate::metrics::StepLabels {
                    step: s.kind().to_string(),
                })
                .inc();
        }
        let done = spec.server.pg().apply(&desired, &steps).await?;
        claimed = done.claimed;
        claimed_this_month = done.claimed_this_month;
        if claimed {
            let kind = if names.dedicated_database {
                "database"
            } else {
                "schema"
            };
            ctx.metrics()
                .warm_pool_claims
                .get_or_create(&crate::metrics::PoolLabels {
                    server: spec.server.name().to_string(),
                    kind: kind.into(),
                })
                .inc();
            ctx.warm_notify().notify_one();
        }
        if steps.contains(&Step::CreateDatabase) {
            // A copy of this month's template (read again: a copy begun before midnight UTC on
            // a month's last day lacks the newest month ahead, and is migrated and maintained as
            // usual).
            let ahead = ctx.settings().partition_months_ahead;
            from_template = !claimed
                && desired.template.as_ref().is_some_and(|t| {
                    crate::pg::template::template_name(ctx.migrations(), ahead)
                        .is_ok_and(|now| &now == t)
                });
            let source = if claimed {
                "pool"
            } else if desired.template.is_some() {
                "template"
            } else {
                "template0"
            };
            ctx.metrics()
                .databases_created
                .get_or_create(&crate::metrics::DatabaseSourceLabels {
                    source: source.into(),
                })
                .inc();
        }
        if creds.trigger.is_none()
            && creds.secret.password.is_some()
            && steps.contains(&Step::SetPassword(creds.active))
        {
            ctx.event(
                tenant,
                EventType::Normal,
                "PasswordApplied",
                "Provision",
                format!(
                    "the password of role {} did not match Secret {}: set from the Secret",
                    creds.active.role(names).as_str(),
                    spec.resolved.secret_name
                ),
            )
            .await;
        }
    }
    Ok(Applied {
        desired,
        steps,
        layout_version,
        claimed,
        claimed_this_month,
        from_template,
    })
}

/// The migration set's fingerprint a new schema or dedicated database is claimed with from the
/// server's warm pool ([`crate::pg::warm`]): when the server keeps entries of that kind, the
/// tenant is auto-migrated and not recorded at another version (the same rule as templates;
/// a dedicated database also needs the template its entries are copies of). `None` otherwise.
fn pool_for(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    desired: &Desired,
    steps: &[Step],
) -> Option<String> {
    let want = crate::controller::warm::wanted(ctx, &spec.server);
    let set = ctx.migrations();
    let wanted = if steps.contains(&Step::CreateSchema) {
        want.schemas > 0
    } else if steps.contains(&Step::CreateDatabase) {
        want.databases > 0 && desired.template.is_some()
    } else {
        false
    };
    if !wanted || set.migrations().is_empty() || !baseline_fits(tenant, ctx, spec) {
        return None;
    }
    Some(crate::pg::template::fingerprint(set))
}

/// Whether a home that already holds the baseline at the latest version (a template copy, a warm
/// pool entry) is right for the tenant: it is auto-migrated and not recorded at another version
/// (a recreated home of a tenant at an older version replays its migrations up to that version
/// instead).
fn baseline_fits(tenant: &Tenant, ctx: &Context, spec: &Spec) -> bool {
    let recorded = ctx.schema_version_or(
        &spec.key,
        tenant.status.as_ref().and_then(|s| s.schema_version),
    );
    spec.resolved.auto_migrate
        && (recorded.is_none() || recorded == ctx.migrations().latest_version())
}

/// The template a new dedicated database is copied from ([`crate::pg::template`]): one holding
/// the baseline at the latest version, when templates are on, the tenant is auto-migrated and not
/// recorded at another version (a recreated database of a tenant at an older version replays its
/// migrations up to that version instead). `None` (template0) otherwise, and when the template
/// cannot be built: provisioning never depends on it.
async fn template_for(tenant: &Tenant, ctx: &Context, spec: &Spec) -> Option<crate::naming::Ident> {
    if !ctx.settings().database_templates || !baseline_fits(tenant, ctx, spec) {
        return None;
    }
    match spec
        .server
        .pg()
        .ensure_template(ctx.migrations(), ctx.settings().partition_months_ahead)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "template database unavailable; creating the database from template0");
            None
        }
    }
}
