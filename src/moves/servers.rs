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

/// Replication slots, WAL senders (source), logical replication workers, background worker
/// processes and replication origins (target) a move needs
/// beyond those held for good: its subscription's slot, sender and apply worker, and at least one
/// table synchronisation worker with its own slot and sender. Without that the subscription is
/// created but never copies a table (the synchronisation waits for a worker): a move stuck in
/// `Copying`. Synchronisation workers, their slots and senders of other moves are not counted:
/// they end with their table, so concurrent moves share them (slower, not stuck).
pub const REPLICATION_ROOM: i64 = 2;

/// Why `source` → `target` has no room for one more move's replication now, if it has not:
/// [`REPLICATION_ROOM`] of each beyond what subscriptions hold for good, and `pending` more
/// (moves started but whose subscriptions may not exist yet).
pub async fn replication_room(
    source: &PgAdmin,
    source_name: &str,
    target: &PgAdmin,
    target_name: &str,
    pending: i64,
) -> Result<Option<String>> {
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
    // restarted); background worker processes, which bound those workers together with every
    // other background worker (the launcher, parallel query workers, extensions' workers); and
    // replication origins (one per subscription, one per table synchronisation), bounded by the
    // target's max_replication_slots. Table synchronisation workers and origins of other moves
    // end with their table, as on the source.
    // (`max_sync_workers_per_subscription = 0` is not refused: it can be raised without a
    // restart, and the tests use it to hold a move in `Copying`.)
    // Backend types that are not background workers (PostgreSQL 15 to 18); logical replication
    // workers are `logical replication worker` up to 16 and `logical replication
    // apply/tablesync/parallel worker` from 17. Origins: `max_replication_slots` up to 17,
    // `max_active_replication_origins` from 18.
    let (workers, processes, origins, origins_setting): (i64, i64, i64, String) = sqlx::query_as(
        "WITH subs AS (SELECT count(*) AS n FROM pg_subscription WHERE subenabled), \
              bg AS (SELECT count(*) FILTER (WHERE backend_type LIKE 'logical replication %worker') AS lr, \
                            count(*) FILTER (WHERE backend_type NOT LIKE 'logical replication %worker') AS other \
                     FROM pg_stat_activity \
                     WHERE backend_type NOT IN ('client backend', 'autovacuum launcher', \
                           'autovacuum worker', 'background writer', 'checkpointer', 'walwriter', \
                           'walsender', 'walreceiver', 'archiver', 'startup', 'logger', \
                           'standalone backend', 'slotsync worker', 'walsummarizer', 'io worker', \
                           'dead-end client backend')), \
              sync AS (SELECT count(*) FILTER (WHERE roname ~ '^pg_[0-9]+_[0-9]+$') AS n, \
                              count(*) AS total FROM pg_replication_origin), \
              o AS (SELECT CASE WHEN current_setting('max_active_replication_origins', true) IS NULL \
                                THEN 'max_replication_slots' ELSE 'max_active_replication_origins' END AS setting) \
         SELECT current_setting('max_logical_replication_workers')::bigint - (SELECT n FROM subs), \
                current_setting('max_worker_processes')::bigint \
                  - (SELECT other FROM bg) - greatest((SELECT lr FROM bg), (SELECT n FROM subs)), \
                current_setting((SELECT setting FROM o))::bigint \
                  - ((SELECT total FROM sync) - (SELECT n FROM sync)), \
                (SELECT setting FROM o)",
    )
    .fetch_one(target.admin()?)
    .await?;
    let need = REPLICATION_ROOM + pending.max(0);
    let short = [
        (
            slots,
            source_name,
            "max_replication_slots",
            "replication slots",
        ),
        (senders, source_name, "max_wal_senders", "WAL senders"),
        (
            workers,
            target_name,
            "max_logical_replication_workers",
            "logical replication workers",
        ),
        (
            processes,
            target_name,
            "max_worker_processes",
            "background worker processes",
        ),
        (
            origins,
            target_name,
            origins_setting.as_str(),
            "replication origins",
        ),
    ]
    .into_iter()
    .filter(|(free, ..)| *free < need)
    .map(|(free, server, setting, what)| {
        let others = if pending > 0 {
            format!(" with {pending} other move(s) starting")
        } else {
            String::new()
        };
        format!(
            "server {server} has {} free {what} ({setting}), a move needs {REPLICATION_ROOM}{others}",
            free.max(0)
        )
    })
    .collect::<Vec<_>>();
    Ok((!short.is_empty()).then(|| {
        format!(
            "{} (raise the setting — a restart — or wait for other moves to end)",
            short.join("; ")
        )
    }))
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
