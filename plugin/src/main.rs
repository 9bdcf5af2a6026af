//! `kubectl tenantdb`: the tenantdb kubectl plugin (`kubectl-tenantdb` on PATH).
//!
//! - `status [TENANT]`: one tenant in detail, or the fleet of a namespace (`-A`: all);
//! - `psql TENANT [-- ARGS]`: psql as the tenant (the password only in a private passfile);
//! - `rotate TENANT [--wait]`: requests a credential rotation;
//! - `migrations TENANT`: applied versions (read as the tenant) and the TenantMigrations targeting it;
//! - `report [-o FILE]`: a support bundle without secrets.
#![forbid(unsafe_code)]

mod cluster;
mod error;
mod migrations;
mod psql;
mod render;
mod report;
mod rotate;
mod view;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::cluster::{Kube, KubeArgs};
use crate::error::Result;
use crate::view::TenantView;

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-tenantdb",
    bin_name = "kubectl tenantdb",
    version,
    about = "Inspect and operate tenantdb Tenants (status, psql, rotate, migrations, report)"
)]
struct Cli {
    #[command(flatten)]
    kube: KubeArgs,
    #[command(subcommand)]
    command: Cmd,
}

/// Where to reach PostgreSQL when the Secret's host is not reachable from here (e.g. through
/// `kubectl port-forward`): overrides the Secret's `host` and `port`.
#[derive(Debug, Clone, clap::Args)]
struct Endpoint {
    /// Connect to this host instead of the Secret's `host`.
    #[arg(long)]
    host: Option<String>,
    /// Connect to this port instead of the Secret's `port`.
    #[arg(long)]
    port: Option<u16>,
}

impl Endpoint {
    fn apply(&self, mut c: cluster::Credentials) -> cluster::Credentials {
        if let Some(h) = &self.host {
            c.host = h.clone();
        }
        if let Some(p) = self.port {
            c.port = p;
        }
        c
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A tenant in detail, or the fleet (of the namespace; -A: of all namespaces).
    Status {
        /// The Tenant's name (omit for the fleet).
        tenant: Option<String>,
    },
    /// Opens psql as the tenant with its credentials Secret (the password never on a command line).
    Psql {
        /// The Tenant's name.
        tenant: String,
        #[command(flatten)]
        endpoint: Endpoint,
        /// The psql binary.
        #[arg(long, env = "TENANTDB_PSQL", default_value = "psql")]
        psql: PathBuf,
        /// Arguments for psql, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Requests a credential rotation (annotation tenantdb.io/rotate) and explains what happens.
    Rotate {
        /// The Tenant's name.
        tenant: String,
        /// Wait until the operator reports the rotation in status.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Applied migrations (version, checksum, time; read as the tenant) and TenantMigrations targeting it.
    Migrations {
        /// The Tenant's name.
        tenant: String,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Writes a support bundle without secrets (a directory, or FILE.tar.gz).
    Report {
        /// Output directory or .tar.gz file (default: ./tenantdb-report-<time>).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Namespace of the operator's Deployment and pods.
        #[arg(long, default_value = "tenantdb-system")]
        operator_namespace: String,
        /// Label selector of the operator's Deployment and pods.
        #[arg(long, default_value = "app.kubernetes.io/name=tenantdb")]
        operator_selector: String,
    },
}

/// The TenantMigrations of the scope; without them (e.g. no RBAC to list them) `status` still
/// works, with a warning on stderr and no running migrations shown.
async fn migrations_or_warn(kube: &Kube) -> Vec<tenantdb::crd::TenantMigration> {
    kube.migrations(None).await.unwrap_or_else(|e| {
        eprintln!("warning: {e} (running migrations are not shown)");
        Vec::new()
    })
}

async fn status(kube: &Kube, tenant: Option<&str>) -> Result<String> {
    let now = jiff::Timestamp::now();
    match tenant {
        Some(name) => {
            let t = kube.tenant(name).await?;
            let ms = migrations_or_warn(kube).await;
            Ok(render::tenant(&TenantView::from_json(&t, &ms), now))
        }
        None => {
            let ts = kube.tenants().await?;
            let ms = migrations_or_warn(kube).await;
            let views: Vec<TenantView> = ts.iter().map(|t| TenantView::from_json(t, &ms)).collect();
            Ok(render::fleet(&views, kube.all, now))
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let kube = Kube::connect(&cli.kube).await?;
    let text = match cli.command {
        Cmd::Status { tenant } => status(&kube, tenant.as_deref()).await?,
        Cmd::Psql {
            tenant,
            endpoint,
            psql,
            args,
        } => {
            let t = kube.tenant(&tenant).await?;
            let creds = endpoint.apply(kube.credentials(&t).await?);
            return psql::run(&psql, &creds, &args).await;
        }
        Cmd::Rotate {
            tenant,
            wait,
            timeout,
        } => {
            let wait = wait.then(|| Duration::from_secs(timeout));
            rotate::run(&kube, &tenant, wait).await?
        }
        Cmd::Migrations { tenant, endpoint } => {
            migrations::run(&kube, &tenant, |c| endpoint.apply(c)).await?
        }
        Cmd::Report {
            output,
            operator_namespace,
            operator_selector,
        } => {
            let op = report::OperatorLocation {
                namespace: operator_namespace,
                selector: operator_selector,
            };
            report::run(&kube, &op, output).await?
        }
    };
    print!("{text}");
    Ok(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    std::process::exit(code);
}
