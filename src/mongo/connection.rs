//! How the operator and the tenants connect: the admin's [`MongoSettings`] (whose `Debug` never
//! shows the password), the tenant's connection string ([`tenant_uri`]) and the helpers that keep
//! passwords out of logs and messages.

use std::fmt;
use std::time::Duration;

use super::tenant::TENANT_MECHANISM;
use crate::secret::pct;

/// Connection settings for the MongoDB deployment tenants live on.
#[derive(Clone)]
pub struct MongoSettings {
    /// Admin URI (`mongodb://` or `mongodb+srv://`) of a user allowed to create users and
    /// databases (e.g. `root`, or `userAdminAnyDatabase` + `dbAdminAnyDatabase` +
    /// `readWriteAnyDatabase` + `clusterMonitor`). Never logged.
    pub admin_uri: String,
    /// How long an operation waits for a usable server before failing (`DatabaseUnavailable`).
    pub server_selection_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

impl MongoSettings {
    /// Settings with short timeouts (5 s server selection, 5 s connect): a reconcile should fail
    /// fast and retry rather than hang.
    pub fn new(admin_uri: impl Into<String>) -> Self {
        Self {
            admin_uri: admin_uri.into(),
            server_selection_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSettings")
            .field("admin_uri", &redact_uri(&self.admin_uri))
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The tenant's connection string:
/// `mongodb://<user>:<password>@<host>:<port>/<db>?authSource=<db>&authMechanism=SCRAM-SHA-256`,
/// every component percent-encoded (IPv6 hosts are bracketed).
pub fn tenant_uri(host: &str, port: u16, db: &str, user: &str, password: &str) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!(
        "mongodb://{}:{}@{host}:{port}/{}?authSource={}&authMechanism={TENANT_MECHANISM}",
        pct(user),
        pct(password),
        pct(db),
        pct(db)
    )
}

/// The password of a `scheme://user:password@…` URI, if any (to scrub it from messages).
pub(super) fn uri_password(uri: &str) -> Option<String> {
    let rest = &uri[uri.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, pw) = userinfo.split_once(':')?;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Replaces the password of every `scheme://user:password@host` in `s` with `***`.
pub fn redact_uri(s: &str) -> String {
    crate::pg::redact(s)
}
