//! Rollouts run as background tasks, not inside a reconcile.
//!
//! A fleet rollout can take as long as its tenants' migrations take (500 tenants, minutes). Run
//! inside a reconcile it would hold one of the controller's `--concurrency` slots for all that
//! time, so other TenantMigrations would wait behind it. Instead a reconcile that finds work
//! starts one *pass* as a task ([`Rollouts::start`]) and returns at once; the task migrates the
//! tenants (bounded by `maxParallel`), writes progress to status in batches and, when it is done,
//! records its result ([`PassResult`]) and triggers a reconcile of its TenantMigration, which
//! renders the verdict, emits Events and decides what happens next (done, failed, another pass,
//! or a retry after the backoff).
//!
//! While a pass runs, reconciles of its TenantMigration return immediately (no second pass, no
//! status write of their own). The task reads the controller's cache before starting each
//! tenant: a deleted TenantMigration stops, a changed spec stops (or pauses), shutdown stops.
//! At most `--concurrency` passes run at once; on shutdown the controller waits for running
//! passes to finish their in-flight tenants.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc as fmpsc;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::crd::TenantMigration;

/// How a pass ended, for the reconcile that follows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassResult {
    /// A tenant whose migration hit a transient problem (connection, lock, leadership), with
    /// its message: the next pass waits for the TenantMigration's backoff.
    pub transient: Option<String>,
    /// Tenants the pass migrated (any outcome).
    pub tenants: usize,
}

/// The running and finished passes of this process.
#[derive(Debug)]
pub struct Rollouts {
    running: Mutex<HashMap<String, JoinHandle<()>>>,
    finished: Mutex<HashMap<String, PassResult>>,
    trigger: fmpsc::UnboundedSender<ObjectRef<TenantMigration>>,
    permits: Arc<Semaphore>,
    /// How often a running pass writes its progress to status (at most).
    pub flush_interval: Duration,
}

impl Rollouts {
    /// A registry allowing `max_running` passes at once, and the stream of TenantMigrations to
    /// reconcile because their pass ended (for `Controller::reconcile_on`).
    pub fn new(
        max_running: usize,
        flush_interval: Duration,
    ) -> (
        Arc<Self>,
        fmpsc::UnboundedReceiver<ObjectRef<TenantMigration>>,
    ) {
        let (tx, rx) = fmpsc::unbounded();
        (
            Arc::new(Rollouts {
                running: Mutex::new(HashMap::new()),
                finished: Mutex::new(HashMap::new()),
                trigger: tx,
                permits: Arc::new(Semaphore::new(max_running.max(1))),
                flush_interval,
            }),
            rx,
        )
    }

    /// Whether a pass of `key` is running.
    pub fn is_running(&self, key: &str) -> bool {
        self.running
            .lock()
            .map(|m| m.get(key).is_some_and(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// The result of the last pass of `key`, once (the reconcile after it takes it).
    pub fn take_finished(&self, key: &str) -> Option<PassResult> {
        self.finished.lock().ok()?.remove(key)
    }

    /// Keeps a result that was taken but not used (the reconcile had to wait for its cache).
    pub fn put_back(&self, key: &str, result: PassResult) {
        if let Ok(mut f) = self.finished.lock() {
            f.entry(key.to_string()).or_insert(result);
        }
    }

    /// A slot for one more pass, if fewer than the maximum are running.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Starts `pass` for the TenantMigration `oref` (holding `slot` until it ends); when it ends
    /// its result is kept for [`Rollouts::take_finished`] and a reconcile is triggered, of it and
    /// of the TenantMigrations `also` names then (whether or not it still exists).
    pub fn start(
        self: &Arc<Self>,
        key: String,
        oref: ObjectRef<TenantMigration>,
        slot: OwnedSemaphorePermit,
        pass: impl Future<Output = PassResult> + Send + 'static,
        also: impl FnOnce() -> Vec<ObjectRef<TenantMigration>> + Send + 'static,
    ) {
        let me = self.clone();
        let task_key = key.clone();
        let handle = tokio::spawn(async move {
            let result = pass.await;
            drop(slot);
            if let Ok(mut f) = me.finished.lock() {
                f.insert(task_key.clone(), result);
            }
            if let Ok(mut r) = me.running.lock() {
                r.remove(&task_key);
            }
            debug!(key = %task_key, "rollout pass ended");
            let _ = me.trigger.unbounded_send(oref);
            for other in also() {
                let _ = me.trigger.unbounded_send(other);
            }
        });
        if let Ok(mut r) = self.running.lock() {
            r.insert(key, handle);
        }
    }

    /// Forgets finished results of TenantMigrations that are gone (`live` answers for a key).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        if let Ok(mut f) = self.finished.lock() {
            f.retain(|k, _| live(k));
        }
    }

    /// Waits for every running pass (shutdown: they start no new tenant and finish the running
    /// ones).
    pub async fn join(&self) {
        let handles: Vec<JoinHandle<()>> = match self.running.lock() {
            Ok(mut r) => r.drain().map(|(_, h)| h).collect(),
            Err(_) => Vec::new(),
        };
        for h in handles {
            let _ = h.await;
        }
    }

    /// Cancels every running pass at once (leadership lost: nothing may run any more).
    pub fn abort_all(&self) {
        if let Ok(r) = self.running.lock() {
            for h in r.values() {
                h.abort();
            }
        }
    }
}
