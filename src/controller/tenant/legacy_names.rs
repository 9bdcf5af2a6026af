//! Names an older operator gave a Tenant, found again when its status is gone.
//!
//! A derived name cut to fit 63 bytes used to end with 8 hex digits; it now ends with 16
//! ([`crate::naming::derived_base`]). A Tenant whose status records the old name keeps it
//! ([`crate::identity::resolve`]). One re-created without its status (deleted with
//! `deletionPolicy: Retain` and applied again, restored from a backup without status) has no such
//! record: its old objects are found by their ownership marker, as a re-created Tenant's are, and
//! the Tenant goes on under the names they have.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use tracing::{debug, info};

use super::super::Context;
use crate::crd::Tenant;
use crate::error::{Error, Result};

/// `tenant`, or a copy whose status names the role an older operator created for it under the
/// old cut name, if a reachable server holds that role with this Tenant's ownership marker (the
/// marker only the operator writes: a tenant cannot `COMMENT ON` its own role). Only asked while
/// the status names no role and the derivations differ (a cut name, no `spec.databaseName`).
/// A server that cannot be asked makes a Tenant whose Secret exists wait (`DatabaseUnavailable`),
/// as [`super::place::rediscover`] does.
pub(super) async fn with_names_of_an_older_operator<'a>(
    tenant: &'a Tenant,
    ctx: &Context,
) -> Result<Cow<'a, Tenant>> {
    if tenant.spec.database_name.is_some()
        || tenant.status.as_ref().is_some_and(|s| s.role.is_some())
    {
        return Ok(Cow::Borrowed(tenant));
    }
    let (ns, name) = (tenant.namespace().unwrap_or_default(), tenant.name_any());
    let prefix = &ctx.settings().name_prefix;
    let legacy = crate::naming::legacy_derived_base(prefix, &ns, &name);
    if legacy == crate::naming::derived_base(prefix, &ns, &name) {
        return Ok(Cow::Borrowed(tenant));
    }
    if !ctx.servers().is_synced() {
        // (Not every server is known yet: "not found" would not mean anything.)
        return Err(Error::Unschedulable(
            "waiting for the DatabaseServers to be loaded".into(),
        ));
    }
    let mut older = tenant.clone();
    older.status.get_or_insert_with(Default::default).role = Some(legacy.clone());
    let resolved =
        crate::identity::resolve(&older, prefix, &super::place::default_shared_database(ctx)?)?;
    let mut unreachable = Vec::new();
    for server in ctx.servers().all() {
        if matches!(server.facts().probe, Some(Err(_))) {
            unreachable.push(server.name().to_string());
            continue;
        }
        match server.pg().holds_tenant(&resolved.names).await {
            Ok(true) => {
                info!(server = %server.name(), role = %legacy, "the tenant's objects have the name an older operator derived: kept");
                return Ok(Cow::Owned(older));
            }
            Ok(false) => {}
            Err(e) => {
                debug!(server = %server.name(), error = %e, "cannot look for the tenant's old names on this server");
                unreachable.push(server.name().to_string());
            }
        }
    }
    unreachable.extend(ctx.servers().unusable().into_iter().map(|(n, _)| n));
    // As `place::rediscover` does for the current names: a Tenant provisioned before (its Secret
    // is there) waits for the servers that may hold it rather than get new, empty objects.
    if !unreachable.is_empty() {
        let secrets: Api<Secret> = Api::namespaced(ctx.client().clone(), &ns);
        if secrets.get_opt(&resolved.secret_name).await?.is_some() {
            return Err(Error::unavailable(format!(
                "the tenant's objects may have the name an older operator derived ({legacy}) on server(s) {} that are unreachable: waiting for them",
                unreachable.join(", ")
            )));
        }
    }
    Ok(Cow::Borrowed(tenant))
}
