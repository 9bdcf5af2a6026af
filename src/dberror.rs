//! Classification of database driver errors (a leaf module: used by the migration engine and by
//! the operator's error type, depends on neither).

/// Whether a sqlx error means the server cannot be used right now (rather than that a statement
/// is wrong): I/O, TLS, pool exhaustion, and SQLSTATE class 08 (connection exception), 57P0x
/// (shutdown, e.g. "terminating connection due to administrator command"), 53 (insufficient
/// resources).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")),
        _ => false,
    }
}

/// The first line of a sqlx error: the server's message for database errors.
pub fn message(e: &sqlx::Error) -> String {
    let full = match e.as_database_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    full.lines().next().unwrap_or_default().to_string()
}

/// The SQLSTATE of a database error.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|db| db.code())
        .map(|c| c.into_owned())
}

/// First line of any message, at most 300 bytes (conditions and Events stay short). For text
/// written where users read it; errors themselves keep their full cause.
pub fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_lines() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert_eq!(first_line("a\nb"), "a");
        assert!(first_line(&"é".repeat(400)).len() < 310);
        assert_eq!(sqlstate(&sqlx::Error::RowNotFound), None);
    }
}
