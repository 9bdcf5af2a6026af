//! SQL text of the `shared` layout, kept apart from the code that runs it: the catalog queries
//! behind every decision (layout state, policies and privileges, deletion and usage catalogs,
//! tenant roles), the definition of [`CURRENT_TENANT_FUNCTION`] and the statements on the
//! [`MAPPING_TABLE`]. Pure string building: identifiers are [`Ident`](crate::naming::Ident)s or
//! catalog names quoted with [`lit`]; values are bound as parameters (`$1`, …) by the callers.

use super::layout::{
    CURRENT_TENANT_FUNCTION, LAYOUT_VERSION, MAPPING_TABLE, SharedLayout, TENANT_TABLE, lit,
    short_hash,
};
use crate::error::Result;

/// The `CREATE FUNCTION` statement of [`CURRENT_TENANT_FUNCTION`].
pub(in crate::pg) fn current_tenant_function_sql(layout: &SharedLayout) -> String {
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
pub(super) fn current_tenant_function_body(layout: &SharedLayout) -> String {
    format!(
        "SELECT m.tenant_id FROM {}.{MAPPING_TABLE} m WHERE m.role_name = session_user",
        layout.schema
    )
}

/// `proconfig` of [`CURRENT_TENANT_FUNCTION`].
pub(super) const FUNCTION_CONFIG: &str = "search_path=pg_catalog, pg_temp";

/// The comment of [`CURRENT_TENANT_FUNCTION`]: versioned hash of its definition, so that a changed
/// definition is detected as drift.
pub(super) fn function_marker(layout: &SharedLayout) -> String {
    format!(
        "tenantdb.io/rls-function={LAYOUT_VERSION}:{}",
        short_hash(&current_tenant_function_sql(layout))
    )
}

/// What the catalog says about the layout's fixed objects, one row decoded into `LayoutState`.
/// Binds `$1` owner role, `$2` group role, `$3` schema, `$4` [`MAPPING_TABLE`], `$5`
/// [`CURRENT_TENANT_FUNCTION`], `$6` [`function_marker`], `$7` [`current_tenant_function_body`],
/// `$8` [`FUNCTION_CONFIG`], `$9` the shared database's `CONNECT` group.
pub(super) const LAYOUT_STATE_SQL: &str = r#"
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
/// `grantee` (oid, 0 = PUBLIC). Owners' privileges are always fine, and so are the grants of a
/// shared tenant's move to its replication login (`crate::moves::repl_login`: `USAGE` on the
/// schema, `SELECT` on its tables, not grantable, to a role named `tenantdb_mv_<16 hex>_repl`,
/// marked `tenantdb.io/move-replication=…` — a role only a superuser or `CREATEROLE` admin can
/// make — while the move's publication exists in this database): revoked as foreign, the move's
/// table copies would fail on the source for as long as it runs. A login left behind without its
/// publication loses them.
pub(in crate::pg) fn foreign_acl_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let g = format!(
        "COALESCE((SELECT oid FROM pg_roles WHERE rolname = {}), 1::oid)",
        lit(layout.tenants.as_str())?
    );
    // (Aliases unlike the repair's PL/pgSQL variables: the query runs inside its loop.)
    let mv = "(SELECT mvr.oid FROM pg_roles mvr \
               WHERE mvr.rolname::text ~ '^tenantdb_mv_[0-9a-f]{16}_repl$' \
                 AND shobj_description(mvr.oid, 'pg_authid') LIKE 'tenantdb.io/move-replication=%' \
                 AND EXISTS (SELECT 1 FROM pg_publication mvp \
                              WHERE mvp.pubname = left(mvr.rolname::text, -5)))";
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
           AND NOT (a.grantee IN {mv} AND c.relkind IN ('r', 'p') AND a.privilege_type = 'SELECT' \
                    AND NOT a.is_grantable) \
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
           AND NOT ((a.grantee = {g} OR a.grantee IN {mv}) AND a.privilege_type = 'USAGE' \
                    AND NOT a.is_grantable)"
    ))
}

/// The policy catalog of the layout schema, one JSON value decoded into
/// `PolicyCatalog`: every tenant-scoped table with its row-level
/// security flags, policies, group privileges and references, the sequences the group cannot use,
/// and the number of foreign privileges ([`foreign_acl_sql`]).
pub(in crate::pg) fn policy_catalog_sql(layout: &SharedLayout) -> Result<String> {
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

/// The hash ([`POLICY_EXPR_HASH`]) of one policy's expressions. Binds `$1` schema, `$2` table, `$3`
/// policy name.
pub(super) fn policy_expr_hash_sql() -> String {
    format!(
        "SELECT {POLICY_EXPR_HASH} FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND p.polname = $3"
    )
}

/// The login roles `$1` (`text[]`) of a tenant: whether each is privileged (superuser,
/// `BYPASSRLS`), a member of the owner role `$2`, a direct member of the group role `$3`.
pub(super) const TENANT_STATE_SQL: &str = r#"
SELECT
  r.rolname::text AS role,
  r.rolsuper OR r.rolbypassrls AS privileged,
  COALESCE((SELECT pg_has_role(r.oid, o.oid, 'MEMBER') FROM pg_roles o WHERE o.rolname = $2), false) AS owner_member,
  EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
          WHERE g.rolname = $3 AND m.member = r.oid) AS group_member
FROM pg_roles r WHERE r.rolname = ANY($1)
"#;

/// The mappings of the roles `$1` (`name[]`): `(role_name, tenant_id)` rows.
pub(super) fn mappings_sql(layout: &SharedLayout) -> String {
    format!(
        "SELECT role_name::text, tenant_id::text FROM {}.{MAPPING_TABLE} WHERE role_name = ANY($1::name[])",
        layout.schema
    )
}

/// Maps the roles `$1` (`name[]`) to the tenant id `$2`; roles already mapped are left alone.
pub(super) fn insert_mappings_sql(layout: &SharedLayout) -> String {
    format!(
        "INSERT INTO {}.{MAPPING_TABLE} (role_name, tenant_id) SELECT r, $2 FROM unnest($1::name[]) AS r \
         ON CONFLICT (role_name) DO NOTHING",
        layout.schema
    )
}

/// Removes the mappings of the roles `$1` (`name[]`).
pub(super) fn delete_role_mappings_sql(layout: &SharedLayout) -> String {
    format!(
        "DELETE FROM {}.{MAPPING_TABLE} WHERE role_name = ANY($1::name[])",
        layout.schema
    )
}

/// Removes every mapping of the tenant id `$1`.
pub(super) fn delete_tenant_mappings_sql(layout: &SharedLayout) -> String {
    let s = &layout.schema;
    format!("DELETE FROM {s}.{MAPPING_TABLE} WHERE tenant_id = $1")
}

/// Whether both roles `$1` (`name[]`) are mapped to the tenant id `$2` and the role `$4` is a
/// member of the group role `$3`: one boolean.
pub(super) fn tenant_registered_sql(layout: &SharedLayout) -> String {
    format!(
        "SELECT (SELECT count(*) FROM {s}.{MAPPING_TABLE} WHERE role_name = ANY($1::name[]) AND tenant_id = $2) = 2 \
           AND EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member \
                       WHERE g.rolname = $3 AND r.rolname = $4)",
        s = layout.schema
    )
}

/// The deletion catalog of the layout schema, one JSON value decoded into
/// `DeletionCatalog`: the tenant-scoped tables that are not
/// partitions, with kind, key column and primary key, and the foreign keys among them.
pub(in crate::pg) fn deletion_catalog_sql(layout: &SharedLayout) -> Result<String> {
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

/// The partition tree of the table `c` (its leaves have `isleaf`), or `c` itself when it is a
/// plain table (`pg_partition_tree` gives nothing for one): `relid, isleaf` rows.
const LEAVES_OF_C: &str = "(SELECT relid, isleaf FROM pg_partition_tree(c.oid) UNION SELECT c.oid, true WHERE c.relkind = 'r')";

/// The tenant-scoped tables of the layout schema that are not partitions, as JSON: each with its
/// key column and its leaf tables (itself when not partitioned), names as in the catalog.
pub(in crate::pg) fn scoped_tables_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let scoped = tenant_scoped_predicate();
    Ok(format!(
        "SELECT COALESCE(json_agg(json_build_object( \
           'name', c.relname::text, \
           'key_column', {KEY_COLUMN_SQL}, \
           'leaves', (SELECT COALESCE(json_agg(l.relname::text ORDER BY l.relname), '[]'::json) \
                        FROM {LEAVES_OF_C} t \
                        JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf)) \
           ORDER BY c.relname), '[]'::json) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {s} AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND {scoped}"
    ))
}

/// The usage catalog of the layout schema, one JSON array: each tenant-scoped table that is not a
/// partition with its key column, total size of its leaf partitions, estimated rows and whether
/// they were all analyzed.
pub(in crate::pg) fn usage_catalog_sql(layout: &SharedLayout) -> Result<String> {
    let s = lit(layout.schema.as_str())?;
    let scoped = tenant_scoped_predicate();
    Ok(format!(
        "SELECT COALESCE(json_agg(json_build_object( \
           'name', c.relname::text, \
           'key_column', {KEY_COLUMN_SQL}, \
           'bytes', (SELECT COALESCE(sum(pg_total_relation_size(t.relid)), 0)::bigint FROM {LEAVES_OF_C} t WHERE t.isleaf), \
           'est_rows', (SELECT COALESCE(sum(GREATEST(l.reltuples, 0)), 0)::float8 FROM {LEAVES_OF_C} t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf), \
           'analyzed', (SELECT COALESCE(bool_and(l.reltuples >= 0), true) FROM {LEAVES_OF_C} t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf)) \
           ORDER BY c.relname), '[]'::json) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {s} AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND {scoped}"
    ))
}
