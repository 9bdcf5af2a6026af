//! The schema copy of a move: `pg_dump --schema-only` of the tenant's database (or schema) on the
//! source, piped into `psql` on the target in one transaction — every object, including those the
//! tenant created itself, with owners, grants and comments. The tools log in as the admin with
//! the password in their environment, never in their arguments; their error output is reported
//! with passwords removed.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::sql::Scope;
use crate::error::{Error, Result};
use crate::pg::PgAdmin;

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

/// Copies the schema of `source_scope` on `source` into `target_scope` on `target` (which must
/// exist and hold nothing of it yet).
pub async fn copy_schema(
    source: &PgAdmin,
    source_scope: &Scope,
    target: &PgAdmin,
    target_scope: &Scope,
) -> Result<()> {
    crate::fence::check()?;
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
    let mut dump = dump
        .spawn()
        .map_err(|e| Error::Config(format!("cannot run pg_dump: {e}")))?;
    let dump_out = dump
        .stdout
        .take()
        .ok_or_else(|| Error::Config("pg_dump has no output".into()))?;
    let dump_stdin: Stdio = dump_out
        .try_into()
        .map_err(|e| Error::Config(format!("cannot pipe pg_dump into psql: {e}")))?;
    let mut restore = Command::new(tool("psql"));
    restore
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"])
        .env_clear()
        .envs(target.admin_login().env(target_scope.database.as_str()))
        .stdin(dump_stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut restore = restore
        .spawn()
        .map_err(|e| Error::Config(format!("cannot run psql: {e}")))?;
    let read = |e: Option<tokio::process::ChildStderr>| async move {
        let mut out = String::new();
        if let Some(mut e) = e {
            let _ = e.read_to_string(&mut out).await;
        }
        out
    };
    let (dump_err, restore_err) =
        tokio::join!(read(dump.stderr.take()), read(restore.stderr.take()));
    let io = |e: std::io::Error| Error::Config(format!("schema copy: {e}"));
    let dumped = dump.wait().await.map_err(io)?;
    let restored = restore.wait().await.map_err(io)?;
    let clean = |s: &str| crate::pg::redact(&crate::error::first_line(s.trim()));
    if !dumped.success() {
        return Err(Error::unavailable(format!(
            "pg_dump of the source failed: {}",
            clean(&dump_err)
        )));
    }
    if !restored.success() {
        return Err(Error::unavailable(format!(
            "restoring the schema on the target failed: {}",
            clean(&restore_err)
        )));
    }
    Ok(())
}
