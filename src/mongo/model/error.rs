//! [`MongoMigrationError`]: why a MongoDB migration file or set was refused. A leaf of the
//! model.

use crate::error::Error;

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
