//! What a move asks of its two servers before anything is created: `wal_level`, room for the
//! replication (slots, senders, workers), and whether the two names are one cluster.

use sqlx::Row;

use crate::error::Result;
use crate::pg::PgAdmin;

/// `wal_level` of a server.
pub async fn wal_level(pg: &PgAdmin) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT current_setting('wal_level')")
        .fetch_one(pg.admin()?)
        .await?)
}

/// What a server pair has and what other moves take, as read by [`replication_room`]. Each
/// kind is counted on its own server: slots and senders on the source, against the other moves
/// from that source; workers, processes and origins on the target, against the other moves to
/// that target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRoom {
    /// Free on the source beyond what subscriptions hold for good (table synchronisation slots
    /// and their senders are not counted: see `copying`): replication slots, WAL senders.
    pub slots: i64,
    pub senders: i64,
    /// Free on the target: logical replication workers beyond one apply worker per enabled
    /// subscription and the running extra workers (table synchronisation, parallel apply) of
    /// subscriptions that are not moves'; background worker processes beyond the other
    /// background workers running now, one per enabled subscription and the same extra
    /// workers; replication origins beyond the subscriptions' own.
    pub workers: i64,
    pub processes: i64,
    pub origins: i64,
    /// The target's `max_replication_slots` or `max_active_replication_origins` (PostgreSQL 18).
    pub origins_setting: String,
    /// The target's `max_sync_workers_per_subscription`.
    pub sync_per_subscription: i64,
    /// The other moves at the two ends.
    pub others: OtherMoves,
}

/// The other moves at a move's ends, as [`MoveRoom`] counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtherMoves {
    /// Moves that may not show on the servers yet (`Preparing`): from the source, to the
    /// target. Each takes [`MoveRoom::per_move`].
    pub pending: Ends,
    /// Moves whose subscriptions may be copying tables: from the source, to the target. Each
    /// takes [`MoveRoom::sync`] beyond what the servers show of it.
    pub copying: Ends,
    /// Moves started and not ended, from the source and to the target: each may hold one of
    /// each kind (its subscription's), which the free counts do not have; it gives them back
    /// when it ends.
    pub in_flight: Ends,
}

/// Counts of other moves at a move's source and at its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ends {
    pub from_source: i64,
    pub to_target: i64,
}

/// Why there is no room for a move now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoom {
    /// Each kind that is short, on its server.
    pub why: String,
    /// Whether there would be room once the other moves at its ends ended (their copies and
    /// subscriptions gone): they end, so the move waits for them; otherwise the servers'
    /// settings (or what else uses them) are too small for a move at all.
    pub for_now: bool,
}

impl MoveRoom {
    /// Table synchronisation workers one move's copy uses at once: the target's
    /// `max_sync_workers_per_subscription`, at least 1 (0 holds a move in `Copying` until it
    /// is raised, which needs no restart).
    pub fn sync(&self) -> i64 {
        self.sync_per_subscription.max(1)
    }

    /// Of each kind, what one move takes while it copies: the subscription's and one per table
    /// synchronisation worker.
    pub fn per_move(&self) -> i64 {
        1 + self.sync()
    }

    /// Why there is no room for one more move now, if there is not: per kind, what is free less
    /// what the other moves at that end take (their table copies, and the whole of those not
    /// showing yet) must hold [`Self::per_move`].
    ///
    /// Why the whole complement: when a subscription's apply worker cannot start a table
    /// synchronisation worker (no free worker slot, slot or sender), PostgreSQL tries that
    /// table again only after `wal_retrieve_retry_interval` (5 s). Two moves sharing one spare
    /// worker copied a table every ~10 s (a CI drain: 7 of 39 tables in 70 s); three
    /// subscriptions of 39 small tables each on a target with the default
    /// `max_logical_replication_workers = 4` took 400 s, against 0.8 s for one alone
    /// (docs/moves.md). A move that waits to start is faster than moves that share.
    pub fn shortfalls(&self, source: &str, target: &str) -> Vec<String> {
        let at = |starting: i64, copying: i64| {
            starting.max(0) * self.per_move() + copying.max(0) * self.sync()
        };
        let (pending, copying) = (self.others.pending, self.others.copying);
        let taken_source = at(pending.from_source, copying.from_source);
        let taken_target = at(pending.to_target, copying.to_target);
        let others = |pending: i64, copying: i64| match (pending > 0, copying > 0) {
            (false, false) => String::new(),
            (true, false) => format!(" with {pending} other move(s) starting"),
            (false, true) => format!(" with {copying} other move(s) copying"),
            (true, true) => {
                format!(" with {pending} other move(s) starting and {copying} copying")
            }
        };
        let at_source = (
            source,
            taken_source,
            others(pending.from_source, copying.from_source),
        );
        let at_target = (
            target,
            taken_target,
            others(pending.to_target, copying.to_target),
        );
        [
            (self.slots, &at_source, "max_replication_slots", "replication slots"),
            (self.senders, &at_source, "max_wal_senders", "WAL senders"),
            (
                self.workers,
                &at_target,
                "max_logical_replication_workers",
                "logical replication workers",
            ),
            (
                self.processes,
                &at_target,
                "max_worker_processes",
                "background worker processes",
            ),
            (
                self.origins,
                &at_target,
                self.origins_setting.as_str(),
                "replication origins",
            ),
        ]
        .into_iter()
        .filter_map(|(free, (server, taken, with), setting, what)| {
            let left = free - taken;
            (left < self.per_move()).then(|| {
                format!(
                    "server {server} has {} free {what} ({setting}), a move needs {} (1 + max_sync_workers_per_subscription {}){with}",
                    left.max(0),
                    self.per_move(),
                    self.sync()
                )
            })
        })
        .collect()
    }

    /// [`Self::shortfalls`], and whether they are for now only (see [`NoRoom::for_now`]).
    pub fn no_room(&self, source: &str, target: &str) -> Option<NoRoom> {
        let short = self.shortfalls(source, target);
        if short.is_empty() {
            return None;
        }
        // What there would be once the other moves ended: their copies and their
        // subscriptions' one of each kind given back.
        let in_flight = self.others.in_flight;
        let (s, t) = (in_flight.from_source.max(0), in_flight.to_target.max(0));
        let alone = MoveRoom {
            slots: self.slots + s,
            senders: self.senders + s,
            workers: self.workers + t,
            processes: self.processes + t,
            origins: self.origins + t,
            others: OtherMoves::default(),
            ..self.clone()
        };
        Some(NoRoom {
            why: format!(
                "{} (raise the setting — a restart — or wait for other moves to end)",
                short.join("; ")
            ),
            for_now: alone.shortfalls(source, target).is_empty(),
        })
    }
}

/// Why `source` → `target` has no room for one more move's replication now, if it has not (see
/// [`MoveRoom::shortfalls`] and [`MoveRoom::no_room`]).
pub async fn replication_room(
    source: &PgAdmin,
    source_name: &str,
    target: &PgAdmin,
    target_name: &str,
    others: OtherMoves,
) -> Result<Option<NoRoom>> {
    // Table synchronisation slots are named `pg_<subid>_sync_<relid>_<sysid>`. Their senders
    // cannot be told from the apply senders (the application name is the subscription's, and a
    // sender holds its slot only while streaming): one sender per synchronisation slot is
    // taken to be one.
    let (slots, senders): (i64, i64) = sqlx::query_as(
        "WITH sync AS (SELECT count(*) AS n FROM pg_replication_slots \
                        WHERE slot_name::text ~ '^pg_[0-9]+_sync_[0-9]+_') \
         SELECT current_setting('max_replication_slots')::bigint \
                  - ((SELECT count(*) FROM pg_replication_slots) - (SELECT n FROM sync)), \
                current_setting('max_wal_senders')::bigint \
                  - greatest((SELECT count(*) FROM pg_stat_replication) - (SELECT n FROM sync), 0)",
    )
    .fetch_one(source.admin()?)
    .await?;
    // On the target: an apply worker per enabled subscription (counted even while it waits to be
    // restarted); the extra workers running now (table synchronisation, parallel apply) of
    // subscriptions that are not moves' (`pg_stat_subscription`, cluster-wide; the moves' own
    // are kept for them whole by `MoveRoom::shortfalls`); background worker processes, which
    // bound those workers together with every other background worker (the launcher, parallel
    // query workers, extensions' workers); and replication origins (one per subscription, one
    // per table synchronisation), bounded by the target's max_replication_slots.
    // Backend types that are not background workers (PostgreSQL 15 to 18); logical replication
    // workers are `logical replication worker` up to 16 and `logical replication
    // apply/tablesync/parallel worker` from 17. Origins: `max_replication_slots` up to 17,
    // `max_active_replication_origins` from 18.
    let (workers, processes, origins, origins_setting, sync_per_subscription): (
        i64,
        i64,
        i64,
        String,
        i64,
    ) = sqlx::query_as(
        "WITH subs AS (SELECT count(*) AS n FROM pg_subscription WHERE subenabled), \
              extra AS (SELECT coalesce(sum(greatest(n - 1, 0)), 0)::bigint AS n \
                        FROM (SELECT count(pid) AS n FROM pg_stat_subscription \
                              WHERE NOT starts_with(subname::text, 'tenantdb_mv_') GROUP BY subid) w), \
              bg AS (SELECT count(*) AS other \
                     FROM pg_stat_activity \
                     WHERE backend_type NOT LIKE 'logical replication %worker' \
                       AND backend_type NOT IN ('client backend', 'autovacuum launcher', \
                           'autovacuum worker', 'background writer', 'checkpointer', 'walwriter', \
                           'walsender', 'walreceiver', 'archiver', 'startup', 'logger', \
                           'standalone backend', 'slotsync worker', 'walsummarizer', 'io worker', \
                           'dead-end client backend')), \
              sync AS (SELECT count(*) FILTER (WHERE roname ~ '^pg_[0-9]+_[0-9]+$') AS n, \
                              count(*) AS total FROM pg_replication_origin), \
              o AS (SELECT CASE WHEN current_setting('max_active_replication_origins', true) IS NULL \
                                THEN 'max_replication_slots' ELSE 'max_active_replication_origins' END AS setting) \
         SELECT current_setting('max_logical_replication_workers')::bigint \
                  - (SELECT n FROM subs) - (SELECT n FROM extra), \
                current_setting('max_worker_processes')::bigint \
                  - (SELECT other FROM bg) - (SELECT n FROM subs) - (SELECT n FROM extra), \
                current_setting((SELECT setting FROM o))::bigint \
                  - ((SELECT total FROM sync) - (SELECT n FROM sync)), \
                (SELECT setting FROM o), \
                current_setting('max_sync_workers_per_subscription')::bigint",
    )
    .fetch_one(target.admin()?)
    .await?;
    let room = MoveRoom {
        slots,
        senders,
        workers,
        processes,
        origins,
        origins_setting,
        sync_per_subscription,
        others,
    };
    Ok(room.no_room(source_name, target_name))
}

/// Why `source` and `target` cannot be a move's two ends, if they cannot: they are one
/// PostgreSQL cluster under two names (the same [`cluster_identity`]: `system_identifier` and
/// postmaster start time, so that clones of one data directory count as two clusters; two
/// DatabaseServers, or the default server and a DatabaseServer, reaching it by different
/// addresses). A move there would
/// restore the tenant onto itself, and its clean-up or roll-back would drop the only copy.
pub async fn same_cluster(
    source: &PgAdmin,
    source_name: &str,
    target: &PgAdmin,
    target_name: &str,
) -> Result<Option<String>> {
    let (a, b) = (
        cluster_identity(source).await?,
        cluster_identity(target).await?,
    );
    Ok((a == b).then(|| {
        format!(
            "servers {source_name} and {target_name} are the same PostgreSQL cluster (system identifier {}): there is nothing to move it to; declare each cluster once",
            a.0
        )
    }))
}

/// What tells one running cluster from another: its `system_identifier` (set by `initdb`; a
/// physical standby, a promoted replica or a cluster restored from a base backup or snapshot
/// shares it) and when its postmaster started (which tells such clones apart). Read live: a
/// restart changes it.
pub async fn cluster_identity(pg: &PgAdmin) -> Result<(String, String)> {
    let row = sqlx::query(
        "SELECT system_identifier::text AS id, pg_postmaster_start_time()::text AS started \
           FROM pg_control_system()",
    )
    .fetch_one(pg.admin()?)
    .await?;
    Ok((row.try_get("id")?, row.try_get("started")?))
}

#[cfg(test)]
mod tests {
    use super::{Ends, MoveRoom, OtherMoves};

    /// A target at PostgreSQL's defaults (`max_logical_replication_workers = 4`,
    /// `max_sync_workers_per_subscription = 2`, `max_worker_processes = 8`) and a source with
    /// `max_replication_slots = max_wal_senders = 10`, nothing else on them.
    fn defaults() -> MoveRoom {
        MoveRoom {
            slots: 10,
            senders: 10,
            workers: 4,
            processes: 7,
            origins: 10,
            origins_setting: "max_replication_slots".into(),
            sync_per_subscription: 2,
            others: OtherMoves::default(),
        }
    }

    fn to_target(n: i64) -> Ends {
        Ends {
            from_source: n,
            to_target: n,
        }
    }

    #[test]
    fn one_move_at_a_time_copies_into_a_target_at_the_defaults() {
        let first = defaults();
        assert_eq!(first.per_move(), 3);
        assert_eq!(first.no_room("a", "c"), None);
        // The first one copying: its apply worker is an enabled subscription (4 - 1), its two
        // synchronisation workers are taken: 1 free, 3 needed; held for now.
        let second = MoveRoom {
            workers: 3,
            processes: 6,
            others: OtherMoves {
                copying: to_target(1),
                in_flight: to_target(1),
                ..Default::default()
            },
            ..defaults()
        };
        assert_eq!(
            second.shortfalls("a", "c"),
            vec![
                "server c has 1 free logical replication workers (max_logical_replication_workers), a move needs 3 (1 + max_sync_workers_per_subscription 2) with 1 other move(s) copying"
            ]
        );
        assert!(second.no_room("a", "c").is_some_and(|n| n.for_now));
        // Started but not yet subscribed: counted whole.
        let behind_a_starting_one = MoveRoom {
            others: OtherMoves {
                pending: to_target(1),
                ..Default::default()
            },
            ..defaults()
        };
        assert_eq!(behind_a_starting_one.shortfalls("a", "c").len(), 1);
        // Room for two at once when the target is sized for it.
        let sized = MoveRoom {
            workers: 8 - 1,
            processes: 16 - 2,
            others: OtherMoves {
                copying: to_target(1),
                ..Default::default()
            },
            ..defaults()
        };
        assert_eq!(sized.no_room("a", "c"), None);
    }

    #[test]
    fn other_moves_count_only_at_the_end_they_share() {
        // Three moves from the source a to another target b, copying: a's slots and senders
        // (10 - 3 subscriptions' = 7, less 3 × 2 synchronisation = 1 left) are short; c's
        // workers are not.
        let from_a = MoveRoom {
            slots: 7,
            senders: 7,
            others: OtherMoves {
                copying: Ends {
                    from_source: 3,
                    to_target: 0,
                },
                ..Default::default()
            },
            ..defaults()
        };
        let short = from_a.shortfalls("a", "c");
        assert_eq!(short.len(), 2, "{short:#?}");
        assert!(short.iter().all(|s| s.starts_with("server a has 1 free")));
        // One move from another source into c, copying: c is short, a is not.
        let into_c = MoveRoom {
            workers: 3,
            processes: 6,
            others: OtherMoves {
                copying: Ends {
                    from_source: 0,
                    to_target: 1,
                },
                ..Default::default()
            },
            ..defaults()
        };
        let short = into_c.shortfalls("a", "c");
        assert_eq!(short.len(), 1, "{short:#?}");
        assert!(short[0].starts_with("server c has 1 free logical replication workers"));
        // A move from a to b copying takes nothing of c.
        let elsewhere = MoveRoom {
            slots: 9,
            senders: 9,
            others: OtherMoves {
                copying: Ends {
                    from_source: 1,
                    to_target: 0,
                },
                ..Default::default()
            },
            ..defaults()
        };
        assert_eq!(elsewhere.no_room("a", "c"), None);
    }

    #[test]
    fn other_moves_subscriptions_are_for_now() {
        // Two other moves into c past their copies (cutting over, cleaning up): their apply
        // workers leave 2 of 4, short of 3, until they end.
        let two_in = MoveRoom {
            workers: 2,
            processes: 5,
            origins: 8,
            others: OtherMoves {
                in_flight: to_target(2),
                ..Default::default()
            },
            ..defaults()
        };
        let no = two_in.no_room("a", "c").expect("no room");
        assert!(no.for_now, "{no:?}");
        // Without moves in flight the same numbers are the settings' (or other replication's).
        let other_use = MoveRoom {
            others: OtherMoves::default(),
            ..two_in
        };
        assert!(other_use.no_room("a", "c").is_some_and(|n| !n.for_now));
    }

    #[test]
    fn settings_too_small_for_any_move_are_not_for_now() {
        // `max_logical_replication_workers = 1`, taken by a move in flight: 2 needed.
        let narrow = MoveRoom {
            workers: 0,
            others: OtherMoves {
                copying: to_target(1),
                in_flight: to_target(1),
                ..Default::default()
            },
            ..defaults()
        };
        let no = narrow.no_room("a", "narrow").expect("no room");
        assert!(!no.for_now, "{no:?}");
        assert!(
            no.why
                .ends_with("(raise the setting — a restart — or wait for other moves to end)")
        );
    }

    #[test]
    fn synchronisation_held_at_zero_still_needs_one_worker() {
        let held = MoveRoom {
            sync_per_subscription: 0,
            workers: 1,
            ..defaults()
        };
        assert_eq!(held.per_move(), 2);
        assert_eq!(
            held.shortfalls("a", "narrow"),
            vec![
                "server narrow has 1 free logical replication workers (max_logical_replication_workers), a move needs 2 (1 + max_sync_workers_per_subscription 1)"
            ]
        );
    }

    #[test]
    fn every_short_kind_is_named_on_its_server() {
        let short = MoveRoom {
            slots: 2,
            senders: 2,
            origins: 2,
            origins_setting: "max_active_replication_origins".into(),
            ..defaults()
        };
        let got = short.shortfalls("a", "c");
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("server a has 2 free replication slots (max_replication_slots)")
        );
        assert!(got[1].starts_with("server a has 2 free WAL senders (max_wal_senders)"));
        assert!(got[2].starts_with(
            "server c has 2 free replication origins (max_active_replication_origins)"
        ));
    }
}
