//! A small SQL tokenizer for quoting checks: tells bare words from double-quoted identifiers and
//! single-quoted literals. Used by the quoting unit test (`src/pg/quoting_tests.rs`, through
//! the `tenantdb-testkit` dev-dependency; this module uses no `tenantdb` type, so the second copy
//! of `tenantdb` that the dev-dependency links into the `--lib` test binary does not matter — keep
//! it that way) and by the PostgreSQL-level quoting test (`tests/quoting_pg.rs`), which scans the
//! statements in the server log.

/// What a statement contains outside and inside quotes.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Unquoted words (keywords, unquoted identifiers, function names).
    pub bare: Vec<String>,
    /// Contents of double-quoted identifiers.
    pub quoted: Vec<String>,
    /// Contents of single-quoted string literals.
    pub literals: Vec<String>,
}

/// Splits SQL into bare words, `"…"` identifiers and `'…'` literals, skipping `--` and `/* */`
/// comments. Dollar-quoted bodies (`$tag$ … $tag$`: function bodies, `DO` blocks) are SQL too and
/// are scanned recursively.
pub fn scan(sql: &str) -> Result<Tokens, String> {
    let mut out = Tokens::default();
    scan_into(sql, &mut out)?;
    Ok(out)
}

fn scan_into(sql: &str, out: &mut Tokens) -> Result<(), String> {
    let c: Vec<char> = sql.chars().collect();
    let is_word = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == '$';
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '-' if c.get(i + 1) == Some(&'-') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if c.get(i + 1) == Some(&'*') => {
                let rest: String = c[i + 2..].iter().collect();
                let end = rest
                    .find("*/")
                    .ok_or_else(|| format!("unterminated comment: {sql}"))?;
                i += 2 + rest[..end].chars().count() + 2;
            }
            q @ ('\'' | '"') => {
                let mut j = i + 1;
                let mut text = String::new();
                loop {
                    if j >= c.len() {
                        return Err(format!("unterminated {q} at char {i}: {sql}"));
                    }
                    if c[j] == q {
                        if c.get(j + 1) == Some(&q) {
                            text.push(q);
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    text.push(c[j]);
                    j += 1;
                }
                if q == '"' {
                    out.quoted.push(text);
                } else {
                    out.literals.push(text);
                }
                i = j + 1;
            }
            '$' if i == 0 || !is_word(c[i - 1]) => {
                // `$1` is a parameter; `$tag$` opens a dollar-quoted string.
                let mut j = i + 1;
                while j < c.len() && (c[j].is_ascii_alphanumeric() || c[j] == '_') {
                    j += 1;
                }
                if c.get(j) == Some(&'$') && !c.get(i + 1).is_some_and(char::is_ascii_digit) {
                    let tag: String = c[i..=j].iter().collect();
                    let rest: String = c[j + 1..].iter().collect();
                    let end = rest
                        .find(&tag)
                        .ok_or_else(|| format!("unterminated {tag}: {sql}"))?;
                    scan_into(&rest[..end], out)?;
                    i = j + 1 + rest[..end].chars().count() + tag.chars().count();
                } else {
                    i = j;
                }
            }
            ch if ch.is_ascii_alphabetic() || ch == '_' => {
                let mut j = i;
                while j < c.len() && is_word(c[j]) {
                    j += 1;
                }
                out.bare.push(c[i..j].iter().collect());
                i = j;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The names of `identifiers` that appear as bare (unquoted) words in `sql`, compared exactly
/// (SQL keywords are written in upper case; an unquoted identifier keeps its lower case).
pub fn bare_identifiers(sql: &str, identifiers: &[&str]) -> Result<Vec<String>, String> {
    Ok(scan(sql)?
        .bare
        .into_iter()
        .filter(|w| identifiers.contains(&w.as_str()))
        .collect())
}

/// The statements of a PostgreSQL log (`statement: …` and `execute <name>: …`, with their
/// continuation lines); parameters (`DETAIL:`) are values and are left out.
pub fn logged_statements(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_statement = false;
    for line in log.lines() {
        if let Some(rest) = line.split_once("LOG:  statement: ").map(|(_, s)| s) {
            out.push(rest.to_string());
            in_statement = true;
        } else if let Some(rest) = line
            .split_once("LOG:  execute ")
            .and_then(|(_, s)| s.split_once(": "))
            .map(|(_, s)| s)
        {
            out.push(rest.to_string());
            in_statement = true;
        } else if in_statement && line.starts_with('\t') {
            let last = out.last_mut().unwrap();
            last.push('\n');
            last.push_str(line);
        } else {
            in_statement = false;
        }
    }
    out
}

#[test]
fn the_scanner_tells_bare_from_quoted() {
    let t = scan(
        "ALTER ROLE \"user\" SET role = 'it''s' -- a user comment\n\
         AS $f$SELECT select FROM \"a\"\"b\"$f$ /* order */ WHERE x = $1",
    )
    .unwrap();
    assert_eq!(t.quoted, vec!["user", "a\"b"]);
    assert_eq!(t.literals, vec!["it's"]);
    assert!(t.bare.contains(&"select".to_string()), "{t:?}");
    for w in ["user", "order"] {
        assert!(!t.bare.contains(&w.to_string()), "{w}: {t:?}");
    }
    assert_eq!(
        bare_identifiers("DROP ROLE user", &["user"]).unwrap(),
        vec!["user"]
    );
    assert!(
        bare_identifiers("DROP ROLE \"user\"", &["user"])
            .unwrap()
            .is_empty()
    );
    assert!(scan("SELECT 'open").is_err());
    let log = "2025-01-01 00:00:00.000 UTC [1] LOG:  statement: CREATE ROLE \"user\"\n\
               \tLOGIN\n\
               2025-01-01 00:00:00.000 UTC [2] LOG:  execute sqlx_s_1: SELECT $1\n\
               2025-01-01 00:00:00.000 UTC [2] DETAIL:  parameters: $1 = 'user'\n";
    assert_eq!(
        logged_statements(log),
        vec!["CREATE ROLE \"user\"\n\tLOGIN", "SELECT $1"]
    );
}
