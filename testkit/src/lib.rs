//! Test kit of tenantdb (a dev-dependency of the operator, which never links it; the demo and the bench driver use it too):
//!
//! - [`localpg`], [`localmongo`]: throwaway PostgreSQL clusters and the MongoDB wire-protocol
//!   stand-in, several at once;
//! - [`cluster`]: the chart rendered with `helm template`, manifests applied, kubeconfig clients;
//! - [`e2e`]: the end-to-end harness — the API server emulator with the chart's RBAC, a throwaway
//!   PostgreSQL and the real `tenantdb` binary as the chart's ServiceAccount;
//! - [`fixtures`]: one throwaway PostgreSQL per test binary with admin and login helpers;
//! - [`mongo`], [`mongo_writer`], [`ops`], [`reliability`], [`move_killer`], [`moves`],
//!   [`sql_scan`], [`bad_inputs`]: shared helpers of the test suites (MongoDB stand-in per binary,
//!   a MongoDB writer with its exactly-once check, log and metrics parsing, reliability checks,
//!   `kill -9` during moves, the move tests' waits and leftovers, the SQL statement scanner, the bad-input corpus).
#![forbid(unsafe_code)]

pub mod bad_inputs;
pub mod cluster;
pub mod e2e;
pub mod fixtures;
pub mod http;
pub mod localmongo;
pub mod localpg;
pub mod mongo;
pub mod mongo_writer;
pub mod move_killer;
pub mod moves;
pub mod ops;
pub mod pause;
pub mod reliability;
pub mod sql_scan;

use std::path::{Path, PathBuf};

/// The repository's root directory (charts, examples, migrations).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The `tenantdb` operator binary Cargo built for the integration test that is running: next to
/// the test executable's `deps/` directory (`target/<profile>/tenantdb`).
pub fn operator_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lives in target/<profile>/deps");
    profile_dir.join(format!("tenantdb{}", std::env::consts::EXE_SUFFIX))
}
