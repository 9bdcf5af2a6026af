//! Draining a DatabaseServer through the real binary, the emulator and three throwaway clusters:
//! every tenant on it moves to the other servers, never more than `drain.maxConcurrentMoves` at a
//! time, within the other servers' capacity; afterwards the drained server holds nothing of them
//! and reports `Drained=True`. A third of the tenants are `shared` (rows in the layout's tables):
//! two of them may move at once, so one move's publication is dropped while another's exists
//! (the layout's replica identity stays `FULL` until the last one); afterwards each one's tenant
//! row is on its new server only, and the drained server's layout tables have no row of them and
//! their default replica identity.

use tenantdb_testkit::e2e;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::{Env, EnvOptions, wait_for};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantdb::crd::{DatabaseServer, MovePhase, Tenant, TenantPhase};
use tenantdb_testkit::localpg::{LocalPg, LocalPgOptions};

const T: Duration = Duration::from_secs(240);
/// The whole drain (20 moves, 2 at a time; ~60–90 s here). One CI run beside another test binary
/// saw two moves into one target (at PostgreSQL's default 4 logical replication workers) copy a
/// table every ~10 s, ~150 s together, and time out at 240 s: they shared the spare worker, and
/// PostgreSQL retries a table that found no worker only after `wal_retrieve_retry_interval`
/// (5 s). A move now waits for the copying moves' workers instead (`MoveRoom::shortfalls`,
/// docs/moves.md). The claim is the drain's limits and its end, not its speed on a loaded 2-core
/// machine.
const DRAIN_T: Duration = Duration::from_secs(480);
const TENANTS: usize = 20;
const AT_ONCE: usize = 2;

async fn cluster(logical: bool) -> LocalPg {
    tokio::task::spawn_blocking(move || {
        LocalPg::start_with(LocalPgOptions {
            settings: if logical {
                vec![("wal_level".into(), "logical".into())]
            } else {
                vec![]
            },
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("throwaway PostgreSQL")
}

fn on(t: &Tenant) -> Option<String> {
    t.status.as_ref()?.placement.as_ref()?.postgres.clone()
}

fn moving_from(t: &Tenant, server: &str) -> bool {
    t.status
        .as_ref()
        .and_then(|s| s.move_.as_ref())
        .is_some_and(|m| !m.phase.is_terminal() && m.started_at.is_some() && m.from == server)
}

/// The shared tenants' rows in the layout's `saas_tenants` on a server (their codes).
async fn shared_rows(pg: &LocalPg) -> Vec<String> {
    let Ok(mut c) = PgConnection::connect(&pg.url("tenantdb_shared")).await else {
        return vec![];
    };
    sqlx::query_scalar("SELECT tenant_code::text FROM tenantdb_rls.saas_tenants ORDER BY 1")
        .fetch_all(&mut c)
        .await
        .unwrap_or_default()
}

/// Layout tables with `REPLICA IDENTITY FULL` on a server.
async fn full_identity(pg: &LocalPg) -> Vec<String> {
    let mut c = PgConnection::connect(&pg.url("tenantdb_shared"))
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
          WHERE n.nspname = 'tenantdb_rls' AND c.relreplident = 'f'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
}

async fn tenant_roles(pg: &LocalPg) -> Vec<String> {
    let mut c = PgConnection::connect(&pg.admin_url()).await.unwrap();
    sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenant\\_drain\\_%' AND rolname NOT LIKE '%\\_b' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_server_moves_all_its_tenants_away_a_few_at_a_time() {
    let env = Env::start_configured(EnvOptions {
        extra_args: vec![
            "--server-probe-seconds".into(),
            "1".into(),
            "--concurrency".into(),
            "8".into(),
            // The health interval is left at its default (300 s): the drain reaches the settled
            // tenants through the Tenant controller's watch on DatabaseServers, not their next
            // health check.
        ],
        ..Default::default()
    })
    .await;
    let a = cluster(true).await;
    env.add_database_server("a", &a, json!({})).await;
    let servers: Api<DatabaseServer> = Api::all(env.client.clone());
    wait_for(T, "a Ready", || async {
        let st = servers.get("a").await.ok()?.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await
    .unwrap();
    let ns = "drain";
    for i in 0..TENANTS {
        let isolation = ["database", "schema", "shared"][i % 3];
        env.create_tenant(
            ns,
            &format!("t{i}"),
            json!({"isolation": isolation, "deletionPolicy": "Delete",
                   "placement": {"selector": {"matchLabels": {"tier": "standard"}}}}),
        )
        .await;
    }
    for i in 0..TENANTS {
        let t = env.wait_ready(ns, &format!("t{i}"), T).await;
        assert_eq!(on(&t).as_deref(), Some("a"));
    }
    // Each shared tenant's own row, through its Secret.
    let shared: Vec<String> = (0..TENANTS)
        .filter(|i| i % 3 == 2)
        .map(|i| format!("t{i}"))
        .collect();
    for n in &shared {
        let mut c = env
            .connect_with_secret(ns, &format!("{n}-db"))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), $1, $1)",
        )
        .bind(n)
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    // Two more servers with room for exactly the tenants of a.
    let (b, c) = (cluster(false).await, cluster(false).await);
    let half = (TENANTS / 2) as i64;
    env.add_database_server("b", &b, json!({"maxTenants": half}))
        .await;
    env.add_database_server("c", &c, json!({"maxTenants": half}))
        .await;
    for s in ["b", "c"] {
        wait_for(T, &format!("{s} Ready"), || async {
            let st = servers.get(s).await.ok()?.status?;
            st.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        })
        .await
        .unwrap();
    }

    servers
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"drain": {"maxConcurrentMoves": AT_ONCE}}})),
        )
        .await
        .unwrap();
    let api = env.tenants(ns);
    let most = std::sync::atomic::AtomicUsize::new(0);
    let per_server = wait_for(DRAIN_T, "every tenant moved off a", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let moving = list.items.iter().filter(|t| moving_from(t, "a")).count();
        most.fetch_max(moving, std::sync::atomic::Ordering::Relaxed);
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for t in &list.items {
            let done = t.status.as_ref().is_some_and(|s| {
                s.phase == TenantPhase::Ready
                    && s.move_
                        .as_ref()
                        .is_some_and(|m| m.phase == MovePhase::Completed)
            });
            if !done {
                return None;
            }
            *per.entry(on(t)?).or_default() += 1;
        }
        (!per.contains_key("a")).then_some(per)
    })
    .await;
    let per_server = match per_server {
        Ok(p) => p,
        Err(e) => {
            let list = api.list(&ListParams::default()).await.unwrap();
            let moves: Vec<String> = list
                .items
                .iter()
                .map(|t| {
                    format!(
                        "{:?}: {:?}",
                        t.metadata.name,
                        t.status.as_ref().and_then(|s| s.move_.as_deref().cloned())
                    )
                })
                .collect();
            panic!("{e}\n{}\n{}", moves.join("\n"), env.important_log_tail(60))
        }
    };
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    println!("drained: {per_server:?}, at most {most} moves at once");
    assert!(most <= AT_ONCE, "{most} moves at once (limit {AT_ONCE})");
    assert_eq!(
        per_server,
        [
            ("b".to_string(), TENANTS / 2),
            ("c".to_string(), TENANTS / 2)
        ]
        .into()
    );
    // The drained server holds nothing of them; the others hold exactly theirs.
    assert!(
        tenant_roles(&a).await.is_empty(),
        "{:?}",
        tenant_roles(&a).await
    );
    assert_eq!(tenant_roles(&b).await.len(), TENANTS / 2);
    assert_eq!(tenant_roles(&c).await.len(), TENANTS / 2);
    // The shared tenants' rows: each on its new server once, none left on a.
    let by_server = [("a", &a), ("b", &b), ("c", &c)];
    let mut rows: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, pg) in by_server {
        rows.insert(name, shared_rows(pg).await);
    }
    let list = api.list(&ListParams::default()).await.unwrap();
    for n in &shared {
        let t = list
            .items
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(n.as_str()))
            .unwrap();
        let home = on(t).unwrap();
        for (server, found) in &rows {
            let here = found.iter().filter(|r| *r == n).count();
            assert_eq!(
                here,
                usize::from(*server == home),
                "{n}'s row on {server} (home {home}): {rows:?}"
            );
        }
    }
    assert_eq!(
        full_identity(&a).await,
        Vec::<String>::new(),
        "REPLICA IDENTITY FULL left on the drained server"
    );
    wait_for(T, "a Drained", || async {
        let st = servers.get("a").await.ok()?.status?;
        (st.tenants == 0
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Drained" && c.status == "True"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
}
