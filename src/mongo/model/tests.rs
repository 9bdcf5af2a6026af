//! Unit tests of the MongoDB migration model: parsing, checksums, folding into the desired state.

use std::path::Path;

use mongodb::bson::{Bson, doc};

use super::*;

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
        "BUNDLED in src/mongo/model/mod.rs must list exactly the files of migrations/mongodb"
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
    let json = r#"{"collections": [{"name": "j", "indexes": [{"name": "a", "keys": {"a": 1}}]}]}"#;
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
    let c = IndexSpec::from_server(&doc! {"name": "x", "key": {"a": 1, "b": 1}, "unique": true})
        .unwrap();
    assert!(!a.same_definition(&c));
}
