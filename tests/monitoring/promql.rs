//! PromQL text helpers for tests/monitoring.rs (no parser dependency: promtool checks the syntax,
//! these only substitute Grafana's variables and pick out metric names).

use std::collections::BTreeSet;

/// Grafana's variables replaced by values PromQL accepts: `$__rate_interval` & co by a duration,
/// the others (inside label matchers) by a plain value.
pub fn substitute(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            let end = b.find('}').expect("closing brace");
            (&b[..end], &b[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push_str(if name.starts_with("__") { "5m" } else { "x" });
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// The metric names an expression reads (not functions, keywords, label names or durations).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations too: they may be followed by `by (...)` / `without (...)` instead of `(`.
    #[rustfmt::skip]
    const KEYWORDS: &[&str] = &[
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "bool", "offset", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar",
        "count", "count_values", "bottomk", "topk", "quantile",
    ];
    // Strings, label matchers and range/subquery brackets out.
    let mut plain = String::new();
    let (mut depth_brace, mut depth_bracket, mut quote) = (0, 0, None::<char>);
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => depth_brace += 1,
            (None, '}') => depth_brace -= 1,
            (None, '[') => depth_bracket += 1,
            (None, ']') => depth_bracket -= 1,
            (None, c) if depth_brace == 0 && depth_bracket == 0 => plain.push(c),
            _ => plain.push(' '),
        }
    }
    let mut names = BTreeSet::new();
    let bytes: Vec<char> = plain.chars().collect();
    let (mut i, mut skip_list) = (0, false);
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() || c == '.' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let next = bytes[i..].iter().find(|c| !c.is_whitespace());
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                skip_list = next == Some(&'(');
            } else if !KEYWORDS.contains(&word.as_str()) && next != Some(&'(') {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_list {
            // A label list: skip to its ')'.
            while i < bytes.len() && bytes[i] != ')' {
                i += 1;
            }
            skip_list = false;
        }
        i += 1;
    }
    names
}

#[test]
fn metric_name_extraction_skips_functions_labels_and_durations() {
    let got = metric_names(
        r#"histogram_quantile(0.99, sum by (le, controller) (rate(tenantdb_reconcile_duration_seconds_bucket{controller="tenant", le!="+Inf"}[$__rate_interval]))) > 1e3 and on() count(up{job=~".*x.*"} == 1) > 0 or absent(tenantdb_leader offset 5m)"#,
    );
    let want: BTreeSet<String> = [
        "tenantdb_reconcile_duration_seconds_bucket",
        "up",
        "tenantdb_leader",
    ]
    .map(String::from)
    .into();
    assert_eq!(got, want);
}
