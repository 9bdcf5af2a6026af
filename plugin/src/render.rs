//! Text rendering of `status`: one Tenant in detail, or the fleet as a table. Pure functions of the
//! views and of "now", so the output is unit-tested exactly.

use jiff::Timestamp;
use serde_json::Value;

use crate::view::{Connections, Storage, TenantView};

const BAR_WIDTH: usize = 20;

/// `1536` → `1.5 KiB`.
pub fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if b.abs() < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v.abs() < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `[#####---------------]` for a percentage (clamped to 0..=100).
pub fn bar(percent: i64) -> String {
    let filled = (percent.clamp(0, 100) as usize * BAR_WIDTH).div_ceil(100);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled))
}

/// How long ago an RFC 3339 time was (`42s ago`, `5m ago`, `3h ago`, `2d ago`); the input as is
/// when it does not parse.
pub fn ago(ts: &str, now: Timestamp) -> String {
    let Ok(t) = ts.parse::<Timestamp>() else {
        return ts.to_string();
    };
    let s = now.as_second() - t.as_second();
    if s < 0 {
        return "in the future".to_string();
    }
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn storage_line(s: Option<&Storage>) -> String {
    let Some(s) = s else {
        return "- (not measured yet)".to_string();
    };
    let ro = if s.read_only {
        "  READ-ONLY (quota exceeded)"
    } else {
        ""
    };
    match (s.limit, s.percent) {
        (Some(limit), percent) => {
            let p = percent.unwrap_or(if limit > 0 { s.bytes * 100 / limit } else { 0 });
            format!(
                "{} {p:>3} %  {} of {}{ro}",
                bar(p),
                human_bytes(s.bytes),
                human_bytes(limit)
            )
        }
        (None, _) => format!("{} (no quota){ro}", human_bytes(s.bytes)),
    }
}

fn connections_line(c: &Connections) -> String {
    let detail = match (c.active, c.idle, c.idle_in_transaction) {
        (None, None, None) => String::new(),
        (a, i, t) => format!(
            " (active {}, idle {}, idle in transaction {})",
            or_dash(a),
            or_dash(i),
            or_dash(t)
        ),
    };
    match (c.total, c.limit) {
        (Some(total), Some(limit)) if limit > 0 => format!(
            "{} {:>3} %  {total} of {limit}{detail}",
            bar(total * 100 / limit),
            total * 100 / limit
        ),
        (Some(total), _) => format!("{total} (no limit){detail}"),
        (None, Some(limit)) => format!("- of {limit} (no statistics yet)"),
        (None, None) => "- (no statistics yet, no limit)".to_string(),
    }
}

fn health_line(v: &TenantView, now: Timestamp) -> String {
    let Some(h) = &v.health else {
        return "- (not checked yet)".to_string();
    };
    let mut out = if h.healthy { "healthy" } else { "UNHEALTHY" }.to_string();
    if let Some(ms) = h.latency_ms {
        out.push_str(&format!(", {ms} ms"));
    }
    if let Some(t) = &h.last_checked {
        out.push_str(&format!(", checked {}", ago(t, now)));
    }
    if !h.healthy && !h.message.is_empty() {
        out.push_str(&format!(": {}", h.message));
    }
    out
}

fn rotation_line(v: &TenantView, now: Timestamp) -> String {
    let mut out = match &v.rotated_at {
        Some(t) => format!("{t} ({})", ago(t, now)),
        None => "never".to_string(),
    };
    if let (Some(p), Some(until)) = (&v.previous_user, &v.previous_valid_until) {
        out.push_str(&format!("; previous role {p} valid until {until}"));
    }
    out
}

fn migrations_cell(v: &TenantView) -> Option<String> {
    (!v.migrations.is_empty()).then(|| {
        v.migrations
            .iter()
            .map(|m| format!("{} ({}, this tenant {})", m.name, m.phase, m.state))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// `key=value` pairs of a JSON object (statistics sub-objects), in the object's order.
fn pairs(v: &Value) -> String {
    match v.as_object() {
        Some(o) => o
            .iter()
            .filter(|(_, v)| !v.is_array() && !v.is_object())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                v => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => v.to_string(),
    }
}

/// The detailed view of one Tenant.
pub fn tenant(v: &TenantView, now: Timestamp) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("Tenant", format!("{}/{}", v.namespace, v.name)),
        ("Phase", v.phase.clone()),
        ("Server", v.server.clone()),
        ("Isolation", v.isolation.clone()),
        ("Database", or_dash(v.database.as_ref())),
        ("Schema", or_dash(v.schema.as_ref())),
        ("Login role", or_dash(v.role.as_ref())),
        (
            "Credentials",
            format!(
                "Secret {} (active role {})",
                v.secret,
                or_dash(v.active_user.as_ref())
            ),
        ),
        ("Schema version", or_dash(v.version)),
        ("Storage", storage_line(v.storage.as_ref())),
        ("Connections", connections_line(&v.connections)),
    ];
    if let Some(t) = &v.transactions {
        rows.push(("Transactions", pairs(t)));
    }
    if let Some(s) = &v.statements {
        rows.push(("Statements", pairs(s)));
    }
    if let Some(t) = &v.statistics_measured_at {
        rows.push(("Statistics", format!("measured {}", ago(t, now))));
    }
    rows.push(("Health", health_line(v, now)));
    rows.push(("Last rotation", rotation_line(v, now)));
    rows.push((
        "Migrations",
        migrations_cell(v).unwrap_or_else(|| "none running".to_string()),
    ));
    if let Some(m) = &v.mongodb {
        rows.push(("MongoDB", m.clone()));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, val) in rows {
        out.push_str(&format!("{k:<w$}  {val}\n"));
    }
    let slowest = v
        .statements
        .as_ref()
        .and_then(|s| s.pointer("/slowest"))
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    if let Some(slowest) = slowest {
        out.push_str("\nSlowest statements:\n");
        let mut table = vec![
            ["QUERY ID", "CALLS", "MEAN", "QUERY"]
                .map(String::from)
                .to_vec(),
        ];
        for s in slowest {
            let num = |k: &str| s.get(k).and_then(Value::as_i64);
            table.push(vec![
                s.get("queryId")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string(),
                or_dash(num("calls")),
                num("meanMs").map_or_else(|| "-".to_string(), |m| format!("{m} ms")),
                s.get("query")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
        for line in columns(&table).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !v.conditions.is_empty() {
        out.push_str("\nConditions:\n");
        let table: Vec<Vec<String>> = std::iter::once(
            ["TYPE", "STATUS", "REASON", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        )
        .chain(v.conditions.iter().map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        }))
        .collect();
        for line in columns(&table).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// The fleet table (`-A` adds the namespace column) and a one-line summary.
pub fn fleet(views: &[TenantView], all_namespaces: bool, now: Timestamp) -> String {
    if views.is_empty() {
        return "No Tenants found.\n".to_string();
    }
    let mut header = vec![
        "NAME",
        "PHASE",
        "SERVER",
        "ISOLATION",
        "VERSION",
        "STORAGE",
        "CONNECTIONS",
        "HEALTH",
        "ROTATED",
        "MIGRATIONS",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for v in views {
        let storage = match &v.storage {
            None => "-".to_string(),
            Some(s) => match (s.limit, s.percent) {
                (Some(l), Some(p)) => format!("{}/{} {p}%", human_bytes(s.bytes), human_bytes(l)),
                (Some(l), None) => format!("{}/{}", human_bytes(s.bytes), human_bytes(l)),
                (None, _) => human_bytes(s.bytes),
            },
        };
        let conns = match (v.connections.total, v.connections.limit) {
            (None, None) => "-".to_string(),
            (t, None) => or_dash(t),
            (t, Some(l)) => format!("{}/{l}", or_dash(t)),
        };
        let health = match &v.health {
            None => "-".to_string(),
            Some(h) if h.healthy => match h.latency_ms {
                Some(ms) => format!("ok {ms}ms"),
                None => "ok".to_string(),
            },
            Some(_) => "UNHEALTHY".to_string(),
        };
        let mut row = vec![
            v.name.clone(),
            v.phase.clone(),
            v.server.clone(),
            v.isolation.clone(),
            or_dash(v.version),
            storage,
            conns,
            health,
            v.rotated_at
                .as_deref()
                .map_or_else(|| "never".to_string(), |t| ago(t, now)),
            migrations_cell(v).unwrap_or_else(|| "-".to_string()),
        ];
        if all_namespaces {
            row.insert(0, v.namespace.clone());
        }
        table.push(row);
    }
    let mut phases = std::collections::BTreeMap::<&str, usize>::new();
    for v in views {
        *phases.entry(v.phase.as_str()).or_default() += 1;
    }
    let summary = phases
        .iter()
        .map(|(p, n)| format!("{n} {p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let unhealthy = views
        .iter()
        .filter(|v| v.health.as_ref().is_some_and(|h| !h.healthy))
        .count();
    format!(
        "{}\n{} tenant{}: {summary}; {unhealthy} unhealthy\n",
        columns(&table),
        views.len(),
        if views.len() == 1 { "" } else { "s" }
    )
}

/// Left-aligned columns separated by three spaces, like kubectl's tables (no trailing spaces).
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
