//! Server-wide statistics for every tenant at once: one statement per server and usage interval
//! reads sessions by role and state (`pg_stat_activity`), transaction counters by database
//! (`pg_stat_database`) and, when the extension is there, normalised statements by role
//! (`pg_stat_statements`). Attribution to tenants is pure ([`crate::statistics`]).

use std::collections::HashMap;

use serde::Deserialize;

use super::PgAdmin;
use crate::error::Result;

/// Sessions of one role, by state. The operator's own sessions (`application_name` starting
/// `tenantdb:`, e.g. health checks and migrations) are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoleSessions {
    /// Running a statement.
    pub active: i32,
    /// Idle.
    pub idle: i32,
    /// Idle inside a transaction (including aborted transactions).
    pub idle_in_transaction: i32,
    /// Any other state (fastpath, disabled, starting).
    pub other: i32,
}

impl RoleSessions {
    /// All sessions.
    pub fn total(&self) -> i32 {
        self.active + self.idle + self.idle_in_transaction + self.other
    }

    /// Sum of two roles' sessions (a tenant's two login roles).
    pub fn plus(&self, o: &RoleSessions) -> RoleSessions {
        RoleSessions {
            active: self.active + o.active,
            idle: self.idle + o.idle,
            idle_in_transaction: self.idle_in_transaction + o.idle_in_transaction,
            other: self.other + o.other,
        }
    }
}

/// Cumulative counters of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct DatabaseCounters {
    /// Committed transactions.
    pub xact_commit: i64,
    /// Rolled back transactions.
    pub xact_rollback: i64,
    /// Deadlocks.
    pub deadlocks: i64,
    /// Bytes of temporary files.
    pub temp_bytes: i64,
    /// Blocks found in shared buffers.
    pub blks_hit: i64,
    /// Blocks read from disk (or the OS cache).
    pub blks_read: i64,
}

/// One normalised statement of a role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatementFigures {
    /// `queryid` as text.
    pub query_id: String,
    /// Executions.
    pub calls: i64,
    /// Mean execution time, milliseconds.
    pub mean_ms: i64,
    /// Normalised text, truncated to 200 characters.
    pub query: String,
}

/// Statements of one role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleStatements {
    /// Normalised statements whose mean time is over the threshold.
    pub slow: i64,
    /// The slowest of those (at most 3), slowest first.
    pub slowest: Vec<StatementFigures>,
}

/// What one statistics statement returned.
#[derive(Debug, Clone)]
pub struct ServerFigures {
    /// Sessions by login role.
    pub sessions: HashMap<String, RoleSessions>,
    /// Counters by database.
    pub databases: HashMap<String, DatabaseCounters>,
    /// Statements by role, or why they could not be read.
    pub statements: std::result::Result<HashMap<String, RoleStatements>, String>,
}

#[derive(Deserialize)]
struct SessionRow {
    role: String,
    state: Option<String>,
    n: i32,
}

#[derive(Deserialize)]
struct DatabaseRow {
    db: String,
    #[serde(flatten)]
    counters: DatabaseCounters,
}

#[derive(Deserialize)]
struct StatementRow {
    role: String,
    slow: i64,
    #[serde(default)]
    top: Option<Vec<StatementFigures>>,
}

#[derive(Deserialize)]
struct Document {
    sessions: Vec<SessionRow>,
    databases: Vec<DatabaseRow>,
    #[serde(default)]
    statements: Option<Vec<StatementRow>>,
}

macro_rules! sessions_sql {
    () => {
        "(SELECT coalesce(json_agg(x), '[]') FROM (SELECT usename AS role, state, count(*)::int AS n FROM pg_stat_activity WHERE usename IS NOT NULL AND backend_type = 'client backend' AND coalesce(application_name, '') NOT LIKE 'tenantdb:%' GROUP BY 1, 2) x)"
    };
}
macro_rules! databases_sql {
    () => {
        "(SELECT coalesce(json_agg(y), '[]') FROM (SELECT datname AS db, xact_commit, xact_rollback, deadlocks, temp_bytes, blks_hit, blks_read FROM pg_stat_database WHERE datname IS NOT NULL) y)"
    };
}
// Per role: how many normalised statements are slow, and the three slowest of them. Texts are
// PostgreSQL's normalised form (constants replaced by $n), cut to 200 characters.
macro_rules! statements_sql {
    () => {
        "(SELECT coalesce(json_agg(z), '[]') FROM (SELECT r.rolname AS role, count(*) AS slow, (SELECT json_agg(t) FROM (SELECT s2.queryid::text AS query_id, sum(s2.calls)::bigint AS calls, round(max(s2.mean_exec_time))::bigint AS mean_ms, left(min(s2.query), 200) AS query FROM pg_stat_statements s2 WHERE s2.userid = r.oid AND s2.queryid IS NOT NULL AND s2.mean_exec_time > $1 GROUP BY s2.queryid ORDER BY max(s2.mean_exec_time) DESC LIMIT 3) t) AS top FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE s.mean_exec_time > $1 GROUP BY r.rolname, r.oid) z)"
    };
}

/// Whether `pg_stat_statements` can be read on the admin database, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementsSource {
    /// The view exists (schema-qualified name to read).
    Available,
    /// Why not.
    Unavailable(String),
}

impl PgAdmin {
    /// Finds out whether `pg_stat_statements` can be read. When the library is preloaded but the
    /// extension is not created in the admin database, it is created there (the admin connection
    /// may: this is server administration, not tenant SQL).
    pub async fn statements_source(&self) -> Result<StatementsSource> {
        let pool = self.admin()?;
        let present: bool =
            sqlx::query_scalar("SELECT to_regclass('pg_stat_statements') IS NOT NULL")
                .fetch_one(pool)
                .await?;
        if present {
            return Ok(StatementsSource::Available);
        }
        let preload: String =
            sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
                .fetch_one(pool)
                .await?;
        if !preload
            .split(',')
            .any(|l| l.trim().trim_matches('"') == "pg_stat_statements")
        {
            return Ok(StatementsSource::Unavailable(
                "pg_stat_statements is not in shared_preload_libraries on this server".into(),
            ));
        }
        match sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(pool)
            .await
        {
            Ok(_) => Ok(StatementsSource::Available),
            Err(e) => Ok(StatementsSource::Unavailable(format!(
                "pg_stat_statements could not be created in the admin database: {}",
                crate::dberror::message(&e)
            ))),
        }
    }

    /// One statement reading the figures of every role and database of the server.
    pub async fn server_figures(
        &self,
        statements: &StatementsSource,
        slow_ms: f64,
    ) -> Result<ServerFigures> {
        let pool = self.admin()?;
        let with_statements = matches!(statements, StatementsSource::Available);
        // Static texts (the threshold is bound), one statement either way.
        const WITH: &str = concat!(
            "SELECT json_build_object('sessions', ",
            sessions_sql!(),
            ", 'databases', ",
            databases_sql!(),
            ", 'statements', ",
            statements_sql!(),
            ")::text"
        );
        const WITHOUT: &str = concat!(
            "SELECT json_build_object('sessions', ",
            sessions_sql!(),
            ", 'databases', ",
            databases_sql!(),
            ")::text"
        );
        let q = if with_statements {
            sqlx::query_scalar::<_, String>(WITH).bind(slow_ms)
        } else {
            sqlx::query_scalar::<_, String>(WITHOUT)
        };
        let text = q.fetch_one(pool).await?;
        parse(&text, statements)
    }
}

/// Parses the statement's JSON document.
pub fn parse(text: &str, source: &StatementsSource) -> Result<ServerFigures> {
    let doc: Document = serde_json::from_str(text).map_err(|e| {
        crate::error::Error::unavailable(format!("unexpected statistics document: {e}"))
    })?;
    let mut sessions: HashMap<String, RoleSessions> = HashMap::new();
    for r in doc.sessions {
        let s = sessions.entry(r.role).or_default();
        match r.state.as_deref() {
            Some("active") => s.active += r.n,
            Some("idle") => s.idle += r.n,
            Some("idle in transaction") | Some("idle in transaction (aborted)") => {
                s.idle_in_transaction += r.n
            }
            _ => s.other += r.n,
        }
    }
    let databases = doc
        .databases
        .into_iter()
        .map(|d| (d.db, d.counters))
        .collect();
    let statements = match (source, doc.statements) {
        (StatementsSource::Unavailable(why), _) => Err(why.clone()),
        (StatementsSource::Available, None) => Err("pg_stat_statements was not read".into()),
        (StatementsSource::Available, Some(rows)) => Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.role,
                    RoleStatements {
                        slow: r.slow,
                        slowest: r.top.unwrap_or_default(),
                    },
                )
            })
            .collect()),
    };
    Ok(ServerFigures {
        sessions,
        databases,
        statements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sessions_by_state_databases_and_statements() {
        let text = r#"{"sessions":[{"role":"t_a","state":"active","n":2},{"role":"t_a","state":"idle in transaction (aborted)","n":1},{"role":"t_a","state":null,"n":1},{"role":"t_b","state":"idle","n":3}],
            "databases":[{"db":"d","xact_commit":10,"xact_rollback":1,"deadlocks":0,"temp_bytes":5,"blks_hit":90,"blks_read":10}],
            "statements":[{"role":"t_a","slow":1,"top":[{"query_id":"-42","calls":3,"mean_ms":900,"query":"select pg_sleep($1)"}]}]}"#;
        let f = parse(text, &StatementsSource::Available).unwrap();
        let a = f.sessions["t_a"];
        assert_eq!(
            (a.active, a.idle_in_transaction, a.other, a.total()),
            (2, 1, 1, 4)
        );
        assert_eq!(f.sessions["t_b"].idle, 3);
        assert_eq!(f.databases["d"].xact_commit, 10);
        let st = f.statements.unwrap();
        assert_eq!(st["t_a"].slow, 1);
        assert_eq!(st["t_a"].slowest[0].query_id, "-42");
        let g = parse(
            r#"{"sessions":[],"databases":[]}"#,
            &StatementsSource::Unavailable("not preloaded".into()),
        )
        .unwrap();
        assert_eq!(g.statements.unwrap_err(), "not preloaded");
        assert!(parse("{", &StatementsSource::Available).is_err());
    }
}
