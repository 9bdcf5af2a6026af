//! Helpers shared by the reliability suite (`tests/reliability_*.rs`): PostgreSQL catalog snapshots of
//! the objects tenantdb owns, statement logging on the throwaway server, condition/event helpers,
//! operator-log parsing, seeded randomness and a recording HTTP proxy in front of the API server
//! emulator (to attribute API requests to the operator alone).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::Value;
use sqlx::Executor;
use tenantdb::crd::Tenant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::e2e::{Env, tail};

/// Ownership marker prefix the operator writes as COMMENT on every object it creates.
pub const MARKER_PREFIX: &str = "tenantdb.io/owner=";
/// Prefix of derived names (the operator's default `--name-prefix`).
pub const NAME_PREFIX: &str = "tenant_";

/// `true` when the long variants are requested (`TENANTDB_RELIABILITY_LONG=1`).
pub fn long_mode() -> bool {
    std::env::var("TENANTDB_RELIABILITY_LONG").is_ok_and(|v| v == "1" || v == "true")
}

/// The seed of this run: `TENANTDB_RELIABILITY_SEED` if set, else derived from the clock. Printed so
/// that a failing run can be replayed.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("TENANTDB_RELIABILITY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("[{test}] seed = {s} (replay with TENANTDB_RELIABILITY_SEED={s})");
    s
}

/// One PostgreSQL object that carries a tenantdb marker or a derived-looking name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Obj {
    pub kind: &'static str,
    pub name: String,
    /// `ns/name` from the marker, or None when there is no (tenantdb) marker.
    pub owner: Option<String>,
}

/// Every role, database and schema (in the shared database) that is tenantdb's: marked with the
/// ownership comment, or named with the derived-name prefix (an unmarked one is an orphan).
pub async fn tenantdb_objects(env: &Env) -> BTreeSet<Obj> {
    let pool = env.admin_pool().await;
    let mut out = BTreeSet::new();
    let owner =
        |c: Option<String>| c.and_then(|c| c.strip_prefix(MARKER_PREFIX).map(str::to_string));
    let roles: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
         WHERE rolname LIKE 'tenant\\_%' OR shobj_description(oid, 'pg_authid') LIKE 'tenantdb.io/owner=%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (n, c) in roles {
        out.insert(Obj {
            kind: "role",
            name: n,
            owner: owner(c),
        });
    }
    let dbs: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
         WHERE datname LIKE 'tenant\\_%' OR shobj_description(oid, 'pg_database') LIKE 'tenantdb.io/owner=%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (n, c) in dbs {
        out.insert(Obj {
            kind: "database",
            name: n,
            owner: owner(c),
        });
    }
    let shared_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'tenantdb_shared')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    if shared_exists {
        let shared = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&env.pg.url("tenantdb_shared"))
            .await
            .unwrap();
        let schemas: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT nspname::text, obj_description(oid, 'pg_namespace') FROM pg_namespace \
             WHERE nspname LIKE 'tenant\\_%' OR obj_description(oid, 'pg_namespace') LIKE 'tenantdb.io/owner=%'",
        )
        .fetch_all(&shared)
        .await
        .unwrap();
        for (n, c) in schemas {
            out.insert(Obj {
                kind: "schema",
                name: n,
                owner: owner(c),
            });
        }
        shared.close().await;
    }
    out
}

/// All non-system role names, all database names, and all schema names of the shared database.
pub async fn all_catalog_names(
    env: &Env,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let pool = env.admin_pool().await;
    let roles: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let dbs: Vec<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    let shared = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url("tenantdb_shared"))
        .await;
    let schemas: Vec<String> = match shared {
        Ok(p) => {
            let v = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
            )
            .fetch_all(&p)
            .await
            .unwrap();
            p.close().await;
            v
        }
        Err(_) => vec![],
    };
    (
        roles.into_iter().collect(),
        dbs.into_iter().collect(),
        schemas.into_iter().collect(),
    )
}

/// Turns on `log_statement = 'all'` (ALTER SYSTEM + reload) so the server log shows every statement.
pub async fn log_all_statements(env: &Env) {
    let pool = env.admin_pool().await;
    pool.execute("ALTER SYSTEM SET log_statement = 'all'")
        .await
        .unwrap();
    pool.execute("SELECT pg_reload_conf()").await.unwrap();
    // The reload is asynchronous: wait until a new session sees the setting.
    crate::e2e::wait_for(Duration::from_secs(10), "log_statement = all", || {
        let url = env.pg.admin_url();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.ok()?;
            let v: String = sqlx::query_scalar("SHOW log_statement")
                .fetch_one(&mut c)
                .await
                .ok()?;
            (v == "all").then_some(())
        }
    })
    .await
    .unwrap();
    pool.close().await;
}

/// The condition `type_` of a Tenant, if any: (status, reason, message).
pub fn condition(t: &Tenant, type_: &str) -> Option<(String, String, String)> {
    t.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Whether the Tenant is Ready (phase, condition and observedGeneration).
pub fn is_ready(t: &Tenant) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.phase == tenantdb::crd::TenantPhase::Ready
            && s.observed_generation == t.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// events.k8s.io/v1 Events of a namespace.
pub async fn events(env: &Env, ns: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(env.client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Warning Events regarding one object with one reason.
pub async fn warning_events_for(env: &Env, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    events(env, ns)
        .await
        .into_iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

/// Parsed JSON log lines of the operator (non-JSON lines are skipped).
pub fn log_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn span_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    if let Some(s) = v
        .get("span")
        .and_then(|s| s.get(key))
        .and_then(Value::as_str)
    {
        return Some(s);
    }
    v.get("spans").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .rev()
            .find_map(|s| s.get(key).and_then(Value::as_str))
    })
}

fn message(v: &Value) -> Option<&str> {
    v.get("message")
        .or_else(|| v.get("fields").and_then(|f| f.get("message")))
        .and_then(Value::as_str)
}

/// Number of `reconcile started` lines per (namespace, tenant) in a log segment.
pub fn reconcile_starts(log: &str) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for v in log_lines(log) {
        if message(&v) == Some("reconcile started")
            && let Some(t) = span_field(&v, "tenant")
        {
            let ns = span_field(&v, "namespace").unwrap_or_default().to_string();
            *m.entry((ns, t.to_string())).or_insert(0) += 1;
        }
    }
    m
}

/// Lines whose message is one of `messages` (to watch provisioning progress).
pub fn count_messages(log: &str, messages: &[&str]) -> usize {
    log_lines(log)
        .iter()
        .filter(|v| message(v).is_some_and(|m| messages.contains(&m)))
        .count()
}

/// The operator log tail for assertion messages.
pub fn op_tail(env: &Env) -> String {
    format!(
        "\n--- operator log tail ---\n{}",
        tail(&env.operator_log(), 40)
    )
}

/// Login with explicit credentials.
pub async fn login(
    env: &Env,
    database: &str,
    user: &str,
    password: &str,
) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::ConnectOptions;
    sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(env.pg.port())
        .database(database)
        .username(user)
        .password(password)
        .connect()
        .await
}

// ---------------------------------------------------------------------------------------------
// Recording proxy
// ---------------------------------------------------------------------------------------------

/// One request the operator made: (verb, group, resource, subresource), Kubernetes-style.
pub type ApiCall = (String, String, String, String);

/// A plain-HTTP/1.1 TCP proxy in front of the API server emulator that records the request line
/// of every request passing through it, so that requests of the operator can be told apart from
/// the test's own requests (the emulator's counters cannot tell clients apart).
pub struct RecordingProxy {
    pub addr: std::net::SocketAddr,
    pub calls: Arc<Mutex<BTreeMap<ApiCall, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> RecordingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<BTreeMap<ApiCall, u64>>> = Arc::default();
        let c2 = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let calls = c2.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    });
                    let mut parser = RequestParser::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        for line in parser.feed(&buf[..n]) {
                            if let Some(call) = classify(&line) {
                                *calls.lock().unwrap().entry(call).or_insert(0) += 1;
                            }
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                    let _ = down.await;
                });
            }
        });
        RecordingProxy { addr, calls, task }
    }

    pub fn snapshot(&self) -> BTreeMap<ApiCall, u64> {
        self.calls.lock().unwrap().clone()
    }
}

/// Incremental parser of the client→server byte stream: yields request lines ("GET /path HTTP/1.1").
#[derive(Default)]
struct RequestParser {
    buf: Vec<u8>,
    body_left: usize,
    chunked: bool,
}

impl RequestParser {
    fn feed(&mut self, data: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(data);
        let mut out = vec![];
        loop {
            if self.body_left > 0 {
                let k = self.body_left.min(self.buf.len());
                self.buf.drain(..k);
                self.body_left -= k;
                if self.body_left > 0 {
                    return out;
                }
                continue;
            }
            if self.chunked {
                // chunk-size line
                let Some(i) = find(&self.buf, b"\r\n") else {
                    return out;
                };
                let size_line = String::from_utf8_lossy(&self.buf[..i]).to_string();
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                if size == 0 {
                    // last chunk + (no trailers) CRLF
                    if self.buf.len() < i + 4 {
                        return out;
                    }
                    self.buf.drain(..i + 4);
                    self.chunked = false;
                    continue;
                }
                self.buf.drain(..i + 2);
                self.body_left = size + 2;
                continue;
            }
            let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                return out;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
            self.buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default().to_string();
            for h in lines {
                let Some((k, v)) = h.split_once(':') else {
                    continue;
                };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    self.body_left = v.parse().unwrap_or(0);
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    self.chunked = true;
                }
            }
            out.push(request_line);
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Maps "METHOD /path?query HTTP/1.1" to (verb, group, resource, subresource); None for discovery.
pub fn classify(request_line: &str) -> Option<ApiCall> {
    let mut parts = request_line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.first().copied() {
        Some("api") if segs.len() >= 2 => ("", &segs[2..]),
        Some("apis") if segs.len() >= 3 => (segs[1], &segs[3..]),
        _ => return None,
    };
    let rest: Vec<&str> = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        rest[2..].to_vec()
    } else {
        rest.to_vec()
    };
    let resource = rest.first()?.to_string();
    let named = rest.len() >= 2;
    let sub = rest.get(2).copied().unwrap_or("").to_string();
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some((verb.into(), group.into(), resource, sub))
}

#[test]
fn classify_request_lines() {
    assert_eq!(
        classify("GET /apis/tenantdb.io/v1alpha1/tenants?&watch=true&timeoutSeconds=290 HTTP/1.1"),
        Some((
            "watch".into(),
            "tenantdb.io".into(),
            "tenants".into(),
            "".into()
        ))
    );
    assert_eq!(
        classify(
            "PATCH /apis/tenantdb.io/v1alpha1/namespaces/a/tenants/x/status?&force=true HTTP/1.1"
        ),
        Some((
            "patch".into(),
            "tenantdb.io".into(),
            "tenants".into(),
            "status".into()
        ))
    );
    assert_eq!(
        classify("GET /api/v1/namespaces/a/secrets/x-db HTTP/1.1"),
        Some(("get".into(), "".into(), "secrets".into(), "".into()))
    );
    assert_eq!(classify("GET /api/v1 HTTP/1.1"), None);
    let mut p = RequestParser::default();
    let lines = p.feed(b"POST /api/v1/namespaces/a/secrets HTTP/1.1\r\ncontent-length: 4\r\n\r\nabcdGET /api/v1/namespaces/a/secrets/b HTTP/1.1\r\n\r\n");
    assert_eq!(lines.len(), 2);
}

/// Writes a kubeconfig pointing at `addr` (plain http, no credentials, like the emulator's).
pub fn write_kubeconfig_for(path: &std::path::Path, addr: std::net::SocketAddr) {
    std::fs::write(
        path,
        tenantdb_apiserver::kubeconfig_yaml(&format!("http://{addr}"), "default"),
    )
    .unwrap();
}

/// The operator's HTTP address (`--http-addr 127.0.0.1:0`) from the last "serving /metrics" line of
/// its log (the last start).
pub fn operator_http_addr(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| {
            v.get("addr")
                .or_else(|| v.get("fields").and_then(|f| f.get("addr")))
                .and_then(Value::as_str)
                .map(String::from)
        })
}

/// A plain HTTP/1.1 GET: (status code, whole response).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}
