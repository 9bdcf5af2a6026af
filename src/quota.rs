//! Pure parsing and decisions for quotas: durations, quantities, effective limits, read-only mode.

use std::time::Duration;

use crate::crd::Quotas;

/// Operator-wide quota defaults (flags), applied where a Tenant leaves a field unset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaDefaults {
    /// Default CONNECTION LIMIT.
    pub max_connections: Option<i32>,
    /// Default `statement_timeout`.
    pub statement_timeout: Option<String>,
    /// Default `idle_in_transaction_session_timeout`.
    pub idle_in_transaction_timeout: Option<String>,
    /// Default storage quota.
    pub storage: Option<String>,
}

/// Limits after defaults, in PostgreSQL units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveQuotas {
    /// CONNECTION LIMIT (-1 = unlimited).
    pub connection_limit: i32,
    /// `statement_timeout` in ms (None = leave unset).
    pub statement_timeout_ms: Option<i64>,
    /// `idle_in_transaction_session_timeout` in ms.
    pub idle_in_transaction_timeout_ms: Option<i64>,
    /// Storage quota in bytes.
    pub storage_bytes: Option<i64>,
}

/// Parses `500ms`, `30s`, `5min`, `2h` or a bare number of milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix("min") {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1)
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) || num.len() > 9 {
        return None;
    }
    num.parse::<i64>().ok()?.checked_mul(mult)
}

/// Parses a duration for rotation settings (`s`, `min`, `h`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    parse_duration_ms(s)
        .filter(|ms| *ms >= 0)
        .map(|ms| Duration::from_millis(ms as u64))
}

/// Parses a Kubernetes quantity (`5Gi`, `500Mi`, `1G`, `1024`) into bytes.
pub fn parse_quantity(s: &str) -> Option<i64> {
    let s = s.trim();
    let suffixes: [(&str, f64); 10] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0f64.powi(4)),
        ("Pi", 1024.0f64.powi(5)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (num, mult) = suffixes
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((s, 1.0));
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    let bytes = (v * mult).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// Merges a Tenant's quotas with the defaults and parses them. Errors name the bad field.
pub fn effective(q: Option<&Quotas>, d: &QuotaDefaults) -> Result<EffectiveQuotas, String> {
    let q = q.cloned().unwrap_or_default();
    let conn = q.max_connections.or(d.max_connections);
    if let Some(c) = conn
        && !(1..=10_000).contains(&c)
    {
        return Err(format!(
            "quotas.maxConnections {c} is out of range 1..10000"
        ));
    }
    let dur = |field: &str, v: Option<String>| -> Result<Option<i64>, String> {
        match v {
            None => Ok(None),
            Some(s) => parse_duration_ms(&s)
                .filter(|ms| *ms <= i32::MAX as i64)
                .map(Some)
                .ok_or_else(|| {
                    format!("quotas.{field} {s:?} is not a duration like 30s, 500ms, 5min")
                }),
        }
    };
    let storage =
        match q.storage.or_else(|| d.storage.clone()) {
            None => None,
            Some(s) => Some(parse_quantity(&s).filter(|b| *b > 0).ok_or_else(|| {
                format!("quotas.storage {s:?} is not a positive quantity like 5Gi")
            })?),
        };
    Ok(EffectiveQuotas {
        connection_limit: conn.unwrap_or(-1),
        statement_timeout_ms: dur(
            "statementTimeout",
            q.statement_timeout.or_else(|| d.statement_timeout.clone()),
        )?,
        idle_in_transaction_timeout_ms: dur(
            "idleInTransactionTimeout",
            q.idle_in_transaction_timeout
                .or_else(|| d.idle_in_transaction_timeout.clone()),
        )?,
        storage_bytes: storage,
    })
}

/// Whole percentage of the quota used.
pub fn percent(used: i64, limit: Option<i64>) -> Option<i32> {
    let limit = limit.filter(|l| *l > 0)?;
    Some(
        ((used as f64 / limit as f64) * 100.0)
            .floor()
            .min(i32::MAX as f64) as i32,
    )
}

/// Read-only when the quota is exhausted (usage at or above 100 %).
pub fn over_quota(used: i64, limit: Option<i64>) -> bool {
    limit.is_some_and(|l| used >= l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("5min"), Some(300_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("250"), Some(250));
        for bad in [
            "",
            "s",
            "-1s",
            "1.5s",
            "1d",
            "1s; drop table x",
            "9999999999s",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("5Gi"), Some(5 * 1024 * 1024 * 1024));
        assert_eq!(parse_quantity("500Mi"), Some(500 * 1024 * 1024));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("1024"), Some(1024));
        for bad in ["", "Gi", "-1Gi", "5GB", "abc"] {
            assert_eq!(parse_quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_and_validation() {
        let d = QuotaDefaults {
            max_connections: Some(20),
            statement_timeout: Some("30s".into()),
            ..Default::default()
        };
        let e = effective(None, &d).unwrap();
        assert_eq!(e.connection_limit, 20);
        assert_eq!(e.statement_timeout_ms, Some(30_000));
        assert_eq!(e.storage_bytes, None);
        let q = Quotas {
            max_connections: Some(5),
            storage: Some("1Mi".into()),
            ..Default::default()
        };
        let e = effective(Some(&q), &d).unwrap();
        assert_eq!(e.connection_limit, 5);
        assert_eq!(e.storage_bytes, Some(1024 * 1024));
        let bad = Quotas {
            max_connections: Some(0),
            ..Default::default()
        };
        assert!(effective(Some(&bad), &d).is_err());
        let bad = Quotas {
            statement_timeout: Some("forever".into()),
            ..Default::default()
        };
        assert!(
            effective(Some(&bad), &d)
                .unwrap_err()
                .contains("statementTimeout")
        );
    }

    #[test]
    fn percent_and_read_only() {
        assert_eq!(percent(50, Some(200)), Some(25));
        assert_eq!(percent(50, None), None);
        assert!(over_quota(200, Some(200)));
        assert!(!over_quota(199, Some(200)));
        assert!(!over_quota(1 << 40, None));
    }
}
