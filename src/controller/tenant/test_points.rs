//! Test-only fail and pause points (debug builds only; a release build ignores the variables):
//! where the end-to-end tests make the operator exit, fail or wait at a chosen point of a reconcile
//! (tests/README.md, "Gates (environment variables)").

#[cfg(debug_assertions)]
use std::time::Duration;

#[cfg(debug_assertions)]
use crate::error::Error;
use crate::error::Result;

/// The process exits here when `TENANTDB_TEST_EXIT_AT` names `point`, as if killed there.
pub(super) fn fail_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("TENANTDB_TEST_EXIT_AT").is_ok_and(|p| p == point) {
        tracing::warn!(point, "fail point reached: exiting (TENANTDB_TEST_EXIT_AT)");
        std::process::exit(86);
    }
    let _ = point;
}

/// An error (one the server would have refused with, not an outage) here when
/// `TENANTDB_TEST_FAIL_AT` names `point`.
pub(super) fn fail_with_error(point: &str) -> Result<()> {
    #[cfg(debug_assertions)]
    if std::env::var("TENANTDB_TEST_FAIL_AT").is_ok_and(|p| p == point) {
        return Err(Error::database(format!(
            "fail point {point} reached (TENANTDB_TEST_FAIL_AT)"
        )));
    }
    let _ = point;
    Ok(())
}

/// When `TENANTDB_TEST_PAUSE_AT` names `point`: writes the file `$TENANTDB_TEST_PAUSE_FILE.reached`
/// and waits here until the file `$TENANTDB_TEST_PAUSE_FILE` exists. A move's cut-over:
/// `move-compared` (after the catalog comparison, before the fence), `move-counted` (inside the
/// freeze, after the row counts).
pub(super) async fn pause_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("TENANTDB_TEST_PAUSE_AT").is_ok_and(|p| p == point)
        && let Ok(file) = std::env::var("TENANTDB_TEST_PAUSE_FILE")
    {
        wait_at(point, &file).await;
    }
    let _ = point;
}

/// [`pause_point`] for a point every reconcile passes, where a test wants one chosen pass to wait:
/// it waits only when it is reached while armed (the file `$TENANTDB_TEST_PAUSE_FILE.arm` exists),
/// and writes `detail` (which pass) into the `.reached` file. `tenant-status-write`: a Tenant
/// status write, computed, before it is sent (detail: the Tenant and its generation).
pub(super) async fn armed_pause_point(point: &str, detail: impl FnOnce() -> String) {
    #[cfg(debug_assertions)]
    if std::env::var("TENANTDB_TEST_PAUSE_AT").is_ok_and(|p| p == point)
        && let Ok(file) = std::env::var("TENANTDB_TEST_PAUSE_FILE")
        && tokio::fs::try_exists(format!("{file}.arm"))
            .await
            .unwrap_or(false)
    {
        wait_at(&format!("{point} {}", detail()), &file).await;
        return;
    }
    let _ = (point, detail);
}

#[cfg(debug_assertions)]
async fn wait_at(point: &str, file: &str) {
    tracing::warn!(point, "pause point reached (TENANTDB_TEST_PAUSE_AT)");
    // Written whole (a temporary file of this pass's own, then rename): a test polling for it
    // never reads it empty or half written, even if two passes reach the point at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = format!("{file}.reached.tmp.{}.{n}", std::process::id());
    if tokio::fs::write(&tmp, point).await.is_err()
        || tokio::fs::rename(&tmp, format!("{file}.reached"))
            .await
            .is_err()
    {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    while !tokio::fs::try_exists(file).await.unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
