//! One migration file: its name (`<version>_<name>.yaml|.yml|.json`), its serde shape (field
//! names follow MongoDB's own camelCase spelling; any YAML/JSON value becomes BSON in order) and
//! [`parse_migration`], which validates names, keys and index options into a [`MongoMigration`]
//! with its checksum. Pure.

use std::collections::BTreeSet;
use std::fmt;

use mongodb::bson::{Bson, Document};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use super::error::MongoMigrationError;
use super::spec::{IndexSpec, ValidationAction, ValidationLevel, bson_loose_eq, to_bson_int};

/// Longest collection name accepted (well inside MongoDB's 255-byte namespace limit together
/// with a 63-byte database name).
pub const MAX_COLLECTION_NAME_BYTES: usize = 120;

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

/// Hex SHA-256 of a migration file's text.
pub fn checksum(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(version, name)` from `<version>_<name>.yaml|.yml|.json`.
pub(super) fn file_stem(file: &str) -> Option<(i64, String)> {
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
