//! End-to-end environment: the in-memory API server emulator (in-process), a throwaway PostgreSQL
//! and the real `tenantdb` binary as a child process talking to the emulator through a kubeconfig.
//!
//! The emulator has the Helm chart's rendered ServiceAccount and RBAC installed (`helm template`
//! with `.tools/bin/helm` or `$HELM`), and the operator authenticates as that ServiceAccount
//! (`system:serviceaccount:tenantdb-system:tenantdb`): it can do exactly what the chart grants.
//! The tests' own client is an administrator.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::localpg::LocalPg;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tenantdb::crd::{Tenant, TenantMigration, TenantPhase};
use tokio::process::{Child, Command};

/// Namespace of the operator (the chart's release namespace; its Lease lives here).
pub const OPERATOR_NAMESPACE: &str = crate::cluster::OPERATOR_NAMESPACE;
/// The operator's identity.
pub const OPERATOR_USER: &str = "system:serviceaccount:tenantdb-system:tenantdb";

/// The chart's manifests as `helm template tenantdb charts/tenantdb -n tenantdb-system` renders
/// them (once per test binary). A missing helm is a failure, not a skip.
pub fn chart_manifests() -> &'static str {
    static CHART: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CHART.get_or_init(|| {
        let root = crate::repo_root();
        let helm = std::env::var_os("HELM")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".tools/bin/helm"));
        crate::cluster::render_chart(&helm, &root.join("charts/tenantdb"), OPERATOR_NAMESPACE)
            .unwrap_or_else(|e| {
                panic!("rendering the chart (run scripts/chart-check.sh once to install helm): {e}")
            })
    })
}

/// How to start an [`Env`].
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    /// Delay of every watch event (informer lag).
    pub watch_latency: Duration,
    /// Asynchronous garbage collection with this delay (`None`: synchronous).
    pub gc_delay: Option<Duration>,
    /// Extra `tenantdb run` flags.
    pub extra_args: Vec<String>,
    /// Install these CRDs instead of the ones of this version (e.g. an older Tenant CRD).
    pub crds: Option<Vec<serde_json::Value>>,
    /// Extra PostgreSQL server settings (e.g. `shared_preload_libraries`).
    pub pg_settings: Vec<(String, String)>,
    /// Extra environment variables of the operator process (e.g. a test-only fail point, see
    /// tests/README.md).
    pub operator_env: Vec<(String, String)>,
    /// Start the operator without `--database-url` (no default server: the throwaway cluster is
    /// only there to be declared as a DatabaseServer).
    pub no_default_server: bool,
}

/// The watch lag every end-to-end test of this run gets (`TENANTDB_TEST_WATCH_LATENCY_MS`, runs
/// every end-to-end test against a lagging cache; none by default). A test's measurement window
/// for "nothing happens" must outlast it.
pub fn watch_latency_of_the_run() -> Duration {
    std::env::var("TENANTDB_TEST_WATCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or_default()
}

pub struct Env {
    pub pg: LocalPg,
    pub api: tenantdb_apiserver::RunningServer,
    pub dir: PathBuf,
    /// The tests' (administrator's) kubeconfig.
    pub kubeconfig: PathBuf,
    /// The operator's kubeconfig: the chart's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
    pub client: Client,
    pub operator: Option<Child>,
    pub log_path: PathBuf,
    pub extra_args: Vec<String>,
    /// Extra environment variables of operator processes started from now on.
    pub operator_env: Vec<(String, String)>,
    /// Whether the operator gets `--database-url` (the throwaway cluster as its default server).
    pub default_server: bool,
    starts: u32,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(&[]).await
    }

    /// Starts PostgreSQL, the API server emulator and the operator with extra `run` flags.
    pub async fn start_with(extra_args: &[&str]) -> Env {
        Self::start_lagging(watch_latency_of_the_run(), extra_args).await
    }

    /// Like [`Env::start_with`], with every watch event delayed by `watch_latency` (informer lag).
    pub async fn start_lagging(watch_latency: Duration, extra_args: &[&str]) -> Env {
        Self::start_configured(EnvOptions {
            watch_latency,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
    }

    /// Starts PostgreSQL, the API server emulator (CRDs, the chart's RBAC) and the operator.
    pub async fn start_configured(opts: EnvOptions) -> Env {
        let pg_options = crate::localpg::LocalPgOptions {
            settings: opts.pg_settings.clone(),
            ..Default::default()
        };
        let pg = tokio::task::spawn_blocking(move || LocalPg::start_with(pg_options))
            .await
            .unwrap()
            .expect("throwaway PostgreSQL");
        let mut cfg = tenantdb_apiserver::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_latency: opts.watch_latency,
            gc_delay: opts.gc_delay,
            ..Default::default()
        };
        cfg.crds = opts.crds.clone().unwrap_or_else(|| {
            tenantdb::crd::all_crds()
                .into_iter()
                .map(|(_, crd)| serde_json::to_value(&crd).unwrap())
                .collect()
        });
        cfg.load_manifests(chart_manifests())
            .expect("the chart's manifests");
        let api = tenantdb_apiserver::start(cfg)
            .await
            .expect("api server emulator");
        let dir = std::env::temp_dir().join(format!(
            "tenantdb-e2e-{}-{}",
            std::process::id(),
            api.addr().port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, "default").unwrap();
        let operator_kubeconfig = dir.join("operator-kubeconfig");
        std::fs::write(
            &operator_kubeconfig,
            api.service_account_kubeconfig_yaml(
                OPERATOR_NAMESPACE,
                crate::cluster::OPERATOR_SERVICE_ACCOUNT,
                OPERATOR_NAMESPACE,
            ),
        )
        .unwrap();
        let client = crate::cluster::client_for(&kubeconfig).await.unwrap();
        let mut env = Env {
            pg,
            api,
            log_path: dir.join("operator.log"),
            dir,
            kubeconfig,
            operator_kubeconfig,
            client,
            operator: None,
            extra_args: opts.extra_args,
            operator_env: opts.operator_env,
            default_server: !opts.no_default_server,
            starts: 0,
        };
        env.start_operator();
        env
    }

    /// Starts (or restarts) the operator binary. Its output is appended to `operator.log`.
    pub fn start_operator(&mut self) {
        self.starts += 1;
        let child = self.spawn_operator(&self.log_path.clone(), &[]);
        self.operator = Some(child);
    }

    /// Spawns one more operator process logging to `log_path` (for leader election tests).
    pub fn spawn_operator(&self, log_path: &std::path::Path, more_args: &[&str]) -> Child {
        self.spawn_operator_with(&self.operator_kubeconfig, log_path, more_args)
    }

    /// [`Env::spawn_operator`] with another kubeconfig (e.g. one pointing at a proxy).
    pub fn spawn_operator_with(
        &self,
        kubeconfig: &std::path::Path,
        log_path: &std::path::Path,
        more_args: &[&str],
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        let mut cmd = Command::new(crate::operator_bin());
        if self.default_server {
            cmd.env("TENANTDB_DATABASE_URL", self.pg.admin_url());
        } else {
            cmd.env_remove("TENANTDB_DATABASE_URL");
        }
        cmd.arg("run")
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--backoff-base-ms",
                "200",
                "--backoff-max-seconds",
                "5",
            ])
            .args(&self.extra_args)
            .args(more_args)
            .env("KUBECONFIG", kubeconfig)
            // The Deployment sets it from the pod's namespace (downward API).
            .env("TENANTDB_LEASE_NAMESPACE", OPERATOR_NAMESPACE)
            .env("TENANTDB_OPERATOR_NAMESPACE", OPERATOR_NAMESPACE)
            .env("RUST_LOG", "info,tenantdb=debug")
            .env("TENANTDB_LOG_FORMAT", "json")
            .envs(self.operator_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn tenantdb")
    }

    /// SIGKILLs the operator.
    pub async fn kill_operator(&mut self) {
        if let Some(mut c) = self.operator.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }

    pub fn operator_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `n` lines of the operator's log above DEBUG (for failure messages).
    pub fn important_log_tail(&self, n: usize) -> String {
        let log = self.operator_log();
        let important: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("\"level\":\"DEBUG\""))
            .collect();
        tail(&important.join("\n"), n)
    }

    pub fn tenants(&self, ns: &str) -> Api<Tenant> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub async fn ensure_namespace(&self, ns: &str) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let obj =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let _ = api
            .patch(ns, &PatchParams::apply("e2e").force(), &Patch::Apply(&obj))
            .await;
    }

    /// Creates a Tenant from a JSON spec.
    pub async fn create_tenant(&self, ns: &str, name: &str, spec: serde_json::Value) -> Tenant {
        self.ensure_namespace(ns).await;
        let t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .unwrap();
        self.tenants(ns)
            .create(&PostParams::default(), &t)
            .await
            .unwrap()
    }

    /// The TenantMigrations of `ns`.
    pub fn migrations(&self, ns: &str) -> Api<TenantMigration> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates a TenantMigration from a JSON spec.
    pub async fn create_migration(&self, ns: &str, name: &str, spec: serde_json::Value) {
        let tm: TenantMigration = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "TenantMigration",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .unwrap();
        self.migrations(ns)
            .create(&PostParams::default(), &tm)
            .await
            .unwrap();
    }

    /// Waits until the TenantMigration's status, for its current generation, satisfies `pred`;
    /// panics after `timeout` with the last status seen and the operator log's tail.
    pub async fn wait_migration(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&TenantMigration) -> bool,
    ) -> TenantMigration {
        let api = self.migrations(ns);
        let last = std::sync::Mutex::new(None);
        let (pred, last_ref) = (&pred, &last);
        let r = wait_for(
            timeout,
            &format!("TenantMigration {name}: {what}"),
            move || {
                let api = api.clone();
                async move {
                    let tm = api.get_opt(name).await.ok().flatten()?;
                    let current = tm
                        .status
                        .as_ref()
                        .is_some_and(|s| s.observed_generation == tm.metadata.generation);
                    if let Ok(mut l) = last_ref.lock() {
                        *l = tm.status.clone();
                    }
                    (current && pred(&tm)).then_some(tm)
                }
            },
        )
        .await;
        r.unwrap_or_else(|e| {
            panic!(
                "{e}\nlast status: {:#?}\n--- operator log tail ---\n{}",
                last.lock().map(|l| l.clone()).ok().flatten(),
                self.important_log_tail(60)
            )
        })
    }

    /// Declares the cluster `pg` as the DatabaseServer `name` (labels `tier: standard`, the given
    /// capacity JSON), with its admin Secret `<name>-admin` in the operator's namespace, as a user
    /// adds a server.
    pub async fn add_database_server(
        &self,
        name: &str,
        pg: &LocalPg,
        capacity: serde_json::Value,
    ) -> tenantdb::crd::DatabaseServer {
        let manifests = crate::cluster::database_server_manifests(name, pg, capacity);
        self.add_server_manifests(manifests).await
    }

    /// Starts a throwaway cluster with `settings` and `wal_level=logical`, declares it as the
    /// DatabaseServer `name` (no capacity limits, see [`Env::add_database_server`]) and waits until
    /// it reports `LogicalReplication=True`: a server to move tenants to or from.
    pub async fn add_logical_server(&self, name: &str, settings: &[(String, String)]) -> LocalPg {
        let mut all = settings.to_vec();
        if !all.iter().any(|(k, _)| k == "wal_level") {
            all.push(("wal_level".into(), "logical".into()));
        }
        let pg = tokio::task::spawn_blocking(move || {
            LocalPg::start_with(crate::localpg::LocalPgOptions {
                settings: all,
                ..Default::default()
            })
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("throwaway PostgreSQL for server {name}: {e}"));
        self.add_database_server(name, &pg, serde_json::json!({}))
            .await;
        let servers: Api<tenantdb::crd::DatabaseServer> = Api::all(self.client.clone());
        wait_for(
            Duration::from_secs(120),
            &format!("server {name} reports LogicalReplication=True"),
            || async {
                let st = servers.get(name).await.ok()?.status?;
                st.conditions
                    .iter()
                    .any(|c| c.type_ == "LogicalReplication" && c.status == "True")
                    .then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.important_log_tail(60)));
        pg
    }

    /// Declares the MongoDB stand-in `mongo` as the mongodb DatabaseServer `name` (see
    /// [`crate::cluster::mongo_database_server_manifests`]).
    pub async fn add_mongo_database_server(
        &self,
        name: &str,
        mongo: &crate::localmongo::LocalMongo,
        capacity: serde_json::Value,
    ) -> tenantdb::crd::DatabaseServer {
        let manifests = crate::cluster::mongo_database_server_manifests(
            name,
            (mongo.host(), mongo.port()),
            mongo.root_password(),
            capacity,
        );
        self.add_server_manifests(manifests).await
    }

    /// Creates an admin Secret (in the operator's namespace) and its DatabaseServer.
    async fn add_server_manifests(
        &self,
        [secret, ds]: [serde_json::Value; 2],
    ) -> tenantdb::crd::DatabaseServer {
        self.ensure_namespace(OPERATOR_NAMESPACE).await;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), OPERATOR_NAMESPACE);
        let secret: Secret = serde_json::from_value(secret).unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let ds: tenantdb::crd::DatabaseServer = serde_json::from_value(ds).unwrap();
        Api::<tenantdb::crd::DatabaseServer>::all(self.client.clone())
            .create(&PostParams::default(), &ds)
            .await
            .unwrap()
    }

    pub async fn delete_tenant(&self, ns: &str, name: &str) {
        self.tenants(ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }

    /// Requests a credential rotation (annotation `tenantdb.io/rotate: <token>`) and returns the
    /// credentials status once it reports that rotation (the Secret is written before the
    /// status: a status read right after the Secret changed can still be the previous one).
    pub async fn rotate(
        &self,
        ns: &str,
        name: &str,
        token: &str,
        timeout: Duration,
    ) -> tenantdb::crd::CredentialStatus {
        let annotations =
            serde_json::json!({"metadata": {"annotations": {"tenantdb.io/rotate": token}}});
        self.tenants(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(annotations))
            .await
            .unwrap();
        let api = self.tenants(ns);
        wait_for(
            timeout,
            &format!("rotation {token} of {ns}/{name} in status"),
            || {
                let api = api.clone();
                async move {
                    let creds = api.get_opt(name).await.ok()??.status?.credentials?;
                    (creds.rotation_token.as_deref() == Some(token)).then_some(creds)
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.important_log_tail(40)))
    }

    /// Waits until the Tenant is Ready (phase and condition) for its current generation.
    pub async fn wait_ready(&self, ns: &str, name: &str, timeout: Duration) -> Tenant {
        let api = self.tenants(ns);
        wait_for(timeout, &format!("tenant {ns}/{name} Ready"), || {
            let api = api.clone();
            let name = name.to_string();
            async move {
                let t = api.get_opt(&name).await.ok().flatten()?;
                let st = t.status.as_ref()?;
                let ready = st.phase == TenantPhase::Ready
                    && st.observed_generation == t.metadata.generation
                    && st
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(t)
            }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- operator log tail ---\n{}",
                tail(&self.operator_log(), 40)
            )
        })
    }

    pub async fn wait_gone(&self, ns: &str, name: &str, timeout: Duration) {
        let api = self.tenants(ns);
        wait_for(timeout, &format!("tenant {ns}/{name} deleted"), || {
            let api = api.clone();
            let name = name.to_string();
            async move {
                match api.get_opt(&name).await {
                    Ok(None) => Some(()),
                    _ => None,
                }
            }
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- operator log tail ---\n{}",
                tail(&self.operator_log(), 40)
            )
        });
    }

    pub async fn secret_value(&self, ns: &str, name: &str, key: &str) -> Option<String> {
        let s = self.secrets(ns).get_opt(name).await.ok()??;
        tenantdb::secret::read_key(&s, key)
    }

    /// Several keys of one Secret, read in one GET (so that they belong together, e.g. the
    /// username and password of one rotation).
    pub async fn secret_values(&self, ns: &str, name: &str, keys: &[&str]) -> Option<Vec<String>> {
        let s = self.secrets(ns).get_opt(name).await.ok()??;
        keys.iter()
            .map(|k| tenantdb::secret::read_key(&s, k))
            .collect()
    }

    /// Connects to PostgreSQL with the credentials in a Tenant's Secret, read in one GET (a
    /// Secret re-pointed by a move or a rotation between two reads would mix two versions).
    pub async fn connect_with_secret(
        &self,
        ns: &str,
        secret: &str,
    ) -> Result<sqlx::PgConnection, sqlx::Error> {
        use sqlx::ConnectOptions;
        let bad =
            |why: String| sqlx::Error::Configuration(format!("Secret {ns}/{secret}: {why}").into());
        let s = self
            .secrets(ns)
            .get(secret)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let key =
            |k: &str| tenantdb::secret::read_key(&s, k).ok_or_else(|| bad(format!("no key {k}")));
        let (host, port, database, username, password) = (
            key("host")?,
            key("port")?,
            key("database")?,
            key("username")?,
            key("password")?,
        );
        let port = port.parse().map_err(|_| bad(format!("port {port:?}")))?;
        sqlx::postgres::PgConnectOptions::new()
            .host(&host)
            .port(port)
            .database(&database)
            .username(&username)
            .password(&password)
            .connect()
            .await
    }

    pub async fn admin_pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.pg.admin_url())
            .await
            .unwrap()
    }

    pub fn operator_starts(&self) -> u32 {
        self.starts
    }

    /// The authorization checks made for the operator's ServiceAccount so far:
    /// (verb, group, resource, subresource, namespace, allowed).
    pub fn operator_authorizations(&self) -> Vec<tenantdb_apiserver::AuthzCheck> {
        self.api
            .authorization_checks()
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.user == OPERATOR_USER)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(c) = self.operator.as_mut() {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `check` until it returns `Some` or the deadline passes (no fixed sleeps in tests).
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds (`true`) or releases (`false`) the initial table copies of new logical replication
/// subscriptions on `pg`: `max_sync_workers_per_subscription` 0 (or back to its default) through
/// `ALTER SYSTEM` and a reload, waiting until new sessions see it. A move *to* `pg` stays in
/// `Copying` while held, so that a test acts during the copy without timing luck. The setting
/// survives a restart of `pg` (release it after one).
pub async fn hold_table_copies(pg: &LocalPg, hold: bool) {
    use sqlx::Connection as _;
    let mut c = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap();
    let set = if hold {
        "ALTER SYSTEM SET max_sync_workers_per_subscription = 0"
    } else {
        "ALTER SYSTEM RESET max_sync_workers_per_subscription"
    };
    sqlx::raw_sql(set).execute(&mut c).await.unwrap();
    sqlx::raw_sql("SELECT pg_reload_conf()")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let want = if hold { "0" } else { "2" };
    wait_for(
        Duration::from_secs(60),
        &format!("max_sync_workers_per_subscription = {want}"),
        || async move {
            let mut c = sqlx::PgConnection::connect(&pg.url("postgres"))
                .await
                .ok()?;
            let v: String = sqlx::query_scalar("SHOW max_sync_workers_per_subscription")
                .fetch_one(&mut c)
                .await
                .ok()?;
            let _ = c.close().await;
            (v == want).then_some(())
        },
    )
    .await
    .unwrap();
}

pub fn names_of(list: &[Tenant]) -> Vec<String> {
    list.iter().map(|t| t.name_any()).collect()
}

impl Env {
    /// The operator's HTTP address (`/metrics`, `/healthz`, `/readyz`), read from its log.
    pub async fn http_addr(&self) -> String {
        wait_for(
            Duration::from_secs(60),
            "operator http address in its log",
            || {
                let log = self.operator_log();
                async move { crate::http::http_addr(&log) }
            },
        )
        .await
        .unwrap()
    }

    /// The value of one metric series of the operator (`name{labels}` exactly as exposed), 0 if
    /// absent. Panics when the operator does not serve `/metrics` (a dead operator is not 0).
    pub async fn metric(&self, series: &str) -> f64 {
        let (code, body) = http_get(&self.http_addr().await, "/metrics").await;
        assert_eq!(code, 200, "GET /metrics: {body}");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0.0)
    }
}

pub use crate::http::http_get;
