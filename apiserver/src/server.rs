//! Server lifecycle: configuration, start-up, request statistics and shutdown.

use axum::Router;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::auth::{Tokens, UserInfo};
use crate::error::Error;
use crate::registry::CRD_GROUP;
use crate::shared::{AuthzCheck, Shared, Stats};
use crate::store::{State, WriteOpts};

/// Emulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address; port 0 picks a free port.
    pub addr: SocketAddr,
    /// `apiextensions.k8s.io/v1` CustomResourceDefinition objects to install at start-up.
    pub crds: Vec<Value>,
    /// How many events are kept for watch-from-resourceVersion (older versions get 410 Expired).
    pub watch_history: usize,
    /// Delay before a change reaches watchers (default 0). Real informers lag behind writes;
    /// tests set this to exercise controllers that read their own writes from a stale cache.
    pub watch_latency: std::time::Duration,
    /// Delay before every request is handled (default 0): a real API server is a network round
    /// trip or more away (2–5 ms in a cloud region); benchmarks set it to measure the operator
    /// with realistic API latency. Watch requests are delayed before their first response only.
    pub request_latency: std::time::Duration,
    /// Objects created at start, after the CRDs: e.g. a chart's rendered RBAC and ServiceAccount
    /// (`helm template` output via [`Config::load_manifests`]). Kinds the emulator does not serve
    /// (Deployments, Services, …) are skipped; a namespace a namespaced object needs is created
    /// first, like `helm install --create-namespace`.
    pub objects: Vec<Value>,
    /// Garbage collection delay: `None` (default) collects an owner's dependents within the
    /// delete; `Some(d)` does it `d` later, in the background, like the real (asynchronous)
    /// garbage collector. Dependents of a deleted owner then stay visible meanwhile.
    pub gc_delay: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            crds: Vec::new(),
            watch_history: 10_000,
            watch_latency: std::time::Duration::ZERO,
            request_latency: std::time::Duration::ZERO,
            objects: Vec::new(),
            gc_delay: None,
        }
    }
}

impl Config {
    /// Queue every object of a multi-document YAML text (e.g. `helm template` output) for
    /// creation at start (see [`Config::objects`]). Returns how many documents were queued.
    pub fn load_manifests(&mut self, yaml: &str) -> Result<usize, Error> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).map_err(|e| Error::Yaml {
            path: "<manifests>".into(),
            message: e.to_string(),
        })?;
        let before = self.objects.len();
        self.objects.extend(
            docs.into_iter()
                .filter(|d| d.get("kind").and_then(Value::as_str).is_some()),
        );
        Ok(self.objects.len() - before)
    }

    /// Add every CustomResourceDefinition found in `dir/*.yaml` / `*.yml` / `*.json`
    /// (multi-document YAML is fine; other kinds are skipped).
    pub fn load_crd_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p)?;
            let docs: Vec<Value> = if p.extension().is_some_and(|e| e == "json") {
                vec![serde_json::from_str(&text).map_err(|e| Error::Yaml {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?]
            } else {
                serde_saphyr::from_multiple::<Value>(&text).map_err(|e| Error::Yaml {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
            };
            for d in docs {
                if d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                    self.crds.push(d);
                }
            }
        }
        Ok(())
    }
}

/// A running emulator. Dropping it without [`RunningServer::shutdown`] also stops it
/// (without waiting).
pub struct RunningServer {
    shared: Arc<Shared>,
    url: String,
    ca_pem: String,
    admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Start the emulator and return once it accepts connections.
pub async fn start(cfg: Config) -> Result<RunningServer, Error> {
    start_with(cfg, true).await
}

/// [`start`] with RBAC switched off: only for the emulator's own unit tests.
#[cfg(test)]
pub(crate) async fn start_without_rbac(cfg: Config) -> Result<RunningServer, Error> {
    start_with(cfg, false).await
}

async fn start_with(cfg: Config, rbac: bool) -> Result<RunningServer, Error> {
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    let addr = listener.local_addr()?;
    let tls = crate::tls::generate(addr.ip())?;
    let mut state = State::new(cfg.watch_history);
    bootstrap(&mut state, &cfg)?;
    state.gc_delay = cfg.gc_delay;
    let (shutdown, _) = watch::channel(false);
    let mut tokens = Tokens::default();
    let admin_token = crate::auth::new_token();
    tokens.insert(admin_token.clone(), UserInfo::admin());
    let shared = Arc::new(Shared {
        tokens: Mutex::new(tokens),
        rbac,
        state: Mutex::new(state),
        stats: Mutex::new(BTreeMap::new()),
        authz: Mutex::new(BTreeMap::new()),
        shutdown,
        addr,
        watch_latency: cfg.watch_latency,
        request_latency: cfg.request_latency,
    });
    let app = Router::new()
        .fallback(crate::http::handle)
        .with_state(shared.clone());
    if let Some(delay) = cfg.gc_delay {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut stop = shared.shutdown.subscribe();
            let tick = (delay / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    _ = tokio::time::sleep(tick) => {}
                }
                shared.lock().run_due_gc(std::time::Instant::now());
            }
        });
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // TCP_NODELAY like the real API server (Go sets it on every connection): without it a
    // response written in two segments waits for the client's delayed ACK (~40 ms).
    let listener = crate::tls::TlsListener::new(listener, tls.config.clone())?;
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "tenantdb-apiserver stopped with an error");
        }
    });
    Ok(RunningServer {
        shared,
        url: format!("https://{addr}"),
        ca_pem: tls.ca_pem,
        admin_token,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

fn bootstrap(state: &mut State, cfg: &Config) -> Result<(), Error> {
    let opts = WriteOpts::default();
    let ns_def = state
        .registry
        .get("", "namespaces")
        .cloned()
        .ok_or_else(|| Error::InvalidCrd("namespaces not registered".into()))?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        state
            .create(
                &ns_def,
                "v1",
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                &opts,
            )
            .map_err(|e| Error::InvalidCrd(e.message))?;
    }
    let crd_def = state
        .registry
        .get(CRD_GROUP, "customresourcedefinitions")
        .cloned()
        .ok_or_else(|| Error::InvalidCrd("customresourcedefinitions not registered".into()))?;
    for crd in &cfg.crds {
        state
            .create(&crd_def, "v1", "", crd.clone(), &opts)
            .map_err(|e| Error::InvalidCrd(e.message))?;
    }
    for obj in crate::rbac::bootstrap_policy() {
        create_object(state, obj, &opts)?;
    }
    // Namespaces, then ServiceAccounts and roles, then bindings, then everything else (the order
    // `helm install` uses for these kinds).
    let rank = |o: &Value| match o.get("kind").and_then(Value::as_str).unwrap_or("") {
        "Namespace" => 0,
        "ServiceAccount" => 1,
        "ClusterRole" | "Role" => 2,
        "ClusterRoleBinding" | "RoleBinding" => 3,
        _ => 4,
    };
    let mut objects: Vec<&Value> = cfg.objects.iter().collect();
    objects.sort_by_key(|o| rank(o));
    for obj in objects {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let Some((def, _)) = state.registry.by_kind(av, kind) else {
            tracing::debug!(
                kind,
                api_version = av,
                "manifest kind not served by the emulator: skipped"
            );
            continue;
        };
        if def.namespaced {
            let ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            if state.get_obj(&ns_def.gr(), "", &ns).is_none() {
                state
                    .create(
                        &ns_def,
                        "v1",
                        "",
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                        &opts,
                    )
                    .map_err(|e| Error::InvalidObject(e.message))?;
            }
        }
        create_object(state, obj.clone(), &opts)?;
    }
    Ok(())
}

/// Create one manifest object at start-up (no authorization: this is the installer).
fn create_object(state: &mut State, obj: Value, opts: &WriteOpts) -> Result<(), Error> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let (def, version) = state
        .registry
        .by_kind(av, kind)
        .map(|(d, v)| (d.clone(), v))
        .ok_or_else(|| Error::InvalidObject(format!("{av} {kind} is not served")))?;
    let ns = if def.namespaced {
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    state
        .create(&def, &version, &ns, obj, opts)
        .map_err(|e| Error::InvalidObject(e.message))?;
    Ok(())
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// An administrator's kubeconfig (context `tenantdb-dev`, user `tenantdb-admin` in group
    /// `system:masters`, bearer token, the emulator's CA) pointing at [`url`](Self::url).
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        self.kubeconfig_yaml_with_token(namespace, Some(&self.admin_token))
    }

    /// A kubeconfig sending `token` (`None`: no credentials, i.e. `system:anonymous`).
    pub fn kubeconfig_yaml_with_token(&self, namespace: &str, token: Option<&str>) -> String {
        kubeconfig_doc(&self.url, &self.ca_pem, namespace, token)
    }

    /// The throwaway CA of this server (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The administrator's bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A bearer token of the ServiceAccount `sa_namespace/sa_name` (issued once, then reused).
    /// It authenticates as `system:serviceaccount:<ns>:<name>` while that ServiceAccount exists.
    pub fn service_account_token(&self, sa_namespace: &str, sa_name: &str) -> String {
        let user = UserInfo::service_account(sa_namespace, sa_name);
        let mut tokens = self.shared.tokens();
        if let Some(t) = tokens.token_of(&user.name) {
            return t.to_string();
        }
        let t = crate::auth::new_token();
        tokens.insert(t.clone(), user);
        t
    }

    /// A kubeconfig that authenticates as a ServiceAccount (see
    /// [`service_account_token`](Self::service_account_token)); `namespace` is the context's
    /// default namespace.
    pub fn service_account_kubeconfig_yaml(
        &self,
        sa_namespace: &str,
        sa_name: &str,
        namespace: &str,
    ) -> String {
        let token = self.service_account_token(sa_namespace, sa_name);
        self.kubeconfig_yaml_with_token(namespace, Some(&token))
    }

    /// Write [`kubeconfig_yaml`](Self::kubeconfig_yaml) to `path`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(namespace))
    }

    /// Snapshot of the request counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats_snapshot()
    }

    /// Every distinct authorization check RBAC made so far, with how often (an apply that
    /// creates its object shows up as `patch` and `create`). The RBAC tests of the operator use
    /// this to compare what its ServiceAccount needs with what the chart grants.
    pub fn authorization_checks(&self) -> Vec<(AuthzCheck, u64)> {
        let m = self.shared.authz.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().current_rv()
    }

    /// Graceful shutdown: ends every watch stream, stops accepting, waits (max 5 s) for
    /// in-flight requests.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    fn signal_stop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

fn kubeconfig_doc(url: &str, ca_pem: &str, namespace: &str, token: Option<&str>) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => "{}".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\n\
         # tenantdb-apiserver: an in-memory Kubernetes API emulator for tests/demo. NOT a cluster.\n\
         clusters:\n- name: tenantdb-dev\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
         contexts:\n- name: tenantdb-dev\n  context:\n    cluster: tenantdb-dev\n    user: tenantdb-dev\n    namespace: {namespace}\n\
         current-context: tenantdb-dev\n\
         users:\n- name: tenantdb-dev\n  user: {user}\n\
         preferences: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn anonymous_list(srv: &RunningServer) -> Result<(), kube::Error> {
        let kc =
            kube::config::Kubeconfig::from_yaml(&srv.kubeconfig_yaml_with_token("default", None))
                .map_err(kube::Error::InferKubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(kube::Error::InferKubeconfig)?;
        let client = kube::Client::try_from(config)?;
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::all(client);
        secrets.list(&Default::default()).await.map(|_| ())
    }

    #[tokio::test]
    async fn rbac_is_off_only_through_the_unit_test_entry_point() {
        let open = start_without_rbac(Config::default()).await.unwrap();
        anonymous_list(&open).await.unwrap();
        open.shutdown().await;
        let strict = start(Config::default()).await.unwrap();
        match anonymous_list(&strict).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403),
            other => panic!("anonymous list allowed: {other:?}"),
        }
        strict.shutdown().await;
    }
}
