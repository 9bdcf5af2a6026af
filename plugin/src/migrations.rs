//! `migrations TENANT`: the versions applied to the tenant's schema (its history table
//! `tenantdb_schema_migrations`, read by logging in AS THE TENANT with its Secret — never as the
//! operator's admin) and the TenantMigrations that target it.
//!
//! The history table lives in the tenant's schema (`status.schema`) of its database
//! (`status.database`, also the Secret's `database`): `public` of the dedicated database for
//! isolation `database`, the tenant's schema for `schema`, the shared layout's schema for `shared`
//! (shared by every tenant of the layout).

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tenantdb::crd::TenantMigration;
use tenantdb::migrate::{AppliedMigration, MigrationTarget};

use crate::cluster::{Credentials, Kube, opt_i64, opt_str, str_at};
use crate::error::{Context, Result};
use crate::render::columns;
use crate::view::{labels_of, targets};

/// Reads the history table as the tenant.
pub async fn history(
    creds: &Credentials,
    schema: &str,
    role: &str,
) -> Result<Vec<AppliedMigration>> {
    let mut conn = PgConnectOptions::new()
        .host(&creds.host)
        .port(creds.port)
        .database(&creds.database)
        .username(&creds.username)
        .password(&creds.password)
        .application_name("kubectl-tenantdb")
        .connect()
        .await
        .with_context(|| {
            format!(
                "connecting to {}:{}/{} as {}",
                creds.host, creds.port, creds.database, creds.username
            )
        })?;
    let target = MigrationTarget {
        schema,
        owner_role: role,
        lock_key: 0,
    };
    let rows = tenantdb::migrate::status(&mut conn, &target)
        .await
        .with_context(|| format!("reading {schema}.{}", tenantdb::migrate::HISTORY_TABLE))?;
    let _ = conn.close().await;
    Ok(rows)
}

/// The history as a table.
pub fn history_table(rows: &[AppliedMigration]) -> String {
    if rows.is_empty() {
        return "No migrations applied.\n".to_string();
    }
    let mut t = vec![
        ["VERSION", "NAME", "CHECKSUM", "APPLIED", "DURATION"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        t.push(vec![
            r.version.to_string(),
            r.name.clone(),
            r.checksum.clone(),
            r.applied_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            format!("{} ms", r.execution_ms),
        ]);
    }
    columns(&t)
}

/// The TenantMigrations concerning `tenant` as a table, with this tenant's state in each.
pub fn rollouts_table(
    tenant: &str,
    labels: &std::collections::BTreeMap<String, String>,
    ms: &[TenantMigration],
) -> String {
    let mine: Vec<&TenantMigration> = ms.iter().filter(|m| targets(m, tenant, labels)).collect();
    if mine.is_empty() {
        return "No TenantMigrations target this tenant.\n".to_string();
    }
    let mut t = vec![
        [
            "NAME", "PHASE", "TARGET", "DRY-RUN", "STATE", "FROM", "TO", "FINISHED", "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let dash = || "-".to_string();
    for m in mine {
        let st = m.status.as_ref();
        let p = st.and_then(|s| s.tenants.iter().find(|p| p.name == tenant));
        t.push(vec![
            m.metadata.name.clone().unwrap_or_default(),
            st.map_or_else(|| "Pending".to_string(), |s| s.phase.as_str().to_string()),
            m.spec
                .target_version
                .or(st.and_then(|s| s.target_version))
                .map_or_else(|| "latest".to_string(), |v| v.to_string()),
            m.spec.dry_run.to_string(),
            p.map_or_else(dash, |p| format!("{:?}", p.state)),
            p.and_then(|p| p.from_version)
                .map_or_else(dash, |v| v.to_string()),
            p.and_then(|p| p.to_version)
                .map_or_else(dash, |v| v.to_string()),
            p.and_then(|p| p.finished_at.as_ref())
                .map_or_else(dash, |t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            p.and_then(|p| p.message.clone()).unwrap_or_else(dash),
        ]);
    }
    columns(&t)
}

/// The whole `migrations` output; `endpoint` may redirect the Secret's host and port.
pub async fn run(
    kube: &Kube,
    name: &str,
    endpoint: impl FnOnce(Credentials) -> Credentials,
) -> Result<String> {
    let tenant = kube.tenant(name).await?;
    let ns = str_at(&tenant, "/metadata/namespace");
    let schema = opt_str(&tenant, "/status/schema").with_context(|| {
        format!("Tenant {ns}/{name} has no status.schema yet (not provisioned)")
    })?;
    let role = opt_str(&tenant, "/status/role")
        .with_context(|| format!("Tenant {ns}/{name} has no status.role yet (not provisioned)"))?;
    let creds = endpoint(kube.credentials(&tenant).await?);
    let shared = opt_str(&tenant, "/spec/isolation").as_deref() == Some("shared");
    let rows = match history(&creds, &schema, &role).await {
        Ok(rows) => Ok(rows),
        // The shared layout's history belongs to the layout's owner role, not to its tenants.
        Err(e) if shared && e.to_string().contains("permission denied") => Err(format!(
            "not readable by the tenant's role: isolation shared keeps one history for all \
             tenants of the layout, in {schema}.{}, owned by the layout's owner role \
             (status.schemaVersion above is the version the operator applied)\n",
            tenantdb::migrate::HISTORY_TABLE
        )),
        Err(e) => return Err(e),
    };
    let ms = kube.migrations(Some(&ns)).await?;
    let mut out = format!(
        "Tenant {ns}/{name}: schema {schema} in database {} (read as {}); status.schemaVersion {}\n\n",
        creds.database,
        creds.username,
        opt_i64(&tenant, "/status/schemaVersion")
            .map_or_else(|| "-".to_string(), |v| v.to_string())
    );
    out.push_str("Applied migrations:\n");
    match rows {
        Ok(rows) => out.push_str(&history_table(&rows)),
        Err(why) => out.push_str(&why),
    }
    out.push_str("\nTenantMigrations:\n");
    out.push_str(&rollouts_table(name, &labels_of(&tenant), &ms));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_table_shows_versions_checksums_and_times() {
        let rows = vec![AppliedMigration {
            version: 20250101000001,
            name: "baseline".into(),
            checksum: "ab12".into(),
            applied_at: jiff::Timestamp::from_second(1_767_225_600).unwrap(),
            execution_ms: 12,
        }];
        assert_eq!(
            history_table(&rows),
            "VERSION          NAME       CHECKSUM   APPLIED                DURATION\n\
             20250101000001   baseline   ab12       2026-01-01T00:00:00Z   12 ms\n"
        );
        assert_eq!(history_table(&[]), "No migrations applied.\n");
    }
}
