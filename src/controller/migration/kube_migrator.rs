//! The controller's migrator: credentials from the tenant's Secret, the migration as the tenant,
//! then `status.schemaVersion` on the Tenant.

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::super::{Context, object_key_for};
use super::*;
use crate::crd::Tenant;
use crate::error::{Error, Result};
use crate::pg::PgAdmin;
use crate::pg::session::{Credentials, TenantSession};

/// The migrator used by the controller: the tenant's credentials from its Secret, PostgreSQL as
/// the tenant, then `status.schemaVersion` on the Tenant — written in the background, so that the
/// next tenant does not wait for the API server ([`TenantMigrator::flush`] waits for them).
pub(crate) struct KubeMigrator {
    pub(crate) pg: PgMigrator,
    pub(crate) tenants: Api<Tenant>,
    pub(crate) secrets: Api<k8s_openapi::api::core::v1::Secret>,
    pub(crate) ctx: Arc<Context>,
    pub(crate) namespace: String,
    /// `status.schemaVersion` writes in flight.
    pub(crate) recording: Recorder,
    /// Credentials read ahead for tenants about to start ([`TenantMigrator::prefetch`]), by
    /// tenant name; taken by the tenant's migration, the rest dropped at the end of the pass.
    pub(crate) prefetched: Prefetched,
}

/// What was read and opened ahead of a tenant's migration: its credentials, and a session
/// logged in as the tenant with them (`None` when that login failed: the migration logs in
/// again itself and reports the error).
type Ahead = (Credentials, Option<TenantSession>, std::time::Instant);

/// The oldest read ahead a migration uses: an older one (the tenant before took long) may hold a
/// rotated password or a session the server timed out; it is dropped and done again.
const AHEAD_MAX_AGE: Duration = Duration::from_secs(5);

/// How long a session opened ahead may take to answer its ping before it is given up (the
/// migration then logs in itself, bounded by the connect timeout).
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// One read ahead: its task, and the signal that the migration takes it (until then the task
/// holds the session, and closes it itself once it is older than [`AHEAD_MAX_AGE`]).
struct AheadTask {
    handle: tokio::task::JoinHandle<Result<Ahead>>,
    taken: tokio::sync::oneshot::Sender<()>,
}

/// Credentials Secret reads and tenant logins started ahead of a tenant's migration.
#[derive(Default)]
pub(crate) struct Prefetched(std::sync::Mutex<std::collections::HashMap<String, AheadTask>>);

impl Prefetched {
    /// Starts reading `tenant`'s credentials and logging in with them on `pg` (its server)
    /// unless that already runs or ran for it. The session is held for at most
    /// [`AHEAD_MAX_AGE`]: a tenant whose turn comes later logs in itself, so a long migration
    /// before it does not keep one of its connections for nothing.
    fn start(
        &self,
        secrets: &Api<k8s_openapi::api::core::v1::Secret>,
        pg: Arc<PgAdmin>,
        tenant: &RolloutTenant,
        lock_timeout: Option<std::time::Duration>,
    ) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        if map.contains_key(&tenant.name) {
            return;
        }
        let (secrets, t) = (secrets.clone(), tenant.clone());
        let (taken, taken_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let creds = read_credentials(&secrets, &t).await?;
            let at = std::time::Instant::now();
            let mut session = match pg.login(&t.names.database, &creds, lock_timeout).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(tenant = %t.name, error = %e, "login ahead failed; the migration logs in itself");
                    None
                }
            };
            // Hold the session until the migration takes it, at most AHEAD_MAX_AGE.
            if session.is_some()
                && tokio::time::timeout(AHEAD_MAX_AGE.saturating_sub(at.elapsed()), taken_rx)
                    .await
                    .is_err()
                && let Some(s) = session.take()
            {
                s.close().await;
            }
            Ok((creds, session, at))
        });
        map.insert(tenant.name.clone(), AheadTask { handle, taken });
    }

    /// What was started for `name`, if anything (removed: a later migration of the same tenant
    /// reads the Secret and logs in again).
    async fn take_raw(&self, name: &str) -> Option<Result<Ahead>> {
        let task = self.0.lock().ok()?.remove(name)?;
        let _ = task.taken.send(());
        task.handle.await.ok()
    }

    /// The credentials and live session read ahead for `name`: `None` when nothing was started,
    /// the read failed, or it is older than [`AHEAD_MAX_AGE`]; the session `None` when the login
    /// failed or the session does not answer a ping (within [`PING_TIMEOUT`]) any more.
    async fn take(&self, name: &str) -> Option<(Credentials, Option<TenantSession>)> {
        let (creds, session, at) = match self.take_raw(name).await? {
            Ok(ahead) => ahead,
            Err(e) => {
                tracing::debug!(tenant = %name, error = %e, "credentials read ahead failed; reading them again");
                return None;
            }
        };
        if at.elapsed() > AHEAD_MAX_AGE {
            if let Some(s) = session {
                s.close().await;
            }
            return None;
        }
        let session = match session {
            Some(mut s) => {
                let ping = tokio::time::timeout(PING_TIMEOUT, sqlx::Connection::ping(&mut *s));
                matches!(ping.await, Ok(Ok(()))).then_some(s)
            }
            None => None,
        };
        Some((creds, session))
    }

    /// Drops what was started for `name` (its session closed).
    async fn discard(&self, name: &str) {
        if let Some(Ok((_, Some(session), _))) = self.take_raw(name).await {
            session.close().await;
        }
    }

    /// Drops everything not taken: running reads and logins are cancelled, sessions closed.
    async fn clear(&self) {
        let tasks: Vec<AheadTask> = match self.0.lock() {
            Ok(mut map) => map.drain().map(|(_, t)| t).collect(),
            Err(_) => return,
        };
        for t in tasks {
            t.handle.abort();
            if let Ok(Ok((_, Some(session), _))) = t.handle.await {
                session.close().await;
            }
        }
    }
}

impl Drop for Prefetched {
    /// A pass aborted (leadership lost) never reaches `clear`: its reads and logins ahead are
    /// cancelled here (a session a finished task holds is closed with the task's output).
    fn drop(&mut self) {
        if let Ok(map) = self.0.get_mut() {
            for t in map.values() {
                t.handle.abort();
            }
        }
    }
}

/// The login of `tenant`'s credentials Secret (read from the API: the controller keeps no cache
/// of Secrets).
async fn read_credentials(
    secrets: &Api<k8s_openapi::api::core::v1::Secret>,
    tenant: &RolloutTenant,
) -> Result<Credentials> {
    let name = tenant.secret_name.as_deref().ok_or_else(|| {
        Error::Internal(format!(
            "tenant {} has no credentials Secret name",
            tenant.name
        ))
    })?;
    let secret = secrets.get_opt(name).await?.ok_or_else(|| {
        Error::unavailable(format!(
            "credentials Secret {name} not found (the Tenant controller writes it)"
        ))
    })?;
    Credentials::for_tenant(
        &tenant.names,
        crate::secret::read_key(&secret, "username").as_deref(),
        crate::secret::read_key(&secret, "password").as_deref(),
    )
}

/// Background `status.schemaVersion` writes: at most [`RECORD_IN_FLIGHT`] at once.
pub(crate) struct Recorder {
    tasks: std::sync::Mutex<tokio::task::JoinSet<()>>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Most `status.schemaVersion` writes in flight per rollout pass.
const RECORD_IN_FLIGHT: usize = 16;

impl Default for Recorder {
    fn default() -> Self {
        Self {
            tasks: std::sync::Mutex::new(tokio::task::JoinSet::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(RECORD_IN_FLIGHT)),
        }
    }
}

impl Recorder {
    /// Records `version` on Tenant `name` in the background (waits only for a free slot). A
    /// failed write is logged: the database is migrated and this process's memo says so
    /// (`Context::set_schema_version`), so the Tenant controller's next status write carries the
    /// version; after a restart the rollout finds the tenant behind and its no-op migration
    /// records it.
    async fn record(&self, api: Api<Tenant>, name: String, version: Option<i64>) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let task = async move {
            if let Err(e) = record_schema_version(&api, &name, version).await {
                tracing::warn!(tenant = %name, error = %e, "recording status.schemaVersion failed; the Tenant controller's next status write carries it");
            }
            drop(permit);
        };
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.spawn(task);
        }
    }

    /// Waits for every write in flight (called once the rollout started its last tenant: no new
    /// writes come in meanwhile).
    async fn flush(&self) {
        let mut set = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        while set.join_next().await.is_some() {}
    }
}

impl KubeMigrator {
    /// Why `tenant` is not migrated now after all: its Tenant, as the cache has it when its turn
    /// comes, started moving or is on another server than planned (`classify::deferral`).
    fn deferral(&self, tenant: &RolloutTenant) -> Option<String> {
        let store = self.ctx.synced_tenant_store()?;
        let current = store.get(&ObjectRef::new(&tenant.name).within(&self.namespace))?;
        super::classify::deferral(
            &current,
            tenant.server.as_deref(),
            self.ctx.servers().default_name(),
        )
    }
}

impl TenantMigrator for KubeMigrator {
    async fn migrate(&self, tenant: &RolloutTenant) -> TenantOutcome {
        if let Some(why) = self.deferral(tenant) {
            self.prefetched.discard(&tenant.name).await;
            return TenantOutcome::error(
                tenant,
                OutcomeKind::Deferred,
                "moving",
                why,
                Duration::ZERO,
            );
        }
        let mut with_login;
        let mut session = None;
        let tenant = if tenant.credentials.is_some() {
            tenant
        } else {
            // Read and logged in ahead (at most one tenant's migration ago) when it worked;
            // a failed read ahead (the Secret not written yet, an API error) is tried again now.
            let ahead = match self.prefetched.take(&tenant.name).await {
                Some((creds, s)) => {
                    session = s;
                    Ok(creds)
                }
                None => read_credentials(&self.secrets, tenant).await,
            };
            match ahead {
                Ok(c) => {
                    with_login = tenant.clone();
                    with_login.credentials = Some(c);
                    &with_login
                }
                Err(e) => {
                    let kind = if e.is_permanent() {
                        OutcomeKind::Failed
                    } else {
                        OutcomeKind::Retry
                    };
                    return TenantOutcome::error(
                        tenant,
                        kind,
                        "credentials",
                        e.to_string(),
                        Duration::ZERO,
                    );
                }
            }
        };
        let outcome = self.pg.migrate_on(tenant, session).await;
        if outcome.kind != OutcomeKind::Succeeded || self.pg.dry_run {
            return outcome;
        }
        // The database is at `to_version` now: the Tenant controller must not write an older
        // schemaVersion from a cache that has not seen the patch below yet.
        let key = object_key_for::<Tenant>(&self.namespace, &tenant.name);
        self.ctx.set_schema_version(&key, outcome.to_version);
        if outcome.to_version != tenant.recorded_version {
            self.recording
                .record(
                    self.tenants.clone(),
                    tenant.name.clone(),
                    outcome.to_version,
                )
                .await;
        }
        outcome
    }

    fn prefetch(&self, tenant: &RolloutTenant) {
        // Not for a tenant that is moving (its login may be fenced) or whose server is unknown.
        if tenant.credentials.is_none()
            && self.deferral(tenant).is_none()
            && let Ok(pg) = self.pg.admin_for(tenant)
        {
            self.prefetched
                .start(&self.secrets, pg, tenant, self.pg.lock_timeout);
        }
    }

    async fn flush(&self) {
        self.prefetched.clear().await;
        self.recording.flush().await;
    }
}

/// Server-side applies `status.schemaVersion` (only that field) on a Tenant, with the
/// [`TENANT_FIELD_MANAGER`] field manager. The Tenant controller's apply of its whole status
/// carries `schemaVersion` over from the observed status, so the two do not fight.
pub async fn record_schema_version(
    api: &Api<Tenant>,
    name: &str,
    version: Option<i64>,
) -> Result<()> {
    let patch = json!({
        "apiVersion": Tenant::api_version(&()),
        "kind": Tenant::kind(&()),
        "metadata": { "name": name },
        "status": { "schemaVersion": version },
    });
    api.patch_status(
        name,
        &PatchParams::apply(TENANT_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
