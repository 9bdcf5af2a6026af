//! Unit tests of the planner ([`super::plan`]): fresh, converged and drifted tenants, quotas,
//! read-only, rotation, foreign objects (conflicts), and the SQL the steps render.

use super::*;
use crate::crd::Isolation;
use crate::naming::tenant_names;

fn desired(isolation: Isolation) -> Desired {
    let shared = Ident::new("tenantdb_shared").unwrap();
    Desired::simple(
        tenant_names("tenant_", "ns", "acme", isolation, None, &shared).unwrap(),
        "pw".into(),
    )
}

fn role_for(d: &Desired, slot: Slot, login: bool) -> ObservedRole {
    let settings = d
        .role_settings(slot)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    ObservedRole {
        can_login: login,
        connection_limit: d.quotas.connection_limit,
        has_extra_privileges: false,
        comment: Some(d.names.owner_marker.clone()),
        password_matches: Some(true),
        search_path: Some(search_path_setting(&d.names.schema)),
        settings,
        valid_until: None,
        member_of_primary: slot == Slot::Secondary,
        admin_member: Some(true),
    }
}

fn converged(d: &Desired) -> Observed {
    let n = &d.names;
    Observed {
        role: Some(role_for(d, Slot::Primary, true)),
        secondary: None,
        database: Some(ObservedDatabase {
            owner: if n.dedicated_database {
                n.role.as_str().to_string()
            } else {
                "postgres".into()
            },
            comment: n.dedicated_database.then(|| n.owner_marker.clone()),
            public_has_access: false,
            role_can_connect: true,
            connection_limit: if n.dedicated_database {
                d.quotas.connection_limit
            } else {
                -1
            },
        }),
        schema: (!n.dedicated_database).then(|| ObservedSchema {
            owner: n.role.as_str().to_string(),
            comment: Some(n.owner_marker.clone()),
        }),
    }
}

#[test]
fn fresh_database_tenant() {
    let d = desired(Isolation::Database);
    let steps = plan(&d, &Observed::default()).unwrap();
    assert_eq!(
        steps,
        vec![
            Step::CreateRole,
            Step::CreateDatabase,
            Step::RevokePublicOnDatabase,
            Step::SetSearchPath(Slot::Primary),
        ]
    );
}

#[test]
fn fresh_schema_tenant() {
    let d = desired(Isolation::Schema);
    let obs = Observed {
        database: Some(ObservedDatabase {
            owner: "postgres".into(),
            connection_limit: -1,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        plan(&d, &obs).unwrap(),
        vec![
            Step::CreateRole,
            Step::GrantConnect,
            Step::CreateSchema,
            Step::SetSearchPath(Slot::Primary),
        ]
    );
}

#[test]
fn converged_tenant_needs_nothing() {
    for iso in [Isolation::Database, Isolation::Schema] {
        let d = desired(iso);
        assert!(plan(&d, &converged(&d)).unwrap().is_empty(), "{iso:?}");
    }
}

#[test]
fn a_lost_admin_membership_is_granted_first() {
    let d = desired(Isolation::Database);
    let mut obs = converged(&d);
    if let Some(r) = obs.role.as_mut() {
        r.admin_member = Some(false);
    }
    if let Some(db) = obs.database.as_mut() {
        db.owner = "postgres".into();
    }
    assert_eq!(
        plan(&d, &obs).unwrap(),
        vec![
            Step::GrantRoleToAdmin(Slot::Primary),
            Step::SetDatabaseOwner
        ],
        "the membership comes before the step that needs it"
    );
    assert_eq!(
        Step::GrantRoleToAdmin(Slot::Primary).sql(&d, "v").unwrap(),
        vec![format!("GRANT {} TO CURRENT_USER", d.names.role)]
    );
    // Not observed (`None`) or a member: nothing.
    for member in [None, Some(true)] {
        if let Some(r) = obs.role.as_mut() {
            r.admin_member = member;
        }
        assert_eq!(plan(&d, &obs).unwrap(), vec![Step::SetDatabaseOwner]);
    }
}

#[test]
fn drift_is_repaired() {
    let d = desired(Isolation::Schema);
    let mut obs = converged(&d);
    obs.schema = None;
    if let Some(r) = obs.role.as_mut() {
        r.password_matches = Some(false);
        r.has_extra_privileges = true;
        r.search_path = None;
    }
    assert_eq!(
        plan(&d, &obs).unwrap(),
        vec![
            Step::ResetRoleAttributes(Slot::Primary),
            Step::SetPassword(Slot::Primary),
            Step::CreateSchema,
            Step::SetSearchPath(Slot::Primary),
        ]
    );
}

/// An admin that is not a superuser cannot read verifiers (`password_matches: None`): a new
/// password (rotation, Secret without one) is still set on the active slot; an unchanged one is
/// trusted.
#[test]
fn a_new_password_is_set_where_the_verifier_cannot_be_read() {
    let mut d = desired(Isolation::Schema);
    let mut obs = converged(&d);
    if let Some(r) = obs.role.as_mut() {
        r.password_matches = None;
    }
    assert!(plan(&d, &obs).unwrap().is_empty());
    d.new_password = true;
    assert_eq!(
        plan(&d, &obs).unwrap(),
        vec![Step::SetPassword(Slot::Primary)]
    );
}

#[test]
fn quotas_become_limits_and_settings() {
    let mut d = desired(Isolation::Database);
    let obs = converged(&d);
    d.quotas = EffectiveQuotas {
        connection_limit: 10,
        statement_timeout_ms: Some(30_000),
        idle_in_transaction_timeout_ms: None,
        storage_bytes: Some(1 << 20),
    };
    let steps = plan(&d, &obs).unwrap();
    assert_eq!(
        steps,
        vec![
            Step::SetConnectionLimit(Slot::Primary),
            Step::SetRoleSetting(Slot::Primary, "statement_timeout", "30000".into()),
            Step::SetDatabaseConnectionLimit,
        ]
    );
    // Removing a quota resets the setting.
    let mut obs2 = converged(&d);
    d.quotas.statement_timeout_ms = None;
    obs2.role.as_mut().unwrap().settings =
        vec!["statement_timeout=30000".into(), "work_mem=64MB".into()];
    assert_eq!(
        plan(&d, &obs2).unwrap(),
        vec![Step::ResetRoleSetting(Slot::Primary, "statement_timeout")]
    );
}

#[test]
fn read_only_sets_default_and_ends_sessions() {
    let mut d = desired(Isolation::Schema);
    let obs = converged(&d);
    d.read_only = true;
    assert_eq!(
        plan(&d, &obs).unwrap(),
        vec![
            Step::SetRoleSetting(Slot::Primary, "default_transaction_read_only", "on".into()),
            Step::TerminateSessions(Slot::Primary),
        ]
    );
    // And back: the sessions opened while read-only end too (they would refuse writes).
    let obs_ro = converged(&d);
    d.read_only = false;
    assert_eq!(
        plan(&d, &obs_ro).unwrap(),
        vec![
            Step::ResetRoleSetting(Slot::Primary, "default_transaction_read_only"),
            Step::TerminateSessions(Slot::Primary),
        ]
    );
}

#[test]
fn rotation_to_secondary_keeps_primary_until_grace_ends() {
    let mut d = desired(Isolation::Schema);
    let obs = converged(&d);
    let until: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    d.active = Slot::Secondary;
    d.previous_valid_until = Some(until);
    let steps = plan(&d, &obs).unwrap();
    assert_eq!(
        steps,
        vec![
            Step::ExpireLogin(Slot::Primary),
            Step::CreateSecondary,
            Step::SetRoleSetting(Slot::Secondary, "role", d.names.role.as_str().into()),
            Step::SetSearchPath(Slot::Secondary),
        ]
    );
    let sql = Step::ExpireLogin(Slot::Primary).sql(&d, "").unwrap();
    assert!(
        sql[0].ends_with("VALID UNTIL '2030-01-01T00:00:00Z'"),
        "{sql:?}"
    );
    // After the grace period: the primary stops logging in.
    let mut after = converged(&d);
    after.role.as_mut().unwrap().valid_until = Some(until);
    after.secondary = Some(role_for(&d, Slot::Secondary, true));
    d.previous_valid_until = None;
    assert_eq!(
        plan(&d, &after).unwrap(),
        vec![Step::DisableLogin(Slot::Primary)]
    );
    // Rotating back to the primary re-enables it without expiry.
    let mut back = after.clone();
    back.role.as_mut().unwrap().can_login = false;
    d.active = Slot::Primary;
    d.previous_valid_until = Some(until);
    back.role.as_mut().unwrap().password_matches = Some(false);
    // ... and gives the secondary its own grace period.
    assert_eq!(
        plan(&d, &back).unwrap(),
        vec![
            Step::EnableLogin(Slot::Primary),
            Step::SetPassword(Slot::Primary),
            Step::ExpireLogin(Slot::Secondary)
        ]
    );
}

#[test]
fn foreign_objects_are_conflicts() {
    let d = desired(Isolation::Database);
    let mut obs = converged(&d);
    obs.role.as_mut().unwrap().comment = Some("tenantdb.io/owner=other/x".into());
    assert!(plan(&d, &obs).is_err());
    let mut obs = converged(&d);
    obs.database.as_mut().unwrap().comment = None;
    obs.database.as_mut().unwrap().owner = "someone".into();
    assert!(plan(&d, &obs).is_err());
    // An unmarked database owned by our role is adopted (crash after CREATE DATABASE).
    let mut obs = converged(&d);
    obs.database.as_mut().unwrap().comment = None;
    assert_eq!(plan(&d, &obs).unwrap(), vec![Step::MarkDatabase]);
}

#[test]
fn sql_quotes_identifiers_and_never_contains_the_password() {
    let d = desired(Isolation::Database);
    let v = "SCRAM-SHA-256$4096:abc$def:ghi";
    for step in [
        Step::CreateRole,
        Step::SetPassword(Slot::Primary),
        Step::CreateDatabase,
    ] {
        for sql in step.sql(&d, v).unwrap() {
            assert!(!sql.contains("pw'"), "{sql}");
            assert!(
                sql.contains(&format!("\"{}\"", d.names.role.as_str()))
                    || sql.contains(&format!("\"{}\"", d.names.database.as_str())),
                "{sql}"
            );
        }
    }
    let create = Step::CreateRole.sql(&d, v).unwrap();
    assert!(create[0].contains("NOSUPERUSER"));
    assert!(create[0].contains("PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'"));
}
