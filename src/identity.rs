//! A Tenant's identity in the databases: its names (derived or explicit), its credentials Secret's
//! name and its advisory-lock key. Pure; shared by the Tenant and TenantMigration controllers (and
//! tools such as the benchmark driver).

use kube::ResourceExt;

use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames, tenant_names};

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
    let names = tenant_names(
        prefix,
        &namespace,
        &name,
        tenant.spec.isolation,
        tenant.spec.database_name.as_deref(),
        shared_database,
    )?;
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
    fn lock_keys_differ_per_tenant() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let a = resolve(&tenant("a", Isolation::Schema, None), "tenant_", &shared).unwrap();
        let b = resolve(&tenant("b", Isolation::Schema, None), "tenant_", &shared).unwrap();
        assert_ne!(lock_key(&a.names), lock_key(&b.names));
    }
}
