//! Leader election with a `coordination.k8s.io/v1` Lease (the client-go protocol): only the holder
//! of the Lease runs the controllers. Updates use the Lease's resourceVersion, so two candidates can
//! never both win a round. A leader that cannot renew within the lease duration stops its
//! controllers (and the process exits so that it restarts as a candidate).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{debug, info, warn};

/// Election settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace (the operator's namespace).
    pub namespace: String,
    /// This candidate's identity (pod name + a random suffix).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and candidates retry.
    pub retry_period: Duration,
}

/// Outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (acquired or renewed).
    Held,
    /// Someone else holds a valid lease.
    HeldByOther,
}

/// A candidate for the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Whether a lease held by someone else has expired at `now` (pure).
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renew) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renew
        .checked_add(SignedDuration::from_secs(secs))
        .map(|deadline| deadline <= now)
        .unwrap_or(true)
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// Identity of this candidate.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    fn spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let taking_over = previous
            .and_then(|p| p.holder_identity.as_deref())
            .is_none_or(|h| h != self.config.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: if taking_over {
                Some(now_micro())
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(now_micro()),
            lease_transitions: Some(if taking_over && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..Default::default()
        }
    }

    /// One round: create, renew or take over the lease. Conflicts mean someone else won.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let name = &self.config.name;
        match self.api.get_opt(name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Held),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let mine = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
                let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
                if !mine && !free && !expired(&spec, Timestamp::now()) {
                    return Ok(Attempt::HeldByOther);
                }
                lease.spec = Some(self.spec(Some(&spec)));
                // `replace` carries the resourceVersion we read: a concurrent winner makes this 409.
                match self.api.replace(name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Held),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) {
        let mut logged = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
                    return;
                }
                Ok(Attempt::HeldByOther) => {
                    if !logged {
                        info!(lease = %self.config.name, "standing by: another instance is leader");
                        logged = true;
                    }
                }
                Err(e) => warn!(error = %e, "leader election: lease request failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease duration (or someone else
    /// took it); then returns, meaning leadership is lost.
    pub async fn hold(&self) {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => {
                    debug!("lease renewed");
                    last_ok = tokio::time::Instant::now();
                }
                Ok(Attempt::HeldByOther) => {
                    warn!("leadership lost: another instance holds the lease");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    // Stop before the lease can expire, so two leaders never overlap.
                    if last_ok.elapsed() + self.config.retry_period >= self.config.lease_duration {
                        warn!("leadership lost: could not renew the lease in time");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up (graceful shutdown), so a standby takes over without waiting.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let mine = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.config.identity.as_str());
            if mine {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                    spec.renew_time = None;
                }
                if let Err(e) = self
                    .api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                {
                    debug!(error = %e, "could not release the lease");
                } else {
                    info!("lease released");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        let mut spec = LeaseSpec {
            renew_time: Some(MicroTime("2026-01-01T00:00:00Z".parse().unwrap())),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(expired(&spec, now));
        spec.lease_duration_seconds = Some(60);
        assert!(!expired(&spec, now));
        spec.renew_time = None;
        assert!(expired(&spec, now));
    }
}
