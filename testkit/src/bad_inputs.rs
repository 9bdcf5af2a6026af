//! The bad-input corpus of `tests/reliability_bad_input.rs`: hostile and invalid Tenants, each with
//! what must happen to it.

use serde_json::{Value, json};

/// What the system must do with a bad input.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The API server refuses it: HTTP `code` (422 Invalid, 400 strict decoding), message mentions
    /// `field`.
    Rejected { code: u16, field: &'static str },
    /// Accepted by the API, refused by the operator: Ready=False with this reason, a non-empty
    /// message, phase Failed and a Warning Event.
    Condition { reason: &'static str },
}

/// One case: a Tenant (metadata.name + spec) created in namespace `ns`.
#[derive(Debug, Clone)]
pub struct Case {
    pub id: &'static str,
    pub ns: &'static str,
    pub name: String,
    pub spec: Value,
    pub expect: Expect,
    /// Create with `fieldValidation=Strict`.
    pub strict: bool,
    /// Distinctive text that must never reach PostgreSQL (nor, for cases the API refuses, the
    /// operator's log).
    pub hostile: Option<String>,
}

fn rejected(id: &'static str, name: &str, spec: Value, code: u16, field: &'static str) -> Case {
    Case {
        id,
        ns: "bad",
        name: name.to_string(),
        spec,
        expect: Expect::Rejected { code, field },
        strict: false,
        hostile: None,
    }
}

fn hostile(mut c: Case, s: &str) -> Case {
    c.hostile = Some(s.to_string());
    c
}

/// A case the API accepts and the operator refuses. Its marker is its own `metadata.name`
/// (distinctive: `zq-…`): the operator reads it, but no statement for this Tenant may reach
/// PostgreSQL (owner markers and derived names would carry it).
fn cond(id: &'static str, name: &str, spec: Value, reason: &'static str) -> Case {
    Case {
        id,
        ns: "bad",
        name: name.to_string(),
        spec,
        expect: Expect::Condition { reason },
        strict: false,
        hostile: Some(name.to_string()),
    }
}

fn db_name(v: &str) -> Value {
    json!({"isolation": "database", "databaseName": v})
}
fn schema_name(v: &str) -> Value {
    json!({"isolation": "schema", "databaseName": v})
}
fn secret(v: &str) -> Value {
    json!({"isolation": "schema", "credentials": {"secretName": v}})
}
fn quotas(q: Value) -> Value {
    json!({"isolation": "schema", "quotas": q})
}

/// Cases refused by the API server (schema, CEL, object-meta validation) or by the operator, at
/// creation. Update-time cases (immutability) and conflicts with existing objects are in the test.
pub fn creation_cases() -> Vec<Case> {
    let long64 = "a".repeat(64);
    let long254 = "a".repeat(254);
    vec![
        // --- spec.databaseName: hostile and invalid identifiers -----------------------------
        hostile(
            rejected(
                "db-quote-inject",
                "db-quote",
                db_name("x\"; drop role postgres; --"),
                422,
                "spec.databaseName",
            ),
            "drop role postgres",
        ),
        hostile(
            rejected(
                "db-literal-inject",
                "db-literal",
                db_name("robert'); drop table students;--"),
                422,
                "spec.databaseName",
            ),
            "drop table students",
        ),
        hostile(
            rejected(
                "db-semicolon",
                "db-semi",
                db_name("a;select_pg_sleep"),
                422,
                "spec.databaseName",
            ),
            "a;select_pg_sleep",
        ),
        hostile(
            rejected(
                "db-comment",
                "db-comment",
                db_name("x--y_comment"),
                422,
                "spec.databaseName",
            ),
            "x--y_comment",
        ),
        hostile(
            rejected(
                "db-unicode",
                "db-unicode",
                db_name("ünïcødé_tenant"),
                422,
                "spec.databaseName",
            ),
            "ünïcødé_tenant",
        ),
        hostile(
            rejected(
                "db-homoglyph",
                "db-homoglyph",
                db_name("tenаnt_cyrillic"),
                422,
                "spec.databaseName",
            ),
            "tenаnt_cyrillic",
        ),
        rejected(
            "db-64-bytes",
            "db-long",
            db_name(&long64),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-upper",
            "db-upper",
            db_name("Acme_Prod"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-leading-digit",
            "db-digit",
            db_name("1acme"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-space",
            "db-space",
            db_name("acme prod"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-empty",
            "db-empty",
            db_name(""),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-postgres",
            "db-postgres",
            db_name("postgres"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-template0",
            "db-template0",
            db_name("template0"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-template1",
            "db-template1",
            db_name("template1"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "db-pg-prefix",
            "db-pgx",
            db_name("pg_x"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "schema-public",
            "schema-public",
            schema_name("public"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "schema-information-schema",
            "schema-infoschema",
            schema_name("information_schema"),
            422,
            "spec.databaseName",
        ),
        rejected(
            "schema-pg-catalog",
            "schema-pgcatalog",
            schema_name("pg_catalog"),
            422,
            "spec.databaseName",
        ),
        // Pass the CRD schema, refused by the operator's identifier rules.
        cond(
            "db-current-user",
            "zq-db-current-user",
            db_name("current_user"),
            "InvalidSpec",
        ),
        cond(
            "schema-session-user",
            "zq-schema-session-user",
            schema_name("session_user"),
            "InvalidSpec",
        ),
        cond("db-none", "zq-db-none", db_name("none"), "InvalidSpec"),
        cond(
            "schema-all",
            "zq-schema-all",
            schema_name("all"),
            "InvalidSpec",
        ),
        cond(
            "db-shared-database",
            "zq-db-shared",
            db_name("tenantdb_shared"),
            "InvalidSpec",
        ),
        // The template databases' build role and names (a tenant owning them would own every
        // new copy's objects until the hand-over, or have its database dropped as a stale build).
        cond(
            "db-template-owner",
            "zq-db-template-owner",
            db_name("tenantdb_template_owner"),
            "InvalidSpec",
        ),
        cond(
            "db-template-name",
            "zq-db-template-name",
            db_name("tenantdb_tpl_0123456789ab"),
            "InvalidSpec",
        ),
        // --- spec.credentials.secretName ----------------------------------------------------
        hostile(
            rejected(
                "secret-inject",
                "secret-inject",
                secret("x;kubectl-delete"),
                422,
                "spec.credentials.secretName",
            ),
            "x;kubectl-delete",
        ),
        rejected(
            "secret-quote",
            "secret-quote",
            secret("acme\"db"),
            422,
            "spec.credentials.secretName",
        ),
        rejected(
            "secret-upper",
            "secret-upper",
            secret("Acme-DB"),
            422,
            "spec.credentials.secretName",
        ),
        rejected(
            "secret-underscore",
            "secret-underscore",
            secret("acme_db"),
            422,
            "spec.credentials.secretName",
        ),
        rejected(
            "secret-leading-dash",
            "secret-dash",
            secret("-acme"),
            422,
            "spec.credentials.secretName",
        ),
        rejected(
            "secret-unicode",
            "secret-unicode",
            secret("ünï-db"),
            422,
            "spec.credentials.secretName",
        ),
        rejected(
            "secret-254",
            "secret-long",
            secret(&long254),
            422,
            "spec.credentials.secretName",
        ),
        // --- metadata.name (DNS-1123 subdomain) ---------------------------------------------
        rejected(
            "name-upper",
            "Acme",
            json!({"isolation": "schema"}),
            422,
            "metadata.name",
        ),
        rejected(
            "name-underscore",
            "acme_prod",
            json!({"isolation": "schema"}),
            422,
            "metadata.name",
        ),
        rejected(
            "name-semicolon",
            "acme;drop",
            json!({"isolation": "schema"}),
            422,
            "metadata.name",
        ),
        rejected(
            "name-leading-dash",
            "-acme",
            json!({"isolation": "schema"}),
            422,
            "metadata.name",
        ),
        rejected(
            "name-unicode",
            "ácme",
            json!({"isolation": "schema"}),
            422,
            "metadata.name",
        ),
        rejected(
            "name-254",
            &long254,
            json!({"isolation": "schema"}),
            422,
            "metadata.name",
        ),
        // Valid 251-byte name, but the default Secret name `<name>-db` would exceed 253 bytes.
        cond(
            "name-251-default-secret-too-long",
            &format!(
                "{}.{}.{}.{}",
                "a".repeat(63),
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(59)
            ),
            json!({"isolation": "schema"}),
            "InvalidSpec",
        ),
        // --- quotas --------------------------------------------------------------------------
        rejected(
            "quota-conn-0",
            "quota-conn-0",
            quotas(json!({"maxConnections": 0})),
            422,
            "spec.quotas.maxConnections",
        ),
        rejected(
            "quota-conn-negative",
            "quota-conn-neg",
            quotas(json!({"maxConnections": -1})),
            422,
            "spec.quotas.maxConnections",
        ),
        rejected(
            "quota-conn-huge",
            "quota-conn-huge",
            quotas(json!({"maxConnections": 100000})),
            422,
            "spec.quotas.maxConnections",
        ),
        rejected(
            "quota-timeout-days",
            "quota-timeout-days",
            quotas(json!({"statementTimeout": "1d"})),
            422,
            "spec.quotas.statementTimeout",
        ),
        hostile(
            rejected(
                "quota-timeout-inject",
                "quota-timeout-inject",
                quotas(json!({"statementTimeout": "1s; drop database tenantdb_shared"})),
                422,
                "spec.quotas.statementTimeout",
            ),
            "1s; drop database",
        ),
        rejected(
            "quota-idle-space",
            "quota-idle-space",
            quotas(json!({"idleInTransactionTimeout": "5 min"})),
            422,
            "spec.quotas.idleInTransactionTimeout",
        ),
        rejected(
            "quota-storage-gb",
            "quota-storage-gb",
            quotas(json!({"storage": "5GB"})),
            422,
            "spec.quotas.storage",
        ),
        rejected(
            "quota-storage-negative",
            "quota-storage-neg",
            quotas(json!({"storage": "-1Gi"})),
            422,
            "spec.quotas.storage",
        ),
        // Pass the schema, refused by the operator.
        cond(
            "quota-timeout-overflow",
            "zq-quota-timeout-overflow",
            quotas(json!({"statementTimeout": "999999999h"})),
            "InvalidSpec",
        ),
        cond(
            "quota-storage-zero",
            "zq-quota-storage-zero",
            quotas(json!({"storage": "0"})),
            "InvalidSpec",
        ),
        // --- credentials durations ----------------------------------------------------------
        rejected(
            "rotate-after-days",
            "rotate-days",
            json!({"isolation": "schema", "credentials": {"rotateAfter": "30d"}}),
            422,
            "spec.credentials.rotateAfter",
        ),
        rejected(
            "grace-negative",
            "grace-neg",
            json!({"isolation": "schema", "credentials": {"gracePeriod": "-1h"}}),
            422,
            "spec.credentials.gracePeriod",
        ),
        // --- enums, required fields, wrong types --------------------------------------------
        rejected(
            "isolation-shared2",
            "iso-shared2",
            json!({"isolation": "shared2"}),
            422,
            "spec.isolation",
        ),
        rejected(
            "isolation-case",
            "iso-case",
            json!({"isolation": "Database"}),
            422,
            "spec.isolation",
        ),
        rejected(
            "isolation-missing",
            "iso-missing",
            json!({"deletionPolicy": "Delete"}),
            422,
            "spec.isolation",
        ),
        rejected(
            "isolation-number",
            "iso-number",
            json!({"isolation": 5}),
            422,
            "spec.isolation",
        ),
        rejected(
            "deletion-policy-case",
            "policy-case",
            json!({"isolation": "schema", "deletionPolicy": "delete"}),
            422,
            "spec.deletionPolicy",
        ),
        rejected(
            "type-max-connections-string",
            "type-conn",
            quotas(json!({"maxConnections": "ten"})),
            422,
            "spec.quotas.maxConnections",
        ),
        rejected(
            "type-auto-migrate-string",
            "type-automigrate",
            json!({"isolation": "schema", "autoMigrate": "yes"}),
            422,
            "spec.autoMigrate",
        ),
        rejected(
            "type-credentials-string",
            "type-credentials",
            json!({"isolation": "schema", "credentials": "acme-db"}),
            422,
            "spec.credentials",
        ),
        rejected(
            "type-quotas-list",
            "type-quotas",
            json!({"isolation": "schema", "quotas": [1, 2]}),
            422,
            "spec.quotas",
        ),
        // Unknown field, strict field validation (kubectl's default): refused.
        // Sent as a server-side apply: kube-apiserver types the applied configuration first and
        // answers an undeclared field with 500 "failed to create typed patch object (…):
        // .spec.superuser: field not declared in schema", whatever fieldValidation says
        // (kubernetes/kubernetes#139253).
        Case {
            strict: true,
            ..rejected(
                "unknown-field-strict",
                "unknown-strict",
                json!({"isolation": "schema", "superuser": true}),
                500,
                "spec.superuser",
            )
        },
    ]
}
