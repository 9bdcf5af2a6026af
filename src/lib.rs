//! tenantdb: a Kubernetes operator for the lifecycle of tenant databases.
//!
//! Reconcile pipeline: resolve -> validate -> plan (pure) -> apply (idempotent) -> report status.
#![forbid(unsafe_code)]

pub mod controller;
pub mod crd;
pub mod dberror;
pub mod error;
pub mod fence;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod migrate;
pub mod mongo;
pub mod moves;
pub mod naming;
pub mod partitions;
pub mod pg;
pub mod quota;
pub mod rotation;
pub mod runtime;
pub mod scram;
pub mod secret;
pub mod servers;
pub mod statistics;
pub mod status;
