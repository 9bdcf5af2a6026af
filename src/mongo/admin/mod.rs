//! [`MongoAdmin`]: admin access to one MongoDB deployment and the provisioning entry point
//! ([`MongoAdmin::provision`]: ownership → observe → check history → plan → apply → user). The
//! public methods are here; their work is done by the submodules, each over the shared
//! admin connection (`client`): `observe` (reads), `apply` (schema writes), `user` (the tenant
//! user) and `registry` (ownership and cleanup). The submodules depend on `client` and on each
//! other only downwards (`user`, `apply` and `registry` read through `observe`), never on this
//! module.

mod apply;
mod client;
mod copy;
mod observe;
mod registry;
mod user;

use std::fmt;

use mongodb::Client;
use mongodb::bson::doc;
use mongodb::options::ClientOptions;
use tracing::debug;

use crate::error::{Error, Result};
use client::AdminClient;
pub use copy::MongoCopy;

use super::connection::{MongoSettings, redact_uri};
use super::error::{error_code, map_error};
use super::model::{MongoMigrationSet, desired_state};
use super::names::MongoDbName;
use super::plan::{self, MongoStep, ObservedMongo, check_history};
use super::tenant::{
    MongoCleanup, MongoDbStats, MongoOutcome, MongoTenant, Ownership, UserAction, tenant_role,
};

/// Admin access to one MongoDB deployment. The client is created on first use (so the operator
/// starts while MongoDB is down) and shared by all reconciles.
pub struct MongoAdmin {
    conn: AdminClient,
    migrations: MongoMigrationSet,
}

impl fmt::Debug for MongoAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoAdmin")
            .field("settings", self.conn.settings())
            .field("migrations", &self.migrations.latest_version())
            .field("connected", &self.conn.connected())
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
            conn: AdminClient::new(settings),
            migrations,
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
        self.conn.client().await
    }

    /// `ping` on `admin`: reachability and admin credentials.
    pub async fn ping(&self) -> Result<()> {
        self.conn
            .db("admin")
            .await?
            .run_command(doc! {"ping": 1})
            .await?;
        Ok(())
    }

    /// The server's version (`buildInfo` on `admin`, with the admin credentials): the probe of a
    /// MongoDB DatabaseServer.
    pub async fn server_version(&self) -> Result<String> {
        let info = self
            .conn
            .db("admin")
            .await?
            .run_command(doc! {"buildInfo": 1})
            .await?;
        Ok(info
            .get_str("version")
            .map_or_else(|_| "unknown".to_string(), str::to_string))
    }

    /// Which deployment this is (an identifier recorded in the deployment's registry on first
    /// call): two servers answering the same are one deployment.
    pub async fn deployment_identity(&self) -> Result<String> {
        registry::deployment_identity(&self.conn).await
    }

    /// Health check with the tenant's own credentials: a one-off client (not kept) authenticates as
    /// the tenant user against its database and runs `ping` there.
    pub async fn tenant_ping(&self, uri: &str, db: &MongoDbName, password: &str) -> Result<()> {
        let secrets = [password];
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| map_error(&e, &secrets))?;
        options.server_selection_timeout = Some(self.conn.settings().server_selection_timeout);
        options.connect_timeout = Some(self.conn.settings().connect_timeout);
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
        observe::observe(&self.conn, db, user).await
    }

    /// Makes the tenant user exist with exactly `roles: [{role, db}]` (`role`:
    /// [`TENANT_ROLE`](super::TENANT_ROLE), or
    /// [`TENANT_READ_ONLY_ROLE`](super::TENANT_READ_ONLY_ROLE) while over quota), mechanism
    /// SCRAM-SHA-256 and `password`.
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
        user::ensure_user(&self.conn, db, user, password, role).await
    }

    /// Sets the user's password unconditionally (explicit rotation). `UserNotFound` is an error.
    pub async fn set_password(&self, db: &MongoDbName, user: &str, password: &str) -> Result<()> {
        user::set_password(&self.conn, db, user, password).await
    }

    /// Executes `steps` (from [`plan`](super::plan())) and records every version of `set` not yet
    /// recorded.
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
        apply::apply(&self.conn, db, steps, set).await
    }

    /// The owner the registry records for `db` (see
    /// [`REGISTRY_DATABASE`](super::REGISTRY_DATABASE)).
    pub async fn registered_owner(&self, db: &MongoDbName) -> Result<Option<String>> {
        registry::registered_owner(&self.conn, db).await
    }

    /// Makes sure `tenant` owns its database before anything of it is changed: registered to it
    /// (fine), registered to another Tenant (`Conflict`), or not registered: a database and user
    /// that do not exist are registered now (before they are created); existing ones only under
    /// the upgrade rule of [`MongoTenant::adopt_unmarked`], else `Conflict`.
    pub async fn ensure_owned(&self, tenant: &MongoTenant) -> Result<Ownership> {
        registry::ensure_owned(&self.conn, tenant).await
    }

    /// Drops the tenant user and database when the registry names `tenant` as their owner (or
    /// when they are unregistered but adoptable, see [`MongoTenant::adopt_unmarked`]); anything
    /// else is left alone and reported in [`MongoCleanup::skipped`]. Idempotent: what is already
    /// gone counts as done; the registry entry goes last.
    pub async fn cleanup(&self, tenant: &MongoTenant) -> Result<MongoCleanup> {
        registry::cleanup(&self.conn, tenant).await
    }

    /// Copies the tenant database `db` from this deployment to `target` (a move; see
    /// `copy.rs`): the target's copy of an earlier attempt is dropped first. The caller keeps
    /// the source from changing meanwhile (the tenant's user read-only).
    pub async fn copy_database_to(
        &self,
        target: &MongoAdmin,
        db: &MongoDbName,
    ) -> Result<MongoCopy> {
        copy::copy(&self.conn, &target.conn, db).await
    }

    /// Refuses a tenant database a move cannot copy (collections other than plain collections and
    /// views, e.g. time series).
    pub async fn check_movable(&self, db: &MongoDbName) -> Result<()> {
        copy::check_movable(&self.conn, db).await
    }

    /// Ends the sessions (and their operations and transactions) of `user` of `db`, where the
    /// server supports `killAllSessionsByPattern`: writes authorised before the user became
    /// read-only do not go on during a move's copy. Unsupported: nothing (the counts compared
    /// after the copy still catch a late write).
    pub async fn end_sessions_of(&self, db: &MongoDbName, user: &str) -> Result<()> {
        let admin = self.conn.db("admin").await?;
        match admin
            .run_command(
                doc! {"killAllSessionsByPattern": [{"users": [{"user": user, "db": db.as_str()}]}]},
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(error_code(&e), Some(59) | Some(115)) => Ok(()),
            Err(e) => Err(map_error(&e, &[])),
        }
    }

    /// `dbStats` of the tenant database (all zero if it does not exist).
    pub async fn db_stats(&self, db: &MongoDbName) -> Result<MongoDbStats> {
        observe::db_stats(&self.conn, db).await
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
