//! Collection options and index definitions as the migrations declare them and as the server
//! reports them ([`IndexSpec::from_server`]), and the loose BSON equality used to compare the two
//! (numeric types and sub-document key order ignored). Pure; a leaf of the model.

use mongodb::bson::{Bson, Document};
use serde::{Deserialize, Serialize};

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

/// An integer as BSON: Int32 when it fits (like the mongo shell), else Int64.
pub(super) fn to_bson_int(v: i64) -> Bson {
    match i32::try_from(v) {
        Ok(i) => Bson::Int32(i),
        Err(_) => Bson::Int64(v),
    }
}

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
