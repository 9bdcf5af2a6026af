//! `tenantdb`: the operator binary.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Kubernetes operator for tenant databases (PostgreSQL, MongoDB).
#[derive(Parser, Debug)]
#[command(name = "tenantdb", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "TENANTDB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers against the cluster of the current kubeconfig / in-cluster config.
    Run(Box<tenantdb::runtime::RunConfig>),
    /// Print the CustomResourceDefinitions (the files in crds/ are this output), or write them to a directory.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn init_tracing(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => {
            for (file, crd) in tenantdb::crd::all_crds() {
                let yaml = match tenantdb::crd::render_yaml(&crd) {
                    Ok(y) => y,
                    Err(e) => {
                        eprintln!("cannot render {file}: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match &out_dir {
                    Some(dir) => {
                        if let Err(e) = std::fs::write(dir.join(file), yaml) {
                            eprintln!("cannot write {file}: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                    None => print!("{yaml}"),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run(config) => {
            init_tracing(
                cli.log_format,
                "info,kube_runtime=warn,kube_client=warn,sqlx=warn,tower=warn,hyper=warn",
            );
            // Every mutating API request passes the leadership fence (tenantdb::fence).
            let client = match kube::Config::infer()
                .await
                .map_err(kube::Error::InferConfig)
                .and_then(kube::client::ClientBuilder::try_from)
            {
                Ok(b) => b.with_layer(&tenantdb::fence::FenceLayer).build(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot build a Kubernetes client");
                    return ExitCode::FAILURE;
                }
            };
            match tenantdb::runtime::run(client, *config, tenantdb::runtime::shutdown_signal())
                .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
