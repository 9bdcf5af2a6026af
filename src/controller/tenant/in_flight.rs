//! The fleet's moves in flight, from the Tenant cache and this process's registry: which tenants
//! are moving away from a server, and which moves have started but may not show on their servers
//! yet (for the start of a move: `maxConcurrentMoves` of a drain, placement capacity).

use super::super::{Context, object_key};
use crate::crd::{Engine, MovePhase};
use crate::moves::sql::{Ends, OtherMoves};

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

/// Moves by tenant key: (source, target).
type Moves = std::collections::HashMap<String, (String, String)>;

/// How many of `moves` are from `source` and how many to `target`.
fn count_ends(moves: &Moves, source: &str, target: &str) -> Ends {
    let mut e = Ends::default();
    for (from, to) in moves.values() {
        e.from_source += i64::from(from == source);
        e.to_target += i64::from(to == target);
    }
    e
}

/// The other moves (all but `except`'s) at the ends of a move from `source` to `target`, as its
/// room check counts them (`crate::moves::sql::MoveRoom::no_room`), from one pass over the
/// Tenant cache and this process's registry of the moves it started. Asked under the placement
/// lock, like the start itself.
/// - `pending`: moves whose subscriptions may not exist yet (so that the servers do not show
///   what they will take): `Preparing` by their status, or started by this process and not yet
///   in the cache as started (no move there, or the previous one's end: a hold record the cache
///   still shows).
/// - `copying`: moves whose subscriptions may be copying tables (`MoveStatus::copies_tables`):
///   each may hold as many table synchronisation workers, slots, senders and origins as the
///   target allows a subscription.
/// - `in_flight`: moves started and not ended (by their status, or started by this process):
///   each may hold a subscription's slot, sender, apply worker and origin at its ends, which it
///   gives back when it ends; a move short of room only because of them is held, not refused.
pub(super) fn other_moves(ctx: &Context, source: &str, target: &str, except: &str) -> OtherMoves {
    let started = ctx.servers().moving();
    let (mut pending, mut copying, mut in_flight) = (Moves::new(), Moves::new(), started.clone());
    // Each cached Tenant's move phase (`None`: no move); none at all before the cache synced.
    let mut seen: Option<std::collections::HashMap<String, Option<MovePhase>>> = None;
    if let Some(store) = ctx.synced_tenant_store() {
        let seen = seen.get_or_insert_default();
        for t in store.state() {
            let key = object_key(t.as_ref());
            let m = t.status.as_ref().and_then(|s| s.move_.as_deref());
            seen.insert(key.clone(), m.map(|m| m.phase));
            let Some(m) = m else {
                continue;
            };
            let ends = || (m.from.clone(), m.to.clone());
            if m.copies_tables() {
                copying.insert(key.clone(), ends());
            }
            if m.started_at.is_some() && m.phase == MovePhase::Preparing {
                pending.insert(key.clone(), ends());
            }
            if m.started_at.is_some() && !m.phase.is_terminal() {
                in_flight.insert(key, ends());
            }
        }
    }
    for (key, ends) in started {
        let starting = match seen.as_ref().map(|s| s.get(&key)) {
            // The cache has not synced yet.
            None => true,
            // The Tenant is gone (deleted mid-move; `Context::forget` ends the entry too).
            Some(None) => false,
            Some(Some(None)) => true,
            Some(Some(Some(p))) => *p == MovePhase::Preparing || p.is_terminal(),
        };
        if starting {
            pending.insert(key, ends);
        }
    }
    for moves in [&mut pending, &mut copying, &mut in_flight] {
        moves.remove(except);
    }
    OtherMoves {
        pending: count_ends(&pending, source, target),
        copying: count_ends(&copying, source, target),
        in_flight: count_ends(&in_flight, source, target),
    }
}
