//! `report`: a support bundle without secrets — a directory, or a `.tar.gz` (`-o x.tar.gz`, made
//! with the system's `tar`).
//!
//! ```text
//! README.txt                  what this is, when, the scope
//! summary.txt                 the `status` fleet table
//! tenants/<ns>/<name>.yaml    Tenants (metadata.managedFields stripped)
//! tenantmigrations/<ns>/<name>.yaml
//! events/<ns>.yaml            Events about Tenants and TenantMigrations (events.k8s.io/v1)
//! secrets.yaml                the operator's Secrets: namespace, name, type, key NAMES (never data)
//! operator/deployments.yaml   the operator's Deployments: replicas, images, status (no pod spec:
//! operator/pods.yaml          its env may hold connection strings); pods: phase, container states
//! errors.txt                  what could not be read (e.g. forbidden by RBAC)
//! ```
//!
//! Before the bundle is kept, every file is scanned for the password and URI values of every
//! Secret read: a match deletes the bundle and fails (it cannot happen by construction; the scan
//! makes sure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::{Kube, str_at};
use crate::error::{Context, Error, Result};
use crate::view::TenantView;

/// Where the operator runs, and how its objects are labelled.
#[derive(Debug, Clone)]
pub struct OperatorLocation {
    pub namespace: String,
    pub selector: String,
}

/// Files of the bundle, path → content.
type Files = BTreeMap<PathBuf, String>;

fn yaml(v: &impl Serialize) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# could not render: {e}\n"))
}

/// An object as JSON without `metadata.managedFields`.
fn stripped(v: &impl Serialize) -> Value {
    let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
    if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

/// A read error in one line.
fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        e => e.to_string(),
    }
}

fn list_params() -> ListParams {
    ListParams::default()
}

fn api<K>(kube: &Kube) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    if kube.all {
        Api::all(kube.client.clone())
    } else {
        Api::namespaced(kube.client.clone(), &kube.namespace)
    }
}

/// Collects the bundle's files; also returns the secret values the scan must not find.
async fn collect(
    kube: &Kube,
    op: &OperatorLocation,
    now: jiff::Timestamp,
) -> Result<(Files, Vec<String>)> {
    let mut files = Files::new();
    let mut errors = Vec::new();
    let mut forbidden_values = Vec::new();

    let tenants = kube.tenants().await?;
    let migrations = kube.migrations(None).await.unwrap_or_else(|e| {
        errors.push(e.to_string());
        Vec::new()
    });
    for t in &tenants {
        let path = format!(
            "tenants/{}/{}.yaml",
            str_at(t, "/metadata/namespace"),
            str_at(t, "/metadata/name")
        );
        files.insert(path.into(), yaml(&stripped(t)));
    }
    for m in &migrations {
        let path = format!(
            "tenantmigrations/{}/{}.yaml",
            m.metadata.namespace.as_deref().unwrap_or("_"),
            m.metadata.name.as_deref().unwrap_or("_")
        );
        files.insert(path.into(), yaml(&stripped(m)));
    }
    let views: Vec<TenantView> = tenants
        .iter()
        .map(|t| TenantView::from_json(t, &migrations))
        .collect();
    files.insert(
        "summary.txt".into(),
        crate::render::fleet(&views, true, now),
    );

    match api::<Event>(kube).list(&list_params()).await {
        Ok(list) => {
            let mut by_ns: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for e in list.items {
                let kind = e.regarding.as_ref().and_then(|r| r.kind.as_deref());
                if matches!(kind, Some("Tenant" | "TenantMigration")) {
                    let ns = e.metadata.namespace.clone().unwrap_or_default();
                    by_ns.entry(ns).or_default().push(stripped(&e));
                }
            }
            for (ns, evs) in by_ns {
                files.insert(format!("events/{ns}.yaml").into(), yaml(&evs));
            }
        }
        Err(e) => errors.push(format!("listing Events in {}: {}", kube.scope(), short(&e))),
    }

    let lp = ListParams::default().labels(&format!(
        "{}={}",
        tenantdb::secret::MANAGED_BY_LABEL,
        tenantdb::secret::MANAGED_BY
    ));
    match api::<Secret>(kube).list(&lp).await {
        Ok(list) => {
            let mut out = Vec::new();
            for s in list.items {
                let data = s.data.unwrap_or_default();
                for (k, v) in &data {
                    let key = k.to_ascii_lowercase();
                    if key.contains("password") || key.contains("uri") {
                        forbidden_values.push(String::from_utf8_lossy(&v.0).into_owned());
                    }
                }
                out.push(json!({
                    "namespace": s.metadata.namespace,
                    "name": s.metadata.name,
                    "type": s.type_,
                    "tenant": s.metadata.annotations.as_ref()
                        .and_then(|a| a.get(tenantdb::secret::TENANT_ANNOTATION)),
                    "keys": data.keys().collect::<Vec<_>>(),
                }));
            }
            files.insert("secrets.yaml".into(), yaml(&out));
        }
        Err(e) => errors.push(format!(
            "listing Secrets in {}: {}",
            kube.scope(),
            short(&e)
        )),
    }

    let lp = ListParams::default().labels(&op.selector);
    let deployments: Api<Deployment> = Api::namespaced(kube.client.clone(), &op.namespace);
    match deployments.list(&lp).await {
        Ok(list) => {
            let out: Vec<Value> = list
                .items
                .iter()
                .map(|d| {
                    let pod = d.spec.template.spec.as_ref();
                    json!({
                        "name": d.metadata.name,
                        "namespace": d.metadata.namespace,
                        "generation": d.metadata.generation,
                        "replicas": d.spec.replicas,
                        "images": pod.map(|p| p.containers.iter().map(|c| c.image.clone()).collect::<Vec<_>>()),
                        "status": d.status,
                    })
                })
                .collect();
            files.insert("operator/deployments.yaml".into(), yaml(&out));
        }
        Err(e) => errors.push(format!(
            "listing Deployments in namespace {} ({}): {}",
            op.namespace,
            op.selector,
            short(&e)
        )),
    }
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &op.namespace);
    match pods.list(&lp).await {
        Ok(list) => {
            let out: Vec<Value> = list
                .items
                .iter()
                .map(|p| {
                    let st = p.status.as_ref();
                    json!({
                        "name": p.metadata.name,
                        "phase": st.and_then(|s| s.phase.clone()),
                        "startTime": st.and_then(|s| s.start_time.clone()),
                        "conditions": st.and_then(|s| s.conditions.clone()),
                        "containerStatuses": st.and_then(|s| s.container_statuses.clone()),
                    })
                })
                .collect();
            files.insert("operator/pods.yaml".into(), yaml(&out));
        }
        Err(e) => errors.push(format!(
            "listing Pods in namespace {} ({}): {}",
            op.namespace,
            op.selector,
            short(&e)
        )),
    }

    files.insert(
        "README.txt".into(),
        format!(
            "tenantdb support bundle (kubectl-tenantdb {})\n\
             created: {}\nscope: {}\ntenants: {}, tenant migrations: {}\n\n\
             Contains no Secret values: Secrets appear by name and key names only \
             (secrets.yaml); the operator's Deployments without their pod spec.\n",
            env!("CARGO_PKG_VERSION"),
            now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            kube.scope(),
            tenants.len(),
            migrations.len(),
        ),
    );
    if !errors.is_empty() {
        files.insert("errors.txt".into(), errors.join("\n") + "\n");
    }
    Ok((files, forbidden_values))
}

/// The first file containing one of `values` (values shorter than 8 characters are not
/// meaningful secrets and would match by chance).
pub fn find_leak<'a>(files: &'a Files, values: &[String]) -> Option<&'a Path> {
    files.iter().find_map(|(p, content)| {
        values
            .iter()
            .filter(|v| v.len() >= 8)
            .any(|v| content.contains(v.as_str()))
            .then_some(p.as_path())
    })
}

fn write_dir(dir: &Path, files: &Files) -> Result<()> {
    for (rel, content) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes the bundle to `out` (a directory, or a `.tar.gz`/`.tgz` file) and says what it wrote.
pub async fn run(kube: &Kube, op: &OperatorLocation, out: Option<PathBuf>) -> Result<String> {
    let now = jiff::Timestamp::now();
    let (files, values) = collect(kube, op, now).await?;
    if let Some(p) = find_leak(&files, &values) {
        return Err(Error::msg(format!(
            "refusing to write the bundle: {} would contain a Secret value",
            p.display()
        )));
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "tenantdb-report-{}",
            now.strftime("%Y%m%dT%H%M%SZ")
        ))
    });
    let name = out.to_string_lossy().into_owned();
    let archive = name.ends_with(".tar.gz") || name.ends_with(".tgz");
    if !archive {
        if out.exists() {
            return Err(Error::msg(format!("{name} exists already")));
        }
        write_dir(&out, &files)?;
        return Ok(format!(
            "Wrote the support bundle to {name}/ ({} files, no Secret values).\n",
            files.len()
        ));
    }
    let base = name
        .trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .rsplit('/')
        .next()
        .unwrap_or("tenantdb-report")
        .to_string();
    let staging = std::env::temp_dir().join(format!(
        "kubectl-tenantdb-report-{}-{}",
        std::process::id(),
        now.as_millisecond()
    ));
    let result = async {
        write_dir(&staging.join(&base), &files)?;
        let status = tokio::process::Command::new("tar")
            .arg("-czf")
            .arg(std::path::absolute(&out).context("resolving the output path")?)
            .arg("-C")
            .arg(&staging)
            .arg(&base)
            .status()
            .await
            .context("running tar")?;
        if !status.success() {
            return Err(Error::msg(format!("tar -czf {name} failed: {status}")));
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    result?;
    Ok(format!(
        "Wrote the support bundle to {name} ({} files, no Secret values).\n",
        files.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_fields_are_stripped_and_leaks_are_found() {
        let v = stripped(&json!({"metadata": {"name": "a", "managedFields": [{"manager": "x"}]}}));
        assert_eq!(v, json!({"metadata": {"name": "a"}}));
        let files = Files::from([
            ("a.yaml".into(), "name: a\n".to_string()),
            ("b.yaml".into(), "token: Pa55w0rdXyZ\n".to_string()),
        ]);
        assert_eq!(
            find_leak(&files, &["Pa55w0rdXyZ".into()]),
            Some(Path::new("b.yaml"))
        );
        assert_eq!(find_leak(&files, &["absentvalue".into()]), None);
        assert_eq!(
            find_leak(&files, &["a".into()]),
            None,
            "short values are ignored"
        );
    }
}
