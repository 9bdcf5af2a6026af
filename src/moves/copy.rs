//! The schema copy of a move: `pg_dump --schema-only` of the tenant's database (or schema) on the
//! source, piped into `psql` on the target in one transaction — every object, including those the
//! tenant created itself, with owners, grants and comments.
//!
//! The dump's text is the tenant's DDL, so it is **not** restored by the admin: `psql` logs in as
//! a short-lived *restore role* the admin creates on the target for this copy
//! (`<move object name>_restore`: LOGIN with a random password whose SCRAM verifier is computed
//! here, no attributes, one connection, valid for an hour, a member of the tenant's two roles,
//! and for a `schema` tenant `CREATE` on the shared database so that it can create the schema).
//! What it creates is the tenant's (the dump's `ALTER … OWNER TO`), anything left (an extension)
//! is handed to the tenant's role by the admin, and the role is dropped after the copy and again
//! by every clean-up of the move (a crash in between). `pg_dump` reads the source as the admin
//! (it reads catalogs; it runs nothing of the tenant's). The tools get their passwords in their
//! environment, never in their arguments; their error output is reported with passwords removed.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use k8s_openapi::jiff::{Timestamp, ToSpan};

use super::roles::{self, Found, Kind};
use super::sql::Scope;
use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames, quote_literal};
use crate::pg::{PgAdmin, ddl};

/// Where `pg_dump` and `psql` are: `TENANTDB_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian), else `PATH`.
pub fn tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TENANTDB_PG_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(name);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((major, p))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map_or_else(|| PathBuf::from(name), |(_, p)| p)
}

/// The restore role of the move whose objects are named `move_name` (see [`super::roles`]).
pub fn restore_role(move_name: &Ident) -> Result<Ident> {
    roles::name(Kind::Restore, move_name)
}

/// Creates the restore role on the target (after dropping one a crashed attempt left) and
/// returns its password.
async fn create_restore_role(
    target: &PgAdmin,
    scope: &Scope,
    names: &TenantNames,
    role: &Ident,
) -> Result<String> {
    let found = drop_restore_role(target, scope, names, role).await?;
    roles::refuse_not_ours(Kind::Restore, role, found)?;
    let password = crate::scram::generate_password();
    let verifier = crate::scram::verifier(&password)
        .ok_or_else(|| Error::Config("cannot compute a SCRAM verifier".into()))?;
    let lit = |v: &str| {
        quote_literal(v).ok_or_else(|| Error::Config("unusable literal in a restore role".into()))
    };
    let until = Timestamp::now()
        .checked_add(1.hour())
        .map_err(|e| Error::Config(format!("restore role validity: {e}")))?;
    let mut sql = format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT 1 PASSWORD {pw} VALID UNTIL {until}; \
         COMMENT ON ROLE {role} IS {marker}",
        pw = lit(&verifier)?,
        until = lit(&until.to_string())?,
        marker = lit(&roles::marker(Kind::Restore, names))?,
    );
    // The tenant's roles the target has (the secondary exists once the tenant rotated).
    let existing: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)")
            .bind(vec![
                names.role.as_str().to_string(),
                names.secondary_role.as_str().to_string(),
            ])
            .fetch_all(target.admin()?)
            .await?;
    for tenant_role in [&names.role, &names.secondary_role] {
        if existing.iter().any(|e| e == tenant_role.as_str()) {
            sql.push_str(&format!("; GRANT {tenant_role} TO {role}"));
        }
    }
    if scope.schema.is_some() {
        sql.push_str(&format!(
            "; GRANT CREATE ON DATABASE {} TO {role}",
            scope.database
        ));
    }
    // One transaction: a role without its marker would be nobody's.
    sqlx::raw_sql(ddl(sql)).execute(target.admin()?).await?;
    Ok(password)
}

/// Drops the move's restore role on the target if it exists: whatever it still owns in the
/// scope's database is handed to the tenant's role, its privileges revoked. A role of that name
/// without the move's marker is not the move's: left alone (with a warning), so that it blocks
/// no roll-back or clean-up. Returns what was found under the name.
pub async fn drop_restore_role(
    target: &PgAdmin,
    scope: &Scope,
    names: &TenantNames,
    role: &Ident,
) -> Result<Found> {
    let found = roles::find(target, Kind::Restore, names, role).await?;
    if found != Found::Ours {
        return Ok(found);
    }
    let db_exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(scope.database.as_str())
        .fetch_optional(target.admin()?)
        .await?;
    if db_exists.is_some() {
        let mut c = super::sql::connect(target, scope).await?;
        let r = sqlx::raw_sql(ddl(format!(
            "REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role}",
            owner = names.role
        )))
        .execute(&mut c)
        .await;
        {
            use sqlx::Connection;
            let _ = c.close().await;
        }
        r?;
    }
    sqlx::raw_sql(ddl(format!("DROP ROLE IF EXISTS {role}")))
        .execute(target.admin()?)
        .await?;
    Ok(found)
}

/// Copies the schema of `source_scope` on `source` into `target_scope` on `target` (which must
/// exist and hold nothing of it yet), restored there by the move's restore role `role` (see the
/// module documentation; `names` are the tenant's names on the target).
pub async fn copy_schema(
    source: &PgAdmin,
    source_scope: &Scope,
    target: &PgAdmin,
    target_scope: &Scope,
    names: &TenantNames,
    role: &Ident,
) -> Result<()> {
    crate::fence::check()?;
    let password = create_restore_role(target, target_scope, names, role).await?;
    let copied = run_tools(source, source_scope, target, target_scope, role, password).await;
    // Dropped whatever the copy did (and by the next attempt or the move's clean-up after a crash).
    let dropped = drop_restore_role(target, target_scope, names, role).await;
    copied?;
    dropped.map(|_| ())
}

async fn run_tools(
    source: &PgAdmin,
    source_scope: &Scope,
    target: &PgAdmin,
    target_scope: &Scope,
    role: &Ident,
    password: String,
) -> Result<()> {
    let mut dump = Command::new(tool("pg_dump"));
    dump.args([
        "--schema-only",
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
    ]);
    if let Some(s) = &source_scope.schema {
        dump.arg(format!("--schema=\"{}\"", s.as_str()));
    }
    dump.env_clear()
        .envs(source.admin_login().env(source_scope.database.as_str()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let dump = dump
        .spawn()
        .map_err(|e| Error::Config(format!("cannot run pg_dump: {e}")))?;
    // Schema only: small enough to hold, and read whole so that its header can be fitted to the
    // target (below) before any of it runs.
    let io = |e: std::io::Error| Error::Config(format!("schema copy: {e}"));
    let dumped = dump.wait_with_output().await.map_err(io)?;
    let clean = |s: &str| crate::pg::redact(&crate::error::first_line(s.trim()));
    if !dumped.status.success() {
        return Err(Error::unavailable(format!(
            "pg_dump of the source failed: {}",
            clean(&String::from_utf8_lossy(&dumped.stderr))
        )));
    }
    let script = transactional(fit_header(&dumped.stdout)?);
    let mut restore = Command::new(tool("psql"));
    restore
        .args(RESTORE_ARGS)
        .env_clear()
        .envs(restore_login(target, role, password).env(target_scope.database.as_str()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut restore = restore
        .spawn()
        .map_err(|e| Error::Config(format!("cannot run psql: {e}")))?;
    let stdin = restore.stdin.take();
    let write = async move {
        if let Some(mut i) = stdin {
            // A psql that stopped early (an error) closes its input: its exit status tells.
            let _ = i.write_all(&script).await;
            let _ = i.shutdown().await;
        }
    };
    let stderr = restore.stderr.take();
    let read = async move {
        let mut out = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut out).await;
        }
        out
    };
    let ((), restore_err) = tokio::join!(write, read);
    let restored = restore.wait().await.map_err(io)?;
    if !restored.success() {
        let why = clean(&restore_err);
        return Err(match sqlstate(&restore_err) {
            // Refused by the server for what the statement is (class 42: a privilege the
            // tenant's role lacks, an object that is not its own): the same every attempt.
            Some(code) if code.starts_with("42") => Error::InvalidSpec(format!(
                "restoring the schema on the target failed: the tenant's objects need more than its own role's rights there: {why}"
            )),
            _ => Error::unavailable(format!("restoring the schema on the target failed: {why}")),
        });
    }
    Ok(())
}

/// `psql`'s options for the restore: no `.psqlrc`, stop at the first error, errors with their
/// SQLSTATE. Not `--single-transaction`: at the end of its input psql commits what it read, and
/// input cut short (the operator killed while writing it; psql lives on) would commit part of the
/// schema. The script carries its own transaction instead ([`transactional`]).
pub const RESTORE_ARGS: [&str; 6] = [
    "-X",
    "-q",
    "-v",
    "ON_ERROR_STOP=1",
    "-v",
    "VERBOSITY=verbose",
];

/// The restore script in one transaction that only its last line commits: input cut short never
/// reaches the `COMMIT`, and the server rolls back when psql disconnects.
pub fn transactional(script: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(script.len() + 32);
    out.extend_from_slice(b"BEGIN;\n");
    out.extend_from_slice(&script);
    if !script.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(b"COMMIT;\n");
    out
}

/// The dump with the settings of its header that the target may not know removed: `pg_dump` 17
/// and newer write `SET transaction_timeout = 0;`, which PostgreSQL 15 and 16 reject (the
/// image ships the newest client, servers may be older). Only the header is looked at (the lines
/// before the first object: comments, `\restrict`, `SET` and `SELECT pg_catalog.set_config`), so
/// nothing of the tenant's objects can be changed; the setting is the default anyway.
///
/// A dump without `\restrict` in its header is refused: `pg_dump` older than 17.6, 16.10, 15.14
/// (CVE-2025-8714) lets object names the tenant chose inject `psql` meta-commands (such as `\!`,
/// a shell in the operator's container) into the restore.
fn fit_header(dump: &[u8]) -> Result<Vec<u8>> {
    const DROP: &[u8] = b"SET transaction_timeout = 0;";
    let mut out = Vec::with_capacity(dump.len());
    let mut in_header = true;
    let mut restricted = false;
    for line in dump.split_inclusive(|b| *b == b'\n') {
        if in_header {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let header = text.is_empty()
                || text.starts_with(b"--")
                || text.starts_with(b"\\restrict ")
                || text.starts_with(b"SET ")
                || text.starts_with(b"SELECT pg_catalog.set_config(");
            if !header {
                in_header = false;
            } else if text == DROP {
                continue;
            } else if text.starts_with(b"\\restrict ") {
                restricted = true;
            }
        }
        out.extend_from_slice(line);
    }
    if !restricted {
        return Err(Error::Config(format!(
            "{} is too old: its dumps do not \\restrict psql meta-commands (CVE-2025-8714); use PostgreSQL 17.6, 16.10, 15.14 or newer",
            tool("pg_dump").display()
        )));
    }
    Ok(out)
}

/// The SQLSTATE of the first error `psql -v VERBOSITY=verbose` reported (`ERROR:  42501: …`).
fn sqlstate(stderr: &str) -> Option<&str> {
    let rest = &stderr[stderr.find("ERROR:")? + "ERROR:".len()..];
    let code = rest.trim_start().get(..5)?;
    code.chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        .then_some(code)
}

/// The target's login (host, port, TLS) as the restore role.
fn restore_login(target: &PgAdmin, role: &Ident, password: String) -> crate::pg::login::AdminLogin {
    let mut login = target.admin_login();
    login.user = role.as_str().to_string();
    login.password = Some(password);
    login
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sqlstate_of_psql_errors_is_read() {
        assert_eq!(
            super::sqlstate(
                "psql:<stdin>:40: ERROR:  42501: must be member of role \"postgres\"\nLOCATION:  check_is_member_of_role"
            ),
            Some("42501")
        );
        assert_eq!(
            super::sqlstate("psql: error: connection to server failed"),
            None
        );
        assert_eq!(super::sqlstate("ERROR:  must be owner"), None);
    }

    #[test]
    fn only_the_headers_transaction_timeout_is_dropped() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET statement_timeout = 0;\nSET transaction_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\nCREATE FUNCTION public.f() RETURNS void LANGUAGE sql AS $$\nSET transaction_timeout = 0;\n$$;\n";
        let out = String::from_utf8(super::fit_header(dump.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out.matches("SET transaction_timeout = 0;").count(),
            1,
            "{out}"
        );
        assert!(
            out.contains("AS $$\nSET transaction_timeout = 0;\n$$;"),
            "{out}"
        );
        assert!(out.starts_with("--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET statement_timeout = 0;\nSELECT"), "{out}");
        let plain = "\\restrict k\nSET a = 1;\nCREATE TABLE t ();\n";
        assert_eq!(
            super::fit_header(plain.as_bytes()).unwrap(),
            plain.as_bytes()
        );
        // No \restrict: a pg_dump open to meta-command injection.
        let old = "SET a = 1;\nCREATE TABLE t ();\n\\restrict x\n";
        assert!(super::fit_header(old.as_bytes()).is_err());
    }
}
