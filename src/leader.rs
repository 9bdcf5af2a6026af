//! Leader election with a `coordination.k8s.io/v1` Lease (the client-go protocol): only the holder
//! of the Lease runs the controllers. Updates use the Lease's resourceVersion, so two candidates can
//! never both win a round.
//!
//! Two replicas never act at once:
//! - a candidate takes a Lease held by another only after it has seen the same record (holder and
//!   `renewTime`) unchanged for a whole lease duration **on its own monotonic clock** (like
//!   client-go), so clock skew between the replicas does not shorten the wait;
//! - the holder moves its [`crate::fence`] deadline to `renewal stamped + lease duration −
//!   safety margin` after every successful renewal, and acts (SQL, API writes) only before it:
//!   its deadline always falls before the earliest moment another replica may take over
//!   ([`LeaseConfig::safety_margin`] covers clock-rate drift and the time from a check to the
//!   statement it guards). Renewals are retried every `retry_period`; when the deadline passes
//!   (renewals failing, or the process frozen), [`LeaderElector::hold`] returns and the process
//!   cancels its work and exits.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
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
    /// The part of the lease duration the holder gives up (see [`LeaseConfig::safety_margin`]).
    pub clock_skew: Duration,
}

impl LeaseConfig {
    /// How much earlier than the lease's expiry the holder stops acting: the configured clock
    /// skew allowance plus one second between a fence check and the statement it guards.
    pub fn safety_margin(&self) -> Duration {
        self.clock_skew + Duration::from_secs(1)
    }

    /// The fence deadline after a renewal stamped at `stamped`.
    pub fn fence_deadline(&self, stamped: Instant) -> Instant {
        stamped + self.lease_duration.saturating_sub(self.safety_margin())
    }

    /// Refuses settings under which the holder could not renew before its own fence passes.
    pub fn validate(&self) -> Result<(), String> {
        if self.safety_margin() + self.retry_period * 2 > self.lease_duration {
            return Err(format!(
                "lease duration {:?} is too short for the retry period {:?} and the safety margin {:?} (need duration ≥ margin + 2 × retry)",
                self.lease_duration,
                self.retry_period,
                self.safety_margin()
            ));
        }
        Ok(())
    }
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
    /// The last record of another holder seen (holder, renewTime) and when it was first seen.
    observed: Mutex<Option<(String, Option<MicroTime>, Instant)>>,
}

/// Whether another holder's record (holder, `renewTime`) has been seen unchanged for `duration`
/// on the local monotonic clock; updates the observation (pure apart from `observed`).
pub fn observed_expired(
    observed: &mut Option<(String, Option<MicroTime>, Instant)>,
    holder: &str,
    renew: Option<&MicroTime>,
    duration: Duration,
    now: Instant,
) -> bool {
    match observed {
        Some((h, r, at)) if h == holder && r.as_ref() == renew => {
            now.duration_since(*at) >= duration
        }
        _ => {
            *observed = Some((holder.to_string(), renew.cloned(), now));
            false
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
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

    /// One round: create, renew or take over the lease. Conflicts mean someone else won. On
    /// success the fence deadline moves forward.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let attempt = self.round().await?;
        Ok(attempt)
    }

    async fn round(&self) -> Result<Attempt, kube::Error> {
        let name = &self.config.name;
        match self.api.get_opt(name).await? {
            None => {
                let stamped = Instant::now();
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => {
                        crate::fence::extend(self.config.fence_deadline(stamped));
                        Ok(Attempt::Held)
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldByOther),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let mine = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
                let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
                if !mine && !free {
                    let holder = spec.holder_identity.clone().unwrap_or_default();
                    let seen_long_enough = self.observed.lock().is_ok_and(|mut o| {
                        observed_expired(
                            &mut o,
                            &holder,
                            spec.renew_time.as_ref(),
                            self.config.lease_duration,
                            Instant::now(),
                        )
                    });
                    if !seen_long_enough {
                        return Ok(Attempt::HeldByOther);
                    }
                }
                if mine && crate::fence::check().is_err() {
                    // Our own fence passed (renewals failed, or the process was frozen): we may
                    // already have been replaced; never renew from here.
                    return Ok(Attempt::HeldByOther);
                }
                let stamped = Instant::now();
                lease.spec = Some(self.spec(Some(&spec)));
                // `replace` carries the resourceVersion we read: a concurrent winner makes this 409.
                match self.api.replace(name, &PostParams::default(), &lease).await {
                    Ok(_) => {
                        crate::fence::extend(self.config.fence_deadline(stamped));
                        Ok(Attempt::Held)
                    }
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

    /// Renews the lease every retry period until someone else holds it or the fence deadline
    /// passes (renewals failing for too long, or this process frozen); then returns, meaning
    /// leadership is lost. The fence is closed at once.
    pub async fn hold(&self) {
        loop {
            let deadline = crate::fence::deadline();
            let next = tokio::time::Instant::now() + self.config.retry_period;
            match deadline {
                Some(d) if tokio::time::Instant::from_std(d) < next => {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
                }
                _ => tokio::time::sleep_until(next).await,
            }
            if crate::fence::check().is_err() {
                warn!("leadership lost: the lease could not be renewed before the fence deadline");
                crate::fence::close();
                return;
            }
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held) => debug!("lease renewed"),
                Ok(Attempt::HeldByOther) => {
                    warn!("leadership lost: another instance holds the lease");
                    crate::fence::close();
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "lease renewal failed; retrying until the fence deadline")
                }
            }
        }
    }

    /// Gives the lease up (graceful shutdown), so a standby takes over without waiting. The fence
    /// is closed first: nothing acts once the release may have been seen.
    pub async fn release(&self) {
        if crate::fence::check().is_err() {
            return;
        }
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
                // Released (or maybe released): nothing acts any more.
                crate::fence::close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_holder_expires_only_after_a_full_duration_of_the_same_record() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let r1 = MicroTime("2026-01-01T00:00:00Z".parse().unwrap());
        let r2 = MicroTime("2026-01-01T00:00:02Z".parse().unwrap());
        let mut seen = None;
        assert!(
            !observed_expired(&mut seen, "a", Some(&r1), d, t0),
            "first sight"
        );
        assert!(!observed_expired(
            &mut seen,
            "a",
            Some(&r1),
            d,
            t0 + Duration::from_secs(14)
        ));
        // A renewal resets the wait, whatever the wall clocks say.
        assert!(!observed_expired(
            &mut seen,
            "a",
            Some(&r2),
            d,
            t0 + Duration::from_secs(16)
        ));
        assert!(!observed_expired(
            &mut seen,
            "a",
            Some(&r2),
            d,
            t0 + Duration::from_secs(30)
        ));
        assert!(observed_expired(
            &mut seen,
            "a",
            Some(&r2),
            d,
            t0 + Duration::from_secs(31)
        ));
        // Another holder: a new wait.
        assert!(!observed_expired(
            &mut seen,
            "b",
            Some(&r2),
            d,
            t0 + Duration::from_secs(40)
        ));
    }

    #[test]
    fn the_fence_deadline_is_before_the_earliest_takeover() {
        let cfg = LeaseConfig {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
            clock_skew: Duration::from_secs(2),
        };
        cfg.validate().unwrap();
        let stamped = Instant::now();
        // A candidate takes over no earlier than a full lease duration after it saw this renewal,
        // which it cannot see before it was stamped.
        let earliest_takeover = stamped + cfg.lease_duration;
        assert!(cfg.fence_deadline(stamped) + cfg.safety_margin() <= earliest_takeover);
        assert_eq!(
            cfg.fence_deadline(stamped),
            stamped + Duration::from_secs(12)
        );
        let short = LeaseConfig {
            lease_duration: Duration::from_secs(4),
            ..cfg
        };
        assert!(short.validate().is_err());
    }
}
