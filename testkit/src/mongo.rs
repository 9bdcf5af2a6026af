//! MongoDB for integration tests: a throwaway SecantusDB stand-in (PyPI `secantusdb`, a MongoDB
//! wire-protocol server, run as a separate process) with real SCRAM-SHA-256 auth, or a real
//! `mongod` given by `TENANTDB_TEST_MONGO_URI`.
//!
//! The stand-in is started by [`crate::localmongo`] (lookup: `TENANTDB_SECANTUS_BIN`, else
//! `.venv-mongo/bin/secantusd-py`, installed by `scripts/mongo-standin.sh install`; two-phase auth
//! bootstrap; fresh temporary directory on a free port). Neither available → [`server`] prints a
//! `SKIPPED (no MongoDB)` line and returns `None` — or fails the test when `TENANTDB_TEST_NO_SKIP=1`
//! (set by `scripts/test.sh`: in CI nothing skips). The server is kept in a static for the whole
//! test binary; statics are never dropped, so the reaper process armed by `LocalMongo` stops it
//! and removes the directory when the test process exits (also on a crash or `kill -9`).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::localmongo::{self, LocalMongo};
use mongodb::Client;
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
    /// The root password (a test fixture; for an external server, the one in its URI).
    pub root_password: String,
    /// The stand-in, when this binary started one. It lives in a static, which is never dropped:
    /// its reaper process stops the server and removes its directory when the test process exits
    /// (also on a crash or `kill -9`).
    pub local: Option<LocalMongo>,
}

impl MongoServer {
    /// Whether this is a real mongod (tests of mongod-only behaviour run only then).
    pub fn is_real_mongod(&self) -> bool {
        self.kind == Kind::External
    }

    /// The stand-in's log (for failure messages).
    #[allow(dead_code, reason = "for debugging failing tests")]
    pub fn log(&self) -> String {
        self.local.as_ref().map(LocalMongo::log).unwrap_or_default()
    }
}

/// `TENANTDB_TEST_NO_SKIP=1` (set by `scripts/test.sh`, so in CI): a test that would skip fails.
pub fn no_skip() -> bool {
    std::env::var("TENANTDB_TEST_NO_SKIP").is_ok_and(|v| v == "1" || v == "true")
}

/// Reports a skipped test: prints the `SKIPPED …` line, or fails the test under
/// `TENANTDB_TEST_NO_SKIP=1`.
pub fn skip(line: &str) {
    assert!(
        !no_skip(),
        "{line}\nTENANTDB_TEST_NO_SKIP=1 (CI): a test may not skip; provide what it needs"
    );
    println!("{line}");
}

/// The server of this test binary, started on first use; `None` (after printing why) when no
/// MongoDB is available — a failure under `TENANTDB_TEST_NO_SKIP=1`. Panics if a stand-in is
/// installed but cannot be started.
pub fn server(test: &str) -> Option<&'static MongoServer> {
    static SERVER: OnceLock<Option<MongoServer>> = OnceLock::new();
    let s = SERVER.get_or_init(start).as_ref();
    if s.is_none() {
        skip(&format!(
            "SKIPPED (no MongoDB): {test}: install the stand-in with `scripts/mongo-standin.sh install`, \
             set TENANTDB_SECANTUS_BIN, or point TENANTDB_TEST_MONGO_URI at a real mongod"
        ));
    }
    s
}

/// Whether slow tests (tens of seconds, e.g. waiting for the 60 s TTL sweep) should run:
/// `TENANTDB_TEST_SLOW=1`. Otherwise prints a SKIPPED line (a failure under
/// `TENANTDB_TEST_NO_SKIP=1`).
pub fn slow_tests_enabled(test: &str) -> bool {
    let on = std::env::var("TENANTDB_TEST_SLOW").is_ok_and(|v| !v.is_empty() && v != "0");
    if !on {
        skip(&format!("SKIPPED (slow; set TENANTDB_TEST_SLOW=1): {test}"));
    }
    on
}

/// The password of the user in a `mongodb://user:password@…` URI (empty if none).
pub fn uri_password(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.rsplit_once('@')
        .and_then(|(creds, _)| creds.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default()
}

/// The stand-in binary, if installed (see [`crate::localmongo::find_secantus`]).
pub fn secantus_bin() -> Option<PathBuf> {
    localmongo::find_secantus()
}

fn start() -> Option<MongoServer> {
    if let Ok(uri) = std::env::var("TENANTDB_TEST_MONGO_URI")
        && !uri.is_empty()
    {
        let (host, port) = tenantdb::runtime::first_host(&uri);
        return Some(MongoServer {
            kind: Kind::External,
            root_password: uri_password(&uri),
            admin_uri: uri,
            host,
            port,
            local: None,
        });
    }
    let bin = secantus_bin()?;
    let local =
        LocalMongo::start(&bin).unwrap_or_else(|e| panic!("starting the SecantusDB stand-in: {e}"));
    Some(MongoServer {
        kind: Kind::Secantus,
        admin_uri: local.admin_uri(),
        host: local.host().to_string(),
        port: local.port(),
        root_password: local.root_password().to_string(),
        local: Some(local),
    })
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
    use rand::distr::{Alphanumeric, SampleString};
    let suffix = Alphanumeric.sample_string(&mut rand::rng(), 8);
    format!("{prefix}_{}", suffix.to_lowercase())
}

/// Starts `n` SecantusDB stand-ins (with auth) at once, for a test that needs several servers
/// (which one `TENANTDB_TEST_MONGO_URI` cannot give). `None` (after the SKIPPED line; a failure
/// in CI, see [`crate::mongo::skip`]) when the stand-in is not installed.
pub async fn stand_ins(test: &str, n: usize) -> Option<Vec<crate::localmongo::LocalMongo>> {
    let Some(bin) = crate::localmongo::find_secantus() else {
        skip(&format!(
            "SKIPPED (no MongoDB stand-in): {test}: install it with `scripts/mongo-standin.sh install` or set TENANTDB_SECANTUS_BIN"
        ));
        return None;
    };
    let starts = (0..n).map(|_| {
        let bin = bin.clone();
        tokio::task::spawn_blocking(move || crate::localmongo::LocalMongo::start(&bin))
    });
    let started = futures::future::join_all(starts).await;
    Some(
        started
            .into_iter()
            .map(|r| {
                r.expect("stand-in start task")
                    .expect("SecantusDB stand-in")
            })
            .collect(),
    )
}
