//! The cut-over's write freeze on the source: the fence (logins off, sessions ended and gone),
//! the session check, the unfence, and the wait until the target confirmed the source's WAL.
//! Re-exported by [`super::sql`], where the rest of a move's SQL is.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames};
use crate::pg::{PgAdmin, ddl};

/// Ends every session of the tenant's roles and disables their login (both roles).
///
/// Both `ALTER ROLE`s go in one statement string, which PostgreSQL runs as one transaction: a
/// fence cut short (the operator killed) leaves both roles as they were or both fenced, never
/// one of them — a cut-over resumed on such a source would take the login it still sees for
/// the only one and enable just that one on the target.
pub async fn fence(pg: &PgAdmin, names: &TenantNames) -> Result<()> {
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind([names.role.as_str(), names.secondary_role.as_str()])
            .fetch_all(pg.admin()?)
            .await?;
    let roles: Vec<&Ident> = [&names.role, &names.secondary_role]
        .into_iter()
        .filter(|r| existing.iter().any(|e| e == r.as_str()))
        .collect();
    alter_login(pg, &roles, "NOLOGIN").await?;
    terminate(pg, names).await
}

/// `ALTER ROLE <role> <login>` for every role, in one statement string: one transaction, so a
/// fence or an unfence cut short changes all of the roles or none.
async fn alter_login(pg: &PgAdmin, roles: &[&Ident], login: &str) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let alters: Vec<String> = roles
        .iter()
        .map(|r| format!("ALTER ROLE {r} {login}"))
        .collect();
    sqlx::raw_sql(ddl(alters.join("; ")))
        .execute(pg.admin()?)
        .await?;
    Ok(())
}

/// How long [`terminate`] waits for the tenant's sessions to exit.
const TERMINATE_WAIT: Duration = Duration::from_secs(30);

/// Ends every session of the tenant's roles and waits until they have exited: a backend that was
/// signalled but is still finishing a commit could write WAL after the catch-up position is read,
/// so "signalled" is not "fenced". An error (retried) when sessions remain after
/// [`TERMINATE_WAIT`].
pub async fn terminate(pg: &PgAdmin, names: &TenantNames) -> Result<()> {
    let roles = vec![
        names.role.as_str().to_string(),
        names.secondary_role.as_str().to_string(),
    ];
    let deadline = Instant::now() + TERMINATE_WAIT;
    loop {
        // Signals the sessions still there and counts them (pg_terminate_backend returns before
        // the backend exits; the next pass sees whether it did).
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE usename = ANY($1) AND pid <> pg_backend_pid()) t",
        )
        .bind(&roles)
        .fetch_one(pg.admin()?)
        .await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::database(format!(
                "{left} session(s) of the tenant's roles did not exit within {} s of being terminated",
                TERMINATE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sessions of the tenant's roles on `pg` now. After [`fence`] and the catch-up this must be 0:
/// a backend that passed its login check just before `NOLOGIN` committed shows up in
/// `pg_stat_activity` only a moment later, after [`terminate`] may have looked, and could write
/// after the catch-up position was read.
pub async fn sessions(pg: &PgAdmin, names: &TenantNames) -> Result<i64> {
    let roles = vec![
        names.role.as_str().to_string(),
        names.secondary_role.as_str().to_string(),
    ];
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
    )
    .bind(&roles)
    .fetch_one(pg.admin()?)
    .await?;
    Ok(n)
}

/// Enables login of the given roles, all in one statement string (one transaction, as the
/// fence): an unfence cut short leaves all of them fenced or none, never a part — a cut-over
/// resumed after a partial one would record the part as the tenant's logins.
pub async fn unfence(pg: &PgAdmin, roles: &[&Ident]) -> Result<()> {
    alter_login(pg, roles, "LOGIN").await
}

/// Waits until the slot's consumer confirmed everything the source wrote up to now (after the
/// fence: everything the tenant committed). `false` after `timeout`. Up to the WAL *insert*
/// position: with `synchronous_commit = off` a commit is acknowledged before its WAL is written,
/// and `pg_current_wal_lsn()` (the write position) can be short of the tenant's last commits.
pub async fn wait_caught_up(source: &PgAdmin, name: &Ident, timeout: Duration) -> Result<bool> {
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(source.admin()?)
        .await?;
    // Everything up to that position flushed now: a transactional logical message committed
    // with a local synchronous commit flushes the WAL before its commit record. WAL inserted but
    // not flushed (the aborts of the sessions the fence ended, other sessions' asynchronous
    // commits) would reach the target only after the source's WAL writer cycle, inside the write
    // freeze. One statement (its own transaction: an error leaves no transaction open on the
    // pooled connection); `local`, not `on`: no wait for the source's synchronous standbys. No
    // subscriber asks for messages: nothing of it is sent or applied.
    sqlx::query(
        "SELECT set_config('synchronous_commit', 'local', true), \
                pg_logical_emit_message(true, 'tenantdb', 'catch-up')::text",
    )
    .execute(source.admin()?)
    .await?;
    let deadline = Instant::now() + timeout;
    loop {
        let done: Option<Option<bool>> = sqlx::query_scalar(
            "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2",
        )
        .bind(&lsn)
        .bind(name.as_str())
        .fetch_optional(source.admin()?)
        .await?;
        match done {
            Some(Some(true)) => return Ok(true),
            None => {
                return Err(Error::unavailable(format!(
                    "replication slot {} is missing on the source",
                    name.as_str()
                )));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
