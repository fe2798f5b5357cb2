//! [`StoreError`]: what the store returns, classified so that callers (and the
//! store's own retry loop) can tell transient failures from real ones.

use super::Backend;

/// An error from the store. Every message names the store (URL without
/// password) and what was being done (table, run id).
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The database is busy or locked, or the connection failed: retrying
    /// later may succeed.
    #[error("database busy or unreachable: {0}")]
    Busy(String),
    /// A concurrent writer won a race (serialization failure, deadlock, the
    /// next audit id taken): retrying may succeed.
    #[error("concurrent write conflict: {0}")]
    Conflict(String),
    /// The row asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A run id prefix matches more than one run.
    #[error("ambiguous run id: {0}")]
    Ambiguous(String),
    /// A guarded transition lost a race: the row was not in the state the
    /// caller expected (another process changed it first). Nothing was
    /// written. Not transient: retrying blindly would overwrite the winner.
    #[error("{what} is {found}, expected {}; nothing was changed", expected.join(" or "))]
    StateConflict {
        /// What was being changed, e.g. `run 01H...`, `item PR-1 of step 3.enter`.
        what: String,
        expected: Vec<String>,
        /// The state found (`absent` when there was no row).
        found: String,
    },
    /// Anything else (constraint violations, bad data, SQL errors).
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// True for errors worth retrying (busy/locked, serialization failure,
    /// deadlock, connection trouble, lost append race).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy(_) | StoreError::Conflict(_))
    }

    /// Classifies a sqlx error; `context` says what was done and where.
    pub(crate) fn from_sqlx(backend: Backend, e: sqlx::Error, context: &str) -> StoreError {
        let msg = format!("{context}: {e}");
        match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let on_audit = db.message().contains("audit_events")
                    || db
                        .constraint()
                        .is_some_and(|c| c.starts_with("audit_events"));
                let unique = matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation);
                match backend {
                    Backend::Sqlite => {
                        let primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(-1);
                        if primary == 5 || primary == 6 {
                            // SQLITE_BUSY / SQLITE_LOCKED (and extended codes)
                            StoreError::Busy(msg)
                        } else if unique && on_audit {
                            StoreError::Conflict(msg)
                        } else {
                            StoreError::Other(msg)
                        }
                    }
                    Backend::Postgres => {
                        match code.as_str() {
                            // serialization_failure, deadlock_detected
                            "40001" | "40P01" => StoreError::Conflict(msg),
                            // lock_not_available, admin/crash shutdown, cannot connect now
                            "55P03" | "57P01" | "57P02" | "57P03" => StoreError::Busy(msg),
                            c if c.starts_with("08") => StoreError::Busy(msg),
                            _ if unique && on_audit => StoreError::Conflict(msg),
                            _ => StoreError::Other(msg),
                        }
                    }
                }
            }
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => {
                StoreError::Busy(msg)
            }
            _ => StoreError::Other(msg),
        }
    }
}
