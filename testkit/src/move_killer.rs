//! `kill -9` of the operator at random points of tenant moves, for the move reliability tests
//! (`tests/reliability_moves.rs` for PostgreSQL, `tests/reliability_moves_mongo.rs` for
//! MongoDB): wait until the (re)started operator persisted progress on a move, wait a random
//! delay more (the kill point inside whatever step runs then), SIGKILL it, record each Tenant's
//! move phase, check the test's invariants while it is down, start it again.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tenantdb::crd::{MoveStatus, Tenant};

use crate::e2e::Env;

/// Which of a Tenant's moves the test kills: `status.move` (PostgreSQL) or
/// `status.mongodbMove`.
pub type MoveOf = fn(&Tenant) -> Option<MoveStatus>;

/// What one kill hit.
#[derive(Debug, Clone)]
pub struct MoveKill {
    /// Each Tenant's move phase as persisted when the operator died (`-`: none on record).
    pub phases: BTreeMap<String, String>,
    /// Whether a move was in flight (not in a terminal phase).
    pub in_move: bool,
}

/// The persisted progress of the moves: (Tenant, move start, phase, message).
pub type Progress = BTreeSet<(String, String, String, String)>;

/// The persisted progress of the moves of the Tenants in `namespace` (empty when the API
/// cannot be read).
pub async fn progress(env: &Env, namespace: &str, move_of: MoveOf) -> Progress {
    let Ok(list) = env.tenants(namespace).list(&Default::default()).await else {
        return Progress::new();
    };
    list.items
        .iter()
        .filter_map(|t| {
            let m = move_of(t)?;
            Some((
                t.metadata.name.clone().unwrap_or_default(),
                m.started_at.unwrap_or_default(),
                format!("{:?}", m.phase),
                m.message.unwrap_or_default(),
            ))
        })
        .collect()
}

/// The killer of one test (see the module documentation).
pub struct MoveKiller {
    /// Seeded from the test's seed (the test may draw from it too, e.g. which move to cancel).
    pub rng: StdRng,
    /// Every kill so far.
    pub kills: Vec<MoveKill>,
    /// The moves' progress when the operator was last killed.
    seen: Progress,
    started: Instant,
    namespace: String,
    move_of: MoveOf,
    delay_ms: RangeInclusive<u64>,
    progress_within: Duration,
    seed: u64,
}

impl MoveKiller {
    /// A killer of the moves of the Tenants in `namespace` (read with `move_of`): kills
    /// `delay_ms` after persisted progress; fails the test when a restarted operator makes no
    /// progress within `progress_within`. `started`: the test's clock (for the kill log).
    pub async fn new(
        env: &Env,
        namespace: &str,
        move_of: MoveOf,
        seed: u64,
        delay_ms: RangeInclusive<u64>,
        progress_within: Duration,
        started: Instant,
    ) -> Self {
        let mut k = Self {
            rng: StdRng::seed_from_u64(seed),
            kills: vec![],
            seen: Progress::new(),
            started,
            namespace: namespace.to_string(),
            move_of,
            delay_ms,
            progress_within,
            seed,
        };
        k.seen = k.progress(env).await;
        k
    }

    /// Kills that hit a move in flight.
    pub fn in_move(&self) -> usize {
        self.kills.iter().filter(|k| k.in_move).count()
    }

    /// How many kills found a move in each phase.
    pub fn phases_hit(&self) -> BTreeMap<String, usize> {
        let mut hit = BTreeMap::new();
        for k in &self.kills {
            for p in k.phases.values() {
                *hit.entry(p.clone()).or_default() += 1;
            }
        }
        hit
    }

    async fn progress(&self, env: &Env) -> Progress {
        progress(env, &self.namespace, self.move_of).await
    }

    /// Waits until the (re)started operator has made persisted progress on a move (so that the
    /// moves advance from kill to kill), then a random delay more, and SIGKILLs it unless `done`
    /// (checked before and after the delay). While it is down, runs `while_down` on the Tenants
    /// as persisted; then starts it again. `false`: no kill (done).
    pub async fn kill_at_random_point(
        &mut self,
        env: &mut Env,
        round: usize,
        done: impl AsyncFn(&Env) -> bool,
        while_down: impl AsyncFn(&[Tenant]),
    ) -> bool {
        let deadline = Instant::now() + self.progress_within;
        loop {
            if done(env).await {
                return false;
            }
            if !self.progress(env).await.is_subset(&self.seen) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no progress of the moves for {:?} after a restart (seed {})\n--- operator log tail ---\n{}",
                self.progress_within,
                self.seed,
                env.important_log_tail(60)
            );
            // Polling the persisted progress.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let delay = Duration::from_millis(self.rng.random_range(self.delay_ms.clone()));
        // The kill point, not a wait for a state.
        tokio::time::sleep(delay).await;
        if done(env).await {
            return false;
        }
        env.kill_operator().await;
        let tenants = env
            .tenants(&self.namespace)
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        self.seen = self.progress(env).await;
        let phases: BTreeMap<String, String> = tenants
            .iter()
            .map(|t| {
                let p = (self.move_of)(t).map_or("-".into(), |m| format!("{:?}", m.phase));
                (t.metadata.name.clone().unwrap_or_default(), p)
            })
            .collect();
        let in_move = tenants
            .iter()
            .any(|t| (self.move_of)(t).is_some_and(|m| !m.phase.is_terminal()));
        eprintln!(
            "[{:5.1}s] kill {:2} (round {round}, {delay:?} after progress): {phases:?}",
            self.started.elapsed().as_secs_f64(),
            self.kills.len() + 1
        );
        self.kills.push(MoveKill { phases, in_move });
        while_down(&tenants).await;
        env.start_operator();
        true
    }
}
