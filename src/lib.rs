//! tenantdb: a Kubernetes operator for the lifecycle of tenant databases.
//!
//! Reconcile pipeline: resolve -> validate -> plan (pure) -> apply (idempotent) -> report status.
#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
pub mod error;
pub mod localpg;
pub mod metrics;
pub mod migrate;
pub mod mongo;
pub mod partitions;
pub mod naming;
pub mod pg;
pub mod scram;
pub mod secret;
pub mod status;
pub mod runtime;
pub mod dev;
pub mod quota;
pub mod rotation;
