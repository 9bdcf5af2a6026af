//! Deletion: the deletion policy, carried out behind the finalizer.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{debug, error, info, warn};

use super::super::{Context, object_key};
use super::*;
use crate::crd::{DeletionPolicy, Tenant, TenantPhase};
use crate::error::Result;
use crate::identity::resolve;
use crate::status::{Cond, merge_conditions, types};

/// Carries out the deletion policy, then lets the finalizer go.
pub(super) async fn cleanup(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    // An unfinished move leaves nothing behind (its replication slot would fill the source's
    // disk), whatever the policy.
    super::moving::abandon(&tenant, &ctx).await?;
    super::moving_mongo::abandon(&tenant, &ctx).await?;
    let policy = tenant.spec.deletion_policy;
    let key = object_key(tenant.as_ref());
    if policy == DeletionPolicy::Retain {
        info!("deletion policy Retain: keeping database objects");
        ctx.event(
            tenant.as_ref(),
            EventType::Normal,
            "Retained",
            "Delete",
            "deletion policy Retain: database objects kept".into(),
        )
        .await;
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    // A Tenant re-created without its status may hold objects under a name an older operator
    // derived: those are the ones to drop.
    let tenant = match super::legacy_names::with_names_of_an_older_operator(&tenant, &ctx).await? {
        std::borrow::Cow::Owned(older) => Arc::new(older),
        std::borrow::Cow::Borrowed(_) => tenant,
    };
    // The server holding the tenant: its placement, or (status lost, or never placed) the one
    // holding its ownership markers. None holds it: nothing of it exists in PostgreSQL.
    let server = match super::place::placed_server(&tenant, &ctx)? {
        Some(s) => Some(s),
        None => match super::place::rediscover(&tenant, &ctx).await {
            Ok(s) => s,
            // Names that cannot be resolved: nothing was created under them (said below).
            Err(e @ (crate::error::Error::InvalidSpec(_) | crate::error::Error::Name(_))) => {
                debug!(error = %e, "no server to look on for an invalid spec");
                None
            }
            Err(e) => return Err(e),
        },
    };
    let shared_database = match &server {
        Some(s) => s.pg().settings().shared_database.clone(),
        None => super::place::default_shared_database(&ctx)?,
    };
    let resolved = match resolve(&tenant, &ctx.settings().name_prefix, &shared_database) {
        Ok(r) => r,
        Err(e) if e.is_permanent() => {
            // Nothing could have been created under an invalid name.
            warn!(error = %e, "nothing to clean up for an invalid spec");
            ctx.forget(&key);
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e),
    };
    if tenant.status.as_ref().map(|s| s.phase) != Some(TenantPhase::Deleting) {
        let mut s = base_status(&tenant);
        s.phase = TenantPhase::Deleting;
        s.conditions = merge_conditions(
            &s.conditions,
            &[Cond::new(
                types::READY,
                false,
                "Deleting",
                "deletion policy Delete: dropping database objects",
            )],
            tenant.meta().generation,
            Timestamp::now(),
        );
        // The object may already be on its way out; a failed status write must not block cleanup.
        if let Err(e) = write_status(&tenant, &ctx, s).await {
            debug!(error = %e, "could not write Deleting status");
        }
    }
    if resolved.names.rls
        && let Some(server) = &server
    {
        let rows = async {
            let layout = crate::pg::shared::SharedLayout::defaults()?;
            let (r, b) = (&resolved.names.role, &resolved.names.secondary_role);
            crate::pg::shared::unregister_tenant(server.pg(), &layout, r, b).await?;
            let tid = crate::pg::shared::tenant_id(
                &tenant.namespace().unwrap_or_default(),
                &tenant.name_any(),
            );
            crate::pg::shared::delete_tenant_rows(server.pg(), &layout, &tid, 1000).await
        };
        match rows.await {
            Ok(n) => info!(rows = n, "deleted the tenant's rows from the shared tables"),
            Err(e) => {
                let status = failed_status(&tenant, &e, Some(TenantPhase::Deleting), None);
                let _ = write_status(&tenant, &ctx, status).await;
                return Err(e);
            }
        }
    }
    let mongo_report = match cleanup_mongo(&tenant, &ctx, &resolved.names).await {
        Ok(r) => r,
        Err(e) => {
            let status = failed_status(&tenant, &e, Some(TenantPhase::Deleting), None);
            let _ = write_status(&tenant, &ctx, status).await;
            return Err(e);
        }
    };
    let dropped = match &server {
        Some(server) => server.pg().cleanup(&resolved.names).await,
        None => Ok(crate::pg::CleanupReport::default()),
    };
    match dropped {
        Ok(mut report) => {
            if let Some(m) = mongo_report {
                if m.database_dropped {
                    report.dropped.push("MongoDB database".into());
                }
                if m.user_dropped {
                    report.dropped.push("MongoDB user".into());
                }
                if let Some(why) = m.skipped {
                    report.skipped.push(why);
                }
            }
            for s in &report.skipped {
                warn!(object = %s, "not dropped: not managed by this Tenant");
            }
            ctx.event(
                tenant.as_ref(),
                EventType::Normal,
                "Deleted",
                "Delete",
                format!(
                    "dropped: {}",
                    if report.dropped.is_empty() {
                        "nothing (already gone)".to_string()
                    } else {
                        report.dropped.join(", ")
                    }
                ),
            )
            .await;
            ctx.forget(&key);
            Ok(Action::await_change())
        }
        Err(e) => {
            error!(error = %e, "cleanup failed");
            let status = failed_status(&tenant, &e, Some(TenantPhase::Deleting), None);
            let _ = write_status(&tenant, &ctx, status).await;
            Err(e)
        }
    }
}
