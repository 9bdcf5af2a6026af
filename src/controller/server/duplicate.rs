//! One cluster declared twice: a DatabaseServer whose PostgreSQL cluster or MongoDB deployment is
//! already the default server's or an older DatabaseServer's takes no new tenants
//! (`Schedulable=False/DuplicateCluster`): its capacity would count the cluster twice, a move
//! between the two names would be a move onto itself, and a tenant whose placement is lost would
//! be found on both. The default server and the oldest name keep the tenants.

use crate::controller::Context;
use crate::servers::{Duplicate, MongoServer, Server};

/// Another server known to be the same cluster: its name, when its DatabaseServer was created
/// (`None`: the default server).
#[derive(Clone)]
struct Same {
    name: String,
    created: Option<String>,
    is_default: bool,
}

/// Which of `same` keeps the tenants instead of the server `me` (created at `created`): the
/// default server if it is one of them, else the oldest of those older than `me` (creation
/// time, then name). `None` when `me` is the oldest.
fn keeper<'a>(me: &str, created: Option<&str>, same: &'a [Same]) -> Option<&'a Same> {
    // The default server (no DatabaseServer, no creation time) keeps its tenants.
    let created = Some(created?);
    let older = |o: &Same| {
        o.is_default
            || match (o.created.as_deref(), created) {
                (Some(a), Some(b)) => (a, o.name.as_str()) < (b, me),
                _ => o.name.as_str() < me,
            }
    };
    let key = |o: &&Same| (!o.is_default, o.created.clone(), o.name.clone());
    same.iter().filter(|o| older(o)).min_by_key(key)
}

/// Why the PostgreSQL server `server` must take no new tenants, if it must: another server has
/// the same `system_identifier` and postmaster start. `None` also when the identifiers cannot
/// be read now (asked again at the next probe).
pub(super) async fn postgres(ctx: &Context, server: &Server) -> Option<Duplicate> {
    // Its own identity read now (it was just probed); the others' as recorded by their own
    // probes (read here only when older than `IDENTITY_FRESH`): one query per probe, not one
    // per server.
    let mine = server.read_identity().await?;
    let default = ctx.servers().default_name().map(str::to_string);
    let mut same = Vec::new();
    let mut others = Vec::new();
    for other in ctx.servers().all() {
        if other.name() == server.name() {
            continue;
        }
        let mut theirs = other.identity().await;
        // The same system identifier but another start: a restart since it was recorded, or a
        // clone; read again to tell.
        if theirs.as_ref().is_some_and(|t| t.0 == mine.0 && *t != mine) {
            theirs = other.read_identity().await;
        }
        if theirs.as_ref() == Some(&mine) {
            same.push(Same {
                name: other.name().to_string(),
                created: other.facts().created,
                is_default: default.as_deref() == Some(other.name()),
            });
            others.push(other);
        }
    }
    let message = |k: &Same| Duplicate {
        of: k.name.clone(),
        message: format!(
            "the same PostgreSQL cluster as server {} (system identifier {}): takes no new tenants; declare each cluster once",
            k.name, mine.0
        ),
    };
    decide(
        server.name(),
        server.facts().created,
        &same,
        message,
        |i, d| {
            if let Some(o) = others.get(i) {
                o.set_duplicate_of(Some(d));
            }
        },
    )
}

/// The end of both engines' checks: tells the younger names of the cluster (`same`, the other
/// names found) who keeps the tenants instead of them — now, not at their next probe (they may
/// have been probed before this one was registered) — and answers `me`'s own keeper, each as the
/// engine's `message` says it.
fn decide(
    me: &str,
    created: Option<String>,
    same: &[Same],
    message: impl Fn(&Same) -> Duplicate,
    tell: impl Fn(usize, Duplicate),
) -> Option<Duplicate> {
    let me = Same {
        name: me.to_string(),
        created,
        is_default: false,
    };
    for (i, k) in younger_than(&me, same).into_iter().enumerate() {
        if let Some(k) = k {
            tell(i, message(&k));
        }
    }
    keeper(&me.name, me.created.as_deref(), same).map(message)
}

/// For each of `same` (the other names of `me`'s cluster): the server keeping the tenants instead
/// of it, when that is `me` or another of them.
fn younger_than(me: &Same, same: &[Same]) -> Vec<Option<Same>> {
    same.iter()
        .map(|o| {
            let rest: Vec<Same> = same
                .iter()
                .filter(|x| x.name != o.name)
                .chain(std::iter::once(me))
                .cloned()
                .collect();
            keeper(&o.name, o.created.as_deref(), &rest).cloned()
        })
        .collect()
}

/// Why the MongoDB server `server` must take no new tenants, if it must: another server reads
/// the same deployment identity (`MongoAdmin::deployment_identity`). `None` also when it cannot
/// be read now.
pub(super) async fn mongodb(ctx: &Context, server: &MongoServer) -> Option<Duplicate> {
    // Test-only (debug builds): detection off, so that a move's own guard can be seen
    // (`TENANTDB_TEST_FAIL_AT=duplicate-detection`, tests/README.md).
    #[cfg(debug_assertions)]
    if std::env::var("TENANTDB_TEST_FAIL_AT").is_ok_and(|p| p == "duplicate-detection") {
        return None;
    }
    let mine = server.read_identity().await?;
    let default = ctx.mongo_servers().default_name().map(str::to_string);
    let mut same = Vec::new();
    let mut others = Vec::new();
    for other in ctx.mongo_servers().all() {
        if other.name() != server.name() && other.identity().await.as_ref() == Some(&mine) {
            same.push(Same {
                name: other.name().to_string(),
                created: other.facts().created,
                is_default: default.as_deref() == Some(other.name()),
            });
            others.push(other);
        }
    }
    let message = |k: &Same| Duplicate {
        of: k.name.clone(),
        message: format!(
            "the same MongoDB deployment as server {} (deployment identity {mine}): takes no new tenants; declare each deployment once",
            k.name
        ),
    };
    decide(
        server.name(),
        server.facts().created,
        &same,
        message,
        |i, d| {
            if let Some(o) = others.get(i) {
                o.set_duplicate_of(Some(d));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(name: &str, created: Option<&str>) -> Same {
        Same {
            name: name.into(),
            created: created.map(str::to_string),
            is_default: created.is_none(),
        }
    }

    #[test]
    fn the_default_server_then_the_oldest_keeps_the_tenants() {
        let t1 = Some("2026-01-01T00:00:00Z");
        let t2 = Some("2026-02-01T00:00:00Z");
        let t3 = Some("2026-03-01T00:00:00Z");
        // The default server wins over an older DatabaseServer.
        let s = [same("a", t1), same("default", None)];
        assert_eq!(
            keeper("c", t3, &s).map(|k| k.name.as_str()),
            Some("default")
        );
        // Without it: the oldest of the older ones.
        let s = [same("b", t2), same("a", t1)];
        assert_eq!(keeper("c", t3, &s).map(|k| k.name.as_str()), Some("a"));
        // The oldest server itself keeps its tenants (the others are its duplicates).
        assert!(keeper("a", t1, &[same("b", t2), same("c", t3)]).is_none());
        // Created in the same second: the name decides.
        let s = [same("b", t2)];
        assert!(keeper("c", t2, &s).is_some());
        assert!(keeper("a", t2, &s).is_none());
        // Nothing the same: nothing to say.
        assert!(keeper("a", t1, &[]).is_none());
        // The default server never is another's duplicate.
        assert!(keeper("default", None, &[same("a", t1)]).is_none());
    }

    #[test]
    fn younger_names_are_told_by_the_older_one() {
        let t1 = Some("2026-01-01T00:00:00Z");
        let t2 = Some("2026-02-01T00:00:00Z");
        let t3 = Some("2026-03-01T00:00:00Z");
        // b probed first saw nothing; a (older) tells b and c, and c is told a, not b.
        let me = same("a", t1);
        let told = younger_than(&me, &[same("b", t2), same("c", t3)]);
        let names: Vec<_> = told
            .iter()
            .map(|k| k.as_ref().map(|k| k.name.as_str()))
            .collect();
        assert_eq!(names, vec![Some("a"), Some("a")]);
        // The default server is never told; b younger than the default is told the default.
        let me = same("b", t2);
        let told = younger_than(&me, &[same("default", None), same("c", t3)]);
        let names: Vec<_> = told
            .iter()
            .map(|k| k.as_ref().map(|k| k.name.as_str()))
            .collect();
        assert_eq!(names, vec![None, Some("default")]);
    }
}
