//! Observed state of a tenant database and the pure diff from desired to observed.

use std::collections::BTreeMap;
use std::fmt;

use mongodb::bson::Document;

use super::model::{
    CollectionSpec, DesiredMongo, IndexSpec, MongoMigrationSet, ValidationAction, ValidationLevel,
    doc_loose_eq,
};

/// One collection as the server reports it (`listCollections` + `listIndexes`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedCollection {
    /// `collection`, `view` or `timeseries`.
    pub kind: String,
    /// `options.validator` (`None` when absent).
    pub validator: Option<Document>,
    /// `options.validationLevel` (`None` when absent: the server default `strict`).
    pub validation_level: Option<String>,
    /// `options.validationAction` (`None` when absent: the server default `error`).
    pub validation_action: Option<String>,
    /// Indexes by name, without `_id_`.
    pub indexes: BTreeMap<String, IndexSpec>,
}

/// The tenant user as `usersInfo` reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedUser {
    /// `(role, db)` pairs.
    pub roles: Vec<(String, String)>,
    /// Authentication mechanisms.
    pub mechanisms: Vec<String>,
    /// Whether the stored SCRAM-SHA-256 credentials match the desired password: `None` when the
    /// server did not return credentials (or no password was given to compare).
    pub password_matches: Option<bool>,
}

/// One row of the per-tenant `_tenantdb_migrations` collection.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedMigration {
    /// Version.
    pub version: i64,
    /// Name at the time it was applied.
    pub name: String,
    /// Checksum at the time it was applied.
    pub checksum: String,
}

/// Everything the operator reads about one tenant database.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedMongo {
    /// Collections by name (excluding `system.*` and the migrations collection).
    pub collections: BTreeMap<String, ObservedCollection>,
    /// The tenant user, if it exists.
    pub user: Option<ObservedUser>,
    /// Applied migrations by ascending version.
    pub applied: Vec<AppliedMigration>,
}

impl ObservedMongo {
    /// Highest applied version.
    pub fn version(&self) -> Option<i64> {
        self.applied.iter().map(|a| a.version).max()
    }
}

/// One change to a tenant database. Steps are idempotent when re-run.
#[derive(Debug, Clone, PartialEq)]
pub enum MongoStep {
    /// `drop` a collection a migration explicitly removed.
    DropCollection {
        /// Collection.
        collection: String,
    },
    /// `dropIndexes` of one index (removed by a newer version, or about to be re-created with a
    /// changed definition).
    DropIndex {
        /// Collection.
        collection: String,
        /// Index name.
        name: String,
    },
    /// `create` a collection with its validator.
    CreateCollection {
        /// Collection.
        collection: String,
        /// Validator (`None`: none).
        validator: Option<Document>,
        /// `validationLevel`.
        validation_level: ValidationLevel,
        /// `validationAction`.
        validation_action: ValidationAction,
    },
    /// `collMod` a collection whose validator (or level/action) changed.
    CollMod {
        /// Collection.
        collection: String,
        /// New validator (`{}` removes it).
        validator: Document,
        /// `validationLevel`.
        validation_level: ValidationLevel,
        /// `validationAction`.
        validation_action: ValidationAction,
    },
    /// `createIndexes` of one index.
    CreateIndex {
        /// Collection.
        collection: String,
        /// The index.
        index: IndexSpec,
    },
}

impl MongoStep {
    /// Short description for logs, Events and [`super::MongoOutcome::steps`] (no data values).
    pub fn describe(&self) -> String {
        match self {
            MongoStep::DropCollection { collection } => format!("drop collection {collection}"),
            MongoStep::DropIndex { collection, name } => {
                format!("drop index {collection}.{name}")
            }
            MongoStep::CreateCollection { collection, .. } => {
                format!("create collection {collection}")
            }
            MongoStep::CollMod { collection, .. } => {
                format!("update validator of {collection}")
            }
            MongoStep::CreateIndex { collection, index } => {
                format!("create index {collection}.{}", index.name)
            }
        }
    }

    /// Whether the step destroys data or an index.
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            MongoStep::DropCollection { .. } | MongoStep::DropIndex { .. }
        )
    }
}

impl fmt::Display for MongoStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What the applied-migrations history says about a target set.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryProblem {
    /// An applied version's checksum (or name) differs from the file now shipped.
    Drift {
        /// Version.
        version: i64,
        /// Recorded checksum.
        applied: String,
        /// Checksum of the current file.
        current: String,
    },
    /// A version lower than the highest applied one is not applied (a file was added below an
    /// applied version): every tenant's history must be a prefix of the same sequence.
    OutOfOrder {
        /// The unapplied version.
        version: i64,
        /// Highest applied version.
        applied: i64,
    },
    /// The database has a version this target does not include (newer operator, or the target
    /// was lowered): refusing to roll the schema back.
    Ahead {
        /// Highest applied version.
        applied: i64,
        /// Target version.
        target: Option<i64>,
    },
}

impl fmt::Display for HistoryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryProblem::Drift {
                version,
                applied,
                current,
            } => write!(
                f,
                "migration drift: MongoDB migration {version} was applied with checksum {} but the current file has {}",
                short(applied),
                short(current)
            ),
            HistoryProblem::OutOfOrder { version, applied } => write!(
                f,
                "MongoDB migration {version} is not applied but {applied} is: new migrations need a version above every applied one"
            ),
            HistoryProblem::Ahead { applied, target } => write!(
                f,
                "MongoDB database is at migration version {applied}, beyond the target {}; downgrades are not supported",
                target.map_or("(none)".to_string(), |t| t.to_string())
            ),
        }
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// Checks the applied history against `set` (already truncated to the target): every applied
/// version must be in the set with the same checksum, and every unapplied version must be above
/// the highest applied one. Returns the versions still to record.
pub fn check_history(
    set: &MongoMigrationSet,
    applied: &[AppliedMigration],
) -> Result<Vec<i64>, HistoryProblem> {
    for a in applied {
        match set.get(a.version) {
            None => {
                return Err(HistoryProblem::Ahead {
                    applied: applied.iter().map(|a| a.version).max().unwrap_or(a.version),
                    target: set.latest_version(),
                });
            }
            Some(m) if m.checksum != a.checksum => {
                return Err(HistoryProblem::Drift {
                    version: a.version,
                    applied: a.checksum.clone(),
                    current: m.checksum.clone(),
                });
            }
            Some(_) => {}
        }
    }
    let pending: Vec<i64> = set
        .migrations()
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.iter().any(|a| a.version == *v))
        .collect();
    if let (Some(&first), Some(max)) = (pending.first(), applied.iter().map(|a| a.version).max())
        && first < max
    {
        return Err(HistoryProblem::OutOfOrder {
            version: first,
            applied: max,
        });
    }
    Ok(pending)
}

fn validator_matches(want: &CollectionSpec, have: &ObservedCollection) -> bool {
    let Some(validator) = &want.validator else {
        return true;
    };
    let empty = Document::new();
    let observed = have.validator.as_ref().unwrap_or(&empty);
    doc_loose_eq(validator, observed)
        && have.validation_level.as_deref().unwrap_or("strict") == want.validation_level.as_str()
        && have.validation_action.as_deref().unwrap_or("error") == want.validation_action.as_str()
}

/// The steps that take `observed` to `desired`, in execution order: explicit collection drops,
/// then per collection (by name) create or collMod, index drops (removed or changed), index
/// creations. Objects no migration mentions (other collections or indexes) are left alone.
pub fn plan(desired: &DesiredMongo, observed: &ObservedMongo) -> Vec<MongoStep> {
    let mut steps = Vec::new();
    for name in &desired.dropped_collections {
        if observed.collections.contains_key(name) {
            steps.push(MongoStep::DropCollection {
                collection: name.clone(),
            });
        }
    }
    for (name, want) in &desired.collections {
        match observed.collections.get(name) {
            None => {
                steps.push(MongoStep::CreateCollection {
                    collection: name.clone(),
                    validator: want.validator.clone().filter(|v| !v.is_empty()),
                    validation_level: want.validation_level,
                    validation_action: want.validation_action,
                });
                for index in want.indexes.values() {
                    steps.push(MongoStep::CreateIndex {
                        collection: name.clone(),
                        index: index.clone(),
                    });
                }
            }
            Some(have) => {
                if !validator_matches(want, have) {
                    steps.push(MongoStep::CollMod {
                        collection: name.clone(),
                        validator: want.validator.clone().unwrap_or_default(),
                        validation_level: want.validation_level,
                        validation_action: want.validation_action,
                    });
                }
                for r in desired
                    .dropped_indexes
                    .iter()
                    .filter(|r| &r.collection == name)
                {
                    if have.indexes.contains_key(&r.name) {
                        steps.push(MongoStep::DropIndex {
                            collection: name.clone(),
                            name: r.name.clone(),
                        });
                    }
                }
                let mut creates = Vec::new();
                for (index_name, index) in &want.indexes {
                    match have.indexes.get(index_name) {
                        Some(existing) if existing.same_definition(index) => {}
                        Some(_) => {
                            steps.push(MongoStep::DropIndex {
                                collection: name.clone(),
                                name: index_name.clone(),
                            });
                            creates.push(index);
                        }
                        None => creates.push(index),
                    }
                }
                steps.extend(creates.into_iter().map(|index| MongoStep::CreateIndex {
                    collection: name.clone(),
                    index: index.clone(),
                }));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mongo::model::desired_state;
    use mongodb::bson::{Bson, doc};

    const V1: &str = r#"
collections:
  - name: msgs
    validator: {$jsonSchema: {bsonType: object, required: [a], properties: {a: {bsonType: int, minimum: 0}}}}
    indexes:
      - {name: conv_created, keys: {conversation_id: 1, created_at: 1}}
      - {name: ttl, keys: {created_at: 1}, expireAfterSeconds: 60}
      - {name: ext, keys: {ext: 1}, unique: true, partialFilterExpression: {ext: {$exists: true}}}
  - name: old
"#;
    const V2: &str = r#"
dropIndexes: [{collection: msgs, name: ext}]
dropCollections: [old]
collections:
  - name: msgs
    validator: {$jsonSchema: {bsonType: object, required: [a, b]}}
    indexes:
      - {name: ttl, keys: {created_at: 1}, expireAfterSeconds: 120}
"#;

    fn set() -> MongoMigrationSet {
        MongoMigrationSet::from_sources([
            ("001_one.yaml".to_string(), V1.to_string()),
            ("002_two.yaml".to_string(), V2.to_string()),
        ])
        .unwrap()
    }

    /// What the server would report after applying `d` (numbers widened to Int64 to exercise the
    /// loose comparison).
    fn observed_from(d: &DesiredMongo) -> ObservedMongo {
        let widen = |doc: &Document| -> Document {
            let mut out = Document::new();
            for (k, v) in doc {
                let v = match v {
                    Bson::Int32(i) => Bson::Int64(i64::from(*i)),
                    other => other.clone(),
                };
                out.insert(k.clone(), v);
            }
            out
        };
        ObservedMongo {
            collections: d
                .collections
                .iter()
                .map(|(n, c)| {
                    let indexes = c
                        .indexes
                        .iter()
                        .map(|(i, spec)| {
                            let served = widen(&spec.to_document());
                            (i.clone(), IndexSpec::from_server(&served).unwrap())
                        })
                        .collect();
                    (
                        n.clone(),
                        ObservedCollection {
                            kind: "collection".into(),
                            validator: c.validator.clone(),
                            validation_level: Some(c.validation_level.as_str().into()),
                            validation_action: None,
                            indexes,
                        },
                    )
                })
                .collect(),
            user: None,
            applied: vec![],
        }
    }

    #[test]
    fn empty_database_gets_everything() {
        let d = desired_state(&set(), Some(1));
        let steps = plan(&d, &ObservedMongo::default());
        let described: Vec<String> = steps.iter().map(MongoStep::describe).collect();
        assert_eq!(
            described,
            [
                "create collection msgs",
                "create index msgs.conv_created",
                "create index msgs.ext",
                "create index msgs.ttl",
                "create collection old",
            ]
        );
        assert!(
            matches!(&steps[0], MongoStep::CreateCollection { validator: Some(v), .. } if v.contains_key("$jsonSchema"))
        );
        assert!(!steps.iter().any(MongoStep::is_destructive));
    }

    #[test]
    fn converged_database_needs_nothing() {
        let s = set();
        for up_to in [Some(1), Some(2)] {
            let d = desired_state(&s, up_to);
            assert_eq!(plan(&d, &observed_from(&d)), vec![], "{up_to:?}");
        }
    }

    #[test]
    fn newer_version_mods_validator_drops_and_recreates() {
        let s = set();
        let observed = observed_from(&desired_state(&s, Some(1)));
        let steps = plan(&desired_state(&s, Some(2)), &observed);
        let described: Vec<String> = steps.iter().map(MongoStep::describe).collect();
        assert_eq!(
            described,
            [
                "drop collection old",
                "update validator of msgs",
                "drop index msgs.ext",
                "drop index msgs.ttl",
                "create index msgs.ttl",
            ]
        );
        match &steps[4] {
            MongoStep::CreateIndex { index, .. } => {
                assert_eq!(index.expire_after_seconds, Some(120))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn foreign_objects_are_left_alone() {
        let d = desired_state(&set(), Some(1));
        let mut observed = observed_from(&d);
        observed
            .collections
            .insert("app_cache".into(), ObservedCollection::default());
        if let Some(c) = observed.collections.get_mut("msgs") {
            c.indexes.insert(
                "app_index".into(),
                IndexSpec::from_server(&doc! {"name": "app_index", "key": {"z": 1}}).unwrap(),
            );
        }
        assert_eq!(plan(&d, &observed), vec![]);
    }

    #[test]
    fn changed_validator_level_or_action_triggers_collmod() {
        let d = desired_state(&set(), Some(1));
        let mut observed = observed_from(&d);
        if let Some(c) = observed.collections.get_mut("msgs") {
            c.validation_action = Some("warn".into());
        }
        assert!(matches!(
            plan(&d, &observed).as_slice(),
            [MongoStep::CollMod { .. }]
        ));
        let mut observed = observed_from(&d);
        if let Some(c) = observed.collections.get_mut("msgs") {
            c.validator = None;
        }
        assert!(matches!(
            plan(&d, &observed).as_slice(),
            [MongoStep::CollMod { .. }]
        ));
    }

    #[test]
    fn history_checks() {
        let s = set();
        let m1 = &s.migrations()[0];
        let ok = AppliedMigration {
            version: 1,
            name: m1.name.clone(),
            checksum: m1.checksum.clone(),
        };
        assert_eq!(check_history(&s, &[]).unwrap(), vec![1, 2]);
        assert_eq!(
            check_history(&s, std::slice::from_ref(&ok)).unwrap(),
            vec![2]
        );
        let drift = AppliedMigration {
            checksum: "0".repeat(64),
            ..ok.clone()
        };
        let e = check_history(&s, &[drift]).unwrap_err();
        assert!(matches!(e, HistoryProblem::Drift { version: 1, .. }));
        assert!(e.to_string().contains("drift"));
        let two = AppliedMigration {
            version: 2,
            name: "two".into(),
            checksum: s.migrations()[1].checksum.clone(),
        };
        let e = check_history(&s, std::slice::from_ref(&two)).unwrap_err();
        assert_eq!(
            e,
            HistoryProblem::OutOfOrder {
                version: 1,
                applied: 2
            }
        );
        let e = check_history(&s.truncated(1), &[ok, two]).unwrap_err();
        assert_eq!(
            e,
            HistoryProblem::Ahead {
                applied: 2,
                target: Some(1)
            }
        );
    }
}
