//! Stage `report`: the TenantMigration's status writer and Events. One [`Reconciler`] per
//! reconcile (and per background pass): it remembers what it wrote, so an unchanged status is not
//! written again, and records each write in the status-write guard.

use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::super::{Context, object_key};
use super::*;
use crate::crd::{TenantMigration, TenantMigrationStatus};
use crate::error::{Error, Result};

/// Writes the status and Events of one TenantMigration.
pub(crate) struct Reconciler {
    pub(crate) tm: Arc<TenantMigration>,
    pub(crate) ctx: Arc<Context>,
    pub(crate) ns: String,
    pub(crate) generation: Option<i64>,
    pub(crate) prev: TenantMigrationStatus,
    pub(crate) written: TenantMigrationStatus,
}

impl Reconciler {
    pub(crate) async fn write(&mut self, status: TenantMigrationStatus) -> Result<bool> {
        self.ctx.metrics().set_phase(
            &object_key(self.tm.as_ref()),
            Some(&format!("migration_{}", status.phase.as_str())),
        );
        if status == self.written {
            return Ok(false);
        }
        let api: Api<TenantMigration> = Api::namespaced(self.ctx.client().clone(), &self.ns);
        let mut body = serde_json::to_value(&status).map_err(|e| Error::Internal(e.to_string()))?;
        // Explicit nulls: optional fields that are unset now are removed, not left behind.
        if let Some(obj) = body.as_object_mut() {
            for key in [
                "observedGeneration",
                "message",
                "revision",
                "targetVersion",
                "startedAt",
                "completedAt",
                "settledAt",
            ] {
                obj.entry(key).or_insert(serde_json::Value::Null);
            }
            for key in ["conditions", "canaryTenants"] {
                obj.entry(key).or_insert(json!([]));
            }
        }
        let patch = json!({
            "apiVersion": TenantMigration::api_version(&()),
            "kind": TenantMigration::kind(&()),
            "metadata": { "name": self.tm.name_any(), "namespace": self.ns },
            "status": body,
        });
        let written = api
            .patch_status(
                &self.tm.name_any(),
                &PatchParams::apply(&format!("{}-status", self.ctx.settings().field_manager))
                    .force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.ctx.metrics().status_written(CONTROLLER);
        self.ctx.record_status_write(
            &object_key(self.tm.as_ref()),
            None,
            self.tm.meta().resource_version.clone(),
            written.meta().resource_version.clone(),
        );
        self.ctx
            .set_migration_status(&object_key(self.tm.as_ref()), status.clone());
        self.written = status;
        Ok(true)
    }

    pub(crate) async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx
            .event(self.tm.as_ref(), type_, reason, "Migrate", note)
            .await;
    }
}

impl Reconciler {
    /// The writer for `tm` in `ns`, starting from its cached status. The cache can lag behind our
    /// own batched status writes: entries written for this revision but missing from the cached
    /// object are taken from memory, so a tenant counted as done keeps its entry.
    pub(crate) fn load(tm: &Arc<TenantMigration>, ctx: &Arc<Context>, ns: &str) -> Self {
        let mut prev = tm.status.clone().unwrap_or_default();
        if let Some(mem) = ctx.migration_status(&object_key(tm.as_ref()))
            && mem.revision.is_some()
            && mem.revision == prev.revision
        {
            for e in mem.tenants {
                if !prev.tenants.iter().any(|p| p.name == e.name) {
                    prev.tenants.push(e);
                }
            }
            prev.tenants.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Reconciler {
            tm: tm.clone(),
            ctx: ctx.clone(),
            ns: ns.to_string(),
            generation: tm.meta().generation,
            written: prev.clone(),
            prev,
        }
    }
}
