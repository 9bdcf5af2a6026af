//! The freeze's timeline, from the servers' statement logs: the operator's admin role logs every
//! statement with its duration (`log_min_duration_statement = 0` for that role only), and
//! [`freeze_timeline`] cuts the window from the fence to the target's logins into its steps.

use serde_json::{Value, json};

use crate::common::round;

/// One statement phase (parse, bind, execute, or a simple query) in a server log.
struct Logged {
    /// Start and end, ms since the epoch (the log line's time is the end).
    start: f64,
    end: f64,
    text: String,
}

/// `duration:` lines of a PostgreSQL log (`log_min_duration_statement = 0`; default prefix
/// `%m [%p] `), in order.
fn logged(log: &str) -> Vec<Logged> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(i) = line.find("LOG:  duration: ") else {
            continue;
        };
        let mut head = line.split_whitespace();
        let (Some(d), Some(t)) = (head.next(), head.next()) else {
            continue;
        };
        let Ok(dt) = format!("{d}T{t}").parse::<jiff::civil::DateTime>() else {
            continue;
        };
        let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC) else {
            continue;
        };
        let end = z.timestamp().as_microsecond() as f64 / 1000.0;
        let rest = &line[i + "LOG:  duration: ".len()..];
        let Some((ms, rest)) = rest.split_once(" ms  ") else {
            continue;
        };
        let Ok(ms) = ms.parse::<f64>() else {
            continue;
        };
        // "statement: SQL", "execute <name>: SQL", "parse <name>: SQL", "bind <name>: SQL".
        let text = rest
            .split_once(": ")
            .map_or(rest, |(_, sql)| sql)
            .to_string();
        out.push(Logged {
            start: end - ms,
            end,
            text,
        });
    }
    out
}

/// The cut-over's write freeze, segment by segment, from the operator's statements in both
/// servers' logs (ms resolution): fence (logins off, sessions ended), waiting for the target to
/// confirm the source's WAL position, row counts of every table on both sides, the session check
/// and the second catch-up, the catalog check (the catalog stamps of both sides, compared with
/// those taken before the freeze, and the fingerprints only when a stamp moved), the sequences,
/// dropping the subscription, logins on on the target (the order since a9a5ffb; before it the
/// catalog check and the sequences came before the row counts). `null`
/// fields where a marker statement was not found.
pub(super) fn freeze_timeline(source_log: &str, target_log: &str) -> Value {
    let src = logged(source_log);
    let tgt = logged(target_log);
    let is_unfence = |t: &str| alters_login(t, "LOGIN");
    let is_fence = |t: &str| alters_login(t, "NOLOGIN");
    // The commit: the first unfence on the target after the last fence on the source that
    // precedes it (earlier attempts, if any, were undone).
    let Some(end_i) = tgt.iter().position(|e| is_unfence(&e.text)) else {
        return json!({"note": "no unfence (ALTER ROLE … LOGIN) in the target's log"});
    };
    let mut end = tgt[end_i].end;
    for e in &tgt[end_i + 1..] {
        if is_unfence(&e.text) {
            end = e.end;
        } else {
            break;
        }
    }
    let Some(fence) = src
        .iter()
        .filter(|e| is_fence(&e.text) && e.end <= end)
        .map(|e| e.start)
        .reduce(f64::max)
    else {
        return json!({"note": "no fence (ALTER ROLE … NOLOGIN) in the source's log"});
    };
    // The fence of the last attempt may have two roles: its first statement.
    let start = src
        .iter()
        .filter(|e| is_fence(&e.text) && e.start <= fence && fence - e.start < 500.0)
        .map(|e| e.start)
        .fold(fence, f64::min);
    let within = |v: &[Logged], pat: &str| -> Vec<(f64, f64)> {
        v.iter()
            .filter(|e| e.start >= start - 1.0 && e.end <= end + 1.0 && e.text.contains(pat))
            .map(|e| (e.start, e.end))
            .collect()
    };
    let first_start = |x: &[(f64, f64)]| x.iter().map(|e| e.0).reduce(f64::min);
    let last_end = |x: &[(f64, f64)]| x.iter().map(|e| e.1).reduce(f64::max);
    // The catch-up's target position: the WAL insert position (the write position before).
    let wal: Vec<(f64, f64)> = within(&src, "pg_current_wal_insert_lsn()::text")
        .into_iter()
        .chain(within(&src, "pg_current_wal_lsn()::text"))
        .collect();
    let polls = within(&src, "confirmed_flush_lsn >=");
    // The sequences: read on the source, set on the target.
    let seqs: Vec<(f64, f64)> = within(&src, "FROM pg_sequences")
        .into_iter()
        .chain(within(&tgt, "SELECT setval("))
        .collect();
    // Row counts: one statement per server (`query_to_xml` over the tables), or for a `shared`
    // tenant one count per layout table on each server.
    let counts: Vec<(f64, f64)> = [&src, &tgt]
        .into_iter()
        .flat_map(|v| {
            within(v, "query_to_xml")
                .into_iter()
                .chain(within(v, SHARED_COUNT))
        })
        .collect();
    let drop_sub = within(&tgt, "DROP SUBSCRIPTION");
    let counts_start = first_start(&counts);
    let counts_end = last_end(&counts);
    let drop_start = first_start(&drop_sub);
    let drop_end = last_end(&drop_sub);
    // Two catch-ups: before the catalog check and the counts, and once more after the counts and
    // the session check (a session that came and went during the freeze).
    let before = |x: &[(f64, f64)], t: Option<f64>| -> Vec<(f64, f64)> {
        x.iter()
            .copied()
            .filter(|e| t.is_none_or(|t| e.1 <= t))
            .collect()
    };
    let after = |x: &[(f64, f64)], t: Option<f64>| -> Vec<(f64, f64)> {
        x.iter()
            .copied()
            .filter(|e| t.is_some_and(|t| e.0 >= t))
            .collect()
    };
    let first_polls = before(&polls, counts_start);
    let catch_up_start = first_start(&before(&wal, counts_start));
    let catch_up_end = last_end(&first_polls);
    let second_start = first_start(&after(&wal, counts_end));
    let second_end = last_end(&after(&polls, counts_end));
    // The sequences after the second catch-up (a `shared` tenant has none to copy).
    let late_seqs = after(&seqs, second_end);
    // The catalog stamps (one statement on each server) end the catalog check; without them
    // (not found) it ends where the sequences, or the subscription's drop, begin.
    let stamps = after(
        &[within(&src, STAMP), within(&tgt, STAMP)].concat(),
        second_end,
    );
    let check_end = last_end(&stamps).or(first_start(&late_seqs)).or(drop_start);
    let span = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => json!(round(b - a, 1)),
        _ => Value::Null,
    };
    // Server time of the statements between two points (both servers).
    let server_ms = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => {
            let sum: f64 = src
                .iter()
                .chain(tgt.iter())
                .filter(|e| e.start >= a - 0.5 && e.end <= b + 0.5)
                .map(|e| e.end - e.start)
                .sum();
            json!(round(sum, 1))
        }
        _ => Value::Null,
    };
    json!({
        "window_ms": round(end - start, 1),
        "fence_ms": span(Some(start), catch_up_start),
        "catch_up_ms": span(catch_up_start, catch_up_end),
        "catch_up_polls": first_polls.len(),
        "row_counts_ms": span(counts_start, counts_end),
        "row_counts_server_ms": server_ms(counts_start, counts_end),
        "sessions_and_second_catch_up_ms": span(counts_end, second_end),
        "second_catch_up_ms": span(second_start, second_end),
        "catalog_check_ms": span(second_end, check_end),
        "catalog_check_server_ms": server_ms(second_end, check_end),
        "sequences_ms": span(first_start(&late_seqs), last_end(&late_seqs)),
        "drop_subscription_ms": span(drop_start, drop_end),
        "unfence_ms": span(drop_end, Some(end)),
    })
}

/// How the catalog stamp's statement begins (`pg::catalog_stamp`).
const STAMP: &str = "WITH tmp AS (SELECT oid FROM pg_namespace";

/// What a `shared` tenant's row counts of the layout tables contain (`pg::shared::replication`;
/// the layout's schema quoted as `Ident` renders it).
const SHARED_COUNT: &str = "count(*) FROM \"tenantdb_rls\".";

/// Whether `sql` is one or more `ALTER ROLE <role> <what>` statements and nothing else (the fence
/// disables both of a tenant's roles in one statement string).
fn alters_login(sql: &str, what: &str) -> bool {
    let mut parts = sql
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    parts.peek().is_some()
        && parts.all(|p| {
            let w: Vec<&str> = p.split_whitespace().collect();
            w.len() == 4 && w[0] == "ALTER" && w[1] == "ROLE" && w[3] == what
        })
}

#[cfg(test)]
mod tests {
    use super::{alters_login, freeze_timeline};

    /// A log line as PostgreSQL writes it with `log_min_duration_statement = 0`, ending at
    /// `at_ms` past 12:00:00 and lasting `ms`.
    fn line(at_ms: u32, ms: f64, sql: &str) -> String {
        format!(
            "2026-12-06 12:00:{:02}.{:03} UTC [42] LOG:  duration: {ms:.3} ms  statement: {sql}\n",
            at_ms / 1000,
            at_ms % 1000
        )
    }

    #[test]
    fn a_shared_tenants_freeze_is_cut_at_its_row_counts() {
        // Fence, catch-up (1 poll), counts per layout table on both servers, second catch-up,
        // catalog check, subscription dropped, logins on; no sequences.
        let src = [
            line(
                100,
                1.0,
                "ALTER ROLE \"t\" NOLOGIN; ALTER ROLE \"t_b\" NOLOGIN",
            ),
            line(110, 1.0, "SELECT pg_current_wal_insert_lsn()::text"),
            line(
                120,
                1.0,
                "SELECT confirmed_flush_lsn >= $1 FROM pg_replication_slots",
            ),
            line(
                160,
                2.0,
                "SELECT 'a'::text, count(*) FROM \"tenantdb_rls\".\"a\" WHERE \"tenant_id\"::text = $1 UNION ALL SELECT 'b'::text, count(*) FROM \"tenantdb_rls\".\"b\" WHERE \"id\"::text = $1",
            ),
            line(170, 1.0, "SELECT pg_current_wal_insert_lsn()::text"),
            line(
                180,
                1.0,
                "SELECT confirmed_flush_lsn >= $1 FROM pg_replication_slots",
            ),
        ]
        .concat();
        let tgt = [
            line(
                162,
                2.0,
                "SELECT 'a'::text, count(*) FROM \"tenantdb_rls\".\"a\" WHERE \"tenant_id\"::text = $1 UNION ALL SELECT 'b'::text, count(*) FROM \"tenantdb_rls\".\"b\" WHERE \"id\"::text = $1",
            ),
            line(
                190,
                5.0,
                "ALTER SUBSCRIPTION \"m\" DISABLE; DROP SUBSCRIPTION \"m\"",
            ),
            line(200, 1.0, "ALTER ROLE \"t\" LOGIN"),
        ]
        .concat();
        let t = freeze_timeline(&src, &tgt);
        assert_eq!(t["catch_up_polls"], 1, "{t}");
        assert_eq!(t["catch_up_ms"], 11.0, "{t}");
        assert!(t["sequences_ms"].is_null(), "{t}");
        assert_eq!(t["row_counts_ms"], 4.0, "{t}");
        assert_eq!(t["second_catch_up_ms"], 11.0, "{t}");
        // From the second catch-up's end (180) to the subscription's drop (185).
        assert_eq!(t["catalog_check_ms"], 5.0, "{t}");
        assert_eq!(t["drop_subscription_ms"], 5.0, "{t}");
        assert_eq!(t["window_ms"], 101.0, "{t}");
    }

    const STAMP_LINE: &str =
        "WITH tmp AS (SELECT oid FROM pg_namespace WHERE nspname ~ '^pg_temp')";

    #[test]
    fn a_database_tenants_sequences_come_after_the_second_catch_up() {
        let src = [
            line(100, 1.0, "ALTER ROLE \"t\" NOLOGIN"),
            line(110, 1.0, "SELECT pg_current_wal_insert_lsn()::text"),
            line(
                120,
                1.0,
                "SELECT confirmed_flush_lsn >= $1 FROM pg_replication_slots",
            ),
            line(
                150,
                20.0,
                "SELECT query_to_xml(format('select count(*) from %I.%I', n, t))",
            ),
            line(160, 1.0, "SELECT pg_current_wal_insert_lsn()::text"),
            line(
                165,
                1.0,
                "SELECT confirmed_flush_lsn >= $1 FROM pg_replication_slots",
            ),
            line(170, 3.0, STAMP_LINE),
            line(
                175,
                2.0,
                "SELECT s.schemaname::text AS schema FROM pg_sequences s",
            ),
        ]
        .concat();
        let tgt = [
            line(
                151,
                20.0,
                "SELECT query_to_xml(format('select count(*) from %I.%I', n, t))",
            ),
            line(171, 4.0, STAMP_LINE),
            line(
                180,
                1.0,
                "SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, true)",
            ),
            line(
                190,
                5.0,
                "ALTER SUBSCRIPTION \"m\" DISABLE; DROP SUBSCRIPTION \"m\"",
            ),
            line(200, 1.0, "ALTER ROLE \"t\" LOGIN"),
        ]
        .concat();
        let t = freeze_timeline(&src, &tgt);
        assert_eq!(t["catch_up_polls"], 1, "{t}");
        assert_eq!(t["row_counts_ms"], 21.0, "{t}");
        assert_eq!(t["second_catch_up_ms"], 6.0, "{t}");
        // The sequences read on the source (173–175) and set on the target (179–180).
        assert_eq!(t["sequences_ms"], 7.0, "{t}");
        // From the second catch-up's end (165) to the later stamp's end (171).
        assert_eq!(t["catalog_check_ms"], 6.0, "{t}");
        assert_eq!(t["window_ms"], 101.0, "{t}");
    }

    #[test]
    fn fences_of_one_and_two_roles_are_recognised() {
        assert!(alters_login("ALTER ROLE \"a\" NOLOGIN", "NOLOGIN"));
        assert!(alters_login(
            "ALTER ROLE \"a\" NOLOGIN; ALTER ROLE \"a_b\" NOLOGIN",
            "NOLOGIN"
        ));
        assert!(!alters_login("ALTER ROLE \"a\" NOLOGIN", "LOGIN"));
        assert!(!alters_login(
            "ALTER ROLE \"a\" NOLOGIN; SELECT 1",
            "NOLOGIN"
        ));
        assert!(!alters_login("", "NOLOGIN"));
    }
}
