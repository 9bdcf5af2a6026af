//! Pure planning: from the desired and the observed PostgreSQL state to the SQL that closes the gap.
//!
//! Nothing here talks to a database. [`plan`] returns an empty list when the tenant is already in
//! shape, which is what makes a resync of a Ready tenant free of DDL.

use crate::naming::{Ident, TenantNames, quote_literal};

/// What the tenant's PostgreSQL objects should look like.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Names of the objects.
    pub names: TenantNames,
    /// The password the credentials Secret holds (or will hold).
    pub password: String,
    /// Role `CONNECTION LIMIT` (-1 = unlimited).
    pub connection_limit: i32,
}

/// The tenant role as found in `pg_roles`.
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
    /// The role, if it exists.
    pub role: Option<ObservedRole>,
    /// The database (dedicated or shared), if it exists.
    pub database: Option<ObservedDatabase>,
    /// The schema (isolation `schema` only), if it exists.
    pub schema: Option<ObservedSchema>,
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
/// validated identifiers and operator-generated literals.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the login role with its password verifier and ownership marker.
    CreateRole,
    /// Reset the role's attributes to least privilege (drift repair).
    ResetRoleAttributes,
    /// Set the role's password from the Secret.
    SetPassword,
    /// Set the role's connection limit.
    SetConnectionLimit,
    /// Mark a pre-existing, unmarked role as ours.
    MarkRole,
    /// Create the dedicated database owned by the role.
    CreateDatabase,
    /// Mark an unmarked dedicated database owned by our role as ours (recovery after a crash
    /// between CREATE DATABASE and COMMENT).
    MarkDatabase,
    /// Give the dedicated database back to the tenant role.
    SetDatabaseOwner,
    /// Remove PUBLIC's CONNECT/TEMP on the database.
    RevokePublicOnDatabase,
    /// Let the role connect to the (shared) database.
    GrantConnect,
    /// Set the role's `search_path` in its database.
    SetSearchPath,
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

    /// A short, secret-free description for logs and Events.
    pub fn describe(&self, d: &Desired) -> String {
        let n = &d.names;
        match self {
            Step::CreateRole => format!("create role {}", n.role.as_str()),
            Step::ResetRoleAttributes => format!("reset attributes of role {}", n.role.as_str()),
            Step::SetPassword => format!("set password of role {}", n.role.as_str()),
            Step::SetConnectionLimit => format!(
                "set connection limit of role {} to {}",
                n.role.as_str(),
                d.connection_limit
            ),
            Step::MarkRole => format!("mark role {} as managed", n.role.as_str()),
            Step::CreateDatabase => format!("create database {}", n.database.as_str()),
            Step::MarkDatabase => format!("mark database {} as managed", n.database.as_str()),
            Step::SetDatabaseOwner => format!("set owner of database {}", n.database.as_str()),
            Step::RevokePublicOnDatabase => {
                format!("revoke PUBLIC access on database {}", n.database.as_str())
            }
            Step::GrantConnect => format!(
                "grant connect on {} to {}",
                n.database.as_str(),
                n.role.as_str()
            ),
            Step::SetSearchPath => format!("set search_path of role {}", n.role.as_str()),
            Step::CreateSchema => format!("create schema {}", n.schema.as_str()),
            Step::SetSchemaOwner => format!("set owner of schema {}", n.schema.as_str()),
        }
    }

    /// The SQL statements of this step. `verifier` is the SCRAM verifier of the desired password
    /// (only used by steps that set a password). Returns `None` if a literal cannot be rendered.
    pub fn sql(&self, d: &Desired, verifier: &str) -> Option<Vec<String>> {
        let n = &d.names;
        let role = &n.role;
        let db = &n.database;
        let marker = quote_literal(&n.owner_marker)?;
        const LEAST: &str =
            "NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS";
        Some(match self {
            Step::CreateRole => vec![
                format!(
                    "CREATE ROLE {role} LOGIN {LEAST} CONNECTION LIMIT {} PASSWORD {}",
                    d.connection_limit,
                    quote_literal(verifier)?
                ),
                format!("COMMENT ON ROLE {role} IS {marker}"),
            ],
            Step::ResetRoleAttributes => vec![format!("ALTER ROLE {role} LOGIN {LEAST}")],
            Step::SetPassword => vec![format!(
                "ALTER ROLE {role} PASSWORD {}",
                quote_literal(verifier)?
            )],
            Step::SetConnectionLimit => vec![format!(
                "ALTER ROLE {role} CONNECTION LIMIT {}",
                d.connection_limit
            )],
            Step::MarkRole => vec![format!("COMMENT ON ROLE {role} IS {marker}")],
            Step::CreateDatabase => vec![
                format!("CREATE DATABASE {db} OWNER {role} TEMPLATE template0 ENCODING 'UTF8'"),
                format!("COMMENT ON DATABASE {db} IS {marker}"),
            ],
            Step::MarkDatabase => vec![format!("COMMENT ON DATABASE {db} IS {marker}")],
            Step::SetDatabaseOwner => vec![format!("ALTER DATABASE {db} OWNER TO {role}")],
            Step::RevokePublicOnDatabase => {
                vec![format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC")]
            }
            Step::GrantConnect => vec![format!("GRANT CONNECT ON DATABASE {db} TO {role}")],
            Step::SetSearchPath => vec![format!(
                "ALTER ROLE {role} IN DATABASE {db} SET search_path TO {}",
                n.schema
            )],
            Step::CreateSchema => vec![
                format!("CREATE SCHEMA {} AUTHORIZATION {role}", n.schema),
                format!("COMMENT ON SCHEMA {} IS {marker}", n.schema),
            ],
            Step::SetSchemaOwner => vec![format!("ALTER SCHEMA {} OWNER TO {role}", n.schema)],
        })
    }
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

/// Computes the steps that bring `observed` to `desired`. Pure.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Vec<Step>, Conflict> {
    let n = &desired.names;
    let marker = n.owner_marker.as_str();
    let mut steps = Vec::new();

    // Role.
    match &observed.role {
        None => steps.push(Step::CreateRole),
        Some(r) => {
            if !ours(&r.comment, marker) {
                return Err(Conflict(format!(
                    "role {} exists and is not managed by this Tenant ({})",
                    n.role.as_str(),
                    r.comment.as_deref().unwrap_or("no owner marker")
                )));
            }
            if !r.can_login || r.has_extra_privileges {
                steps.push(Step::ResetRoleAttributes);
            }
            if r.password_matches == Some(false) {
                steps.push(Step::SetPassword);
            }
            if r.connection_limit != desired.connection_limit {
                steps.push(Step::SetConnectionLimit);
            }
        }
    }
    let role_is_new = observed.role.is_none();

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

    // search_path of the role in its database.
    let want_path = search_path_setting(&n.schema);
    let has_path = observed
        .role
        .as_ref()
        .and_then(|r| r.search_path.as_deref())
        .is_some_and(|p| p == want_path);
    if !has_path {
        steps.push(Step::SetSearchPath);
    }

    // Schema (isolation `schema`).
    if !n.dedicated_database {
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
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Isolation;
    use crate::naming::tenant_names;

    fn desired(isolation: Isolation) -> Desired {
        let shared = Ident::new("tenantdb_shared").unwrap();
        Desired {
            names: tenant_names("tenant_", "ns", "acme", isolation, None, &shared).unwrap(),
            password: "pw".into(),
            connection_limit: -1,
        }
    }

    fn converged(d: &Desired) -> Observed {
        let n = &d.names;
        Observed {
            role: Some(ObservedRole {
                can_login: true,
                connection_limit: d.connection_limit,
                has_extra_privileges: false,
                comment: Some(n.owner_marker.clone()),
                password_matches: Some(true),
                search_path: Some(search_path_setting(&n.schema)),
            }),
            database: Some(ObservedDatabase {
                owner: if n.dedicated_database {
                    n.role.as_str().to_string()
                } else {
                    "postgres".into()
                },
                comment: n.dedicated_database.then(|| n.owner_marker.clone()),
                public_has_access: false,
                role_can_connect: true,
            }),
            schema: (!n.dedicated_database).then(|| ObservedSchema {
                owner: n.role.as_str().to_string(),
                comment: Some(n.owner_marker.clone()),
            }),
        }
    }

    #[test]
    fn fresh_database_tenant() {
        let d = desired(Isolation::Database);
        let steps = plan(&d, &Observed::default()).unwrap();
        assert_eq!(
            steps,
            vec![
                Step::CreateRole,
                Step::CreateDatabase,
                Step::RevokePublicOnDatabase,
                Step::SetSearchPath
            ]
        );
    }

    #[test]
    fn fresh_schema_tenant() {
        let d = desired(Isolation::Schema);
        let obs = Observed {
            database: Some(ObservedDatabase {
                owner: "postgres".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            plan(&d, &obs).unwrap(),
            vec![
                Step::CreateRole,
                Step::GrantConnect,
                Step::SetSearchPath,
                Step::CreateSchema
            ]
        );
    }

    #[test]
    fn converged_tenant_needs_nothing() {
        for iso in [Isolation::Database, Isolation::Schema] {
            let d = desired(iso);
            assert!(plan(&d, &converged(&d)).unwrap().is_empty(), "{iso:?}");
        }
    }

    #[test]
    fn drift_is_repaired() {
        let d = desired(Isolation::Schema);
        let mut obs = converged(&d);
        obs.schema = None;
        if let Some(r) = obs.role.as_mut() {
            r.password_matches = Some(false);
            r.has_extra_privileges = true;
            r.search_path = None;
        }
        assert_eq!(
            plan(&d, &obs).unwrap(),
            vec![
                Step::ResetRoleAttributes,
                Step::SetPassword,
                Step::SetSearchPath,
                Step::CreateSchema
            ]
        );
    }

    #[test]
    fn foreign_objects_are_conflicts() {
        let d = desired(Isolation::Database);
        let mut obs = converged(&d);
        obs.role.as_mut().unwrap().comment = Some("tenantdb.io/owner=other/x".into());
        assert!(plan(&d, &obs).is_err());
        let mut obs = converged(&d);
        obs.database.as_mut().unwrap().comment = None;
        obs.database.as_mut().unwrap().owner = "someone".into();
        assert!(plan(&d, &obs).is_err());
        // An unmarked database owned by our role is adopted (crash after CREATE DATABASE).
        let mut obs = converged(&d);
        obs.database.as_mut().unwrap().comment = None;
        assert_eq!(plan(&d, &obs).unwrap(), vec![Step::MarkDatabase]);
    }

    #[test]
    fn sql_quotes_identifiers_and_never_contains_the_password() {
        let d = desired(Isolation::Database);
        let v = "SCRAM-SHA-256$4096:abc$def:ghi";
        for step in [Step::CreateRole, Step::SetPassword, Step::CreateDatabase] {
            for sql in step.sql(&d, v).unwrap() {
                assert!(!sql.contains("pw'"), "{sql}");
                assert!(sql.contains(&format!("\"{}\"", d.names.role.as_str())) || sql.contains(&format!("\"{}\"", d.names.database.as_str())), "{sql}");
            }
        }
        let create = Step::CreateRole.sql(&d, v).unwrap();
        assert!(create[0].contains("NOSUPERUSER"));
        assert!(create[0].contains("PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'"));
    }
}
