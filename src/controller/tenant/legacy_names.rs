//! Names an older operator gave a Tenant, found again when its status is gone.
//!
//! A derived name cut to fit 63 bytes used to end with 8 hex digits; it now ends with 16
//! ([`crate::naming::derived_base`]). A Tenant whose status records the old name keeps it
//! ([`crate::identity::resolve`]). One re-created without its status (deleted with
//! `deletionPolicy: Retain` and applied again, restored from a backup without status) has no such
//! record: its old objects are found by their ownership marker, as a re-created Tenant's are
//! ([`super::place::rediscover`]), and the Tenant goes on under the names they have.

use std::borrow::Cow;

use kube::ResourceExt;
use tracing::info;

use super::super::Context;
use crate::crd::Tenant;
use crate::error::Result;

/// `tenant`, or a copy whose status names the role an older operator created for it under the
/// old cut name, if that role exists with this Tenant's ownership marker (the marker only the
/// operator writes: a tenant cannot `COMMENT ON` its own role). Asked only while the status names
/// no role and the two derivations differ (a cut name, no `spec.databaseName`): of the server the
/// Tenant is placed on, if one is recorded or was chosen by this process; else of every server,
/// as [`super::place::rediscover`] asks (which also decides when to wait for an unreachable one).
pub(super) async fn with_names_of_an_older_operator<'a>(
    tenant: &'a Tenant,
    ctx: &Context,
) -> Result<Cow<'a, Tenant>> {
    if tenant.status.as_ref().is_some_and(|s| s.role.is_some()) {
        return Ok(Cow::Borrowed(tenant));
    }
    let (ns, name) = (tenant.namespace().unwrap_or_default(), tenant.name_any());
    let prefix = &ctx.settings().name_prefix;
    let Some(legacy) = crate::identity::older_derived_name(tenant, prefix, &ns, &name) else {
        return Ok(Cow::Borrowed(tenant));
    };
    let mut older = tenant.clone();
    older.status.get_or_insert_with(Default::default).role = Some(legacy.clone());
    let on = match super::place::placed_server(tenant, ctx)? {
        Some(server) => {
            let shared = &server.pg().settings().shared_database;
            let names = crate::identity::resolve(&older, prefix, shared)?.names;
            server
                .pg()
                .holds_tenant(&names)
                .await?
                .then(|| server.name().to_string())
        }
        None => super::place::rediscover(&older, ctx)
            .await?
            .map(|s| s.name().to_string()),
    };
    Ok(match on {
        Some(server) => {
            info!(%server, role = %legacy, "the tenant's objects have the name an older operator derived: kept");
            Cow::Owned(older)
        }
        None => Cow::Borrowed(tenant),
    })
}
