//! How external tools (`pg_dump`, `psql`) and other servers (a subscription's connection) log in
//! to a server as the operator's admin: [`AdminLogin`]. Its `Debug` never shows the password;
//! the password goes to tools through the environment (`PGPASSWORD`), never their arguments.

use std::fmt;

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
}

impl fmt::Debug for AdminLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminLogin")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sslmode", &self.sslmode)
            .finish()
    }
}

impl AdminLogin {
    /// The login of `options` with `password`.
    pub fn of(options: &PgConnectOptions, password: Option<String>) -> Self {
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
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.clone()));
        }
        env
    }

    /// A libpq connection string to `database` (for `CREATE SUBSCRIPTION … CONNECTION`): every
    /// value single-quoted with `\` and `'` escaped. Holds the password: never log it.
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

/// The password of a `postgres://user:password@…` URL, percent-decoded.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, pw) = userinfo.split_once(':')?;
    let mut out = Vec::with_capacity(pw.len());
    let bytes = pw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&pw[i + 1..i + 3], 16)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert!(
            l.conninfo("d").contains(r"password='a\'b\\c'"),
            "{}",
            l.conninfo("d")
        );
        assert!(!format!("{l:?}").contains("a'b"));
    }
}
