//! `tenantdb-demo`: the local demo without a cluster (see [`demo`]); `scripts/demo.sh` runs it.
#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Local tenantdb demo: a throwaway PostgreSQL (and the MongoDB stand-in when installed), the
/// in-memory API server emulator with the Helm chart's RBAC, and the operator in-process.
#[derive(Parser, Debug)]
#[command(name = "tenantdb-demo", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "TENANTDB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    #[command(flatten)]
    demo: demo::DevConfig,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The live table is the demo's output; only warnings are logged unless RUST_LOG says otherwise.
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,kube_runtime=error,kube_client=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.compact().init(),
    }
    match demo::run(cli.demo, tenantdb::runtime::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tenantdb-demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
