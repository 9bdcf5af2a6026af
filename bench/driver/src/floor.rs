//! The "floor": the SQL a tenant gets from the operator, rendered with the operator's own code
//! (`pg::plan::plan` + `Step::sql`, the bundled migrations, the partition plan) into one .sql file
//! per tenant and run with psql — sequentially or with P psql processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tenantdb::crd::Isolation;
use tenantdb::migrate::{HISTORY_TABLE, Migration, MigrationSet};
use tenantdb::naming::{Ident, TenantNames, tenant_names};
use tenantdb::partitions::{PARTITIONED_TABLES, PartitionKeyType, plan_table_partitions};
use tenantdb::pg::plan::{Desired, Observed, ObservedDatabase, Step, plan};
use tenantdb_testkit::localpg::LocalPg;

pub const SHARED_DB: &str = "tenantdb_shared";
pub const PREFIX: &str = "tenant_";

pub fn names_for(ns: &str, name: &str, isolation: Isolation) -> TenantNames {
    let shared = Ident::new(SHARED_DB).unwrap();
    tenant_names(PREFIX, ns, name, isolation, None, &shared).expect("names")
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The provisioning SQL of one fresh tenant, in the operator's order and transaction boundaries:
/// plan steps (each in its own transaction, CREATE DATABASE outside one), the baseline migrations
/// as the tenant role in one transaction with the history table rows, then the monthly partitions.
/// For `database` isolation the file `\connect`s to the tenant database for the migrations and
/// back to `postgres` at the end (so several files can run in one psql session).
pub fn provisioning_sql(
    names: &TenantNames,
    set: &MigrationSet,
    auto_migrate: bool,
    today: jiff::civil::Date,
) -> String {
    let password = tenantdb::scram::generate_password();
    let verifier = tenantdb::scram::verifier(&password).expect("verifier");
    let desired = Desired::simple(names.clone(), password);
    let observed = if names.dedicated_database {
        Observed::default()
    } else {
        // The shared database exists (created once, before the timed part), PUBLIC revoked.
        Observed {
            database: Some(ObservedDatabase {
                owner: "postgres".into(),
                comment: None,
                public_has_access: false,
                role_can_connect: false,
                connection_limit: -1,
            }),
            ..Default::default()
        }
    };
    let steps = plan(&desired, &observed).expect("plan");
    let mut out = String::new();
    for step in &steps {
        let stmts = step.sql(&desired, &verifier).expect("sql");
        if step.transactional() {
            out.push_str("BEGIN;\n");
            if matches!(step, Step::GrantConnect) {
                // Concurrent GRANTs on one database's ACL fail with "tuple concurrently updated":
                // parallel floor runs serialize this one statement.
                out.push_str("SELECT pg_advisory_xact_lock(7464627001);\n");
            }
            for s in &stmts {
                out.push_str(s);
                out.push_str(";\n");
            }
            out.push_str("COMMIT;\n");
        } else {
            for s in &stmts {
                out.push_str(s);
                out.push_str(";\n");
            }
        }
    }
    if !auto_migrate {
        return out;
    }
    if names.dedicated_database {
        out.push_str(&format!("\\connect {}\n", names.database.as_str()));
    }
    let schema = format!("\"{}\"", names.schema.as_str());
    let role = format!("\"{}\"", names.role.as_str());
    let key = tenantdb::identity::lock_key(names);
    out.push_str("BEGIN;\n");
    out.push_str(&format!("SELECT pg_advisory_xact_lock({key});\n"));
    out.push_str(&format!(
        "SET LOCAL ROLE {role}; SET LOCAL search_path TO {schema};\n"
    ));
    out.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.{HISTORY_TABLE} (version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), execution_ms bigint NOT NULL);\n"
    ));
    for m in set.migrations() {
        push_up(&mut out, &schema, m);
    }
    out.push_str("COMMIT;\n");
    // Partition maintenance (operator defaults: current month + 2 ahead, no retention).
    out.push_str("BEGIN;\n");
    out.push_str(&format!(
        "SELECT pg_advisory_xact_lock({}, hashtext({}));\n",
        0x7464_6270_i32,
        sql_literal(names.schema.as_str())
    ));
    out.push_str(&format!(
        "SET LOCAL ROLE {role}; SET LOCAL search_path TO {schema};\n"
    ));
    for table in PARTITIONED_TABLES {
        let p = plan_table_partitions(table, today, 2, None, &[]);
        for spec in p.create {
            let lit = |d: jiff::civil::Date| {
                let day = format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
                match table.key_type {
                    PartitionKeyType::Timestamptz => format!("{day} 00:00:00+00"),
                    PartitionKeyType::Date => day,
                }
            };
            out.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS \"{}\" PARTITION OF \"{}\" FOR VALUES FROM ('{}') TO ('{}');\n",
                spec.name,
                table.table,
                lit(spec.from),
                lit(spec.to)
            ));
        }
    }
    out.push_str("COMMIT;\n");
    if names.dedicated_database {
        out.push_str("\\connect postgres\n");
    }
    out
}

fn push_up(out: &mut String, schema: &str, m: &Migration) {
    out.push_str(&m.up_sql);
    if !m.up_sql.trim_end().ends_with(';') {
        out.push(';');
    }
    out.push('\n');
    out.push_str(&format!(
        "INSERT INTO {schema}.{HISTORY_TABLE} (version, name, checksum, execution_ms) VALUES ({}, {}, {}, 0);\n",
        m.version,
        sql_literal(&m.name),
        sql_literal(&m.checksum)
    ));
}

/// One fleet-migration step of one tenant, as the engine runs it: one transaction, advisory lock,
/// role and search_path, the up SQL, the history row.
pub fn migration_sql(names: &TenantNames, m: &Migration) -> String {
    migration_transaction(names, m, true)
}

/// [`migration_sql`] logged in as the tenant (the least-privilege floor): `\connect` to the
/// tenant's database as its login role (password from the `PGPASSFILE` of [`run_psql_as`]), then
/// the same transaction without `SET LOCAL ROLE`: what any tool that runs a tenant's migration as
/// the tenant pays at least (a new PostgreSQL backend and a SCRAM login per tenant).
pub fn migration_sql_as_tenant(names: &TenantNames, m: &Migration) -> String {
    format!(
        "\\connect {} {}\n{}",
        names.database.as_str(),
        names.role.as_str(),
        migration_transaction(names, m, false)
    )
}

/// The transaction of [`migration_sql`], with `SET LOCAL ROLE` to the tenant's role or without.
fn migration_transaction(names: &TenantNames, m: &Migration, set_role: bool) -> String {
    let schema = format!("\"{}\"", names.schema.as_str());
    let key = tenantdb::identity::lock_key(names);
    let mut out = String::new();
    out.push_str("BEGIN;\n");
    out.push_str(&format!("SELECT pg_advisory_xact_lock({key});\n"));
    if set_role {
        out.push_str(&format!("SET LOCAL ROLE \"{}\"; ", names.role.as_str()));
    }
    out.push_str(&format!("SET LOCAL search_path TO {schema};\n"));
    push_up(&mut out, &schema, m);
    out.push_str("COMMIT;\n");
    out
}

/// Writes one file per tenant into `dir` and returns their paths.
pub fn write_files(dir: &Path, contents: Vec<(String, String)>) -> Result<Vec<PathBuf>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for (name, sql) in contents {
        let p = dir.join(format!("{name}.sql"));
        std::fs::write(&p, sql)?;
        paths.push(p);
    }
    Ok(paths)
}

/// Runs the files with `parallel` psql processes (files dealt round-robin; each process runs its
/// files in one session, `ON_ERROR_STOP`), connected to `database` over TCP with the superuser's
/// password (SCRAM), like the operator. Returns the wall time.
pub async fn run_psql(
    pg: &LocalPg,
    database: &str,
    files: &[PathBuf],
    parallel: usize,
) -> Result<Duration> {
    run_psql_as(pg, database, files, parallel, None).await
}

/// [`run_psql`]; with `passfile`, every password comes from that `PGPASSFILE` (no `PGPASSWORD`),
/// so that the files' `\connect`s log in as the tenants with their own passwords.
pub async fn run_psql_as(
    pg: &LocalPg,
    database: &str,
    files: &[PathBuf],
    parallel: usize,
    passfile: Option<&Path>,
) -> Result<Duration> {
    let parallel = parallel.max(1).min(files.len().max(1));
    let mut groups: Vec<Vec<&PathBuf>> = vec![Vec::new(); parallel];
    for (i, f) in files.iter().enumerate() {
        groups[i % parallel].push(f);
    }
    let started = Instant::now();
    let mut children = Vec::new();
    for g in groups {
        let mut cmd = psql(pg, database, &["-q"]);
        if let Some(passfile) = passfile {
            cmd.env_remove("PGPASSWORD").env("PGPASSFILE", passfile);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        for f in g {
            cmd.arg("-f").arg(f);
        }
        children.push(cmd.spawn().context("spawning psql")?);
    }
    for c in children {
        let out = c.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }
    Ok(started.elapsed())
}

/// A psql command for `database` as the superuser over TCP (SCRAM, like the operator), stopping at
/// the first error, no psqlrc, no stdin; `flags` come first (output format).
fn psql(pg: &LocalPg, database: &str, flags: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("psql");
    cmd.arg("-X")
        .args(flags)
        .args(["-v", "ON_ERROR_STOP=1", "-h", pg.host()])
        .args([
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .env("PGPASSWORD", pg.superuser_password())
        .stdin(Stdio::null());
    cmd
}

/// Runs one SQL string with psql (set-up steps, not timed).
pub async fn psql_exec(pg: &LocalPg, database: &str, sql: &str) -> Result<String> {
    let out = psql(pg, database, &["-q", "-At"])
        .args(["-c", sql])
        .output()
        .await?;
    if !out.status.success() {
        bail!("psql -c failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Creates the shared database exactly as the operator does on first use (its own code: the
/// database, `REVOKE … FROM PUBLIC`, the CONNECT group role); set-up, not timed.
pub async fn prepare_shared(pg: &LocalPg) -> Result<()> {
    let admin = tenantdb::pg::PgAdmin::new(tenantdb::pg::PgSettings {
        admin_url: pg.admin_url(),
        shared_database: Ident::new(SHARED_DB).unwrap(),
        pool_size: 1,
        connect_timeout: std::time::Duration::from_secs(10),
    })?;
    admin.shared_pool().await?.close().await;
    Ok(())
}

/// Number of relations (tables, indexes, sequences, partitions…) plus functions in a tenant's
/// schema: used to check that the operator and the floor build the same thing.
pub async fn object_count(pg: &LocalPg, names: &TenantNames) -> Result<i64> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {s}) + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = {s})",
        s = sql_literal(names.schema.as_str())
    );
    let v = psql_exec(pg, names.database.as_str(), &sql).await?;
    Ok(v.parse().unwrap_or(-1))
}
