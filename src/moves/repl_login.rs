//! The replication login of a move: the role the target's subscription logs in to the source
//! with, instead of the operator's admin.
//!
//! A subscription keeps its connection string — password included — in the target's
//! `pg_subscription` for as long as it exists, and its workers use it on every (re)connect. With
//! the admin's login there, the admin password of the source would sit in another server's
//! catalog, readable by that server's superusers, for the whole copy. The move creates instead,
//! on the source, `<move object name>_repl`: `LOGIN REPLICATION BYPASSRLS` with a random password
//! (only its SCRAM verifier is sent, computed here), no other attribute, a connection limit, a
//! member of the tenant's roles (it reads the tenant's tables for the initial copy and nothing
//! else; `BYPASSRLS` so that a table the tenant put under row-level security is copied whole), and
//! marked as the move's. It is dropped with the move's replication slot (after the cut-over, on
//! roll-back, and again by every clean-up of the move: a crash in between).

use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames, quote_literal};
use crate::pg::{PgAdmin, ddl};

/// Connections the replication login may have at once: the apply worker's and the table
/// synchronisation workers' (`max_sync_workers_per_subscription`, default 2), with room for
/// reconnects.
const CONNECTION_LIMIT: i32 = 16;

/// The replication login of the move whose objects are named `move_name`.
pub fn role(move_name: &Ident) -> Result<Ident> {
    Ok(Ident::new(&format!("{}_repl", move_name.as_str()))?)
}

/// The comment marking a replication login as the move's (not the tenant's ownership marker: it
/// is no home of the tenant).
fn marker(names: &TenantNames) -> String {
    names
        .owner_marker
        .replacen("tenantdb.io/owner=", "tenantdb.io/move-replication=", 1)
}

/// Creates the replication login on the source (after dropping one a crashed attempt left) and
/// returns its password (for the subscription's connection string only; never logged).
pub async fn create(source: &PgAdmin, names: &TenantNames, role: &Ident) -> Result<String> {
    drop(source, names, role).await?;
    let password = crate::scram::generate_password();
    let verifier = crate::scram::verifier(&password)
        .ok_or_else(|| Error::Config("cannot compute a SCRAM verifier".into()))?;
    let lit = |v: &str| {
        quote_literal(v)
            .ok_or_else(|| Error::Config("unusable literal in a replication login".into()))
    };
    // One transaction: a role without its marker would be nobody's. The verifier is no password
    // (it cannot log in), and this session does not log statements either.
    let mut sql = format!(
        "SET LOCAL log_statement = 'none'; SET LOCAL log_min_error_statement = panic; \
         CREATE ROLE {role} LOGIN REPLICATION BYPASSRLS NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT \
         CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {pw}; \
         COMMENT ON ROLE {role} IS {marker}",
        pw = lit(&verifier)?,
        marker = lit(&marker(names))?,
    );
    // The tenant's roles the source has (the secondary exists once the tenant rotated; a table
    // made while logged in as it, after `RESET ROLE`, is its own).
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind(vec![
                names.role.as_str().to_string(),
                names.secondary_role.as_str().to_string(),
            ])
            .fetch_all(source.admin()?)
            .await?;
    for tenant_role in [&names.role, &names.secondary_role] {
        if existing.iter().any(|e| e == tenant_role.as_str()) {
            sql.push_str(&format!("; GRANT {tenant_role} TO {role}"));
        }
    }
    sqlx::raw_sql(ddl(format!("BEGIN; {sql}; COMMIT")))
        .execute(source.admin()?)
        .await
        .map_err(|e| {
            Error::unavailable(format!(
                "creating the move's replication login on the source failed: {}",
                crate::pg::redact(&e.to_string())
            ))
        })?;
    Ok(password)
}

/// Drops the move's replication login on the source if it exists (its sessions ended first). A
/// role of that name without the move's marker is a conflict (never touched).
pub async fn drop(source: &PgAdmin, names: &TenantNames, role: &Ident) -> Result<()> {
    let found: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role.as_str())
    .fetch_optional(source.admin()?)
    .await?;
    let Some(comment) = found else {
        return Ok(());
    };
    if comment.as_deref() != Some(marker(names).as_str()) {
        return Err(Error::Conflict(format!(
            "role {} exists on the source server and is not this move's",
            role.as_str()
        )));
    }
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(role.as_str())
        .execute(source.admin()?)
        .await?;
    sqlx::raw_sql(ddl(format!("DROP ROLE IF EXISTS {role}")))
        .execute(source.admin()?)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_login_is_named_after_the_move_and_fits() {
        let name = super::super::object_name("Tenant/ns/a", "2026-01-01T00:00:00Z").unwrap();
        let role = super::role(&name).unwrap();
        assert_eq!(role.as_str(), format!("{}_repl", name.as_str()));
        assert!(super::super::is_move_object(role.as_str()));
    }
}
