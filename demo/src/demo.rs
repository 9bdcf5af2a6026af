//! The local demo (`tenantdb-demo`, run by `scripts/demo.sh`): self-contained, no cluster.
//!
//! Starts, all on 127.0.0.1 and all throwaway: two PostgreSQL 15 clusters (the operator's default
//! server `pg-1`, and `pg-2` declared as a DatabaseServer, so Tenants are placed on both), the
//! SecantusDB MongoDB
//! wire-protocol stand-in when installed (`scripts/mongo-standin.sh install`; not MongoDB), the
//! project's in-memory Kubernetes API server **emulator** (not a cluster) with the Helm chart's
//! rendered ServiceAccount and RBAC installed, and the operator's controllers in-process,
//! authenticated as that ServiceAccount (so the demo needs exactly what the chart grants);
//! writes an administrator's kubeconfig, applies `examples/`, and shows a live table of Tenants.
//! Ctrl-C tears it all down and removes every file it created.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use tenantdb::crd::{Tenant, TenantPhase};
use tenantdb::error::{Error, Result};
use tenantdb::runtime::RunConfig;
use tenantdb_testkit::cluster::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, apply_manifest, client_for, client_for_yaml,
    database_server_manifests, find_helm, parse_manifests, render_chart,
};
use tenantdb_testkit::localmongo::{LocalMongo, find_secantus};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};
use tokio::sync::watch;

/// Options of the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DevConfig {
    /// Directory whose `*.yaml` manifests are applied at start.
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Where the kubeconfig for kubectl is written (removed on exit).
    #[arg(long, default_value = ".tenantdb-dev/kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Port of the API server emulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Exit successfully as soon as every applied Tenant is Ready (for CI smoke runs); fail after
    /// this many seconds otherwise. 0 = run until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    pub exit_when_ready: u64,
    /// The Helm chart whose ServiceAccount and RBAC are installed and used by the operator.
    #[arg(long, default_value = "charts/tenantdb")]
    pub chart: PathBuf,
    /// The `helm` binary rendering the chart (default: `.tools/bin/helm`, then `helm` on PATH;
    /// `scripts/chart-check.sh` installs it into `.tools`).
    #[arg(long)]
    pub helm: Option<PathBuf>,
}

fn render_table(tenants: &[Tenant]) -> String {
    // The MONGODB column (status.mongodb.database) is shown only once some tenant has one, sized
    // to the longest name.
    let mongo_width = tenants
        .iter()
        .filter_map(|t| t.status.as_ref()?.mongodb.as_ref())
        .map(|m| m.database.len())
        .max()
        .map(|w| w.max("MONGODB".len()));
    let mongo_cell = |v: &str| mongo_width.map(|w| format!("{v:<w$} ")).unwrap_or_default();
    let mut out = format!(
        "{:<12} {:<16} {:<13} {:<9} {:<6} {:<44} {}{:<15} {:<7} {}\n",
        "NAMESPACE",
        "NAME",
        "PHASE",
        "ISOLATION",
        "SERVER",
        "DATABASE/SCHEMA",
        mongo_cell("MONGODB"),
        "VERSION",
        "CONN",
        "MESSAGE"
    );
    for t in tenants {
        let st = t.status.clone().unwrap_or_default();
        let phase = match st.phase {
            TenantPhase::Pending => "Pending",
            TenantPhase::Provisioning => "Provisioning",
            TenantPhase::Ready => "Ready",
            TenantPhase::Failed => "Failed",
            TenantPhase::Deleting => "Deleting",
        };
        let place = match (&st.database, &st.schema) {
            (Some(d), Some(s)) if s != "public" => format!("{d}/{s}"),
            (Some(d), _) => d.clone(),
            _ => "-".into(),
        };
        let msg = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        let mongo = st.mongodb.as_ref().map_or("-", |m| m.database.as_str());
        // Sessions of the tenant's roles, and its limit (status.statistics.connections).
        let conn = st.statistics.as_ref().map_or_else(
            || "-".to_string(),
            |s| match s.connections.limit {
                Some(l) => format!("{}/{l}", s.connections.total),
                None => s.connections.total.to_string(),
            },
        );
        let server = st
            .placement
            .as_ref()
            .and_then(|p| p.postgres.as_deref())
            .unwrap_or("-");
        out.push_str(&format!(
            "{:<12} {:<16} {:<13} {:<9} {:<6} {:<44} {}{:<15} {:<7} {}\n",
            t.namespace().unwrap_or_default(),
            t.name_any(),
            phase,
            t.spec.isolation.as_str(),
            server,
            place,
            mongo_cell(mongo),
            st.schema_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            conn,
            msg
        ));
    }
    out
}

/// Starts the MongoDB stand-in if it is installed; `None` (after saying why) otherwise. A stand-in
/// that is installed but fails to start is reported and skipped: the demo goes on without MongoDB.
async fn start_mongo() -> Option<LocalMongo> {
    let Some(bin) = find_secantus() else {
        println!(
            "==> MongoDB skipped: the stand-in is not installed (enable it with `scripts/mongo-standin.sh install`)"
        );
        return None;
    };
    println!(
        "==> starting the MongoDB stand-in (SecantusDB: a wire-protocol stand-in, not MongoDB)"
    );
    let started = tokio::task::spawn_blocking(move || LocalMongo::start(&bin))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match started {
        Ok(m) => {
            println!("    listening on {}:{}", m.host(), m.port());
            Some(m)
        }
        Err(e) => {
            eprintln!(
                "    warning: the MongoDB stand-in did not start; continuing without MongoDB: {e}"
            );
            None
        }
    }
}

/// Runs the demo until Ctrl-C (or until ready, with `--exit-when-ready`).
pub async fn run(cfg: DevConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    println!(
        "tenantdb-demo: local demo. Nothing here is a Kubernetes cluster: the API server is tenantdb's in-memory emulator."
    );
    println!(
        "==> starting two throwaway PostgreSQL 15 clusters (pg-1: the default server, pg-2: a DatabaseServer)"
    );
    // pg_stat_statements preloaded: Tenants report their slow statements (status.statistics).
    let start_pg = || async {
        tokio::task::spawn_blocking(|| {
            LocalPg::start_with(LocalPgOptions {
                settings: vec![(
                    "shared_preload_libraries".into(),
                    "pg_stat_statements".into(),
                )],
                ..Default::default()
            })
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Config(e.to_string()))
    };
    let pg = start_pg().await?;
    let pg2 = start_pg().await?;
    println!(
        "    pg-1 on 127.0.0.1:{}, pg-2 on 127.0.0.1:{}",
        pg.port(),
        pg2.port()
    );
    let mongo = start_mongo().await;

    println!("==> starting the in-memory API server emulator");
    let mut api_cfg = tenantdb_apiserver::Config {
        addr: SocketAddr::from(([127, 0, 0, 1], cfg.port)),
        ..Default::default()
    };
    // The chart's ServiceAccount and RBAC, as `helm install` would create them: the in-process
    // operator authenticates as that ServiceAccount.
    let chart = render_chart(
        &find_helm(cfg.helm.as_deref()),
        &cfg.chart,
        OPERATOR_NAMESPACE,
    )?;
    api_cfg
        .load_manifests(&chart)
        .map_err(|e| Error::Config(format!("chart manifests: {e}")))?;
    for (_, crd) in tenantdb::crd::all_crds() {
        api_cfg
            .crds
            .push(serde_json::to_value(&crd).map_err(|e| Error::Internal(e.to_string()))?);
    }
    let server = tenantdb_apiserver::start(api_cfg)
        .await
        .map_err(|e| Error::Config(format!("api server emulator: {e}")))?;
    let kubeconfig_dir = cfg.kubeconfig.parent().map(Path::to_path_buf);
    if let Some(dir) = &kubeconfig_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    }
    server
        .write_kubeconfig(&cfg.kubeconfig, "default")
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    println!(
        "    {} (kubeconfig: {})",
        server.url(),
        cfg.kubeconfig.display()
    );

    let client = client_for(&cfg.kubeconfig).await?;
    let operator_client = client_for_yaml(&server.service_account_kubeconfig_yaml(
        OPERATOR_NAMESPACE,
        OPERATOR_SERVICE_ACCOUNT,
        OPERATOR_NAMESPACE,
    ))
    .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mongo_endpoint = mongo.as_ref().map(|m| (m.admin_uri(), m.host(), m.port()));
    let run_cfg = local_run_config(
        &pg.admin_url(),
        mongo_endpoint
            .as_ref()
            .map(|(uri, host, port)| (uri.as_str(), *host, *port)),
    )?;
    let mut stop_rx2 = stop_rx.clone();
    let operator = tokio::spawn(tenantdb::runtime::run(
        operator_client,
        run_cfg,
        async move {
            let _ = stop_rx2.wait_for(|v| *v).await;
        },
    ));
    println!(
        "==> operator started in-process as system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT} (the chart's RBAC)"
    );

    // The second server, as a user adds one: its admin Secret, then the DatabaseServer.
    for obj in database_server_manifests("pg-2", &pg2, serde_json::json!({"maxTenants": 100})) {
        let what = apply_manifest(&client, &obj, "tenantdb-dev").await?;
        println!("    applied {what}");
    }

    // Tenants applied (other kinds, e.g. TenantMigrations, do not count for --exit-when-ready).
    let mut applied_tenants = 0usize;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cfg.examples)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::Config(format!("{}: {e}", f.display())))?;
        for obj in parse_manifests(&text)? {
            let what = apply_manifest(&client, &obj, "tenantdb-dev").await?;
            println!("    applied {what} from {}", f.display());
            if obj["kind"] == "Tenant" {
                applied_tenants += 1;
            }
        }
    }
    println!(
        "==> try more:  kubectl --kubeconfig {} apply -f examples/tenant-schema.yaml   (or get tenants -o yaml, get secrets)",
        cfg.kubeconfig.display()
    );
    println!("    Ctrl-C stops everything and removes all files.\n");

    let tenants: Api<Tenant> = Api::all(client.clone());
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    let result: Result<()> = {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let list = match tenants.list(&Default::default()).await {
                Ok(l) => l.items,
                Err(e) => {
                    eprintln!("list tenants: {e}");
                    continue;
                }
            };
            let table = render_table(&list);
            if table != last {
                if tty {
                    print!("\x1b[2K");
                }
                println!("[{:>5.1}s]\n{table}", started.elapsed().as_secs_f64());
                let _ = std::io::stdout().flush();
                last = table;
            }
            if cfg.exit_when_ready > 0 {
                let all_ready = !list.is_empty()
                    && list.len() >= applied_tenants
                    && list.iter().all(|t| {
                        t.status
                            .as_ref()
                            .is_some_and(|s| s.phase == TenantPhase::Ready)
                    });
                if all_ready {
                    println!(
                        "all {} tenants Ready after {:.1}s",
                        list.len(),
                        started.elapsed().as_secs_f64()
                    );
                    break Ok(());
                }
                if started.elapsed() > Duration::from_secs(cfg.exit_when_ready) {
                    break Err(Error::Internal(
                        "tenants did not become Ready in time".into(),
                    ));
                }
            }
        }
    };

    println!("==> shutting down");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), operator).await {
        Ok(Ok(Err(e))) => eprintln!("operator: {e}"),
        Ok(Err(e)) => eprintln!("operator task: {e}"),
        _ => {}
    }
    server.shutdown().await;
    drop(pg);
    drop(pg2);
    let had_mongo = mongo.is_some();
    if had_mongo {
        // Drop stops the server (SIGTERM, then SIGKILL) and removes its directory: blocking.
        let _ = tokio::task::spawn_blocking(move || drop(mongo)).await;
    }
    let _ = std::fs::remove_file(&cfg.kubeconfig);
    if let Some(dir) = kubeconfig_dir {
        let _ = std::fs::remove_dir(dir);
    }
    println!(
        "    PostgreSQL (both clusters) {}stopped and removed; API server emulator stopped; kubeconfig removed.",
        if had_mongo {
            "and the MongoDB stand-in "
        } else {
            ""
        }
    );
    result
}

/// Parser wrapper so a [`RunConfig`] can be built from arguments (the flag defaults).
#[derive(Debug, clap::Parser)]
struct RunOnly {
    #[command(flatten)]
    run: RunConfig,
}

/// The configuration of an in-process operator for the local demo: flag defaults, faster
/// resync/health/usage intervals, HTTP on a free loopback port. `mongo` is the MongoDB admin
/// URI, host and port (`--mongodb-uri`, `--mongodb-host`, `--mongodb-port`), if any.
pub fn local_run_config(database_url: &str, mongo: Option<(&str, &str, u16)>) -> Result<RunConfig> {
    use clap::Parser;
    let mut args: Vec<String> = [
        "tenantdb-demo",
        "--database-url",
        database_url,
        "--http-addr",
        "127.0.0.1:0",
        "--resync-seconds",
        "60",
        "--usage-interval-seconds",
        "30",
        "--health-interval-seconds",
        "30",
        "--backoff-base-ms",
        "500",
        "--backoff-max-seconds",
        "30",
        "--instance",
        "tenantdb-dev",
        "--default-server",
        "pg-1",
        "--operator-namespace",
        OPERATOR_NAMESPACE,
        "--server-probe-seconds",
        "5",
    ]
    .map(String::from)
    .into();
    if let Some((uri, host, port)) = mongo {
        args.extend([
            "--mongodb-uri".to_string(),
            uri.to_string(),
            "--mongodb-host".to_string(),
            host.to_string(),
            "--mongodb-port".to_string(),
            port.to_string(),
        ]);
    }
    RunOnly::try_parse_from(args)
        .map(|r| r.run)
        .map_err(|e| Error::Config(e.to_string()))
}
