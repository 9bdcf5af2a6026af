//! The fleet's moves in flight, from the Tenant cache and this process's registry: which tenants
//! are moving away from a server, and which moves have started but may not show on their servers
//! yet (for the start of a move: `maxConcurrentMoves` of a drain, placement capacity).

use super::super::{Context, object_key};
use crate::crd::{Engine, MovePhase};
use crate::moves::sql::Ends;

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

/// How many of `moves` (source, target) are from `source` and how many to `target`.
fn count_ends<'a>(
    moves: impl Iterator<Item = (&'a str, &'a str)>,
    source: &str,
    target: &str,
) -> Ends {
    let mut e = Ends::default();
    for (from, to) in moves {
        e.from_source += i64::from(from == source);
        e.to_target += i64::from(to == target);
    }
    e
}

/// Other moves from `source` and to `target` whose subscriptions may not exist yet (so that the
/// servers do not show what they will take): `Preparing` by their status, or started by this
/// process and not yet in the cache as started (no move there, or the previous one's end: a
/// hold record the cache still shows). Asked under the placement lock, like the start itself.
pub(super) fn starting_moves(ctx: &Context, source: &str, target: &str, except: &str) -> Ends {
    // Each cached Tenant's move phase (`None`: no move); none at all before the cache synced.
    let mut seen: Option<std::collections::HashMap<String, Option<MovePhase>>> = None;
    let mut ends: std::collections::HashMap<String, (String, String)> = Default::default();
    if let Some(store) = ctx.synced_tenant_store() {
        let seen = seen.get_or_insert_default();
        for t in store.state() {
            let key = object_key(t.as_ref());
            let m = t.status.as_ref().and_then(|s| s.move_.as_ref());
            seen.insert(key.clone(), m.map(|m| m.phase));
            if let Some(m) = m
                && m.phase == MovePhase::Preparing
                && m.started_at.is_some()
            {
                ends.insert(key, (m.from.clone(), m.to.clone()));
            }
        }
    }
    for (key, (from, to)) in ctx.servers().moving() {
        let starting = match seen.as_ref().map(|s| s.get(&key)) {
            // The cache has not synced yet.
            None => true,
            // The Tenant is gone (deleted mid-move; `Context::forget` ends the entry too).
            Some(None) => false,
            Some(Some(None)) => true,
            Some(Some(Some(p))) => *p == MovePhase::Preparing || p.is_terminal(),
        };
        if starting {
            ends.insert(key, (from, to));
        }
    }
    ends.remove(except);
    count_ends(
        ends.values().map(|(f, t)| (f.as_str(), t.as_str())),
        source,
        target,
    )
}

/// Other moves from `source` and to `target` whose subscriptions may be copying tables
/// (`MoveStatus::copies_tables`): each may hold as many table synchronisation workers, slots,
/// senders and origins as the target allows a subscription, which
/// [`crate::moves::sql::replication_room`] keeps for them.
pub(super) fn copying_moves(ctx: &Context, source: &str, target: &str, except: &str) -> Ends {
    let Some(store) = ctx.synced_tenant_store() else {
        return Ends::default();
    };
    let state = store.state();
    let copying = state.iter().filter_map(|t| {
        let m = t.status.as_ref()?.move_.as_deref()?;
        (m.copies_tables() && object_key(t.as_ref()) != except)
            .then_some((m.from.as_str(), m.to.as_str()))
    });
    count_ends(copying, source, target)
}

/// Other moves from `source` and to `target` that started and have not ended (by their status,
/// or started by this process): each may hold a subscription's slot, sender, apply worker and
/// origin at its ends, which it gives back when it ends. A move short of room only because of
/// them is held rather than refused (`crate::moves::sql::MoveRoom::no_room`).
pub(super) fn moves_in_flight(ctx: &Context, source: &str, target: &str, except: &str) -> Ends {
    let mut ends: std::collections::HashMap<String, (String, String)> = ctx.servers().moving();
    if let Some(store) = ctx.synced_tenant_store() {
        for t in store.state() {
            if let Some(m) = t.status.as_ref().and_then(|s| s.move_.as_deref())
                && !m.phase.is_terminal()
                && m.started_at.is_some()
            {
                ends.insert(object_key(t.as_ref()), (m.from.clone(), m.to.clone()));
            }
        }
    }
    ends.remove(except);
    count_ends(
        ends.values().map(|(f, t)| (f.as_str(), t.as_str())),
        source,
        target,
    )
}
