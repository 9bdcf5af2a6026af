//! Kubernetes Events (`events.k8s.io/v1`) with series, kept small in memory.
//!
//! kube-runtime's `Recorder` remembers every Event it published for six minutes as a whole
//! `Event` object (≈ 2–4 KiB with its strings) and drops old ones only when the next Event is
//! published: after provisioning 10,000 Tenants it held tens of MiB until then (bench/README.md,
//! scenario 2c). This recorder publishes the same Events — created once, then the same Event's
//! `series` (count, last observed time) patched when the same thing happens again on the same
//! object within [`SERIES_WINDOW`] — and remembers of each only a hash of what identifies it,
//! its name, the count and when it was last seen (≈ 120 bytes). Old entries are
//! dropped at most every [`SWEEP_EVERY`] and on every publish after that.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};

/// The same Event within this window is a series of the first one (kube-runtime's and
/// client-go's cache time).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Expired entries are dropped at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Objects whose name is longer than this get Events with a generated name (`<name>.<16 hex>`
/// past 253 bytes is refused by the API server).
const LONG_NAME: usize = 200;

/// What one published Event is remembered by.
#[derive(Debug, Clone)]
struct Recent {
    name: Box<str>,
    count: i32,
    last: Instant,
}

#[derive(Debug)]
struct Cache {
    recent: HashMap<u64, Recent>,
    swept: Instant,
}

/// One Event to publish.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

/// Publishes Events of one controller instance (`reportingController` / `reportingInstance`).
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    cache: Mutex<Cache>,
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventRecorder {
            client,
            controller: controller.to_string(),
            instance: instance.to_string(),
            cache: Mutex::new(Cache {
                recent: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Publishes `ev` regarding `regarding`: a new Event, or the next count of the series of the
    /// same Event (same type, reason, action, object) published within [`SERIES_WINDOW`]. The
    /// note of a series is its first Event's (Events are immutable but for their series).
    pub async fn publish(
        &self,
        ev: Publish<'_>,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = self.key(&ev, regarding);
        let now = Instant::now();
        // Part of the key: a series is always in the namespace its first Event was created in.
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Some(prev) = self.previous(key, now) {
            let count = prev.count + 1;
            let patch = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(k8s_openapi::jiff::Timestamp::now()),
            }});
            match api
                .patch(&prev.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(
                        key,
                        Recent {
                            count,
                            last: now,
                            ..prev
                        },
                    );
                    return Ok(());
                }
                // Gone (the API server's Event TTL, or deleted): start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => self.forget(key),
                Err(e) => return Err(e),
            }
        }
        let created = api
            .create(
                &PostParams::default(),
                &self.event(&ev, regarding, namespace),
            )
            .await?;
        self.remember(
            key,
            Recent {
                name: created.name_any().into(),
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    /// How many Events are remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.lock().recent.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A cache: a panic while holding it leaves nothing inconsistent that matters.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live entry of `key`, after dropping expired entries (at most every [`SWEEP_EVERY`]).
    fn previous(&self, key: u64, now: Instant) -> Option<Recent> {
        let mut c = self.lock();
        if now.duration_since(c.swept) >= SWEEP_EVERY {
            c.recent
                .retain(|_, r| now.duration_since(r.last) < SERIES_WINDOW);
            c.recent.shrink_to_fit();
            c.swept = now;
        }
        c.recent
            .get(&key)
            .filter(|r| now.duration_since(r.last) < SERIES_WINDOW)
            .cloned()
    }

    fn remember(&self, key: u64, r: Recent) {
        self.lock().recent.insert(key, r);
    }

    fn forget(&self, key: u64) {
        self.lock().recent.remove(&key);
    }

    /// What makes two Events the same (kube-runtime's `EventKey`: type, action, reason,
    /// reporter, regarding object), hashed.
    fn key(&self, ev: &Publish<'_>, regarding: &ObjectReference) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        matches!(ev.type_, EventType::Warning).hash(&mut h);
        ev.action.hash(&mut h);
        ev.reason.hash(&mut h);
        self.controller.hash(&mut h);
        self.instance.hash(&mut h);
        regarding.api_version.hash(&mut h);
        regarding.kind.hash(&mut h);
        regarding.namespace.hash(&mut h);
        regarding.name.hash(&mut h);
        regarding.uid.hash(&mut h);
        h.finish()
    }

    fn event(&self, ev: &Publish<'_>, regarding: &ObjectReference, namespace: &str) -> K8sEvent {
        let now = k8s_openapi::jiff::Timestamp::now();
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        let (name, generate_name) = if object.len() > LONG_NAME {
            (None, Some(format!("{}-", self.controller)))
        } else {
            (Some(format!("{object}.{:x}", now.as_nanosecond())), None)
        };
        K8sEvent {
            metadata: kube::api::ObjectMeta {
                name,
                generate_name,
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(match ev.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            reason: Some(ev.reason.to_string()),
            action: Some(ev.action.to_string()),
            note: Some(ev.note.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::{DeleteParams, ListParams};

    fn regarding(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
            namespace: Some("default".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn ev(reason: &str) -> Publish<'_> {
        Publish {
            type_: EventType::Normal,
            reason,
            action: "Reconcile",
            note: format!("{reason} happened"),
        }
    }

    async fn events_of(api: &Api<K8sEvent>, reason: &str) -> Vec<K8sEvent> {
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    #[tokio::test]
    async fn repeats_are_one_event_with_a_series_and_a_gone_event_starts_anew() {
        let api_server = tenantdb_apiserver::start(tenantdb_apiserver::Config {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Default::default()
        })
        .await
        .unwrap();
        let client =
            tenantdb_testkit::cluster::client_for_yaml(&api_server.kubeconfig_yaml("default"))
                .await
                .unwrap();
        let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
        let rec = EventRecorder::new(client, "tenantdb", "test-1");
        let x = regarding("x");

        rec.publish(ev("Provisioned"), &x).await.unwrap();
        let first = events_of(&events, "Provisioned").await;
        assert_eq!(first.len(), 1);
        assert!(first[0].series.is_none());
        assert_eq!(first[0].reporting_instance.as_deref(), Some("test-1"));
        for count in [2, 3] {
            rec.publish(ev("Provisioned"), &x).await.unwrap();
            let now = events_of(&events, "Provisioned").await;
            assert_eq!(now.len(), 1, "a repeat is the same Event");
            assert_eq!(now[0].name_any(), first[0].name_any());
            assert_eq!(now[0].series.as_ref().map(|s| s.count), Some(count));
            assert_eq!(now[0].note, first[0].note);
        }
        // Another reason, another object: other Events.
        rec.publish(ev("Rotated"), &x).await.unwrap();
        rec.publish(ev("Provisioned"), &regarding("y"))
            .await
            .unwrap();
        assert_eq!(events_of(&events, "Rotated").await.len(), 1);
        assert_eq!(events_of(&events, "Provisioned").await.len(), 2);
        assert_eq!(rec.remembered(), 3);

        // The Event is gone (the API server's TTL): the next repeat creates a new one.
        events
            .delete(&first[0].name_any(), &DeleteParams::default())
            .await
            .unwrap();
        rec.publish(ev("Provisioned"), &x).await.unwrap();
        let again: Vec<K8sEvent> = events_of(&events, "Provisioned")
            .await
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("x"))
            .collect();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].name_any(), first[0].name_any());
        assert!(again[0].series.is_none());
        assert_eq!(rec.remembered(), 3);

        // A name too long for `<name>.<16 hex>`: a generated name, still a series.
        let long = regarding(&"l".repeat(230));
        rec.publish(ev("Long"), &long).await.unwrap();
        rec.publish(ev("Long"), &long).await.unwrap();
        let l = events_of(&events, "Long").await;
        assert_eq!(l.len(), 1);
        assert!(l[0].name_any().starts_with("tenantdb-"));
        assert_eq!(l[0].series.as_ref().map(|s| s.count), Some(2));
    }
}
