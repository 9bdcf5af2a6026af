//! A move's schema copy from a PostgreSQL server reached with TLS `verify-full` and a CA of its
//! own (a DatabaseServer's `tls: VerifyFull` + `caSecretRef`): `pg_dump` verifies the server with
//! the same CA as the operator's own connections (`PGSSLROOTCERT`, a file written from the CA),
//! and without it the copy is refused, not made unverified.

use tenantdb_testkit::fixtures as common;

use std::sync::Arc;
use std::time::Duration;

use common::{names, provision};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Connection, Executor};
use tenantdb::crd::Isolation;
use tenantdb::moves::copy::{copy_schema, restore_role};
use tenantdb::moves::sql::{self, Scope};
use tenantdb::naming::{Ident, TenantNames};
use tenantdb::pg::plan::Desired;
use tenantdb::pg::{PgAdmin, PgSettings};
use tenantdb::scram::generate_password;
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

fn settings(admin_url: String) -> PgSettings {
    PgSettings {
        admin_url,
        shared_database: Ident::new("tenantdb_shared").unwrap(),
        pool_size: 4,
        connect_timeout: Duration::from_secs(5),
    }
}

/// The connect options of a DatabaseServer with `tls: VerifyFull` and the cluster's CA.
fn tls_options(pg: &LocalPg) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(pg.host())
        .port(pg.port())
        .username("postgres")
        .password(pg.superuser_password())
        .database("postgres")
        .ssl_mode(PgSslMode::VerifyFull)
        .ssl_root_cert_from_pem(pg.ca_pem().expect("the cluster's CA"))
}

/// The TLS server's admin as a DatabaseServer's is connected (`controller::server::connect`):
/// the CA in the connect options and, as a file, for tools (unless `with_file` is false).
fn tls_admin(pg: &LocalPg, with_file: bool) -> Arc<PgAdmin> {
    let ca = pg.ca_pem().expect("the cluster's CA");
    let file = with_file.then(|| tenantdb::pg::login::root_cert_file(&ca).unwrap());
    Arc::new(
        PgAdmin::with_options(settings(String::new()), tls_options(pg), "tenantdb")
            .with_password(Some(pg.superuser_password().to_string()))
            .with_root_cert(file),
    )
}

async fn prepare_and_copy(
    source: &PgAdmin,
    target: &PgAdmin,
    names: &TenantNames,
    move_name: &Ident,
) -> tenantdb::error::Result<()> {
    let roles = sql::read_roles(source, names).await?;
    sql::prepare_roles(target, names, &roles).await?;
    sql::prepare_database(target, names).await?;
    let scope = Scope::of(names);
    copy_schema(
        source,
        &scope,
        target,
        &scope,
        names,
        &restore_role(move_name)?,
    )
    .await
}

#[tokio::test]
async fn the_schema_copy_verifies_a_tls_source_with_its_ca() {
    let source_pg = tokio::task::spawn_blocking(|| {
        LocalPg::start_with(LocalPgOptions {
            tls: true,
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("a PostgreSQL with TLS");
    let target_pg = tokio::task::spawn_blocking(LocalPg::start)
        .await
        .unwrap()
        .expect("the target PostgreSQL");
    let source = tls_admin(&source_pg, true);
    let target = Arc::new(PgAdmin::new(settings(target_pg.admin_url())).unwrap());

    // The operator's own connection is TLS, verified.
    let mut c = sqlx::PgConnection::connect_with(&tls_options(&source_pg))
        .await
        .unwrap();
    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(tls);

    let d = Desired::simple(
        names("mvtls", "app", Isolation::Database),
        generate_password(),
    );
    provision(&source, &d).await;
    let role = d.names.role.as_str();
    let mut s = sqlx::PgConnection::connect(&source_pg.url(d.names.database.as_str()))
        .await
        .unwrap();
    s.execute(sqlx::AssertSqlSafe(format!(
        "SET ROLE \"{role}\"; CREATE TABLE app_items (id int PRIMARY KEY, v text)"
    )))
    .await
    .unwrap();
    let login = source.admin_login();
    assert!(
        login
            .env("x")
            .iter()
            .any(|(k, v)| *k == "PGSSLROOTCERT" && std::fs::read(v).ok() == source_pg.ca_pem()),
        "the tools get the CA"
    );

    // Without the CA as a file the tools cannot verify the server: the copy is refused.
    let unverified = tls_admin(&source_pg, false);
    let e = prepare_and_copy(
        &unverified,
        &target,
        &d.names,
        &Ident::new("mv_tls_a").unwrap(),
    )
    .await
    .expect_err("pg_dump verified the server without the CA");
    assert!(
        e.to_string().contains("pg_dump") && e.to_string().contains("certificate"),
        "{e}"
    );

    prepare_and_copy(&source, &target, &d.names, &Ident::new("mv_tls_b").unwrap())
        .await
        .unwrap();
    let mut t = sqlx::PgConnection::connect(&target_pg.url(d.names.database.as_str()))
        .await
        .unwrap();
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'app_items'")
            .fetch_one(&mut t)
            .await
            .unwrap();
    assert_eq!(tables, 1, "the schema was copied");
}
