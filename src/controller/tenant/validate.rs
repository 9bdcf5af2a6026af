//! Stage `validate`: the spec (names, quotas, durations), the explicit-name policy and the
//! `--max-tenants` admission.

use std::time::Duration;

use kube::ResourceExt;
use tracing::debug;

use super::super::{Context, object_key};
use crate::crd::{Tenant, TenantPhase};
use crate::error::{Error, Result};
use crate::identity::{Resolved, resolve};
use crate::rotation;
use crate::status::types;

/// What a Tenant's spec says, validated: names, quotas (with the operator's defaults) and the
/// rotation durations. Pure apart from reading the operator's settings.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    /// Names and the credentials Secret's name.
    pub(super) resolved: Resolved,
    /// Effective quotas.
    pub(super) quotas: crate::quota::EffectiveQuotas,
    /// `credentials.rotateAfter`.
    pub(super) rotate_after: Option<Duration>,
    /// `credentials.gracePeriod` (default 1 h).
    pub(super) grace: Duration,
    /// The Tenant's namespace.
    pub(super) namespace: String,
    /// The Tenant's per-object key.
    pub(super) key: String,
    /// The server the tenant lives on (stage `place`).
    pub(super) server: std::sync::Arc<crate::servers::Server>,
    /// The MongoDB server of its MongoDB database, when it has one (stage `place`).
    pub(super) mongo: Option<std::sync::Arc<crate::servers::MongoServer>>,
}

/// Stage 1: resolve and validate the spec (pure).
pub(super) fn spec(
    tenant: &Tenant,
    ctx: &Context,
    server: std::sync::Arc<crate::servers::Server>,
) -> Result<Spec> {
    let resolved = resolve(
        tenant,
        &ctx.settings().name_prefix,
        &server.pg().settings().shared_database,
    )?;
    let quotas = super::place::effective_quotas(tenant, ctx)?;
    let creds = &tenant.spec.credentials;
    let rotate_after = match &creds.rotate_after {
        Some(s) => Some(crate::quota::parse_duration(s).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "credentials.rotateAfter {s:?} is not a duration like 720h"
            ))
        })?),
        None => None,
    };
    let grace = match &creds.grace_period {
        Some(s) => crate::quota::parse_duration(s).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "credentials.gracePeriod {s:?} is not a duration like 1h"
            ))
        })?,
        None => rotation::DEFAULT_GRACE,
    };
    // A periodic rotation within the grace period of the previous one gives the login still in
    // its grace period a new password: clients not yet reloaded fail before the grace ends. (At
    // equal lengths the next rotation comes as the grace ends.)
    if let Some(every) = rotate_after
        && every < grace
    {
        return Err(Error::InvalidSpec(format!(
            "credentials.rotateAfter ({}s) must not be shorter than gracePeriod ({}s, default 1h): a rotation would cut the previous credentials off before their grace period ends",
            every.as_secs(),
            grace.as_secs()
        )));
    }
    let namespace = tenant
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("Tenant has no namespace".into()))?;
    Ok(Spec {
        resolved,
        quotas,
        rotate_after,
        grace,
        namespace,
        key: object_key(tenant),
        server,
        mongo: None,
    })
}

/// Stage 3 (after observing): explicit names follow the operator's policy (no namespace can
/// claim another's names), unless this Tenant's role already exists under that name, marked as
/// its own (created before the policy: kept).
pub(super) fn explicit_names(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    observed: &crate::pg::plan::Observed,
) -> Result<()> {
    if let Some(violation) = explicit_name_violation(tenant, ctx, &spec.namespace)? {
        let marker = spec.resolved.names.owner_marker.as_str();
        let marked_ours = observed
            .role
            .as_ref()
            .is_some_and(|r| r.comment.as_deref() == Some(marker));
        if !marked_ours {
            return Err(Error::InvalidSpec(violation));
        }
        debug!(%violation, "explicit name kept: it was provisioned before the name policy");
    }
    Ok(())
}

/// The first explicit name of the Tenant that the operator's `--explicit-names` policy refuses.
pub(super) fn explicit_name_violation(
    tenant: &Tenant,
    ctx: &Context,
    ns: &str,
) -> Result<Option<String>> {
    // Every server's shared database and its connect group are the operator's.
    let mut reserved_names = Vec::new();
    for server in ctx.servers().all() {
        let shared = server.pg().settings().shared_database.clone();
        reserved_names.push(
            crate::naming::connect_group_of(&shared)?
                .as_str()
                .to_string(),
        );
        reserved_names.push(shared.as_str().to_string());
    }
    let layout = crate::pg::shared::SharedLayout::defaults()?;
    reserved_names.extend(
        [
            layout.schema.as_str(),
            layout.owner.as_str(),
            layout.tenants.as_str(),
            crate::mongo::REGISTRY_DATABASE,
        ]
        .map(str::to_string),
    );
    let reserved: Vec<&str> = reserved_names.iter().map(String::as_str).collect();
    let explicit = [
        ("spec.databaseName", tenant.spec.database_name.as_deref()),
        (
            "spec.mongodb.databaseName",
            tenant
                .spec
                .mongodb
                .as_ref()
                .and_then(|m| m.database_name.as_deref()),
        ),
    ];
    for (field, name) in explicit {
        // The template databases and their build role (any name of that shape, with any policy).
        if let Some(name) = name
            && (name == crate::pg::template::TEMPLATE_OWNER
                || name.starts_with(crate::pg::template::TEMPLATE_PREFIX))
        {
            return Ok(Some(format!(
                "{field} {name:?} is reserved for the operator's template databases"
            )));
        }
        // The warm pool's entries and their roles: a claim would rename one onto this name.
        if let Some(name) = name
            && name.starts_with(crate::pg::warm::POOL_PREFIX)
        {
            return Ok(Some(format!(
                "{field} {name:?} is reserved for the operator's warm pool"
            )));
        }
        if let Some(name) = name
            && let Err(e) = crate::naming::check_explicit_name(
                ctx.settings().explicit_names,
                ns,
                field,
                name,
                &reserved,
            )
        {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// Whether a Tenant counts against `--max-tenants`: provisioned, or provisioning started (its
/// status names its role) and not failed.
pub(super) fn holds_a_place(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        crate::status::is_true(&s.conditions, types::PROVISIONED)
            || (s.role.is_some()
                && matches!(s.phase, TenantPhase::Provisioning | TenantPhase::Ready))
    })
}

/// Admission under the operator's `--max-tenants`: a Tenant already provisioned passes; a new
/// one is admitted only while fewer than `max` Tenants are provisioned or admitted
/// ([`Context::admit_tenant`], one lock, so concurrent reconciles never overshoot). `Ok(false)`:
/// the count is unknown until the Tenant cache has synced, ask again. Not admitted:
/// [`Error::Capacity`] (the Tenant waits in phase Pending and is looked at again shortly).
pub(super) fn check_tenant_limit(tenant: &Tenant, ctx: &Context) -> Result<bool> {
    let Some(max) = ctx.settings().max_tenants else {
        return Ok(true);
    };
    let already = holds_a_place(tenant);
    let key = object_key(tenant);
    let Some(store) = ctx.synced_tenant_store() else {
        return Ok(false);
    };
    let provisioned = store
        .state()
        .iter()
        .filter(|t| holds_a_place(t))
        .map(|t| object_key(t.as_ref()))
        .collect::<Vec<_>>();
    if already || ctx.admit_tenant(&key, max, provisioned) {
        return Ok(true);
    }
    Err(Error::Capacity(format!(
        "the operator's maximum of {max} tenants (--max-tenants) is reached; this Tenant is provisioned as soon as another one is deleted"
    )))
}
