//! Recording a run's end when the store's disk is full: the space reserve
//! next to the store is given up and the end is written once more, so the run
//! ends `failed` (saying "no space left on device") instead of staying
//! `running`.

use crate::audit::NewEvent;
use crate::store::{FollowUpRun, RunChange, RunRow, Store, StoreError};

/// Records the end of a running run (guarded: only a run still `running`)
/// and its follow-up run, if any, in one transaction.
pub async fn record_end(
    store: &Store,
    run_id: &str,
    change: RunChange,
    event: NewEvent,
    follow: Option<FollowUpRun>,
) -> Result<(RunRow, Option<RunRow>), StoreError> {
    match store
        .finish_run_and_enqueue(
            run_id,
            &["running"],
            change.clone(),
            event.clone(),
            follow.clone(),
        )
        .await
    {
        Err(e) if e.is_disk_full() && store.release_space_reserve() => {
            tracing::error!("{e}; released the space reserve to record the end of run {run_id}");
            let mut change = change;
            if change.status.as_deref() == Some("succeeded") {
                // Something it did may not have been recorded: not a success.
                change.status = Some("failed".into());
            }
            let text = match &change.error {
                Some(prev) if prev.contains("no space left") => prev.clone(),
                Some(prev) => format!("{prev} (and then: {e})"),
                None => e.to_string(),
            };
            change.error = Some(text.clone());
            let event = event.outcome("failed").error(text);
            store
                .finish_run_and_enqueue(run_id, &["running"], change, event, follow)
                .await
        }
        other => other,
    }
}
