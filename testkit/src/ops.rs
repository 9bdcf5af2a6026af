//! Helpers for tests of the operator process itself (issue #14): its HTTP endpoints and metrics,
//! signals, and the timing of its reconcile attempts as read from its JSON log.
//! Used with `crate::e2e` (the real binary against the API server emulator).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use crate::e2e::wait_for;
pub use crate::http::{http_addr, http_get};

/// Waits until the operator logging to `log_path` says where it serves HTTP.
pub async fn wait_http_addr(log_path: &Path) -> String {
    wait_for(Duration::from_secs(60), "http address in the log", || {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        async move { http_addr(&log) }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        )
    })
}

/// The `/metrics` body of the operator at `addr`.
pub async fn metrics(addr: &str) -> String {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200, "/metrics: {body}");
    body
}

/// The value of one exact series (`name{labels}` as exposed, or `name` without labels).
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok())?
    })
}

/// The sum over every label set of the metric `name` (e.g. all `result`s of a counter).
pub fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let base = k.split('{').next()?;
            (base == name).then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

/// Sends SIGTERM to a process.
pub fn sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM {pid}");
}

pub(crate) fn message(v: &Value) -> Option<&str> {
    v.get("message")
        .or_else(|| v.get("fields").and_then(|f| f.get("message")))
        .and_then(Value::as_str)
}

pub(crate) fn span_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    if let Some(s) = v
        .get("span")
        .and_then(|s| s.get(key))
        .and_then(Value::as_str)
    {
        return Some(s);
    }
    v.get("spans").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .rev()
            .find_map(|s| s.get(key).and_then(Value::as_str))
    })
}

/// When each (namespace, tenant) logged `msg` (e.g. "reconcile started"), in log order.
pub fn message_times(log: &str, msg: &str) -> BTreeMap<(String, String), Vec<Timestamp>> {
    let mut m: BTreeMap<(String, String), Vec<Timestamp>> = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message(&v) != Some(msg) {
            continue;
        }
        let (Some(t), Some(ts)) = (
            span_field(&v, "tenant"),
            v.get("timestamp")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok()),
        ) else {
            continue;
        };
        let ns = span_field(&v, "namespace").unwrap_or_default().to_string();
        m.entry((ns, t.to_string())).or_default().push(ts);
    }
    m
}

/// Gaps between consecutive timestamps, in seconds.
pub fn gaps(times: &[Timestamp]) -> Vec<f64> {
    times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect()
}

/// Lines of the JSON log whose message is `msg`, with their fields (flattened events).
pub fn lines_with(log: &str, msg: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| message(v) == Some(msg))
        .collect()
}

#[test]
fn metric_lookup() {
    let body = "# HELP x y\ntenantdb_health_checks_total{result=\"healthy\"} 3\n\
                tenantdb_health_checks_total{result=\"unhealthy\"} 2\ntenantdb_storage_bytes 42\n";
    assert_eq!(
        metric(body, "tenantdb_health_checks_total{result=\"healthy\"}"),
        Some(3.0)
    );
    assert_eq!(metric(body, "tenantdb_storage_bytes"), Some(42.0));
    assert_eq!(metric(body, "tenantdb_storage"), None);
    assert_eq!(metric_sum(body, "tenantdb_health_checks_total"), 5.0);
    let t: Vec<Timestamp> = ["2025-01-01T00:00:00Z", "2025-01-01T00:00:01.5Z"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(gaps(&t), vec![1.5]);
}
