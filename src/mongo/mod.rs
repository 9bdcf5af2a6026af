//! MongoDB side of tenant provisioning: one database and one user per tenant, with collections,
//! `$jsonSchema` validators and indexes from declarative, versioned migrations.
//!
//! Same shape as the PostgreSQL side: [`MongoAdmin::observe`] (reads only) → [`plan::plan`]
//! (pure) → [`MongoAdmin::apply`] (idempotent steps), wrapped by [`MongoAdmin::provision`].
//! Calling `provision` again on a converged tenant performs reads only.
//!
//! Secrets: the admin URI is never logged (its `Debug` is redacted), the tenant password only
//! travels inside `createUser`/`updateUser` commands, and error messages are built from server
//! codes and `errmsg` with every known secret scrubbed ([`error`]).
//!
//! # Layout
//!
//! Leaves first: `names` (database and user names), `tenant` (what a Tenant is on MongoDB and
//! what the admin reports), `connection` (settings, connection strings, redaction), [`error`]
//! (server errors to operator errors), [`model`] (migrations and the desired state),
//! [`plan`](mod@plan) (observed state and the pure diff), then `admin` ([`MongoAdmin`], the only
//! module doing I/O). This module only declares and re-exports.

mod admin;
mod connection;
pub mod error;
pub mod model;
pub mod names;
pub mod plan;
mod tenant;
#[cfg(test)]
mod tests;

pub use admin::MongoAdmin;
pub use connection::{MongoSettings, redact_uri, tenant_uri};
pub use error::{codes, error_code, map_error};
pub use model::{
    CollectionSpec, DesiredMongo, IndexSpec, MIGRATIONS_COLLECTION, MongoMigration,
    MongoMigrationError, MongoMigrationSet, desired_state,
};
pub use names::{MongoDbName, MongoNameError, MongoTenantNames, tenant_mongo_names};
pub use plan::{
    AppliedMigration, HistoryProblem, MongoStep, ObservedCollection, ObservedMongo, ObservedUser,
    check_history, plan,
};
pub use tenant::{
    MongoCleanup, MongoDbStats, MongoOutcome, MongoTenant, Ownership, REGISTRY_COLLECTION,
    REGISTRY_DATABASE, TENANT_MECHANISM, TENANT_READ_ONLY_ROLE, TENANT_ROLE, UserAction,
    tenant_role,
};
