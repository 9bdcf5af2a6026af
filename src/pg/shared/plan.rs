//! Pure planning for the `shared` layout: from a catalog snapshot to the statements that close the
//! gap with the design. Holds the snapshot types the catalog queries of `sql.rs` decode into
//! ([`LayoutState`], [`PolicyCatalog`], [`DeletionCatalog`]) and what they call for: the bootstrap
//! of the fixed objects ([`bootstrap_statements`]), the row-level security policies, grants and
//! revocations ([`policy_statements`]), and the order and statements of a tenant's row deletion
//! ([`deletion_order`], [`delete_statement`]). Nothing here talks to a database; an empty plan
//! means there is nothing to do.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use tracing::warn;

use super::layout::{
    CURRENT_TENANT_FUNCTION, GLOBAL_READ_TABLES, LAYOUT_VERSION, MAPPING_TABLE, POLICY_GLOBAL_READ,
    POLICY_OPERATOR, POLICY_REFS_INSERT, POLICY_REFS_UPDATE, POLICY_TENANT, SharedLayout, lit,
    short_hash,
};
use super::sql::{current_tenant_function_sql, foreign_acl_sql};
use crate::error::{Error, Result};
use crate::migrate::quote_identifier;
use crate::naming::Ident;

/// What the catalog says about the layout's fixed objects.
#[derive(Debug, Default)]
pub(super) struct LayoutState {
    pub(super) owner_exists: bool,
    pub(super) owner_comment: Option<String>,
    pub(super) owner_drift: bool,
    pub(super) group_exists: bool,
    pub(super) group_comment: Option<String>,
    pub(super) group_drift: bool,
    pub(super) admin_member: bool,
    pub(super) owner_connect: bool,
    pub(super) schema_exists: bool,
    pub(super) schema_comment: Option<String>,
    pub(super) schema_owner_ok: bool,
    pub(super) group_usage: bool,
    pub(super) mapping_exists: bool,
    pub(super) mapping_owner_ok: bool,
    pub(super) function_exists: bool,
    pub(super) function_owner_ok: bool,
    pub(super) function_ok: bool,
}

impl LayoutState {
    /// Whether every fixed object is in place as the design wants it (no DDL needed).
    pub(super) fn complete(&self, layout: &SharedLayout) -> bool {
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

/// The statements creating what is missing of the layout's fixed objects, as the catalog shows them
/// (`st`), in order: roles, memberships, schema, ownership repairs, then (as the owner role) the
/// mapping table, [`CURRENT_TENANT_FUNCTION`] and the schema's privileges. `connect_group` is the
/// shared database's `CONNECT` group, `fmarker` the function's marker
/// ([`function_marker`](super::sql::function_marker)).
///
/// Errors: [`Error::Conflict`] if the roles or the schema exist without this layout's marker.
pub(super) fn bootstrap_statements(
    layout: &SharedLayout,
    st: &LayoutState,
    connect_group: &Ident,
    fmarker: &str,
) -> Result<Vec<String>> {
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
            lit(fmarker)?
        ));
    }
    stmts.push(format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"));
    stmts.push(format!("GRANT USAGE ON SCHEMA {s} TO {group}"));
    Ok(stmts)
}

/// A policy on a tenant-scoped table.
#[derive(Debug, Deserialize)]
struct CatalogPolicy {
    name: String,
    permissive: bool,
    cmd: String,
    public: bool,
    comment: Option<String>,
    expr_hash: String,
}

/// A tenant-scoped table (or partition).
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

/// The policy catalog of the layout schema
/// ([`policy_catalog_sql`](super::sql::policy_catalog_sql)).
#[derive(Debug, Deserialize)]
pub(in crate::pg) struct PolicyCatalog {
    tables: Vec<CatalogTable>,
    sequences_without_usage: Vec<String>,
    foreign_acl: i64,
}

/// A statement of `ensure_policies`.
pub(in crate::pg) enum Stmt {
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

/// The policies the design wants on `table` (keyed by `key_column`, referencing `refs`).
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
pub(in crate::pg) fn policy_statements(
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

/// A table a tenant's rows are deleted from.
#[derive(Debug, Deserialize)]
pub(super) struct DeletionTable {
    pub(super) name: String,
    kind: String,
    key_column: String,
    pk: Option<Vec<String>>,
}

/// The deletion catalog of the layout schema
/// ([`deletion_catalog_sql`](super::sql::deletion_catalog_sql)).
#[derive(Debug, Deserialize)]
pub(super) struct DeletionCatalog {
    pub(super) tables: Vec<DeletionTable>,
    /// (referencing, referenced) pairs among the tables.
    pub(super) edges: Vec<(String, String)>,
}

/// Orders tables so that every table comes before the tables it references (children first).
/// Tables in a reference cycle keep name order at the end.
pub(super) fn deletion_order(tables: &[String], edges: &[(String, String)]) -> Vec<String> {
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

/// The statement deleting the rows of the tenant `$1` from `table`, and whether it is batched (then
/// it deletes at most `$2` rows and is repeated until it deletes fewer): by primary key, by `ctid`
/// for a plain table without one, in one statement for a partitioned table without one.
pub(super) fn delete_statement(
    layout: &SharedLayout,
    table: &DeletionTable,
) -> Result<(String, bool)> {
    let s = &layout.schema;
    let t = quote_identifier(&table.name)?;
    let k = quote_identifier(&table.key_column)?;
    Ok(match &table.pk {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
