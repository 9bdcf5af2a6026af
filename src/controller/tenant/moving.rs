//! Stage `moving` (before `provision`): moves the tenant's PostgreSQL part to another server when
//! `spec.placement` no longer allows the one it is on. One persisted phase at a time
//! (`status.move`), each step idempotent, so that a restart at any point resumes or undoes the
//! move — never two writable homes:
//!
//! ```text
//! Preparing ─► Copying ─► CuttingOver ─► CleaningUp ─► Completed
//!     └──────────┴────────────┴─► RollingBack ─► RolledBack   (cancelled, failed)
//! ```
//!
//! - `Preparing`: the target gets the tenant's roles with the source's SCRAM verifiers and login
//!   disabled, the database or schema and every schema object (`pg_dump`/`psql`), compared with
//!   the source by catalog fingerprint; then the publication (source) and subscription (target),
//!   which logs in to the source as the move's replication login ([`crate::moves::repl_login`]:
//!   `SELECT` on the tenant's tables, never the admin).
//! - `Copying`: logical replication copies and follows; the tenant keeps working on the source
//!   (provisioning, rotation and health go on there).
//! - `CuttingOver` (within one reconcile): roles refreshed on the target, the catalog fingerprints
//!   compared (before the freeze), the source fenced (logins disabled, sessions ended), the target
//!   caught up to the source's last WAL position, row counts compared, no session of the tenant
//!   left, caught up once more, the catalogs' stamps unchanged since the comparison (else compared
//!   again), sequences copied, still no session, the subscription dropped and the target's logins
//!   enabled; then the commit point — the status records the target. Which roles
//!   log in is recorded (`status.move.loginRoles`) before the fence: a cut-over resumed on a
//!   source an interrupted one left fenced goes on with the recorded roles (without a record it
//!   fails its step, and provisioning on the source gives the active role its login back first).
//!   A cut-over that cannot finish unfences the source and goes back to `Copying` (3 attempts,
//!   then rolled back); one that finds the subscription gone (an earlier one dropped it and
//!   stopped before the commit point) gives the source its recorded logins back and is rolled
//!   back at once; one that fails part-way (not known whether the fence is on) gives a source
//!   where nothing logs in its recorded logins back before the pass's provisioning there.
//!   Cancelling (the placement changed back) is honoured up to here, between cut-overs: a fenced
//!   source gets its recorded logins back first.
//! - `CleaningUp`: subscription, replication slot, replication login and publication dropped; the
//!   source copy dropped (or kept fenced with `spec.placement.retainSource`).
//! - `RollingBack`: the same objects and the target copy dropped (never after the commit point);
//!   the source is unfenced by the next provisioning (if a cancelled or broken cut-over did not
//!   give its recorded logins back first).
//!
//! A step that fails is retried after 5 s, its message naming the server that cannot be reached
//! ([`crate::moves::notes`]); meanwhile the tenant is provisioned where its status says.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::super::{Context, object_key};
use super::cutover::{CutOver, compare, cut_over, give_back_logins, logins};
use super::in_flight::{moving_from, other_moves};
use super::report::write_status;
use crate::crd::{MovePhase, MoveStatus, Tenant, TenantPhase};
use crate::error::{Error, Result};
use crate::moves::notes::{self, CANCELLED};
use crate::moves::sql::{self, Scope};
use crate::naming::TenantNames;
use crate::servers::Server;
use crate::servers::placement;

/// What the reconcile does after the stage.
pub(super) enum Next {
    /// Go on with provisioning, on this Tenant (its status as the stage left it).
    Proceed(Arc<Tenant>),
    /// Go on with provisioning, and look again after this long (waiting for a drain's slot, or
    /// for the pause after a rolled-back move to end).
    Recheck(Arc<Tenant>, Duration),
    /// Look again after this long (the move is between steps and the tenant is served as is).
    Requeue(Duration),
}

/// How far behind the subscription may be for the cut-over to start.
const CUTOVER_LAG: i64 = 16 * 1024 * 1024;
/// Cut-over attempts before the move is rolled back.
const ATTEMPTS: i32 = 3;
/// A rolled-back move is started again after this long at the earliest.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// A move step that failed is tried again after this long.
const RETRY: Duration = Duration::from_secs(5);
/// A tenant waiting for a drain's slot is looked at again this often.
const DRAIN_RECHECK: Duration = Duration::from_secs(2);
/// While a move runs, the tenant is looked at again this often.
pub(super) const POLL: Duration = Duration::from_secs(1);

/// Stage `moving` (see the module documentation).
pub(super) async fn step(tenant: &Arc<Tenant>, ctx: &Context) -> Result<Next> {
    let Some(current) = super::place::recorded(tenant).map(str::to_string) else {
        return Ok(Next::Proceed(tenant.clone()));
    };
    let mv = tenant
        .status
        .as_ref()
        .and_then(|s| s.move_.as_deref().cloned());
    let key = object_key(tenant.as_ref());
    let mv = match mv {
        Some(m) if !m.phase.is_terminal() => m,
        last => {
            ctx.servers().end_move(&key);
            match start(tenant, ctx, &current, last.as_ref()).await? {
                Start::Started(m) => *m,
                Start::No => return Ok(Next::Proceed(tenant.clone())),
                Start::Refused(t) => return Ok(Next::Proceed(Arc::new(*t))),
                Start::Held(t) => return Ok(Next::Recheck(Arc::new(*t), DRAIN_RECHECK)),
                Start::Wait => return Ok(Next::Recheck(tenant.clone(), DRAIN_RECHECK)),
            }
        }
    };
    let mut t = (**tenant).clone();
    t.status.get_or_insert_default().move_ = Some(Box::new(mv.clone()));
    let result = advance(&mut t, ctx, mv.clone()).await;
    let t = Arc::new(t);
    match result {
        Ok(next) => Ok(match next {
            Some(d) => Next::Requeue(d),
            None => Next::Proceed(t),
        }),
        Err(e) => {
            // Recorded in the move's status, naming the server that cannot be reached; the tenant
            // is provisioned where its status says meanwhile (which also unfences the source of a
            // cut-over that failed part-way), and the step is retried.
            warn!(error = %e, "move step failed; retrying");
            let mut m = t
                .status
                .as_ref()
                .and_then(|s| s.move_.as_deref().cloned())
                .unwrap_or(mv);
            let (a, b) = (ctx.servers().get(&m.from), ctx.servers().get(&m.to));
            let why = notes::explain(
                &m,
                a.as_ref().map(|s| s.pg().as_ref()),
                b.as_ref().map(|s| s.pg().as_ref()),
                &e,
            )
            .await;
            m.message = Some(notes::keep_reason(m.message.as_deref(), &why));
            let mut t2 = (*t).clone();
            persist(&mut t2, ctx, m.clone()).await?;
            let phase = t2
                .status
                .as_ref()
                .and_then(|s| s.move_.as_ref())
                .map(|m| m.phase);
            if e.is_permanent() && phase.is_some_and(|p| p <= MovePhase::Copying) {
                // A permanent failure before the cut-over: undone.
                let mut m = m;
                m.phase = MovePhase::RollingBack;
                persist(&mut t2, ctx, m).await?;
            }
            Ok(Next::Recheck(Arc::new(t2), RETRY))
        }
    }
}

/// Whether a move starts.
enum Start {
    /// Started (recorded).
    Started(Box<MoveStatus>),
    /// No move.
    No,
    /// No move, and why is recorded in this Tenant's status (provisioned with it, so that the
    /// reconcile's own status write keeps it).
    Refused(Box<Tenant>),
    /// Not now, and why is recorded in this Tenant's status (as `Refused`): no room for the
    /// replication while other moves hold it; looked at again after [`DRAIN_RECHECK`].
    Held(Box<Tenant>),
    /// The server is being drained and its moves in progress are at its limit, the last move
    /// was rolled back less than [`RETRY_AFTER`] ago, or the move is still held for room (its
    /// record says so already): later.
    Wait,
}

/// A new move, when `spec.placement` no longer allows the server the tenant is on, or that server
/// is being drained, and another server can take it (decided under the placement lock and
/// recorded before anything is created).
async fn start(
    tenant: &Tenant,
    ctx: &Context,
    current: &str,
    last: Option<&MoveStatus>,
) -> Result<Start> {
    let Some(reason) = needs_move(tenant, ctx, current) else {
        return Ok(Start::No);
    };
    if tenant.status.as_ref().map(|s| s.phase) != Some(TenantPhase::Ready) {
        return Ok(Start::No);
    }
    // The pause is for a move that failed, not for one the user cancelled (or retargeted).
    if let Some(l) = last
        && l.phase == MovePhase::RolledBack
        && l.started_at.is_some()
        && !l
            .message
            .as_deref()
            .is_some_and(|s| s.starts_with(CANCELLED))
        && l.finished_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| {
                Timestamp::now().duration_since(t).as_secs() < RETRY_AFTER.as_secs() as i64
            })
    {
        // Looked at again until then (`No` would let the tenant settle until its resync).
        return Ok(Start::Wait);
    }
    let not_started = |to: &str, why: String| MoveStatus {
        phase: MovePhase::RolledBack,
        from: current.to_string(),
        to: to.to_string(),
        message: Some(format!("not started: {why}")),
        ..Default::default()
    };
    let source = ctx
        .servers()
        .get(current)
        .ok_or_else(|| Error::unavailable(format!("server {current} is not known")))?;
    let wal = sql::wal_level(source.pg()).await?;
    if wal != "logical" {
        let m = not_started(
            "",
            format!(
                "server {current} has wal_level={wal}: moving a tenant off it needs wal_level=logical (a restart of that server)"
            ),
        );
        return refuse(tenant, ctx, last, m).await;
    }
    let key = object_key(tenant);
    let _deciding = ctx.servers().deciding().lock().await;
    if let Some(limit) = source.facts().draining {
        let moving = moving_from(ctx, crate::crd::Engine::Postgres, current);
        if moving.len() >= usize::try_from(limit).unwrap_or(1) && !moving.contains(&key) {
            return Ok(Start::Wait);
        }
    }
    // (Not another name of the source's cluster: a drain of a duplicate name moves its tenants
    // to another cluster.)
    let candidates = super::place::move_targets(
        ctx.servers(),
        super::place::candidates(ctx, Some(&key)),
        current,
    );
    let (choice, need) = super::place::postgres_request(tenant, ctx)?;
    let target = match placement::choose(choice.as_ref(), need, &candidates) {
        Ok(c) => c.name.clone(),
        Err(u) => {
            let m = not_started("", format!("{reason}, and {u}"));
            return refuse(tenant, ctx, last, m).await;
        }
    };
    // One cluster under two names: refused before anything is recorded (when either cannot be
    // reached now, `Preparing` asks again before it creates anything).
    if let Some(to) = ctx.servers().get(&target)
        && let Ok(Some(why)) = sql::same_cluster(source.pg(), current, to.pg(), &target).await
    {
        let m = not_started(&target, why);
        return refuse(tenant, ctx, last, m).await;
    }
    // Room for the replication's whole copy (slots, senders, workers, processes, origins; see
    // `MoveRoom::shortfalls`). When other moves hold it, the move is held and looked at again
    // every DRAIN_RECHECK; when the servers' settings are too small for any move, it is refused
    // and looked at again at the tenant's next reconciles. When a server cannot be asked now,
    // `Preparing` finds it unreachable anyway.
    let others = other_moves(ctx, current, &target, &key);
    let room = match ctx.servers().get(&target) {
        Some(to) => sql::replication_room(source.pg(), current, to.pg(), &target, others).await,
        None => Ok(None),
    };
    let room = room.unwrap_or_else(|e| {
        warn!(error = %e, to = %target, "room for a move's replication not read; starting it");
        None
    });
    if let Some(no) = room {
        let m = not_started(&target, no.why);
        if !no.for_now {
            return refuse(tenant, ctx, last, m).await;
        }
        // The counts in the reason change as other moves go on: the record is rewritten only
        // when something else in it does.
        if last.is_some_and(|l| notes::same_hold(l, &m)) {
            return Ok(Start::Wait);
        }
        return Ok(match refuse(tenant, ctx, last, m).await? {
            Start::Refused(t) => Start::Held(t),
            _ => Start::Wait,
        });
    }
    let names = names_on(tenant, ctx, &source)?;
    let bytes = source.pg().storage_bytes(&names).await.ok();
    let m = MoveStatus {
        phase: MovePhase::Preparing,
        from: current.to_string(),
        to: target.clone(),
        started_at: Some(Timestamp::now().to_string()),
        bytes,
        message: Some(format!("{reason}: moving to {target}")),
        ..Default::default()
    };
    let mut t = tenant.clone();
    persist(&mut t, ctx, m.clone()).await?;
    ctx.servers().start_move(&key, current, &target);
    info!(from = current, to = %target, "move started");
    ctx.event(
        tenant,
        EventType::Normal,
        "MoveStarted",
        "Move",
        format!("moving from server {current} to {target}"),
    )
    .await;
    Ok(Start::Started(Box::new(m)))
}

/// Why the tenant must leave `current`, if it must: `spec.placement` does not allow it, or the
/// server is being drained.
fn needs_move(tenant: &Tenant, ctx: &Context, current: &str) -> Option<String> {
    let server = ctx.servers().get(current)?;
    if server.facts().draining.is_some() {
        return Some(format!("server {current} is being drained"));
    }
    super::place::mismatch(tenant, ctx, &server)
        .map(|_| format!("spec.placement no longer allows server {current}"))
}

/// The tenant's names on `server` (the shared database differs between servers).
fn names_on(tenant: &Tenant, ctx: &Context, server: &Server) -> Result<TenantNames> {
    Ok(crate::identity::resolve(
        tenant,
        &ctx.settings().name_prefix,
        &server.pg().settings().shared_database,
    )?
    .names)
}

/// What the move of `tenant` replicates, with its `names` on one of the servers.
fn scope_of(tenant: &Tenant, names: &TenantNames) -> Scope {
    Scope::of_tenant(
        names,
        &tenant.namespace().unwrap_or_default(),
        &tenant.name_any(),
    )
}

/// Drops a copy of the tenant on `server` that is not its home: a shared tenant's rows and
/// registration first, then its database or schema and its roles (`PgAdmin::cleanup`).
async fn drop_copy(server: &Server, names: &TenantNames, scope: &Scope) -> Result<()> {
    drop_rows(server, names, scope).await?;
    server.pg().cleanup(names).await?;
    Ok(())
}

/// A shared tenant's rows and registration on `server` (nothing for the other modes): its
/// sessions there lose their access first, then its rows are deleted in short batches.
async fn drop_rows(server: &Server, names: &TenantNames, scope: &Scope) -> Result<()> {
    let Some(tid) = &scope.rows else {
        return Ok(());
    };
    let layout = crate::pg::shared::SharedLayout::defaults()?;
    let (r, b) = (&names.role, &names.secondary_role);
    crate::pg::shared::unregister_tenant(server.pg(), &layout, r, b).await?;
    let n = crate::pg::shared::delete_tenant_rows(server.pg(), &layout, tid, 1000).await?;
    info!(
        server = server.name(),
        rows = n,
        "a shared tenant's rows dropped from a server that is not its home"
    );
    Ok(())
}

/// Records why a move was not started (unless the status says so already).
async fn refuse(
    tenant: &Tenant,
    ctx: &Context,
    last: Option<&MoveStatus>,
    m: MoveStatus,
) -> Result<Start> {
    if last == Some(&m) {
        return Ok(Start::No);
    }
    let mut t = tenant.clone();
    persist(&mut t, ctx, m).await?;
    Ok(Start::Refused(Box::new(t)))
}

/// Writes `m` as the tenant's move status (and the placement it implies: the target from the
/// commit point on) and updates `t` to match.
async fn persist(t: &mut Tenant, ctx: &Context, m: MoveStatus) -> Result<()> {
    let mut status = t.status.clone().unwrap_or_default();
    if matches!(m.phase, MovePhase::CleaningUp | MovePhase::Completed) && !m.to.is_empty() {
        status.placement.get_or_insert_default().postgres = Some(m.to.clone());
    }
    let over = m.phase.is_terminal();
    status.move_ = Some(Box::new(m));
    write_status(t, ctx, status.clone()).await?;
    t.status = Some(status);
    if over {
        // No longer counted against a drain's limit.
        ctx.servers().end_move(&object_key(t));
    }
    Ok(())
}

/// Runs the move from its phase until it waits (`Some(delay)`) or the tenant can be provisioned
/// where its status says (`None`).
async fn advance(t: &mut Tenant, ctx: &Context, mut m: MoveStatus) -> Result<Option<Duration>> {
    let source = ctx
        .servers()
        .get(&m.from)
        .ok_or_else(|| Error::unavailable(format!("server {} is not known", m.from)))?;
    let target = ctx
        .servers()
        .get(&m.to)
        .ok_or_else(|| Error::unavailable(format!("server {} is not known", m.to)))?;
    let key = object_key(t);
    let name = crate::moves::object_name(&key, m.started_at.as_deref().unwrap_or_default())?;
    let names_a = names_on(t, ctx, &source)?;
    let names_b = names_on(t, ctx, &target)?;
    let (scope_a, scope_b) = (scope_of(t, &names_a), scope_of(t, &names_b));
    loop {
        // Cancelled (the placement allows the source again) or retargeted: undone before the
        // commit point (recorded as `CleaningUp`). In `CuttingOver` here no cut-over is under way
        // (one pass runs it to its end or undoes it): the last one did not end — the operator
        // stopped inside it, or a step failed, the target unreachable say — and the source may
        // be fenced: its logins come back first, as when a cut-over is undone.
        if m.phase <= MovePhase::CuttingOver
            && let Some(why) = cancelled(t, ctx, &source, &target)
        {
            if m.phase == MovePhase::CuttingOver {
                give_back_logins(&source, &names_a, m.login_roles.as_deref()).await?;
                m.login_roles = None;
            }
            m.phase = MovePhase::RollingBack;
            m.message = Some(why);
            persist(t, ctx, m.clone()).await?;
        }
        match m.phase {
            MovePhase::Preparing => {
                match sql::same_cluster(source.pg(), &m.from, target.pg(), &m.to).await {
                    Ok(None) => {}
                    Ok(Some(why)) => return Err(Error::InvalidSpec(why)),
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => {
                        return Err(Error::InvalidSpec(format!(
                            "cannot tell whether servers {} and {} are one cluster: {e}",
                            m.from, m.to
                        )));
                    }
                }
                if scope_b.rows.is_some() {
                    // The layout, migrated as on every server.
                    super::schema::ensure_shared_layout(ctx, &target).await?;
                }
                let roles = sql::read_roles(source.pg(), &names_a).await?;
                sql::prepare_roles(target.pg(), &names_b, &roles).await?;
                // A subscription of an attempt that stopped before `Copying` was recorded: the
                // copy is prepared again, and a database with a subscription cannot be dropped.
                sql::drop_subscription(target.pg(), &scope_b, &name).await?;
                // And its replication login: its grants on the source would be in the dump.
                crate::moves::repl_login::drop(
                    source.pg(),
                    &scope_a,
                    &names_a,
                    &crate::moves::repl_login::role(&name)?,
                )
                .await?;
                if let Some(tid) = &scope_b.rows {
                    // No rows of an earlier attempt (their keys would be taken for the copy),
                    // deleted once its subscription is gone (it would bring them back).
                    drop_rows(&target, &names_b, &scope_b).await?;
                    // The schema is the layout's (no object of the tenant's own): the tenant is
                    // registered in it, its logins still disabled.
                    let layout = crate::pg::shared::SharedLayout::defaults()?;
                    let (r, b) = (&names_b.role, &names_b.secondary_role);
                    crate::pg::shared::register_tenant(target.pg(), &layout, r, b, tid).await?;
                } else {
                    sql::prepare_database(target.pg(), &names_b).await?;
                    if !names_b.dedicated_database {
                        target.pg().shared_pool().await?;
                    }
                    crate::moves::copy::copy_schema(
                        source.pg(),
                        &scope_a,
                        target.pg(),
                        &scope_b,
                        &names_b,
                        &crate::moves::copy::restore_role(&name)?,
                    )
                    .await?;
                }
                // What the replication workers would run as a superuser, checked on the copy:
                // the tenant's roles cannot log in there yet, so this is what they will run (on
                // the source the tenant could `ENABLE ALWAYS` a trigger between a check and the
                // dump). A refusal rolls the prepared copy back.
                sql::refuse_replica_triggers(target.pg(), &scope_b).await?;
                sql::refuse_tenant_functions_in_replication(target.pg(), &scope_b).await?;
                let diff = compare(&source, &scope_a, &target, &scope_b).await?;
                if !diff.is_empty() {
                    return Err(Error::InvalidSpec(format!(
                        "the schema copied to {} differs from the source: {}",
                        m.to,
                        diff.join("; ")
                    )));
                }
                sql::ensure_publication(source.pg(), &scope_a, &name).await?;
                sql::ensure_subscription(
                    source.pg(),
                    &scope_a,
                    &names_a,
                    target.pg(),
                    &scope_b,
                    &name,
                )
                .await?;
                m.phase = MovePhase::Copying;
                m.message = Some("copying with logical replication".into());
                persist(t, ctx, m.clone()).await?;
            }
            MovePhase::Copying => {
                if let Some(why) =
                    sql::replication_gone(source.pg(), target.pg(), &scope_b, &name).await?
                {
                    m.phase = MovePhase::RollingBack;
                    m.message = Some(format!("the move cannot go on: {why}"));
                    persist(t, ctx, m.clone()).await?;
                    continue;
                }
                let (total, ready) = sql::sync_state(target.pg(), &scope_b, &name).await?;
                let lag = sql::lag_bytes(source.pg(), &name).await?;
                // Recorded for other moves' room checks (`MoveStatus::copies_tables`).
                let tables = (Some(ready), Some(total));
                let tables_changed = (m.tables_copied, m.tables_total) != tables;
                (m.tables_copied, m.tables_total) = tables;
                if ready < total || lag.is_none_or(|l| l > CUTOVER_LAG) {
                    let msg = format!("copying: {ready}/{total} tables copied");
                    if tables_changed
                        || m.lag_bytes != lag
                        || m.message.as_deref() != Some(msg.as_str())
                    {
                        m.lag_bytes = lag;
                        m.message = Some(msg);
                        persist(t, ctx, m.clone()).await?;
                    }
                    // The tenant is provisioned on the source meanwhile.
                    return Ok(None);
                }
                m.phase = MovePhase::CuttingOver;
                m.lag_bytes = lag;
                m.message = Some("cutting over".into());
                persist(t, ctx, m.clone()).await?;
            }
            MovePhase::CuttingOver => {
                // Who logs in, recorded before the fence (an interrupted cut-over goes on with it).
                let mut logins = logins(&source, &names_a, m.login_roles.as_deref()).await?;
                if let Some(record) = logins.record.take() {
                    m.login_roles = Some(record);
                    persist(t, ctx, m.clone()).await?;
                }
                m.attempts += 1;
                match cut_over(
                    &source, &names_a, &scope_a, &target, &names_b, &scope_b, &name, logins,
                )
                .await
                {
                    Ok(freeze) => {
                        m.phase = MovePhase::CleaningUp;
                        m.login_roles = None;
                        m.write_freeze_ms = Some(freeze.as_millis() as i64);
                        m.message = Some(format!("{} took over", m.to));
                        persist(t, ctx, m.clone()).await?;
                        super::test_points::fail_point("move-cut-over");
                        info!(from = %m.from, to = %m.to, freeze_ms = ?m.write_freeze_ms, "move cut over");
                        ctx.event(
                            t,
                            EventType::Normal,
                            "MoveCutOver",
                            "Move",
                            format!(
                                "now on server {} (writes frozen for {} ms)",
                                m.to,
                                m.write_freeze_ms.unwrap_or_default()
                            ),
                        )
                        .await;
                        // Provisioning on the target now: its logins enabled, the Secret naming
                        // it. The clean-up follows on the next pass.
                        return Ok(None);
                    }
                    Err(CutOver::Retry(why)) => {
                        // The source serves again (its recorded logins back); the next attempt
                        // records them anew.
                        warn!(attempt = m.attempts, reason = %why, "cut-over undone; the tenant is served on its source");
                        m.login_roles = None;
                        m.phase = if m.attempts >= ATTEMPTS {
                            MovePhase::RollingBack
                        } else {
                            MovePhase::Copying
                        };
                        m.message = Some(format!("cut-over attempt {} undone: {why}", m.attempts));
                        persist(t, ctx, m.clone()).await?;
                        if m.phase == MovePhase::Copying {
                            return Ok(None);
                        }
                    }
                    Err(CutOver::Broken(why)) => {
                        // Nothing was attempted (a source left fenced got its recorded logins
                        // back; provisioning after the roll-back repairs the rest).
                        m.attempts -= 1;
                        m.login_roles = None;
                        m.phase = MovePhase::RollingBack;
                        m.message = Some(format!("the move cannot go on: {why}"));
                        persist(t, ctx, m.clone()).await?;
                    }
                    Err(CutOver::Failed(e)) => {
                        // Not known whether the fence is on: if it is, the source gets its
                        // recorded logins back before this pass's provisioning there (which would
                        // give back only the active role's, and the next attempt would record
                        // just that one); the next pass decides again.
                        m.attempts -= 1;
                        let recorded = m.login_roles.as_deref();
                        if let Err(g) = give_back_logins(&source, &names_a, recorded).await {
                            warn!(error = %g, "the source's logins could not be given back after a failed cut-over");
                        }
                        return Err(e);
                    }
                }
            }
            MovePhase::CleaningUp => {
                drop_replication(&source, &scope_a, &target, &names_b, &name).await?;
                let retain = t.spec.placement.as_deref().is_some_and(|p| p.retain_source);
                // One cluster (never past `Preparing`): the source's copy is the tenant's only one.
                let two = surely_two(&source, &target, &m).await?;
                if two && retain {
                    sql::fence(source.pg(), &names_a).await?;
                } else if two {
                    drop_copy(&source, &names_a, &scope_a).await?;
                }
                m.phase = MovePhase::Completed;
                m.finished_at = Some(Timestamp::now().to_string());
                m.lag_bytes = None;
                m.message = Some(if !two {
                    format!("on {}; the copy on {} is left as it is", m.to, m.from)
                } else if retain {
                    format!("on {}; the source copy on {} is kept, fenced", m.to, m.from)
                } else {
                    format!("on {}; the source copy on {} was dropped", m.to, m.from)
                });
                persist(t, ctx, m.clone()).await?;
                ctx.event(
                    t,
                    EventType::Normal,
                    "MoveCompleted",
                    "Move",
                    m.message.clone().unwrap_or_default(),
                )
                .await;
                return Ok(None);
            }
            MovePhase::RollingBack => {
                drop_replication(&source, &scope_a, &target, &names_b, &name).await?;
                // Never after the commit point (the status names the source here), and never
                // when the target is the source under another name (its copy is the tenant).
                if super::place::recorded(t) == Some(m.from.as_str())
                    && surely_two(&source, &target, &m).await?
                {
                    drop_copy(&target, &names_b, &scope_b).await?;
                }
                m.phase = MovePhase::RolledBack;
                m.finished_at = Some(Timestamp::now().to_string());
                m.lag_bytes = None;
                m.message = m.message.map(notes::settled);
                persist(t, ctx, m.clone()).await?;
                ctx.event(
                    t,
                    EventType::Warning,
                    "MoveRolledBack",
                    "Move",
                    format!(
                        "stays on server {}: {}",
                        m.from,
                        m.message.clone().unwrap_or_default()
                    ),
                )
                .await;
                return Ok(None);
            }
            MovePhase::Completed | MovePhase::RolledBack => return Ok(None),
        }
    }
}

/// Whether the move's two servers are surely two clusters, before a copy on one of them is
/// dropped or fenced: `false` when they are one, or when that cannot be told (the copy is left,
/// with a warning); a server that cannot be reached is an error (retried).
async fn surely_two(source: &Server, target: &Server, m: &MoveStatus) -> Result<bool> {
    match sql::same_cluster(source.pg(), &m.from, target.pg(), &m.to).await {
        Ok(None) => Ok(true),
        Ok(Some(why)) => {
            warn!(%why, "a copy of the move is left as it is");
            Ok(false)
        }
        Err(e) if e.is_unavailable() => Err(e),
        Err(e) => {
            warn!(error = %e, "cannot tell whether the move's servers are one cluster: a copy of the move is left as it is");
            Ok(false)
        }
    }
}

/// Why a move before its commit point is to be undone: `spec.placement` allows the source again
/// (and it is not being drained), or no longer allows the target.
fn cancelled(t: &Tenant, ctx: &Context, source: &Server, target: &Server) -> Option<String> {
    // A draining source is left whatever the placement says.
    if source.facts().draining.is_none() && super::place::mismatch(t, ctx, source).is_none() {
        return Some(format!(
            "{CANCELLED}spec.placement allows server {} again",
            source.name()
        ));
    }
    super::place::mismatch(t, ctx, target).map(|_| {
        format!(
            "{CANCELLED}spec.placement no longer allows server {}",
            target.name()
        )
    })
}

/// Drops the move's subscription and schema restore role (target), replication slot,
/// replication login and publication (source).
async fn drop_replication(
    source: &Server,
    scope_a: &Scope,
    target: &Server,
    names_b: &TenantNames,
    name: &crate::naming::Ident,
) -> Result<()> {
    let scope_b = &Scope::of(names_b);
    sql::drop_subscription(target.pg(), scope_b, name).await?;
    let restore = crate::moves::copy::restore_role(name)?;
    crate::moves::copy::drop_restore_role(target.pg(), scope_b, names_b, &restore).await?;
    sql::drop_slot(source.pg(), name).await?;
    // (Its marker names the Tenant, the same with either server's names.)
    let repl = crate::moves::repl_login::role(name)?;
    crate::moves::repl_login::drop(source.pg(), scope_a, names_b, &repl).await?;
    sql::drop_publication(source.pg(), scope_a, name).await
}

/// Undoes the replication objects and the target copy of a move that has not committed (the
/// Tenant is being deleted): nothing of a move is left behind.
pub(super) async fn abandon(tenant: &Tenant, ctx: &Context) -> Result<()> {
    let Some(m) = tenant
        .status
        .as_ref()
        .and_then(|s| s.move_.as_deref().cloned())
        .filter(|m| !m.phase.is_terminal() && m.started_at.is_some())
    else {
        return Ok(());
    };
    let (Some(source), Some(target)) = (ctx.servers().get(&m.from), ctx.servers().get(&m.to))
    else {
        return Err(Error::unavailable(format!(
            "the servers of the tenant's move ({} → {}) are not known",
            m.from, m.to
        )));
    };
    let key = object_key(tenant);
    let name = crate::moves::object_name(&key, m.started_at.as_deref().unwrap_or_default())?;
    let names_a = names_on(tenant, ctx, &source)?;
    let names_b = names_on(tenant, ctx, &target)?;
    let (scope_a, scope_b) = (scope_of(tenant, &names_a), scope_of(tenant, &names_b));
    drop_replication(&source, &scope_a, &target, &names_b, &name).await?;
    // The copy that is not the tenant's home (its status names the home).
    let home = super::place::recorded(tenant).unwrap_or(&m.from);
    if home == m.from {
        drop_copy(&target, &names_b, &scope_b).await?;
    } else {
        drop_copy(&source, &names_a, &scope_a).await?;
    }
    info!(tenant = %tenant.name_any(), "unfinished move undone before deletion");
    Ok(())
}
