//! The operator's one error type, with low-cardinality categories for metrics, Events and
//! condition reasons.

use crate::migrate::MigrateError;
use crate::naming::NameError;

/// Everything that can go wrong while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec cannot be provisioned as written; retrying will not help until it changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A PostgreSQL object the Tenant maps to belongs to someone else.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A name could not be derived or validated.
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
    /// PostgreSQL could not be reached (connect/timeout/pool).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// A statement failed.
    #[error("database error: {0}")]
    Database(String),
    /// A schema migration failed or drifted.
    #[error("migration: {0}")]
    Migration(MigrateError),
    /// Kubernetes API error.
    #[error("kubernetes api: {0}")]
    Kube(#[source] Box<kube::Error>),
    /// The operator has no room for this Tenant now (`--max-tenants` reached): it waits, and is
    /// provisioned as soon as room appears.
    #[error("waiting for capacity: {0}")]
    Capacity(String),
    /// The operator's own configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// Something that should not happen (a bug); kept as an error rather than a panic.
    #[error("internal: {0}")]
    Internal(String),
    /// Leader election is on and this replica can no longer be sure it holds the Lease: it does
    /// not act (see [`crate::fence`]).
    #[error("leadership lost: {0}")]
    LeadershipLost(#[from] crate::fence::Fenced),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(Box::new(e))
    }
}

/// Whether a sqlx error means the server cannot be used right now (rather than that a statement
/// is wrong): I/O, TLS, pool exhaustion, and SQLSTATE class 08 (connection exception), 57P0x
/// (shutdown, e.g. "terminating connection due to administrator command"), 53 (insufficient
/// resources).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")),
        _ => false,
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let message = match e.as_database_error() {
            Some(db) => first_line(db.message()),
            None => first_line(&e.to_string()),
        };
        if is_unavailable(&e) {
            return Error::DatabaseUnavailable(message);
        }
        match e.as_database_error().and_then(|db| db.code()) {
            Some(code) => Error::Database(format!("{message} (SQLSTATE {code})")),
            None => Error::Database(message),
        }
    }
}

impl From<MigrateError> for Error {
    /// The migration engine lost its connection: that is an unavailable database (condition
    /// message "database unavailable: …"), not a migration problem.
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Unavailable { operation, message } => {
                Error::DatabaseUnavailable(format!("{operation}: {message}"))
            }
            MigrateError::Fenced(f) => Error::LeadershipLost(f),
            other => Error::Migration(other),
        }
    }
}

/// First line of an error message, length-bounded (condition messages and Events stay short).
pub fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}

impl Error {
    /// Low-cardinality category: metric label value and condition reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) | Error::Name(_) => "InvalidSpec",
            Error::Conflict(_) => "Conflict",
            Error::DatabaseUnavailable(_) => "DatabaseUnavailable",
            Error::Database(_) => "DatabaseError",
            Error::Migration(MigrateError::ChecksumDrift { .. })
            | Error::Migration(MigrateError::UnknownApplied { .. }) => "MigrationDrift",
            Error::Migration(m) if m.is_transient() => "DatabaseUnavailable",
            Error::Migration(_) => "MigrationFailed",
            Error::Kube(_) => "KubernetesError",
            Error::Config(_) => "ConfigError",
            Error::Internal(_) => "InternalError",
            Error::LeadershipLost(_) => "LeadershipLost",
            Error::Capacity(_) => "TenantLimitReached",
        }
    }

    /// Whether retrying without a spec change can help. Permanent errors wait for a change.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec(_) | Error::Name(_) | Error::Conflict(_)
        )
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_stable() {
        assert_eq!(Error::InvalidSpec("x".into()).category(), "InvalidSpec");
        assert!(Error::Conflict("x".into()).is_permanent());
        assert!(!Error::DatabaseUnavailable("x".into()).is_permanent());
        assert_eq!(
            Error::from(sqlx::Error::PoolTimedOut).category(),
            "DatabaseUnavailable"
        );
    }

    #[test]
    fn a_migration_that_lost_its_connection_is_an_unavailable_database() {
        let lost = MigrateError::Unavailable {
            operation: "running migration 3".into(),
            message: "terminating connection due to administrator command".into(),
        };
        assert!(lost.is_transient());
        assert_eq!(lost.category(), "unavailable");
        let e = Error::from(lost);
        assert_eq!(e.category(), "DatabaseUnavailable");
        assert_eq!(
            e.to_string(),
            "database unavailable: running migration 3: terminating connection due to administrator command"
        );
        // A migration's own SQL failing stays a migration failure.
        let sql = Error::from(MigrateError::Sql {
            version: 3,
            message: "syntax error".into(),
        });
        assert_eq!(sql.category(), "MigrationFailed");
        assert_eq!(
            sql.to_string(),
            "migration: migration 3 failed: syntax error"
        );
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn first_line_is_bounded() {
        assert_eq!(first_line("a\nb"), "a");
        assert!(first_line(&"é".repeat(400)).len() < 310);
    }
}
