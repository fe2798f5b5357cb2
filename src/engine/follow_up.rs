//! A run's continuation decided when it ends — a bot's `retry:` — and queued
//! in the SAME transaction as the run's end (`Store::finish_run_and_enqueue`),
//! so that a crash between the two cannot record the failure and lose the
//! retry. The scheduler passes its plan with [`Engine::execute_then`]; the
//! engine asks it for the follow-up when it writes the run's end.
//!
//! The plan travels in a task-local rather than as a parameter so that every
//! other way of running (`clerk run`, resume, notices) is untouched.

use std::cell::RefCell;

use super::{Engine, RunOutcome, RunRequest, RunStatus};
use crate::store::{FollowUpRun, RunRow};

/// Given how the run ended, the run that continues it (or none).
pub type FollowUpPlan = Box<dyn FnOnce(RunStatus) -> Option<FollowUpRun> + Send>;

#[derive(Default)]
struct Slot {
    plan: Option<FollowUpPlan>,
    queued: Option<RunRow>,
}

tokio::task_local! {
    static SLOT: RefCell<Slot>;
}

/// The follow-up for a run that ended with `status`, if the caller planned one.
pub(super) fn take(status: RunStatus) -> Option<FollowUpRun> {
    SLOT.try_with(|s| s.borrow_mut().plan.take())
        .ok()
        .flatten()
        .and_then(|plan| plan(status))
}

/// Hands the queued follow-up back to [`Engine::execute_then`].
pub(super) fn queued(row: Option<RunRow>) {
    let _ = SLOT.try_with(|s| s.borrow_mut().queued = row);
}

impl Engine {
    /// [`Engine::execute`], and the run `plan` gives for how it ended is
    /// queued in the same transaction as its end. Returns the outcome and
    /// the queued run.
    pub async fn execute_then(
        &self,
        run_id: &str,
        req: RunRequest,
        plan: FollowUpPlan,
    ) -> anyhow::Result<(RunOutcome, Option<RunRow>)> {
        let slot = RefCell::new(Slot {
            plan: Some(plan),
            queued: None,
        });
        SLOT.scope(slot, async {
            let outcome = self.execute(run_id, req).await?;
            let queued = SLOT.with(|s| s.borrow_mut().queued.take());
            Ok((outcome, queued))
        })
        .await
    }
}
