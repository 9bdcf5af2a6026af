//! tenantdb: a Kubernetes operator for the lifecycle of tenant databases.
#![forbid(unsafe_code)]

pub mod localpg;
pub mod migrate;
