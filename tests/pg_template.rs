//! Template databases (`src/pg/template.rs`) against a real PostgreSQL 15: a `database` tenant
//! copied from the template is identical to one whose baseline DDL was replayed (catalog
//! fingerprint with the role names normalised, migration history, row counts), owns every object,
//! needs no migration step; the template is closed, owned by the admin and marked; the owner role
//! it was built with cannot log in and keeps no rights; a crash between the copy and its mark is
//! completed; a new migration set gets a new template and the old one is dropped.

use tenantdb_testkit::fixtures as common;

use common::{admin, names, provision};
use sqlx::{Connection, PgConnection};
use tenantdb::crd::Isolation;
use tenantdb::migrate::{Migration, MigrationSet};
use tenantdb::naming::Ident;
use tenantdb::pg::PgAdmin;
use tenantdb::pg::plan::{Desired, Step, plan};
use tenantdb::pg::template::{TEMPLATE_OWNER, template_name};
use tenantdb::scram::generate_password;

/// Monthly partitions ahead of this month's (the operator's default `--partition-months-ahead`).
const AHEAD: u32 = 2;

async fn superuser_in(db: &str) -> PgConnection {
    PgConnection::connect(&common::pg().url(db)).await.unwrap()
}

/// Everything a tenant gets in its database, as text, with its role name replaced by `ROLE`.
async fn fingerprint(db: &str, role: &str) -> Vec<String> {
    const QUERIES: &[&str] = &[
        "SELECT format('namespace %s owner=%s acl=%s', nspname, nspowner::regrole, nspacl) FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'",
        "SELECT format('class %s kind=%s owner=%s acl=%s persistence=%s options=%s rls=%s/%s partition=%s key=%s bound=%s', c.oid::regclass, relkind, relowner::regrole, relacl, relpersistence, reloptions, relrowsecurity, relforcerowsecurity, relispartition, pg_get_partkeydef(c.oid), pg_get_expr(relpartbound, c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public'",
        "SELECT format('column %s.%s %s notnull=%s default=%s identity=%s generated=%s collation=%s acl=%s comment=%s', attrelid::regclass, attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid), attidentity, attgenerated, attcollation, attacl, col_description(attrelid, attnum)) FROM pg_attribute a JOIN pg_class c ON c.oid = attrelid JOIN pg_namespace n ON n.oid = relnamespace LEFT JOIN pg_attrdef d ON d.adrelid = attrelid AND d.adnum = attnum WHERE nspname = 'public' AND attnum > 0 AND NOT attisdropped",
        "SELECT format('constraint %s on %s: %s deferrable=%s/%s', conname, conrelid::regclass, pg_get_constraintdef(c.oid), condeferrable, condeferred) FROM pg_constraint c JOIN pg_namespace n ON n.oid = connamespace WHERE nspname = 'public'",
        "SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = indexrelid JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public'",
        "SELECT format('function %s owner=%s acl=%s: %s', p.oid::regprocedure, proowner::regrole, proacl, CASE WHEN prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE prokind::text END) FROM pg_proc p JOIN pg_namespace n ON n.oid = pronamespace WHERE nspname = 'public'",
        "SELECT format('trigger %s', pg_get_triggerdef(t.oid)) FROM pg_trigger t JOIN pg_class c ON c.oid = tgrelid JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public' AND NOT tgisinternal",
        "SELECT format('policy %s on %s: %s %s roles=%s using=%s check=%s', policyname, tablename, permissive, cmd, roles, qual, with_check) FROM pg_policies WHERE schemaname = 'public'",
        "SELECT format('type %s owner=%s acl=%s kind=%s', t.oid::regtype, typowner::regrole, typacl, typtype) FROM pg_type t JOIN pg_namespace n ON n.oid = typnamespace WHERE nspname = 'public' AND typtype IN ('e', 'd', 'c', 'r', 'm') AND (typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = typrelid) = 'c')",
        "SELECT format('enum %s %s %s', enumtypid::regtype, enumsortorder, enumlabel) FROM pg_enum",
        "SELECT format('sequence %s start=%s inc=%s max=%s min=%s cache=%s cycle=%s', seqrelid::regclass, seqstart, seqincrement, seqmax, seqmin, seqcache, seqcycle) FROM pg_sequence",
        "SELECT format('extension %s %s', extname, extversion) FROM pg_extension",
        "SELECT format('comment %s %s: %s', classoid::regclass, objsubid, description) FROM pg_description d WHERE classoid <> 'pg_proc'::regclass OR objoid >= 16384",
        "SELECT format('default acl %s %s %s', defaclrole::regrole, defaclobjtype, defaclacl) FROM pg_default_acl",
        "SELECT format('history %s %s %s', version, name, checksum) FROM public.tenantdb_schema_migrations",
        "SELECT format('owned by the template owner: %s', count(*)) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = 'tenantdb_template_owner')",
    ];
    let mut c = superuser_in(db).await;
    let mut out = Vec::new();
    for q in QUERIES {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(*q))
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        out.extend(rows.into_iter().map(|r| r.replace(role, "ROLE")));
    }
    // Row counts of every table (seed data comes along with the copy).
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public' AND relkind IN ('r', 'p') ORDER BY 1",
    )
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
    out.sort();
    out
}

fn database_tenant(name: &str) -> Desired {
    Desired::simple(names("tpl", name, Isolation::Database), generate_password())
}

#[tokio::test]
async fn a_tenant_copied_from_the_template_is_identical_to_a_replayed_one() {
    let admin = admin();
    let set = MigrationSet::bundled();
    assert!(set.migrations().len() > 3, "the bundled baseline");

    // The DDL path: template0, then the baseline replayed as the tenant.
    let replayed = database_tenant("replayed");
    provision(&admin, &replayed).await;
    let (applied, created) = common::migrate_as_tenant(&admin, &replayed, &set, AHEAD).await;
    assert_eq!(applied, set.migrations().len());
    assert_eq!(
        created.len(),
        3 * (AHEAD as usize + 1),
        "this month's and {AHEAD} ahead of the baseline's three partitioned tables"
    );

    // The template path (this month's name, read before and after the build: a build across
    // midnight UTC of a month's last day may have either).
    let before = template_name(&set, AHEAD).unwrap();
    let tpl = admin
        .ensure_template(&set, AHEAD)
        .await
        .unwrap()
        .expect("a template for a non-empty set");
    assert!(
        tpl == before || tpl == template_name(&set, AHEAD).unwrap(),
        "{tpl} is this month's template"
    );
    let mut copied = database_tenant("copied");
    copied.template = Some(tpl.clone());
    let steps = provision(&admin, &copied).await;
    assert!(steps.contains(&Step::CreateDatabase), "{steps:?}");
    // The history and this month's partitions came along: nothing to replay, nothing to add
    // (the operator skips both for a copy).
    assert_eq!(
        common::migrate_as_tenant(&admin, &copied, &set, AHEAD).await,
        (0, vec![])
    );
    // Converged: the next plan is empty.
    let observed = admin
        .observe(&copied.names, &copied.password)
        .await
        .unwrap();
    assert_eq!(plan(&copied, &observed).unwrap(), Vec::<Step>::new());

    let a = fingerprint(
        replayed.names.database.as_str(),
        replayed.names.role.as_str(),
    )
    .await;
    let b = fingerprint(copied.names.database.as_str(), copied.names.role.as_str()).await;
    assert!(
        a.len() > 300,
        "a fingerprint of the whole baseline: {}",
        a.len()
    );
    assert!(
        a.iter()
            .any(|l| l.starts_with("class ") && l.contains("owner=ROLE")),
        "the tenant owns its tables"
    );
    let only_a: Vec<_> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_b: Vec<_> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "replayed only: {only_a:#?}\ncopied only: {only_b:#?}"
    );

    // Compacted and frozen after the build: every table of the template (catalogs included, not
    // the cluster-wide ones) was rewritten after the last migration committed, so no copy
    // carries the replay's dead catalog rows or unfrozen rows (connections are allowed for
    // this look only).
    let mut su = superuser_in("postgres").await;
    let allow = |on: bool| format!("ALTER DATABASE {tpl} WITH ALLOW_CONNECTIONS {on}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow(true)))
        .execute(&mut su)
        .await
        .unwrap();
    let mut in_tpl = superuser_in(tpl.as_str()).await;
    let unfrozen: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relkind IN ('r', 'm', 't') AND NOT relisshared \
           AND age(relfrozenxid) > (SELECT age(xmin) FROM public.tenantdb_schema_migrations \
                                     ORDER BY version DESC LIMIT 1) ORDER BY 1",
    )
    .fetch_all(&mut in_tpl)
    .await
    .unwrap();
    let _ = in_tpl.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow(false)))
        .execute(&mut su)
        .await
        .unwrap();
    let _ = su.close().await;
    assert!(
        unfrozen.is_empty(),
        "tables of the template not rewritten after its build: {unfrozen:?}"
    );

    // The tenant uses its copy like a replayed database: it can write, and owns what it created.
    let mut t = common::connect_as(
        copied.names.database.as_str(),
        copied.names.role.as_str(),
        &copied.password,
    )
    .await
    .unwrap();
    let owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'public' AND relkind = 'r' AND pg_has_role(relowner, 'USAGE')",
    )
    .fetch_one(&mut t)
    .await
    .unwrap();
    assert!(owned > 10, "{owned} tables owned");
    let _ = t.close().await;

    // The template: closed, the admin's, marked; no rights left to its build role, which cannot
    // log in.
    let pool = admin.admin_pool();
    let (is_template, allow_conn, owner, comment, acl): (bool, bool, String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT datistemplate, datallowconn, datdba::regrole::text, shobj_description(oid, 'pg_database'), datacl::text FROM pg_database WHERE datname = $1",
    )
    .bind(tpl.as_str())
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(is_template && !allow_conn, "template closed");
    assert_eq!(owner, "postgres");
    assert!(
        comment
            .as_deref()
            .unwrap_or_default()
            .starts_with("tenantdb.io/template="),
        "{comment:?}"
    );
    assert!(
        !acl.unwrap_or_default().contains(TEMPLATE_OWNER),
        "no CONNECT left to the build role"
    );
    let (login, password): (bool, Option<String>) =
        sqlx::query_as("SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(TEMPLATE_OWNER)
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(!login && password.is_none(), "the build role cannot log in");
    let shared_owned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1)",
    )
    .bind(TEMPLATE_OWNER)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(shared_owned, 0, "the build role owns no database");
    // Found again, not rebuilt, by another operator process.
    let again = common::admin().ensure_template(&set, AHEAD).await.unwrap();
    assert_eq!(again, Some(tpl.clone()));

    // The other cases share the template (one test: a new set drops the other templates).
    a_crash_between_the_copy_and_its_mark_is_completed(&admin, &set, &tpl).await;
    a_new_migration_set_gets_a_new_template_and_the_old_one_goes(&admin).await;
    a_foreign_role_or_database_of_a_templates_name_is_never_used_or_dropped().await;
    // No statement of all this failed on the server (a failure the code ignores would hide here).
    let errors: Vec<String> = common::pg()
        .log()
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .map(str::to_string)
        .collect();
    assert!(errors.is_empty(), "statements failed: {errors:#?}");
}

async fn a_crash_between_the_copy_and_its_mark_is_completed(
    admin: &PgAdmin,
    set: &MigrationSet,
    tpl: &Ident,
) {
    let d = database_tenant("crashed");
    // Role and database as the crashed reconcile left them: copied, not handed over, not marked.
    let observed = admin.observe(&d.names, &d.password).await.unwrap();
    let steps: Vec<Step> = plan(&d, &observed)
        .unwrap()
        .into_iter()
        .take_while(|s| *s != Step::CreateDatabase)
        .collect();
    admin.apply(&d, &steps).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {} OWNER {} TEMPLATE {}",
        d.names.database, d.names.role, tpl
    )))
    .execute(admin.admin_pool())
    .await
    .unwrap();
    let before = fingerprint(d.names.database.as_str(), d.names.role.as_str()).await;
    assert!(
        !before.iter().any(|l| l == "owned by the template owner: 0"),
        "the copy starts with the build role's objects"
    );
    let steps = provision(admin, &d).await;
    assert!(steps.contains(&Step::MarkDatabase), "{steps:?}");
    let after = fingerprint(d.names.database.as_str(), d.names.role.as_str()).await;
    assert!(
        after.iter().any(|l| l == "owned by the template owner: 0"),
        "handed over on recovery"
    );
    assert_eq!(common::migrate_as_tenant(admin, &d, set, AHEAD).await.0, 0);
}

async fn a_new_migration_set_gets_a_new_template_and_the_old_one_goes(admin: &PgAdmin) {
    let bundled = template_name(&MigrationSet::bundled(), AHEAD).unwrap();
    let base = MigrationSet::new(vec![Migration::new(
        1,
        "one",
        "CREATE TABLE t1 (id int PRIMARY KEY)",
        None,
    )])
    .unwrap();
    let first = admin.ensure_template(&base, AHEAD).await.unwrap().unwrap();
    // The same set with other months ahead is another template (its copies hold other
    // partitions): built beside it, not in its place, and the first one goes as an earlier one.
    let other_ahead = admin
        .ensure_template(&base, AHEAD + 1)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first, other_ahead);
    // A template of the release before months were in the name (`tenantdb_tpl_<fingerprint>`,
    // marked `tenantdb.io/template=<fingerprint>`) goes too.
    let old_format = "tenantdb_tpl_0123456789ab";
    for sql in [
        format!("CREATE DATABASE {old_format}"),
        format!("COMMENT ON DATABASE {old_format} IS 'tenantdb.io/template=0123456789ab'"),
        format!("ALTER DATABASE {old_format} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(admin.admin_pool())
            .await
            .unwrap();
    }
    let more = base
        .clone()
        .merge(
            MigrationSet::new(vec![Migration::new(
                2,
                "two",
                "CREATE TABLE t2 (id int PRIMARY KEY)",
                None,
            )])
            .unwrap(),
        )
        .unwrap();
    let second = admin.ensure_template(&more, AHEAD).await.unwrap().unwrap();
    assert_ne!(first, second);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname = ANY($1) ORDER BY 1",
    )
    .bind(vec![
        first.as_str().to_string(),
        other_ahead.as_str().to_string(),
        old_format.to_string(),
        second.as_str().to_string(),
        bundled.as_str().to_string(),
    ])
    .fetch_all(admin.admin_pool())
    .await
    .unwrap();
    assert_eq!(
        names,
        vec![second.as_str().to_string()],
        "earlier templates dropped"
    );
}

async fn a_foreign_role_or_database_of_a_templates_name_is_never_used_or_dropped() {
    let set = MigrationSet::new(vec![Migration::new(
        1,
        "foreign",
        "CREATE TABLE f (id int PRIMARY KEY)",
        None,
    )])
    .unwrap();
    let name = template_name(&set, AHEAD).unwrap();
    let pool = common::admin();
    let pool = pool.admin_pool();
    // A database of the template's name that someone else marked: refused, kept.
    for sql in [
        format!("CREATE DATABASE {name}"),
        format!("COMMENT ON DATABASE {name} IS 'someone else'"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }
    let err = common::admin()
        .ensure_template(&set, AHEAD)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a template of the operator"),
        "{err}"
    );
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name.as_str())
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(kept, 1, "a foreign database is never dropped");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(pool)
        .await
        .unwrap();
    // The build role without the operator's mark (someone else's role of that name): refused.
    sqlx::raw_sql("COMMENT ON ROLE tenantdb_template_owner IS 'someone else'")
        .execute(pool)
        .await
        .unwrap();
    let err = common::admin()
        .ensure_template(&set, AHEAD)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not the operator's template role"),
        "{err}"
    );
    sqlx::raw_sql("COMMENT ON ROLE tenantdb_template_owner IS 'tenantdb.io/template-owner'")
        .execute(pool)
        .await
        .unwrap();
}
