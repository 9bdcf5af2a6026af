//! What one Tenant is on MongoDB and what the admin reports about it: the tenant's roles and
//! mechanism, the ownership registry's location, [`MongoTenant`] (database, user, password,
//! owner) and the outcomes of provisioning, ownership checks, cleanup and `dbStats`. Plain data;
//! no I/O.

use std::fmt;

use super::names::{MongoDbName, MongoTenantNames};

/// The role a tenant user gets, on its own database (and nothing else).
pub const TENANT_ROLE: &str = "readWrite";
/// The role a tenant user has instead of [`TENANT_ROLE`] while its storage quota is exceeded.
pub const TENANT_READ_ONLY_ROLE: &str = "read";

/// The role a tenant user should have.
pub fn tenant_role(read_only: bool) -> &'static str {
    if read_only {
        TENANT_READ_ONLY_ROLE
    } else {
        TENANT_ROLE
    }
}
/// The only mechanism a tenant user gets.
pub const TENANT_MECHANISM: &str = "SCRAM-SHA-256";

/// Database of the operator's ownership registry: one document per tenant database (`_id` = the
/// database name, `owner` = the owning Tenant's `tenantdb.io/owner=<namespace>/<name>` marker,
/// `user`, `uid`). Only the operator's admin can read or write it (tenant users have roles on
/// their own database only), so — like PostgreSQL's COMMENT markers — a tenant cannot forge it.
/// Every change of a tenant's database or user, and every drop, first checks that the registry
/// names the Tenant as the owner; a foreign or unregistered database is a `Conflict`, never
/// adopted (but see [`MongoTenant::adopt_unmarked`]) and never dropped.
pub const REGISTRY_DATABASE: &str = "tenantdb_registry";
/// Collection of the registry in [`REGISTRY_DATABASE`].
pub const REGISTRY_COLLECTION: &str = "owners";

/// What one Tenant needs on MongoDB.
#[derive(Clone)]
pub struct MongoTenant {
    /// The tenant database.
    pub database: MongoDbName,
    /// The tenant user (defined in [`Self::database`]).
    pub user: String,
    /// The user's password (from the credentials Secret).
    pub password: String,
    /// Apply migrations up to this version (`None`: all of the admin's set).
    pub up_to_version: Option<i64>,
    /// Storage quota exceeded: the user gets `read` instead of `readWrite` on its database.
    pub read_only: bool,
    /// The owning Tenant's marker (`tenantdb.io/owner=<namespace>/<name>`), recorded in the
    /// registry ([`REGISTRY_DATABASE`]).
    pub owner: String,
    /// The owning Tenant's uid (informational, in the registry document).
    pub uid: Option<String>,
    /// Upgrade path for databases created before the registry existed: an unregistered database
    /// and user are registered for this Tenant (instead of a `Conflict`) when this is set — the
    /// Tenant's status says it provisioned this database — **and** the user's stored credentials
    /// match [`MongoTenant::password`], the Tenant's own Secret. Another Tenant naming the same
    /// database has neither.
    pub adopt_unmarked: bool,
}

impl MongoTenant {
    /// A tenant from its [`MongoTenantNames`], owned by `owner` (the Tenant's ownership marker).
    pub fn new(
        names: &MongoTenantNames,
        password: impl Into<String>,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            database: names.database.clone(),
            user: names.user.clone(),
            password: password.into(),
            up_to_version: None,
            read_only: false,
            owner: owner.into(),
            uid: None,
            adopt_unmarked: false,
        }
    }
}

impl MongoTenant {
    /// The same database, user and password with another owner (tests of ownership).
    #[doc(hidden)]
    pub fn clone_for_test(&self, owner: &str) -> Self {
        Self {
            database: self.database.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            up_to_version: self.up_to_version,
            read_only: self.read_only,
            owner: owner.to_string(),
            uid: None,
            adopt_unmarked: false,
        }
    }
}

impl fmt::Debug for MongoTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoTenant")
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("up_to_version", &self.up_to_version)
            .field("owner", &self.owner)
            .finish()
    }
}

/// How [`crate::mongo::MongoAdmin::ensure_owned`] found the tenant's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Registered to this Tenant already.
    Registered,
    /// New: registered to this Tenant now.
    Claimed,
    /// Created before the registry and registered now (upgrade rule).
    Adopted,
}

/// What [`crate::mongo::MongoAdmin::ensure_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    /// The user did not exist and was created.
    Created,
    /// The user existed; its roles and/or password (and mechanisms) were reset.
    Updated {
        /// Roles were not exactly `[{readWrite, <db>}]`.
        roles: bool,
        /// The password did not match (or could not be verified), or mechanisms differed.
        password: bool,
    },
    /// Nothing to do.
    Unchanged,
}

/// What [`crate::mongo::MongoAdmin::provision`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoOutcome {
    /// Descriptions of the steps applied, in order (empty when converged).
    pub steps: Vec<String>,
    /// Migration versions recorded by this call.
    pub recorded_versions: Vec<i64>,
    /// Migration version the database is at now.
    pub version: Option<i64>,
    /// What happened to the user.
    pub user: UserAction,
}

impl MongoOutcome {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        !self.steps.is_empty()
            || !self.recorded_versions.is_empty()
            || self.user != UserAction::Unchanged
    }

    /// Whether the user was created by this call.
    pub fn created_user(&self) -> bool {
        self.user == UserAction::Created
    }
}

/// What [`crate::mongo::MongoAdmin::cleanup`] found and removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MongoCleanup {
    /// The database existed (and was dropped).
    pub database_dropped: bool,
    /// The user existed (and was dropped).
    pub user_dropped: bool,
    /// Why nothing was dropped, when the database or user is not this Tenant's (registry).
    pub skipped: Option<String>,
}

/// Sizes from `dbStats` (bytes, unscaled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MongoDbStats {
    /// Number of collections.
    pub collections: u64,
    /// Number of documents.
    pub objects: u64,
    /// Uncompressed data size.
    pub data_size: u64,
    /// Storage allocated for data (compressed on WiredTiger).
    pub storage_size: u64,
    /// Storage allocated for indexes.
    pub index_size: u64,
}

impl MongoDbStats {
    /// What a quota should count: data storage plus index storage.
    pub fn total_bytes(&self) -> u64 {
        self.storage_size.saturating_add(self.index_size)
    }
}
