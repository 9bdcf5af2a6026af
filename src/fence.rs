//! The leadership fence: with leader election on, a replica may act (SQL statements, Kubernetes
//! API writes) only while it can be sure that it still holds the Lease.
//!
//! The elector moves a local deadline forward after every successful acquisition or renewal:
//! `request sent + lease duration − safety margin`, measured on the monotonic clock. Another
//! replica can take the Lease over at the earliest `renewTime + lease duration` on *its* clock, so
//! the margin covers clock skew between the replicas and the time between a check and the
//! statement it guards (see [`crate::leader::LeaseConfig::safety_margin`]). Every code path that
//! writes calls [`check`] right before acting: the PostgreSQL admin pools on every acquire, the
//! migration engine before each step and before commit, the provisioning steps, and the Kubernetes
//! client on every mutating request. Once the deadline passes, [`check`] fails (the process then
//! cancels its in-flight work and exits). A process that was frozen (`SIGSTOP`, a long GC-like
//! pause, a VM migration) notices at its very next check, because the monotonic clock kept running.
//!
//! Without leader election the fence is never armed and [`check`] always passes.

use std::sync::Mutex;
use std::time::Instant;

/// The process-wide fence (leadership is a property of the process).
static GLOBAL: Fence = Fence::new();

/// A fence: unarmed (always open) until [`Fence::arm`]; then open until its deadline.
#[derive(Debug)]
pub struct Fence(Mutex<State>);

#[derive(Debug)]
struct State {
    armed: bool,
    deadline: Option<Instant>,
}

/// The fence has passed: this replica can no longer be sure that it holds the leader Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "leadership fence passed: this replica can no longer be sure it holds the leader Lease; not acting"
)]
pub struct Fenced;

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

impl Fence {
    /// An unarmed fence.
    pub const fn new() -> Self {
        Fence(Mutex::new(State {
            armed: false,
            deadline: None,
        }))
    }

    /// Arms the fence with a deadline (replacing any earlier one).
    pub fn arm(&self, deadline: Instant) {
        if let Ok(mut s) = self.0.lock() {
            s.armed = true;
            s.deadline = Some(deadline);
        }
    }

    /// Moves the deadline forward (never backwards); arms the fence.
    pub fn extend(&self, deadline: Instant) {
        if let Ok(mut s) = self.0.lock() {
            s.armed = true;
            if s.deadline.is_none_or(|d| d < deadline) {
                s.deadline = Some(deadline);
            }
        }
    }

    /// Closes the fence now: every later [`Fence::check`] fails.
    pub fn close(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.armed = true;
            s.deadline = Some(Instant::now());
        }
    }

    /// The deadline, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.0
            .lock()
            .ok()
            .and_then(|s| s.deadline.filter(|_| s.armed))
    }

    /// Whether acting is allowed now.
    pub fn check(&self) -> Result<(), Fenced> {
        let Ok(s) = self.0.lock() else {
            // A poisoned lock means a panic while holding it: do not act.
            return Err(Fenced);
        };
        if !s.armed {
            return Ok(());
        }
        match s.deadline {
            Some(d) if Instant::now() < d => Ok(()),
            _ => Err(Fenced),
        }
    }
}

/// Arms the process's fence (leadership acquired) with its first deadline.
pub fn arm(deadline: Instant) {
    GLOBAL.arm(deadline);
}

/// Moves the process's deadline forward after a successful renewal.
pub fn extend(deadline: Instant) {
    GLOBAL.extend(deadline);
}

/// Closes the process's fence now (leadership given up or lost).
pub fn close() {
    GLOBAL.close();
}

/// The process's deadline, if leader election armed the fence.
pub fn deadline() -> Option<Instant> {
    GLOBAL.deadline()
}

/// Whether this process may act now. Always `Ok` without leader election.
pub fn check() -> Result<(), Fenced> {
    GLOBAL.check()
}

/// A layer for the Kubernetes client's service stack: every mutating request (anything but
/// `GET`/`HEAD`/`OPTIONS`) passes [`check`] first and fails with [`Fenced`] otherwise, so no API
/// write leaves a replica that may have lost the Lease — the finalizer helper's patches, the Event
/// recorder and the Lease renewal included.
#[derive(Clone, Copy, Debug, Default)]
pub struct FenceLayer;

impl<S> tower_layer::Layer<S> for FenceLayer {
    type Service = FenceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        FenceService { inner }
    }
}

/// The service of [`FenceLayer`].
#[derive(Clone, Debug)]
pub struct FenceService<S> {
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower_service::Service<http::Request<B>> for FenceService<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let read = matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if !read && let Err(f) = check() {
            return Box::pin(async move { Err(Box::new(f) as BoxError) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fence_opens_extends_and_closes() {
        let f = Fence::new();
        assert!(f.check().is_ok(), "unarmed: open");
        let now = Instant::now();
        f.arm(now + Duration::from_secs(60));
        assert!(f.check().is_ok());
        f.extend(now + Duration::from_secs(30));
        assert_eq!(
            f.deadline(),
            Some(now + Duration::from_secs(60)),
            "never backwards"
        );
        f.arm(now - Duration::from_millis(1));
        assert_eq!(f.check(), Err(Fenced), "past the deadline");
        f.extend(now + Duration::from_secs(60));
        assert!(f.check().is_ok());
        f.close();
        assert_eq!(f.check(), Err(Fenced));
        assert!(
            check().is_ok(),
            "the process fence is unarmed in unit tests"
        );
    }
}
