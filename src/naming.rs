//! PostgreSQL names for tenants: derivation, validation and quoting.
//!
//! Every identifier that reaches SQL goes through [`Ident`], which only exists for names matching
//! `^[a-z_][a-z0-9_]*$`, at most 63 bytes and not reserved. Identifiers are still always rendered
//! double-quoted. Values never go through here: they are bound as query parameters.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::crd::Isolation;

/// Schema holding the tables of `shared`-isolated tenants (row-level security).
pub const SHARED_SCHEMA: &str = "tenantdb_rls";

/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;

/// Bytes kept free at the end of a derived role name for suffixes such as the rotation role's `_b`.
const ROLE_SUFFIX_RESERVE: usize = 2;

/// Names PostgreSQL or the operator reserve.
const RESERVED: &[&str] = &[
    "postgres",
    "template0",
    "template1",
    "public",
    "information_schema",
    "pg_catalog",
    "pg_toast",
    "current_user",
    "session_user",
    "current_role",
    "none",
    "all",
];

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty name.
    #[error("name is empty")]
    Empty,
    /// Longer than 63 bytes.
    #[error("name {0:?} is longer than 63 bytes")]
    TooLong(String),
    /// Characters outside `[a-z0-9_]` or a leading digit.
    #[error(
        "name {0:?} is not a valid identifier (lower-case letters, digits and underscores, not starting with a digit)"
    )]
    Invalid(String),
    /// Reserved by PostgreSQL.
    #[error("name {0:?} is reserved")]
    Reserved(String),
    /// The configured prefix is unusable.
    #[error(
        "name prefix {0:?} is invalid (lower-case letters, digits, underscores; at most 20 bytes)"
    )]
    Prefix(String),
}

/// A validated PostgreSQL identifier. `Display` renders it double-quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validates `name` as an identifier the operator may create or drop: [`Ident::existing`]'s
    /// character rules, and not a name PostgreSQL or the operator reserves.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let ident = Self::existing(name)?;
        if RESERVED.contains(&name) || name.starts_with("pg_") {
            return Err(NameError::Reserved(name.to_string()));
        }
        Ok(ident)
    }

    /// Validates `name` as an identifier of an object that already exists or that PostgreSQL
    /// defines (a table found in the catalog, the `public` schema): `^[a-z_][a-z0-9_]*$`, at most
    /// 63 bytes, no reserved-name check. SQL keywords (`user`, `order`, …) are valid identifiers:
    /// they are safe because every identifier is always rendered double-quoted.
    pub fn existing(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(NameError::TooLong(name.to_string()));
        }
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if !first_ok
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(NameError::Invalid(name.to_string()));
        }
        Ok(Ident(name.to_string()))
    }

    /// `public`, which is reserved for creation but is where a dedicated database keeps its tables.
    pub fn public_schema() -> Self {
        Ident("public".to_string())
    }

    /// The bare name (for binding as a value, e.g. `WHERE rolname = $1`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The double-quoted form for SQL text.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

/// Renders a string literal for the few utility statements that cannot take bind parameters
/// (`COMMENT ON`, `PASSWORD`). Callers only pass operator-generated text (SCRAM verifiers,
/// ownership markers built from DNS-1123 names); quotes are doubled regardless and NUL is refused.
pub fn quote_literal(value: &str) -> Option<String> {
    if value.contains('\0') || value.contains('\\') {
        return None;
    }
    Some(format!("'{}'", value.replace('\'', "''")))
}

/// Validates the operator-wide name prefix (e.g. `tenant_`).
pub fn validate_prefix(prefix: &str) -> Result<(), NameError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 20
        && prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !prefix.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(NameError::Prefix(prefix.to_string()))
    }
}

/// Maps a Kubernetes name (DNS-1123) to identifier characters.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Hex digits of the hash in a derived name whose readable part is whole (32 bits): another
/// namespace can only reach such a name through the few Kubernetes names that read the same
/// (`-` and `.` both read `_`), not by searching for a hash collision.
const HASH_HEX: usize = 8;

/// Hex digits of the hash in a derived name whose readable part was cut to fit (64 bits): the
/// cut-off tail is free text, so with 32 bits a namespace could search (2^32 SHA-256, hours on a
/// CPU) for a name of its own that derives another namespace's future name and hold it first.
const CUT_HASH_HEX: usize = 16;

/// Short stable hash of `namespace/name` ([`HASH_HEX`] hex digits): makes derived names unique
/// across namespaces even when two Kubernetes names sanitize to the same text.
pub fn stable_hash(namespace: &str, name: &str) -> String {
    hash_hex(namespace, name, HASH_HEX)
}

fn hash_hex(namespace: &str, name: &str, digits: usize) -> String {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    digest
        .iter()
        .take(digits / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The derived base name `<prefix><namespace>_<name>_<hash>`: with an 8-digit hash when the
/// readable part fits the identifier limit (minus a small reserve for role suffixes) whole, else
/// cut to fit a 16-digit hash ([`CUT_HASH_HEX`]). The hash is always kept.
pub fn derived_base(prefix: &str, namespace: &str, name: &str) -> String {
    let readable = readable_part(prefix, namespace, name);
    if fits_whole(&readable) {
        return format!("{readable}_{}", stable_hash(namespace, name));
    }
    cut_base(prefix, &readable, &hash_hex(namespace, name, CUT_HASH_HEX))
}

/// The base name builds before d20bf86 (version 0.1.0) derived for a name whose readable part was
/// cut (an 8-digit hash there too), kept for Tenants that already have it (see
/// [`crate::identity::resolve`]). `None` when nothing is cut: that name is [`derived_base`]'s.
pub fn legacy_derived_base(prefix: &str, namespace: &str, name: &str) -> Option<String> {
    let readable = readable_part(prefix, namespace, name);
    (!fits_whole(&readable)).then(|| cut_base(prefix, &readable, &stable_hash(namespace, name)))
}

/// `<prefix><namespace>_<name>` in identifier characters, before any cut.
fn readable_part(prefix: &str, namespace: &str, name: &str) -> String {
    format!("{prefix}{}_{}", sanitize(namespace), sanitize(name))
}

/// Whether `readable` fits whole with `_` and an 8-digit hash (and the role-suffix reserve).
fn fits_whole(readable: &str) -> bool {
    readable.len() + 1 + HASH_HEX <= MAX_IDENT_BYTES - ROLE_SUFFIX_RESERVE
}

/// `readable` cut to leave room for `_<hash>` and the role-suffix reserve (no trailing `_`).
fn cut_base(prefix: &str, readable: &str, hash: &str) -> String {
    let budget = MAX_IDENT_BYTES - ROLE_SUFFIX_RESERVE - hash.len() - 1;
    let mut readable: String = readable.chars().take(budget).collect();
    while readable.ends_with('_') && readable.len() > prefix.len() {
        readable.pop();
    }
    format!("{readable}_{hash}")
}

/// The group role that may connect to the shared database: `<shared database>_connect`.
pub fn connect_group_of(shared_database: &Ident) -> Result<Ident, NameError> {
    let mut base = shared_database.as_str().to_string();
    while base.len() + "_connect".len() > MAX_IDENT_BYTES {
        base.pop();
    }
    Ident::new(&format!("{base}_connect"))
}

/// The rotation role name for a primary role: `<role>_b`, truncating the primary part if needed.
pub fn secondary_of(role: &Ident) -> Result<Ident, NameError> {
    let mut base = role.as_str().to_string();
    while base.len() + 2 > MAX_IDENT_BYTES {
        base.pop();
    }
    Ident::new(&format!("{base}_b"))
}

/// The PostgreSQL names a Tenant maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNames {
    /// Database holding the tenant's data (dedicated, or the shared database).
    pub database: Ident,
    /// Schema holding the tenant's tables.
    pub schema: Ident,
    /// The tenant's primary role: owns the database/schema and logs in (credential slot A).
    pub role: Ident,
    /// The second login role used for zero-downtime rotation (credential slot B): a member of
    /// `role` whose sessions act as `role`.
    pub secondary_role: Ident,
    /// Whether the database is dedicated to this tenant (and so owned and dropped by it).
    pub dedicated_database: bool,
    /// Group role holding CONNECT on the shared database; tenant roles of the shared database are
    /// members (one membership row each, instead of one ACL entry each on the database).
    pub connect_group: Ident,
    /// Whether the tenant shares tables with other tenants under row-level security (isolation
    /// `shared`): the schema is the shared layout's, not the tenant's.
    pub rls: bool,
    /// Ownership marker stored as a comment on the objects the operator creates.
    pub owner_marker: String,
}

/// Computes the names for a Tenant.
///
/// `database_name` is the optional `spec.databaseName` override; `shared_database` the operator's
/// shared database for isolation `schema`.
pub fn tenant_names(
    prefix: &str,
    namespace: &str,
    name: &str,
    isolation: Isolation,
    database_name: Option<&str>,
    shared_database: &Ident,
) -> Result<TenantNames, NameError> {
    validate_prefix(prefix)?;
    let base = match database_name {
        Some(explicit) => Ident::new(explicit)?,
        None => Ident::new(&derived_base(prefix, namespace, name))?,
    };
    names_with_base(base, namespace, name, isolation, shared_database)
}

/// [`tenant_names`] with the base name (database, schema, role) given: an explicit name, a
/// derived one, or one a Tenant already has (see [`crate::identity::resolve`]).
pub fn names_with_base(
    base: Ident,
    namespace: &str,
    name: &str,
    isolation: Isolation,
    shared_database: &Ident,
) -> Result<TenantNames, NameError> {
    let role = base.clone();
    let secondary_role = secondary_of(&role)?;
    let owner_marker = format!("tenantdb.io/owner={namespace}/{name}");
    let connect_group = connect_group_of(shared_database)?;
    Ok(match isolation {
        Isolation::Database => TenantNames {
            database: base,
            schema: Ident::public_schema(),
            role,
            secondary_role,
            dedicated_database: true,
            connect_group: connect_group.clone(),
            rls: false,
            owner_marker,
        },
        Isolation::Shared => TenantNames {
            database: shared_database.clone(),
            schema: Ident(SHARED_SCHEMA.to_string()),
            role,
            secondary_role,
            dedicated_database: false,
            connect_group: connect_group.clone(),
            rls: true,
            owner_marker,
        },
        Isolation::Schema => TenantNames {
            database: shared_database.clone(),
            schema: base,
            role,
            secondary_role,
            dedicated_database: false,
            connect_group,
            rls: false,
            owner_marker,
        },
    })
}

/// Which explicit names (`spec.databaseName`, `spec.mongodb.databaseName`) a namespace may
/// claim (`--explicit-names`).
///
/// Every name the operator derives has a reserved shape no explicit name may take: derived names
/// end with `_<8 or 16 hex digits>` (the hash of `namespace/name`) and rotation roles with `_b`, so an
/// explicit name never equals a name derived for another Tenant, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExplicitNames {
    /// (Default) Explicit names are confined to their namespace: `<namespace>__<rest>`, the
    /// namespace with `-` as `_`, `rest` of lower-case letters, digits and single underscores.
    /// Namespaces are distinct after that mapping, so two namespaces can never claim the same
    /// name, nor one another's future names.
    #[default]
    Namespace,
    /// Any valid name that does not have a derived name's shape (single-team clusters where every
    /// namespace is trusted alike): a namespace can then take a name another one wanted.
    Any,
    /// No explicit names: every name is derived.
    None,
}

impl ExplicitNames {
    /// The spelling of the flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExplicitNames::Namespace => "namespace",
            ExplicitNames::Any => "any",
            ExplicitNames::None => "none",
        }
    }
}

/// The namespace prefix of explicit names under [`ExplicitNames::Namespace`]: `<ns>__`.
pub fn namespace_name_prefix(namespace: &str) -> String {
    format!("{}__", sanitize(namespace))
}

/// Whether `name` has the shape of a derived name (`…_<8 or 16 hex>`) or of a rotation role
/// (`…_b`).
fn derived_shape(name: &str) -> bool {
    if name.ends_with("_b") {
        return true;
    }
    let b = name.as_bytes();
    [HASH_HEX, CUT_HASH_HEX].into_iter().any(|digits| {
        b.len() > digits
            && b[b.len() - digits - 1] == b'_'
            && b[b.len() - digits..]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    })
}

/// Checks an explicit name of `field` (e.g. `spec.databaseName`) of a Tenant in `namespace`
/// against `policy` and the operator's own names (`reserved`). The message names the field and
/// says what would be accepted.
pub fn check_explicit_name(
    policy: ExplicitNames,
    namespace: &str,
    field: &str,
    name: &str,
    reserved: &[&str],
) -> Result<(), String> {
    if policy == ExplicitNames::None {
        return Err(format!(
            "{field} {name:?}: explicit names are not allowed by the operator (--explicit-names none); remove it to get a derived name"
        ));
    }
    if reserved.contains(&name) {
        return Err(format!(
            "{field} {name:?} is one of the operator's own names"
        ));
    }
    if derived_shape(name) {
        return Err(format!(
            "{field} {name:?} has the shape of a name the operator derives (ending in _b, or _ and 8 or 16 hex digits), which no explicit name may take"
        ));
    }
    if policy == ExplicitNames::Namespace {
        let prefix = namespace_name_prefix(namespace);
        let rest = name.strip_prefix(&prefix);
        let ok = rest.is_some_and(|r| {
            !r.is_empty()
                && !r.contains("__")
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if !ok {
            return Err(format!(
                "{field} {name:?} must start with the namespace prefix {prefix:?} followed by lower-case letters, digits and single underscores (e.g. {prefix}crm), so that no other namespace can claim it (--explicit-names namespace)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_names_are_confined_to_their_namespace() {
        use ExplicitNames::*;
        let ok =
            |p, ns, n| check_explicit_name(p, ns, "spec.databaseName", n, &["tenantdb_shared"]);
        assert!(ok(Namespace, "team-a", "team_a__crm").is_ok());
        assert!(ok(Namespace, "team-a", "team_a__crm_2024").is_ok());
        for bad in [
            "crm",                // no prefix
            "team__crm",          // another namespace's prefix
            "team_a__",           // nothing after it
            "team_a__x__y",       // a second separator could fake a longer namespace
            "team_a__crm_b",      // rotation-role shape
            "team_a__c_0a1b2c3d", // derived shape
        ] {
            let e = ok(Namespace, "team-a", bad).unwrap_err();
            assert!(e.contains("spec.databaseName"), "{e}");
        }
        // Two namespaces can never claim the same name: the prefix is the text before the last
        // separator, and the namespace → prefix mapping is one-to-one (namespaces have no `_`).
        assert!(ok(Namespace, "team", "team_a__crm").is_err());
        assert!(ok(Namespace, "a--b", "a__b__x").is_ok());
        assert!(ok(Namespace, "a", "a__b__x").is_err());
        // Derived names and their rotation roles are never acceptable explicit names.
        let derived = derived_base("tenant_", "other", "acme");
        assert!(ok(Any, "x", &derived).is_err());
        let derived_b = format!("{derived}_b");
        assert!(ok(Any, "x", &derived_b).is_err());
        let cut = derived_base("tenant_", "other", &"long".repeat(20));
        assert!(ok(Any, "x", &cut).is_err(), "{cut}");
        assert!(ok(Any, "x", "crm_0123456789abcdef").is_err());
        assert!(ok(Any, "x", "crm_0123456789abcdeg").is_ok());
        assert!(ok(Any, "x", "crm").is_ok());
        assert!(ok(Any, "x", "tenantdb_shared").is_err());
        assert!(ok(None, "x", "x__crm").is_err());
    }

    #[test]
    fn derived_names_are_valid_and_stable() {
        let a = derived_base("tenant_", "team-a", "acme");
        assert!(a.starts_with("tenant_team_a_acme_"));
        assert_eq!(a, derived_base("tenant_", "team-a", "acme"));
        Ident::new(&a).unwrap();
    }

    #[test]
    fn sanitized_collisions_are_separated_by_the_hash() {
        // `ns-a`/`b` and `ns`/`a-b` both read `ns_a_b`.
        let x = derived_base("t_", "ns-a", "b");
        let y = derived_base("t_", "ns", "a-b");
        assert_ne!(x, y);
        assert_eq!(&x[..x.len() - 9], &y[..y.len() - 9]);
    }

    #[test]
    fn long_names_are_truncated_to_fit_with_the_hash() {
        let long = "a".repeat(63);
        let n = derived_base("tenant_", &long, &long);
        assert!(n.len() <= MAX_IDENT_BYTES - ROLE_SUFFIX_RESERVE, "{n}");
        assert!(n.ends_with(&format!("_{}", hash_hex(&long, &long, 16))));
        Ident::new(&n).unwrap();
        // Before: 8 digits there too (kept for Tenants that have it).
        let legacy = legacy_derived_base("tenant_", &long, &long);
        assert_eq!(
            legacy.as_deref(),
            Some("tenant_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_73314bac")
        );
    }

    #[test]
    fn whole_names_keep_their_8_digit_hash() {
        // Unchanged by the 16-digit hash of cut names: existing Tenants keep their names.
        assert_eq!(
            derived_base("tenant_", "team-a", "acme"),
            "tenant_team_a_acme_9201d5e7"
        );
        // (No other, older name: the derivation did not change for them.)
        assert_eq!(legacy_derived_base("tenant_", "team-a", "acme"), None);
        // The longest readable part that is not cut (52 bytes + `_` + 8 = the 61 allowed).
        let ns = "n".repeat(52 - "tenant_".len() - 2);
        let whole = derived_base("tenant_", &ns, "x");
        assert_eq!(whole.len(), 61, "{whole}");
        assert_eq!(legacy_derived_base("tenant_", &ns, "x"), None);
        let cut = derived_base("tenant_", &ns, "xy");
        assert_eq!(cut.len(), 61, "{cut}");
        let legacy = legacy_derived_base("tenant_", &ns, "xy").unwrap();
        assert_ne!(cut, legacy);
    }

    #[test]
    fn cut_names_end_in_a_16_digit_hash() {
        // Two names that read the same once cut differ in a 16-digit (64-bit) hash, not 8.
        let ns = "team";
        let a = derived_base("tenant_", ns, &format!("{}-x", "b".repeat(60)));
        let b = derived_base("tenant_", ns, &format!("{}-y", "b".repeat(60)));
        let (ha, hb) = (&a[a.len() - 16..], &b[b.len() - 16..]);
        assert_eq!(a[..a.len() - 16], b[..b.len() - 16]);
        assert!(ha.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(ha, hb);
    }

    #[test]
    fn hostile_identifiers_are_rejected() {
        for bad in [
            "",
            "Robert",
            "a\"b",
            "a;drop database x",
            "x--y",
            "a b",
            "é",
            "1abc",
            "postgres",
            "template1",
            "pg_anything",
            "public",
            &"a".repeat(64),
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(Ident("a\"b".into()).quoted(), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert!(quote_literal("a\\b").is_none());
        assert!(quote_literal("a\0b").is_none());
    }

    #[test]
    fn names_per_isolation() {
        let shared = Ident::new("tenants").unwrap();
        let d = tenant_names("tenant_", "ns", "acme", Isolation::Database, None, &shared).unwrap();
        assert_eq!(d.schema.as_str(), "public");
        assert!(d.dedicated_database);
        assert_eq!(d.database, d.role);
        let s = tenant_names("tenant_", "ns", "acme", Isolation::Schema, None, &shared).unwrap();
        assert_eq!(s.database, shared);
        assert_eq!(s.schema, s.role);
        assert!(!s.dedicated_database);
        let o = tenant_names(
            "tenant_",
            "ns",
            "acme",
            Isolation::Schema,
            Some("acme"),
            &shared,
        )
        .unwrap();
        assert_eq!(o.schema.as_str(), "acme");
        assert!(
            tenant_names(
                "tenant_",
                "ns",
                "x",
                Isolation::Database,
                Some("template1"),
                &shared
            )
            .is_err()
        );
        assert!(tenant_names("Bad-", "ns", "x", Isolation::Database, None, &shared).is_err());
    }
}
