//! MongoDB side of tenant provisioning: one database and one user per tenant, with collections,
//! `$jsonSchema` validators and indexes from declarative, versioned migrations.
//!
//! Same shape as the PostgreSQL side: [`MongoAdmin::observe`] (reads only) → [`plan::plan`]
//! (pure) → [`MongoAdmin::apply`] (idempotent steps), wrapped by [`MongoAdmin::provision`].
//! Calling `provision` again on a converged tenant performs reads only.
//!
//! Secrets: the admin URI is never logged (its `Debug` is redacted), the tenant password only
//! travels inside `createUser`/`updateUser` commands, and error messages are built from server
//! codes and `errmsg` with every known secret scrubbed ([`error`]).

pub mod error;
pub mod model;
pub mod names;
pub mod plan;

use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use tokio::sync::OnceCell;
use tracing::{debug, info};

use crate::error::{Error, Result};
pub use error::{codes, error_code, map_error};
pub use model::{
    CollectionSpec, DesiredMongo, IndexSpec, MIGRATIONS_COLLECTION, MongoMigration,
    MongoMigrationError, MongoMigrationSet, desired_state,
};
pub use names::{MongoDbName, MongoNameError, MongoTenantNames, tenant_mongo_names};
pub use plan::{
    AppliedMigration, HistoryProblem, MongoStep, ObservedCollection, ObservedMongo, ObservedUser,
    check_history, plan,
};

/// The role a tenant user gets, on its own database (and nothing else).
pub const TENANT_ROLE: &str = "readWrite";
/// The role a tenant user has instead of [`TENANT_ROLE`] while its storage quota is exceeded.
pub const TENANT_READ_ONLY_ROLE: &str = "read";

/// The role a tenant user should have.
pub fn tenant_role(read_only: bool) -> &'static str {
    if read_only {
        TENANT_READ_ONLY_ROLE
    } else {
        TENANT_ROLE
    }
}
/// The only mechanism a tenant user gets.
pub const TENANT_MECHANISM: &str = "SCRAM-SHA-256";

/// Database of the operator's ownership registry: one document per tenant database (`_id` = the
/// database name, `owner` = the owning Tenant's `tenantdb.io/owner=<namespace>/<name>` marker,
/// `user`, `uid`). Only the operator's admin can read or write it (tenant users have roles on
/// their own database only), so — like PostgreSQL's COMMENT markers — a tenant cannot forge it.
/// Every change of a tenant's database or user, and every drop, first checks that the registry
/// names the Tenant as the owner; a foreign or unregistered database is a `Conflict`, never
/// adopted (but see [`MongoTenant::adopt_unmarked`]) and never dropped.
pub const REGISTRY_DATABASE: &str = "tenantdb_registry";
/// Collection of the registry in [`REGISTRY_DATABASE`].
pub const REGISTRY_COLLECTION: &str = "owners";

/// Connection settings for the MongoDB deployment tenants live on.
#[derive(Clone)]
pub struct MongoSettings {
    /// Admin URI (`mongodb://` or `mongodb+srv://`) of a user allowed to create users and
    /// databases (e.g. `root`, or `userAdminAnyDatabase` + `dbAdminAnyDatabase` +
    /// `readWriteAnyDatabase` + `clusterMonitor`). Never logged.
    pub admin_uri: String,
    /// How long an operation waits for a usable server before failing (`DatabaseUnavailable`).
    pub server_selection_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
}

impl MongoSettings {
    /// Settings with short timeouts (5 s server selection, 5 s connect): a reconcile should fail
    /// fast and retry rather than hang.
    pub fn new(admin_uri: impl Into<String>) -> Self {
        Self {
            admin_uri: admin_uri.into(),
            server_selection_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for MongoSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSettings")
            .field("admin_uri", &redact_uri(&self.admin_uri))
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// What one Tenant needs on MongoDB.
#[derive(Clone)]
pub struct MongoTenant {
    /// The tenant database.
    pub database: MongoDbName,
    /// The tenant user (defined in [`Self::database`]).
    pub user: String,
    /// The user's password (from the credentials Secret).
    pub password: String,
    /// Apply migrations up to this version (`None`: all of the admin's set).
    pub up_to_version: Option<i64>,
    /// Storage quota exceeded: the user gets `read` instead of `readWrite` on its database.
    pub read_only: bool,
    /// The owning Tenant's marker (`tenantdb.io/owner=<namespace>/<name>`), recorded in the
    /// registry ([`REGISTRY_DATABASE`]).
    pub owner: String,
    /// The owning Tenant's uid (informational, in the registry document).
    pub uid: Option<String>,
    /// Upgrade path for databases created before the registry existed: an unregistered database
    /// and user are registered for this Tenant (instead of a `Conflict`) when this is set — the
    /// Tenant's status says it provisioned this database — **and** the user's stored credentials
    /// match [`MongoTenant::password`], the Tenant's own Secret. Another Tenant naming the same
    /// database has neither.
    pub adopt_unmarked: bool,
}

impl MongoTenant {
    /// A tenant from its [`MongoTenantNames`], owned by `owner` (the Tenant's ownership marker).
    pub fn new(
        names: &MongoTenantNames,
        password: impl Into<String>,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            database: names.database.clone(),
            user: names.user.clone(),
            password: password.into(),
            up_to_version: None,
            read_only: false,
            owner: owner.into(),
            uid: None,
            adopt_unmarked: false,
        }
    }
}

impl MongoTenant {
    /// The same database, user and password with another owner (tests of ownership).
    #[doc(hidden)]
    pub fn clone_for_test(&self, owner: &str) -> Self {
        Self {
            database: self.database.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            up_to_version: self.up_to_version,
            read_only: self.read_only,
            owner: owner.to_string(),
            uid: None,
            adopt_unmarked: false,
        }
    }
}

impl fmt::Debug for MongoTenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoTenant")
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("up_to_version", &self.up_to_version)
            .field("owner", &self.owner)
            .finish()
    }
}

/// How [`MongoAdmin::ensure_owned`] found the tenant's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Registered to this Tenant already.
    Registered,
    /// New: registered to this Tenant now.
    Claimed,
    /// Created before the registry and registered now (upgrade rule).
    Adopted,
}

/// What [`MongoAdmin::ensure_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    /// The user did not exist and was created.
    Created,
    /// The user existed; its roles and/or password (and mechanisms) were reset.
    Updated {
        /// Roles were not exactly `[{readWrite, <db>}]`.
        roles: bool,
        /// The password did not match (or could not be verified), or mechanisms differed.
        password: bool,
    },
    /// Nothing to do.
    Unchanged,
}

/// What [`MongoAdmin::provision`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoOutcome {
    /// Descriptions of the steps applied, in order (empty when converged).
    pub steps: Vec<String>,
    /// Migration versions recorded by this call.
    pub recorded_versions: Vec<i64>,
    /// Migration version the database is at now.
    pub version: Option<i64>,
    /// What happened to the user.
    pub user: UserAction,
}

impl MongoOutcome {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        !self.steps.is_empty()
            || !self.recorded_versions.is_empty()
            || self.user != UserAction::Unchanged
    }

    /// Whether the user was created by this call.
    pub fn created_user(&self) -> bool {
        self.user == UserAction::Created
    }
}

/// What [`MongoAdmin::cleanup`] found and removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MongoCleanup {
    /// The database existed (and was dropped).
    pub database_dropped: bool,
    /// The user existed (and was dropped).
    pub user_dropped: bool,
    /// Why nothing was dropped, when the database or user is not this Tenant's (registry).
    pub skipped: Option<String>,
}

/// Sizes from `dbStats` (bytes, unscaled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MongoDbStats {
    /// Number of collections.
    pub collections: u64,
    /// Number of documents.
    pub objects: u64,
    /// Uncompressed data size.
    pub data_size: u64,
    /// Storage allocated for data (compressed on WiredTiger).
    pub storage_size: u64,
    /// Storage allocated for indexes.
    pub index_size: u64,
}

impl MongoDbStats {
    /// What a quota should count: data storage plus index storage.
    pub fn total_bytes(&self) -> u64 {
        self.storage_size.saturating_add(self.index_size)
    }
}

/// Admin access to one MongoDB deployment. The client is created on first use (so the operator
/// starts while MongoDB is down) and shared by all reconciles.
pub struct MongoAdmin {
    settings: MongoSettings,
    migrations: MongoMigrationSet,
    client: OnceCell<Client>,
}

impl fmt::Debug for MongoAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoAdmin")
            .field("settings", &self.settings)
            .field("migrations", &self.migrations.latest_version())
            .field("connected", &self.client.initialized())
            .finish()
    }
}

impl MongoAdmin {
    /// An admin with the given migration set. Only checks the URI scheme (parsing a
    /// `mongodb+srv://` URI needs DNS, which happens on first use).
    pub fn new(settings: MongoSettings, migrations: MongoMigrationSet) -> Result<Self> {
        let uri = settings.admin_uri.trim();
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            return Err(Error::Config(format!(
                "MongoDB admin URI must start with mongodb:// or mongodb+srv:// (got {})",
                redact_uri(uri)
            )));
        }
        Ok(Self {
            settings,
            migrations,
            client: OnceCell::new(),
        })
    }

    /// An admin with the bundled migrations (`migrations/mongodb`).
    pub fn with_bundled_migrations(settings: MongoSettings) -> Result<Self> {
        Self::new(settings, MongoMigrationSet::bundled()?)
    }

    /// The migration set provisioning applies.
    pub fn migrations(&self) -> &MongoMigrationSet {
        &self.migrations
    }

    /// The shared client (created on first call; a failed parse is retried next call).
    pub async fn client(&self) -> Result<&Client> {
        // Every MongoDB operation of the operator passes here: none once leadership is in doubt.
        crate::fence::check()?;
        self.client
            .get_or_try_init(|| async {
                let uri_secret = uri_password(&self.settings.admin_uri);
                let secrets: Vec<&str> = uri_secret.iter().map(String::as_str).collect();
                let mut options = ClientOptions::parse(self.settings.admin_uri.trim())
                    .await
                    .map_err(|e| match map_error(&e, &secrets) {
                        Error::Config(m) | Error::Database(m) => {
                            Error::Config(format!("invalid MongoDB admin URI: {m}"))
                        }
                        other => other,
                    })?;
                options.server_selection_timeout = Some(self.settings.server_selection_timeout);
                options.connect_timeout = Some(self.settings.connect_timeout);
                options.app_name = Some("tenantdb-operator".to_string());
                options.max_pool_size = Some(8);
                options.min_pool_size = Some(0);
                Client::with_options(options).map_err(|e| map_error(&e, &secrets))
            })
            .await
    }

    async fn db(&self, name: &str) -> Result<Database> {
        Ok(self.client().await?.database(name))
    }

    /// `ping` on `admin`: reachability and admin credentials.
    pub async fn ping(&self) -> Result<()> {
        self.db("admin")
            .await?
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }

    /// Health check with the tenant's own credentials: a one-off client (not kept) authenticates as
    /// the tenant user against its database and runs `ping` there.
    pub async fn tenant_ping(&self, uri: &str, db: &MongoDbName, password: &str) -> Result<()> {
        let secrets = [password];
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| map_error(&e, &secrets))?;
        options.server_selection_timeout = Some(self.settings.server_selection_timeout);
        options.connect_timeout = Some(self.settings.connect_timeout);
        options.app_name = Some("tenantdb-healthcheck".to_string());
        options.max_pool_size = Some(1);
        let client = Client::with_options(options).map_err(|e| map_error(&e, &secrets))?;
        let result = client
            .database(db.as_str())
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(|e| map_error(&e, &secrets));
        client.shutdown().await;
        result
    }

    /// Reads everything provisioning compares: collections with their validator options
    /// (`listCollections`), their indexes (`listIndexes`), the user (`usersInfo`) and the applied
    /// migrations. A database that does not exist reads as empty.
    pub async fn observe(&self, db: &MongoDbName, user: &str) -> Result<ObservedMongo> {
        let database = self.db(db.as_str()).await?;
        let mut collections = std::collections::BTreeMap::new();
        let mut has_migrations = false;
        let mut cursor = database
            .run_cursor_command(doc! {"listCollections": 1, "nameOnly": false})
            .await?;
        while let Some(spec) = cursor.try_next().await? {
            let Ok(name) = spec.get_str("name") else {
                continue;
            };
            if name == MIGRATIONS_COLLECTION {
                has_migrations = true;
                continue;
            }
            if name.starts_with("system.") {
                continue;
            }
            let options = spec.get_document("options").ok();
            let kind = spec.get_str("type").unwrap_or("collection").to_string();
            let indexes = if kind == "collection" {
                self.list_indexes(&database, name).await?
            } else {
                Default::default()
            };
            collections.insert(
                name.to_string(),
                ObservedCollection {
                    kind,
                    validator: options.and_then(|o| o.get_document("validator").ok().cloned()),
                    validation_level: options
                        .and_then(|o| o.get_str("validationLevel").ok().map(str::to_string)),
                    validation_action: options
                        .and_then(|o| o.get_str("validationAction").ok().map(str::to_string)),
                    indexes,
                },
            );
        }
        let applied = if has_migrations {
            read_applied(&database).await?
        } else {
            Vec::new()
        };
        let user = self.observe_user(db, user, None).await?;
        Ok(ObservedMongo {
            collections,
            user,
            applied,
        })
    }

    async fn list_indexes(
        &self,
        database: &Database,
        collection: &str,
    ) -> Result<std::collections::BTreeMap<String, IndexSpec>> {
        let mut out = std::collections::BTreeMap::new();
        let mut cursor = match database
            .run_cursor_command(doc! {"listIndexes": collection})
            .await
        {
            Ok(c) => c,
            Err(e) if error_code(&e) == Some(codes::NAMESPACE_NOT_FOUND) => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(raw) = cursor.try_next().await? {
            if let Some(spec) = IndexSpec::from_server(&raw)
                && spec.name != "_id_"
            {
                out.insert(spec.name.clone(), spec);
            }
        }
        Ok(out)
    }

    /// `usersInfo` (with credentials when `password` is given, to compare it locally).
    async fn observe_user(
        &self,
        db: &MongoDbName,
        user: &str,
        password: Option<&str>,
    ) -> Result<Option<ObservedUser>> {
        let database = self.db(db.as_str()).await?;
        let reply = database
            .run_command(doc! {
                "usersInfo": {"user": user, "db": db.as_str()},
                "showCredentials": password.is_some(),
            })
            .await?;
        let Some(Bson::Document(u)) = reply
            .get_array("users")
            .ok()
            .and_then(|users| users.first().cloned())
        else {
            return Ok(None);
        };
        let roles = u
            .get_array("roles")
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| match r {
                        Bson::Document(r) => Some((
                            r.get_str("role").ok()?.to_string(),
                            r.get_str("db").ok()?.to_string(),
                        )),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mechanisms = u
            .get_array("mechanisms")
            .map(|m| {
                m.iter()
                    .filter_map(|m| m.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let password_matches = password.and_then(|pw| {
            let cred = u
                .get_document("credentials")
                .ok()?
                .get_document(TENANT_MECHANISM)
                .ok()?;
            let iterations = cred.get("iterationCount").and_then(model::as_f64)? as u32;
            let verifier = format!(
                "SCRAM-SHA-256${iterations}:{}${}:{}",
                cred.get_str("salt").ok()?,
                cred.get_str("storedKey").ok()?,
                cred.get_str("serverKey").ok()?
            );
            Some(crate::scram::matches(pw, &verifier))
        });
        Ok(Some(ObservedUser {
            roles,
            mechanisms,
            password_matches,
        }))
    }

    /// Makes the tenant user exist with exactly `roles: [{role, db}]` (`role`: [`TENANT_ROLE`],
    /// or [`TENANT_READ_ONLY_ROLE`] while over quota), mechanism SCRAM-SHA-256 and `password`.
    /// MongoDB applies a role change to the user's open connections as well (the user cache is
    /// invalidated by `updateUser`).
    ///
    /// The password is checked without logging in: the stored SCRAM-SHA-256 keys
    /// (`usersInfo … showCredentials`) are recomputed from `password` locally. When the server
    /// does not return credentials the password is reset (a write, but never a wrong password).
    /// The check uses the password bytes as-is (no SASLprep), which is exact for the operator's
    /// alphanumeric passwords; a non-ASCII password is simply reset on every call.
    pub async fn ensure_user(
        &self,
        db: &MongoDbName,
        user: &str,
        password: &str,
        role: &str,
    ) -> Result<UserAction> {
        if password.is_empty() {
            return Err(Error::InvalidSpec("MongoDB password is empty".to_string()));
        }
        if role != TENANT_ROLE && role != TENANT_READ_ONLY_ROLE {
            return Err(Error::Internal(format!("unexpected tenant role {role}")));
        }
        let database = self.db(db.as_str()).await?;
        let roles = vec![Bson::Document(doc! {"role": role, "db": db.as_str()})];
        let Some(observed) = self.observe_user(db, user, Some(password)).await? else {
            database
                .run_command(doc! {
                    "createUser": user,
                    "pwd": password,
                    "roles": roles,
                    "mechanisms": [TENANT_MECHANISM],
                })
                .await
                .map_err(|e| map_error(&e, &[password]))?;
            info!(database = %db, user, "created MongoDB user");
            return Ok(UserAction::Created);
        };
        let roles_ok = observed.roles == [(role.to_string(), db.as_str().to_string())];
        let mechanisms_ok = observed.mechanisms == [TENANT_MECHANISM];
        let password_ok = observed.password_matches == Some(true);
        if roles_ok && mechanisms_ok && password_ok {
            return Ok(UserAction::Unchanged);
        }
        let mut update = doc! {"updateUser": user};
        if !roles_ok {
            update.insert("roles", roles);
        }
        if !(mechanisms_ok && password_ok) {
            update.insert("pwd", password);
            update.insert("mechanisms", vec![TENANT_MECHANISM]);
        }
        database
            .run_command(update)
            .await
            .map_err(|e| map_error(&e, &[password]))?;
        let action = UserAction::Updated {
            roles: !roles_ok,
            password: !(mechanisms_ok && password_ok),
        };
        info!(database = %db, user, ?action, "updated MongoDB user");
        Ok(action)
    }

    /// Sets the user's password unconditionally (explicit rotation). `UserNotFound` is an error.
    pub async fn set_password(&self, db: &MongoDbName, user: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(Error::InvalidSpec("MongoDB password is empty".to_string()));
        }
        self.db(db.as_str())
            .await?
            .run_command(doc! {
                "updateUser": user,
                "pwd": password,
                "mechanisms": [TENANT_MECHANISM],
            })
            .await
            .map_err(|e| map_error(&e, &[password]))?;
        info!(database = %db, user, "set MongoDB user password");
        Ok(())
    }

    /// Executes `steps` (from [`plan`]) and records every version of `set` not yet recorded.
    ///
    /// `set` is the target set (already truncated to the target version). The applied history is
    /// re-read and checked first: a checksum mismatch (drift) or an applied version outside `set`
    /// fails with [`Error::Conflict`] before anything is written. Steps tolerate having been done
    /// already (collection exists, index or collection already gone). Returns the versions
    /// recorded.
    pub async fn apply(
        &self,
        db: &MongoDbName,
        steps: &[MongoStep],
        set: &MongoMigrationSet,
    ) -> Result<Vec<i64>> {
        let database = self.db(db.as_str()).await?;
        let applied = read_applied(&database).await?;
        let pending = check_history(set, &applied).map_err(|p| Error::Conflict(p.to_string()))?;
        for step in steps {
            execute(&database, step).await?;
            info!(database = %db, step = %step, "applied MongoDB step");
        }
        let records = database.collection::<Document>(MIGRATIONS_COLLECTION);
        for version in &pending {
            let Some(m) = set.get(*version) else {
                return Err(Error::Internal(format!(
                    "MongoDB migration {version} vanished from its set"
                )));
            };
            let row = doc! {
                "_id": version,
                "version": version,
                "name": &m.name,
                "checksum": &m.checksum,
                "appliedAt": DateTime::now(),
            };
            match records.insert_one(row).await {
                Ok(_) => {
                    info!(database = %db, version, name = %m.name, "recorded MongoDB migration")
                }
                // Recorded concurrently; the next observe checks its checksum.
                Err(e) if error_code(&e) == Some(codes::DUPLICATE_KEY) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pending)
    }

    /// The owner the registry records for `db` (see [`REGISTRY_DATABASE`]).
    pub async fn registered_owner(&self, db: &MongoDbName) -> Result<Option<String>> {
        let doc = self
            .db(REGISTRY_DATABASE)
            .await?
            .collection::<Document>(REGISTRY_COLLECTION)
            .find_one(doc! {"_id": db.as_str()})
            .await?;
        Ok(doc.and_then(|d| d.get_str("owner").ok().map(str::to_string)))
    }

    /// Records `tenant` as the owner of its database: an insert keyed by the database name, so
    /// two Tenants claiming one name concurrently cannot both win.
    async fn register(&self, tenant: &MongoTenant) -> Result<()> {
        let row = doc! {
            "_id": tenant.database.as_str(),
            "owner": &tenant.owner,
            "user": &tenant.user,
            "uid": tenant.uid.clone().unwrap_or_default(),
            "registeredAt": DateTime::now(),
        };
        match self
            .db(REGISTRY_DATABASE)
            .await?
            .collection::<Document>(REGISTRY_COLLECTION)
            .insert_one(row)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error_code(&e) == Some(codes::DUPLICATE_KEY) => {
                match self.registered_owner(&tenant.database).await? {
                    Some(o) if o == tenant.owner => Ok(()),
                    other => Err(Error::Conflict(format!(
                        "MongoDB database {} is registered to {}",
                        tenant.database,
                        other.as_deref().unwrap_or("another Tenant")
                    ))),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the database exists (has data) or its user exists.
    async fn exists(&self, db: &MongoDbName, user: &str) -> Result<bool> {
        let listed = self
            .db("admin")
            .await?
            .run_command(doc! {
                "listDatabases": 1,
                "nameOnly": true,
                "filter": {"name": db.as_str()},
            })
            .await?;
        let database = listed
            .get_array("databases")
            .map(|d| {
                d.iter().any(|d| match d {
                    Bson::Document(d) => d.get_str("name").ok() == Some(db.as_str()),
                    _ => false,
                })
            })
            .unwrap_or(false);
        Ok(database || self.observe_user(db, user, None).await?.is_some())
    }

    /// Makes sure `tenant` owns its database before anything of it is changed: registered to it
    /// (fine), registered to another Tenant (`Conflict`), or not registered: a database and user
    /// that do not exist are registered now (before they are created); existing ones only under
    /// the upgrade rule of [`MongoTenant::adopt_unmarked`], else `Conflict`.
    pub async fn ensure_owned(&self, tenant: &MongoTenant) -> Result<Ownership> {
        match self.registered_owner(&tenant.database).await? {
            Some(o) if o == tenant.owner => return Ok(Ownership::Registered),
            Some(o) => {
                return Err(Error::Conflict(format!(
                    "MongoDB database {} belongs to another Tenant ({o})",
                    tenant.database
                )));
            }
            None => {}
        }
        if !self.exists(&tenant.database, &tenant.user).await? {
            self.register(tenant).await?;
            return Ok(Ownership::Claimed);
        }
        let password_matches = self
            .observe_user(&tenant.database, &tenant.user, Some(&tenant.password))
            .await?
            .and_then(|u| u.password_matches)
            == Some(true);
        if tenant.adopt_unmarked && password_matches {
            self.register(tenant).await?;
            info!(database = %tenant.database, owner = %tenant.owner, "registered a MongoDB database created before the ownership registry");
            return Ok(Ownership::Adopted);
        }
        Err(Error::Conflict(format!(
            "MongoDB database {} (or its user) exists but is not registered to this Tenant: not adopted",
            tenant.database
        )))
    }

    /// Drops the tenant user and database when the registry names `tenant` as their owner (or
    /// when they are unregistered but adoptable, see [`MongoTenant::adopt_unmarked`]); anything
    /// else is left alone and reported in [`MongoCleanup::skipped`]. Idempotent: what is already
    /// gone counts as done; the registry entry goes last.
    pub async fn cleanup(&self, tenant: &MongoTenant) -> Result<MongoCleanup> {
        let (db, user) = (&tenant.database, tenant.user.as_str());
        let mut report = MongoCleanup::default();
        match self.registered_owner(db).await? {
            Some(o) if o == tenant.owner => {}
            Some(o) => {
                report.skipped = Some(format!("MongoDB database {db} belongs to {o}"));
                return Ok(report);
            }
            None => {
                if !self.exists(db, user).await? {
                    return Ok(report);
                }
                if let Err(e) = self.ensure_owned(tenant).await {
                    report.skipped = Some(e.to_string());
                    return Ok(report);
                }
            }
        }
        let admin = self.db("admin").await?;
        let listed = admin
            .run_command(doc! {
                "listDatabases": 1,
                "nameOnly": true,
                "filter": {"name": db.as_str()},
            })
            .await?;
        let database_existed = listed
            .get_array("databases")
            .map(|d| {
                d.iter().any(|d| match d {
                    Bson::Document(d) => d.get_str("name").ok() == Some(db.as_str()),
                    _ => false,
                })
            })
            .unwrap_or(false);
        let database = self.db(db.as_str()).await?;
        let user_dropped = match database.run_command(doc! {"dropUser": user}).await {
            Ok(_) => true,
            Err(e) if error_code(&e) == Some(codes::USER_NOT_FOUND) => false,
            Err(e) => return Err(e.into()),
        };
        match database.run_command(doc! {"dropDatabase": 1}).await {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some(codes::NAMESPACE_NOT_FOUND) => {}
            Err(e) => return Err(e.into()),
        }
        self.db(REGISTRY_DATABASE)
            .await?
            .collection::<Document>(REGISTRY_COLLECTION)
            .delete_one(doc! {"_id": db.as_str(), "owner": &tenant.owner})
            .await?;
        report.database_dropped = database_existed;
        report.user_dropped = user_dropped;
        info!(database = %db, user, ?report, "cleaned up MongoDB tenant");
        Ok(report)
    }

    /// `dbStats` of the tenant database (all zero if it does not exist).
    pub async fn db_stats(&self, db: &MongoDbName) -> Result<MongoDbStats> {
        let reply = self
            .db(db.as_str())
            .await?
            .run_command(doc! {"dbStats": 1, "scale": 1})
            .await?;
        let n = |k: &str| {
            reply
                .get(k)
                .and_then(model::as_f64)
                .map_or(0, |v| v.max(0.0) as u64)
        };
        Ok(MongoDbStats {
            collections: n("collections"),
            objects: n("objects"),
            data_size: n("dataSize"),
            storage_size: n("storageSize"),
            index_size: n("indexSize"),
        })
    }

    /// The target set for `up_to_version` (`None`: all).
    pub fn target_set(&self, up_to_version: Option<i64>) -> Result<MongoMigrationSet> {
        match up_to_version {
            None => Ok(self.migrations.clone()),
            Some(v) if v < 1 => Err(Error::InvalidSpec(format!(
                "MongoDB migration version {v} is invalid (versions start at 1)"
            ))),
            Some(v) if self.migrations.latest_version().is_none_or(|l| v > l) => {
                Err(Error::InvalidSpec(format!(
                    "MongoDB migration version {v} is unknown (latest is {})",
                    self.migrations
                        .latest_version()
                        .map_or("none".to_string(), |l| l.to_string())
                )))
            }
            Some(v) => Ok(self.migrations.truncated(v)),
        }
    }

    /// Observe → check history → plan → apply → ensure user. The single entry point for a
    /// reconcile; on a converged tenant it only reads.
    pub async fn provision(&self, tenant: &MongoTenant) -> Result<MongoOutcome> {
        let set = self.target_set(tenant.up_to_version)?;
        // Nothing of the database or user is touched unless the registry says it is this
        // Tenant's (or it is new and now registered to it).
        self.ensure_owned(tenant).await?;
        let observed = self.observe(&tenant.database, &tenant.user).await?;
        let pending =
            check_history(&set, &observed.applied).map_err(|p| Error::Conflict(p.to_string()))?;
        if let Some((name, _)) = observed
            .collections
            .iter()
            .find(|(n, c)| c.kind != "collection" && set_mentions(&set, n))
        {
            return Err(Error::Conflict(format!(
                "{}.{name} exists but is not a collection",
                tenant.database
            )));
        }
        let desired = desired_state(&set, None);
        let steps = plan::plan(&desired, &observed);
        let recorded_versions = if steps.is_empty() && pending.is_empty() {
            debug!(database = %tenant.database, "MongoDB schema converged");
            Vec::new()
        } else {
            self.apply(&tenant.database, &steps, &set).await?
        };
        let user = self
            .ensure_user(
                &tenant.database,
                &tenant.user,
                &tenant.password,
                tenant_role(tenant.read_only),
            )
            .await?;
        Ok(MongoOutcome {
            steps: steps.iter().map(MongoStep::describe).collect(),
            recorded_versions,
            version: set.latest_version(),
            user,
        })
    }
}

fn set_mentions(set: &MongoMigrationSet, collection: &str) -> bool {
    set.migrations().iter().any(|m| {
        m.collections.iter().any(|c| c.name == collection)
            || m.drop_collections.iter().any(|c| c == collection)
    })
}

async fn read_applied(database: &Database) -> Result<Vec<AppliedMigration>> {
    let mut cursor = database
        .collection::<Document>(MIGRATIONS_COLLECTION)
        .find(doc! {})
        .await?;
    let mut out = Vec::new();
    while let Some(row) = cursor.try_next().await? {
        let Some(version) = row.get("version").and_then(model::as_f64) else {
            return Err(Error::Conflict(format!(
                "{MIGRATIONS_COLLECTION} holds a row without a numeric version"
            )));
        };
        out.push(AppliedMigration {
            version: version as i64,
            name: row.get_str("name").unwrap_or_default().to_string(),
            checksum: row.get_str("checksum").unwrap_or_default().to_string(),
        });
    }
    out.sort_by_key(|a| a.version);
    Ok(out)
}

async fn execute(database: &Database, step: &MongoStep) -> Result<()> {
    let result = match step {
        MongoStep::CreateCollection {
            collection,
            validator,
            validation_level,
            validation_action,
        } => {
            let mut cmd = doc! {"create": collection};
            if let Some(v) = validator {
                cmd.insert("validator", v.clone());
                cmd.insert("validationLevel", validation_level.as_str());
                cmd.insert("validationAction", validation_action.as_str());
            }
            ok_unless(database.run_command(cmd).await, &[codes::NAMESPACE_EXISTS])
        }
        MongoStep::CollMod {
            collection,
            validator,
            validation_level,
            validation_action,
        } => ok_unless(
            database
                .run_command(doc! {
                    "collMod": collection,
                    "validator": validator.clone(),
                    "validationLevel": validation_level.as_str(),
                    "validationAction": validation_action.as_str(),
                })
                .await,
            &[],
        ),
        MongoStep::CreateIndex { collection, index } => ok_unless(
            database
                .run_command(doc! {
                    "createIndexes": collection,
                    "indexes": [index.to_document()],
                })
                .await,
            &[],
        ),
        MongoStep::DropIndex { collection, name } => ok_unless(
            database
                .run_command(doc! {"dropIndexes": collection, "index": name})
                .await,
            &[codes::INDEX_NOT_FOUND, codes::NAMESPACE_NOT_FOUND],
        ),
        MongoStep::DropCollection { collection } => ok_unless(
            database.run_command(doc! {"drop": collection}).await,
            &[codes::NAMESPACE_NOT_FOUND],
        ),
    };
    result.map_err(|e| match e {
        Error::Database(m) => Error::Database(format!("{}: {m}", step.describe())),
        Error::Conflict(m) => Error::Conflict(format!("{}: {m}", step.describe())),
        other => other,
    })
}

/// `Ok` for success or one of the `tolerated` codes ("already done").
fn ok_unless(r: mongodb::error::Result<Document>, tolerated: &[i32]) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e).is_some_and(|c| tolerated.contains(&c)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

use crate::secret::pct;

/// The tenant's connection string:
/// `mongodb://<user>:<password>@<host>:<port>/<db>?authSource=<db>&authMechanism=SCRAM-SHA-256`,
/// every component percent-encoded (IPv6 hosts are bracketed).
pub fn tenant_uri(host: &str, port: u16, db: &str, user: &str, password: &str) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!(
        "mongodb://{}:{}@{host}:{port}/{}?authSource={}&authMechanism={TENANT_MECHANISM}",
        pct(user),
        pct(password),
        pct(db),
        pct(db)
    )
}

/// The password of a `scheme://user:password@…` URI, if any (to scrub it from messages).
fn uri_password(uri: &str) -> Option<String> {
    let rest = &uri[uri.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, pw) = userinfo.split_once(':')?;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Replaces the password of every `scheme://user:password@host` in `s` with `***`.
pub fn redact_uri(s: &str) -> String {
    crate::pg::redact(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_uri_encodes() {
        assert_eq!(
            tenant_uri("db.example", 27017, "tenant_a", "tenant_a", "p@ss:w/rd%"),
            "mongodb://tenant_a:p%40ss%3Aw%2Frd%25@db.example:27017/tenant_a?authSource=tenant_a&authMechanism=SCRAM-SHA-256"
        );
        assert!(tenant_uri("::1", 1, "d", "u", "p").contains("@[::1]:1/"));
    }

    #[test]
    fn uris_are_redacted() {
        let s = MongoSettings::new("mongodb://root:s3cret@h1:27017,h2:27017/admin?tls=true");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("root:***@"), "{dbg}");
        assert_eq!(
            uri_password("mongodb://root:s3cret@h1/admin").as_deref(),
            Some("s3cret")
        );
        assert_eq!(uri_password("mongodb://h1/admin"), None);
        let t = MongoTenant {
            database: MongoDbName::new("t").unwrap(),
            user: "t".into(),
            password: "hunter2".into(),
            up_to_version: None,
            read_only: false,
            owner: "tenantdb.io/owner=ns/t".into(),
            uid: None,
            adopt_unmarked: false,
        };
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn admin_uri_scheme_is_checked_and_target_sets() {
        let bad = MongoAdmin::with_bundled_migrations(MongoSettings::new("postgres://x:y@h/db"));
        let e = bad.unwrap_err().to_string();
        assert!(!e.contains(":y@"), "{e}");
        let admin =
            MongoAdmin::with_bundled_migrations(MongoSettings::new("mongodb://127.0.0.1:1"))
                .unwrap();
        let latest = admin.migrations().latest_version().unwrap();
        assert_eq!(
            admin.target_set(None).unwrap().latest_version(),
            Some(latest)
        );
        assert_eq!(admin.target_set(Some(1)).unwrap().latest_version(), Some(1));
        assert!(admin.target_set(Some(0)).is_err());
        assert!(admin.target_set(Some(latest + 1)).is_err());
    }

    #[test]
    fn outcome_change_flag() {
        let o = MongoOutcome {
            steps: vec![],
            recorded_versions: vec![],
            version: Some(1),
            user: UserAction::Unchanged,
        };
        assert!(!o.changed());
        assert!(
            MongoOutcome {
                user: UserAction::Created,
                ..o.clone()
            }
            .created_user()
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        let mut settings = MongoSettings::new("mongodb://127.0.0.1:1/?directConnection=true");
        settings.server_selection_timeout = Duration::from_millis(200);
        settings.connect_timeout = Duration::from_millis(200);
        let admin = MongoAdmin::with_bundled_migrations(settings).unwrap();
        let e = admin.ping().await.unwrap_err();
        assert_eq!(e.category(), "DatabaseUnavailable", "{e}");
    }
}
