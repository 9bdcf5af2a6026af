//! The operator's one error type, with low-cardinality categories for metrics, Events and
//! condition reasons.

use crate::dberror;
use crate::migrate::MigrateError;
use crate::naming::NameError;

/// A boxed error kept as the cause of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// The database could not be reached, or the connection was lost (connect, timeout, pool,
    /// shutdown). `message` is what conditions and Events show; `source` keeps the driver's error.
    #[error("database unavailable: {message}")]
    DatabaseUnavailable {
        /// One line saying what failed.
        message: String,
        /// The underlying error, when there is one worth keeping (never text with secrets).
        #[source]
        source: Option<BoxError>,
    },
    /// A statement failed.
    #[error("database error: {message}")]
    Database {
        /// One line: the server's message and SQLSTATE, or what the operator was doing.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A schema migration failed or drifted.
    #[error("migration: {0}")]
    Migration(#[source] MigrateError),
    /// Kubernetes API error.
    #[error("kubernetes api: {0}")]
    Kube(#[source] Box<kube::Error>),
    /// The operator has no room for this Tenant now (`--max-tenants` reached): it waits, and is
    /// provisioned as soon as room appears.
    #[error("waiting for capacity: {0}")]
    Capacity(String),
    /// No database server the Tenant's placement allows has room (or is Ready): it waits, and is
    /// placed as soon as one has. The message says why each candidate was refused.
    #[error("unschedulable: {0}")]
    Unschedulable(String),
    /// The API server refused fields this operator writes because the installed CRD does not
    /// declare them (server-side apply: "field not declared in schema"): the CRDs are older than
    /// the operator. Retried with backoff, so installing the new CRDs heals it.
    #[error(
        "the installed CRD is older than this operator: {field} is not in its schema; install the CRDs of this release (crds/ or the chart's crds/)"
    )]
    CrdOutdated {
        /// The undeclared field(s), e.g. `.status.mongodb`.
        field: String,
        /// The API server's error.
        #[source]
        source: Box<kube::Error>,
    },
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
        if let kube::Error::Api(status) = &e
            && let Some(field) = undeclared_fields(&status.message)
        {
            return Error::CrdOutdated {
                field,
                source: Box::new(e),
            };
        }
        Error::Kube(Box::new(e))
    }
}

/// The fields of a server-side apply refused as "field not declared in schema", e.g.
/// `failed to create typed patch object (ns/x; tenantdb.io/v1alpha1, Kind=Tenant): .status.mongodb:
/// field not declared in schema`.
fn undeclared_fields(message: &str) -> Option<String> {
    const MARK: &str = ": field not declared in schema";
    let fields: Vec<&str> = message
        .lines()
        .filter_map(|l| l.trim().strip_suffix(MARK))
        .map(|l| l.rsplit(": ").next().unwrap_or(l).trim())
        .filter(|f| f.starts_with('.'))
        .collect();
    (!fields.is_empty()).then(|| fields.join(", "))
}

pub use crate::dberror::is_unavailable;

impl Error {
    /// [`Error::DatabaseUnavailable`] with a message and no further cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::DatabaseUnavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`Error::Database`] with a message and no further cause.
    pub fn database(message: impl Into<String>) -> Self {
        Error::Database {
            message: message.into(),
            source: None,
        }
    }

    /// The same error with `context` (e.g. the step that failed) in front of its message.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            Error::Database { message, source } => Error::Database {
                message: format!("{context}: {message}"),
                source,
            },
            Error::DatabaseUnavailable { message, source } => Error::DatabaseUnavailable {
                message: format!("{context}: {message}"),
                source,
            },
            other => other,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let message = dberror::first_line(&dberror::message(&e));
        if dberror::is_unavailable(&e) {
            return Error::DatabaseUnavailable {
                message,
                source: Some(Box::new(e)),
            };
        }
        let message = match dberror::sqlstate(&e) {
            Some(code) => format!("{message} (SQLSTATE {code})"),
            None => message,
        };
        Error::Database {
            message,
            source: Some(Box::new(e)),
        }
    }
}

impl From<MigrateError> for Error {
    /// The migration engine lost its connection: that is an unavailable database (condition
    /// message "database unavailable: …"), not a migration problem.
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Unavailable {
                operation,
                message,
                source,
            } => Error::DatabaseUnavailable {
                message: format!("{operation}: {message}"),
                source: source.map(|e| Box::new(e) as BoxError),
            },
            MigrateError::Fenced(f) => Error::LeadershipLost(f),
            other => Error::Migration(other),
        }
    }
}

pub use crate::dberror::first_line;

impl Error {
    /// The database (or the connection to it) is unavailable: worth retrying as it is, not a
    /// verdict on what was asked. Derived from [`Error::category`].
    pub fn is_unavailable(&self) -> bool {
        self.category() == "DatabaseUnavailable"
    }

    /// Low-cardinality category: metric label value and condition reason.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) | Error::Name(_) => "InvalidSpec",
            Error::Conflict(_) => "Conflict",
            Error::DatabaseUnavailable { .. } => "DatabaseUnavailable",
            Error::Database { .. } => "DatabaseError",
            Error::Migration(MigrateError::ChecksumDrift { .. })
            | Error::Migration(MigrateError::UnknownApplied { .. }) => "MigrationDrift",
            Error::Migration(m) if m.is_transient() => "DatabaseUnavailable",
            Error::Migration(_) => "MigrationFailed",
            Error::Kube(_) => "KubernetesError",
            Error::CrdOutdated { .. } => "CrdOutdated",
            Error::Config(_) => "ConfigError",
            Error::Internal(_) => "InternalError",
            Error::LeadershipLost(_) => "LeadershipLost",
            Error::Capacity(_) => "TenantLimitReached",
            Error::Unschedulable(_) => "Unschedulable",
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
        assert_eq!(
            undeclared_fields("failed to create typed patch object (ns/x; tenantdb.io/v1alpha1, Kind=Tenant): .status.mongodb: field not declared in schema").as_deref(),
            Some(".status.mongodb")
        );
        assert_eq!(
            undeclared_fields("failed to create typed patch object (ns/x; g/v, Kind=T): errors:\n  .status.a: field not declared in schema\n  .status.b: field not declared in schema").as_deref(),
            Some(".status.a, .status.b")
        );
        assert_eq!(undeclared_fields("secrets \"x\" is forbidden: "), None);
        assert!(!Error::unavailable("x").is_permanent());
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
            source: None,
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
            source: None,
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
