//! Names and identities of the `shared` layout: where shared tenants live ([`SharedLayout`]: the
//! schema, its owner role and the tenants' group role), the fixed names of the objects the layout
//! creates (mapping table, [`CURRENT_TENANT_FUNCTION`], policies), and tenant ids ([`tenant_id`]).
//! Pure; the leaf every other `shared` module builds on.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::migrate::MigrationTarget;
use crate::naming::{Ident, quote_literal};

/// Default name of the schema holding the shared tenants' tables.
pub const DEFAULT_SCHEMA: &str = "tenantdb_rls";

/// Table mapping login roles to tenant ids (in the layout schema, owned by the owner role, no
/// privileges for anyone else).
pub const MAPPING_TABLE: &str = "tenantdb_tenant_roles";

/// `SECURITY DEFINER` function returning the tenant id of `session_user` (or `NULL`).
pub const CURRENT_TENANT_FUNCTION: &str = "tenantdb_current_tenant";

/// Policy restricting reads and writes to the session's tenant.
pub const POLICY_TENANT: &str = "tenantdb_tenant_isolation";

/// Policy giving operator sessions (logged in as a member of the owner role) every row.
pub const POLICY_OPERATOR: &str = "tenantdb_operator_access";

/// Policy making global rows (`tenant_id IS NULL`) of [`GLOBAL_READ_TABLES`] readable by tenants.
pub const POLICY_GLOBAL_READ: &str = "tenantdb_global_read";

/// Restrictive policies (`INSERT`, `UPDATE`) on tables with foreign keys to other tenant-scoped
/// tables: a referenced row must be visible to the writing session, i.e. belong to its tenant.
/// Without them a tenant could point a foreign key at another tenant's row (foreign-key checks
/// bypass row-level security): an existence oracle, and a `RESTRICT` reference that blocks the
/// other tenant's deletes.
pub const POLICY_REFS_INSERT: &str = "tenantdb_same_tenant_refs_insert";

/// The `UPDATE` counterpart of [`POLICY_REFS_INSERT`].
pub const POLICY_REFS_UPDATE: &str = "tenantdb_same_tenant_refs_update";

/// Tables whose rows with a `NULL` tenant id are global and readable (not writable) by every
/// tenant. Rows with a `NULL` tenant id in any other table are invisible to tenants.
pub const GLOBAL_READ_TABLES: &[&str] = &["saas_unified_configs"];

/// The table keyed by `id` instead of `tenant_id` (the tenant row itself).
pub(super) const TENANT_TABLE: &str = "saas_tenants";

/// Version of the generated objects; part of the markers so that a change of the generated SQL
/// (`sql.rs`, `plan.rs`) is detected as drift and re-applied.
pub(super) const LAYOUT_VERSION: &str = "v1";

/// Where shared tenants live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLayout {
    /// Schema in the shared database holding every shared tenant's tables.
    pub schema: Ident,
    /// `NOLOGIN` role owning the schema and everything in it; migrations run as it.
    pub owner: Ident,
    /// `NOLOGIN` group role holding the tenants' privileges; tenant primary roles are members.
    pub tenants: Ident,
}

impl SharedLayout {
    /// A layout for `schema`, with the roles `<schema>_owner` and `<schema>_tenants`.
    pub fn for_schema(schema: Ident) -> Result<Self> {
        let owner = Ident::new(&format!("{}_owner", schema.as_str()))?;
        let tenants = Ident::new(&format!("{}_tenants", schema.as_str()))?;
        Ok(Self {
            schema,
            owner,
            tenants,
        })
    }

    /// The default layout: schema `tenantdb_rls`, roles `tenantdb_rls_owner` and
    /// `tenantdb_rls_tenants`.
    pub fn defaults() -> Result<Self> {
        Self::for_schema(Ident::new(DEFAULT_SCHEMA)?)
    }

    /// Advisory lock key serializing layout changes and migrations of this schema.
    pub fn lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("tenantdb.io/shared/{}", self.schema.as_str()));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    /// Advisory lock key serializing the moves' publications of this schema with the changes of
    /// its tables' replica identity (`replication`).
    pub fn move_lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("tenantdb.io/shared-move/{}", self.schema.as_str()));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    /// The comment marking the roles and the schema as belonging to this layout.
    pub fn marker(&self) -> String {
        format!("tenantdb.io/shared-layout={}", self.schema.as_str())
    }

    /// Where [`crate::migrate`] keeps this layout's schema and lock.
    pub(super) fn migration_target(&self) -> MigrationTarget<'_> {
        MigrationTarget {
            schema: self.schema.as_str(),
            owner_role: self.owner.as_str(),
            lock_key: self.lock_key(),
        }
    }
}

/// The tenant id of a Tenant in `shared` mode: a UUID-formatted string (36 characters) derived from
/// SHA-256 of the namespace and name (RFC 9562 version 8, "custom", the SHA-256 analogue of the
/// name-based version 5). Deterministic, so a Tenant recreated under the `Retain` deletion policy
/// maps to the rows it left behind.
pub fn tenant_id(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("tenantdb.io/tenant/{namespace}/{name}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Checks a tenant id: 1 to 36 characters out of `[0-9A-Za-z_-]` (ids are bound as values, this
/// only catches mistakes early).
pub(super) fn validate_tenant_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 36
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "invalid shared tenant id {id:?}"
        )))
    }
}

/// `s` as an SQL string literal.
pub(super) fn lit(s: &str) -> Result<String> {
    quote_literal(s).ok_or_else(|| Error::Internal(format!("cannot quote {s:?}")))
}

/// The first 6 bytes of SHA-256 of `s`, in hex: the versioned markers of generated objects.
pub(super) fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses to register (or unregister) the layout's own roles, or the same role twice, as a
/// shared tenant's login roles.
pub(super) fn check_tenant_roles(
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary: &Ident,
) -> Result<()> {
    let reserved = [&layout.owner, &layout.tenants];
    if tenant_role == secondary || reserved.contains(&tenant_role) || reserved.contains(&secondary)
    {
        return Err(Error::InvalidSpec(format!(
            "roles {} / {} cannot be registered as a shared tenant",
            tenant_role.as_str(),
            secondary.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_deterministic_uuids() {
        let a = tenant_id("team-a", "acme");
        assert_eq!(a, tenant_id("team-a", "acme"));
        assert_ne!(a, tenant_id("team-a", "acme2"));
        assert_ne!(tenant_id("a", "b-c"), tenant_id("a-b", "c"));
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "version 8: {a}");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
            "variant: {a}"
        );
        validate_tenant_id(&a).unwrap();
        assert!(validate_tenant_id("").is_err());
        assert!(validate_tenant_id("x'; drop table y; --").is_err());
        assert!(validate_tenant_id(&"a".repeat(37)).is_err());
    }

    #[test]
    fn layout_names() {
        let l = SharedLayout::defaults().unwrap();
        assert_eq!(l.schema.as_str(), "tenantdb_rls");
        assert_eq!(l.owner.as_str(), "tenantdb_rls_owner");
        assert_eq!(l.tenants.as_str(), "tenantdb_rls_tenants");
        assert_ne!(
            l.lock_key(),
            SharedLayout::for_schema(Ident::new("other").unwrap())
                .unwrap()
                .lock_key()
        );
        assert!(SharedLayout::for_schema(Ident::new(&"a".repeat(60)).unwrap()).is_err());
    }
}
