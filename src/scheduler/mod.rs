//! The scheduler: bot files, cron schedules in a time zone, the durable queue
//! and the worker pool behind `clerk serve`. It only enqueues and dispatches;
//! steps are run by the engine.

use std::path::Path;

use crate::playbook::{Diagnostics, yaml::Pos};

/// Checks a bot file (format in the README), reporting every problem.
pub fn validate_bot_file(path: &Path, _workspace: &Path) -> Diagnostics {
    let mut d = Diagnostics::default();
    d.push(
        path,
        Pos { line: 1, col: 1 },
        "bot files are not supported in this build yet",
    );
    d
}
