//! Isolation mode `shared`: every tenant's rows live in one schema of the shared database, and
//! PostgreSQL row-level security keeps tenants apart.
//!
//! The design (see `docs/shared-isolation.md` for the reasoning and the threat model):
//!
//! - one schema ([`SharedLayout::schema`], default `tenantdb_rls`) owned by a `NOLOGIN` owner role
//!   ([`SharedLayout::owner`]); the migration set is applied **once**, as the owner;
//! - a `NOLOGIN` group role ([`SharedLayout::tenants`]) holds every tenant privilege: `USAGE` on the
//!   schema, `SELECT, INSERT, UPDATE, DELETE` on the tenant-scoped tables (not on partitions),
//!   `USAGE` on sequences and `EXECUTE` on [`CURRENT_TENANT_FUNCTION`]. A tenant's primary role is
//!   made a member of it ([`register_tenant`]); its rotation role inherits through the primary;
//! - the mapping table [`MAPPING_TABLE`] (`role_name → tenant_id`, no privileges for tenants)
//!   maps **login** roles to tenant ids; the `SECURITY DEFINER` function
//!   [`CURRENT_TENANT_FUNCTION`] returns the tenant id of `session_user`. `session_user` is the
//!   authenticated role: `SET ROLE`, `SECURITY DEFINER` code and views cannot change it, and
//!   `SET SESSION AUTHORIZATION` needs a superuser login. No client-settable setting is involved;
//! - every table with a `tenant_id` column (and `saas_tenants`, keyed by `id`), partitions
//!   included, has `ENABLE` + `FORCE ROW LEVEL SECURITY` and the policies
//!   [`POLICY_TENANT`] (`key = tenant of session_user`, for reads and writes),
//!   [`POLICY_OPERATOR`] (sessions logged in as a member of the owner role, i.e. the operator:
//!   migrations and deletion see every row) and, on [`GLOBAL_READ_TABLES`], [`POLICY_GLOBAL_READ`]
//!   (rows with a `NULL` tenant id are readable, never writable). Tables are discovered from the
//!   catalog by [`ensure_policies`], so tables added by later migrations are covered.
//!
//! All functions are idempotent and check the catalog first: when everything is in place they issue
//! no DDL. Identifiers are [`Ident`](crate::naming::Ident)s or catalog names validated by
//! [`crate::migrate::quote_identifier`], always double-quoted; values are bound as parameters.
//!
//! Modules, dependencies pointing one way (each uses only those listed before it):
//!
//! - `layout`: [`SharedLayout`], the fixed object names, [`tenant_id`] (pure);
//! - `sql`: the SQL text: catalog queries, the function definition, mapping-table statements
//!   (pure);
//! - `plan`: catalog snapshot types and the statements they call for: bootstrap, policies and
//!   privileges, row deletion (pure);
//! - `observe`: catalog reads, [`observe_tenant`];
//! - `apply`: [`ensure_layout`], [`ensure_policies`], [`register_tenant`];
//! - `cleanup`: [`unregister_tenant`], [`delete_tenant_rows`];
//! - `usage`: [`tenant_storage_bytes`], [`estimate_share`] (uses only `layout` and `sql`);
//! - [`replication`]: a moving tenant's row-filtered publication and row counts (uses only
//!   `layout` and `sql`).

mod apply;
mod cleanup;
mod layout;
mod observe;
mod plan;
pub mod replication;
mod sql;
mod usage;

pub use apply::{ensure_layout, ensure_policies, register_tenant};
pub use cleanup::{delete_tenant_rows, unregister_tenant};
pub use layout::{
    CURRENT_TENANT_FUNCTION, DEFAULT_SCHEMA, GLOBAL_READ_TABLES, MAPPING_TABLE, POLICY_GLOBAL_READ,
    POLICY_OPERATOR, POLICY_REFS_INSERT, POLICY_REFS_UPDATE, POLICY_TENANT, SharedLayout,
    tenant_id,
};
pub use observe::observe_tenant;
pub use usage::{TableShare, estimate_share, tenant_storage_bytes};

// For `pg::quoting_tests`, which renders every statement that needs no database.
#[cfg(test)]
pub(in crate::pg) use plan::{PolicyCatalog, Stmt, policy_statements};
#[cfg(test)]
pub(in crate::pg) use sql::{
    current_tenant_function_sql, deletion_catalog_sql, foreign_acl_sql, policy_catalog_sql,
    usage_catalog_sql,
};
