//! Hostile TenantMigrations (issue: trust boundary). A namespace user who may edit a ConfigMap
//! behind a TenantMigration writes migration SQL; the operator runs it **logged in as the
//! tenant's own role**, so whatever the SQL does it has the tenant's rights and nothing more.
//!
//! Through the real `tenantdb` binary and the API server emulator, against a real PostgreSQL 15:
//! attacker Tenants (`schema` and `database` isolation, one of them also after a rotation, logged
//! in as its `_b` role) get one TenantMigration per hostile file; victim Tenants of all three
//! isolation modes hold data. After every case:
//!
//! - the TenantMigration reports the attacker `Failed` with the PostgreSQL error that stopped it
//!   (or `Succeeded` when the statement is harmless within the tenant's own rights — each such
//!   case says why);
//! - the set of roles, their attributes and memberships, the databases, and every object and
//!   every row outside the attacker's own schema/database are unchanged (catalog and data
//!   snapshot of the whole cluster, taken as the superuser);
//! - no file was written by the server (`COPY … TO PROGRAM`, `COPY … TO 'file'`), no large
//!   object imported, `postgresql.auto.conf` unchanged (`ALTER SYSTEM`).
//!
//! Without the fix (migration SQL on the admin session under `SET LOCAL ROLE`), the first cases
//! (`RESET ROLE; CREATE ROLE … SUPERUSER`, `COPY … TO PROGRAM`) succeed and this test fails.

use tenantdb_testkit::e2e;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use e2e::{Env, tail, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Row};
use tenantdb::crd::{MigrationPhase, TenantMigration, TenantMigrationState};

const T: Duration = Duration::from_secs(90);
const ATK: &str = "attacker";
const VIC: &str = "victims";
/// Versions of the hostile files: above the bundled baseline.
const BASE_VERSION: i64 = 20260101000000;

/// What a case must end as.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The tenant `Failed`; the message contains one of these (PostgreSQL's words).
    Failed(&'static [&'static str]),
    /// The tenant `Succeeded`: harmless within the tenant's own rights, for this reason.
    Succeeded(&'static str),
    /// The TenantMigration is `InvalidSpec` before anything runs: the file holds transaction
    /// control at the start of a statement (`src/migrate/lexer.rs`).
    Refused,
}

struct Case {
    name: &'static str,
    sql: String,
    expect: Expect,
}

/// Names the hostile SQL refers to.
struct Targets {
    me: String,
    victim_schema: String,
    victim_schema_role: String,
    victim_db: String,
    victim_shared_id: String,
    marker: String,
}

const DENIED: &[&str] = &["permission denied"];
/// `CREATE ROLE … SUPERUSER` by a non-superuser stops at the superuser check, a plain one at
/// the CREATEROLE check.
const CREATE_ROLE: &[&str] = &[
    "must be superuser to create superusers",
    "permission denied to create role",
];
/// `ALTER SYSTEM` and `DROP DATABASE` cannot run in a transaction, and every migration file runs
/// in the engine's transaction (an explicit `COMMIT`/`ROLLBACK` in a multi-statement file leaves
/// the rest of the file in an implicit one): PostgreSQL refuses them before it even checks the
/// privilege a tenant lacks anyway.
const NO_TX: &[&str] = &[
    "cannot run inside a transaction block",
    "must be superuser",
    "must be owner",
];
const SUPERUSER: &[&str] = &["must be superuser", "permission denied"];

fn cases(t: &Targets) -> Vec<Case> {
    let Targets {
        me,
        victim_schema: vs,
        victim_schema_role: vr,
        victim_db: vd,
        victim_shared_id: vid,
        marker: m,
    } = t;
    let c = |name, sql: String, expect| Case { name, sql, expect };
    vec![
        c(
            "whoami",
            "CREATE TABLE whoami AS SELECT session_user::text AS login, current_user::text AS acting, current_setting('is_superuser') AS su".into(),
            Expect::Succeeded("records who the migration runs as: the tenant, not a superuser"),
        ),
        c(
            "reset_role_then_create_superuser",
            "RESET ROLE; CREATE ROLE hostile_su SUPERUSER LOGIN PASSWORD 'x'".into(),
            Expect::Failed(CREATE_ROLE),
        ),
        c(
            // The review's exploit: act as the session user, then put the role back so that a
            // check after the file sees nothing.
            "reset_role_act_and_restore",
            format!(
                "RESET ROLE; CREATE ROLE hostile_i SUPERUSER LOGIN PASSWORD 'x'; \
                 SELECT set_config('role', '{me}', true)"
            ),
            Expect::Failed(CREATE_ROLE),
        ),
        c(
            "set_role_admin",
            "SET ROLE postgres; CREATE ROLE hostile_a SUPERUSER".into(),
            Expect::Failed(&["permission denied to set role"]),
        ),
        c(
            "set_config_role",
            "SELECT set_config('role', 'postgres', true); CREATE ROLE hostile_b SUPERUSER".into(),
            Expect::Failed(&["permission denied to set role"]),
        ),
        c(
            "set_session_authorization",
            "SET SESSION AUTHORIZATION postgres; CREATE ROLE hostile_c SUPERUSER".into(),
            Expect::Failed(&["permission denied to set session authorization"]),
        ),
        c(
            "commit_then_create_role",
            "COMMIT; CREATE ROLE hostile_d SUPERUSER".into(),
            Expect::Refused,
        ),
        c(
            "rollback_then_alter_system",
            "ROLLBACK; ALTER SYSTEM SET log_statement = 'none'".into(),
            Expect::Refused,
        ),
        c(
            "do_block_execute_reset_role",
            "DO $$ BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'CREATE ROLE hostile_e SUPERUSER'; END $$"
                .into(),
            Expect::Failed(CREATE_ROLE),
        ),
        c(
            "copy_to_program",
            format!("COPY (SELECT 1) TO PROGRAM 'touch {m}.program'"),
            Expect::Failed(&["pg_execute_server_program", "must be superuser"]),
        ),
        c(
            "copy_from_program",
            "CREATE TABLE loot (t text); COPY loot FROM PROGRAM 'id'".into(),
            Expect::Failed(&["pg_execute_server_program", "must be superuser"]),
        ),
        c(
            "copy_to_server_file",
            format!("COPY (SELECT 1) TO '{m}.file'"),
            Expect::Failed(&["pg_write_server_files", "must be superuser"]),
        ),
        c(
            "pg_read_file",
            "SELECT pg_read_file('/etc/passwd')".into(),
            Expect::Failed(&["permission denied for function pg_read_file"]),
        ),
        c(
            "lo_import",
            "SELECT lo_import('/etc/passwd')".into(),
            Expect::Failed(&["permission denied for function lo_import"]),
        ),
        c(
            "create_role_superuser",
            "CREATE ROLE hostile_f SUPERUSER".into(),
            Expect::Failed(CREATE_ROLE),
        ),
        c(
            "create_role_plain",
            "CREATE ROLE hostile_plain LOGIN PASSWORD 'x'".into(),
            Expect::Failed(&["permission denied to create role"]),
        ),
        c(
            "create_schema_in_shared_database",
            "CREATE SCHEMA hostile_schema".into(),
            Expect::Failed(&["permission denied for database"]),
        ),
        c(
            "alter_self_superuser",
            format!("ALTER ROLE \"{me}\" SUPERUSER"),
            Expect::Failed(SUPERUSER),
        ),
        c(
            "alter_self_createrole",
            format!("ALTER ROLE \"{me}\" CREATEROLE"),
            Expect::Failed(DENIED),
        ),
        c(
            "alter_self_bypassrls",
            format!("ALTER ROLE \"{me}\" BYPASSRLS"),
            Expect::Failed(SUPERUSER),
        ),
        c(
            "grant_own_role_to_other",
            format!("GRANT \"{me}\" TO \"{vr}\""),
            Expect::Failed(&["must have admin option"]),
        ),
        c(
            "set_role_other_tenant",
            format!("SET ROLE \"{vr}\""),
            Expect::Failed(&["permission denied to set role"]),
        ),
        c(
            "read_other_schema",
            format!("CREATE TABLE stolen AS SELECT * FROM \"{vs}\".saas_tenants"),
            Expect::Failed(&["permission denied for schema"]),
        ),
        c(
            "write_other_schema",
            format!(
                "INSERT INTO \"{vs}\".saas_tenants (id, tenant_code, tenant_name) VALUES ('x', 'x', 'x')"
            ),
            Expect::Failed(&["permission denied for schema"]),
        ),
        c(
            "read_shared_tables",
            "CREATE TABLE stolen_shared AS SELECT * FROM tenantdb_rls.saas_tenants".into(),
            Expect::Failed(&["permission denied for schema tenantdb_rls"]),
        ),
        c(
            "write_shared_tables",
            format!(
                "INSERT INTO tenantdb_rls.saas_tenants (id, tenant_code, tenant_name) VALUES ('{vid}', 'x', 'x')"
            ),
            Expect::Failed(&["permission denied for schema tenantdb_rls"]),
        ),
        c(
            "call_rls_helper",
            "SELECT tenantdb_rls.tenantdb_current_tenant()".into(),
            Expect::Failed(&["permission denied for schema tenantdb_rls"]),
        ),
        c(
            "create_untrusted_extension",
            "CREATE EXTENSION file_fdw".into(),
            Expect::Failed(&["permission denied to create extension"]),
        ),
        c(
            "alter_system",
            "ALTER SYSTEM SET shared_preload_libraries = 'x'".into(),
            Expect::Failed(NO_TX),
        ),
        c(
            "drop_other_database",
            format!("COMMIT; DROP DATABASE \"{vd}\""),
            Expect::Refused,
        ),
        c(
            "drop_other_schema",
            format!("DROP SCHEMA \"{vs}\" CASCADE"),
            Expect::Failed(&["must be owner of schema"]),
        ),
        c(
            "terminate_operator_sessions",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres'"
                .into(),
            Expect::Failed(&["permission denied to terminate process", "must be a superuser"]),
        ),
        c(
            "client_settings_then_read",
            format!(
                "SELECT set_config('app.tenant_id', '{vid}', false); \
                 SELECT set_config('search_path', '{vs}, tenantdb_rls', false); \
                 CREATE TABLE \"{me}\".after_settings (id int)"
            ),
            Expect::Succeeded(
                "settings grant nothing: row-level security is keyed on the login role and \
                 schema privileges do not depend on search_path",
            ),
        ),
        c(
            "reset_role_as_owner",
            "RESET ROLE; CREATE TABLE after_reset (id int)".into(),
            Expect::Succeeded(
                "logged in as the owner itself, RESET ROLE returns to the owner: a no-op",
            ),
        ),
    ]
}

/// Cases for a `database` tenant (its own database: what its owner may do there).
fn database_cases(t: &Targets) -> Vec<Case> {
    let Targets {
        me,
        victim_db: vd,
        marker: m,
        ..
    } = t;
    let c = |name, sql: String, expect| Case { name, sql, expect };
    vec![
        c(
            "db_reset_role_then_create_superuser",
            "RESET ROLE; CREATE ROLE hostile_g SUPERUSER".into(),
            Expect::Failed(CREATE_ROLE),
        ),
        c(
            "db_copy_to_program",
            format!("COPY (SELECT 1) TO PROGRAM 'touch {m}.dbprogram'"),
            Expect::Failed(&["pg_execute_server_program", "must be superuser"]),
        ),
        c(
            "db_create_untrusted_extension",
            "CREATE EXTENSION file_fdw".into(),
            Expect::Failed(&["permission denied to create extension"]),
        ),
        c(
            "db_drop_other_database",
            format!("COMMIT; DROP DATABASE \"{vd}\""),
            Expect::Refused,
        ),
        c(
            "db_alter_self_superuser",
            format!("ALTER ROLE \"{me}\" SUPERUSER"),
            Expect::Failed(SUPERUSER),
        ),
        c(
            "db_trusted_extension",
            "CREATE EXTENSION pgcrypto".into(),
            Expect::Succeeded(
                "a trusted extension in the tenant's own database: PostgreSQL lets a database \
                 owner install it, and it reaches nothing outside that database",
            ),
        ),
    ]
}

/// Cases for a tenant logged in as its rotation role `<role>_b` (after a rotation).
fn rotated_cases() -> Vec<Case> {
    vec![
        Case {
            name: "rotated_reset_role_then_create_superuser",
            sql: "RESET ROLE; CREATE ROLE hostile_h SUPERUSER".into(),
            expect: Expect::Failed(CREATE_ROLE),
        },
        Case {
            name: "rotated_reset_role",
            sql: "RESET ROLE; CREATE TABLE after_reset_b (id int)".into(),
            expect: Expect::Succeeded(
                "the rotation role's sessions act as the owner (role setting `role = <owner>`): \
                 RESET ROLE returns to that, a no-op",
            ),
        },
        Case {
            name: "rotated_set_role_none",
            sql: "SET ROLE NONE; CREATE TABLE made_by_b (id int)".into(),
            // SET ROLE NONE acts as the `_b` login itself, whose objects would not belong to the
            // owner: the engine's guard refuses it (bookkeeping, not security: `_b` has the same
            // rights as the owner).
            expect: Expect::Failed(&["changed the role"]),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Snapshot of everything a tenant must not be able to change
// ---------------------------------------------------------------------------------------------

async fn su(env: &Env, db: &str) -> PgConnection {
    PgConnection::connect(&env.pg.url(db)).await.unwrap()
}

async fn rows(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    conn.fetch_all(AssertSqlSafe(sql.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

/// Roles, databases, server files and settings; then per database (all but `skip_db`) every
/// object and every row outside `skip_schema`.
async fn snapshot(env: &Env, skip_db: &str, skip_schema: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut c = su(env, "postgres").await;
    for r in rows(
        &mut c,
        // The operator's own owner roles log in on demand (a one-time password, `LOGIN` for a
        // moment: docs/security.md "Who runs which SQL"), e.g. for the shared layout's partition
        // maintenance at any time during this test: that flip is not the attacker's.
        "SELECT format('%s su=%s inh=%s cr=%s cdb=%s login=%s repl=%s bypass=%s conn=%s in=%s', \
         r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, \
         CASE WHEN r.rolname IN ('tenantdb_rls_owner', 'tenantdb_template_owner') THEN 'on-demand' ELSE r.rolcanlogin::text END, \
         r.rolreplication, r.rolbypassrls, r.rolconnlimit, \
         (SELECT string_agg(m.roleid::regrole::text, ',' ORDER BY 1) FROM pg_auth_members m WHERE m.member = r.oid)) \
         FROM pg_roles r ORDER BY 1",
    )
    .await
    {
        out.insert(format!("role {r}"), String::new());
    }
    let dbs = rows(
        &mut c,
        "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY 1",
    )
    .await;
    for r in rows(
        &mut c,
        &format!(
            "SELECT format('%s owner=%s acl=%s conn=%s', datname, datdba::regrole, datacl, datconnlimit) \
             FROM pg_database WHERE datname <> '{skip_db}' ORDER BY 1"
        ),
    )
    .await
    {
        out.insert(format!("database {r}"), String::new());
    }
    out.insert(
        "postgresql.auto.conf".into(),
        rows(&mut c, "SELECT pg_read_file('postgresql.auto.conf')")
            .await
            .join(""),
    );
    out.insert(
        "large objects".into(),
        rows(&mut c, "SELECT count(*)::text FROM pg_largeobject_metadata")
            .await
            .join(""),
    );
    for db in dbs.iter().filter(|d| *d != skip_db) {
        let mut c = su(env, db).await;
        let skip = format!(
            "n.nspname NOT IN ('pg_catalog', 'information_schema', '{skip_schema}') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
        );
        let objects = format!(
            "SELECT format('schema %s owner=%s acl=%s', n.nspname, n.nspowner::regrole, n.nspacl) FROM pg_namespace n WHERE {skip} \
             UNION ALL SELECT format('rel %s.%s kind=%s owner=%s acl=%s rls=%s/%s', n.nspname, c.relname, c.relkind, c.relowner::regrole, c.relacl, c.relrowsecurity, c.relforcerowsecurity) \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {skip} \
             UNION ALL SELECT format('proc %s.%s owner=%s secdef=%s acl=%s src=%s', n.nspname, p.oid::regprocedure, p.proowner::regrole, p.prosecdef, p.proacl, md5(p.prosrc)) \
               FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {skip} \
             UNION ALL SELECT format('policy %s on %s.%s %s', p.polname, n.nspname, c.relname, md5(COALESCE(pg_get_expr(p.polqual, p.polrelid), '') || COALESCE(pg_get_expr(p.polwithcheck, p.polrelid), ''))) \
               FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {skip} \
             UNION ALL SELECT format('trigger %s on %s.%s', t.tgname, n.nspname, c.relname) \
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {skip} \
             UNION ALL SELECT format('extension %s owner=%s', e.extname, e.extowner::regrole) FROM pg_extension e \
             UNION ALL SELECT format('event trigger %s', evtname) FROM pg_event_trigger \
             UNION ALL SELECT format('publication %s', pubname) FROM pg_publication"
        );
        for r in rows(&mut c, &objects).await {
            out.insert(format!("{db}: {r}"), String::new());
        }
        let tables = rows(
            &mut c,
            &format!(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' AND {skip} ORDER BY 1"
            ),
        )
        .await;
        for t in tables {
            let sum = rows(
                &mut c,
                &format!(
                    "SELECT md5(COALESCE(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {t} x"
                ),
            )
            .await
            .join("");
            out.insert(format!("{db}: data {t}"), sum);
        }
    }
    out
}

fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{k}: {:?} -> {:?}",
                before.get(k).map(|v| &v[..v.len().min(80)]),
                after.get(k).map(|v| &v[..v.len().min(80)])
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Driving TenantMigrations
// ---------------------------------------------------------------------------------------------

struct Attacker<'a> {
    env: &'a Env,
    tenant: &'static str,
    /// Files that succeeded so far (each later set must contain them, or the history would hold
    /// versions the set does not know).
    applied: Vec<(String, String)>,
    next: i64,
}

impl Attacker<'_> {
    async fn run(&mut self, case: &Case) -> (TenantMigrationState, String) {
        let env = self.env;
        self.next += 1;
        let version = BASE_VERSION + self.next;
        let file = format!("{version}_{}.up.sql", case.name);
        let name = format!("hostile-{}", self.next);
        let mut data: BTreeMap<String, String> = self.applied.iter().cloned().collect();
        data.insert(file.clone(), case.sql.clone());
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ATK},
            "data": data,
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(env.client.clone(), ATK)
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
        let tms: Api<TenantMigration> = Api::namespaced(env.client.clone(), ATK);
        let tm: TenantMigration = serde_json::from_value(json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "TenantMigration",
            "metadata": {"name": name, "namespace": ATK},
            "spec": {
                "target": {"tenant": self.tenant},
                "source": {"configMap": {"name": name}},
                "targetVersion": version,
                "strategy": {"failureBudget": 0},
            },
        }))
        .unwrap();
        tms.create(&PostParams::default(), &tm).await.unwrap();
        let tenant = self.tenant;
        let done = wait_for(T, &format!("{name} ({}) settled", case.name), || {
            let tms = tms.clone();
            let name = name.clone();
            async move {
                let tm = tms.get_opt(&name).await.ok().flatten()?;
                let st = tm.status?;
                if let Some(c) = st.conditions.iter().find(|c| {
                    c.type_ == "Failed" && c.status == "True" && c.reason == "InvalidSpec"
                }) {
                    return Some((
                        TenantMigrationState::Failed,
                        format!("refused: {}", c.message),
                    ));
                }
                let settled = st.observed_generation == tm.metadata.generation
                    && matches!(st.phase, MigrationPhase::Succeeded | MigrationPhase::Failed);
                let entry = st.tenants.into_iter().find(|e| e.name == tenant)?;
                (settled
                    && matches!(
                        entry.state,
                        TenantMigrationState::Succeeded | TenantMigrationState::Failed
                    ))
                .then_some((entry.state, entry.message.unwrap_or_default()))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&env.operator_log(), 40)));
        tms.delete(&name, &DeleteParams::default()).await.unwrap();
        if done.0 == TenantMigrationState::Succeeded {
            self.applied.push((file, case.sql.clone()));
        }
        done
    }
}

async fn exec_as(env: &Env, ns: &str, tenant: &str, sql: &str) {
    let mut c = env
        .connect_with_secret(ns, &format!("{tenant}-db"))
        .await
        .unwrap();
    c.execute(AssertSqlSafe(sql.to_string()))
        .await
        .unwrap_or_else(|e| panic!("{tenant}: {sql}: {e}"));
}

async fn status_field(
    env: &Env,
    ns: &str,
    name: &str,
    f: fn(&tenantdb::crd::TenantStatus) -> Option<String>,
) -> String {
    let t = env.tenants(ns).get(name).await.unwrap();
    t.status.as_ref().and_then(f).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_migrations_cannot_escape_the_tenant() {
    let env = Env::start_with(&["--resync-seconds", "30"]).await;
    env.ensure_namespace(ATK).await;
    env.ensure_namespace(VIC).await;
    for (ns, name, iso) in [
        (ATK, "atk-schema", "schema"),
        (ATK, "atk-db", "database"),
        (ATK, "atk-rotated", "schema"),
        (VIC, "vic-schema", "schema"),
        (VIC, "vic-db", "database"),
        (VIC, "vic-shared", "shared"),
    ] {
        env.create_tenant(
            ns,
            name,
            json!({"isolation": iso, "deletionPolicy": "Delete"}),
        )
        .await;
    }
    for (ns, name) in [
        (ATK, "atk-schema"),
        (ATK, "atk-db"),
        (ATK, "atk-rotated"),
        (VIC, "vic-schema"),
        (VIC, "vic-db"),
        (VIC, "vic-shared"),
    ] {
        env.wait_ready(ns, name, T).await;
    }
    // Victims' data, written with their own credentials.
    let shared_id = env
        .secret_value(VIC, "vic-shared-db", "tenantId")
        .await
        .unwrap();
    exec_as(&env, VIC, "vic-schema", "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('v1', 'victim', 'Victim schema')").await;
    exec_as(&env, VIC, "vic-db", "INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('v2', 'victim', 'Victim database')").await;
    exec_as(
        &env,
        VIC,
        "vic-shared",
        &format!("INSERT INTO saas_tenants (id, tenant_code, tenant_name) VALUES ('{shared_id}', 'victim', 'Victim shared')"),
    )
    .await;
    // The rotated attacker logs in as `<role>_b` from now on.
    env.tenants(ATK)
        .patch(
            "atk-rotated",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"tenantdb.io/rotate": "r1"}}})),
        )
        .await
        .unwrap();
    wait_for(T, "atk-rotated on its _b role", || async {
        let u = env.secret_value(ATK, "atk-rotated-db", "username").await?;
        u.ends_with("_b").then_some(())
    })
    .await
    .unwrap();

    let marker_dir = std::env::temp_dir().join(format!("tenantdb-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&marker_dir).unwrap();
    // The server (running as the `postgres` OS user) could write here if a case escaped.
    let _ = std::process::Command::new("chmod")
        .arg("777")
        .arg(&marker_dir)
        .status();
    let marker = marker_dir.join("escaped").display().to_string();

    let role_of = |s: &tenantdb::crd::TenantStatus| s.role.clone();
    let schema_of = |s: &tenantdb::crd::TenantStatus| s.schema.clone();
    let db_of = |s: &tenantdb::crd::TenantStatus| s.database.clone();
    let targets = Targets {
        me: status_field(&env, ATK, "atk-schema", role_of).await,
        victim_schema: status_field(&env, VIC, "vic-schema", schema_of).await,
        victim_schema_role: status_field(&env, VIC, "vic-schema", role_of).await,
        victim_db: status_field(&env, VIC, "vic-db", db_of).await,
        victim_shared_id: shared_id.clone(),
        marker: marker.clone(),
    };
    let shared_db = status_field(&env, ATK, "atk-schema", db_of).await;
    let mut failures = Vec::new();

    let mut run_all = async |attacker: &'static str,
                             skip_db: String,
                             skip_schema: String,
                             list: Vec<Case>| {
        let mut a = Attacker {
            env: &env,
            tenant: attacker,
            applied: Vec::new(),
            next: 0,
        };
        // Distinct version ranges per attacker (each has its own history).
        a.next = match attacker {
            "atk-schema" => 0,
            "atk-db" => 1000,
            _ => 2000,
        };
        let mut before = snapshot(&env, &skip_db, &skip_schema).await;
        for case in &list {
            let (state, message) = a.run(case).await;
            let after = snapshot(&env, &skip_db, &skip_schema).await;
            let changed = diff(&before, &after);
            let escaped: Vec<String> = std::fs::read_dir(&marker_dir)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            let verdict_ok = match case.expect {
                Expect::Failed(words) => {
                    state == TenantMigrationState::Failed
                        && words.iter().any(|w| message.contains(w))
                }
                Expect::Succeeded(_) => state == TenantMigrationState::Succeeded,
                Expect::Refused => {
                    message.starts_with("refused: ") && message.contains("transaction control")
                }
            };
            let why = match case.expect {
                Expect::Succeeded(why) => why,
                Expect::Failed(_) | Expect::Refused => "",
            };
            eprintln!("{attacker} {:<40} -> {state:?}: {message} {why}", case.name);
            if !verdict_ok || !changed.is_empty() || !escaped.is_empty() {
                failures.push(format!(
                    "{attacker} {}: expected {:?}, got {state:?} ({message}); changed outside the tenant: {changed:#?}; files written: {escaped:?}",
                    case.name, case.expect
                ));
            }
            before = after;
        }
    };
    let atk_schema = targets.me.clone();
    run_all(
        "atk-schema",
        String::new(),
        atk_schema.clone(),
        cases(&targets),
    )
    .await;
    let atk_db = status_field(&env, ATK, "atk-db", db_of).await;
    let db_targets = Targets {
        me: status_field(&env, ATK, "atk-db", role_of).await,
        ..targets
    };
    run_all(
        "atk-db",
        atk_db,
        "public".into(),
        database_cases(&db_targets),
    )
    .await;
    let rotated_schema = status_field(&env, ATK, "atk-rotated", schema_of).await;
    run_all(
        "atk-rotated",
        String::new(),
        rotated_schema,
        rotated_cases(),
    )
    .await;

    let _ = std::fs::remove_dir_all(&marker_dir);
    assert!(
        failures.is_empty(),
        "hostile migrations escaped or were misreported:\n{}",
        failures.join("\n")
    );
    // The migration really ran as the tenant: logged in as its role, not a superuser.
    let mut c = su(&env, &shared_db).await;
    let who: (String, String, String) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT login, acting, su FROM \"{atk_schema}\".whoami"
    )))
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        who,
        (atk_schema.clone(), atk_schema.clone(), "off".to_string()),
        "the migration's session"
    );
}
