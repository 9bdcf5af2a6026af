//! Versioned tenant schema migrations.
//!
//! The engine applies a [`MigrationSet`] (the baseline bundled into the binary, optionally merged
//! with migrations from a directory or a ConfigMap) to one tenant's schema. It is used by Tenant
//! provisioning and by the fleet `TenantMigration` controller.
//!
//! # File format
//!
//! sqlx's versioned format: `<version>_<name>.up.sql` and `<version>_<name>.down.sql`, or
//! `<version>_<name>.sql` for an up-only migration. Versions are positive 64-bit integers
//! (`20250101000001`), applied in ascending order; names use `[A-Za-z0-9_.-]` (the characters a
//! ConfigMap key may hold) and contents must not contain NUL. Files whose names do not end in
//! `.sql`, and hidden files (ConfigMap mounts contain `..data` entries), are ignored. A migration
//! file is run with [`sqlx::raw_sql`] (several statements, simple query protocol) and must not
//! contain transaction control (`BEGIN`, `COMMIT`, …) or role changes: the engine detects both and
//! fails.
//!
//! # How [`migrate`] runs
//!
//! Everything happens in **one transaction** on the caller's connection:
//!
//! 1. `SET TRANSACTION READ WRITE` (a tenant over its storage quota has
//!    `default_transaction_read_only`), `SET LOCAL statement_timeout = 0` (the tenant's
//!    `statementTimeout` quota is for its application, not for schema changes), then
//!    `pg_advisory_xact_lock(lock_key)`: two migrations of one tenant serialize, and the second
//!    sees the first one's result;
//! 2. `SET LOCAL ROLE "<owner>"` and `SET LOCAL search_path TO "<schema>"`: objects are created
//!    by, and owned by, the tenant's role, in the tenant's schema (a session logged in as the
//!    rotation role `<owner>_b` acts as the owner too);
//! 3. the history table [`HISTORY_TABLE`] is read (if it exists) and [`plan`] computes the steps;
//! 4. if the schema is up to date, the (read-only) transaction just ends: no DDL at all;
//! 5. otherwise the history table is created if missing, up steps run in ascending order (each
//!    inserts its history row), down steps in descending order (each deletes its row), and the
//!    transaction commits.
//!
//! Any failure rolls the whole call back: the schema stays at the version it had before the call.
//! A dry run computes the plan and rolls back without running any step.
//!
//! # Who runs the SQL
//!
//! `SET LOCAL ROLE` is not a sandbox: SQL in a migration file can `RESET ROLE`, `COMMIT` or
//! `SET ROLE` back to whatever the *session* may be. So the operator never runs migration SQL on
//! its admin session: the controllers call [`migrate`] on a [`crate::pg::TenantSession`], a
//! connection **logged in as the tenant's own role** (the credentials of its Secret; for the
//! `shared` layout, the layout owner with a password valid for minutes), checked at login to hold
//! no superuser, `CREATEROLE`, `CREATEDB`, `REPLICATION` or `BYPASSRLS` attribute. Whatever a
//! migration file does, it can do no more than the tenant's application can with its Secret. The
//! checks after each step (transaction and role still the engine's) only keep the bookkeeping
//! right (objects owned by the owner role, the history row in the same transaction as the step);
//! they are not what keeps a hostile file in. The engine itself takes any connection, so its own
//! tests can drive it on an admin connection; `docs/security.md` has the threat table.
//!
//! Identifiers (schema, role) are validated by [`crate::naming::Ident`] (`^[a-z_][a-z0-9_]*$`, at
//! most 63 bytes) and always double-quoted; no other input is ever formatted into SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::naming::{Ident, NameError};

/// Name of the per-schema history table.
pub const HISTORY_TABLE: &str = "tenantdb_schema_migrations";

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
        /// First line of the PostgreSQL error.
        message: String,
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
    },
    /// The connection failed or the server went away while the engine was working (see
    /// [`crate::error::is_unavailable`]); the transaction rolled back, retrying later can succeed.
    #[error("database unavailable while {operation}: {message}")]
    Unavailable {
        /// What the engine was doing.
        operation: String,
        /// First line of the error.
        message: String,
    },
    /// The advisory lock could not be taken (lock_timeout, statement_timeout, cancellation).
    #[error("could not take the advisory lock {key}: {message}")]
    Lock {
        /// The lock key.
        key: i64,
        /// First line of the error.
        message: String,
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
            MigrateError::Lock { .. } => "lock",
            MigrateError::Unavailable { .. } => "unavailable",
            MigrateError::InvalidIdentifier(_) => "invalid_identifier",
            MigrateError::Fenced(_) => "fenced",
        }
    }

    /// Whether retrying the same call later can succeed: the connection failed, the advisory
    /// lock could not be taken, or leadership is being lost. Everything else — bad files, drift,
    /// failing SQL, a history table the tenant broke, a permission the tenant revoked — is a
    /// property of the migration or of the tenant's schema and fails again the same way: it
    /// needs a human or a new migration set (and counts against a rollout's failure budget).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MigrateError::Lock { .. } | MigrateError::Unavailable { .. } | MigrateError::Fenced(_)
        )
    }
}

/// First line of an error: the PostgreSQL message for database errors.
pub(crate) fn first_line(e: &sqlx::Error) -> String {
    let full = match e.as_database_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    full.lines().next().unwrap_or_default().to_string()
}

pub(crate) fn db_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable(operation, &e).unwrap_or_else(|| MigrateError::Database {
            operation,
            message: first_line(&e),
        })
    }
}

/// [`MigrateError::Unavailable`] when `e` means the server cannot be used right now.
pub(crate) fn unavailable(
    operation: impl std::fmt::Display,
    e: &sqlx::Error,
) -> Option<MigrateError> {
    crate::error::is_unavailable(e).then(|| MigrateError::Unavailable {
        operation: operation.to_string(),
        message: first_line(e),
    })
}

/// The error of a migration's own SQL: [`MigrateError::Sql`], or [`MigrateError::Unavailable`]
/// when the connection failed under it (the SQL itself may be fine).
fn sql_err(version: i64) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable(format_args!("running migration {version}"), &e).unwrap_or_else(|| {
            MigrateError::Sql {
                version,
                message: first_line(&e),
            }
        })
    }
}

/// The error of the engine's bookkeeping right after a migration's SQL ran in the same
/// transaction (history row, guard): the migration's own effect broke it (e.g. it dropped or
/// altered the history table), so it is that migration's failure, [`MigrateError::Sql`] — never a
/// transient error to retry — unless the connection failed.
fn bookkeeping_err(version: i64, what: &'static str) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable(format_args!("running migration {version}"), &e).unwrap_or_else(|| {
            MigrateError::Sql {
                version,
                message: format!("{what} failed after the migration ran: {}", first_line(&e)),
            }
        })
    }
}

/// The error of taking an advisory lock: [`MigrateError::Lock`] or [`MigrateError::Unavailable`].
pub(crate) fn lock_err(key: i64) -> impl FnOnce(sqlx::Error) -> MigrateError {
    move |e| {
        unavailable("taking the advisory lock", &e).unwrap_or_else(|| MigrateError::Lock {
            key,
            message: first_line(&e),
        })
    }
}

/// Checks `ident` with [`Ident::existing`] (the one identifier type of the operator).
pub fn validate_identifier(ident: &str) -> Result<(), MigrateError> {
    Ident::existing(ident)?;
    Ok(())
}

/// Validates `ident` with [`Ident::existing`] and returns it double-quoted, ready to be put into SQL.
pub fn quote_identifier(ident: &str) -> Result<String, MigrateError> {
    Ok(Ident::existing(ident)?.quoted())
}

/// Hex SHA-256 of a migration's up SQL (exact bytes, no normalization).
pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One versioned migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Version (positive, unique in a set, applied in ascending order).
    pub version: i64,
    /// Name (the file name part after `<version>_`).
    pub name: String,
    /// SQL applying the migration.
    pub up_sql: String,
    /// SQL reverting it, if it can be reverted.
    pub down_sql: Option<String>,
    /// Hex SHA-256 of `up_sql`.
    pub checksum: String,
}

impl Migration {
    /// Builds a migration, computing its checksum.
    pub fn new(
        version: i64,
        name: impl Into<String>,
        up_sql: impl Into<String>,
        down_sql: Option<String>,
    ) -> Migration {
        let up_sql = up_sql.into();
        Migration {
            version,
            name: name.into(),
            checksum: checksum(&up_sql),
            up_sql,
            down_sql,
        }
    }
}

/// A migration compiled into the binary (see `build.rs`).
struct BundledMigration {
    version: i64,
    name: &'static str,
    up_sql: &'static str,
    down_sql: Option<&'static str>,
}

static BUNDLED: &[BundledMigration] = include!(concat!(env!("OUT_DIR"), "/bundled_migrations.rs"));

/// An ordered set of migrations: sorted by version, no duplicate versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

/// Kind of a migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Up,
    Down,
}

/// Parses a migration file name. `Ok(None)`: not a migration file (ignored).
fn parse_file_name(file: &str) -> Result<Option<(i64, String, FileKind)>, MigrateError> {
    if file.starts_with('.') {
        return Ok(None);
    }
    let (stem, kind) = if let Some(s) = file.strip_suffix(".down.sql") {
        (s, FileKind::Down)
    } else if let Some(s) = file.strip_suffix(".up.sql") {
        (s, FileKind::Up)
    } else if let Some(s) = file.strip_suffix(".sql") {
        (s, FileKind::Up)
    } else {
        return Ok(None);
    };
    let parse_err = |reason: &str| MigrateError::Parse {
        file: file.to_string(),
        reason: reason.to_string(),
    };
    let (version, name) = stem
        .split_once('_')
        .ok_or_else(|| parse_err("expected <version>_<name>[.up|.down].sql"))?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(parse_err("the version must be a decimal number"));
    }
    let version: i64 = version
        .parse()
        .map_err(|_| parse_err("the version does not fit a 64-bit integer"))?;
    if version < 1 {
        return Err(parse_err("versions start at 1"));
    }
    if name.is_empty() {
        return Err(parse_err("the name after the version is empty"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(parse_err(
            "the name may only contain letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(Some((version, name.to_string(), kind)))
}

impl MigrationSet {
    /// Builds a set from migrations in any order; fails on duplicate versions or versions < 1.
    pub fn new(mut migrations: Vec<Migration>) -> Result<MigrationSet, MigrateError> {
        migrations.sort_by_key(|m| m.version);
        for m in &migrations {
            if m.version < 1 {
                return Err(MigrateError::Parse {
                    file: format!("{}_{}", m.version, m.name),
                    reason: "versions start at 1".to_string(),
                });
            }
        }
        for pair in migrations.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::Duplicate {
                    version: pair[0].version,
                    detail: format!("`{}` and `{}`", pair[0].name, pair[1].name),
                });
            }
        }
        Ok(MigrationSet { migrations })
    }

    /// The baseline data model compiled into the binary (`migrations/postgres/`).
    pub fn bundled() -> MigrationSet {
        // build.rs has already rejected bad names and duplicates, and emits versions in order.
        MigrationSet {
            migrations: BUNDLED
                .iter()
                .map(|b| {
                    Migration::new(b.version, b.name, b.up_sql, b.down_sql.map(str::to_string))
                })
                .collect(),
        }
    }

    /// Loads the migration files of a directory (not recursive). Symlinked files are followed
    /// (ConfigMap volume mounts); hidden entries and files not ending in `.sql` are ignored.
    pub fn load_dir(dir: &Path) -> Result<MigrationSet, MigrateError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MigrateError::Io { path, source }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".sql") {
                continue;
            }
            if !std::fs::metadata(&path).map_err(io_err(&path))?.is_file() {
                continue;
            }
            let contents = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            files.push((name, contents));
        }
        MigrationSet::from_files(files)
    }

    /// Builds a set from `(file name, contents)` pairs, e.g. the data of a ConfigMap. Same rules
    /// as [`MigrationSet::load_dir`]: entries that are not `.sql` files are ignored.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<MigrationSet, MigrateError> {
        struct Entry {
            name: String,
            up: Option<(String, String)>,
            down: Option<(String, String)>,
        }
        let mut entries: BTreeMap<i64, Entry> = BTreeMap::new();
        for (file, contents) in files {
            let Some((version, name, kind)) = parse_file_name(&file)? else {
                continue;
            };
            if contents.contains('\0') {
                return Err(MigrateError::Parse {
                    file,
                    reason: "the file contains a NUL byte".to_string(),
                });
            }
            let entry = entries.entry(version).or_insert_with(|| Entry {
                name: name.clone(),
                up: None,
                down: None,
            });
            if entry.name != name {
                let other = entry
                    .up
                    .as_ref()
                    .or(entry.down.as_ref())
                    .map(|(f, _)| f.clone())
                    .unwrap_or_default();
                return Err(MigrateError::Duplicate {
                    version,
                    detail: format!("`{other}` and `{file}` have different names"),
                });
            }
            let slot = match kind {
                FileKind::Up => &mut entry.up,
                FileKind::Down => &mut entry.down,
            };
            if let Some((existing, _)) = slot {
                return Err(MigrateError::Duplicate {
                    version,
                    detail: format!("`{existing}` and `{file}`"),
                });
            }
            *slot = Some((file, contents));
        }
        let mut migrations = Vec::with_capacity(entries.len());
        for (version, entry) in entries {
            let Some((_, up_sql)) = entry.up else {
                let file = entry.down.map(|(f, _)| f).unwrap_or_default();
                return Err(MigrateError::Parse {
                    file,
                    reason: format!("down migration without an up migration for version {version}"),
                });
            };
            migrations.push(Migration::new(
                version,
                entry.name,
                up_sql,
                entry.down.map(|(_, sql)| sql),
            ));
        }
        MigrationSet::new(migrations)
    }

    /// Union of two sets. A version present in both must have the same checksum (else
    /// [`MigrateError::Duplicate`]); if only one side has a down migration it is kept, and two
    /// different down migrations are an error too.
    pub fn merge(self, other: MigrationSet) -> Result<MigrationSet, MigrateError> {
        let mut by_version: BTreeMap<i64, Migration> = self
            .migrations
            .into_iter()
            .map(|m| (m.version, m))
            .collect();
        for m in other.migrations {
            match by_version.get_mut(&m.version) {
                None => {
                    by_version.insert(m.version, m);
                }
                Some(existing) => {
                    if existing.checksum != m.checksum {
                        return Err(MigrateError::Duplicate {
                            version: m.version,
                            detail: format!(
                                "`{}` ({}) and `{}` ({}) differ",
                                existing.name, existing.checksum, m.name, m.checksum
                            ),
                        });
                    }
                    match (&existing.down_sql, m.down_sql) {
                        (None, Some(down)) => existing.down_sql = Some(down),
                        (Some(a), Some(b)) if *a != b => {
                            return Err(MigrateError::Duplicate {
                                version: m.version,
                                detail: "same up migration with different down migrations"
                                    .to_string(),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(MigrationSet {
            migrations: by_version.into_values().collect(),
        })
    }

    /// The highest version, `None` for an empty set.
    pub fn latest_version(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }

    /// The migrations, sorted by version.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }

    /// Number of migrations.
    pub fn len(&self) -> usize {
        self.migrations.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }
}

/// Where a migration runs.
#[derive(Debug, Clone, Copy)]
pub struct MigrationTarget<'a> {
    /// Schema holding the tenant's tables and the history table (validated identifier).
    pub schema: &'a str,
    /// Role the migration runs as (`SET LOCAL ROLE`): it owns the schema and the created objects.
    pub owner_role: &'a str,
    /// Per-tenant advisory lock key (`pg_advisory_xact_lock`).
    pub lock_key: i64,
}

/// A row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Version.
    pub version: i64,
    /// Name at the time it was applied.
    pub name: String,
    /// Checksum of the up SQL that was applied.
    pub checksum: String,
    /// When it was applied.
    pub applied_at: jiff::Timestamp,
    /// How long the up SQL took.
    pub execution_ms: i64,
}

/// Direction of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Apply (`up_sql`).
    Up,
    /// Revert (`down_sql`).
    Down,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedStep {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// Up or down.
    pub direction: Direction,
}

/// What [`migrate`] would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationPlan {
    /// Highest applied version before (`None`: nothing applied).
    pub from: Option<i64>,
    /// Highest applied version after the plan (`None`: nothing applied).
    pub to: Option<i64>,
    /// Steps in execution order: downs descending, then ups ascending (only one kind occurs).
    pub steps: Vec<PlannedStep>,
}

impl MigrationPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Result of [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Highest applied version before the call.
    pub from: Option<i64>,
    /// Highest applied version after the call (equal to `from` for a dry run).
    pub to: Option<i64>,
    /// Steps executed, in order (empty for a dry run or when up to date).
    pub applied: Vec<(i64, Direction)>,
    /// Wall time of the call, lock wait included.
    pub duration: Duration,
    /// The plan that was computed (for a dry run: what would be executed).
    pub plan: MigrationPlan,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Computes the steps taking a schema with `applied` history to `target_version` (`None`: the
/// set's latest version; `Some(0)`: revert everything). Pure.
///
/// Rules:
/// - every applied version must be in the set ([`MigrateError::UnknownApplied`]: the schema may
///   have been migrated by a newer release; it can be neither verified nor reverted) with the
///   same checksum ([`MigrateError::ChecksumDrift`]);
/// - applied versions above the target are reverted, newest first, and each needs a down
///   migration ([`MigrateError::MissingDown`]);
/// - set versions up to the target that are not applied are applied, oldest first; one older
///   than an applied version that stays is refused ([`MigrateError::OutOfOrder`]), so every
///   tenant's history is a prefix of the same sequence.
pub fn plan(
    set: &MigrationSet,
    applied: &[AppliedMigration],
    target_version: Option<i64>,
) -> Result<MigrationPlan, MigrateError> {
    let mut applied_versions = BTreeSet::new();
    let mut sorted: Vec<&AppliedMigration> = applied.iter().collect();
    sorted.sort_by_key(|a| a.version);
    for a in &sorted {
        let Some(m) = set.get(a.version) else {
            return Err(MigrateError::UnknownApplied { version: a.version });
        };
        if m.checksum != a.checksum {
            return Err(MigrateError::ChecksumDrift {
                version: a.version,
                applied: a.checksum.clone(),
                expected: m.checksum.clone(),
            });
        }
        applied_versions.insert(a.version);
    }
    let from = applied_versions.last().copied();
    // `None` with an empty set: nothing may stay applied.
    let target = target_version.or(set.latest_version()).unwrap_or(i64::MIN);

    let mut steps = Vec::new();
    for &version in applied_versions.iter().rev().filter(|&&v| v > target) {
        let Some(m) = set.get(version) else {
            return Err(MigrateError::UnknownApplied { version });
        };
        if m.down_sql.is_none() {
            return Err(MigrateError::MissingDown { version });
        }
        steps.push(PlannedStep {
            version,
            name: m.name.clone(),
            direction: Direction::Down,
        });
    }
    let kept_max = applied_versions.range(..=target).next_back().copied();
    for m in set
        .migrations()
        .iter()
        .filter(|m| m.version <= target && !applied_versions.contains(&m.version))
    {
        if let Some(latest_applied) = kept_max.filter(|&k| k > m.version) {
            return Err(MigrateError::OutOfOrder {
                version: m.version,
                latest_applied,
            });
        }
        steps.push(PlannedStep {
            version: m.version,
            name: m.name.clone(),
            direction: Direction::Up,
        });
    }
    let to = steps
        .iter()
        .filter(|s| s.direction == Direction::Up)
        .map(|s| s.version)
        .max()
        .or(kept_max);
    Ok(MigrationPlan { from, to, steps })
}

/// Whether the history table exists in `schema`.
async fn history_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, MigrateError> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r')",
    )
    .bind(schema)
    .bind(HISTORY_TABLE)
    .fetch_one(conn)
    .await
    .map_err(db_err("reading the catalog"))
}

async fn read_history(
    conn: &mut PgConnection,
    quoted_schema: &str,
) -> Result<Vec<AppliedMigration>, MigrateError> {
    let sql = format!(
        "SELECT version, name, checksum, \
         (extract(epoch FROM applied_at) * 1000000)::bigint AS applied_us, execution_ms \
         FROM {quoted_schema}.{HISTORY_TABLE} ORDER BY version"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .persistent(false)
        .fetch_all(conn)
        .await
        .map_err(db_err("reading the migration history"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let get_err = db_err("decoding the migration history");
        let applied_us: i64 = row.try_get("applied_us").map_err(get_err)?;
        out.push(AppliedMigration {
            version: row
                .try_get("version")
                .map_err(db_err("decoding the migration history"))?,
            name: row
                .try_get("name")
                .map_err(db_err("decoding the migration history"))?,
            checksum: row
                .try_get("checksum")
                .map_err(db_err("decoding the migration history"))?,
            applied_at: jiff::Timestamp::from_microsecond(applied_us).map_err(|e| {
                MigrateError::Database {
                    operation: "decoding the migration history",
                    message: e.to_string(),
                }
            })?,
            execution_ms: row
                .try_get("execution_ms")
                .map_err(db_err("decoding the migration history"))?,
        });
    }
    Ok(out)
}

/// The rows of the history table, oldest first; empty if the table does not exist. Reads as the
/// connection's user (no role change, no lock).
pub async fn status(
    conn: &mut PgConnection,
    target: &MigrationTarget<'_>,
) -> Result<Vec<AppliedMigration>, MigrateError> {
    let quoted_schema = quote_identifier(target.schema)?;
    quote_identifier(target.owner_role)?;
    if !history_exists(conn, target.schema).await? {
        return Ok(Vec::new());
    }
    read_history(conn, &quoted_schema).await
}

/// Transaction-local marker set at the start of [`migrate`]; a migration that commits or rolls
/// back the transaction loses it.
const GUARD_SETTING: &str = "tenantdb.migration_guard";

/// Fails if the step left the engine's transaction or role.
async fn check_guard(
    conn: &mut PgConnection,
    owner_role: &str,
    version: i64,
) -> Result<(), MigrateError> {
    let row = sqlx::query(
        "SELECT coalesce(current_setting($1, true), '') = 'on' AS guard, current_user::text AS role",
    )
    .bind(GUARD_SETTING)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql_err(version))?;
    let guard: bool = row.try_get("guard").unwrap_or(false);
    let role: String = row.try_get("role").unwrap_or_default();
    if !guard {
        return Err(MigrateError::Sql {
            version,
            message: "the migration ended the migration transaction (transaction control statements are not allowed)".to_string(),
        });
    }
    if role != owner_role {
        return Err(MigrateError::Sql {
            version,
            message: format!(
                "the migration changed the role to {role:?} (role changes are not allowed)"
            ),
        });
    }
    Ok(())
}

/// What to do with the transaction after [`run_in_transaction`].
enum Outcome {
    Commit(MigrationReport),
    Rollback(MigrationReport),
}

/// Inputs of one [`migrate`] call.
struct Job<'a> {
    set: &'a MigrationSet,
    target: &'a MigrationTarget<'a>,
    quoted_schema: &'a str,
    quoted_role: &'a str,
    target_version: Option<i64>,
    dry_run: bool,
    started: Instant,
}

async fn run_in_transaction(
    conn: &mut PgConnection,
    job: &Job<'_>,
) -> Result<Outcome, MigrateError> {
    let Job {
        set,
        target,
        quoted_schema,
        quoted_role,
        target_version,
        dry_run,
        started,
    } = *job;
    // First statement of the transaction (SET TRANSACTION must precede any query): schema changes
    // are the operator's work, not the tenant application's, so neither its read-only switch
    // (storage quota) nor its statement timeout applies.
    crate::fence::check()?;
    sqlx::raw_sql("SET TRANSACTION READ WRITE; SET LOCAL statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .map_err(db_err("starting the migration transaction"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(target.lock_key)
        .execute(&mut *conn)
        .await
        .map_err(lock_err(target.lock_key))?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL ROLE {quoted_role}; SET LOCAL search_path TO {quoted_schema}"
    )))
    .execute(&mut *conn)
    .await
    .map_err(db_err("setting role and search_path"))?;
    sqlx::query("SELECT set_config($1, 'on', true)")
        .bind(GUARD_SETTING)
        .execute(&mut *conn)
        .await
        .map_err(db_err("setting the migration guard"))?;

    let exists = history_exists(conn, target.schema).await?;
    let applied = if exists {
        read_history(conn, quoted_schema).await?
    } else {
        Vec::new()
    };
    let plan = plan(set, &applied, target_version)?;
    let mut report = MigrationReport {
        from: plan.from,
        to: plan.from,
        applied: Vec::new(),
        duration: Duration::ZERO,
        plan: plan.clone(),
        dry_run,
    };
    if dry_run {
        report.duration = started.elapsed();
        return Ok(Outcome::Rollback(report));
    }
    if exists && plan.is_empty() {
        report.duration = started.elapsed();
        return Ok(Outcome::Commit(report));
    }
    if !exists {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {quoted_schema}.{HISTORY_TABLE} (\
             version bigint PRIMARY KEY, \
             name text NOT NULL, \
             checksum text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now(), \
             execution_ms bigint NOT NULL)"
        )))
        .execute(&mut *conn)
        .await
        .map_err(db_err("creating the migration history table"))?;
    }
    let insert = format!(
        "INSERT INTO {quoted_schema}.{HISTORY_TABLE} (version, name, checksum, execution_ms) \
         VALUES ($1, $2, $3, $4)"
    );
    let delete = format!("DELETE FROM {quoted_schema}.{HISTORY_TABLE} WHERE version = $1");
    for step in &plan.steps {
        let Some(m) = set.get(step.version) else {
            return Err(MigrateError::UnknownApplied {
                version: step.version,
            });
        };
        let sql = match step.direction {
            Direction::Up => m.up_sql.as_str(),
            Direction::Down => m
                .down_sql
                .as_deref()
                .ok_or(MigrateError::MissingDown { version: m.version })?,
        };
        crate::fence::check()?;
        let t0 = Instant::now();
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(sql_err(m.version))?;
        check_guard(conn, target.owner_role, m.version).await?;
        let elapsed_ms = i64::try_from(t0.elapsed().as_millis()).unwrap_or(i64::MAX);
        match step.direction {
            Direction::Up => {
                sqlx::query(AssertSqlSafe(insert.as_str()))
                    .persistent(false)
                    .bind(m.version)
                    .bind(&m.name)
                    .bind(&m.checksum)
                    .bind(elapsed_ms)
                    .execute(&mut *conn)
                    .await
                    .map_err(bookkeeping_err(
                        m.version,
                        "recording it in the history table",
                    ))?;
            }
            Direction::Down => {
                sqlx::query(AssertSqlSafe(delete.as_str()))
                    .persistent(false)
                    .bind(m.version)
                    .execute(&mut *conn)
                    .await
                    .map_err(bookkeeping_err(
                        m.version,
                        "removing its record from the history table",
                    ))?;
            }
        }
        tracing::info!(
            schema = target.schema,
            version = m.version,
            name = %m.name,
            direction = %step.direction,
            elapsed_ms,
            "migration step done"
        );
        report.applied.push((m.version, step.direction));
    }
    report.to = plan.to;
    report.duration = started.elapsed();
    Ok(Outcome::Commit(report))
}

/// Brings `target`'s schema to `target_version` (`None`: latest; `Some(0)`: revert everything) in
/// one transaction; see the module documentation. With `dry_run`, only the plan is computed
/// (returned in [`MigrationReport::plan`]) and nothing is executed.
pub async fn migrate(
    conn: &mut PgConnection,
    set: &MigrationSet,
    target: &MigrationTarget<'_>,
    target_version: Option<i64>,
    dry_run: bool,
) -> Result<MigrationReport, MigrateError> {
    let started = Instant::now();
    let quoted_schema = quote_identifier(target.schema)?;
    let quoted_role = quote_identifier(target.owner_role)?;
    let mut tx = conn
        .begin()
        .await
        .map_err(db_err("beginning a transaction"))?;
    let job = Job {
        set,
        target,
        quoted_schema: &quoted_schema,
        quoted_role: &quoted_role,
        target_version,
        dry_run,
        started,
    };
    let outcome = run_in_transaction(&mut tx, &job).await;
    // No commit once leadership is in doubt: the transaction rolls back instead.
    let outcome = match (outcome, crate::fence::check()) {
        (Ok(Outcome::Commit(_)), Err(fenced)) => Err(MigrateError::Fenced(fenced)),
        (other, _) => other,
    };
    match outcome {
        Ok(Outcome::Commit(mut report)) => {
            tx.commit().await.map_err(db_err("committing"))?;
            report.duration = started.elapsed();
            Ok(report)
        }
        Ok(Outcome::Rollback(mut report)) => {
            tx.rollback().await.map_err(db_err("rolling back"))?;
            report.duration = started.elapsed();
            Ok(report)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback after a failed migration failed");
            }
            tracing::warn!(schema = target.schema, error = %e, category = e.category(), "migration failed");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn applied(m: &Migration) -> AppliedMigration {
        AppliedMigration {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            applied_at: jiff::Timestamp::UNIX_EPOCH,
            execution_ms: 1,
        }
    }

    fn set3() -> MigrationSet {
        MigrationSet::from_files(files(&[
            ("1_a.up.sql", "create table a();"),
            ("1_a.down.sql", "drop table a;"),
            ("2_b.up.sql", "create table b();"),
            ("2_b.down.sql", "drop table b;"),
            ("3_c.sql", "create table c();"),
        ]))
        .unwrap()
    }

    #[test]
    fn parses_file_names() {
        assert_eq!(
            parse_file_name("20250101000001_identity_core.up.sql").unwrap(),
            Some((20250101000001, "identity_core".into(), FileKind::Up))
        );
        assert_eq!(
            parse_file_name("7_x_y.down.sql").unwrap(),
            Some((7, "x_y".into(), FileKind::Down))
        );
        assert_eq!(
            parse_file_name("0003_simple.sql").unwrap(),
            Some((3, "simple".into(), FileKind::Up))
        );
        assert_eq!(parse_file_name("README.md").unwrap(), None);
        assert_eq!(parse_file_name("..data").unwrap(), None);
        assert_eq!(parse_file_name(".1_hidden.sql").unwrap(), None);
        for bad in [
            "x_name.sql",
            "name.up.sql",
            "1_.up.sql",
            "_a.sql",
            "0_zero.sql",
            "99999999999999999999_big.sql",
            "-1_neg.sql",
            "1_nul\0name.sql",
            "1_new\nline.sql",
            "1_sp ace.sql",
        ] {
            let e = parse_file_name(bad).unwrap_err();
            assert_eq!(e.category(), "parse", "{bad}: {e}");
        }
    }

    #[test]
    fn from_files_builds_sorted_set() {
        let set = set3();
        assert_eq!(set.len(), 3);
        assert_eq!(set.latest_version(), Some(3));
        let v: Vec<i64> = set.migrations().iter().map(|m| m.version).collect();
        assert_eq!(v, [1, 2, 3]);
        assert_eq!(
            set.get(2).unwrap().down_sql.as_deref(),
            Some("drop table b;")
        );
        assert_eq!(set.get(3).unwrap().down_sql, None);
        assert_eq!(set.get(1).unwrap().checksum, checksum("create table a();"));
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn from_files_rejects_duplicates_and_orphans() {
        let dup = MigrationSet::from_files(files(&[("1_a.up.sql", "x"), ("1_a.sql", "y")]));
        assert!(matches!(
            dup,
            Err(MigrateError::Duplicate { version: 1, .. })
        ));
        let renamed = MigrationSet::from_files(files(&[("1_a.up.sql", "x"), ("1_b.up.sql", "y")]));
        assert!(matches!(
            renamed,
            Err(MigrateError::Duplicate { version: 1, .. })
        ));
        let mismatch =
            MigrationSet::from_files(files(&[("1_a.up.sql", "x"), ("1_b.down.sql", "y")]));
        assert!(matches!(mismatch, Err(MigrateError::Duplicate { .. })));
        let nul = MigrationSet::from_files(files(&[("1_a.up.sql", "select 1;\0")]));
        assert!(matches!(nul, Err(MigrateError::Parse { .. })), "{nul:?}");
        let orphan = MigrationSet::from_files(files(&[("2_a.down.sql", "x")]));
        assert!(
            matches!(orphan, Err(MigrateError::Parse { .. })),
            "{orphan:?}"
        );
        let two_downs = MigrationSet::from_files(files(&[
            ("1_a.up.sql", "x"),
            ("1_a.down.sql", "y"),
            ("01_a.down.sql", "z"),
        ]));
        assert!(matches!(two_downs, Err(MigrateError::Duplicate { .. })));
        let ignored =
            MigrationSet::from_files(files(&[("notes.txt", "x"), ("..data", "")])).unwrap();
        assert!(ignored.is_empty());
    }

    #[test]
    fn merge_rules() {
        let base = set3();
        let extra = MigrationSet::from_files(files(&[
            ("3_c.sql", "create table c();"),
            ("3_c.down.sql", "drop table c;"),
            ("4_d.sql", "create table d();"),
        ]))
        .unwrap();
        let merged = base.clone().merge(extra).unwrap();
        assert_eq!(merged.latest_version(), Some(4));
        assert_eq!(
            merged.get(3).unwrap().down_sql.as_deref(),
            Some("drop table c;")
        );
        let conflicting =
            MigrationSet::from_files(files(&[("2_b.sql", "create table b2();")])).unwrap();
        let e = base.clone().merge(conflicting).unwrap_err();
        assert!(
            matches!(e, MigrateError::Duplicate { version: 2, .. }),
            "{e}"
        );
        let other_down = MigrationSet::from_files(files(&[
            ("2_b.up.sql", "create table b();"),
            ("2_b.down.sql", "drop table b cascade;"),
        ]))
        .unwrap();
        assert!(base.clone().merge(other_down).is_err());
        assert_eq!(base.clone().merge(base.clone()).unwrap(), base);
    }

    #[test]
    fn plan_up_down_and_noop() {
        let set = set3();
        let p = plan(&set, &[], None).unwrap();
        assert_eq!(p.from, None);
        assert_eq!(p.to, Some(3));
        let steps: Vec<(i64, Direction)> =
            p.steps.iter().map(|s| (s.version, s.direction)).collect();
        assert_eq!(
            steps,
            [(1, Direction::Up), (2, Direction::Up), (3, Direction::Up)]
        );

        let all: Vec<AppliedMigration> = set.migrations().iter().map(applied).collect();
        let p = plan(&set, &all, None).unwrap();
        assert!(p.is_empty());
        assert_eq!((p.from, p.to), (Some(3), Some(3)));

        // 3 has no down
        let e = plan(&set, &all, Some(1)).unwrap_err();
        assert!(matches!(e, MigrateError::MissingDown { version: 3 }), "{e}");

        let two = &all[..2];
        let p = plan(&set, two, Some(0)).unwrap();
        let steps: Vec<(i64, Direction)> =
            p.steps.iter().map(|s| (s.version, s.direction)).collect();
        assert_eq!(steps, [(2, Direction::Down), (1, Direction::Down)]);
        assert_eq!((p.from, p.to), (Some(2), None));

        let p = plan(&set, &all[..1], Some(2)).unwrap();
        assert_eq!(p.steps.len(), 1);
        assert_eq!((p.from, p.to), (Some(1), Some(2)));
    }

    #[test]
    fn plan_detects_drift_unknown_and_out_of_order() {
        let set = set3();
        let mut drifted = applied(set.get(1).unwrap());
        drifted.checksum = checksum("something else");
        let e = plan(&set, &[drifted], None).unwrap_err();
        assert!(
            matches!(e, MigrateError::ChecksumDrift { version: 1, .. }),
            "{e}"
        );
        assert_eq!(e.category(), "checksum_drift");

        let mut unknown = applied(set.get(1).unwrap());
        unknown.version = 9;
        let e = plan(&set, &[applied(set.get(1).unwrap()), unknown], None).unwrap_err();
        assert!(
            matches!(e, MigrateError::UnknownApplied { version: 9 }),
            "{e}"
        );

        // 1 and 3 applied, 2 pending
        let gap = [applied(set.get(1).unwrap()), applied(set.get(3).unwrap())];
        let e = plan(&set, &gap, None).unwrap_err();
        assert!(
            matches!(
                e,
                MigrateError::OutOfOrder {
                    version: 2,
                    latest_applied: 3
                }
            ),
            "{e}"
        );
        // an empty set cannot explain any history
        let e = plan(&MigrationSet::default(), &gap, None).unwrap_err();
        assert_eq!(e.category(), "unknown_applied");
        assert!(
            plan(&MigrationSet::default(), &[], None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn identifiers() {
        // The rules of `naming::Ident::existing` (one identifier type): keywords are valid names
        // (always quoted), `public` too (an existing schema), `$` is not.
        for ok in ["t", "_x", "tenant_0001", "user", "public", &"a".repeat(63)] {
            assert!(validate_identifier(ok).is_ok(), "{ok}");
        }
        assert_eq!(quote_identifier("user").unwrap(), "\"user\"");
        for bad in [
            "a$b",
            "",
            "A",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "é",
            &"a".repeat(64),
            "$a",
        ] {
            assert_eq!(
                validate_identifier(bad).unwrap_err().category(),
                "invalid_identifier",
                "{bad}"
            );
        }
        assert_eq!(quote_identifier("abc").unwrap(), "\"abc\"");
    }

    #[test]
    fn bundled_matches_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let loaded = MigrationSet::load_dir(&dir).unwrap();
        let bundled = MigrationSet::bundled();
        assert_eq!(bundled, loaded);
        // the baseline data model: seven layered migrations, all reversible
        let baseline: Vec<i64> = (1..=7).map(|i| 20250101000000 + i).collect();
        let versions: Vec<i64> = bundled.migrations().iter().map(|m| m.version).collect();
        assert_eq!(versions[..7], baseline[..]);
        assert!(bundled.migrations().iter().all(|m| m.down_sql.is_some()));
    }

    #[test]
    fn error_messages() {
        let e = MigrateError::Sql {
            version: 3,
            message: "relation \"x\" already exists".into(),
        };
        assert_eq!(
            e.to_string(),
            "migration 3 failed: relation \"x\" already exists"
        );
        assert_eq!(e.category(), "sql");
        assert!(!e.is_transient());
        // Only the connection, the lock and leadership are worth a retry: a broken history table
        // (the tenant's own doing) is not.
        let db = MigrateError::Database {
            operation: "reading the migration history",
            message: "relation does not exist".into(),
        };
        assert!(!db.is_transient());
        assert!(MigrateError::Fenced(crate::fence::Fenced).is_transient());
        assert!(
            MigrateError::Unavailable {
                operation: "x".into(),
                message: "y".into()
            }
            .is_transient()
        );
    }
}
