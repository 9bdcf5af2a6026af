//! Stage `select`: the Tenants a TenantMigration selects (one by name, or a fleet by labels), not
//! being deleted, sorted by name, with the schema versions this process recorded.

use kube::api::{Api, ListParams};
use kube::core::SelectorExt;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::super::{Context, object_key};
use super::*;
use crate::crd::Tenant;
use crate::error::Result;

/// The Tenants `spec` selects in `ns`: from the Tenant cache once it has synced (no API list per
/// reconcile: a settled fleet migration is reconciled on every change of a Tenant it selects),
/// from the API before.
pub(crate) async fn tenants(ctx: &Context, ns: &str, spec: &ResolvedSpec) -> Result<Vec<Tenant>> {
    let api: Api<Tenant> = Api::namespaced(ctx.client().clone(), ns);
    let mut tenants: Vec<Tenant> = match (ctx.synced_tenant_store(), &spec.tenant, &spec.selector) {
        (Some(store), Some(name), _) => store
            .get(&ObjectRef::new(name).within(ns))
            .map(|t| (*t).clone())
            .into_iter()
            .collect(),
        (Some(store), None, Some(sel)) => store
            .state()
            .iter()
            .filter(|t| t.namespace().as_deref() == Some(ns) && sel.matches(t.labels()))
            .map(|t| (**t).clone())
            .collect(),
        (None, Some(name), _) => api.get_opt(name).await?.into_iter().collect(),
        (None, None, Some(sel)) => api
            .list(&ListParams::default().labels_from(sel))
            .await?
            .items
            .into_iter()
            .filter(|t| sel.matches(t.labels()))
            .collect(),
        (_, None, None) => Vec::new(),
    };
    tenants.retain(|t| t.meta().deletion_timestamp.is_none());
    // The cache may predate a schemaVersion this process recorded (see `Context::schema_version`).
    for t in &mut tenants {
        let key = object_key(t);
        if let Some(st) = t.status.as_mut() {
            st.schema_version = ctx.schema_version_or(&key, st.schema_version);
        }
    }
    tenants.sort_by_key(|t| t.name_any());
    Ok(tenants)
}
