//! Sessions logged in as a tenant (or as the `shared` layout's owner): where SQL whose text a
//! namespace user can influence — migration files of a TenantMigration's ConfigMap — and the
//! tenant's own schema maintenance run. Never on the admin session: whatever the SQL does
//! (`RESET ROLE`, `COMMIT`, `SET ROLE …`), it runs with the rights of the role that logged in,
//! which are the rights the tenant's application already has with its Secret.
//!
//! A [`TenantSession`] can only be made by logging in; at login it is checked that the role (and
//! every role it is a member of) holds no superuser, `CREATEROLE`, `CREATEDB`, `REPLICATION` or
//! `BYPASSRLS` attribute and no membership in a predefined `pg_*` role such as
//! `pg_execute_server_program` or `pg_read_server_files` (except `pg_database_owner`, which the
//! owner of the current database is implicitly). A role that fails the check is refused with a
//! [`Error::Conflict`]: a database administrator gave it more than a tenant may have.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection, PgConnection};
use tracing::{debug, info};

use super::{PgAdmin, ddl};
use crate::error::{Error, Result};
use crate::naming::{Ident, quote_literal};

/// How long the one-time password of an owner login stays valid (`VALID UNTIL`) should the
/// operator stop between setting it and removing it.
pub const OWNER_LOGIN_VALIDITY: Duration = Duration::from_secs(300);

/// The roles a session may act as that carry more than tenant rights (empty = least privilege).
const ELEVATED_SQL: &str = "SELECT COALESCE(string_agg(r.rolname::text, ', ' ORDER BY r.rolname), '') \
     FROM (SELECT oid, rolname FROM pg_catalog.pg_roles \
           WHERE rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls \
              OR (rolname LIKE 'pg\\_%' AND rolname <> 'pg_database_owner') OFFSET 0) r \
     WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')";

/// A connection logged in as a tenant's login role (or the shared layout's owner), checked to hold
/// only tenant rights. Derefs to [`PgConnection`].
#[derive(Debug)]
pub struct TenantSession {
    conn: PgConnection,
    user: Ident,
}

impl std::ops::Deref for TenantSession {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for TenantSession {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl TenantSession {
    /// The role that logged in.
    pub fn user(&self) -> &Ident {
        &self.user
    }

    /// Closes the session (never pooled: a tenant session is not reused for anyone else).
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

impl PgAdmin {
    /// Logs in to `database` as `user` with `password` and checks that the session has only tenant
    /// rights (see the module documentation). Wrong credentials are [`Error::Database`] (SQLSTATE
    /// 28P01), an unreachable server [`Error::DatabaseUnavailable`].
    pub async fn tenant_session(
        &self,
        database: &Ident,
        user: &Ident,
        password: &str,
    ) -> Result<TenantSession> {
        self.tenant_session_with(database, user, password, None)
            .await
    }

    /// [`PgAdmin::tenant_session`] with the session's `lock_timeout` set at login.
    async fn tenant_session_with(
        &self,
        database: &Ident,
        user: &Ident,
        password: &str,
        lock_timeout: Option<Duration>,
    ) -> Result<TenantSession> {
        crate::fence::check()?;
        let mut opts = self
            .options_for(database)
            .username(user.as_str())
            .password(password)
            .application_name(&super::application_name(&self.instance, "tenant"))
            .disable_statement_logging()
            // Pinned at login, over any default the tenant gave its own role (`ALTER ROLE … SET
            // standard_conforming_strings = off`), for every statement the operator sends on a
            // tenant session (backslashes literal in '…'). The migration engine sets it again
            // before each file (`migrate::runner::PARSE_SETTINGS`), as `migrate::lexer` reads it.
            .options([("standard_conforming_strings", "on")]);
        if let Some(t) = lock_timeout {
            opts = opts.options([("lock_timeout", format!("{}ms", t.as_millis()))]);
        }
        let mut conn = tokio::time::timeout(self.settings.connect_timeout, opts.connect())
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "timed out logging in to database {} as {}",
                    database.as_str(),
                    user.as_str()
                ))
            })??;
        // Simple protocol: one exchange on the new session (no bind parameters to send).
        let elevated: String =
            sqlx::Row::try_get(&sqlx::raw_sql(ELEVATED_SQL).fetch_one(&mut conn).await?, 0)?;
        if !elevated.is_empty() {
            let _ = conn.close().await;
            return Err(Error::Conflict(format!(
                "refusing to run tenant SQL as {}: the role can act as {elevated}, which holds more than tenant rights (superuser, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS or a predefined pg_ role)",
                user.as_str()
            )));
        }
        debug!(
            user = user.as_str(),
            database = database.as_str(),
            "tenant session opened"
        );
        Ok(TenantSession {
            conn,
            user: user.clone(),
        })
    }

    /// Logs in as a `NOLOGIN` role the operator owns (the `shared` layout's owner) with a one-time
    /// password: the role gets `LOGIN` and a fresh random password valid for
    /// [`OWNER_LOGIN_VALIDITY`], the session logs in, and the role is made `NOLOGIN` with no password
    /// again at once (an open session survives that), whether the login worked or not. The
    /// password exists only in this function's memory; PostgreSQL only sees its SCRAM verifier.
    pub async fn owner_session(&self, role: &Ident, database: &Ident) -> Result<TenantSession> {
        let password = crate::scram::generate_password();
        let verifier = crate::scram::verifier(&password)
            .ok_or_else(|| Error::Internal("could not compute a password verifier".into()))?;
        let until = k8s_openapi::jiff::Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                OWNER_LOGIN_VALIDITY.as_secs() as i64,
            ))
            .map_err(|e| Error::Internal(format!("login validity: {e}")))?;
        let lit = |s: &str| {
            quote_literal(s).ok_or_else(|| Error::Internal("unquotable literal".to_string()))
        };
        let pool = self.admin()?;
        sqlx::raw_sql(ddl(format!(
            "ALTER ROLE {role} LOGIN PASSWORD {} VALID UNTIL {}",
            lit(&verifier)?,
            lit(&until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())?
        )))
        .execute(pool)
        .await?;
        let session = self.tenant_session(database, role, &password).await;
        let reset = sqlx::raw_sql(ddl(format!(
            "ALTER ROLE {role} NOLOGIN PASSWORD NULL VALID UNTIL 'infinity'"
        )))
        .execute(pool)
        .await;
        let session = session?;
        if let Err(e) = reset {
            session.close().await;
            return Err(e.into());
        }
        info!(
            role = role.as_str(),
            "logged in as the owner role for its schema maintenance"
        );
        Ok(session)
    }
}

/// A tenant's login: the role and the password of its credentials Secret. `Debug` never shows
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The login role (the tenant's primary role or its rotation role `<role>_b`).
    pub user: Ident,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Credentials for `user`.
    pub fn new(user: Ident, password: impl Into<String>) -> Self {
        Self {
            user,
            password: password.into(),
        }
    }

    /// The password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The credentials of a Secret's `username`/`password`, accepted only for one of the tenant's
    /// own login roles (a Secret edited to name another role is refused, not used).
    pub fn for_tenant(
        names: &crate::naming::TenantNames,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Self> {
        let password = password.filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::unavailable(
                "the credentials Secret has no password yet (the Tenant controller writes it)",
            )
        })?;
        let user = match username {
            Some(u) if u == names.role.as_str() => names.role.clone(),
            Some(u) if u == names.secondary_role.as_str() => names.secondary_role.clone(),
            Some(u) => {
                return Err(Error::Conflict(format!(
                    "the credentials Secret names user {u:?}, which is not one of the tenant's login roles ({}, {})",
                    names.role.as_str(),
                    names.secondary_role.as_str()
                )));
            }
            None => names.role.clone(),
        };
        Ok(Self::new(user, password))
    }
}

impl PgAdmin {
    /// [`PgAdmin::tenant_session`] with [`Credentials`].
    ///
    /// `lock_timeout` bounds every lock wait of the session (sent in the startup packet: no extra
    /// round trip): a migration behind a long transaction of the tenant's application gives up
    /// instead of queueing its exclusive lock, which would block the tenant's queries behind it.
    pub async fn login(
        &self,
        database: &Ident,
        creds: &Credentials,
        lock_timeout: Option<Duration>,
    ) -> Result<TenantSession> {
        self.tenant_session_with(database, &creds.user, creds.password(), lock_timeout)
            .await
    }
}
