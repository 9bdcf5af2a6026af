//! What each server holds: databases, replication objects, subscriptions, in-flight objects and the
//! rows the writers left.

use super::*;

/// Databases of a cluster one can connect to.
pub(super) async fn databases(pg: &Pg) -> Vec<String> {
    let mut c = admin(pg, "postgres").await.unwrap();
    let dbs = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datallowconn")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    dbs
}

/// Every replication slot, subscription, move role and publication on a cluster (publications of
/// every database; a database dropped meanwhile is skipped), each with the move object it belongs
/// to: its own name for `tenantdb_mv_…` (without a role's `_repl`/`_restore`), the subscription's for a table synchronisation slot
/// (`pg_<subscription oid>_sync_…`, the subscription looked up in `subscriptions`), else none.
pub(super) async fn replication_objects(
    pg: &Pg,
    subscriptions: &BTreeMap<i64, String>,
) -> Vec<(String, Option<String>)> {
    let mut c = admin(pg, "postgres").await.unwrap();
    let mut out: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'slot', slot_name::text FROM pg_replication_slots \
         UNION ALL SELECT 'subscription', subname::text FROM pg_subscription \
         UNION ALL SELECT 'role', rolname::text FROM pg_roles WHERE rolname LIKE 'tenantdb\\_mv\\_%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    for db in databases(pg).await {
        let Ok(mut d) = admin(pg, &db).await else {
            continue;
        };
        let pubs: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'publication (in ' || current_database() || ')', pubname::text FROM pg_publication",
        )
        .fetch_all(&mut d)
        .await
        .unwrap_or_default();
        out.extend(pubs);
        let _ = d.close().await;
    }
    out.into_iter()
        .map(|(kind, name)| {
            let owner = if tenantdb::moves::is_move_object(&name) {
                // A move's roles are named after its objects: `_repl` (replication login, on
                // the source), `_restore` (schema restore, on the target).
                let object = name
                    .strip_suffix("_repl")
                    .or_else(|| name.strip_suffix("_restore"))
                    .unwrap_or(&name);
                Some(object.to_string())
            } else {
                name.strip_prefix("pg_")
                    .and_then(|r| r.split_once("_sync_"))
                    .and_then(|(oid, _)| oid.parse().ok())
                    .and_then(|oid: i64| subscriptions.get(&oid).cloned())
            };
            (format!("{kind} {name}"), owner)
        })
        .collect()
}

/// Subscriptions of both clusters by oid.
pub(super) async fn subscriptions(clusters: &Clusters) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for (_, pg) in clusters.all() {
        let mut c = admin(pg, "postgres").await.unwrap();
        let subs: Vec<(i64, String)> =
            sqlx::query_as("SELECT oid::bigint, subname::text FROM pg_subscription")
                .fetch_all(&mut c)
                .await
                .unwrap();
        out.extend(subs);
        let _ = c.close().await;
    }
    out
}

/// The replication as the servers see it (for a failure message): slots, subscriptions, workers.
pub(super) async fn replication_state(clusters: &Clusters) -> String {
    let mut out = String::new();
    for (server, pg) in clusters.all() {
        let Ok(mut c) = admin(pg, "postgres").await else {
            continue;
        };
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT 'slot ' || slot_name::text || ' active=' || active::text || ' confirmed=' || coalesce(confirmed_flush_lsn::text, '-') FROM pg_replication_slots \
             UNION ALL SELECT 'subscription ' || subname::text || ' enabled=' || subenabled::text FROM pg_subscription \
             UNION ALL SELECT 'worker ' || subname::text || ' pid=' || coalesce(pid::text, '-') || ' relid=' || coalesce(relid::text, '-') FROM pg_stat_subscription \
             UNION ALL SELECT 'setting ' || name || '=' || setting FROM pg_settings WHERE name IN ('max_logical_replication_workers', 'max_worker_processes', 'max_replication_slots', 'max_wal_senders')",
        )
        .fetch_all(&mut c)
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        out.push_str(&format!("--- {server} ---\n{}\n", rows.join("\n")));
        // The server's own account of its replication (its log is next to its data directory).
        let log: String = sqlx::query_scalar(
            "SELECT pg_read_file(current_setting('data_directory') || '/../server.log')",
        )
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|e| e.to_string());
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["ERROR", "WARNING", "replication", "subscription"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        out.push_str(&tail(&notable.join("\n"), 30));
        out.push('\n');
        let _ = c.close().await;
    }
    out
}

/// Names of the move objects of the moves in flight (`status.move` not terminal).
pub(super) fn in_flight_objects(tenants: &[Tenant]) -> BTreeSet<String> {
    tenants
        .iter()
        .filter_map(|t| {
            let m = move_of(t).filter(|m| !m.phase.is_terminal())?;
            let key = tenantdb::controller::object_key(t);
            let name = tenantdb::moves::object_name(&key, m.started_at.as_deref()?).ok()?;
            Some(name.as_str().to_string())
        })
        .collect()
}

/// Rows of the tenant's `items` on its home (`None`: table not found); for a shared Tenant its
/// audit-log rows.
pub(super) async fn items_on(pg: &Pg, h: &Held, name: &str) -> Option<i64> {
    if h.databases.is_empty() && h.schemas.is_empty() {
        let mut c = admin(pg, "tenantdb_shared").await.ok()?;
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM tenantdb_rls.saas_unified_audit_logs WHERE tenant_id = $1",
        )
        .bind(tenantdb::pg::shared::tenant_id(NS, name))
        .fetch_one(&mut c)
        .await
        .ok();
        let _ = c.close().await;
        return n;
    }
    let (db, table) = match (h.databases.first(), h.schemas.first()) {
        (Some(db), _) => (db.clone(), "public.items".to_string()),
        (None, Some((db, schema))) => (db.clone(), format!("\"{schema}\".items")),
        _ => return None,
    };
    let mut c = admin(pg, &db).await.ok()?;
    let n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut c)
        .await
        .ok();
    let _ = c.close().await;
    n
}

/// The writer's rows on its home: (all n, distinct n).
pub(super) async fn writes_on(pg: &Pg, h: &Held) -> (Vec<i64>, usize) {
    let db = h.databases.first().expect("the writer's database");
    let mut c = admin(pg, db).await.unwrap();
    let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM public.writes ORDER BY n")
        .fetch_all(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;
    let distinct = rows.iter().collect::<BTreeSet<_>>().len();
    (rows, distinct)
}
