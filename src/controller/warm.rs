//! The warm pool's filler ([`crate::pg::warm`]): while this replica acts, every PostgreSQL server
//! that wants entries is swept and refilled — at once after a claim, and every probe interval
//! (which also picks up a changed `warmPool`, migration set or month). A server whose round failed
//! (unreachable, a build refused) is left alone for a minute; provisioning never waits for the
//! pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::Context;
use crate::pg::warm::WarmPool;
use crate::servers::Server;

/// What `server` keeps ready: the default server's from the flags, a DatabaseServer's from its
/// `spec.warmPool`; nothing on a cordoned or draining server (it takes no new tenants).
pub(crate) fn wanted(ctx: &Context, server: &Server) -> WarmPool {
    let facts = server.facts();
    if facts.cordoned || facts.duplicate_of.is_some() {
        WarmPool::default()
    } else if ctx.servers().default_name() == Some(server.name()) {
        ctx.settings().warm_pool
    } else {
        facts.warm_pool
    }
}

/// How long a server whose round failed (unreachable, a build refused) is left alone.
const AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Runs the filler until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let period = ctx
        .settings()
        .server_probe_interval
        .max(Duration::from_secs(5));
    let mut failed: HashMap<String, Instant> = HashMap::new();
    let mut lockouts: HashMap<String, u32> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        fill_all(&ctx, &mut failed, &mut lockouts).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ctx.warm_notify().notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Whether the filler may act on `server` now: the default server always; a DatabaseServer once
/// its probe succeeded and it is not another server's cluster under a second name (a duplicate
/// would sweep the pool of the server it duplicates).
fn eligible(ctx: &Context, server: &Server) -> bool {
    if ctx.servers().default_name() == Some(server.name()) {
        return true;
    }
    let facts = server.facts();
    ctx.servers().was_seen(server.name())
        && matches!(facts.probe, Some(Ok(_)))
        && facts.duplicate_of.is_none()
}

/// One round over every server: sweep and refill (servers that want nothing are swept too once
/// per process: a pool turned off is emptied).
async fn fill_all(
    ctx: &Context,
    failed: &mut HashMap<String, Instant>,
    lockouts: &mut HashMap<String, u32>,
) {
    for server in ctx.servers().all() {
        let want = wanted(ctx, &server);
        if want.is_empty() && !server.pool_seen() {
            continue;
        }
        if !eligible(ctx, &server)
            || failed
                .get(server.name())
                .is_some_and(|at| at.elapsed() < AFTER_FAILURE)
        {
            continue;
        }
        let gauge = |kind: &str| {
            ctx.metrics()
                .warm_pool_ready
                .get_or_create(&crate::metrics::PoolLabels {
                    server: server.name().to_string(),
                    kind: kind.into(),
                })
                .clone()
        };
        match server
            .pg()
            .fill_pool(
                ctx.migrations(),
                want,
                ctx.settings().partition_months_ahead,
            )
            .await
        {
            Ok(f) if f.skipped => {
                // Another operator's filler — or a session holding the lock for longer than a
                // fill takes (any session of the shared database can take an advisory lock).
                let n = lockouts.entry(server.name().to_string()).or_insert(0);
                *n += 1;
                if n.is_multiple_of(30) {
                    warn!(
                        server = server.name(),
                        rounds = *n,
                        "the warm pool's fill lock has been held by another session for this many rounds; the pool is not refilled meanwhile"
                    );
                }
            }
            Ok(f) => {
                lockouts.remove(server.name());
                failed.remove(server.name());
                server.set_pool_seen(!want.is_empty());
                gauge("schema").set(i64::from(f.ready.0));
                gauge("database").set(i64::from(f.ready.1));
                debug!(server = server.name(), filled = ?f, "warm pool round");
            }
            Err(e) => {
                failed.insert(server.name().to_string(), Instant::now());
                warn!(server = server.name(), error = %e, "warm pool not filled; tried again in a minute");
            }
        }
    }
}
