//! Stages `credentials` (read the Secret), `rotate` (the rotation decision) and `secret` (write
//! the Secret back).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::super::Context;
use super::*;
use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::pg::plan::{Slot, Step};
use crate::rotation;
use crate::secret::{self, Endpoint};

/// The credentials Secret as found (stage `credentials`, before rotation).
pub(super) struct SecretState {
    /// The Secret of the spec's name, if it exists (owned, or adoptable: adopted).
    pub(super) existing: Option<Secret>,
    /// The Secret the credentials are read from: `existing`, or the old Secret of a renamed
    /// `secretName` until the new one is written.
    pub(super) renamed_from: Option<Secret>,
    /// The Secret's password, if it has one.
    pub(super) password: Option<String>,
    /// The password to observe and provision with: the Secret's, or a new one when it has none.
    pub(super) candidate: String,
    /// The active login slot the Secret names.
    pub(super) active: Slot,
    /// With no Secret at all (deleted): the credentials status of the Tenant read fresh from the
    /// API, which then stands in for the Secret's bookkeeping (see [`rotate`]).
    pub(super) reported: Option<crate::crd::CredentialStatus>,
}

impl SecretState {
    /// The Secret the credentials come from.
    pub(super) fn source(&self) -> Option<&Secret> {
        self.existing.as_ref().or(self.renamed_from.as_ref())
    }
}

/// Stage `credentials`: reads the credentials Secret (fresh from the API: the password is the
/// source of truth), adopts an orphaned one of this Tenant, and falls back to the old Secret of a
/// renamed `secretName`. A Secret that is someone else's is a `Conflict`.
pub(super) async fn read(tenant: &Tenant, ctx: &Context, spec: &Spec) -> Result<SecretState> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client().clone(), &spec.namespace);
    let name = &spec.resolved.secret_name;
    let existing = secrets.get_opt(name).await?;
    if let Some(s) = &existing
        && !secret::owned_by(s, tenant)
    {
        if !secret::adoptable(s, tenant) {
            return Err(Error::Conflict(format!(
                "Secret {name} exists and is not owned by this Tenant"
            )));
        }
        // Written below with this Tenant as its owner.
        ctx.event(
            tenant,
            EventType::Normal,
            "SecretAdopted",
            "Provision",
            format!("adopted the orphaned credentials Secret {name} (its password is kept)"),
        )
        .await;
    }
    // A renamed Secret (spec.credentials.secretName changed): until the new one is written, the
    // credentials come from the old one, so applications using it keep working — no new
    // password, no cut-off of the active login.
    let renamed_from = match (
        &existing,
        status_secret_name(tenant).filter(|old| *old != name.as_str()),
    ) {
        (None, Some(old)) => secrets
            .get_opt(old)
            .await?
            .filter(|s| secret::owned_by(s, tenant)),
        _ => None,
    };
    let mut state = SecretState {
        existing,
        renamed_from,
        password: None,
        candidate: String::new(),
        active: Slot::Primary,
        reported: None,
    };
    // No Secret, after one was written (a status names the active user): the bookkeeping comes
    // from the Tenant's status, read fresh like the Secret would be (the cached Tenant can lag
    // behind the rotation this process just reported).
    if state.source().is_none()
        && tenant
            .status
            .as_ref()
            .is_some_and(|s| s.credentials.is_some())
    {
        let tenants: Api<Tenant> = Api::namespaced(ctx.client().clone(), &spec.namespace);
        state.reported = tenants
            .get_opt(&tenant.name_any())
            .await?
            .and_then(|t| t.status)
            .and_then(|s| s.credentials);
    }
    let source = state.source();
    let password = source
        .and_then(|s| secret::read_key(s, "password"))
        .filter(|p| !p.is_empty());
    let user = source.and_then(|s| secret::read_key(s, "username"));
    state.active = Slot::of_user(&spec.resolved.names, user.as_deref());
    state.candidate = password
        .clone()
        .unwrap_or_else(crate::scram::generate_password);
    state.password = password;
    Ok(state)
}

/// The credentials after the rotation decision (stage `rotate`).
pub(super) struct Creds {
    /// The Secret as read.
    pub(super) secret: SecretState,
    /// The active slot (moved by a rotation).
    pub(super) active: Slot,
    /// The active slot's password (new after a rotation or when the Secret had none).
    pub(super) password: String,
    /// End of the other slot's grace period, if one runs.
    pub(super) previous_valid_until: Option<Timestamp>,
    /// Why a rotation happens now, if it does.
    pub(super) trigger: Option<rotation::Trigger>,
    /// Credentials status to report.
    pub(super) status: crate::crd::CredentialStatus,
    /// The catalog state, observed with [`Creds::password`].
    pub(super) observed: crate::pg::plan::Observed,
}

/// Stage `rotate`: on demand (annotation), periodic (`rotateAfter`), or the Secret deleted. The
/// bookkeeping lives on the Secret (with the Secret deleted, on the Tenant's status), both read
/// fresh from the API, never from a possibly stale cache, so a rotation is never repeated for the
/// same request. Observes again when the password changed.
pub(super) async fn rotate(
    tenant: &Tenant,
    spec: &Spec,
    secret: SecretState,
    observed: crate::pg::plan::Observed,
) -> Result<Creds> {
    let now = Timestamp::now();
    let names = &spec.resolved.names;
    let status = tenant.status.clone().unwrap_or_default();
    let source = secret.source();
    // Without a Secret (deleted), the last bookkeeping reported in status (read fresh) stands in:
    // else a handled rotate annotation would rotate again once the Secret is written back.
    // (`reported` is only read when there is no Secret.)
    let mut cred_status = secret
        .reported
        .clone()
        .or_else(|| status.credentials.clone())
        .unwrap_or_default();
    if let Some(source) = source {
        cred_status.rotation_token = secret::annotation(source, secret::ROTATION_TOKEN_ANNOTATION);
        cred_status.rotated_at = secret::annotation(source, secret::ROTATED_AT_ANNOTATION);
    }
    let annotation = tenant
        .annotations()
        .get(rotation::ROTATE_ANNOTATION)
        .map(String::as_str);
    let last_rotation = cred_status
        .rotated_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| tenant.meta().creation_timestamp.as_ref().map(|t| t.0));
    let Decision {
        trigger,
        active,
        previous_valid_until,
        status: new_status,
    } = decide(&Decide {
        now,
        names,
        reported: &cred_status,
        annotation,
        rotate_after: spec.rotate_after,
        grace: spec.grace,
        last_rotation,
        secret_found: source.is_some(),
        has_password: secret.password.is_some(),
        secret_active: secret.active,
        observed: &observed,
    });
    // A rotation: a new password, to compare with the active slot's verifier (observe again).
    let (password, observed) = if trigger.is_some() {
        let password = crate::scram::generate_password();
        let observed = spec.server.pg().observe(names, &password).await?;
        (password, observed)
    } else {
        (secret.candidate.clone(), observed)
    };
    Ok(Creds {
        secret,
        active,
        password,
        previous_valid_until,
        trigger,
        status: new_status,
        observed,
    })
}

/// Inputs of [`decide`].
struct Decide<'a> {
    now: Timestamp,
    names: &'a crate::naming::TenantNames,
    /// The rotation bookkeeping: the Secret's (or, with the Secret deleted, the status's).
    reported: &'a crate::crd::CredentialStatus,
    /// The `tenantdb.io/rotate` annotation.
    annotation: Option<&'a str>,
    rotate_after: Option<std::time::Duration>,
    grace: std::time::Duration,
    last_rotation: Option<Timestamp>,
    /// A Secret (or the old one of a renamed `secretName`) exists.
    secret_found: bool,
    /// It holds a password.
    has_password: bool,
    /// The slot it names.
    secret_active: Slot,
    observed: &'a crate::pg::plan::Observed,
}

/// What [`decide`] decided.
struct Decision {
    trigger: Option<rotation::Trigger>,
    active: Slot,
    previous_valid_until: Option<Timestamp>,
    status: crate::crd::CredentialStatus,
}

/// The rotation decision (pure): whether to rotate now and why, the active slot, the end of the
/// other slot's grace period and the credentials status to report.
fn decide(i: &Decide<'_>) -> Decision {
    let (now, names, observed) = (i.now, i.names, i.observed);
    let trigger = rotation::should_rotate(
        &rotation::RotationInput {
            annotation: i.annotation,
            handled_token: i.reported.rotation_token.as_deref(),
            rotate_after: i.rotate_after,
            last_rotation: i.last_rotation,
            has_password: i.has_password && observed.role.is_some(),
        },
        now,
    );
    let mut active = i.secret_active;
    // A deleted Secret names no slot: the one reported active is the one to move away from.
    let deleted = secret_deleted(i.secret_found, observed, i.reported, names, now);
    let trigger = match (trigger, deleted) {
        (None, Some(slot)) => {
            active = slot;
            Some(rotation::Trigger::SecretDeleted)
        }
        (t, _) => t,
    };
    let mut previous_valid_until = observed
        .slot(active.other())
        .and_then(|r| rotation::running_grace(r.can_login, r.valid_until, now));
    let mut status = i.reported.clone();
    if let Some(t) = &trigger {
        let old = active;
        active = rotation::next_slot(active);
        previous_valid_until = match t {
            // A retry (a later stage failed before the Secret and status were written): the
            // grace period already given to the old slot stands, it is not extended.
            rotation::Trigger::SecretDeleted => observed
                .slot(old)
                .and_then(|r| rotation::running_grace(r.can_login, r.valid_until, now)),
            _ => None,
        }
        .or_else(|| rotation::grace_end(now, i.grace));
        status.rotated_at = Some(now.to_string());
        status.previous_user = Some(old.role(names).as_str().to_string());
        status.previous_valid_until = previous_valid_until.map(|t| t.to_string());
        match t {
            rotation::Trigger::OnDemand(token) => status.rotation_token = Some(token.clone()),
            // A rotate request made together with the deletion is carried out by this rotation:
            // handled, not carried out once more (which would cut off the deleted Secret's
            // holders before the end of their grace period).
            rotation::Trigger::SecretDeleted => {
                if let Some(a) = i
                    .annotation
                    .filter(|a| !a.is_empty() && Some(*a) != i.reported.rotation_token.as_deref())
                {
                    status.rotation_token = Some(a.to_string());
                }
            }
            rotation::Trigger::Periodic => {}
        }
        info!(from = old.role(names).as_str(), to = active.role(names).as_str(), trigger = ?t, "rotating credentials");
    }
    if previous_valid_until.is_none() {
        status.previous_user = None;
        status.previous_valid_until = None;
    }
    status.active_user = active.role(names).as_str().to_string();
    Decision {
        trigger,
        active,
        previous_valid_until,
        status,
    }
}

/// [`rotation::Trigger::SecretDeleted`]: no Secret (nor the old one of a renamed `secretName`),
/// while the login role the status reports active exists and may log in — someone may still hold
/// its password. Returns that slot.
///
/// The status can lag behind the Secret: if the Secret of a rotation A → B was written but the
/// status write after it failed, a deletion before the next successful reconcile moves from A
/// (as reported) to B, giving B a new password. A narrow window (one failed status write), left.
fn secret_deleted(
    secret_found: bool,
    observed: &crate::pg::plan::Observed,
    reported: &crate::crd::CredentialStatus,
    names: &crate::naming::TenantNames,
    now: Timestamp,
) -> Option<Slot> {
    if secret_found {
        return None;
    }
    let slot = [Slot::Primary, Slot::Secondary]
        .into_iter()
        .find(|s| s.role(names).as_str() == reported.active_user)?;
    // A role whose `VALID UNTIL` has passed (a retry after the grace period it was given ended)
    // has nobody left to protect.
    observed
        .slot(slot)
        .is_some_and(|r| r.can_login && r.valid_until.is_none_or(|t| t > now))
        .then_some(slot)
}

/// Stage `secret`: writes the credentials Secret (after the roles: if anything before failed, the
/// next attempt reuses the same password) with server-side apply, unless it is up to date, and
/// removes the old Secret of a renamed `secretName` if this Tenant owns it.
pub(super) async fn write_secret(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
    creds: &Creds,
    mongo: Option<&super::mongo::MongoResult>,
) -> Result<()> {
    let names = &spec.resolved.names;
    let secrets: Api<Secret> = Api::namespaced(ctx.client().clone(), &spec.namespace);
    let active_user = creds.active.role(names);
    let mut data =
        secret::secret_data(names, &endpoint(&spec.server), active_user, &creds.password);
    if let Some(m) = mongo {
        data.extend(m.secret_data.clone());
    }
    if names.rls {
        // Applications write this value into `tenant_id` (row-level security checks it).
        data.insert(
            "tenantId".to_string(),
            crate::pg::shared::tenant_id(&spec.namespace, &tenant.name_any()),
        );
    }
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(t) = &creds.status.rotation_token {
        annotations.insert(secret::ROTATION_TOKEN_ANNOTATION.to_string(), t.clone());
    }
    if let Some(t) = &creds.status.rotated_at {
        annotations.insert(secret::ROTATED_AT_ANNOTATION.to_string(), t.clone());
    }
    let want = secret::desired_secret(tenant, &spec.resolved.secret_name, &data, annotations);
    let up_to_date = creds
        .secret
        .existing
        .as_ref()
        .is_some_and(|s| secret::is_up_to_date(s, &want));
    if !up_to_date {
        secrets
            .patch(
                &spec.resolved.secret_name,
                &PatchParams::apply(&ctx.settings().field_manager).force(),
                &Patch::Apply(&want),
            )
            .await?;
        info!(secret = %spec.resolved.secret_name, user = active_user.as_str(), "credentials secret written");
    }
    // A renamed Secret: remove the old one if we own it.
    if let Some(old) = status_secret_name(tenant)
        && old != spec.resolved.secret_name
        && let Some(old_secret) = secrets.get_opt(old).await?
        && secret::owned_by(&old_secret, tenant)
    {
        secrets.delete(old, &DeleteParams::default()).await?;
    }
    Ok(())
}

/// The host and port written to the Secret: the server's tenant endpoint.
pub(super) fn endpoint(server: &crate::servers::Server) -> Endpoint {
    let (host, port) = server.tenant_endpoint().clone();
    Endpoint { host, port }
}

/// The credentials Secret the Tenant's status names (the one last written).
pub(super) fn status_secret_name(tenant: &Tenant) -> Option<&str> {
    tenant
        .status
        .as_ref()
        .and_then(|s| s.secret_name.as_deref())
}

pub(super) fn is_rotation_step(s: &Step) -> bool {
    matches!(
        s,
        Step::CreateSecondary
            | Step::GrantMembership
            | Step::EnableLogin(_)
            | Step::ExpireLogin(_)
            | Step::DisableLogin(_)
            | Step::SetPassword(Slot::Secondary)
    ) || matches!(s, Step::SetRoleSetting(Slot::Secondary, "role", _))
        || matches!(s, Step::SetSearchPath(Slot::Secondary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CredentialStatus, Isolation};
    use crate::pg::plan::{Observed, ObservedRole};

    fn names() -> crate::naming::TenantNames {
        let shared = crate::naming::Ident::new("tenantdb_shared").unwrap();
        crate::naming::tenant_names("tenant_", "ns", "acme", Isolation::Schema, None, &shared)
            .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn login(valid_until: Option<&str>) -> Option<ObservedRole> {
        Some(ObservedRole {
            can_login: true,
            valid_until: valid_until.map(ts),
            ..Default::default()
        })
    }

    /// The Secret deleted while `reported` names the active role (1 h grace period, no
    /// `rotateAfter`).
    fn without_secret<'a>(
        names: &'a crate::naming::TenantNames,
        reported: &'a CredentialStatus,
        observed: &'a Observed,
        annotation: Option<&'a str>,
    ) -> Decide<'a> {
        Decide {
            now: ts("2026-01-01T00:00:00Z"),
            names,
            reported,
            annotation,
            rotate_after: None,
            grace: std::time::Duration::from_secs(3600),
            last_rotation: None,
            secret_found: false,
            has_password: false,
            secret_active: Slot::Primary,
            observed,
        }
    }

    fn deleted(
        names: &crate::naming::TenantNames,
        reported: &CredentialStatus,
        observed: &Observed,
        annotation: Option<&str>,
    ) -> Decision {
        decide(&without_secret(names, reported, observed, annotation))
    }

    #[test]
    fn a_deleted_secret_moves_away_from_the_reported_role_with_a_grace_period() {
        let n = names();
        let b = n.secondary_role.as_str().to_string();
        // Active: the secondary role (after one rotation); the primary's grace period is over.
        let reported = CredentialStatus {
            active_user: b.clone(),
            rotation_token: Some("once".into()),
            ..Default::default()
        };
        let observed = Observed {
            role: Some(ObservedRole::default()),
            secondary: login(None),
            ..Default::default()
        };
        let d = deleted(&n, &reported, &observed, Some("once"));
        assert_eq!(d.trigger, Some(rotation::Trigger::SecretDeleted));
        assert_eq!(d.active, Slot::Primary);
        assert_eq!(d.previous_valid_until, Some(ts("2026-01-01T01:00:00Z")));
        assert_eq!(d.status.previous_user.as_deref(), Some(b.as_str()));
        assert_eq!(d.status.rotation_token.as_deref(), Some("once"), "kept");
        // A rotate request made with the deletion is handled by it (not carried out again).
        let d = deleted(&n, &reported, &observed, Some("twice"));
        assert_eq!(d.trigger, Some(rotation::Trigger::SecretDeleted));
        assert_eq!(d.status.rotation_token.as_deref(), Some("twice"));
        // A retry after a failed later stage: the grace period given then is not extended.
        let retried = Observed {
            secondary: login(Some("2026-01-01T00:30:00Z")),
            ..observed.clone()
        };
        let d = deleted(&n, &reported, &retried, None);
        assert_eq!(d.previous_valid_until, Some(ts("2026-01-01T00:30:00Z")));
        // No role may log in, or no status names one (first provisioning): no rotation.
        let none = Observed {
            secondary: Some(ObservedRole::default()),
            ..observed.clone()
        };
        assert_eq!(deleted(&n, &reported, &none, None).trigger, None);
        let fresh = CredentialStatus::default();
        assert_eq!(deleted(&n, &fresh, &observed, None).trigger, None);
        // A retry after the grace period given then has ended: nobody left to protect.
        let ended = Observed {
            secondary: login(Some("2025-12-31T23:00:00Z")),
            ..observed.clone()
        };
        assert_eq!(deleted(&n, &reported, &ended, None).trigger, None);
        // A Secret that exists (without a password): no rotation, its slot stays active.
        let d = decide(&Decide {
            secret_found: true,
            secret_active: Slot::Secondary,
            ..without_secret(&n, &reported, &observed, None)
        });
        assert_eq!((d.trigger, d.active), (None, Slot::Secondary));
    }
}
