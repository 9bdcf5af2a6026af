//! Stage `moving_mongo` (after `moving`, before `provision`): moves the tenant's MongoDB
//! database to another MongoDB server when `spec.placement.mongodb` no longer allows the one it
//! is on, or that server is being drained (`spec.drain`, at most `maxConcurrentMoves` at once). MongoDB has no replication the operator could use between independent deployments, so
//! the move has a **read-only window**: one persisted phase at a time (`status.mongodbMove`),
//! each step idempotent, so that a restart at any point resumes or undoes the move:
//!
//! ```text
//! Copying ─► CleaningUp ─► Completed
//!    └─► RollingBack ─► RolledBack   (cancelled, failed)
//! ```
//!
//! - `Copying` (within one reconcile; a failed copy gives the source user `readWrite` back until
//!   it is tried again, 3 times, then the move is rolled back): the tenant's user is made read-only on the source (`read`
//!   instead of `readWrite`; its writes fail from then on, its reads go on), the target database
//!   registered to the tenant in the target's ownership registry, the database copied with the
//!   driver (collections with options and validators, documents, indexes; document counts
//!   compared), the user created on the target with the same password and `read`; then the
//!   commit point —
//!   the status records the target (`status.placement.mongodb`) — and provisioning gives the
//!   user back `readWrite` there and points the Secret's `mongodb*` keys at it.
//! - `CleaningUp` (the next pass): the source database, user and registry entry dropped.
//! - `RollingBack` (the copy failed for good, or the placement allows the source again): the
//!   target copy dropped (never after the commit point); provisioning gives the source user back
//!   `readWrite`.
//!
//! Two servers that are one deployment under two names (the same deployment identity,
//! [`same_deployment`]) are never a move's two ends: the move is refused before it starts, rolled
//! back before it copies, and no clean-up drops a copy that would be the only one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::super::{Context, object_key};
use super::moving::Next;
use super::report::write_status;
use crate::crd::{Engine, MovePhase, MoveStatus, Tenant, TenantPhase};
use crate::error::{Error, Result};
use crate::mongo::TENANT_READ_ONLY_ROLE;
use crate::servers::MongoServer;
use crate::servers::placement::{self, Need};

/// A rolled-back move is started again after this long at the earliest.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Copies tried before the move is rolled back.
const ATTEMPTS: i32 = 3;
/// A tenant waiting for a drain's slot is looked at again this often.
const DRAIN_RECHECK: Duration = Duration::from_secs(2);

/// Stage `moving_mongo` (see the module documentation).
pub(super) async fn step(tenant: &Arc<Tenant>, ctx: &Context) -> Result<Next> {
    let Some(current) = super::place::recorded_on(tenant, Engine::Mongodb).map(str::to_string)
    else {
        return Ok(Next::Proceed(tenant.clone()));
    };
    let key = object_key(tenant.as_ref());
    let mv = match tenant
        .status
        .as_ref()
        .and_then(|s| s.mongodb_move.as_deref().cloned())
    {
        Some(m) if !m.phase.is_terminal() => m,
        // Not while the PostgreSQL part moves (a copy here would lengthen its write freeze).
        _ if tenant
            .status
            .as_ref()
            .and_then(|s| s.move_.as_ref())
            .is_some_and(|m| !m.phase.is_terminal()) =>
        {
            return Ok(Next::Proceed(tenant.clone()));
        }
        last => {
            ctx.mongo_servers().end_move(&key);
            match start(tenant, ctx, &current, last.as_ref()).await? {
                Start::Started(m) => *m,
                Start::No => return Ok(Next::Proceed(tenant.clone())),
                Start::Refused(t) => return Ok(Next::Proceed(Arc::new(*t))),
                Start::Wait => return Ok(Next::Recheck(tenant.clone(), DRAIN_RECHECK)),
            }
        }
    };
    let mut t = (**tenant).clone();
    match advance(&mut t, ctx, mv.clone()).await {
        Ok(()) => Ok(Next::Proceed(Arc::new(t))),
        Err(e) => {
            warn!(error = %e, "MongoDB move step failed; retrying");
            let mut m = t
                .status
                .as_ref()
                .and_then(|s| s.mongodb_move.as_deref().cloned())
                .unwrap_or(mv);
            m.message = Some(crate::error::first_line(&e.to_string()));
            if m.phase == MovePhase::Copying && (e.is_permanent() || m.attempts >= ATTEMPTS) {
                m.phase = MovePhase::RollingBack;
            }
            persist(&mut t, ctx, m).await?;
            // Provisioned where the status says meanwhile: after a failed copy the source user
            // is given `readWrite` back until the next attempt.
            Ok(Next::Recheck(Arc::new(t), Duration::from_secs(5)))
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
    /// The server is being drained and its moves in progress are at its limit: later.
    Wait,
}

/// A new move when `spec.placement.mongodb` no longer allows the server the database is on, or
/// that server is being drained, and another MongoDB server can take it (chosen under the
/// MongoDB registry's lock, recorded before anything is changed).
async fn start(
    tenant: &Tenant,
    ctx: &Context,
    current: &str,
    last: Option<&MoveStatus>,
) -> Result<Start> {
    let Some(source) = ctx.mongo_servers().get(current) else {
        return Ok(Start::No);
    };
    let draining = source.facts().draining;
    let reason = match (draining, super::place::mismatch_mongo(tenant, ctx, &source)) {
        (Some(_), _) => format!("server {current} is being drained"),
        (None, Some(why)) => why,
        (None, None) => return Ok(Start::No),
    };
    if tenant.status.as_ref().map(|s| s.phase) != Some(TenantPhase::Ready) {
        return Ok(Start::No);
    }
    let recently_rolled_back = last.is_some_and(|l| {
        l.phase == MovePhase::RolledBack
            && l.started_at.is_some()
            && l.finished_at
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| {
                    Timestamp::now().duration_since(t).as_secs() < RETRY_AFTER.as_secs() as i64
                })
    });
    if recently_rolled_back {
        return Ok(Start::No);
    }
    let key = object_key(tenant);
    let _deciding = ctx.mongo_servers().deciding().lock().await;
    if let Some(limit) = draining {
        let moving = super::in_flight::moving_from(ctx, Engine::Mongodb, current);
        if moving.len() >= usize::try_from(limit).unwrap_or(1) && !moving.contains(&key) {
            return Ok(Start::Wait);
        }
    }
    let candidates = super::place::move_targets(
        ctx.mongo_servers(),
        super::place::candidates_of(ctx, Engine::Mongodb, Some(&key)),
        current,
    );
    let choice = tenant
        .spec
        .placement
        .as_ref()
        .and_then(|p| p.mongodb.as_ref());
    let target = match placement::choose(choice, Need::default(), &candidates) {
        Ok(c) => c.name.clone(),
        Err(u) => {
            let m = MoveStatus {
                phase: MovePhase::RolledBack,
                from: current.to_string(),
                message: Some(format!("not started: {reason}, and {u}")),
                ..Default::default()
            };
            return refuse(tenant, ctx, last, m).await;
        }
    };
    // One deployment under two names: refused before anything is recorded (when either cannot
    // be asked now, the copy asks again before it does anything).
    if let Some(to) = ctx.mongo_servers().get(&target)
        && let Ok(Some(why)) = same_deployment(&source, &to).await
    {
        let m = MoveStatus {
            phase: MovePhase::RolledBack,
            from: current.to_string(),
            to: target.clone(),
            message: Some(format!("not started: {why}")),
            ..Default::default()
        };
        return refuse(tenant, ctx, last, m).await;
    }
    let bytes = tenant
        .status
        .as_ref()
        .and_then(|s| s.mongodb.as_ref())
        .and_then(|m| m.storage_bytes);
    let m = MoveStatus {
        phase: MovePhase::Copying,
        from: current.to_string(),
        to: target.clone(),
        started_at: Some(Timestamp::now().to_string()),
        bytes,
        message: Some(format!(
            "{reason}: moving the MongoDB database to {target} (read-only meanwhile)"
        )),
        ..Default::default()
    };
    let mut t = tenant.clone();
    persist(&mut t, ctx, m.clone()).await?;
    ctx.mongo_servers().start_move(&key, current, &target);
    info!(from = current, to = %target, "MongoDB move started");
    ctx.event(
        tenant,
        EventType::Normal,
        "MongoMoveStarted",
        "Move",
        format!("moving the MongoDB database from server {current} to {target} (read-only until it is copied)"),
    )
    .await;
    Ok(Start::Started(Box::new(m)))
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

/// Writes `m` as the tenant's MongoDB move status (and, from the commit point on, the target as
/// its MongoDB placement) and updates `t` to match.
async fn persist(t: &mut Tenant, ctx: &Context, m: MoveStatus) -> Result<()> {
    let mut status = t.status.clone().unwrap_or_default();
    if matches!(m.phase, MovePhase::CleaningUp | MovePhase::Completed) && !m.to.is_empty() {
        status.placement.get_or_insert_default().mongodb = Some(m.to.clone());
    }
    let over = m.phase.is_terminal();
    status.mongodb_move = Some(Box::new(m));
    write_status(t, ctx, status.clone()).await?;
    t.status = Some(status);
    if over {
        // No longer counted against a drain's limit.
        ctx.mongo_servers().end_move(&object_key(t));
    }
    Ok(())
}

/// The tenant's MongoDB side with the password of its Secret (the user keeps it on the target);
/// without `need_password`, an empty password when the Secret has none (dropping a copy needs
/// none).
async fn mongo_tenant(
    t: &Tenant,
    ctx: &Context,
    need_password: bool,
) -> Result<crate::mongo::MongoTenant> {
    let resolved = crate::identity::resolve(
        t,
        &ctx.settings().name_prefix,
        &super::place::default_shared_database(ctx)?,
    )?;
    let mnames = super::mongo::mongo_names(t, &resolved.names)?;
    let ns = t.namespace().unwrap_or_default();
    let secret_name = t
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| format!("{}-db", t.name_any()));
    let password = Api::<Secret>::namespaced(ctx.client().clone(), &ns)
        .get_opt(&secret_name)
        .await?
        .filter(|s| crate::secret::owned_by(s, t))
        .and_then(|s| crate::secret::read_key(&s, "mongodbPassword"))
        .filter(|p| !p.is_empty());
    let password = match password {
        Some(p) => p,
        None if !need_password => String::new(),
        None => {
            return Err(Error::unavailable(format!(
                "the MongoDB password is not in Secret {secret_name} (yet)"
            )));
        }
    };
    Ok(super::mongo::mongo_tenant(
        t,
        &resolved.names,
        &mnames,
        password,
    ))
}

fn server(ctx: &Context, name: &str) -> Result<Arc<MongoServer>> {
    ctx.mongo_servers()
        .get(name)
        .ok_or_else(|| Error::unavailable(format!("MongoDB server {name} is not known")))
}

/// Runs the move from its phase until it ended or the tenant can be provisioned.
async fn advance(t: &mut Tenant, ctx: &Context, mut m: MoveStatus) -> Result<()> {
    let (source, target) = (server(ctx, &m.from)?, server(ctx, &m.to)?);
    if m.phase == MovePhase::Copying
        && let Some(why) = cancelled(t, ctx, &source, &target)
    {
        m.phase = MovePhase::RollingBack;
        m.message = Some(why);
        persist(t, ctx, m.clone()).await?;
    }
    let same = match m.phase {
        MovePhase::Completed | MovePhase::RolledBack => None,
        _ => same_deployment(&source, &target).await?,
    };
    match m.phase {
        MovePhase::Preparing | MovePhase::Copying | MovePhase::CuttingOver if same.is_some() => {
            // Nothing done yet: a copy would be onto the database itself.
            m.phase = MovePhase::RolledBack;
            m.finished_at = Some(Timestamp::now().to_string());
            m.message = same;
            persist(t, ctx, m.clone()).await?;
            warn!(from = %m.from, to = %m.to, "MongoDB move refused: one deployment under two names");
            Ok(())
        }
        MovePhase::Preparing | MovePhase::Copying | MovePhase::CuttingOver => {
            m.attempts += 1;
            persist(t, ctx, m.clone()).await?;
            let mt = mongo_tenant(t, ctx, true).await?;
            let (db, user) = (&mt.database, mt.user.as_str());
            // What can refuse the move is checked before the tenant is made read-only.
            source.admin().check_movable(db).await?;
            target.admin().ensure_owned(&mt).await?;
            // The window starts here (again after a restart: the copy starts over).
            let frozen = Instant::now();
            source
                .admin()
                .ensure_user(db, user, &mt.password, TENANT_READ_ONLY_ROLE)
                .await?;
            source.admin().end_sessions_of(db, user).await?;
            let copied = source.admin().copy_database_to(target.admin(), db).await?;
            // Read-only until the commit point: provisioning gives `readWrite` on the target
            // once the status names it (no second writable copy before).
            target
                .admin()
                .ensure_user(db, user, &mt.password, TENANT_READ_ONLY_ROLE)
                .await?;
            m.phase = MovePhase::CleaningUp;
            m.write_freeze_ms = Some(frozen.elapsed().as_millis() as i64);
            m.message = Some(format!(
                "{} took over: {} collections, {} documents, {} indexes copied",
                m.to, copied.collections, copied.documents, copied.indexes
            ));
            persist(t, ctx, m.clone()).await?;
            info!(from = %m.from, to = %m.to, read_only_ms = ?m.write_freeze_ms, "MongoDB move cut over");
            ctx.event(
                t,
                EventType::Normal,
                "MongoMoveCutOver",
                "Move",
                format!(
                    "MongoDB database now on server {} (read-only for {} ms)",
                    m.to,
                    m.write_freeze_ms.unwrap_or_default()
                ),
            )
            .await;
            // Provisioned on the target now (readWrite, the Secret naming it); the source is
            // dropped on the next pass, once the application was pointed away from it.
            Ok(())
        }
        MovePhase::CleaningUp => {
            m.phase = MovePhase::Completed;
            m.finished_at = Some(Timestamp::now().to_string());
            m.message = Some(if let Some(why) = same {
                // The "source copy" is the tenant's only database.
                format!("on {}; nothing dropped: {why}", m.to)
            } else {
                let mt = mongo_tenant(t, ctx, false).await?;
                match source.admin().cleanup(&mt).await?.skipped {
                    Some(why) => format!("on {}; the source copy was left: {why}", m.to),
                    None => format!("on {}; the source copy on {} was dropped", m.to, m.from),
                }
            });
            persist(t, ctx, m.clone()).await?;
            ctx.event(
                t,
                EventType::Normal,
                "MongoMoveCompleted",
                "Move",
                m.message.clone().unwrap_or_default(),
            )
            .await;
            Ok(())
        }
        MovePhase::RollingBack => {
            // Never after the commit point (the status names the source here), never when the
            // target copy is the source itself.
            if same.is_none()
                && super::place::recorded_on(t, Engine::Mongodb) == Some(m.from.as_str())
            {
                let mt = mongo_tenant(t, ctx, false).await?;
                target.admin().cleanup(&mt).await?;
            }
            m.phase = MovePhase::RolledBack;
            m.finished_at = Some(Timestamp::now().to_string());
            persist(t, ctx, m.clone()).await?;
            ctx.event(
                t,
                EventType::Warning,
                "MongoMoveRolledBack",
                "Move",
                format!(
                    "MongoDB database stays on server {}: {}",
                    m.from,
                    m.message.clone().unwrap_or_default()
                ),
            )
            .await;
            Ok(())
        }
        MovePhase::Completed | MovePhase::RolledBack => Ok(()),
    }
}

/// Why `source` and `target` cannot be a move's two ends, if they cannot: one MongoDB deployment
/// under two names (the same deployment identity, read now from both, never a recorded one). A
/// copy there would be onto the database itself (the copy replaces the target database), and the
/// clean-up of either end would drop the only copy. An identity that cannot be read now is an
/// error: asked again at the next pass, nothing copied or dropped meanwhile.
async fn same_deployment(source: &MongoServer, target: &MongoServer) -> Result<Option<String>> {
    let (a, b) = tokio::join!(source.read_identity_now(), target.read_identity_now());
    let (a, b) = (a?, b?);
    Ok((a == b).then(|| {
        format!(
            "servers {} and {} are the same MongoDB deployment (deployment identity {a}): there is nothing to move it to; declare each deployment once",
            source.name(),
            target.name()
        )
    }))
}

/// Why a move before its commit point is to be undone: `spec.placement.mongodb` allows the
/// source again (and it is not being drained), or no longer allows the target.
fn cancelled(
    t: &Tenant,
    ctx: &Context,
    source: &MongoServer,
    target: &MongoServer,
) -> Option<String> {
    if source.facts().draining.is_none() && super::place::mismatch_mongo(t, ctx, source).is_none() {
        return Some(format!(
            "cancelled: spec.placement.mongodb allows server {} again",
            source.name()
        ));
    }
    super::place::mismatch_mongo(t, ctx, target).map(|_| {
        format!(
            "cancelled: spec.placement.mongodb no longer allows server {}",
            target.name()
        )
    })
}

/// Drops the copy that is not the tenant's home of a MongoDB move that has not finished (the
/// Tenant is being deleted).
pub(super) async fn abandon(tenant: &Tenant, ctx: &Context) -> Result<()> {
    let Some(m) = tenant
        .status
        .as_ref()
        .and_then(|s| s.mongodb_move.as_deref().cloned())
        .filter(|m| !m.phase.is_terminal() && m.started_at.is_some())
    else {
        return Ok(());
    };
    let home = super::place::recorded_on(tenant, Engine::Mongodb).unwrap_or(&m.from);
    let other = if home == m.from { &m.to } else { &m.from };
    let (home, other) = (server(ctx, home)?, server(ctx, other)?);
    if same_deployment(&home, &other).await?.is_some() {
        return Ok(());
    }
    let mt = mongo_tenant(tenant, ctx, false).await?;
    other.admin().cleanup(&mt).await?;
    info!(tenant = %tenant.name_any(), "unfinished MongoDB move undone before deletion");
    Ok(())
}
