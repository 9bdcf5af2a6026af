//! Migration sets: one [`Migration`] per version, parsed from sqlx-style file names (see the
//! module documentation of [`crate::migrate`]), checksummed, merged, and the baseline set
//! compiled into the binary ([`MigrationSet::bundled`]). Pure, except
//! [`MigrationSet::load_dir`] reading files.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::MigrateError;

/// Hex SHA-256 of a migration's up SQL (exact bytes, no normalization).
pub fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One versioned migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Version (positive, unique in a set, applied in ascending order).
    pub version: i64,
    /// Name (the file name part after `<version>_`).
    pub name: String,
    /// SQL applying the migration.
    pub up_sql: String,
    /// SQL reverting it, if it can be reverted.
    pub down_sql: Option<String>,
    /// Hex SHA-256 of `up_sql`.
    pub checksum: String,
}

impl Migration {
    /// Builds a migration, computing its checksum.
    pub fn new(
        version: i64,
        name: impl Into<String>,
        up_sql: impl Into<String>,
        down_sql: Option<String>,
    ) -> Migration {
        let up_sql = up_sql.into();
        Migration {
            version,
            name: name.into(),
            checksum: checksum(&up_sql),
            up_sql,
            down_sql,
        }
    }
}

/// A migration compiled into the binary (see `build.rs`).
struct BundledMigration {
    version: i64,
    name: &'static str,
    up_sql: &'static str,
    down_sql: Option<&'static str>,
}

static BUNDLED: &[BundledMigration] = include!(concat!(env!("OUT_DIR"), "/bundled_migrations.rs"));

/// An ordered set of migrations: sorted by version, no duplicate versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

/// Kind of a migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileKind {
    Up,
    Down,
}

/// Parses a migration file name. `Ok(None)`: not a migration file (ignored).
pub(super) fn parse_file_name(file: &str) -> Result<Option<(i64, String, FileKind)>, MigrateError> {
    if file.starts_with('.') {
        return Ok(None);
    }
    let (stem, kind) = if let Some(s) = file.strip_suffix(".down.sql") {
        (s, FileKind::Down)
    } else if let Some(s) = file.strip_suffix(".up.sql") {
        (s, FileKind::Up)
    } else if let Some(s) = file.strip_suffix(".sql") {
        (s, FileKind::Up)
    } else {
        return Ok(None);
    };
    let parse_err = |reason: &str| MigrateError::Parse {
        file: file.to_string(),
        reason: reason.to_string(),
    };
    let (version, name) = stem
        .split_once('_')
        .ok_or_else(|| parse_err("expected <version>_<name>[.up|.down].sql"))?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(parse_err("the version must be a decimal number"));
    }
    let version: i64 = version
        .parse()
        .map_err(|_| parse_err("the version does not fit a 64-bit integer"))?;
    if version < 1 {
        return Err(parse_err("versions start at 1"));
    }
    if name.is_empty() {
        return Err(parse_err("the name after the version is empty"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(parse_err(
            "the name may only contain letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(Some((version, name.to_string(), kind)))
}

impl MigrationSet {
    /// Refuses a set whose files hold transaction control (`COMMIT`, `ROLLBACK`, `BEGIN`, …) at
    /// the start of a statement (see [`super::lexer`]): run inside the engine's transaction, it
    /// would commit part of a migration. Checked where files come from outside the binary (a
    /// TenantMigration's ConfigMap, `--migrations-dir`), before anything runs.
    pub fn refuse_transaction_control(&self) -> Result<(), MigrateError> {
        for m in self.migrations() {
            let files = [
                (".up.sql", Some(m.up_sql.as_str())),
                (".down.sql", m.down_sql.as_deref()),
            ];
            for (suffix, sql) in files {
                if let Some(hit) = sql.and_then(super::lexer::transaction_control) {
                    return Err(MigrateError::Parse {
                        file: format!("{}_{}{suffix}", m.version, m.name),
                        reason: format!(
                            "{hit}: a migration runs inside the engine's transaction and must not contain transaction control"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds a set from migrations in any order; fails on duplicate versions or versions < 1.
    pub fn new(mut migrations: Vec<Migration>) -> Result<MigrationSet, MigrateError> {
        migrations.sort_by_key(|m| m.version);
        for m in &migrations {
            if m.version < 1 {
                return Err(MigrateError::Parse {
                    file: format!("{}_{}", m.version, m.name),
                    reason: "versions start at 1".to_string(),
                });
            }
        }
        for pair in migrations.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::Duplicate {
                    version: pair[0].version,
                    detail: format!("`{}` and `{}`", pair[0].name, pair[1].name),
                });
            }
        }
        Ok(MigrationSet { migrations })
    }

    /// The baseline data model compiled into the binary (`migrations/postgres/`).
    pub fn bundled() -> MigrationSet {
        // build.rs has already rejected bad names and duplicates, and emits versions in order.
        MigrationSet {
            migrations: BUNDLED
                .iter()
                .map(|b| {
                    Migration::new(b.version, b.name, b.up_sql, b.down_sql.map(str::to_string))
                })
                .collect(),
        }
    }

    /// Loads the migration files of a directory (not recursive). Symlinked files are followed
    /// (ConfigMap volume mounts); hidden entries and files not ending in `.sql` are ignored.
    pub fn load_dir(dir: &Path) -> Result<MigrationSet, MigrateError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MigrateError::Io { path, source }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') || !name.ends_with(".sql") {
                continue;
            }
            if !std::fs::metadata(&path).map_err(io_err(&path))?.is_file() {
                continue;
            }
            let contents = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            files.push((name, contents));
        }
        MigrationSet::from_files(files)
    }

    /// Builds a set from `(file name, contents)` pairs, e.g. the data of a ConfigMap. Same rules
    /// as [`MigrationSet::load_dir`]: entries that are not `.sql` files are ignored.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<MigrationSet, MigrateError> {
        struct Entry {
            name: String,
            up: Option<(String, String)>,
            down: Option<(String, String)>,
        }
        let mut entries: BTreeMap<i64, Entry> = BTreeMap::new();
        for (file, contents) in files {
            let Some((version, name, kind)) = parse_file_name(&file)? else {
                continue;
            };
            if contents.contains('\0') {
                return Err(MigrateError::Parse {
                    file,
                    reason: "the file contains a NUL byte".to_string(),
                });
            }
            let entry = entries.entry(version).or_insert_with(|| Entry {
                name: name.clone(),
                up: None,
                down: None,
            });
            if entry.name != name {
                let other = entry
                    .up
                    .as_ref()
                    .or(entry.down.as_ref())
                    .map(|(f, _)| f.clone())
                    .unwrap_or_default();
                return Err(MigrateError::Duplicate {
                    version,
                    detail: format!("`{other}` and `{file}` have different names"),
                });
            }
            let slot = match kind {
                FileKind::Up => &mut entry.up,
                FileKind::Down => &mut entry.down,
            };
            if let Some((existing, _)) = slot {
                return Err(MigrateError::Duplicate {
                    version,
                    detail: format!("`{existing}` and `{file}`"),
                });
            }
            *slot = Some((file, contents));
        }
        let mut migrations = Vec::with_capacity(entries.len());
        for (version, entry) in entries {
            let Some((_, up_sql)) = entry.up else {
                let file = entry.down.map(|(f, _)| f).unwrap_or_default();
                return Err(MigrateError::Parse {
                    file,
                    reason: format!("down migration without an up migration for version {version}"),
                });
            };
            migrations.push(Migration::new(
                version,
                entry.name,
                up_sql,
                entry.down.map(|(_, sql)| sql),
            ));
        }
        MigrationSet::new(migrations)
    }

    /// Union of two sets. A version present in both must have the same checksum (else
    /// [`MigrateError::Duplicate`]); if only one side has a down migration it is kept, and two
    /// different down migrations are an error too.
    pub fn merge(self, other: MigrationSet) -> Result<MigrationSet, MigrateError> {
        let mut by_version: BTreeMap<i64, Migration> = self
            .migrations
            .into_iter()
            .map(|m| (m.version, m))
            .collect();
        for m in other.migrations {
            match by_version.get_mut(&m.version) {
                None => {
                    by_version.insert(m.version, m);
                }
                Some(existing) => {
                    if existing.checksum != m.checksum {
                        return Err(MigrateError::Duplicate {
                            version: m.version,
                            detail: format!(
                                "`{}` ({}) and `{}` ({}) differ",
                                existing.name, existing.checksum, m.name, m.checksum
                            ),
                        });
                    }
                    match (&existing.down_sql, m.down_sql) {
                        (None, Some(down)) => existing.down_sql = Some(down),
                        (Some(a), Some(b)) if *a != b => {
                            return Err(MigrateError::Duplicate {
                                version: m.version,
                                detail: "same up migration with different down migrations"
                                    .to_string(),
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(MigrationSet {
            migrations: by_version.into_values().collect(),
        })
    }

    /// The highest version, `None` for an empty set.
    pub fn latest_version(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }

    /// The migrations, sorted by version.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with this version.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }

    /// Number of migrations.
    pub fn len(&self) -> usize {
        self.migrations.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }
}
