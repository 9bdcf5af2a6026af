//! The SQL of a move, each statement on the server it belongs to: roles copied with their SCRAM
//! verifiers, the publication and the replication slot on the source, the subscription on the
//! target, the fence, sequences and row counts. Values are bound; the few utility statements that
//! take no parameters get validated identifiers ([`Ident`]) and literals quoted here.

use std::time::Duration;

use sqlx::{Connection, PgConnection, Row};

use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames, quote_literal};
use crate::pg::{PgAdmin, ddl};

pub use super::freeze::{fence, sessions, terminate, unfence, wait_caught_up};
pub use super::servers::{
    Ends, MoveRoom, NoRoom, OtherMoves, cluster_identity, replication_room, same_cluster, wal_level,
};

/// What the move replicates: the tenant's dedicated database, its schema in the shared database,
/// or its rows in the shared row-level security layout.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The database on this server (dedicated, or the server's shared database).
    pub database: Ident,
    /// `Some(schema)` for a schema tenant (and the layout schema for a shared tenant).
    pub schema: Option<Ident>,
    /// `Some(tenant id)` for a shared tenant: only its rows move (a row-filtered publication,
    /// `pg::shared::replication`); the layout's sequences are the server's, not the tenant's.
    pub rows: Option<String>,
}

impl Scope {
    /// The scope of `names` on the server they were resolved for (a database or schema tenant;
    /// see [`Scope::of_tenant`] for every mode).
    pub fn of(names: &TenantNames) -> Self {
        Self {
            database: names.database.clone(),
            schema: (!names.dedicated_database).then(|| names.schema.clone()),
            rows: None,
        }
    }

    /// The scope of the Tenant `namespace/name` with `names` (its rows for a shared tenant).
    pub fn of_tenant(names: &TenantNames, namespace: &str, name: &str) -> Self {
        Self {
            rows: names
                .rls
                .then(|| crate::pg::shared::tenant_id(namespace, name)),
            ..Self::of(names)
        }
    }
}

/// The layout a shared tenant's rows are in.
fn layout() -> Result<crate::pg::shared::SharedLayout> {
    crate::pg::shared::SharedLayout::defaults()
}

/// One of the tenant's roles as it is on the source.
#[derive(Debug, Clone)]
pub struct RoleCopy {
    /// Role name.
    pub name: Ident,
    /// `rolcanlogin` on the source (before the fence).
    pub can_login: bool,
    /// The SCRAM verifier (`rolpassword`), if any. Never logged.
    pub verifier: Option<String>,
    /// `rolconnlimit`.
    pub connection_limit: i32,
    /// The ownership marker (comment).
    pub comment: Option<String>,
    /// `rolvaliduntil` (ISO 8601 in UTC, or `infinity`): a rotation's grace period ends there
    /// on the target as on the source.
    pub valid_until: Option<String>,
    /// `rolvaliduntil` has passed (the server's clock): its password logs in no more.
    pub expired: bool,
}

/// The tenant's two login roles on the source (needs a superuser admin: `pg_authid`).
pub async fn read_roles(pg: &PgAdmin, names: &TenantNames) -> Result<Vec<RoleCopy>> {
    let rows = sqlx::query(
        "SELECT rolname::text AS name, rolcanlogin, rolpassword, rolconnlimit, \
                shobj_description(oid, 'pg_authid') AS comment, \
                CASE WHEN rolvaliduntil IS NULL THEN NULL \
                     WHEN rolvaliduntil = 'infinity' THEN 'infinity' \
                     ELSE to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' END AS valid_until, \
                coalesce(rolvaliduntil < now(), false) AS expired \
           FROM pg_authid WHERE rolname = ANY($1) ORDER BY rolname",
    )
    .bind(vec![
        names.role.as_str().to_string(),
        names.secondary_role.as_str().to_string(),
    ])
    .fetch_all(pg.admin()?)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42501") => Error::Config(
            "moving a tenant needs a superuser admin on the source (its roles' password verifiers are copied from pg_authid)".into(),
        ),
        _ => e.into(),
    })?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get("name")?;
        out.push(RoleCopy {
            name: Ident::new(&name)?,
            can_login: r.try_get("rolcanlogin")?,
            verifier: r.try_get("rolpassword")?,
            connection_limit: r.try_get("rolconnlimit")?,
            comment: r.try_get("comment")?,
            valid_until: r.try_get("valid_until")?,
            expired: r.try_get("expired")?,
        });
    }
    Ok(out)
}

/// Creates (or resets) the tenant's roles on the target with the source's verifiers and markers,
/// all **without login** (nothing can write to the target before the cut-over), the secondary a
/// member of the primary, both members of the target's CONNECT group for a schema tenant. A role
/// of the same name that is not this tenant's is a conflict (never touched).
pub async fn prepare_roles(pg: &PgAdmin, names: &TenantNames, roles: &[RoleCopy]) -> Result<()> {
    let marker = &names.owner_marker;
    for role in roles {
        if role.comment.as_deref() != Some(marker.as_str()) {
            return Err(Error::Conflict(format!(
                "role {} on the source does not carry this tenant's ownership marker",
                role.name.as_str()
            )));
        }
        let existing: Option<Option<String>> = sqlx::query_scalar(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(role.name.as_str())
        .fetch_optional(pg.admin()?)
        .await?;
        match existing {
            Some(c) if c.as_deref() != Some(marker.as_str()) => {
                return Err(Error::Conflict(format!(
                    "role {} exists on the target server and is not this tenant's",
                    role.name.as_str()
                )));
            }
            Some(_) => {}
            None => {
                // Created with its marker in one transaction: a crash in between would leave a
                // role that is nobody's (a conflict for every later attempt).
                let comment =
                    quote_literal(marker).ok_or_else(|| Error::Config("unusable marker".into()))?;
                sqlx::raw_sql(ddl(format!(
                    "CREATE ROLE {name} NOLOGIN; COMMENT ON ROLE {name} IS {comment}",
                    name = role.name
                )))
                .execute(pg.admin()?)
                .await?;
            }
        }
        let password = match &role.verifier {
            Some(v) => format!(
                "PASSWORD {}",
                quote_literal(v).ok_or_else(|| Error::Config("unusable verifier".into()))?
            ),
            None => "PASSWORD NULL".into(),
        };
        let comment =
            quote_literal(marker).ok_or_else(|| Error::Config("unusable marker".into()))?;
        let valid_until = quote_literal(role.valid_until.as_deref().unwrap_or("infinity"))
            .ok_or_else(|| Error::Config("unusable VALID UNTIL".into()))?;
        sqlx::raw_sql(ddl(format!(
            "ALTER ROLE {name} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT {password} VALID UNTIL {valid_until} CONNECTION LIMIT {limit}; COMMENT ON ROLE {name} IS {comment}",
            name = role.name,
            limit = role.connection_limit,
        )))
        .execute(pg.admin()?)
        .await?;
    }
    let has = |r: &Ident| roles.iter().any(|c| &c.name == r);
    if has(&names.role) && has(&names.secondary_role) {
        sqlx::raw_sql(ddl(format!(
            "GRANT {} TO {}",
            names.role, names.secondary_role
        )))
        .execute(pg.admin()?)
        .await?;
    }
    if !names.dedicated_database {
        // The shared database (and its CONNECT group) exist on the target.
        pg.shared_pool().await?;
        for role in roles {
            sqlx::raw_sql(ddl(format!(
                "GRANT {} TO {}",
                names.connect_group, role.name
            )))
            .execute(pg.admin()?)
            .await?;
        }
    }
    Ok(())
}

/// Creates the tenant's dedicated database on the target, owned by its role and marked, after
/// dropping a half-prepared copy of an earlier attempt (only one carrying the marker).
pub async fn prepare_database(pg: &PgAdmin, names: &TenantNames) -> Result<()> {
    drop_target_copy_objects(pg, names).await?;
    let marker = quote_literal(&names.owner_marker)
        .ok_or_else(|| Error::Config("unusable marker".into()))?;
    if names.dedicated_database {
        sqlx::raw_sql(ddl(format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'",
            names.database, names.role
        )))
        .execute(pg.admin()?)
        .await?;
        sqlx::raw_sql(ddl(format!(
            "COMMENT ON DATABASE {} IS {marker}; REVOKE ALL ON DATABASE {} FROM PUBLIC",
            names.database, names.database
        )))
        .execute(pg.admin()?)
        .await?;
    }
    Ok(())
}

/// Drops the tenant's database (dedicated) or schema (shared database) on a server where it is a
/// copy being prepared (never one without this tenant's marker).
pub async fn drop_target_copy_objects(pg: &PgAdmin, names: &TenantNames) -> Result<()> {
    let observed = pg.observe(names, "").await?;
    let marker = names.owner_marker.as_str();
    if names.dedicated_database {
        if let Some(db) = &observed.database {
            // Unmarked but owned by the tenant's role (marked, see `prepare_roles`): created by
            // an attempt that stopped before its COMMENT (as `PgAdmin::cleanup` decides).
            let ours = db.comment.as_deref() == Some(marker)
                || (db.comment.is_none() && db.owner == names.role.as_str());
            if !ours {
                return Err(Error::Conflict(format!(
                    "database {} exists on the target server and is not this tenant's",
                    names.database.as_str()
                )));
            }
            sqlx::raw_sql(ddl(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                names.database
            )))
            .execute(pg.admin()?)
            .await?;
        }
    } else if let Some(schema) = &observed.schema {
        if schema.comment.as_deref() != Some(marker) {
            return Err(Error::Conflict(format!(
                "schema {} exists on the target server and is not this tenant's",
                names.schema.as_str()
            )));
        }
        sqlx::raw_sql(ddl(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            names.schema
        )))
        .execute(pg.shared_pool().await?)
        .await?;
    }
    Ok(())
}

/// A connection to the scope's database.
pub async fn connect(pg: &PgAdmin, scope: &Scope) -> Result<PgConnection> {
    pg.connect_to(&scope.database).await
}

/// The publication of the move on the source (`FOR ALL TABLES` of a dedicated database, `FOR
/// TABLES IN SCHEMA` of a schema tenant, the layout's tables filtered on the tenant's key for a
/// shared tenant), created unless it exists.
pub async fn ensure_publication(pg: &PgAdmin, scope: &Scope, name: &Ident) -> Result<()> {
    let mut c = connect(pg, scope).await?;
    if let Some(tenant_id) = &scope.rows {
        let r =
            crate::pg::shared::replication::ensure_publication(&mut c, &layout()?, name, tenant_id)
                .await;
        let _ = c.close().await;
        return r;
    }
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_publication WHERE pubname = $1")
        .bind(name.as_str())
        .fetch_optional(&mut c)
        .await?;
    if exists.is_none() {
        let what = match &scope.schema {
            Some(s) => format!("FOR TABLES IN SCHEMA {s}"),
            None => "FOR ALL TABLES".to_string(),
        };
        sqlx::raw_sql(ddl(format!("CREATE PUBLICATION {name} {what}")))
            .execute(&mut c)
            .await?;
    }
    let _ = c.close().await;
    Ok(())
}

/// The subscription of the move on the target, created (with its slot on the source) unless it
/// exists. A slot of that name left on the source by an earlier attempt is dropped first.
pub async fn ensure_subscription(
    source: &PgAdmin,
    source_scope: &Scope,
    source_names: &TenantNames,
    target: &PgAdmin,
    target_scope: &Scope,
    name: &Ident,
) -> Result<()> {
    let mut c = connect(target, target_scope).await?;
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_subscription WHERE subname = $1")
            .bind(name.as_str())
            .fetch_optional(&mut c)
            .await?;
    if exists.is_none() {
        drop_slot(source, name).await?;
        // Not the admin's login: the move's replication login (a new password each time the
        // subscription is created; see `repl_login`).
        let role = super::repl_login::role(name)?;
        let password = super::repl_login::create(source, source_scope, source_names, &role).await?;
        let conninfo = source
            .admin_login()
            .as_user(role.as_str(), password)
            .conninfo(source_scope.database.as_str());
        // The connection string is a literal (no parameters in DDL): quotes doubled, and
        // backslashes literal under standard_conforming_strings.
        // Nor does the statement reach the target's log: not as a failing statement
        // (`log_min_error_statement`, default `error`) nor as DDL (`log_statement`). Session
        // settings the superuser admin may change; the connection is closed afterwards.
        sqlx::raw_sql(
            "SET standard_conforming_strings = on; SET log_min_error_statement = panic; \
             SET log_statement = 'none'; SET log_min_duration_statement = -1",
        )
        .execute(&mut c)
        .await?;
        let literal = format!("'{}'", conninfo.replace('\'', "''"));
        if literal.contains('\0') {
            return Err(Error::Config("unusable connection string".into()));
        }
        // `synchronous_commit = local`: the apply worker flushes each transaction it applies
        // before it reports it, so the position it confirms is current when the cut-over waits
        // for it inside the write freeze (with the default `off` it lags by the target's WAL
        // writer cycle: 0.2–0.6 s of a freeze under writes in bench/, "Moves"). `local`, not
        // `on`: no wait for the target's synchronous standbys. The cost: an fsync per applied
        // transaction on the target while copying.
        // `streaming = off` (PostgreSQL 15's default; 18's is `parallel`): parallel apply
        // workers would take logical replication workers beyond those the move's room check
        // keeps for it (`MoveRoom::shortfalls`).
        let r = sqlx::raw_sql(ddl(format!(
            "CREATE SUBSCRIPTION {name} CONNECTION {literal} PUBLICATION {name} WITH (slot_name = '{}', copy_data = true, create_slot = true, synchronous_commit = 'local', streaming = off)",
            name.as_str()
        )))
        .execute(&mut c)
        .await;
        // The connection string holds a password: errors are reported without it.
        if let Err(e) = r {
            let _ = c.close().await;
            let msg = crate::pg::redact(&e.to_string());
            // The source refused the replication login: no retry can help (each would copy the
            // schema again); the move is rolled back, saying what to allow.
            if msg.contains("pg_hba.conf") || msg.contains("password authentication failed") {
                return Err(Error::InvalidSpec(format!(
                    "the target cannot log in to the source as the move's replication login {} \
                     (allow it in the source's pg_hba.conf, docs/moves.md): {msg}",
                    role.as_str()
                )));
            }
            return Err(Error::unavailable(format!(
                "creating the subscription on the target failed: {msg}"
            )));
        }
    }
    let _ = c.close().await;
    Ok(())
}

/// Tables of the subscription and how many finished their initial copy (state `r`).
pub async fn sync_state(target: &PgAdmin, scope: &Scope, name: &Ident) -> Result<(i64, i64)> {
    let mut c = connect(target, scope).await?;
    let row = sqlx::query(
        "SELECT count(*) AS total, count(*) FILTER (WHERE r.srsubstate = 'r') AS ready \
           FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
          WHERE s.subname = $1",
    )
    .bind(name.as_str())
    .fetch_one(&mut c)
    .await?;
    let _ = c.close().await;
    Ok((row.try_get("total")?, row.try_get("ready")?))
}

/// What is missing of the move's replication, if anything: its subscription on the target, or its
/// replication slot on the source (or the WAL the slot needs, removed under
/// `max_slot_wal_keep_size` while the target was away). None comes back by itself (an earlier
/// cut-over dropped the subscription, someone dropped an object by hand): the move can only be
/// rolled back.
pub async fn replication_gone(
    source: &PgAdmin,
    target: &PgAdmin,
    target_scope: &Scope,
    name: &Ident,
) -> Result<Option<String>> {
    let subscription: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
          WHERE s.subname = $1 AND d.datname = $2",
    )
    .bind(name.as_str())
    .bind(target_scope.database.as_str())
    .fetch_optional(target.admin()?)
    .await?;
    if subscription.is_none() {
        return Ok(Some(format!(
            "the subscription {} no longer exists on the target",
            name.as_str()
        )));
    }
    let slot: Option<Option<String>> =
        sqlx::query_scalar("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1")
            .bind(name.as_str())
            .fetch_optional(source.admin()?)
            .await?;
    Ok(match slot {
        None => Some(format!(
            "the replication slot {} no longer exists on the source",
            name.as_str()
        )),
        Some(Some(s)) if s == "lost" => Some(format!(
            "the replication slot {} on the source lost WAL it needed (max_slot_wal_keep_size)",
            name.as_str()
        )),
        Some(_) => None,
    })
}

/// Why the server does not accept TCP connections, if it does not (a quick probe, at most 1 s):
/// tells which server a connection error came from.
pub async fn unreachable(pg: &PgAdmin) -> Option<String> {
    let (host, port) = pg.server_address();
    if host.starts_with('/') {
        return None; // a unix socket: the error itself says it
    }
    let probe = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("{host}:{port}: {e}")),
        Err(_) => Some(format!("{host}:{port}: no answer within 1 s")),
    }
}

/// How many WAL bytes the slot's consumer is behind the source; `None` without the slot.
pub async fn lag_bytes(source: &PgAdmin, name: &Ident) -> Result<Option<i64>> {
    let lag: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
           FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(name.as_str())
    .fetch_optional(source.admin()?)
    .await?;
    Ok(lag.flatten())
}

/// Non-system schemas of the scope (its schema, or every schema of a dedicated database).
fn schemas_filter(scope: &Scope) -> Option<Vec<String>> {
    scope.schema.as_ref().map(|s| vec![s.as_str().to_string()])
}

/// Copies every sequence's value from the source to the target (logical replication does not).
/// None for a shared tenant: the layout's sequences serve every tenant of a server (setting the
/// target's to the source's could move them back under the other tenants' rows).
pub async fn copy_sequences(
    source: &mut PgConnection,
    target: &mut PgConnection,
    scope: &Scope,
) -> Result<usize> {
    if scope.rows.is_some() {
        return Ok(0);
    }
    let rows = sqlx::query(
        "SELECT s.schemaname::text AS schema, s.sequencename::text AS name, s.last_value \
           FROM pg_sequences s JOIN pg_namespace n ON n.nspname = s.schemaname \
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
            AND ($1::text[] IS NULL OR n.nspname = ANY($1))",
    )
    .bind(schemas_filter(scope))
    .fetch_all(&mut *source)
    .await?;
    let mut n = 0;
    for r in rows {
        let schema: String = r.try_get("schema")?;
        let name: String = r.try_get("name")?;
        let last: Option<i64> = r.try_get("last_value")?;
        if let Some(v) = last {
            sqlx::query("SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, true)")
                .bind(&schema)
                .bind(&name)
                .bind(v)
                .execute(&mut *target)
                .await?;
            n += 1;
        }
    }
    Ok(n)
}

/// Row count of every table of the scope (leaf tables; a shared tenant's rows per table), by
/// `schema.table`.
pub async fn row_counts(
    conn: &mut PgConnection,
    scope: &Scope,
) -> Result<std::collections::BTreeMap<String, i64>> {
    if let Some(tenant_id) = &scope.rows {
        return crate::pg::shared::replication::row_counts(conn, &layout()?, tenant_id).await;
    }
    let rows = sqlx::query(
        "SELECT n.nspname::text AS schema, c.relname::text AS name, \
                (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint AS rows \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
            AND ($1::text[] IS NULL OR n.nspname = ANY($1)) \
          ORDER BY 1, 2",
    )
    .bind(schemas_filter(scope))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = std::collections::BTreeMap::new();
    for r in rows {
        let schema: String = r.try_get("schema")?;
        let name: String = r.try_get("name")?;
        out.insert(format!("{schema}.{name}"), r.try_get("rows")?);
    }
    Ok(out)
}

/// Drops the move's subscription on the target (without touching the source: its slot is
/// dropped there by [`drop_slot`]).
pub async fn drop_subscription(target: &PgAdmin, scope: &Scope, name: &Ident) -> Result<()> {
    let exists: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
          WHERE s.subname = $1 AND d.datname = $2",
    )
    .bind(name.as_str())
    .bind(scope.database.as_str())
    .fetch_optional(target.admin()?)
    .await?;
    if exists.is_none() {
        return Ok(());
    }
    let mut c = connect(target, scope).await?;
    sqlx::raw_sql(ddl(format!(
        "ALTER SUBSCRIPTION {name} DISABLE; ALTER SUBSCRIPTION {name} SET (slot_name = NONE); DROP SUBSCRIPTION {name}"
    )))
    .execute(&mut c)
    .await?;
    let _ = c.close().await;
    Ok(())
}

/// Drops the move's replication slot on the source (ending the walsender using it first).
pub async fn drop_slot(source: &PgAdmin, name: &Ident) -> Result<()> {
    for _ in 0..50 {
        let active: Option<Option<i32>> =
            sqlx::query_scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1")
                .bind(name.as_str())
                .fetch_optional(source.admin()?)
                .await?;
        match active {
            None => return Ok(()),
            Some(Some(pid)) => {
                sqlx::query("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(source.admin()?)
                    .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(None) => {
                let r = sqlx::query("SELECT pg_drop_replication_slot($1)")
                    .bind(name.as_str())
                    .execute(source.admin()?)
                    .await;
                match r {
                    Ok(_) => return Ok(()),
                    // Became active again meanwhile, or gone: look again.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
    Err(Error::unavailable(format!(
        "replication slot {} stays in use on the source",
        name.as_str()
    )))
}

/// Refuses a move whose tables have triggers that fire on replication (`ENABLE ALWAYS` or
/// `ENABLE REPLICA`): the target's apply worker runs as the subscription's owner, a superuser on
/// PostgreSQL 15, so such a trigger would run the tenant's code with more than its rights. Run on
/// the target's copy of the schema, which the tenant cannot change before the subscription.
pub async fn refuse_replica_triggers(pg: &PgAdmin, scope: &Scope) -> Result<()> {
    let mut c = connect(pg, scope).await?;
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname || ': ' || t.tgname \
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE NOT t.tgisinternal AND t.tgenabled IN ('A', 'R') \
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
            AND ($1::text IS NULL OR n.nspname = $1) ORDER BY 1 LIMIT 5",
    )
    .bind(scope.schema.as_ref().map(|s| s.as_str().to_string()))
    .fetch_all(&mut c)
    .await?;
    let _ = c.close().await;
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "not moved: triggers enabled ALWAYS or REPLICA would run as a superuser during replication ({}); set them back to ENABLE, or move the tenant by hand",
        found.join(", ")
    )))
}

/// Refuses a move whose tables would make the target's replication workers run the tenant's own
/// functions: CHECK and domain constraints, index expressions and predicates, generated columns,
/// partition keys and exclusion constraints that use a function (directly, or through an
/// operator) owned by a role that is not a superuser. On PostgreSQL 15 those workers run as the
/// subscription's owner, which must be a superuser, so such a function would run with a
/// superuser's rights (table synchronisation evaluates CHECK constraints and index expressions
/// for every copied row). Triggers are refused by [`refuse_replica_triggers`]; ordinary triggers,
/// rules and column defaults do not run in the workers.
pub async fn refuse_tenant_functions_in_replication(pg: &PgAdmin, scope: &Scope) -> Result<()> {
    let mut c = connect(pg, scope).await?;
    let found: Vec<String> = sqlx::query_scalar(
        "WITH fns AS ( \
           SELECT p.oid FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner WHERE NOT r.rolsuper), \
         ops AS (SELECT o.oid FROM pg_operator o WHERE o.oprcode IN (SELECT oid FROM fns)), \
         uses AS ( \
           SELECT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_depend d \
            WHERE (d.refclassid = 'pg_proc'::regclass AND d.refobjid IN (SELECT oid FROM fns)) \
               OR (d.refclassid = 'pg_operator'::regclass AND d.refobjid IN (SELECT oid FROM ops))), \
         placed AS ( \
           SELECT u.*, CASE u.classid \
             WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = u.objid) \
             WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = u.objid) \
             WHEN 'pg_attrdef'::regclass THEN (SELECT c.relnamespace FROM pg_attrdef a \
                 JOIN pg_class c ON c.oid = a.adrelid \
                 JOIN pg_attribute t ON t.attrelid = a.adrelid AND t.attnum = a.adnum \
                WHERE a.oid = u.objid AND t.attgenerated <> '') END AS nsp \
             FROM uses u WHERE u.classid IN ('pg_constraint'::regclass, 'pg_class'::regclass, 'pg_attrdef'::regclass)) \
         SELECT DISTINCT pg_describe_object(p.classid, p.objid, 0) || ' uses ' || pg_describe_object(p.refclassid, p.refobjid, 0) \
           FROM placed p \
          WHERE p.nsp IS NOT NULL \
            AND p.nsp NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema')) \
            AND ($1::text IS NULL OR p.nsp = (SELECT oid FROM pg_namespace WHERE nspname = $1)) \
          ORDER BY 1 LIMIT 5",
    )
    .bind(scope.schema.as_ref().map(|s| s.as_str().to_string()))
    .fetch_all(&mut c)
    .await?;
    let _ = c.close().await;
    if found.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidSpec(format!(
        "not moved: the target's replication workers run as a superuser (PostgreSQL 15) and would run the tenant's own functions ({}); move the tenant by hand, or drop those uses for the move",
        found.join(", ")
    )))
}

/// The partitions of a shared tenant's layout tables on a server (none for other scopes).
pub async fn layout_partitions(pg: &PgAdmin, scope: &Scope) -> Result<Vec<String>> {
    if scope.rows.is_none() {
        return Ok(vec![]);
    }
    let mut c = connect(pg, scope).await?;
    let r = crate::pg::shared::replication::partitions(&mut c, &layout()?).await;
    let _ = c.close().await;
    r
}

/// Drops the move's publication on the source.
pub async fn drop_publication(source: &PgAdmin, scope: &Scope, name: &Ident) -> Result<()> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(scope.database.as_str())
        .fetch_optional(source.admin()?)
        .await?;
    if exists.is_none() {
        return Ok(());
    }
    let mut c = connect(source, scope).await?;
    let r = if let Some(tenant_id) = scope.rows.as_deref() {
        // (And the layout's replica identity set back after the last one.)
        crate::pg::shared::replication::drop_publication(&mut c, &layout()?, name, tenant_id).await
    } else {
        sqlx::raw_sql(ddl(format!("DROP PUBLICATION IF EXISTS {name}")))
            .execute(&mut c)
            .await
            .map(|_| ())
            .map_err(Into::into)
    };
    let _ = c.close().await;
    r
}
