//! What a move's `status.move.message` says when a step fails: which of its servers cannot be
//! reached and where the tenant is meanwhile; a move cancelled by its placement keeps saying so
//! through the errors of its rollback (a cancelled move is started again without the pause after
//! a failure); when a "not started" record says nothing new.

use crate::crd::{MovePhase, MoveStatus};
use crate::error::{Error, first_line};
use crate::pg::PgAdmin;

/// How the message of a move cancelled by its placement begins.
pub const CANCELLED: &str = "cancelled: ";
/// Between a cancelled move's reason and what its rollback waits for.
const MEANWHILE: &str = "; meanwhile: ";

/// The message of a failed step: which of the move's servers cannot be reached (after any error
/// that a retry may cure, a quick TCP probe of both; `None`: not known) and where the tenant is
/// meanwhile; otherwise the error.
pub async fn explain(
    m: &MoveStatus,
    source: Option<&PgAdmin>,
    target: Option<&PgAdmin>,
    e: &Error,
) -> String {
    let error = first_line(&e.to_string());
    if e.is_permanent() {
        return error;
    }
    let (a, b) = tokio::join!(probe(source), probe(target));
    // The tenant's home: the source until the commit point.
    let (home, home_down) = if m.phase == MovePhase::CleaningUp {
        (&m.to, b.is_some())
    } else {
        (&m.from, a.is_some())
    };
    let down: Vec<String> = [("source", &m.from, a), ("target", &m.to, b)]
        .into_iter()
        .filter_map(|(role, name, why)| {
            why.map(|w| format!("{role} server {name} is unreachable ({w})"))
        })
        .collect();
    if down.is_empty() {
        return error;
    }
    let tenant = if home_down {
        format!("the tenant is unavailable until {home} is back")
    } else {
        format!("the tenant is served on {home} meanwhile")
    };
    first_line(&format!("{}: the move waits; {tenant}", down.join(" and ")))
}

async fn probe(pg: Option<&PgAdmin>) -> Option<String> {
    match pg {
        Some(pg) => super::sql::unreachable(pg).await,
        None => Some("not known".to_string()),
    }
}

/// A failed step's message: `why`, after the reason of a cancelled move.
pub fn keep_reason(previous: Option<&str>, why: &str) -> String {
    match previous.filter(|p| p.starts_with(CANCELLED)) {
        Some(p) => {
            let reason = p.split_once(MEANWHILE).map_or(p, |(r, _)| r);
            first_line(&format!("{reason}{MEANWHILE}{why}"))
        }
        None => why.to_string(),
    }
}

/// The message of a finished move: a cancelled one's reason without what it waited for.
pub fn settled(message: String) -> String {
    match message.split_once(MEANWHILE) {
        Some((reason, _)) if message.starts_with(CANCELLED) => reason.to_string(),
        _ => message,
    }
}

/// Whether two "not started" records say the same but for their numbers (the free counts and
/// the other moves in a room refusal).
pub fn same_hold(a: &MoveStatus, b: &MoveStatus) -> bool {
    let words = |m: &MoveStatus| -> Option<String> {
        Some(
            m.message
                .as_deref()?
                .replace(|c: char| c.is_ascii_digit(), ""),
        )
    };
    a.phase == b.phase
        && a.started_at.is_none()
        && b.started_at.is_none()
        && a.from == b.from
        && a.to == b.to
        && matches!((words(a), words(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_move_keeps_its_reason() {
        let c = format!("{CANCELLED}spec.placement allows server a again");
        let once = keep_reason(Some(&c), "target server b is unreachable");
        assert!(once.starts_with(&c) && once.ends_with("target server b is unreachable"));
        let twice = keep_reason(Some(&once), "pool timed out");
        assert_eq!(twice, format!("{c}{MEANWHILE}pool timed out"));
        assert_eq!(settled(twice), c);
        assert_eq!(keep_reason(Some("copying"), "x"), "x");
        assert_eq!(settled("x; meanwhile: y".into()), "x; meanwhile: y");
    }

    #[test]
    fn a_hold_record_is_the_same_but_for_its_numbers() {
        let held = |to: &str, msg: &str| MoveStatus {
            phase: MovePhase::RolledBack,
            from: "a".into(),
            to: to.into(),
            message: Some(msg.into()),
            ..Default::default()
        };
        let one = held(
            "c",
            "not started: server c has 1 free logical replication workers (x), a move needs 3 with 1 other move(s) copying",
        );
        let two = held(
            "c",
            "not started: server c has 0 free logical replication workers (x), a move needs 3 with 2 other move(s) copying",
        );
        assert!(same_hold(&one, &two));
        // Another kind short, another target, a started move: news.
        let origins = held(
            "c",
            "not started: server c has 1 free replication origins (x), a move needs 3 with 1 other move(s) copying",
        );
        assert!(!same_hold(&one, &origins));
        assert!(!same_hold(
            &one,
            &held("b", one.message.as_deref().unwrap_or_default())
        ));
        let started = MoveStatus {
            started_at: Some("2026-12-06T00:00:00Z".into()),
            ..two.clone()
        };
        assert!(!same_hold(&one, &started));
    }
}
