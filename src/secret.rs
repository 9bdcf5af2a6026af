//! The credentials Secret: pure construction of its desired content.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::ObjectMeta;

use crate::crd::Tenant;
use crate::naming::{Ident, TenantNames};

/// Label put on every Secret the operator manages (the Secret watch is filtered by it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "tenantdb";
/// Secret annotation: the `tenantdb.io/rotate` value the current password was rotated for.
pub const ROTATION_TOKEN_ANNOTATION: &str = "tenantdb.io/rotation-token";
/// Secret annotation: when the current password was set by a rotation (RFC 3339).
pub const ROTATED_AT_ANNOTATION: &str = "tenantdb.io/rotated-at";

/// Label naming the owning Tenant: its name, or for a name longer than a label value may be (63
/// characters; Tenant names may have 253) [`tenant_label_value`]'s hash form, with the full name
/// in the [`TENANT_ANNOTATION`].
pub const TENANT_LABEL: &str = "tenantdb.io/tenant";
/// Annotation holding the owning Tenant's full name (always written).
pub const TENANT_ANNOTATION: &str = "tenantdb.io/tenant";

/// Longest label value Kubernetes accepts.
pub const MAX_LABEL_VALUE: usize = 63;

/// The value of [`TENANT_LABEL`] for a Tenant name: the name itself when it fits a label value,
/// else `h-<first 40 characters>-<16 hex of SHA-256(name)>` (valid label syntax: the name is a
/// DNS-1123 subdomain, so its characters are allowed; the cut never ends on `-` or `.`).
pub fn tenant_label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL_VALUE {
        return name.to_string();
    }
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let head = name[..40].trim_end_matches(['-', '.']);
    format!("h-{head}-{hash}")
}

/// Connection endpoint written to the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name clients use.
    pub host: String,
    /// Port clients use.
    pub port: u16,
}

/// Percent-encodes a URI component (RFC 3986 unreserved characters pass through).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Secret's `data` (plain strings; the API encodes them).
pub fn secret_data(
    names: &TenantNames,
    endpoint: &Endpoint,
    user: &Ident,
    password: &str,
) -> BTreeMap<String, String> {
    let user = user.as_str();
    let db = names.database.as_str();
    let uri = format!(
        "postgresql://{}:{}@{}:{}/{}",
        pct(user),
        pct(password),
        endpoint.host,
        endpoint.port,
        pct(db)
    );
    BTreeMap::from([
        ("host".to_string(), endpoint.host.clone()),
        ("port".to_string(), endpoint.port.to_string()),
        ("database".to_string(), db.to_string()),
        ("schema".to_string(), names.schema.as_str().to_string()),
        ("username".to_string(), user.to_string()),
        ("password".to_string(), password.to_string()),
        ("uri".to_string(), uri),
    ])
}

/// The full desired Secret, owned by the Tenant (so it is garbage-collected with it).
pub fn desired_secret(
    tenant: &Tenant,
    secret_name: &str,
    data: &BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    let owner = tenant.controller_owner_ref(&());
    let name = tenant.meta().name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (TENANT_LABEL.to_string(), tenant_label_value(&name)),
    ]);
    let mut annotations = annotations;
    annotations.insert(TENANT_ANNOTATION.to_string(), name);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_string()),
            namespace: tenant.meta().namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Reads a key of a Secret as UTF-8.
pub fn read_key(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
        })
}

/// Whether the existing Secret already has exactly the desired data, labels and owner.
pub fn is_up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let labels_ok = desired
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| existing.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let owner_ok = desired.metadata.owner_references.iter().flatten().all(|o| {
        existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|e| e.uid == o.uid && e.controller == Some(true))
    });
    let annotations_ok = desired.metadata.annotations.iter().flatten().all(|(k, v)| {
        existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            == Some(v)
    });
    labels_ok && owner_ok && annotations_ok && existing.data == desired.data
}

/// An annotation of the Secret.
pub fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
}

/// Whether the Secret is controlled by the given Tenant (so the operator may manage it).
pub fn owned_by(secret: &Secret, tenant: &Tenant) -> bool {
    let uid = tenant.meta().uid.as_deref();
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid && o.kind == "Tenant")
}

/// Whether an existing Secret of this name may be adopted by the Tenant: it was written by
/// tenantdb for a Tenant of this name (labels) and no one controls it now — the Secret a
/// `Retain` Tenant deleted with `--cascade=orphan` left behind. Adopting it keeps the applications'
/// credentials (and, with the retained role, the password) working across the re-creation. A
/// Secret someone else made, or one another object controls, is never taken over. (Writing such
/// labels needs Secret write access in the namespace, which can change the tenant's Secret anyway.)
pub fn adoptable(secret: &Secret, tenant: &Tenant) -> bool {
    let labels = secret.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let controlled = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true));
    !controlled
        && secret.metadata.deletion_timestamp.is_none()
        && label(MANAGED_BY_LABEL) == Some(MANAGED_BY)
        && tenant.meta().name.as_deref().is_some_and(|name| {
            label(TENANT_LABEL) == Some(tenant_label_value(name).as_str())
                // Secrets written before the annotation existed carry only the label.
                && annotation(secret, TENANT_ANNOTATION).is_none_or(|a| a == name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Isolation;
    use crate::naming::tenant_names;

    #[test]
    fn data_has_all_keys_and_a_valid_uri() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let names =
            tenant_names("tenant_", "ns", "acme", Isolation::Schema, None, &shared).unwrap();
        let ep = Endpoint {
            host: "pg.db.svc".into(),
            port: 5432,
        };
        let d = secret_data(&names, &ep, &names.role, "abc123");
        for k in [
            "host", "port", "database", "schema", "username", "password", "uri",
        ] {
            assert!(d.contains_key(k), "{k}");
        }
        assert_eq!(
            d["uri"],
            format!(
                "postgresql://{}:abc123@pg.db.svc:5432/tenantdb_shared",
                names.role.as_str()
            )
        );
        assert_eq!(d["schema"], names.schema.as_str());
    }

    #[test]
    fn only_orphaned_tenantdb_secrets_of_the_same_tenant_are_adoptable() {
        let tenant: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme", "namespace": "ns", "uid": "u-new"},
            "spec": {"isolation": "schema"},
        }))
        .unwrap();
        let mut old_owner = tenant.clone();
        old_owner.metadata.uid = Some("u-old".into());
        let written = desired_secret(&old_owner, "acme-db", &BTreeMap::new(), BTreeMap::new());
        assert!(!owned_by(&written, &tenant));
        // Still controlled by the old Tenant (background deletion under way): not adoptable.
        assert!(!adoptable(&written, &tenant));
        let mut orphaned = written.clone();
        orphaned.metadata.owner_references = None;
        assert!(adoptable(&orphaned, &tenant));
        // After adoption it is owned by the new Tenant.
        let adopted = desired_secret(&tenant, "acme-db", &BTreeMap::new(), BTreeMap::new());
        assert!(owned_by(&adopted, &tenant));
        // Another Tenant's Secret, someone else's Secret, one being deleted: never.
        let mut other = tenant.clone();
        other.metadata.name = Some("globex".into());
        assert!(!adoptable(&orphaned, &other));
        let mut foreign = orphaned.clone();
        foreign.metadata.labels = None;
        assert!(!adoptable(&foreign, &tenant));
        let mut going = orphaned.clone();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(!adoptable(&going, &tenant));
    }

    #[test]
    fn long_tenant_names_get_a_valid_label_and_the_full_name_in_an_annotation() {
        let long = format!("{}.{}", "a".repeat(120), "b-c".repeat(40));
        assert!(long.len() > 63 && long.len() <= 253);
        for name in ["acme", &"x".repeat(63), &"x".repeat(64), long.as_str()] {
            let v = tenant_label_value(name);
            assert!(v.len() <= MAX_LABEL_VALUE, "{v}");
            let first = v.chars().next().unwrap();
            let last = v.chars().last().unwrap();
            assert!(
                first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric(),
                "{v}"
            );
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
                "{v}"
            );
            if name.len() <= 63 {
                assert_eq!(v, name);
            }
        }
        assert_ne!(
            tenant_label_value(&format!("{}1", "a".repeat(70))),
            tenant_label_value(&format!("{}2", "a".repeat(70))),
            "different long names, different labels"
        );
        let tenant: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": long, "namespace": "ns", "uid": "u"},
            "spec": {"isolation": "schema"},
        }))
        .unwrap();
        let s = desired_secret(&tenant, "s", &BTreeMap::new(), BTreeMap::new());
        assert_eq!(
            annotation(&s, TENANT_ANNOTATION).as_deref(),
            Some(long.as_str())
        );
        let mut orphaned = s.clone();
        orphaned.metadata.owner_references = None;
        assert!(adoptable(&orphaned, &tenant));
    }

    #[test]
    fn uri_components_are_percent_encoded() {
        assert_eq!(pct("a b@c"), "a%20b%40c");
    }
}
