//! MongoDB names for tenants: the database and the user of a Tenant, validated.
//!
//! The names derive from the same base as the PostgreSQL names (the tenant's login role, by
//! default [`crate::naming::derived_base`]: `<prefix><namespace>_<name>_<hash>`), so a Tenant's
//! PostgreSQL database/role and its MongoDB database/user share one readable, collision-free name.
//! The user is created in the tenant database itself (`authSource=<db>`), so `user == database`.

use std::fmt;

/// MongoDB's database name length limit in bytes.
pub const MAX_DB_NAME_BYTES: usize = 63;

/// Databases that belong to the server, never to a tenant (compared case-insensitively, as
/// MongoDB refuses database names that differ from an existing one only by case).
pub const RESERVED_DATABASES: &[&str] = &["admin", "local", "config"];

/// Characters MongoDB forbids in database names (any platform), plus NUL.
const FORBIDDEN: &[char] = &[
    '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
];

/// Why a MongoDB database or user name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MongoNameError {
    /// Empty name.
    #[error("MongoDB database name is empty")]
    Empty,
    /// Longer than [`MAX_DB_NAME_BYTES`].
    #[error("MongoDB database name {0:?} is longer than 63 bytes")]
    TooLong(String),
    /// Contains a character MongoDB forbids (`/\. "$*<>:|?`, NUL) or a control character.
    #[error(
        "MongoDB database name {0:?} contains a forbidden character (/\\. \"$*<>:|? or control)"
    )]
    Invalid(String),
    /// `admin`, `local` or `config` (any case).
    #[error("MongoDB database name {0:?} is reserved")]
    Reserved(String),
}

impl From<MongoNameError> for crate::error::Error {
    fn from(e: MongoNameError) -> Self {
        crate::error::Error::InvalidSpec(e.to_string())
    }
}

/// A validated MongoDB database name a tenant may own (and the operator may drop).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MongoDbName(String);

impl MongoDbName {
    /// Validates `name` against MongoDB's database-name rules and the reserved names.
    pub fn new(name: &str) -> Result<Self, MongoNameError> {
        if name.is_empty() {
            return Err(MongoNameError::Empty);
        }
        if name.len() > MAX_DB_NAME_BYTES {
            return Err(MongoNameError::TooLong(name.to_string()));
        }
        if name
            .chars()
            .any(|c| FORBIDDEN.contains(&c) || c.is_control())
        {
            return Err(MongoNameError::Invalid(name.to_string()));
        }
        if RESERVED_DATABASES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(MongoNameError::Reserved(name.to_string()));
        }
        Ok(MongoDbName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MongoDbName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for MongoDbName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The MongoDB names a Tenant maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoTenantNames {
    /// The tenant's database (dedicated: one database per tenant).
    pub database: MongoDbName,
    /// The tenant's user, defined in [`Self::database`] (its `authSource`); same text as the
    /// database name.
    pub user: String,
}

/// Names for a Tenant.
///
/// `base` is the tenant's PostgreSQL base name (its login role: derived, explicit, or the one an
/// older operator derived, see `identity::resolve`);
/// `database_name` the optional `spec.mongodb.databaseName` override, which takes precedence.
pub fn tenant_mongo_names(
    base: &str,
    database_name: Option<&str>,
) -> Result<MongoTenantNames, MongoNameError> {
    let database = MongoDbName::new(database_name.unwrap_or(base))?;
    let user = database.as_str().to_string();
    Ok(MongoTenantNames { database, user })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::derived_base;

    #[test]
    fn derived_names_are_valid_and_shared_with_postgres() {
        let base = derived_base("tenant_", "team-a", "acme");
        let n = tenant_mongo_names(&base, None).unwrap();
        assert_eq!(n.database.as_str(), base);
        assert_eq!(n.user, base);
        let long = "a".repeat(63);
        let base = derived_base("tenant_", &long, &long);
        assert!(tenant_mongo_names(&base, None).is_ok());
    }

    #[test]
    fn override_wins() {
        let n = tenant_mongo_names("tenant_x_y_12345678", Some("acme-prod")).unwrap();
        assert_eq!(n.database.as_str(), "acme-prod");
        assert_eq!(n.user, "acme-prod");
    }

    #[test]
    fn hostile_names_are_rejected() {
        for bad in [
            "",
            "a/b",
            "a\\b",
            "a.b",
            "a b",
            "a\"b",
            "a$b",
            "a*b",
            "a<b",
            "a>b",
            "a:b",
            "a|b",
            "a?b",
            "a\0b",
            "a\nb",
            "admin",
            "ADMIN",
            "local",
            "Config",
            &"a".repeat(64),
        ] {
            assert!(MongoDbName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            MongoDbName::new("admin"),
            Err(MongoNameError::Reserved(_))
        ));
        assert!(MongoDbName::new(&"a".repeat(63)).is_ok());
        assert!(MongoDbName::new("tenant_ns_acme_0a1b2c3d").is_ok());
    }

    #[test]
    fn name_errors_are_invalid_spec() {
        let e: crate::error::Error = MongoNameError::Empty.into();
        assert_eq!(e.category(), "InvalidSpec");
    }
}
