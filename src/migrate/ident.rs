//! Identifier checks of the engine: a schema or role name is validated by
//! [`crate::naming::Ident`] and always double-quoted before it is formatted into SQL.

use crate::naming::Ident;

use super::error::MigrateError;

/// Checks `ident` with [`Ident::existing`] (the one identifier type of the operator).
pub fn validate_identifier(ident: &str) -> Result<(), MigrateError> {
    Ident::existing(ident)?;
    Ok(())
}

/// Validates `ident` with [`Ident::existing`] and returns it double-quoted, ready to be put into SQL.
pub fn quote_identifier(ident: &str) -> Result<String, MigrateError> {
    Ok(Ident::existing(ident)?.quoted())
}
