//! Command line of the driver: `--quick`, `--out DIR`, `--work DIR`, `--operator BIN`,
//! `--only a,b` and `--render-only`, and the scenario sizes of a full and a quick run ([`Cfg`]).
//! `--render-only` re-renders `summary.md` from an existing `results.json` and exits;
//! `--compare BASELINE CURRENT [--factor F]` runs the regression guard and exits.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

#[derive(Debug, Clone)]
pub struct Cfg {
    pub quick: bool,
    pub out: PathBuf,
    pub work: PathBuf,
    pub operator: PathBuf,
    pub only: Option<Vec<String>>,
    pub prov_schema: Vec<usize>,
    pub prov_database: usize,
    pub steady_tenants: usize,
    pub resync_seconds: u64,
    pub memory_steps: Vec<usize>,
    /// Scale scenario: Ready Tenants after each step (the resync period grows with N).
    pub scale_steps: Vec<usize>,
    pub fleet_parallel: Vec<usize>,
    pub ttr_samples: usize,
    /// Admission scenario: Ready tenants resyncing in the background, and new tenants created.
    pub admission_background: usize,
    pub admission_new: usize,
    /// Placement scenario: Tenants provisioned on 1 and on 3 DatabaseServers.
    pub placement_tenants: usize,
    /// Moves scenario: sizes of the moved tenants' data (MiB), each moved idle and under writes.
    pub moves_mib: Vec<u64>,
    /// Moves scenario: the isolation modes moved (`BENCH_MOVES_ISOLATION`, comma list of
    /// `database`, `schema` and `shared`; default all three).
    pub moves_isolation: Vec<String>,
    /// Emulated API latency of every scenario (`BENCH_API_LATENCY_MS`, see [`api_latency`]).
    pub api_latency: std::time::Duration,
}

/// What the command line asks for.
pub enum Command {
    /// Run the scenarios.
    Run(Box<Cfg>),
    /// `--render-only`: re-render `summary.md` from `<out>/results.json`.
    RenderOnly(PathBuf),
    /// `--compare BASELINE CURRENT [--factor F]`: the regression guard ([`crate::guard`]).
    Compare {
        baseline: PathBuf,
        current: PathBuf,
        factor: f64,
    },
}

pub fn parse_args() -> Result<Command> {
    let mut quick = false;
    let mut out = PathBuf::from("bench/results");
    let mut work = PathBuf::from("bench/work");
    let mut operator = PathBuf::from("target/release/tenantdb");
    let mut only = None;
    let mut render_only = false;
    let mut compare: Option<(PathBuf, PathBuf)> = None;
    let mut factor = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(args.next().context("--out DIR")?),
            "--work" => work = PathBuf::from(args.next().context("--work DIR")?),
            "--operator" => operator = PathBuf::from(args.next().context("--operator BIN")?),
            "--render-only" => render_only = true,
            "--compare" => {
                let b = args.next().context("--compare BASELINE CURRENT")?;
                let c = args.next().context("--compare BASELINE CURRENT")?;
                compare = Some((PathBuf::from(b), PathBuf::from(c)));
            }
            "--factor" => {
                factor = args
                    .next()
                    .context("--factor F")?
                    .parse()
                    .context("--factor F")?
            }
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only a,b")?
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if render_only {
        return Ok(Command::RenderOnly(out));
    }
    if let Some((baseline, current)) = compare {
        return Ok(Command::Compare {
            baseline,
            current,
            factor,
        });
    }
    let operator = std::fs::canonicalize(&operator)
        .with_context(|| format!("operator binary {}", operator.display()))?;
    let api_latency = api_latency()?;
    Ok(Command::Run(Box::new(if quick {
        Cfg {
            quick,
            out,
            work,
            operator,
            only,
            prov_schema: vec![5, 10],
            prov_database: 3,
            steady_tenants: 50,
            resync_seconds: 5,
            memory_steps: vec![100, 300, 600],
            scale_steps: vec![20, 50, 100],
            fleet_parallel: vec![1, 4, 8],
            ttr_samples: 3,
            admission_background: 60,
            admission_new: 10,
            placement_tenants: 30,
            moves_mib: vec![1, 20],
            moves_isolation: moves_isolation()?,
            api_latency,
        }
    } else {
        Cfg {
            quick,
            out,
            work,
            operator,
            only,
            // BENCH_PROV_SCHEMA overrides (e.g. `200` for a shorter fleet run: the fleet
            // migration runs over the largest provisioning run's tenants).
            prov_schema: sizes("BENCH_PROV_SCHEMA", &[100, 500])?,
            prov_database: 100,
            // BENCH_STEADY_TENANTS overrides (see README: with resync 30 s this machine saturates
            // at about 1,270 schema tenants).
            steady_tenants: env_count("BENCH_STEADY_TENANTS", 2000)?,
            resync_seconds: 30,
            memory_steps: vec![1000, 5000, 10000],
            scale_steps: sizes("BENCH_SCALE_STEPS", &[1000, 5000, 10000])?,
            fleet_parallel: vec![1, 4, 8],
            ttr_samples: 30,
            admission_background: env_count("BENCH_ADMISSION_TENANTS", 600)?,
            admission_new: 50,
            placement_tenants: 500,
            moves_mib: vec![1, 100],
            moves_isolation: moves_isolation()?,
            api_latency,
        }
    })))
}

/// A comma list of positive counts from the environment variable `name` (e.g. `1000,5000`),
/// else `default`. A malformed value is an error naming it.
fn sizes(name: &str, default: &[usize]) -> Result<Vec<usize>> {
    let Ok(v) = std::env::var(name) else {
        return Ok(default.to_vec());
    };
    v.split(',')
        .map(positive)
        .collect::<Option<Vec<usize>>>()
        .with_context(|| format!("{name}={v:?}: expected e.g. 1000 or 1000,5000"))
}

/// The isolation modes the moves scenario moves: `BENCH_MOVES_ISOLATION` (comma list of
/// `database`, `schema` and `shared`), else all three. A `shared` tenant's rows are in the
/// layout's tables (it has none of its own): it fills and writes the audit log.
fn moves_isolation() -> Result<Vec<String>> {
    const MODES: [&str; 3] = ["database", "schema", "shared"];
    let Ok(v) = std::env::var("BENCH_MOVES_ISOLATION") else {
        return Ok(MODES.iter().map(|m| m.to_string()).collect());
    };
    let modes: Vec<String> = v.split(',').map(|m| m.trim().to_string()).collect();
    if modes.is_empty() || modes.iter().any(|m| !MODES.contains(&m.as_str())) {
        bail!("BENCH_MOVES_ISOLATION={v:?}: expected a comma list of database, schema, shared");
    }
    Ok(modes)
}

/// A positive count from the environment variable `name`, else `default`. A malformed value is
/// an error naming it, not a silent fallback to the default size.
fn env_count(name: &str, default: usize) -> Result<usize> {
    let Ok(v) = std::env::var(name) else {
        return Ok(default);
    };
    positive(&v).with_context(|| format!("{name}={v:?}: expected a positive number"))
}

/// `s` as a positive count (surrounding blanks allowed).
fn positive(s: &str) -> Option<usize> {
    s.trim().parse::<usize>().ok().filter(|n| *n > 0)
}

/// The emulated API latency of every scenario: `BENCH_API_LATENCY_MS` (milliseconds, default 0)
/// delays every API request before it is handled and every watch event by that much (an API
/// server across a network; `tenantdb-apiserver --request-latency-ms / --watch-latency-ms`).
fn api_latency() -> Result<std::time::Duration> {
    let Ok(v) = std::env::var("BENCH_API_LATENCY_MS") else {
        return Ok(std::time::Duration::ZERO);
    };
    v.trim()
        .parse::<u64>()
        .map(std::time::Duration::from_millis)
        .with_context(|| format!("BENCH_API_LATENCY_MS={v:?}: expected milliseconds, e.g. 3"))
}

impl Cfg {
    pub fn runs(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == scenario))
    }
}
