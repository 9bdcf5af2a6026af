//! End-to-end quoting: Tenants whose explicit `databaseName` is a reserved SQL keyword (`user`,
//! `select`, `order`) in each isolation mode (`database`, `schema`, `shared`), provisioned by the
//! real `tenantdb` binary, logged into, rotated (`tenantdb.io/rotate`), migrated by a
//! TenantMigration, measured (`status.usage`), left idle (no step applied once converged) and
//! deleted (policy `Delete`: nothing left in the catalogs). With MongoDB (stand-in or
//! `TENANTDB_TEST_MONGO_URI`) the same names are their MongoDB database and user: login, write,
//! dropped on deletion. The PostgreSQL server runs with `log_statement = 'all'`: no statement may
//! carry one of these names as a bare word (`testkit/src/sql_scan.rs`), and no statement may fail.

use tenantdb_testkit::e2e;
use tenantdb_testkit::mongo;
use tenantdb_testkit::reliability;
use tenantdb_testkit::sql_scan;

use std::time::Duration;

use e2e::{Env, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mongodb::bson::doc;
use reliability::{login, op_tail};
use serde_json::json;
use sqlx::Executor;
use tenantdb::crd::{MigrationPhase, Tenant, TenantMigration, TenantMigrationState};

const T: Duration = Duration::from_secs(90);
const KEYWORDS: [&str; 3] = ["user", "select", "order"];
const MIGRATION: i64 = 29990101000001;

async fn create(env: &Env, ns: &str, name: &str, isolation: &str, mongo: bool) {
    env.ensure_namespace(ns).await;
    let mut spec = json!({
        "isolation": isolation,
        "databaseName": name,
        "deletionPolicy": "Delete",
        "credentials": {"gracePeriod": "1h"},
    });
    if !mongo {
        spec["mongodb"] = json!({"enabled": false});
    }
    let t: Tenant = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name, "namespace": ns, "labels": {"quoting": "keyword"}},
        "spec": spec,
    }))
    .unwrap();
    env.tenants(ns)
        .create(&PostParams::default(), &t)
        .await
        .unwrap();
}

/// Counts the operator's `applying` lines (one per applied step) and `reconciled` lines in a log
/// segment.
fn applied_and_reconciled(log: &str) -> (Vec<String>, usize) {
    let applied = log
        .lines()
        .filter(|l| l.contains("\"applying\""))
        .map(String::from)
        .collect();
    (applied, log.matches("\"reconciled\"").count())
}

async fn roles_databases_schemas(env: &Env, name: &str) -> (i64, i64, i64) {
    let pool = env.admin_pool().await;
    let roles: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $1 || '_b')")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
    let dbs: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
    // The shared database exists once a `schema` or `shared` tenant was provisioned.
    let schemas: i64 = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&env.pg.url("tenantdb_shared"))
        .await
    {
        Ok(shared) => sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(name)
            .fetch_one(&shared)
            .await
            .unwrap(),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => 0,
        Err(e) => panic!("connecting to tenantdb_shared: {e}"),
    };
    (roles, dbs, schemas)
}

/// One isolation mode: the three keyword tenants through their whole life.
async fn keyword_tenants(env: &Env, isolation: &str, mongo: Option<&mongo::MongoServer>) {
    let ns = format!("kw-{isolation}");
    for name in KEYWORDS {
        create(env, &ns, name, isolation, mongo.is_some()).await;
    }
    for name in KEYWORDS {
        let t = env.wait_ready(&ns, name, T).await;
        let st = t.status.unwrap();
        assert_eq!(st.role.as_deref(), Some(name), "{isolation}/{name}");
        let (db, schema) = match isolation {
            "database" => (name, "public"),
            "schema" => ("tenantdb_shared", name),
            _ => ("tenantdb_shared", "tenantdb_rls"),
        };
        assert_eq!(st.database.as_deref(), Some(db), "{isolation}/{name}");
        assert_eq!(st.schema.as_deref(), Some(schema), "{isolation}/{name}");
        // Logs in with the Secret and works in its own schema.
        let secret = format!("{name}-db");
        let mut c = env
            .connect_with_secret(&ns, &secret)
            .await
            .unwrap_or_else(|e| panic!("{isolation}/{name}: login: {e}"));
        let current: String = sqlx::query_scalar("SELECT current_schema()::text")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(current, schema, "{isolation}/{name}: search_path");
        if isolation == "shared" {
            for sql in [
                "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES (tenantdb_current_tenant(), current_user, current_user)",
                "INSERT INTO saas_unified_audit_logs (tenant_id, log_type, module, action) \
                 SELECT tenantdb_current_tenant(), 'operation', 'ai', 'create' FROM generate_series(1, 20)",
            ] {
                c.execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{isolation}/{name}: {sql}: {e}"));
            }
        } else {
            c.execute("CREATE TABLE kw_own (id int)").await.unwrap();
            c.execute("INSERT INTO kw_own VALUES (1)").await.unwrap();
        }
        if mongo.is_some() {
            let m = st.mongodb.clone().expect("status.mongodb");
            assert_eq!(m.database, name, "MongoDB database of {isolation}/{name}");
            let uri = env
                .secret_value(&ns, &secret, "mongodbUri")
                .await
                .expect("mongodbUri");
            let client = mongo::connect(&uri).await.unwrap();
            client
                .database(name)
                .collection::<mongodb::bson::Document>("kw_probe")
                .insert_one(doc! {"tenant": name})
                .await
                .unwrap_or_else(|e| panic!("{isolation}/{name}: MongoDB write: {e}"));
        }
    }

    // Measured: usage reported (rows/tables written above).
    for name in KEYWORDS {
        wait_for(
            T,
            &format!("{isolation}/{name}: usage measured"),
            || async {
                let t = env.tenants(&ns).get(name).await.ok()?;
                let u = t.status?.usage?;
                (u.storage_bytes > 0).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)));
    }

    // Rotated: the Secret moves to `<name>_b`; both logins work during the grace period.
    for name in KEYWORDS {
        let secret = format!("{name}-db");
        let old = env.secret_value(&ns, &secret, "password").await.unwrap();
        env.tenants(&ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "kw"}}})),
            )
            .await
            .unwrap();
        let user = wait_for(T, &format!("{isolation}/{name} rotated"), || async {
            let v = env
                .secret_values(&ns, &secret, &["username", "password"])
                .await?;
            (v[1] != old).then(|| v[0].clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)));
        assert_eq!(user, format!("{name}_b"));
        let db = env.secret_value(&ns, &secret, "database").await.unwrap();
        wait_for(T, &format!("{isolation}/{name}_b logs in"), || async {
            env.connect_with_secret(&ns, &secret).await.ok()
        })
        .await
        .unwrap();
        login(env, &db, name, &old)
            .await
            .unwrap_or_else(|e| panic!("{isolation}/{name}: old login in grace period: {e}"));
    }

    // Migrated by a TenantMigration (shared tenants are migrated with the shared layout: skipped).
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kw-migration", "namespace": ns},
        "data": {
            format!("{MIGRATION}_kw_probe.up.sql"): "CREATE TABLE kw_migrated (id int);",
            format!("{MIGRATION}_kw_probe.down.sql"): "DROP TABLE kw_migrated;",
        },
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(env.client.clone(), &ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let tm: TenantMigration = serde_json::from_value(json!({
        "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
        "metadata": {"name": "kw", "namespace": ns},
        "spec": {
            "target": {"selector": {"matchLabels": {"quoting": "keyword"}}},
            "source": {"configMap": {"name": "kw-migration"}},
        },
    }))
    .unwrap();
    let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), &ns);
    tms.create(&PostParams::default(), &tm).await.unwrap();
    let want = if isolation == "shared" {
        TenantMigrationState::Skipped
    } else {
        TenantMigrationState::Succeeded
    };
    let tm = wait_for(T, &format!("{isolation}: TenantMigration done"), || async {
        let tm = tms.get("kw").await.ok()?;
        let st = tm.status.as_ref()?;
        let all = KEYWORDS
            .iter()
            .all(|n| st.tenants.iter().any(|e| e.name == *n && e.state == want));
        (all && (isolation == "shared" || st.phase == MigrationPhase::Succeeded)).then_some(tm)
    })
    .await
    .unwrap_or_else(|e| {
        let st = futures::executor::block_on(tms.get("kw"))
            .ok()
            .and_then(|t| t.status);
        panic!("{e}: {st:#?}{}", op_tail(env))
    });
    let st = tm.status.unwrap();
    assert_eq!(st.failed, 0, "{st:#?}");
    if isolation != "shared" {
        for name in KEYWORDS {
            let t = env.tenants(&ns).get(name).await.unwrap();
            assert_eq!(t.status.unwrap().schema_version, Some(MIGRATION), "{name}");
            let mut c = env
                .connect_with_secret(&ns, &format!("{name}-db"))
                .await
                .unwrap();
            let found: Option<String> = sqlx::query_scalar(
                "SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.oid = to_regclass('kw_migrated')",
            )
            .fetch_optional(&mut c)
            .await
            .unwrap();
            let schema = if isolation == "database" {
                "public"
            } else {
                name
            };
            assert_eq!(
                found.as_deref(),
                Some(schema),
                "{isolation}/{name}: migrated table in the tenant's own schema"
            );
        }
    }

    // Converged: idle resyncs apply no step (a keyword name read back quoted by PostgreSQL must
    // not look like drift).
    let from = env.operator_log().len();
    wait_for(T, &format!("{isolation}: idle resyncs"), || {
        let log = env.operator_log();
        let (_, n) = applied_and_reconciled(&log[from.min(log.len())..]);
        async move { (n >= 3 * KEYWORDS.len()).then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}{}", op_tail(env)));
    let log = env.operator_log();
    let (applied, _) = applied_and_reconciled(&log[from..]);
    assert!(
        applied.is_empty(),
        "{isolation}: converged tenants applied steps on resync:\n{}",
        applied.join("\n")
    );

    // Deleted: nothing left.
    for name in KEYWORDS {
        env.delete_tenant(&ns, name).await;
    }
    for name in KEYWORDS {
        env.wait_gone(&ns, name, T).await;
        assert_eq!(
            roles_databases_schemas(env, name).await,
            (0, 0, 0),
            "{isolation}/{name}: roles, databases, schemas left"
        );
    }
    if let Some(server) = mongo {
        let admin = mongo::connect(&server.admin_uri).await.unwrap();
        let dbs = admin.list_database_names().await.unwrap();
        for name in KEYWORDS {
            assert!(
                !dbs.iter().any(|d| d == name),
                "{isolation}/{name}: MongoDB database left: {dbs:?}"
            );
        }
    }
    eprintln!("{isolation}: user, select, order provisioned, rotated, migrated, measured, deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_database_names_live_and_die_in_every_mode() {
    let server = mongo::server("keyword_database_names_live_and_die_in_every_mode (MongoDB part)");
    let mut args = vec![
        "--resync-seconds".to_string(),
        "1".into(),
        "--usage-interval-seconds".into(),
        "1".into(),
    ];
    if let Some(s) = server {
        args.extend([
            "--mongodb-uri".into(),
            s.admin_uri.clone(),
            "--mongodb-host".into(),
            s.host.clone(),
            "--mongodb-port".into(),
            s.port.to_string(),
        ]);
    }
    // Keyword names (`user`, `select`, `order`) are explicit names outside any namespace prefix:
    // the operator allows them with `--explicit-names any`.
    args.extend(["--explicit-names".into(), "any".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = Env::start_with(&args).await;
    reliability::log_all_statements(&env).await;
    let mark = env.pg.log().len();
    for isolation in ["database", "schema", "shared"] {
        keyword_tenants(&env, isolation, server).await;
    }
    let pg_log = env.pg.log()[mark..].to_string();
    let errors: Vec<&str> = pg_log.lines().filter(|l| l.contains("ERROR:")).collect();
    assert!(
        errors.is_empty(),
        "statements failed:\n{}",
        errors.join("\n")
    );
    let mut bare = vec![];
    let stmts = sql_scan::logged_statements(&pg_log);
    let scanned = stmts.len();
    for st in &stmts {
        let words = sql_scan::bare_identifiers(st, &KEYWORDS).unwrap_or_else(|e| panic!("{e}"));
        if !words.is_empty() {
            bare.push(format!("{words:?}: {st}"));
        }
    }
    assert!(scanned > 100, "statement logging: {scanned} statements");
    assert!(
        bare.is_empty(),
        "unquoted keyword names:\n{}",
        bare.join("\n")
    );
    eprintln!("{scanned} logged statements scanned");
}
