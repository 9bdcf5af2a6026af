//! The controller's migrator: credentials from the tenant's Secret, the migration as the tenant,
//! then `status.schemaVersion` on the Tenant.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::super::{Context, object_key_for};
use super::*;
use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::pg::session::Credentials;

/// The migrator used by the controller: the tenant's credentials from its Secret, PostgreSQL as
/// the tenant, then `status.schemaVersion` on the Tenant.
pub(crate) struct KubeMigrator {
    pub(crate) pg: PgMigrator,
    pub(crate) tenants: Api<Tenant>,
    pub(crate) secrets: Api<k8s_openapi::api::core::v1::Secret>,
    pub(crate) ctx: Arc<Context>,
    pub(crate) namespace: String,
}

impl KubeMigrator {
    /// The login of the tenant's credentials Secret (read from the API: the controller keeps no
    /// cache of Secrets).
    async fn credentials(&self, tenant: &RolloutTenant) -> Result<Credentials> {
        let name = tenant.secret_name.as_deref().ok_or_else(|| {
            Error::Internal(format!(
                "tenant {} has no credentials Secret name",
                tenant.name
            ))
        })?;
        let secret = self.secrets.get_opt(name).await?.ok_or_else(|| {
            Error::DatabaseUnavailable(format!(
                "credentials Secret {name} not found (the Tenant controller writes it)"
            ))
        })?;
        Credentials::for_tenant(
            &tenant.names,
            crate::secret::read_key(&secret, "username").as_deref(),
            crate::secret::read_key(&secret, "password").as_deref(),
        )
    }
}

impl TenantMigrator for KubeMigrator {
    async fn migrate(&self, tenant: &RolloutTenant) -> TenantOutcome {
        let mut with_login;
        let tenant = if tenant.credentials.is_some() {
            tenant
        } else {
            match self.credentials(tenant).await {
                Ok(c) => {
                    with_login = tenant.clone();
                    with_login.credentials = Some(c);
                    &with_login
                }
                Err(e) => {
                    let kind = if e.is_permanent() {
                        OutcomeKind::Failed
                    } else {
                        OutcomeKind::Retry
                    };
                    return TenantOutcome::error(
                        tenant,
                        kind,
                        "credentials",
                        e.to_string(),
                        Duration::ZERO,
                    );
                }
            }
        };
        let mut outcome = self.pg.migrate(tenant).await;
        if outcome.kind != OutcomeKind::Succeeded || self.pg.dry_run {
            return outcome;
        }
        // The database is at `to_version` now: the Tenant controller must not write an older
        // schemaVersion from a cache that has not seen the patch below yet.
        let key = object_key_for::<Tenant>(&self.namespace, &tenant.name);
        self.ctx.set_schema_version(&key, outcome.to_version);
        if outcome.to_version != tenant.recorded_version
            && let Err(e) =
                record_schema_version(&self.tenants, &tenant.name, outcome.to_version).await
        {
            outcome.kind = OutcomeKind::Retry;
            outcome.category = Some("KubernetesError");
            outcome.message = bounded(&format!(
                "migrated to version {} but recording status.schemaVersion failed: {e}",
                version_text(outcome.to_version)
            ));
        }
        outcome
    }
}

/// Server-side applies `status.schemaVersion` (only that field) on a Tenant, with the
/// [`TENANT_FIELD_MANAGER`] field manager. The Tenant controller's apply of its whole status
/// carries `schemaVersion` over from the observed status, so the two do not fight.
pub async fn record_schema_version(
    api: &Api<Tenant>,
    name: &str,
    version: Option<i64>,
) -> Result<()> {
    let patch = json!({
        "apiVersion": Tenant::api_version(&()),
        "kind": Tenant::kind(&()),
        "metadata": { "name": name },
        "status": { "schemaVersion": version },
    });
    api.patch_status(
        name,
        &PatchParams::apply(TENANT_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
