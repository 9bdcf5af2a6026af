//! Observation: [`PgAdmin::observe`] reads the catalog state of a tenant's objects (roles,
//! database, schema) into a [`plan::Observed`](super::plan::Observed) for the pure planner. While
//! the server is known to be down, a quick TCP probe answers first instead of a pool timeout.

use std::time::Duration;

use sqlx::Row;

use super::plan::{Observed, ObservedDatabase, ObservedRole, ObservedSchema};
use super::{PgAdmin, ddl};
use crate::error::{Error, Result};
use crate::naming::TenantNames;

impl PgAdmin {
    async fn can_read_verifiers(&self) -> Result<bool> {
        self.can_read_verifiers
            .get_or_try_init(|| async {
                let su: bool = sqlx::query_scalar(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                )
                .fetch_one(self.admin()?)
                .await?;
                Ok::<_, Error>(su)
            })
            .await
            .copied()
    }

    /// Reads the catalog state of the tenant's objects: one query on the maintenance database, plus
    /// one on the shared database for isolation `schema`.
    pub async fn observe(&self, names: &TenantNames, password: &str) -> Result<Observed> {
        self.fail_fast_if_down().await?;
        match self.observe_inner(names, password).await {
            Err(Error::DatabaseUnavailable { message, source }) => {
                Err(self.note_unavailable(message, source).await)
            }
            other => other,
        }
    }

    /// Whether this server holds the tenant's objects: its primary login role exists and carries
    /// the tenant's ownership marker. Used to find a tenant whose recorded placement was lost.
    pub async fn holds_tenant(&self, names: &TenantNames) -> Result<bool> {
        self.fail_fast_if_down().await?;
        let found: Option<Option<String>> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(names.role.as_str())
        .fetch_optional(self.admin()?)
        .await
        .map_err(Error::from)?;
        Ok(found.flatten().as_deref() == Some(names.owner_marker.as_str()))
    }

    /// While the server is known to be unreachable, a quick TCP probe answers instead of a pool
    /// timeout: an outage costs each reconcile milliseconds, not seconds, so tenants beyond the
    /// reconcile concurrency are not starved. The probe also gives the real cause
    /// ("connection refused") instead of "pool timed out".
    async fn fail_fast_if_down(&self) -> Result<()> {
        let down = self.down_since.lock().map(|d| d.is_some()).unwrap_or(false);
        if !down {
            return Ok(());
        }
        match self.probe().await {
            Ok(()) => {
                if let Ok(mut d) = self.down_since.lock() {
                    *d = None;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn probe(&self) -> Result<()> {
        let (host, port) = self.server_address();
        if host.starts_with('/') {
            return Ok(()); // unix socket: nothing cheaper than the pool itself
        }
        match tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::unavailable(format!(
                "cannot connect to PostgreSQL at {host}:{port}: {e}"
            ))),
            Err(_) => Err(Error::unavailable(format!(
                "cannot connect to PostgreSQL at {host}:{port}: timed out"
            ))),
        }
    }

    /// After a connection-class error: if the port does not answer, the server is marked down and
    /// the probe's clearer message is returned.
    async fn note_unavailable(
        &self,
        message: String,
        source: Option<crate::error::BoxError>,
    ) -> Error {
        match self.probe().await {
            Err(probe) => {
                if let Ok(mut d) = self.down_since.lock() {
                    d.get_or_insert_with(std::time::Instant::now);
                }
                probe
            }
            Ok(()) => Error::DatabaseUnavailable { message, source },
        }
    }

    async fn observe_inner(&self, names: &TenantNames, password: &str) -> Result<Observed> {
        let read_verifier = self.can_read_verifiers().await?;
        // For isolation `schema` the shared database must exist before it is observed.
        let shared = if names.dedicated_database {
            None
        } else {
            Some(self.shared_pool().await?)
        };
        let verifier_sql = if read_verifier {
            "(SELECT a.rolpassword FROM pg_authid a WHERE a.oid = r.oid)"
        } else {
            "NULL::text"
        };
        let sql = format!(
            r#"
WITH d AS (SELECT oid, datdba, datacl, datconnlimit FROM pg_database WHERE datname = $3)
SELECT
  n.slot,
  r.oid IS NOT NULL AS role_exists,
  COALESCE(r.rolcanlogin, false) AS can_login,
  COALESCE(r.rolconnlimit, -1) AS connlimit,
  COALESCE(r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls OR NOT r.rolinherit, false) AS extra,
  shobj_description(r.oid, 'pg_authid') AS role_comment,
  {verifier_sql} AS verifier,
  CASE WHEN r.rolvaliduntil IS NULL OR r.rolvaliduntil = 'infinity' THEN NULL
       ELSE extract(epoch FROM r.rolvaliduntil)::bigint END AS valid_until,
  (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = d.oid) AS db_setconfig,
  (SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = r.oid AND s.setdatabase = 0) AS role_setconfig,
  EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles p ON p.oid = m.roleid WHERE m.member = r.oid AND p.rolname = $1) AS member_of_primary,
  CASE WHEN r.oid IS NULL THEN true
       WHEN (SELECT a.rolinherit FROM pg_roles a WHERE a.rolname = current_user) THEN pg_has_role(current_user, r.oid, 'USAGE')
       ELSE pg_has_role(current_user, r.oid, 'MEMBER') END AS admin_member,
  d.oid IS NOT NULL AS db_exists,
  pg_get_userbyid(d.datdba) AS db_owner,
  shobj_description(d.oid, 'pg_database') AS db_comment,
  COALESCE(d.datconnlimit, -1) AS db_connlimit,
  COALESCE((SELECT bool_or(a.grantee = 0) FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a), false) AS public_access,
  CASE WHEN r.oid IS NOT NULL AND d.oid IS NOT NULL THEN has_database_privilege(r.oid, d.oid, 'CONNECT') ELSE false END AS role_connect
FROM (VALUES (1, $1::text), (2, $2::text)) AS n(slot, name)
LEFT JOIN pg_roles r ON r.rolname = n.name
LEFT JOIN d ON true
ORDER BY n.slot
"#
        );
        let rows = sqlx::query(ddl(sql))
            .bind(names.role.as_str())
            .bind(names.secondary_role.as_str())
            .bind(names.database.as_str())
            .fetch_all(self.admin()?)
            .await?;
        let mut observed = Observed::default();
        for row in &rows {
            let slot: i32 = row.try_get("slot")?;
            if row.try_get::<bool, _>("role_exists")? {
                let db_config: Option<Vec<String>> = row.try_get("db_setconfig")?;
                let role_config: Option<Vec<String>> = row.try_get("role_setconfig")?;
                let verifier: Option<String> = row.try_get("verifier")?;
                let valid_until: Option<i64> = row.try_get("valid_until")?;
                let role = ObservedRole {
                    can_login: row.try_get("can_login")?,
                    connection_limit: row.try_get("connlimit")?,
                    has_extra_privileges: row.try_get("extra")?,
                    comment: row.try_get("role_comment")?,
                    password_matches: if read_verifier {
                        Some(verifier.is_some_and(|v| crate::scram::matches(password, &v)))
                    } else {
                        None
                    },
                    search_path: db_config
                        .and_then(|c| c.into_iter().find(|s| s.starts_with("search_path="))),
                    settings: role_config.unwrap_or_default(),
                    valid_until: valid_until
                        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok()),
                    member_of_primary: row.try_get("member_of_primary")?,
                    admin_member: Some(row.try_get("admin_member")?),
                };
                if slot == 1 {
                    observed.role = Some(role);
                } else {
                    observed.secondary = Some(role);
                }
            }
            if slot == 1 && row.try_get::<bool, _>("db_exists")? {
                observed.database = Some(ObservedDatabase {
                    owner: row
                        .try_get::<Option<String>, _>("db_owner")?
                        .unwrap_or_default(),
                    comment: row.try_get("db_comment")?,
                    public_has_access: row.try_get("public_access")?,
                    role_can_connect: row.try_get("role_connect")?,
                    connection_limit: row.try_get("db_connlimit")?,
                });
            }
        }
        if let Some(pool) = shared.filter(|_| !names.rls) {
            crate::fence::check()?;
            let row = sqlx::query(
                "SELECT pg_get_userbyid(n.nspowner) AS owner, obj_description(n.oid, 'pg_namespace') AS comment FROM pg_namespace n WHERE n.nspname = $1",
            )
            .bind(names.schema.as_str())
            .fetch_optional(pool)
            .await?;
            if let Some(row) = row {
                observed.schema = Some(ObservedSchema {
                    owner: row
                        .try_get::<Option<String>, _>("owner")?
                        .unwrap_or_default(),
                    comment: row.try_get("comment")?,
                });
            }
        }
        Ok(observed)
    }
}
