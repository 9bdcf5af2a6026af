//! Watch streams: newline-delimited JSON events, history replay, selector transitions,
//! bookmarks, timeouts and clean shutdown.

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::store::{Event, EventType};
use crate::table::{self, IncludeObject, Output};

/// Idle time after which a BOOKMARK is sent (when the client allows bookmarks).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

pub struct WatchParams {
    pub def: ResourceDef,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub output: Output,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `sendInitialEvents=true`: after the initial ADDED events send a bookmark annotated
    /// `k8s.io/initial-events-end`.
    pub initial_events_end: bool,
    pub from_rv: Option<u64>,
}

impl WatchParams {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// Which event (if any) this watcher sees, accounting for selector transitions.
    fn classify<'a>(&self, ev: &'a Event) -> Option<(EventType, &'a Value)> {
        if ev.gr != self.def.storage_gr() {
            return None;
        }
        if self.namespace.as_ref().is_some_and(|n| *n != ev.namespace) {
            return None;
        }
        let now = self.matches(&ev.object);
        match ev.type_ {
            EventType::Added | EventType::Deleted => now.then_some((ev.type_, &*ev.object)),
            EventType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some((EventType::Modified, &*ev.object)),
                    (false, true) => Some((EventType::Added, &*ev.object)),
                    (true, false) => Some((EventType::Deleted, &*ev.object)),
                    (false, false) => None,
                }
            }
        }
    }

    fn render_object(&self, obj: &Value, first: &mut bool) -> Value {
        match self.output {
            Output::Full => table::present(obj, &self.def, &self.version),
            Output::PartialMetadata => table::partial(obj),
            Output::Table(inc) => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                let t = table::table(
                    &self.def,
                    &self.version,
                    &[obj],
                    json!({"resourceVersion": rv}),
                    inc,
                    *first,
                );
                *first = false;
                t
            }
        }
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let (kind, av) = match self.output {
            Output::Full => (self.def.kind.clone(), self.def.api_version(&self.version)),
            Output::PartialMetadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            Output::Table(_) => ("Table".into(), "meta.k8s.io/v1".into()),
        };
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": av, "metadata": meta}})
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn stream_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Body::from_stream(s)
}

/// A stream that carries a single ERROR event (e.g. 410 Expired), as the real server does.
pub fn error_body(err: &ApiError) -> Body {
    Body::from(line(&json!({"type": "ERROR", "object": err.to_status()})))
}

/// Start a watch. Errors (too old resourceVersion) are reported inside a 200 stream.
pub fn start(shared: Arc<Shared>, p: WatchParams) -> Body {
    let started = {
        let st = shared.lock();
        st.watch_start(&p.def, p.namespace.as_deref(), p.from_rv)
    };
    let (initial, brx, start_rv) = match started {
        Ok(x) => x,
        Err(e) => return error_body(&e),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(run(shared, p, initial, brx, start_rv, tx));
    stream_body(rx)
}

async fn run(
    shared: Arc<Shared>,
    p: WatchParams,
    initial: Vec<Arc<Event>>,
    mut brx: broadcast::Receiver<Arc<Event>>,
    start_rv: u64,
    tx: mpsc::Sender<Bytes>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let stopping = *shutdown.borrow();
    if stopping {
        return;
    }
    let mut first = true;
    let mut last_rv = start_rv;
    let send_events = |evs: Vec<Arc<Event>>, first: &mut bool| -> Vec<Bytes> {
        evs.iter()
            .filter_map(|ev| {
                let (t, obj) = p.classify(ev)?;
                Some(line(
                    &json!({"type": t.as_str(), "object": p.render_object(obj, first)}),
                ))
            })
            .collect()
    };
    for b in send_events(initial, &mut first) {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    if p.bookmarks
        && p.initial_events_end
        && tx.send(line(&p.bookmark(last_rv, true))).await.is_err()
    {
        return;
    }
    let deadline = p.timeout.map(|t| Instant::now() + t);
    let mut last_sent = Instant::now();
    let mut bookmark_sent = false;
    let mut tick = tokio::time::interval(BOOKMARK_INTERVAL / 2);
    loop {
        let out: Vec<Bytes> = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await.map(|_| ()); } => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            _ = tx.closed() => break,
            _ = tick.tick(), if p.bookmarks => {
                if last_sent.elapsed() >= BOOKMARK_INTERVAL || !bookmark_sent {
                    bookmark_sent = true;
                    vec![line(&p.bookmark(last_rv, false))]
                } else {
                    continue;
                }
            }
            r = brx.recv() => match r {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if !shared.watch_latency.is_zero() {
                        tokio::time::sleep_until(Instant::from_std(ev.at + shared.watch_latency)).await;
                    }
                    send_events(vec![ev], &mut first)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind the broadcast buffer: recover from the history.
                    let recovered = {
                        let st = shared.lock();
                        if last_rv < st.compacted() {
                            None
                        } else {
                            Some((st.events_since(last_rv, &p.def.storage_gr(), p.namespace.as_deref()), st.current_rv()))
                        }
                    };
                    match recovered {
                        Some((evs, now)) => {
                            last_rv = now;
                            send_events(evs, &mut first)
                        }
                        None => {
                            let e = ApiError::expired("too old resource version: watcher fell behind the event history");
                            let _ = tx.send(line(&json!({"type": "ERROR", "object": e.to_status()}))).await;
                            break;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        for b in out {
            if tx.send(b).await.is_err() {
                return;
            }
            last_sent = Instant::now();
        }
    }
}

/// `IncludeObject` from the query parameter.
pub fn include_object(v: Option<&str>) -> IncludeObject {
    match v {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}
