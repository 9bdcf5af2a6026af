//! Scenario 3's peers (issue 18): what a user would run instead of a TenantMigration — a loop of
//! one `dbmate` or `sqlx migrate run` process per tenant, `p` at a time, each pointed at one
//! tenant's schema through its connection URL (the tenant's own history table in that schema).
//!
//! `bench/run.sh` installs pinned versions into `bench/.peers` and passes their paths in
//! `BENCH_DBMATE` and `BENCH_SQLX`. Every peer run applies a new migration of the fleet
//! migration's shape ([`up_sql`]) to every tenant exactly once; the process pool is shell-free
//! (`tokio::process`, a semaphore of `p`). Any failed process fails the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tenantdb_testkit::localpg::LocalPg;
use tokio::sync::Semaphore;

use crate::common::{log, round};
use crate::floor;

/// Versions of the peers' migrations (their own histories, independent of tenantdb's).
const WARMUP_VERSION: i64 = 20_260_201_000_000;

/// The fleet migration's shape for column `col`: one column and an index on it.
pub fn up_sql(col: &str) -> String {
    format!(
        "ALTER TABLE saas_users ADD COLUMN {col} text;\nCREATE INDEX saas_users_{col}_idx ON saas_users ({col});\n"
    )
}

pub fn down_sql(col: &str) -> String {
    format!("DROP INDEX saas_users_{col}_idx;\nALTER TABLE saas_users DROP COLUMN {col};\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Dbmate,
    Sqlx,
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub tool: Tool,
    bin: PathBuf,
    pub version: String,
    /// The migrations directory every tenant's process reads (one, like a user's repository).
    dir: PathBuf,
}

impl Tool {
    /// The key in `results.json` (`<key>_s`, `ratio_vs_<key>`).
    pub fn key(self) -> &'static str {
        match self {
            Tool::Dbmate => "dbmate",
            Tool::Sqlx => "sqlx",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Tool::Dbmate => "BENCH_DBMATE",
            Tool::Sqlx => "BENCH_SQLX",
        }
    }

    fn default_bin(self) -> &'static str {
        match self {
            Tool::Dbmate => "bench/.peers/node_modules/@dbmate/linux-x64/bin/dbmate",
            Tool::Sqlx => "bench/.peers/bin/sqlx",
        }
    }
}

/// The installed peers (`BENCH_DBMATE`, `BENCH_SQLX`, else `bench/.peers`), with their
/// `--version`. A peer that is not installed is left out, and the log says so.
pub async fn find(work: &Path) -> Vec<Peer> {
    let mut peers = Vec::new();
    for tool in [Tool::Dbmate, Tool::Sqlx] {
        let bin = std::env::var_os(tool.env_var())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(tool.default_bin()));
        let version = tokio::process::Command::new(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await;
        match version {
            Ok(o) if o.status.success() => peers.push(Peer {
                tool,
                bin: std::fs::canonicalize(&bin).unwrap_or(bin),
                version: String::from_utf8_lossy(&o.stdout).trim().to_string(),
                // Absolute: the processes run in this directory.
                dir: std::path::absolute(work.join(format!("peer-{}", tool.key())))
                    .unwrap_or_else(|_| work.join(format!("peer-{}", tool.key()))),
            }),
            _ => log(format!(
                "  peer {} not installed ({}): left out (bench/run.sh installs it)",
                tool.key(),
                bin.display()
            )),
        }
    }
    peers
}

impl Peer {
    /// The column the peer's `k`-th timed migration adds (distinct from tenantdb's and the floor's).
    pub fn column(&self, k: usize) -> String {
        format!("bench_{}_{k}", self.tool.key())
    }

    /// How it is invoked, for the results (URL without the password).
    pub fn invocation(&self) -> &'static str {
        match self.tool {
            Tool::Dbmate => {
                "dbmate --url 'postgres://postgres:…@127.0.0.1:PORT/tenantdb_shared?sslmode=disable&search_path=<schema>' --migrations-dir DIR --migrations-table <schema>.schema_migrations --no-dump-schema migrate"
            }
            Tool::Sqlx => {
                "sqlx migrate run --source DIR --database-url 'postgres://postgres:…@127.0.0.1:PORT/tenantdb_shared?sslmode=disable&options=-c search_path=<schema>'"
            }
        }
    }

    /// Starts the migrations directory afresh with the warm-up migration only.
    pub fn reset_dir(&self) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir)?;
        self.add_migration(WARMUP_VERSION, "bench_warmup", "SELECT 1;\n", "SELECT 1;\n")
    }

    /// Adds the `k`-th timed migration to the directory (the earlier ones stay, as in a user's
    /// repository: the tool checks them against its history and skips them).
    pub fn add_fleet_migration(&self, k: usize) -> Result<()> {
        let col = self.column(k);
        self.add_migration(
            WARMUP_VERSION + k as i64,
            &format!("bench_fleet_{k}"),
            &up_sql(&col),
            &down_sql(&col),
        )
    }

    fn add_migration(&self, version: i64, name: &str, up: &str, down: &str) -> Result<()> {
        let path = self.dir.join(format!("{version}_{name}.sql"));
        let text = match self.tool {
            Tool::Dbmate => format!("-- migrate:up\n{up}\n-- migrate:down\n{down}"),
            // sqlx's "simple" format: the file is the up migration.
            Tool::Sqlx => up.to_string(),
        };
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    fn command(&self, pg: &LocalPg, schema: &str) -> tokio::process::Command {
        let base = format!(
            "postgres://postgres:{}@{}:{}/{}?sslmode=disable",
            pg.superuser_password(),
            pg.host(),
            pg.port(),
            floor::SHARED_DB
        );
        let mut cmd = tokio::process::Command::new(&self.bin);
        match self.tool {
            Tool::Dbmate => {
                cmd.arg("--url")
                    .arg(format!("{base}&search_path={schema}"))
                    .arg("--migrations-dir")
                    .arg(&self.dir)
                    .arg("--migrations-table")
                    .arg(format!("{schema}.schema_migrations"))
                    .args(["--no-dump-schema", "migrate"]);
            }
            Tool::Sqlx => {
                cmd.args(["migrate", "run", "--source"])
                    .arg(&self.dir)
                    .arg("--database-url")
                    .arg(format!("{base}&options=-c%20search_path%3D{schema}"));
            }
        }
        // No .env or DATABASE_URL from the caller's directory or environment.
        cmd.current_dir(&self.dir)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs the peer once per schema, `parallel` processes at a time; returns the wall time from
    /// the first spawn to the last exit. Fails if any process failed.
    pub async fn run_all(&self, pg: &LocalPg, schemas: &[String], parallel: usize) -> Result<f64> {
        let sem = Arc::new(Semaphore::new(parallel.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let t0 = Instant::now();
        for schema in schemas {
            let permit = sem.clone().acquire_owned().await?;
            let mut cmd = self.command(pg, schema);
            let schema = schema.clone();
            set.spawn(async move {
                let out = cmd.output().await;
                drop(permit);
                (schema, out)
            });
        }
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (schema, out) = joined?;
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => failures.push(format!(
                    "{schema}: {} {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => failures.push(format!("{schema}: spawn failed: {e}")),
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        if !failures.is_empty() {
            bail!(
                "{}: {} of {} tenant runs failed; first: {}",
                self.tool.key(),
                failures.len(),
                schemas.len(),
                failures[..failures.len().min(3)].join(" | ")
            );
        }
        Ok(secs)
    }

    /// Fails unless every tenant schema has the column and the index of the `k`-th migration.
    pub async fn verify(&self, pg: &LocalPg, k: usize, n: usize) -> Result<()> {
        let col = self.column(k);
        let sql = format!(
            "SELECT count(*) FROM pg_namespace n WHERE n.nspname LIKE 'tenant_bench_%' \
             AND EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 WHERE c.relnamespace = n.oid AND c.relname = 'saas_users' AND a.attname = '{col}' AND NOT a.attisdropped) \
             AND EXISTS (SELECT 1 FROM pg_class i WHERE i.relnamespace = n.oid AND i.relname = 'saas_users_{col}_idx')"
        );
        let got: usize = floor::psql_exec(pg, floor::SHARED_DB, &sql)
            .await?
            .parse()
            .context("count of migrated tenants")?;
        if got != n {
            bail!(
                "{}: {got} of {n} tenants have column {col} and its index",
                self.tool.key()
            );
        }
        Ok(())
    }
}

/// One untimed run of the warm-up migration per tenant and peer: the timed runs then measure one
/// migration applied to an existing history (the history table exists, one row in it).
pub async fn warm_up(pg: &LocalPg, peers: &[Peer], schemas: &[String]) -> Result<()> {
    for peer in peers {
        peer.reset_dir()?;
        let s = peer.run_all(pg, schemas, 8).await?;
        log(format!(
            "  {} warm-up (history table + dummy migration, untimed): {s:.2} s",
            peer.tool.key()
        ));
    }
    Ok(())
}

/// The `k`-th timed run of a peer: adds the migration, runs it everywhere with `parallel`
/// processes, checks every tenant got it. Returns the wall time in seconds.
pub async fn timed_run(
    pg: &LocalPg,
    peer: &Peer,
    schemas: &[String],
    k: usize,
    parallel: usize,
) -> Result<f64> {
    peer.add_fleet_migration(k)?;
    let s = peer.run_all(pg, schemas, parallel).await?;
    peer.verify(pg, k, schemas.len()).await?;
    log(format!("  {} ×{parallel}: {s:.2} s", peer.tool.key()));
    Ok(s)
}

/// The peers' description for `results.json`.
pub fn describe(peers: &[Peer]) -> Value {
    let mut m = serde_json::Map::new();
    for p in peers {
        m.insert(
            p.tool.key().to_string(),
            json!({"version": p.version, "invocation": p.invocation()}),
        );
    }
    Value::Object(m)
}

/// Adds `<key>_s`, `<key>_ms_per_tenant` and `ratio_vs_<key>` (tenantdb / peer) to a row.
pub fn add_to_row(row: &mut Value, key: &str, op_s: f64, peer_s: f64, n: usize) {
    row[format!("{key}_s")] = json!(round(peer_s, 3));
    row[format!("{key}_ms_per_tenant")] = json!(round(peer_s * 1000.0 / n as f64, 2));
    row[format!("ratio_vs_{key}")] = json!(round(op_s / peer_s, 2));
}
