//! The warm pool's filler ([`crate::pg::warm`]): while this replica acts, every PostgreSQL server
//! that wants entries is swept and refilled — at once after a claim, and every probe interval
//! (which also picks up a changed `warmPool`, migration set or month). A server that cannot be
//! filled (unreachable, no template) is tried again at the next round; provisioning never waits
//! for the pool.

use std::sync::Arc;
use std::time::Duration;

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

/// Runs the filler until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let period = ctx
        .settings()
        .server_probe_interval
        .max(Duration::from_secs(5));
    tokio::pin!(shutdown);
    loop {
        fill_all(&ctx).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ctx.warm_notify().notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// One round over every server: sweep and refill (servers that want nothing are swept too once
/// they hold entries: a pool turned off is emptied).
async fn fill_all(ctx: &Context) {
    for server in ctx.servers().all() {
        let want = wanted(ctx, &server);
        let gauge = |kind: &str| {
            ctx.metrics()
                .warm_pool_ready
                .get_or_create(&crate::metrics::PoolLabels {
                    server: server.name().to_string(),
                    kind: kind.into(),
                })
                .clone()
        };
        if want.is_empty() && !server.pool_seen() {
            continue;
        }
        match server
            .pg()
            .fill_pool(
                ctx.migrations(),
                want,
                ctx.settings().partition_months_ahead,
            )
            .await
        {
            Ok(f) => {
                server.set_pool_seen(!want.is_empty());
                gauge("schema").set(i64::from(f.ready.0));
                gauge("database").set(i64::from(f.ready.1));
                debug!(server = server.name(), filled = ?f, "warm pool round");
            }
            Err(e) => warn!(server = server.name(), error = %e, "warm pool not filled"),
        }
    }
}
