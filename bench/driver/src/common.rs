//! Pieces every scenario shares: the namespace and operator concurrency of all runs, progress
//! logging, Tenant names, rounding and percentiles for the JSON, a throwaway PostgreSQL started
//! off the async runtime, and the API server request counts as JSON.

use anyhow::Result;
use serde_json::{Value, json};
use tenantdb::crd::Isolation;
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

/// The namespace every benchmark Tenant lives in.
pub const NS: &str = "bench";
/// The operator's `--concurrency` in every scenario (and the floor's psql parallelism).
pub const CONCURRENCY: usize = 8;

pub fn log(msg: impl AsRef<str>) {
    eprintln!(
        "[bench {}] {}",
        jiff::Zoned::now().strftime("%H:%M:%S"),
        msg.as_ref()
    );
}

pub fn tenant_name(i: usize) -> String {
    format!("t{i:05}")
}

pub fn isolation_str(i: Isolation) -> &'static str {
    match i {
        Isolation::Database => "database",
        Isolation::Schema => "schema",
        // Other modes (added after this driver) are not benchmarked.
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

pub async fn start_pg(opts: LocalPgOptions) -> Result<LocalPg> {
    Ok(tokio::task::spawn_blocking(move || LocalPg::start_with(opts)).await??)
}

pub fn stats_json(s: &tenantdb_apiserver::Stats) -> Value {
    json!({
        "requests": s.total(),
        "writes": s.writes("*", None),
        "tenant_status_writes": s.writes("tenants", Some("status")),
        "tenant_writes": s.writes("tenants", Some("")),
        "secret_writes": s.writes("secrets", None),
        "event_writes": s.writes("events", None),
        "detail": s.to_json()["requests"].clone(),
    })
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest-rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
