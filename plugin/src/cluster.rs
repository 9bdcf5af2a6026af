//! The Kubernetes side: a client configured like kubectl's (`--kubeconfig`, `KUBECONFIG`,
//! `~/.kube/config`, in-cluster; `--context`; `-n` or the context's namespace) and the reads every
//! command shares.
//!
//! Tenants are read as raw JSON ([`DynamicObject`]) rather than the typed [`tenantdb::crd::Tenant`]:
//! status fields a newer operator writes (e.g. `status.statistics`, `status.placement`) are shown when
//! present, whatever version of the types this plugin was built with.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;
use tenantdb::crd::{Tenant, TenantMigration};

use crate::error::{Context, Result};

/// Connection flags, as kubectl spells them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// All namespaces (status, report).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
}

/// A client and the namespace the command works in.
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    /// `-n`, else the kubeconfig context's namespace (`default` when it names none).
    pub namespace: String,
    /// `-A`: every namespace.
    pub all: bool,
}

impl Kube {
    /// Builds the client from the flags.
    pub async fn connect(args: &KubeArgs) -> Result<Kube> {
        let opts = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        // KUBECONFIG may list several files (`a:b`); kube reads the list itself.
        let explicit = args
            .kubeconfig
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty());
        let config = match explicit {
            Some(path) if !path.to_string_lossy().contains(':') => {
                let kc = Kubeconfig::read_from(path)
                    .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
                Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .with_context(|| format!("loading the kubeconfig {}", path.display()))?
            }
            _ if args.context.is_some() => Config::from_kubeconfig(&opts)
                .await
                .context("loading the kubeconfig")?,
            _ => Config::infer().await.context(
                "no kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config) and not in a cluster",
            )?,
        };
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).context("creating the Kubernetes client")?;
        Ok(Kube {
            client,
            namespace,
            all: args.all_namespaces,
        })
    }

    fn tenant_api(&self, all: bool) -> Api<DynamicObject> {
        let ar = ApiResource::erase::<Tenant>(&());
        if all {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &self.namespace, &ar)
        }
    }

    /// One Tenant of the namespace as raw JSON.
    pub async fn tenant(&self, name: &str) -> Result<Value> {
        let obj = self
            .tenant_api(false)
            .get_opt(name)
            .await
            .with_context(|| format!("reading Tenant {}/{name}", self.namespace))?
            .with_context(|| format!("Tenant {}/{name} not found", self.namespace))?;
        serde_json::to_value(&obj).context("encoding the Tenant")
    }

    /// The Tenants of the namespace (or of all with `-A`) as raw JSON, sorted by namespace/name.
    pub async fn tenants(&self) -> Result<Vec<Value>> {
        let list = self
            .tenant_api(self.all)
            .list(&ListParams::default())
            .await
            .with_context(|| format!("listing Tenants in {}", self.scope()))?;
        let mut out = list
            .items
            .iter()
            .map(serde_json::to_value)
            .collect::<std::result::Result<Vec<_>, _>>()
            .context("encoding the Tenants")?;
        out.sort_by_key(|t| {
            (
                str_at(t, "/metadata/namespace"),
                str_at(t, "/metadata/name"),
            )
        });
        Ok(out)
    }

    /// TenantMigrations of one namespace (`Some`) or of the command's scope.
    pub async fn migrations(&self, namespace: Option<&str>) -> Result<Vec<TenantMigration>> {
        let api: Api<TenantMigration> = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None if self.all => Api::all(self.client.clone()),
            None => Api::namespaced(self.client.clone(), &self.namespace),
        };
        let mut items = api
            .list(&ListParams::default())
            .await
            .with_context(|| {
                format!(
                    "listing TenantMigrations in {}",
                    namespace.map_or_else(|| self.scope(), |n| format!("namespace {n}"))
                )
            })?
            .items;
        items.sort_by_key(|m| (m.metadata.namespace.clone(), m.metadata.name.clone()));
        Ok(items)
    }

    /// The credentials Secret of a Tenant (its connection keys).
    pub async fn credentials(&self, tenant: &Value) -> Result<Credentials> {
        let ns = str_at(tenant, "/metadata/namespace");
        let name = secret_name(tenant);
        let secret = Api::<Secret>::namespaced(self.client.clone(), &ns)
            .get_opt(&name)
            .await
            .with_context(|| format!("reading the credentials Secret {ns}/{name}"))?
            .with_context(|| {
                format!("the credentials Secret {ns}/{name} does not exist (is the Tenant Ready?)")
            })?;
        let key = |k: &str| {
            tenantdb::secret::read_key(&secret, k)
                .with_context(|| format!("the credentials Secret {ns}/{name} has no key {k:?}"))
        };
        let port = key("port")?;
        Ok(Credentials {
            host: key("host")?,
            port: port
                .parse()
                .with_context(|| format!("Secret {ns}/{name}: port {port:?}"))?,
            database: key("database")?,
            username: key("username")?,
            password: key("password")?,
        })
    }

    /// "namespace x" or "all namespaces".
    pub fn scope(&self) -> String {
        if self.all {
            "all namespaces".to_string()
        } else {
            format!("namespace {}", self.namespace)
        }
    }
}

/// The connection keys of a credentials Secret. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The credentials Secret's name: `status.secretName`, else `spec.credentials.secretName`, else
/// `<tenant>-db` (the operator's default).
pub fn secret_name(tenant: &Value) -> String {
    opt_str(tenant, "/status/secretName")
        .or_else(|| opt_str(tenant, "/spec/credentials/secretName"))
        .unwrap_or_else(|| format!("{}-db", str_at(tenant, "/metadata/name")))
}

/// A string at a JSON pointer, or `""`.
pub fn str_at(v: &Value, ptr: &str) -> String {
    opt_str(v, ptr).unwrap_or_default()
}

/// A string at a JSON pointer.
pub fn opt_str(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr).and_then(Value::as_str).map(str::to_string)
}

/// An integer at a JSON pointer.
pub fn opt_i64(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}
