//! A MongoDB writer for move tests: inserts sequence-numbered documents through a Tenant's
//! Secret, as an application would — after any error it re-reads the Secret (a move points it
//! at another server) and reconnects. Every write gets its own number, so that afterwards the
//! acknowledged ones can be checked to exist exactly once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
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

impl Written {
    /// The acknowledged inserts checked against the numbers `found` on a server: those missing
    /// there (`lost`) and those there more than once (`twice`, with their count).
    pub fn check(&self, found: &[i64]) -> Check {
        let mut counts: std::collections::BTreeMap<i64, u32> = Default::default();
        for i in found {
            *counts.entry(*i).or_default() += 1;
        }
        Check {
            lost: self
                .acked
                .iter()
                .copied()
                .filter(|i| !counts.contains_key(i))
                .collect(),
            twice: counts.into_iter().filter(|(_, c)| *c > 1).collect(),
        }
    }
}

/// What [`Written::check`] found.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// Acknowledged inserts that are not there.
    pub lost: Vec<i64>,
    /// Numbers there more than once, with their count.
    pub twice: Vec<(i64, u32)>,
}

impl Check {
    /// Panics unless every acknowledged insert is there exactly once; `context` (the server,
    /// a seed) goes into the message.
    pub fn assert_exactly_once(&self, written: &Written, context: &str) {
        assert!(
            self.twice.is_empty(),
            "inserts twice ({context}): {:?}",
            &self.twice[..self.twice.len().min(10)]
        );
        assert!(
            self.lost.is_empty(),
            "{} of {} acknowledged inserts lost ({context}, {} refused): {:?}",
            self.lost.len(),
            written.acked.len(),
            written.refused,
            &self.lost[..self.lost.len().min(10)]
        );
    }
}

/// The writer's numbers (`i`) in `collection` of `database`, read as the admin of `admin_uri`.
pub async fn numbers_on(admin_uri: &str, database: &str, collection: &str) -> Vec<i64> {
    let c = crate::mongo::connect(admin_uri).await.unwrap();
    let v = c
        .database(database)
        .collection::<Document>(collection)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<Document>>()
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_i64("i").unwrap())
        .collect();
    c.shutdown().await;
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_sees_lost_and_doubled_inserts() {
        let w = Written {
            acked: vec![1, 2, 3, 4],
            ..Default::default()
        };
        let c = w.check(&[1, 2, 2, 4, 5]);
        assert_eq!(c.lost, vec![3]);
        assert_eq!(c.twice, vec![(2, 2)]);
        let ok = w.check(&[4, 3, 2, 1, 5]);
        assert!(ok.lost.is_empty() && ok.twice.is_empty());
        ok.assert_exactly_once(&w, "all there");
        let r = std::panic::catch_unwind(|| c.assert_exactly_once(&w, "lost and twice"));
        assert!(r.is_err());
    }
}
