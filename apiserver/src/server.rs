//! Server lifecycle: configuration, start-up, request statistics and shutdown.

use axum::Router;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::registry::CRD_GROUP;
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            crds: Vec::new(),
            watch_history: 10_000,
            watch_latency: std::time::Duration::ZERO,
        }
    }
}

impl Config {
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

/// Key of one request counter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatKey {
    /// get / list / watch / create / update / patch / delete / deletecollection
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// "" or "status".
    pub subresource: String,
}

/// A snapshot of the request counters (cheap to clone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    counts: Arc<BTreeMap<StatKey, u64>>,
}

impl Stats {
    /// Requests with this verb on this resource (any group). `subresource`: `None` = any,
    /// `Some("")` = the main resource only, `Some("status")` = the status subresource.
    /// `verb` may be `"*"` for all verbs.
    pub fn count(&self, verb: &str, resource: &str, subresource: Option<&str>) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| {
                (verb == "*" || k.verb == verb)
                    && (resource == "*" || k.resource == resource)
                    && subresource.is_none_or(|s| k.subresource == s)
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// Write requests (create/update/patch/delete/deletecollection) on a resource
    /// (`"*"` for all) and subresource (`None` = any).
    pub fn writes(&self, resource: &str, subresource: Option<&str>) -> u64 {
        ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| self.count(v, resource, subresource))
            .sum()
    }

    /// All counted requests.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Counters accumulated since an earlier snapshot.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut m = BTreeMap::new();
        for (k, v) in self.counts.iter() {
            let d = v.saturating_sub(earlier.counts.get(k).copied().unwrap_or(0));
            if d > 0 {
                m.insert(k.clone(), d);
            }
        }
        Stats {
            counts: Arc::new(m),
        }
    }

    /// Every non-zero counter.
    pub fn entries(&self) -> impl Iterator<Item = (&StatKey, u64)> {
        self.counts.iter().map(|(k, v)| (k, *v))
    }

    /// The JSON served at `/debug/stats`.
    pub fn to_json(&self) -> Value {
        let reqs: Vec<Value> = self
            .counts
            .iter()
            .map(|(k, v)| {
                json!({"verb": k.verb, "group": k.group, "resource": k.resource, "subresource": k.subresource, "count": v})
            })
            .collect();
        json!({"total": self.total(), "requests": reqs})
    }

    /// Parse the `/debug/stats` JSON (for out-of-process use).
    pub fn from_json(v: &Value) -> Stats {
        let mut m = BTreeMap::new();
        for r in v
            .get("requests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let key = StatKey {
                verb: s("verb"),
                group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
            };
            m.insert(key, r.get("count").and_then(Value::as_u64).unwrap_or(0));
        }
        Stats {
            counts: Arc::new(m),
        }
    }
}

/// State shared by all request handlers.
pub struct Shared {
    state: Mutex<State>,
    stats: Mutex<BTreeMap<StatKey, u64>>,
    pub shutdown: watch::Sender<bool>,
    pub addr: SocketAddr,
    /// See [`Config::watch_latency`].
    pub watch_latency: std::time::Duration,
}

impl Shared {
    /// Lock the store. Never hold this across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, verb: &str, group: &str, resource: &str, subresource: &str) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let key = StatKey {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
        };
        *s.entry(key).or_insert(0) += 1;
    }

    pub fn stats_snapshot(&self) -> Stats {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        Stats {
            counts: Arc::new(s.clone()),
        }
    }
}

/// A running emulator. Dropping it without [`RunningServer::shutdown`] also stops it
/// (without waiting).
pub struct RunningServer {
    shared: Arc<Shared>,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Start the emulator and return once it accepts connections.
pub async fn start(cfg: Config) -> Result<RunningServer, Error> {
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    let addr = listener.local_addr()?;
    let mut state = State::new(cfg.watch_history);
    bootstrap(&mut state, &cfg)?;
    let (shutdown, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        stats: Mutex::new(BTreeMap::new()),
        shutdown,
        addr,
        watch_latency: cfg.watch_latency,
    });
    let app = Router::new()
        .fallback(crate::http::handle)
        .with_state(shared.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // TCP_NODELAY like the real API server (Go sets it on every connection): without it a
        // response written in two segments waits for the client's delayed ACK (~40 ms).
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "tenantdb-apiserver stopped with an error");
        }
    });
    Ok(RunningServer {
        shared,
        url: format!("http://{addr}"),
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

    /// A kubeconfig (context `tenantdb-dev`) pointing at [`url`](Self::url).
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        kubeconfig_yaml(&self.url, namespace)
    }

    /// Write [`kubeconfig_yaml`](Self::kubeconfig_yaml) to `path`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(namespace))
    }

    /// Snapshot of the request counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats_snapshot()
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

/// A kubeconfig for `url` with context/cluster/user `tenantdb-dev`.
pub fn kubeconfig_yaml(url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         # tenantdb-apiserver: an in-memory Kubernetes API emulator for tests/demo. NOT a cluster.\n\
         clusters:\n- name: tenantdb-dev\n  cluster:\n    server: {url}\n\
         contexts:\n- name: tenantdb-dev\n  context:\n    cluster: tenantdb-dev\n    user: tenantdb-dev\n    namespace: {namespace}\n\
         current-context: tenantdb-dev\n\
         users:\n- name: tenantdb-dev\n  user: {{}}\n\
         preferences: {{}}\n"
    )
}
