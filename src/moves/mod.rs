//! Moving a tenant's PostgreSQL part to another server online, on PostgreSQL's logical
//! replication: what it asks of the two servers first ([`servers`]), the SQL of each step on the
//! server it belongs to ([`sql`]; the write freeze's part in [`freeze`]), the login the subscription uses ([`repl_login`]), the schema
//! copy with `pg_dump`/`psql` ([`copy`]), the names and markers of those two roles ([`roles`])
//! and the catalog comparison ([`crate::pg::fingerprint`]). The state machine that drives them, one persisted phase at a
//! time, is the Tenant controller's stage `moving` (docs/moves.md).

pub mod copy;
pub mod freeze;
pub mod notes;
pub mod repl_login;
pub mod roles;
pub mod servers;
pub mod sql;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::naming::Ident;

/// The name of a tenant's move objects (publication, subscription, replication slot), stable
/// across restarts: `tenantdb_mv_` and 16 hex digits of a hash of the Tenant's key and the move's
/// start.
pub fn object_name(key: &str, started_at: &str) -> Result<Ident> {
    let digest = Sha256::digest(format!("{key}\n{started_at}").as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(Ident::new(&format!("tenantdb_mv_{hex}"))?)
}

/// Whether a publication, subscription or slot name is one of the operator's move objects.
pub fn is_move_object(name: &str) -> bool {
    name.starts_with("tenantdb_mv_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_stable_valid_and_distinct() {
        let a = super::object_name("Tenant/ns/a", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            a,
            super::object_name("Tenant/ns/a", "2026-01-01T00:00:00Z").unwrap()
        );
        assert_ne!(
            a,
            super::object_name("Tenant/ns/a", "2026-01-01T00:00:01Z").unwrap()
        );
        assert!(super::is_move_object(a.as_str()) && a.as_str().len() == 28);
    }
}
