//! Clean-up every clerk command does when it starts: runs whose `clerk run`
//! process is provably gone become `interrupted` (with an audit event), and
//! browser profile folders of processes that are gone are removed, and
//! Selenium Grid sessions such processes left open are closed.

use crate::store::Store;

/// Marks runs of dead processes on this host as interrupted; never fails the
/// command (a read-only store, say, only gets a warning).
pub async fn dead_runs(store: &Store) {
    store.ensure_space_reserve();
    match store.sweep_dead_runs().await {
        Ok(ids) => {
            for id in ids {
                tracing::warn!(
                    "run {id} was left running by a clerk process that is gone; marked interrupted"
                );
            }
        }
        Err(e) => tracing::warn!("cannot check for runs left by dead processes: {e}"),
    }
}

/// `clerk-browser-*` folders in the temp directory whose owner is gone.
pub fn stale_browser_profiles() {
    let n = crate::process::sweep_stale_temp_dirs("clerk-browser-");
    if n > 0 {
        tracing::info!("removed {n} browser profile folder(s) left by processes that are gone");
    }
}

/// Grid sessions recorded in this workspace by clerk processes that are gone
/// (killed with `kill -9`): closed on the Grid, so that they stop holding a
/// slot until the Grid's own idle timeout.
pub async fn stale_grid_sessions(workspace: &std::path::Path) {
    for (rec, how) in crate::actions::browser::session::grid::sweep(workspace).await {
        tracing::info!(
            session = %rec.session,
            run = %rec.run,
            "{} the Grid session left open by clerk process {} (run {})",
            match how {
                crate::actions::browser::session::grid::Swept::Closed => "closed",
                crate::actions::browser::session::grid::Swept::AlreadyGone => "forgot (the Grid had already ended)",
            },
            rec.pid,
            rec.run
        );
    }
}
