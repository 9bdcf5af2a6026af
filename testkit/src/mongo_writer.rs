//! A MongoDB writer for move tests: inserts sequence-numbered documents through a Tenant's
//! Secret, as an application would — after any error it re-reads the Secret (a move points it
//! at another server) and reconnects. Every write gets its own number, so that afterwards the
//! acknowledged ones can be checked to exist exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use mongodb::Client;
use mongodb::bson::{Document, doc};

/// What the writer saw so far.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Numbers of the acknowledged inserts.
    pub acked: Vec<i64>,
    /// Inserts (or connections) that failed.
    pub refused: u64,
    /// The `mongodbUri` it writes through now.
    pub uri: String,
    /// Inserts acknowledged since it last switched to another URI.
    pub acked_since_switch: u64,
}

/// The running writer (see the module documentation).
pub struct SeqWriter {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<Written>>,
    task: tokio::task::JoinHandle<()>,
}

impl SeqWriter {
    /// Starts inserting `{i: <n>}` into `collection` of `database` with the `mongodbUri` of the
    /// Secret `secret` (read through `secrets`). `reconnect_each`: a new connection (and login)
    /// for every insert — the SecantusDB stand-in applies a user's roles when it authenticates,
    /// so a connection kept open would go on writing through a role change that a real mongod
    /// applies to connected sessions at once (tests/README.md, MongoDB).
    pub fn start(
        secrets: Api<Secret>,
        secret: &str,
        database: &str,
        collection: &str,
        reconnect_each: bool,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(Written::default()));
        let (secret, database, collection) = (
            secret.to_string(),
            database.to_string(),
            collection.to_string(),
        );
        let task = tokio::spawn({
            let (stop, state) = (stop.clone(), state.clone());
            async move {
                let mut n = 0i64;
                let mut client: Option<(String, Client)> = None;
                while !stop.load(Ordering::Relaxed) {
                    if client.is_none() {
                        let uri = secrets
                            .get_opt(&secret)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|s| tenantdb::secret::read_key(&s, "mongodbUri"));
                        if let Some(uri) = uri
                            && let Ok(c) = crate::mongo::connect(&uri).await
                        {
                            client = Some((uri, c));
                        }
                    }
                    let Some((uri, c)) = &client else {
                        state.lock().unwrap().refused += 1;
                        // Pacing between attempts, not a wait for a state.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    n += 1;
                    let r = c
                        .database(&database)
                        .collection::<Document>(&collection)
                        .insert_one(doc! {"i": n})
                        .await;
                    {
                        let mut s = state.lock().unwrap();
                        if r.is_ok() {
                            if s.uri != *uri {
                                s.uri = uri.clone();
                                s.acked_since_switch = 0;
                            }
                            s.acked.push(n);
                            s.acked_since_switch += 1;
                        } else {
                            s.refused += 1;
                        }
                    }
                    if (r.is_err() || reconnect_each)
                        && let Some((_, c)) = client.take()
                    {
                        c.shutdown().await;
                    }
                    if r.is_err() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                if let Some((_, c)) = client.take() {
                    c.shutdown().await;
                }
            }
        });
        Self { stop, state, task }
    }

    /// What it saw so far.
    pub fn written(&self) -> Written {
        self.state.lock().unwrap().clone()
    }

    /// Stops it and returns what it saw.
    pub async fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        let state = self.state.clone();
        self.task.await.unwrap();
        state.lock().unwrap().clone()
    }
}
