//! Progress bookkeeping (pure): per-tenant states and entries of one revision, their counts, and
//! the bounded list rendered in status.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::crd::{TenantMigrationProgress, TenantMigrationState};

/// How the message of a tenant that hit a transient error (and waits for a later pass) starts.
pub(crate) const RETRYING: &str = "retrying: ";

/// Per-tenant states and entries of one rollout revision, from which status is rendered.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Current state of every selected tenant (counts).
    pub states: BTreeMap<String, TenantMigrationState>,
    /// Entries (unbounded here; bounded when rendered).
    pub entries: BTreeMap<String, TenantMigrationProgress>,
    /// Versions recorded on the Tenants.
    pub recorded: BTreeMap<String, Option<i64>>,
}

/// Counts of a [`Progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Selected tenants.
    pub total: usize,
    /// At the target version.
    pub succeeded: usize,
    /// Failed or blocked.
    pub failed: usize,
    /// Not migrated yet.
    pub pending: usize,
    /// Being migrated.
    pub running: usize,
    /// Left alone on purpose.
    pub skipped: usize,
}

pub(crate) fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

impl Progress {
    /// Sets a tenant's state, with an entry (or without: `message` None removes it).
    pub fn set(&mut self, name: &str, state: TenantMigrationState, message: Option<String>) {
        self.states.insert(name.to_string(), state);
        match message {
            Some(m) => {
                let from = self.recorded.get(name).copied().flatten();
                self.entries.insert(
                    name.to_string(),
                    TenantMigrationProgress {
                        name: name.to_string(),
                        from_version: from,
                        to_version: None,
                        state,
                        message: Some(bounded(&m)),
                        duration_ms: None,
                        finished_at: None,
                    },
                );
            }
            None => {
                self.entries.remove(name);
            }
        }
    }

    /// Records that a tenant started.
    pub fn started(&mut self, name: &str) {
        self.set(
            name,
            TenantMigrationState::Running,
            Some("migrating".into()),
        );
    }

    /// Records a finished tenant.
    pub fn finished(&mut self, o: &TenantOutcome, at: Timestamp) {
        let state = match o.kind {
            OutcomeKind::Succeeded => TenantMigrationState::Succeeded,
            OutcomeKind::Failed => TenantMigrationState::Failed,
            OutcomeKind::Blocked => TenantMigrationState::Blocked,
            OutcomeKind::Retry | OutcomeKind::Deferred => TenantMigrationState::Pending,
        };
        let message = match o.kind {
            OutcomeKind::Retry => format!("{RETRYING}{}", o.message),
            _ => o.message.clone(),
        };
        self.states.insert(o.name.clone(), state);
        self.entries.insert(
            o.name.clone(),
            TenantMigrationProgress {
                name: o.name.clone(),
                from_version: o.from_version,
                to_version: o.to_version,
                state,
                message: Some(bounded(&message)),
                duration_ms: Some(i64::try_from(o.duration.as_millis()).unwrap_or(i64::MAX)),
                finished_at: Some(Time(at)),
            },
        );
    }

    /// Counts over every selected tenant.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.states.len(),
            ..Counts::default()
        };
        for s in self.states.values() {
            match s {
                TenantMigrationState::Succeeded => c.succeeded += 1,
                TenantMigrationState::Failed | TenantMigrationState::Blocked => c.failed += 1,
                TenantMigrationState::Pending => c.pending += 1,
                TenantMigrationState::Running => c.running += 1,
                TenantMigrationState::Skipped => c.skipped += 1,
            }
        }
        c
    }

    /// The bounded entry list: every failed, blocked and running tenant (failed and blocked
    /// ones past the [`MAX_DETAILED_PROBLEMS`] most recent with their name and state only),
    /// plus the [`MAX_LISTED_TENANTS`] most recently finished others (unfinished ones last),
    /// sorted by name; and how many selected tenants are not listed.
    pub fn bounded_entries(&self) -> (Vec<TenantMigrationProgress>, usize) {
        let mut keep = Vec::new();
        let mut others = Vec::new();
        for (name, e) in &self.entries {
            if !self.states.contains_key(name) {
                continue;
            }
            match e.state {
                TenantMigrationState::Failed
                | TenantMigrationState::Blocked
                | TenantMigrationState::Running => keep.push(e.clone()),
                _ => others.push(e.clone()),
            }
        }
        others.sort_by(|a, b| {
            let ta = a.finished_at.as_ref().map(|t| t.0);
            let tb = b.finished_at.as_ref().map(|t| t.0);
            tb.cmp(&ta).then_with(|| a.name.cmp(&b.name))
        });
        others.truncate(MAX_LISTED_TENANTS);
        keep.extend(others);
        keep.sort_by(|a, b| a.name.cmp(&b.name));
        // Failed and blocked tenants stay listed (that is what keeps them from being retried
        // within the revision), but past the most recent few only by name and state: a dry run
        // that finds drift on every tenant of a 10k fleet must still fit in one object. The
        // details kept are of the latest failures (a trimmed entry has no time: it sorts last).
        let mut problems: Vec<usize> = (0..keep.len())
            .filter(|i| {
                matches!(
                    keep[*i].state,
                    TenantMigrationState::Failed | TenantMigrationState::Blocked
                )
            })
            .collect();
        problems.sort_by(|a, b| {
            let t = |i: &usize| keep[*i].finished_at.as_ref().map(|t| t.0);
            t(b).cmp(&t(a)).then_with(|| a.cmp(b))
        });
        for i in problems.into_iter().skip(MAX_DETAILED_PROBLEMS) {
            let e = &mut keep[i];
            *e = TenantMigrationProgress {
                name: std::mem::take(&mut e.name),
                state: e.state,
                ..Default::default()
            };
        }
        let omitted = self.states.len().saturating_sub(keep.len());
        (keep, omitted)
    }
}

pub(crate) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
