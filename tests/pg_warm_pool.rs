//! The warm pool (`src/pg/warm.rs`) against a real PostgreSQL 15: unclaimed entries hold no
//! credentials anyone has; a claimed schema or database is identical to one whose baseline was
//! replayed (catalog fingerprint with the role and schema names normalised, migration history,
//! partitions, row counts) and owned by the tenant; concurrent claims take distinct entries; the
//! sweep removes what a crash left, entries of another migration set and entries beyond the
//! wanted size, and never touches a foreign object of a pool entry's name.

use tenantdb_testkit::fixtures as common;

use common::{admin, names, provision};
use sqlx::{Connection, PgConnection};
use tenantdb::crd::Isolation;
use tenantdb::migrate::MigrationSet;
use tenantdb::pg::PgAdmin;
use tenantdb::pg::plan::{Desired, Step, plan};
use tenantdb::pg::template::fingerprint as set_fingerprint;
use tenantdb::pg::warm::WarmPool;
use tenantdb::scram::generate_password;

const MONTHS_AHEAD: u32 = 2;

async fn superuser_in(db: &str) -> PgConnection {
    PgConnection::connect(&common::pg().url(db)).await.unwrap()
}

/// Everything tenant `d` gets in `schema` of `db`, as text, with its role and schema names and its
/// owner marker replaced by `ROLE`, `SCHEMA` and `MARKER`.
async fn fingerprint(db: &str, schema: &str, d: &Desired) -> Vec<String> {
    let role = d.names.role.as_str();
    let marker = d.names.owner_marker.as_str();
    const QUERIES: &[&str] = &[
        "SELECT format('namespace owner=%s acl=%s comment=%s', nspowner::regrole, nspacl, obj_description(oid, 'pg_namespace')) FROM pg_namespace WHERE nspname = $1",
        "SELECT format('class %s kind=%s owner=%s acl=%s persistence=%s options=%s rls=%s/%s partition=%s key=%s bound=%s', c.oid::regclass, relkind, relowner::regrole, relacl, relpersistence, reloptions, relrowsecurity, relforcerowsecurity, relispartition, pg_get_partkeydef(c.oid), pg_get_expr(relpartbound, c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1",
        "SELECT format('column %s.%s %s notnull=%s default=%s identity=%s generated=%s collation=%s acl=%s comment=%s', attrelid::regclass, attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid), attidentity, attgenerated, attcollation, attacl, col_description(attrelid, attnum)) FROM pg_attribute a JOIN pg_class c ON c.oid = attrelid JOIN pg_namespace n ON n.oid = relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = attrelid AND d.adnum = attnum WHERE nspname = $1 AND attnum > 0 AND NOT attisdropped",
        "SELECT format('constraint %s on %s: %s deferrable=%s/%s', conname, conrelid::regclass, pg_get_constraintdef(c.oid), condeferrable, condeferred) FROM pg_constraint c JOIN pg_namespace n ON n.oid = connamespace WHERE nspname = $1",
        "SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = indexrelid JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1",
        "SELECT format('function %s owner=%s acl=%s: %s', p.oid::regprocedure, proowner::regrole, proacl, CASE WHEN prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE prokind::text END) FROM pg_proc p JOIN pg_namespace n ON n.oid = pronamespace WHERE nspname = $1",
        "SELECT format('trigger %s', pg_get_triggerdef(t.oid)) FROM pg_trigger t JOIN pg_class c ON c.oid = tgrelid JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1 AND NOT tgisinternal",
        "SELECT format('policy %s on %s: %s %s roles=%s using=%s check=%s', policyname, tablename, permissive, cmd, roles, qual, with_check) FROM pg_policies WHERE schemaname = $1",
        "SELECT format('type %s owner=%s acl=%s kind=%s', t.oid::regtype, typowner::regrole, typacl, typtype) FROM pg_type t JOIN pg_namespace n ON n.oid = typnamespace WHERE nspname = $1 AND typtype IN ('e', 'd', 'c', 'r', 'm') AND (typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = typrelid) = 'c')",
        "SELECT format('enum %s %s %s', enumtypid::regtype, enumsortorder, enumlabel) FROM pg_enum e JOIN pg_type t ON t.oid = enumtypid JOIN pg_namespace n ON n.oid = typnamespace WHERE nspname = $1",
        "SELECT format('sequence %s start=%s inc=%s max=%s min=%s cache=%s cycle=%s', seqrelid::regclass, seqstart, seqincrement, seqmax, seqmin, seqcache, seqcycle) FROM pg_sequence s JOIN pg_class c ON c.oid = seqrelid JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1",
        "SELECT format('comment %s %s: %s', classoid::regclass, objsubid, description) FROM pg_description d JOIN pg_class c ON c.oid = d.objoid JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1",
        "SELECT format('default acl %s %s %s', defaclrole::regrole, defaclobjtype, defaclacl) FROM pg_default_acl d JOIN pg_namespace n ON n.oid = defaclnamespace WHERE nspname = $1",
        "SELECT format('owned by a pool role: %s', count(*)) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1 AND pg_get_userbyid(relowner) LIKE 'tenantdb\\_pool\\_%'",
    ];
    let mut c = superuser_in(db).await;
    let mut out = Vec::new();
    for q in QUERIES {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(*q))
            .bind(schema)
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        out.extend(rows);
    }
    let history: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT format('history %s %s %s', version, name, checksum) FROM \"{schema}\".tenantdb_schema_migrations"
    )))
    .fetch_all(&mut c)
    .await
    .unwrap();
    out.extend(history);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = $1 AND relkind IN ('r', 'p') ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&mut c)
    .await
    .unwrap();
    for t in tables {
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                .fetch_one(&mut c)
                .await
                .unwrap();
        out.push(format!("rows {t} {rows}"));
    }
    let _ = c.close().await;
    let mut out: Vec<String> = out
        .into_iter()
        .map(|l| {
            l.replace(marker, "MARKER")
                .replace(role, "ROLE")
                .replace(schema, "SCHEMA")
        })
        .collect();
    out.sort();
    out
}

fn tenant(name: &str, isolation: Isolation) -> Desired {
    Desired::simple(names("warm", name, isolation), generate_password())
}

async fn scalar_i64(admin: &PgAdmin, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(admin.admin_pool())
        .await
        .unwrap()
}

/// Provisions with the plan's steps, returning whether the schema or database was claimed.
async fn provision_claiming(admin: &PgAdmin, d: &Desired) -> (Vec<Step>, bool) {
    let (steps, done) = provision_reporting(admin, d).await;
    (steps, done.claimed)
}

async fn provision_reporting(
    admin: &PgAdmin,
    d: &Desired,
) -> (Vec<Step>, tenantdb::pg::Provisioned) {
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    let steps = plan(d, &observed).unwrap();
    let done = admin.apply(d, &steps).await.unwrap();
    (steps, done)
}

async fn assert_converged(admin: &PgAdmin, d: &Desired) {
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    assert_eq!(plan(d, &observed).unwrap(), Vec::<Step>::new());
}

fn diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    (
        a.iter().filter(|l| !b.contains(l)).cloned().collect(),
        b.iter().filter(|l| !a.contains(l)).cloned().collect(),
    )
}

#[tokio::test]
async fn claimed_entries_are_identical_to_replayed_tenants_and_unclaimed_ones_cannot_log_in() {
    let admin = admin();
    let set = MigrationSet::bundled();
    let fp = set_fingerprint(&set);
    let want = WarmPool {
        schemas: 2,
        databases: 2,
    };
    let filled = admin.fill_pool(&set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!(filled.built, (2, 2), "{filled:?}");
    assert_eq!(filled.ready, (2, 2));
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (2, 2));
    // A second round builds nothing.
    let again = admin.fill_pool(&set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!((again.built, again.swept), ((0, 0), 0), "{again:?}");

    // No credentials: the schemas' roles cannot log in and have no password or group; only the
    // admin may connect to the databases.
    let pool = admin.admin_pool();
    let roles: Vec<(String, bool, Option<String>, i64)> = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin, rolpassword, (SELECT count(*) FROM pg_auth_members m WHERE m.member = a.oid) FROM pg_authid a WHERE rolname LIKE 'tenantdb\\_pool\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(roles.len(), 2, "{roles:?}");
    for (name, login, password, groups) in &roles {
        assert!(
            !login && password.is_none() && *groups == 0,
            "{name}: login={login} password={} groups={groups}",
            password.is_some()
        );
    }
    let dbs: Vec<(String, Option<String>, String, bool)> = sqlx::query_as(
        "SELECT datname::text, datacl::text, datdba::regrole::text, datallowconn FROM pg_database WHERE datname LIKE 'tenantdb\\_pool\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(dbs.len(), 2, "{dbs:?}");
    for (name, acl, owner, allow) in &dbs {
        let acl = acl.clone().unwrap_or_default();
        assert_eq!(owner, "postgres", "{name}");
        assert!(!allow, "{name}: open to connections");
        assert!(
            !acl.contains("tenantdb_template_owner"),
            "{name}: the build role keeps CONNECT: {acl}"
        );
        assert!(
            !acl.is_empty() && !acl.contains("{=") && !acl.contains(",="),
            "{name}: PUBLIC may connect: {acl}"
        );
    }

    // `schema`: replayed vs claimed.
    let replayed = tenant("replayed", Isolation::Schema);
    provision(&admin, &replayed).await;
    let (applied, created) = common::migrate_as_tenant(&admin, &replayed, &set, MONTHS_AHEAD).await;
    assert_eq!(applied, set.migrations().len());
    assert!(!created.is_empty(), "the replayed tenant's partitions");
    let mut claimed = tenant("claimed", Isolation::Schema);
    claimed.pool = Some(fp.clone());
    let (steps, was_claimed) = provision_claiming(&admin, &claimed).await;
    assert!(steps.contains(&Step::CreateSchema), "{steps:?}");
    assert!(was_claimed, "a schema entry was ready");
    assert_converged(&admin, &claimed).await;
    let shared = "tenantdb_shared";
    let a = fingerprint(shared, replayed.names.schema.as_str(), &replayed).await;
    // Compared as claimed, before anything ran as the tenant.
    let b = fingerprint(shared, claimed.names.schema.as_str(), &claimed).await;
    // The history and the partitions came along: nothing to replay or create.
    assert_eq!(
        common::migrate_as_tenant(&admin, &claimed, &set, MONTHS_AHEAD).await,
        (0, vec![])
    );
    assert!(a.len() > 300, "the whole baseline: {}", a.len());
    assert!(
        a.iter()
            .any(|l| l.starts_with("class ") && l.contains("owner=ROLE")),
        "the tenant owns its tables"
    );
    assert!(
        a.iter().any(|l| l.contains("partition=t ")),
        "partitions compared"
    );
    let (only_a, only_b) = diff(&a, &b);
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "replayed only: {only_a:#?}\nclaimed only: {only_b:#?}"
    );
    // The entry's role is gone with the claim; the tenant works in its schema.
    let left: i64 = scalar_i64(
        &admin,
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tenantdb\\_pool\\_%'",
    )
    .await;
    assert_eq!(left, 1, "one schema entry left, its role with it");
    let mut t = common::connect_as(shared, claimed.names.role.as_str(), &claimed.password)
        .await
        .unwrap();
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = current_schema() AND relkind = 'r' AND pg_has_role(relowner, 'USAGE')",
    )
    .fetch_one(&mut t)
    .await
    .unwrap();
    assert!(owned > 10, "{owned} tables owned in the claimed schema");
    let _ = t.close().await;

    // `database`: a template copy replaying nothing vs a claimed database.
    let tpl = admin.ensure_template(&set, 2).await.unwrap().unwrap();
    let replayed = tenant("replayeddb", Isolation::Database);
    provision(&admin, &replayed).await;
    let (applied, created) = common::migrate_as_tenant(&admin, &replayed, &set, MONTHS_AHEAD).await;
    assert_eq!(applied, set.migrations().len());
    assert!(!created.is_empty(), "the replayed tenant's partitions");
    let mut claimed = tenant("claimeddb", Isolation::Database);
    claimed.template = Some(tpl.clone());
    claimed.pool = Some(fp.clone());
    let (steps, was_claimed) = provision_claiming(&admin, &claimed).await;
    assert!(steps.contains(&Step::CreateDatabase), "{steps:?}");
    assert!(was_claimed, "a database entry was ready");
    assert_converged(&admin, &claimed).await;
    let a = fingerprint(replayed.names.database.as_str(), "public", &replayed).await;
    let b = fingerprint(claimed.names.database.as_str(), "public", &claimed).await;
    assert_eq!(
        common::migrate_as_tenant(&admin, &claimed, &set, MONTHS_AHEAD).await,
        (0, vec![])
    );
    let (only_a, only_b) = diff(&a, &b);
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "replayed only: {only_a:#?}\nclaimed only: {only_b:#?}"
    );
    let (owner, limit): (String, i32) = sqlx::query_as(
        "SELECT datdba::regrole::text, datconnlimit FROM pg_database WHERE datname = $1",
    )
    .bind(claimed.names.database.as_str())
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(owner, claimed.names.role.as_str());
    assert_eq!(limit, claimed.quotas.connection_limit);
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (1, 1));

    // Refilled.
    let refill = admin.fill_pool(&set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!(refill.built, (1, 1), "{refill:?}");

    // No statement of all this failed on the server.
    let errors: Vec<String> = common::pg()
        .log()
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "statements failed: {errors:#?}");

    concurrent_claims_take_distinct_entries(&admin, &set).await;
    a_crash_between_a_database_claim_and_its_mark_is_completed(&admin, &set).await;
    the_sweep_removes_crash_leftovers_and_stale_entries_and_nothing_foreign(&admin, &set).await;
    an_entry_that_cannot_be_dropped_is_skipped(&admin, &set).await;
}

/// Eight tenants claim at once from a pool of three schemas and one database... three get the
/// schemas; the others are built as usual; every one converges.
async fn concurrent_claims_take_distinct_entries(admin: &PgAdmin, set: &MigrationSet) {
    let fp = set_fingerprint(set);
    let want = WarmPool {
        schemas: 3,
        databases: 0,
    };
    admin.fill_pool(set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (3, 0));
    let tenants: Vec<Desired> = (0..8)
        .map(|i| {
            let mut d = tenant(&format!("race{i}"), Isolation::Schema);
            d.pool = Some(fp.clone());
            d
        })
        .collect();
    let results =
        futures::future::join_all(tenants.iter().map(|d| provision_claiming(admin, d))).await;
    let claimed = results.iter().filter(|(_, c)| *c).count();
    assert_eq!(claimed, 3, "each entry claimed once");
    for d in &tenants {
        assert_converged(admin, d).await;
    }
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (0, 0));
}

/// A month's mark of an entry of the shared database for `fp`, `back` months ago.
fn mark_of(fp: &str, back: i32) -> String {
    let d = tenantdb::partitions::today();
    let (mut y, mut m) = (i32::from(d.year()), i32::from(d.month()) - back);
    while m < 1 {
        m += 12;
        y -= 1;
    }
    format!("tenantdb.io/pool=tenantdb_shared/{fp}@{y:04}-{m:02}")
}

async fn names_like(admin: &PgAdmin, sql: &'static str) -> Vec<String> {
    sqlx::query_scalar(sql)
        .fetch_all(admin.admin_pool())
        .await
        .unwrap()
}

const POOL_ROLES: &str =
    "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenantdb\\_pool\\_%' ORDER BY 1";
const POOL_DBS: &str =
    "SELECT datname::text FROM pg_database WHERE datname LIKE 'tenantdb\\_pool\\_%' ORDER BY 1";

/// What a crash leaves (a marked role without its schema, an unmarked schema entry, a database
/// entry being built or unmarked and still closed), entries of another migration set or two
/// months old, and entries beyond the wanted size are swept; last month's entry is kept and
/// claimable; a foreign or forged object of a pool name (a tenant's schema or database with a
/// copied mark, a DBA's database, another scope's role) is neither swept nor claimed.
async fn the_sweep_removes_crash_leftovers_and_stale_entries_and_nothing_foreign(
    admin: &PgAdmin,
    set: &MigrationSet,
) {
    let fp = set_fingerprint(set);
    let pool = admin.admin_pool();
    let this = mark_of(&fp, 0);
    let last = mark_of(&fp, 1);
    let old = mark_of(&fp, 2);
    let role_mark = "tenantdb.io/pool@tenantdb_shared";
    for sql in [
        // Crash leftovers and stale entries of this scope.
        "CREATE ROLE tenantdb_pool_00000000000000a1 NOLOGIN".into(),
        format!("COMMENT ON ROLE tenantdb_pool_00000000000000a1 IS '{role_mark}'"),
        "CREATE ROLE tenantdb_pool_00000000000000a2 NOLOGIN".into(),
        format!("COMMENT ON ROLE tenantdb_pool_00000000000000a2 IS '{role_mark}'"),
        "CREATE ROLE tenantdb_pool_00000000000000a3 NOLOGIN".into(),
        format!("COMMENT ON ROLE tenantdb_pool_00000000000000a3 IS '{role_mark}'"),
        "CREATE ROLE tenantdb_pool_00000000000000a4 NOLOGIN".into(),
        format!("COMMENT ON ROLE tenantdb_pool_00000000000000a4 IS '{role_mark}'"),
        "CREATE DATABASE tenantdb_pool_00000000000000d1 ALLOW_CONNECTIONS false".into(),
        "CREATE DATABASE tenantdb_pool_00000000000000d2 ALLOW_CONNECTIONS false".into(),
        "COMMENT ON DATABASE tenantdb_pool_00000000000000d2 IS 'tenantdb.io/pool=tenantdb_shared/000000000000@2020-01'".into(),
        "CREATE DATABASE tenantdb_pool_00000000000000d3".into(),
        "COMMENT ON DATABASE tenantdb_pool_00000000000000d3 IS 'tenantdb.io/pool-building@tenantdb_shared'".into(),
        // Foreign or forged: a DBA's databases, a tenant's role owning a database with a copied
        // mark, another scope's role, a login role owning a schema with a copied mark.
        "CREATE DATABASE tenantdb_pool_00000000000000f1".into(),
        "CREATE DATABASE tenantdb_pool_backup ALLOW_CONNECTIONS false".into(),
        "CREATE ROLE tenantdb_pool_00000000000000f2 LOGIN".into(),
        "CREATE DATABASE tenantdb_pool_00000000000000f3 OWNER tenantdb_pool_00000000000000f2".into(),
        format!("COMMENT ON DATABASE tenantdb_pool_00000000000000f3 IS '{this}'"),
        "CREATE ROLE tenantdb_pool_00000000000000f4 NOLOGIN".into(),
        "COMMENT ON ROLE tenantdb_pool_00000000000000f4 IS 'tenantdb.io/pool@another_shared'".into(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
    }
    let mut shared = superuser_in("tenantdb_shared").await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA tenantdb_pool_00000000000000a2 AUTHORIZATION tenantdb_pool_00000000000000a2;
         CREATE TABLE tenantdb_pool_00000000000000a2.half (id int);
         CREATE SCHEMA tenantdb_pool_00000000000000a3 AUTHORIZATION tenantdb_pool_00000000000000a3;
         COMMENT ON SCHEMA tenantdb_pool_00000000000000a3 IS 'tenantdb.io/pool=tenantdb_shared/000000000000@2020-01';
         CREATE SCHEMA tenantdb_pool_00000000000000a4 AUTHORIZATION tenantdb_pool_00000000000000a4;
         COMMENT ON SCHEMA tenantdb_pool_00000000000000a4 IS '{old}';
         CREATE SCHEMA tenantdb_pool_00000000000000f2 AUTHORIZATION tenantdb_pool_00000000000000f2;
         COMMENT ON SCHEMA tenantdb_pool_00000000000000f2 IS '{this}';"
    )))
    .execute(&mut shared)
    .await
    .unwrap();
    // Forged marks are not claimable.
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (0, 0));
    let mut forger = tenant("forged", Isolation::Schema);
    forger.pool = Some(fp.clone());
    let (_, claimed) = provision_claiming(admin, &forger).await;
    assert!(!claimed, "a forged entry was claimed");

    let want = WarmPool {
        schemas: 2,
        databases: 1,
    };
    let f = admin.fill_pool(set, want, MONTHS_AHEAD).await.unwrap();
    // a1 (role only), a2 (unmarked), a3 (other set), a4 (two months old), d1 (unmarked, closed),
    // d2 (other set), d3 (being built).
    assert_eq!(f.swept, 7, "{f:?}");
    assert_eq!(f.ready, (2, 1));
    // Whole names: a random entry name may end in `a3` too (CI failed once on exactly that).
    let named = |x: &str| {
        if x == "backup" {
            "tenantdb_pool_backup".to_string()
        } else {
            format!("tenantdb_pool_00000000000000{x}")
        }
    };
    let roles = names_like(admin, POOL_ROLES).await;
    assert!(
        ["a1", "a2", "a3", "a4"]
            .iter()
            .all(|x| !roles.contains(&named(x)))
            && ["f2", "f4"].iter().all(|x| roles.contains(&named(x))),
        "{roles:?}"
    );
    let dbs = names_like(admin, POOL_DBS).await;
    assert!(
        ["d1", "d2", "d3"].iter().all(|x| !dbs.contains(&named(x)))
            && ["f1", "f3", "backup"]
                .iter()
                .all(|x| dbs.contains(&named(x))),
        "{dbs:?}"
    );
    let forged_schema: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenantdb_pool_00000000000000f2'",
    )
    .fetch_one(&mut shared)
    .await
    .unwrap();
    assert_eq!(forged_schema, 1, "a tenant's schema of a pool name stays");

    // Last month's entry is kept and claimable (it holds this month's partition).
    let entries: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE obj_description(oid, 'pg_namespace') = $1 AND nspname <> 'tenantdb_pool_00000000000000f2' ORDER BY 1",
    )
    .bind(&this)
    .fetch_all(&mut shared)
    .await
    .unwrap();
    assert_eq!(entries.len(), 2, "{entries:?}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "COMMENT ON SCHEMA {} IS '{last}'",
        entries[0]
    )))
    .execute(&mut shared)
    .await
    .unwrap();
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (2, 1));
    let again = admin.fill_pool(set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!((again.swept, again.built), (0, (0, 0)), "{again:?}");
    // Claimed first (the oldest), reported as last month's: the reconcile then adds the
    // furthest month ahead (its partition maintenance is not skipped).
    let mut older = tenant("lastmonth", Isolation::Schema);
    older.pool = Some(fp.clone());
    let (_, done) = provision_reporting(admin, &older).await;
    assert!(done.claimed && !done.claimed_this_month, "{done:?}");
    let refill = admin.fill_pool(set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!(refill.built, (1, 0), "{refill:?}");

    // Turned off: every entry of this scope goes, the foreign and forged ones stay.
    let off = admin
        .fill_pool(set, WarmPool::default(), MONTHS_AHEAD)
        .await
        .unwrap();
    assert_eq!(off.swept, 3, "{off:?}");
    assert_eq!(admin.pool_ready(&fp).await.unwrap(), (0, 0));
    assert_eq!(
        names_like(admin, POOL_ROLES).await,
        vec![
            "tenantdb_pool_00000000000000f2".to_string(),
            "tenantdb_pool_00000000000000f4".to_string()
        ]
    );
    assert_eq!(
        names_like(admin, POOL_DBS).await,
        vec![
            "tenantdb_pool_00000000000000f1".to_string(),
            "tenantdb_pool_00000000000000f3".to_string(),
            "tenantdb_pool_backup".to_string()
        ]
    );
    let _ = shared.close().await;
}

/// An entry whose role a tenant granted rights to in another database (its drop would fail) is
/// neither claimed nor counted as ready; the sweep drops those rights and the entry, and the pool
/// is refilled.
async fn an_entry_that_cannot_be_dropped_is_skipped(admin: &PgAdmin, set: &MigrationSet) {
    let fp = set_fingerprint(set);
    let want = WarmPool {
        schemas: 2,
        databases: 0,
    };
    admin.fill_pool(set, want, MONTHS_AHEAD).await.unwrap();
    let first = names_like(admin, POOL_ROLES)
        .await
        .into_iter()
        .find(|r| {
            !["f2", "f4"]
                .iter()
                .any(|x| *r == format!("tenantdb_pool_00000000000000{x}"))
        })
        .unwrap();
    let pool = admin.admin_pool();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE poison (id int); GRANT SELECT ON poison TO {first}"
    )))
    .execute(pool)
    .await
    .unwrap();
    let mut d = tenant("afterpoison", Isolation::Schema);
    d.pool = Some(fp.clone());
    let (_, claimed) = provision_claiming(admin, &d).await;
    assert!(claimed, "the other entry is claimed");
    assert_converged(admin, &d).await;
    // Not counted as ready; the sweep drops the role's rights in the other database (as the
    // admin) and then the entry, and a replacement is built.
    let f = admin.fill_pool(set, want, MONTHS_AHEAD).await.unwrap();
    assert_eq!((f.ready, f.swept), ((2, 0), 1), "{f:?}");
    assert!(!names_like(admin, POOL_ROLES).await.contains(&first));
    let off = admin
        .fill_pool(set, WarmPool::default(), MONTHS_AHEAD)
        .await
        .unwrap();
    assert_eq!(off.swept, 2, "{off:?}");
    sqlx::raw_sql("DROP TABLE poison")
        .execute(pool)
        .await
        .unwrap();
    let _ = fp;
}

/// A crash between a database claim and its mark: the next plan hands the objects over and marks
/// the database (`MarkDatabase`).
async fn a_crash_between_a_database_claim_and_its_mark_is_completed(
    admin: &PgAdmin,
    set: &MigrationSet,
) {
    let fp = set_fingerprint(set);
    let tpl = admin.ensure_template(set, 2).await.unwrap().unwrap();
    admin
        .fill_pool(
            set,
            WarmPool {
                schemas: 0,
                databases: 1,
            },
            MONTHS_AHEAD,
        )
        .await
        .unwrap();
    let mut d = tenant("crashclaim", Isolation::Database);
    d.template = Some(tpl);
    d.pool = Some(fp.clone());
    // The reconcile's steps up to the database, then only the claim's transaction.
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    let before: Vec<Step> = plan(&d, &observed)
        .unwrap()
        .into_iter()
        .take_while(|s| *s != Step::CreateDatabase)
        .collect();
    admin.apply(&d, &before).await.unwrap();
    assert_eq!(
        admin
            .claim_database(
                &fp,
                &d.names.database,
                &d.names.role,
                d.quotas.connection_limit
            )
            .await
            .unwrap(),
        Some(true),
        "claimed, built this month"
    );
    let (steps, _) = provision_claiming(admin, &d).await;
    assert!(steps.contains(&Step::MarkDatabase), "{steps:?}");
    assert_converged(admin, &d).await;
    let mut c = superuser_in(d.names.database.as_str()).await;
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public' AND pg_get_userbyid(relowner) <> $1",
    )
    .bind(d.names.role.as_str())
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(foreign, 0, "every object handed over on recovery");
    let _ = c.close().await;
}
