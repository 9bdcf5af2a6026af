//! Catalog fingerprints: before a tenant moves from one PostgreSQL server to another (schema copied
//! with pg_dump/psql, data with logical replication), the operator checks that source and target
//! have the same catalog by comparing their [`Fingerprint`]s.
//!
//! A fingerprint is, per category (schemas, tables, columns, …), the sorted list of one text entry
//! per object. Entries name objects by their (schema-qualified) names, never by OID, and carry
//! owners and privileges by role name, so identical DDL on two servers gives equal fingerprints
//! although OIDs differ. Things that are data or physical rather than catalog (a sequence's
//! current value, tablespaces, sizes, statistics) are left out, as are the column numbers
//! (`attnum`: dropped columns leave gaps that a dump does not reproduce) and the members of
//! extensions (an extension is listed by name only, with [`Scope::Database`]).
//!
//! All reads happen in one transaction (repeatable read and read only when the connection is not
//! already in a transaction; a savepoint otherwise) with an empty `search_path`, so that every
//! deparsed definition (`pg_get_indexdef`, `pg_get_viewdef`, `pg_get_functiondef`, …) is fully
//! schema-qualified; it is rolled back at the end. The schema name is always a bound parameter.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};
use sqlx::{Connection as _, PgConnection};

/// What to fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every non-system schema of the connected database (everything but `pg_catalog`,
    /// `information_schema`, `pg_toast*` and `pg_temp*`), plus the installed extensions.
    Database,
    /// One schema of the connected database (an absent schema gives empty categories).
    Schema(&'a str),
}

/// A catalog fingerprint: per category, the sorted entries (one text per object).
#[derive(Debug, Clone, Default)]
pub struct Fingerprint {
    /// Entries per category name ([`CATEGORIES`], plus `extensions` with [`Scope::Database`]),
    /// each list sorted bytewise.
    pub categories: BTreeMap<&'static str, Vec<String>>,
}

/// The categories every fingerprint has (`extensions` only with [`Scope::Database`]).
pub const CATEGORIES: &[&str] = &[
    "schemas",
    "tables",
    "columns",
    "indexes",
    "constraints",
    "sequences",
    "views",
    "functions",
    "triggers",
    "policies",
    "rules",
    "statistics",
    "types",
    "comments",
];

impl Fingerprint {
    /// Human-readable differences between `self` (the source) and `target`, one line per entry
    /// present on one side only: `category: only on source: …` / `category: only on target: …`.
    /// Empty when equal. At most `limit` lines: when there are more, the last line says how many
    /// were left out.
    pub fn diff(&self, target: &Fingerprint, limit: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let empty = Vec::new();
        let mut names: Vec<&'static str> = self.categories.keys().copied().collect();
        names.extend(target.categories.keys().copied());
        names.sort_unstable();
        names.dedup();
        for name in names {
            let src = compared(name, self.categories.get(name).unwrap_or(&empty));
            let dst = compared(name, target.categories.get(name).unwrap_or(&empty));
            let src_keys: Vec<String> = src.iter().map(|(k, _)| k.clone()).collect();
            let dst_keys: Vec<String> = dst.iter().map(|(k, _)| k.clone()).collect();
            let (only_src, only_dst) = sorted_difference(&src_keys, &dst_keys);
            let raw = |side: &[(String, &String)], key: &str| {
                side.iter()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| key.to_string(), |(_, r)| (*r).clone())
            };
            lines.extend(
                only_src
                    .into_iter()
                    .map(|e| format!("{name}: only on source: {}", raw(&src, e))),
            );
            lines.extend(
                only_dst
                    .into_iter()
                    .map(|e| format!("{name}: only on target: {}", raw(&dst, e))),
            );
        }
        if lines.len() > limit {
            let kept = limit.saturating_sub(1);
            let left_out = lines.len() - kept;
            lines.truncate(kept);
            if limit > 0 {
                lines.push(format!("… and {left_out} more differences"));
            }
        }
        lines
    }

    /// The fingerprint with a table's replica identity `FULL` read as the default (`replident=f`
    /// of the `tables` entries as `replident=d`): a shared tenant's move sets `FULL` on the
    /// source's layout tables only. Any other identity (`nothing`, an index) still counts.
    pub fn full_identity_as_default(mut self) -> Self {
        if let Some(tables) = self.categories.get_mut("tables") {
            for e in tables.iter_mut() {
                if let Some(at) = e.find(" replident=f ") {
                    e.replace_range(at..at + " replident=f ".len(), " replident=d ");
                }
            }
            tables.sort();
        }
        self
    }

    /// The fingerprint without every entry naming one of the relations `names` of `schema`
    /// (their table, columns, indexes, constraints, triggers, policies, comments): entries
    /// holding `schema.name` as a whole word.
    pub fn without_relations(mut self, schema: &str, names: &[String]) -> Self {
        let qualified: Vec<String> = names.iter().map(|n| format!("{schema}.{n}")).collect();
        let names_one = |e: &str| {
            qualified.iter().any(|q| {
                e.match_indices(q.as_str()).any(|(at, _)| {
                    let before = e[..at].chars().next_back();
                    let after = e[at + q.len()..].chars().next();
                    // (After the name may come `.column`.)
                    let word =
                        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                    !word(before) && before != Some('.') && !word(after)
                })
            })
        };
        for entries in self.categories.values_mut() {
            entries.retain(|e| !names_one(e));
        }
        self
    }

    /// A short hex digest of the whole fingerprint: the first 16 bytes of the SHA-256 of an
    /// unambiguous encoding (length-prefixed category names and entries), as 32 hex digits.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, entries) in &self.categories {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((entries.len() as u64).to_be_bytes());
            for (e, _) in compared(name, entries) {
                h.update((e.len() as u64).to_be_bytes());
                h.update(e.as_bytes());
            }
        }
        let sum = h.finalize();
        let mut out = String::with_capacity(32);
        for b in sum.iter().take(16) {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

impl PartialEq for Fingerprint {
    /// Equal when every category holds the same entries, expressions compared through
    /// [`normalize_expression`].
    fn eq(&self, other: &Self) -> bool {
        self.categories.len() == other.categories.len()
            && self.categories.iter().all(|(name, a)| {
                other.categories.get(name).is_some_and(|b| {
                    let ka: Vec<String> = compared(name, a).into_iter().map(|(k, _)| k).collect();
                    let kb: Vec<String> = compared(name, b).into_iter().map(|(k, _)| k).collect();
                    ka == kb
                })
            })
    }
}

impl Eq for Fingerprint {}

/// A category's entries as they are compared (normalized for the expression categories), with
/// the entry as read, sorted by the compared form.
fn compared<'e>(name: &str, entries: &'e [String]) -> Vec<(String, &'e String)> {
    let mut v: Vec<(String, &String)> = entries
        .iter()
        .map(|e| {
            let k = if EXPRESSIONS.contains(&name) {
                normalize_expression(e)
            } else {
                e.clone()
            };
            (k, e)
        })
        .collect();
    v.sort();
    v
}

/// Entries of `a` not in `b` and of `b` not in `a`, both sorted (multiset difference).
fn sorted_difference<'x>(a: &'x [String], b: &'x [String]) -> (Vec<&'x str>, Vec<&'x str>) {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (Vec::new(), Vec::new());
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(x.as_str());
                i += 1;
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                only_b.push(y.as_str());
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(x.as_str());
                i += 1;
            }
            (None, None) => break,
        }
    }
    (only_a, only_b)
}

/// Prefixes a query with the CTE `ns` (the schemas in scope; `$1` is the schema of
/// [`Scope::Schema`], NULL for [`Scope::Database`]). User schemas cannot start with `pg_`, so
/// `pg\_%` covers `pg_catalog`, `pg_toast*` and `pg_temp*`.
macro_rules! scoped {
    ($($q:expr),+ $(,)?) => {
        concat!(
            "WITH ns AS (SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n \
             WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
             AND ($1::text IS NULL OR n.nspname = $1)) ",
            $($q),+
        )
    };
}

/// ` AND NOT <object is a member of an extension>` for an object of catalog `$cat`.
macro_rules! not_ext {
    ($cat:literal, $oid:literal) => {
        concat!(
            " AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = '",
            $cat,
            "'::regclass AND x.objid = ",
            $oid,
            " AND x.deptype = 'e')"
        )
    };
}

/// An ACL as sorted text; a NULL ACL (the default) is spelled out with `acldefault`, so that an
/// explicit grant of the defaults compares equal to none. Grants to a move's own roles
/// (`tenantdb_mv_…`: the replication login's `SELECT` on the source, see `moves::repl_login`) are
/// not the tenant's and are left out.
macro_rules! acl {
    ($acl:literal, $kind:literal, $owner:literal) => {
        concat!(
            "(SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(COALESCE(",
            $acl,
            ", acldefault('",
            $kind,
            "', ",
            $owner,
            "))) a WHERE a::text NOT LIKE 'tenantdb\\_mv\\_%')"
        )
    };
}

/// Sorted `reloptions` of `pg_class c`.
macro_rules! reloptions {
    () => {
        "(SELECT string_agg(o, ',' ORDER BY o) FROM unnest(c.reloptions) o)"
    };
}

/// Collation of an attribute-like row (`$coll`), NULL when none.
macro_rules! collation {
    ($coll:literal) => {
        concat!(
            "CASE WHEN ",
            $coll,
            " <> 0 THEN ",
            $coll,
            "::regcollation::text END"
        )
    };
}

const SCHEMAS: &str = scoped!(
    "SELECT format('%s owner=%s acl=%s', quote_ident(ns.nspname), pg_get_userbyid(ns.nspowner), ",
    acl!("ns.nspacl", "n", "ns.nspowner"),
    ") FROM ns WHERE true",
    not_ext!("pg_namespace", "ns.oid"),
);

const TABLES: &str = scoped!(
    "SELECT format('%s kind=%s owner=%s acl=%s rls=%s forced=%s persistence=%s replident=%s \
     am=%s options=%s partkey=%s bound=%s inherits=%s', c.oid::regclass, c.relkind, \
     pg_get_userbyid(c.relowner), ",
    acl!("c.relacl", "r", "c.relowner"),
    ", c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, c.relreplident, am.amname, ",
    reloptions!(),
    ", CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
     pg_get_expr(c.relpartbound, c.oid), \
     (SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno) \
      FROM pg_inherits i WHERE i.inhrelid = c.oid)) \
     FROM pg_class c JOIN ns ON ns.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam \
     WHERE c.relkind IN ('r', 'p', 'f')",
    not_ext!("pg_class", "c.oid"),
);

const COLUMNS: &str = scoped!(
    "SELECT format('%s.%s type=%s notnull=%s default=%s identity=%s generated=%s collation=%s \
     acl=%s', c.oid::regclass, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), \
     a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, ",
    collation!("a.attcollation"),
    ", (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x)) \
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace \
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f', 'v', 'm')",
    not_ext!("pg_class", "c.oid"),
);

const INDEXES: &str = scoped!(
    "SELECT pg_get_indexdef(i.indexrelid) \
     || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END \
     || CASE WHEN i.indisclustered THEN ' (clustered)' ELSE '' END \
     FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace \
     WHERE true",
    not_ext!("pg_class", "c.oid"),
);

const CONSTRAINTS: &str = scoped!(
    "SELECT format('%s on %s: %s', quote_ident(co.conname), co.conrelid::regclass, \
     pg_get_constraintdef(co.oid)) \
     FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid \
     JOIN ns ON ns.oid = c.relnamespace WHERE true",
    not_ext!("pg_class", "c.oid"),
);

const SEQUENCES: &str = scoped!(
    "SELECT format('%s owner=%s acl=%s type=%s start=%s increment=%s min=%s max=%s cycle=%s \
     cache=%s persistence=%s owned_by=%s', c.oid::regclass, pg_get_userbyid(c.relowner), ",
    acl!("c.relacl", "s", "c.relowner"),
    ", s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle, \
     s.seqcache, c.relpersistence, \
     (SELECT string_agg(d.refobjid::regclass::text || '.' || quote_ident(a.attname), ',') \
      FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))) \
     FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid \
     JOIN ns ON ns.oid = c.relnamespace WHERE true",
    not_ext!("pg_class", "c.oid"),
);

const VIEWS: &str = scoped!(
    "SELECT format('%s kind=%s owner=%s acl=%s options=%s definition=%s', c.oid::regclass, \
     c.relkind, pg_get_userbyid(c.relowner), ",
    acl!("c.relacl", "r", "c.relowner"),
    ", ",
    reloptions!(),
    ", pg_get_viewdef(c.oid)) \
     FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')",
    not_ext!("pg_class", "c.oid"),
);

const FUNCTIONS: &str = scoped!(
    "SELECT format('%s kind=%s owner=%s acl=%s definition=%s', p.oid::regprocedure, p.prokind, \
     pg_get_userbyid(p.proowner), ",
    acl!("p.proacl", "f", "p.proowner"),
    ", CASE WHEN p.prokind = 'a' THEN \
       (SELECT format('aggregate sfunc=%s stype=%s finalfunc=%s combinefunc=%s initcond=%s \
        sortop=%s kind=%s', g.aggtransfn::oid::regprocedure, g.aggtranstype::regtype, \
        NULLIF(g.aggfinalfn::oid, 0)::regprocedure, NULLIF(g.aggcombinefn::oid, 0)::regprocedure, \
        g.agginitval, NULLIF(g.aggsortop, 0)::regoperator, g.aggkind) \
        FROM pg_aggregate g WHERE g.aggfnoid = p.oid) \
     ELSE pg_get_functiondef(p.oid) END) \
     FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace \
     WHERE NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass \
       AND i.objid = p.oid AND i.deptype = 'i')",
    not_ext!("pg_proc", "p.oid"),
);

const TRIGGERS: &str = scoped!(
    "SELECT format('%s enabled=%s', pg_get_triggerdef(t.oid), t.tgenabled) \
     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace \
     WHERE NOT t.tgisinternal",
    not_ext!("pg_class", "c.oid"),
);

const POLICIES: &str = scoped!(
    "SELECT format('%s on %s cmd=%s permissive=%s roles=%s using=%s check=%s', \
     quote_ident(p.polname), p.polrelid::regclass, p.polcmd, p.polpermissive, \
     (SELECT string_agg(r, ',' ORDER BY r) FROM (SELECT CASE WHEN o = 0 THEN 'public' \
      ELSE quote_ident(pg_get_userbyid(o)) END AS r FROM unnest(p.polroles) o) q), \
     pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)) \
     FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ns ON ns.oid = c.relnamespace \
     WHERE true",
    not_ext!("pg_class", "c.oid"),
);

const RULES: &str = scoped!(
    "SELECT format('%s enabled=%s', pg_get_ruledef(r.oid), r.ev_enabled) \
     FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN ns ON ns.oid = c.relnamespace \
     WHERE r.rulename <> '_RETURN'",
    not_ext!("pg_class", "c.oid"),
);

const STATISTICS: &str = scoped!(
    "SELECT format('%s owner=%s', pg_get_statisticsobjdef(s.oid), pg_get_userbyid(s.stxowner)) \
     FROM pg_statistic_ext s JOIN ns ON ns.oid = s.stxnamespace WHERE true",
    not_ext!("pg_statistic_ext", "s.oid"),
);

/// Enums (labels in order), domains (with their constraints), composite and range types, base
/// and pseudo types by name; not the implicit array, row and multirange types (nor, in
/// `FUNCTIONS`, the constructors made with a range type: internal dependencies).
const TYPES: &str = scoped!(
    "SELECT format('%s kind=%s owner=%s acl=%s %s', t.oid::regtype, t.typtype, \
     pg_get_userbyid(t.typowner), ",
    acl!("t.typacl", "T", "t.typowner"),
    ", CASE t.typtype \
     WHEN 'e' THEN (SELECT 'labels=' || string_agg(quote_literal(e.enumlabel), ',' \
       ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) \
     WHEN 'd' THEN format('base=%s notnull=%s default=%s collation=%s constraints=%s', \
       format_type(t.typbasetype, t.typtypmod), t.typnotnull, pg_get_expr(t.typdefaultbin, 0), ",
    collation!("t.typcollation"),
    ", (SELECT string_agg(x, '; ' ORDER BY x) FROM (SELECT quote_ident(co.conname) || ' ' \
        || pg_get_constraintdef(co.oid) AS x FROM pg_constraint co WHERE co.contypid = t.oid) q)) \
     WHEN 'c' THEN (SELECT 'attributes=' || string_agg(format('%s %s%s', quote_ident(a.attname), \
       format_type(a.atttypid, a.atttypmod), ' COLLATE ' || ",
    collation!("a.attcollation"),
    "), ', ' ORDER BY a.attnum) FROM pg_attribute a \
       WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) \
     WHEN 'r' THEN (SELECT format('subtype=%s opclass=%s collation=%s canonical=%s diff=%s', \
       r.rngsubtype::regtype, (SELECT quote_ident(m.nspname) || '.' || quote_ident(oc.opcname) \
       FROM pg_opclass oc JOIN pg_namespace m ON m.oid = oc.opcnamespace \
       WHERE oc.oid = r.rngsubopc), NULLIF(r.rngcollation, 0)::regcollation, \
       NULLIF(r.rngcanonical::oid, 0)::regprocedure, NULLIF(r.rngsubdiff::oid, 0)::regprocedure) \
       FROM pg_range r WHERE r.rngtypid = t.oid) \
     ELSE '' END) \
     FROM pg_type t JOIN ns ON ns.oid = t.typnamespace \
     WHERE t.typtype IN ('b', 'c', 'd', 'e', 'p', 'r') \
     AND (t.typtype <> 'c' OR (SELECT k.relkind FROM pg_class k WHERE k.oid = t.typrelid) = 'c') \
     AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)",
    not_ext!("pg_type", "t.oid"),
);

/// Comments on every object of the categories above (`pg_describe_object` names the object).
const COMMENTS: &str = scoped!(
    "SELECT format('%s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description) \
     FROM pg_description d JOIN ns ON ns.oid = CASE d.classoid \
     WHEN 'pg_namespace'::regclass THEN d.objoid \
     WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = d.objoid) \
     WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.objoid) \
     WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.objoid) \
     WHEN 'pg_constraint'::regclass THEN (SELECT connamespace FROM pg_constraint WHERE oid = d.objoid) \
     WHEN 'pg_statistic_ext'::regclass THEN \
       (SELECT stxnamespace FROM pg_statistic_ext WHERE oid = d.objoid) \
     WHEN 'pg_trigger'::regclass THEN (SELECT k.relnamespace FROM pg_trigger g \
       JOIN pg_class k ON k.oid = g.tgrelid WHERE g.oid = d.objoid) \
     WHEN 'pg_policy'::regclass THEN (SELECT k.relnamespace FROM pg_policy g \
       JOIN pg_class k ON k.oid = g.polrelid WHERE g.oid = d.objoid) \
     WHEN 'pg_rewrite'::regclass THEN (SELECT k.relnamespace FROM pg_rewrite g \
       JOIN pg_class k ON k.oid = g.ev_class WHERE g.oid = d.objoid) \
     END \
     WHERE NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = d.classoid \
       AND x.objid = d.objoid AND x.deptype = 'e')",
);

/// Installed extensions, by name (the version is a property of the server's packages).
const EXTENSIONS: &str = "SELECT quote_ident(extname) FROM pg_extension WHERE $1::text IS NULL";

/// The query of each category, in [`CATEGORIES`] order.
const QUERIES: &[(&str, &str)] = &[
    ("schemas", SCHEMAS),
    ("tables", TABLES),
    ("columns", COLUMNS),
    ("indexes", INDEXES),
    ("constraints", CONSTRAINTS),
    ("sequences", SEQUENCES),
    ("views", VIEWS),
    ("functions", FUNCTIONS),
    ("triggers", TRIGGERS),
    ("policies", POLICIES),
    ("rules", RULES),
    ("statistics", STATISTICS),
    ("types", TYPES),
    ("comments", COMMENTS),
];

/// Reads the fingerprint of `scope` in the database `conn` is connected to. Needs read access to
/// the catalog only (any role can read it); runs in its own transaction or, when `conn` is
/// already in one, a savepoint (so uncommitted DDL of that transaction is seen), rolled back at
/// the end either way.
pub async fn fingerprint(
    conn: &mut PgConnection,
    scope: Scope<'_>,
) -> Result<Fingerprint, sqlx::Error> {
    let schema = match scope {
        Scope::Database => None,
        Scope::Schema(s) => Some(s),
    };
    let mut tx = if conn.is_in_transaction() {
        conn.begin().await?
    } else {
        conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?
    };
    // Every deparsed name schema-qualified (pg_catalog stays implicitly searched); local to the
    // transaction or savepoint.
    sqlx::query("SELECT set_config('search_path', '', true)")
        .execute(&mut *tx)
        .await?;
    let mut fp = Fingerprint::default();
    let extensions = schema.is_none().then_some(("extensions", EXTENSIONS));
    for &(name, sql) in QUERIES.iter().chain(extensions.iter()) {
        let rows: Vec<Option<String>> = sqlx::query_scalar(sql)
            .bind(schema)
            .fetch_all(&mut *tx)
            .await?;
        let mut entries: Vec<String> = rows.into_iter().flatten().collect();
        entries.sort_unstable();
        fp.categories.insert(name, entries);
    }
    tx.rollback().await?;
    Ok(fp)
}

/// Categories whose entries hold deparsed expressions (checks, defaults, index predicates, policy
/// quals): compared through [`normalize_expression`].
const EXPRESSIONS: &[&str] = &["constraints", "columns", "indexes", "policies"];

/// An expression as deparsing after a dump and restore gives it too: PostgreSQL's deparser is not
/// idempotent for some expressions (`col IN ('a', 'b')` on a `varchar` comes back with its casts
/// moved: `ANY ((ARRAY['a'::character varying])::text[])` becomes
/// `ANY (ARRAY[('a'::character varying)::text])`). Outside string literals, casts (`::type`, with
/// modifiers and array brackets), parentheses and whitespace are dropped. Comparisons of
/// normalized expressions can therefore miss a change of casts or of grouping alone.
pub fn normalize_expression(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            // A literal, with '' inside, kept as it is.
            let start = i;
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if i + 1 < b.len() && b[i + 1] == b'\'' {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push_str(&s[start..i]);
        } else if c == b':' && i + 1 < b.len() && b[i + 1] == b':' {
            i += 2;
            if i < b.len() && b[i] == b'"' {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < b.len()
                    && (b[i].is_ascii_lowercase()
                        || b[i].is_ascii_digit()
                        || b[i] == b'_'
                        || b[i] == b' '
                        || b[i] == b'.')
                {
                    i += 1;
                }
            }
            if i < b.len() && b[i] == b'(' {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
            }
            while i + 1 < b.len() && b[i] == b'[' && b[i + 1] == b']' {
                i += 2;
            }
        } else if c == b'(' || c == b')' || c.is_ascii_whitespace() {
            i += 1;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn expressions_compare_modulo_casts_and_parentheses() {
        let source = "chk_a on public.t: CHECK (((agent_type)::text = ANY ((ARRAY['chat bot'::character varying, 'it''s'::character varying])::text[])))";
        let restored = "chk_a on public.t: CHECK (((agent_type)::text = ANY (ARRAY[('chat bot'::character varying)::text, ('it''s'::character varying)::text])))";
        assert_eq!(normalize_expression(source), normalize_expression(restored));
        assert_ne!(
            normalize_expression(source),
            normalize_expression(&source.replace("chat bot", "chatbot"))
        );
        assert_eq!(
            normalize_expression("x numeric(10,2) DEFAULT 0::numeric(10,2)"),
            "xnumeric10,2DEFAULT0"
        );
    }

    fn fp(cats: &[(&'static str, &[&str])]) -> Fingerprint {
        Fingerprint {
            categories: cats
                .iter()
                .map(|(k, v)| (*k, v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn diff_lists_both_sides_and_respects_the_limit() {
        let a = fp(&[("tables", &["a", "b", "c"]), ("indexes", &["i"])]);
        let b = fp(&[("tables", &["b", "c", "d"]), ("types", &["t"])]);
        assert_eq!(
            a.diff(&b, 10),
            vec![
                "indexes: only on source: i",
                "tables: only on source: a",
                "tables: only on target: d",
                "types: only on target: t",
            ]
        );
        let cut = a.diff(&b, 2);
        assert_eq!(
            cut,
            vec!["indexes: only on source: i", "… and 3 more differences"]
        );
        assert!(a.diff(&b, 0).is_empty());
        assert!(a.diff(&a.clone(), 10).is_empty());
    }

    #[test]
    fn digest_is_stable_and_unambiguous() {
        let a = fp(&[("tables", &["ab", "c"])]);
        let b = fp(&[("tables", &["a", "bc"])]);
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 32);
        assert_ne!(
            Fingerprint::default().digest(),
            fp(&[("tables", &[])]).digest()
        );
    }

    #[test]
    fn every_category_has_a_query() {
        let names: Vec<&str> = QUERIES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, CATEGORIES);
    }

    #[test]
    fn full_identity_reads_as_default_and_partitions_can_be_left_out() {
        let mut f = Fingerprint::default();
        f.categories.insert(
            "tables",
            vec![
                "s.a kind=r owner=o acl= rls=t forced=t persistence=p replident=f am=heap".into(),
                "s.a_p1 kind=r owner=o acl= rls=t forced=t persistence=p replident=n am=heap"
                    .into(),
            ],
        );
        f.categories.insert(
            "indexes",
            vec![
                "CREATE UNIQUE INDEX a_pkey ON s.a USING btree (id)".into(),
                "CREATE UNIQUE INDEX a_p1_pkey ON s.a_p1 USING btree (id)".into(),
            ],
        );
        let g = f.clone().full_identity_as_default();
        assert_eq!(
            g.categories["tables"],
            vec![
                "s.a kind=r owner=o acl= rls=t forced=t persistence=p replident=d am=heap"
                    .to_string(),
                "s.a_p1 kind=r owner=o acl= rls=t forced=t persistence=p replident=n am=heap"
                    .to_string(),
            ]
        );
        f.categories.insert(
            "columns",
            vec!["s.a.id type=text".into(), "s.a_p1.id type=text".into()],
        );
        let h = f.without_relations("s", &["a_p1".to_string()]);
        assert_eq!(h.categories["columns"], vec!["s.a.id type=text"]);
        assert_eq!(
            h.categories["tables"],
            vec!["s.a kind=r owner=o acl= rls=t forced=t persistence=p replident=f am=heap"]
        );
        assert_eq!(
            h.categories["indexes"],
            vec!["CREATE UNIQUE INDEX a_pkey ON s.a USING btree (id)"]
        );
    }
}
