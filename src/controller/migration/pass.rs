//! A rollout pass as a background task ([`Rollouts::start`]): runs the [`Rollout`] over its work,
//! applies the engine's events to the progress (Events for failed tenants and passed canaries),
//! writes the status in batches and reports how it ended ([`PassResult`]).

use std::time::Duration;

use kube::Resource;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::report::Reconciler;
use super::*;
use crate::crd::TenantMigration;

/// One pass of a rollout, run as a background task ([`Rollouts::start`]): migrates `work`,
/// writes progress in batches, and reports how it ended.
pub(crate) struct Pass<M: TenantMigrator> {
    pub(crate) rollout: Rollout<M>,
    pub(crate) work: Vec<RolloutTenant>,
    pub(crate) store: Store<TenantMigration>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) flush_interval: Duration,
    pub(crate) same_revision: bool,
    pub(crate) revision: String,
    pub(crate) target: i64,
    pub(crate) progress: Progress,
    pub(crate) input: VerdictInput,
    pub(crate) canary_tenants: Vec<String>,
    pub(crate) canary_passed: bool,
    pub(crate) canary_pending: bool,
    /// The run holds every live canary still to migrate ([`super::canary::Gate::all_in_run`]):
    /// only then does the run's canaries passing release the fleet.
    pub(crate) canaries_release_fleet: bool,
}

impl<M: TenantMigrator> Pass<M> {
    pub(crate) async fn run(self, mut rec: Reconciler) -> PassResult {
        let Pass {
            rollout,
            work,
            store,
            shutdown,
            flush_interval,
            same_revision,
            revision,
            target,
            mut progress,
            mut input,
            canary_tenants,
            mut canary_passed,
            canary_pending,
            canaries_release_fleet,
        } = self;
        // A run without every canary (one waits: not Ready, moving) cannot pass the gate: the
        // reconcile after it looks at the canaries again.
        let canaries = CanaryScope {
            tenants: &canary_tenants,
            release_fleet: canaries_release_fleet,
        };
        let oref = ObjectRef::from_obj(rec.tm.as_ref());
        let generation = rec.generation;
        // Checked before each tenant starts: deleted → stop; new generation → stop (or pause);
        // shutdown → stop.
        let control = || {
            if *shutdown.borrow() {
                return Control::Stop;
            }
            match store.get(&oref) {
                // Deleted (TenantMigrations have no finalizer: gone from the cache means gone).
                None => Control::Stop,
                Some(cur) if cur.meta().generation != generation => {
                    if cur.spec.strategy.paused {
                        Control::Pause
                    } else {
                        Control::Stop
                    }
                }
                Some(_) => Control::Continue,
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let run = rollout.run(work, control, Some(&tx));
        tokio::pin!(run);
        let mut ticker = tokio::time::interval(flush_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        let prev = rec.prev.clone();
        input.pass_running = true;
        let render = |progress: &Progress, input: &mut VerdictInput, canary_passed: bool| {
            input.counts = progress.counts();
            input.canary_pending = canary_pending && !canary_passed;
            render_status(
                &prev,
                same_revision,
                &revision,
                generation,
                target,
                progress,
                &verdict(input),
                &canary_tenants,
                canary_passed,
                now_seconds(),
            )
        };
        let summary = loop {
            tokio::select! {
                summary = &mut run => break summary,
                Some(ev) = rx.recv() => {
                    let flush_now = handle_event(&mut rec, &mut progress, &ev, &mut canary_passed, &canaries).await;
                    dirty = true;
                    if flush_now {
                        let status = render(&progress, &mut input, canary_passed);
                        if let Err(e) = rec.write(status).await { warn!(error = %e, "progress status write failed"); }
                        dirty = false;
                    }
                }
                _ = ticker.tick() => {
                    if dirty {
                        let status = render(&progress, &mut input, canary_passed);
                        if let Err(e) = rec.write(status).await { warn!(error = %e, "progress status write failed"); }
                        dirty = false;
                    }
                }
            }
        };
        while let Ok(ev) = rx.try_recv() {
            handle_event(&mut rec, &mut progress, &ev, &mut canary_passed, &canaries).await;
        }
        // The last progress, so the reconcile that follows sees every finished tenant.
        let status = render(&progress, &mut input, canary_passed);
        if let Err(e) = rec.write(status).await {
            warn!(error = %e, "progress status write failed");
        }
        let transient = summary
            .outcomes
            .iter()
            .find(|o| o.kind == OutcomeKind::Retry)
            .map(|o| format!("tenant {}: {}", o.name, o.message));
        info!(
            tenants = summary.outcomes.len(),
            succeeded = summary.count(OutcomeKind::Succeeded),
            failed = summary.count(OutcomeKind::Failed) + summary.count(OutcomeKind::Blocked),
            retry = summary.count(OutcomeKind::Retry),
            deferred = summary.count(OutcomeKind::Deferred),
            halted = ?summary.halted,
            "rollout pass done"
        );
        PassResult {
            transient,
            tenants: summary.outcomes.len(),
        }
    }
}

/// The canaries of a pass: all of this revision's, and whether the run holds every one still to
/// migrate.
pub(crate) struct CanaryScope<'a> {
    pub(crate) tenants: &'a [String],
    pub(crate) release_fleet: bool,
}

/// Applies one rollout event to the progress; returns whether status should be written now.
pub(crate) async fn handle_event(
    rec: &mut Reconciler,
    progress: &mut Progress,
    ev: &RolloutEvent,
    canary_passed: &mut bool,
    canaries: &CanaryScope<'_>,
) -> bool {
    match ev {
        RolloutEvent::Started(name) => {
            progress.started(name);
            false
        }
        RolloutEvent::Finished(o) => {
            progress.finished(o, now_seconds());
            match o.kind {
                OutcomeKind::Succeeded => rec.ctx.metrics().migration_tenant_finished(true),
                OutcomeKind::Failed | OutcomeKind::Blocked => {
                    rec.ctx.metrics().migration_tenant_finished(false);
                    let reason = if o.kind == OutcomeKind::Blocked {
                        "TenantBlocked"
                    } else {
                        "TenantFailed"
                    };
                    rec.event(
                        EventType::Warning,
                        reason,
                        format!("Tenant {}: {}", o.name, o.message),
                    )
                    .await;
                }
                OutcomeKind::Retry | OutcomeKind::Deferred => {}
            }
            false
        }
        RolloutEvent::CanaryPassed if !canaries.release_fleet => {
            info!("the canaries of this pass succeeded; the others have not run yet");
            true
        }
        RolloutEvent::CanaryPassed => {
            *canary_passed = true;
            rec.event(
                EventType::Normal,
                "CanaryPassed",
                format!(
                    "canary tenants {} succeeded: releasing the fleet",
                    canaries.tenants.join(", ")
                ),
            )
            .await;
            true
        }
    }
}
