//! Finds transaction control in a migration file before anything runs.
//!
//! Every migration runs inside the engine's transaction. A file with `COMMIT` (or `END`,
//! `ROLLBACK`, `ABORT`, `BEGIN`, `START TRANSACTION`, `PREPARE TRANSACTION`) at the start of one of
//! its statements would commit or drop the engine's work half-way: the engine notices afterwards
//! (the guard) and fails the tenant, but what was committed stays. A TenantMigration whose files
//! hold such a statement is refused up front instead.
//!
//! The scan splits the text into statements at `;` outside string literals (`'…'`, `E'…'` with
//! backslash escapes), quoted identifiers, dollar-quoted bodies and comments (`--`, nested
//! `/* */`), and inside a SQL-standard function body (`BEGIN ATOMIC … END`, which may hold `;`),
//! as psql does. Strings are read with `standard_conforming_strings = on` (backslashes literal
//! outside `E'…'`) in UTF-8, which tenant sessions set at login ([`crate::pg::PgAdmin::login`])
//! and the engine sets again before each file (`runner::PARSE_SETTINGS`): PostgreSQL parses a
//! whole file (one simple query) with the values in force when it arrives, so a `SET` in one
//! file changes neither how it nor how the next one is parsed. It is a pre-check, not the guarantee: the engine's guard still catches what a
//! scan cannot see (e.g. `EXECUTE` of a built string).

/// The first transaction-control statement of `sql`, upper-cased (`"COMMIT"`), if any.
pub fn transaction_control(sql: &str) -> Option<String> {
    let b = sql.as_bytes();
    let mut i = 0;
    // The first three words of the current statement, its last word and how many it has; the
    // nesting of `BEGIN ATOMIC` bodies (with the `CASE … END` inside them).
    let mut words: Vec<String> = Vec::new();
    let mut prev = String::new();
    let mut count = 0usize;
    let mut atomic_depth = 0usize;
    let mut case_depth = 0usize;
    let check = |words: &[String]| -> Option<String> {
        let first = words.first()?.as_str();
        let second = words.get(1).map(String::as_str);
        let third = words.get(2).map(String::as_str);
        let hit = match first {
            "COMMIT" | "END" | "ABORT" | "BEGIN" => true,
            // `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x` stays inside the transaction.
            "ROLLBACK" => match second {
                Some("TO") => false,
                Some("WORK" | "TRANSACTION") => third != Some("TO"),
                _ => true,
            },
            "START" | "PREPARE" => second == Some("TRANSACTION"),
            _ => false,
        };
        hit.then(|| match second {
            Some(s @ "TRANSACTION") => format!("{first} {s}"),
            _ => first.to_string(),
        })
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let escapes =
                    i > 0 && matches!(b[i - 1], b'E' | b'e') && !word_byte_before(b, i - 1);
                i = skip_quoted(b, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(b, i, b'"', false),
            b'$' => match dollar_tag(b, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    i = find(b, body, tag).map_or(b.len(), |end| end + tag.len());
                }
                None => i += 1,
            },
            b';' => {
                if atomic_depth == 0 {
                    if let Some(hit) = check(&words) {
                        return Some(hit);
                    }
                    words.clear();
                    count = 0;
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
                let word = String::from_utf8_lossy(&b[start..i]).to_ascii_uppercase();
                match word.as_str() {
                    // `BEGIN ATOMIC` inside a statement (CREATE FUNCTION/PROCEDURE … BEGIN ATOMIC).
                    "ATOMIC" if prev == "BEGIN" && count > 1 => atomic_depth += 1,
                    "CASE" if atomic_depth > 0 => case_depth += 1,
                    "END" if atomic_depth > 0 => {
                        if case_depth > 0 {
                            case_depth -= 1;
                        } else {
                            atomic_depth -= 1;
                        }
                    }
                    _ => {}
                }
                if words.len() < 3 {
                    words.push(word.clone());
                }
                prev = word;
                count += 1;
            }
            _ => i += 1,
        }
    }
    check(&words)
}

/// Whether the byte before `at` continues an identifier (so `E` at `at` is not a string prefix,
/// and `$` at `at` opens no dollar quote): PostgreSQL's `ident_cont`, `[A-Za-z\200-\377_0-9$]`.
fn word_byte_before(b: &[u8], at: usize) -> bool {
    at > 0 && is_ident_byte(b[at - 1])
}

/// A byte of an identifier after its first (non-ASCII bytes are letters to PostgreSQL).
fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Skips a literal opened by `quote` at `start` (doubled quotes inside; backslash escapes when
/// `escapes`); returns the index after it.
fn skip_quoted(b: &[u8], start: usize, quote: u8, escapes: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The dollar-quote tag (`$$`, `$body$`) starting at `start`, if one does (not `$1`).
fn dollar_tag(b: &[u8], start: usize) -> Option<&[u8]> {
    if word_byte_before(b, start) {
        return None;
    }
    let mut i = start + 1;
    if b.get(i).is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    while i < b.len() && b[i] != b'$' && is_ident_byte(b[i]) {
        i += 1;
    }
    (b.get(i) == Some(&b'$')).then(|| &b[start..=i])
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::transaction_control as tc;

    #[test]
    fn transaction_control_is_found_at_the_start_of_a_statement() {
        for (sql, hit) in [
            ("CREATE TABLE t (id int); COMMIT;", "COMMIT"),
            ("BEGIN; CREATE TABLE t (id int); COMMIT;", "BEGIN"),
            ("create table t (id int);\ncommit", "COMMIT"),
            ("ALTER TABLE t ADD c int; end;", "END"),
            ("ROLLBACK; DROP TABLE x", "ROLLBACK"),
            ("ROLLBACK WORK; DROP TABLE x", "ROLLBACK"),
            ("abort", "ABORT"),
            ("START TRANSACTION; SELECT 1", "START TRANSACTION"),
            ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
            ("/* c */ -- d\n COMMIT", "COMMIT"),
            ("SELECT 'a;'; COMMIT", "COMMIT"),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; COMMIT;",
                "COMMIT",
            ),
            // `$` continues an identifier, also after a non-ASCII letter: no dollar quote here.
            (
                "CREATE TABLE tablé$$ (id int); COMMIT; CREATE TABLE b$$ (id int);",
                "COMMIT",
            ),
            (
                "CREATE TABLE x$$ (id int); COMMIT; SELECT 1 AS y$$;",
                "COMMIT",
            ),
        ] {
            assert_eq!(tc(sql).as_deref(), Some(hit), "{sql}");
        }
    }

    #[test]
    fn what_only_looks_like_it_is_not() {
        for sql in [
            "CREATE TABLE t (id int, note text DEFAULT 'COMMIT; BEGIN');",
            "SELECT E'it\\'s; COMMIT';",
            "CREATE TABLE \"commit;\" (id int);",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $body$ BEGIN COMMIT; END $body$;",
            "-- COMMIT;\nCREATE TABLE t (id int);",
            "/* outer /* COMMIT; */ still */ SELECT 1;",
            "SAVEPOINT a; ROLLBACK TO SAVEPOINT a; RELEASE a;",
            "SAVEPOINT a; ROLLBACK WORK TO a; ROLLBACK TRANSACTION TO SAVEPOINT a;",
            "SELECT CASE WHEN true THEN 1 END; UPDATE t SET x = 1 WHERE x = $1;",
            "CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 END; SELECT 2; END;",
            "CREATE TABLE begin_log (id int); INSERT INTO begin_log VALUES (1);",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;",
            // Non-ASCII dollar-quote tags and identifiers.
            "DO $é$ BEGIN COMMIT; END $é$;",
            "CREATE TABLE ä (id int); INSERT INTO ä VALUES (1);",
            "SELECT 'é\\'; SELECT 1;",
            "",
        ] {
            assert_eq!(tc(sql), None, "{sql}");
        }
    }
}
