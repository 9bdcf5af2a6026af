//! Declarative, versioned MongoDB migrations and the desired state they fold into. Pure: no I/O
//! except [`MongoMigrationSet::load_dir`] reading files.
//!
//! A migration is a YAML (or JSON) file `<version>_<name>.yaml` listing collections (with their
//! `$jsonSchema` validator and indexes) and, in later versions, removals. The format is documented
//! in `migrations/mongodb/README.md`. Folding all versions up to a target gives a
//! [`DesiredMongo`]; [`super::plan::plan`] diffs it against what the server has.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use mongodb::bson::{Bson, Document};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Per-tenant collection recording applied versions: `{_id: version, version, name, checksum,
/// appliedAt}`. Migrations may not name it (nor any `system.*` or `_tenantdb*` collection).
pub const MIGRATIONS_COLLECTION: &str = "_tenantdb_migrations";

/// Longest collection name accepted (well inside MongoDB's 255-byte namespace limit together
/// with a 63-byte database name).
pub const MAX_COLLECTION_NAME_BYTES: usize = 120;

/// The migrations compiled into the binary: `(file name, text)`. A unit test checks that this
/// list matches `migrations/mongodb/` exactly.
const BUNDLED: &[(&str, &str)] = &[
    (
        "001_ai_conversations.yaml",
        include_str!("../../migrations/mongodb/001_ai_conversations.yaml"),
    ),
    (
        "002_audit_events.yaml",
        include_str!("../../migrations/mongodb/002_audit_events.yaml"),
    ),
    (
        "003_wework_messages.yaml",
        include_str!("../../migrations/mongodb/003_wework_messages.yaml"),
    ),
    (
        "004_ai_knowledge_documents.yaml",
        include_str!("../../migrations/mongodb/004_ai_knowledge_documents.yaml"),
    ),
];

/// Why a migration file or set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MongoMigrationError {
    /// The file name does not follow `<version>_<name>.yaml|.yml|.json`.
    #[error(
        "{file}: file name must be <version>_<name>.yaml (or .yml/.json), version >= 1, name [a-z0-9_]+"
    )]
    FileName {
        /// The file.
        file: String,
    },
    /// Not valid YAML/JSON, or not the documented structure.
    #[error("{file}: parse error: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What the parser said.
        message: String,
    },
    /// Well-formed but semantically wrong (bad key, duplicate index name, unknown reference…).
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Two files with the same version.
    #[error("version {version} is defined by both {first} and {second}")]
    DuplicateVersion {
        /// The version.
        version: i64,
        /// One file.
        first: String,
        /// The other file.
        second: String,
    },
    /// The directory could not be read.
    #[error("reading {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        message: String,
    },
}

impl From<MongoMigrationError> for Error {
    fn from(e: MongoMigrationError) -> Self {
        Error::Config(format!("MongoDB migrations: {e}"))
    }
}

/// `validationLevel` of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationLevel {
    /// No validation.
    Off,
    /// Validate all inserts and updates (MongoDB's default).
    #[default]
    Strict,
    /// Validate inserts and updates of documents that are already valid.
    Moderate,
}

impl ValidationLevel {
    /// The server's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationLevel::Off => "off",
            ValidationLevel::Strict => "strict",
            ValidationLevel::Moderate => "moderate",
        }
    }
}

/// `validationAction` of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationAction {
    /// Reject invalid documents (code 121; MongoDB's default).
    #[default]
    Error,
    /// Accept them and log a warning.
    Warn,
}

impl ValidationAction {
    /// The server's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationAction::Error => "error",
            ValidationAction::Warn => "warn",
        }
    }
}

/// One index as declared (and as compared with `listIndexes` output).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    /// Index name (unique within the collection; never `_id_`).
    pub name: String,
    /// Key pattern, in order: `(field, 1 | -1 | "hashed" | "2dsphere")`.
    pub keys: Vec<(String, Bson)>,
    /// `unique`.
    pub unique: bool,
    /// `sparse`.
    pub sparse: bool,
    /// `expireAfterSeconds` (TTL index; single date field).
    pub expire_after_seconds: Option<i64>,
    /// `partialFilterExpression`.
    pub partial_filter_expression: Option<Document>,
}

impl IndexSpec {
    /// The key pattern as a BSON document (order preserved).
    pub fn keys_document(&self) -> Document {
        let mut d = Document::new();
        for (k, v) in &self.keys {
            d.insert(k.clone(), v.clone());
        }
        d
    }

    /// The index document for `createIndexes` (only options that are set).
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        d.insert("key", self.keys_document());
        d.insert("name", self.name.clone());
        if self.unique {
            d.insert("unique", true);
        }
        if self.sparse {
            d.insert("sparse", true);
        }
        if let Some(s) = self.expire_after_seconds {
            d.insert("expireAfterSeconds", to_bson_int(s));
        }
        if let Some(p) = &self.partial_filter_expression {
            d.insert("partialFilterExpression", p.clone());
        }
        d
    }

    /// Parses an index document as returned by `listIndexes`. Options the operator does not
    /// manage (`v`, `ns`, collation, …) are ignored. `None` if `name` or `key` is missing.
    pub fn from_server(doc: &Document) -> Option<IndexSpec> {
        let name = doc.get_str("name").ok()?.to_string();
        let key = doc.get_document("key").ok()?;
        let keys = key.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let truthy = |field: &str| match doc.get(field) {
            Some(Bson::Boolean(b)) => *b,
            Some(other) => as_f64(other).is_some_and(|n| n != 0.0),
            None => false,
        };
        Some(IndexSpec {
            name,
            keys,
            unique: truthy("unique"),
            sparse: truthy("sparse"),
            expire_after_seconds: doc
                .get("expireAfterSeconds")
                .and_then(as_f64)
                .map(|n| n as i64),
            partial_filter_expression: doc.get_document("partialFilterExpression").ok().cloned(),
        })
    }

    /// Whether `other` is the same index definition (keys in order, numeric types ignored, and
    /// the managed options).
    pub fn same_definition(&self, other: &IndexSpec) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(&other.keys)
                .all(|((a, av), (b, bv))| a == b && bson_loose_eq(av, bv))
            && self.unique == other.unique
            && self.sparse == other.sparse
            && self.expire_after_seconds == other.expire_after_seconds
            && match (
                &self.partial_filter_expression,
                &other.partial_filter_expression,
            ) {
                (None, None) => true,
                (Some(a), Some(b)) => doc_loose_eq(a, b),
                _ => false,
            }
    }
}

/// A collection as declared in one migration file.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionDef {
    /// Collection name.
    pub name: String,
    /// Validator document (typically `{$jsonSchema: …}`); `None` leaves the current validator;
    /// `{}` removes it.
    pub validator: Option<Document>,
    /// `validationLevel`, if given.
    pub validation_level: Option<ValidationLevel>,
    /// `validationAction`, if given.
    pub validation_action: Option<ValidationAction>,
    /// Indexes added (or redefined, by name) by this file.
    pub indexes: Vec<IndexSpec>,
}

/// `(collection, index name)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexRef {
    /// Collection.
    pub collection: String,
    /// Index name.
    pub name: String,
}

/// One parsed and validated migration file.
#[derive(Debug, Clone, PartialEq)]
pub struct MongoMigration {
    /// Version (from the file name; `001` is 1).
    pub version: i64,
    /// Name (from the file name).
    pub name: String,
    /// The file name it came from.
    pub file: String,
    /// Hex SHA-256 of the file text (drift detection).
    pub checksum: String,
    /// Optional free text.
    pub description: Option<String>,
    /// Collections dropped by this version (applied first).
    pub drop_collections: Vec<String>,
    /// Indexes dropped by this version (applied after collection drops).
    pub drop_indexes: Vec<IndexRef>,
    /// Collections created or changed by this version (applied last).
    pub collections: Vec<CollectionDef>,
}

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

/// Hex SHA-256 of a migration file's text.
pub fn checksum(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(version, name)` from `<version>_<name>.yaml|.yml|.json`.
fn file_stem(file: &str) -> Option<(i64, String)> {
    let stem = file
        .strip_suffix(".yaml")
        .or_else(|| file.strip_suffix(".yml"))
        .or_else(|| file.strip_suffix(".json"))?;
    let (version, name) = stem.split_once('_')?;
    if version.is_empty()
        || !version.bytes().all(|b| b.is_ascii_digit())
        || name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let version: i64 = version.parse().ok()?;
    (version >= 1).then(|| (version, name.to_string()))
}

// ---------------------------------------------------------------------------------------------
// File format (serde). Field names follow MongoDB's own spelling (camelCase).

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    drop_collections: Vec<String>,
    #[serde(default)]
    drop_indexes: Vec<RawIndexRef>,
    #[serde(default)]
    collections: Vec<RawCollection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIndexRef {
    collection: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCollection {
    name: String,
    #[serde(default)]
    validator: Option<YamlBson>,
    #[serde(default)]
    validation_level: Option<ValidationLevel>,
    #[serde(default)]
    validation_action: Option<ValidationAction>,
    #[serde(default)]
    indexes: Vec<RawIndex>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIndex {
    name: String,
    keys: YamlBson,
    #[serde(default)]
    unique: bool,
    #[serde(default)]
    sparse: bool,
    #[serde(default)]
    expire_after_seconds: Option<i64>,
    #[serde(default)]
    partial_filter_expression: Option<YamlBson>,
}

/// Any YAML/JSON value as BSON, keeping mapping order (index keys are ordered) and typing
/// integers as Int32 when they fit (like the mongo shell), else Int64.
struct YamlBson(Bson);

impl<'de> Deserialize<'de> for YamlBson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = YamlBson;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a YAML/JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<YamlBson, E> {
                Ok(YamlBson(Bson::Boolean(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<YamlBson, E> {
                Ok(YamlBson(to_bson_int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<YamlBson, E> {
                i64::try_from(v)
                    .map(|v| YamlBson(to_bson_int(v)))
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<YamlBson, E> {
                Ok(YamlBson(Bson::Double(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<YamlBson, E> {
                Ok(YamlBson(Bson::String(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<YamlBson, E> {
                Ok(YamlBson(Bson::String(v)))
            }
            fn visit_unit<E>(self) -> Result<YamlBson, E> {
                Ok(YamlBson(Bson::Null))
            }
            fn visit_none<E>(self) -> Result<YamlBson, E> {
                Ok(YamlBson(Bson::Null))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<YamlBson, D::Error> {
                YamlBson::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<YamlBson, A::Error> {
                let mut out = Vec::new();
                while let Some(YamlBson(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(YamlBson(Bson::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YamlBson, A::Error> {
                let mut doc = Document::new();
                while let Some(key) = map.next_key::<String>()? {
                    let YamlBson(v) = map.next_value()?;
                    if doc.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    doc.insert(key, v);
                }
                Ok(YamlBson(Bson::Document(doc)))
            }
        }
        d.deserialize_any(V)
    }
}

fn to_bson_int(v: i64) -> Bson {
    match i32::try_from(v) {
        Ok(i) => Bson::Int32(i),
        Err(_) => Bson::Int64(v),
    }
}

/// Parses and validates one file.
pub fn parse_migration(file: &str, text: &str) -> Result<MongoMigration, MongoMigrationError> {
    let (version, name) = file_stem(file).ok_or_else(|| MongoMigrationError::FileName {
        file: file.to_string(),
    })?;
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| MongoMigrationError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let invalid = |message: String| MongoMigrationError::Invalid {
        file: file.to_string(),
        message,
    };
    let mut collections = Vec::new();
    let mut seen = BTreeSet::new();
    for c in raw.collections {
        check_collection_name(&c.name).map_err(invalid)?;
        if !seen.insert(c.name.clone()) {
            return Err(invalid(format!("collection {:?} listed twice", c.name)));
        }
        let validator = match c.validator {
            None => None,
            Some(YamlBson(Bson::Document(d))) => Some(d),
            Some(_) => {
                return Err(invalid(format!(
                    "{}: validator must be a mapping (e.g. {{$jsonSchema: …}})",
                    c.name
                )));
            }
        };
        let mut indexes = Vec::new();
        let mut index_names = BTreeSet::new();
        for i in c.indexes {
            let spec = index_spec(&c.name, i).map_err(invalid)?;
            if !index_names.insert(spec.name.clone()) {
                return Err(invalid(format!(
                    "{}: index name {:?} used twice",
                    c.name, spec.name
                )));
            }
            indexes.push(spec);
        }
        let mut patterns: Vec<&IndexSpec> = Vec::new();
        for i in &indexes {
            if let Some(other) = patterns.iter().find(|o| {
                o.keys.len() == i.keys.len()
                    && o.keys
                        .iter()
                        .zip(&i.keys)
                        .all(|((a, av), (b, bv))| a == b && bson_loose_eq(av, bv))
            }) {
                return Err(invalid(format!(
                    "{}: indexes {:?} and {:?} have the same key pattern",
                    c.name, other.name, i.name
                )));
            }
            patterns.push(i);
        }
        collections.push(CollectionDef {
            name: c.name,
            validator,
            validation_level: c.validation_level,
            validation_action: c.validation_action,
            indexes,
        });
    }
    for name in &raw.drop_collections {
        check_collection_name(name).map_err(invalid)?;
    }
    let drop_indexes: Vec<IndexRef> = raw
        .drop_indexes
        .into_iter()
        .map(|r| IndexRef {
            collection: r.collection,
            name: r.name,
        })
        .collect();
    for r in &drop_indexes {
        check_collection_name(&r.collection).map_err(invalid)?;
        check_index_name(&r.name).map_err(invalid)?;
    }
    if collections.is_empty() && raw.drop_collections.is_empty() && drop_indexes.is_empty() {
        return Err(invalid("migration changes nothing".to_string()));
    }
    Ok(MongoMigration {
        version,
        name,
        file: file.to_string(),
        checksum: checksum(text),
        description: raw.description,
        drop_collections: raw.drop_collections,
        drop_indexes,
        collections,
    })
}

fn check_collection_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_COLLECTION_NAME_BYTES
        || name.contains(['$', '\0'])
        || name.chars().any(char::is_control)
        || name.starts_with('.')
        || name.ends_with('.')
    {
        return Err(format!("invalid collection name {name:?}"));
    }
    if name.starts_with("system.") || name.starts_with("_tenantdb") {
        return Err(format!("collection name {name:?} is reserved"));
    }
    Ok(())
}

fn check_index_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 127 || name.contains('\0') || name == "_id_" {
        return Err(format!("invalid index name {name:?}"));
    }
    Ok(())
}

fn index_spec(collection: &str, raw: RawIndex) -> Result<IndexSpec, String> {
    check_index_name(&raw.name).map_err(|e| format!("{collection}: {e}"))?;
    let at = |msg: String| format!("{collection}.{}: {msg}", raw.name);
    let Bson::Document(key_doc) = raw.keys.0 else {
        return Err(at(
            "keys must be a mapping of field: 1 | -1 | hashed | 2dsphere".into(),
        ));
    };
    if key_doc.is_empty() {
        return Err(at("keys is empty".into()));
    }
    let mut keys = Vec::new();
    let mut hashed = 0;
    for (field, value) in key_doc {
        if field.is_empty()
            || field.starts_with('$')
            || field.contains('\0')
            || field.starts_with('.')
            || field.ends_with('.')
            || field.contains("..")
        {
            return Err(at(format!("invalid key field {field:?}")));
        }
        let ok = match &value {
            Bson::Int32(1) | Bson::Int32(-1) | Bson::Int64(1) | Bson::Int64(-1) => true,
            Bson::String(s) if s == "hashed" => {
                hashed += 1;
                true
            }
            Bson::String(s) => s == "2dsphere",
            _ => false,
        };
        if !ok {
            return Err(at(format!(
                "key {field:?}: direction must be 1, -1, \"hashed\" or \"2dsphere\" (got {value})"
            )));
        }
        keys.push((field, value));
    }
    if hashed > 1 {
        return Err(at("at most one hashed field".into()));
    }
    if hashed == 1 && raw.unique {
        return Err(at("hashed indexes cannot be unique".into()));
    }
    if let Some(ttl) = raw.expire_after_seconds {
        if !(0..=i64::from(i32::MAX)).contains(&ttl) {
            return Err(at("expireAfterSeconds must be within 0..=2147483647".into()));
        }
        if keys.len() != 1 || keys[0].0 == "_id" {
            return Err(at(
                "a TTL index (expireAfterSeconds) needs exactly one date field, not _id".into(),
            ));
        }
    }
    let partial_filter_expression = match raw.partial_filter_expression {
        None => None,
        Some(YamlBson(Bson::Document(d))) if !d.is_empty() => Some(d),
        Some(_) => {
            return Err(at(
                "partialFilterExpression must be a non-empty mapping".into()
            ));
        }
    };
    if partial_filter_expression.is_some() && raw.sparse {
        return Err(at(
            "sparse and partialFilterExpression cannot be combined".into()
        ));
    }
    Ok(IndexSpec {
        name: raw.name,
        keys,
        unique: raw.unique,
        sparse: raw.sparse,
        expire_after_seconds: raw.expire_after_seconds,
        partial_filter_expression,
    })
}

// ---------------------------------------------------------------------------------------------
// Comparing what we declared with what the server returns.

/// Numeric value of an Int32/Int64/Double.
pub(crate) fn as_f64(b: &Bson) -> Option<f64> {
    match b {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(d) => Some(*d),
        _ => None,
    }
}

/// Equality that ignores the numeric type (`1` Int32 == `1` Int64 == `1.0`) and the key order of
/// sub-documents (servers may reorder a stored validator). Array order matters.
pub fn bson_loose_eq(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => doc_loose_eq(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| bson_loose_eq(p, q))
        }
        _ => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// [`bson_loose_eq`] for documents (key order ignored).
pub fn doc_loose_eq(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| bson_loose_eq(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    const V1: &str = r#"
description: first
collections:
  - name: things
    validator:
      $jsonSchema:
        bsonType: object
        required: [tenant_id, kind]
        properties:
          tenant_id: {bsonType: string}
          kind: {enum: [a, b]}
          n: {bsonType: int, minimum: 0}
    indexes:
      - name: tenant_kind
        keys: {tenant_id: 1, kind: -1, created_at: 1}
        unique: true
      - name: created_ttl
        keys: {created_at: 1}
        expireAfterSeconds: 3600
      - name: ext_partial
        keys: {ext_id: 1}
        unique: true
        partialFilterExpression: {ext_id: {$exists: true}}
  - name: other
"#;

    const V2: &str = r#"
dropIndexes:
  - {collection: things, name: ext_partial}
collections:
  - name: things
    validationAction: warn
    validator:
      $jsonSchema:
        bsonType: object
        required: [tenant_id]
"#;

    const V3: &str = "dropCollections: [other]\n";

    fn set(files: &[(&str, &str)]) -> Result<MongoMigrationSet, MongoMigrationError> {
        MongoMigrationSet::from_sources(files.iter().map(|(f, t)| (f.to_string(), t.to_string())))
    }

    #[test]
    fn bundled_set_parses_and_matches_the_directory() {
        let s = MongoMigrationSet::bundled().unwrap();
        assert!(s.latest_version().unwrap() >= 1);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/mongodb");
        let from_dir = MongoMigrationSet::load_dir(&dir).unwrap();
        assert_eq!(
            s, from_dir,
            "BUNDLED in src/mongo/model.rs must list exactly the files of migrations/mongodb"
        );
        let d = desired_state(&s, None);
        for c in [
            "ai_conversations",
            "ai_messages",
            "audit_events",
            "wework_messages",
            "ai_knowledge_documents",
        ] {
            let spec = d.collections.get(c).unwrap_or_else(|| panic!("{c}"));
            assert!(spec.validator.as_ref().unwrap().contains_key("$jsonSchema"));
            assert!(!spec.indexes.is_empty(), "{c}");
        }
        let ttl = &d.collections["audit_events"].indexes["created_at_ttl"];
        assert_eq!(ttl.expire_after_seconds, Some(180 * 86400));
    }

    #[test]
    fn parses_keys_in_order_with_options() {
        let s = set(&[("001_first.yaml", V1)]).unwrap();
        let m = &s.migrations()[0];
        assert_eq!((m.version, m.name.as_str()), (1, "first"));
        assert_eq!(m.checksum, checksum(V1));
        assert_eq!(m.checksum.len(), 64);
        let things = &m.collections[0];
        let idx = &things.indexes[0];
        let fields: Vec<&str> = idx.keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(fields, ["tenant_id", "kind", "created_at"]);
        assert_eq!(idx.keys[1].1, Bson::Int32(-1));
        assert!(idx.unique);
        assert_eq!(things.indexes[1].expire_after_seconds, Some(3600));
        assert_eq!(
            things.indexes[2].partial_filter_expression,
            Some(doc! {"ext_id": {"$exists": true}})
        );
        assert_eq!(
            idx.to_document(),
            doc! {"key": {"tenant_id": 1, "kind": -1, "created_at": 1}, "name": "tenant_kind", "unique": true}
        );
        // JSON is accepted too.
        let json =
            r#"{"collections": [{"name": "j", "indexes": [{"name": "a", "keys": {"a": 1}}]}]}"#;
        assert!(set(&[("001_json.json", json)]).is_ok());
    }

    #[test]
    fn rejects_bad_files() {
        let cases: &[(&str, &str, &str)] = &[
            ("1-x.yaml", V1, "file name"),
            ("0_x.yaml", V1, "file name"),
            ("001_X.yaml", V1, "file name"),
            ("001_x.yaml", "collections: [", "parse"),
            ("001_x.yaml", "colections: []", "unknown field"),
            ("001_x.yaml", "collections: []", "changes nothing"),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {a: 2}}]}]",
                "direction",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {$a: 1}}]}]",
                "invalid key",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {}}]}]",
                "empty",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {a: 1}}, {name: i, keys: {b: 1}}]}]",
                "used twice",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {a: 1}}, {name: j, keys: {a: 1}}]}]",
                "same key pattern",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {a: 1, b: 1}, expireAfterSeconds: 5}]}]",
                "TTL",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: _id_, keys: {a: 1}}]}]",
                "invalid index name",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, indexes: [{name: i, keys: {a: 1}, sparse: true, partialFilterExpression: {a: 1}}]}]",
                "sparse",
            ),
            ("001_x.yaml", "collections: [{name: system.js}]", "reserved"),
            (
                "001_x.yaml",
                "collections: [{name: _tenantdb_migrations}]",
                "reserved",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a$b}]",
                "invalid collection",
            ),
            ("001_x.yaml", "collections: [{name: a}, {name: a}]", "twice"),
            (
                "001_x.yaml",
                "collections: [{name: a, validator: [1]}]",
                "mapping",
            ),
            (
                "001_x.yaml",
                "collections: [{name: a, validationLevel: sometimes}]",
                "",
            ),
            ("001_x.yaml", "dropCollections: [nope]", "not defined"),
            (
                "001_x.yaml",
                "dropIndexes: [{collection: a, name: nope}]",
                "not defined",
            ),
        ];
        for (file, text, want) in cases {
            let err = set(&[(file, text)]).expect_err(&format!("{file}: {text} accepted"));
            let msg = err.to_string();
            assert!(
                msg.to_lowercase().contains(&want.to_lowercase()),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_versions() {
        let e = set(&[("001_a.yaml", V1), ("1_b.yaml", V3)]).unwrap_err();
        assert!(matches!(
            e,
            MongoMigrationError::DuplicateVersion { version: 1, .. }
        ));
    }

    #[test]
    fn folds_versions() {
        let s = set(&[
            ("002_two.yaml", V2),
            ("001_first.yaml", V1),
            ("003_three.yaml", V3),
        ])
        .unwrap();
        assert_eq!(s.latest_version(), Some(3));
        let d1 = desired_state(&s, Some(1));
        assert_eq!(d1.version, Some(1));
        assert_eq!(d1.collections["things"].indexes.len(), 3);
        assert!(d1.collections.contains_key("other"));
        assert!(d1.dropped_indexes.is_empty());

        let d2 = desired_state(&s, Some(2));
        let things = &d2.collections["things"];
        assert_eq!(things.indexes.len(), 2);
        assert!(!things.indexes.contains_key("ext_partial"));
        assert_eq!(things.validation_action, ValidationAction::Warn);
        assert_eq!(things.validation_level, ValidationLevel::Strict);
        assert_eq!(
            things.validator.as_ref().unwrap(),
            &doc! {"$jsonSchema": {"bsonType": "object", "required": ["tenant_id"]}}
        );
        assert!(d2.dropped_indexes.contains(&IndexRef {
            collection: "things".into(),
            name: "ext_partial".into()
        }));

        let d3 = desired_state(&s, None);
        assert_eq!(d3.version, Some(3));
        assert!(!d3.collections.contains_key("other"));
        assert!(d3.dropped_collections.contains("other"));
        assert_eq!(s.truncated(2).latest_version(), Some(2));
        assert_eq!(desired_state(&s.truncated(2), None), d2);
    }

    #[test]
    fn recreating_clears_removals() {
        let v4 = "collections: [{name: other}, {name: things, indexes: [{name: ext_partial, keys: {ext_id: -1}}]}]";
        let s = set(&[
            ("001_first.yaml", V1),
            ("002_two.yaml", V2),
            ("003_three.yaml", V3),
            ("004_four.yaml", v4),
        ])
        .unwrap();
        let d = desired_state(&s, None);
        assert!(d.dropped_collections.is_empty());
        assert!(d.dropped_indexes.is_empty());
        assert_eq!(
            d.collections["things"].indexes["ext_partial"].keys,
            vec![("ext_id".to_string(), Bson::Int32(-1))]
        );
    }

    #[test]
    fn loose_equality() {
        assert!(bson_loose_eq(&Bson::Int32(1), &Bson::Int64(1)));
        assert!(bson_loose_eq(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(!bson_loose_eq(&Bson::Int32(1), &Bson::Int32(-1)));
        assert!(doc_loose_eq(
            &doc! {"a": 1, "b": {"c": [1, 2]}},
            &doc! {"b": {"c": [1i64, 2.0]}, "a": 1i64}
        ));
        assert!(!doc_loose_eq(
            &doc! {"b": {"c": [1, 2]}},
            &doc! {"b": {"c": [2, 1]}}
        ));
        assert!(!doc_loose_eq(&doc! {"a": 1}, &doc! {"a": 1, "b": 1}));
    }

    #[test]
    fn index_roundtrip_from_server() {
        let s = set(&[("001_first.yaml", V1)]).unwrap();
        for idx in &s.migrations()[0].collections[0].indexes {
            let mut served = idx.to_document();
            served.insert("v", 2);
            let back = IndexSpec::from_server(&served).unwrap();
            assert!(idx.same_definition(&back), "{idx:?} vs {back:?}");
        }
        let a = IndexSpec::from_server(&doc! {"name": "x", "key": {"a": 1, "b": 1}}).unwrap();
        let b = IndexSpec::from_server(&doc! {"name": "x", "key": {"b": 1, "a": 1}}).unwrap();
        assert!(!a.same_definition(&b), "key order matters");
        let c =
            IndexSpec::from_server(&doc! {"name": "x", "key": {"a": 1, "b": 1}, "unique": true})
                .unwrap();
        assert!(!a.same_definition(&c));
    }
}
