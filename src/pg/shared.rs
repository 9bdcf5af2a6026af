//! Isolation mode `shared`: every tenant's rows live in one schema of the shared database, and
//! PostgreSQL row-level security keeps tenants apart.
//!
//! The design (see `docs/shared-isolation.md` for the reasoning and the threat model):
//!
//! - one schema ([`SharedLayout::schema`], default `tenantdb_rls`) owned by a `NOLOGIN` owner role
//!   ([`SharedLayout::owner`]); the migration set is applied **once**, as the owner;
//! - a `NOLOGIN` group role ([`SharedLayout::tenants`]) holds every tenant privilege: `USAGE` on the
//!   schema, `SELECT, INSERT, UPDATE, DELETE` on the tenant-scoped tables (not on partitions),
//!   `USAGE` on sequences and `EXECUTE` on [`CURRENT_TENANT_FUNCTION`]. A tenant's primary role is
//!   made a member of it ([`register_tenant`]); its rotation role inherits through the primary;
//! - the mapping table [`MAPPING_TABLE`] (`role_name → tenant_id`, no privileges for tenants)
//!   maps **login** roles to tenant ids; the `SECURITY DEFINER` function
//!   [`CURRENT_TENANT_FUNCTION`] returns the tenant id of `session_user`. `session_user` is the
//!   authenticated role: `SET ROLE`, `SECURITY DEFINER` code and views cannot change it, and
//!   `SET SESSION AUTHORIZATION` needs a superuser login. No client-settable setting is involved;
//! - every table with a `tenant_id` column (and `saas_tenants`, keyed by `id`), partitions
//!   included, has `ENABLE` + `FORCE ROW LEVEL SECURITY` and the policies
//!   [`POLICY_TENANT`] (`key = tenant of session_user`, for reads and writes),
//!   [`POLICY_OPERATOR`] (sessions logged in as a member of the owner role, i.e. the operator:
//!   migrations and deletion see every row) and, on [`GLOBAL_READ_TABLES`], [`POLICY_GLOBAL_READ`]
//!   (rows with a `NULL` tenant id are readable, never writable). Tables are discovered from the
//!   catalog by [`ensure_policies`], so tables added by later migrations are covered.
//!
//! All functions are idempotent and check the catalog first: when everything is in place they issue
//! no DDL. Identifiers are [`Ident`]s or catalog names validated by
//! [`crate::migrate::quote_identifier`], always double-quoted; values are bound as parameters.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use tracing::{debug, info, warn};

use super::{PgAdmin, advisory_xact_lock, ddl};
use crate::error::{Error, Result};
use crate::migrate::{self, MigrationSet, MigrationTarget, quote_identifier};
use crate::naming::{Ident, quote_literal};

/// Default name of the schema holding the shared tenants' tables.
pub const DEFAULT_SCHEMA: &str = "tenantdb_rls";

/// Table mapping login roles to tenant ids (in the layout schema, owned by the owner role, no
/// privileges for anyone else).
pub const MAPPING_TABLE: &str = "tenantdb_tenant_roles";

/// `SECURITY DEFINER` function returning the tenant id of `session_user` (or `NULL`).
pub const CURRENT_TENANT_FUNCTION: &str = "tenantdb_current_tenant";

/// Policy restricting reads and writes to the session's tenant.
pub const POLICY_TENANT: &str = "tenantdb_tenant_isolation";

/// Policy giving operator sessions (logged in as a member of the owner role) every row.
pub const POLICY_OPERATOR: &str = "tenantdb_operator_access";

/// Policy making global rows (`tenant_id IS NULL`) of [`GLOBAL_READ_TABLES`] readable by tenants.
pub const POLICY_GLOBAL_READ: &str = "tenantdb_global_read";

/// Restrictive policies (`INSERT`, `UPDATE`) on tables with foreign keys to other tenant-scoped
/// tables: a referenced row must be visible to the writing session, i.e. belong to its tenant.
/// Without them a tenant could point a foreign key at another tenant's row (foreign-key checks
/// bypass row-level security): an existence oracle, and a `RESTRICT` reference that blocks the
/// other tenant's deletes.
pub const POLICY_REFS_INSERT: &str = "tenantdb_same_tenant_refs_insert";

/// The `UPDATE` counterpart of [`POLICY_REFS_INSERT`].
pub const POLICY_REFS_UPDATE: &str = "tenantdb_same_tenant_refs_update";

/// Tables whose rows with a `NULL` tenant id are global and readable (not writable) by every
/// tenant. Rows with a `NULL` tenant id in any other table are invisible to tenants.
pub const GLOBAL_READ_TABLES: &[&str] = &["saas_unified_configs"];

/// The table keyed by `id` instead of `tenant_id` (the tenant row itself).
const TENANT_TABLE: &str = "saas_tenants";

/// Version of the generated objects; part of the markers so that a change of the SQL below is
/// detected as drift and re-applied.
const LAYOUT_VERSION: &str = "v1";

/// Where shared tenants live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLayout {
    /// Schema in the shared database holding every shared tenant's tables.
    pub schema: Ident,
    /// `NOLOGIN` role owning the schema and everything in it; migrations run as it.
    pub owner: Ident,
    /// `NOLOGIN` group role holding the tenants' privileges; tenant primary roles are members.
    pub tenants: Ident,
}

impl SharedLayout {
    /// A layout for `schema`, with the roles `<schema>_owner` and `<schema>_tenants`.
    pub fn for_schema(schema: Ident) -> Result<Self> {
        let owner = Ident::new(&format!("{}_owner", schema.as_str()))?;
        let tenants = Ident::new(&format!("{}_tenants", schema.as_str()))?;
        Ok(Self {
            schema,
            owner,
            tenants,
        })
    }

    /// The default layout: schema `tenantdb_rls`, roles `tenantdb_rls_owner` and
    /// `tenantdb_rls_tenants`.
    pub fn defaults() -> Result<Self> {
        Self::for_schema(Ident::new(DEFAULT_SCHEMA)?)
    }

    /// Advisory lock key serializing layout changes and migrations of this schema.
    pub fn lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("tenantdb.io/shared/{}", self.schema.as_str()));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }

    /// The comment marking the roles and the schema as belonging to this layout.
    pub fn marker(&self) -> String {
        format!("tenantdb.io/shared-layout={}", self.schema.as_str())
    }

    fn migration_target(&self) -> MigrationTarget<'_> {
        MigrationTarget {
            schema: self.schema.as_str(),
            owner_role: self.owner.as_str(),
            lock_key: self.lock_key(),
        }
    }
}

/// The tenant id of a Tenant in `shared` mode: a UUID-formatted string (36 characters) derived from
/// SHA-256 of the namespace and name (RFC 9562 version 8, "custom", the SHA-256 analogue of the
/// name-based version 5). Deterministic, so a Tenant recreated under the `Retain` deletion policy
/// maps to the rows it left behind.
pub fn tenant_id(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("tenantdb.io/tenant/{namespace}/{name}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Checks a tenant id: 1 to 36 characters out of `[0-9A-Za-z_-]` (ids are bound as values, this
/// only catches mistakes early).
fn validate_tenant_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 36
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "invalid shared tenant id {id:?}"
        )))
    }
}

fn lit(s: &str) -> Result<String> {
    quote_literal(s).ok_or_else(|| Error::Internal(format!("cannot quote {s:?}")))
}

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Layout

/// The `CREATE FUNCTION` statement of [`CURRENT_TENANT_FUNCTION`].
pub(super) fn current_tenant_function_sql(layout: &SharedLayout) -> String {
    let s = &layout.schema;
    // `session_user` is not changed by SECURITY DEFINER (unlike current_user, which would be the
    // owner here) nor by SET ROLE. search_path is pinned, pg_temp last, and the table is qualified.
    format!(
        "CREATE OR REPLACE FUNCTION {s}.{CURRENT_TENANT_FUNCTION}() RETURNS varchar \
         LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE \
         SET search_path = pg_catalog, pg_temp \
         AS $tenantdb${}$tenantdb$",
        current_tenant_function_body(layout)
    )
}

/// The body (`prosrc`) of [`CURRENT_TENANT_FUNCTION`].
fn current_tenant_function_body(layout: &SharedLayout) -> String {
    format!(
        "SELECT m.tenant_id FROM {}.{MAPPING_TABLE} m WHERE m.role_name = session_user",
        layout.schema
    )
}

/// `proconfig` of [`CURRENT_TENANT_FUNCTION`].
const FUNCTION_CONFIG: &str = "search_path=pg_catalog, pg_temp";

fn function_marker(layout: &SharedLayout) -> String {
    format!(
        "tenantdb.io/rls-function={LAYOUT_VERSION}:{}",
        short_hash(&current_tenant_function_sql(layout))
    )
}

/// What the catalog says about the layout's fixed objects.
#[derive(Debug, Default)]
struct LayoutState {
    owner_exists: bool,
    owner_comment: Option<String>,
    owner_drift: bool,
    group_exists: bool,
    group_comment: Option<String>,
    group_drift: bool,
    admin_member: bool,
    owner_connect: bool,
    schema_exists: bool,
    schema_comment: Option<String>,
    schema_owner_ok: bool,
    group_usage: bool,
    mapping_exists: bool,
    mapping_owner_ok: bool,
    function_exists: bool,
    function_owner_ok: bool,
    function_ok: bool,
}

impl LayoutState {
    fn complete(&self, layout: &SharedLayout) -> bool {
        let marker = layout.marker();
        self.owner_exists
            && self.owner_comment.as_deref() == Some(marker.as_str())
            && !self.owner_drift
            && self.group_exists
            && self.group_comment.as_deref() == Some(marker.as_str())
            && !self.group_drift
            && self.admin_member
            && self.owner_connect
            && self.schema_exists
            && self.schema_comment.as_deref() == Some(marker.as_str())
            && self.schema_owner_ok
            && self.group_usage
            && self.mapping_exists
            && self.mapping_owner_ok
            && self.function_exists
            && self.function_owner_ok
            && self.function_ok
    }
}

const LAYOUT_STATE_SQL: &str = r#"
WITH o AS (SELECT oid, rolcanlogin OR rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls AS drift,
                  shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = $1),
     g AS (SELECT oid, rolcanlogin OR rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls AS drift,
                  shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = $2),
     n AS (SELECT oid, nspowner, nspacl, obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = $3),
     m AS (SELECT c.oid, c.relowner FROM pg_class c JOIN n ON c.relnamespace = n.oid WHERE c.relname = $4 AND c.relkind = 'r'),
     f AS (SELECT p.oid, p.proowner, p.prosecdef, p.proacl, p.prosrc, p.proconfig, p.provolatile, obj_description(p.oid, 'pg_proc') AS comment
           FROM pg_proc p JOIN n ON p.pronamespace = n.oid WHERE p.proname = $5 AND p.pronargs = 0)
SELECT
  EXISTS (SELECT 1 FROM o) AS owner_exists,
  (SELECT comment FROM o) AS owner_comment,
  COALESCE((SELECT drift FROM o), false) AS owner_drift,
  EXISTS (SELECT 1 FROM g) AS group_exists,
  (SELECT comment FROM g) AS group_comment,
  COALESCE((SELECT drift FROM g), false) AS group_drift,
  COALESCE((SELECT pg_has_role(current_user, o.oid, 'MEMBER') FROM o), false) AS admin_member,
  COALESCE((SELECT EXISTS (SELECT 1 FROM pg_auth_members am JOIN pg_roles c ON c.oid = am.roleid
                           WHERE am.member = o.oid AND c.rolname = $9) FROM o), false) AS owner_connect,
  EXISTS (SELECT 1 FROM n) AS schema_exists,
  (SELECT comment FROM n) AS schema_comment,
  COALESCE((SELECT n.nspowner = o.oid FROM n, o), false) AS schema_owner_ok,
  COALESCE((SELECT EXISTS (SELECT 1 FROM aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a
                            WHERE a.grantee = g.oid AND a.privilege_type = 'USAGE') FROM n, g), false) AS group_usage,
  EXISTS (SELECT 1 FROM m) AS mapping_exists,
  COALESCE((SELECT m.relowner = o.oid FROM m, o), false) AS mapping_owner_ok,
  EXISTS (SELECT 1 FROM f) AS function_exists,
  COALESCE((SELECT f.proowner = o.oid FROM f, o), false) AS function_owner_ok,
  COALESCE((SELECT f.prosecdef AND f.comment IS NOT DISTINCT FROM $6
                   AND f.prosrc = $7 AND f.proconfig = ARRAY[$8]::text[] AND f.provolatile = 's'
                   AND EXISTS (SELECT 1 FROM aclexplode(COALESCE(f.proacl, acldefault('f', f.proowner))) a
                               WHERE a.grantee = g.oid AND a.privilege_type = 'EXECUTE')
                   AND NOT EXISTS (SELECT 1 FROM aclexplode(COALESCE(f.proacl, acldefault('f', f.proowner))) a
                                   WHERE a.grantee <> f.proowner AND a.grantee <> g.oid)
            FROM f, g), false) AS function_ok
"#;

async fn layout_state(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    function_marker: &str,
    connect_group: &Ident,
) -> Result<LayoutState> {
    let row = sqlx::query(LAYOUT_STATE_SQL)
        .bind(layout.owner.as_str())
        .bind(layout.tenants.as_str())
        .bind(layout.schema.as_str())
        .bind(MAPPING_TABLE)
        .bind(CURRENT_TENANT_FUNCTION)
        .bind(function_marker)
        .bind(current_tenant_function_body(layout))
        .bind(FUNCTION_CONFIG)
        .bind(connect_group.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(LayoutState {
        owner_exists: row.try_get("owner_exists")?,
        owner_comment: row.try_get("owner_comment")?,
        owner_drift: row.try_get("owner_drift")?,
        group_exists: row.try_get("group_exists")?,
        group_comment: row.try_get("group_comment")?,
        group_drift: row.try_get("group_drift")?,
        admin_member: row.try_get("admin_member")?,
        owner_connect: row.try_get("owner_connect")?,
        schema_exists: row.try_get("schema_exists")?,
        schema_comment: row.try_get("schema_comment")?,
        schema_owner_ok: row.try_get("schema_owner_ok")?,
        group_usage: row.try_get("group_usage")?,
        mapping_exists: row.try_get("mapping_exists")?,
        mapping_owner_ok: row.try_get("mapping_owner_ok")?,
        function_exists: row.try_get("function_exists")?,
        function_owner_ok: row.try_get("function_owner_ok")?,
        function_ok: row.try_get("function_ok")?,
    })
}

async fn exec(conn: &mut PgConnection, sql: String) -> Result<()> {
    crate::fence::check()?;
    debug!(sql = %sql, "shared layout DDL");
    sqlx::raw_sql(ddl(sql)).execute(&mut *conn).await?;
    Ok(())
}

/// Creates what is missing of the layout's fixed objects, in one transaction under the layout's
/// advisory lock. Returns the number of statements issued.
async fn bootstrap(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    connect_group: &Ident,
) -> Result<usize> {
    use sqlx::Connection;
    let fmarker = function_marker(layout);
    let mut tx = conn.begin().await?;
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    let st = layout_state(&mut tx, layout, &fmarker, connect_group).await?;
    if st.complete(layout) {
        tx.rollback().await?;
        return Ok(0);
    }
    let marker = layout.marker();
    let marker_lit = lit(&marker)?;
    let (s, owner, group) = (&layout.schema, &layout.owner, &layout.tenants);
    // No password either: the owner logs in only for its schema maintenance, with a one-time
    // password (`PgAdmin::owner_session`); a crash in that window leaves LOGIN behind, which is
    // drift repaired here.
    const LEAST: &str =
        "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD NULL";
    let mut stmts: Vec<String> = Vec::new();
    // Roles (cluster-wide, as the admin).
    for (role, exists, comment, drift) in [
        (owner, st.owner_exists, &st.owner_comment, st.owner_drift),
        (group, st.group_exists, &st.group_comment, st.group_drift),
    ] {
        if !exists {
            stmts.push(format!("CREATE ROLE {role} {LEAST}"));
            stmts.push(format!("COMMENT ON ROLE {role} IS {marker_lit}"));
        } else {
            if comment.as_deref() != Some(marker.as_str()) {
                return Err(Error::Conflict(format!(
                    "role {} exists but is not managed by the shared layout {}",
                    role.as_str(),
                    s.as_str()
                )));
            }
            if drift {
                stmts.push(format!("ALTER ROLE {role} {LEAST}"));
            }
        }
    }
    if !st.admin_member {
        // A non-superuser admin (CREATEROLE) must be able to SET ROLE to the owner; this
        // membership is also what makes its sessions "operator" sessions for the policies.
        stmts.push(format!("GRANT {owner} TO CURRENT_USER"));
    }
    if !st.owner_connect {
        // The owner logs in to the shared database for the layout's migrations and partitions.
        stmts.push(format!("GRANT {connect_group} TO {owner}"));
    }
    if !st.schema_exists {
        stmts.push(format!("CREATE SCHEMA {s} AUTHORIZATION {owner}"));
        stmts.push(format!("COMMENT ON SCHEMA {s} IS {marker_lit}"));
    } else {
        if st.schema_comment.as_deref() != Some(marker.as_str()) {
            return Err(Error::Conflict(format!(
                "schema {} exists but is not managed by the shared layout",
                s.as_str()
            )));
        }
        if !st.schema_owner_ok {
            stmts.push(format!("ALTER SCHEMA {s} OWNER TO {owner}"));
        }
    }
    if st.mapping_exists && !st.mapping_owner_ok {
        stmts.push(format!("ALTER TABLE {s}.{MAPPING_TABLE} OWNER TO {owner}"));
    }
    if st.function_exists && !st.function_owner_ok {
        stmts.push(format!(
            "ALTER FUNCTION {s}.{CURRENT_TENANT_FUNCTION}() OWNER TO {owner}"
        ));
    }
    // Everything below is created by, and so owned by, the owner role.
    stmts.push(format!("SET LOCAL ROLE {owner}"));
    if !st.mapping_exists {
        stmts.push(format!(
            "CREATE TABLE IF NOT EXISTS {s}.{MAPPING_TABLE} (\
             role_name name PRIMARY KEY, \
             tenant_id varchar(36) NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now())"
        ));
        stmts.push(format!(
            "CREATE INDEX IF NOT EXISTS {MAPPING_TABLE}_tenant_id ON {s}.{MAPPING_TABLE} (tenant_id)"
        ));
        stmts.push(format!(
            "COMMENT ON TABLE {s}.{MAPPING_TABLE} IS 'tenantdb: login role -> tenant id of shared tenants (no tenant privileges)'"
        ));
    }
    stmts.push(format!(
        "REVOKE ALL ON TABLE {s}.{MAPPING_TABLE} FROM PUBLIC"
    ));
    if !st.function_ok {
        stmts.push(current_tenant_function_sql(layout));
        stmts.push(format!(
            "REVOKE ALL ON FUNCTION {s}.{CURRENT_TENANT_FUNCTION}() FROM PUBLIC"
        ));
        stmts.push(format!(
            "GRANT EXECUTE ON FUNCTION {s}.{CURRENT_TENANT_FUNCTION}() TO {group}"
        ));
        stmts.push(format!(
            "COMMENT ON FUNCTION {s}.{CURRENT_TENANT_FUNCTION}() IS {}",
            lit(&fmarker)?
        ));
    }
    stmts.push(format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"));
    stmts.push(format!("GRANT USAGE ON SCHEMA {s} TO {group}"));
    let n = stmts.len();
    for stmt in stmts {
        exec(&mut tx, stmt).await?;
    }
    tx.commit().await?;
    info!(
        schema = s.as_str(),
        statements = n,
        "shared layout bootstrapped"
    );
    Ok(n)
}

/// Creates or repairs the shared layout and brings it to the latest version of `set`: owner and
/// group roles, schema, mapping table and [`CURRENT_TENANT_FUNCTION`] (as needed), then the
/// migrations (once, on a session **logged in as the owner role**, which is not a superuser and
/// holds no right over `schema`/`database` tenants: [`PgAdmin::owner_session`]), then
/// [`ensure_policies`].
///
/// Idempotent and cheap when up to date: a few catalog reads, no DDL, no write. Safe to call
/// from several operator replicas (an advisory lock serializes the changes). Returns the schema's
/// migration version (`None` for an empty set).
///
/// Errors: [`Error::Conflict`] if the roles or the schema exist without this layout's marker,
/// [`Error::Migration`] for migration failures or drift.
pub async fn ensure_layout(
    admin: &PgAdmin,
    layout: &SharedLayout,
    set: &MigrationSet,
) -> Result<Option<i64>> {
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let fmarker = function_marker(layout);
    let connect_group = crate::naming::connect_group_of(&admin.settings().shared_database)?;
    let st = layout_state(&mut conn, layout, &fmarker, &connect_group).await?;
    if !st.complete(layout) {
        bootstrap(&mut conn, layout, &connect_group).await?;
    }
    let target = layout.migration_target();
    let applied = migrate::status(&mut conn, &target).await?;
    let plan = migrate::plan(set, &applied, None)?;
    let version = if plan.is_empty() {
        plan.to
    } else {
        let mut session = admin
            .owner_session(&layout.owner, &admin.settings().shared_database)
            .await?;
        let report = migrate::migrate(&mut session, set, &target, None, false).await;
        session.close().await;
        let report = report?;
        info!(
            schema = layout.schema.as_str(),
            from = ?report.from,
            to = ?report.to,
            steps = report.applied.len(),
            "shared layout migrated"
        );
        report.to
    };
    ensure_policies_on(&mut conn, layout).await?;
    Ok(version)
}

// ---------------------------------------------------------------------------------------------
// Policies and privileges

/// SQL expression (on `pg_class c`): the column a tenant-scoped relation is keyed by, `tenant_id`,
/// or `id` for the tenant table itself.
const KEY_COLUMN_SQL: &str = "CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped) THEN 'tenant_id' ELSE 'id' END";

/// SQL predicate (on `pg_class c`) selecting the tenant-scoped relations: a `tenant_id` column, or
/// the tenant table itself; never the mapping table.
fn tenant_scoped_predicate() -> String {
    format!(
        "(c.relname <> '{MAPPING_TABLE}' AND (\
           EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped) \
           OR (c.relname = '{TENANT_TABLE}' AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'id' AND a.attnum > 0 AND NOT a.attisdropped))))"
    )
}

/// A query listing every privilege in the layout schema that is not one the design grants:
/// columns `kind` (`TABLE`, `ROUTINE`, `SCHEMA`), `obj` (server-quoted object name) and
/// `grantee` (oid, 0 = PUBLIC). Owners' privileges are always fine.
pub(super) fn foreign_acl_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let g = format!(
        "COALESCE((SELECT oid FROM pg_roles WHERE rolname = {}), 1::oid)",
        lit(layout.tenants.as_str())?
    );
    let scoped = tenant_scoped_predicate();
    Ok(format!(
        "SELECT 'TABLE'::text AS kind, c.oid::regclass::text AS obj, a.grantee \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN LATERAL aclexplode(COALESCE(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))) a \
         WHERE n.nspname = {s} AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee <> c.relowner \
           AND NOT (a.grantee = {g} AND NOT a.is_grantable AND ( \
                (c.relkind = 'S' AND a.privilege_type = 'USAGE') \
             OR (c.relkind IN ('r', 'p') AND NOT c.relispartition AND {scoped} \
                 AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')))) \
         UNION ALL \
         SELECT 'ROUTINE', p.oid::regprocedure::text, a.grantee \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         CROSS JOIN LATERAL aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a \
         WHERE n.nspname = {s} AND p.prosecdef AND a.grantee <> p.proowner \
           AND NOT (p.proname = '{CURRENT_TENANT_FUNCTION}' AND p.pronargs = 0 AND a.grantee = {g} \
                    AND a.privilege_type = 'EXECUTE' AND NOT a.is_grantable) \
         UNION ALL \
         SELECT 'SCHEMA', quote_ident(n.nspname), a.grantee \
         FROM pg_namespace n CROSS JOIN LATERAL aclexplode(COALESCE(n.nspacl, acldefault('n', n.nspowner))) a \
         WHERE n.nspname = {s} AND a.grantee <> n.nspowner \
           AND NOT (a.grantee = {g} AND a.privilege_type = 'USAGE' AND NOT a.is_grantable)"
    ))
}

#[derive(Debug, Deserialize)]
struct CatalogPolicy {
    name: String,
    permissive: bool,
    cmd: String,
    public: bool,
    comment: Option<String>,
    expr_hash: String,
}

#[derive(Debug, Deserialize)]
struct CatalogTable {
    name: String,
    partition: bool,
    rls: bool,
    force_rls: bool,
    key_column: String,
    group_privileges: i64,
    policies: Vec<CatalogPolicy>,
    refs: Vec<CatalogRef>,
}

/// A foreign key from a tenant-scoped table to another tenant-scoped table.
#[derive(Debug, Deserialize)]
struct CatalogRef {
    parent: String,
    columns: Vec<String>,
    parent_columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PolicyCatalog {
    tables: Vec<CatalogTable>,
    sequences_without_usage: Vec<String>,
    foreign_acl: i64,
}

pub(super) fn policy_catalog_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let g = lit(layout.tenants.as_str())?;
    let scoped = tenant_scoped_predicate();
    let foreign = foreign_acl_sql(layout)?;
    Ok(format!(
        "WITH rel AS ( \
           SELECT c.oid, c.relname::text AS name, c.relispartition AS partition, \
                  c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls, \
                  {KEY_COLUMN_SQL} AS key_column, \
                  c.relacl, c.relowner \
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = {s} AND c.relkind IN ('r', 'p') AND {scoped}) \
         SELECT json_build_object( \
           'tables', COALESCE((SELECT json_agg(json_build_object( \
               'name', rel.name, 'partition', rel.partition, 'rls', rel.rls, 'force_rls', rel.force_rls, \
               'key_column', rel.key_column, \
               'group_privileges', (SELECT count(DISTINCT a.privilege_type) FROM aclexplode(COALESCE(rel.relacl, acldefault('r', rel.relowner))) a \
                                    WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = {g}) \
                                      AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')), \
               'policies', COALESCE((SELECT json_agg(json_build_object( \
                   'name', p.polname::text, 'permissive', p.polpermissive, 'cmd', p.polcmd::text, \
                   'public', p.polroles = '{{0}}'::oid[], 'comment', obj_description(p.oid, 'pg_policy'), \
                   'expr_hash', {POLICY_EXPR_HASH})) \
                 FROM pg_policy p WHERE p.polrelid = rel.oid), '[]'::json), \
               'refs', COALESCE((SELECT json_agg(json_build_object( \
                   'parent', pc.relname::text, \
                   'columns', (SELECT json_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum), \
                   'parent_columns', (SELECT json_agg(a.attname::text ORDER BY k.ord) FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
                               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum)) ORDER BY con.conname) \
                 FROM pg_constraint con JOIN pg_class pc ON pc.oid = con.confrelid \
                 WHERE con.conrelid = rel.oid AND con.contype = 'f' AND con.confrelid <> con.conrelid \
                   AND con.confrelid IN (SELECT oid FROM rel) AND NOT pc.relispartition \
                   AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = con.conrelid \
                                   AND a.attnum = ANY (con.conkey) AND a.attname = rel.key_column)), '[]'::json) \
               ) ORDER BY rel.name) FROM rel), '[]'::json), \
           'sequences_without_usage', COALESCE((SELECT json_agg(c.relname::text ORDER BY c.relname) \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = {s} AND c.relkind = 'S' AND NOT EXISTS ( \
                 SELECT 1 FROM aclexplode(COALESCE(c.relacl, acldefault('s', c.relowner))) a \
                 WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = {g}) AND a.privilege_type = 'USAGE')), '[]'::json), \
           'foreign_acl', (SELECT count(*) FROM ({foreign}) f))"
    ))
}

/// Hash of a policy's deparsed expressions (on `pg_policy p`). Stored in the policy's comment when
/// it is created, so that an `ALTER POLICY` changing its expressions is detected as drift.
const POLICY_EXPR_HASH: &str = "md5(COALESCE(pg_get_expr(p.polqual, p.polrelid), '') || '|' || COALESCE(pg_get_expr(p.polwithcheck, p.polrelid), ''))";

/// A statement of [`ensure_policies`].
pub(super) enum Stmt {
    /// Plain SQL.
    Sql(String),
    /// Comment a freshly created policy with its marker and the hash of its expressions.
    MarkPolicy {
        table: String,
        name: &'static str,
        marker: String,
    },
}

/// One policy the design wants on a table.
struct WantedPolicy {
    name: &'static str,
    /// `polcmd`: `*` for ALL, `r` for SELECT, `a` for INSERT, `w` for UPDATE.
    cmd: &'static str,
    permissive: bool,
    sql: String,
    marker: String,
}

fn wanted_policies(
    layout: &SharedLayout,
    table: &str,
    key_column: &str,
    refs: &[CatalogRef],
) -> Result<Vec<WantedPolicy>> {
    let s = &layout.schema;
    let t = quote_identifier(table)?;
    let k = quote_identifier(key_column)?;
    let owner = lit(layout.owner.as_str())?;
    let tenant_expr = format!("{k} = (SELECT {s}.{CURRENT_TENANT_FUNCTION}())");
    let operator_expr = format!("(SELECT pg_catalog.pg_has_role(session_user, {owner}, 'MEMBER'))");
    let mut specs: Vec<(&'static str, &'static str, bool, String)> = vec![
        (
            POLICY_TENANT,
            "*",
            true,
            format!(
                "CREATE POLICY {POLICY_TENANT} ON {s}.{t} AS PERMISSIVE FOR ALL TO PUBLIC \
                 USING ({tenant_expr}) WITH CHECK ({tenant_expr})"
            ),
        ),
        (
            POLICY_OPERATOR,
            "*",
            true,
            format!(
                "CREATE POLICY {POLICY_OPERATOR} ON {s}.{t} AS PERMISSIVE FOR ALL TO PUBLIC \
                 USING ({operator_expr}) WITH CHECK ({operator_expr})"
            ),
        ),
    ];
    if GLOBAL_READ_TABLES.contains(&table) && key_column == "tenant_id" {
        specs.push((
            POLICY_GLOBAL_READ,
            "r",
            true,
            format!(
                "CREATE POLICY {POLICY_GLOBAL_READ} ON {s}.{t} AS PERMISSIVE FOR SELECT TO PUBLIC \
                 USING ({k} IS NULL)"
            ),
        ));
    }
    if !refs.is_empty() {
        // Each reference must point at a row the session can see (its own tenant's, or a global
        // row). The subquery runs with the session's privileges and row-level security.
        // Self-references are left out (a policy on a table may not query that same table).
        let mut conds = Vec::with_capacity(refs.len());
        for r in refs {
            let parent = quote_identifier(&r.parent)?;
            let mut nulls = Vec::new();
            let mut eqs = Vec::new();
            for (c, pc) in r.columns.iter().zip(&r.parent_columns) {
                let c = quote_identifier(c)?;
                let pc = quote_identifier(pc)?;
                nulls.push(format!("{t}.{c} IS NULL"));
                eqs.push(format!("p.{pc} = {t}.{c}"));
            }
            conds.push(format!(
                "({} OR EXISTS (SELECT 1 FROM {s}.{parent} p WHERE {}))",
                nulls.join(" OR "),
                eqs.join(" AND ")
            ));
        }
        let cond = conds.join(" AND ");
        specs.push((
            POLICY_REFS_INSERT,
            "a",
            false,
            format!(
                "CREATE POLICY {POLICY_REFS_INSERT} ON {s}.{t} AS RESTRICTIVE FOR INSERT TO PUBLIC \
                 WITH CHECK ({cond})"
            ),
        ));
        specs.push((
            POLICY_REFS_UPDATE,
            "w",
            false,
            format!(
                "CREATE POLICY {POLICY_REFS_UPDATE} ON {s}.{t} AS RESTRICTIVE FOR UPDATE TO PUBLIC \
                 USING (true) WITH CHECK ({cond})"
            ),
        ));
    }
    Ok(specs
        .into_iter()
        .map(|(name, cmd, permissive, sql)| WantedPolicy {
            name,
            cmd,
            permissive,
            marker: format!(
                "tenantdb.io/rls-policy={LAYOUT_VERSION}:{}",
                short_hash(&sql)
            ),
            sql,
        })
        .collect())
}

/// The statements closing the gap between the catalog and the design.
pub(super) fn policy_statements(
    layout: &SharedLayout,
    catalog: &PolicyCatalog,
) -> Result<Vec<Stmt>> {
    let s = &layout.schema;
    let group = &layout.tenants;
    let mut stmts: Vec<String> = Vec::new();
    let mut out: Vec<Stmt> = Vec::new();
    if catalog.foreign_acl > 0 {
        let foreign = foreign_acl_sql(layout)?;
        stmts.push(format!(
            "DO $tenantdb$ DECLARE r record; BEGIN \
               FOR r IN {foreign} LOOP \
                 EXECUTE format('REVOKE ALL ON %s %s FROM %s CASCADE', r.kind, r.obj, \
                   CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END); \
               END LOOP; END $tenantdb$"
        ));
    }
    for table in &catalog.tables {
        let t = quote_identifier(&table.name)?;
        if !table.rls {
            stmts.push(format!("ALTER TABLE {s}.{t} ENABLE ROW LEVEL SECURITY"));
        }
        if !table.force_rls {
            stmts.push(format!("ALTER TABLE {s}.{t} FORCE ROW LEVEL SECURITY"));
        }
        let refs: &[CatalogRef] = if table.partition { &[] } else { &table.refs };
        let wanted = wanted_policies(layout, &table.name, &table.key_column, refs)?;
        let wanted_names: BTreeSet<&str> = wanted.iter().map(|w| w.name).collect();
        for p in &table.policies {
            // Permissive policies OR together: one we did not write could widen access. Policies
            // named like ours but not exactly ours are rewritten below. Restrictive ones only
            // narrow access and are kept.
            let ours = p.name.starts_with("tenantdb_");
            if (p.permissive || ours) && !wanted_names.contains(p.name.as_str()) {
                let pn = quote_identifier(&p.name).map_err(|_| {
                    Error::Conflict(format!(
                        "unexpected permissive policy {:?} on {}.{}",
                        p.name,
                        s.as_str(),
                        table.name
                    ))
                })?;
                warn!(table = %table.name, policy = %p.name, "dropping a permissive policy not managed by tenantdb");
                stmts.push(format!("DROP POLICY {pn} ON {s}.{t}"));
            }
        }
        for w in &wanted {
            let current = table.policies.iter().find(|p| p.name == w.name);
            let ok = current.is_some_and(|p| {
                p.permissive == w.permissive
                    && p.public
                    && p.cmd == w.cmd
                    && p.comment.as_deref()
                        == Some(format!("{}:{}", w.marker, p.expr_hash).as_str())
            });
            if !ok {
                if current.is_some() {
                    stmts.push(format!("DROP POLICY {} ON {s}.{t}", w.name));
                }
                stmts.push(w.sql.clone());
                out.extend(stmts.drain(..).map(Stmt::Sql));
                out.push(Stmt::MarkPolicy {
                    table: table.name.clone(),
                    name: w.name,
                    marker: w.marker.clone(),
                });
            }
        }
        // The revocation above may have taken (some of) the group's privileges along.
        if !table.partition && (table.group_privileges < 4 || catalog.foreign_acl > 0) {
            stmts.push(format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {s}.{t} TO {group}"
            ));
        }
    }
    for seq in &catalog.sequences_without_usage {
        let q = quote_identifier(seq)?;
        stmts.push(format!("GRANT USAGE ON SEQUENCE {s}.{q} TO {group}"));
    }
    if catalog.foreign_acl > 0 {
        stmts.push(format!(
            "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {group}"
        ));
        stmts.push(format!(
            "GRANT EXECUTE ON FUNCTION {s}.{CURRENT_TENANT_FUNCTION}() TO {group}"
        ));
        stmts.push(format!("GRANT USAGE ON SCHEMA {s} TO {group}"));
    }
    out.extend(stmts.into_iter().map(Stmt::Sql));
    Ok(out)
}

async fn policy_catalog(conn: &mut PgConnection, layout: &SharedLayout) -> Result<PolicyCatalog> {
    let sql = policy_catalog_sql(layout)?;
    let json: sqlx::types::Json<PolicyCatalog> = sqlx::query_scalar(ddl(sql))
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    Ok(json.0)
}

async fn ensure_policies_on(conn: &mut PgConnection, layout: &SharedLayout) -> Result<usize> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    // Deparsed policy expressions depend on search_path: pin it for the check and the marks.
    sqlx::raw_sql("SET LOCAL search_path TO pg_catalog, pg_temp")
        .execute(&mut *tx)
        .await?;
    let catalog = policy_catalog(&mut tx, layout).await?;
    if policy_statements(layout, &catalog)?.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    // Re-read under the lock: another replica may have done part of the work.
    let catalog = policy_catalog(&mut tx, layout).await?;
    let stmts = policy_statements(layout, &catalog)?;
    exec(&mut tx, format!("SET LOCAL ROLE {}", layout.owner)).await?;
    let n = stmts.len();
    for stmt in stmts {
        match stmt {
            Stmt::Sql(sql) => exec(&mut tx, sql).await?,
            Stmt::MarkPolicy {
                table,
                name,
                marker,
            } => {
                let sql = format!(
                    "SELECT {POLICY_EXPR_HASH} FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2 AND p.polname = $3"
                );
                let hash: String = sqlx::query_scalar(ddl(sql))
                    .persistent(false)
                    .bind(layout.schema.as_str())
                    .bind(&table)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                let t = quote_identifier(&table)?;
                exec(
                    &mut tx,
                    format!(
                        "COMMENT ON POLICY {name} ON {}.{t} IS {}",
                        layout.schema,
                        lit(&format!("{marker}:{hash}"))?
                    ),
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    info!(
        schema = layout.schema.as_str(),
        statements = n,
        "row-level security policies and privileges updated"
    );
    Ok(n)
}

/// Puts row-level security and privileges in place on every tenant-scoped table of the layout
/// schema, discovered from the catalog (any table with a `tenant_id` column, and `saas_tenants`),
/// partitions included:
///
/// - `ENABLE` and `FORCE ROW LEVEL SECURITY`;
/// - the policies [`POLICY_TENANT`] and [`POLICY_OPERATOR`] (plus [`POLICY_GLOBAL_READ`] on
///   [`GLOBAL_READ_TABLES`]), recreated if they drifted (each carries a versioned hash of its SQL
///   as comment); other **permissive** policies are dropped (they would widen access), restrictive
///   ones are kept;
/// - `SELECT, INSERT, UPDATE, DELETE` for the group role on tables that are not partitions,
///   `USAGE` on sequences; every other privilege in the schema held by anyone but the owner
///   (including `PUBLIC`'s default `EXECUTE` on `SECURITY DEFINER` functions written by migrations)
///   is revoked.
///
/// Idempotent; one catalog query and no DDL when everything is in place. Run it after every
/// migration of the layout schema and after partition maintenance ([`ensure_layout`] does).
/// Returns the number of statements issued.
pub async fn ensure_policies(admin: &PgAdmin, layout: &SharedLayout) -> Result<usize> {
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    ensure_policies_on(&mut conn, layout).await
}

// ---------------------------------------------------------------------------------------------
// Tenants

const TENANT_STATE_SQL: &str = r#"
SELECT
  r.rolname::text AS role,
  r.rolsuper OR r.rolbypassrls AS privileged,
  COALESCE((SELECT pg_has_role(r.oid, o.oid, 'MEMBER') FROM pg_roles o WHERE o.rolname = $2), false) AS owner_member,
  EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
          WHERE g.rolname = $3 AND m.member = r.oid) AS group_member
FROM pg_roles r WHERE r.rolname = ANY($1)
"#;

struct RoleState {
    role: String,
    privileged: bool,
    owner_member: bool,
    group_member: bool,
}

async fn role_states(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    roles: &[&str],
) -> Result<Vec<RoleState>> {
    let rows = sqlx::query(TENANT_STATE_SQL)
        .bind(roles)
        .bind(layout.owner.as_str())
        .bind(layout.tenants.as_str())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RoleState {
                role: r.try_get("role")?,
                privileged: r.try_get("privileged")?,
                owner_member: r.try_get("owner_member")?,
                group_member: r.try_get("group_member")?,
            })
        })
        .collect()
}

async fn mappings(
    conn: &mut PgConnection,
    layout: &SharedLayout,
    roles: &[&str],
) -> Result<BTreeMap<String, String>> {
    let sql = format!(
        "SELECT role_name::text, tenant_id::text FROM {}.{MAPPING_TABLE} WHERE role_name = ANY($1::name[])",
        layout.schema
    );
    let rows: Vec<(String, String)> = sqlx::query_as(ddl(sql))
        .persistent(false)
        .bind(roles)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

fn check_tenant_roles(layout: &SharedLayout, tenant_role: &Ident, secondary: &Ident) -> Result<()> {
    let reserved = [&layout.owner, &layout.tenants];
    if tenant_role == secondary || reserved.contains(&tenant_role) || reserved.contains(&secondary)
    {
        return Err(Error::InvalidSpec(format!(
            "roles {} / {} cannot be registered as a shared tenant",
            tenant_role.as_str(),
            secondary.as_str()
        )));
    }
    Ok(())
}

/// Registers a shared tenant: maps its login roles (`tenant_role`, the primary, and
/// `secondary_role`, the rotation role `<role>_b`) to `tenant_id` and makes the primary a member
/// of the layout's group role (which holds the table privileges; the rotation role inherits them
/// as a member of the primary). Both roles must exist (the lead's plan creates them, grants
/// `CONNECT` on the shared database and sets their `search_path` to the layout schema).
///
/// Idempotent; no write when already registered. Refuses ([`Error::Conflict`]) to map a role that
/// is already mapped to another tenant, or a role that is a superuser, has `BYPASSRLS` or is a
/// member of the owner role (any of which would defeat row-level security).
pub async fn register_tenant(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary_role: &Ident,
    tenant_id: &str,
) -> Result<()> {
    use sqlx::Connection;
    validate_tenant_id(tenant_id)?;
    check_tenant_roles(layout, tenant_role, secondary_role)?;
    let roles = [tenant_role.as_str(), secondary_role.as_str()];
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    let states = role_states(&mut tx, layout, &roles).await?;
    for role in roles {
        let Some(state) = states.iter().find(|s| s.role == role) else {
            return Err(Error::Internal(format!(
                "shared tenant role {role} does not exist (create the roles before registering)"
            )));
        };
        if state.privileged || state.owner_member {
            return Err(Error::Conflict(format!(
                "role {role} is a superuser, has BYPASSRLS or is a member of {}: it cannot be a shared tenant",
                layout.owner.as_str()
            )));
        }
    }
    let current = mappings(&mut tx, layout, &roles).await?;
    for (role, id) in &current {
        if id != tenant_id {
            return Err(Error::Conflict(format!(
                "role {role} is already mapped to another shared tenant"
            )));
        }
    }
    let mut changed = false;
    if current.len() < roles.len() {
        let sql = format!(
            "INSERT INTO {}.{MAPPING_TABLE} (role_name, tenant_id) SELECT r, $2 FROM unnest($1::name[]) AS r \
             ON CONFLICT (role_name) DO NOTHING",
            layout.schema
        );
        sqlx::query(ddl(sql))
            .persistent(false)
            .bind(&roles[..])
            .bind(tenant_id)
            .execute(&mut *tx)
            .await?;
        changed = true;
    }
    let primary_member = states
        .iter()
        .any(|s| s.role == tenant_role.as_str() && s.group_member);
    if !primary_member {
        exec(
            &mut tx,
            format!("GRANT {} TO {}", layout.tenants, tenant_role),
        )
        .await?;
        changed = true;
    }
    if changed {
        tx.commit().await?;
        info!(role = tenant_role.as_str(), "shared tenant registered");
    } else {
        tx.rollback().await?;
    }
    Ok(())
}

/// Whether the tenant is registered as [`register_tenant`] leaves it: both login roles mapped to
/// `tenant_id` and the primary a member of the group role. One query, no writes: a resync of a
/// Ready shared tenant that gets `true` has nothing to do. `false` if the layout does not exist.
pub async fn observe_tenant(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary_role: &Ident,
    tenant_id: &str,
) -> Result<bool> {
    let pool = admin.shared_pool().await?;
    let sql = format!(
        "SELECT (SELECT count(*) FROM {s}.{MAPPING_TABLE} WHERE role_name = ANY($1::name[]) AND tenant_id = $2) = 2 \
           AND EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member \
                       WHERE g.rolname = $3 AND r.rolname = $4)",
        s = layout.schema
    );
    let roles = [tenant_role.as_str(), secondary_role.as_str()];
    let r = sqlx::query_scalar::<_, bool>(ddl(sql))
        .persistent(false)
        .bind(&roles[..])
        .bind(tenant_id)
        .bind(layout.tenants.as_str())
        .bind(tenant_role.as_str())
        .fetch_one(pool)
        .await;
    match r {
        Ok(v) => Ok(v),
        // undefined_table / invalid_schema_name: the layout does not exist (yet).
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Withdraws a shared tenant's access: revokes the group membership of both roles and removes
/// their mappings (from then on their sessions see no rows and may touch no table, even sessions
/// that are already open). Rows are kept (see [`delete_tenant_rows`]); the roles are left for the
/// caller to drop. Idempotent: missing roles, memberships or mappings are fine.
pub async fn unregister_tenant(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_role: &Ident,
    secondary_role: &Ident,
) -> Result<()> {
    use sqlx::Connection;
    check_tenant_roles(layout, tenant_role, secondary_role)?;
    let roles = [tenant_role.as_str(), secondary_role.as_str()];
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    advisory_xact_lock(&mut tx, layout.lock_key()).await?;
    let states = role_states(&mut tx, layout, &roles).await?;
    let mut changed = false;
    for ident in [tenant_role, secondary_role] {
        if states
            .iter()
            .any(|s| s.role == ident.as_str() && s.group_member)
        {
            exec(&mut tx, format!("REVOKE {} FROM {}", layout.tenants, ident)).await?;
            changed = true;
        }
    }
    let sql = format!(
        "DELETE FROM {}.{MAPPING_TABLE} WHERE role_name = ANY($1::name[])",
        layout.schema
    );
    let r = sqlx::query(ddl(sql))
        .persistent(false)
        .bind(&roles[..])
        .execute(&mut *tx)
        .await;
    match r {
        Ok(done) => changed |= done.rows_affected() > 0,
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01") | Some("3F000")) =>
        {
            // No layout: nothing is mapped. The transaction is aborted, nothing to commit.
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    if changed {
        tx.commit().await?;
        info!(role = tenant_role.as_str(), "shared tenant unregistered");
    } else {
        tx.rollback().await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct DeletionTable {
    name: String,
    kind: String,
    key_column: String,
    pk: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct DeletionCatalog {
    tables: Vec<DeletionTable>,
    /// (referencing, referenced) pairs among the tables.
    edges: Vec<(String, String)>,
}

pub(super) fn deletion_catalog_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let scoped = tenant_scoped_predicate();
    Ok(format!(
        "SELECT json_build_object( \
           'tables', COALESCE((SELECT json_agg(json_build_object( \
               'name', c.relname::text, 'kind', c.relkind::text, \
               'key_column', {KEY_COLUMN_SQL}, \
               'pk', (SELECT json_agg(a.attname::text ORDER BY k.ord) FROM pg_index i \
                      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                      WHERE i.indrelid = c.oid AND i.indisprimary)) ORDER BY c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = {s} AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND {scoped}), '[]'::json), \
           'edges', COALESCE((SELECT json_agg(DISTINCT jsonb_build_array(c1.relname::text, c2.relname::text)) \
             FROM pg_constraint con \
             JOIN pg_class c1 ON c1.oid = con.conrelid JOIN pg_class c2 ON c2.oid = con.confrelid \
             JOIN pg_namespace n ON n.oid = c1.relnamespace \
             WHERE con.contype = 'f' AND n.nspname = {s} AND c2.relnamespace = n.oid \
               AND NOT c1.relispartition AND NOT c2.relispartition AND c1.oid <> c2.oid), '[]'::json))"
    ))
}

/// Orders tables so that every table comes before the tables it references (children first).
/// Tables in a reference cycle keep name order at the end.
fn deletion_order(tables: &[String], edges: &[(String, String)]) -> Vec<String> {
    let known: BTreeSet<&str> = tables.iter().map(String::as_str).collect();
    // referenced -> number of distinct tables referencing it
    let mut referencing: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut references: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (child, parent) in edges {
        if child != parent && known.contains(child.as_str()) && known.contains(parent.as_str()) {
            referencing.entry(parent).or_default().insert(child);
            references.entry(child).or_default().insert(parent);
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(tables.len());
    loop {
        let ready: Vec<&str> = known
            .iter()
            .copied()
            .filter(|t| !done.contains(t))
            .filter(|t| {
                referencing
                    .get(t)
                    .is_none_or(|children| children.iter().all(|c| done.contains(c)))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        for t in ready {
            done.insert(t);
            order.push(t.to_string());
        }
    }
    for t in &known {
        if !done.contains(t) {
            order.push((*t).to_string());
        }
    }
    order
}

/// Deletes every row of `tenant_id` from every tenant-scoped table of the layout (including
/// `saas_tenants`, keyed by `id`), in batches of `batch_size` rows, each batch its own statement
/// (short transactions, bounded locks and WAL bursts). Tables are processed referencing tables
/// first, so `ON DELETE RESTRICT` references (`ai_agents.created_by`) never block and cascades
/// have nothing left to do. Then the tenant's mappings are removed.
///
/// Batches use the primary key (`DELETE … WHERE (pk) IN (SELECT pk … WHERE tenant_id = $1 LIMIT
/// n)`), or `ctid` for a plain table without one; a partitioned table without a primary key is
/// deleted from in one statement. Global rows (`tenant_id IS NULL`) are never touched.
///
/// Call [`unregister_tenant`] first so that the tenant cannot write while its rows are deleted.
/// Idempotent: returns the number of rows deleted by this call (0 the second time).
pub async fn delete_tenant_rows(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_id: &str,
    batch_size: u32,
) -> Result<u64> {
    validate_tenant_id(tenant_id)?;
    let batch = i64::from(batch_size.max(1));
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let sql = deletion_catalog_sql(layout)?;
    let catalog: sqlx::types::Json<DeletionCatalog> = sqlx::query_scalar(ddl(sql))
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    let catalog = catalog.0;
    let names: Vec<String> = catalog.tables.iter().map(|t| t.name.clone()).collect();
    let order = deletion_order(&names, &catalog.edges);
    let s = &layout.schema;
    let mut total: u64 = 0;
    for name in order {
        let Some(table) = catalog.tables.iter().find(|t| t.name == name) else {
            continue;
        };
        let t = quote_identifier(&table.name)?;
        let k = quote_identifier(&table.key_column)?;
        let (sql, batched) = match &table.pk {
            Some(pk) if !pk.is_empty() => {
                let cols = pk
                    .iter()
                    .map(|c| quote_identifier(c))
                    .collect::<std::result::Result<Vec<_>, _>>()?
                    .join(", ");
                (
                    format!(
                        "DELETE FROM {s}.{t} WHERE ({cols}) IN (SELECT {cols} FROM {s}.{t} WHERE {k} = $1 LIMIT $2)"
                    ),
                    true,
                )
            }
            _ if table.kind == "r" => (
                format!(
                    "DELETE FROM {s}.{t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {s}.{t} WHERE {k} = $1 LIMIT $2))"
                ),
                true,
            ),
            _ => (format!("DELETE FROM {s}.{t} WHERE {k} = $1"), false),
        };
        let mut deleted_here: u64 = 0;
        loop {
            let mut q = sqlx::query(ddl(sql.clone())).bind(tenant_id);
            if batched {
                q = q.bind(batch);
            }
            let n = q.execute(&mut *conn).await?.rows_affected();
            deleted_here += n;
            if !batched || n < batch.unsigned_abs() {
                break;
            }
        }
        if deleted_here > 0 {
            debug!(table = %table.name, rows = deleted_here, "deleted shared tenant rows");
        }
        total += deleted_here;
    }
    let sql = format!("DELETE FROM {s}.{MAPPING_TABLE} WHERE tenant_id = $1");
    sqlx::query(ddl(sql))
        .persistent(false)
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
    info!(
        schema = s.as_str(),
        rows = total,
        "shared tenant rows deleted"
    );
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Storage per tenant

/// One tenant-scoped table's contribution to a storage estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct TableShare {
    /// Rows of the tenant.
    pub tenant_rows: i64,
    /// Rows of all tenants (statistics or an exact count).
    pub total_rows: f64,
    /// Size of the table with its indexes, TOAST and partitions.
    pub bytes: i64,
}

/// The tenant's share of the tables' storage: each table's size in proportion to the tenant's
/// rows. Pure; see [`tenant_storage_bytes`].
pub fn estimate_share(tables: &[TableShare]) -> i64 {
    let total: f64 = tables
        .iter()
        .filter(|t| t.tenant_rows > 0 && t.bytes > 0)
        .map(|t| {
            // Statistics can lag behind (fewer rows than the tenant alone has): never more than
            // the whole table.
            let all = t.total_rows.max(t.tenant_rows as f64).max(1.0);
            t.bytes as f64 * (t.tenant_rows as f64 / all)
        })
        .sum();
    total.round() as i64
}

#[derive(Debug, Deserialize)]
struct UsageTable {
    name: String,
    key_column: String,
    bytes: i64,
    est_rows: f64,
    analyzed: bool,
}

pub(super) fn usage_catalog_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let scoped = tenant_scoped_predicate();
    Ok(format!(
        "SELECT COALESCE(json_agg(json_build_object( \
           'name', c.relname::text, \
           'key_column', {KEY_COLUMN_SQL}, \
           'bytes', (SELECT COALESCE(sum(pg_total_relation_size(t.relid)), 0)::bigint FROM (SELECT relid, isleaf FROM pg_partition_tree(c.oid) UNION ALL SELECT c.oid, true WHERE c.relkind = 'r') t WHERE t.isleaf), \
           'est_rows', (SELECT COALESCE(sum(GREATEST(l.reltuples, 0)), 0)::float8 FROM (SELECT relid, isleaf FROM pg_partition_tree(c.oid) UNION ALL SELECT c.oid, true WHERE c.relkind = 'r') t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf), \
           'analyzed', (SELECT COALESCE(bool_and(l.reltuples >= 0), true) FROM (SELECT relid, isleaf FROM pg_partition_tree(c.oid) UNION ALL SELECT c.oid, true WHERE c.relkind = 'r') t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf)) \
           ORDER BY c.relname), '[]'::json) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {s} AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND {scoped}"
    ))
}

/// Estimated storage of one `shared` tenant: for every tenant-scoped table (partitions
/// included), the table's total size (heap, indexes, TOAST) times the tenant's fraction of its
/// rows. The tenant's rows are counted exactly (one statement, index scans on the `tenant_id`
/// indexes); the table's rows come from the planner statistics (`reltuples`, kept current by
/// autovacuum), or from an exact count when a table has never been analyzed or its statistics
/// show fewer rows than the tenant has. Global rows (`tenant_id IS NULL`) count for nobody.
/// Runs as the operator's admin role (which the policies let see every row).
pub async fn tenant_storage_bytes(
    admin: &PgAdmin,
    layout: &SharedLayout,
    tenant_id: &str,
) -> Result<i64> {
    validate_tenant_id(tenant_id)?;
    let pool = admin.shared_pool().await?;
    let mut conn = pool.acquire().await?;
    let catalog: sqlx::types::Json<Vec<UsageTable>> =
        sqlx::query_scalar(ddl(usage_catalog_sql(layout)?))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await?;
    let tables: Vec<UsageTable> = catalog.0.into_iter().filter(|t| t.bytes > 0).collect();
    if tables.is_empty() {
        return Ok(0);
    }
    let s = &layout.schema;
    let mut parts = Vec::with_capacity(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let name = quote_identifier(&t.name)?;
        let key = quote_identifier(&t.key_column)?;
        parts.push(format!(
            "SELECT {i}::int AS i, count(*)::bigint AS n FROM {s}.{name} WHERE {key} = $1"
        ));
    }
    let rows: Vec<(i32, i64)> = sqlx::query_as(ddl(parts.join(" UNION ALL ")))
        .persistent(false)
        .bind(tenant_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut shares = Vec::with_capacity(tables.len());
    for (i, n) in rows {
        let Some(t) = usize::try_from(i).ok().and_then(|i| tables.get(i)) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        let total_rows = if t.analyzed && t.est_rows >= n as f64 {
            t.est_rows
        } else {
            let name = quote_identifier(&t.name)?;
            let exact: i64 =
                sqlx::query_scalar(ddl(format!("SELECT count(*)::bigint FROM {s}.{name}")))
                    .persistent(false)
                    .fetch_one(&mut *conn)
                    .await?;
            exact as f64
        };
        shares.push(TableShare {
            tenant_rows: n,
            total_rows,
            bytes: t.bytes,
        });
    }
    Ok(estimate_share(&shares))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_share_is_proportional_to_rows_and_bounded_by_the_table() {
        let t = |tenant_rows, total_rows, bytes| TableShare {
            tenant_rows,
            total_rows,
            bytes,
        };
        assert_eq!(estimate_share(&[]), 0);
        // A quarter of one table, all of another.
        assert_eq!(
            estimate_share(&[t(25, 100.0, 8192 * 4), t(10, 10.0, 16384)]),
            8192 + 16384
        );
        // Statistics lagging behind (0 or fewer rows than the tenant has): the whole table.
        assert_eq!(estimate_share(&[t(50, 0.0, 8192)]), 8192);
        assert_eq!(estimate_share(&[t(50, 20.0, 8192)]), 8192);
        // No rows of the tenant: nothing.
        assert_eq!(estimate_share(&[t(0, 1000.0, 1 << 20)]), 0);
    }

    #[test]
    fn tenant_ids_are_deterministic_uuids() {
        let a = tenant_id("team-a", "acme");
        assert_eq!(a, tenant_id("team-a", "acme"));
        assert_ne!(a, tenant_id("team-a", "acme2"));
        assert_ne!(tenant_id("a", "b-c"), tenant_id("a-b", "c"));
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('8'), "version 8: {a}");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "a" | "b"),
            "variant: {a}"
        );
        validate_tenant_id(&a).unwrap();
        assert!(validate_tenant_id("").is_err());
        assert!(validate_tenant_id("x'; drop table y; --").is_err());
        assert!(validate_tenant_id(&"a".repeat(37)).is_err());
    }

    #[test]
    fn layout_names() {
        let l = SharedLayout::defaults().unwrap();
        assert_eq!(l.schema.as_str(), "tenantdb_rls");
        assert_eq!(l.owner.as_str(), "tenantdb_rls_owner");
        assert_eq!(l.tenants.as_str(), "tenantdb_rls_tenants");
        assert_ne!(
            l.lock_key(),
            SharedLayout::for_schema(Ident::new("other").unwrap())
                .unwrap()
                .lock_key()
        );
        assert!(SharedLayout::for_schema(Ident::new(&"a".repeat(60)).unwrap()).is_err());
    }

    #[test]
    fn deletion_order_puts_children_first() {
        let tables: Vec<String> = [
            "saas_tenants",
            "saas_users",
            "ai_agents",
            "ai_conversations",
            "x",
            "y",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = |a: &str, b: &str| (a.to_string(), b.to_string());
        let edges = vec![
            e("saas_users", "saas_tenants"),
            e("ai_agents", "saas_tenants"),
            e("ai_agents", "saas_users"),
            e("ai_conversations", "ai_agents"),
            e("ai_conversations", "saas_users"),
            e("saas_users", "saas_users"),
            e("x", "y"),
            e("y", "x"),
        ];
        let order = deletion_order(&tables, &edges);
        let pos = |t: &str| order.iter().position(|o| o == t).unwrap();
        assert!(pos("ai_conversations") < pos("ai_agents"));
        assert!(pos("ai_agents") < pos("saas_users"));
        assert!(pos("saas_users") < pos("saas_tenants"));
        assert_eq!(order.len(), 6, "cycles are kept: {order:?}");
    }

    #[test]
    fn policies_carry_a_hash_of_their_sql() {
        let l = SharedLayout::defaults().unwrap();
        let p = wanted_policies(&l, "saas_users", "tenant_id", &[]).unwrap();
        assert_eq!(p.len(), 2);
        assert!(
            p[0].sql
                .contains("\"tenantdb_rls\".tenantdb_current_tenant()")
        );
        let g = wanted_policies(&l, "saas_unified_configs", "tenant_id", &[]).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(g[2].cmd, "r");
        assert_ne!(p[0].marker, p[1].marker);
        assert!(wanted_policies(&l, "Bad\"name", "tenant_id", &[]).is_err());
    }
}
