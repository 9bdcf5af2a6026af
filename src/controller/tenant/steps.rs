//! Stages `plan` and `apply`: the desired PostgreSQL state, the pure plan, the idempotent apply.

use kube::runtime::events::EventType;
use tracing::info;

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
        previous_valid_until: creds.previous_valid_until,
        quotas: spec.quotas.clone(),
        read_only: usage.read_only,
    };
    let layout_version = if names.rls {
        Some(super::schema::ensure_shared_layout(ctx).await?)
    } else {
        None
    };
    let steps = plan(&desired, &creds.observed).map_err(|c| Error::Conflict(c.0))?;
    if !steps.is_empty() {
        let first_time = tenant.status.as_ref().map(|s| s.phase) != Some(TenantPhase::Ready);
        if first_time {
            let status = super::report::provisioning_status(tenant, &spec.resolved);
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
        ctx.pg().apply(&desired, &steps).await?;
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
    })
}
