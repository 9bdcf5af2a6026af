//! Run flags: shared database and name prefix, environment variables, resync jitter, health-check
//! concurrency and the `crd` command.

use super::*;

/// `--shared-database` and `--name-prefix`: `schema` and `shared` tenants live in the named
/// database (no `tenantdb_shared` is created), every derived name carries the prefix, and the
/// Secrets point at the right database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_database_and_name_prefix_flags() {
    let env = Env::start_with(&[
        "--shared-database",
        "tenants_common",
        "--name-prefix",
        "acme_",
    ])
    .await;
    let ns = "naming";
    for (name, iso) in [("s1", "schema"), ("d1", "database"), ("z1", "shared")] {
        env.create_tenant(ns, name, json!({"isolation": iso})).await;
    }
    for (name, iso) in [("s1", "schema"), ("d1", "database"), ("z1", "shared")] {
        let t = env.wait_ready(ns, name, T).await;
        let st = t.status.unwrap();
        let role = st.role.clone().unwrap();
        assert!(role.starts_with("acme_naming_"), "{name}: role {role}");
        let db = st.database.clone().unwrap();
        match iso {
            "database" => assert!(db.starts_with("acme_naming_d1_"), "{name}: {db}"),
            _ => assert_eq!(db, "tenants_common", "{name}"),
        }
        if iso == "schema" {
            assert!(st.schema.as_deref().unwrap().starts_with("acme_naming_s1_"));
        }
        assert_eq!(
            env.secret_value(ns, &format!("{name}-db"), "database")
                .await
                .as_deref(),
            Some(db.as_str())
        );
        let mut c = env
            .connect_with_secret(ns, &format!("{name}-db"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            scalar_text(&mut c, "SELECT current_database()::text").await,
            db
        );
    }
    let pool = env.admin_pool().await;
    let dbs: BTreeSet<String> = sqlx::query_scalar("SELECT datname::text FROM pg_database")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(dbs.contains("tenants_common"), "{dbs:?}");
    assert!(
        !dbs.contains("tenantdb_shared"),
        "the default shared database was created: {dbs:?}"
    );
    let unprefixed: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenant\\_%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        unprefixed.is_empty(),
        "roles with the default prefix: {unprefixed:?}"
    );
    pool.close().await;
}

/// Every `tenantdb run` flag also reads an environment variable (`TENANTDB_*`, or `POD_NAME` for
/// `--instance`), as README.md says: `run --help` lists one for each.
#[test]
fn every_run_flag_reads_an_environment_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantdb"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut entries: Vec<String> = vec![];
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || t.starts_with("-h, --help") {
            entries.push(t.to_string());
        } else if let Some(last) = entries.last_mut() {
            last.push(' ');
            last.push_str(t);
        }
    }
    let flags: Vec<&String> = entries.iter().filter(|e| !e.contains("--help")).collect();
    assert!(
        flags.len() >= 30,
        "flags found in `run --help`: {}",
        flags.len()
    );
    for e in flags {
        assert!(
            e.contains("[env: TENANTDB_")
                || e.starts_with("--instance") && e.contains("[env: POD_NAME"),
            "no environment variable for: {e}"
        );
    }
}

/// The resync interval carries ±10 % jitter, so that Tenants created together do not resync
/// together.
#[test]
fn resync_interval_is_jittered_by_ten_percent() {
    let s = tenantdb::controller::OperatorSettings {
        resync: Duration::from_secs(100),
        ..Default::default()
    };
    let v: Vec<f64> = (0..2000)
        .map(|_| s.jittered_resync().as_secs_f64())
        .collect();
    let (min, max) = v
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
    assert!(min >= 90.0 && max <= 110.0, "{min}..{max}");
    assert!(
        min < 92.0 && max > 108.0,
        "the whole ±10 % is used: {min}..{max}"
    );
}

/// `--health-concurrency`: at most that many health checks run at once. Each check (the
/// operator's login as the tenant, application_name `tenantdb:<instance>:health`) holds its slot from
/// before its connection until after its `SELECT 1`; with one slot, no check's backend starts
/// between another check's backend start and that check's `SELECT 1` (both times from
/// `pg_stat_activity`, sampled continuously; a backend on its way out after its check does not
/// count, so the number of rows is not the measure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_concurrency_bounds_simultaneous_health_checks() {
    let env = Env::start_with(&[
        "--resync-seconds",
        "1",
        "--health-interval-seconds",
        "1",
        "--health-concurrency",
        "1",
        "--concurrency",
        "8",
    ])
    .await;
    let ns = "hc";
    for i in 0..12 {
        env.create_tenant(ns, &format!("h{i:02}"), json!({"isolation": "schema"}))
            .await;
    }
    for i in 0..12 {
        env.wait_ready(ns, &format!("h{i:02}"), T).await;
    }
    let pool = env.admin_pool().await;
    // A measurement window: 10 s of health checks (12 tenants, each about every second).
    let mut checks: std::collections::BTreeMap<(i32, i64), (f64, f64)> = Default::default();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let rows: Vec<(i32, f64, f64)> = sqlx::query_as(
            "SELECT pid, extract(epoch FROM backend_start)::float8, extract(epoch FROM query_start)::float8 \
             FROM pg_stat_activity WHERE application_name LIKE 'tenantdb:%:health' AND query = 'SELECT 1' \
             AND query_start IS NOT NULL",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for (pid, started, queried) in rows {
            checks.insert((pid, (started * 1e6) as i64), (started, queried));
        }
    }
    let mut spans: Vec<(f64, f64)> = checks.into_values().collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let overlaps = spans.windows(2).filter(|w| w[1].0 < w[0].1).count();
    eprintln!(
        "{} health checks observed, {overlaps} started while another one was running",
        spans.len()
    );
    assert!(
        spans.len() >= 20,
        "too few health checks observed: {}",
        spans.len()
    );
    assert_eq!(
        overlaps, 0,
        "health checks ran at once with --health-concurrency 1"
    );
    pool.close().await;
}

/// `tenantdb crd` prints the CRDs that are in `crds/`; `--out-dir` writes the same files.
#[test]
fn crd_command_prints_and_writes_the_crds_of_the_repository() {
    let bin = env!("CARGO_BIN_EXE_tenantdb");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(bin).arg("crd").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let dir = std::env::temp_dir().join(format!("tenantdb-crd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let st = std::process::Command::new(bin)
        .args(["crd", "--out-dir", dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut files: Vec<_> = std::fs::read_dir(repo.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        let want = std::fs::read_to_string(repo.join("crds").join(f)).unwrap();
        let written = std::fs::read_to_string(dir.join(f))
            .unwrap_or_else(|e| panic!("{f:?} not written: {e}"));
        assert_eq!(written, want, "{f:?} differs from crds/");
        assert!(printed.contains(&want), "{f:?} not printed");
    }
    std::fs::remove_dir_all(&dir).ok();
}
