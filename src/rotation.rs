//! Pure credential-rotation decisions.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::pg::plan::Slot;

/// Annotation that requests a rotation: any value different from the last handled one.
pub const ROTATE_ANNOTATION: &str = "tenantdb.io/rotate";

/// Default grace period of the previous credentials.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Inputs of the decision.
#[derive(Debug, Clone, Default)]
pub struct RotationInput<'a> {
    /// Current value of the rotate annotation.
    pub annotation: Option<&'a str>,
    /// Annotation value handled by the last rotation (from status).
    pub handled_token: Option<&'a str>,
    /// `spec.credentials.rotateAfter`.
    pub rotate_after: Option<Duration>,
    /// When the active password was last rotated (status), else when the Tenant was created.
    pub last_rotation: Option<Timestamp>,
    /// Whether the Secret already had a password (no rotation before first provisioning).
    pub has_password: bool,
}

/// Why a rotation happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The annotation changed.
    OnDemand(String),
    /// `rotateAfter` elapsed.
    Periodic,
    /// The credentials Secret was deleted while the login roles exist: the new password goes to
    /// the other slot, so whoever still holds the deleted Secret's credentials keeps logging in
    /// for the grace period instead of being cut off at once.
    SecretDeleted,
}

/// Whether to rotate now.
pub fn should_rotate(i: &RotationInput<'_>, now: Timestamp) -> Option<Trigger> {
    if !i.has_password {
        return None;
    }
    if let Some(a) = i.annotation
        && !a.is_empty()
        && Some(a) != i.handled_token
    {
        return Some(Trigger::OnDemand(a.to_string()));
    }
    if let (Some(after), Some(last)) = (i.rotate_after, i.last_rotation) {
        let due = last
            .checked_add(SignedDuration::try_from(after).ok()?)
            .ok()?;
        if now >= due {
            return Some(Trigger::Periodic);
        }
    }
    None
}

/// The end of a grace period starting now.
pub fn grace_end(now: Timestamp, grace: Duration) -> Option<Timestamp> {
    now.checked_add(SignedDuration::try_from(grace).ok()?).ok()
}

/// The grace period still running for the non-active slot, read from PostgreSQL itself: a role
/// that may log in with a `VALID UNTIL` in the future is within its grace period.
pub fn running_grace(
    can_login: bool,
    valid_until: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    valid_until.filter(|t| can_login && *t > now)
}

/// The slot a rotation moves to.
pub fn next_slot(active: Slot) -> Slot {
    active.other()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn on_demand_rotation_fires_once_per_value() {
        let now = ts("2026-01-01T00:00:00Z");
        let mut i = RotationInput {
            annotation: Some("1"),
            has_password: true,
            ..Default::default()
        };
        assert_eq!(should_rotate(&i, now), Some(Trigger::OnDemand("1".into())));
        i.handled_token = Some("1");
        assert_eq!(should_rotate(&i, now), None);
        i.annotation = Some("2");
        assert!(should_rotate(&i, now).is_some());
        // Never before the first password exists.
        i.has_password = false;
        assert_eq!(should_rotate(&i, now), None);
    }

    #[test]
    fn periodic_rotation_fires_when_due() {
        let i = RotationInput {
            rotate_after: Some(Duration::from_secs(3600)),
            last_rotation: Some(ts("2026-01-01T00:00:00Z")),
            has_password: true,
            ..Default::default()
        };
        assert_eq!(should_rotate(&i, ts("2026-01-01T00:59:59Z")), None);
        assert_eq!(
            should_rotate(&i, ts("2026-01-01T01:00:00Z")),
            Some(Trigger::Periodic)
        );
    }

    #[test]
    fn grace_is_read_from_the_role() {
        let now = ts("2026-01-01T00:00:00Z");
        let later = ts("2026-01-01T01:00:00Z");
        assert_eq!(running_grace(true, Some(later), now), Some(later));
        assert_eq!(running_grace(false, Some(later), now), None);
        assert_eq!(running_grace(true, Some(now), later), None);
        assert_eq!(running_grace(true, None, now), None);
        assert_eq!(grace_end(now, Duration::from_secs(3600)), Some(later));
    }
}
