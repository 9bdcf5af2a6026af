//! `psql TENANT [-- psql args]`: psql as the tenant, with the credentials Secret's values.
//!
//! The password never appears on a command line or in the environment: it goes into a private
//! password file (mode 0600, created exclusively in the temporary directory) named by
//! `PGPASSFILE`; host, port, database and user go into `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`
//! (so psql arguments after `--` still override them). The file is removed when psql exits,
//! also on Ctrl-C (which psql handles itself: the plugin waits for it) and when the plugin is
//! terminated or hung up (it ends psql first). Only a SIGKILL of the plugin leaves it behind
//! (private to the user, in the temporary directory).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::distr::{Alphanumeric, SampleString};

use crate::cluster::Credentials;
use crate::error::{Context, Result};

/// A password file that exists as long as the value does.
#[derive(Debug)]
pub struct PassFile {
    path: PathBuf,
}

impl PassFile {
    /// Writes `creds` as a one-line pgpass file (any database of the tenant's server and user).
    pub fn create(dir: &Path, creds: &Credentials) -> Result<PassFile> {
        let path = dir.join(format!(
            "kubectl-tenantdb-{}-{}.pgpass",
            std::process::id(),
            Alphanumeric.sample_string(&mut rand::rng(), 12)
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating the password file {}", path.display()))?;
        let file = PassFile { path };
        f.write_all(pgpass_line(creds).as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing the password file {}", file.path.display()))?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PassFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pgpass field: `\` and `:` escaped with a backslash.
fn field(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// `host:port:*:user:password` (the database is a wildcard so that `\c otherdb` works too).
pub fn pgpass_line(c: &Credentials) -> String {
    format!(
        "{}:{}:*:{}:{}\n",
        field(&c.host),
        c.port,
        field(&c.username),
        field(&c.password)
    )
}

/// The psql command: connection parameters in the environment, the password only in `passfile`.
pub fn command(psql: &Path, c: &Credentials, passfile: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(psql);
    cmd.args(args)
        .env("PGHOST", &c.host)
        .env("PGPORT", c.port.to_string())
        .env("PGDATABASE", &c.database)
        .env("PGUSER", &c.username)
        .env("PGPASSFILE", passfile)
        .env("PGAPPNAME", "kubectl-tenantdb")
        // A password in the caller's environment would take precedence over the file.
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    cmd
}

/// Runs psql and returns its exit code. Ctrl-C goes to psql (same process group); the plugin keeps
/// waiting so that the password file is removed afterwards.
pub async fn run(psql: &Path, c: &Credentials, args: &[String]) -> Result<i32> {
    let file = PassFile::create(&std::env::temp_dir(), c)?;
    let mut child = tokio::process::Command::from(command(psql, c, file.path(), args))
        .spawn()
        .with_context(|| format!("starting {}", psql.display()))?;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let code = loop {
        tokio::select! {
            st = child.wait() => {
                let st = st.with_context(|| format!("waiting for {}", psql.display()))?;
                break st.code().unwrap_or(1);
            }
            // Registering the handler keeps SIGINT from ending the plugin; psql gets it too
            // (same process group) and cancels its query.
            _ = tokio::signal::ctrl_c() => continue,
            // Terminated or hung up: end psql too, then remove the file.
            Some(()) = term.recv() => {
                let _ = child.kill().await;
                break 128 + 15;
            }
            Some(()) = hup.recv() => {
                let _ = child.kill().await;
                break 128 + 1;
            }
        }
    };
    drop(file);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn creds() -> Credentials {
        Credentials {
            host: "db.example".into(),
            port: 5432,
            database: "crm".into(),
            username: "tenant_a".into(),
            password: "s3cr:t\\pw".into(),
        }
    }

    #[test]
    fn the_password_is_neither_in_the_arguments_nor_in_the_environment() {
        let c = creds();
        let cmd = command(
            Path::new("psql"),
            &c,
            Path::new("/tmp/x.pgpass"),
            &["-c".into(), "select 1".into()],
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["-c", "select 1"]);
        for (k, v) in cmd.get_envs() {
            let v = v.map(|v| v.to_string_lossy().into_owned());
            assert!(
                !v.as_deref().unwrap_or("").contains("s3cr"),
                "{k:?} carries the password"
            );
            if k == "PGPASSWORD" {
                assert_eq!(v, None, "PGPASSWORD must be removed, not set");
            }
        }
        let env = |k: &str| {
            cmd.get_envs()
                .find(|(n, _)| *n == k)
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(env("PGPASSFILE").as_deref(), Some("/tmp/x.pgpass"));
        assert_eq!(env("PGUSER").as_deref(), Some("tenant_a"));
        assert_eq!(env("PGDATABASE").as_deref(), Some("crm"));
    }

    #[test]
    fn the_password_file_is_private_escaped_and_removed() {
        let dir = std::env::temp_dir();
        let file = PassFile::create(&dir, &creds()).unwrap();
        let path = file.path().to_path_buf();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "db.example:5432:*:tenant_a:s3cr\\:t\\\\pw\n"
        );
        drop(file);
        assert!(!path.exists(), "the password file outlived the session");
    }
}
