//! Pure planning: from the desired and the observed PostgreSQL state to the SQL that closes the gap.
//!
//! Nothing here talks to a database. [`plan`] returns an empty list when the tenant is already in
//! shape, which is what makes a resync of a Ready tenant free of DDL.
//!
//! Credentials use two login roles ("slots"): the primary role, which owns the tenant's objects,
//! and a secondary role `<role>_b`, a member of the primary whose sessions act as the primary
//! (`ALTER ROLE … SET role`). The credentials Secret names the active slot. A rotation moves the
//! Secret to the other slot with a new password and gives the old slot a `VALID UNTIL` at the end
//! of the grace period (PostgreSQL itself then refuses new logins with it); once the grace period
//! is over the old slot is `NOLOGIN`.

use k8s_openapi::jiff::Timestamp;

use crate::naming::{Ident, TenantNames, quote_literal};
use crate::quota::EffectiveQuotas;

/// One of the two login roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The primary role (owner).
    Primary,
    /// The secondary role `<role>_b`.
    Secondary,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::Primary => Slot::Secondary,
            Slot::Secondary => Slot::Primary,
        }
    }

    /// The role name of this slot.
    pub fn role(self, names: &TenantNames) -> &Ident {
        match self {
            Slot::Primary => &names.role,
            Slot::Secondary => &names.secondary_role,
        }
    }

    /// Which slot a user name (from the Secret) refers to; unknown names mean the primary.
    pub fn of_user(names: &TenantNames, user: Option<&str>) -> Slot {
        if user == Some(names.secondary_role.as_str()) {
            Slot::Secondary
        } else {
            Slot::Primary
        }
    }
}

/// What the tenant's PostgreSQL objects should look like.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Names of the objects.
    pub names: TenantNames,
    /// The password the credentials Secret holds (or will hold) for the active slot.
    pub password: String,
    /// The slot the Secret's credentials belong to.
    pub active: Slot,
    /// [`Desired::password`] is new in this reconcile (a rotation, or a Secret without one): the
    /// active slot's password is set even where the admin cannot read verifiers to compare
    /// (an admin that is not a superuser), or the Secret would hold a password no role has.
    pub new_password: bool,
    /// End of the other slot's grace period if a rotation is still within it; `None` means the
    /// other slot must not log in.
    pub previous_valid_until: Option<Timestamp>,
    /// Limits.
    pub quotas: EffectiveQuotas,
    /// Writes withdrawn (storage quota exhausted).
    pub read_only: bool,
    /// The template a new dedicated database is copied from ([`crate::pg::template`]); `None`:
    /// `template0`, an empty database.
    pub template: Option<Ident>,
    /// The warm pool ([`crate::pg::warm`]) a new schema or dedicated database is claimed from:
    /// the fingerprint of the migration set its entries must hold. `None`: built as usual.
    pub pool: Option<String>,
}

impl Desired {
    /// A desired state with no quotas, no rotation in progress, primary slot active.
    pub fn simple(names: TenantNames, password: String) -> Self {
        Self {
            names,
            password,
            active: Slot::Primary,
            new_password: false,
            previous_valid_until: None,
            quotas: EffectiveQuotas {
                connection_limit: -1,
                ..Default::default()
            },
            read_only: false,
            template: None,
            pool: None,
        }
    }

    /// Role settings (name, value) managed for a slot's login role, sorted by name.
    pub fn role_settings(&self, slot: Slot) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if self.read_only {
            v.push(("default_transaction_read_only", "on".to_string()));
        }
        if let Some(ms) = self.quotas.idle_in_transaction_timeout_ms {
            v.push(("idle_in_transaction_session_timeout", ms.to_string()));
        }
        if slot == Slot::Secondary {
            v.push(("role", self.names.role.as_str().to_string()));
        }
        if let Some(ms) = self.quotas.statement_timeout_ms {
            v.push(("statement_timeout", ms.to_string()));
        }
        v
    }
}

/// Role settings the operator manages (others set by a DBA are left alone).
pub const MANAGED_SETTINGS: &[&str] = &[
    "default_transaction_read_only",
    "idle_in_transaction_session_timeout",
    "role",
    "statement_timeout",
];

/// A login role as found in `pg_roles`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedRole {
    /// `rolcanlogin`.
    pub can_login: bool,
    /// `rolconnlimit`.
    pub connection_limit: i32,
    /// Any of SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS set, or NOINHERIT.
    pub has_extra_privileges: bool,
    /// `shobj_description` of the role.
    pub comment: Option<String>,
    /// Whether the stored SCRAM verifier matches the desired password; `None` if it could not be read
    /// (the admin is not a superuser).
    pub password_matches: Option<bool>,
    /// `search_path` set for the role in the tenant's database (from `pg_db_role_setting`).
    pub search_path: Option<String>,
    /// Role-wide settings (`name=value`) from `pg_db_role_setting`.
    pub settings: Vec<String>,
    /// `rolvaliduntil` (None = no expiry / infinity).
    pub valid_until: Option<Timestamp>,
    /// Member of the primary role (secondary slot only).
    pub member_of_primary: bool,
    /// Whether the admin (`current_user`) has this role's privileges (`pg_has_role … USAGE`, an
    /// inherited membership): always for a superuser; an admin with only `CREATEROLE` needs it to
    /// give the role a database or schema, end its sessions and drop what it owns. On PostgreSQL
    /// 16 the automatic `ADMIN`-only membership of a role's creator does not count. For a
    /// `NOINHERIT` admin (unsupported: the docs require `INHERIT`) plain `MEMBER`, which a grant
    /// can satisfy, so that the step is not planned on every reconcile. `None`: not observed
    /// (taken as a member).
    pub admin_member: Option<bool>,
}

impl ObservedRole {
    fn setting(&self, name: &str) -> Option<&str> {
        self.settings.iter().find_map(|s| {
            s.split_once('=')
                .and_then(|(k, v)| (k == name).then_some(v))
        })
    }
}

/// The tenant's database as found in `pg_database`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedDatabase {
    /// Owner role name.
    pub owner: String,
    /// `shobj_description` of the database.
    pub comment: Option<String>,
    /// PUBLIC holds some privilege (CONNECT/TEMP) on it.
    pub public_has_access: bool,
    /// The tenant role may connect.
    pub role_can_connect: bool,
    /// `datconnlimit`.
    pub connection_limit: i32,
}

/// The tenant's schema (isolation `schema`) as found in `pg_namespace` of the shared database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedSchema {
    /// Owner role name.
    pub owner: String,
    /// `obj_description` of the schema.
    pub comment: Option<String>,
}

/// Everything observed about one tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The primary role, if it exists.
    pub role: Option<ObservedRole>,
    /// The secondary (rotation) role, if it exists.
    pub secondary: Option<ObservedRole>,
    /// The database (dedicated or shared), if it exists.
    pub database: Option<ObservedDatabase>,
    /// The schema (isolation `schema` only), if it exists.
    pub schema: Option<ObservedSchema>,
}

impl Observed {
    /// The observed role of a slot.
    pub fn slot(&self, slot: Slot) -> Option<&ObservedRole> {
        match slot {
            Slot::Primary => self.role.as_ref(),
            Slot::Secondary => self.secondary.as_ref(),
        }
    }
}

/// Where a step's SQL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The admin connection's maintenance database (roles, databases).
    Cluster,
    /// Inside the tenant's database (dedicated or shared).
    TenantDatabase,
}

/// One idempotent change. Rendered to SQL by [`Step::sql`]; no step embeds user input other than
/// validated identifiers, integers and operator-generated literals.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the primary role (LOGIN with the password if it is the active slot).
    CreateRole,
    /// Create the secondary role as a member of the primary acting as it.
    CreateSecondary,
    /// Make the secondary role a member of the primary again.
    GrantMembership,
    /// Make the admin a member of an existing role again (a role created by another admin, by
    /// hand, by an older operator, or whose membership was revoked).
    GrantRoleToAdmin(Slot),
    /// Reset a role's attributes to least privilege (drift repair).
    ResetRoleAttributes(Slot),
    /// Set a role's password from the Secret.
    SetPassword(Slot),
    /// Allow logins without expiry.
    EnableLogin(Slot),
    /// Let logins expire at the end of the grace period.
    ExpireLogin(Slot),
    /// Refuse logins.
    DisableLogin(Slot),
    /// End a slot's sessions (so a read-only switch applies to every connection).
    TerminateSessions(Slot),
    /// Set a role's connection limit.
    SetConnectionLimit(Slot),
    /// Set a role-wide setting.
    SetRoleSetting(Slot, &'static str, String),
    /// Remove a role-wide setting.
    ResetRoleSetting(Slot, &'static str),
    /// Mark a pre-existing, unmarked role as ours.
    MarkRole,
    /// Create the dedicated database owned by the role.
    CreateDatabase,
    /// Mark an unmarked dedicated database owned by our role as ours (recovery after a crash
    /// between CREATE DATABASE and COMMENT).
    MarkDatabase,
    /// Give the dedicated database back to the tenant role.
    SetDatabaseOwner,
    /// Set the dedicated database's connection limit.
    SetDatabaseConnectionLimit,
    /// Remove PUBLIC's CONNECT/TEMP on the database.
    RevokePublicOnDatabase,
    /// Let the role connect to the (shared) database.
    GrantConnect,
    /// Set a role's `search_path` in its database.
    SetSearchPath(Slot),
    /// Create the tenant schema owned by the role.
    CreateSchema,
    /// Give the schema back to the tenant role.
    SetSchemaOwner,
}

impl Step {
    /// Where the step runs.
    pub fn scope(&self) -> Scope {
        match self {
            Step::CreateSchema | Step::SetSchemaOwner => Scope::TenantDatabase,
            _ => Scope::Cluster,
        }
    }

    /// Whether the statements may run inside a transaction block.
    pub fn transactional(&self) -> bool {
        !matches!(self, Step::CreateDatabase)
    }

    /// Low-cardinality name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::CreateRole => "CreateRole",
            Step::CreateSecondary => "CreateSecondary",
            Step::GrantMembership => "GrantMembership",
            Step::GrantRoleToAdmin(_) => "GrantRoleToAdmin",
            Step::ResetRoleAttributes(_) => "ResetRoleAttributes",
            Step::SetPassword(_) => "SetPassword",
            Step::EnableLogin(_) => "EnableLogin",
            Step::ExpireLogin(_) => "ExpireLogin",
            Step::DisableLogin(_) => "DisableLogin",
            Step::TerminateSessions(_) => "TerminateSessions",
            Step::SetConnectionLimit(_) => "SetConnectionLimit",
            Step::SetRoleSetting(..) => "SetRoleSetting",
            Step::ResetRoleSetting(..) => "ResetRoleSetting",
            Step::MarkRole => "MarkRole",
            Step::CreateDatabase => "CreateDatabase",
            Step::MarkDatabase => "MarkDatabase",
            Step::SetDatabaseOwner => "SetDatabaseOwner",
            Step::SetDatabaseConnectionLimit => "SetDatabaseConnectionLimit",
            Step::RevokePublicOnDatabase => "RevokePublicOnDatabase",
            Step::GrantConnect => "GrantConnect",
            Step::SetSearchPath(_) => "SetSearchPath",
            Step::CreateSchema => "CreateSchema",
            Step::SetSchemaOwner => "SetSchemaOwner",
        }
    }

    /// A short, secret-free description for logs and Events.
    pub fn describe(&self, d: &Desired) -> String {
        let n = &d.names;
        let r = |s: &Slot| s.role(n).as_str().to_string();
        match self {
            Step::CreateRole => format!("create role {}", n.role.as_str()),
            Step::CreateSecondary => format!("create rotation role {}", n.secondary_role.as_str()),
            Step::GrantMembership => {
                format!("grant {} to {}", n.role.as_str(), n.secondary_role.as_str())
            }
            Step::GrantRoleToAdmin(s) => format!("grant role {} to the admin", r(s)),
            Step::ResetRoleAttributes(s) => format!("reset attributes of role {}", r(s)),
            Step::SetPassword(s) => format!("set password of role {}", r(s)),
            Step::EnableLogin(s) => format!("enable login of role {}", r(s)),
            Step::ExpireLogin(s) => format!("expire login of role {} at end of grace period", r(s)),
            Step::DisableLogin(s) => format!("disable login of role {}", r(s)),
            Step::TerminateSessions(s) => format!("terminate sessions of role {}", r(s)),
            Step::SetConnectionLimit(s) => format!(
                "set connection limit of role {} to {}",
                r(s),
                d.quotas.connection_limit
            ),
            Step::SetRoleSetting(s, k, v) => format!("set {k}={v} for role {}", r(s)),
            Step::ResetRoleSetting(s, k) => format!("reset {k} for role {}", r(s)),
            Step::MarkRole => format!("mark role {} as managed", n.role.as_str()),
            Step::CreateDatabase => format!("create database {}", n.database.as_str()),
            Step::MarkDatabase => format!("mark database {} as managed", n.database.as_str()),
            Step::SetDatabaseOwner => format!("set owner of database {}", n.database.as_str()),
            Step::SetDatabaseConnectionLimit => format!(
                "set connection limit of database {} to {}",
                n.database.as_str(),
                d.quotas.connection_limit
            ),
            Step::RevokePublicOnDatabase => {
                format!("revoke PUBLIC access on database {}", n.database.as_str())
            }
            Step::GrantConnect => format!(
                "grant connect on {} to {} (via {})",
                n.database.as_str(),
                n.role.as_str(),
                n.connect_group.as_str()
            ),
            Step::SetSearchPath(s) => format!("set search_path of role {}", r(s)),
            Step::CreateSchema => format!("create schema {}", n.schema.as_str()),
            Step::SetSchemaOwner => format!("set owner of schema {}", n.schema.as_str()),
        }
    }

    /// The SQL statements of this step. `verifier` is the SCRAM verifier of the desired password
    /// (only used by steps that set a password). Returns `None` if a literal cannot be rendered.
    pub fn sql(&self, d: &Desired, verifier: &str) -> Option<Vec<String>> {
        let n = &d.names;
        let db = &n.database;
        let marker = quote_literal(&n.owner_marker)?;
        let valid_until = d
            .previous_valid_until
            .map(|t| format!("{}", t.strftime("%Y-%m-%dT%H:%M:%SZ")))
            .unwrap_or_else(|| "infinity".to_string());
        const LEAST: &str = "NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS";
        let role_of = |s: &Slot| s.role(n).clone();
        let limit = d.quotas.connection_limit;
        Some(match self {
            Step::CreateRole => {
                let role = &n.role;
                let login = if d.active == Slot::Primary {
                    format!("LOGIN PASSWORD {}", quote_literal(verifier)?)
                } else {
                    "NOLOGIN".to_string()
                };
                vec![
                    format!("CREATE ROLE {role} {login} {LEAST} CONNECTION LIMIT {limit}"),
                    format!("COMMENT ON ROLE {role} IS {marker}"),
                    // An admin that is not a superuser (CREATEROLE + CREATEDB) may give the role
                    // a database or schema (`OWNER`, `AUTHORIZATION`) only as its member; for a
                    // superuser the membership changes nothing.
                    grant_to_admin(role),
                ]
            }
            Step::CreateSecondary => {
                let (role, b) = (&n.role, &n.secondary_role);
                let login = if d.active == Slot::Secondary {
                    format!("LOGIN PASSWORD {}", quote_literal(verifier)?)
                } else {
                    "NOLOGIN".to_string()
                };
                vec![
                    format!(
                        "CREATE ROLE {b} {login} {LEAST} CONNECTION LIMIT {limit} IN ROLE {role}"
                    ),
                    format!("COMMENT ON ROLE {b} IS {marker}"),
                    // As for CreateRole: `DROP OWNED`, `REASSIGN OWNED` and ending its sessions
                    // need it from an admin that is not a superuser.
                    grant_to_admin(b),
                ]
            }
            Step::GrantMembership => vec![format!("GRANT {} TO {}", n.role, n.secondary_role)],
            Step::GrantRoleToAdmin(s) => vec![grant_to_admin(&role_of(s))],
            Step::ResetRoleAttributes(s) => vec![format!("ALTER ROLE {} {LEAST}", role_of(s))],
            Step::SetPassword(s) => vec![format!(
                "ALTER ROLE {} PASSWORD {}",
                role_of(s),
                quote_literal(verifier)?
            )],
            Step::EnableLogin(s) => {
                vec![format!(
                    "ALTER ROLE {} LOGIN VALID UNTIL 'infinity'",
                    role_of(s)
                )]
            }
            Step::ExpireLogin(s) => vec![format!(
                "ALTER ROLE {} VALID UNTIL {}",
                role_of(s),
                quote_literal(&valid_until)?
            )],
            Step::DisableLogin(s) => vec![format!("ALTER ROLE {} NOLOGIN", role_of(s))],
            Step::TerminateSessions(s) => vec![format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {} AND pid <> pg_backend_pid()",
                quote_literal(role_of(s).as_str())?
            )],
            Step::SetConnectionLimit(s) => {
                vec![format!(
                    "ALTER ROLE {} CONNECTION LIMIT {limit}",
                    role_of(s)
                )]
            }
            Step::SetRoleSetting(s, k, v) => {
                // `k` is one of MANAGED_SETTINGS; values are integers, `on`, or a validated role name.
                vec![format!(
                    "ALTER ROLE {} SET {k} = {}",
                    role_of(s),
                    quote_literal(v)?
                )]
            }
            Step::ResetRoleSetting(s, k) => vec![format!("ALTER ROLE {} RESET {k}", role_of(s))],
            Step::MarkRole => vec![format!("COMMENT ON ROLE {} IS {marker}", n.role)],
            Step::CreateDatabase => vec![
                format!(
                    "CREATE DATABASE {db} OWNER {} TEMPLATE {} ENCODING 'UTF8' CONNECTION LIMIT {limit}",
                    n.role,
                    d.template
                        .as_ref()
                        .map_or_else(|| "template0".to_string(), |t| t.to_string())
                ),
                format!("COMMENT ON DATABASE {db} IS {marker}"),
            ],
            Step::MarkDatabase => vec![format!("COMMENT ON DATABASE {db} IS {marker}")],
            Step::SetDatabaseOwner => vec![format!("ALTER DATABASE {db} OWNER TO {}", n.role)],
            Step::SetDatabaseConnectionLimit => {
                vec![format!("ALTER DATABASE {db} CONNECTION LIMIT {limit}")]
            }
            Step::RevokePublicOnDatabase => {
                vec![format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC")]
            }
            // Membership in the connect group, not an ACL entry per tenant on the database row:
            // concurrent GRANTs on one pg_database row fail with "tuple concurrently updated"
            // and a long datacl makes every catalog read slower.
            Step::GrantConnect => vec![format!("GRANT {} TO {}", n.connect_group, n.role)],
            Step::SetSearchPath(s) => vec![format!(
                "ALTER ROLE {} IN DATABASE {db} SET search_path TO {}",
                role_of(s),
                n.schema
            )],
            Step::CreateSchema => vec![
                format!("CREATE SCHEMA {} AUTHORIZATION {}", n.schema, n.role),
                format!("COMMENT ON SCHEMA {} IS {marker}", n.schema),
            ],
            Step::SetSchemaOwner => {
                vec![format!("ALTER SCHEMA {} OWNER TO {}", n.schema, n.role)]
            }
        })
    }
}

/// Makes the admin a member of `role` (for a superuser it changes nothing): what a `CREATEROLE`
/// admin needs to give the role a database or schema, end its sessions and drop what it owns.
pub(crate) fn grant_to_admin(role: &Ident) -> String {
    format!("GRANT {role} TO CURRENT_USER")
}

/// Why a plan cannot be made: an object the tenant maps to is owned by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict(pub String);

fn ours(comment: &Option<String>, marker: &str) -> bool {
    comment.as_deref() == Some(marker)
}

/// The expected `search_path` setting text in `pg_db_role_setting` for a schema.
pub fn search_path_setting(schema: &Ident) -> String {
    format!("search_path={}", schema.as_str())
}

fn same_second(a: Option<Timestamp>, b: Option<Timestamp>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x.as_second() - y.as_second()).abs() <= 1,
        _ => false,
    }
}

/// Steps for one existing login role: attributes, login state, password, limits, settings, path.
fn plan_login_role(
    d: &Desired,
    slot: Slot,
    r: &ObservedRole,
    steps: &mut Vec<Step>,
    late: &mut Vec<Step>,
) {
    // First: the steps below and the ones on the database or schema may need the membership.
    if r.admin_member == Some(false) {
        steps.push(Step::GrantRoleToAdmin(slot));
    }
    if r.has_extra_privileges {
        steps.push(Step::ResetRoleAttributes(slot));
    }
    if d.active == slot {
        if !r.can_login || r.valid_until.is_some() {
            steps.push(Step::EnableLogin(slot));
        }
        // Unknown (the admin cannot read verifiers): set it when it is new, else trust it.
        if r.password_matches == Some(false) || (r.password_matches.is_none() && d.new_password) {
            steps.push(Step::SetPassword(slot));
        }
    } else if d.previous_valid_until.is_some() {
        if r.can_login && !same_second(r.valid_until, d.previous_valid_until) {
            steps.push(Step::ExpireLogin(slot));
        }
    } else if r.can_login {
        steps.push(Step::DisableLogin(slot));
    }
    if r.connection_limit != d.quotas.connection_limit {
        steps.push(Step::SetConnectionLimit(slot));
    }
    let want = d.role_settings(slot);
    for name in MANAGED_SETTINGS {
        let desired = want
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (desired, r.setting(name)) {
            (Some(v), Some(have)) if v == have => {}
            (Some(v), _) => steps.push(Step::SetRoleSetting(slot, name, v.to_string())),
            (None, Some(_)) => steps.push(Step::ResetRoleSetting(slot, name)),
            (None, None) => {}
        }
    }
    // PostgreSQL reads the path back quoted where it needs quotes (`search_path="user"`).
    if r.search_path.as_ref().map(|p| p.replace('"', ""))
        != Some(search_path_setting(&d.names.schema))
    {
        late.push(Step::SetSearchPath(slot));
    }
}

/// Steps for a role that was just created in this plan: settings and path not set by CREATE.
fn plan_new_role(d: &Desired, slot: Slot, steps: &mut Vec<Step>, late: &mut Vec<Step>) {
    for (k, v) in d.role_settings(slot) {
        if let Some(name) = MANAGED_SETTINGS.iter().find(|m| **m == k) {
            steps.push(Step::SetRoleSetting(slot, name, v));
        }
    }
    if d.active != slot && d.previous_valid_until.is_some() {
        // Not reachable in practice (the old slot exists during a grace period), kept for completeness.
        steps.push(Step::ExpireLogin(slot));
    }
    late.push(Step::SetSearchPath(slot));
}

/// Computes the steps that bring `observed` to `desired`. Pure.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Vec<Step>, Conflict> {
    let n = &desired.names;
    let marker = n.owner_marker.as_str();
    let mut steps = Vec::new();
    // Steps that need the database to exist (per-database role settings).
    let mut late = Vec::new();

    // Roles. The secondary slot exists only once a rotation has used it.
    for (slot, obs) in [
        (Slot::Primary, &observed.role),
        (Slot::Secondary, &observed.secondary),
    ] {
        if let Some(r) = obs
            && !ours(&r.comment, marker)
        {
            return Err(Conflict(format!(
                "role {} exists and is not managed by this Tenant ({})",
                slot.role(n).as_str(),
                r.comment.as_deref().unwrap_or("no owner marker")
            )));
        }
    }
    // Shared (row-level security) tenants map both login roles up front, so the rotation role
    // exists (NOLOGIN until used) from the start.
    let secondary_needed = n.rls
        || desired.active == Slot::Secondary
        || (desired.active == Slot::Primary
            && desired.previous_valid_until.is_some()
            && observed.secondary.is_some());
    match &observed.role {
        None => {
            steps.push(Step::CreateRole);
            plan_new_role(desired, Slot::Primary, &mut steps, &mut late);
        }
        Some(r) => plan_login_role(desired, Slot::Primary, r, &mut steps, &mut late),
    }
    match &observed.secondary {
        None if secondary_needed => {
            steps.push(Step::CreateSecondary);
            plan_new_role(desired, Slot::Secondary, &mut steps, &mut late);
        }
        None => {}
        Some(r) => {
            if !r.member_of_primary || observed.role.is_none() {
                steps.push(Step::GrantMembership);
            }
            plan_login_role(desired, Slot::Secondary, r, &mut steps, &mut late);
        }
    }
    let role_is_new = observed.role.is_none();
    let limit = desired.quotas.connection_limit;

    // Database.
    match (&observed.database, n.dedicated_database) {
        (None, true) => {
            steps.push(Step::CreateDatabase);
            steps.push(Step::RevokePublicOnDatabase);
        }
        (None, false) => {
            // The shared database is created by the operator before tenants are planned.
            return Err(Conflict(format!(
                "shared database {} does not exist",
                n.database.as_str()
            )));
        }
        (Some(db), true) => {
            let owned_by_role = db.owner == n.role.as_str();
            if !ours(&db.comment, marker) {
                if db.comment.is_none() && owned_by_role {
                    steps.push(Step::MarkDatabase);
                } else {
                    return Err(Conflict(format!(
                        "database {} exists and is not managed by this Tenant ({})",
                        n.database.as_str(),
                        db.comment.as_deref().unwrap_or("no owner marker")
                    )));
                }
            }
            if !owned_by_role {
                steps.push(Step::SetDatabaseOwner);
            }
            if db.public_has_access {
                steps.push(Step::RevokePublicOnDatabase);
            }
            if db.connection_limit != limit {
                steps.push(Step::SetDatabaseConnectionLimit);
            }
        }
        (Some(db), false) => {
            if db.public_has_access {
                steps.push(Step::RevokePublicOnDatabase);
            }
            if role_is_new || !db.role_can_connect {
                steps.push(Step::GrantConnect);
            }
        }
    }

    // Schema (isolation `schema`; `shared` tenants use the shared layout's schema).
    if !n.dedicated_database && !n.rls {
        match &observed.schema {
            None => steps.push(Step::CreateSchema),
            Some(s) => {
                if !ours(&s.comment, marker) {
                    return Err(Conflict(format!(
                        "schema {} exists and is not managed by this Tenant ({})",
                        n.schema.as_str(),
                        s.comment.as_deref().unwrap_or("no owner marker")
                    )));
                }
                if s.owner != n.role.as_str() {
                    steps.push(Step::SetSchemaOwner);
                }
            }
        }
    }

    steps.append(&mut late);

    // Switching into or out of read-only: end the login roles' sessions so every connection gets
    // the new default (settings apply to new sessions only): pooled connections opened while
    // read-only would otherwise refuse writes after the quota is lifted, until recycled.
    for slot in [Slot::Primary, Slot::Secondary] {
        let switched = steps.iter().any(|s| {
            matches!(s, Step::SetRoleSetting(x, "default_transaction_read_only", _)
                | Step::ResetRoleSetting(x, "default_transaction_read_only") if *x == slot)
        });
        if switched && observed.slot(slot).is_some() {
            steps.push(Step::TerminateSessions(slot));
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests;
