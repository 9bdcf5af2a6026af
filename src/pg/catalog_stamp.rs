//! A cheap stamp of a database's catalog: whether anything a [catalog
//! fingerprint](super::fingerprint) reads changed between two points in time, without reading
//! the objects themselves.
//!
//! A move's cut-over compares the source's and the target's fingerprints before its write freeze
//! (the comparison deparses every object: tens of milliseconds) and, inside the freeze, only checks
//! that neither catalog changed since (8–17 ms for both at once in `bench/`); a changed stamp
//! falls back to the full comparison inside the freeze, so a stamp that changes without a real
//! change only costs time, never correctness.
//!
//! Per catalog the stamp holds the number of visible rows and a sum of a hash of each one's
//! physical place and inserting transaction (`ctid`, `xmin`). DDL that creates, alters or drops
//! an object inserts a new row version (a new place and transaction) or removes one, which changes
//! the sum (but for a 32-bit hash collision) — whatever order transactions took their ids and
//! committed in, and across transaction id wraparound (the newest `xmin` alone would miss a
//! transaction that took its id before another's DDL and committed its own after it). Rolled back
//! DDL leaves nothing. Roles are stamped by name (renaming one renames owners and grantees in a
//! fingerprint; `pg_authid` itself is not readable without superuser). What a fingerprint does not
//! read is not stamped: statistics and sizes (`ANALYZE` and `VACUUM` update `pg_class` in place,
//! the same row version at the same place), data, sequence values; a rewrite of a catalog
//! (`VACUUM FULL pg_class`) moves every row and only costs a redone comparison. Temporary objects
//! are left out where their catalog says so (`relpersistence = 't'`, the `pg_temp_*` schemas;
//! comments on temporary tables and their columns): an application's temporary tables disappear
//! when the write freeze ends its sessions, which is no change of the tenant's schema. The whole
//! connected database is stamped, not one tenant's schema: another schema tenant's DDL in a shared
//! database changes the stamp too (the comparison is then redone inside the freeze).

use sqlx::PgConnection;

/// `SELECT '<catalog>', <rows>, <hash sum of their row versions> FROM <the catalog's rows>`, one
/// per `catalog => from` pair, joined by `UNION ALL`.
macro_rules! row_versions {
    ($catalog:literal => $from:literal) => {
        concat!(
            "SELECT '",
            $catalog,
            "', count(*), sum(hashtext(ctid::text || xmin::text)::bigint) FROM ",
            $from
        )
    };
    ($catalog:literal => $from:literal, $($rest:literal => $rest_from:literal),+) => {
        concat!(
            row_versions!($catalog => $from),
            " UNION ALL ",
            row_versions!($($rest => $rest_from),+)
        )
    };
}

/// One text of `catalog:rows:hash sum` entries, a fixed order.
const STAMP: &str = concat!(
    "WITH tmp AS (SELECT oid FROM pg_namespace \
     WHERE nspname LIKE 'pg\\_temp\\_%' OR nspname LIKE 'pg\\_toast\\_temp\\_%'), \
     cls AS (SELECT oid, xmin, ctid FROM pg_class WHERE relpersistence <> 't'), \
     s(catalog, n, x) AS ( ",
    row_versions!(
        "namespace" => "pg_namespace WHERE oid NOT IN (SELECT oid FROM tmp)",
        "class" => "cls",
        "attribute" => "pg_attribute WHERE attrelid IN (SELECT oid FROM cls)",
        "attrdef" => "pg_attrdef WHERE adrelid IN (SELECT oid FROM cls)",
        "index" => "pg_index WHERE indrelid IN (SELECT oid FROM cls)",
        "constraint" => "pg_constraint WHERE connamespace NOT IN (SELECT oid FROM tmp)",
        "trigger" => "pg_trigger WHERE tgrelid IN (SELECT oid FROM cls)",
        "policy" => "pg_policy WHERE polrelid IN (SELECT oid FROM cls)",
        "rewrite" => "pg_rewrite WHERE ev_class IN (SELECT oid FROM cls)",
        "sequence" => "pg_sequence WHERE seqrelid IN (SELECT oid FROM cls)",
        "inherits" => "pg_inherits WHERE inhrelid IN (SELECT oid FROM cls)",
        "partitioned" => "pg_partitioned_table WHERE partrelid IN (SELECT oid FROM cls)",
        "proc" => "pg_proc WHERE pronamespace NOT IN (SELECT oid FROM tmp)",
        "type" => "pg_type WHERE typnamespace NOT IN (SELECT oid FROM tmp)",
        "enum" => "pg_enum",
        "statistic_ext" => "pg_statistic_ext WHERE stxnamespace NOT IN (SELECT oid FROM tmp)",
        "description" => "pg_description WHERE classoid <> 'pg_class'::regclass \
                          OR objoid IN (SELECT oid FROM cls)",
        "opclass" => "pg_opclass",
        "extension" => "pg_extension",
        "extension_member" => "pg_depend WHERE deptype = 'e'",
        "collation" => "pg_collation",
        "operator" => "pg_operator",
        "ts_config" => "pg_ts_config",
        "ts_dict" => "pg_ts_dict",
        "language" => "pg_language",
        "am" => "pg_am"
    ),
    // Roles by name (`pg_authid`, with the row versions, is for superusers only).
    " UNION ALL SELECT 'roles', count(*), sum(hashtext(oid::text || ':' || rolname)::bigint) \
     FROM pg_roles) \
     SELECT string_agg(format('%s:%s:%s', catalog, n, coalesce(x, 0)), ',' ORDER BY catalog) FROM s"
);

/// The stamp of the connected database's catalog (see the module documentation): equal stamps
/// taken at two points in time mean no catalog row a fingerprint reads was written in between.
pub async fn stamp(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    let s: Option<String> = sqlx::query_scalar(STAMP).fetch_one(conn).await?;
    Ok(s.unwrap_or_default())
}
