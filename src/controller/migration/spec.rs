//! Spec resolution: selectors, the migration set (bundled + ConfigMap), the revision
//! fingerprint. Pure apart from reading the ConfigMap.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use sha2::{Digest, Sha256};

use super::super::Context;
use super::*;
use crate::crd::{Tenant, TenantMigration};
use crate::error::Error;
use crate::migrate::{self, MigrationSet};

// ---------------------------------------------------------------------------------------------
// Spec resolution (pure apart from reading the ConfigMap)
// ---------------------------------------------------------------------------------------------

/// A validated TenantMigration spec.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    /// `target.tenant`.
    pub tenant: Option<String>,
    /// `target.selector`, parsed.
    pub selector: Option<Selector>,
    /// The migration set (bundled, merged with the ConfigMap's).
    pub set: Arc<MigrationSet>,
    /// Resolved target version.
    pub target_version: i64,
    /// Fingerprint of what is rolled out (see [`revision`]).
    pub revision: String,
}

/// Why a spec cannot be resolved.
#[derive(Debug)]
pub struct SpecError {
    /// The error (always [`Error::InvalidSpec`] or a transient Kubernetes error).
    pub error: Error,
    /// Whether the problem is in the ConfigMap (which is not watched: looked at again on resync).
    pub in_source: bool,
}

pub(crate) fn invalid(msg: String, in_source: bool) -> SpecError {
    SpecError {
        error: Error::InvalidSpec(msg),
        in_source,
    }
}

pub(crate) fn valid_label_part(s: &str, allow_slash: bool) -> bool {
    !s.is_empty()
        && s.len() <= 317
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.')
                || (allow_slash && b == b'/')
        })
}

/// Validates and parses a label selector: operators, non-empty value lists, label syntax.
pub fn parse_selector(ls: &LabelSelector) -> std::result::Result<Selector, String> {
    for (k, v) in ls.match_labels.iter().flatten() {
        if !valid_label_part(k, true) || !(v.is_empty() || valid_label_part(v, false)) {
            return Err(format!("invalid matchLabels entry {k:?}: {v:?}"));
        }
    }
    for r in ls.match_expressions.iter().flatten() {
        if !valid_label_part(&r.key, true) {
            return Err(format!("invalid matchExpressions key {:?}", r.key));
        }
        let values = r.values.clone().unwrap_or_default();
        match r.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(format!(
                        "matchExpressions {} {} needs at least one value",
                        r.key, r.operator
                    ));
                }
                if let Some(bad) = values.iter().find(|v| !valid_label_part(v, false)) {
                    return Err(format!("invalid matchExpressions value {bad:?}"));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(format!(
                        "matchExpressions {} {} takes no values",
                        r.key, r.operator
                    ));
                }
            }
            other => return Err(format!("unknown matchExpressions operator {other:?}")),
        }
    }
    Selector::try_from(ls.clone()).map_err(|e| e.to_string())
}

/// Whether a TenantMigration's target selects this Tenant (same namespace assumed).
pub fn targets(tm: &TenantMigration, tenant: &Tenant) -> bool {
    targets_labels(tm, &tenant.name_any(), tenant.labels())
}

/// Whether a TenantMigration's target selects a Tenant with this name and these labels.
pub(crate) fn targets_labels(
    tm: &TenantMigration,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(target) = &tm.spec.target.tenant {
        return target == name;
    }
    match &tm.spec.target.selector {
        Some(ls) => parse_selector(ls).is_ok_and(|s| s.matches(labels)),
        None => false,
    }
}

/// Stable fingerprint of a migration set: versions, names, up and down checksums.
pub fn set_fingerprint(set: &MigrationSet) -> String {
    let mut h = Sha256::new();
    for m in set.migrations() {
        h.update(m.version.to_be_bytes());
        h.update(m.name.as_bytes());
        h.update([0]);
        h.update(m.checksum.as_bytes());
        h.update(
            m.down_sql
                .as_deref()
                .map(migrate::checksum)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
    }
    hex16(&h.finalize())
}

pub(crate) fn hex16(d: &[u8]) -> String {
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Fingerprint of what a TenantMigration rolls out: target, migration set, target version, dry
/// run and the retry annotation. Strategy fields are not part of it: changing them continues the
/// current rollout.
pub fn revision(tm: &TenantMigration, set: &MigrationSet, target_version: i64) -> String {
    let mut h = Sha256::new();
    h.update(
        serde_json::to_string(&tm.spec.target)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.update([0]);
    h.update(set_fingerprint(set).as_bytes());
    h.update(target_version.to_be_bytes());
    h.update([u8::from(tm.spec.dry_run)]);
    h.update(
        tm.annotations()
            .get(RETRY_ANNOTATION)
            .map(String::as_str)
            .unwrap_or("")
            .as_bytes(),
    );
    hex16(&h.finalize())
}

/// Builds the migration set of a spec: the bundled set, merged with the ConfigMap's files.
pub fn build_set(
    bundled: &MigrationSet,
    config_map: Option<(&str, &BTreeMap<String, String>)>,
) -> std::result::Result<MigrationSet, String> {
    let Some((name, data)) = config_map else {
        return Ok(bundled.clone());
    };
    let extra = MigrationSet::from_files(data.iter().map(|(k, v)| (k.clone(), v.clone())))
        .and_then(|set| set.refuse_transaction_control().map(|()| set))
        .map_err(|e| format!("ConfigMap {name}: {e}"))?;
    bundled
        .clone()
        .merge(extra)
        .map_err(|e| format!("ConfigMap {name} conflicts with the bundled migrations: {e}"))
}

pub(crate) async fn resolve_spec(
    tm: &TenantMigration,
    ctx: &Context,
    ns: &str,
) -> std::result::Result<ResolvedSpec, SpecError> {
    let spec = &tm.spec;
    let (tenant, selector) = match (&spec.target.tenant, &spec.target.selector) {
        (Some(t), None) if !t.is_empty() => (Some(t.clone()), None),
        (None, Some(ls)) => {
            let s =
                parse_selector(ls).map_err(|e| invalid(format!("target.selector: {e}"), false))?;
            (None, Some(s))
        }
        _ => {
            return Err(invalid(
                "exactly one of target.tenant and target.selector must be set".into(),
                false,
            ));
        }
    };
    let set = match &spec.source.config_map {
        None => build_set(ctx.migrations(), None),
        Some(cm) => {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client().clone(), ns);
            let found = api.get_opt(&cm.name).await.map_err(|e| SpecError {
                error: Error::from(e),
                in_source: true,
            })?;
            let Some(found) = found else {
                return Err(invalid(format!("ConfigMap {} not found", cm.name), true));
            };
            let data = found.data.unwrap_or_default();
            build_set(ctx.migrations(), Some((&cm.name, &data)))
        }
    }
    .map_err(|e| invalid(e, true))?;
    let Some(latest) = set.latest_version() else {
        return Err(invalid("the migration set is empty".into(), true));
    };
    let target_version = spec.target_version.unwrap_or(latest);
    if set.get(target_version).is_none() {
        return Err(invalid(
            format!(
                "targetVersion {target_version} is not a version of the migration set (latest is {latest})"
            ),
            spec.source.config_map.is_some(),
        ));
    }
    let revision = revision(tm, &set, target_version);
    Ok(ResolvedSpec {
        tenant,
        selector,
        set: Arc::new(set),
        target_version,
        revision,
    })
}
