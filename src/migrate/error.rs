//! The engine's error type, [`MigrateError`], and the adapters that turn a driver error into
//! it. An error is classified once, where it happens: the connection going away is
//! [`MigrateError::Unavailable`] (transient), a migration's own SQL failing is
//! [`MigrateError::Sql`], the advisory lock not being granted is [`MigrateError::Lock`]. A leaf
//! of the engine: it depends on no other part of it.

use std::path::PathBuf;

use crate::dberror::message as first_line;
use crate::naming::NameError;

/// Errors of the migration engine and of partition maintenance.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Reading a migration directory or file failed.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A migration file name or file set is malformed.
    #[error("invalid migration file {file:?}: {reason}")]
    Parse {
        /// The file name.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Two migrations share a version (or a merge found two different migrations for one version).
    #[error("duplicate migration version {version}: {detail}")]
    Duplicate {
        /// The version.
        version: i64,
        /// Which files or sources collide.
        detail: String,
    },
    /// An applied migration's checksum differs from the migration set's.
    #[error(
        "checksum drift in migration {version}: applied with {applied}, migration set has {expected}"
    )]
    ChecksumDrift {
        /// The version.
        version: i64,
        /// Checksum recorded in the history table.
        applied: String,
        /// Checksum of the migration in the set.
        expected: String,
    },
    /// A rollback needs a down migration that does not exist.
    #[error("migration {version} has no down migration: cannot roll back past it")]
    MissingDown {
        /// The version.
        version: i64,
    },
    /// The history table records a version the migration set does not contain (for example a
    /// schema migrated by a newer operator).
    #[error("migration {version} is applied but is not in the migration set")]
    UnknownApplied {
        /// The version.
        version: i64,
    },
    /// A pending migration is older than an applied one.
    #[error(
        "migration {version} is pending but the newer migration {latest_applied} is already applied (out-of-order migrations are refused)"
    )]
    OutOfOrder {
        /// The pending version.
        version: i64,
        /// The newest applied version.
        latest_applied: i64,
    },
    /// A migration's SQL failed, escaped the migration transaction, or broke the engine's
    /// bookkeeping (e.g. dropped or altered the history table): a failure of that tenant.
    #[error("migration {version} failed: {message}")]
    Sql {
        /// The version.
        version: i64,
        /// First line of the PostgreSQL error (or what the engine found wrong).
        message: String,
        /// The driver's error, if there was one.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// A migration's SQL waited for a lock longer than the session's `lock_timeout` (SQLSTATE
    /// 55P03: another session, usually the tenant's application, holds a conflicting lock): the
    /// transaction rolled back and retrying later can succeed.
    #[error("migration {version} gave up waiting for a lock: {message}")]
    LockTimeout {
        /// The version.
        version: i64,
        /// First line of the PostgreSQL error.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// A migration's SQL was chosen as the victim of a deadlock (SQLSTATE 40P01: it and another
    /// session, usually the tenant's application, each waited for a lock the other held): the
    /// transaction rolled back and retrying later can succeed.
    #[error("migration {version} was ended by a deadlock with another session: {message}")]
    Deadlock {
        /// The version.
        version: i64,
        /// First line of the PostgreSQL error.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// Any other database operation of the engine failed for a reason that is not the
    /// connection (e.g. the history table of the tenant's schema is not what the engine wrote,
    /// permission denied): retrying the same call does not help.
    #[error("{operation} failed: {message}")]
    Database {
        /// What the engine was doing.
        operation: &'static str,
        /// First line of the error.
        message: String,
        /// The driver's error, if there was one.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The connection failed or the server went away while the engine was working (see
    /// [`crate::error::is_unavailable`]); the transaction rolled back, retrying later can succeed.
    #[error("database unavailable while {operation}: {message}")]
    Unavailable {
        /// What the engine was doing.
        operation: String,
        /// First line of the error.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The advisory lock could not be taken (lock_timeout, statement_timeout, cancellation).
    #[error("could not take the advisory lock {key}: {message}")]
    Lock {
        /// The lock key.
        key: i64,
        /// First line of the error.
        message: String,
        /// The driver's error.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// A schema or role name is not a plain lower-case identifier.
    #[error("invalid identifier: {0}")]
    InvalidIdentifier(#[from] NameError),
    /// Leader election is on and this replica can no longer be sure it holds the Lease: nothing
    /// was run (the transaction rolled back).
    #[error("not running migrations: {0}")]
    Fenced(#[from] crate::fence::Fenced),
}

impl MigrateError {
    /// A low-cardinality label for metrics and conditions.
    pub fn category(&self) -> &'static str {
        match self {
            MigrateError::Io { .. } => "io",
            MigrateError::Parse { .. } => "parse",
            MigrateError::Duplicate { .. } => "duplicate",
            MigrateError::ChecksumDrift { .. } => "checksum_drift",
            MigrateError::MissingDown { .. } => "missing_down",
            MigrateError::UnknownApplied { .. } => "unknown_applied",
            MigrateError::OutOfOrder { .. } => "out_of_order",
            MigrateError::Sql { .. } => "sql",
            MigrateError::Database { .. } => "database",
            MigrateError::Lock { .. }
            | MigrateError::LockTimeout { .. }
            | MigrateError::Deadlock { .. } => "lock",
            MigrateError::Unavailable { .. } => "unavailable",
            MigrateError::InvalidIdentifier(_) => "invalid_identifier",
            MigrateError::Fenced(_) => "fenced",
        }
    }

    /// Whether retrying the same call later can succeed: the connection failed, the advisory
    /// lock or a lock a migration needs could not be taken in time, a deadlock with another
    /// session ended the migration, or leadership is being lost. Everything else — bad files, drift,
    /// failing SQL, a history table the tenant broke, a permission the tenant revoked — is a
    /// property of the migration or of the tenant's schema and fails again the same way: it
    /// needs a human or a new migration set (and counts against a rollout's failure budget).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MigrateError::Lock { .. }
                | MigrateError::LockTimeout { .. }
                | MigrateError::Deadlock { .. }
                | MigrateError::Unavailable { .. }
                | MigrateError::Fenced(_)
        )
    }
}

pub(crate) fn db_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable(operation, e).unwrap_or_else(|e| MigrateError::Database {
            operation,
            message: first_line(&e),
            source: Some(e),
        })
    }
}

/// [`MigrateError::Unavailable`] when `e` means the server cannot be used right now, else `e`
/// back.
pub(crate) fn unavailable(
    operation: impl std::fmt::Display,
    e: sqlx::Error,
) -> Result<MigrateError, sqlx::Error> {
    if crate::dberror::is_unavailable(&e) {
        Ok(MigrateError::Unavailable {
            operation: operation.to_string(),
            message: first_line(&e),
            source: Some(e),
        })
    } else {
        Err(e)
    }
}

/// The error of a migration's own SQL: [`MigrateError::Sql`], or [`MigrateError::Unavailable`]
/// when the connection failed under it (the SQL itself may be fine).
pub(super) fn sql_err(version: i64) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable(format_args!("running migration {version}"), e).unwrap_or_else(|e| {
            let code = crate::dberror::sqlstate(&e);
            let (message, source) = (first_line(&e), Some(e));
            match code.as_deref() {
                Some("55P03") => MigrateError::LockTimeout {
                    version,
                    message,
                    source,
                },
                Some("40P01") => MigrateError::Deadlock {
                    version,
                    message,
                    source,
                },
                _ => MigrateError::Sql {
                    version,
                    message,
                    source,
                },
            }
        })
    }
}

/// The error of the engine's bookkeeping right after a migration's SQL ran in the same
/// transaction (history row, guard): the migration's own effect broke it (e.g. it dropped or
/// altered the history table), so it is that migration's failure, [`MigrateError::Sql`] — never a
/// transient error to retry — unless the connection failed.
pub(super) fn bookkeeping_err(
    version: i64,
    what: &'static str,
) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable(format_args!("running migration {version}"), e).unwrap_or_else(|e| {
            MigrateError::Sql {
                version,
                message: format!("{what} failed after the migration ran: {}", first_line(&e)),
                source: Some(e),
            }
        })
    }
}

/// The error of taking an advisory lock: [`MigrateError::Lock`] or [`MigrateError::Unavailable`].
pub(crate) fn lock_err(key: i64) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable("taking the advisory lock", e).unwrap_or_else(|e| MigrateError::Lock {
            key,
            message: first_line(&e),
            source: Some(e),
        })
    }
}
