//! State shared by every request handler ([`Shared`]) and the request/authorization counters it
//! keeps. A leaf below `http`, `watch` and `server`: handlers depend on it, the server builds it,
//! and nothing here depends back on them.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

use crate::auth::{Tokens, UserInfo};
use crate::store::State;

/// Key of one request counter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatKey {
    /// The authenticated user (`system:serviceaccount:<ns>:<name>`, `tenantdb-admin`, …).
    pub user: String,
    /// get / list / watch / create / update / patch / delete / deletecollection
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// "" or "status".
    pub subresource: String,
}

/// A snapshot of the request counters (cheap to clone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub(crate) counts: Arc<BTreeMap<StatKey, u64>>,
}

impl Stats {
    /// Requests with this verb on this resource (any group). `subresource`: `None` = any,
    /// `Some("")` = the main resource only, `Some("status")` = the status subresource.
    /// `verb` may be `"*"` for all verbs.
    pub fn count(&self, verb: &str, resource: &str, subresource: Option<&str>) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| {
                (verb == "*" || k.verb == verb)
                    && (resource == "*" || k.resource == resource)
                    && subresource.is_none_or(|s| k.subresource == s)
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// Write requests (create/update/patch/delete/deletecollection) on a resource
    /// (`"*"` for all) and subresource (`None` = any).
    pub fn writes(&self, resource: &str, subresource: Option<&str>) -> u64 {
        ["create", "update", "patch", "delete", "deletecollection"]
            .iter()
            .map(|v| self.count(v, resource, subresource))
            .sum()
    }

    /// All counted requests.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Only the requests of one user (e.g. the operator's ServiceAccount).
    pub fn of_user(&self, user: &str) -> Stats {
        Stats {
            counts: Arc::new(
                self.counts
                    .iter()
                    .filter(|(k, _)| k.user == user)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
            ),
        }
    }

    /// Counters accumulated since an earlier snapshot.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let mut m = BTreeMap::new();
        for (k, v) in self.counts.iter() {
            let d = v.saturating_sub(earlier.counts.get(k).copied().unwrap_or(0));
            if d > 0 {
                m.insert(k.clone(), d);
            }
        }
        Stats {
            counts: Arc::new(m),
        }
    }

    /// Every non-zero counter.
    pub fn entries(&self) -> impl Iterator<Item = (&StatKey, u64)> {
        self.counts.iter().map(|(k, v)| (k, *v))
    }

    /// The JSON served at `/debug/stats`.
    pub fn to_json(&self) -> Value {
        let reqs: Vec<Value> = self
            .counts
            .iter()
            .map(|(k, v)| {
                json!({"user": k.user, "verb": k.verb, "group": k.group, "resource": k.resource, "subresource": k.subresource, "count": v})
            })
            .collect();
        json!({"total": self.total(), "requests": reqs})
    }

    /// Parse the `/debug/stats` JSON (for out-of-process use).
    pub fn from_json(v: &Value) -> Stats {
        let mut m = BTreeMap::new();
        for r in v
            .get("requests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let key = StatKey {
                user: s("user"),
                verb: s("verb"),
                group: s("group"),
                resource: s("resource"),
                subresource: s("subresource"),
            };
            m.insert(key, r.get("count").and_then(Value::as_u64).unwrap_or(0));
        }
        Stats {
            counts: Arc::new(m),
        }
    }
}

/// One authorization check RBAC made (see [`RunningServer::authorization_checks`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuthzCheck {
    pub user: String,
    pub verb: String,
    /// `false` for non-resource requests (`/api`, `/version`, …): `path` is set instead.
    pub resource_request: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// "" at the cluster scope.
    pub namespace: String,
    pub name: String,
    pub path: String,
    pub allowed: bool,
}

/// State shared by all request handlers.
pub struct Shared {
    pub(crate) state: Mutex<State>,
    /// Issued bearer tokens.
    pub tokens: Mutex<Tokens>,
    /// RBAC on (always, except in the emulator's own unit tests).
    pub rbac: bool,
    pub(crate) stats: Mutex<BTreeMap<StatKey, u64>>,
    pub(crate) authz: Mutex<BTreeMap<AuthzCheck, u64>>,
    pub shutdown: watch::Sender<bool>,
    pub addr: SocketAddr,
    /// See [`Config::watch_latency`].
    pub watch_latency: std::time::Duration,
    /// See [`Config::request_latency`].
    pub request_latency: std::time::Duration,
}

impl Shared {
    /// Lock the store. Never hold this across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, user: &str, verb: &str, group: &str, resource: &str, subresource: &str) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let key = StatKey {
            user: user.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
        };
        *s.entry(key).or_insert(0) += 1;
    }

    pub fn record_authorization(
        &self,
        user: &UserInfo,
        a: &crate::rbac::Attributes,
        allowed: bool,
    ) {
        let key = AuthzCheck {
            user: user.name.clone(),
            verb: a.verb.clone(),
            resource_request: a.resource_request,
            group: a.group.clone(),
            resource: a.resource.clone(),
            subresource: a.subresource.clone(),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            path: if a.resource_request {
                String::new()
            } else {
                a.path.clone()
            },
            allowed,
        };
        let mut m = self.authz.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_insert(0) += 1;
    }

    pub fn stats_snapshot(&self) -> Stats {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        Stats {
            counts: Arc::new(s.clone()),
        }
    }
}
