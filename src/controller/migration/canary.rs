//! Stage `canary` (pure): which tenants are the canaries of this revision, whether they passed or
//! failed, and which work may start while they gate the fleet.

use std::collections::HashSet;

use super::*;

/// What the canary gate depends on.
pub(crate) struct Input<'a> {
    /// `strategy.canary` (0: no canaries).
    pub canary: usize,
    /// `spec.dryRun` (dry runs have no canaries).
    pub dry_run: bool,
    /// The previous status is of this revision.
    pub same_revision: bool,
    /// The previous status's canary tenants.
    pub prev_canary_tenants: &'a [String],
    /// The previous status's `canaryPassed`.
    pub prev_canary_passed: bool,
    /// Names of the selected tenants this TenantMigration may migrate (not those left to a newer
    /// one): a recorded canary outside them no longer gates the fleet.
    pub selected: HashSet<&'a str>,
    /// Tenants that failed or were blocked earlier in this revision.
    pub failed: &'a HashSet<String>,
    /// Tenants at the target version.
    pub done: &'a HashSet<String>,
}

/// The canary gate of this reconcile.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Gate {
    /// The canary tenants of this revision (chosen once, kept in status).
    pub canary_tenants: Vec<String>,
    /// The canaries passed: the fleet is released.
    pub passed: bool,
    /// They passed in this reconcile (an Event says so).
    pub just_passed: bool,
    /// A canary failed: nothing else starts.
    pub failed: bool,
    /// The canaries still gate the fleet.
    pub pending: bool,
    /// Canaries among the work handed to the rollout (they run first).
    pub canaries_in_run: usize,
    /// Every live canary is in the run or already at the target: the run's canaries passing
    /// releases the fleet. Not so while a canary waits (not Ready, moving): the canaries in the
    /// run passing then releases nothing, and the fleet waits for the others.
    pub all_in_run: bool,
}

impl Gate {
    /// Whether the canaries of the run this gate lets start, all succeeding, release the fleet:
    /// no canary is pending, or every pending one is in the run.
    pub(crate) fn run_can_release_fleet(&self) -> bool {
        !self.pending || self.all_in_run
    }
}

/// Applies the canary gate to `work` (in the order `classify` gives: name order, tenants being
/// retried last): while the canaries are pending, they run first and the rest of the fleet
/// follows only if every canary can start now; the rollout engine releases the others once the
/// canaries succeed.
pub(crate) fn gate(input: &Input<'_>, work: Vec<RolloutTenant>) -> (Gate, Vec<RolloutTenant>) {
    let mut g = Gate::default();
    if input.dry_run || input.canary == 0 {
        return (g, work);
    }
    g.passed = input.same_revision && input.prev_canary_passed;
    g.canary_tenants = if input.same_revision && !input.prev_canary_tenants.is_empty() {
        input.prev_canary_tenants.to_vec()
    } else {
        work.iter()
            .take(input.canary)
            .map(|t| t.name.clone())
            .collect()
    };
    if g.canary_tenants.is_empty() {
        g.passed = true;
        return (g, work);
    }
    if g.passed {
        return (g, work);
    }
    let live: Vec<&String> = g
        .canary_tenants
        .iter()
        .filter(|n| input.selected.contains(n.as_str()))
        .collect();
    g.failed = live.iter().any(|n| input.failed.contains(*n));
    if g.failed {
        return (g, work);
    }
    if live.iter().all(|n| input.done.contains(*n)) {
        g.passed = true;
        g.just_passed = true;
        return (g, work);
    }
    g.pending = true;
    let names: HashSet<&String> = live.into_iter().collect();
    let (mut first, rest): (Vec<RolloutTenant>, Vec<RolloutTenant>) =
        work.into_iter().partition(|t| names.contains(&t.name));
    g.canaries_in_run = first.len();
    // Canaries not Ready yet: nobody else may start.
    let all_canaries_startable = names
        .iter()
        .all(|n| input.done.contains(*n) || first.iter().any(|t| &&t.name == n));
    g.all_in_run = all_canaries_startable;
    if all_canaries_startable {
        first.extend(rest);
    }
    (g, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Isolation;
    use crate::naming::{Ident, tenant_names};

    fn work(names: &[&str]) -> Vec<RolloutTenant> {
        let shared = Ident::new("tenantdb_shared").unwrap();
        names
            .iter()
            .map(|n| {
                RolloutTenant::new(
                    n.to_string(),
                    tenant_names("tenant_", "ns", n, Isolation::Schema, None, &shared).unwrap(),
                )
            })
            .collect()
    }

    fn names(w: &[RolloutTenant]) -> Vec<&str> {
        w.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn canaries_are_chosen_once_and_run_first() {
        let none = HashSet::new();
        let input = Input {
            canary: 2,
            dry_run: false,
            same_revision: false,
            prev_canary_tenants: &[],
            prev_canary_passed: false,
            selected: ["a", "b", "c", "d"].into(),
            failed: &none,
            done: &none,
        };
        let (g, w) = gate(&input, work(&["a", "b", "c", "d"]));
        assert_eq!(g.canary_tenants, ["a", "b"]);
        assert!(g.pending && !g.passed && !g.failed);
        assert_eq!(g.canaries_in_run, 2);
        assert!(g.run_can_release_fleet());
        assert_eq!(names(&w), ["a", "b", "c", "d"]);
        // Same revision: the recorded canaries stay, even if others sort first now.
        let prev = vec!["c".to_string()];
        let input = Input {
            same_revision: true,
            prev_canary_tenants: &prev,
            ..input
        };
        let (g, w) = gate(&input, work(&["a", "b", "c", "d"]));
        assert_eq!(g.canary_tenants, ["c"]);
        assert_eq!(names(&w), ["c", "a", "b", "d"], "the canary runs first");
    }

    #[test]
    fn a_canary_that_cannot_start_holds_the_fleet() {
        let none = HashSet::new();
        let prev = vec!["a".to_string(), "b".to_string()];
        let input = Input {
            canary: 2,
            dry_run: false,
            same_revision: true,
            prev_canary_tenants: &prev,
            prev_canary_passed: false,
            selected: ["a", "b", "c"].into(),
            failed: &none,
            done: &none,
        };
        // "b" is not in the work (not Ready yet): only "a" may start.
        let (g, w) = gate(&input, work(&["a", "c"]));
        assert!(g.pending);
        assert_eq!(names(&w), ["a"]);
        // "a" succeeding in this run does not pass the gate: "b" has not run.
        assert!(!g.run_can_release_fleet());
        // "b" left to a newer TenantMigration (not selectable here) no longer holds the fleet.
        let input = Input {
            selected: ["a", "c"].into(),
            ..input
        };
        let (g, w) = gate(&input, work(&["a", "c"]));
        assert!(g.pending && g.run_can_release_fleet());
        assert_eq!(names(&w), ["a", "c"]);
    }

    #[test]
    fn canaries_pass_fail_or_are_not_used() {
        let prev = vec!["a".to_string()];
        let done: HashSet<String> = ["a".to_string()].into();
        let none = HashSet::new();
        let base = Input {
            canary: 1,
            dry_run: false,
            same_revision: true,
            prev_canary_tenants: &prev,
            prev_canary_passed: false,
            selected: ["a", "b"].into(),
            failed: &none,
            done: &done,
        };
        let (g, w) = gate(&base, work(&["b"]));
        assert!(g.passed && g.just_passed && !g.pending);
        assert_eq!(names(&w), ["b"]);
        let (g, _) = gate(
            &Input {
                prev_canary_passed: true,
                ..base_clone(&base)
            },
            work(&["b"]),
        );
        assert!(g.passed && !g.just_passed, "passed before: no second Event");
        let failed: HashSet<String> = ["a".to_string()].into();
        let (g, w) = gate(
            &Input {
                failed: &failed,
                done: &none,
                ..base_clone(&base)
            },
            work(&["b"]),
        );
        assert!(g.failed && !g.passed && !g.pending);
        assert_eq!(
            names(&w),
            ["b"],
            "the caller stops the rollout on a failed canary"
        );
        // A canary deselected since: it no longer gates (nothing live failed or pending).
        let (g, _) = gate(
            &Input {
                selected: ["b"].into(),
                done: &none,
                ..base_clone(&base)
            },
            work(&["b"]),
        );
        assert!(g.passed);
        for dry in [true, false] {
            let (g, w) = gate(
                &Input {
                    dry_run: dry,
                    canary: if dry { 1 } else { 0 },
                    ..base_clone(&base)
                },
                work(&["b"]),
            );
            assert_eq!(g, Gate::default());
            assert_eq!(names(&w), ["b"]);
        }
    }

    fn base_clone<'a>(i: &Input<'a>) -> Input<'a> {
        Input {
            canary: i.canary,
            dry_run: i.dry_run,
            same_revision: i.same_revision,
            prev_canary_tenants: i.prev_canary_tenants,
            prev_canary_passed: i.prev_canary_passed,
            selected: i.selected.clone(),
            failed: i.failed,
            done: i.done,
        }
    }
}
