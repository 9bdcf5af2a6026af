//! A test-only pause point of the operator (`TENANTDB_TEST_PAUSE_AT`, debug builds;
//! tests/README.md): the files through which a test makes the operator wait at a point and lets it
//! go on, removed when dropped.

use std::path::PathBuf;
use std::time::Duration;

use crate::e2e::{Env, wait_for};

/// One pause point and its files.
pub struct Pause {
    point: &'static str,
    file: PathBuf,
    reached: PathBuf,
    arm: PathBuf,
}

impl Pause {
    /// The point `point` (e.g. `move-compared`), with files named by the point and this test
    /// process: one test of a binary at a time per point.
    pub fn new(point: &'static str) -> Self {
        let file =
            std::env::temp_dir().join(format!("tenantdb-pause-{point}-{}", std::process::id()));
        let reached = file.with_extension("reached");
        let arm = file.with_extension("arm");
        let p = Pause {
            point,
            file,
            reached,
            arm,
        };
        p.clear();
        let _ = std::fs::remove_file(&p.arm);
        p
    }

    /// The operator's environment for it.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("TENANTDB_TEST_PAUSE_AT".into(), self.point.into()),
            (
                "TENANTDB_TEST_PAUSE_FILE".into(),
                self.file.display().to_string(),
            ),
        ]
    }

    /// The next pass to reach the point waits there.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.reached);
        // And any temporary file of an operator killed between writing `.reached` and renaming
        // it (`<reached>.tmp.<pid>.<n>`).
        if let (Some(dir), Some(name)) = (self.reached.parent(), self.reached.file_name()) {
            let prefix = format!("{}.tmp.", name.to_string_lossy());
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Arms a point that waits only when armed (`tenant-status-write`): the next pass waits there.
    pub fn arm(&self) {
        self.clear();
        std::fs::write(&self.arm, "armed").unwrap();
    }

    /// Waits (at most `timeout`) until the operator waits at the point.
    pub async fn reached(&self, env: &Env, timeout: Duration) {
        wait_for(
            timeout,
            &format!("the operator paused at {}", self.point),
            || {
                // Non-empty: the operator writes the file whole (rename); a reader does not
                // depend on that to see something written.
                let reached = self.reached.clone();
                async move {
                    std::fs::read_to_string(&reached)
                        .is_ok_and(|t| !t.is_empty())
                        .then_some(())
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.important_log_tail(60)));
    }

    /// What the operator wrote when it reached the point: the point, and for an armed point which
    /// pass (e.g. `tenant-status-write Tenant/fleet/late generation Some(2)`).
    pub fn reached_text(&self) -> String {
        std::fs::read_to_string(&self.reached).unwrap_or_default()
    }

    /// Lets it (and every later pass) go on; an armed point is disarmed.
    pub fn release(&self) {
        let _ = std::fs::remove_file(&self.arm);
        std::fs::write(&self.file, "go").unwrap();
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.clear();
        let _ = std::fs::remove_file(&self.arm);
    }
}
