//! The `Tenant` custom resource (`tenantdb.io/v1alpha1`).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Desired state of a tenant's database home.
///
/// The operator provisions a PostgreSQL home for the tenant according to `isolation`, a least-privilege
/// login role, and a credentials Secret; it reports progress and health in `status`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenantdb.io",
    version = "v1alpha1",
    kind = "Tenant",
    namespaced,
    status = "TenantStatus",
    shortname = "tn",
    category = "tenantdb",
    doc = "A tenant's isolated PostgreSQL home: a dedicated database or schema, a least-privilege login role and a credentials Secret.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Isolation","type":"string","jsonPath":".spec.isolation"}"#,
    printcolumn = r#"{"name":"Database","type":"string","jsonPath":".status.database"}"#,
    printcolumn = r#"{"name":"Server","type":"string","jsonPath":".status.placement.postgres"}"#,
    printcolumn = r#"{"name":"Mongo Server","type":"string","jsonPath":".status.placement.mongodb","priority":1}"#,
    printcolumn = r#"{"name":"Move","type":"string","jsonPath":".status.move.phase"}"#,
    printcolumn = r#"{"name":"Schema","type":"string","jsonPath":".status.schema","priority":1}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.schemaVersion","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.databaseName) == has(oldSelf.databaseName)", "message": "databaseName cannot be added or removed after creation", "fieldPath": ".databaseName"},
    {"rule": "(has(self.mongodb) && has(self.mongodb.databaseName)) == (has(oldSelf.mongodb) && has(oldSelf.mongodb.databaseName))", "message": "mongodb.databaseName cannot be added or removed after creation", "fieldPath": ".mongodb"}
]))]
pub struct TenantSpec {
    /// How the tenant's data is isolated from other tenants. `database`: a dedicated PostgreSQL
    /// database owned by the tenant's role. `schema`: a schema owned by the tenant's role inside the
    /// operator's shared database. `shared`: the baseline tables in one shared schema, every row
    /// tagged with the tenant's id and guarded by row-level security. Immutable after creation.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "isolation is immutable"}]))]
    pub isolation: Isolation,

    /// What happens to the tenant's database objects when the Tenant is deleted. `Retain` (default)
    /// keeps the database/schema, its data and the login role; `Delete` drops them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Optional explicit PostgreSQL name for the tenant's database (isolation `database`) or schema
    /// (isolation `schema`), also its login role. Defaults to `<prefix><namespace>_<name>_<hash>`
    /// so that Tenants in different namespaces never collide. Lower-case letters, digits and
    /// underscores; at most 63 bytes; must not be a reserved name (`postgres`, `template0`,
    /// `template1`, `public`, names starting with `pg_`). The operator's explicit-name policy
    /// decides what a namespace may claim (default `--explicit-names namespace`:
    /// `<namespace>__<rest>` with `-` as `_`, e.g. `team_a__crm`; never the shape of a derived
    /// name, `…_<8 or 16 hex>` or `…_b`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"), length(max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "databaseName is immutable"},
        {"rule": "!(self in ['postgres', 'template0', 'template1', 'public', 'information_schema']) && !self.startsWith('pg_')", "message": "databaseName is a reserved PostgreSQL name"}
    ]))]
    pub database_name: Option<String>,

    /// Credentials Secret settings.
    #[serde(default)]
    pub credentials: CredentialsSpec,

    /// Apply the bundled baseline migrations (`migrations/postgres`) when the tenant is provisioned.
    /// Defaults to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_migrate: Option<bool>,

    /// Resource limits. Unset fields fall back to the operator-wide defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<Box<Quotas>>,

    /// MongoDB database for the tenant's document data. Enabled by default when the operator is
    /// configured with a MongoDB admin URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<Box<MongoSpec>>,

    /// Which database server(s) the tenant is placed on: a server name or a label selector over
    /// DatabaseServers. Unset: the operator's default server (`--default-server`), or, without
    /// one, any server. A later change that no longer allows the server the tenant is on moves
    /// the tenant online to a server it allows (docs/moves.md); a move that cannot start leaves
    /// it there (condition `Placed`, reason `PlacementNotApplied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Box<super::Placement>>,
}

/// MongoDB settings of a tenant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoSpec {
    /// Provision a MongoDB database and user (default: true when the operator has a MongoDB admin URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Explicit MongoDB database name (default: the tenant's derived base name). Immutable: it
    /// cannot be added, changed or removed after creation. Subject to the operator's explicit-name
    /// policy like `databaseName` (default: `<namespace>__<rest>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"), length(max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "mongodb.databaseName is immutable"},
        {"rule": "!(self in ['admin', 'local', 'config'])", "message": "mongodb.databaseName is a reserved MongoDB name"}
    ]))]
    pub database_name: Option<String>,
    /// Apply the Mongo migrations (`migrations/mongodb`) up to this version (default: latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub migration_version: Option<i64>,
}

/// Per-tenant limits, enforced by PostgreSQL role and database settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quotas {
    /// Maximum concurrent connections: the login role's CONNECTION LIMIT (and the database's, for
    /// isolation `database`). During a credential rotation grace period each of the two login roles
    /// has this limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_connections: Option<i32>,
    /// Longest statement before PostgreSQL cancels it (role setting `statement_timeout`), e.g. `30s`,
    /// `500ms`, `5min`, `1h`. `0` disables the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(ms|s|min|h)?$"))]
    pub statement_timeout: Option<String>,
    /// Longest idle time inside an open transaction before the session is terminated (role setting
    /// `idle_in_transaction_session_timeout`), same format as `statementTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(ms|s|min|h)?$"))]
    pub idle_in_transaction_timeout: Option<String>,
    /// Storage limit as a Kubernetes quantity (e.g. `5Gi`, `500Mi`), for PostgreSQL and MongoDB
    /// together. Usage is measured periodically; at 100 % the tenant is switched to read-only in
    /// both (PostgreSQL roles `default_transaction_read_only`, MongoDB user role `read`; see
    /// `status.usage` and the `QuotaExceeded` condition) until usage drops below the limit or the
    /// limit is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub storage: Option<String>,
}

/// Tenant isolation strategy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A dedicated PostgreSQL database per tenant.
    Database,
    /// A dedicated schema per tenant in a shared database.
    Schema,
    /// Shared tables in one schema of the shared database; rows are separated by `tenant_id` and
    /// row-level security (`ENABLE` + `FORCE`) keyed on the login role, which tenants cannot change.
    Shared,
}

impl Isolation {
    /// The spelling used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Database => "database",
            Isolation::Schema => "schema",
            Isolation::Shared => "shared",
        }
    }
}

/// What deletion of the Tenant does to its database objects.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    /// Keep the database or schema, its data and the login role.
    #[default]
    Retain,
    /// Drop the database or schema and the login role.
    Delete,
}

/// Credentials Secret settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// Name of the Secret the operator writes the connection details to (keys `host`, `port`,
    /// `database`, `schema`, `username`, `password`, `uri`). Defaults to `<tenant name>-db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 253)
    )]
    pub secret_name: Option<String>,
    /// Rotate the password automatically this long after the last rotation (or creation), e.g.
    /// `720h`. Unset: rotate only on demand (annotation `tenantdb.io/rotate: <any new value>`).
    /// Must not be shorter than `gracePeriod` (else a rotation would give the previous login, still
    /// in its grace period, a new password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(s|min|h)$"))]
    pub rotate_after: Option<String>,
    /// How long the previous credentials keep working after a rotation (default `1h`). New logins
    /// with the old password fail after this; connections opened before keep running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(s|min|h)$"))]
    pub grace_period: Option<String>,
}

/// Lifecycle phase of a Tenant.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TenantPhase {
    /// Seen, not yet worked on.
    #[default]
    Pending,
    /// Database objects are being created or repaired.
    Provisioning,
    /// Everything exists and the credentials Secret is up to date.
    Ready,
    /// The spec is invalid or provisioning failed; see the conditions.
    Failed,
    /// The Tenant is being deleted and its deletion policy is being carried out.
    Deleting,
}

/// Observed state of a Tenant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// Coarse lifecycle phase; the conditions carry the details.
    #[serde(default)]
    pub phase: TenantPhase,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Latest observations: `Ready`, `Provisioned`, `Degraded`.
    // A list-map keyed by `type`: server-side apply tracks each condition on its own, so a
    // condition the operator stops reporting is removed and other writers' conditions are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// PostgreSQL database holding the tenant's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Schema holding the tenant's tables (`public` of the dedicated database for isolation `database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The tenant's login role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Name of the credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Highest applied schema migration version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// Set while the baseline migrations of a schema or database the operator re-created (a
    /// tenant dropped its own schema, say) have not completed: the `schemaVersion` recorded
    /// before, which they bring it back to (never below the current `schemaVersion`). Recorded
    /// before the schema or database is re-created, so that the migrations are run also after an
    /// operator restart instead of trusting `schemaVersion`; cleared when they complete (with
    /// `autoMigrate` off, kept until it is on again and they ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub baseline_due: Option<i64>,
    /// Measured storage use against the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageStatus>,
    /// Result of the last health check made with the tenant's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Which login role the credentials Secret currently holds, and rotation history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialStatus>,
    /// The tenant's MongoDB database, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<Box<MongoStatus>>,
    /// Connections, transactions and statements of the tenant (refreshed on the usage interval,
    /// written only when they change meaningfully).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<Box<super::StatisticsStatus>>,
    /// The servers the tenant is placed on (PostgreSQL and MongoDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<super::PlacementStatus>,
    /// The last move of the tenant's PostgreSQL part to another server (in progress, or how it
    /// ended).
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub move_: Option<Box<super::MoveStatus>>,
    /// The last move of the tenant's MongoDB database to another MongoDB server (in progress, or
    /// how it ended). `lagBytes` is not used, `attempts` counts copies, and `writeFreezeMs` is
    /// how long the tenant's user was read-only (the whole copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb_move: Option<Box<super::MoveStatus>>,
}

/// MongoDB state of a tenant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoStatus {
    /// MongoDB database name.
    pub database: String,
    /// MongoDB user (defined in that database, `readWrite` on it only; `read` while the storage
    /// quota is exceeded).
    pub user: String,
    /// Highest applied Mongo migration version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Storage + index bytes from `dbStats` (included in `usage.storageBytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<i64>,
}

/// Storage use.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageStatus {
    /// Bytes used: PostgreSQL (database size; the schema's relation sizes; for `shared`, the
    /// tenant's share of the shared tables by row count) plus MongoDB (`mongodb.storageBytes`).
    pub storage_bytes: i64,
    /// The storage quota in bytes, if one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_limit_bytes: Option<i64>,
    /// Use as a whole percentage of the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Whether write access is currently withdrawn because the quota is exhausted.
    #[serde(default)]
    pub read_only: bool,
    /// When the measurement was taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_at: Option<String>,
}

/// Health check result.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// Whether the tenant could log in and run `SELECT 1`.
    pub healthy: bool,
    /// When the check that changed this status ran (RFC 3339). Rewritten only when the result
    /// changes or is older than the operator's health report interval, so idle tenants cause no writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Connect + `SELECT 1` latency in milliseconds (rounded to 10 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Short result description (never contains credentials).
    #[serde(default)]
    pub message: String,
}

/// Credential rotation state.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// The login role whose password the Secret holds.
    pub active_user: String,
    /// When the active password was set by a rotation (RFC 3339); unset before the first rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// The login role used before the last rotation, valid until `previousValidUntil`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_user: Option<String>,
    /// End of the previous credentials' grace period (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<String>,
    /// The value of the `tenantdb.io/rotate` annotation that the last rotation handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_token: Option<String>,
}
