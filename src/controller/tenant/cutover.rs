//! The cut-over of a PostgreSQL move (stage `moving`, phase `CuttingOver`): the catalogs compared
//! before the write freeze, the freeze on the source, the checks while it is frozen (caught up;
//! row counts; no session; caught up again; the catalogs unchanged since, by their stamps), the
//! sequences, no session still, the subscription's end and the target's logins. Up to the
//! subscription's drop anything that goes wrong gives the source its logins back.

use std::time::{Duration, Instant};

use sqlx::PgConnection;

use super::test_points::{fail_point, fail_with_error, pause_point};
use crate::error::{Error, Result};
use crate::moves::sql::{self, Scope};
use crate::naming::TenantNames;
use crate::servers::Server;

/// How long the fenced source waits for the target to catch up before the cut-over is undone.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Catalog differences between the source and the target (empty: equal).
pub(super) async fn compare(
    source: &Server,
    scope_a: &Scope,
    target: &Server,
    scope_b: &Scope,
) -> Result<Vec<String>> {
    // Both sides at once (each on its own connection to its own server).
    let (a, b) = tokio::join!(
        fingerprint_of(source, scope_a),
        fingerprint_of(target, scope_b)
    );
    let (mut a, mut b) = (a?, b?);
    if scope_a.rows.is_some()
        && let Some(schema) = &scope_a.schema
    {
        // The layout's tables have `REPLICA IDENTITY FULL` on the source while a shared tenant's
        // publication exists, and its partitions depend on when each server was set up
        // (`pg::shared::replication`).
        let (pa, pb) = tokio::join!(
            sql::layout_partitions(source.pg(), scope_a),
            sql::layout_partitions(target.pg(), scope_b)
        );
        let mut parts = pa?;
        parts.extend(pb?);
        a = a
            .full_identity_as_default()
            .without_relations(schema.as_str(), &parts);
        b = b
            .full_identity_as_default()
            .without_relations(schema.as_str(), &parts);
    }
    Ok(a.diff(&b, 5))
}

async fn fingerprint_of(
    server: &Server,
    scope: &Scope,
) -> Result<crate::pg::fingerprint::Fingerprint> {
    use crate::pg::fingerprint::{Scope as Fp, fingerprint};
    use sqlx::Connection;
    let mut c = sql::connect(server.pg(), scope).await?;
    let r = match &scope.schema {
        Some(s) => fingerprint(&mut c, Fp::Schema(s.as_str())).await,
        None => fingerprint(&mut c, Fp::Database).await,
    };
    let _ = c.close().await;
    Ok(r?)
}

/// How a cut-over ended when it did not take over.
pub(super) enum CutOver {
    /// Undone (the source unfenced): try again later; counts as an attempt.
    Retry(String),
    /// The move's replication is gone (found before anything was done): roll back.
    Broken(String),
    /// An error part-way: the next pass decides again.
    Failed(Error),
}

impl From<Error> for CutOver {
    fn from(e: Error) -> Self {
        CutOver::Failed(e)
    }
}

/// The source's roles, and which of them log in for a cut-over.
pub(super) struct Logins {
    /// The tenant's roles on the source (verifiers, limits, `VALID UNTIL`).
    pub roles: Vec<sql::RoleCopy>,
    /// The roles that log in: on the source if the cut-over is undone, on the target at the
    /// commit point.
    pub login: Vec<crate::naming::Ident>,
    /// What to record in `status.move.loginRoles` before the fence, when that changes.
    pub record: Option<Vec<String>>,
}

/// The roles that log in for the cut-over, to be recorded before the fence: those that log in on
/// the source now; on a source left fenced by an interrupted cut-over (no login: the fence is one
/// transaction for all of them), the ones recorded before that fence (`recorded`) that have not
/// expired — the cut-over goes on with them, so the target (or the source, if it is undone) gives
/// login to exactly the roles that had it, a rotation's previous role in its grace period too.
/// Nothing logs in and nothing recorded (a status written by an older operator): refused until a
/// pass provisioned the tenant on its source, which gives the active role its login back.
pub(super) async fn logins(
    source: &Server,
    names_a: &TenantNames,
    recorded: Option<&[String]>,
) -> Result<Logins> {
    // Read again on every attempt: a rotation on the source since the copy started.
    let roles = sql::read_roles(source.pg(), names_a).await?;
    let login: Vec<_> = logging_in(&roles, recorded)
        .map(|r| r.name.clone())
        .collect();
    if login.is_empty() {
        return Err(Error::unavailable(
            "the source is still fenced by an interrupted cut-over: its logins come back first, then the cut-over is tried again",
        ));
    }
    let names: Vec<String> = login.iter().map(|r| r.as_str().to_string()).collect();
    let record = (recorded != Some(names.as_slice())).then_some(names);
    Ok(Logins {
        roles,
        login,
        record,
    })
}

/// The roles that log in for a cut-over (see [`logins`]): those that log in now, or, when none
/// does, the recorded ones that have not expired (a role whose `VALID UNTIL` passed meanwhile —
/// a grace period that ended while the operator was down — stays off).
fn logging_in<'a>(
    roles: &'a [sql::RoleCopy],
    recorded: Option<&'a [String]>,
) -> impl Iterator<Item = &'a sql::RoleCopy> + 'a {
    let fenced = !roles.iter().any(|r| r.can_login);
    roles.iter().filter(move |r| {
        r.can_login
            || (fenced
                && !r.expired
                && recorded.is_some_and(|rec| rec.iter().any(|n| n == r.name.as_str())))
    })
}

/// Gives a source left fenced by a cut-over that did not end (nothing logs in there) its recorded
/// logins back: when the cut-over failed part-way (before the provisioning of the same pass, which
/// would give back only the active role's) or its move is cancelled. A no-op on a source where a
/// role logs in (not fenced, or given back already), and with nothing recorded (provisioning
/// gives the active role its login back).
pub(super) async fn give_back_logins(
    source: &Server,
    names_a: &TenantNames,
    recorded: Option<&[String]>,
) -> Result<()> {
    let roles = sql::read_roles(source.pg(), names_a).await?;
    let login: Vec<&crate::naming::Ident> = logging_in(&roles, recorded)
        .filter(|r| !r.can_login)
        .map(|r| &r.name)
        .collect();
    if login.is_empty() {
        return Ok(());
    }
    sql::unfence(source.pg(), &login).await
}

/// The cut-over (see the module documentation) with the source's roles and logins
/// ([`logins`], recorded before it is called); the write freeze on success.
#[allow(clippy::too_many_arguments)]
pub(super) async fn cut_over(
    source: &Server,
    names_a: &TenantNames,
    scope_a: &Scope,
    target: &Server,
    names_b: &TenantNames,
    scope_b: &Scope,
    name: &crate::naming::Ident,
    logins: Logins,
) -> std::result::Result<Duration, CutOver> {
    let Logins { roles, login, .. } = logins;
    // A cut-over interrupted after it dropped the subscription (the operator stopped before the
    // commit point was recorded) cannot be redone: the target stopped following the source. The
    // source gets its logins back (all the recorded ones: provisioning after the roll-back would
    // give back only the active role's); a no-op on a source that was not fenced.
    if let Some(why) = sql::replication_gone(source.pg(), target.pg(), scope_b, name).await? {
        return Err(match undo(source, &login, why).await {
            CutOver::Retry(why) => CutOver::Broken(why),
            other => other,
        });
    }
    fail_with_error("move-prepare-roles")?;
    sql::prepare_roles(target.pg(), names_b, &roles).await?;
    // One connection pair (the admin's, to the tenant's database on each server) opened before the
    // freeze and kept for the stamps, the row counts and the sequences: no login inside the freeze
    // for them (a comparison redone because a stamp moved opens its own). On a source left fenced
    // by an interrupted cut-over, `undo` gives the logins back as after any check that fails.
    let (mut a, mut b) = match tokio::try_join!(
        sql::connect(source.pg(), scope_a),
        sql::connect(target.pg(), scope_b)
    ) {
        Ok(pair) => pair,
        Err(e) => return Err(undo(source, &login, e.to_string()).await),
    };
    let sides = Sides {
        source,
        scope_a,
        target,
        scope_b,
    };
    let checked = freeze_and_check(&sides, names_a, name, &login, &mut a, &mut b).await;
    // Closed beside the rest: nothing waits for it.
    tokio::spawn(close(a, b));
    let frozen = checked?;
    // The subscription stops before the target takes writes of its own.
    sql::drop_subscription(target.pg(), scope_b, name).await?;
    fail_point("move-subscription-dropped");
    let refs: Vec<&crate::naming::Ident> = login.iter().collect();
    sql::unfence(target.pg(), &refs).await?;
    Ok(frozen.elapsed())
}

/// The two databases of a cut-over.
struct Sides<'a> {
    source: &'a Server,
    scope_a: &'a Scope,
    target: &'a Server,
    scope_b: &'a Scope,
}

/// The cut-over from the catalog comparison to the sequences, `a` and `b` connected to the
/// source's and the target's database: when the write freeze began, once everything checked out
/// (the source fenced); else the source serves again (`undo`).
async fn freeze_and_check(
    s: &Sides<'_>,
    names_a: &TenantNames,
    name: &crate::naming::Ident,
    login: &[crate::naming::Ident],
    a: &mut PgConnection,
    b: &mut PgConnection,
) -> std::result::Result<Instant, CutOver> {
    let source = s.source;
    // The catalogs compared before the freeze (every object deparsed on both sides: the slowest
    // check), their stamps taken first; inside the freeze only the stamps are taken again, at its
    // end, and the comparison is redone only if one changed (DDL in between).
    let stamps = match stamps_on(a, b).await {
        Ok(st) => st,
        Err(e) => return Err(undo(source, login, e.to_string()).await),
    };
    match compare(s.source, s.scope_a, s.target, s.scope_b).await {
        Ok(diff) if diff.is_empty() => {}
        Ok(diff) => {
            let why = schema_changed("during the move", &diff);
            return Err(undo(source, login, why).await);
        }
        Err(e) => return Err(undo(source, login, e.to_string()).await),
    }
    pause_point("move-compared").await;
    let frozen = Instant::now();
    if let Err(e) = sql::fence(source.pg(), names_a).await {
        // Sessions that would not exit (or the source went away): the logins come back and the
        // move keeps copying; a later attempt fences again.
        return Err(undo(source, login, format!("the write freeze failed: {e}")).await);
    }
    fail_point("move-fenced");
    // From here to the subscription's drop anything that goes wrong gives the source its logins
    // back and counts as an attempt: a fenced tenant waiting for a retry that may fail the same
    // way every time would be an outage without end.
    match checks_while_frozen(s, names_a, name, a, b, &stamps).await {
        Ok(None) => Ok(frozen),
        Ok(Some(why)) => Err(undo(source, login, why).await),
        Err(e) => Err(undo(source, login, e.to_string()).await),
    }
}

/// With the source fenced: the target caught up ([`verify_frozen`]: and the row counts agree), no
/// session of the tenant, caught up again, the catalogs unchanged since `stamps`, the sequences
/// copied, still no session. `Some(why)` when the cut-over is to be undone.
async fn checks_while_frozen(
    s: &Sides<'_>,
    names_a: &TenantNames,
    name: &crate::naming::Ident,
    a: &mut PgConnection,
    b: &mut PgConnection,
    stamps: &(String, String),
) -> Result<Option<String>> {
    if let Some(why) = verify_frozen(s, name, a, b).await? {
        return Ok(Some(why));
    }
    pause_point("move-counted").await;
    // A login that passed its check just before the freeze and appeared only after the fence
    // looked: what it writes may be past the catch-up position. Checked after the catch-up and
    // the row counts, and once more at the end (long after such a login shows up); the next
    // attempt fences it too.
    if let Some(why) = sessions_left(s.source, names_a).await? {
        return Ok(Some(why));
    }
    // Such a session may also have come and gone (an UPDATE the row counts cannot see): the
    // target must confirm the source's WAL up to now once more — quick: the tenant writes nothing
    // now. Only then the catalog stamps are taken again (once inside the freeze: any DDL up to
    // now, such a session's too, moved one) and the sequences copied (its `nextval`s too).
    if !sql::wait_caught_up(s.source.pg(), name, CATCH_UP).await? {
        return Ok(Some(format!(
            "the target did not catch up within {} s (second check)",
            CATCH_UP.as_secs()
        )));
    }
    if let Some(why) = catalogs_unchanged(s, a, b, stamps).await? {
        return Ok(Some(why));
    }
    sql::copy_sequences(a, b, s.scope_a).await?;
    sessions_left(s.source, names_a).await
}

/// Why the cut-over is to be undone when a session of the tenant is on the fenced source.
async fn sessions_left(source: &Server, names_a: &TenantNames) -> Result<Option<String>> {
    Ok(match sql::sessions(source.pg(), names_a).await? {
        0 => None,
        n => Some(format!(
            "{n} session(s) of the tenant appeared on the source during the write freeze"
        )),
    })
}

async fn stamps_on(a: &mut PgConnection, b: &mut PgConnection) -> Result<(String, String)> {
    use crate::pg::catalog_stamp::stamp;
    let (sa, sb) = tokio::join!(stamp(a), stamp(b));
    Ok((sa?, sb?))
}

/// The catalog stamps of both databases taken again; when one moved since `stamps` (DDL since,
/// or another tenant's in a shared database), the catalogs compared again. `Some(why)` when they
/// differ.
async fn catalogs_unchanged(
    s: &Sides<'_>,
    a: &mut PgConnection,
    b: &mut PgConnection,
    stamps: &(String, String),
) -> Result<Option<String>> {
    if stamps_on(a, b).await? == *stamps {
        return Ok(None);
    }
    let diff = compare(s.source, s.scope_a, s.target, s.scope_b).await?;
    Ok((!diff.is_empty()).then(|| schema_changed("after the catalogs were compared", &diff)))
}

async fn close(a: PgConnection, b: PgConnection) {
    use sqlx::Connection;
    let _ = tokio::join!(a.close(), b.close());
}

/// Why the cut-over is undone when the catalogs differ (`when`: since when they changed).
fn schema_changed(when: &str, diff: &[String]) -> String {
    format!("the schema changed {when}: {}", diff.join("; "))
}

/// With the source fenced: the target caught up, the row counts agree. `Some(why)` when the
/// cut-over is to be undone.
async fn verify_frozen(
    s: &Sides<'_>,
    name: &crate::naming::Ident,
    a: &mut PgConnection,
    b: &mut PgConnection,
) -> Result<Option<String>> {
    if !sql::wait_caught_up(s.source.pg(), name, CATCH_UP).await? {
        let why = format!(
            "the target did not catch up within {} s",
            CATCH_UP.as_secs()
        );
        return Ok(Some(why));
    }
    fail_with_error("move-frozen")?;
    // Both sides' counts at once: they grow with the data, inside the write freeze.
    let (ca, cb) = tokio::join!(sql::row_counts(a, s.scope_a), sql::row_counts(b, s.scope_b));
    let (ca, cb) = (ca?, cb?);
    if ca != cb {
        let differing: Vec<String> = ca
            .iter()
            .filter(|(k, v)| cb.get(*k) != Some(v))
            .take(3)
            .map(|(k, v)| format!("{k}: {v} on the source, {:?} on the target", cb.get(k)))
            .collect();
        let why = format!("row counts differ: {}", differing.join("; "));
        return Ok(Some(why));
    }
    Ok(None)
}

/// Unfences the source after a cut-over that did not take over.
async fn undo(source: &Server, login: &[crate::naming::Ident], why: String) -> CutOver {
    let refs: Vec<&crate::naming::Ident> = login.iter().collect();
    match sql::unfence(source.pg(), &refs).await {
        Ok(()) => CutOver::Retry(why),
        Err(e) => CutOver::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, can_login: bool, expired: bool) -> sql::RoleCopy {
        sql::RoleCopy {
            name: crate::naming::Ident::new(name).unwrap(),
            can_login,
            verifier: None,
            connection_limit: 10,
            comment: None,
            valid_until: None,
            expired,
        }
    }

    fn rec(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn names<'a>(roles: &'a [sql::RoleCopy], recorded: Option<&'a [String]>) -> Vec<&'a str> {
        logging_in(roles, recorded)
            .map(|r| r.name.as_str())
            .collect()
    }

    #[test]
    fn the_recorded_logins_count_only_on_a_fenced_source() {
        let both = rec(&["t", "t_b"]);
        // Fenced by an interrupted cut-over: the recorded roles.
        let fenced = [role("t", false, false), role("t_b", false, false)];
        assert_eq!(names(&fenced, Some(&both)), ["t", "t_b"]);
        // A recorded role whose grace period ended meanwhile stays off.
        let ended = [role("t", false, true), role("t_b", false, false)];
        assert_eq!(names(&ended, Some(&both)), ["t_b"]);
        // Fenced and nothing recorded: none (refused by `logins`).
        assert!(names(&fenced, None).is_empty());
        // A role logs in: the source's logins alone — a recorded role turned off meanwhile (by a
        // DBA revoking a leaked previous password, or by provisioning after the Secret changed
        // slots) is not turned on again.
        let revoked = [role("t", false, false), role("t_b", true, false)];
        assert_eq!(names(&revoked, Some(&both)), ["t_b"]);
        assert_eq!(names(&revoked, None), ["t_b"]);
    }
}
