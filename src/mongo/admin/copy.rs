//! The copy of a tenant database to another MongoDB deployment (a move): the target's copy of an
//! earlier attempt dropped, then every collection created with its options (capped, collation,
//! …; views after the collections they read), its documents copied in batches, its indexes
//! created, and its validator set last (documents that predate a validator are copied as they
//! are), and the document counts of source and target compared once all are copied. The source must not change
//! meanwhile: the caller made the tenant's user read-only there.

use futures::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};

use super::client::AdminClient;
use crate::error::{Error, Result};
use crate::mongo::error::{codes, error_code};
use crate::mongo::names::MongoDbName;

/// Documents per `insert` batch.
const BATCH: usize = 1000;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MongoCopy {
    /// Collections and views created.
    pub collections: usize,
    /// Documents copied.
    pub documents: u64,
    /// Indexes created (without `_id_`).
    pub indexes: usize,
}

/// Options that take effect only after the documents are in (see the module documentation).
const VALIDATION: [&str; 3] = ["validator", "validationLevel", "validationAction"];

/// Copies `db` from `source` to `target` (see the module documentation).
pub(super) async fn copy(
    source: &AdminClient,
    target: &AdminClient,
    db: &MongoDbName,
) -> Result<MongoCopy> {
    let src = source.db(db.as_str()).await?;
    let dst = target.db(db.as_str()).await?;
    match dst.run_command(doc! {"dropDatabase": 1}).await {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some(codes::NAMESPACE_NOT_FOUND) => {}
        Err(e) => return Err(e.into()),
    }
    let mut specs: Vec<Document> = src
        .run_cursor_command(doc! {"listCollections": 1, "nameOnly": false})
        .await?
        .try_collect()
        .await?;
    // Collections before views (a view names its source).
    specs.sort_by_key(|s| s.get_str("type").unwrap_or("collection") == "view");
    let mut report = MongoCopy::default();
    let mut copied = Vec::new();
    for spec in specs {
        let Ok(name) = spec.get_str("name") else {
            continue;
        };
        if name.starts_with("system.") {
            continue;
        }
        let kind = spec.get_str("type").unwrap_or("collection");
        if kind != "collection" && kind != "view" {
            return Err(Error::InvalidSpec(format!(
                "MongoDB collection {name} is a {kind}: only collections and views are moved"
            )));
        }
        let options = spec.get_document("options").cloned().unwrap_or_default();
        let mut create = doc! {"create": name};
        let mut validation = Document::new();
        for (k, v) in options {
            if kind == "collection" && VALIDATION.contains(&k.as_str()) {
                validation.insert(k, v);
            } else {
                create.insert(k, v);
            }
        }
        dst.run_command(create).await?;
        report.collections += 1;
        if kind != "collection" {
            continue;
        }
        report.documents += copy_documents(&src, &dst, name).await?;
        report.indexes += copy_indexes(&src, &dst, name).await?;
        if !validation.is_empty() {
            let mut coll_mod = doc! {"collMod": name};
            coll_mod.extend(validation);
            dst.run_command(coll_mod).await?;
        }
        copied.push(name.to_string());
    }
    // Compared once all are copied: a write that reached the source after its collection was
    // copied (an operation authorised before the user became read-only) is found here.
    for name in &copied {
        let (a, b) = (
            src.collection::<Document>(name)
                .count_documents(doc! {})
                .await?,
            dst.collection::<Document>(name)
                .count_documents(doc! {})
                .await?,
        );
        if a != b {
            return Err(Error::unavailable(format!(
                "MongoDB collection {name}: {a} documents on the source, {b} copied"
            )));
        }
    }
    Ok(report)
}

/// Refuses a database with collections a move cannot copy (anything but collections and views,
/// e.g. time series), before anything of the move is done.
pub(super) async fn check_movable(source: &AdminClient, db: &MongoDbName) -> Result<()> {
    let specs: Vec<Document> = source
        .db(db.as_str())
        .await?
        .run_cursor_command(doc! {"listCollections": 1, "nameOnly": false})
        .await?
        .try_collect()
        .await?;
    for spec in specs {
        let name = spec.get_str("name").unwrap_or_default();
        let kind = spec.get_str("type").unwrap_or("collection");
        if !name.starts_with("system.") && kind != "collection" && kind != "view" {
            // Time series (their documents live in `system.buckets.*`) and anything newer: not
            // copied rather than lost when the source is dropped.
            return Err(Error::InvalidSpec(format!(
                "MongoDB collection {name} is a {kind}: only collections and views are moved"
            )));
        }
    }
    Ok(())
}

async fn copy_documents(src: &Database, dst: &Database, name: &str) -> Result<u64> {
    let target = dst.collection::<RawDocumentBuf>(name);
    let mut cursor = src.collection::<RawDocumentBuf>(name).find(doc! {}).await?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    while let Some(d) = cursor.try_next().await? {
        batch.push(d);
        if batch.len() == BATCH {
            n += batch.len() as u64;
            target.insert_many(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        n += batch.len() as u64;
        target.insert_many(batch).await?;
    }
    Ok(n)
}

/// Creates the indexes of `name` on the target as the source lists them (without `_id_`, and
/// without the fields the server adds: `v`, `ns`).
async fn copy_indexes(src: &Database, dst: &Database, name: &str) -> Result<usize> {
    let indexes: Vec<Document> = src
        .run_cursor_command(doc! {"listIndexes": name})
        .await?
        .try_collect()
        .await?;
    let specs: Vec<Bson> = indexes
        .into_iter()
        .filter(|i| i.get_str("name").is_ok_and(|n| n != "_id_"))
        .map(|mut i| {
            i.remove("v");
            i.remove("ns");
            Bson::Document(i)
        })
        .collect();
    if specs.is_empty() {
        return Ok(0);
    }
    let n = specs.len();
    dst.run_command(doc! {"createIndexes": name, "indexes": specs})
        .await?;
    Ok(n)
}
