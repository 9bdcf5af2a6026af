//! Reads of a tenant database, no writes: what provisioning compares (collections with their
//! validator options, indexes, the user with its roles and, optionally, whether a password
//! matches its stored SCRAM keys, the applied migrations) and `dbStats`.

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

use super::client::AdminClient;
use crate::error::{Error, Result};
use crate::mongo::error::{codes, error_code};
use crate::mongo::model::{IndexSpec, MIGRATIONS_COLLECTION, as_f64};
use crate::mongo::names::MongoDbName;
use crate::mongo::plan::{AppliedMigration, ObservedCollection, ObservedMongo, ObservedUser};
use crate::mongo::tenant::{MongoDbStats, TENANT_MECHANISM};

/// Reads the collections (with validator options and indexes), the user and the applied
/// migrations of `db`.
pub(super) async fn observe(
    conn: &AdminClient,
    db: &MongoDbName,
    user: &str,
) -> Result<ObservedMongo> {
    let database = conn.db(db.as_str()).await?;
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
            list_indexes(&database, name).await?
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
    let user = observe_user(conn, db, user, None).await?;
    Ok(ObservedMongo {
        collections,
        user,
        applied,
    })
}

/// The indexes of `collection` except `_id_` (none when the collection does not exist).
async fn list_indexes(
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
pub(super) async fn observe_user(
    conn: &AdminClient,
    db: &MongoDbName,
    user: &str,
    password: Option<&str>,
) -> Result<Option<ObservedUser>> {
    let database = conn.db(db.as_str()).await?;
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
        let iterations = cred.get("iterationCount").and_then(as_f64)? as u32;
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

/// `dbStats` of `db` (all zero if it does not exist).
pub(super) async fn db_stats(conn: &AdminClient, db: &MongoDbName) -> Result<MongoDbStats> {
    let reply = conn
        .db(db.as_str())
        .await?
        .run_command(doc! {"dbStats": 1, "scale": 1})
        .await?;
    let n = |k: &str| {
        reply
            .get(k)
            .and_then(as_f64)
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

/// The rows of the migrations collection, by ascending version.
pub(super) async fn read_applied(database: &Database) -> Result<Vec<AppliedMigration>> {
    let mut cursor = database
        .collection::<Document>(MIGRATIONS_COLLECTION)
        .find(doc! {})
        .await?;
    let mut out = Vec::new();
    while let Some(row) = cursor.try_next().await? {
        let Some(version) = row.get("version").and_then(as_f64) else {
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
