//! The `DatabaseServer` custom resource (`tenantdb.io/v1alpha1`, cluster-scoped): one PostgreSQL
//! or MongoDB server tenants can be placed on, with its capacity.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// A database server the operator places tenants on.
///
/// The operator connects with the admin credentials of `adminSecretRef`, probes the server,
/// places new Tenants on it while it is Ready, not cordoned and has room in every capacity
/// dimension, and reports what it holds in `status`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenantdb.io",
    version = "v1alpha1",
    kind = "DatabaseServer",
    status = "DatabaseServerStatus",
    shortname = "dbs",
    category = "tenantdb",
    doc = "A PostgreSQL or MongoDB server tenants are placed on, with its capacity.",
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Tenants","type":"integer","jsonPath":".status.tenants"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.capacity.maxTenants"}"#,
    printcolumn = r#"{"name":"Cordoned","type":"boolean","jsonPath":".spec.cordoned"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version","priority":1}"#,
    printcolumn = r#"{"name":"Storage","type":"integer","jsonPath":".status.storageBytes","priority":1}"#,
    printcolumn = r#"{"name":"Connections","type":"integer","jsonPath":".status.connectionsReserved","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.engine == oldSelf.engine", "message": "engine is immutable", "fieldPath": ".engine"},
    {"rule": "self.engine == 'postgres' || !has(self.sharedDatabase)", "message": "sharedDatabase applies to postgres servers only", "fieldPath": ".sharedDatabase"},
    {"rule": "!has(self.endpoint.tlsMode) || self.endpoint.tlsMode != 'verify-full' || has(self.endpoint.caSecretRef)", "message": "endpoint.tlsMode verify-full needs endpoint.caSecretRef", "fieldPath": ".endpoint.caSecretRef"},
    {"rule": "self.engine == 'postgres' || !has(self.warmPool)", "message": "warmPool applies to postgres servers only", "fieldPath": ".warmPool"}
]))]
pub struct DatabaseServerSpec {
    /// Which database engine the server runs. Immutable.
    pub engine: Engine,

    /// Where the operator connects to the server.
    pub endpoint: ServerEndpoint,

    /// The Secret holding the admin credentials (keys `username` and `password` unless renamed
    /// here). PostgreSQL: a superuser, or a role with CREATEROLE and CREATEDB. MongoDB: root, or
    /// userAdminAnyDatabase + readWriteAnyDatabase + dbAdminAnyDatabase + clusterMonitor. Never
    /// inline. Read from the operator's namespace only (`--operator-namespace`, the chart's release
    /// namespace): whoever may create a DatabaseServer cannot make the operator read Secrets of
    /// other namespaces.
    pub admin_secret_ref: SecretKeyRef,

    /// The endpoint written to tenants' credentials Secrets (a Service, a pooler, a DNS name),
    /// when applications reach the server differently from the operator. Default: `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_endpoint: Option<TenantEndpoint>,

    /// PostgreSQL: the maintenance database the operator's admin sessions use (default
    /// `postgres`). MongoDB: the database the admin user authenticates against (default
    /// `admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub admin_database: Option<String>,

    /// PostgreSQL: the database holding `schema` and `shared` tenants on this server (created if
    /// missing; default: the operator's `--shared-database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    pub shared_database: Option<String>,

    /// What the server may hold. Unset dimensions are unlimited.
    #[serde(default)]
    pub capacity: Capacity,

    /// No new tenants are placed on a cordoned server; the tenants it holds keep working.
    #[serde(default)]
    pub cordoned: bool,

    /// Drain the server: move every tenant on it to other servers of its engine (a PostgreSQL
    /// server: the `database` and `schema` tenants' PostgreSQL part; a MongoDB server: their
    /// MongoDB databases), a few at a time. A draining server takes no new tenants (as if
    /// cordoned). Removing the field stops it: moves not cut over yet are rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Drain>,

    /// Tenant homes built ahead of time (postgres servers): unclaimed schemas and databases that
    /// already hold the bundled baseline at the latest version, claimed by new `schema` and
    /// `database` Tenants (renamed and handed to the tenant's role) and refilled in the
    /// background. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<WarmPoolSpec>,
}

/// How many unclaimed tenant homes a server keeps ready.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarmPoolSpec {
    /// Unclaimed schemas in the shared database, for new `schema` Tenants (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub schemas: Option<i32>,
    /// Unclaimed databases (copies of the template database), for new `database` Tenants
    /// (default 0). Needs template databases (`--database-templates`, on by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub databases: Option<i32>,
}

/// Database engine of a server.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL (15 or later).
    Postgres,
    /// MongoDB (or a wire-compatible server).
    Mongodb,
}

impl Engine {
    /// The spelling used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mongodb => "mongodb",
        }
    }
}

/// Where the operator connects.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerEndpoint {
    /// Host name or IP address.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$")
    )]
    pub host: String,
    /// TCP port (default 5432 for PostgreSQL, 27017 for MongoDB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// TLS for the operator's connections: `disable`, `prefer` (default), `require`,
    /// `verify-full` (checks the certificate against `caSecretRef` and the host name). MongoDB
    /// has no opportunistic TLS: there `prefer` connects without TLS.
    #[serde(default)]
    pub tls_mode: TlsMode,
    /// A Secret key holding the PEM CA certificate(s) the server's certificate is checked
    /// against (`verify-full`); in the operator's namespace, like `adminSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeySelector>,
}

/// TLS mode of the operator's connections.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it.
    #[default]
    Prefer,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate checked against the CA and the host name.
    VerifyFull,
}

/// A Secret (and keys) to read.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key of the user name (default `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: Option<String>,
    /// Key of the password (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: Option<String>,
}

/// One key of a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Secret name.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// The key (default `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// The host and port written to tenants' Secrets.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantEndpoint {
    /// Host name applications connect to.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$")
    )]
    pub host: String,
    /// Port applications connect to (default: the endpoint's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// How a server is drained.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    /// Moves off this server in progress at once (default 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    #[schemars(range(min = 1, max = 64))]
    pub max_concurrent_moves: i32,
}

fn one() -> i32 {
    1
}

fn is_one(v: &i32) -> bool {
    *v == 1
}

/// Capacity of a server: placement never puts more on it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Most tenants the server holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub max_tenants: Option<i64>,
    /// Most storage the server's tenants use together, as a quantity (e.g. `500Gi`): the sum of
    /// the measured use (`status.usage.storageBytes`) of the tenants placed on it. A server at or
    /// above it takes no new tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub max_storage: Option<String>,
    /// Most connections reserved: the sum of the placed tenants' `quotas.maxConnections` (or the
    /// operator's `--default-max-connections`). A tenant without any connection limit is not placed
    /// on a server that sets this (it could use them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000000))]
    pub max_connections: Option<i64>,
}

/// Observed state of a DatabaseServer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseServerStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (reachable and usable), `Schedulable` (new tenants may be placed),
    /// `LogicalReplication` (PostgreSQL: tenants can be moved off it), `DeletionBlocked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Whether the last probe reached the server.
    #[serde(default)]
    pub reachable: bool,
    /// PostgreSQL: the server's `wal_level` (`logical` is needed to move tenants off it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_level: Option<String>,
    /// The server's version string (e.g. `15.8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Tenants placed on the server.
    #[serde(default)]
    pub tenants: i64,
    /// Storage used by the placed tenants (bytes, as counted for `capacity.maxStorage`).
    #[serde(default)]
    pub storage_bytes: i64,
    /// Connections reserved by the placed tenants (as counted for `capacity.maxConnections`).
    #[serde(default)]
    pub connections_reserved: i64,
    /// When the server was last probed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<String>,
}

/// Where a Tenant may be placed. `server` and `selector` place its PostgreSQL part (postgres
/// DatabaseServers); `mongodb` places its MongoDB database (mongodb DatabaseServers). Each part
/// without a placement goes to the operator's default server of its engine (`--database-url`,
/// `--mongodb-uri`), or, when the operator has none for that engine, to the least utilised server
/// of that engine.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.server) && has(self.selector))", "message": "placement takes either server or selector, not both"}
]))]
pub struct Placement {
    /// The name of a postgres DatabaseServer (or the operator's default server) to place the
    /// tenant's PostgreSQL part on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub server: Option<String>,
    /// A label selector over postgres DatabaseServers: the least utilised matching server with
    /// room is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Where the tenant's MongoDB database is placed (mongodb DatabaseServers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<ServerChoice>,
    /// After the tenant's PostgreSQL part was moved to another server: keep the source copy
    /// (fenced: its roles cannot log in) instead of dropping it. Default false: dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retain_source: bool,
}

impl Placement {
    /// The placement of the PostgreSQL part (`server`, `selector`).
    pub fn postgres(&self) -> ServerChoice {
        ServerChoice {
            server: self.server.clone(),
            selector: self.selector.clone(),
        }
    }
}

/// One server by name, or the least utilised of those a label selector matches.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.server) && has(self.selector))", "message": "placement takes either server or selector, not both"}
]))]
pub struct ServerChoice {
    /// The name of a DatabaseServer of this engine (or the operator's default server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub server: Option<String>,
    /// A label selector over DatabaseServers of this engine: the least utilised matching server
    /// with room is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Phase of a move of a tenant's PostgreSQL part between servers.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema, Default,
)]
pub enum MovePhase {
    /// The target is being prepared: roles (same password verifiers, login disabled), the
    /// database or schema and every schema object, compared by catalog fingerprint.
    #[default]
    Preparing,
    /// Logical replication copies the data and follows the source's writes.
    Copying,
    /// Writes are fenced on the source while the target catches up; sequences are copied and row
    /// counts compared; then the target takes over.
    CuttingOver,
    /// The target took over (`status.placement.postgres` names it); replication objects and the
    /// source copy are being removed.
    CleaningUp,
    /// The move is done.
    Completed,
    /// The move was cancelled (placement changed back) or failed before cut-over and is being
    /// undone: the target copy and the replication objects are removed, the source unfenced.
    RollingBack,
    /// Rolled back: the tenant stays on the source; `message` says why.
    RolledBack,
}

impl MovePhase {
    /// Whether the move is over (completed or rolled back).
    pub fn is_terminal(self) -> bool {
        matches!(self, MovePhase::Completed | MovePhase::RolledBack)
    }
}

/// A move of a tenant's PostgreSQL part (`status.move`) or MongoDB database
/// (`status.mongodbMove`) to another server.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveStatus {
    /// Where the move is.
    pub phase: MovePhase,
    /// The server the tenant is moved from.
    pub from: String,
    /// The server the tenant is moved to.
    pub to: String,
    /// When the move started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it completed or was rolled back (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Size of the tenant's data on the source when the copy started (bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// WAL bytes the target's subscription is behind the source (last measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// How long writes were impossible during the cut-over (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_freeze_ms: Option<i64>,
    /// Cut-over attempts (a cut-over that cannot finish in time is undone and tried again).
    #[serde(default)]
    pub attempts: i32,
    /// PostgreSQL moves only: the tenant's login roles that could log in on the source when the
    /// cut-over began, recorded before its write freeze and cleared when it ends. A cut-over
    /// interrupted after its fence (the operator stopped) gives these their login back — on the
    /// target at the commit point, or on the source when it is undone — except a role whose
    /// `VALID UNTIL` passed meanwhile, so a rotation's previous role keeps its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2))]
    pub login_roles: Option<Vec<String>>,
    /// PostgreSQL moves, from `Copying` on: tables whose initial copy is done, of `tablesTotal`
    /// (the subscription's tables; the move's table synchronisation workers are busy until they
    /// are equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tables_copied: Option<i64>,
    /// PostgreSQL moves, from `Copying` on: the tables the subscription copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub tables_total: Option<i64>,
    /// What the move is doing or why it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl MoveStatus {
    /// Whether the move's subscription may still be copying tables (its table synchronisation
    /// workers busy): in `Copying`, unless every table is known to be copied.
    pub fn copies_tables(&self) -> bool {
        self.phase == MovePhase::Copying
            && !matches!((self.tables_copied, self.tables_total), (Some(c), Some(t)) if c >= t)
    }
}

/// Where a Tenant is placed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// The server holding the tenant's PostgreSQL objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// The server holding the tenant's MongoDB database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<String>,
}
