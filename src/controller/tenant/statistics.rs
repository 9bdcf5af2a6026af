//! Stage `statistics`: the tenant's share of the server's statistics snapshot (connections,
//! transactions, statements; MongoDB `dbStats`), reported only when it changed meaningfully.

use kube::Resource;

use super::super::Context;
use super::validate::Spec;
use crate::crd::{StatisticsStatus, Tenant};
use crate::statistics::{TenantKeys, attribute, settle};

/// What stage `statistics` found.
pub(super) struct Collected {
    /// What to report on its own: new figures when they changed meaningfully or the reported
    /// ones are older than twice the status report interval, else the reported ones.
    pub(super) report: Option<StatisticsStatus>,
    /// The figures just measured: reported instead whenever the status is written anyway (see
    /// [`piggyback`]).
    pub(super) fresh: Option<StatisticsStatus>,
}

/// The statistics to report, or the last reported ones when the server could not be read (a
/// statistics failure never fails the reconcile: the server's own outage is reported by the
/// stages that need it).
pub(super) async fn collect(tenant: &Tenant, ctx: &Context, spec: &Spec) -> Collected {
    // What this process reported last, else what the (possibly older) cached object says.
    let reported = ctx.reported_statistics(&spec.key).or_else(|| {
        tenant
            .status
            .as_ref()
            .and_then(|s| s.statistics.as_deref().cloned())
    });
    let Some(snap) = ctx.statistics(&spec.server).await else {
        return Collected {
            report: reported,
            fresh: None,
        };
    };
    let names = &spec.resolved.names;
    let keys = TenantKeys {
        roles: [names.role.as_str(), names.secondary_role.as_str()],
        dedicated_database: names.dedicated_database.then_some(names.database.as_str()),
        connection_limit: Some(spec.quotas.connection_limit),
    };
    let mongo = ctx.mongo_statistics(&spec.key);
    let now = attribute(&snap, &keys, mongo);
    // Unchanged figures ride along with the next status write (health and usage are re-reported
    // every status report interval); on their own they are re-reported at most every second one.
    let settled = settle(
        reported.as_ref(),
        now.clone(),
        ctx.settings().status_report_interval * 2,
    );
    ctx.set_reported_statistics(&spec.key, settled.clone());
    Collected {
        report: Some(settled),
        fresh: Some(now),
    }
}

/// When `status` differs from the reported one in anything but its statistics (it is written
/// anyway), it carries the fresh statistics: an unchanged figure costs no write of its own.
pub(super) fn piggyback(
    tenant: &Tenant,
    ctx: &Context,
    key: &str,
    status: &mut crate::crd::TenantStatus,
    fresh: Option<StatisticsStatus>,
) {
    let Some(fresh) = fresh else { return };
    if status.statistics.as_deref() == Some(&fresh) {
        return;
    }
    let without = |s: &crate::crd::TenantStatus| {
        let mut s = s.clone();
        s.statistics = None;
        super::report::overlay_known(ctx, key, &mut s);
        s
    };
    let written_anyway = tenant
        .status
        .as_ref()
        .is_none_or(|cur| without(cur) != without(status));
    // (A status this process already wrote and the cache has not delivered yet is not written
    // again: nothing to ride along with.)
    let already = ctx.already_written(
        key,
        super::report::status_hash(status, tenant.meta().generation),
    );
    if written_anyway && !already {
        ctx.set_reported_statistics(key, fresh.clone());
        status.statistics = Some(Box::new(fresh));
    }
}
