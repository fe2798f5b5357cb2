//! The scheduler: bot files, cron schedules in a time zone, the durable queue
//! and the worker pool behind `clerk serve`. It only enqueues and dispatches;
//! steps are run by the engine.
//!
//! - [`bot`]: the bot file model, loaded with source positions.
//! - [`schedule`]: cron + time zone → firing instants, across DST changes.
//! - [`serve`]: the scheduler loop (one leader per store), workers, signals.
//! - [`notify`]: the failure mail.
//! - `continuation`: a bot's `on_interrupt` and `retry:` (same lineage).
//! - [`deployed`]: `clerk deploy` and which bot set serve runs (store or folder).
//! - [`admin`]: what `clerk bots ...` does (list, run now, pause, resume).
//! - [`dispatch`]: the worker pool (batch claims for the free slots).
//! - [`registry`]: this `clerk serve` in the workers registry (heartbeat, labels).

pub mod admin;
pub mod bot;
mod continuation;
pub mod deployed;
pub mod dispatch;
pub mod notify;
pub mod registry;
pub mod schedule;
pub mod serve;
pub mod trigger;

use std::path::Path;

pub use bot::{Bot, CatchUp, OnInterrupt, Overlap, load_bot_file, load_bots_dir};
pub use schedule::CronSchedule;

use crate::playbook::Diagnostics;

/// Checks a bot file (format in docs/bots.md), reporting every problem,
/// the problems of its playbook included.
pub fn validate_bot_file(path: &Path, _workspace: &Path) -> Diagnostics {
    match load_bot_file(path) {
        Ok(_) => Diagnostics::default(),
        Err(d) => d,
    }
}
