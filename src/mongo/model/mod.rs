//! Declarative, versioned MongoDB migrations and the desired state they fold into. Pure: no I/O
//! except [`MongoMigrationSet::load_dir`] reading files.
//!
//! A migration is a YAML (or JSON) file `<version>_<name>.yaml` listing collections (with their
//! `$jsonSchema` validator and indexes) and, in later versions, removals. The format is documented
//! in `migrations/mongodb/README.md`. Folding all versions up to a target gives a
//! [`DesiredMongo`]; [`super::plan::plan`] diffs it against what the server has.
//!
//! # Layout
//!
//! `error` ([`MongoMigrationError`]), `spec` (collection options, [`IndexSpec`] and loose BSON
//! equality), `file` (one file: name, format, validation: [`parse_migration`]) and this module:
//! the bundled files, [`MongoMigrationSet`] and the fold into a [`DesiredMongo`]. Each depends
//! only on the ones listed before it.

mod error;
mod file;
mod spec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mongodb::bson::Document;

pub use error::MongoMigrationError;
use file::file_stem;
pub use file::{
    CollectionDef, IndexRef, MAX_COLLECTION_NAME_BYTES, MongoMigration, checksum, parse_migration,
};
pub(crate) use spec::as_f64;
pub use spec::{IndexSpec, ValidationAction, ValidationLevel, bson_loose_eq, doc_loose_eq};

/// Per-tenant collection recording applied versions: `{_id: version, version, name, checksum,
/// appliedAt}`. Migrations may not name it (nor any `system.*` or `_tenantdb*` collection).
pub const MIGRATIONS_COLLECTION: &str = "_tenantdb_migrations";

/// The migrations compiled into the binary: `(file name, text)`. A unit test checks that this
/// list matches `migrations/mongodb/` exactly.
const BUNDLED: &[(&str, &str)] = &[
    (
        "001_ai_conversations.yaml",
        include_str!("../../../migrations/mongodb/001_ai_conversations.yaml"),
    ),
    (
        "002_audit_events.yaml",
        include_str!("../../../migrations/mongodb/002_audit_events.yaml"),
    ),
    (
        "003_wework_messages.yaml",
        include_str!("../../../migrations/mongodb/003_wework_messages.yaml"),
    ),
    (
        "004_ai_knowledge_documents.yaml",
        include_str!("../../../migrations/mongodb/004_ai_knowledge_documents.yaml"),
    ),
];

/// A validated, version-ordered set of migrations. Only constructible through parsing, so every
/// set folds without errors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MongoMigrationSet {
    migrations: Vec<MongoMigration>,
}

/// The folded desired state of a tenant database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DesiredMongo {
    /// Highest version folded in (`None`: empty set).
    pub version: Option<i64>,
    /// Collections that must exist, by name.
    pub collections: BTreeMap<String, CollectionSpec>,
    /// Collections a migration explicitly dropped (and no later one re-created): dropped if present.
    pub dropped_collections: BTreeSet<String>,
    /// Indexes a migration explicitly dropped (and no later one re-created): dropped if present.
    pub dropped_indexes: BTreeSet<IndexRef>,
}

/// The desired state of one collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CollectionSpec {
    /// Validator (`None`: not managed; `Some({})`: no validator).
    pub validator: Option<Document>,
    /// `validationLevel`.
    pub validation_level: ValidationLevel,
    /// `validationAction`.
    pub validation_action: ValidationAction,
    /// Indexes by name.
    pub indexes: BTreeMap<String, IndexSpec>,
}

impl MongoMigrationSet {
    /// The migrations bundled with the operator (`migrations/mongodb/*.yaml`).
    ///
    /// The bundled files are checked by unit tests, so this only fails on a broken build; the
    /// error is still returned rather than panicking.
    pub fn bundled() -> Result<MongoMigrationSet, MongoMigrationError> {
        MongoMigrationSet::from_sources(BUNDLED.iter().map(|(f, t)| (f.to_string(), t.to_string())))
    }

    /// Loads every `*.yaml`, `*.yml` and `*.json` file of `dir` (other files, e.g. `README.md`,
    /// are ignored).
    pub fn load_dir(dir: &Path) -> Result<MongoMigrationSet, MongoMigrationError> {
        let io = |e: std::io::Error| MongoMigrationError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if file.starts_with('.') || !path.is_file() || file_stem(file).is_none() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| MongoMigrationError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push((file.to_string(), text));
        }
        MongoMigrationSet::from_sources(sources)
    }

    /// Parses and validates `(file name, text)` pairs: file names, structure, keys, duplicate
    /// versions and index names, and that every removal refers to something an earlier version
    /// (or the same file) declared.
    pub fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<MongoMigrationSet, MongoMigrationError> {
        let mut migrations = sources
            .into_iter()
            .map(|(file, text)| parse_migration(&file, &text))
            .collect::<Result<Vec<_>, _>>()?;
        migrations.sort_by(|a, b| a.version.cmp(&b.version).then(a.file.cmp(&b.file)));
        for pair in migrations.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MongoMigrationError::DuplicateVersion {
                    version: pair[0].version,
                    first: pair[0].file.clone(),
                    second: pair[1].file.clone(),
                });
            }
        }
        // Fold everything once: removals must refer to existing objects.
        let mut state = DesiredMongo::default();
        for m in &migrations {
            fold_one(&mut state, m).map_err(|message| MongoMigrationError::Invalid {
                file: m.file.clone(),
                message,
            })?;
        }
        Ok(MongoMigrationSet { migrations })
    }

    /// The migrations, by ascending version.
    pub fn migrations(&self) -> &[MongoMigration] {
        &self.migrations
    }

    /// The highest version.
    pub fn latest_version(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&MongoMigration> {
        self.migrations.iter().find(|m| m.version == version)
    }

    /// The subset with versions `<= up_to` (a prefix of a valid set is valid).
    pub fn truncated(&self, up_to: i64) -> MongoMigrationSet {
        MongoMigrationSet {
            migrations: self
                .migrations
                .iter()
                .filter(|m| m.version <= up_to)
                .cloned()
                .collect(),
        }
    }
}

/// Folds every migration with version `<= up_to` (all of them for `None`) into the desired state.
pub fn desired_state(set: &MongoMigrationSet, up_to: Option<i64>) -> DesiredMongo {
    let mut state = DesiredMongo::default();
    for m in set
        .migrations()
        .iter()
        .filter(|m| up_to.is_none_or(|u| m.version <= u))
    {
        // A set only exists after a successful fold of all its migrations; a prefix folds the same.
        if fold_one(&mut state, m).is_err() {
            break;
        }
    }
    state
}

/// Applies one migration to the state: collection drops, then index drops, then collections.
fn fold_one(state: &mut DesiredMongo, m: &MongoMigration) -> Result<(), String> {
    for name in &m.drop_collections {
        if state.collections.remove(name).is_none() {
            return Err(format!(
                "dropCollections: collection {name:?} is not defined by an earlier version"
            ));
        }
        state.dropped_indexes.retain(|r| &r.collection != name);
        state.dropped_collections.insert(name.clone());
    }
    for r in &m.drop_indexes {
        let found = state
            .collections
            .get_mut(&r.collection)
            .and_then(|c| c.indexes.remove(&r.name));
        if found.is_none() {
            return Err(format!(
                "dropIndexes: index {:?} on {:?} is not defined by an earlier version",
                r.name, r.collection
            ));
        }
        state.dropped_indexes.insert(r.clone());
    }
    for c in &m.collections {
        state.dropped_collections.remove(&c.name);
        let spec = state.collections.entry(c.name.clone()).or_default();
        if let Some(v) = &c.validator {
            spec.validator = Some(v.clone());
        }
        if let Some(l) = c.validation_level {
            spec.validation_level = l;
        }
        if let Some(a) = c.validation_action {
            spec.validation_action = a;
        }
        for idx in &c.indexes {
            state.dropped_indexes.remove(&IndexRef {
                collection: c.name.clone(),
                name: idx.name.clone(),
            });
            spec.indexes.insert(idx.name.clone(), idx.clone());
        }
    }
    state.version = Some(m.version);
    Ok(())
}
