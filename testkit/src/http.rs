//! Plain HTTP/1.1 against the operator's own endpoints (`/metrics`, `/healthz`, `/readyz`), and
//! where the operator says it serves them. A leaf: every harness module uses it.

use serde_json::Value;

/// The operator's HTTP address (`--http-addr 127.0.0.1:0`) from the last "serving /metrics" line
/// of its JSON log (the last start, when the log holds several).
pub fn http_addr(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| {
            v.get("addr")
                .or_else(|| v.get("fields").and_then(|f| f.get("addr")))
                .and_then(Value::as_str)
                .map(String::from)
        })
}

/// A plain HTTP/1.1 GET: (status code, whole response). Status 0 when nothing answers.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// An HTTP/1.0 GET (the server answers without chunked encoding, e.g. Prometheus's API): (status
/// code, body). Status 0 when nothing answers.
pub async fn http10_get_body(addr: &str, path: &str) -> (u16, String) {
    let (code, buf) = request(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    )
    .await;
    let body = buf
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

/// Sends `request` and reads the response until the server closes: (status code, response).
async fn request(addr: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    if s.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}
