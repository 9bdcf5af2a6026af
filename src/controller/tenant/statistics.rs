//! Stage `statistics`: the tenant's share of the server's statistics snapshot (connections,
//! transactions, statements; MongoDB `dbStats`), reported only when it changed meaningfully.

use super::super::Context;
use super::validate::Spec;
use crate::crd::{StatisticsStatus, Tenant};
use crate::statistics::{TenantKeys, attribute, settle};

/// The statistics to report, or the last reported ones when the server could not be read (a
/// statistics failure never fails the reconcile: the server's own outage is reported by the
/// stages that need it).
pub(super) async fn collect(
    tenant: &Tenant,
    ctx: &Context,
    spec: &Spec,
) -> Option<StatisticsStatus> {
    // What this process reported last, else what the (possibly older) cached object says.
    let reported = ctx
        .reported_statistics(&spec.key)
        .or_else(|| tenant.status.as_ref().and_then(|s| s.statistics.clone()));
    let Some(snap) = ctx.statistics().await else {
        return reported;
    };
    let names = &spec.resolved.names;
    let keys = TenantKeys {
        roles: [names.role.as_str(), names.secondary_role.as_str()],
        dedicated_database: names.dedicated_database.then_some(names.database.as_str()),
        connection_limit: Some(spec.quotas.connection_limit),
    };
    let mongo = ctx.mongo_statistics(&spec.key);
    let now = attribute(&snap, &keys, mongo);
    let settled = settle(
        reported.as_ref(),
        now,
        ctx.settings().status_report_interval,
    );
    ctx.set_reported_statistics(&spec.key, settled.clone());
    Some(settled)
}
