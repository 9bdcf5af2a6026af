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
//! fails, and [`MigrationSet::refuse_transaction_control`] refuses files from outside the binary
//! with transaction control at the start of a statement before anything runs.
//!
//! # How [`migrate`] runs
//!
//! Everything happens in **one transaction** on the caller's connection (which must not be in a
//! transaction already: the engine sends `BEGIN` and `COMMIT` itself):
//!
//! 1. the **opening**, one simple-query message (one exchange with the server): `BEGIN`,
//!    `SET TRANSACTION READ WRITE` (a tenant over its storage quota has
//!    `default_transaction_read_only`), `SET LOCAL statement_timeout = 0` (the tenant's
//!    `statementTimeout` quota is for its application, not for schema changes),
//!    `pg_advisory_xact_lock(lock_key)` (two migrations of one tenant serialize, and the second
//!    sees the first one's result), `SET LOCAL ROLE "<owner>"` and `SET LOCAL search_path TO
//!    "<schema>"` (objects are created by, and owned by, the tenant's role, in the tenant's
//!    schema; a session logged in as the rotation role `<owner>_b` acts as the owner too), the
//!    guard setting, and whether the history table [`HISTORY_TABLE`] exists; then, in a second
//!    exchange, the history is read, or the table is created when it is missing (a tenant never
//!    migrated; a missing schema is an error, for a dry run too). No DDL for a tenant that has a
//!    history and no procedural code (a `DO` block would make each new backend load PL/pgSQL);
//! 2. [`plan`] computes the steps; if the schema is up to date the transaction just ends (no DDL
//!    at all);
//! 3. otherwise up steps run in ascending order, down steps in descending order; each step is two
//!    exchanges: its SQL alone in one message (nothing of the engine's is parsed with it), then one
//!    statement that checks the guard (transaction and role still the engine's) and inserts or
//!    deletes its history row only if it holds (bound parameters: a prepare and an execute; if
//!    that statement fails, the guard is asked alone, so that a migration that left the
//!    transaction or role is reported as such);
//! 4. `COMMIT`.
//!
//! A one-step migration is thus 6 exchanges on top of the login (there were 16 before the
//! opening was one message); `bench/README.md` measures what that is worth.
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
//! most 63 bytes) and always double-quoted; the only other value formatted into the engine's SQL
//! is the integer lock key. Names, checksums and versions of migrations are bound parameters.
//!
//! # Layout
//!
//! `error` ([`MigrateError`] and the adapters classifying driver errors), `ident` (identifier
//! checks), `set` ([`Migration`], [`MigrationSet`]: files, checksums, merging, the bundled
//! baseline), `planner` (the pure [`plan`] function and its types), `history` (the history
//! table and [`status`]) and `runner` ([`migrate`]: the transaction, lock, steps and dry run).
//! Each depends only on the ones listed before it; this module only re-exports.

mod error;
mod history;
mod ident;
pub mod lexer;
mod planner;
mod runner;
mod set;
#[cfg(test)]
mod tests;

pub use error::MigrateError;
pub(crate) use error::{db_err, lock_err};
pub use history::{HISTORY_TABLE, MigrationTarget, status};
pub use ident::{quote_identifier, validate_identifier};
pub use planner::{AppliedMigration, Direction, MigrationPlan, PlannedStep, plan};
pub use runner::{MigrationReport, migrate};
pub use set::{Migration, MigrationSet, checksum};
