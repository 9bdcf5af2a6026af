//! The ownership registry ([`REGISTRY_DATABASE`]): which Tenant a tenant database belongs to,
//! claiming a new database, adopting one created before the registry (upgrade rule), and the
//! cleanup that drops a database and its user only when the registry says they are the Tenant's.

use mongodb::bson::{Bson, DateTime, Document, doc};
use tracing::info;

use super::client::AdminClient;
use super::observe::observe_user;
use crate::error::{Error, Result};
use crate::mongo::error::{codes, error_code};
use crate::mongo::names::MongoDbName;
use crate::mongo::tenant::{
    MongoCleanup, MongoTenant, Ownership, REGISTRY_COLLECTION, REGISTRY_DATABASE,
};

/// The owner the registry records for `db`.
pub(super) async fn registered_owner(
    conn: &AdminClient,
    db: &MongoDbName,
) -> Result<Option<String>> {
    let doc = conn
        .db(REGISTRY_DATABASE)
        .await?
        .collection::<Document>(REGISTRY_COLLECTION)
        .find_one(doc! {"_id": db.as_str()})
        .await?;
    Ok(doc.and_then(|d| d.get_str("owner").ok().map(str::to_string)))
}

/// Collection (in [`REGISTRY_DATABASE`]) holding the deployment's identity.
pub(super) const IDENTITY_COLLECTION: &str = "deployment";

/// Which MongoDB deployment this is: a random identifier the operator records once in the
/// deployment itself (`tenantdb_registry.deployment`, `_id: "identity"`; an insert, so two
/// operators or two DatabaseServers reaching one deployment at once end up with one identifier).
/// MongoDB has no identifier shared by a standalone server, a replica set and a sharded
/// cluster; two DatabaseServers reading the same identifier are one deployment under two
/// addresses. (A deployment restored from another's full backup carries the other's identifier:
/// deleting that document gives it its own.)
pub(super) async fn deployment_identity(conn: &AdminClient) -> Result<String> {
    let coll = conn
        .db(REGISTRY_DATABASE)
        .await?
        .collection::<Document>(IDENTITY_COLLECTION);
    let read = |d: Option<Document>| d.and_then(|d| d.get_str("id").ok().map(str::to_string));
    if let Some(id) = read(coll.find_one(doc! {"_id": "identity"}).await?) {
        return Ok(id);
    }
    let id = format!("{:032x}", rand::Rng::random::<u128>(&mut rand::rng()));
    match coll
        .insert_one(doc! {"_id": "identity", "id": &id, "createdAt": DateTime::now()})
        .await
    {
        Ok(_) => Ok(id),
        Err(e) if error_code(&e) == Some(codes::DUPLICATE_KEY) => {
            read(coll.find_one(doc! {"_id": "identity"}).await?).ok_or_else(|| {
                Error::Conflict(
                    "tenantdb_registry.deployment holds an identity document without an id"
                        .to_string(),
                )
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Records `tenant` as the owner of its database: an insert keyed by the database name, so
/// two Tenants claiming one name concurrently cannot both win.
async fn register(conn: &AdminClient, tenant: &MongoTenant) -> Result<()> {
    let row = doc! {
        "_id": tenant.database.as_str(),
        "owner": &tenant.owner,
        "user": &tenant.user,
        "uid": tenant.uid.clone().unwrap_or_default(),
        "registeredAt": DateTime::now(),
    };
    match conn
        .db(REGISTRY_DATABASE)
        .await?
        .collection::<Document>(REGISTRY_COLLECTION)
        .insert_one(row)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some(codes::DUPLICATE_KEY) => {
            match registered_owner(conn, &tenant.database).await? {
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

/// Whether `listDatabases` lists the database (it has data).
async fn database_listed(conn: &AdminClient, db: &MongoDbName) -> Result<bool> {
    let listed = conn
        .db("admin")
        .await?
        .run_command(doc! {
            "listDatabases": 1,
            "nameOnly": true,
            "filter": {"name": db.as_str()},
        })
        .await?;
    Ok(listed
        .get_array("databases")
        .map(|d| {
            d.iter().any(|d| match d {
                Bson::Document(d) => d.get_str("name").ok() == Some(db.as_str()),
                _ => false,
            })
        })
        .unwrap_or(false))
}

/// Whether the database exists (has data) or its user exists.
async fn exists(conn: &AdminClient, db: &MongoDbName, user: &str) -> Result<bool> {
    Ok(database_listed(conn, db).await? || observe_user(conn, db, user, None).await?.is_some())
}

/// Registered to `tenant`, registered now (new, or adoptable), or `Conflict`.
pub(super) async fn ensure_owned(conn: &AdminClient, tenant: &MongoTenant) -> Result<Ownership> {
    match registered_owner(conn, &tenant.database).await? {
        Some(o) if o == tenant.owner => return Ok(Ownership::Registered),
        Some(o) => {
            return Err(Error::Conflict(format!(
                "MongoDB database {} belongs to another Tenant ({o})",
                tenant.database
            )));
        }
        None => {}
    }
    if !exists(conn, &tenant.database, &tenant.user).await? {
        register(conn, tenant).await?;
        return Ok(Ownership::Claimed);
    }
    let password_matches =
        observe_user(conn, &tenant.database, &tenant.user, Some(&tenant.password))
            .await?
            .and_then(|u| u.password_matches)
            == Some(true);
    if tenant.adopt_unmarked && password_matches {
        register(conn, tenant).await?;
        info!(database = %tenant.database, owner = %tenant.owner, "registered a MongoDB database created before the ownership registry");
        return Ok(Ownership::Adopted);
    }
    Err(Error::Conflict(format!(
        "MongoDB database {} (or its user) exists but is not registered to this Tenant: not adopted",
        tenant.database
    )))
}

/// Drops the user, the database and then the registry entry, when they are `tenant`'s.
pub(super) async fn cleanup(conn: &AdminClient, tenant: &MongoTenant) -> Result<MongoCleanup> {
    let (db, user) = (&tenant.database, tenant.user.as_str());
    let mut report = MongoCleanup::default();
    match registered_owner(conn, db).await? {
        Some(o) if o == tenant.owner => {}
        Some(o) => {
            report.skipped = Some(format!("MongoDB database {db} belongs to {o}"));
            return Ok(report);
        }
        None => {
            if !exists(conn, db, user).await? {
                return Ok(report);
            }
            if let Err(e) = ensure_owned(conn, tenant).await {
                report.skipped = Some(e.to_string());
                return Ok(report);
            }
        }
    }
    let database_existed = database_listed(conn, db).await?;
    let database = conn.db(db.as_str()).await?;
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
    conn.db(REGISTRY_DATABASE)
        .await?
        .collection::<Document>(REGISTRY_COLLECTION)
        .delete_one(doc! {"_id": db.as_str(), "owner": &tenant.owner})
        .await?;
    report.database_dropped = database_existed;
    report.user_dropped = user_dropped;
    info!(database = %db, user, ?report, "cleaned up MongoDB tenant");
    Ok(report)
}
