//! How external tools (`pg_dump`, `psql`) and other servers (a subscription's connection) log in
//! to a server as the operator's admin: [`AdminLogin`]. Its `Debug` never shows the password;
//! the password goes to tools through the environment (`PGPASSWORD`), never their arguments.

use std::fmt;
use std::path::{Path, PathBuf};

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The admin's login to one server.
#[derive(Clone)]
pub struct AdminLogin {
    /// Host name, IP address or socket directory.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Admin user.
    pub user: String,
    /// Password, if any.
    pub password: Option<String>,
    /// libpq `sslmode`.
    pub sslmode: &'static str,
    /// The CA certificate file the server's certificate is verified against (`verify-ca`,
    /// `verify-full`), on the operator's file system; `None`: libpq's default.
    pub root_cert: Option<PathBuf>,
}

impl fmt::Debug for AdminLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminLogin")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sslmode", &self.sslmode)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}

impl AdminLogin {
    /// The login of `options` with `password`, verifying the server against `root_cert`.
    pub fn of(
        options: &PgConnectOptions,
        password: Option<String>,
        root_cert: Option<&Path>,
    ) -> Self {
        let host = match options.get_socket() {
            Some(dir) => dir.to_string_lossy().into_owned(),
            None => options.get_host().to_string(),
        };
        Self {
            host,
            port: options.get_port(),
            user: options.get_username().to_string(),
            password,
            sslmode: match options.get_ssl_mode() {
                PgSslMode::Disable => "disable",
                PgSslMode::Allow => "allow",
                PgSslMode::Prefer => "prefer",
                PgSslMode::Require => "require",
                PgSslMode::VerifyCa => "verify-ca",
                PgSslMode::VerifyFull => "verify-full",
            },
            root_cert: root_cert.map(Path::to_path_buf),
        }
    }

    /// The environment of a libpq tool connecting to `database` (`PGHOST`, …, `PGPASSWORD`).
    pub fn env(&self, database: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("PGHOST", self.host.clone()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", database.to_string()),
            ("PGSSLMODE", self.sslmode.to_string()),
            ("PGAPPNAME", "tenantdb-move".to_string()),
            ("PGCONNECT_TIMEOUT", "10".to_string()),
        ];
        if let Some(c) = &self.root_cert {
            env.push(("PGSSLROOTCERT", c.to_string_lossy().into_owned()));
        }
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.clone()));
        }
        env
    }

    /// The same server, TLS and CA, logged in as `user` with `password` (a move's replication
    /// login, see `moves::repl_login`).
    pub fn as_user(&self, user: &str, password: String) -> AdminLogin {
        AdminLogin {
            user: user.to_string(),
            password: Some(password),
            ..self.clone()
        }
    }

    /// A libpq connection string to `database` (for `CREATE SUBSCRIPTION … CONNECTION`): every
    /// value single-quoted with `\` and `'` escaped. Holds the password: never log it. It is
    /// used by *another server* (the subscriber's walreceiver), so it carries no `sslrootcert`:
    /// a file of the operator's is not on that server; with `verify-ca`/`verify-full` the
    /// subscriber's PostgreSQL must trust the CA itself (docs/moves.md).
    pub fn conninfo(&self, database: &str) -> String {
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = vec![
            format!("host={}", q(&self.host)),
            format!("port={}", self.port),
            format!("user={}", q(&self.user)),
            format!("dbname={}", q(database)),
            format!("sslmode={}", self.sslmode),
            "application_name='tenantdb-move'".to_string(),
            "connect_timeout=10".to_string(),
        ];
        if let Some(p) = &self.password {
            parts.push(format!("password={}", q(p)));
        }
        parts.join(" ")
    }
}

/// The CA certificate `pem` as a file tools can be pointed at (`PGSSLROOTCERT`): under the
/// temporary directory, named by its SHA-256 (a certificate is public; the same CA is one file;
/// written once, atomically).
pub fn root_cert_file(pem: &[u8]) -> std::io::Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(pem);
    let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::DirBuilderExt;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join("tenantdb-ca");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join(format!("{name}.pem"));
    if std::fs::read(&path).is_ok_and(|have| have == pem) {
        return Ok(path);
    }
    // A name of its own per write (two servers with one CA registering at once): the final
    // name appears only complete.
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
    std::fs::write(&tmp, pem)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The value of query parameter `name` of a `postgres://…?a=b&…` URL, percent-decoded.
pub(crate) fn url_param(url: &str, name: &str) -> Option<String> {
    let query = &url[url.find('?')? + 1..];
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v)).flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The password of a `postgres://user:password@…` URL, percent-decoded.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, pw) = userinfo.split_once(':')?;
    percent_decode(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_and_the_ca_file() {
        let url = "postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem";
        assert_eq!(
            url_param(url, "sslrootcert").as_deref(),
            Some("/etc/ca x.pem")
        );
        assert_eq!(url_param(url, "sslmode").as_deref(), Some("verify-full"));
        assert_eq!(url_param(url, "sslcert"), None);
        assert_eq!(url_param("postgres://u@h/db", "sslrootcert"), None);
        assert_eq!(
            url_param("postgres://u@h/db?x=%é", "x").as_deref(),
            Some("%é")
        );
        let pem = b"-----BEGIN CERTIFICATE-----\nunit test\n-----END CERTIFICATE-----\n";
        let (a, b) = (root_cert_file(pem).unwrap(), root_cert_file(pem).unwrap());
        assert_eq!(a, b, "one file per CA");
        assert_eq!(std::fs::read(&a).unwrap(), pem);
        assert_ne!(root_cert_file(b"another").unwrap(), a);
        let l = AdminLogin {
            host: "h".into(),
            port: 5,
            user: "u".into(),
            password: None,
            sslmode: "verify-full",
            root_cert: Some(a.clone()),
        };
        assert!(
            l.env("d")
                .contains(&("PGSSLROOTCERT", a.to_string_lossy().into_owned()))
        );
        assert!(
            !l.conninfo("d").contains("sslrootcert"),
            "a file of the operator's"
        );
    }

    #[test]
    fn passwords_are_decoded_quoted_and_hidden() {
        assert_eq!(
            url_password("postgres://u:p%40ss%27w@h:5432/db").as_deref(),
            Some("p@ss'w")
        );
        assert_eq!(url_password("postgres://u@h/db"), None);
        let l = AdminLogin {
            host: "h".into(),
            port: 5,
            user: "u".into(),
            password: Some("a'b\\c".into()),
            sslmode: "disable",
            root_cert: None,
        };
        assert!(
            l.conninfo("d").contains(r"password='a\'b\\c'"),
            "{}",
            l.conninfo("d")
        );
        assert!(!format!("{l:?}").contains("a'b"));
    }
}
