//! A Tenant's identity in the databases: its names (derived or explicit), its credentials Secret's
//! name and its advisory-lock key. Pure; shared by the Tenant and TenantMigration controllers (and
//! tools such as the benchmark driver).

use kube::ResourceExt;

use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::naming::{self, Ident, TenantNames, names_with_base, tenant_names};

/// Everything resolved from a Tenant before touching PostgreSQL.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// PostgreSQL names.
    pub names: TenantNames,
    /// Credentials Secret name.
    pub secret_name: String,
    /// Whether to apply the baseline migrations.
    pub auto_migrate: bool,
}

/// Resolve + validate: pure.
pub fn resolve(tenant: &Tenant, prefix: &str, shared_database: &Ident) -> Result<Resolved> {
    let name = tenant.name_any();
    let namespace = tenant
        .namespace()
        .ok_or_else(|| Error::InvalidSpec("Tenant has no namespace".into()))?;
    naming::validate_prefix(prefix)?;
    let names = match legacy_base(tenant, prefix, &namespace, &name) {
        Some(base) => names_with_base(
            Ident::new(&base)?,
            &namespace,
            &name,
            tenant.spec.isolation,
            shared_database,
        )?,
        None => tenant_names(
            prefix,
            &namespace,
            &name,
            tenant.spec.isolation,
            tenant.spec.database_name.as_deref(),
            shared_database,
        )?,
    };
    if tenant.spec.isolation == crate::crd::Isolation::Database
        && names.database == *shared_database
    {
        return Err(Error::InvalidSpec(format!(
            "databaseName {} is the operator's shared database",
            names.database.as_str()
        )));
    }
    let secret_name = tenant
        .spec
        .credentials
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{name}-db"));
    if secret_name.len() > 253 {
        return Err(Error::InvalidSpec(
            "credentials.secretName is too long".into(),
        ));
    }
    Ok(Resolved {
        names,
        secret_name,
        auto_migrate: tenant.spec.auto_migrate.unwrap_or(true),
    })
}

/// The base name of a Tenant provisioned before cut derived names got a 16-digit hash: kept, so
/// that an upgrade does not move its data to new, empty names. Only when its status already names
/// that role (the status is the operator's own record; a Tenant without one, or with any other
/// name there, gets the current derivation).
fn legacy_base(tenant: &Tenant, prefix: &str, namespace: &str, name: &str) -> Option<String> {
    let recorded = tenant.status.as_ref()?.role.as_deref()?;
    older_derived_name(tenant, prefix, namespace, name).filter(|legacy| legacy == recorded)
}

/// The base name an operator before the 16-digit hash of cut names derived for `tenant`, where it
/// differs from today's ([`naming::legacy_derived_base`]; never for an explicit
/// `spec.databaseName`).
pub(crate) fn older_derived_name(
    tenant: &Tenant,
    prefix: &str,
    namespace: &str,
    name: &str,
) -> Option<String> {
    if tenant.spec.database_name.is_some() {
        return None;
    }
    naming::legacy_derived_base(prefix, namespace, name)
}

/// A stable advisory-lock key for a tenant's schema (used by migrations).
pub fn lock_key(names: &TenantNames) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!(
        "tenantdb:{}/{}",
        names.database.as_str(),
        names.schema.as_str()
    ));
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DeletionPolicy, Isolation, TenantSpec};

    fn tenant(name: &str, isolation: Isolation, db: Option<&str>) -> Tenant {
        let mut t = Tenant::new(
            name,
            TenantSpec {
                isolation,
                deletion_policy: DeletionPolicy::Retain,
                database_name: db.map(String::from),
                credentials: Default::default(),
                auto_migrate: None,
                quotas: None,
                mongodb: None,
                placement: None,
            },
        );
        t.metadata.namespace = Some("team-a".into());
        t
    }

    #[test]
    fn resolve_defaults() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let r = resolve(&tenant("acme", Isolation::Schema, None), "tenant_", &shared).unwrap();
        assert_eq!(r.secret_name, "acme-db");
        assert!(r.auto_migrate);
        assert!(r.names.schema.as_str().starts_with("tenant_team_a_acme_"));
    }

    #[test]
    fn resolve_rejects_hostile_and_reserved_names() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        for bad in [
            "x\"; drop role postgres; --",
            "template1",
            "postgres",
            "Ünïcode",
            &"a".repeat(64),
        ] {
            let e = resolve(
                &tenant("acme", Isolation::Database, Some(bad)),
                "tenant_",
                &shared,
            )
            .unwrap_err();
            assert_eq!(e.category(), "InvalidSpec", "{bad}");
            assert!(e.is_permanent());
        }
        let e = resolve(
            &tenant("acme", Isolation::Database, Some("tenantdb_shared")),
            "tenant_",
            &shared,
        )
        .unwrap_err();
        assert_eq!(e.category(), "InvalidSpec");
    }

    #[test]
    fn a_tenant_keeps_the_cut_name_it_was_provisioned_with() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let long = "a-very-long-tenant-name-for-the-billing-service";
        let resolved = |role: Option<&str>, db: Option<&str>| {
            let mut t = tenant(long, Isolation::Schema, db);
            t.status = role.map(|r| crate::crd::TenantStatus {
                role: Some(r.to_string()),
                ..Default::default()
            });
            resolve(&t, "tenant_", &shared).unwrap().names
        };
        // The name an operator derived before: an 8-digit hash after the cut readable part.
        let legacy = "tenant_team_a_a_very_long_tenant_name_for_the_billin_ea99fe00";
        let current = resolved(None, None);
        assert_eq!(current.role.as_str().len(), 61, "{}", current.role);
        assert!(
            current
                .role
                .as_str()
                .starts_with("tenant_team_a_a_very_long_tenant_name_for_th_"),
            "{}",
            current.role
        );
        assert_ne!(current.role.as_str(), legacy);
        // Recorded in its status: kept, for every name derived from it.
        let kept = resolved(Some(legacy), None);
        assert_eq!(kept.role.as_str(), legacy);
        assert_eq!(kept.schema.as_str(), legacy);
        assert_eq!(kept.secondary_role.as_str(), format!("{legacy}_b"));
        // Any other recorded name (another Tenant's, say) is not taken from the status.
        let other = crate::naming::derived_base("tenant_", "team-a", "other");
        assert_eq!(resolved(Some(&other), None), current);
        assert_eq!(resolved(Some(current.role.as_str()), None), current);
        // An explicit name wins over any status.
        let explicit = resolved(Some(legacy), Some("team_a__billing"));
        assert_eq!(explicit.role.as_str(), "team_a__billing");
        // Names that were not cut are what they were.
        let short = resolve(&tenant("acme", Isolation::Schema, None), "tenant_", &shared).unwrap();
        assert_eq!(short.names.role.as_str(), "tenant_team_a_acme_9201d5e7");
    }

    #[test]
    fn lock_keys_differ_per_tenant() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let a = resolve(&tenant("a", Isolation::Schema, None), "tenant_", &shared).unwrap();
        let b = resolve(&tenant("b", Isolation::Schema, None), "tenant_", &shared).unwrap();
        assert_ne!(lock_key(&a.names), lock_key(&b.names));
    }
}
