//! Writes of the schema: the planned steps ([`MongoStep`]) run one by one, each tolerating having
//! been done already, then every version of the target set not yet recorded is recorded in the
//! migrations collection (after the applied history is re-checked).

use mongodb::Database;
use mongodb::bson::{DateTime, Document, doc};
use tracing::info;

use super::client::AdminClient;
use super::observe::read_applied;
use crate::error::{Error, Result};
use crate::mongo::error::{codes, error_code};
use crate::mongo::model::{MIGRATIONS_COLLECTION, MongoMigrationSet};
use crate::mongo::names::MongoDbName;
use crate::mongo::plan::{MongoStep, check_history};

/// Checks the applied history against `set`, executes `steps` and records the pending versions;
/// returns the versions recorded.
pub(super) async fn apply(
    conn: &AdminClient,
    db: &MongoDbName,
    steps: &[MongoStep],
    set: &MongoMigrationSet,
) -> Result<Vec<i64>> {
    let database = conn.db(db.as_str()).await?;
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

/// Runs one step.
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
        e @ Error::Database { .. } => e.context(step.describe()),
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
