//! The fleet's moves in flight, from the Tenant cache and this process's registry: which tenants
//! are moving away from a server, and which moves have started but may not show on their servers
//! yet (for the start of a move: `maxConcurrentMoves` of a drain, placement capacity).

use super::super::{Context, object_key};
use crate::crd::{Engine, MovePhase};

/// Tenants whose `engine` part is moving away from `server`: started by this process, or in
/// progress by their status.
pub(super) fn moving_from(
    ctx: &Context,
    engine: Engine,
    server: &str,
) -> std::collections::HashSet<String> {
    let mut keys = match engine {
        Engine::Postgres => ctx.servers().moving_from(server),
        Engine::Mongodb => ctx.mongo_servers().moving_from(server),
    };
    keys.extend(moving_by_status(ctx, engine, server));
    keys
}

/// Tenants whose `engine` part is moving away from `server` by their status in the Tenant cache
/// (started and not ended): what a DatabaseServer's drain reports as in progress.
pub(crate) fn moving_by_status(
    ctx: &Context,
    engine: Engine,
    server: &str,
) -> std::collections::HashSet<String> {
    let Some(store) = ctx.synced_tenant_store() else {
        return Default::default();
    };
    store
        .state()
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| super::move_of(s, engine))
                .is_some_and(|m| {
                    !m.phase.is_terminal() && m.started_at.is_some() && m.from == server
                })
        })
        .map(|t| object_key(t.as_ref()))
        .collect()
}

/// Other moves from `source` or to `target` whose subscriptions may not exist yet (so that the
/// servers do not show what they will take): `Preparing` by their status, or started by this
/// process and not yet in the cache. Asked under the placement lock, like the start itself.
pub(super) fn starting_moves(ctx: &Context, source: &str, target: &str, except: &str) -> i64 {
    let mut phase: std::collections::HashMap<String, MovePhase> = Default::default();
    let mut keys = std::collections::HashSet::new();
    if let Some(store) = ctx.synced_tenant_store() {
        for t in store.state() {
            let Some(m) = t.status.as_ref().and_then(|s| s.move_.as_ref()) else {
                continue;
            };
            let key = object_key(t.as_ref());
            phase.insert(key.clone(), m.phase);
            let ours = m.from == source || m.to == target;
            if ours && m.phase == MovePhase::Preparing && m.started_at.is_some() {
                keys.insert(key);
            }
        }
    }
    let started = ctx
        .servers()
        .moving_to()
        .into_iter()
        .filter(|(_, to)| to == target)
        .map(|(k, _)| k)
        .chain(ctx.servers().moving_from(source));
    for key in started {
        if phase.get(&key).is_none_or(|p| *p == MovePhase::Preparing) {
            keys.insert(key);
        }
    }
    keys.remove(except);
    i64::try_from(keys.len()).unwrap_or(i64::MAX)
}

/// Other moves from `source` or to `target` that are copying (`Copying` by their status): each
/// may hold the table synchronisation workers, slots, senders and origins the target allows a
/// subscription, which [`crate::moves::sql::replication_room`] keeps for them.
pub(super) fn copying_moves(ctx: &Context, source: &str, target: &str, except: &str) -> i64 {
    let Some(store) = ctx.synced_tenant_store() else {
        return 0;
    };
    let n = store
        .state()
        .iter()
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.move_.as_ref())
                .is_some_and(|m| {
                    m.phase == MovePhase::Copying && (m.from == source || m.to == target)
                })
                && object_key(t.as_ref()) != except
        })
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}
