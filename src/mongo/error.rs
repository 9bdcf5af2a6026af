//! Mapping MongoDB driver errors into the crate's [`Error`], without leaking secrets.
//!
//! Messages carry only the server's error code, code name and the first line of its `errmsg`
//! (never the command document, `errInfo` or write-error details), and every secret the caller
//! knows about (tenant password, admin URI password) is scrubbed from them.

use mongodb::error::{ErrorKind, WriteFailure};

use crate::error::{Error, first_line};

/// Server error codes used by the operator.
pub mod codes {
    /// `Unauthorized`.
    pub const UNAUTHORIZED: i32 = 13;
    /// `UserNotFound`.
    pub const USER_NOT_FOUND: i32 = 11;
    /// `NamespaceNotFound`.
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    /// `IndexNotFound`.
    pub const INDEX_NOT_FOUND: i32 = 27;
    /// `NamespaceExists`.
    pub const NAMESPACE_EXISTS: i32 = 48;
    /// `IndexOptionsConflict` (same keys, other name/options).
    pub const INDEX_OPTIONS_CONFLICT: i32 = 85;
    /// `IndexKeySpecsConflict` (same name, other keys).
    pub const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
    /// `DocumentValidationFailure`.
    pub const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
    /// `DuplicateKey`.
    pub const DUPLICATE_KEY: i32 = 11000;
    /// `Location51003`: user already exists.
    pub const USER_EXISTS: i32 = 51003;
    /// `AuthenticationFailed`.
    pub const AUTHENTICATION_FAILED: i32 = 18;
}

/// Codes meaning "the server is not able to serve right now" (retry later).
const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Codes meaning "something already exists in a shape we did not expect" (needs a human).
const CONFLICT_CODES: &[i32] = &[
    codes::NAMESPACE_EXISTS,
    codes::INDEX_OPTIONS_CONFLICT,
    codes::INDEX_KEY_SPECS_CONFLICT,
    codes::DUPLICATE_KEY,
    codes::USER_EXISTS,
];

/// The server error code of a command or write error, if any.
pub fn error_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first().map(|w| w.code))
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// Replaces every occurrence of each (non-empty) secret with `<redacted>`, and the password of
/// any `mongodb://user:password@` authority with `***`.
pub fn scrub(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "<redacted>");
    }
    super::connection::redact_uri(&out)
}

/// Maps a driver error, scrubbing `secrets` from the message.
pub fn map_error(e: &mongodb::error::Error, secrets: &[&str]) -> Error {
    let clean = |s: &str| scrub(&first_line(s), secrets);
    match e.kind.as_ref() {
        ErrorKind::Command(c) => {
            let msg = format!("{} ({}): {}", c.code_name, c.code, clean(&c.message));
            classify(c.code, msg)
        }
        ErrorKind::Write(WriteFailure::WriteError(w)) => {
            let msg = format!(
                "{} ({}): {}",
                w.code_name.as_deref().unwrap_or("WriteError"),
                w.code,
                clean(&w.message)
            );
            classify(w.code, msg)
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Error::unavailable(format!(
            "write concern: {} ({}): {}",
            w.code_name,
            w.code,
            clean(&w.message)
        )),
        ErrorKind::Authentication { message, .. } => {
            Error::unavailable(format!("MongoDB authentication failed: {}", clean(message)))
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => {
            Error::unavailable(format!("MongoDB unreachable: {}", clean(&e.to_string())))
        }
        ErrorKind::InvalidArgument { message, .. }
        | ErrorKind::InvalidTlsConfig { message, .. } => {
            Error::Config(format!("MongoDB client: {}", clean(message)))
        }
        _ => match error_code(e) {
            Some(code) => classify(code, clean(&e.to_string())),
            None => Error::database(clean(&e.to_string())),
        },
    }
}

fn classify(code: i32, msg: String) -> Error {
    if UNAVAILABLE_CODES.contains(&code) {
        Error::unavailable(msg)
    } else if CONFLICT_CODES.contains(&code) {
        Error::Conflict(msg)
    } else {
        Error::database(msg)
    }
}

impl From<mongodb::error::Error> for Error {
    fn from(e: mongodb::error::Error) -> Self {
        map_error(&e, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_secrets_and_uris() {
        let s = scrub(
            "bad pwd hunter2 for mongodb://root:rootpw@db:27017/admin",
            &["hunter2", ""],
        );
        assert!(!s.contains("hunter2"), "{s}");
        assert!(!s.contains("rootpw"), "{s}");
        assert!(s.contains("mongodb://root:***@db:27017/admin"), "{s}");
    }

    #[test]
    fn classifies_codes() {
        assert_eq!(classify(48, "x".into()).category(), "Conflict");
        assert_eq!(classify(91, "x".into()).category(), "DatabaseUnavailable");
        assert_eq!(classify(13, "x".into()).category(), "DatabaseError");
    }

    #[test]
    fn maps_driver_errors() {
        let e = mongodb::error::Error::custom("boom");
        assert_eq!(Error::from(e).category(), "DatabaseError");
    }
}
