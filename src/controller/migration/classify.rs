//! Stage `classify` (pure): how each selected Tenant is handled by this reconcile — done, failed
//! earlier in this revision, not Ready yet, moving to another server, left alone (with the
//! reason), or to migrate — and the progress that results.
//!
//! A tenant whose move is in progress ([`move_in_progress`]) is not migrated: a migration on the
//! source during the copy would make the cut-over find a schema difference and undo it (after 3
//! attempts the move is rolled back), and after the commit point the source is fenced. It waits,
//! listed as pending with the move in its message, and is migrated when the move ended — on the
//! server `status.placement` names then (the Tenant watch triggers the TenantMigration when the
//! move ends, see `trigger`).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::*;
use crate::crd::{Isolation, Tenant, TenantMigrationProgress, TenantMigrationState, TenantPhase};
use crate::identity::{Resolved, resolve};
use crate::naming::Ident;

/// How one selected tenant is handled by this reconcile.
#[derive(Debug)]
pub(crate) enum Class {
    /// At the target version (or planned, for a listed dry-run entry).
    Done,
    /// Failed or blocked earlier in this revision.
    Failed,
    /// Not Ready yet.
    NotReady,
    /// Being moved to another server: waits for the move to end (the message says which).
    Moving(String),
    /// Left alone (settled migration, tenant changed afterwards or superseded).
    Skipped(String),
    /// To migrate.
    Work(Box<RolloutTenant>),
}

/// What classification depends on besides the Tenants.
pub(crate) struct Input<'a> {
    /// Entries of the previous status, when it is of this revision (empty otherwise).
    pub prev_entries: &'a BTreeMap<String, TenantMigrationProgress>,
    /// `spec.dryRun`.
    pub dry_run: bool,
    /// The target version.
    pub target: i64,
    /// Since when the rollout of this revision is settled (`status::settled_since`): only
    /// Tenants created since are caught up.
    pub settled_at: Option<Timestamp>,
    /// Tenants a newer non-dry-run TenantMigration selects, with its name: left to it.
    pub newer: &'a BTreeMap<String, String>,
    /// `--name-prefix`.
    pub name_prefix: &'a str,
    /// The default server's shared database.
    pub shared_database: &'a Ident,
    /// Every server's shared database, by server name.
    pub servers: &'a BTreeMap<String, Ident>,
    /// The default server (for Tenants whose status records no placement).
    pub default_server: Option<&'a str>,
}

/// The result of classifying the selected Tenants.
#[derive(Debug, Default)]
pub(crate) struct Classified {
    /// States and entries of every selected tenant.
    pub progress: Progress,
    /// Tenants to migrate, in name order, except that those whose last attempt hit a transient
    /// error (a lock its application held, say) come last, least recently tried first: a tenant
    /// that keeps failing so never holds up the others (a pass stops starting tenants at its
    /// `maxParallel`-th transient error).
    pub work: Vec<RolloutTenant>,
    /// Tenants that failed or were blocked earlier in this revision.
    pub failed: HashSet<String>,
    /// Tenants at the target version.
    pub done: HashSet<String>,
    /// Tenants that wait for their Tenant to become Ready or for their move to end (in the order of
    /// the classified Tenants).
    pub waiting: Vec<String>,
}

/// Why a tenant is not migrated now because of a move: its `status.move` has started and is not
/// over (any phase from `Preparing` to `CleaningUp`, or `RollingBack`). `None`: no move in
/// progress (none, never started, completed or rolled back).
pub(crate) fn move_in_progress(t: &Tenant) -> Option<String> {
    let m = t.status.as_ref()?.move_.as_ref()?;
    is_moving(t).then(|| {
        format!(
            "waiting for the Tenant's move from server {} to {} to end: migrated afterwards, on the server it is on then",
            m.from, m.to
        )
    })
}

/// Whether the Tenant's move is in progress (see [`move_in_progress`]).
pub(crate) fn is_moving(t: &Tenant) -> bool {
    t.status
        .as_ref()
        .and_then(|s| s.move_.as_ref())
        .is_some_and(|m| !m.phase.is_terminal() && m.started_at.is_some())
}

/// Why a tenant handed to a rollout pass is not migrated after all, judged on the Tenant as it
/// is when its turn comes (the pass may run long after the classification): a move started
/// meanwhile, or one ended and the tenant is on another server than the one planned
/// (`planned`; `default_server` for Tenants whose status records no placement).
pub(crate) fn deferral(
    t: &Tenant,
    planned: Option<&str>,
    default_server: Option<&str>,
) -> Option<String> {
    if let Some(why) = move_in_progress(t) {
        return Some(why);
    }
    let now = t
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .and_then(|p| p.postgres.as_deref())
        .or(default_server);
    match (planned, now) {
        (Some(p), Some(n)) if p != n => Some(format!(
            "the Tenant moved from server {p} to {n} since this pass started: migrated by the next pass"
        )),
        _ => None,
    }
}

/// Classifies `tenants` (sorted by name) and records the result in a [`Progress`].
pub(crate) fn classify(tenants: &[Tenant], input: &Input<'_>) -> Classified {
    let mut out = Classified::default();
    let mut retried = Vec::new();
    for t in tenants {
        let name = t.name_any();
        let recorded = t.status.as_ref().and_then(|s| s.schema_version);
        out.progress.recorded.insert(name.clone(), recorded);
        let prev_entry = input.prev_entries.get(&name);
        let class = class_of(t, recorded, prev_entry, input);
        match class {
            Class::Done => {
                if let Some(e) = prev_entry.filter(|e| e.state == TenantMigrationState::Succeeded) {
                    out.progress.entries.insert(name.clone(), e.clone());
                }
                out.progress
                    .states
                    .insert(name.clone(), TenantMigrationState::Succeeded);
                out.done.insert(name);
            }
            Class::Failed => {
                if let Some(e) = prev_entry {
                    out.progress.entries.insert(name.clone(), e.clone());
                }
                let state = prev_entry
                    .map(|e| e.state)
                    .unwrap_or(TenantMigrationState::Failed);
                out.progress.states.insert(name.clone(), state);
                out.failed.insert(name);
            }
            Class::NotReady => {
                out.waiting.push(name.clone());
                out.progress.set(
                    &name,
                    TenantMigrationState::Pending,
                    Some("waiting for the Tenant to be Ready".into()),
                );
            }
            Class::Moving(why) => {
                out.waiting.push(name.clone());
                out.progress
                    .set(&name, TenantMigrationState::Pending, Some(why));
            }
            Class::Skipped(msg) => {
                out.progress
                    .set(&name, TenantMigrationState::Skipped, Some(msg))
            }
            Class::Work(rt) => {
                out.progress.set(&name, TenantMigrationState::Pending, None);
                match prev_entry.filter(|e| {
                    e.state == TenantMigrationState::Pending
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.starts_with(super::progress::RETRYING))
                }) {
                    Some(e) => {
                        // It keeps saying so (and when) until it runs again.
                        out.progress.entries.insert(name, e.clone());
                        let at = e.finished_at.as_ref().map(|t| t.0);
                        retried.push((at, *rt));
                    }
                    None => out.work.push(*rt),
                }
            }
        }
    }
    // Least recently tried first: a tenant that hit a one-off error is not kept waiting behind
    // those that hit one on every pass (`maxParallel` of them would stop every pass).
    retried.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| x.name.cmp(&y.name)));
    out.work.extend(retried.into_iter().map(|(_, rt)| rt));
    out
}

/// The [`Class`] of one tenant.
fn class_of(
    t: &Tenant,
    recorded: Option<i64>,
    prev_entry: Option<&TenantMigrationProgress>,
    input: &Input<'_>,
) -> Class {
    let server = t
        .status
        .as_ref()
        .and_then(|s| s.placement.as_ref())
        .and_then(|p| p.postgres.as_deref())
        .or(input.default_server);
    let shared = server
        .and_then(|s| input.servers.get(s))
        .unwrap_or(input.shared_database);
    // Every tenant that would be migrated (or planned, for a dry run) waits for its move.
    let work = || match (move_in_progress(t), resolve(t, input.name_prefix, shared)) {
        (Some(why), _) => Class::Moving(why),
        (None, Ok(res)) => Class::Work(Box::new(RolloutTenant {
            server: server.map(str::to_string),
            ..rollout_tenant(t, res, recorded)
        })),
        (None, Err(e)) => Class::Skipped(format!("cannot resolve the Tenant's names: {e}")),
    };
    let ready = t.status.as_ref().map(|s| s.phase) == Some(TenantPhase::Ready);
    if prev_entry.is_some_and(|e| {
        matches!(
            e.state,
            TenantMigrationState::Failed | TenantMigrationState::Blocked
        )
    }) {
        Class::Failed
    } else if t.spec.isolation == Isolation::Shared {
        // Shared (row-level security) tenants have no schema of their own: the shared layout is
        // migrated once by the Tenant controller (docs/shared-isolation.md).
        Class::Skipped(
            "isolation shared: the shared tables are migrated with the shared layout".into(),
        )
    } else if !ready {
        Class::NotReady
    } else if input.dry_run {
        match prev_entry.filter(|e| e.state == TenantMigrationState::Succeeded) {
            Some(_) => Class::Done,
            None => work(),
        }
    } else if recorded == Some(input.target) {
        Class::Done
    } else if let Some(other) = input.newer.get(&t.name_any()) {
        // The newest TenantMigration selecting a tenant owns it, settled or not.
        Class::Skipped(format!(
            "at version {}: left to the newer TenantMigration {other}",
            version_text(recorded)
        ))
    } else if let Some(settled_at) = input.settled_at {
        let created = t.meta().creation_timestamp.as_ref().map(|c| c.0);
        let new_tenant = created.is_some_and(|c| c >= settled_at);
        if new_tenant {
            work()
        } else {
            Class::Skipped(format!(
                "at version {}: changed after this migration completed (not a new Tenant)",
                version_text(recorded)
            ))
        }
    } else {
        work()
    }
}

/// The rollout entry of a selected Tenant: its names, recorded version and credentials Secret
/// (the one its status names, else the one its spec asks for).
pub(crate) fn rollout_tenant(t: &Tenant, res: Resolved, recorded: Option<i64>) -> RolloutTenant {
    let secret = t
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or(res.secret_name);
    RolloutTenant {
        recorded_version: recorded,
        secret_name: Some(secret),
        ..RolloutTenant::new(t.name_any(), res.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn tenant(
        name: &str,
        isolation: &str,
        phase: &str,
        version: Option<i64>,
        created: i64,
    ) -> Tenant {
        let mut t: Tenant = serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"isolation": isolation},
            "status": {"phase": phase, "schemaVersion": version},
        }))
        .unwrap();
        t.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        t
    }

    fn entry(name: &str, state: TenantMigrationState) -> TenantMigrationProgress {
        TenantMigrationProgress {
            name: name.into(),
            state,
            ..Default::default()
        }
    }

    fn state(c: &Classified, name: &str) -> TenantMigrationState {
        c.progress.states[name]
    }

    /// An [`Input`] at target 5, not settled, not a dry run, on the default server.
    fn input<'a>(
        prev: &'a BTreeMap<String, TenantMigrationProgress>,
        newer: &'a BTreeMap<String, String>,
        shared: &'a Ident,
        servers: &'a BTreeMap<String, Ident>,
    ) -> Input<'a> {
        Input {
            prev_entries: prev,
            dry_run: false,
            target: 5,
            settled_at: None,
            newer,
            name_prefix: "tenant_",
            shared_database: shared,
            servers,
            default_server: None,
        }
    }

    fn message(c: &Classified, name: &str) -> String {
        c.progress.entries[name].message.clone().unwrap_or_default()
    }

    #[test]
    fn each_tenant_gets_one_class() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let servers = BTreeMap::new();
        let tenants = vec![
            tenant("at-target", "schema", "Ready", Some(5), 10),
            tenant("behind", "database", "Ready", Some(3), 10),
            tenant("failed-before", "schema", "Ready", Some(3), 10),
            tenant("not-ready", "schema", "Provisioning", None, 10),
            tenant("rls", "shared", "Ready", None, 10),
        ];
        let prev: BTreeMap<_, _> = [(
            "failed-before".to_string(),
            entry("failed-before", TenantMigrationState::Blocked),
        )]
        .into();
        let none = BTreeMap::new();
        let input = Input {
            ..input(&prev, &none, &shared, &servers)
        };
        let c = classify(&tenants, &input);
        assert_eq!(state(&c, "at-target"), TenantMigrationState::Succeeded);
        assert!(c.done.contains("at-target"));
        assert_eq!(state(&c, "behind"), TenantMigrationState::Pending);
        assert_eq!(
            c.work.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["behind"]
        );
        assert_eq!(c.work[0].recorded_version, Some(3));
        assert_eq!(state(&c, "failed-before"), TenantMigrationState::Blocked);
        assert!(
            c.failed.contains("failed-before"),
            "not retried in the revision"
        );
        assert_eq!(state(&c, "not-ready"), TenantMigrationState::Pending);
        assert_eq!(c.waiting, ["not-ready"]);
        assert_eq!(state(&c, "rls"), TenantMigrationState::Skipped);
        assert!(message(&c, "rls").contains("shared layout"));
        assert_eq!(c.progress.counts().total, 5);
    }

    #[test]
    fn tenants_a_newer_rollout_selects_are_left_to_it_and_a_settled_one_catches_up_only_new_ones() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let servers = BTreeMap::new();
        let tenants = vec![
            tenant("old", "schema", "Ready", Some(3), 10),
            tenant("new", "schema", "Ready", Some(3), 30),
            tenant("claimed", "schema", "Ready", Some(3), 30),
        ];
        let newer: BTreeMap<_, _> = [("claimed".to_string(), "tm-2".to_string())].into();
        let none = BTreeMap::new();
        let c = classify(
            &tenants,
            &Input {
                settled_at: Some(Timestamp::from_second(20).unwrap()),
                ..input(&none, &newer, &shared, &servers)
            },
        );
        assert_eq!(
            c.work.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert!(message(&c, "old").contains("changed after this migration completed"));
        assert!(message(&c, "claimed").contains("newer TenantMigration tm-2"));
        // Not settled (running, or a new revision of a completed rollout): every tenant behind is
        // work, except the one a newer TenantMigration selects — no tug of war between the two.
        let c = classify(&tenants, &input(&none, &newer, &shared, &servers));
        assert_eq!(
            c.work.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["old", "new"]
        );
        assert_eq!(state(&c, "claimed"), TenantMigrationState::Skipped);
        assert!(message(&c, "claimed").contains("newer TenantMigration tm-2"));
    }

    #[test]
    fn tenants_that_hit_a_transient_error_go_last() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let servers = BTreeMap::new();
        let tenants = vec![
            tenant("a-busy", "schema", "Ready", Some(3), 10),
            tenant("b", "schema", "Ready", Some(3), 10),
            tenant("c", "schema", "Ready", Some(3), 10),
            tenant("d", "schema", "Ready", Some(3), 10),
            tenant("e-blip", "schema", "Ready", Some(3), 10),
        ];
        let retry = format!(
            "{}gave up waiting for a lock",
            super::super::progress::RETRYING
        );
        let prev: BTreeMap<_, _> = [
            (
                "a-busy".to_string(),
                TenantMigrationProgress {
                    message: Some(retry.clone()),
                    finished_at: Some(Time(Timestamp::from_second(200).unwrap())),
                    ..entry("a-busy", TenantMigrationState::Pending)
                },
            ),
            (
                "d".to_string(),
                TenantMigrationProgress {
                    message: Some("waiting for the Tenant to be Ready".into()),
                    ..entry("d", TenantMigrationState::Pending)
                },
            ),
            (
                // Retried once, longer ago than a-busy (tried on every pass): before it.
                "e-blip".to_string(),
                TenantMigrationProgress {
                    message: Some(format!(
                        "{}connection reset",
                        super::super::progress::RETRYING
                    )),
                    finished_at: Some(Time(Timestamp::from_second(100).unwrap())),
                    ..entry("e-blip", TenantMigrationState::Pending)
                },
            ),
        ]
        .into();
        let none = BTreeMap::new();
        let c = classify(&tenants, &input(&prev, &none, &shared, &servers));
        assert_eq!(
            c.work.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["b", "c", "d", "e-blip", "a-busy"]
        );
        assert_eq!(message(&c, "a-busy"), retry, "still said while it waits");
        assert_eq!(state(&c, "a-busy"), TenantMigrationState::Pending);
    }

    #[test]
    fn a_dry_run_plans_every_ready_tenant_once() {
        let shared = Ident::new("tenantdb_shared").unwrap();
        let servers = BTreeMap::new();
        let tenants = vec![
            tenant("planned", "schema", "Ready", Some(5), 10),
            tenant("fresh", "schema", "Ready", Some(5), 10),
        ];
        let prev: BTreeMap<_, _> = [(
            "planned".to_string(),
            entry("planned", TenantMigrationState::Succeeded),
        )]
        .into();
        let none = BTreeMap::new();
        let c = classify(
            &tenants,
            &Input {
                dry_run: true,
                ..input(&prev, &none, &shared, &servers)
            },
        );
        // Even at the target version a dry run plans the tenant (it reports what would run).
        assert_eq!(
            c.work.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["fresh"]
        );
        assert!(c.done.contains("planned"));
        assert!(c.progress.entries.contains_key("planned"), "entry kept");
    }
}
