//! `rotate TENANT`: requests a credential rotation the way the operator expects it — a new value of
//! the Tenant's `tenantdb.io/rotate` annotation ([`tenantdb::rotation::ROTATE_ANNOTATION`]) — and
//! says what will happen; `--wait` waits until the operator reports the rotation in
//! `status.credentials.rotationToken`.

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use tenantdb::crd::Tenant;
use tenantdb::naming::{Ident, secondary_of};
use tenantdb::rotation::ROTATE_ANNOTATION;

use crate::cluster::{Kube, opt_str, secret_name, str_at};
use crate::error::{Context, Error, Result};

/// A fresh annotation value: the time and a random suffix (any value different from the last one
/// handled triggers exactly one rotation).
pub fn new_token(now: jiff::Timestamp) -> String {
    format!(
        "kubectl-tenantdb-{}-{}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        Alphanumeric
            .sample_string(&mut rand::rng(), 6)
            .to_lowercase()
    )
}

/// The login role a rotation moves to: the other one of `<role>` / `<role>_b`.
fn next_role(t: &Value) -> Option<String> {
    let role = opt_str(t, "/status/role")?;
    let active = opt_str(t, "/status/credentials/activeUser").unwrap_or_else(|| role.clone());
    if active == role {
        let primary = Ident::existing(&role).ok()?;
        secondary_of(&primary).ok().map(|i| i.as_str().to_string())
    } else {
        Some(role)
    }
}

/// What the rotation will do, for the user.
pub fn explain(t: &Value, token: &str) -> String {
    let ns = str_at(t, "/metadata/namespace");
    let name = str_at(t, "/metadata/name");
    let grace =
        opt_str(t, "/spec/credentials/gracePeriod").unwrap_or_else(|| "1h (default)".to_string());
    let active = opt_str(t, "/status/credentials/activeUser")
        .or_else(|| opt_str(t, "/status/role"))
        .unwrap_or_else(|| "-".to_string());
    let next = next_role(t).unwrap_or_else(|| "the other login role".to_string());
    let mut out = format!(
        "Requested a credential rotation of Tenant {ns}/{name} ({ROTATE_ANNOTATION}={token}).\n\
         The operator will:\n  \
         - set a new random password on login role {next} and make it the active role,\n  \
         - write it to Secret {ns}/{secret} (keys username, password, uri),\n  \
         - keep the current credentials (role {active}) working for the grace period {grace}; \
         connections already open keep running,\n  \
         - report it in status.credentials (rotatedAt, rotationToken={token}).\n\
         Applications must re-read the Secret within the grace period.\n",
        secret = secret_name(t),
    );
    let phase = opt_str(t, "/status/phase").unwrap_or_else(|| "Pending".to_string());
    if phase != "Ready" {
        out.push_str(&format!(
            "Note: the Tenant is {phase}, not Ready: the rotation happens once it has credentials.\n"
        ));
    }
    out
}

/// Annotates the Tenant; with `wait`, polls its status until the rotation is reported.
pub async fn run(kube: &Kube, name: &str, wait: Option<Duration>) -> Result<String> {
    let tenant = kube.tenant(name).await?;
    let token = new_token(jiff::Timestamp::now());
    let api: Api<DynamicObject> = Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &ApiResource::erase::<Tenant>(&()),
    );
    let patch = json!({"metadata": {"annotations": {ROTATE_ANNOTATION: token}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| {
            format!(
                "annotating Tenant {}/{name} with {ROTATE_ANNOTATION}",
                kube.namespace
            )
        })?;
    let mut out = explain(&tenant, &token);
    let Some(timeout) = wait else {
        out.push_str(&format!(
            "Follow it with: kubectl tenantdb status {name} -n {}\n",
            kube.namespace
        ));
        return Ok(out);
    };
    let deadline = Instant::now() + timeout;
    loop {
        let t = kube.tenant(name).await?;
        if opt_str(&t, "/status/credentials/rotationToken").as_deref() == Some(token.as_str()) {
            out.push_str(&format!(
                "Rotated at {}: active role {}{}.\n",
                opt_str(&t, "/status/credentials/rotatedAt").unwrap_or_else(|| "-".into()),
                opt_str(&t, "/status/credentials/activeUser").unwrap_or_else(|| "-".into()),
                match (
                    opt_str(&t, "/status/credentials/previousUser"),
                    opt_str(&t, "/status/credentials/previousValidUntil"),
                ) {
                    (Some(p), Some(u)) => format!(", previous role {p} valid until {u}"),
                    _ => String::new(),
                }
            ));
            return Ok(out);
        }
        if Instant::now() > deadline {
            return Err(Error::msg(format!(
                "{out}the operator has not reported the rotation within {timeout:?} \
                 (status.credentials.rotationToken is not {token})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_role_alternates_between_the_two_slots() {
        let t = |active: &str| json!({"status": {"role": "tn_a", "credentials": {"activeUser": active}}});
        assert_eq!(next_role(&t("tn_a")).as_deref(), Some("tn_a_b"));
        assert_eq!(next_role(&t("tn_a_b")).as_deref(), Some("tn_a"));
        assert_eq!(next_role(&json!({})), None);
    }

    #[test]
    fn tokens_differ_and_the_explanation_names_the_annotation() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        assert_ne!(new_token(now), new_token(now));
        let t = json!({"metadata": {"namespace": "a", "name": "crm"},
                       "spec": {"credentials": {"gracePeriod": "10min"}},
                       "status": {"phase": "Ready", "role": "r", "secretName": "crm-db"}});
        let text = explain(&t, "tok");
        assert!(text.contains("tenantdb.io/rotate=tok"), "{text}");
        assert!(
            text.contains("role r_b") && text.contains("(role r)"),
            "{text}"
        );
        assert!(
            text.contains("grace period 10min") && text.contains("Secret a/crm-db"),
            "{text}"
        );
        assert!(!text.contains("not Ready"), "{text}");
    }
}
