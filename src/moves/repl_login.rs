//! The replication login of a move: the role the target's subscription logs in to the source
//! with, instead of the operator's admin.
//!
//! A subscription keeps its connection string — password included — in the target's
//! `pg_subscription` for as long as it exists, and its workers use it on every (re)connect. With
//! the admin's login there, the admin password of the source would sit in another server's
//! catalog, readable by that server's superusers, for the whole copy. The move creates instead,
//! on the source, `<move object name>_repl`: `LOGIN REPLICATION BYPASSRLS` with a random password
//! (only its SCRAM verifier is sent, computed here, from a session that logs no statements), no
//! other attribute, a connection limit, marked as the move's, and granted only what the initial
//! copy reads: `CONNECT` on the scope's database, `USAGE` on the schemas in scope and `SELECT` on
//! their tables (not membership in the tenant's roles: that would let it write, and the write
//! freeze fences only the tenant's logins). `BYPASSRLS` so that a table the tenant put under
//! row-level security is copied whole. The catalog comparison ignores these grants
//! (`pg::fingerprint`). The login is dropped with the move's replication slot (after the cut-over,
//! on roll-back, before the schema copy of a `Preparing` attempt, and by every clean-up of the
//! move: a crash in between), its grants first (`DROP OWNED BY` in the scope's database).

use sqlx::Connection;

use super::roles::{self, Found, Kind};
use super::sql::Scope;
use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames, quote_literal};
use crate::pg::{PgAdmin, ddl};

/// Connections the replication login may have at once: the apply worker's and the table
/// synchronisation workers' (`max_sync_workers_per_subscription`, default 2), with room for
/// reconnects.
const CONNECTION_LIMIT: i32 = 16;

/// The replication login of the move whose objects are named `move_name` (see
/// [`super::roles`]).
pub fn role(move_name: &Ident) -> Result<Ident> {
    roles::name(Kind::Replication, move_name)
}

/// Creates the replication login on the source (after dropping one a crashed attempt left) with
/// read access to the scope, and returns its password (for the subscription's connection string
/// only; never logged). A role of that name that is not the move's is a conflict.
pub async fn create(
    source: &PgAdmin,
    scope: &Scope,
    names: &TenantNames,
    role: &Ident,
) -> Result<String> {
    let found = drop(source, scope, names, role).await?;
    roles::refuse_not_ours(Kind::Replication, role, found)?;
    let password = crate::scram::generate_password();
    let verifier = crate::scram::verifier(&password)
        .ok_or_else(|| Error::Config("cannot compute a SCRAM verifier".into()))?;
    let lit = |v: &str| {
        quote_literal(v)
            .ok_or_else(|| Error::Config("unusable literal in a replication login".into()))
    };
    let grants = match &scope.schema {
        Some(schema) => format!(
            "GRANT USAGE ON SCHEMA {schema} TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"
        ),
        // Every schema of the tenant's database (the publication is FOR ALL TABLES); names from
        // the catalog, quoted by the server.
        None => format!(
            "DO $grants$ DECLARE s text; BEGIN \
               FOR s IN SELECT nspname FROM pg_namespace \
                         WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\\_%' LOOP \
                 EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, {r}); \
                 EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, {r}); \
               END LOOP; END $grants$",
            r = lit(role.as_str())?,
        ),
    };
    // One implicit transaction (a role without its marker would be nobody's), in a session of
    // its own whose statements are not logged (decided when a query string is parsed: the
    // settings go first, in a message of their own). The verifier is no password (it cannot log
    // in), but it is not for the log either.
    let mut c = super::sql::connect(source, scope).await?;
    sqlx::raw_sql(
        "SET log_statement = 'none'; SET log_min_error_statement = panic; \
         SET log_min_duration_statement = -1",
    )
    .execute(&mut c)
    .await?;
    let r = sqlx::raw_sql(ddl(format!(
        "CREATE ROLE {role} LOGIN REPLICATION BYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE \
         NOINHERIT CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {pw}; \
         COMMENT ON ROLE {role} IS {marker}; GRANT CONNECT ON DATABASE {db} TO {role}; {grants}",
        pw = lit(&verifier)?,
        marker = lit(&roles::marker(Kind::Replication, names))?,
        db = scope.database,
    )))
    .execute(&mut c)
    .await;
    let _ = c.close().await;
    r.map_err(|e| {
        Error::unavailable(format!(
            "creating the move's replication login on the source failed: {}",
            crate::pg::redact(&e.to_string())
        ))
    })?;
    Ok(password)
}

/// Drops the move's replication login on the source if it exists: its sessions ended, its
/// grants in the scope's database (and on the database) revoked, then the role. A role of that
/// name without the move's marker is not the move's: left alone (with a warning), so that it
/// blocks no clean-up. Returns what was found under the name.
pub async fn drop(
    source: &PgAdmin,
    scope: &Scope,
    names: &TenantNames,
    role: &Ident,
) -> Result<Found> {
    let found = roles::find(source, Kind::Replication, names, role).await?;
    if found != Found::Ours {
        return Ok(found);
    }
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(role.as_str())
        .execute(source.admin()?)
        .await?;
    let db_exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(scope.database.as_str())
        .fetch_optional(source.admin()?)
        .await?;
    if db_exists.is_some() {
        let mut c = super::sql::connect(source, scope).await?;
        let r = sqlx::raw_sql(ddl(format!("DROP OWNED BY {role}")))
            .execute(&mut c)
            .await;
        let _ = c.close().await;
        r?;
    }
    sqlx::raw_sql(ddl(format!("DROP ROLE IF EXISTS {role}")))
        .execute(source.admin()?)
        .await?;
    Ok(found)
}
