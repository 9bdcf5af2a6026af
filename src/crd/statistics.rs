//! `Tenant.status.statistics`: per-tenant activity read from the server's statistics views.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Activity of a tenant, from one statistics query per server and usage interval (not one per
/// tenant). Rewritten only when it changes meaningfully (see `docs/operations.md`, "Statistics"),
/// so idle tenants cause no status writes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatisticsStatus {
    /// When the figures were taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<String>,
    /// Sessions of the tenant's login roles (`pg_stat_activity`), by state, and the limit.
    #[serde(default)]
    pub connections: ConnectionStatistics,
    /// Transactions of the tenant's dedicated database (`pg_stat_database`). Absent for `schema`
    /// and `shared` tenants: PostgreSQL counts transactions per database, not per role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<TransactionStatistics>,
    /// Statements of the tenant's login roles (`pg_stat_statements`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statements: Option<StatementStatistics>,
    /// The tenant's MongoDB database (`dbStats`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongoStatistics>,
}

/// Sessions of the tenant's login roles.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatistics {
    /// All sessions.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub total: i32,
    /// Sessions running a statement.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub active: i32,
    /// Idle sessions.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub idle: i32,
    /// Sessions idle inside an open transaction (they hold locks and snapshots).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub idle_in_transaction: i32,
    /// The tenant's connection limit (`quotas.maxConnections` or the operator default), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
}

/// Transactions of a dedicated database.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionStatistics {
    /// Commits per minute over the last measurement interval.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub commits_per_minute: i64,
    /// Rollbacks per minute over the last measurement interval.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub rollbacks_per_minute: i64,
    /// Deadlocks detected since the server's statistics were last reset.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub deadlocks: i64,
    /// Bytes written to temporary files since the statistics were last reset.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub temp_bytes: i64,
    /// Share of block reads served from shared buffers, in percent (absent before any read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub cache_hit_percent: Option<i32>,
}

/// Statements of the tenant's login roles, normalised by `pg_stat_statements`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatementStatistics {
    /// Whether `pg_stat_statements` could be read; when false, `reason` says why and the other
    /// fields are empty.
    pub available: bool,
    /// Why the statistics are not available (e.g. the library is not preloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Statements whose mean execution time is above this many milliseconds count as slow.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub slow_threshold_ms: i64,
    /// Normalised statements whose mean execution time is above the threshold.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub slow: i64,
    /// The slowest normalised statements by mean time (at most 3). Texts are normalised by
    /// PostgreSQL (constants replaced by `$n`) and truncated: they never carry parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub slowest: Vec<SlowStatement>,
}

/// One normalised statement.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlowStatement {
    /// `pg_stat_statements.queryid` (as text: it is a 64-bit hash).
    pub query_id: String,
    /// Times executed.
    #[serde(default)]
    pub calls: i64,
    /// Mean execution time in milliseconds.
    #[serde(default)]
    pub mean_ms: i64,
    /// The normalised text, at most 200 characters.
    #[serde(default)]
    #[schemars(length(max = 204))]
    pub query: String,
}

/// `dbStats` of the tenant's MongoDB database. MongoDB reports connections per server, not per
/// database, so there is no per-tenant connection count.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoStatistics {
    /// Collections.
    #[serde(default)]
    pub collections: i64,
    /// Documents.
    #[serde(default)]
    pub objects: i64,
    /// Uncompressed data size in bytes.
    #[serde(default)]
    pub data_bytes: i64,
    /// Index storage in bytes.
    #[serde(default)]
    pub index_bytes: i64,
}
