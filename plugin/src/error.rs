//! One error type for the plugin: a message with the context it happened in (what was being done,
//! then the cause), printed by `main` as `error: <context>: <cause>`.

use std::fmt;

/// An error with its context chain already rendered into the message.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// An error with just a message.
    pub fn msg(m: impl Into<String>) -> Self {
        Error(m.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The plugin's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to an error (`anyhow::Context` in a dozen lines).
pub trait Context<T> {
    /// Prefixes the error with `what`.
    fn context(self, what: impl fmt::Display) -> Result<T>;
    /// Prefixes the error with a lazily built `what`.
    fn with_context<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T>;
}

/// The cause in one line: kube's API errors print `ApiError: <message>: <reason> (Status { … })`;
/// the debug dump in parentheses repeats the message.
fn cause(e: &impl fmt::Display) -> String {
    let s = e.to_string();
    match s.split_once(" (Status {") {
        Some((head, _)) if s.starts_with("ApiError: ") => head.to_string(),
        _ => s,
    }
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {}", cause(&e))))
    }
    fn with_context<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {}", what(), cause(&e))))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| Error(what.to_string()))
    }
    fn with_context<S: fmt::Display>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| Error(what().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_prefixed_and_kube_debug_dumps_are_cut() {
        let e: std::result::Result<(), String> = Err(
            "ApiError: forbidden: Forbidden (Status { status: Some(Failure), code: 403 })".into(),
        );
        assert_eq!(
            e.context("listing Tenants").unwrap_err().to_string(),
            "listing Tenants: ApiError: forbidden: Forbidden"
        );
        let e: std::result::Result<(), String> = Err("plain (Status { x })".into());
        assert_eq!(
            e.with_context(|| "doing x").unwrap_err().to_string(),
            "doing x: plain (Status { x })"
        );
        assert_eq!(
            None::<()>.context("missing").unwrap_err().to_string(),
            "missing"
        );
    }
}
