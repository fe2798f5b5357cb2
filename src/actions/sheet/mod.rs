//! Spreadsheet actions: `sheet.read` (xlsx, xlsm, xlsb, xls, ods, CSV/TSV),
//! `sheet.write` (xlsx, CSV) and `sheet.append` (CSV).
//!
//! `cells` turns calamine's cell types into template values, `rows` turns a
//! stream of cells into rows with named columns, `grid` holds them compactly
//! (one shared header, a flat vector of cells), `delimited` handles CSV,
//! `read` and `write` are the actions.

mod cells;
mod delimited;
mod grid;
mod read;
mod rows;
mod write;
mod zipcheck;

pub use grid::Grid;
pub use read::{Read, ReadArgs, ReadOutcome, read_path};
pub use rows::{Table, Warnings};
pub use write::{Append, Write};

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while a guarded decode runs on this thread: its panics are caught
    /// and reported as errors, so the default hook must not print them.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Marks a helper thread of a guarded decode: its panics are reported by the
/// guard (through `join`), not printed by the hook.
pub(crate) fn quiet_thread() {
    QUIET.with(|q| q.set(true));
}

/// Runs `f`, turning a panic into `Err(message)`. calamine panics on some
/// corrupt files (index out of bounds, overflow); the user gets one clear
/// error, and no backtrace text reaches the terminal. Other threads' panics
/// still go to the previous hook.
pub(crate) fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".to_string());
        tracing::debug!("spreadsheet decoder panicked: {message}");
        message
    })
}
