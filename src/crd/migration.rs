//! The `TenantMigration` custom resource (`tenantdb.io/v1alpha1`): a versioned schema migration
//! rolled out to one Tenant or to a fleet of Tenants selected by labels, with a rollout strategy
//! (parallelism, failure budget, canaries, pause), rollback and per-tenant status.
//!
//! The controller lives in [`crate::controller::migration`]; the user documentation in
//! `docs/tenantmigration.md`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Desired rollout of a schema migration to one Tenant or a fleet of Tenants.
///
/// The operator brings the schema of every selected, Ready Tenant to `targetVersion` (forward, or
/// backward with down migrations), at most `strategy.maxParallel` tenants at a time, stopping once
/// more than `strategy.failureBudget` tenants failed. Each tenant is migrated in one transaction:
/// a failed tenant keeps its previous version.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tenantdb.io",
    version = "v1alpha1",
    kind = "TenantMigration",
    namespaced,
    status = "TenantMigrationStatus",
    shortname = "tnm",
    category = "tenantdb",
    doc = "A versioned schema migration rolled out to one Tenant or a fleet of Tenants, with rollout strategy, rollback and per-tenant status.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Target version","type":"integer","jsonPath":".status.targetVersion"}"#,
    printcolumn = r#"{"name":"Succeeded","type":"integer","jsonPath":".status.succeeded"}"#,
    printcolumn = r#"{"name":"Failed","type":"integer","jsonPath":".status.failed"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","jsonPath":".status.total","priority":1}"#,
    printcolumn = r#"{"name":"Dry run","type":"boolean","jsonPath":".spec.dryRun","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TenantMigrationSpec {
    /// Which Tenants of this namespace are migrated: exactly one of `tenant` (one Tenant by name)
    /// or `selector` (every Tenant whose labels match).
    pub target: MigrationTargetRef,

    /// Where the migrations come from. Omitted or empty: the migration set bundled with the
    /// operator. `configMap`: migrations from a ConfigMap, merged on top of the bundled set.
    #[serde(default)]
    pub source: MigrationSource,

    /// Schema version to bring every selected Tenant to; must be a version of the migration set.
    /// Omitted: the highest version of the set. A version below a tenant's current version rolls
    /// that tenant back (down migrations, newest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_version: Option<i64>,

    /// How the migration is rolled out across the selected Tenants.
    #[serde(default)]
    pub strategy: RolloutStrategy,

    /// Only compute and report, per tenant, the steps that would run (`status.tenants[].message`);
    /// execute nothing. Failure budget and canaries do not apply to dry runs.
    #[serde(default)]
    pub dry_run: bool,
}

/// The Tenants a migration applies to: exactly one of `tenant` and `selector`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.tenant) != has(self.selector)", "message": "exactly one of target.tenant and target.selector must be set"}
]))]
pub struct MigrationTargetRef {
    /// Name of one Tenant in the TenantMigration's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(min = 1, max = 253)
    )]
    pub tenant: Option<String>,

    /// Label selector over the Tenants of the TenantMigration's namespace (`matchLabels` and
    /// `matchExpressions`). An empty selector (`{}`) selects every Tenant of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Source of the migration files.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSource {
    /// A ConfigMap in the TenantMigration's namespace whose keys are migration file names
    /// (`<version>_<name>.up.sql`, `<version>_<name>.down.sql` or `<version>_<name>.sql`) and whose
    /// values are the SQL. Merged on top of the bundled set: a version present in both must have
    /// identical SQL. Omitted: the bundled set alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapSource>,
}

/// Reference to a ConfigMap holding migration files.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapSource {
    /// Name of the ConfigMap (same namespace as the TenantMigration).
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(min = 1, max = 253)
    )]
    pub name: String,
}

fn default_max_parallel() -> i32 {
    1
}

/// Rollout strategy across the selected Tenants.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Maximum number of tenants migrated at the same time (1 to 64). Defaults to 1.
    #[serde(default = "default_max_parallel")]
    #[schemars(range(min = 1, max = 64))]
    pub max_parallel: i32,

    /// Maximum number of tenants of one database server migrated at the same time (1 to 64), so
    /// that a fleet rollout across servers does not load one of them with all of `maxParallel`.
    /// Unset: only `maxParallel` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub max_parallel_per_server: Option<i32>,

    /// Number of failed tenants tolerated: once more than this many tenants failed, no new tenant
    /// is started and the migration is `Failed`. Defaults to 0 (stop at the first failure).
    /// Tenants that failed keep their previous version.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub failure_budget: i32,

    /// Number of canary tenants (0 to 100): the first tenants to migrate (by name) are migrated
    /// alone, and the others start only once every canary succeeded. A failed canary stops the
    /// rollout whatever the failure budget. Defaults to 0 (no canaries).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub canary: i32,

    /// Pause the rollout: no new tenant is started; tenants being migrated finish. Set back to
    /// false to resume where the rollout stopped.
    #[serde(default)]
    pub paused: bool,
}

impl Default for RolloutStrategy {
    fn default() -> Self {
        Self {
            max_parallel: default_max_parallel(),
            max_parallel_per_server: None,
            failure_budget: 0,
            canary: 0,
            paused: false,
        }
    }
}

/// Lifecycle phase of a TenantMigration.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum MigrationPhase {
    /// Not started yet (no tenant selected yet, or waiting for the first reconcile).
    #[default]
    Pending,
    /// Tenants are being migrated, or selected tenants are not Ready yet.
    Running,
    /// `strategy.paused` is set and tenants remain to be migrated.
    Paused,
    /// Every selected tenant is at the target version (failures within the budget are listed).
    Succeeded,
    /// More tenants failed than the failure budget allows, a canary failed, or the spec is invalid.
    Failed,
}

impl MigrationPhase {
    /// The spelling used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Pending => "Pending",
            MigrationPhase::Running => "Running",
            MigrationPhase::Paused => "Paused",
            MigrationPhase::Succeeded => "Succeeded",
            MigrationPhase::Failed => "Failed",
        }
    }
}

/// State of one tenant in a rollout.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TenantMigrationState {
    /// Not migrated yet (not started, not Ready, or retrying after a transient error).
    #[default]
    Pending,
    /// Being migrated.
    Running,
    /// At the target version (for a dry run: the plan was computed).
    Succeeded,
    /// A migration failed; the tenant kept its previous version.
    Failed,
    /// Left alone on purpose (e.g. moved by a newer TenantMigration); see the message.
    Skipped,
    /// The tenant's migration history does not match the migration set (checksum drift, unknown
    /// or out-of-order versions): nothing was run. Counts as failed.
    Blocked,
}

/// Progress of one tenant.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantMigrationProgress {
    /// Name of the Tenant.
    pub name: String,
    /// Schema version before the migration (absent: nothing applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<i64>,
    /// Schema version after the migration (for a dry run: the version the plan leads to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<i64>,
    /// State of the tenant in this rollout.
    pub state: TenantMigrationState,
    /// First line of the error, or the steps run (for a dry run: the steps that would run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long the tenant's migration took, lock wait included, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// When the tenant's migration finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// Observed state of a TenantMigration.
///
/// `tenants` is bounded: it lists every failed, blocked and running tenant (failed and blocked
/// ones past the 100 most recent with their name and state only) plus the 50 most recent
/// other tenants; the counts always cover the whole fleet and `omittedTenants` says how many
/// tenants are not listed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantMigrationStatus {
    /// Coarse phase; the conditions carry the details.
    #[serde(default)]
    pub phase: MigrationPhase,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Latest observations: `Progressing`, `Complete`, `Failed`.
    // A list-map keyed by `type`: server-side apply tracks each condition on its own, so a
    // condition the operator stops reporting is removed and other writers' conditions are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One-line summary of the rollout (the message of the condition explaining the phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fingerprint of what is rolled out (target, migration set, target version, dry run, retry
    /// annotation). A new revision starts a new rollout; strategy changes continue the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The resolved target version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<i64>,
    /// Number of selected Tenants.
    #[serde(default)]
    pub total: i32,
    /// Tenants at the target version (for a dry run: planned).
    #[serde(default)]
    pub succeeded: i32,
    /// Tenants whose migration failed or is blocked.
    #[serde(default)]
    pub failed: i32,
    /// Tenants not migrated yet (not started, not Ready, or retrying).
    #[serde(default)]
    pub pending: i32,
    /// Tenants being migrated.
    #[serde(default)]
    pub running: i32,
    /// Tenants left alone on purpose (see their entries).
    #[serde(default)]
    pub skipped: i32,
    /// The canary tenants of this revision, chosen when the rollout started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary_tenants: Vec<String>,
    /// Whether every canary succeeded and the rest of the fleet was released.
    #[serde(default)]
    pub canary_passed: bool,
    /// When the rollout of this revision started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the rollout of this revision reached `Succeeded` or `Failed`; kept while a later pass
    /// brings new Tenants to a Succeeded rollout's version (phase `Running`, reason `CatchingUp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// When the rollout of this revision first reached `Succeeded`. From then on it only brings
    /// Tenants created at or after this time to its version and leaves the others alone; the
    /// time is kept through later passes, also one that fails (phase `Failed` when new Tenants
    /// fail past the budget), until the revision changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<Time>,
    /// Per-tenant progress, bounded: all failed, blocked and running tenants (past the 100 most
    /// recently failed or blocked ones, only their name and state) plus the 50 most recently
    /// finished others, sorted by name.
    #[serde(default)]
    pub tenants: Vec<TenantMigrationProgress>,
    /// Number of selected tenants not listed in `tenants` (see the counts).
    #[serde(default)]
    pub omitted_tenants: i32,
}
