//! Throwaway PostgreSQL clusters for tests, benchmarks and the local demo.
//!
//! A [`LocalPg`] is a real PostgreSQL server (the Debian `postgresql` package's binaries) in a fresh
//! temporary directory, listening on `127.0.0.1` on a free port, with its unix socket inside the
//! temporary directory. The superuser `postgres` has a random password and host connections use
//! SCRAM-SHA-256, so password checks are real.
//!
//! `initdb` refuses to run as root: when the current user is root, every PostgreSQL command runs as
//! the unprivileged `postgres` user through `runuser` and the directory is handed to that user.
//!
//! The cluster is stopped and its directory removed when the value is dropped. A small reaper
//! process also stops it if this process dies without running destructors (a test binary exiting,
//! `kill -9`), so no server is left behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};

/// Errors starting or controlling a throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries not found (set TENANTDB_PG_BIN or `apt-get install postgresql`)"
    )]
    NotInstalled,
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command that failed.
        command: String,
        /// Its output or error.
        detail: String,
    },
    /// Filesystem error.
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

/// Options for [`LocalPg::start`].
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// `max_connections` of the server.
    pub max_connections: u32,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
    /// TLS on (`ssl = on`) with a server certificate for 127.0.0.1 and localhost issued by a CA
    /// made for this cluster ([`LocalPg::ca_pem`]); generated with the `openssl` command.
    pub tls: bool,
}

impl Default for LocalPgOptions {
    fn default() -> Self {
        Self {
            max_connections: 300,
            settings: Vec::new(),
            tls: false,
        }
    }
}

/// A running throwaway PostgreSQL cluster. Dropping it stops the server and removes its files.
#[derive(Debug)]
pub struct LocalPg {
    root: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as_postgres: bool,
    options: LocalPgOptions,
    reaper: Option<std::process::Child>,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn find_pg_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("TENANTDB_PG_BIN") {
        let p = PathBuf::from(dir);
        if p.join("pg_ctl").exists() {
            return Some(p);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    // Prefer PostgreSQL 15 (the supported version), else the newest installed.
    if let Some((_, p)) = versions.iter().find(|(v, _)| *v == 15) {
        return Some(p.clone());
    }
    versions.pop().map(|(_, p)| p)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for throwaway servers).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl LocalPg {
    /// Starts a new cluster with default options.
    pub fn start() -> Result<Self, LocalPgError> {
        Self::start_with(LocalPgOptions::default())
    }

    /// Starts a new cluster.
    pub fn start_with(options: LocalPgOptions) -> Result<Self, LocalPgError> {
        let bin = find_pg_bin().ok_or(LocalPgError::NotInstalled)?;
        let run_as_postgres = is_root();
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 10);
        let root = std::env::temp_dir().join(format!("tenantdb-pg-{suffix}"));
        std::fs::create_dir_all(&root)?;
        let password = Alphanumeric.sample_string(&mut rand::rng(), 24);
        let mut pg = LocalPg {
            root,
            bin,
            port: 0,
            password,
            run_as_postgres,
            options,
            reaper: None,
        };
        std::fs::write(pg.root.join("pwfile"), format!("{}\n", pg.password))?;
        if run_as_postgres {
            pg.run(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:")
                    .arg(&pg.root),
                "chown",
            )?;
        }
        let data = pg.data_dir();
        let initdb = pg.bin.join("initdb");
        let mut cmd = pg.pg_command(&initdb);
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pg.root.join("pwfile").display()));
        pg.run(&mut cmd, "initdb")?;
        pg.spawn_reaper();
        if pg.options.tls {
            pg.make_certificates()?;
        }
        let mut last_err = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(LocalPgError::NotInstalled))
    }

    /// A CA and a server certificate signed by it (in `tls/`; the key readable by the server's
    /// user only, as PostgreSQL requires), and the settings that turn TLS on.
    fn make_certificates(&mut self) -> Result<(), LocalPgError> {
        let dir = self.root.join("tls");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        let openssl = |args: &[&str], what: &str| {
            self.run(
                Command::new("openssl").current_dir(&dir).args(args),
                &format!("openssl ({what})"),
            )
        };
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=tenantdb test CA",
            ],
            "CA",
        )?;
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            "server key",
        )?;
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
            "server certificate",
        )?;
        if self.run_as_postgres {
            self.run(
                Command::new("chown").arg("-R").arg("postgres:").arg(&dir),
                "chown",
            )?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )?;
        }
        for (k, v) in [
            ("ssl", "on".to_string()),
            (
                "ssl_cert_file",
                dir.join("server.crt").display().to_string(),
            ),
            ("ssl_key_file", dir.join("server.key").display().to_string()),
        ] {
            self.options.settings.push((k.to_string(), v));
        }
        Ok(())
    }

    /// The CA certificate (PEM) of a cluster started with [`LocalPgOptions::tls`].
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.options
            .tls
            .then(|| std::fs::read(self.root.join("tls").join("ca.crt")).ok())
            .flatten()
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn pg_command(&self, program: &Path) -> Command {
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn run(&self, cmd: &mut Command, what: &str) -> Result<(), LocalPgError> {
        let out = cmd.stdin(Stdio::null()).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(LocalPgError::Command {
                command: what.to_string(),
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
    }

    /// A shell process that stops the server and removes the directory once this process is gone.
    fn spawn_reaper(&mut self) {
        let pid = std::process::id();
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = if self.run_as_postgres {
            format!("runuser -u postgres -- '{}'", pg_ctl.display())
        } else {
            format!("'{}'", pg_ctl.display())
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{root}'",
            data = self.data_dir().display(),
            root = self.root.display()
        );
        self.reaper = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// Starts (or restarts) the server process on the cluster's port.
    pub fn start_server(&self) -> Result<(), LocalPgError> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=64MB",
            self.port,
            self.root.display(),
            self.options.max_connections
        );
        for (k, v) in &self.options.settings {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = self.pg_command(&pg_ctl);
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        self.run(&mut cmd, "pg_ctl start")
    }

    /// Stops the server process (fast shutdown) but keeps the data: [`Self::start_server`] brings it back.
    pub fn stop_server(&self) -> Result<(), LocalPgError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = self.pg_command(&pg_ctl);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", "fast", "stop"]);
        self.run(&mut cmd, "pg_ctl stop")
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host name clients use.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The superuser password (a test fixture, not a production secret).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// `postgres://postgres:…@127.0.0.1:PORT/DB` for the superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            self.password, self.port, database
        )
    }

    /// Admin URL for the maintenance database `postgres`.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// The server log (useful when a test fails).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Waits until the server accepts TCP connections or the deadline passes.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = self.pg_command(&pg_ctl);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", "immediate", "stop"]);
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut r) = self.reaper.take() {
            let _ = r.kill();
            let _ = r.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
