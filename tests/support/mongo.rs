//! MongoDB for integration tests: a throwaway SecantusDB stand-in (PyPI `secantusdb`, a MongoDB
//! wire-protocol server, run as a separate process) with real SCRAM-SHA-256 auth, or a real
//! `mongod` given by `TENANTDB_TEST_MONGO_URI`.
//!
//! Stand-in lookup: `TENANTDB_SECANTUS_BIN`, else `.venv-mongo/bin/secantusd-py` under the crate
//! (`scripts/mongo-standin.sh install`). Neither available → [`server`] prints a `SKIPPED (no
//! MongoDB)` line and returns `None`.
//!
//! Auth bootstrap is two-phase (the stand-in has no localhost exception): start without `--auth`,
//! `createUser root` on `admin`, stop, restart on the same storage with `--auth`. The server runs
//! in a fresh temporary directory on a free port; a reaper process stops it and removes the
//! directory when the test process exits (also on a crash or `kill -9`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mongodb::Client;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;

/// Where the server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The SecantusDB stand-in started by this process.
    Secantus,
    /// A real MongoDB from `TENANTDB_TEST_MONGO_URI`.
    External,
}

/// A MongoDB server for this test binary.
#[derive(Debug)]
pub struct MongoServer {
    /// What it is.
    pub kind: Kind,
    /// Admin URI (root user).
    pub admin_uri: String,
    /// Host tenants connect to.
    pub host: String,
    /// Port tenants connect to.
    pub port: u16,
    /// The root password (a test fixture).
    pub root_password: String,
    /// The stand-in's temporary directory (removed by the reaper).
    pub dir: Option<PathBuf>,
    /// The stand-in process id.
    pub pid: Option<u32>,
}

impl MongoServer {
    /// Whether this is a real mongod (tests of mongod-only behaviour run only then).
    pub fn is_real_mongod(&self) -> bool {
        self.kind == Kind::External
    }

    /// The stand-in's log (for failure messages).
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("server.log")).ok())
            .unwrap_or_default()
    }
}

/// The server of this test binary, started on first use; `None` (after printing why) when no
/// MongoDB is available. Panics if a stand-in is installed but cannot be started.
pub fn server(test: &str) -> Option<&'static MongoServer> {
    static SERVER: OnceLock<Option<MongoServer>> = OnceLock::new();
    let s = SERVER.get_or_init(start).as_ref();
    if s.is_none() {
        println!(
            "SKIPPED (no MongoDB): {test}: install the stand-in with `scripts/mongo-standin.sh install`, \
             set TENANTDB_SECANTUS_BIN, or point TENANTDB_TEST_MONGO_URI at a real mongod"
        );
    }
    s
}

/// For tests of behaviour only a real mongod has: prints a SKIPPED line and returns `None` on the
/// stand-in.
pub fn real_mongod(test: &str, why: &str) -> Option<&'static MongoServer> {
    let s = server(test)?;
    if s.is_real_mongod() {
        Some(s)
    } else {
        println!(
            "SKIPPED (needs a real mongod via TENANTDB_TEST_MONGO_URI; the SecantusDB stand-in {why}): {test}"
        );
        None
    }
}

/// Whether slow tests (tens of seconds, e.g. waiting for the 60 s TTL sweep) should run:
/// `TENANTDB_TEST_SLOW=1`. Otherwise prints a SKIPPED line.
pub fn slow_tests_enabled(test: &str) -> bool {
    let on = std::env::var("TENANTDB_TEST_SLOW").is_ok_and(|v| !v.is_empty() && v != "0");
    if !on {
        println!("SKIPPED (slow; set TENANTDB_TEST_SLOW=1): {test}");
    }
    on
}

/// The stand-in binary, if installed.
pub fn secantus_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TENANTDB_SECANTUS_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-mongo/bin/secantusd-py");
    p.is_file().then_some(p)
}

fn start() -> Option<MongoServer> {
    if let Ok(uri) = std::env::var("TENANTDB_TEST_MONGO_URI")
        && !uri.is_empty()
    {
        let (host, port) = first_host(&uri);
        return Some(MongoServer {
            kind: Kind::External,
            admin_uri: uri,
            host,
            port,
            root_password: String::new(),
            dir: None,
            pid: None,
        });
    }
    let bin = secantus_bin()?;
    Some(start_secantus(&bin).unwrap_or_else(|e| panic!("starting the SecantusDB stand-in: {e}")))
}

/// `host:port` of the first host of a `mongodb://` URI (default port 27017).
fn first_host(uri: &str) -> (String, u16) {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let first = hosts.split(',').next().unwrap_or("127.0.0.1");
    match first.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => {
            (h.to_string(), p.parse().unwrap_or(27017))
        }
        _ => (first.to_string(), 27017),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn random(n: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

fn spawn_server(bin: &Path, dir: &Path, port: u16, auth: bool) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    // An explicit config file disables the auto-discovery of ./secantusd.toml, ~/.secantus/….
    cmd.arg("--config")
        .arg(dir.join("secantusd.toml"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--storage-path")
        .arg(dir.join("data"))
        .args(["--cache-size", "128M", "--log-level", "WARNING"]);
    if auth {
        cmd.arg("--auth");
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", bin.display()))
}

fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("server exited early: {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("server not listening on {port} after {timeout:?}"))
}

/// SIGTERM (clean shutdown, so the user written in phase one is durable), then SIGKILL.
fn stop(child: &mut Child, timeout: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `f` on a private runtime in its own thread (callers may be inside a tokio test runtime).
fn block_on<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(f))
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "bootstrap thread panicked".to_string())?
}

async fn client(uri: &str) -> mongodb::error::Result<Client> {
    let mut o = ClientOptions::parse(uri).await?;
    o.server_selection_timeout = Some(Duration::from_secs(10));
    o.connect_timeout = Some(Duration::from_secs(5));
    Client::with_options(o)
}

fn start_secantus(bin: &Path) -> Result<MongoServer, String> {
    let dir = std::env::temp_dir().join(format!("tenantdb-mongo-{}", random(10)));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Empty on purpose. (`[storage] ttl_sweep_seconds` parses but 0.7.0b3's launcher ignores it:
    // the TTL sweeper runs every 60 s, like mongod's TTL monitor.)
    std::fs::write(dir.join("secantusd.toml"), "").map_err(|e| e.to_string())?;
    let password = random(24);
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port().map_err(|e| e.to_string())?;
        // Phase 1: no auth, create root.
        let mut child = spawn_server(bin, &dir, port, false)?;
        let reaper = spawn_reaper(child.id(), &dir);
        if let Err(e) = wait_listening(&mut child, port, Duration::from_secs(30)) {
            stop(&mut child, Duration::from_secs(5));
            kill_reaper(reaper);
            last = e;
            continue;
        }
        let pw = password.clone();
        let created = block_on(async move {
            let c = client(&format!(
                "mongodb://127.0.0.1:{port}/?directConnection=true"
            ))
            .await?;
            c.database("admin")
                .run_command(doc! {
                    "createUser": "root",
                    "pwd": pw,
                    "roles": [{"role": "root", "db": "admin"}],
                    "mechanisms": ["SCRAM-SHA-256"],
                })
                .await?;
            c.shutdown().await;
            Ok::<_, mongodb::error::Error>(())
        })?;
        stop(&mut child, Duration::from_secs(15));
        kill_reaper(reaper);
        created.map_err(|e| format!("createUser root: {e}"))?;

        // Phase 2: restart with --auth on the same storage.
        let mut child = spawn_server(bin, &dir, port, true)?;
        let pid = child.id();
        let reaper = spawn_reaper(pid, &dir);
        if let Err(e) = wait_listening(&mut child, port, Duration::from_secs(30)) {
            stop(&mut child, Duration::from_secs(5));
            kill_reaper(reaper);
            last = e;
            continue;
        }
        let admin_uri = format!(
            "mongodb://root:{password}@127.0.0.1:{port}/admin?authSource=admin&directConnection=true"
        );
        let uri = admin_uri.clone();
        let pinged = block_on(async move {
            let c = client(&uri).await?;
            c.database("admin").run_command(doc! {"ping": 1}).await?;
            c.shutdown().await;
            Ok::<_, mongodb::error::Error>(())
        })?;
        if let Err(e) = pinged {
            stop(&mut child, Duration::from_secs(5));
            kill_reaper(reaper);
            return Err(format!(
                "root cannot authenticate after restart: {e}\n{}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            ));
        }
        // The server lives as long as this process: the reaper stops it (the Child handle is
        // intentionally leaked; statics are never dropped).
        std::mem::forget(child);
        std::mem::forget(reaper);
        return Ok(MongoServer {
            kind: Kind::Secantus,
            admin_uri,
            host: "127.0.0.1".to_string(),
            port,
            root_password: password,
            dir: Some(dir),
            pid: Some(pid),
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    Err(last)
}

/// A detached shell that waits for this process to exit, then stops the server `server_pid`
/// (TERM, then KILL) and removes `dir`.
fn spawn_reaper(server_pid: u32, dir: &Path) -> Option<Child> {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         kill -TERM {server_pid} 2>/dev/null; \
         for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 {server_pid} 2>/dev/null || break; sleep 1; done; \
         kill -KILL {server_pid} 2>/dev/null; rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

fn kill_reaper(reaper: Option<Child>) {
    if let Some(mut r) = reaper {
        let _ = r.kill();
        let _ = r.wait();
    }
}

/// A client with `uri` and short timeouts (for tenant logins in tests).
pub async fn connect(uri: &str) -> mongodb::error::Result<Client> {
    let mut o = ClientOptions::parse(uri).await?;
    o.server_selection_timeout = Some(Duration::from_secs(5));
    o.connect_timeout = Some(Duration::from_secs(5));
    Client::with_options(o)
}

/// A random suffix for tenant names, so tests sharing the server never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", random(8).to_lowercase())
}
