//! # tenantdb-apiserver — an in-memory Kubernetes API server **emulator**
//!
//! **This is not a cluster.** It serves the subset of the Kubernetes REST API that
//! kube-rs (`kube` 5: client, runtime `Controller`, finalizers, server-side apply, events,
//! leases) and `kubectl` use, backed by an in-memory store. It exists for tenantdb's
//! end-to-end tests and its no-cluster local demo. There are no nodes, pods or controllers
//! (apart from garbage collection and namespace cleanup); it authenticates (bearer tokens over
//! HTTPS), authorizes (RBAC), tracks field ownership (server-side apply) and validates like
//! kube-apiserver.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenantdb_apiserver::Error> {
//! let mut cfg = tenantdb_apiserver::Config::default();
//! cfg.load_crd_dir(std::path::Path::new("crds"))?;
//! let server = tenantdb_apiserver::start(cfg).await?;
//! println!("{}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See `apiserver/README.md` for exactly what is and is not emulated.
#![forbid(unsafe_code)]

mod apply;
mod auth;
mod cel;
mod crd_check;
mod discovery;
mod error;
mod events;
mod fieldpath;
mod gc;
mod groups;
mod http;
mod kinds;
mod managed;
mod objectmeta;
mod openapi;
mod options;
mod ownerrefs;
mod params;
mod patch;
mod proto;
mod rbac;
mod registry;
mod schema;
mod selector;
mod server;
mod shared;
mod smd;
mod store;
mod table;
mod tls;
mod validation;
mod watch;
mod write;

pub use auth::{ADMIN_USER, UserInfo};
pub use discovery::GIT_VERSION;
pub use error::Error;
pub use server::{Config, RunningServer, start};
pub use shared::{AuthzCheck, StatKey, Stats};

/// Building blocks exposed for unit tests and tools (not a stable API).
pub mod internals {
    pub use crate::objectmeta::{
        config_map_key, is_dns1123_label, is_dns1123_subdomain, label_value, qualified_name,
    };
    pub use crate::patch::{PatchError, json_patch, merge_patch, strategic_merge_patch};
    pub use crate::selector::{FieldSelector, LabelSelector};
    pub use crate::validation::process_custom_resource;
}
