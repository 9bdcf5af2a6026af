//! A benchmark environment: throwaway PostgreSQL, the in-memory API server emulator (in this
//! process) and the real operator binary as a child process (same set-up as the e2e tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tenantdb::crd::{Tenant, TenantPhase};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

pub struct Env {
    pub pg: LocalPg,
    pub api: tenantdb_apiserver::RunningServer,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub client: Client,
    pub operator: Option<Child>,
    pub operator_pid: Option<u32>,
    pub metrics_addr: Option<SocketAddr>,
    pub tracker: Tracker,
    /// The Tracker's watch task, stopped when the Env is dropped (see `Drop for Env`).
    tracker_task: tokio::task::AbortHandle,
}

impl Drop for Env {
    /// Stops the Tenant watch with the API server it watches. A kube watcher without backoff
    /// retries a failing watch at once: left running after its server is gone, it would relist
    /// against a closed port for the rest of the run, and at runtime shutdown (once the client's
    /// connection task is dropped) fail synchronously in a loop that never yields, so the driver
    /// never exits.
    fn drop(&mut self) {
        self.tracker_task.abort();
    }
}

pub fn free_port() -> u16 {
    tenantdb_testkit::localpg::free_port().expect("a free TCP port")
}

impl Env {
    pub async fn start(
        cfg: &crate::cli::Cfg,
        label: &str,
        pg_options: LocalPgOptions,
    ) -> Result<Env> {
        let work = &cfg.work;
        let pg = tokio::task::spawn_blocking(move || LocalPg::start_with(pg_options))
            .await?
            .context("throwaway PostgreSQL")?;
        let mut cfg = tenantdb_apiserver::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Large enough that no watcher of a 10k-object run ever falls out of the history.
            watch_history: 200_000,
            request_latency: cfg.api_latency,
            watch_latency: cfg.api_latency,
            ..Default::default()
        };
        for (_, crd) in tenantdb::crd::all_crds() {
            cfg.crds.push(serde_json::to_value(&crd)?);
        }
        let api = tenantdb_apiserver::start(cfg).await?;
        let dir = work.join(label);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, "default")?;
        let client = tenantdb_testkit::cluster::client_for(&kubeconfig)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let (tracker, tracker_task) = Tracker::start(client.clone());
        Ok(Env {
            pg,
            api,
            dir,
            kubeconfig,
            client,
            operator: None,
            operator_pid: None,
            metrics_addr: None,
            tracker,
            tracker_task,
        })
    }

    /// Spawns the operator binary with `args` (after the common ones). Logs go to `operator.log`.
    pub fn spawn_operator(&mut self, bin: &Path, args: &[String]) -> Result<()> {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("operator.log"))?;
        let child = Command::new(bin)
            .arg("run")
            .args(["--http-addr", &addr.to_string()])
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TENANTDB_DATABASE_URL", self.pg.admin_url())
            .env("RUST_LOG", "info")
            .env("TENANTDB_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.operator_pid = child.id();
        self.operator = Some(child);
        self.metrics_addr = Some(addr);
        Ok(())
    }

    pub async fn stop_operator(&mut self) {
        if let Some(mut c) = self.operator.take() {
            if let Some(pid) = c.id() {
                // SIGTERM: graceful shutdown.
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(20), c.wait())
                .await
                .is_err()
            {
                let _ = c.kill().await;
            }
        }
        self.operator_pid = None;
    }

    pub fn operator_log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(self.dir.join("operator.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits for the operator's /readyz (caches synced).
    pub async fn wait_operator_ready(&self, timeout: Duration) -> Result<()> {
        let addr = self.metrics_addr.ok_or_else(|| anyhow!("no operator"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(body) = http_get(addr, "/readyz").await
                && body.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("operator not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The operator's /metrics text.
    pub async fn metrics(&self) -> Result<String> {
        let addr = self.metrics_addr.ok_or_else(|| anyhow!("no operator"))?;
        http_get(addr, "/metrics").await
    }

    pub async fn ensure_namespace(&self, ns: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(ns).await?.is_none() {
            let obj: Namespace = serde_json::from_value(
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )?;
            api.create(&PostParams::default(), &obj).await?;
        }
        Ok(())
    }

    /// Creates Tenants `names` in `ns` with `spec`, `parallel` requests at a time.
    pub async fn create_tenants(
        &self,
        ns: &str,
        names: &[String],
        spec: &serde_json::Value,
        parallel: usize,
    ) -> Result<()> {
        self.ensure_namespace(ns).await?;
        let api: Api<Tenant> = Api::namespaced(self.client.clone(), ns);
        futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let api = api.clone();
                let t = tenant_object(ns, &name, spec);
                async move { api.create(&PostParams::default(), &t).await.map(|_| ()) }
            })
            .buffer_unordered(parallel)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

pub fn tenant_object(ns: &str, name: &str, spec: &serde_json::Value) -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("tenant object")
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Sum of a metric family in OpenMetrics text whose line starts with `name` (any labels) and
/// contains every `filter` substring.
pub fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' '))
                && filters.iter().all(|f| l.contains(f))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// What the tracker knows about one Tenant.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub ready_at: Option<Instant>,
    pub failed_at: Option<Instant>,
}

/// Watches every Tenant and records when each one is first seen Ready (or Failed).
#[derive(Clone)]
pub struct Tracker {
    state: Arc<Mutex<HashMap<String, Seen>>>,
    notify: Arc<Notify>,
}

pub fn is_ready(t: &Tenant) -> bool {
    let Some(st) = t.status.as_ref() else {
        return false;
    };
    st.phase == TenantPhase::Ready
        && st.observed_generation == t.metadata.generation
        && st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl Tracker {
    /// Starts the watch; returns the tracker and the handle to stop its task.
    fn start(client: Client) -> (Tracker, tokio::task::AbortHandle) {
        let tracker = Tracker {
            state: Arc::new(Mutex::new(HashMap::new())),
            notify: Arc::new(Notify::new()),
        };
        let t = tracker.clone();
        let task = tokio::spawn(async move {
            let api: Api<Tenant> = Api::all(client);
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                let now = Instant::now();
                let obj = match ev {
                    Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                    _ => continue,
                };
                let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
                let ready = is_ready(&obj);
                let failed = obj
                    .status
                    .as_ref()
                    .is_some_and(|s| s.phase == TenantPhase::Failed);
                let mut st = t.state.lock().unwrap();
                let e = st.entry(key).or_default();
                if ready && e.ready_at.is_none() {
                    e.ready_at = Some(now);
                }
                if failed && e.failed_at.is_none() {
                    e.failed_at = Some(now);
                }
                drop(st);
                t.notify.notify_waiters();
            }
        });
        (tracker, task.abort_handle())
    }

    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        (
            st.values().filter(|s| s.ready_at.is_some()).count(),
            st.values().filter(|s| s.failed_at.is_some()).count(),
        )
    }

    pub fn get(&self, key: &str) -> Option<Seen> {
        self.state.lock().unwrap().get(key).cloned()
    }

    /// Latest ready time among all tracked tenants.
    pub fn last_ready(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .values()
            .filter_map(|s| s.ready_at)
            .max()
    }

    /// Waits until `cond(ready, failed)` holds; re-checks at least every 10 ms.
    pub async fn wait(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(usize, usize) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let (r, f) = self.counts();
            if cond(r, f) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what} (ready {r}, failed {f})");
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
        }
    }

    /// Waits until one Tenant is Ready and returns when it was first seen Ready.
    pub async fn wait_ready(&self, key: &str, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(at) = self.get(key).and_then(|s| s.ready_at) {
                return Ok(at);
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {key} Ready");
            }
            let _ = tokio::time::timeout(Duration::from_millis(10), notified).await;
        }
    }
}

/// CPU time (user + system) of a process in seconds, from /proc/PID/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which is in parentheses and may contain spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck())
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (VmRSS, VmHWM) of a process in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |key: &str| {
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((get("VmRSS:")?, get("VmHWM:")?))
}

/// Busy and total jiffies of the whole machine (from /proc/stat), to report machine CPU use.
pub fn machine_cpu() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = s.lines().next().unwrap_or_default();
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / clk_tck(), total / clk_tck())
}
