//! Quoting against a real PostgreSQL 15: tenants whose every name is a reserved SQL keyword
//! (`select`, `user`, `order` as tenants; `table` as the shared database; `group`/`from`/`where`
//! as the row-level security layout's schema, owner and group role) are provisioned, rotated,
//! made read-only, measured and cleaned up through the operator's own code (`PgAdmin`,
//! `pg::shared`), on a throwaway server started with `log_statement = 'all'`. Every statement in
//! the server log is then scanned: none may carry one of these names as a bare word, and the
//! statements built inline in `async` functions (cleanup, shared database set-up, layout
//! bootstrap, tenant registration, row deletion — the ones `src/pg/quoting_tests.rs` cannot
//! render) must be among them. The run itself is a check too: an unquoted reserved keyword
//! where an identifier belongs is a syntax error.

use tenantdb_testkit::sql_scan;

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use sqlx::{ConnectOptions, Executor};
use tenantdb::crd::Isolation;
use tenantdb::migrate::MigrationSet;
use tenantdb::naming::{Ident, TenantNames, tenant_names};
use tenantdb::pg::plan::{Desired, Slot, plan};
use tenantdb::pg::shared::{self, SharedLayout};
use tenantdb::pg::{PgAdmin, PgSettings};
use tenantdb::quota::EffectiveQuotas;
use tenantdb::scram::generate_password;
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

const KEYWORDS: &[&str] = &["select", "user", "order", "table", "group", "from", "where"];

fn kw(name: &str) -> Ident {
    assert!(KEYWORDS.contains(&name));
    Ident::new(name).unwrap()
}

async fn provision(admin: &PgAdmin, d: &Desired) {
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    let steps = plan(d, &observed).unwrap();
    admin
        .apply(d, &steps)
        .await
        .unwrap_or_else(|e| panic!("{}: {steps:?}: {e}", d.names.role.as_str()));
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    assert_eq!(
        plan(d, &observed).unwrap(),
        vec![],
        "{}: converged: {observed:?}",
        d.names.role.as_str()
    );
}

async fn login(
    pg: &LocalPg,
    db: &Ident,
    user: &str,
    password: &str,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(pg.port())
        .database(db.as_str())
        .username(user)
        .password(password)
        .connect()
        .await
}

fn names(iso: Isolation, database_name: &str, shared_db: &Ident) -> TenantNames {
    tenant_names(
        "tenant_",
        "kw",
        database_name,
        iso,
        Some(database_name),
        shared_db,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_names_are_quoted_in_every_statement_the_operator_runs() {
    let pg = tokio::task::spawn_blocking(|| {
        LocalPg::start_with(LocalPgOptions {
            settings: vec![("log_statement".into(), "all".into())],
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("throwaway PostgreSQL");
    let shared_db = kw("table");
    let admin = PgAdmin::new(PgSettings {
        admin_url: pg.admin_url(),
        shared_database: shared_db.clone(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
    })
    .unwrap();

    // `database`: `select`, with quotas and then read-only (role settings, session termination).
    let mut d = Desired::simple(
        names(Isolation::Database, "select", &shared_db),
        generate_password(),
    );
    d.quotas = EffectiveQuotas {
        connection_limit: 5,
        statement_timeout_ms: Some(30_000),
        idle_in_transaction_timeout_ms: Some(60_000),
        storage_bytes: Some(1 << 30),
    };
    provision(&admin, &d).await;
    let mut c = login(&pg, &d.names.database, "select", &d.password)
        .await
        .expect("`select` logs in to database `select`");
    c.execute("CREATE TABLE own (id int)").await.unwrap();
    d.read_only = true;
    provision(&admin, &d).await;
    assert!(admin.storage_bytes(&d.names).await.unwrap() > 0);

    // `schema`: `user` in the shared database `table`, rotated to `user_b` within a grace period.
    let mut s = Desired::simple(
        names(Isolation::Schema, "user", &shared_db),
        generate_password(),
    );
    provision(&admin, &s).await;
    let mut c = login(&pg, &shared_db, "user", &s.password)
        .await
        .expect("`user` logs in to `table`");
    c.execute("CREATE TABLE own (id int)").await.unwrap();
    c.execute("INSERT INTO \"user\".own VALUES (1)")
        .await
        .unwrap();
    s.active = Slot::Secondary;
    s.password = generate_password();
    s.previous_valid_until = Some(
        Timestamp::now()
            .checked_add(SignedDuration::from_secs(3600))
            .unwrap(),
    );
    provision(&admin, &s).await;
    let mut c = login(&pg, &shared_db, "user_b", &s.password)
        .await
        .expect("`user_b` logs in after the rotation");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM own")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1, "the rotation role acts as `user` in schema `user`");
    assert!(admin.storage_bytes(&s.names).await.unwrap() > 0);

    // `shared`: `order` in a row-level security layout whose schema, owner and group role are
    // `group`, `from` and `where`.
    let layout = SharedLayout {
        schema: kw("group"),
        owner: kw("from"),
        tenants: kw("where"),
    };
    shared::ensure_layout(&admin, &layout, &MigrationSet::bundled())
        .await
        .expect("layout with keyword names");
    let mut names_o = names(Isolation::Shared, "order", &shared_db);
    names_o.schema = layout.schema.clone();
    let o = Desired::simple(names_o, generate_password());
    provision(&admin, &o).await;
    let id = shared::tenant_id("kw", "order");
    shared::register_tenant(&admin, &layout, &o.names.role, &o.names.secondary_role, &id)
        .await
        .unwrap();
    assert!(
        shared::observe_tenant(&admin, &layout, &o.names.role, &o.names.secondary_role, &id)
            .await
            .unwrap()
    );
    let mut c = login(&pg, &shared_db, "order", &o.password)
        .await
        .expect("`order` logs in");
    c.execute(
        "INSERT INTO saas_tenants (id, tenant_code, tenant_name) \
         VALUES (tenantdb_current_tenant(), 'order', 'Order')",
    )
    .await
    .expect("`order` writes its row through the layout `group`");
    // Rows in a partitioned table as well: only those are measured for now (see
    // `shared_rls_pg::storage::storage_counts_rows_in_plain_tables`).
    c.execute(
        "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) \
         SELECT tenantdb_current_tenant(), 'operation', 'ai', 'create' FROM generate_series(1, 5)",
    )
    .await
    .expect("`order` writes audit rows");
    drop(c);
    assert!(
        shared::tenant_storage_bytes(&admin, &layout, &id)
            .await
            .unwrap()
            > 0
    );
    shared::unregister_tenant(&admin, &layout, &o.names.role, &o.names.secondary_role)
        .await
        .unwrap();
    assert_eq!(
        shared::delete_tenant_rows(&admin, &layout, &id, 100)
            .await
            .unwrap(),
        6
    );

    // Cleanup of all three.
    for names in [&d.names, &s.names, &o.names] {
        let report = admin.cleanup(names).await.unwrap();
        assert!(report.skipped.is_empty(), "{report:?}");
        assert!(!report.dropped.is_empty(), "{report:?}");
    }

    // Every statement of the run, scanned.
    let log = pg.log();
    assert!(
        !log.contains("ERROR:"),
        "an operator statement failed:\n{}",
        log.lines()
            .filter(|l| l.contains("ERROR:") || l.contains("STATEMENT:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stmts = sql_scan::logged_statements(&log);
    assert!(
        stmts.len() > 100,
        "statement logging: {} statements",
        stmts.len()
    );
    let mut offending = vec![];
    for st in &stmts {
        let bare = sql_scan::bare_identifiers(st, KEYWORDS).unwrap_or_else(|e| panic!("{e}"));
        if !bare.is_empty() {
            offending.push(format!("{bare:?} in: {st}"));
        }
    }
    assert!(
        offending.is_empty(),
        "keyword names not quoted:\n{}",
        offending.join("\n")
    );
    // The statements `src/pg/quoting_tests.rs` cannot render were executed (and so checked).
    for needle in [
        // PgAdmin::ensure_shared_database
        "CREATE DATABASE \"table\" TEMPLATE template0",
        "GRANT CONNECT ON DATABASE \"table\" TO \"table_connect\"",
        // PgAdmin::cleanup / drop_role
        "DROP DATABASE IF EXISTS \"select\" WITH (FORCE)",
        "DROP SCHEMA IF EXISTS \"user\" CASCADE",
        "DROP OWNED BY \"user_b\"",
        "DROP ROLE IF EXISTS \"user\"",
        "DROP ROLE IF EXISTS \"order\"",
        // shared::bootstrap
        "CREATE ROLE \"from\" NOLOGIN",
        "CREATE SCHEMA \"group\" AUTHORIZATION \"from\"",
        "SET LOCAL ROLE \"from\"",
        "GRANT USAGE ON SCHEMA \"group\" TO \"where\"",
        // shared::ensure_policies_on (Stmt::MarkPolicy)
        "COMMENT ON POLICY tenantdb_tenant_isolation ON \"group\".\"saas_tenants\"",
        // shared::register_tenant / unregister_tenant / delete_tenant_rows / storage
        "INSERT INTO \"group\".tenantdb_tenant_roles",
        "GRANT \"where\" TO \"order\"",
        "REVOKE \"where\" FROM \"order\"",
        "DELETE FROM \"group\".\"saas_tenants\"",
        "DELETE FROM \"group\".tenantdb_tenant_roles WHERE tenant_id = $1",
        "FROM \"group\".\"saas_unified_audit_logs\" WHERE \"tenant_id\" = $1",
    ] {
        assert!(
            stmts.iter().any(|s| s.contains(needle)),
            "not executed: {needle}"
        );
    }
    eprintln!("{} logged statements scanned", stmts.len());
}
