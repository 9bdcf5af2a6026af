//! Per-tenant statistics: one snapshot of the server's statistics views per usage interval
//! ([`Collector`], single flight: concurrent reconciles wait for the one query instead of each
//! running their own), attributed to a tenant by its login roles and dedicated database
//! ([`attribute`], pure), and reported only when they change meaningfully ([`settle`], pure).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use tracing::warn;

use crate::crd::{
    ConnectionStatistics, MongoStatistics, SlowStatement, StatementStatistics, StatisticsStatus,
    TransactionStatistics,
};
use crate::metrics::Metrics;
use crate::pg::PgAdmin;
use crate::pg::stats::{DatabaseCounters, ServerFigures, StatementsSource};

/// The name of the one PostgreSQL server the operator serves today (its `--database-url`), in
/// metrics' `server` label and in status.
pub const DEFAULT_SERVER: &str = "default";

/// How often the availability of `pg_stat_statements` is looked at again.
const SOURCE_RECHECK: Duration = Duration::from_secs(600);

/// Rates of one database between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DatabaseRates {
    /// Commits per minute.
    pub commits_per_minute: i64,
    /// Rollbacks per minute.
    pub rollbacks_per_minute: i64,
}

/// The figures of one server at one moment, with the transaction rates of the last complete
/// rate window (at least [`MIN_RATE_WINDOW`]).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken.
    pub taken_at: Instant,
    /// The same, for status (RFC 3339).
    pub measured_at: String,
    /// What the statement returned.
    pub figures: ServerFigures,
    /// Transaction rates by database (absent for the first snapshot, or after a stats reset).
    pub rates: HashMap<String, DatabaseRates>,
    /// The slow threshold used, milliseconds.
    pub slow_threshold_ms: i64,
}

/// Rates between two readings of the cumulative counters; `None` when there is no earlier
/// reading, no time passed, or a counter went backwards (statistics reset).
pub fn rates(
    prev: Option<&DatabaseCounters>,
    now: &DatabaseCounters,
    elapsed: Duration,
) -> Option<DatabaseRates> {
    let prev = prev?;
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || now.xact_commit < prev.xact_commit || now.xact_rollback < prev.xact_rollback {
        return None;
    }
    let per_minute = |d: i64| ((d as f64) * 60.0 / secs).round() as i64;
    Some(DatabaseRates {
        commits_per_minute: per_minute(now.xact_commit - prev.xact_commit),
        rollbacks_per_minute: per_minute(now.xact_rollback - prev.xact_rollback),
    })
}

/// Transaction rates are computed over at least this long (a shorter window turns a single
/// commit into a swing of the rate: noise that would be reported).
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    current: Option<Arc<Snapshot>>,
    source: Option<(Instant, StatementsSource)>,
    /// The counters the rates are computed against, and when they were read.
    baseline: Option<(Instant, HashMap<String, DatabaseCounters>)>,
}

/// Takes at most one snapshot per interval for the whole server.
pub struct Collector {
    state: tokio::sync::Mutex<State>,
    interval: Duration,
    slow_ms: i64,
    server: String,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("interval", &self.interval)
            .field("slow_ms", &self.slow_ms)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector for the server `server` refreshing at most every `interval`; statements with a
    /// mean time over `slow_ms` count as slow.
    pub fn new(server: &str, interval: Duration, slow_ms: i64) -> Self {
        Self {
            state: tokio::sync::Mutex::new(State::default()),
            interval,
            slow_ms,
            server: server.into(),
        }
    }

    /// The current snapshot, taken now if the last one is older than the interval. On failure
    /// the server is reported down in the metrics and the last snapshot (if any) is returned.
    pub async fn snapshot(&self, pg: &PgAdmin, metrics: &Metrics) -> Option<Arc<Snapshot>> {
        let mut st = self.state.lock().await;
        if let Some(s) = &st.current
            && s.taken_at.elapsed() < self.interval
        {
            return Some(s.clone());
        }
        let source = match &st.source {
            Some((at, src)) if at.elapsed() < SOURCE_RECHECK => src.clone(),
            _ => match pg.statements_source().await {
                Ok(src) => {
                    st.source = Some((Instant::now(), src.clone()));
                    src
                }
                Err(e) => {
                    warn!(error = %e, "statistics not read");
                    metrics.server_probed(&self.server, "postgres", false);
                    return st.current.clone();
                }
            },
        };
        match pg.server_figures(&source, self.slow_ms as f64).await {
            Ok(figures) => {
                metrics.server_probed(&self.server, "postgres", true);
                let slow_total = figures
                    .statements
                    .as_ref()
                    .ok()
                    .map(|m| m.values().map(|r| r.slow).sum::<i64>());
                metrics.server_statements(&self.server, slow_total);
                let now = Instant::now();
                // Rates against a baseline at least MIN_RATE_WINDOW old; until then the last
                // rates stand (the baseline moves forward when a new window is complete).
                let rates = match &st.baseline {
                    Some((at, base)) if now.duration_since(*at) >= MIN_RATE_WINDOW => {
                        let elapsed = now.duration_since(*at);
                        let r: HashMap<String, DatabaseRates> = figures
                            .databases
                            .iter()
                            .filter_map(|(db, c)| {
                                Some((db.clone(), rates(base.get(db), c, elapsed)?))
                            })
                            .collect();
                        st.baseline = Some((now, figures.databases.clone()));
                        r
                    }
                    Some(_) => st
                        .current
                        .as_ref()
                        .map(|c| c.rates.clone())
                        .unwrap_or_default(),
                    None => {
                        st.baseline = Some((now, figures.databases.clone()));
                        HashMap::new()
                    }
                };
                let snap = Arc::new(Snapshot {
                    taken_at: now,
                    measured_at: Timestamp::now().to_string(),
                    figures,
                    rates,
                    slow_threshold_ms: self.slow_ms,
                });
                st.current = Some(snap.clone());
                Some(snap)
            }
            Err(e) => {
                warn!(error = %e, "statistics not read");
                metrics.server_probed(&self.server, "postgres", false);
                st.current.clone()
            }
        }
    }
}

/// Who a tenant is in the statistics views.
#[derive(Debug, Clone, Copy)]
pub struct TenantKeys<'a> {
    /// Its login roles (primary and rotation slot).
    pub roles: [&'a str; 2],
    /// Its dedicated database, if it has one.
    pub dedicated_database: Option<&'a str>,
    /// Its connection limit.
    pub connection_limit: Option<i32>,
}

/// A tenant's statistics from a server snapshot (pure).
pub fn attribute(
    snap: &Snapshot,
    t: &TenantKeys<'_>,
    mongodb: Option<MongoStatistics>,
) -> StatisticsStatus {
    let sessions = t
        .roles
        .iter()
        .filter_map(|r| snap.figures.sessions.get(*r))
        .fold(
            Default::default(),
            |acc: crate::pg::stats::RoleSessions, s| acc.plus(s),
        );
    let transactions = t.dedicated_database.and_then(|db| {
        let c = snap.figures.databases.get(db)?;
        let r = snap.rates.get(db)?;
        let reads = c.blks_hit + c.blks_read;
        Some(TransactionStatistics {
            commits_per_minute: r.commits_per_minute,
            rollbacks_per_minute: r.rollbacks_per_minute,
            deadlocks: c.deadlocks,
            temp_bytes: c.temp_bytes,
            cache_hit_percent: (reads > 0)
                .then(|| ((c.blks_hit as f64) * 100.0 / reads as f64).floor() as i32),
        })
    });
    let statements = Some(match &snap.figures.statements {
        Err(why) => StatementStatistics {
            available: false,
            reason: Some(why.clone()),
            slow_threshold_ms: snap.slow_threshold_ms,
            ..Default::default()
        },
        Ok(by_role) => {
            let mut slow = 0;
            let mut slowest: Vec<SlowStatement> = Vec::new();
            for r in t.roles.iter().filter_map(|r| by_role.get(*r)) {
                slow += r.slow;
                slowest.extend(r.slowest.iter().map(|s| SlowStatement {
                    query_id: s.query_id.clone(),
                    calls: s.calls,
                    mean_ms: s.mean_ms,
                    query: s.query.chars().take(200).collect(),
                }));
            }
            slowest.sort_by_key(|s| std::cmp::Reverse(s.mean_ms));
            slowest.truncate(3);
            StatementStatistics {
                available: true,
                reason: None,
                slow_threshold_ms: snap.slow_threshold_ms,
                slow,
                slowest,
            }
        }
    });
    StatisticsStatus {
        measured_at: Some(snap.measured_at.clone()),
        connections: ConnectionStatistics {
            total: sessions.total(),
            active: sessions.active,
            idle: sessions.idle,
            idle_in_transaction: sessions.idle_in_transaction,
            limit: t.connection_limit.filter(|l| *l >= 0),
        },
        transactions,
        statements,
        mongodb,
    }
}

/// Whether `a` and `b` differ by more than `share` of the larger and more than `floor`.
fn moved(a: i64, b: i64, share: f64, floor: i64) -> bool {
    let d = (a - b).abs();
    d > floor && d as f64 > (a.abs().max(b.abs()) as f64) * share
}

/// Whether a reader would care about the difference between two statistics (the thresholds of
/// docs/operations.md, "Statistics"): connections ±2 and ±20 %, a limit or a crossing of 80 % of
/// it, idle-in-transaction sessions appearing or disappearing; transaction rates doubling or
/// halving and by at least 30 per minute, a new deadlock, temp bytes ±20 % and ±1 MiB, cache hit ±5 points; the statement
/// source, the slow count or the slowest statements' ids; MongoDB collections, or ±5 % of
/// documents or bytes.
pub fn changed_meaningfully(prev: &StatisticsStatus, now: &StatisticsStatus) -> bool {
    let (p, n) = (&prev.connections, &now.connections);
    let near = |c: &ConnectionStatistics| {
        c.limit
            .is_some_and(|l| l > 0 && f64::from(c.total) >= f64::from(l) * 0.8)
    };
    if moved(p.total.into(), n.total.into(), 0.2, 1)
        || p.limit != n.limit
        || near(p) != near(n)
        || (p.idle_in_transaction > 0) != (n.idle_in_transaction > 0)
    {
        return true;
    }
    match (&prev.transactions, &now.transactions) {
        (Some(p), Some(n)) => {
            // Rates of a busy tenant wander by tens of percent from one interval to the next:
            // only a doubling or halving (and at least 30 per minute) is news.
            if moved(p.commits_per_minute, n.commits_per_minute, 0.5, 30)
                || moved(p.rollbacks_per_minute, n.rollbacks_per_minute, 0.5, 30)
                || n.deadlocks > p.deadlocks
                || moved(p.temp_bytes, n.temp_bytes, 0.2, 1 << 20)
                || p.cache_hit_percent.is_some() != n.cache_hit_percent.is_some()
                || (p.cache_hit_percent.unwrap_or(0) - n.cache_hit_percent.unwrap_or(0)).abs() >= 5
            {
                return true;
            }
        }
        (None, None) => {}
        _ => return true,
    }
    match (&prev.statements, &now.statements) {
        (Some(p), Some(n)) => {
            let ids = |s: &StatementStatistics| {
                s.slowest
                    .iter()
                    .map(|x| x.query_id.clone())
                    .collect::<Vec<_>>()
            };
            if p.available != n.available
                || p.reason != n.reason
                || p.slow != n.slow
                || p.slow_threshold_ms != n.slow_threshold_ms
                || ids(p) != ids(n)
            {
                return true;
            }
        }
        (None, None) => {}
        _ => return true,
    }
    match (&prev.mongodb, &now.mongodb) {
        (Some(p), Some(n)) => {
            p.collections != n.collections
                || moved(p.objects, n.objects, 0.05, 0)
                || moved(p.data_bytes, n.data_bytes, 0.05, 0)
                || moved(p.index_bytes, n.index_bytes, 0.05, 0)
        }
        (None, None) => false,
        _ => true,
    }
}

/// What to report: the new figures when they changed meaningfully or the reported ones are older
/// than `report_interval`, else the reported ones unchanged (no status write).
pub fn settle(
    prev: Option<&StatisticsStatus>,
    now: StatisticsStatus,
    report_interval: Duration,
) -> StatisticsStatus {
    let Some(prev) = prev else {
        return now;
    };
    let stale = prev
        .measured_at
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .is_none_or(|t| {
            Timestamp::now().duration_since(t).as_secs() as u64 > report_interval.as_secs()
        });
    if stale || changed_meaningfully(prev, &now) {
        now
    } else {
        prev.clone()
    }
}

#[cfg(test)]
mod tests;
