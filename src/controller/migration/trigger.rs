//! Which TenantMigrations a Tenant event triggers.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::super::object_key;
use super::*;
use crate::crd::{Tenant, TenantMigration, TenantPhase};

/// What a rollout reads of a Tenant (see the classification in `reconcile`): a change of anything
/// else — a health or usage status write, a condition message, a move's phase or lag — cannot
/// change a TenantMigration's plan or progress. A move starting or ending (and the server the
/// Tenant is on) can: a tenant waits for its move and is migrated on its new server once the move
/// ended, so its TenantMigrations are triggered then, not at their next resync.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TenantFacts {
    pub(crate) uid: Option<String>,
    pub(crate) generation: Option<i64>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) deleting: bool,
    pub(crate) ready: bool,
    pub(crate) schema_version: Option<i64>,
    /// A move is in progress (see `classify::move_in_progress`).
    pub(crate) moving: bool,
    /// `status.placement.postgres`.
    pub(crate) server: Option<String>,
}

impl TenantFacts {
    fn of(t: &Tenant) -> Self {
        let status = t.status.as_ref();
        TenantFacts {
            uid: t.metadata.uid.clone(),
            generation: t.metadata.generation,
            labels: t.labels().clone(),
            deleting: t.metadata.deletion_timestamp.is_some(),
            ready: status.map(|s| s.phase) == Some(TenantPhase::Ready),
            schema_version: status.and_then(|s| s.schema_version),
            moving: super::classify::is_moving(t),
            server: status
                .and_then(|s| s.placement.as_ref())
                .and_then(|p| p.postgres.clone()),
        }
    }
}

/// Decides which TenantMigrations a Tenant event triggers (the mapper of the Tenant watch; reads
/// the TenantMigration cache, no API call). It remembers per Tenant the [`TenantFacts`] of the last
/// event, so that routine Tenant status writes across a fleet do not re-classify every settled
/// fleet migration that selects them (O(N) each, O(N²) per resync period). When a Tenant's labels
/// change, the TenantMigrations that selected the old labels are triggered as well, so their counts
/// drop the Tenant without waiting for a resync.
#[derive(Default)]
pub struct TenantTrigger {
    seen: super::super::Memo<TenantFacts>,
}

impl TenantTrigger {
    /// The TenantMigrations to reconcile for this event of `tenant`: none when nothing a rollout
    /// reads changed since the previous event.
    pub fn migrations_for(
        &self,
        store: &Store<TenantMigration>,
        tenant: &Tenant,
    ) -> Vec<ObjectRef<TenantMigration>> {
        let key = object_key(tenant);
        let now = TenantFacts::of(tenant);
        let before = self.seen.get(&key);
        if before.as_ref() == Some(&now) {
            return Vec::new();
        }
        let version_moved = before.as_ref().and_then(|b| {
            (b.schema_version != now.schema_version
                && TenantFacts {
                    schema_version: now.schema_version,
                    ..b.clone()
                } == now)
                .then_some((b.schema_version, now.schema_version))
        });
        let old_labels = before.map(|b| b.labels).filter(|l| *l != now.labels);
        self.seen.set(&key, now);
        let (ns, name) = (tenant.namespace(), tenant.name_any());
        store
            .state()
            .into_iter()
            .filter(|m| {
                version_move_is_news_to(m, version_moved, |to| {
                    super::reconcile::newer_heading_to(store, m, tenant, to)
                })
            })
            .filter(|m| {
                m.namespace() == ns
                    && (targets(m, tenant)
                        || old_labels
                            .as_ref()
                            .is_some_and(|l| targets_labels(m, &name, l)))
            })
            .map(|m| ObjectRef::from_obj(m.as_ref()))
            .collect()
    }

    /// Whether this controller's Tenant watch saw `key` (an [`object_key`]) differently from
    /// `cached`, the Tenant cache's copy (`None`: not in the cache; the schemaVersion, overlaid by
    /// `select`, is not compared). The watch that triggers reconciles and the cache they read are
    /// two streams: an event (a Tenant becoming Ready, a move ending, a new Tenant) can trigger a
    /// reconcile that still reads the Tenant as it was. Its facts are remembered here, so no later
    /// event triggers again; the reconcile looks again shortly instead of at its resync.
    pub(crate) fn differs_from_cache(&self, key: &str, cached: Option<&Tenant>) -> bool {
        let Some(seen) = self.seen.get(key) else {
            return false;
        };
        match cached {
            Some(t) => {
                let now = TenantFacts::of(t);
                TenantFacts {
                    schema_version: now.schema_version,
                    ..seen
                } != now
            }
            None => !seen.deleting,
        }
    }

    /// The Tenants of `ns` this controller's watch saw, not being deleted, whose labels
    /// `selector` matches: a label change that makes a Tenant selected can trigger a reconcile
    /// whose cache still has the old labels (see [`Self::differs_from_cache`]).
    pub(crate) fn seen_selected(&self, ns: &str, selector: &kube::core::Selector) -> Vec<String> {
        use kube::core::SelectorExt;
        let prefix = super::super::object_key_for::<Tenant>(ns, "");
        self.seen
            .with(|m| {
                m.iter()
                    .filter(|(k, f)| {
                        k.starts_with(&prefix) && !f.deleting && selector.matches(&f.labels)
                    })
                    .map(|(k, _)| k[prefix.len()..].to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets Tenants that are gone (`live` answers for an [`object_key`]).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.seen.retain(live);
    }

    /// How many Tenants are remembered.
    pub fn len(&self) -> usize {
        self.seen.with(|m| m.len()).unwrap_or_default()
    }

    /// Whether no Tenant is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a Tenant whose only change is its schemaVersion (`from` → `to`) matters to `tm`
/// (`version_moved` is `None` when something else changed: always news). Not news: the tenant
/// reached `tm`'s target version (its pass reports it when it ends), or `tm` has completed and the
/// tenant moves between versions that are both not its target (a newer rollout; `tm` lists it as
/// skipped either way and refreshes the version in that message at its resync), or `tm` has
/// completed and the tenant leaves its target for a newer TenantMigration selecting it that is
/// running or targets the new version (`superseded`; the newer one's pass triggers `tm` once
/// when it ends, see `reconcile::superseded_completed`). Without this, every migrated tenant's event re-classified
/// the whole fleet once for each older TenantMigration selecting it: O(TenantMigrations × N²) per
/// rollout (bench/README.md, finding 10).
fn version_move_is_news_to(
    tm: &TenantMigration,
    version_moved: Option<(Option<i64>, Option<i64>)>,
    superseded: impl FnOnce(Option<i64>) -> bool,
) -> bool {
    let Some((from, to)) = version_moved else {
        return true;
    };
    let Some(status) = tm.status.as_ref() else {
        return true;
    };
    let Some(target) = status.target_version else {
        return true;
    };
    let completed = status.phase == crate::crd::MigrationPhase::Succeeded;
    let reached = to == Some(target);
    let elsewhere = completed && from != Some(target) && to != Some(target);
    let left_for_newer = completed && from == Some(target) && to != Some(target) && superseded(to);
    !(reached || elsewhere || left_for_newer)
}
