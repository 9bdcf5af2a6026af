//! The operator's Kubernetes side as the Helm chart installs it, for the end-to-end harness and
//! the demo: the chart rendered with `helm template`, manifests applied by server-side apply, and
//! clients built from kubeconfigs.

use std::path::{Path, PathBuf};

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use tenantdb::error::{Error, Result};

/// Release name and namespace the chart is rendered with (`helm template tenantdb … -n …`).
pub const CHART_RELEASE: &str = "tenantdb";
/// The namespace the operator runs in (its ServiceAccount, its leader-election Lease).
pub const OPERATOR_NAMESPACE: &str = "tenantdb-system";
/// The chart's ServiceAccount name for release [`CHART_RELEASE`].
pub const OPERATOR_SERVICE_ACCOUNT: &str = "tenantdb";

/// The manifests that declare the local cluster `pg` as the DatabaseServer `name`, as a user adds
/// a server: its admin Secret `<name>-admin` in the operator's namespace (the superuser's
/// credentials), then the DatabaseServer (labels `tier: standard`, `capacity` as given).
pub fn database_server_manifests(
    name: &str,
    pg: &crate::localpg::LocalPg,
    capacity: serde_json::Value,
) -> [serde_json::Value; 2] {
    [
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-admin"), "namespace": OPERATOR_NAMESPACE},
            "stringData": {"username": "postgres", "password": pg.superuser_password()},
        }),
        serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "DatabaseServer",
            "metadata": {"name": name, "labels": {"tier": "standard"}},
            "spec": {
                "engine": "postgres",
                "endpoint": {"host": pg.host(), "port": pg.port(), "tlsMode": "disable"},
                "adminSecretRef": {"name": format!("{name}-admin")},
                "capacity": capacity,
            },
        }),
    ]
}

/// The manifests that declare a MongoDB server (`host`:`port`, root user `root` with
/// `root_password`) as the mongodb DatabaseServer `name`: its admin Secret `<name>-admin` in the
/// operator's namespace, then the DatabaseServer (labels `tier: standard`, `capacity` as given).
pub fn mongo_database_server_manifests(
    name: &str,
    (host, port): (&str, u16),
    root_password: &str,
    capacity: serde_json::Value,
) -> [serde_json::Value; 2] {
    [
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-admin"), "namespace": OPERATOR_NAMESPACE},
            "stringData": {"username": "root", "password": root_password},
        }),
        serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "DatabaseServer",
            "metadata": {"name": name, "labels": {"tier": "standard"}},
            "spec": {
                "engine": "mongodb",
                "endpoint": {"host": host, "port": port, "tlsMode": "disable"},
                "adminSecretRef": {"name": format!("{name}-admin")},
                "capacity": capacity,
            },
        }),
    ]
}

/// The `helm` to use: the given one, else `<repo>/.tools/bin/helm` (what `scripts/chart-check.sh`
/// installs), else `helm` from PATH.
pub fn find_helm(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    let local = Path::new(".tools/bin/helm");
    if local.exists() {
        return local.to_path_buf();
    }
    PathBuf::from("helm")
}

/// `helm template <release> <chart> --namespace <namespace>`: the chart's manifests as installed,
/// with Helm's state in a throwaway directory (nothing read from or written to `~/.config/helm`).
pub fn render_chart(helm: &Path, chart: &Path, namespace: &str) -> Result<String> {
    let scratch = std::env::temp_dir().join(format!(
        "tenantdb-helm-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let out = std::process::Command::new(helm)
        .args(["template", CHART_RELEASE])
        .arg(chart)
        .args(["--namespace", namespace])
        .env("HELM_CACHE_HOME", scratch.join("cache"))
        .env("HELM_CONFIG_HOME", scratch.join("config"))
        .env("HELM_DATA_HOME", scratch.join("data"))
        .output();
    let _ = std::fs::remove_dir_all(&scratch);
    let out = out.map_err(|e| {
        Error::Config(format!(
            "running {} (install it with scripts/chart-check.sh, or pass --helm): {e}",
            helm.display()
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "helm template {}: {}",
            chart.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Config(format!("helm output: {e}")))
}

/// Parses a multi-document YAML file into JSON objects (empty documents skipped).
pub fn parse_manifests(text: &str) -> Result<Vec<serde_json::Value>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| Error::Config(format!("invalid YAML: {e}")))?;
    Ok(docs
        .into_iter()
        .filter(|d| d.is_object() && !d.as_object().is_some_and(|o| o.is_empty()))
        .collect())
}

/// Server-side applies a manifest object (any kind the server knows).
pub async fn apply_manifest(
    client: &Client,
    obj: &serde_json::Value,
    field_manager: &str,
) -> Result<String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"]
        .as_str()
        .ok_or_else(|| Error::Config(format!("{kind} without metadata.name")))?;
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    api.patch(
        name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(format!("{}/{name}", ar.plural))
}

/// Builds a client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    client_from(kc).await
}

/// Builds a client for a kubeconfig document.
pub async fn client_for_yaml(kubeconfig: &str) -> Result<Client> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    client_from(kc).await
}

async fn client_from(kc: kube::config::Kubeconfig) -> Result<Client> {
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| Error::Config(format!("kubeconfig: {e}")))?;
    Ok(Client::try_from(cfg)?)
}
