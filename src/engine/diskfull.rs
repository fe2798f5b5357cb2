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
            // Deferred events of this run that did not fit cannot be written
            // now either: the end says how many were lost instead.
            let lost = store.discard_pending_of_run(run_id);
            let mut change = change;
            if change.status.as_deref() == Some("succeeded") {
                // Something it did may not have been recorded: not a success.
                change.status = Some("failed".into());
            }
            let mut text = match &change.error {
                Some(prev) if prev.contains("no space left") => prev.clone(),
                Some(prev) => format!("{prev} (and then: {e})"),
                None => e.to_string(),
            };
            if lost > 0 {
                text.push_str(&format!(
                    "; {lost} audit events of this run could not be recorded"
                ));
            }
            change.error = Some(text.clone());
            let mut event = event.outcome("failed").error(text);
            if let (true, Some(d)) = (lost > 0, event.detail.as_object_mut()) {
                d.insert("events_not_recorded".into(), serde_json::json!(lost));
            }
            store
                .finish_run_and_enqueue(run_id, &["running"], change, event, follow)
                .await
        }
        other => other,
    }
}
