//! Throwaway MongoDB wire-protocol servers for tests and the local demo.
//!
//! A [`LocalMongo`] is the SecantusDB stand-in (PyPI `secantusdb`, GPL-2.0, run only as a separate
//! process, never linked; installed by `scripts/mongo-standin.sh install` into `.venv-mongo/`). It
//! speaks the MongoDB wire protocol but **is not MongoDB**. It runs in a fresh temporary directory,
//! listening on `127.0.0.1` on a free port, with real SCRAM-SHA-256 authentication: the user `root`
//! (role `root` on `admin`) has a random password.
//!
//! The auth bootstrap is two-phase because the stand-in has no localhost exception: start without
//! `--auth`, `createUser root` on `admin`, stop cleanly (so the user is durable), restart on the
//! same storage with `--auth`.
//!
//! The server is stopped (SIGTERM, then SIGKILL) and its directory removed when the value is
//! dropped. A small reaper process also does that if this process exits without running
//! destructors (a test binary's statics, `kill -9`), so no server is left behind.

use crate::localpg::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::Client;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use rand::distr::{Alphanumeric, SampleString};

/// The stand-in's launcher inside the virtual environment made by `scripts/mongo-standin.sh`.
const VENV_BIN: &str = ".venv-mongo/bin/secantusd-py";

/// How many free ports are tried before giving up.
const ATTEMPTS: usize = 3;

/// Errors starting a throwaway MongoDB stand-in.
#[derive(Debug, thiserror::Error)]
pub enum LocalMongoError {
    /// The stand-in could not be spawned.
    #[error("spawning {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server exited or did not listen in time (after every attempt).
    #[error("the stand-in did not start: {detail}\n{log}")]
    NotStarted {
        /// What went wrong on the last attempt.
        detail: String,
        /// The server log.
        log: String,
    },
    /// Creating the root user (phase one of the auth bootstrap) failed.
    #[error("createUser root: {0}")]
    Bootstrap(String),
    /// The root user cannot log in after the restart with `--auth`.
    #[error("root cannot authenticate after restart: {detail}\n{log}")]
    Auth {
        /// The driver's error.
        detail: String,
        /// The server log.
        log: String,
    },
    /// Filesystem or process error.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

/// Finds the stand-in's launcher: `TENANTDB_SECANTUS_BIN` if set (and a file), else
/// `.venv-mongo/bin/secantusd-py` relative to the current directory, else relative to this crate's
/// source directory.
pub fn find_secantus() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TENANTDB_SECANTUS_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    [
        std::env::current_dir().ok().map(|d| d.join(VENV_BIN)),
        Some(crate::repo_root().join(VENV_BIN)),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// A running throwaway SecantusDB stand-in with auth. Dropping it stops the server and removes its
/// files.
#[derive(Debug)]
pub struct LocalMongo {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: String,
    child: Option<Child>,
    reaper: Option<Child>,
}

impl LocalMongo {
    /// Starts a stand-in from the launcher `bin` (see [`find_secantus`]) and bootstraps the root
    /// user. Blocking (seconds): async callers use `tokio::task::spawn_blocking`. Safe to call from
    /// inside a tokio runtime (the bootstrap client runs on a private runtime in its own thread).
    pub fn start(bin: &Path) -> Result<LocalMongo, LocalMongoError> {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 10);
        let dir = std::env::temp_dir().join(format!("tenantdb-mongo-{suffix}"));
        std::fs::create_dir_all(&dir)?;
        // From here on `mongo`'s Drop removes the directory (and stops any server) on failure.
        let mut mongo = LocalMongo {
            bin: bin.to_path_buf(),
            dir,
            port: 0,
            password: Alphanumeric.sample_string(&mut rand::rng(), 24),
            child: None,
            reaper: None,
        };
        // An explicit, empty config file disables the auto-discovery of ./secantusd.toml,
        // ~/.secantus/…. (`[storage] ttl_sweep_seconds` parses but 0.7.0b3's launcher ignores it:
        // the TTL sweeper runs every 60 s, like mongod's TTL monitor.)
        std::fs::write(mongo.dir.join("secantusd.toml"), "")?;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            mongo.port = free_port()?;
            // Phase 1: no auth, create root.
            mongo.spawn(bin, false)?;
            if let Err(e) = mongo.wait_listening(Duration::from_secs(30)) {
                mongo.stop(Duration::from_secs(5));
                last = e;
                continue;
            }
            let created = create_root(mongo.port, mongo.password.clone());
            // A clean shutdown, so the user written in phase one is durable.
            mongo.stop(Duration::from_secs(15));
            created?;

            // Phase 2: restart with --auth on the same storage.
            mongo.spawn(bin, true)?;
            if let Err(e) = mongo.wait_listening(Duration::from_secs(30)) {
                mongo.stop(Duration::from_secs(5));
                last = e;
                continue;
            }
            if let Err(detail) = ping(mongo.admin_uri()) {
                return Err(LocalMongoError::Auth {
                    detail,
                    log: mongo.log(),
                });
            }
            return Ok(mongo);
        }
        Err(LocalMongoError::NotStarted {
            detail: last,
            log: mongo.log(),
        })
    }

    /// `mongodb://root:…@127.0.0.1:PORT/admin?…` for the root user (a test/demo fixture).
    pub fn admin_uri(&self) -> String {
        format!(
            "mongodb://root:{}@127.0.0.1:{}/admin?authSource=admin&directConnection=true",
            self.password, self.port
        )
    }

    /// Host name clients use.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root password (a test/demo fixture, not a production secret).
    pub fn root_password(&self) -> &str {
        &self.password
    }

    /// The server's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server log (useful when a test fails).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server (a clean shutdown; SIGKILL after 15 s) but keeps its data:
    /// [`Self::start_server`] brings it back (an outage, for tests).
    pub fn stop_server(&mut self) {
        self.stop(Duration::from_secs(15));
    }

    /// Starts the server again, with auth, on the same port and storage after
    /// [`Self::stop_server`]. Blocking (seconds).
    pub fn start_server(&mut self) -> Result<(), LocalMongoError> {
        let bin = self.bin.clone();
        self.spawn(&bin, true)?;
        self.wait_listening(Duration::from_secs(30))
            .map_err(|detail| LocalMongoError::NotStarted {
                detail,
                log: self.log(),
            })
    }

    /// Spawns the server on `self.port` (output appended to `server.log`) and arms a reaper for it.
    fn spawn(&mut self, bin: &Path, auth: bool) -> Result<(), LocalMongoError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))?;
        let log2 = log.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(self.dir.join("secantusd.toml"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.join("data"))
            .args(["--cache-size", "128M", "--log-level", "WARNING"]);
        if auth {
            cmd.arg("--auth");
        }
        let child = cmd
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| LocalMongoError::Spawn {
                bin: bin.to_path_buf(),
                source,
            })?;
        self.reaper = spawn_reaper(child.id(), &self.dir);
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server accepts TCP connections; fails early if it exits.
    fn wait_listening(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("server exited early: {status}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "server not listening on {} after {timeout:?}",
            self.port
        ))
    }

    /// Stops the server (SIGTERM, then SIGKILL after `timeout`) and disarms its reaper. Keeps the
    /// directory.
    fn stop(&mut self, timeout: Duration) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, timeout);
        }
        if let Some(mut reaper) = self.reaper.take() {
            let _ = reaper.kill();
            let _ = reaper.wait();
        }
    }
}

impl Drop for LocalMongo {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGTERM (a clean shutdown), then SIGKILL if still running after `timeout`.
fn terminate(child: &mut Child, timeout: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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

/// Runs `f` on a private current-thread runtime in its own thread (callers may be inside a tokio
/// runtime, where blocking on another runtime would panic).
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

/// Phase one of the bootstrap: `createUser root` on the unauthenticated server at `port`.
fn create_root(port: u16, password: String) -> Result<(), LocalMongoError> {
    block_on(async move {
        let c = client(&format!(
            "mongodb://127.0.0.1:{port}/?directConnection=true"
        ))
        .await?;
        let created = c
            .database("admin")
            .run_command(doc! {
                "createUser": "root",
                "pwd": password,
                "roles": [{"role": "root", "db": "admin"}],
                "mechanisms": ["SCRAM-SHA-256"],
            })
            .await;
        c.shutdown().await;
        created.map(drop)
    })
    .map_err(LocalMongoError::Bootstrap)?
    .map_err(|e| LocalMongoError::Bootstrap(e.to_string()))
}

/// Logs in with `uri` and runs `ping`.
fn ping(uri: String) -> Result<(), String> {
    block_on(async move {
        let c = client(&uri).await?;
        let pinged = c.database("admin").run_command(doc! {"ping": 1}).await;
        c.shutdown().await;
        pinged.map(drop)
    })?
    .map_err(|e| e.to_string())
}
