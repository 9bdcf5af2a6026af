//! Monthly partition maintenance for the time-partitioned tables of the baseline schema.
//!
//! The migrations create `saas_unified_audit_logs`, `saas_unified_alerts` and
//! `saas_usage_statistics` as `PARTITION BY RANGE` tables with only a DEFAULT partition
//! (`<table>_default`). [`maintain`] creates the monthly partitions `<table>_pYYYYMM` for the
//! current month and the next `months_ahead` months, and removes (DETACH, then DROP) those older
//! than the retention. Months are calendar months in UTC: bounds of `timestamptz` keys are written
//! with an explicit `+00` offset so they do not depend on the session's `TimeZone`.
//!
//! Rows that already sit in the DEFAULT partition for a month that gets its own partition (the
//! month was missing when they were written) would make `CREATE TABLE … PARTITION OF` fail. For such
//! tables [`maintain`] detaches the DEFAULT partition, creates the new partitions, moves the rows
//! (`DELETE … RETURNING` into the parent, which routes them) and re-attaches the DEFAULT partition,
//! all in its transaction, and reports the number of moved rows.
//!
//! Only names of the form `<table>_pYYYYMM` are ever dropped: the DEFAULT partition and partitions
//! named otherwise are left alone. Maintenance is idempotent.

use jiff::civil::Date;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::migrate::{MigrateError, db_err, quote_identifier};

/// Type of a partition key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKeyType {
    /// `timestamptz`: months are UTC months.
    Timestamptz,
    /// `date`.
    Date,
}

/// A table partitioned by month on `column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionedTable {
    /// Table name.
    pub table: &'static str,
    /// Partition key column.
    pub column: &'static str,
    /// Type of the key column.
    pub key_type: PartitionKeyType,
}

/// The baseline's monthly partitioned tables.
pub const PARTITIONED_TABLES: &[PartitionedTable] = &[
    PartitionedTable {
        table: "saas_unified_audit_logs",
        column: "created_at",
        key_type: PartitionKeyType::Timestamptz,
    },
    PartitionedTable {
        table: "saas_unified_alerts",
        column: "created_at",
        key_type: PartitionKeyType::Timestamptz,
    },
    PartitionedTable {
        table: "saas_usage_statistics",
        column: "usage_date",
        key_type: PartitionKeyType::Date,
    },
];

/// One monthly partition: `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Parent table.
    pub table: &'static str,
    /// Partition name, `<table>_pYYYYMM`.
    pub name: String,
    /// First day of the month (inclusive bound).
    pub from: Date,
    /// First day of the next month (exclusive bound).
    pub to: Date,
}

/// What [`maintain`] should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionPlan {
    /// Missing partitions to create, per table in month order.
    pub create: Vec<PartitionSpec>,
    /// Expired partitions to detach and drop.
    pub drop: Vec<PartitionSpec>,
}

/// What [`maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionReport {
    /// Partitions created.
    pub created: Vec<String>,
    /// Partitions detached and dropped.
    pub dropped: Vec<String>,
    /// Rows moved out of DEFAULT partitions into new partitions.
    pub rows_moved: u64,
    /// Partitioned tables absent from the schema (baseline not applied), left alone.
    pub skipped_tables: Vec<&'static str>,
}

/// `(year, month)` shifted by `delta` months; `None` outside jiff's date range.
fn add_months(year: i16, month: i8, delta: i64) -> Option<Date> {
    let index = i64::from(year) * 12 + i64::from(month) - 1 + delta;
    let y = i16::try_from(index.div_euclid(12)).ok()?;
    let m = i8::try_from(index.rem_euclid(12) + 1).ok()?;
    Date::new(y, m, 1).ok()
}

/// First day of `date`'s month shifted by `delta` months.
fn month_start(date: Date, delta: i64) -> Option<Date> {
    add_months(date.year(), date.month(), delta)
}

/// Today in UTC: the calendar monthly partitions (and the months templates and warm-pool entries
/// are built for) follow.
pub fn today() -> Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// `<table>_pYYYYMM` for the month starting at `month`.
pub fn partition_name(table: &str, month: Date) -> String {
    format!("{table}_p{:04}{:02}", month.year(), month.month())
}

/// Parses `<table>_pYYYYMM` for one of [`PARTITIONED_TABLES`].
pub fn parse_partition_name(name: &str) -> Option<(&'static PartitionedTable, Date)> {
    PARTITIONED_TABLES.iter().find_map(|t| {
        let suffix = name.strip_prefix(t.table)?.strip_prefix("_p")?;
        if suffix.len() != 6 || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i16 = suffix[..4].parse().ok()?;
        let month: i8 = suffix[4..].parse().ok()?;
        Some((t, Date::new(year, month, 1).ok()?))
    })
}

/// Plans partitions of one table. See [`plan_partitions`].
pub fn plan_table_partitions(
    table: &'static PartitionedTable,
    now: Date,
    months_ahead: u32,
    retention_months: Option<u32>,
    existing: &[String],
) -> PartitionPlan {
    let mut plan = PartitionPlan::default();
    for delta in 0..=i64::from(months_ahead) {
        let (Some(from), Some(to)) = (month_start(now, delta), month_start(now, delta + 1)) else {
            break;
        };
        let name = partition_name(table.table, from);
        if !existing.contains(&name) {
            plan.create.push(PartitionSpec {
                table: table.table,
                name,
                from,
                to,
            });
        }
    }
    if let Some(cutoff) = retention_months.and_then(|r| month_start(now, -i64::from(r))) {
        let mut expired: Vec<PartitionSpec> = existing
            .iter()
            .filter_map(|name| {
                let (t, from) = parse_partition_name(name)?;
                if t.table != table.table {
                    return None;
                }
                let to = month_start(from, 1)?;
                (to <= cutoff).then(|| PartitionSpec {
                    table: t.table,
                    name: name.clone(),
                    from,
                    to,
                })
            })
            .collect();
        expired.sort_by_key(|p| p.from);
        plan.drop = expired;
    }
    plan
}

/// Plans partitions of every table in [`PARTITIONED_TABLES`]. Pure.
///
/// - creates the partitions of `now`'s month and of the next `months_ahead` months that are not
///   in `existing` (partition names of any table);
/// - with `retention_months = Some(r)`, drops the existing `<table>_pYYYYMM` partitions whose
///   upper bound is at or before the first day of the month `r` months before `now`'s month:
///   the current month and the `r` previous months are kept (`Some(0)`: only the current one);
/// - never touches the DEFAULT partition or names it did not generate.
pub fn plan_partitions(
    now: Date,
    months_ahead: u32,
    retention_months: Option<u32>,
    existing: &[String],
) -> PartitionPlan {
    let mut plan = PartitionPlan::default();
    for table in PARTITIONED_TABLES {
        let p = plan_table_partitions(table, now, months_ahead, retention_months, existing);
        plan.create.extend(p.create);
        plan.drop.extend(p.drop);
    }
    plan
}

/// SQL literal text of a bound (only digits, `-`, `:`, `+` and spaces: safe to inline).
fn bound_literal(key_type: PartitionKeyType, date: Date) -> String {
    let day = format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day());
    match key_type {
        PartitionKeyType::Timestamptz => format!("{day} 00:00:00+00"),
        PartitionKeyType::Date => day,
    }
}

fn cast(key_type: PartitionKeyType) -> &'static str {
    match key_type {
        PartitionKeyType::Timestamptz => "timestamptz",
        PartitionKeyType::Date => "date",
    }
}

/// Double-quotes a catalog name (column names read from `pg_attribute`).
fn quote_catalog_name(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn exec(
    conn: &mut PgConnection,
    operation: &'static str,
    sql: String,
) -> Result<u64, MigrateError> {
    crate::fence::check()?;
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err(operation))
}

/// Advisory lock class of partition maintenance (two-key form: does not overlap the bigint keys
/// used by migrations). Per schema: `hashtext(schema)`.
const PARTITION_LOCK_CLASS: i32 = 0x7464_6270; // "tdbp"

/// Creates missing monthly partitions and removes expired ones in `schema`, as `owner_role`, in
/// one transaction. See the module documentation.
pub async fn maintain(
    conn: &mut PgConnection,
    schema: &str,
    owner_role: &str,
    now: Date,
    months_ahead: u32,
    retention_months: Option<u32>,
) -> Result<PartitionReport, MigrateError> {
    let quoted_schema = quote_identifier(schema)?;
    let quoted_role = quote_identifier(owner_role)?;
    let mut tx = conn
        .begin()
        .await
        .map_err(db_err("beginning a transaction"))?;
    let result = maintain_in_transaction(
        &mut tx,
        schema,
        &quoted_schema,
        &quoted_role,
        now,
        months_ahead,
        retention_months,
    )
    .await;
    match result {
        Ok(report) => {
            tx.commit().await.map_err(db_err("committing"))?;
            if !report.created.is_empty() || !report.dropped.is_empty() {
                tracing::info!(
                    schema,
                    created = ?report.created,
                    dropped = ?report.dropped,
                    rows_moved = report.rows_moved,
                    "partition maintenance"
                );
            }
            Ok(report)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback after failed partition maintenance failed");
            }
            Err(e)
        }
    }
}

async fn maintain_in_transaction(
    conn: &mut PgConnection,
    schema: &str,
    quoted_schema: &str,
    quoted_role: &str,
    now: Date,
    months_ahead: u32,
    retention_months: Option<u32>,
) -> Result<PartitionReport, MigrateError> {
    // Like a migration: the operator's maintenance, not the tenant application's writes, so the
    // storage quota's read-only default and the statement timeout do not apply.
    crate::fence::check()?;
    sqlx::raw_sql("SET TRANSACTION READ WRITE; SET LOCAL statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .map_err(db_err("starting the maintenance transaction"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(PARTITION_LOCK_CLASS)
        .bind(schema)
        .execute(&mut *conn)
        .await
        .map_err(crate::migrate::lock_err(i64::from(PARTITION_LOCK_CLASS)))?;
    exec(
        conn,
        "setting role and search_path",
        format!("SET LOCAL ROLE {quoted_role}; SET LOCAL search_path TO {quoted_schema}"),
    )
    .await?;

    let tables: Vec<&str> = PARTITIONED_TABLES.iter().map(|t| t.table).collect();
    // Partitioned parents present in the schema, with their DEFAULT partition (if any).
    let parents = sqlx::query(
        "SELECT c.relname::text AS parent, c.oid::bigint AS parent_oid, d.relname::text AS default_part \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = c.oid \
         LEFT JOIN pg_catalog.pg_class d ON d.oid = pt.partdefid \
         WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind = 'p'",
    )
    .bind(schema)
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("listing partitioned tables"))?;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_catalog.pg_inherits i \
         JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
         JOIN pg_catalog.pg_class p ON p.oid = i.inhparent \
         JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace \
         WHERE n.nspname = $1 AND p.relname = ANY($2) AND c.relkind IN ('r', 'p')",
    )
    .bind(schema)
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err("listing partitions"))?;

    let mut report = PartitionReport::default();
    for table in PARTITIONED_TABLES {
        let Some(parent) = parents.iter().find(|r| {
            r.try_get::<String, _>("parent")
                .map(|p| p == table.table)
                .unwrap_or(false)
        }) else {
            report.skipped_tables.push(table.table);
            continue;
        };
        let parent_oid: i64 = parent
            .try_get("parent_oid")
            .map_err(db_err("listing partitioned tables"))?;
        let default_part: Option<String> = parent
            .try_get("default_part")
            .map_err(db_err("listing partitioned tables"))?;
        let plan = plan_table_partitions(table, now, months_ahead, retention_months, &existing);
        let quoted_parent = quote_identifier(table.table)?;
        let column = quote_identifier(table.column)?;
        let ty = cast(table.key_type);

        // Months whose rows already sit in the DEFAULT partition.
        let mut to_move = Vec::new();
        if let Some(default_part) = &default_part {
            let quoted_default = quote_catalog_name(default_part);
            for spec in &plan.create {
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM {quoted_default} WHERE {column} >= $1::{ty} AND {column} < $2::{ty})"
                );
                let has_rows: bool = sqlx::query_scalar(AssertSqlSafe(sql))
                    .persistent(false)
                    .bind(bound_literal(table.key_type, spec.from))
                    .bind(bound_literal(table.key_type, spec.to))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_err("checking the default partition"))?;
                if has_rows {
                    to_move.push(spec);
                }
            }
        }
        let detach_default = match &default_part {
            Some(d) if !to_move.is_empty() => Some(quote_catalog_name(d)),
            _ => None,
        };
        if let Some(quoted_default) = &detach_default {
            exec(
                conn,
                "detaching the default partition",
                format!("ALTER TABLE {quoted_parent} DETACH PARTITION {quoted_default}"),
            )
            .await?;
        }
        for spec in &plan.create {
            let quoted_part = quote_identifier(&spec.name)?;
            exec(
                conn,
                "creating a partition",
                format!(
                    "CREATE TABLE IF NOT EXISTS {quoted_part} PARTITION OF {quoted_parent} \
                     FOR VALUES FROM ('{}') TO ('{}')",
                    bound_literal(table.key_type, spec.from),
                    bound_literal(table.key_type, spec.to)
                ),
            )
            .await?;
            report.created.push(spec.name.clone());
        }
        if let Some(quoted_default) = &detach_default {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT attname::text FROM pg_catalog.pg_attribute \
                 WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped AND attgenerated = '' \
                 ORDER BY attnum",
            )
            .bind(parent_oid)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_err("reading columns"))?;
            let columns = columns
                .iter()
                .map(|c| quote_catalog_name(c))
                .collect::<Vec<_>>()
                .join(", ");
            for spec in &to_move {
                let sql = format!(
                    "WITH moved AS (DELETE FROM {quoted_default} \
                     WHERE {column} >= $1::{ty} AND {column} < $2::{ty} RETURNING {columns}) \
                     INSERT INTO {quoted_parent} ({columns}) SELECT {columns} FROM moved"
                );
                let moved = sqlx::query(AssertSqlSafe(sql))
                    .persistent(false)
                    .bind(bound_literal(table.key_type, spec.from))
                    .bind(bound_literal(table.key_type, spec.to))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err("moving rows out of the default partition"))?;
                report.rows_moved += moved.rows_affected();
            }
            exec(
                conn,
                "re-attaching the default partition",
                format!("ALTER TABLE {quoted_parent} ATTACH PARTITION {quoted_default} DEFAULT"),
            )
            .await?;
        }
        for spec in &plan.drop {
            let quoted_part = quote_identifier(&spec.name)?;
            exec(
                conn,
                "detaching an expired partition",
                format!("ALTER TABLE {quoted_parent} DETACH PARTITION {quoted_part}"),
            )
            .await?;
            exec(
                conn,
                "dropping an expired partition",
                format!("DROP TABLE {quoted_part}"),
            )
            .await?;
            report.dropped.push(spec.name.clone());
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn names(specs: &[PartitionSpec]) -> Vec<&str> {
        specs.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn creates_current_and_ahead() {
        let plan = plan_partitions(date(2025, 1, 31), 2, None, &[]);
        assert_eq!(plan.create.len(), 9);
        let audit: Vec<&PartitionSpec> = plan
            .create
            .iter()
            .filter(|s| s.table == "saas_unified_audit_logs")
            .collect();
        assert_eq!(audit[0].name, "saas_unified_audit_logs_p202501");
        assert_eq!(
            (audit[0].from, audit[0].to),
            (date(2025, 1, 1), date(2025, 2, 1))
        );
        assert_eq!(
            (audit[1].from, audit[1].to),
            (date(2025, 2, 1), date(2025, 3, 1))
        );
        assert_eq!(
            (audit[2].from, audit[2].to),
            (date(2025, 3, 1), date(2025, 4, 1))
        );
        assert!(plan.drop.is_empty());
        assert!(names(&plan.create).contains(&"saas_usage_statistics_p202503"));
        assert!(names(&plan.create).contains(&"saas_unified_alerts_p202502"));
    }

    #[test]
    fn december_to_january() {
        let t = &PARTITIONED_TABLES[2];
        let plan = plan_table_partitions(t, date(2024, 12, 1), 1, None, &[]);
        assert_eq!(
            names(&plan.create),
            [
                "saas_usage_statistics_p202412",
                "saas_usage_statistics_p202501"
            ]
        );
        assert_eq!(plan.create[0].to, date(2025, 1, 1));
        assert_eq!(
            (plan.create[1].from, plan.create[1].to),
            (date(2025, 1, 1), date(2025, 2, 1))
        );
        // months_ahead = 13 crosses two year ends
        let plan = plan_table_partitions(t, date(2024, 12, 15), 13, None, &[]);
        assert_eq!(
            plan.create.last().map(|s| s.name.as_str()),
            Some("saas_usage_statistics_p202601")
        );
        // leap February
        let plan = plan_table_partitions(t, date(2024, 2, 29), 0, None, &[]);
        assert_eq!(
            (plan.create[0].from, plan.create[0].to),
            (date(2024, 2, 1), date(2024, 3, 1))
        );
    }

    #[test]
    fn existing_partitions_are_not_recreated() {
        let existing = vec![
            "saas_unified_alerts_p202506".to_string(),
            "saas_unified_alerts_default".to_string(),
        ];
        let t = &PARTITIONED_TABLES[1];
        let plan = plan_table_partitions(t, date(2025, 6, 10), 1, None, &existing);
        assert_eq!(names(&plan.create), ["saas_unified_alerts_p202507"]);
        let all: Vec<String> = plan
            .create
            .iter()
            .map(|s| s.name.clone())
            .chain(existing)
            .collect();
        assert_eq!(
            plan_table_partitions(t, date(2025, 6, 10), 1, Some(0), &all),
            PartitionPlan::default()
        );
    }

    #[test]
    fn retention() {
        let existing: Vec<String> = [
            "saas_unified_audit_logs_default",
            "saas_unified_audit_logs_p202411",
            "saas_unified_audit_logs_p202412",
            "saas_unified_audit_logs_p202501",
            "saas_unified_audit_logs_p202502",
            "saas_unified_audit_logs_p202503",
            "saas_unified_audit_logs_archive_2020",
            "saas_unified_audit_logs_p2025",
            "saas_unified_alerts_p202411",
            "other_table_p202401",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t = &PARTITIONED_TABLES[0];
        // now March 2025, keep 2 previous months: Jan, Feb, Mar stay; cutoff 2025-01-01
        let plan = plan_table_partitions(t, date(2025, 3, 15), 0, Some(2), &existing);
        assert_eq!(
            names(&plan.drop),
            [
                "saas_unified_audit_logs_p202411",
                "saas_unified_audit_logs_p202412"
            ]
        );
        assert!(plan.create.is_empty());
        // retention across the year boundary: now January 2025, keep 1 previous month
        let plan = plan_table_partitions(t, date(2025, 1, 1), 0, Some(1), &existing);
        assert_eq!(names(&plan.drop), ["saas_unified_audit_logs_p202411"]);
        // Some(0): only the current month is kept
        let plan = plan_table_partitions(t, date(2025, 3, 1), 0, Some(0), &existing);
        assert_eq!(plan.drop.len(), 4);
        // no retention: nothing dropped
        assert!(
            plan_table_partitions(t, date(2030, 1, 1), 0, None, &existing)
                .drop
                .is_empty()
        );
        // all tables: the alerts partition goes too, the default and foreign names never
        let plan = plan_partitions(date(2025, 3, 15), 0, Some(2), &existing);
        assert_eq!(plan.drop.len(), 3);
        assert!(plan.drop.iter().all(|p| !p.name.ends_with("_default")));
    }

    #[test]
    fn names_round_trip() {
        let n = partition_name("saas_usage_statistics", date(2031, 9, 1));
        assert_eq!(n, "saas_usage_statistics_p203109");
        let (t, d) = parse_partition_name(&n).unwrap();
        assert_eq!((t.table, d), ("saas_usage_statistics", date(2031, 9, 1)));
        assert!(parse_partition_name("saas_usage_statistics_p203113").is_none());
        assert!(parse_partition_name("saas_usage_statistics_default").is_none());
        assert!(crate::migrate::validate_identifier("saas_unified_audit_logs_p209912").is_ok());
        assert_eq!(
            bound_literal(PartitionKeyType::Timestamptz, date(2025, 2, 1)),
            "2025-02-01 00:00:00+00"
        );
        assert_eq!(
            bound_literal(PartitionKeyType::Date, date(2025, 2, 1)),
            "2025-02-01"
        );
    }
}
