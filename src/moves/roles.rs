//! The two short-lived roles a move creates, named and marked alike: the schema copy's *restore
//! role* on the target ([`super::copy`]) and the subscription's *replication login* on the source
//! ([`super::repl_login`]). Each is `<move object name>_<suffix>`, carries a comment derived from
//! the tenant's ownership marker (`tenantdb.io/move-restore=<ns>/<name>`,
//! `tenantdb.io/move-replication=<ns>/<name>`: the same on both servers, and no home of the
//! tenant), and is dropped only when it carries that comment.
//!
//! One rule for both, decided here: a role of that name **without** the marker is not the move's.
//! It is never touched and blocks no clean-up (a roll-back, a deletion, the clean-up after a
//! crash go on, with a warning), but the move refuses to create its role over it
//! ([`Found::NotOurs`] → [`refuse_not_ours`]).

use tracing::warn;

use crate::error::{Error, Result};
use crate::naming::{Ident, TenantNames};
use crate::pg::PgAdmin;

/// Which of the move's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The schema copy's restore role, on the target.
    Restore,
    /// The subscription's replication login, on the source.
    Replication,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Restore => "restore",
            Kind::Replication => "repl",
        }
    }

    fn marker_key(self) -> &'static str {
        match self {
            Kind::Restore => "tenantdb.io/move-restore=",
            Kind::Replication => "tenantdb.io/move-replication=",
        }
    }

    /// What the role is called in messages.
    fn what(self) -> &'static str {
        match self {
            Kind::Restore => "restore role",
            Kind::Replication => "replication login",
        }
    }

    /// Which server the role lives on, in messages.
    fn server(self) -> &'static str {
        match self {
            Kind::Restore => "target",
            Kind::Replication => "source",
        }
    }
}

/// The role of kind `kind` of the move whose objects are named `move_name`.
pub fn name(kind: Kind, move_name: &Ident) -> Result<Ident> {
    Ok(Ident::new(&format!(
        "{}_{}",
        move_name.as_str(),
        kind.suffix()
    ))?)
}

/// The comment marking a role of kind `kind` as the move's of the Tenant `names` belong to.
pub fn marker(kind: Kind, names: &TenantNames) -> String {
    names
        .owner_marker
        .replacen("tenantdb.io/owner=", kind.marker_key(), 1)
}

/// What a server holds under a move role's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No role of that name.
    Absent,
    /// The move's role (it carries the marker).
    Ours,
    /// A role of that name without the move's marker: never touched.
    NotOurs,
}

/// Looks the role up on `pg` (by its comment). A role that is not the move's is reported with a
/// warning (it blocks no clean-up; see [`refuse_not_ours`] for creating).
pub async fn find(pg: &PgAdmin, kind: Kind, names: &TenantNames, role: &Ident) -> Result<Found> {
    let comment: Option<Option<String>> = sqlx::query_scalar(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
    )
    .bind(role.as_str())
    .fetch_optional(pg.admin()?)
    .await?;
    Ok(match comment {
        None => Found::Absent,
        Some(c) if c.as_deref() == Some(marker(kind, names).as_str()) => Found::Ours,
        Some(_) => {
            warn!(
                role = role.as_str(),
                "a role named like the move's {} is not the move's: left alone",
                kind.what()
            );
            Found::NotOurs
        }
    })
}

/// Refuses to create the move's role over a role of its name that is not the move's.
pub fn refuse_not_ours(kind: Kind, role: &Ident, found: Found) -> Result<()> {
    if found == Found::NotOurs {
        return Err(Error::Conflict(format!(
            "role {} exists on the {} server and is not this move's {}",
            role.as_str(),
            kind.server(),
            kind.what()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_markers_differ_per_kind_and_fit() {
        let m = super::super::object_name("Tenant/ns/a", "2026-01-01T00:00:00Z").unwrap();
        let r = name(Kind::Restore, &m).unwrap();
        let l = name(Kind::Replication, &m).unwrap();
        assert_eq!(r.as_str(), format!("{}_restore", m.as_str()));
        assert_eq!(l.as_str(), format!("{}_repl", m.as_str()));
        assert!(super::super::is_move_object(r.as_str()));
        assert!(super::super::is_move_object(l.as_str()));
        let names = crate::naming::tenant_names(
            "t",
            "ns",
            "a",
            crate::crd::Isolation::Schema,
            None,
            &Ident::new("tenantdb_shared").unwrap(),
        )
        .unwrap();
        assert_eq!(
            marker(Kind::Restore, &names),
            "tenantdb.io/move-restore=ns/a"
        );
        assert_eq!(
            marker(Kind::Replication, &names),
            "tenantdb.io/move-replication=ns/a"
        );
        assert!(refuse_not_ours(Kind::Restore, &r, Found::NotOurs).is_err());
        assert!(refuse_not_ours(Kind::Restore, &r, Found::Ours).is_ok());
        assert!(refuse_not_ours(Kind::Restore, &r, Found::Absent).is_ok());
    }
}
