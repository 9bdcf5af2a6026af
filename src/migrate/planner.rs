//! The pure planner: from a schema's applied history and a [`MigrationSet`] to the ordered
//! steps ([`MigrationPlan`]) that take it to a target version, with the rules that keep every
//! tenant's history a prefix of the same sequence (no drift, no unknown or out-of-order
//! versions, a down migration for every revert).

use std::collections::BTreeSet;

use super::error::MigrateError;
use super::set::MigrationSet;

/// A row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Version.
    pub version: i64,
    /// Name at the time it was applied.
    pub name: String,
    /// Checksum of the up SQL that was applied.
    pub checksum: String,
    /// When it was applied.
    pub applied_at: jiff::Timestamp,
    /// How long the up SQL took.
    pub execution_ms: i64,
}

/// Direction of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Apply (`up_sql`).
    Up,
    /// Revert (`down_sql`).
    Down,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedStep {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// Up or down.
    pub direction: Direction,
}

/// What [`migrate`](crate::migrate::migrate()) would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MigrationPlan {
    /// Highest applied version before (`None`: nothing applied).
    pub from: Option<i64>,
    /// Highest applied version after the plan (`None`: nothing applied).
    pub to: Option<i64>,
    /// Steps in execution order: downs descending, then ups ascending (only one kind occurs).
    pub steps: Vec<PlannedStep>,
}

impl MigrationPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Computes the steps taking a schema with `applied` history to `target_version` (`None`: the
/// set's latest version; `Some(0)`: revert everything). Pure.
///
/// Rules:
/// - every applied version must be in the set ([`MigrateError::UnknownApplied`]: the schema may
///   have been migrated by a newer release; it can be neither verified nor reverted) with the
///   same checksum ([`MigrateError::ChecksumDrift`]);
/// - applied versions above the target are reverted, newest first, and each needs a down
///   migration ([`MigrateError::MissingDown`]);
/// - set versions up to the target that are not applied are applied, oldest first; one older
///   than an applied version that stays is refused ([`MigrateError::OutOfOrder`]), so every
///   tenant's history is a prefix of the same sequence.
pub fn plan(
    set: &MigrationSet,
    applied: &[AppliedMigration],
    target_version: Option<i64>,
) -> Result<MigrationPlan, MigrateError> {
    let mut applied_versions = BTreeSet::new();
    let mut sorted: Vec<&AppliedMigration> = applied.iter().collect();
    sorted.sort_by_key(|a| a.version);
    for a in &sorted {
        let Some(m) = set.get(a.version) else {
            return Err(MigrateError::UnknownApplied { version: a.version });
        };
        if m.checksum != a.checksum {
            return Err(MigrateError::ChecksumDrift {
                version: a.version,
                applied: a.checksum.clone(),
                expected: m.checksum.clone(),
            });
        }
        applied_versions.insert(a.version);
    }
    let from = applied_versions.last().copied();
    // `None` with an empty set: nothing may stay applied.
    let target = target_version.or(set.latest_version()).unwrap_or(i64::MIN);

    let mut steps = Vec::new();
    for &version in applied_versions.iter().rev().filter(|&&v| v > target) {
        let Some(m) = set.get(version) else {
            return Err(MigrateError::UnknownApplied { version });
        };
        if m.down_sql.is_none() {
            return Err(MigrateError::MissingDown { version });
        }
        steps.push(PlannedStep {
            version,
            name: m.name.clone(),
            direction: Direction::Down,
        });
    }
    let kept_max = applied_versions.range(..=target).next_back().copied();
    for m in set
        .migrations()
        .iter()
        .filter(|m| m.version <= target && !applied_versions.contains(&m.version))
    {
        if let Some(latest_applied) = kept_max.filter(|&k| k > m.version) {
            return Err(MigrateError::OutOfOrder {
                version: m.version,
                latest_applied,
            });
        }
        steps.push(PlannedStep {
            version: m.version,
            name: m.name.clone(),
            direction: Direction::Up,
        });
    }
    let to = steps
        .iter()
        .filter(|s| s.direction == Direction::Up)
        .map(|s| s.version)
        .max()
        .or(kept_max);
    Ok(MigrationPlan { from, to, steps })
}
