//! Login roles against a real PostgreSQL 15 cluster in the cases a superuser admin hides: an
//! admin with only `CREATEROLE` + `CREATEDB` (it cannot read verifiers, and may give a role a
//! database only as its member), and the deletion of a role that still owns objects elsewhere.

use tenantdb_testkit::fixtures as common;

use std::sync::Arc;
use std::time::Duration;

use common::{admin, connect_as, desired, pg, provision, replan};
use sqlx::{Connection, Executor};
use tenantdb::crd::Isolation;
use tenantdb::naming::Ident;
use tenantdb::pg::plan::{Slot, Step};
use tenantdb::pg::{PgAdmin, PgSettings};
use tenantdb::scram::generate_password;

/// An admin with only `CREATEROLE` + `CREATEDB` named `name` (and the superuser connection that
/// made it, to drop it afterwards).
async fn limited_admin(name: &str) -> (Arc<PgAdmin>, sqlx::PgConnection) {
    let admin_pw = generate_password();
    let mut c = connect_as("postgres", "postgres", pg().superuser_password())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE {name} LOGIN CREATEROLE CREATEDB PASSWORD '{admin_pw}'"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let limited = Arc::new(
        PgAdmin::new(PgSettings {
            admin_url: format!(
                "postgres://{name}:{admin_pw}@127.0.0.1:{}/postgres",
                pg().port()
            ),
            shared_database: Ident::new("tenantdb_shared").unwrap(),
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap(),
    );
    (limited, c)
}

/// With an admin that is not a superuser (`CREATEROLE` + `CREATEDB`, as docs/operations.md
/// allows) the verifiers cannot be read, so a rotation must still set the new password on the
/// slot it activates: rotating A → B → A leaves each Secret password working.
#[tokio::test]
async fn rotation_sets_the_new_password_with_an_admin_that_is_not_a_superuser() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let su = admin();
    let (limited, mut c) = limited_admin("limited_admin").await;
    let mut d = desired("limited", "alpha", Isolation::Database);
    d.new_password = true;
    provision(&limited, &d).await;
    let db = d.names.database.as_str().to_string();
    let (a, b) = (
        d.names.role.as_str().to_string(),
        d.names.secondary_role.as_str().to_string(),
    );
    connect_as(&db, &a, &d.password)
        .await
        .expect("A's first password");
    let grace = || {
        Some(
            Timestamp::now()
                .checked_add(SignedDuration::from_secs(3600))
                .unwrap(),
        )
    };
    // A → B (B created with its password), then B → A: A exists, so only a SetPassword step
    // can give it the new password.
    let mut d_b_password = String::new();
    for (slot, user) in [(Slot::Secondary, &b), (Slot::Primary, &a)] {
        d.active = slot;
        d.password = generate_password();
        if slot == Slot::Secondary {
            d_b_password = d.password.clone();
        }
        d.previous_valid_until = grace();
        let steps = provision(&limited, &d).await;
        connect_as(&db, user, &d.password)
            .await
            .unwrap_or_else(|e| panic!("{user} after rotating to it ({steps:?}): {e}"));
    }
    // A reconcile without a new password leaves it alone (nothing to compare with).
    d.new_password = false;
    assert!(
        !replan(&limited, &d)
            .await
            .iter()
            .any(|s| matches!(s, Step::SetPassword(_))),
        "an unchanged password is trusted"
    );
    // Deleting with the same admin: both login roles (and their sessions) are its to drop.
    let _b_session = connect_as(&db, &b, &d_b_password).await.unwrap();
    let report = limited.cleanup(&d.names).await.unwrap();
    assert_eq!(report.dropped.len(), 3, "{report:?}");
    drop(su);
    sqlx::raw_sql("DROP ROLE limited_admin")
        .execute(&mut c)
        .await
        .unwrap();
}

/// A Tenant deleted with `Retain` as a `schema` tenant and created again as a `database` tenant
/// adopts its role, which still owns the old schema in the shared database. Deleting it with
/// `Delete` drops its database and the old schema too (never handed to the admin: a function the
/// tenant wrote there would then run as the admin), so that the role can be dropped: before,
/// `DROP ROLE` failed on every attempt and the Tenant stayed `Deleting`.
#[tokio::test]
async fn a_role_owning_objects_elsewhere_is_still_dropped() {
    let admin = admin();
    let s = desired("leftover", "alpha", Isolation::Schema);
    provision(&admin, &s).await;
    let mut c = connect_as("tenantdb_shared", s.names.role.as_str(), &s.password)
        .await
        .unwrap();
    c.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    c.close().await.unwrap();
    // Retain: nothing dropped. The Tenant comes back as a database tenant: same role.
    let mut d = desired("leftover", "alpha", Isolation::Database);
    d.password = s.password.clone();
    assert_eq!(d.names.role, s.names.role);
    provision(&admin, &d).await;
    let report = admin.cleanup(&d.names).await.unwrap();
    assert!(
        report.dropped.iter().any(|x| x.starts_with("role ")),
        "{report:?}"
    );
    let mut su = connect_as("tenantdb_shared", "postgres", pg().superuser_password())
        .await
        .unwrap();
    let (roles_left, schemas_left): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1), \
         (SELECT count(*) FROM pg_namespace WHERE nspname = $1)",
    )
    .bind(s.names.role.as_str())
    .fetch_one(&mut su)
    .await
    .unwrap();
    assert_eq!(
        (roles_left, schemas_left),
        (0, 0),
        "the role and its old schema are gone"
    );
}

/// Roles the admin is not a member of — made by another admin (here the superuser, as by an
/// older operator, a move or by hand): with an admin that is not a superuser, the next reconcile
/// grants the membership back before anything that needs it, and deleting works even without a
/// reconcile first. Before, the database could not be dropped (`must be owner of database`).
#[tokio::test]
async fn a_limited_admin_takes_over_roles_it_did_not_create() {
    let su = admin();
    let (limited, mut c) = limited_admin("limited_takeover").await;
    let reconciled = desired("takeover", "alpha", Isolation::Database);
    let deleted = desired("takeover", "beta", Isolation::Database);
    for d in [&reconciled, &deleted] {
        provision(&su, d).await;
    }
    let steps = replan(&limited, &reconciled).await;
    assert_eq!(steps, [Step::GrantRoleToAdmin(Slot::Primary)]);
    provision(&limited, &reconciled).await;
    assert_eq!(replan(&limited, &reconciled).await, [], "converged");
    // The superuser admin is a member of every role: nothing to grant.
    assert_eq!(replan(&su, &deleted).await, []);
    for d in [&reconciled, &deleted] {
        let _session = connect_as(
            d.names.database.as_str(),
            d.names.role.as_str(),
            &d.password,
        )
        .await
        .unwrap();
        let report = limited
            .cleanup(&d.names)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", d.names.role.as_str()));
        assert_eq!(report.dropped.len(), 2, "{report:?}");
    }
    sqlx::raw_sql("DROP ROLE limited_takeover")
        .execute(&mut c)
        .await
        .unwrap();
}
