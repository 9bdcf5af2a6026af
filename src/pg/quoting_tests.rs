//! Quoting: `Ident::new` accepts SQL keywords (`user`, `select`, `order`, …), so double-quoting is
//! the only thing that keeps such a name an identifier. Renders the SQL of every [`Step`] variant
//! (both slots, every managed setting, with and without a rotation, quotas and read-only) and of
//! every shared-layout statement that can be rendered without a database, with keyword names for
//! every identifier, and asserts that no keyword name appears bare: each occurrence is a
//! double-quoted identifier or the content of a string literal (values such as
//! `usename = 'user'`).
//!
//! Not renderable here (built inline in `async` functions that talk to the database; covered by
//! executing them against PostgreSQL with keyword names in `tests/quoting_pg.rs` instead):
//! the cleanup statements of `PgAdmin::cleanup`/`drop_role`, the shared database set-up of
//! `PgAdmin::ensure_shared_database`, and in `shared/` the layout bootstrap
//! (`plan::bootstrap_statements`, from a catalog snapshot, run by `apply::bootstrap`),
//! `register_tenant`, `unregister_tenant`, `observe_tenant`, `mappings` (their SQL in `sql.rs`),
//! `delete_tenant_rows` (`plan::delete_statement`), `tenant_storage_bytes` and the
//! `COMMENT ON POLICY` of `apply::ensure_policies_on` (`Stmt::MarkPolicy`).

use k8s_openapi::jiff::Timestamp;

use tenantdb_testkit::sql_scan::scan;

use super::plan::{Desired, MANAGED_SETTINGS, Slot, Step};
use super::shared::{self, SharedLayout, Stmt};
use crate::naming::{Ident, TenantNames};
use crate::quota::EffectiveQuotas;

/// Reserved SQL keywords used as identifiers. Each one is a syntax error where an identifier is
/// expected unless it is double-quoted.
const KEYWORDS: &[&str] = &[
    "user", "select", "order", "grant", "table", "column", "group", "from", "where",
];

fn kw(name: &str) -> Ident {
    assert!(KEYWORDS.contains(&name), "{name} is not in KEYWORDS");
    Ident::new(name).unwrap_or_else(|e| panic!("Ident::new({name:?}) refused a keyword: {e}"))
}

/// Asserts that no keyword name appears bare in `sql` and that the statement names some
/// identifier (quoted, or a keyword name as a literal value), so that it is not checked
/// vacuously.
#[track_caller]
fn assert_only_quoted(what: &str, sql: &str) {
    let t = scan(sql).unwrap_or_else(|e| panic!("{what}: {e}"));
    for w in &t.bare {
        assert!(
            !KEYWORDS.contains(&w.as_str()),
            "{what}: identifier {w:?} is not quoted in: {sql}"
        );
    }
    let named = !t.quoted.is_empty() || t.literals.iter().any(|s| KEYWORDS.contains(&s.as_str()));
    assert!(named, "{what}: names no identifier: {sql}");
}

#[test]
fn the_check_fails_on_bare_and_vacuous_statements() {
    let caught = std::panic::catch_unwind(|| assert_only_quoted("bare", "DROP ROLE user"));
    assert!(
        caught.is_err(),
        "a bare keyword identifier must fail the check"
    );
    let caught =
        std::panic::catch_unwind(|| assert_only_quoted("vacuous", "SELECT 1 FROM pg_roles"));
    assert!(
        caught.is_err(),
        "a statement naming no identifier must fail the check"
    );
    assert_only_quoted("quoted", r#"DROP ROLE "user""#);
}

// ---------------------------------------------------------------------------------------------
// Steps (src/pg/plan.rs)

/// Number of [`Step`] variants. Adding a variant breaks the `match` in [`variant`]; number it
/// there, raise this count, and add it to [`every_step`].
const STEP_VARIANTS: usize = 23;

fn variant(s: &Step) -> usize {
    match s {
        Step::CreateRole => 0,
        Step::CreateSecondary => 1,
        Step::GrantMembership => 2,
        Step::ResetRoleAttributes(_) => 3,
        Step::SetPassword(_) => 4,
        Step::EnableLogin(_) => 5,
        Step::ExpireLogin(_) => 6,
        Step::DisableLogin(_) => 7,
        Step::TerminateSessions(_) => 8,
        Step::SetConnectionLimit(_) => 9,
        Step::SetRoleSetting(..) => 10,
        Step::ResetRoleSetting(..) => 11,
        Step::MarkRole => 12,
        Step::CreateDatabase => 13,
        Step::MarkDatabase => 14,
        Step::SetDatabaseOwner => 15,
        Step::SetDatabaseConnectionLimit => 16,
        Step::RevokePublicOnDatabase => 17,
        Step::GrantConnect => 18,
        Step::SetSearchPath(_) => 19,
        Step::CreateSchema => 20,
        Step::SetSchemaOwner => 21,
        Step::GrantRoleToAdmin(_) => 22,
    }
}

fn every_step(d: &Desired) -> Vec<Step> {
    let mut v = vec![
        Step::CreateRole,
        Step::CreateSecondary,
        Step::GrantMembership,
        Step::MarkRole,
        Step::CreateDatabase,
        Step::MarkDatabase,
        Step::SetDatabaseOwner,
        Step::SetDatabaseConnectionLimit,
        Step::RevokePublicOnDatabase,
        Step::GrantConnect,
        Step::CreateSchema,
        Step::SetSchemaOwner,
    ];
    for slot in [Slot::Primary, Slot::Secondary] {
        v.extend([
            Step::ResetRoleAttributes(slot),
            Step::GrantRoleToAdmin(slot),
            Step::SetPassword(slot),
            Step::EnableLogin(slot),
            Step::ExpireLogin(slot),
            Step::DisableLogin(slot),
            Step::TerminateSessions(slot),
            Step::SetConnectionLimit(slot),
            Step::SetSearchPath(slot),
        ]);
        for name in MANAGED_SETTINGS {
            v.push(Step::ResetRoleSetting(slot, name));
            // The value the plan would use: the primary role's name for `role`, else a number/on.
            let value = match *name {
                "role" => d.names.role.as_str().to_string(),
                "default_transaction_read_only" => "on".to_string(),
                _ => "30000".to_string(),
            };
            v.push(Step::SetRoleSetting(slot, name, value));
        }
    }
    v
}

/// Tenant names in each isolation mode with a keyword for every identifier.
fn keyword_names() -> Vec<(&'static str, TenantNames)> {
    let marker = "tenantdb.io/owner=ns/select".to_string();
    vec![
        (
            "database",
            TenantNames {
                database: kw("select"),
                schema: Ident::public_schema(),
                role: kw("user"),
                secondary_role: kw("order"),
                dedicated_database: true,
                connect_group: kw("grant"),
                rls: false,
                owner_marker: marker.clone(),
            },
        ),
        (
            "schema",
            TenantNames {
                database: kw("table"),
                schema: kw("select"),
                role: kw("user"),
                secondary_role: kw("order"),
                dedicated_database: false,
                connect_group: kw("grant"),
                rls: false,
                owner_marker: marker.clone(),
            },
        ),
        (
            "shared",
            TenantNames {
                database: kw("table"),
                schema: kw("column"),
                role: kw("user"),
                secondary_role: kw("order"),
                dedicated_database: false,
                connect_group: kw("grant"),
                rls: true,
                owner_marker: marker,
            },
        ),
    ]
}

/// The desired states a step may be rendered for: simple; rotated to the secondary slot within
/// a grace period; with quotas and read-only.
fn desired_variants(names: &TenantNames) -> Vec<(&'static str, Desired)> {
    let simple = Desired::simple(names.clone(), "pw".into());
    let mut rotated = simple.clone();
    rotated.active = Slot::Secondary;
    rotated.previous_valid_until = Some("2030-01-01T00:00:00Z".parse::<Timestamp>().unwrap());
    let mut limited = simple.clone();
    limited.quotas = EffectiveQuotas {
        connection_limit: 5,
        statement_timeout_ms: Some(30_000),
        idle_in_transaction_timeout_ms: Some(60_000),
        storage_bytes: Some(1 << 20),
    };
    limited.read_only = true;
    vec![
        ("simple", simple),
        ("rotated", rotated),
        ("quotas+read-only", limited),
    ]
}

#[test]
fn every_step_quotes_keyword_identifiers() {
    let verifier = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";
    let mut seen = [false; STEP_VARIANTS];
    let mut rendered = 0;
    let mut quoted = std::collections::BTreeSet::new();
    for (mode, names) in keyword_names() {
        for (variant_name, d) in desired_variants(&names) {
            for step in every_step(&d) {
                seen[variant(&step)] = true;
                let what = format!("{mode}/{variant_name}: {step:?}");
                let stmts = step
                    .sql(&d, verifier)
                    .unwrap_or_else(|| panic!("{what}: cannot render"));
                assert!(!stmts.is_empty(), "{what}: no SQL");
                for sql in &stmts {
                    assert_only_quoted(&what, sql);
                    quoted.extend(scan(sql).unwrap().quoted);
                    rendered += 1;
                }
            }
        }
    }
    let missing: Vec<usize> = (0..STEP_VARIANTS).filter(|i| !seen[*i]).collect();
    assert!(
        missing.is_empty(),
        "Step variants not rendered: {missing:?}"
    );
    for name in ["user", "select", "order", "grant", "table", "column"] {
        assert!(
            quoted.contains(name),
            "{name} never rendered as an identifier"
        );
    }
    eprintln!("{rendered} step statements checked");
}

// ---------------------------------------------------------------------------------------------
// Shared layout (src/pg/shared/)

fn keyword_layout() -> SharedLayout {
    SharedLayout {
        schema: kw("user"),
        owner: kw("select"),
        tenants: kw("order"),
    }
}

/// A catalog in which everything is missing or wrong, so that [`shared::policy_statements`]
/// renders every kind of statement: ENABLE/FORCE, a foreign permissive policy to drop, a drifted
/// policy of ours to recreate, the global-read policy, the restrictive same-tenant reference
/// policies, grants on tables and sequences, and the revocation of foreign privileges.
fn broken_catalog() -> shared::PolicyCatalog {
    let table = |name: &str, partition: bool, key: &str, refs: serde_json::Value| {
        serde_json::json!({
            "name": name, "partition": partition, "rls": false, "force_rls": false,
            "key_column": key, "group_privileges": 0,
            "policies": [
                {"name": "from", "permissive": true, "cmd": "*", "public": true,
                 "comment": null, "expr_hash": "0"},
                {"name": shared::POLICY_TENANT, "permissive": true, "cmd": "*", "public": true,
                 "comment": "stale", "expr_hash": "0"},
            ],
            "refs": refs,
        })
    };
    serde_json::from_value(serde_json::json!({
        "tables": [
            table("table", false, "column", serde_json::json!([
                {"parent": "group", "columns": ["from", "where"], "parent_columns": ["column", "user"]}
            ])),
            table("group", false, "where", serde_json::json!([])),
            table("where", true, "column", serde_json::json!([])),
            table(shared::GLOBAL_READ_TABLES[0], false, "tenant_id", serde_json::json!([])),
        ],
        "sequences_without_usage": ["select"],
        "foreign_acl": 3,
    }))
    .expect("policy catalog JSON")
}

#[test]
fn shared_layout_statements_quote_keyword_identifiers() {
    let layout = keyword_layout();
    let mut checked = 0;
    let stmts = shared::policy_statements(&layout, &broken_catalog()).unwrap();
    let mut marks = 0;
    for stmt in &stmts {
        match stmt {
            Stmt::Sql(sql) => {
                assert_only_quoted("policy statement", sql);
                checked += 1;
            }
            // Rendered inline in `ensure_policies_on` (needs the policy's hash from the catalog).
            Stmt::MarkPolicy { .. } => marks += 1,
        }
    }
    assert!(marks >= 4, "policies (re)created: {marks}");
    let all: String = stmts
        .iter()
        .filter_map(|s| match s {
            Stmt::Sql(sql) => Some(sql.as_str()),
            Stmt::MarkPolicy { .. } => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Every kind of statement was rendered (so that none escaped the check above).
    for needle in [
        "ENABLE ROW LEVEL SECURITY",
        "FORCE ROW LEVEL SECURITY",
        "DROP POLICY \"from\" ON \"user\".\"table\"",
        "DROP POLICY tenantdb_tenant_isolation ON \"user\".\"table\"",
        shared::POLICY_GLOBAL_READ,
        shared::POLICY_REFS_INSERT,
        shared::POLICY_REFS_UPDATE,
        "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE \"user\".\"group\" TO \"order\"",
        "GRANT USAGE ON SEQUENCE \"user\".\"select\" TO \"order\"",
        "REVOKE ALL ON %s %s FROM %s CASCADE",
    ] {
        assert!(all.contains(needle), "{needle:?} not rendered:\n{all}");
    }
    for (what, sql) in [
        (
            "current tenant function",
            shared::current_tenant_function_sql(&layout),
        ),
        (
            "foreign ACL query",
            shared::foreign_acl_sql(&layout).unwrap(),
        ),
        (
            "policy catalog query",
            shared::policy_catalog_sql(&layout).unwrap(),
        ),
        (
            "deletion catalog query",
            shared::deletion_catalog_sql(&layout).unwrap(),
        ),
        (
            "usage catalog query",
            shared::usage_catalog_sql(&layout).unwrap(),
        ),
    ] {
        assert_only_quoted(what, &sql);
        checked += 1;
    }
    eprintln!("{checked} shared-layout statements checked");
}

/// PostgreSQL stores a role's `search_path` the way it quotes identifiers: a schema named `user`
/// reads back as `search_path="user"` from `pg_db_role_setting`. A converged tenant with a
/// keyword schema must plan nothing (it used to plan `SetSearchPath` on every reconcile).
#[test]
fn a_keyword_schema_read_back_quoted_needs_no_step() {
    use super::plan::{Observed, ObservedDatabase, ObservedRole, ObservedSchema, plan};
    let names = keyword_names()
        .into_iter()
        .find(|(mode, _)| *mode == "schema")
        .unwrap()
        .1;
    let d = Desired::simple(names.clone(), "pw".into());
    let observed = Observed {
        role: Some(ObservedRole {
            can_login: true,
            connection_limit: -1,
            comment: Some(names.owner_marker.clone()),
            password_matches: Some(true),
            // As PostgreSQL 15 returns it for `SET search_path TO "select"`.
            search_path: Some("search_path=\"select\"".into()),
            ..Default::default()
        }),
        database: Some(ObservedDatabase {
            owner: "postgres".into(),
            role_can_connect: true,
            connection_limit: -1,
            ..Default::default()
        }),
        schema: Some(ObservedSchema {
            owner: names.role.as_str().into(),
            comment: Some(names.owner_marker.clone()),
        }),
        ..Default::default()
    };
    assert_eq!(plan(&d, &observed).unwrap(), vec![]);
}
